"""The deploy commands' adapters, and ``deploy``/``rollback`` through the deploy engine.

The adapters (:func:`runtime`, :func:`http_client`, :func:`environ`; tests replace them)
are built here for ``verify``, ``status``, ``deploy`` and ``rollback``. Those two call
:func:`engine_spec` first: when the environment's ``[deploy.ENV]`` (or ``--strategy``)
names a container strategy, they hand over to :func:`run_deploy` / :func:`run_rollback`,
which run :class:`~tagkeeper.deploy.engine.Engine` with the ledger and the lock and render
its result. Otherwise they run the team's script as before, holding the environment's
lock when a ``[deploy.ENV]`` table exists (:func:`script_lock`).
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tagkeeper.cli import common, gha
from tagkeeper.errors import UsageError, VerificationFailed


class Strategy(StrEnum):  # the choices of --strategy (the spec's own enum loads later)
    script = "script"
    recreate = "recreate"
    bluegreen = "bluegreen"
    canary = "canary"


if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import httpx

    from tagkeeper.deploy.containers import ContainerRuntime
    from tagkeeper.deploy.engine import DeployResult, Engine
    from tagkeeper.deploy.lock import DeployLock
    from tagkeeper.deploy.spec import DeploySpec
    from tagkeeper.rollback.github import GitHubDeployments
    from tagkeeper.rollback.ledger import Ledger
    from tagkeeper.rollback.resolve import RollbackTarget


# -- adapters (tests replace these) ---------------------------------------------------------


def runtime() -> ContainerRuntime:
    """The Docker engine (``$DOCKER_HOST`` or the default socket)."""
    from tagkeeper.deploy.containers import DockerRuntime

    return DockerRuntime.connect()


def http_client() -> httpx.Client:
    """The client the checks use: to the service directly, no proxy from the environment,
    no redirects followed."""
    import httpx

    return httpx.Client(trust_env=False, follow_redirects=False)


def slot_tools(spec: DeploySpec, client: httpx.Client) -> dict[str, Any]:
    """bluegreen/canary: the proxy and the metrics source of ``[deploy.ENV]``."""
    from tagkeeper.deploy.strategies.slotkit import build_tools

    return build_tools(spec, client)


def environ() -> dict[str, str]:
    import os

    return dict(os.environ)


@contextmanager
def interrupts(what: str) -> Iterator[None]:
    """SIGTERM raises ``KeyboardInterrupt`` (as Ctrl-C does) while the block runs, so the
    code inside undoes what it must; then the run exits 128 + the signal's number, saying
    ``what`` was done about it."""
    import signal
    import threading

    received = [int(signal.SIGINT)]

    def stop(signum: int, _frame: object) -> None:
        received[0] = signum
        raise KeyboardInterrupt

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, stop) if main else None
    try:
        yield
    except KeyboardInterrupt:
        name = signal.Signals(received[0]).name
        common.error(f"interrupted by {name}: {what}")
        raise typer.Exit(128 + received[0]) from None
    finally:
        if main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def spec_for(ctx: typer.Context, env: str) -> DeploySpec:
    """The environment's ``[deploy.ENV]``; :class:`UsageError` when there is none."""
    spec = common.state(ctx).config().deploy_spec(env)
    if spec is None:
        source = common.state(ctx).config().source
        raise UsageError(
            f"no [deploy.{env}] table in {source or 'the configuration (none found)'}",
            hint="describe the service there (image, container, port...), or pass --config",
        )
    return spec


StrategyOpt = Annotated[
    Strategy | None,
    typer.Option(
        "--strategy",
        show_default=False,
        help="script (run COMMAND), recreate, bluegreen or canary (default: [deploy.ENV] "
        "'strategy', else script).",
    ),
]
LockWaitOpt = Annotated[
    str | None,
    typer.Option(
        "--lock-wait",
        metavar="DURATION",
        show_default=False,
        help="Wait this long for another deploy of the environment to finish (default: "
        "exit 15 at once).",
    ),
]
TimeoutOpt = Annotated[
    str | None,
    typer.Option(
        "--timeout",
        metavar="DURATION",
        show_default=False,
        help="Health timeout of each check (default: [deploy.ENV] health-timeout).",
    ),
]
IntervalOpt = Annotated[
    str | None,
    typer.Option(
        "--interval",
        metavar="DURATION",
        show_default=False,
        help="Between health polls (default: [deploy.ENV] interval).",
    ),
]
WatchOpt = Annotated[
    str | None,
    typer.Option(
        "--watch",
        metavar="DURATION",
        show_default=False,
        help="bluegreen/canary: watch this long after the release ('0s': off).",
    ),
]


@dataclass(frozen=True, slots=True)
class EngineFlags:
    """The command-line flags that concern the engine."""

    strategy: Strategy | None = None
    lock_wait: str | None = None
    timeout: str | None = None
    interval: str | None = None
    watch: str | None = None
    fmt: str = "text"
    ledger_path: Path | None = None
    github: bool = False
    repo: str | None = None
    token: str | None = None
    api_url: str | None = None
    ref: str | None = None


def duration_flag(flag: str, value: str | None) -> float | None:
    """A duration flag's seconds (``None`` when not given), in the configuration's syntax."""
    from tagkeeper.config import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value)
    except UsageError as exc:
        raise UsageError(f"{flag} {exc.message}", hint=exc.hint) from None


def engine_spec(ctx: typer.Context, environment: str, flags: EngineFlags) -> DeploySpec | None:
    """The spec to deploy with when a container strategy applies, else ``None`` (script).

    ``--strategy`` overrides the table's; a container strategy without a table is bad input.
    Duration flags override the table's values (in the configuration's syntax).
    """
    from tagkeeper.deploy.spec import CONTAINER_STRATEGIES, PROXY_STRATEGIES
    from tagkeeper.deploy.spec import Strategy as SpecStrategy

    config = common.state(ctx).config()
    spec = config.deploy_spec(environment)
    chosen = SpecStrategy(str(flags.strategy)) if flags.strategy else None
    if spec is None:
        if chosen is not None and chosen in CONTAINER_STRATEGIES:
            raise UsageError(
                f"--strategy {chosen} needs a [deploy.{environment}] table describing the "
                "service (image, container, port...)",
                hint=f"add it to {config.source or 'tagkeeper.toml'}, or pass --config FILE",
            )
        return None
    if chosen is not None:
        spec = spec.with_overrides(strategy=chosen)
    if spec.strategy not in CONTAINER_STRATEGIES:
        return None
    if flags.watch is not None and spec.strategy not in PROXY_STRATEGIES:
        raise UsageError(
            f"--watch applies to the bluegreen and canary strategies, not {spec.strategy}",
            hint="a recreate deploy is checked once after the start; drop --watch",
        )
    changes: dict[str, float] = {}
    for flag, field_name, value in (
        ("--timeout", "health_timeout", flags.timeout),
        ("--interval", "interval", flags.interval),
        ("--watch", "watch", flags.watch),
    ):
        seconds = duration_flag(flag, value)
        if seconds is not None:
            if seconds <= 0 and field_name != "watch":
                raise UsageError(f"{flag} must be longer than 0")
            changes[field_name] = seconds
    return spec.with_overrides(**changes) if changes else spec


def check_engine_args(
    command: list[str] | None, no_resolve_digest: bool, require_digest: bool, spec: DeploySpec
) -> None:
    """Flags of the script path that a container strategy cannot honour are bad input."""
    if command:
        raise UsageError(
            f"strategy {spec.strategy} runs the containers itself; it takes no COMMAND",
            hint="drop the command after '--', or pass --strategy script to run it",
        )
    if no_resolve_digest:
        raise UsageError(
            f"strategy {spec.strategy} pulls the image: it must be in a registry",
            hint="push it first, or use --strategy script for an image only on this host",
        )
    del require_digest  # the pull always tells the digest


def check_script_flags(flags: EngineFlags) -> None:
    """Flags that only the engine's strategies use are bad input for a script deploy."""
    for flag, value in (("--timeout", flags.timeout), ("--interval", flags.interval),
                        ("--watch", flags.watch)):  # fmt: skip
        if value is not None:
            raise UsageError(
                f"{flag} applies to the recreate, bluegreen and canary strategies",
                hint="describe the service in [deploy.ENV] to use one",
            )
    if flags.fmt != "text":
        raise UsageError("--format json|github applies to deploys through the engine")


def _command_line() -> str:
    """This command line with secret values hidden (it is written to the lock file)."""
    from tagkeeper.action import shown

    return "tagkeeper " + shown(sys.argv[1:])


def _lock(
    ledger_path: Path, spec_env: str, container: str, wait: float, user: str | None
) -> DeployLock:
    from tagkeeper.deploy.lock import DeployLock, Holder, lock_path

    return DeployLock(
        lock_path(ledger_path, spec_env, container),
        Holder.current([_command_line()], user),
        what=f"{spec_env} (container {container})",
        wait=wait,
    )


@contextmanager
def script_lock(
    ctx: typer.Context, environment: str, ledger: Ledger, lock_wait: str | None
) -> Iterator[None]:
    """Hold the environment's lock around a script deploy when ``[deploy.ENV]`` exists."""
    from tagkeeper.rollback.ledger import Actor

    spec = common.state(ctx).config().deploy_spec(environment)
    if spec is None:
        yield
        return
    user = Actor.from_environ(environ()).user
    wait = duration_flag("--lock-wait", lock_wait) or 0.0
    with _lock(ledger.path, environment, spec.container or "script", wait, user) as lock:
        if lock.taken_over is not None:
            common.info(
                f"warning: took over the lock of a deploy that is gone: "
                f"{lock.taken_over.describe()}"
            )
        yield


@contextmanager
def engine_for(ctx: typer.Context, spec: DeploySpec, flags: EngineFlags) -> Iterator[Engine]:
    """The engine for ``spec`` with the ledger, the lock and progress on stderr."""
    from tagkeeper.cli import deploy_render
    from tagkeeper.deploy.engine import Engine
    from tagkeeper.deploy.spec import PROXY_STRATEGIES
    from tagkeeper.rollback.ledger import Actor, Ledger, resolve_path

    variables = environ()
    actor = Actor.from_environ(variables)
    path = resolve_path(flags.ledger_path, variables, common.state(ctx).config().ledger)
    wait = duration_flag("--lock-wait", flags.lock_wait) or 0.0
    docker = runtime()
    try:
        with Ledger(path, create=True) as ledger, http_client() as client:
            tools = slot_tools(spec, client) if spec.strategy in PROXY_STRATEGIES else None
            yield Engine(
                spec,
                runtime=docker,
                ledger=ledger,
                client=client,
                actor=actor,
                lock=_lock(path, spec.environment, spec.container_name, wait, actor.user),
                on_event=deploy_render.EventPrinter(),
                environ=variables,
                collaborators=tools,
            )
    finally:
        close = getattr(docker, "close", None)
        if close is not None:
            close()


def run_deploy(ctx: typer.Context, spec: DeploySpec, image: str, flags: EngineFlags,
               *, allow_prerelease: bool) -> None:  # fmt: skip
    """``deploy`` with a container strategy: check, lock, repair, pull, switch, record."""
    from tagkeeper.deploy.engine import plan_request

    request = plan_request(spec, image, allow_prerelease=allow_prerelease)
    if flags.fmt == "github":
        gha.preflight()
    recorder = _github_recorder(ctx, flags)
    common.info(
        f"tagkeeper: deploying {request.reference} to {spec.environment} "
        f"({spec.strategy}, container {spec.container_name})"
    )
    with interrupts(_UNDONE), engine_for(ctx, spec, flags) as engine:
        result = engine.deploy(request)
    _finish(result, flags, recorder)


def run_rollback(ctx: typer.Context, spec: DeploySpec, target: RollbackTarget,
                 flags: EngineFlags, *, dry_run: bool) -> None:  # fmt: skip
    """``rollback`` with a container strategy: deploy the target through the same steps."""
    from tagkeeper.deploy.engine import rollback_request

    request = rollback_request(spec, target)
    if dry_run:
        from tagkeeper.deploy.spec import PROXY_STRATEGIES

        how = (
            "switch every request to the idle slot if it holds that digest, else pull it "
            "into the idle slot, check it and switch"
            if spec.strategy in PROXY_STRATEGIES
            else f"restart {spec.container_name}-previous if it holds that digest, else pull "
            "it and pre-check a candidate"
        )
        common.out(
            f"would roll {spec.environment} back to {request.reference} with {spec.strategy} "
            f"(container {spec.container_name}): {how}"
        )
        return
    if flags.fmt == "github":
        gha.preflight()
    recorder = _github_recorder(ctx, flags)
    common.info(
        f"tagkeeper: rolling {spec.environment} back to {request.reference} "
        f"({spec.strategy}, container {spec.container_name})"
    )
    with interrupts(_UNDONE), engine_for(ctx, spec, flags) as engine:
        result = engine.deploy(request)
    _finish(result, flags, recorder)


_UNDONE = (
    "what served before was restored and the deploy recorded as failed (interrupted); "
    "tagkeeper status shows what runs"
)


@dataclass
class _GitHub:
    deployments: GitHubDeployments
    ref: str | None
    ci_run_url: str | None


def _github_recorder(ctx: typer.Context, flags: EngineFlags) -> _GitHub | None:
    """GitHub Deployments, built (and its token checked) before anything changes."""
    if not flags.github:
        return None
    from tagkeeper.cli.rollback_cmd import _github
    from tagkeeper.rollback.ledger import Actor

    variables = environ()
    return _GitHub(
        _github(ctx, flags.repo, flags.token, flags.api_url),
        flags.ref or variables.get("GITHUB_SHA"),
        Actor.from_environ(variables).ci_run_url,
    )


def _record_github(result: DeployResult, github: _GitHub) -> None:
    from tagkeeper.refs import parse_reference

    ref = parse_reference(result.image)
    github.deployments.record(
        environment=result.environment,
        repository=ref.repository,
        tag=ref.tag or "",
        status=result.status,
        ref=github.ref or ref.tag or "",
        digest=result.digest,
        rollback=result.rollback,
        ci_run_url=github.ci_run_url,
    )


def _finish(result: DeployResult, flags: EngineFlags, github: _GitHub | None) -> None:
    import json

    from tagkeeper.cli import deploy_render
    from tagkeeper.errors import TagkeeperError

    if github is not None:
        try:
            _record_github(result, github)
        except TagkeeperError as exc:
            common.error(f"warning: the deploy could not be recorded in GitHub: {exc.message}")
    for line in deploy_render.result_lines(result):
        common.info(line)
    for report in result.reports.values():
        if not report.ok:
            deploy_render.show_failure(report)
    if flags.fmt == "json":
        common.emit_json(result.as_dict())
    elif flags.fmt == "github":
        # the action's own deploy runs a script: these are for a workflow that runs
        # tagkeeper on a host itself (the gap and the rest are in json)
        gha.write_outputs(
            {
                "ok": "true" if result.exit_code == 0 else "false",
                "reason": result.reason or "",
                "digest": result.digest or "",
                "json": json.dumps(result.as_dict()),
            }
        )
        gha.append_summary(deploy_render.deploy_summary(result))
    raise_for(result)


def raise_for(result: DeployResult) -> None:
    """The error (and exit code) of a deploy that did not succeed: 14 when it was rolled
    back automatically, 8 when the watch found nothing to roll back to, else 13."""
    from tagkeeper.errors import ExitCode, NoRollbackTarget, RolledBack

    if result.exit_code == 0:
        return
    kind = "rollback" if result.rollback else "deploy"
    text = f"{kind} of {result.image} to {result.environment} "
    if result.exit_code == ExitCode.ROLLED_BACK:
        raise RolledBack(
            text + f"was rolled back automatically ({result.reason}): {result.message}",
            hint=f"tagkeeper status --env {result.environment} shows what serves; the "
            "numbers that decided are in the ledger (tagkeeper history) and --format json",
        )
    if result.exit_code == ExitCode.NO_TARGET:
        raise NoRollbackTarget(text + f"failed ({result.reason}): {result.message}",
                               hint="deploy a known-good version explicitly")  # fmt: skip
    raise VerificationFailed(
        text + f"failed ({result.reason}): {result.message}",
        hint="nothing was switched: what served before still serves",
    )
