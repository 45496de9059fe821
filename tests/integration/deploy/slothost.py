"""A deploy host with two slots behind a real proxy, for the bluegreen and canary tests.

:func:`slot_host` gives a :class:`SlotHost`: the :class:`~.engine_host.DeployHost` folder,
registry and ledger, plus nginx or Traefik configured from ``tagkeeper proxy-snippet`` as
printed (:mod:`.proxysetup`), two free slot ports, and a ``[deploy.ENV]`` table that
names them (``strategy``, ``ports``, ``proxy``, ``proxy-config``, ``upstream``,
``proxy-url``, nginx's ``proxy-test``/``proxy-reload`` for its prefix, ``traefik-api``,
``metrics`` on the proxy's access log unless told otherwise). Teardown removes the slot
containers with the rest.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tagkeeper.deploy.proxies.model import Slot
from tests.integration.deploy.engine_host import DeployHost
from tests.integration.deploy.proxysetup import (
    UPSTREAM,
    RunningProxy,
    nginx_from_snippet,
    traefik_from_snippet,
)
from tests.services import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.deploykit.app import AppImages
    from tests.integration.oci.registry import Registry


def _toml(value: Any) -> str:
    return json.dumps(value)  # a JSON string or list of strings is valid TOML


@dataclass
class SlotHost:
    host: DeployHost
    proxy: RunningProxy
    ports: tuple[int, int]

    # -- names ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The service, through the proxy."""
        return self.proxy.url

    def container(self, slot: str) -> str:
        return f"{self.host.container}-{slot}"

    def running(self, slot: str) -> bool:
        """Whether ``CONTAINER-<slot>`` runs (it must exist)."""
        data = self.host.inspect(slot)
        assert data is not None, f"{self.container(slot)} does not exist"
        return bool(data["State"]["Running"])

    def version_port(self, version: str) -> int | None:
        """The port of the slot whose container runs ``version`` (its X-App-Port)."""
        for slot, port in zip(("blue", "green"), self.ports, strict=True):
            data = self.host.inspect(slot)
            if data is None:
                continue
            env = dict(e.split("=", 1) for e in data["Config"]["Env"])
            if env.get("APP_VERSION") == version:
                return port
        return None

    # -- the configuration --------------------------------------------------------------

    def configure(self, strategy: str = "bluegreen", **extra: str) -> None:
        """The ``[deploy.ENV]`` table for this proxy; ``extra`` keys are TOML text."""
        setup = self.proxy.setup
        keys: dict[str, str] = {
            "strategy": _toml(strategy),
            "ports": _toml(list(self.ports)),
            "proxy": _toml(setup.proxy),
            "proxy-config": _toml(str(setup.config)),
            "upstream": _toml(UPSTREAM),
            "proxy-url": _toml(self.proxy.url),
            "metrics": _toml(f"access-log:{setup.access_log}"),
            "watch": '"0s"',
            "watch-interval": '"1s"',
            "keep-previous": '"running"',
        }
        if setup.proxy == "nginx":
            keys["proxy-test"] = _toml([*self.proxy.command, "-t", "-q"])
            keys["proxy-reload"] = _toml([*self.proxy.command, "-s", "reload"])
        else:
            keys["traefik-api"] = _toml(setup.traefik_api)
        keys.update(extra)
        self.host.write_config(**keys)

    # -- reading the truth ------------------------------------------------------------------

    def owned_file(self) -> str:
        return self.proxy.setup.config.read_text(encoding="utf-8")

    def status(self) -> dict[str, Any]:
        return self.host.status()


@contextlib.contextmanager
def slot_host(
    folder: Path,
    client: Any,
    registry: Registry,
    images: AppImages,
    proxy: str,
    *,
    keepalive: bool = False,
    **kw: Any,
) -> Iterator[SlotHost]:
    """``keepalive``: nginx set up from ``proxy-snippet --keepalive``."""
    ports = (free_port(), free_port())
    host = DeployHost(folder / "host", client, registry, images, port=ports[0], **kw)
    host.extra_containers += [f"{host.container}-blue", f"{host.container}-green"]
    slots = (Slot("blue", "127.0.0.1", ports[0]), Slot("green", "127.0.0.1", ports[1]))
    try:
        with (
            nginx_from_snippet(folder / proxy, slots, keepalive=keepalive)
            if proxy == "nginx"
            else traefik_from_snippet(folder / proxy, slots)
        ) as running:
            made = SlotHost(host, running, ports)
            made.configure()
            yield made
    finally:
        host.cleanup()
