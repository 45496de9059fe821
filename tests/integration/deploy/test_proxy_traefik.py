"""tagkeeper's Traefik proxy on a real Traefik 3 set up with the printed snippet."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from tagkeeper.deploy.proxies.model import ProxySwitchFailed, Slot, Weights
from tests.deploykit import ServiceError
from tests.deploykit.app import AppContainer, AppFleet, AppImages, http_get
from tests.integration.deploy.proxysetup import RunningProxy, traefik_from_snippet
from tests.services import free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from tests.deploykit.load import LoadClient

pytestmark = pytest.mark.integration

NAMES = ["blue", "green"]
BLUE = Weights.all_to("blue", NAMES)
GREEN = Weights.all_to("green", NAMES)


@pytest.fixture
def slots(apps: AppFleet, app_images: AppImages) -> tuple[AppContainer, AppContainer]:
    blue = apps.run(app_images.get("1.0.0").id, port=free_port())
    green = apps.run(app_images.get("2.0.0").id, port=free_port())
    return blue, green


@pytest.fixture
def proxy(tmp_path: Path, slots: tuple[AppContainer, AppContainer]) -> Iterator[RunningProxy]:
    blue, green = slots
    try:
        with traefik_from_snippet(
            tmp_path / "traefik",
            (Slot("blue", "127.0.0.1", blue.port), Slot("green", "127.0.0.1", green.port)),
        ) as running:
            yield running
    except ServiceError as exc:
        pytest.fail(str(exc))


def test_the_printed_static_config_and_router_serve(proxy: RunningProxy) -> None:
    answer = http_get(proxy.url + "/api/public/stats/users")
    assert answer.status == 200
    assert answer.headers["x-app-version"] == "1.0.0"
    with httpx.Client() as http:
        adapter = proxy.open(http)
        assert adapter.live().weights == BLUE
        assert adapter.read().trusted


def test_switches_under_load_lose_nothing_and_are_confirmed(
    proxy: RunningProxy,
    slots: tuple[AppContainer, AppContainer],
    load: Callable[..., LoadClient],
) -> None:
    blue, green = slots
    client = load(proxy.url + "/api/public/stats/users", rate=100, duration=16).start()
    time.sleep(1)
    confirmed: list[tuple[float, AppContainer]] = []
    with httpx.Client() as http:
        adapter = proxy.open(http)
        for weights, old in ((GREEN, blue), (Weights.parse("50,50", NAMES), None),
                             (BLUE, green)):
            report = adapter.apply(weights)
            if old is not None:
                confirmed.append((time.time(), old))
            assert adapter.live().weights == weights
            assert report.confirm_seconds < 3.0  # target: under 3 s with Traefik
            time.sleep(1)
    summary = client.join()
    assert summary.failures == [], summary.describe()
    assert set(summary.by_version) == {"1.0.0", "2.0.0"}
    for when, old in confirmed:
        after = summary.between(when, when + 1.0)
        assert after.last_seen(port=old.port) is None, summary.describe()


def test_a_probe_that_reaches_the_wrong_slot_is_undone(proxy: RunningProxy) -> None:
    """The access log shows where probes went: a file that points elsewhere is refused."""
    before = proxy.setup.config.read_bytes()
    with httpx.Client() as http:
        adapter = proxy.open(http)
        # a slot whose address answers nothing: the probe never reaches a serving slot
        wrong = Slot("green", "127.0.0.1", free_port())
        adapter._slots = (adapter.slots[0], wrong)
        with pytest.raises(ProxySwitchFailed) as caught:
            adapter.apply(GREEN)
        assert caught.value.phase == "confirm"
        assert caught.value.restored
        assert proxy.setup.config.read_bytes() == before
        deadline = time.monotonic() + 10
        while adapter.live().weights != BLUE:
            assert time.monotonic() < deadline, "Traefik never went back to the old file"
            time.sleep(0.2)
    assert http_get(proxy.url + "/api/public/stats/users").status == 200


_KILLED_APPLY = """
import sys
from pathlib import Path
import httpx
from tagkeeper.deploy.proxies.model import Slot, Weights
from tagkeeper.deploy.proxies.traefik import TraefikProxy
path, api, probe, ports, marker = sys.argv[1:6]
ports = ports.split(",")
slots = [Slot("blue", "127.0.0.1", int(ports[0])), Slot("green", "127.0.0.1", int(ports[1]))]
proxy = TraefikProxy(Path(path), slots, "shop-api", client=httpx.Client(), api_url=api,
                     probe_url=probe,
                     test_command=["sh", "-c", f"touch {marker}; exec sleep 60"])
proxy.apply(Weights.all_to("green", ["blue", "green"]))
"""


def test_killed_mid_switch_traefik_runs_what_the_file_says(
    proxy: RunningProxy, slots: tuple[AppContainer, AppContainer],
    load: Callable[..., LoadClient],
) -> None:
    blue, green = slots
    marker = proxy.folder / "testing"
    client = load(proxy.url + "/api/public/stats/users", rate=50, duration=8).start()
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_APPLY, str(proxy.setup.config),
         f"http://{proxy.setup.traefik_api}", proxy.url + "/actuator/health",
         f"{blue.port},{green.port}", str(marker)],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert child.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    with httpx.Client() as http:
        adapter = proxy.open(http)
        read = adapter.read()
        assert read.trusted
        assert read.weights == GREEN  # whole, and never all at 0
        deadline = time.monotonic() + 10
        while adapter.live().weights != read.weights:  # Traefik loads it by itself
            assert time.monotonic() < deadline
            time.sleep(0.2)
        adapter.apply(BLUE)  # and the next switch converges
        assert adapter.live().weights == BLUE
    summary = client.join()
    assert summary.failures == [], summary.describe()
