"""The service of one environment, described once: ``[deploy.ENV]`` as a typed :class:`DeploySpec`.

The table lives in ``tagkeeper.toml`` (``[deploy.prod]``) or ``pyproject.toml``
(``[tool.tagkeeper.deploy.prod]``). Every key of every strategy is known here, so the spec
is one type whatever the strategy. :mod:`tagkeeper.deploy.spec_toml` reads a table: a key
it does not know, a value of the wrong type or a refused value is a
:class:`~tagkeeper.errors.ConfigError` (exit 9) that names the file, the table, the key,
the value and what is allowed. Nothing is dropped silently.

Value forms: durations are strings in the syntax of :func:`tagkeeper.config.parse_duration`
(``"15s"``, ``"2m"``, ``"500ms"``); commands are lists of arguments, never run through a
shell; ``health`` is a path or a list of paths; relative paths are relative to the folder
of the configuration file.

A library user can build a :class:`DeploySpec` directly; its cross-field rules (a
candidate port that differs from the port, a ``port-env`` with host networking...) are
checked on construction and raise :class:`~tagkeeper.errors.UsageError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from tagkeeper.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path


class Strategy(StrEnum):
    SCRIPT = "script"  # run the team's own deploy command (what deploy did before)
    RECREATE = "recreate"  # candidate pre-check, then stop the old container, start the new
    BLUEGREEN = "bluegreen"  # two slots behind a proxy, switched at once
    CANARY = "canary"  # two slots behind a proxy, weights moved through steps


class Network(StrEnum):
    HOST = "host"
    BRIDGE = "bridge"


CONTAINER_STRATEGIES = frozenset({Strategy.RECREATE, Strategy.BLUEGREEN, Strategy.CANARY})
PROXY_STRATEGIES = frozenset({Strategy.BLUEGREEN, Strategy.CANARY})

# Docker's own container-name grammar, kept short enough for the suffixes tagkeeper adds
# (-candidate, -previous, -outgoing, -<slot>).
CONTAINER_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}")
VARIABLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
SLOT_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,15}")
UPSTREAM_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
HOST_PORT_RE = re.compile(r"(?:[0-9A-Za-z.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):[0-9]{1,5}")
RESTART_RE = re.compile(r"no|always|unless-stopped|on-failure(?::[1-9][0-9]{0,3})?")
MEMORY_RE = re.compile(r"([0-9]{1,12})\s*([bkmg]?)(?:i?b)?", re.IGNORECASE)
VOLUME_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
VOLUME_MODES = frozenset(
    {"ro", "rw", "z", "Z", "shared", "slave", "private", "rshared", "rslave", "rprivate",
     "nocopy", "consistent", "cached", "delegated"}
)  # fmt: skip
RESERVED_LABEL_PREFIX = "org.tagkeeper."
MIN_MEMORY = 6 * 1024 * 1024  # the engine refuses less than 6 MB
MEMORY_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
QUERY_NAMES = ("requests", "errors", "p95")
QUERY_PLACEHOLDERS = frozenset({"instance", "slot", "window"})

# -- defaults, each with its reason -------------------------------------------------------

DEFAULT_HEALTH = ("/actuator/health",)  # Spring Boot's actuator, what the services run
DEFAULT_HEALTH_TIMEOUT = 120.0  # the release note allows a Spring app 60-120 s to come up
DEFAULT_INTERVAL = 2.0  # often enough to notice readiness, rare enough to cost nothing
DEFAULT_SUCCESSES = 3  # one healthy answer can be luck during start-up; three in a row is not
DEFAULT_STOP_TIMEOUT = 35.0  # Spring drains for up to 30 s; Docker's 10 s kills it mid-drain
DEFAULT_RESTART = "unless-stopped"  # back after a reboot, but never one stopped on purpose
DEFAULT_BIND = "127.0.0.1"  # publish on loopback only unless the user opens it up
CANDIDATE_PORT_OFFSET = 10000  # 8520 -> 18520, as the release note's candidate does
DEFAULT_SLOTS = ("blue", "green")
DEFAULT_STEPS = (5, 10, 50, 100)  # 95/5 -> 90/10 -> 50/50 -> 100/0, the note's canary
DEFAULT_STEP_TIME = 120.0  # long enough for min-requests at modest traffic
DEFAULT_WATCH = 600.0  # the note watches 10-30 minutes after a release
DEFAULT_WATCH_INTERVAL = 30.0  # two crossings in a row then take a minute
DEFAULT_MAX_ERROR_RATE = 0.01  # 1% of 5xx answers
DEFAULT_MAX_P95 = 0.8  # 800 ms
DEFAULT_MIN_REQUESTS = 50  # fewer answers than this decide nothing
DEFAULT_TRAEFIK_API = "127.0.0.1:8080"  # Traefik's own default for its API entrypoint
NGINX_TEST = ("nginx", "-t")
NGINX_RELOAD = ("nginx", "-s", "reload")


@dataclass(frozen=True, slots=True)
class MetricsSource:
    """Where canary steps and the watch read numbers: ``access-log:PATH`` or ``prometheus:URL``."""

    kind: str  # "access-log" or "prometheus"
    target: str  # the log file path, or the Prometheus base URL

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}"


@dataclass(frozen=True, slots=True)
class DeploySpec:
    """One environment's service. Durations are seconds; ``source`` is the file it came from."""

    environment: str
    strategy: Strategy = Strategy.RECREATE
    image: str | None = None  # the repository, without tag or digest
    container: str | None = None
    port: int | None = None
    network: Network = Network.BRIDGE  # Docker's own default, what `docker run -p` uses
    bind: str | None = None  # bridge only; DEFAULT_BIND when not given
    port_env: str | None = None
    env_file: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    volumes: tuple[str, ...] = ()
    restart: str = DEFAULT_RESTART
    memory: int | None = None  # bytes
    cpus: float | None = None
    user: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    command: tuple[str, ...] | None = None
    pass_env: tuple[str, ...] = ()  # script: tagkeeper's variables the command also gets
    health: tuple[str, ...] = DEFAULT_HEALTH
    health_timeout: float = DEFAULT_HEALTH_TIMEOUT
    interval: float = DEFAULT_INTERVAL
    successes: int = DEFAULT_SUCCESSES
    smoke: Path | None = None
    candidate_port: int | None = None  # None: port + CANDIDATE_PORT_OFFSET
    stop_timeout: float = DEFAULT_STOP_TIMEOUT
    # blue/green and canary
    slots: tuple[str, ...] = DEFAULT_SLOTS
    ports: tuple[int, ...] | None = None  # None: port, port + 1, ...
    proxy: str | None = None  # "nginx" or "traefik"
    proxy_config: Path | None = None
    upstream: str | None = None  # None: the container name
    proxy_url: str | None = None
    proxy_test: tuple[str, ...] | None = None  # None: the proxy's default
    proxy_reload: tuple[str, ...] | None = None
    traefik_api: str = DEFAULT_TRAEFIK_API  # where a switch is confirmed (Traefik's API)
    steps: tuple[int, ...] = DEFAULT_STEPS
    step_time: float = DEFAULT_STEP_TIME
    watch: float = DEFAULT_WATCH
    watch_interval: float = DEFAULT_WATCH_INTERVAL
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    max_p95: float | None = DEFAULT_MAX_P95
    max_p95_ratio: float | None = None
    min_requests: int = DEFAULT_MIN_REQUESTS
    metrics: MetricsSource | None = None
    metrics_queries: Mapping[str, str] = field(default_factory=dict)
    keep_previous: str = "running"  # an instant switch back until the next deploy
    inconclusive: str | None = None  # None: "fail" for prod rules, "pass" for dev
    source: Path | None = None

    def __post_init__(self) -> None:
        _check_spec(self)

    # -- derived values ---------------------------------------------------------------

    @property
    def repository(self) -> str:
        if self.image is None:
            raise UsageError(f"[deploy.{self.environment}] names no image")
        return self.image

    @property
    def container_name(self) -> str:
        if self.container is None:
            raise UsageError(f"[deploy.{self.environment}] names no container")
        return self.container

    @property
    def service_port(self) -> int:
        if self.port is None:
            raise UsageError(f"[deploy.{self.environment}] names no port")
        return self.port

    @property
    def spare_port(self) -> int:
        """The candidate's port: ``candidate-port``, else ``port`` + 10000."""
        if self.candidate_port is not None:
            return self.candidate_port
        return self.service_port + CANDIDATE_PORT_OFFSET

    @property
    def bind_address(self) -> str:
        return self.bind or DEFAULT_BIND

    @property
    def slot_ports(self) -> tuple[int, ...]:
        if self.ports is not None:
            return self.ports
        return tuple(self.service_port + i for i in range(len(self.slots)))

    @property
    def upstream_name(self) -> str:
        return self.upstream or self.container_name

    @property
    def proxy_test_command(self) -> tuple[str, ...] | None:
        if self.proxy_test is not None:
            return self.proxy_test
        return NGINX_TEST if self.proxy == "nginx" else None

    @property
    def proxy_reload_command(self) -> tuple[str, ...] | None:
        if self.proxy_reload is not None:
            return self.proxy_reload
        return NGINX_RELOAD if self.proxy == "nginx" else None

    def fails_inconclusive(self) -> bool:
        """Whether a canary step with too few requests fails (it never passes silently)."""
        if self.inconclusive is not None:
            return self.inconclusive == "fail"
        from tagkeeper.gate.rules import is_strict

        return is_strict(self.environment)

    def with_overrides(self, **changes: Any) -> DeploySpec:
        """A copy with some fields replaced (command-line flags), checked again."""
        return replace(self, **changes)


def _check_spec(spec: DeploySpec) -> None:
    """Cross-field rules; :class:`UsageError` saying which key to set or change."""
    from tagkeeper.gate.rules import validate_env_name

    validate_env_name(spec.environment)
    if spec.strategy not in CONTAINER_STRATEGIES:
        return
    if spec.pass_env:
        raise UsageError(
            f"'pass-env' applies to strategy \"script\" (the command it runs), not to "
            f"{spec.strategy}, which runs no command of yours",
            hint="remove 'pass-env', or set strategy = \"script\"",
        )
    for key, value in (("image", spec.image), ("container", spec.container)):
        if value is None:
            raise UsageError(f"strategy {spec.strategy} needs {key!r}", hint=_KEY_HINTS[key])
    if spec.strategy is Strategy.RECREATE:
        if spec.port is None:
            raise UsageError("strategy recreate needs 'port'", hint=_KEY_HINTS["port"])
        if spec.spare_port == spec.port:
            raise UsageError("'candidate-port' must differ from 'port'")
        if spec.spare_port > 65535:
            raise UsageError(
                f"the candidate port {spec.spare_port} (port + {CANDIDATE_PORT_OFFSET}) "
                "is not a TCP port",
                hint="set 'candidate-port' to a free port",
            )
    if spec.network is Network.HOST and spec.port_env is None:
        raise UsageError(
            "with network = \"host\" the app must be told which port to listen on ('port-env'), "
            "or the new container could not listen beside the old one",
            hint="set 'port-env' to the variable your app reads, e.g. \"SERVER_PORT\"",
        )
    if spec.network is Network.HOST and spec.bind is not None:
        raise UsageError(
            "'bind' applies to network = \"bridge\" only (host networking "
            "binds where the app listens)"
        )
    if spec.strategy in PROXY_STRATEGIES:
        _check_proxy_spec(spec)


def _check_proxy_spec(spec: DeploySpec) -> None:
    for key, value in (
        ("proxy", spec.proxy),
        ("proxy-config", spec.proxy_config),
        ("proxy-url", spec.proxy_url),
    ):
        if value is None:
            raise UsageError(f"strategy {spec.strategy} needs {key!r}", hint=_KEY_HINTS[key])
    if spec.ports is None and spec.port is None:
        raise UsageError(f"strategy {spec.strategy} needs 'port' or 'ports'")
    if len(spec.slots) != 2 or spec.slots[0] == spec.slots[1]:
        raise UsageError(
            f"'slots' must name two different slots, not {list(spec.slots)}",
            hint='e.g. slots = ["blue", "green"]',
        )
    if not HOST_PORT_RE.fullmatch(spec.traefik_api):
        raise UsageError(
            f"'traefik-api' {spec.traefik_api!r} is not HOST:PORT",
            hint=f'e.g. traefik-api = "{DEFAULT_TRAEFIK_API}" (keep it on loopback)',
        )
    ports = spec.slot_ports
    if len(ports) != len(spec.slots):
        raise UsageError(f"'ports' needs one port per slot ({len(spec.slots)})")
    if len(set(ports)) != len(ports) or max(ports) > 65535:
        raise UsageError(f"the slots' ports {list(ports)} must be distinct TCP ports")
    if spec.strategy is Strategy.CANARY and spec.metrics is None:
        raise UsageError(
            "strategy canary judges each step on metrics: set 'metrics'",
            hint=_KEY_HINTS["metrics"],
        )


_KEY_HINTS = {
    "image": 'e.g. image = "ghcr.io/acme/app" (the repository, without a tag)',
    "container": 'e.g. container = "app" (the name of the container that serves)',
    "port": "e.g. port = 8520 (the port the service answers on)",
    "proxy": 'proxy = "nginx" or "traefik"',
    "proxy-config": 'the file tagkeeper owns, e.g. "/etc/nginx/tagkeeper/app.conf"',
    "proxy-url": 'where the service is reached through the proxy, e.g. "http://127.0.0.1:80"',
    "metrics": '"access-log:/var/log/nginx/app.json" or "prometheus:http://127.0.0.1:9090"',
}


__all__ = ["DeploySpec", "MetricsSource", "Network", "Strategy"]
