"""How long the GitHub Action takes to set up its environment, before and after the lock file.

Runs the set-up step of ``action.yml`` (extracted from the file, run with bash as the
runner runs it) on this checkout, each time into a new folder with the package caches
empty, as on a fresh hosted runner:

- before: the set-up of the action as it was (``python3 -m venv``, then ``pip install`` of
  the action's directory: dependencies resolved from the index, the package built);
- after, pip: the set-up step without ``uv`` on PATH (``pip install --require-hashes``
  from ``requirements.lock``, wheels only, nothing built);
- after, uv: the same with ``uv`` on PATH, cold and with uv's download cache warm;
- reuse: a later step of the same job (or a later job that kept the runner's tool cache).

    python bench/action_install.py [--runs N]

Figures depend on the network to the package index; the table prints the median and the
spread of N runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "038671c"  # the last commit with the set-up that installed the directory


def setup_script(action_yml: str) -> str:
    data = yaml.safe_load(action_yml)
    step = next(s for s in data["runs"]["steps"] if s.get("id") == "setup")
    script: str = step["run"]
    return script


def path_without_uv() -> str:
    dirs = [d for d in os.environ["PATH"].split(os.pathsep) if d]
    return os.pathsep.join(d for d in dirs if not (Path(d) / "uv").exists())


def run_setup(script: str, work: Path, env: dict[str, str]) -> float:
    (work / "temp").mkdir(parents=True, exist_ok=True)
    output = work / "output"
    output.touch()
    full = {
        **os.environ,
        "GITHUB_ACTION_PATH": str(ROOT),
        "RUNNER_TEMP": str(work / "temp"),
        "GITHUB_OUTPUT": str(output),
        "PIP_NO_CACHE_DIR": "1",
        "TAGKEEPER_ACTION_CACHE": str(work / "tool-cache"),
        **env,
    }
    full.pop("RUNNER_TOOL_CACHE", None)
    started = time.perf_counter()
    done = subprocess.run(
        ["bash", "-c", script], env=full, capture_output=True, cwd=work, check=False
    )
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"the set-up step failed:\n{done.stdout.decode()}{done.stderr.decode()}")
    python = output.read_text(encoding="utf-8").strip().splitlines()[-1].split("=", 1)[1]
    subprocess.run(
        [python, "-I", "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); import httpx, "
         "docker, github, typer, tagkeeper.cli"],
        check=True,
    )  # fmt: skip
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    before = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{BEFORE}:action.yml"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    old = setup_script(before)
    new = setup_script((ROOT / "action.yml").read_text(encoding="utf-8"))
    uv = shutil.which("uv")
    rows: list[tuple[str, list[float]]] = []
    with tempfile.TemporaryDirectory(prefix="tk-bench-") as tmp:
        base = Path(tmp)
        warm_uv = base / "uv-cache-warm"

        def case(label: str, script: str, env: dict[str, str], *, reuse: bool = False) -> None:
            times = []
            for run in range(args.runs):
                work = base / f"case{len(rows)}-{run}"
                took = run_setup(script, work, env)
                if reuse:
                    took = run_setup(script, work, env)
                times.append(took)
            rows.append((label, times))

        case("before: pip install of the directory", old, {"PATH": path_without_uv()})
        case("after: pip, requirements.lock", new, {"PATH": path_without_uv()})
        if uv is not None:
            cold = {"UV_CACHE_DIR": str(base / "uv-cache-cold")}
            times = []
            for run in range(args.runs):
                shutil.rmtree(cold["UV_CACHE_DIR"], ignore_errors=True)
                times.append(run_setup(new, base / f"uv-cold-{run}", cold))
            rows.append(("after: uv, requirements.lock (cold cache)", times))
            run_setup(new, base / "uv-warm-fill", {"UV_CACHE_DIR": str(warm_uv)})
            case("after: uv, requirements.lock (warm cache)", new, {"UV_CACHE_DIR": str(warm_uv)})
        case("after: a later step reuses it", new, {"UV_CACHE_DIR": str(warm_uv)}, reuse=True)
    print(f"{'set-up':<46} {'runs':>4} {'median s':>9} {'min s':>7} {'max s':>7}")
    for label, times in rows:
        print(
            f"{label:<46} {len(times):>4} {statistics.median(times):>9.2f} "
            f"{min(times):>7.2f} {max(times):>7.2f}"
        )
    if uv is not None:
        version = subprocess.run([uv, "--version"], capture_output=True, text=True, check=True)
        print(f"uv: {version.stdout.strip()}")


if __name__ == "__main__":
    main()
