"""A deploy host for the engine's integration tests: a folder with ``tagkeeper.toml`` and a
ledger, a real registry to pull from, the real Docker engine, and ``tagkeeper`` run as a
real process (so it can be killed for real).

:class:`DeployHost` names everything uniquely (repository, container, ports) and removes
at teardown exactly what it made: the service's containers, the references the deploys
pulled, and the images it built. Images with a failure mode are the test app's image
with the mode's variables baked in (``ENV``), built ``FROM`` the session's app image.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.deploykit.app import publish
from tests.services import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from tests.deploykit.app import AppImages
    from tests.integration.oci.registry import Registry

ROOT = Path(__file__).resolve().parents[3]


def derived(client: Any, base: str, env: Mapping[str, str]) -> str:
    """An image ``FROM base`` with ``env`` baked in; its id."""
    lines = [f"FROM {base}", *(f"ENV {k}={v}" for k, v in env.items())]
    lines.append(f"LABEL org.tagkeeper.test=engine-{uuid.uuid4().hex[:8]}")
    data = ("\n".join(lines) + "\n").encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    image, _ = client.images.build(fileobj=buffer, custom_context=True, rm=True, forcerm=True)
    return str(image.id)


@dataclass
class DeployHost:
    folder: Path
    client: Any
    registry: Registry
    images: AppImages
    env_name: str = "prod"
    unique: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    port: int = field(default_factory=free_port)
    candidate_port: int = field(default_factory=free_port)
    published: dict[str, str] = field(default_factory=dict)  # tag -> digest
    built: list[str] = field(default_factory=list)
    extra_containers: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.write_config()

    # -- names -------------------------------------------------------------------------

    @property
    def repo(self) -> str:
        return f"{self.registry.host}/tk-engine-{self.unique}/app"

    @property
    def container(self) -> str:
        return f"tk-engine-{self.unique}"

    @property
    def ledger(self) -> Path:
        return self.folder / "ledger.db"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ref(self, tag: str) -> str:
        return f"{self.repo}:{tag}"

    # -- the configuration --------------------------------------------------------------

    def table(self, **extra: str) -> str:
        """This host's ``[deploy.ENV]`` table; ``extra`` keys are TOML values as text."""
        keys = {
            "image": f'"{self.repo}"',
            "container": f'"{self.container}"',
            "port": str(self.port),
            "candidate-port": str(self.candidate_port),
            "network": '"host"',
            "port-env": '"SERVER_PORT"',
            "interval": '"250ms"',
            "successes": "2",
            "health-timeout": '"20s"',
            "stop-timeout": '"10s"',
            **extra,
        }
        body = "\n".join(f"{k} = {v}" for k, v in keys.items())
        return f"[deploy.{self.env_name}]\n{body}\n"

    def write_config(self, *others: str, **extra: str) -> None:
        """``tagkeeper.toml``: the ledger, this host's table and ``others``."""
        tables = "\n".join([self.table(**extra), *others])
        (self.folder / "tagkeeper.toml").write_text(
            f'ledger = "{self.ledger}"\n\n{tables}', encoding="utf-8"
        )

    # -- images ------------------------------------------------------------------------

    def publish(self, tag: str, version: str | None = None, **env: str) -> str:
        """Push the app (``version``, default the tag without ``v``) as ``repo:tag``,
        with ``env`` baked in; its digest."""
        base = self.images.get(version or tag.lstrip("v")).id
        image = base
        if env:
            image = derived(self.client, base, env)
            self.built.append(image)
        pushed = publish(self.client, image, self.ref(tag))
        self.published[tag] = pushed.digest
        return pushed.digest

    # -- running tagkeeper ----------------------------------------------------------------

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "TAGKEEPER_"))}
        env["PYTHONPATH"] = str(ROOT)
        return env

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "tagkeeper", *args]

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            cwd=self.folder,
            env=self.environ(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            cwd=self.folder,
            env=self.environ(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def deploy(self, tag: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run("deploy", "--env", self.env_name, "--image", self.ref(tag), *extra)

    def status(self) -> dict[str, Any]:
        done = self.run("status", "--env", self.env_name, "--format", "json")
        assert done.returncode == 0, done.stderr
        payload: dict[str, Any] = json.loads(done.stdout)
        return payload

    # -- reading the truth ------------------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        """The ledger's deploys of this environment, newest first (read-only)."""
        if not self.ledger.exists():
            return []
        with contextlib.closing(sqlite3.connect(f"file:{self.ledger}?mode=ro", uri=True)) as db:
            db.row_factory = sqlite3.Row
            rows = db.execute(
                "SELECT * FROM deploys WHERE environment = ? ORDER BY id DESC", (self.env_name,)
            ).fetchall()
            return [dict(row) for row in rows]

    def steps(self) -> list[tuple[int, str, str, str]]:
        """Every step recorded: (deploy id, phase, status, at)."""
        if not self.ledger.exists():
            return []
        with contextlib.closing(sqlite3.connect(f"file:{self.ledger}?mode=ro", uri=True)) as db:
            try:
                rows = db.execute(
                    "SELECT deploy_id, phase, status, at FROM deploy_steps ORDER BY id"
                ).fetchall()
            except sqlite3.OperationalError:  # not created yet
                return []
            return [(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]

    def inspect(self, suffix: str = "") -> dict[str, Any] | None:
        import docker.errors

        name = f"{self.container}-{suffix}" if suffix else self.container
        try:
            data: dict[str, Any] = self.client.api.inspect_container(name)
        except docker.errors.NotFound:
            return None
        return data

    def family(self) -> dict[str, dict[str, Any]]:
        """The service's containers by name suffix ("" for the live one)."""
        out = {}
        for suffix in ("", "candidate", "previous", "outgoing"):
            data = self.inspect(suffix)
            if data is not None:
                out[suffix] = data
        return out

    def running_version(self) -> str | None:
        from tests.deploykit.app import http_get

        try:
            answer = http_get(self.url + "/version", timeout=3)
        except OSError:
            return None
        if answer.status != 200:
            return None
        return str(answer.json()["version"])

    def wait_for_step(
        self, phase: str, status: str, *, after: int = 0, timeout: float = 90
    ) -> None:
        """Wait until a step ``phase``/``status`` is recorded beyond the first ``after``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, p, s, _ in self.steps()[after:]:
                if p == phase and s == status:
                    return
            time.sleep(0.005)
        pytest.fail(f"no step {phase} {status} within {timeout}s")

    # -- teardown ------------------------------------------------------------------------------

    def cleanup(self) -> None:
        import docker.errors

        names = [self.container, *(f"{self.container}-{s}" for s in
                 ("candidate", "previous", "outgoing")), *self.extra_containers]  # fmt: skip
        for name in names:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.api.remove_container(name, force=True)
        for entry in self.client.api.images(name=self.repo):
            for ref in [*(entry.get("RepoTags") or []), *(entry.get("RepoDigests") or [])]:
                if ref.startswith(self.repo):
                    with contextlib.suppress(docker.errors.APIError):
                        self.client.api.remove_image(ref, noprune=False)
        for image in self.built:
            with contextlib.suppress(docker.errors.APIError):
                self.client.api.remove_image(image, force=True)


@contextlib.contextmanager
def deploy_host(
    folder: Path, client: Any, registry: Registry, images: AppImages, **kw: Any
) -> Iterator[DeployHost]:
    host = DeployHost(folder, client, registry, images, **kw)
    try:
        yield host
    finally:
        host.cleanup()
