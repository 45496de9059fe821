"""``tagkeeper proxy-snippet``: the one-time proxy set-up for blue/green and canary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tagkeeper.cli import common
from tagkeeper.errors import UsageError

if TYPE_CHECKING:
    from tagkeeper.deploy.proxies.snippet import ProxySetup
    from tagkeeper.deploy.spec import DeploySpec


def _ints(text: str, what: str) -> tuple[int, ...]:
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isascii() and p.isdigit() for p in parts):
        raise UsageError(f"{what} {text!r} is not a list of ports", hint="e.g. 8520,8521")
    return tuple(int(p) for p in parts)


def proxy_snippet(  # noqa: PLR0917 - Typer passes options as arguments
    ctx: typer.Context,
    env: Annotated[
        str | None,
        typer.Option(
            "--env", "-e", help="Read the proxy keys of [deploy.ENV].", show_default=False
        ),
    ] = None,
    proxy: Annotated[
        str | None, typer.Option("--proxy", help="nginx or traefik.", show_default=False)
    ] = None,
    proxy_config: Annotated[
        Path | None,
        typer.Option(
            "--proxy-config",
            help="The file tagkeeper owns (nginx: included in http {}; Traefik: inside the "
            "watched directory).",
            show_default=False,
        ),
    ] = None,
    upstream: Annotated[
        str | None,
        typer.Option("--upstream", help="nginx upstream / Traefik service name.",
                     show_default=False),
    ] = None,
    slots: Annotated[
        str, typer.Option("--slots", help="Slot names, comma separated.")
    ] = "blue,green",
    ports: Annotated[
        str | None,
        typer.Option("--ports", help="One port per slot, e.g. 8520,8521.", show_default=False),
    ] = None,
    proxy_url: Annotated[
        str | None,
        typer.Option("--proxy-url", help="Where clients reach the service through the proxy.",
                     show_default=False),
    ] = None,
    access_log: Annotated[
        Path | None,
        typer.Option("--access-log", help="The JSON access log (default: from 'metrics', "
                     "else /var/log/PROXY/UPSTREAM.json.log).", show_default=False),
    ] = None,
    traefik_api: Annotated[
        str | None,
        typer.Option("--traefik-api", help="HOST:PORT of Traefik's API (loopback; default: "
                     "[deploy.ENV] traefik-api, else 127.0.0.1:8080).", show_default=False),
    ] = None,
    keepalive: Annotated[
        bool,
        typer.Option("--keepalive/--no-keepalive",
                     help="nginx: keep idle client connections (a reload can cost a request "
                     "per open connection) instead of keepalive_timeout 0."),
    ] = False,
    init: Annotated[
        bool,
        typer.Option("--init", help="Also create the owned file (all traffic to the first "
                     "slot) when it does not exist yet; an existing one is never touched."),
    ] = False,
    fmt: common.FormatOpt = common.Format.text,
) -> None:
    """Print the one-time proxy set-up: nginx's http {} and server {} lines, or Traefik's
    static configuration and router file. Each is valid as printed.
    """
    from tagkeeper.deploy.proxies.model import Slot
    from tagkeeper.deploy.proxies.snippet import ProxySetup, setup_from_spec, snippet
    from tagkeeper.deploy.spec import DEFAULT_TRAEFIK_API

    if env is not None:
        setup = setup_from_spec(
            _spec(ctx, env), access_log=access_log, traefik_api=traefik_api, keepalive=keepalive
        )
    else:
        missing = [
            flag
            for flag, value in (
                ("--proxy", proxy),
                ("--proxy-config", proxy_config),
                ("--ports", ports),
                ("--proxy-url", proxy_url),
            )
            if value is None
        ]
        if missing or proxy is None or proxy_config is None or proxy_url is None:
            raise UsageError(
                f"without --env, give {', '.join(missing)}",
                hint="or describe the service once in [deploy.ENV] and pass --env",
            )
        names = [s.strip() for s in slots.split(",")]
        numbers = _ints(ports or "", "--ports")
        if len(numbers) != len(names):
            raise UsageError(f"--ports needs one port per slot ({', '.join(names)})")
        setup = ProxySetup(
            proxy=proxy,
            upstream=upstream or "app",
            config=proxy_config.absolute(),
            slots=tuple(Slot(n, "127.0.0.1", p) for n, p in zip(names, numbers, strict=True)),
            proxy_url=proxy_url,
            access_log=access_log.absolute() if access_log else None,
            traefik_api=traefik_api or DEFAULT_TRAEFIK_API,
            keepalive=keepalive,
        )
    printed = snippet(setup)
    created = _init(setup) if init else None
    if fmt is common.Format.json:
        common.emit_json(
            {
                "proxy": setup.proxy,
                "upstream": setup.upstream,
                "proxy_config": str(setup.config),
                "access_log": str(setup.log_path),
                "parts": printed.to_json(),
                "created": created,
            }
        )
        return
    typer.echo(printed.text(), nl=False)
    if created is not None:
        common.info(f"created {created} (all traffic to slot {setup.slots[0].name})")
    elif init:
        common.info(f"{setup.config} exists: left as it is")
    else:
        common.info(
            f"then create {setup.config} once with --init, before the proxy loads this "
            "configuration"
        )


def _spec(ctx: typer.Context, env: str) -> DeploySpec:
    config = common.state(ctx).config()
    spec = config.deploy_spec(env)
    if spec is None:
        raise UsageError(
            f"no [deploy.{env}] table in {config.source or 'the configuration'}",
            hint="describe the service there, or give --proxy, --proxy-config, --ports and "
            "--proxy-url",
        )
    return spec


def _init(setup: ProxySetup) -> str | None:
    """Create the owned file when it does not exist; its path, or ``None`` if it did."""
    import httpx

    from tagkeeper.deploy.proxies.base import write_atomic
    from tagkeeper.deploy.proxies.nginx import NginxProxy
    from tagkeeper.deploy.proxies.snippet import initial_file
    from tagkeeper.deploy.proxies.traefik import TraefikProxy

    if setup.config.exists():
        return None
    with httpx.Client() as client:  # never used: rendering sends nothing
        proxy: NginxProxy | TraefikProxy
        if setup.proxy == "nginx":
            proxy = NginxProxy(setup.config, setup.slots, setup.upstream, client=client,
                               probe_url=setup.proxy_url)
        else:
            proxy = TraefikProxy(setup.config, setup.slots, setup.upstream, client=client,
                                 api_url=f"http://{setup.traefik_api}", probe_url=setup.proxy_url)
        text = initial_file(proxy, setup.slots)
    try:
        setup.config.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(setup.config, text.encode("utf-8"))
    except OSError as exc:
        raise UsageError(f"{setup.config}: cannot be created ({exc.strerror or exc})") from None
    return str(setup.config)
