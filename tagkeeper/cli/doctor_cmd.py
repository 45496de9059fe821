"""``tagkeeper doctor``: can this token list and delete this GHCR package? Deletes nothing."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer

from tagkeeper.cli import common
from tagkeeper.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from tagkeeper.registries.ghcr import Diagnosis

_MARK = {"ok": "ok", "missing": "MISSING", "unknown": "not verified", "warning": "warning"}


def doctor(  # noqa: PLR0917 - Typer passes options as arguments
    ctx: typer.Context,
    image: Annotated[
        str | None,
        typer.Option(
            "--image",
            "-i",
            help="The package to check, e.g. ghcr.io/OWNER/PACKAGE "
            "(default: the first config 'image').",
            show_default=False,
        ),
    ] = None,
    token: common.TokenOpt = None,
    api_url: common.ApiUrlOpt = None,
    registry_url: common.RegistryUrlOpt = None,
    fmt: common.FormatOpt = common.Format.text,
) -> None:
    """Tell whether the token can list and delete the package's versions, and what is missing.

    Never deletes anything and never prints the token (only its kind). Exit codes: 0 all
    required pieces are there (some may be unverifiable: see the output), 4 something
    required is missing, 5 the API could not be reached.
    """
    from tagkeeper.registries.factory import BackendOptions, open_backend, token_from_env
    from tagkeeper.registries.ghcr import GhcrBackend
    from tagkeeper.transport import build_client

    config = common.state(ctx).config()
    target = image or next(iter(config.images()), None)
    if not target:
        raise UsageError("no image to check", hint="pass --image ghcr.io/OWNER/PACKAGE")
    environ = dict(os.environ)
    options = BackendOptions(
        kind="ghcr",
        token=token_from_env(token, environ),
        api_url=common.url_setting(ctx, "api-url", api_url, environ),
        registry_url=common.url_setting(ctx, "registry-url", registry_url, environ),
        environ=environ,
    )
    with build_client() as client:
        backend = open_backend(target, options, client)
        if not isinstance(backend, GhcrBackend):  # pragma: no cover - kind is forced
            raise UsageError("doctor checks GHCR packages only")
        diagnosis = backend.diagnose()
    if fmt is common.Format.json:
        common.emit_json(diagnosis.to_json())
    else:
        common.out(
            f"{diagnosis.image}: token {diagnosis.token_kind}, owner "
            f"{diagnosis.owner_kind or 'unknown'}"
        )
        for check in diagnosis.checks:
            common.out(f"  {_MARK[check.status]:<13} {check.name:<12} {check.detail}")
            if check.fix and check.status != "ok":
                common.out(f"  {'':<13} {'':<12} fix: {check.fix}")
    if fmt is common.Format.github:
        _github(diagnosis)
    if not diagnosis.ok:
        raise typer.Exit(int(ExitCode.AUTH))


def _github(diagnosis: Diagnosis) -> None:
    """Step outputs, a job summary and an annotation per missing piece."""
    import json

    from tagkeeper.cli import gha
    gha.write_outputs(
        {"ok": "true" if diagnosis.ok else "false", "json": json.dumps(diagnosis.to_json())}
    )
    rows = ["| check | status | detail |", "|---|---|---|"]
    for check in diagnosis.checks:
        name, detail = gha.md_escape(check.name), gha.md_escape(check.detail)
        rows.append(f"| {name} | {_MARK[check.status]} | {detail} |")
        if check.status == "missing":
            message = check.detail + (f" Fix: {check.fix}" if check.fix else "")
            typer.echo(gha.annotation("error", message, title=f"tagkeeper doctor: {check.name}"))
    gha.append_summary(
        f"### tagkeeper doctor: {gha.md_code(diagnosis.image)}\n\n" + "\n".join(rows)
    )
