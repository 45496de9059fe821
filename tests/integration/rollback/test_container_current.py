"""``previous --container`` reads the current tag from a container on the real engine."""

from __future__ import annotations

import contextlib
import io
import secrets
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tagkeeper.cli import main
from tagkeeper.errors import ExitCode
from tests.services import require_binary, require_docker

if TYPE_CHECKING:
    from collections.abc import Iterator

BUSYBOX = Path("/usr/bin/busybox")


def _context() -> io.BytesIO:
    dockerfile = b"FROM scratch\nCOPY busybox /bin/busybox\nLABEL org.tagkeeper.test=rollback\n"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
        tar.add(BUSYBOX, arcname="busybox")
    buffer.seek(0)
    return buffer


@pytest.fixture
def running() -> Iterator[tuple[str, str]]:
    """A container started from ``<repo>:v1.1.0``: (container name, repository)."""
    require_binary("busybox", "the test image copies the static busybox into FROM scratch")
    require_docker()
    import docker

    client: Any = docker.from_env(timeout=60)
    suffix = secrets.token_hex(4)
    repository = f"ghcr.io/tagkeeper-test/rollback-{suffix}"
    name = f"tagkeeper-rollback-{suffix}"
    image, _logs = client.images.build(fileobj=_context(), custom_context=True, rm=True)
    image.tag(repository, "v1.1.0")
    container = client.containers.run(
        f"{repository}:v1.1.0",
        ["/bin/busybox", "sleep", "120"],
        name=name,
        network_mode="host",
        detach=True,
    )
    try:
        yield name, repository
    finally:
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(f"{repository}:v1.1.0", noprune=False)
        client.close()


def test_previous_takes_the_current_tag_from_the_container(
    running: tuple[str, str],
    ledger_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name, repository = running
    monkeypatch.setenv("TAGKEEPER_LEDGER", str(ledger_path))
    for tag in ("v1.0.0", "v1.1.0", "v1.2.0"):
        ref = f"{repository}:{tag}"
        assert main(["record", "--env", "prod", "--image", ref, "--status", "succeeded"]) == 0
    capsys.readouterr()

    # The ledger's newest success is v1.2.0, but the container runs v1.1.0.
    assert main(["previous", "--image", repository, "--container", name]) == 0
    assert capsys.readouterr().out == "v1.0.0\n"


def test_a_container_of_another_image_or_none_is_refused(
    running: tuple[str, str], ledger_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, _repository = running
    monkeypatch.setenv("TAGKEEPER_LEDGER", str(ledger_path))
    assert main(["previous", "--image", "ghcr.io/o/other", "--container", name]) == (ExitCode.USAGE)
    assert main(["previous", "--image", "ghcr.io/o/other", "--container", "no-such-x"]) == (
        ExitCode.USAGE
    )
