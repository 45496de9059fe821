"""The Docker engine as deploys use it, behind the :class:`ContainerRuntime` protocol.

:class:`DockerRuntime` speaks to the engine through the docker SDK's low-level API (never
a shell): pull (returning the manifest digest), create and start with a deploy's options,
stop with a timeout, rename, remove, change the restart policy, inspect, read the log
tail, and list by label. Engine failures become tagkeeper errors at this boundary:
:class:`~tagkeeper.errors.RegistryError` (exit 5) when the engine or a registry fails,
:class:`~tagkeeper.errors.AuthError` (4) when a pull is refused, and
:class:`~tagkeeper.errors.UsageError` (2) for a tag that does not exist.

Every container tagkeeper creates carries labels (:data:`LABEL_ENV` and the others below):
they are what ``status`` and the repair of a killed deploy read. A container's *role* label
is the role it was created for; its name says what it is now (``app-previous`` was
created ``live``).

:func:`read_env_file` reads a Docker env file as ``docker run --env-file`` does; values
from it are secrets and are never shown.
"""

from __future__ import annotations

import os
import re
import socket
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from tagkeeper.errors import AuthError, RegistryError, UsageError

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

LABEL_ENV = "org.tagkeeper.env"
LABEL_CONTAINER = "org.tagkeeper.container"  # the configured name, whatever the suffix
LABEL_ROLE = "org.tagkeeper.role"
LABEL_SLOT = "org.tagkeeper.slot"
LABEL_DIGEST = "org.tagkeeper.digest"
LABEL_DEPLOY = "org.tagkeeper.deploy"  # the ledger id of the deploy that created it
LABEL_OWNER = "org.tagkeeper.owner"  # "host pid start-ticks" of the process (verify)
LABEL_IMAGE = "org.tagkeeper.image"  # repository:tag it was deployed as

_ENGINE_HINT = "check that dockerd runs and that DOCKER_HOST names it"
_ENV_KEY_RE = re.compile(r"[^\s=]+")


class Role(StrEnum):
    LIVE = "live"
    CANDIDATE = "candidate"
    PREVIOUS = "previous"
    SLOT = "slot"
    VERIFY = "verify"


@dataclass(frozen=True, slots=True)
class PulledImage:
    """An image on the engine: the reference asked for, its manifest digest, its id."""

    reference: str
    digest: str | None  # None: a local image that never came from a registry
    image_id: str


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Everything a container is created with. ``port``: where the app is reached on the
    host; with bridge networking ``container_port`` is the port inside."""

    name: str
    image: str
    port: int
    network: str = "bridge"
    container_port: int | None = None  # bridge: the app's port inside (default: port)
    bind: str = "127.0.0.1"
    env: Mapping[str, str] = field(default_factory=dict)
    volumes: tuple[str, ...] = ()
    restart: str = "no"
    memory: int | None = None
    cpus: float | None = None
    user: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    command: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class ContainerState:
    """What the engine says about one container."""

    name: str
    id: str
    status: str  # created, running, restarting, paused, exited, dead, removing
    exit_code: int = 0
    oom_killed: bool = False
    restart_count: int = 0
    image: str = ""  # the reference it was created from (Config.Image)
    image_id: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    restart_policy: str = "no"

    @property
    def running(self) -> bool:
        return self.status in ("running", "restarting")

    @property
    def digest(self) -> str | None:
        return self.labels.get(LABEL_DIGEST) or None

    @property
    def deploy_id(self) -> int | None:
        value = self.labels.get(LABEL_DEPLOY, "")
        return int(value) if value.isdigit() else None

    @property
    def role(self) -> str | None:
        return self.labels.get(LABEL_ROLE)

    @property
    def managed(self) -> bool:
        """Created by tagkeeper (it carries the environment label)."""
        return LABEL_ENV in self.labels

    def gone_reason(self, since_restarts: int = 0) -> str | None:
        """Why this container cannot be serving: exited, OOM-killed, restarted; else None."""
        if self.oom_killed:
            return f"was killed for lack of memory (OOM, exit code {self.exit_code})"
        if self.restart_count > since_restarts:
            return f"restarted ({self.restart_count - since_restarts} time(s))"
        if self.status in ("exited", "dead"):
            return f"exited with code {self.exit_code}"
        if self.status == "created":
            return None  # not started yet
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "id": self.id[:12],
            "status": self.status,
            "exit_code": self.exit_code,
            "oom_killed": self.oom_killed,
            "restart_count": self.restart_count,
            "image": self.image,
            "image_id": self.image_id,
            "digest": self.digest,
            "role": self.role,
            "deploy_id": self.deploy_id,
            "started_at": self.started_at.isoformat() if self.started_at else None,
        }


class ContainerRuntime(Protocol):
    """The engine operations deploys need. ``name`` is a container name (or id)."""

    def pull(self, reference: str) -> PulledImage:
        """Pull ``reference``, by digest when it names one (the tag is then not moved)."""
        ...

    def local_image(self, reference: str) -> PulledImage | None:
        """The image ``reference`` names on the engine now, ``None`` when absent."""
        ...

    def create(self, options: RunOptions) -> str: ...

    def start(self, name: str) -> None: ...

    def stop(self, name: str, timeout: float) -> None: ...

    def rename(self, name: str, new_name: str) -> None: ...

    def remove(self, name: str) -> None:
        """Remove (forced: a running container is killed); absent already is fine."""
        ...

    def set_restart(self, name: str, policy: str) -> None: ...

    def inspect(self, name: str) -> ContainerState | None: ...

    def logs(self, name: str, tail: int) -> str: ...

    def list(self, labels: Mapping[str, str]) -> list[ContainerState]:
        """Every container (any state) carrying all of ``labels``."""
        ...


# -- process ownership (throw-away containers of a process that died) ---------------------


def _start_ticks(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else None


def owner_label(pid: int | None = None) -> str:
    """``host pid start`` naming this process, for :data:`LABEL_OWNER`."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()} {pid} {_start_ticks(pid) or '-'}"


def owner_gone(label: str) -> bool | None:
    """Whether the process a :data:`LABEL_OWNER` names is gone; ``None``: another host's."""
    parts = label.split(" ")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    host, pid, ticks = parts
    if host != socket.gethostname():
        return None
    now = _start_ticks(int(pid))
    return now is None or ticks not in ("-", now)


# -- env files ------------------------------------------------------------------------------


def read_env_file(path: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of a Docker env file (``KEY=VALUE`` lines, ``#`` comments; a bare
    ``KEY`` takes the value from ``environ`` and is left out when unset).

    Values are taken literally (no quotes, no expansion), as ``docker run --env-file``
    does. Errors name the file and line, never a value.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(
            f"env-file {path} does not exist", hint="create it or fix 'env-file'"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"env-file {path} cannot be read ({type(exc).__name__})") from None
    out: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not _ENV_KEY_RE.fullmatch(key):
            raise UsageError(
                f"env-file {path}, line {number}: not a KEY=VALUE line",
                hint="variable names hold no spaces; the value follows the first '='",
            )
        if sep:
            out[key] = value
        elif key in environ:
            out[key] = environ[key]
    return out


# -- the Docker engine ----------------------------------------------------------------------


def _time(value: object) -> datetime | None:
    text = str(value or "")
    if not text or text.startswith("0001-"):
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:
        return None


def _state(data: Mapping[str, Any]) -> ContainerState:
    state = data.get("State") or {}
    config = data.get("Config") or {}
    host = data.get("HostConfig") or {}
    policy = (host.get("RestartPolicy") or {}).get("Name") or "no"
    return ContainerState(
        name=str(data.get("Name", "")).lstrip("/"),
        id=str(data.get("Id", "")),
        status=str(state.get("Status", "unknown")),
        exit_code=int(state.get("ExitCode") or 0),
        oom_killed=bool(state.get("OOMKilled")),
        restart_count=int(data.get("RestartCount") or 0),
        image=str(config.get("Image", "")),
        image_id=str(data.get("Image", "")),
        labels=dict(config.get("Labels") or {}),
        started_at=_time(state.get("StartedAt")),
        finished_at=_time(state.get("FinishedAt")),
        restart_policy=str(policy),
    )


def _restart_policy(text: str) -> dict[str, Any]:
    # "no" by name: an empty name is "leave it as it is" to the engine's update
    name, _, count = text.partition(":")
    policy: dict[str, Any] = {"Name": name}
    if count:
        policy["MaximumRetryCount"] = int(count)
    return policy


class DockerRuntime:
    """:class:`ContainerRuntime` on a ``docker.APIClient`` (``docker.from_env().api``)."""

    def __init__(self, api: Any) -> None:
        self.api = api

    @classmethod
    def connect(cls, timeout: float = 60.0) -> DockerRuntime:
        from tagkeeper.registries.local import connect

        return cls(connect(timeout).api)

    def close(self) -> None:
        self.api.close()

    # -- images -----------------------------------------------------------------------

    def pull(self, reference: str) -> PulledImage:
        from tagkeeper.refs import parse_reference

        ref = parse_reference(reference)
        if ref.digest is not None:
            repo, tag = f"{ref.repository}@{ref.digest}", None
        else:
            repo, tag = ref.repository, ref.tag or "latest"
        import docker.errors

        reported: str | None = None
        error: str | None = None
        try:
            with _engine(f"pulling {reference}"):
                for line in self.api.pull(repo, tag=tag, stream=True, decode=True):
                    if "error" in line:
                        error = str(line.get("error"))
                        break
                    status = str(line.get("status", ""))
                    if status.startswith("Digest: "):
                        reported = status.removeprefix("Digest: ").strip()
        except docker.errors.NotFound as exc:
            error = _explanation(exc)
        except RegistryError as exc:
            error = exc.message
        if error is not None:
            _pull_failed(reference, error)
        local = self.local_image(f"{repo}:{tag}" if tag else repo)
        if local is None:
            raise RegistryError(f"the engine pulled {reference} but cannot find it now")
        digest = ref.digest or reported or local.digest
        return PulledImage(reference, digest, local.image_id)

    def local_image(self, reference: str) -> PulledImage | None:
        import docker.errors

        try:
            with _engine(f"reading image {reference}"):
                data = self.api.inspect_image(reference)
        except docker.errors.ImageNotFound:
            return None
        except RegistryError as exc:
            if "No such image" in exc.message:
                return None
            raise
        repo = reference.split("@", 1)[0]
        if ":" in repo.rsplit("/", 1)[-1]:
            repo = repo.rsplit(":", 1)[0]
        digest = None
        for item in data.get("RepoDigests") or []:
            name, _, found = str(item).partition("@")
            if name == repo:
                digest = found
                break
        return PulledImage(reference, digest, str(data.get("Id", "")))

    # -- containers -------------------------------------------------------------------

    def create(self, options: RunOptions) -> str:
        port = options.container_port or options.port
        bindings: dict[str, Any] | None = None
        ports: list[int] | None = None
        if options.network == "bridge":
            bindings = {f"{port}/tcp": (options.bind, options.port)}
            ports = [port]
        host_config = self.api.create_host_config(
            network_mode=options.network,
            port_bindings=bindings,
            binds=list(options.volumes) or None,
            restart_policy=_restart_policy(options.restart),
            mem_limit=options.memory,
            nano_cpus=int(options.cpus * 1e9) if options.cpus else None,
        )
        with _engine(f"creating container {options.name}"):
            created = self.api.create_container(
                options.image,
                name=options.name,
                command=list(options.command) if options.command else None,
                environment=dict(options.env),
                labels=dict(options.labels),
                user=options.user,
                ports=ports,
                host_config=host_config,
                detach=True,
            )
        return str(created["Id"])

    def start(self, name: str) -> None:
        with _engine(f"starting container {name}"):
            self.api.start(name)

    def stop(self, name: str, timeout: float) -> None:
        # the engine waits `timeout` for the TERM, then kills; the HTTP call waits longer
        with _engine(f"stopping container {name}"):
            self.api.stop(name, timeout=max(0, round(timeout)))

    def rename(self, name: str, new_name: str) -> None:
        with _engine(f"renaming container {name} to {new_name}"):
            self.api.rename(name, new_name)

    def remove(self, name: str) -> None:
        import docker.errors

        try:
            with _engine(f"removing container {name}"):
                self.api.remove_container(name, force=True, v=False)
        except docker.errors.NotFound:
            return

    def set_restart(self, name: str, policy: str) -> None:
        with _engine(f"changing the restart policy of {name}"):
            self.api.update_container(name, restart_policy=_restart_policy(policy))

    def inspect(self, name: str) -> ContainerState | None:
        import docker.errors

        try:
            with _engine(f"reading container {name}"):
                data = self.api.inspect_container(name)
        except docker.errors.NotFound:
            return None
        state = _state(data)
        # the engine also matches an id prefix: a name that is not there must not find a
        # container whose id happens to start with it
        if name not in (state.name, state.id):
            return None
        return state

    def logs(self, name: str, tail: int) -> str:
        import docker.errors

        try:
            with _engine(f"reading the log of {name}"):
                data = self.api.logs(name, stdout=True, stderr=True, tail=tail)
        except docker.errors.NotFound:
            return ""
        return bytes(data).decode("utf-8", errors="replace")

    def list(self, labels: Mapping[str, str]) -> list[ContainerState]:
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        with _engine("listing containers"):
            found = self.api.containers(all=True, filters=filters)
        out: list[ContainerState] = []
        for entry in found:
            state = self.inspect(str(entry["Id"]))
            if state is not None:
                out.append(state)
        return out


@contextmanager
def _engine(what: str) -> Iterator[None]:
    """Turns docker SDK and transport errors into tagkeeper errors (exit 5).

    ``NotFound`` passes through: the callers that expect it handle it.
    """
    import docker.errors
    import requests

    try:
        yield
    except docker.errors.NotFound:
        raise
    except docker.errors.APIError as exc:
        raise RegistryError(f"the Docker engine failed {what}: {_explanation(exc)}") from None
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise RegistryError(
            f"the Docker engine failed {what}: {type(exc).__name__}", hint=_ENGINE_HINT
        ) from None


def _explanation(exc: Any) -> str:
    from tagkeeper.deploy.checks import excerpt

    text = getattr(exc, "explanation", None) or str(exc)
    return excerpt(str(text), limit=300)


def _pull_failed(reference: str, message: str) -> NoReturn:
    from tagkeeper.deploy.checks import excerpt

    text = excerpt(message, limit=300)
    lowered = text.lower()
    if "not found" in lowered or "manifest unknown" in lowered:
        raise UsageError(f"{reference} does not exist in its registry ({text})")
    if "unauthorized" in lowered or "denied" in lowered or "authentication" in lowered:
        raise AuthError(
            f"the registry refused to let the engine pull {reference} ({text})",
            hint="log the engine in: docker login (the credentials docker uses are used)",
        )
    raise RegistryError(f"pulling {reference} failed: {text}")
