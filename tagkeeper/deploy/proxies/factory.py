"""Which proxy adapter drives a set-up (what the engine and ``status`` open)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tagkeeper.deploy.proxies.base import CommandRunner, Timing, run_command
from tagkeeper.deploy.proxies.nginx import NginxProxy
from tagkeeper.deploy.proxies.traefik import TraefikProxy

if TYPE_CHECKING:
    from collections.abc import Sequence

    import httpx

    from tagkeeper.deploy.proxies.snippet import ProxySetup

DEFAULT_PROBE_PATH = "/actuator/health"  # answered by every slot, cheap, never cached


def open_proxy(
    setup: ProxySetup,
    client: httpx.Client,
    *,
    probe_path: str = DEFAULT_PROBE_PATH,
    test_command: Sequence[str] | None = None,
    reload_command: Sequence[str] | None = None,
    timing: Timing | None = None,
    runner: CommandRunner = run_command,
) -> NginxProxy | TraefikProxy:
    """The adapter for ``setup.proxy``; probes go to ``proxy-url`` + ``probe_path``.

    ``test_command``/``reload_command`` (``proxy-test``/``proxy-reload``) default to
    ``nginx -t`` and ``nginx -s reload`` for nginx, and to nothing for Traefik (its file
    provider reloads by itself).
    """
    probe_url = setup.proxy_url.rstrip("/") + "/" + probe_path.lstrip("/")
    if setup.proxy == "nginx":
        return NginxProxy(
            setup.config,
            setup.slots,
            setup.upstream,
            client=client,
            probe_url=probe_url,
            test_command=test_command,
            reload_command=reload_command,
            runner=runner,
            timing=timing,
        )
    return TraefikProxy(
        setup.config,
        setup.slots,
        setup.upstream,
        client=client,
        api_url=f"http://{setup.traefik_api}",
        probe_url=probe_url,
        access_log=setup.access_log,
        test_command=test_command,
        reload_command=reload_command,
        runner=runner,
        timing=timing,
    )
