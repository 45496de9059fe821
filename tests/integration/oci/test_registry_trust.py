"""What ``--insecure`` means against a real registry, and answers that never end.

- A real ``docker-registry`` serving https with a self-signed certificate on 127.0.0.1:
  without ``--insecure`` the certificate is an error (exit 5) that says what to do, never
  a silent fall back to plain http; with ``--insecure`` that host (and only it) is read
  over https without verifying the certificate.
- A real server on a loopback socket that drips its answer one byte at a time (headers
  or body): the per-request deadline ends it (exit 5), on the socket, not only between
  the chunks of a body.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import TYPE_CHECKING

import pytest

from tagkeeper.cli import main
from tagkeeper.errors import RegistryError
from tagkeeper.registries.oci import OciBackend
from tagkeeper.transport import RetryPolicy, build_client
from tests.emulators import images as im
from tests.integration.oci.conftest import _start
from tests.integration.oci.registry import Pusher

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.integration.oci.registry import Registry

pytestmark = pytest.mark.integration


@pytest.fixture
def tls_registry(tmp_path: Path) -> Iterator[Registry]:
    yield from _start(tmp_path / "registry-tls", delete=True, tls=True)


def test_a_self_signed_registry_needs_insecure_and_never_falls_back_to_http(
    tls_registry: Registry, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    pusher = Pusher(tls_registry)
    try:
        pusher.push("trust/app", im.image(created=None, label="tls"), "v1.0.0")
    finally:
        pusher.close()
    image = tls_registry.image("trust/app")

    with build_client() as client:
        verified = OciBackend(image, client, retry=RetryPolicy(attempts=1))
        with pytest.raises(RegistryError) as caught:
            verified.versions()
    assert "certificate" in caught.value.message
    assert "--insecure" in (caught.value.hint or "")
    assert verified.stats.by_kind == {"ping": 1}  # no second try over plain http

    with build_client(insecure_hosts=[tls_registry.host]) as client:
        insecure = OciBackend(image, client, insecure=True)
        assert [v.tags for v in insecure.versions()] == [{"v1.0.0"}]
        assert insecure.registry.base_url().startswith("https://")

    # the same through the command line
    capsys.readouterr()
    args = ["prune", "--image", image, "--keep", "1", "--dry-run", "--format", "json"]
    assert main(args) == 5
    _, err = capsys.readouterr()
    assert "certificate" in err
    assert main([*args, "--insecure"]) == 0
    out, _ = capsys.readouterr()
    assert json.loads(out)["images"][0]["error"] is None


class DripServer:
    """A loopback server that answers each connection one byte every ``every`` seconds:
    a status line and headers that never end (``headers``), or a body that never ends."""

    def __init__(self, *, headers: bool, every: float = 0.05) -> None:
        self.headers = headers
        self.every = every
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(1)
            try:
                conn.recv(65536)
                if self.headers:
                    head = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100_000
                else:
                    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    head += b"Transfer-Encoding: chunked\r\n\r\n"
                    conn.sendall(head)
                    head = b"1\r\n \r\n" * 100_000
                for byte in head:
                    if self.stop.is_set():
                        return
                    conn.sendall(bytes([byte]))
                    self.sent += 1
                    time.sleep(self.every)
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        self.sock.close()


@pytest.mark.parametrize("where", ["headers", "body"])
def test_an_answer_that_drips_ends_at_the_deadline(where: str) -> None:
    server = DripServer(headers=where == "headers")
    try:
        with build_client() as client:
            backend = OciBackend(
                f"127.0.0.1:{server.port}/app",
                client,
                insecure=True,
                retry=RetryPolicy(attempts=1, deadline=1.5),
            )
            started = time.monotonic()
            with pytest.raises(RegistryError) as caught:
                backend.versions()
            took = time.monotonic() - started
    finally:
        server.close()
    # https is refused first (the server speaks plain http), then the drip: both bounded
    assert took < 8
    assert "1.5 seconds" in caught.value.message or "ReadTimeout" in caught.value.message
