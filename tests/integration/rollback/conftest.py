"""Fixtures for rollback integration tests: the Deployments fake over loopback, ledgers.

``deployments`` is a GHCR emulator on 127.0.0.1 with the GitHub Deployments routes of
``tests/emulators/deployments.py`` installed and one repository, ``octo/app``; ``gh_repo``
is a PyGithub ``Repository`` for it built by tagkeeper's own :func:`connect` (no write
pacing, small pages so that pagination is exercised). Nothing here can be missing: the
fake needs only the standard library, so these fixtures never skip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from tagkeeper.rollback.github import connect
from tagkeeper.secret import Secret
from tests.emulators.deployments import DeploymentsFake, install
from tests.emulators.ghcr import GhcrEmulator

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

REPO = "octo/app"
IMAGE = "ghcr.io/octo/app"


@dataclass
class GitHubFake:
    emu: GhcrEmulator
    fake: DeploymentsFake
    token: str

    @property
    def api_url(self) -> str:
        return self.emu.api_url

    def repo(self, *, per_page: int = 5) -> Any:
        return connect(
            REPO,
            Secret(self.token),
            api_url=self.api_url,
            per_page=per_page,
            seconds_between_writes=None,
        )


@pytest.fixture
def github_fake() -> Iterator[GitHubFake]:
    emu = GhcrEmulator(latency=0.0)
    fake = install(emu)
    emu.start()
    try:
        emu.add_user("octo")
        token = emu.add_token(login="octo", kind="github_token", default="write")
        fake.add_repo(REPO)
        yield GitHubFake(emu, fake, token)
    finally:
        emu.stop()
    if emu.errors:
        pytest.fail("the emulator raised inside a handler: " + "; ".join(emu.errors))


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "ledger.db"
