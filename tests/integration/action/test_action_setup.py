"""How the action sets itself up, run for real by ``act``: used from another repository,
on a runner whose ``python3`` is too old, without ``uv``, and with a tampered lock file."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from tests.integration.action.conftest import COPY_STEP, REPO_ROOT, ActRunner, head_sha

pytestmark = pytest.mark.integration


def checkout_copy(dest: Path) -> Path:
    """The files of this checkout (as a release of the action would hold them) at ``dest``."""
    files = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "ls-files", "-z", "--cached", "--others",
         "--exclude-standard"],
        capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, files):
        source = REPO_ROOT / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


DECOYS = """      - name: A caller's workspace holding names that would shadow the action's code
        run: |
          mkdir -p tagkeeper typer
          for module in tagkeeper/__init__.py typer/__init__.py httpx.py; do
            echo 'raise SystemExit("imported from the caller workspace")' > "$module"
          done
          printf '[tool.tagkeeper]\\nsha-length = 10\\n' > pyproject.toml
"""


def test_the_action_works_from_another_repository(act: ActRunner, tmp_path: Path) -> None:
    """``uses: OWNER/tagkeeper@ref``: the code and the lock come from the action's own
    directory; the caller's workspace only supplies the configuration."""
    action_dir = checkout_copy(tmp_path / "tagkeeper-release")
    before = {p.relative_to(action_dir) for p in action_dir.rglob("*")}
    workflow = f"""on: push
jobs:
  t:
    runs-on: ubuntu-latest
    steps:
{DECOYS}      - id: tags
        uses: acme/tagkeeper@v9
        with:
          command: tags
          image: ghcr.io/${{{{ github.repository }}}}
      - id: check
        uses: acme/tagkeeper@v9
        with:
          command: check
          env: dev
          image: ${{{{ steps.tags.outputs.tags }}}}
      - env:
          TAGS: ${{{{ steps.tags.outputs.tags }}}}
          OK: ${{{{ steps.check.outputs.ok }}}}
        run: |
          printf '%s' "$TAGS" > "$TK_OUT/tags"
          printf '%s' "$OK" > "$TK_OUT/ok"
"""
    result = act(
        workflow,
        payload={"ref": "refs/heads/main"},
        remote="https://github.com/Other-Org/Service.git",
        local_repositories={"acme/tagkeeper@v9": action_dir},
    )
    assert result.returncode == 0, result.log[-5000:]
    sha = head_sha(tmp_path / "repo")
    # the caller's configuration applies (sha-length 10); nothing of theirs was imported
    assert result.read("tags") == f"ghcr.io/other-org/service:dev-{sha[:10]}"
    assert result.read("ok") == "true"
    assert "imported from the caller workspace" not in result.log
    # nothing was built or written into the action's directory but bytecode
    added = {p.relative_to(action_dir) for p in action_dir.rglob("*")} - before
    assert {p for p in added if "__pycache__" not in p.parts} == set()


def old_interpreters() -> list[Path]:
    """Real CPython interpreters older than 3.11 found on this machine."""
    found = []
    pyenv = Path(os.environ.get("PYENV_ROOT", "/root/.pyenv")) / "versions"
    for version in ("2.7", "3.6", "3.8", "3.10"):
        found += sorted(pyenv.glob(f"{version}.*/bin/python{version[0]}"))[-1:]
    return found


def fake_old_python(directory: Path) -> Path:
    """A ``python3`` that answers as Python 3.9 does to the action's probes, for machines
    without a real older interpreter."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "python3"
    script.write_text(
        "#!/bin/sh\n"
        "case \"$2\" in\n"
        "  *version_info*'>='*) exit 1 ;;\n"
        "  *version_info*) echo 3.9 ;;\n"
        "esac\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return script


def test_a_python3_older_than_3_11_gets_a_clear_message(act: ActRunner, tmp_path: Path) -> None:
    candidates = [*old_interpreters(), fake_old_python(tmp_path / "fake")]
    steps = ""
    for number, interpreter in enumerate(candidates):
        shim = tmp_path / f"old{number}"
        shim.mkdir(exist_ok=True)
        (shim / "python3").symlink_to(interpreter)
        steps += f"""      - run: echo "{shim}" >> "$GITHUB_PATH"
      - id: old{number}
        continue-on-error: true
        uses: ./
        with:
          command: tags
      - env:
          OUTCOME: ${{{{ steps.old{number}.outcome }}}}
        run: printf '%s' "$OUTCOME" > "$TK_OUT/old{number}"
"""
    workflow = f"""on: push
jobs:
  t:
    runs-on: ubuntu-latest
    steps:
{COPY_STEP}{steps}"""
    result = act(workflow, payload={"ref": "refs/heads/main"})
    assert result.returncode == 0, result.log[-5000:]
    for number, interpreter in enumerate(candidates):
        assert result.read(f"old{number}") == "failure", interpreter
        if interpreter.parent.parent.parent.name == "versions":  # a real pyenv interpreter
            version = ".".join(interpreter.parent.parent.name.split(".")[:2])
            assert f"is Python {version}; tagkeeper needs 3.11 or newer" in result.log
    assert "is Python 3.9; tagkeeper needs 3.11 or newer" in result.log
    assert result.log.count("add an actions/setup-python step") >= len(candidates)
    assert "Traceback" not in result.log
    assert "SyntaxError" not in result.log


def _path_without_uv() -> str:
    dirs = [d for d in os.environ["PATH"].split(os.pathsep) if d]
    return os.pathsep.join(d for d in dirs if not (Path(d) / "uv").exists())


def test_without_uv_pip_installs_the_same_locked_environment_once(
    act: ActRunner, tmp_path: Path
) -> None:
    assert shutil.which("uv", path=_path_without_uv()) is None
    workflow = f"""on: push
jobs:
  t:
    runs-on: ubuntu-latest
    steps:
{COPY_STEP}      - id: tags
        uses: ./
        with:
          command: tags
      - uses: ./
        with:
          command: check
          env: dev
          image: ghcr.io/o/r:${{{{ steps.tags.outputs.tags }}}}
      - run: command -v uv > "$TK_OUT/uv" || true
"""
    cache = tmp_path / "cache"
    result = act(
        workflow,
        payload={"ref": "refs/heads/main"},
        env={"PATH": _path_without_uv(), "TAGKEEPER_ACTION_CACHE": str(cache)},
    )
    assert result.returncode == 0, result.log[-5000:]
    assert result.read("uv") == ""
    assert "with pip from requirements.lock" in result.log
    assert result.log.count("reusing ") == 1
    (env,) = cache.glob("env-*")
    assert (env / ".tagkeeper-complete").exists()
    assert not list(cache.glob("*.partial-*"))
    installed = subprocess.run(
        [str(env / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    lock = (REPO_ROOT / "requirements.lock").read_text(encoding="utf-8")
    pinned = {
        (canonicalize_name(name), version)
        for name, version in re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", lock, flags=re.MULTILINE)
    }
    got = {
        (canonicalize_name(name), version)
        for name, version in (line.split("==") for line in installed.splitlines())
    }
    assert {item for item in got if item[0] not in ("pip", "setuptools")} <= pinned
    assert len(got) >= 20


def test_a_tampered_lock_file_installs_nothing(act: ActRunner, tmp_path: Path) -> None:
    """A wheel whose hash is not the locked one is refused, and no environment is left
    that a later step could take for a good one."""
    action_dir = checkout_copy(tmp_path / "tampered")
    lock = action_dir / "requirements.lock"
    text = lock.read_text(encoding="utf-8")
    start = text.index("\nidna==")
    end = text.index("# via", start)
    # every hash of idna replaced: no wheel an index serves can match
    block = re.sub(r"--hash=sha256:[0-9a-f]{64}", "--hash=sha256:" + "0" * 64, text[start:end])
    assert block != text[start:end]
    lock.write_text(text[:start] + block + text[end:], encoding="utf-8")
    cache = tmp_path / "cache"
    workflow = """on: push
jobs:
  t:
    runs-on: ubuntu-latest
    steps:
      - id: tags
        continue-on-error: true
        uses: acme/tagkeeper@v1
        with:
          command: tags
      - env:
          OUTCOME: ${{ steps.tags.outcome }}
        run: printf '%s' "$OUTCOME" > "$TK_OUT/outcome"
"""
    result = act(
        workflow,
        payload={"ref": "refs/heads/main"},
        env={"TAGKEEPER_ACTION_CACHE": str(cache)},
        local_repositories={"acme/tagkeeper@v1": action_dir},
    )
    assert result.returncode == 0, result.log[-5000:]
    assert result.read("outcome") == "failure"
    assert "idna" in result.log
    assert "hash" in result.log.lower()
    assert not list(cache.glob("env-*/.tagkeeper-complete"))
    assert not [p for p in cache.glob("env-*") if p.is_dir() and "partial" not in p.name]
