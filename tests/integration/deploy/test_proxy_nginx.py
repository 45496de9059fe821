"""tagkeeper's nginx proxy on a real nginx set up with the printed snippet, under load."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import httpx
import pytest

from tagkeeper.deploy.proxies.model import ProxySwitchFailed, Slot, Weights, drift
from tagkeeper.deploy.proxies.nginx import ANSWER_HEADER, PROBE_HEADER
from tests.deploykit import ServiceError
from tests.deploykit.app import AppContainer, AppFleet, AppImages, http_get
from tests.integration.deploy.proxysetup import RunningProxy, nginx_from_snippet
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
    """blue runs 1.0.0, green 2.0.0, each on its own port."""
    blue = apps.run(app_images.get("1.0.0").id, port=free_port())
    green = apps.run(app_images.get("2.0.0").id, port=free_port())
    return blue, green


@pytest.fixture
def proxy(tmp_path: Path, slots: tuple[AppContainer, AppContainer]) -> Iterator[RunningProxy]:
    blue, green = slots
    try:
        with nginx_from_snippet(
            tmp_path / "nginx",
            (Slot("blue", "127.0.0.1", blue.port), Slot("green", "127.0.0.1", green.port)),
        ) as running:
            yield running
    except ServiceError as exc:
        pytest.fail(str(exc))


def test_the_printed_snippet_serves_and_answers_probes_only(proxy: RunningProxy) -> None:
    plain = http_get(proxy.url + "/api/public/stats/users")
    assert plain.status == 200
    assert plain.headers["x-app-version"] == "1.0.0"  # --init: all to the first slot
    assert ANSWER_HEADER.lower() not in plain.headers
    probe = http_get(proxy.url + "/actuator/health", headers={PROBE_HEADER: "x"})
    port = proxy.setup.slots[0].port
    assert probe.headers[ANSWER_HEADER.lower()].startswith(f"127.0.0.1:{port} g=")
    entry = proxy.folder.joinpath("access.json.log").read_text().splitlines()[0]
    assert f'"upstream":"127.0.0.1:{port}"' in entry


def test_switches_under_load_lose_nothing_and_are_confirmed(
    proxy: RunningProxy,
    slots: tuple[AppContainer, AppContainer],
    load: Callable[..., LoadClient],
) -> None:
    blue, green = slots
    client = load(proxy.url + "/api/public/stats/users", rate=100, duration=9).start()
    time.sleep(1)
    confirmed: list[tuple[float, AppContainer]] = []
    with httpx.Client() as http:
        adapter = proxy.open(http)
        for weights, old in ((GREEN, blue), (Weights.parse("90,10", NAMES), None),
                             (BLUE, green), (GREEN, blue)):
            report = adapter.apply(weights)
            if old is not None:
                confirmed.append((time.time(), old))
            assert report.weights == weights
            assert adapter.read().weights == weights
            assert report.confirm_seconds < 1.0  # target: a switch shows in under 1 s
            time.sleep(1.2)
    summary = client.join()
    assert summary.failures == [], summary.describe()
    assert summary.total > 700
    for when, old in confirmed:
        # once confirmed, no request sent afterwards reached the old slot
        after = summary.between(when, when + 1.0)
        assert after.last_seen(port=old.port) is None, summary.describe()


def test_a_broken_user_config_aborts_before_switching(
    proxy: RunningProxy,
    slots: tuple[AppContainer, AppContainer],
    load: Callable[..., LoadClient],
) -> None:
    blue, _ = slots
    owned_before = proxy.setup.config.read_bytes()
    main = proxy.main_config
    main.write_text(main.read_text().replace("listen ", "bogus_directive on;\n    listen ", 1))
    client = load(proxy.url + "/api/public/stats/users", rate=50, duration=3).start()
    with httpx.Client() as http:
        adapter = proxy.open(http)
        with pytest.raises(ProxySwitchFailed) as caught:
            adapter.apply(GREEN)
        assert caught.value.phase == "test"
        assert caught.value.restored
        assert caught.value.exit_code == 13
        assert "bogus_directive" in caught.value.message
        assert proxy.setup.config.read_bytes() == owned_before
        assert adapter.live().slots == ("blue",)
    summary = client.join()
    assert summary.failures == [], summary.describe()
    assert set(summary.by_port) == {str(blue.port)}


_KILLED_APPLY = """
import sys
from pathlib import Path
import httpx
from tagkeeper.deploy.proxies.model import Slot, Weights
from tagkeeper.deploy.proxies.nginx import NginxProxy
path, probe, ports, marker = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4]
slots = [Slot("blue", "127.0.0.1", int(ports[0])), Slot("green", "127.0.0.1", int(ports[1]))]
proxy = NginxProxy(Path(path), slots, "shop-api", client=httpx.Client(), probe_url=probe,
                   test_command=["true"],
                   reload_command=["sh", "-c", f"touch {marker}; exec sleep 60"])
proxy.apply(Weights.all_to("green", ["blue", "green"]))
"""


def test_killed_after_the_rename_the_weights_read_back_tell_the_truth(
    proxy: RunningProxy, slots: tuple[AppContainer, AppContainer]
) -> None:
    blue, green = slots
    marker = proxy.folder / "reloading"
    with httpx.Client() as http:
        adapter = proxy.open(http)
        before = adapter.read()
        child = subprocess.Popen(
            [sys.executable, "-c", _KILLED_APPLY, str(proxy.setup.config),
             proxy.url + "/actuator/health", f"{blue.port},{green.port}", str(marker)],
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 30
            while not marker.exists():
                assert child.poll() is None, "the apply ended before its reload"
                assert time.monotonic() < deadline
                time.sleep(0.02)
        finally:
            os.killpg(child.pid, signal.SIGKILL)  # tagkeeper and its reload, mid-step
            child.wait()
        after = adapter.read()
        assert after.trusted
        assert after.weights == GREEN  # the file was renamed whole...
        assert after.generation != before.generation
        live = adapter.live()
        assert live.generation == before.generation  # ...but nginx still runs the old one
        assert live.slots == ("blue",)
        assert any("written but not loaded" in note for note in drift(after, live))
        assert not list(proxy.setup.config.parent.glob(".*tagkeeper-tmp"))
        report = adapter.apply(GREEN)  # the next switch converges
        assert adapter.live().generation == report.generation
        assert adapter.live().slots == ("green",)


def test_keepalive_timeout_0_loses_nothing_for_kept_alive_clients(
    proxy: RunningProxy, load: Callable[..., LoadClient]
) -> None:
    """The snippet's default: even clients that keep connections open lose no request."""
    client = load(proxy.url + "/api/public/stats/users", rate=100, duration=6,
                  keepalive=True, connections=4).start()
    time.sleep(1)
    with httpx.Client() as http:
        adapter = proxy.open(http)
        for weights in (GREEN, BLUE, GREEN):
            adapter.apply(weights)
            time.sleep(1)
    summary = client.join()
    assert summary.failures == [], summary.describe()
    assert summary.retried == 0
