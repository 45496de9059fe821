"""``tagkeeper check``: refuse image references that an environment must not deploy."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tagkeeper.cli import common
from tagkeeper.errors import PolicyViolation, UsageError

if TYPE_CHECKING:  # the rules and the scanner load when the command runs, not for --help
    from tagkeeper.gate.rules import Policy, Verdict

STDIN = "-"
STDIN_NAME = "<stdin>"
REF_HINT = "write references as [host[:port]/]path[:tag][@sha256:<64 hex digits>]"


def check(  # noqa: PLR0917 - Typer passes options as arguments
    ctx: typer.Context,
    refs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Image references to check, e.g. ghcr.io/owner/app:v1.2.3.",
            metavar="REF...",
            show_default=False,
        ),
    ] = None,
    env: Annotated[
        str | None,
        typer.Option(
            "--env",
            "-e",
            metavar="ENV",
            help="Target environment (default: config 'env', else prod). 'dev' and "
            "'development' get the dev rules; every other name gets the strict prod rules.",
            show_default=False,
        ),
    ] = None,
    allow_prerelease: Annotated[
        bool | None,
        typer.Option(
            "--allow-prerelease/--no-allow-prerelease",
            help="Accept prerelease tags (v1.2.3-rc.1) in prod (default: config "
            "'allow-prerelease', else no).",
            show_default=False,
        ),
    ] = None,
    files: Annotated[
        list[str] | None,
        typer.Option(
            "--file",
            metavar="PATH",
            help="Check the image references in this compose/YAML, env file or shell script "
            "('-' reads stdin). Repeatable.",
            show_default=False,
        ),
    ] = None,
    variables: Annotated[
        list[str] | None,
        typer.Option(
            "--var",
            metavar="NAME=VALUE",
            help="NAME=VALUE used to resolve $NAME in file values. Repeatable.",
            show_default=False,
        ),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            metavar="REPO",
            help="Judge only references to this repository in --file (others, such as "
            "postgres:16, are listed as skipped). Repeatable. Default: config 'image'.",
            show_default=False,
        ),
    ] = None,
    resolve_env: Annotated[
        bool,
        typer.Option(
            "--resolve-env",
            help="Resolve $NAME in file values from this process's environment "
            "(as docker compose does). --var wins over it.",
        ),
    ] = False,
    fmt: common.FormatOpt = common.Format.text,
    scheme: common.VersionSchemeOpt = None,
) -> None:
    """Exit 0 when every reference is acceptable for the environment, 3 when one is not.

    prod refuses latest (any case), untagged references, moving pointers (dev-latest),
    dev-* builds, floating aliases (v1, v1.2), other non-release tags and prereleases
    (unless allowed); a digest-only reference is accepted, a tag@digest is judged by its
    tag. dev refuses latest, untagged references and moving pointers. An unparseable
    REF argument or an unreadable --file is bad input (exit 2).
    """
    from tagkeeper.gate.rules import DEFAULT_POINTERS, Code, policy_for
    from tagkeeper.gate.scan import repositories

    config = common.state(ctx).config()
    env_name = common.pick(env, config.env, "prod")
    allow = common.pick(allow_prerelease, config.allow_prerelease, False)
    pointers = set(DEFAULT_POINTERS)
    configured_pointer = config.dev_pointer
    if configured_pointer:
        pointers.add(configured_pointer)
    refs = refs or []
    files = files or []
    if not refs and not files:
        raise UsageError(
            "nothing to check",
            hint="pass image references (tagkeeper check ghcr.io/o/app:v1.2.3) or --file PATH",
        )
    policy = policy_for(
        env_name,
        allow_prerelease=allow,
        pointers=pointers,
        version_scheme=common.version_scheme(scheme, config),
    )
    only_from = "--only" if only else "config 'image'"
    ours = repositories(only) if only else repositories(config.images(), what=only_from)

    ref_verdicts = policy.judge_all(refs)
    bad_input = [v for v in ref_verdicts if v.code is Code.UNPARSEABLE]
    if bad_input:
        raise UsageError("\n".join(v.message for v in bad_input), hint=REF_HINT)

    values = _variables(variables or [], resolve_env)
    texts = [_read(name) for name in files]  # every file is read before anything is printed

    file_verdicts, file_counts, skipped = _scan_files(files, texts, values, ours, policy)
    results = ref_verdicts + file_verdicts
    if not results and skipped:  # only other teams' images: --only names none of them
        paths = ", ".join(str(f["path"]) for f in file_counts)
        raise UsageError(
            f"none of the {len(skipped)} image references in {paths} is one of "
            f"{', '.join(sorted(only or config.images()))} ({only_from})",
            hint="check the repository names given to --only (or config 'image'); "
            "skipped: " + ", ".join(str(s["ref"]) for s in skipped[:5]),
        )
    if not results:  # a check that saw nothing must not pass (an empty pipe, a wrong file)
        raise UsageError(
            f"no image references found in {', '.join(str(f['path']) for f in file_counts)}",
            hint="the check reads 'image:' keys and IMAGE= / *_IMAGE= assignments; "
            "pass references as arguments otherwise",
        )
    ok = all(v.ok for v in results)
    payload: dict[str, object] = {
        "env": policy.env.name,
        "rules": policy.rule_set,
        "allow_prerelease": allow,
        "ok": ok,
        "results": [v.as_dict() for v in results],
        "files": file_counts,
        "skipped": skipped,
    }

    if fmt is common.Format.json:
        common.emit_json(payload)
    elif fmt is common.Format.github:
        _render_github(payload, results, policy)
    else:
        _render_text(results)

    if skipped:
        listed = ", ".join(f"{s['ref']} ({s['file']}:{s['line']})" for s in skipped[:10])
        more = f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        common.info(
            f"tagkeeper: {len(skipped)} reference(s) skipped, not one of {only_from}: "
            f"{listed}{more}"
        )
    refused = [v for v in results if not v.ok]
    if not refused:
        common.info(
            f"tagkeeper: {len(results)} reference(s) acceptable for {policy.env.name} "
            f"({policy.rule_set} rules)"
        )
    else:
        raise PolicyViolation(
            f"{len(refused)} of {len(results)} reference(s) are not acceptable for "
            f"{policy.env.name}",
            hint=_HINTS.get(policy.rule_set, _HINTS["prod"]),
        )


def _scan_files(
    files: list[str],
    texts: list[str],
    values: dict[str, str] | None,
    ours: frozenset[str],
    policy: Policy,
) -> tuple[list[Verdict], list[dict[str, object]], list[dict[str, object]]]:
    """The verdicts on the references in ``files`` that are ``ours`` (all, when empty),
    each file's counts, and the references skipped as someone else's."""
    from tagkeeper.gate.scan import judge_findings, scan_text, select_findings

    verdicts: list[Verdict] = []
    counts: list[dict[str, object]] = []
    skipped: list[dict[str, object]] = []
    for name, text in zip(files, texts, strict=True):
        shown = STDIN_NAME if name == STDIN else name
        found = scan_text(text, shown, values)
        judged, others = select_findings(found, ours)
        counts.append({"path": shown, "references": len(found), "skipped": len(others)})
        if not found:
            common.info(f"tagkeeper: no image references found in {shown}")
        verdicts.extend(judge_findings(judged, policy))
        skipped += [
            {"ref": v.ref, "file": v.file, "line": v.line} for v in judge_findings(others, policy)
        ]
    return verdicts, counts, skipped


_HINTS = {
    "prod": "deploy exact release tags (ghcr.io/owner/app:v1.2.3) or digests; "
    "tagkeeper tags computes them",
    "dev": "deploy immutable tags (ghcr.io/owner/app:dev-<sha>, pr-<n> or v1.2.3) or "
    "digests, not latest or a moving pointer; tagkeeper tags computes them",
}


def _variables(pairs: list[str], resolve_env: bool) -> dict[str, str] | None:
    if not pairs and not resolve_env:
        return None
    import os

    values: dict[str, str] = dict(os.environ) if resolve_env else {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.isidentifier() or not name.isascii():
            raise UsageError(f"--var {pair!r} is not NAME=VALUE", hint="e.g. --var TAG=v1.2.3")
        values[name] = value
    return values


def _read(name: str) -> str:
    if name == STDIN:
        return sys.stdin.read()
    path = Path(name)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"--file {name}: no such file", hint="check the path") from None
    except IsADirectoryError:
        raise UsageError(f"--file {name}: is a directory, not a file") from None
    except UnicodeDecodeError:
        raise UsageError(
            f"--file {name}: not UTF-8 text", hint="pass compose, env or shell files"
        ) from None
    except OSError as exc:
        raise UsageError(f"--file {name}: cannot be read ({exc.strerror})") from None


def _location(verdict: Verdict) -> str:
    if verdict.file is None:
        return ""
    return f"{verdict.file}:{verdict.line}: "


def _render_text(results: list[Verdict]) -> None:
    for verdict in results:
        if verdict.ok:
            common.out(f"{_location(verdict)}{verdict.ref}: ok ({verdict.message})")
        else:
            common.out(f"{_location(verdict)}{verdict.ref}: {verdict.message} [{verdict.code}]")


def _render_github(payload: dict[str, object], results: list[Verdict], policy: Policy) -> None:
    from tagkeeper.cli import gha
    ok = bool(payload["ok"])
    gha.write_outputs(
        {"ok": "true" if ok else "false", "json": json.dumps(payload, separators=(",", ":"))}
    )
    for verdict in results:
        if verdict.ok:
            common.out(f"{_location(verdict)}{verdict.ref}: ok ({verdict.message})")
        else:
            typer.echo(
                gha.annotation(
                    "error",
                    f"{verdict.ref}: {verdict.message}",
                    file=verdict.file,
                    line=verdict.line,
                    title=f"tagkeeper check: {verdict.code}",
                )
            )
    skipped = payload.get("skipped")
    gha.append_summary(_summary(results, policy, ok, skipped if isinstance(skipped, list) else []))


def _summary(
    results: list[Verdict], policy: Policy, ok: bool, skipped: list[dict[str, object]]
) -> str:
    from tagkeeper.cli.gha import md_code, md_escape

    head = "passed" if ok else "failed"
    lines = [
        f"### tagkeeper check {head} for {md_code(policy.env.name)} ({policy.rule_set} rules)",
        "",
        "| | reference | where | reason |",
        "|---|---|---|---|",
    ]
    for verdict in results:
        mark = "✅" if verdict.ok else "❌"
        where = f"{verdict.file}:{verdict.line}" if verdict.file else ""
        reason = verdict.message if verdict.ok else f"{verdict.code}: {verdict.message}"
        lines.append(
            f"| {mark} | {md_code(verdict.ref)} | {md_escape(where)} | {md_escape(reason)} |"
        )
    if not results:
        lines.append("| | (no references) | | |")
    if skipped:
        lines += ["", f"Skipped (not one of the repositories checked): {len(skipped)}", ""]
        for entry in skipped[:100]:
            where = md_escape(f"{entry['file']}:{entry['line']}")
            lines.append(f"- {md_code(str(entry['ref']))} ({where})")
        if len(skipped) > 100:
            lines.append(f"- and {len(skipped) - 100} more")
    return "\n".join(lines) + "\n"
