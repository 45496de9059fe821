"""Benchmark: what ``verify`` costs, and the gap of a ``recreate`` deploy.

1. **verify overhead** against a container of the test app that is healthy at once: one
   health round plus 5 smoke checks (the release note's list), through the library (the
   engine every check uses) and through the CLI (``tagkeeper verify --url``, a new process
   each time). Target: under 0.5 s.
2. **recreate gap** for an app whose port opens 0, 2 and 10 s after its start
   (``START_DELAY``: a JVM that takes that long to come up): a real registry on 127.0.0.1,
   the deploys pull from it, the engine runs in-process with the configuration's defaults
   (3 healthy answers 2 s apart, stop-timeout 35 s). A client sends ``GET /version``
   every 50 ms through each deploy. Reported: the gap the engine measured and recorded
   (stop of the old container -> first healthy answer of the new), the requests that
   failed, and the unavailability the client saw (its last answer before the failures to
   its first answer after). Target: gap <= app start + 1 s.

Everything it created (containers, images, the registry) is removed at the end.

Run: ``python bench/deploy_bench.py [--runs 3] [--verify-runs 20]`` (about 3 minutes).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: reuse the test helpers
    sys.path.insert(0, str(ROOT))

from tagkeeper.deploy.checks import load_smoke, render  # noqa: E402
from tagkeeper.deploy.containers import DockerRuntime  # noqa: E402
from tagkeeper.deploy.engine import Engine, plan_request  # noqa: E402
from tagkeeper.deploy.spec import DeploySpec, Network  # noqa: E402
from tagkeeper.deploy.verify import HealthPolicy, verify  # noqa: E402
from tagkeeper.rollback.ledger import Actor, Ledger  # noqa: E402
from tests.deploykit._proc import free_port  # noqa: E402
from tests.deploykit.app import AppFleet, AppImages, publish  # noqa: E402
from tests.deploykit.load import LoadClient, Summary  # noqa: E402
from tests.integration.deploy.engine_host import derived  # noqa: E402
from tests.integration.oci.registry import start_registry  # noqa: E402

SMOKE = ROOT / "examples" / "smoke.toml"  # 4 checks; a fifth is added below
FIFTH = '\n[[check]]\nname = "version"\npath = "/version"\nexpect-body = "version"\n'


def ms(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return f"{statistics.median(ordered) * 1000:7.1f} {p90 * 1000:7.1f}"


def bench_verify(images: AppImages, client: Any, runs: int, folder: Path) -> None:
    import httpx

    smoke_file = folder / "smoke.toml"
    smoke_file.write_text(SMOKE.read_text(encoding="utf-8") + FIFTH, encoding="utf-8")
    checks = load_smoke(smoke_file)
    assert len(checks) == 5
    rendered = render(checks, {})
    fleet = AppFleet(client)
    try:
        app = fleet.run(images.get("1.0.0").id, port=free_port())
        app.wait_healthy()
        library: list[float] = []
        with httpx.Client(trust_env=False) as http:
            for _ in range(runs):
                start = time.perf_counter()
                report = verify(app.url, HealthPolicy(successes=1), rendered.requests, client=http)
                library.append(time.perf_counter() - start)
                assert report.ok, report.reason
        cli: list[float] = []
        argv = [sys.executable, "-m", "tagkeeper", "verify", "--url", app.url, "--successes",
                "1", "--smoke", str(smoke_file)]  # fmt: skip
        for _ in range(max(3, runs // 2)):
            start = time.perf_counter()
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            cli.append(time.perf_counter() - start)
            assert done.returncode == 0, done.stderr
        print("verify: one health round + 5 smoke checks, against a healthy app (ms)")
        print(f"{'how':<34} {'runs':>4} {'median':>7} {'p90':>7}  target  met")
        measured = (("library (verify())", library), ("CLI (tagkeeper verify --url)", cli))
        for name, values in measured:
            met = "yes" if statistics.median(values) < 0.5 else "NO"
            print(f"{name:<34} {len(values):>4} {ms(values)}  <500    {met}")
    finally:
        fleet.cleanup()


def client_gap(summary: Summary) -> tuple[int, float]:
    """Failed requests, and the time from the last answer before the first failure to the
    first answer after the last failure (0 when nothing failed)."""
    records = sorted(summary.records, key=lambda r: r.sent)
    failed = [r for r in records if not r.ok]
    if not failed:
        return 0, 0.0
    before = [r.answered for r in records if r.ok and r.sent < failed[0].sent]
    after = [r.answered for r in records if r.ok and r.sent > failed[-1].sent]
    start = max(before) if before else failed[0].sent
    end = min(after) if after else failed[-1].answered
    return len(failed), end - start


def bench_gap(images: AppImages, client: Any, runs: int, folder: Path, delays: list[int]) -> None:
    import httpx

    rows: list[str] = []
    with start_registry(folder / "registry", delete=True) as registry:
        unique = uuid.uuid4().hex[:8]
        repo = f"{registry.host}/tk-bench-{unique}/app"
        container = f"tk-bench-{unique}"
        port = free_port()
        built: list[str] = []
        base = images.get("1.0.0").id
        publish(client, base, f"{repo}:v1.0.0")
        for delay in delays:
            image = derived(client, images.get("2.0.0").id, {"START_DELAY": str(delay)})
            built.append(image)
            publish(client, image, f"{repo}:v2.0.{delay}")
        spec = DeploySpec(
            "bench", image=repo, container=container, port=port, candidate_port=free_port(),
            network=Network.HOST, port_env="SERVER_PORT",
        )  # fmt: skip
        runtime = DockerRuntime.connect()
        try:
            with Ledger(folder / "ledger.db") as ledger, httpx.Client(trust_env=False) as http:
                engine = Engine(spec, runtime=runtime, ledger=ledger, client=http,
                                actor=Actor.from_environ(os.environ))  # fmt: skip
                for delay in delays:
                    gaps, fails, seen = [], [], []
                    for _ in range(runs):
                        engine.deploy(plan_request(spec, f"{repo}:v1.0.0"))
                        load = LoadClient(f"http://127.0.0.1:{port}/version", rate=20.0,
                                          duration=600, timeout=2.0).start()  # fmt: skip
                        time.sleep(0.5)
                        result = engine.deploy(plan_request(spec, f"{repo}:v2.0.{delay}"))
                        time.sleep(0.5)
                        load.stop()
                        summary = load.join(timeout=10)
                        assert result.status == "succeeded", result.message
                        gaps.append(float(result.numbers["gap_seconds"]))
                        failed, window = client_gap(summary)
                        fails.append(failed)
                        seen.append(window)
                    gap = statistics.median(gaps)
                    met = "yes" if max(gaps) <= delay + 1.0 else "NO"
                    rows.append(
                        f"{delay:>9} {runs:>4} {gap:10.2f} {max(gaps):8.2f} "
                        f"{statistics.median(fails):>8.0f} {statistics.median(seen):10.2f}  "
                        f"<= {delay + 1:>2} s  {met}"
                    )
        finally:
            for suffix in ("", "-candidate", "-previous", "-outgoing"):
                with contextlib.suppress(Exception):
                    client.api.remove_container(container + suffix, force=True)
            for entry in client.api.images(name=repo):
                for ref in [*(entry.get("RepoTags") or []), *(entry.get("RepoDigests") or [])]:
                    with contextlib.suppress(Exception):
                        client.api.remove_image(ref)
            for image in built:
                with contextlib.suppress(Exception):
                    client.api.remove_image(image, force=True)
            runtime.close()
    print()
    print("recreate gap: a client sends GET /version every 50 ms through each deploy")
    print(f"{'start (s)':>9} {'runs':>4} {'gap (med)':>10} {'gap max':>8} {'failed':>8} "
          f"{'client s':>10}  target  met")  # fmt: skip
    for row in rows:
        print(row)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="deploys per start time")
    parser.add_argument("--verify-runs", type=int, default=20)
    parser.add_argument("--delays", default="0,2,10", help="app start times, seconds")
    args = parser.parse_args()
    import docker

    client = docker.from_env(timeout=120)
    images = AppImages(client)
    try:
        with tempfile.TemporaryDirectory(prefix="tk-deploy-bench-") as tmp:
            bench_verify(images, client, args.verify_runs, Path(tmp))
            delays = [int(d) for d in args.delays.split(",")]
            bench_gap(images, client, args.runs, Path(tmp), delays)
    finally:
        images.cleanup()
        client.close()
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
