"""A real ``docker-registry`` (distribution 2.8) for tests and benchmarks, and a pusher.

:func:`start_registry` writes a config into a folder, starts ``docker-registry serve`` on
127.0.0.1 and a free port, and waits until ``/v2/`` answers. :class:`Pusher` uploads blobs
and manifests built by :mod:`tests.emulators.images` over the registry API.
"""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.emulators.images import Blob, Built


class RegistryStartError(RuntimeError):
    """The registry binary is missing or did not come up."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Registry:
    """A running registry: ``host`` is ``127.0.0.1:<port>``."""

    host: str
    root: Path
    delete_enabled: bool
    auth: tuple[str, str] | None = None
    tls: bool = False  # https with a self-signed certificate (see self_signed)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def image(self, repo: str) -> str:
        return f"{self.host}/{repo}"


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1, signed by nobody (``openssl``)."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "cert.pem", folder / "key.pem"
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RegistryStartError("openssl is not installed; .ci/run installs it")
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def _config(
    root: Path,
    port: int,
    *,
    delete: bool,
    htpasswd: Path | None,
    tls: tuple[Path, Path] | None = None,
) -> str:
    lines = [
        "version: 0.1",
        "log:",
        "  level: error",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {root / 'data'}",
        "  delete:",
        f"    enabled: {'true' if delete else 'false'}",
        "http:",
        f"  addr: 127.0.0.1:{port}",
    ]
    if tls is not None:
        lines += ["  tls:", f"    certificate: {tls[0]}", f"    key: {tls[1]}"]
    if htpasswd is not None:
        lines += ["auth:", "  htpasswd:", "    realm: tagkeeper-tests", f"    path: {htpasswd}"]
    return "\n".join(lines) + "\n"


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash for htpasswd, made with the system's crypt(3) (no extra package)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

    method = crypt.METHOD_BLOWFISH  # bcrypt: the only hash distribution htpasswd reads
    hashed = crypt.crypt(password, crypt.mksalt(method, rounds=1 << 4))
    if not hashed or not hashed.startswith("$2"):
        raise RegistryStartError("this system's crypt(3) cannot make bcrypt hashes")
    return hashed


@contextmanager
def start_registry(
    root: Path,
    *,
    delete: bool = True,
    auth: tuple[str, str] | None = None,
    binary: str = "docker-registry",
    tls: bool = False,
) -> Iterator[Registry]:
    """Run ``docker-registry serve`` until the block ends."""
    path = shutil.which(binary) or (binary if Path(binary).exists() else None)
    if path is None:
        raise RegistryStartError(
            f"{binary} is not installed (Debian package docker-registry); .ci/run installs it"
        )
    root.mkdir(parents=True, exist_ok=True)
    htpasswd = None
    if auth is not None:
        htpasswd = root / "htpasswd"
        htpasswd.write_text(f"{auth[0]}:{bcrypt_hash(auth[1])}\n", encoding="utf-8")
    port = _free_port()
    pair = self_signed(root / "tls") if tls else None
    config = root / "config.yml"
    config.write_text(
        _config(root, port, delete=delete, htpasswd=htpasswd, tls=pair), encoding="utf-8"
    )
    scheme = "https" if tls else "http"
    log = (root / "registry.log").open("wb")
    proc = subprocess.Popen([path, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                raise RegistryStartError(
                    f"docker-registry exited with {proc.returncode}: "
                    + (root / "registry.log").read_text(errors="replace")[-2000:]
                )
            try:
                answer = httpx.get(
                    f"{scheme}://127.0.0.1:{port}/v2/",
                    timeout=1,
                    verify=False,  # noqa: S501 - our own self-signed test registry
                )
                if answer.status_code in (200, 401):
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RegistryStartError(f"docker-registry did not answer on 127.0.0.1:{port}")
            time.sleep(0.05)
        yield Registry(f"127.0.0.1:{port}", root, delete, auth, tls)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class Pusher:
    """Uploads blobs and manifests to one registry over the distribution API."""

    def __init__(self, registry: Registry, client: httpx.Client | None = None) -> None:
        self.registry = registry
        headers = {}
        if registry.auth is not None:
            raw = f"{registry.auth[0]}:{registry.auth[1]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        self.client = client or httpx.Client(
            timeout=30,
            headers=headers,
            verify=not registry.tls,  # our own self-signed test registry
        )
        self.requests = 0

    def close(self) -> None:
        self.client.close()

    def _url(self, repo: str, rest: str) -> str:
        return f"{self.registry.url}/v2/{repo}/{rest}"

    def blob(self, repo: str, blob: Blob) -> None:
        self.requests += 1
        head = self.client.head(self._url(repo, f"blobs/{blob.digest}"))
        if head.status_code == 200:
            return
        self.requests += 2
        start = self.client.post(self._url(repo, "blobs/uploads/"))
        if start.status_code != 202:
            raise RuntimeError(f"blob upload start: {start.status_code} {start.text}")
        location = httpx.URL(self.registry.url).join(start.headers["Location"])
        done = self.client.put(
            location.copy_merge_params({"digest": blob.digest}),
            content=blob.data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if done.status_code != 201:
            raise RuntimeError(f"blob upload: {done.status_code} {done.text}")

    def manifest(self, repo: str, built: Built, reference: str | None = None) -> str:
        """PUT one manifest (by ``reference``, a tag, or by its digest); returns the digest."""
        self.requests += 1
        answer = self.client.put(
            self._url(repo, f"manifests/{reference or built.digest}"),
            content=built.data,
            headers={"Content-Type": built.media_type},
        )
        if answer.status_code != 201:
            raise RuntimeError(f"manifest PUT {reference}: {answer.status_code} {answer.text}")
        digest = answer.headers.get("Docker-Content-Digest")
        if digest != built.digest:
            raise RuntimeError(f"registry stored {digest}, expected {built.digest}")
        return built.digest

    def push(self, repo: str, built: Built, *tags: str) -> str:
        """Push ``built`` with everything it references (children first), then tag it."""
        for blob in built.all_blobs():
            self.blob(repo, blob)
        for part in built.walk():
            if part is not built:
                self.manifest(repo, part)
        if not tags:
            return self.manifest(repo, built)
        for tag in tags:
            self.manifest(repo, built, tag)
        return built.digest

    def tag(self, repo: str, built: Built, tag: str) -> None:
        self.manifest(repo, built, tag)

    def status(self, repo: str, reference: str) -> int:
        """HTTP status of a manifest HEAD (200 present, 404 gone)."""
        accept = ", ".join(
            (
                "application/vnd.oci.image.index.v1+json",
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json",
                "application/vnd.docker.distribution.manifest.v2+json",
            )
        )
        return self.client.head(
            self._url(repo, f"manifests/{reference}"), headers={"Accept": accept}
        ).status_code

    def tags(self, repo: str) -> list[str]:
        answer = self.client.get(self._url(repo, "tags/list"), params={"n": 10000})
        if answer.status_code == 404:
            return []
        answer.raise_for_status()
        return sorted(answer.json().get("tags") or [])
