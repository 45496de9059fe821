"""The test web app: a Spring-like service on ``busybox nc -ll -e handler.sh``.

The image is ``FROM scratch`` with Debian's static busybox (every applet linked in
``/bin``) and the scripts of ``tests/apps/webapp``. Behaviour is chosen by the
environment (see ``tests/integration/deploy/README.md``); the listening port comes
from ``SERVER_PORT`` and every answer names ``X-App-Version`` and ``X-App-Port``.

- :func:`build_app` builds one image and returns its id; :class:`AppImages` caches
  one build per version for a test session and removes them all at the end;
- :func:`publish` pushes an image to a registry under a tag and drops the local
  registry tag, so a deploy has to pull it;
- :func:`run_app` starts a container on the host network and waits until it listens.
"""

from __future__ import annotations

import contextlib
import io
import json
import shlex
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.deploykit import ServiceError

if TYPE_CHECKING:
    from collections.abc import Mapping

APP_DIR = Path(__file__).resolve().parents[1] / "apps" / "webapp"
BUSYBOX = Path("/usr/bin/busybox")
LOCAL_REPO = "tagkeeper-test-webapp"
TEST_LABEL = "org.tagkeeper.test"
DEFAULT_PORT = 8520


def _applets() -> list[str]:
    if not BUSYBOX.is_file():
        raise ServiceError(f"{BUSYBOX} is missing (Debian busybox-static); .ci/run installs it")
    out = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True, timeout=10
    )
    return [name for name in out.stdout.split() if name and name != "busybox"]


def _add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def build_context(version: str, label: str) -> io.BytesIO:
    """A build context in memory: Dockerfile, ``rootfs/`` with busybox and the app."""
    dockerfile = (
        "FROM scratch\n"
        # The unique label comes first: no build step is shared with another build,
        # so removing one image can never race another one's cache.
        f"LABEL {TEST_LABEL}={label} org.opencontainers.image.version={version}\n"
        "COPY rootfs/ /\n"
        f"ENV PATH=/bin SERVER_PORT={DEFAULT_PORT} APP_VERSION={version}\n"
        f"EXPOSE {DEFAULT_PORT}\n"
        "STOPSIGNAL SIGTERM\n"
        'ENTRYPOINT ["/app/entrypoint.sh"]\n'
    ).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add_file(tar, "Dockerfile", dockerfile, 0o644)
        for folder in ("rootfs/bin", "rootfs/app"):
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        info = tarfile.TarInfo("rootfs/tmp")
        info.type = tarfile.DIRTYPE
        info.mode = 0o1777
        tar.addfile(info)
        tar.add(BUSYBOX, arcname="rootfs/bin/busybox")
        for applet in _applets():
            link = tarfile.TarInfo(f"rootfs/bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
        for script in ("entrypoint.sh", "handler.sh", "metrics.awk"):
            _add_file(tar, f"rootfs/app/{script}", (APP_DIR / script).read_bytes(), 0o755)
    buffer.seek(0)
    return buffer


def build_app(client: Any, *, version: str = "1.0.0", tag: str | None = None) -> str:
    """Build the app image for ``version`` (its default ``APP_VERSION``); its id.

    Every build carries its own unique label, so it has its own image id. ``tag``
    (``repo:tag``) is set on the engine when given.
    """
    try:
        image, _ = client.images.build(
            fileobj=build_context(version, uuid.uuid4().hex),
            custom_context=True,
            rm=True,
            forcerm=True,
        )
    except Exception as exc:  # BuildError, APIError: say what failed
        raise ServiceError(f"building the test app image failed: {exc}") from exc
    image_id = str(image.id)
    if tag is not None:
        repo, _, name = tag.rpartition(":")
        client.api.tag(image_id, repo, name, force=True)
    return image_id


@dataclass(frozen=True)
class AppImage:
    """A built app image: ``id`` and the local ``ref`` (``repo:version``) that holds it."""

    id: str
    ref: str
    version: str


@dataclass
class AppImages:
    """One build per version, made on first use; :meth:`cleanup` removes every one."""

    client: Any
    repo: str = field(default_factory=lambda: f"{LOCAL_REPO}-{uuid.uuid4().hex[:10]}")
    built: dict[str, AppImage] = field(default_factory=dict)

    def get(self, version: str = "1.0.0") -> AppImage:
        if version not in self.built:
            ref = f"{self.repo}:{version}"
            self.built[version] = AppImage(
                build_app(self.client, version=version, tag=ref), ref, version
            )
        return self.built[version]

    def publish(self, ref: str, version: str = "1.0.0") -> Published:
        """Push the build of ``version`` as ``ref`` (``127.0.0.1:PORT/repo:tag``)."""
        return publish(self.client, self.get(version).id, ref)

    def cleanup(self) -> None:
        import docker.errors

        for image in self.built.values():
            with contextlib.suppress(docker.errors.APIError):
                self.client.api.remove_image(image.id, force=True)
        self.built.clear()


@dataclass(frozen=True)
class Published:
    """An image in a registry: ``ref`` (``HOST/repo:tag``) and its manifest digest."""

    ref: str
    digest: str

    @property
    def pinned(self) -> str:
        """``HOST/repo@sha256:...``."""
        return f"{self.ref.rpartition(':')[0]}@{self.digest}"


def publish(client: Any, image: str, ref: str, *, keep_local: bool = False) -> Published:
    """Tag ``image`` (an id or ref) as ``ref`` (``127.0.0.1:PORT/repo:tag``) and push it.

    The engine pushes over plain HTTP: it treats 127.0.0.0/8 registries as insecure.
    Unless ``keep_local``, the local ``ref`` tag is removed afterwards, so a
    ``docker pull ref`` really asks the registry.
    """
    repo, _, tag = ref.rpartition(":")
    client.api.tag(image, repo, tag, force=True)
    digest = None
    try:
        for line in client.api.push(repo, tag, stream=True, decode=True):
            if "error" in line:
                raise ServiceError(f"docker push {ref} failed: {line['error']}")
            aux = line.get("aux") or {}
            digest = aux.get("Digest", digest)
    finally:
        if not keep_local:
            untag(client, ref)
    if not digest:
        raise ServiceError(f"docker push {ref} reported no digest")
    return Published(ref, str(digest))


def untag(client: Any, ref: str) -> None:
    """Remove the tag ``ref`` from the engine (never the image under another tag)."""
    import docker.errors

    with contextlib.suppress(docker.errors.APIError):
        client.api.remove_image(ref, noprune=True)


@dataclass
class Answer:
    """One HTTP answer: status, headers (lower-case names), body text."""

    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


def http_get(url: str, *, timeout: float = 5.0, headers: Mapping[str, str] | None = None) -> Answer:
    """GET ``url`` (loopback only) on a new connection; any status is an answer."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                response.read().decode(),
            )
    except urllib.error.HTTPError as exc:
        with exc:
            return Answer(
                exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read().decode()
            )


@dataclass
class AppContainer:
    """A running container of the app on the host network."""

    client: Any
    id: str
    name: str
    port: int
    image: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``: the upstream address a proxy and Prometheus use."""
        return f"127.0.0.1:{self.port}"

    def get(self, path: str, **kw: Any) -> Answer:
        return http_get(self.url + path, **kw)

    def logs(self, tail: int | str = "all") -> str:
        data: bytes = self.client.api.logs(self.id, stdout=True, stderr=True, tail=tail)
        return data.decode(errors="replace")

    def state(self) -> dict[str, Any]:
        """The engine's ``State`` of the container (``Status``, ``ExitCode``, ...)."""
        state: dict[str, Any] = self.client.api.inspect_container(self.id)["State"]
        return state

    def wait_listening(self, timeout: float = 15.0) -> None:
        """Wait until the app logs that it started, or fail with its log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "Started WebApp" in self.logs(tail=20):
                return
            if self.state()["Status"] not in ("created", "running"):
                break
            time.sleep(0.05)
        raise ServiceError(
            f"app {self.name} did not start listening on {self.address}; "
            f"state {self.state()['Status']}; log:\n{self.logs(tail=30)}"
        )

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                last = self.get("/actuator/health", timeout=2)
                if last.status == 200 and '"UP"' in last.body:
                    return
            time.sleep(0.1)
        raise ServiceError(f"app {self.name} not healthy after {timeout}s (last: {last})")

    def set_mode(self, **env: str | int) -> None:
        """Change mode variables of the running app (``ERROR_PERCENT=100``, ...).

        They apply to every request from now on, over the container's environment;
        ``set_mode()`` with no argument goes back to the environment alone.
        """
        for key in env:
            if not key.isidentifier():
                raise ValueError(f"not a variable name: {key}")
        lines = "".join(f"{key}={shlex.quote(str(value))}\n" for key, value in env.items())
        script = (
            'printf %s "$1" > /tmp/app/.mode.tmp && mv /tmp/app/.mode.tmp /tmp/app/mode'
            if env
            else "rm -f /tmp/app/mode"
        )
        exec_id = self.client.api.exec_create(self.id, ["sh", "-c", script, "sh", lines])
        output = self.client.api.exec_start(exec_id)
        code = self.client.api.exec_inspect(exec_id)["ExitCode"]
        if code != 0:
            raise ServiceError(f"set_mode failed ({code}): {output!r}")

    def stop(self, timeout: int = 35) -> int:
        """``docker stop`` (TERM, then KILL after ``timeout`` s); the exit code."""
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound):
            self.client.api.stop(self.id, timeout=timeout)
            return int(self.state()["ExitCode"])
        return -1

    def remove(self) -> None:
        import docker.errors

        with contextlib.suppress(docker.errors.NotFound):
            self.client.api.remove_container(self.id, force=True, v=True)


def run_app(
    client: Any,
    image: str,
    *,
    port: int,
    env: Mapping[str, str | int] | None = None,
    name: str | None = None,
    labels: Mapping[str, str] | None = None,
    wait: bool = True,
) -> AppContainer:
    """Start a container of ``image`` listening on ``port`` (host network).

    ``SERVER_PORT`` is set to ``port``; ``env`` adds the mode variables. With
    ``wait``, returns once the app logs "Started" (not once it is healthy: modes
    such as ``HEALTHY_AFTER`` are for the caller to observe). The caller removes
    the container (:meth:`AppContainer.remove`), or uses :class:`AppFleet`.
    """
    environment = {"SERVER_PORT": str(port)}
    environment.update({k: str(v) for k, v in (env or {}).items()})
    name = name or f"tk-webapp-{uuid.uuid4().hex[:10]}"
    container = client.containers.run(
        image,
        name=name,
        environment=environment,
        network_mode="host",
        labels={TEST_LABEL: "deploykit", **dict(labels or {})},
        detach=True,
    )
    app = AppContainer(client, str(container.id), name, port, image)
    if wait:
        try:
            app.wait_listening()
        except ServiceError:
            app.remove()
            raise
    return app


@dataclass
class AppFleet:
    """Containers started for one test; :meth:`cleanup` removes each one."""

    client: Any
    started: list[AppContainer] = field(default_factory=list)

    def run(self, image: str, *, port: int, **kw: Any) -> AppContainer:
        app = run_app(self.client, image, port=port, **kw)
        self.started.append(app)
        return app

    def cleanup(self) -> None:
        for app in self.started:
            app.remove()
        self.started.clear()
