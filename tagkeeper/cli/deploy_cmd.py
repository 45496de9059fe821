"""``tagkeeper deploy | rollback | status``: deploys on a host, and what runs there.

``deploy`` and ``rollback`` run through the deploy engine when the environment's
``[deploy.ENV]`` (or ``--strategy``) names a container strategy
(:mod:`tagkeeper.cli.deploy_engine`), else they check, pin and record a deploy around the
team's own command (:mod:`tagkeeper.deploy.script`), as they always did. ``status`` reads
what runs, the ledger and the lock, and lists the drift between them.

Heavy modules (docker, httpx, sqlite3, PyGithub) are imported inside the commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tagkeeper.cli import common, deploy_engine, rollback_cmd
from tagkeeper.errors import UsageError

if TYPE_CHECKING:
    from tagkeeper.deploy.passenv import CommandEnv
    from tagkeeper.deploy.script import DeployPlan, Recorder
    from tagkeeper.rollback.ledger import Ledger


PassEnvOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--pass-env",
        metavar="NAME",
        show_default=False,
        help="Script: also give COMMAND this variable of tagkeeper's environment, or every "
        "one starting with PREFIX for 'PREFIX*' (repeatable; a secret only when named "
        "exactly, with a warning). By default it gets IMAGE, IMAGE_DIGEST, IMAGE_TAG, "
        "PATH, HOME, the locale, DOCKER_HOST... and no token.",
    ),
]


class TextJson(StrEnum):
    text = "text"
    json = "json"


@dataclass(frozen=True, slots=True)
class _Recording:
    """Where ``deploy`` and ``rollback`` record: the ledger, and GitHub when asked."""

    ledger_path: Path | None
    github: bool
    ref: str | None
    repo: str | None
    token: str | None
    api_url: str | None

    def recorders(self, ctx: typer.Context, ledger: Ledger, plan: DeployPlan) -> list[Recorder]:
        from tagkeeper.deploy.script import GitHubRecorder, LedgerRecorder
        from tagkeeper.rollback.ledger import Actor

        environ = deploy_engine.environ()
        actor = Actor.from_environ(environ)
        recorders: list[Recorder] = [LedgerRecorder(ledger, actor)]
        if self.github:
            recorders.append(
                GitHubRecorder(
                    rollback_cmd._github(ctx, self.repo, self.token, self.api_url),
                    ref=self.ref or environ.get("GITHUB_SHA") or plan.tag,
                    ci_run_url=actor.ci_run_url,
                )
            )
        return recorders


def _check_digest_flags(no_resolve: bool, required: bool) -> None:
    if no_resolve and required:
        raise UsageError("--no-resolve-digest and --require-digest cannot be used together")


def _with_digest(
    ctx: typer.Context,
    plan: DeployPlan,
    flags: rollback_cmd.RegistryFlags,
    *,
    no_resolve: bool,
    required: bool,
) -> DeployPlan:
    """``plan`` with its digest resolved from the registry (unless it has one or told not
    to): one manifest ``HEAD`` with read access only, reached as ``flags`` say."""
    from dataclasses import replace

    from tagkeeper.deploy.script import resolve_digest

    resolver = None if no_resolve else rollback_cmd._registry_resolver(ctx, flags)
    resolved = resolve_digest(plan, resolver, required=required)
    if resolver is None:
        return resolved
    fallbacks = tuple(rollback_cmd.notes_of(resolver))
    return replace(resolved, notes=resolved.notes + fallbacks) if fallbacks else resolved


def _pass_env(ctx: typer.Context, environment: str, flag: list[str] | None) -> tuple[str, ...]:
    """What the command gets besides the defaults: config ``pass-env``, ``[deploy.ENV]``
    ``pass-env`` and ``--pass-env`` (checked before anything runs)."""
    from tagkeeper.deploy.passenv import parse_patterns

    config = common.state(ctx).config()
    spec = config.deploy_spec(environment)
    return (
        *parse_patterns(config.pass_env or ()),
        *(spec.pass_env if spec is not None else ()),
        *parse_patterns(flag or []),
    )


def _tell(chosen: CommandEnv) -> None:
    """Warn about each secret passed; say what a prefix left out, and what is not set."""
    for name in chosen.secrets:
        common.info(
            f"warning: the deploy command gets {name}, which looks like a secret, because "
            "pass-env names it; the command may print it or hand it on"
        )
    for pattern, names in chosen.withheld.items():
        common.info(
            f"note: pass-env {pattern!r} leaves out {', '.join(names)}: it looks like a "
            "secret, and a prefix never passes one; name it to pass it"
        )
    for name in chosen.missing:
        common.info(f"note: pass-env {name}: not set here, so the deploy command does not get it")


def _no_pass_env(flag: list[str] | None, strategy: str) -> None:
    if flag:
        raise UsageError(
            f"--pass-env applies to the script strategy; {strategy} runs no command of yours",
            hint="drop --pass-env, or pass --strategy script to run a command",
        )


def _run(
    ctx: typer.Context,
    plan: DeployPlan,
    recording: _Recording,
    lock_wait: str | None = None,
    pass_env: tuple[str, ...] = (),
) -> None:
    from tagkeeper.deploy.script import command_environment, execute

    environ = deploy_engine.environ()
    _tell(command_environment(plan, environ, pass_env))
    with (
        rollback_cmd._open_ledger(ctx, recording.ledger_path) as ledger,
        deploy_engine.script_lock(ctx, plan.environment, ledger, lock_wait),
    ):
        recorders = recording.recorders(ctx, ledger, plan)
        kind = "rolling back" if plan.rollback else "deploying"
        common.info(f"tagkeeper: {kind} {plan.image} to {plan.environment}: {plan.describe()}")
        outcome = execute(plan, recorders, environ=environ, pass_env=pass_env)
    for problem in outcome.problems:
        common.error(f"warning: the end of the deploy could not be recorded: {problem}")
    if outcome.exit_code != 0:
        common.error(f"the deploy command exited with {outcome.exit_code}; recorded as failed")
        raise typer.Exit(outcome.exit_code)


def _warn(plan: DeployPlan) -> None:
    for note in plan.notes:
        common.info(f"warning: {note}")


def deploy(  # noqa: PLR0917
    ctx: typer.Context,
    command: rollback_cmd.CommandArg = None,
    env: rollback_cmd.EnvOpt = None,
    image: rollback_cmd.ReferenceOpt = "",
    no_resolve_digest: rollback_cmd.NoResolveOpt = False,
    require_digest: rollback_cmd.RequireDigestOpt = False,
    allow_prerelease: rollback_cmd.AllowPreOpt = None,
    github: rollback_cmd.GitHubOpt = False,
    ref: rollback_cmd.GitRefOpt = None,
    repo: rollback_cmd.RepoOpt = None,
    token: common.TokenOpt = None,
    api_url: common.ApiUrlOpt = None,
    registry_url: common.RegistryUrlOpt = None,
    ledger_path: rollback_cmd.LedgerOpt = None,
    strategy: deploy_engine.StrategyOpt = None,
    lock_wait: deploy_engine.LockWaitOpt = None,
    timeout: deploy_engine.TimeoutOpt = None,
    interval: deploy_engine.IntervalOpt = None,
    watch: deploy_engine.WatchOpt = None,
    pass_env: PassEnvOpt = None,
    fmt: common.FormatOpt = common.Format.text,
) -> None:
    """Deploy IMAGE: with [deploy.ENV]'s strategy (recreate: pre-check a candidate, then
    replace the container), or around COMMAND (script), exiting with COMMAND's code.

    For a script, IMAGE is the reference exactly as given; IMAGE_DIGEST the digest resolved
    (or given), IMAGE_TAG the tag.
    """
    from tagkeeper.deploy.script import plan_deploy

    if not image:
        raise UsageError("--image is required", hint="e.g. --image ghcr.io/o/app:v1.2.3")
    _check_digest_flags(no_resolve_digest, require_digest)
    environment = rollback_cmd._env_name(ctx, env)
    flags = deploy_engine.EngineFlags(
        strategy, lock_wait, timeout, interval, watch, str(fmt), ledger_path, github, repo,
        token, api_url, ref,
    )  # fmt: skip
    spec = deploy_engine.engine_spec(ctx, environment, flags)
    if spec is not None:
        deploy_engine.check_engine_args(command, no_resolve_digest, require_digest, spec)
        _no_pass_env(pass_env, spec.strategy)
        deploy_engine.run_deploy(
            ctx, spec, image, flags, allow_prerelease=rollback_cmd._allow_pre(ctx, allow_prerelease)
        )
        return
    deploy_engine.check_script_flags(flags)
    patterns = _pass_env(ctx, environment, pass_env)
    plan = plan_deploy(
        environment,
        image,
        command or [],
        allow_prerelease=rollback_cmd._allow_pre(ctx, allow_prerelease),
    )
    registry = rollback_cmd.RegistryFlags(token, api_url, registry_url)
    plan = _with_digest(
        ctx, plan, registry, no_resolve=no_resolve_digest, required=require_digest
    )
    _warn(plan)
    recording = _Recording(ledger_path, github, ref, repo, token, api_url)
    _run(ctx, plan, recording, lock_wait, patterns)


def rollback(  # noqa: PLR0917
    ctx: typer.Context,
    command: rollback_cmd.CommandArg = None,
    env: rollback_cmd.EnvOpt = None,
    image: rollback_cmd.RepositoryOpt = "",
    current: rollback_cmd.CurrentOpt = None,
    source: rollback_cmd.SourceOpt = rollback_cmd.Source.auto,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print what would run (on stdout) and change nothing (the registry may "
            "still be asked for the digest).",
        ),
    ] = False,
    no_resolve_digest: rollback_cmd.NoResolveOpt = False,
    require_digest: rollback_cmd.RequireDigestOpt = False,
    allow_prerelease: rollback_cmd.AllowPreOpt = None,
    github: rollback_cmd.GitHubOpt = False,
    ref: rollback_cmd.GitRefOpt = None,
    repo: rollback_cmd.RepoOpt = None,
    token: common.TokenOpt = None,
    api_url: common.ApiUrlOpt = None,
    registry_url: common.RegistryUrlOpt = None,
    ledger_path: rollback_cmd.LedgerOpt = None,
    strategy: deploy_engine.StrategyOpt = None,
    lock_wait: deploy_engine.LockWaitOpt = None,
    timeout: deploy_engine.TimeoutOpt = None,
    interval: deploy_engine.IntervalOpt = None,
    pass_env: PassEnvOpt = None,
    fmt: common.FormatOpt = common.Format.text,
) -> None:
    """Deploy what 'previous' answers, recorded as a rollback: through [deploy.ENV]'s
    strategy (recreate: restart CONTAINER-previous when it holds the target, else deploy
    the target by digest with a pre-check), or with COMMAND (script).

    For a script, IMAGE is pinned: repo:tag@sha256:... with the digest the ledger recorded
    for that deploy, else the one the registry resolves now (IMAGE_DIGEST and IMAGE_TAG
    too).
    """
    from tagkeeper.deploy.script import plan_deploy
    from tagkeeper.rollback.resolve import check_current

    environment = rollback_cmd._env_name(ctx, env)
    flags = deploy_engine.EngineFlags(
        strategy, lock_wait, timeout, interval, None, str(fmt), ledger_path, github, repo,
        token, api_url, ref,
    )  # fmt: skip
    spec = deploy_engine.engine_spec(ctx, environment, flags)
    if not image and spec is not None and spec.image is not None:
        image = spec.image
    if not image:
        raise UsageError("--image is required", hint="e.g. --image ghcr.io/o/app")
    repository = rollback_cmd._repository(image, current_hint=True)
    check_current(current)
    allow = rollback_cmd._allow_pre(ctx, allow_prerelease)
    _check_digest_flags(no_resolve_digest, require_digest)
    if spec is not None:
        deploy_engine.check_engine_args(command, no_resolve_digest, require_digest, spec)
        _no_pass_env(pass_env, spec.strategy)
    else:
        deploy_engine.check_script_flags(flags)
    patterns = _pass_env(ctx, environment, pass_env) if spec is None else ()
    if not dry_run and source in (rollback_cmd.Source.auto, rollback_cmd.Source.ledger):
        with rollback_cmd._open_ledger(ctx, ledger_path):
            pass  # rollback writes the ledger: fail on an unusable one before anything else
    target = rollback_cmd.resolve_previous(
        ctx,
        repository=repository,
        environment=environment,
        current=current,
        source=source,
        allow_prerelease=allow,
        ledger_path=ledger_path,
        repo=repo,
        token=token,
        api_url=api_url,
        registry_url=registry_url,
    )
    for note in target.notes:
        common.info(f"note: {note}")
    registry = rollback_cmd.RegistryFlags(token, api_url, registry_url)
    if target.source == "github" and target.digest:
        # a digest anyone with deployments: write could have written: checked first
        if no_resolve_digest:
            common.error(
                f"warning: {target.reference(pinned=True)} comes from GitHub Deployments and "
                "was not checked against the registry (--no-resolve-digest)"
            )
        else:
            resolver = rollback_cmd._registry_resolver(ctx, registry)
            _, records = rollback_cmd._read_history(
                ctx, ledger_path, environment=None, repository=target.repository
            )
            target = rollback_cmd.vouch(target, resolver, records)
    if spec is not None:
        deploy_engine.run_rollback(ctx, spec, target, flags, dry_run=dry_run)
        return
    plan = plan_deploy(
        environment,
        target.reference(),
        command or [],
        digest=target.digest,
        allow_prerelease=allow,
        rollback=True,
        replaces=target.current,
        pin=True,
    )
    plan = _with_digest(
        ctx, plan, registry, no_resolve=no_resolve_digest, required=require_digest
    )
    _warn(plan)
    if dry_run:
        from tagkeeper.deploy.script import command_environment

        chosen = command_environment(plan, deploy_engine.environ(), patterns)
        _tell(chosen)
        common.info(f"the command would get: {', '.join(chosen.passed)}")
        common.out(plan.describe())
        return
    recording = _Recording(ledger_path, github, ref, repo, token, api_url)
    _run(ctx, plan, recording, lock_wait, patterns)


# -- status --------------------------------------------------------------------------------


def status(
    ctx: typer.Context,
    env: Annotated[
        str | None,
        typer.Option(
            "--env",
            "-e",
            metavar="ENV",
            show_default=False,
            help="The environment (default: config 'env', else prod).",
        ),
    ] = None,
    ledger_path: Annotated[
        Path | None,
        typer.Option(
            "--ledger",
            metavar="PATH",
            dir_okay=False,
            show_default=False,
            help="The deploy ledger (default: as for deploy).",
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=0, help="Deploys shown.")] = 5,
    fmt: Annotated[TextJson, typer.Option("--format", "-f")] = TextJson.text,
) -> None:
    """What runs, its health now, the last deploys, the lock, and any drift (exit 0)."""
    from tagkeeper.cli import deploy_render
    from tagkeeper.deploy.lock import lock_path, read_holder
    from tagkeeper.deploy.spec import CONTAINER_STRATEGIES, PROXY_STRATEGIES
    from tagkeeper.deploy.status import read_status
    from tagkeeper.rollback.ledger import Ledger, resolve_path
    from tagkeeper.rollback.ledger import exists as ledger_exists

    name = env or common.state(ctx).config().env or "prod"
    spec = deploy_engine.spec_for(ctx, name)
    if spec.strategy not in CONTAINER_STRATEGIES:
        raise UsageError(
            f"[deploy.{name}] uses strategy {spec.strategy}: tagkeeper does not run its containers",
            hint="tagkeeper history --env ENV shows its deploys",
        )
    configured = common.state(ctx).config().ledger
    path = resolve_path(ledger_path, deploy_engine.environ(), configured)
    records = []
    if ledger_exists(path):
        with Ledger(path, create=False) as ledger:
            records = ledger.history(environment=name, repository=spec.image)
    holder = read_holder(lock_path(path, name, spec.container_name))
    docker = deploy_engine.runtime()
    try:
        with deploy_engine.http_client() as client:
            proxy = None
            if spec.strategy in PROXY_STRATEGIES:
                proxy = deploy_engine.slot_tools(spec, client)["proxy"]
            report = read_status(
                spec, runtime=docker, records=records, lock=holder, client=client, limit=limit,
                proxy=proxy,
            )  # fmt: skip
    finally:
        close = getattr(docker, "close", None)
        if close is not None:
            close()
    if fmt is TextJson.json:
        common.emit_json(report.as_dict())
    else:
        deploy_render.print_lines(deploy_render.status_lines(report))
