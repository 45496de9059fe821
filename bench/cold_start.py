"""Cold-start time of the ``tagkeeper`` console script, and what it imports at start-up.

Runs ``tagkeeper --help``, ``tagkeeper tags --sha <40 hex> --ref refs/heads/main`` and
``tagkeeper check ghcr.io/o/r:v1.2.3 --env prod`` as fresh processes (the installed
console script), RUNS times each after WARMUP runs, and prints min / median / p90 in
milliseconds against the 200 ms target. Then it runs the same commands in-process in a
child interpreter to list which heavy modules were imported, and prints the slowest
imports of ``tagkeeper.cli`` (``python -X importtime``).

    python bench/cold_start.py [--runs 20] [--warmup 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

TARGET_MS = 200.0
SHA = "0123456789abcdef0123456789abcdef01234567"
COMMANDS: list[tuple[str, list[str]]] = [
    ("--help", ["--help"]),
    ("tags", ["tags", "--sha", SHA, "--ref", "refs/heads/main"]),
    ("check", ["check", "ghcr.io/o/r:v1.2.3", "--env", "prod"]),
]
HEAVY = ("httpx", "docker", "github", "rich", "sqlite3", "requests", "pydantic", "click")

_PROBE = """
import contextlib, io, json, sys
from tagkeeper.cli import main
out, err = io.StringIO(), io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
heavy = sorted({name.split(".")[0] for name in sys.modules} & set(HEAVY))
print(json.dumps({"code": code, "heavy": heavy, "modules": len(sys.modules)}))
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    env["NO_COLOR"] = "1"
    return env


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(argv: list[str]) -> tuple[float, float, int, str]:
    """Wall-clock ms, CPU ms (user + system of the child), exit code, stderr."""
    cpu = _cpu()
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=_env(), check=False)
    wall = (time.perf_counter() - start) * 1000.0
    return wall, (_cpu() - cpu) * 1000.0, done.returncode, done.stderr


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def _row(name: str, runs: int, wall: list[float], cpu: list[float], note: str = "") -> str:
    median = statistics.median(wall)
    verdict = "yes" if median < TARGET_MS else "NO"
    return (
        f"{name:<16} {runs:>4} {min(wall):>7.1f} {median:>7.1f} {_p90(wall):>7.1f} "
        f"{statistics.median(cpu):>7.1f} {TARGET_MS:>6.0f}  {verdict}{note}"
    )


def _series(argv: list[str], runs: int, warmup: int) -> tuple[list[float], list[float], set[int]]:
    for _ in range(warmup):
        _run(argv)
    wall: list[float] = []
    cpu: list[float] = []
    codes: set[int] = set()
    for _ in range(runs):
        elapsed, used, code, _ = _run(argv)
        wall.append(elapsed)
        cpu.append(used)
        codes.add(code)
    return wall, cpu, codes


def measure(exe: str, runs: int, warmup: int) -> None:
    print(
        f"{'command':<16} {'runs':>4} {'min':>7} {'median':>7} {'p90':>7} {'cpu med':>7} "
        f"{'target':>6}  under target (median)"
    )
    print("(milliseconds; wall clock unless 'cpu': user+system time of the process)")
    for name, args in COMMANDS:
        _, _, code, err = _run([exe, *args])
        if code != 0 and "no such command" in err.lower():
            print(f"{name:<16} {'n/a':>4} {'n/a':>7} {'n/a':>7} {'n/a':>7} {'n/a':>7} "
                  f"{TARGET_MS:>6.0f}  n/a (command not registered)")  # fmt: skip
            continue
        wall, cpu, codes = _series([exe, *args], runs, warmup)
        note = "" if codes == {0} else f" (exit {sorted(codes)})"
        print(_row(name, runs, wall, cpu, note))
    print("floors, for comparison (same interpreter):")
    for name, code_text in (("python -c pass", "pass"), ("import typer", "import typer")):
        wall, cpu, _ = _series([sys.executable, "-c", code_text], runs, warmup)
        print(_row(name, runs, wall, cpu))


def heavy_imports() -> None:
    print("\nmodules imported by an in-process run (heavy ones listed):")
    probe = f"HEAVY = {HEAVY!r}\n{_PROBE}"
    for name, args in COMMANDS:
        done = subprocess.run(
            [sys.executable, "-c", probe, *args],
            capture_output=True,
            text=True,
            env=_env(),
            check=False,
        )
        try:
            data = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            print(f"  {name:<8} probe failed: {done.stderr.strip()[-200:]}")
            continue
        heavy = ", ".join(data["heavy"]) or "none"
        print(f"  {name:<8} exit {data['code']}, {data['modules']} modules; heavy: {heavy}")


def slowest_imports(limit: int = 12) -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import tagkeeper.cli"],
        capture_output=True,
        text=True,
        env=_env(),
        check=False,
    )
    rows: list[tuple[int, int, str]] = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_text, cumulative_text, name = line[len("import time:") :].split("|")
        rows.append((int(self_text), int(cumulative_text), name.strip()))
    top = next((r for r in rows if r[2] == "tagkeeper.cli"), None)
    total = f"{top[1] / 1000:.1f} ms" if top else "?"
    print(f"\n`import tagkeeper.cli`: {total} cumulative; slowest modules by self time:")
    for self_us, cumulative, name in sorted(rows, reverse=True)[:limit]:
        print(f"  {self_us / 1000:>6.1f} ms self {cumulative / 1000:>7.1f} ms cum  {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    exe = shutil.which("tagkeeper")
    if exe is None:
        print("the tagkeeper console script is not on PATH; run `pip install -e .` first")
        return 1
    print(f"tagkeeper cold start: {exe}, python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, {args.runs} runs after {args.warmup} warm-ups\n")  # fmt: skip
    measure(exe, args.runs, args.warmup)
    heavy_imports()
    slowest_imports()
    return 0


if __name__ == "__main__":
    sys.exit(main())
