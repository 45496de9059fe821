"""``tagkeeper tags``: the tags of the build being run."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from tagkeeper.cli import common

if TYPE_CHECKING:
    from tagkeeper.tags.compute import TagResult
    from tagkeeper.tags.metadata import ImageMetadata


class Printed(StrEnum):
    tags = "tags"
    labels = "labels"
    annotations = "annotations"


def _summary(result: TagResult, lines: list[str], metadata: ImageMetadata) -> str:
    from tagkeeper.cli.gha import md_code, md_escape

    ctx = result.context
    rows = [
        ("channel", str(result.channel)),
        ("environment", result.env),
        ("version", str(result.version) if result.version is not None else "-"),
        ("commit", f"{ctx.sha} ({ctx.sha_source})"),
        ("ref", ctx.ref or "-"),
        ("event", ctx.event or "-"),
    ]
    out = ["### tagkeeper tags", "", "| | |", "|---|---|"]
    out += [f"| {name} | {md_escape(value)} |" for name, value in rows]
    out += ["", "Tags:", ""]
    out += [f"- {md_code(line)}" for line in lines] or ["- (none)"]
    out += ["", "Labels (annotations at " + ", ".join(metadata.levels) + "):", ""]
    out += [f"- {md_code(f'{key}={value}')}" for key, value in metadata.labels.items()]
    return "\n".join(out) + "\n"


def _explain(result: TagResult) -> None:
    ctx = result.context
    source = {
        "head": "the pull request head commit (pull_request.head.sha); "
        "--pr-sha merge selects the merge commit",
        "merge": "the pull request merge commit; --pr-sha head selects the head commit",
        "push": "$GITHUB_SHA",
        "git": "git HEAD",
        "flag": "--sha",
    }[str(ctx.sha_source)]
    what = f"pull request #{ctx.pr_number}: " if ctx.pr_number is not None else ""
    common.info(f"{what}commit {ctx.sha} from {source}")
    common.info(f"{result.channel} build for {result.env}" + (f" ({ctx.ref})" if ctx.ref else ""))
    for note in (*ctx.notes, *result.notes):
        common.info(f"note: {note}")
    for warning in result.warnings:
        common.info(f"warning: {warning}")


def _lowercased(images: list[str]) -> list[str]:
    """``images`` with their repository in lower case, saying so for each one changed."""
    from tagkeeper.refs import lowercase_repository

    out = []
    for image in images:
        lowered = lowercase_repository(image)
        if lowered != image:
            common.info(
                f"note: image names are lower case: {image} is written {lowered} "
                "(as docker/metadata-action does)"
            )
        out.append(lowered)
    return out


def tags(  # noqa: PLR0917 - Typer passes options as arguments
    ctx: typer.Context,
    sha: Annotated[
        str | None,
        typer.Option(
            "--sha", metavar="SHA", help="The commit built (default: $GITHUB_SHA or git HEAD)."
        ),
    ] = None,
    ref: Annotated[
        str | None,
        typer.Option(
            "--ref",
            metavar="REF",
            help="The git ref built: refs/heads/B, refs/tags/T or refs/pull/N/merge "
            "(default: $GITHUB_REF, or a SemVer tag at git HEAD, or the current branch).",
        ),
    ] = None,
    env: Annotated[
        str | None,
        typer.Option(
            "--env",
            metavar="ENV",
            help="The environment (default: prod for releases, else dev). 'dev' and "
            "'development' take any build; every other name gets the prod rules, as in "
            "check: release builds only.",
        ),
    ] = None,
    allow_prerelease: Annotated[
        bool | None,
        typer.Option(
            "--allow-prerelease/--no-allow-prerelease",
            help="Let a prod-rules --env take a prerelease (v1.2.3-rc.1) (default: config "
            "'allow-prerelease', else no).",
            show_default=False,
        ),
    ] = None,
    sha_length: Annotated[
        int | None,
        typer.Option(
            "--sha-length",
            metavar="N",
            help="Hex digits of the sha in dev-<sha> (4-40, default 7).",
        ),
    ] = None,
    bare_version: Annotated[
        bool | None,
        typer.Option(
            "--bare-version/--v-prefix", help="Release tag 1.2.3 or v1.2.3 (default v1.2.3)."
        ),
    ] = None,
    aliases: Annotated[
        bool | None,
        typer.Option(
            "--aliases/--no-aliases",
            help="Also emit floating v1.2 and v1 for stable releases (default: no).",
        ),
    ] = None,
    dev_pointer: Annotated[
        str | None,
        typer.Option(
            "--dev-pointer",
            metavar="NAME",
            help="Opt-in moving tag for dev branch builds, e.g. dev-latest ('' for none).",
        ),
    ] = None,
    pr_sha: Annotated[
        str | None,
        typer.Option(
            "--pr-sha",
            metavar="head|merge",
            help="Pull requests: tag the head (default) or merge commit.",
        ),
    ] = None,
    image: Annotated[
        list[str] | None,
        typer.Option(
            "--image",
            "-i",
            metavar="IMAGE",
            help="Image repository; print full references (repeatable). Upper case in "
            "the repository is written in lower case, as image names are.",
        ),
    ] = None,
    fail_dirty: Annotated[
        bool | None,
        typer.Option(
            "--fail-dirty/--no-fail-dirty",
            help="Outside CI, exit 3 when the work tree has uncommitted changes (the tag "
            "names a commit, not those files) instead of warning (default: config "
            "'fail-dirty', else warn).",
            show_default=False,
        ),
    ] = None,
    annotation_levels: Annotated[
        str,
        typer.Option(
            "--annotation-levels",
            metavar="LEVELS",
            help="Where the annotations go: comma-separated manifest, index, "
            "manifest-descriptor, index-descriptor ('index' needs a multi-platform or "
            "attested build).",
        ),
    ] = "manifest",
    printed: Annotated[
        Printed,
        typer.Option(
            "--print",
            help="What the text output lists, one per line: tags (references), labels "
            "(key=value) or annotations (level:key=value).",
        ),
    ] = Printed.tags,
    fmt: common.FormatOpt = common.Format.text,
) -> None:
    """Compute the immutable tags of the build being run."""
    import os
    from datetime import UTC, datetime

    from tagkeeper.cli import gha
    from tagkeeper.tags.compute import (
        DEFAULT_SHA_LENGTH,
        TagOptions,
        compute_tags,
        image_references,
    )
    from tagkeeper.tags.context import detect
    from tagkeeper.tags.metadata import build_time, image_metadata, parse_levels

    config = common.state(ctx).config()
    images: list[str] = _lowercased(list(image)) if image else config.images()
    levels = parse_levels(annotation_levels)
    created = build_time(os.environ, datetime.now(UTC))
    pointer = common.pick(dev_pointer, config.dev_pointer, None)
    options = TagOptions(
        sha_length=common.pick(sha_length, config.sha_length, DEFAULT_SHA_LENGTH),
        v_prefix=not common.pick(bare_version, config.bare_version, False),
        aliases=common.pick(aliases, config.aliases, False),
        dev_pointer=pointer or None,
        env=common.pick(env, config.env, None),
        allow_prerelease=common.pick(allow_prerelease, config.allow_prerelease, False),
        fail_dirty=common.pick(fail_dirty, config.fail_dirty, False),
    )
    image_references(images, [])  # bad images are bad input: fail before any other work
    context = detect(
        os.environ,
        sha=sha,
        ref=ref,
        pr_sha=common.pick(pr_sha, config.pr_sha, "head"),
    )
    result = compute_tags(context, options)
    references = image_references(images, result.tags) if images else list(result.tags)
    metadata = image_metadata(result, created=created, images=images, levels=levels)
    payload = result.to_dict(images)
    payload["labels"] = metadata.labels
    payload["annotations"] = metadata.annotations
    _explain(result)
    if fmt is common.Format.json:
        common.emit_json(payload)
        return
    if fmt is common.Format.github:
        import json

        gha.write_outputs(
            {
                "tags": "\n".join(references),
                "version": payload["version"] or "",
                "env": result.env,
                "channel": str(result.channel),
                "sha": result.sha,
                "sha-source": str(result.context.sha_source),
                "labels": metadata.labels_text(),
                "annotations": metadata.annotations_text(),
                "json": json.dumps(payload, separators=(",", ":")),
            }
        )
        gha.append_summary(_summary(result, references, metadata))
    lines = {
        Printed.tags: references,
        Printed.labels: metadata.labels_text().splitlines(),
        Printed.annotations: metadata.annotations_text().splitlines(),
    }[printed]
    for line in lines:
        common.out(line)
