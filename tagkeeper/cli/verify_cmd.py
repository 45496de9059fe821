"""``tagkeeper verify``: health and smoke checks of a running service or of an image.

The command parses, builds the adapters (an HTTP client; for ``--image`` the Docker
engine), calls :mod:`tagkeeper.deploy.verify` (or :mod:`tagkeeper.deploy.throwaway`) and
renders the report. SIGTERM is turned into ``KeyboardInterrupt`` while it runs, so the
throw-away container is removed whether the run is stopped with Ctrl-C or ``kill``.

Heavy modules (docker, httpx) are imported inside the command.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tagkeeper.cli import common, deploy_engine, gha
from tagkeeper.errors import UsageError, VerificationFailed

if TYPE_CHECKING:
    from collections.abc import Sequence

    import httpx

    from tagkeeper.deploy.checks import Masker, Request
    from tagkeeper.deploy.spec import DeploySpec
    from tagkeeper.deploy.verify import HealthPolicy, VerifyReport


class Network(StrEnum):
    host = "host"
    bridge = "bridge"


class Pull(StrEnum):
    missing = "missing"
    always = "always"
    never = "never"


def _seconds(flag: str, value: str | None, default: float) -> float:
    from tagkeeper.config import parse_duration

    if value is None:
        return default
    try:
        return parse_duration(value)
    except UsageError as exc:
        raise UsageError(f"{flag} {exc.message}", hint=exc.hint) from None


def _variables(values: list[str] | None, environ: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or []:
        name, sep, value = item.partition("=")
        from tagkeeper.deploy.spec import VARIABLE_RE

        if not VARIABLE_RE.fullmatch(name):
            raise UsageError(
                f"--env {name!r}: not a variable name", hint="write --env NAME=VALUE or --env NAME"
            )
        if sep:
            out[name] = value
        elif name in environ:
            out[name] = environ[name]
    return out


# -- verify --------------------------------------------------------------------------------


def verify(  # noqa: PLR0917 - Typer passes options as arguments
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            metavar="URL",
            show_default=False,
            help="Check a service that already runs, e.g. http://127.0.0.1:8520.",
        ),
    ] = None,
    image: Annotated[
        str | None,
        typer.Option(
            "--image",
            "-i",
            metavar="REF",
            show_default=False,
            help="Check this image in a throw-away container, always removed.",
        ),
    ] = None,
    health: Annotated[
        list[str] | None,
        typer.Option(
            "--health",
            metavar="PATH",
            show_default=False,
            help="Health path (repeatable; default /actuator/health): 2xx, and status UP "
            "when the body says a status.",
        ),
    ] = None,
    interval: Annotated[
        str | None,
        typer.Option(
            "--interval",
            metavar="DURATION",
            show_default=False,
            help="Between health polls (default 2s).",
        ),
    ] = None,
    successes: Annotated[
        int | None,
        typer.Option(
            "--successes",
            min=1,
            show_default=False,
            help="Healthy answers in a row needed (default 3).",
        ),
    ] = None,
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout",
            metavar="DURATION",
            show_default=False,
            help="Give up on health after this long (default 120s).",
        ),
    ] = None,
    smoke: Annotated[
        Path | None,
        typer.Option(
            "--smoke",
            metavar="FILE",
            dir_okay=False,
            show_default=False,
            help="TOML file of [[check]] tables, run once health passes.",
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            min=1,
            max=65535,
            show_default=False,
            help="--image: the port the app listens on (default 8520).",
        ),
    ] = None,
    port_env: Annotated[
        str | None,
        typer.Option(
            "--port-env",
            metavar="NAME",
            show_default=False,
            help="--image: the variable that tells the app its port (SERVER_PORT).",
        ),
    ] = None,
    network: Annotated[
        Network | None,
        typer.Option(
            "--network",
            show_default=False,
            help="--image: host, or bridge publishing 127.0.0.1:PORT (default).",
        ),
    ] = None,
    env_file: Annotated[
        Path | None,
        typer.Option(
            "--env-file",
            metavar="FILE",
            dir_okay=False,
            show_default=False,
            help="--image: a Docker env file (KEY=VALUE lines).",
        ),
    ] = None,
    env_vars: Annotated[
        list[str] | None,
        typer.Option(
            "--env",
            "-e",
            metavar="NAME=VALUE",
            show_default=False,
            help="--image: a variable for the container (NAME alone: from here). Repeatable.",
        ),
    ] = None,
    pull: Annotated[
        Pull, typer.Option("--pull", help="--image: pull when missing (default), always, never.")
    ] = Pull.missing,
    deploy_env: Annotated[
        str | None,
        typer.Option(
            "--deploy-env",
            metavar="ENV",
            show_default=False,
            help="Take the defaults (health, smoke, port, env...) from [deploy.ENV].",
        ),
    ] = None,
    log_lines: Annotated[
        int, typer.Option("--log-lines", min=0, help="Log lines shown when a check fails.")
    ] = 30,
    fmt: common.FormatOpt = common.Format.text,
) -> None:
    """Check a running service (--url) or an image (--image): health, then smoke checks.

    Exits 13 when a check fails, after saying which and why (with the container's log).
    """  # fmt: skip
    from tagkeeper.deploy.checks import load_smoke, render, secret_values
    from tagkeeper.deploy.verify import HealthPolicy

    if (url is None) == (image is None):
        raise UsageError("give either --url or --image", hint="e.g. --url http://127.0.0.1:8520")
    spec = deploy_engine.spec_for(ctx, deploy_env) if deploy_env is not None else None
    if fmt is common.Format.github:
        gha.preflight()
    environ = deploy_engine.environ()
    policy = HealthPolicy(
        paths=tuple(health) if health else (spec.health if spec else ("/actuator/health",)),
        interval=_seconds("--interval", interval, spec.interval if spec else 2.0),
        successes=successes or (spec.successes if spec else 3),
        timeout=_seconds("--timeout", timeout, spec.health_timeout if spec else 120.0),
    )
    if policy.interval <= 0 or policy.timeout <= 0:
        raise UsageError("--interval and --timeout must be longer than 0")
    _check_paths(policy.paths)
    smoke_file = smoke or (spec.smoke if spec else None)
    rendered = render(load_smoke(smoke_file) if smoke_file else (), environ)
    masker = rendered.masker
    reaped: list[str] = []
    with (
        deploy_engine.http_client() as client,
        deploy_engine.interrupts(
            "the throw-away container was removed" if image else "nothing was changed"
        ),
    ):
        if url is not None:
            _check_url(url)
            subject = url
            report = _verify_url(url, policy, rendered.requests, client, masker)
        elif image is not None:
            subject = image
            container_env = _container_env(spec, env_file, env_vars, environ)
            masker.add(*secret_values(container_env))
            report, reaped = _verify_image(
                image, spec, policy=policy, requests=rendered.requests, client=client,
                masker=masker, port=port, port_env=port_env, network=network,
                env=container_env, pull=pull, log_lines=log_lines,
            )  # fmt: skip
    _show_verify(report, subject, reaped, fmt)
    if not report.ok:
        raise VerificationFailed(
            f"verification of {subject} failed: {report.reason}",
            hint="nothing was switched; fix the image or the checks",
        )


def _check_paths(paths: tuple[str, ...]) -> None:
    for path in paths:
        if not path.startswith("/") or any(ch.isspace() for ch in path):
            raise UsageError(f"--health {path!r}: not a path starting with '/'")


def _check_url(url: str) -> None:
    import re

    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s]*)?", url):
        raise UsageError(f"--url {url!r}: not an http:// or https:// URL")


def _verify_url(
    url: str,
    policy: HealthPolicy,
    requests: Sequence[Request],
    client: httpx.Client,
    masker: Masker,
) -> VerifyReport:
    from tagkeeper.cli.deploy_render import progress
    from tagkeeper.deploy.verify import verify

    return verify(url, policy, requests, client=client, masker=masker, progress=progress)


def _container_env(
    spec: DeploySpec | None,
    env_file: Path | None,
    env_vars: list[str] | None,
    environ: dict[str, str],
) -> dict[str, str]:
    from tagkeeper.deploy.containers import read_env_file

    env: dict[str, str] = {}
    file = env_file or (spec.env_file if spec else None)
    if file is not None:
        env.update(read_env_file(file, environ))
    if spec is not None:
        env.update(spec.env)
    env.update(_variables(env_vars, environ))
    return env


def _verify_image(
    image: str,
    spec: DeploySpec | None,
    *,
    policy: HealthPolicy,
    requests: Sequence[Request],
    client: httpx.Client,
    masker: Masker,
    port: int | None,
    port_env: str | None,
    network: Network | None,
    env: dict[str, str],
    pull: Pull,
    log_lines: int,
) -> tuple[VerifyReport, list[str]]:
    from tagkeeper.cli.deploy_render import progress
    from tagkeeper.deploy.throwaway import Throwaway, verify_image
    from tagkeeper.refs import parse_reference

    parse_reference(image)  # bad input before the engine is asked
    options = Throwaway(
        port=port or (spec.port if spec and spec.port else 8520),
        network=str(network or (spec.network if spec else "bridge")),
        port_env=port_env or (spec.port_env if spec else None),
        env=env,
        volumes=spec.volumes if spec else (),
        command=spec.command if spec else None,
        user=spec.user if spec else None,
        pull=str(pull),
    )
    runtime = deploy_engine.runtime()
    try:
        report, reaped = verify_image(
            runtime, image, options, policy=policy, smoke=requests, client=client,
            masker=masker, progress=progress, log_lines=log_lines,
        )  # fmt: skip
    finally:
        close = getattr(runtime, "close", None)
        if close is not None:
            close()
    for name in reaped:
        common.info(f"removed {name}, left by a verify run that was killed")
    return report, reaped


def _show_verify(report: VerifyReport, subject: str, reaped: list[str], fmt: common.Format) -> None:
    from tagkeeper.cli import deploy_render

    if fmt is common.Format.json:
        common.emit_json({"subject": subject, **report.as_dict(), "reaped": reaped})
    else:
        deploy_render.print_lines(deploy_render.check_lines(report))
        verdict = "passed" if report.ok else "FAILED"
        common.info(f"verify {subject}: {verdict}: {report.reason}")
    if not report.ok:
        deploy_render.show_failure(report)
    if fmt is common.Format.github:
        import json

        gha.write_outputs(
            {
                "ok": "true" if report.ok else "false",
                "reason": report.reason,
                "json": json.dumps({"subject": subject, **report.as_dict()}),
            }
        )
        gha.append_summary(deploy_render.verify_summary(report, subject))
        if not report.ok:
            typer.echo(gha.annotation("error", report.reason, title="tagkeeper verify"), err=True)
