"""Reading ``[deploy.ENV]`` tables into :class:`~tagkeeper.deploy.spec.DeploySpec`.

Every key has a parser that takes the TOML value and returns the field's value, or
refuses it with a reason; :func:`from_table` turns a refusal (and any rule across keys the
spec checks) into a :class:`~tagkeeper.errors.ConfigError` that names the file, the table,
the key, the value and what is allowed. :data:`KEYS` is every key there is.
"""

from __future__ import annotations

import ipaddress
import itertools
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagkeeper.config import parse_duration
from tagkeeper.deploy.spec import (
    CONTAINER_RE,
    CONTAINER_STRATEGIES,
    HOST_PORT_RE,
    MEMORY_RE,
    MEMORY_UNITS,
    MIN_MEMORY,
    QUERY_NAMES,
    QUERY_PLACEHOLDERS,
    RESERVED_LABEL_PREFIX,
    RESTART_RE,
    SLOT_RE,
    UPSTREAM_RE,
    VARIABLE_RE,
    VOLUME_MODES,
    VOLUME_NAME_RE,
    DeploySpec,
    MetricsSource,
    Network,
    Strategy,
)
from tagkeeper.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


# -- one value --------------------------------------------------------------------


class _Refused(Exception):
    """A well-typed value that is refused, and why."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _port(value: Any) -> int:
    if not _is_int(value) or not 1 <= value <= 65535:
        raise _Refused("not a port")
    return int(value)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _Refused("not a string")
    if not value.strip() or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise _Refused("empty, or holds control characters")
    return value


def _matching(pattern: re.Pattern[str]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise _Refused("not allowed here")
        return value

    return parse


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in choices:
            raise _Refused("not one of the choices")
        return str(value)

    return parse


def _duration(*, positive: bool = False) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if not isinstance(value, str):
            raise _Refused("not a string")
        try:
            seconds = parse_duration(value)
        except UsageError as exc:
            raise _Refused(exc.message) from None
        if positive and seconds <= 0:
            raise _Refused("must be longer than 0")
        return seconds

    return parse


def _count(low: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if not _is_int(value) or value < low or value > 1_000_000:
            raise _Refused(f"not an integer from {low}")
        return int(value)

    return parse


def _arguments(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise _Refused("not a non-empty list of strings")
    if not value[0].strip():
        raise _Refused("the program is empty")
    return tuple(value)


def _string_table(*, keys: re.Pattern[str] | None, ints: bool) -> Callable[[Any], dict[str, str]]:
    def parse(value: Any) -> dict[str, str]:
        if not isinstance(value, dict):
            raise _Refused("not a table")
        out: dict[str, str] = {}
        for key, item in value.items():
            if keys is not None and not keys.fullmatch(key):
                raise _Refused(f"{key!r} is not a valid name")
            if key.startswith(RESERVED_LABEL_PREFIX):
                raise _Refused(f"{key!r}: labels under {RESERVED_LABEL_PREFIX} are tagkeeper's")
            if isinstance(item, str) or (ints and _is_int(item)):
                out[key] = str(item)
            else:
                raise _Refused(f"the value of {key!r} is not a string")
        return out

    return parse


def _pass_env(value: Any) -> tuple[str, ...]:
    from tagkeeper.deploy.passenv import parse_patterns

    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Refused("not a list of strings")
    try:
        return parse_patterns(value, what="pass-env")
    except UsageError as exc:
        raise _Refused(exc.message) from None


def _paths(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise _Refused("not a path or a non-empty list of paths")
    for item in items:
        if (
            not isinstance(item, str)
            or not item.startswith("/")
            or any(ch.isspace() or ord(ch) < 32 for ch in item)
        ):
            raise _Refused(f"{item!r} is not a path starting with '/'")
    return tuple(items)


def _memory(value: Any) -> int:
    if not isinstance(value, str):
        raise _Refused("not a string")
    match = MEMORY_RE.fullmatch(value.strip())
    if match is None:
        raise _Refused("not a size")
    size = int(match[1]) * MEMORY_UNITS[match[2].lower()]
    if size < MIN_MEMORY:
        raise _Refused("less than the engine's minimum of 6m")
    return size


def _cpus(value: Any) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _Refused("not a number")
    if not math.isfinite(value) or not 0 < value <= 1024:
        raise _Refused("not a number of CPUs above 0")
    return float(value)


def _address(value: Any) -> str:
    if not isinstance(value, str):
        raise _Refused("not a string")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise _Refused("not an IP address") from None
    return value


def _url(value: Any) -> str:
    text = _text(value)
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s]*)?", text):
        raise _Refused("not an http:// or https:// URL")
    return text.rstrip("/")


def _percent(value: Any) -> float:
    if not isinstance(value, str) or not re.fullmatch(r"\d{1,3}(\.\d{1,4})?%", value):
        raise _Refused("not a percentage")
    rate = float(value[:-1]) / 100
    if rate > 1:
        raise _Refused("more than 100%")
    return rate


def _ratio(value: Any) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _Refused("not a number")
    if not math.isfinite(value) or value < 1:
        raise _Refused("must be at least 1")
    return float(value)


def _slots(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) != 2:
        raise _Refused("not a list of two slot names")
    for item in value:
        if not isinstance(item, str) or not SLOT_RE.fullmatch(item):
            raise _Refused(f"{item!r} is not a slot name")
    if value[0] == value[1]:
        raise _Refused("the slots have the same name")
    return tuple(value)


def _ports(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise _Refused("not a list of ports")
    return tuple(_port(item) for item in value)


def _steps(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise _Refused("not a list of percentages")
    if not all(_is_int(v) and 1 <= v <= 100 for v in value):
        raise _Refused("each step is a whole percentage from 1 to 100")
    if any(b <= a for a, b in itertools.pairwise(value)) or value[-1] != 100:
        raise _Refused("the steps must grow and end at 100")
    return tuple(value)


def _metrics(value: Any) -> MetricsSource:
    text = _text(value)
    kind, sep, target = text.partition(":")
    if not sep or kind not in ("access-log", "prometheus") or not target:
        raise _Refused("neither access-log:PATH nor prometheus:URL")
    if kind == "prometheus":
        target = _url(target)
    return MetricsSource(kind, target)


def _queries(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _Refused("not a table")
    out: dict[str, str] = {}
    for key, item in value.items():
        if key not in QUERY_NAMES:
            raise _Refused(f"{key!r} is not one of {', '.join(QUERY_NAMES)}")
        text = _text(item)
        unknown = set(re.findall(r"\{(\w*)\}", text)) - QUERY_PLACEHOLDERS
        if unknown:
            raise _Refused(f"unknown placeholder {{{sorted(unknown)[0]}}}")
        out[key] = text
    return out


def _volume(base: Path | None) -> Callable[[Any], tuple[str, ...]]:
    def parse(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _Refused("not a list of SOURCE:TARGET[:MODE] strings")
        return tuple(_one_volume(item, base) for item in value)

    return parse


def _one_volume(text: str, base: Path | None) -> str:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise _Refused(f"{text!r} is not SOURCE:TARGET[:MODE]")
    source, target = parts[0], parts[1]
    if not target.startswith("/"):
        raise _Refused(f"{text!r}: the target must be an absolute path in the container")
    if source.startswith((".", "~")) or "/" in source:
        path = _expand(source)
        if not path.is_absolute():
            path = (base or Path.cwd()) / path
        source = str(path)
    elif not VOLUME_NAME_RE.fullmatch(source):
        raise _Refused(f"{text!r}: the source is neither a path nor a volume name")
    if len(parts) == 3 and not set(parts[2].split(",")) <= VOLUME_MODES:
        raise _Refused(f"{text!r}: unknown mode {parts[2]!r}")
    return ":".join([source, target, *parts[2:]])


def _expand(text: str) -> Path:
    try:
        return Path(text).expanduser()
    except RuntimeError:  # ~user of a user that does not exist
        raise _Refused(f"{text!r}: no such home folder") from None


def _file(base: Path | None) -> Callable[[Any], Path]:
    def parse(value: Any) -> Path:
        path = _expand(_text(value))
        return path if path.is_absolute() else (base or Path.cwd()) / path

    return parse


def _keys(base: Path | None) -> dict[str, tuple[str, Callable[[Any], Any], str]]:
    """key -> (field name, parser, what is allowed)."""
    duration = 'a duration such as "15s", "2m" or "500ms"'
    path = "a file path (relative to the configuration file's folder)"
    return {
        "strategy": (
            "strategy",
            _choice(*Strategy),
            '"script", "recreate", "bluegreen" or "canary"',
        ),
        "image": (
            "image",
            _text,
            'an image repository without tag or digest, e.g. "ghcr.io/acme/app"',
        ),
        "container": (
            "container",
            _matching(CONTAINER_RE),
            "a container name of letters, digits, '_', '.' and '-' (at most 63 characters)",
        ),
        "port": ("port", _port, "a TCP port from 1 to 65535"),
        "network": ("network", _choice(*Network), '"host" or "bridge"'),
        "bind": ("bind", _address, 'an IP address to publish the port on, e.g. "0.0.0.0"'),
        "port-env": (
            "port_env",
            _matching(VARIABLE_RE),
            'an environment variable name, e.g. "SERVER_PORT"',
        ),
        "env-file": ("env_file", _file(base), path),
        "env": (
            "env",
            _string_table(keys=VARIABLE_RE, ints=True),
            "a table of variable names to strings",
        ),
        "volumes": ("volumes", _volume(base), 'a list of "SOURCE:TARGET[:MODE]" strings'),
        "restart": (
            "restart",
            _matching(RESTART_RE),
            '"no", "always", "unless-stopped" or "on-failure[:N]"',
        ),
        "memory": ("memory", _memory, 'a size such as "512m" or "2g" (at least 6m)'),
        "cpus": ("cpus", _cpus, "a number of CPUs above 0, e.g. 1.5"),
        "user": ("user", _text, "a user name or uid[:gid]"),
        "labels": (
            "labels",
            _string_table(keys=None, ints=False),
            f"a table of strings (keys under {RESERVED_LABEL_PREFIX} are tagkeeper's)",
        ),
        "command": (
            "command",
            _arguments,
            'a list of arguments, e.g. ["java", "-jar", "app.jar"] (never run through a shell)',
        ),
        "pass-env": (
            "pass_env",
            _pass_env,
            'a list of variable names or NAME* prefixes, e.g. ["PROFILE", "APP_*"]',
        ),
        "health": ("health", _paths, 'a path or a list of paths, e.g. "/actuator/health"'),
        "health-timeout": ("health_timeout", _duration(positive=True), duration),
        "interval": ("interval", _duration(positive=True), duration),
        "successes": ("successes", _count(1), "an integer of at least 1"),
        "smoke": ("smoke", _file(base), path + " of [[check]] tables"),
        "candidate-port": ("candidate_port", _port, "a TCP port from 1 to 65535"),
        "stop-timeout": ("stop_timeout", _duration(), duration),
        "slots": ("slots", _slots, 'a list of two slot names, e.g. ["blue", "green"]'),
        "ports": ("ports", _ports, "a list of TCP ports, one per slot"),
        "proxy": ("proxy", _choice("nginx", "traefik"), '"nginx" or "traefik"'),
        "proxy-config": ("proxy_config", _file(base), path),
        "upstream": (
            "upstream",
            _matching(UPSTREAM_RE),
            "an nginx upstream or Traefik service name",
        ),
        "proxy-url": ("proxy_url", _url, "an http:// or https:// URL"),
        "proxy-test": ("proxy_test", _arguments, 'a list of arguments, e.g. ["nginx", "-t"]'),
        "proxy-reload": (
            "proxy_reload",
            _arguments,
            'a list of arguments, e.g. ["nginx", "-s", "reload"]',
        ),
        "traefik-api": (
            "traefik_api",
            _matching(HOST_PORT_RE),
            'HOST:PORT of Traefik\'s API entrypoint, e.g. "127.0.0.1:8080"',
        ),
        "steps": (
            "steps",
            _steps,
            "a growing list of percentages ending at 100, e.g. [5, 10, 50, 100]",
        ),
        "step-time": ("step_time", _duration(positive=True), duration),
        "watch": ("watch", _duration(), duration + ' ("0s" turns it off)'),
        "watch-interval": ("watch_interval", _duration(positive=True), duration),
        "max-error-rate": ("max_error_rate", _percent, 'a percentage such as "1%"'),
        "max-p95": ("max_p95", _duration(positive=True), 'a duration such as "800ms"'),
        "max-p95-ratio": (
            "max_p95_ratio",
            _ratio,
            "a number of at least 1 (the new slot's p95 over the old one's)",
        ),
        "min-requests": ("min_requests", _count(1), "an integer of at least 1"),
        "metrics": ("metrics", _metrics, '"access-log:PATH" or "prometheus:URL"'),
        "metrics-queries": (
            "metrics_queries",
            _queries,
            "a table with requests, errors and "
            "p95 PromQL templates using {instance}, {slot} and {window}",
        ),
        "keep-previous": ("keep_previous", _choice("running", "stopped"), '"running" or "stopped"'),
        "inconclusive": ("inconclusive", _choice("fail", "pass"), '"fail" or "pass"'),
    }


KEYS = tuple(_keys(None))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def from_table(
    environment: str, table: Mapping[str, Any], *, source: Path | None, where: str
) -> DeploySpec:
    """The :class:`DeploySpec` of ``[deploy.ENVIRONMENT]``; :class:`ConfigError` if invalid.

    ``where`` names the file and table in messages, e.g. ``tagkeeper.toml [deploy.prod]``.
    """
    from tagkeeper.gate.rules import validate_env_name

    try:
        validate_env_name(environment)
    except UsageError as exc:
        raise ConfigError(f"{where}: {exc.message}", hint=exc.hint) from None
    keys = _keys(source.parent if source is not None else None)
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in keys:
            raise ConfigError(
                f"{where}: unknown key {key!r}",
                hint=f"allowed keys are: {', '.join(sorted(keys))}",
            )
        name, parse, allowed = keys[key]
        try:
            values[name] = parse(value)
        except _Refused as exc:
            raise ConfigError(
                f"{where}: key {key!r} has value {_shown(value)} ({exc}); it must be {allowed}"
            ) from None
    if "image" in values:
        _check_repository(values["image"], where)
    if "strategy" in values:
        values["strategy"] = Strategy(values["strategy"])
    if "network" in values:
        values["network"] = Network(values["network"])
    try:
        return DeploySpec(environment=environment, source=source, **values)
    except UsageError as exc:
        raise ConfigError(f"{where}: {exc.message}", hint=exc.hint) from None


def _check_repository(image: str, where: str) -> None:
    from tagkeeper.refs import parse_reference

    try:
        ref = parse_reference(image)
    except UsageError as exc:
        raise ConfigError(
            f"{where}: key 'image' has value {_shown(image)} ({exc.message}); it must be a "
            'repository such as "ghcr.io/acme/app"'
        ) from None
    if ref.tag is not None or ref.digest is not None:
        raise ConfigError(
            f"{where}: key 'image' has value {_shown(image)}, which names a tag or digest; "
            "it must be a repository",
            hint=f'configure the repository only: image = "{ref.repository}"; the '
            "deploy names the version",
        )


def from_tables(
    tables: Mapping[str, Any], *, source: Path | None, prefix: str
) -> dict[str, DeploySpec]:
    """Every ``[deploy.ENV]`` table of a ``deploy`` table; ``prefix`` is ``deploy`` or
    ``tool.tagkeeper.deploy``."""
    where_file = str(source) if source is not None else "configuration"
    out: dict[str, DeploySpec] = {}
    owners: dict[str, str] = {}  # container -> the table that names it
    bound: dict[tuple[int, str], str] = {}  # (port, address) -> the table that uses it
    for env, table in tables.items():
        name = f"[{prefix}.{_table_key(env)}]"
        where = f"{where_file} {name}"
        if not isinstance(table, dict):
            raise ConfigError(
                f"{where}: must be a table of settings",
                hint=f"write it as {name} with keys below it",
            )
        spec = from_table(env, table, source=source, where=where)
        if spec.strategy in CONTAINER_STRATEGIES and spec.container is not None:
            # each environment has its own lock: two would replace each other's container
            other = owners.setdefault(spec.container, name)
            if other != name:
                raise ConfigError(
                    f"{where}: container {spec.container!r} is already the container of "
                    f"{other}",
                    hint="give each environment's service its own container name",
                )
            for port in _ports_of(spec):
                address = _address_of(spec)
                for (taken, at), other in bound.items():
                    if taken == port and other != name and _overlap(address, at):
                        raise ConfigError(
                            f"{where}: port {port} is also a port of {other}",
                            hint="a service's port, its candidate's port and its slots' "
                            "ports must be its own",
                        )
                bound[(port, address)] = name
        out[env] = spec
    return out


def _ports_of(spec: DeploySpec) -> set[int]:
    """The host ports a container strategy's containers listen on."""
    if spec.strategy is Strategy.RECREATE:
        return {spec.service_port, spec.spare_port}
    return set(spec.slot_ports)


def _address_of(spec: DeploySpec) -> str:
    """Where the ports are bound: every address with host networking, else ``bind``."""
    return "*" if spec.network is Network.HOST else spec.bind_address


def _overlap(one: str, other: str) -> bool:
    wildcard = ("*", "0.0.0.0", "::")  # noqa: S104 - addresses compared, nothing bound
    return one == other or one in wildcard or other in wildcard


def _table_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else f'"{name}"'


__all__ = ["KEYS", "from_table", "from_tables"]
