"""``deploy`` with ``strategy = "bluegreen"`` on the real engine, behind real nginx and
Traefik set up as ``proxy-snippet`` prints, under a steady client through the proxy (a new
connection per request): a deploy, a switch back and a manual ``rollback`` lose no
request; a broken proxy configuration aborts before switching with nothing lost."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import pytest

from tagkeeper.errors import ExitCode
from tests.integration.deploy.slothost import SlotHost, slot_host

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from tests.deploykit.app import AppImages
    from tests.deploykit.load import LoadClient, Summary
    from tests.integration.oci.registry import Registry

pytestmark = pytest.mark.integration

RATE = 50.0  # requests a second through the proxy, each on a new connection


@pytest.fixture(params=["nginx", "traefik"])
def slots(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    docker_client: Any,
    registry: Registry,
    app_images: AppImages,
) -> Iterator[SlotHost]:
    with slot_host(tmp_path, docker_client, registry, app_images, request.param) as made:
        yield made


def _ok(done: Any) -> None:
    assert done.returncode == 0, done.stdout + done.stderr


def _under_load(
    load: Callable[..., LoadClient], slots: SlotHost, action: Callable[[], Any]
) -> tuple[Any, Summary]:
    client = load(slots.url + "/version", rate=RATE, duration=300, timeout=5.0).start()
    time.sleep(0.5)
    try:
        result = action()
        time.sleep(0.5)
    finally:
        client.stop()
    return result, client.join(timeout=10)


def test_a_deploy_a_switch_back_and_a_rollback_lose_no_request(
    slots: SlotHost, load: Callable[..., LoadClient]
) -> None:
    host = slots.host
    host.publish("v1.0.0")
    host.publish("v2.0.0")
    _ok(host.deploy("v1.0.0"))
    assert slots.owned_file().count("weight=100") + slots.owned_file().count("weight: 100") == 1
    # the release: v2 goes to the idle slot and takes every request once confirmed
    done, summary = _under_load(load, slots, lambda: host.deploy("v2.0.0", "--format", "json"))
    _ok(done)
    payload = json.loads(done.stdout)
    assert payload["slot"] == "blue"  # v1 went to green, the idle slot of --init's file
    assert summary.failures == [], summary.describe()
    assert set(summary.by_version) == {"1.0.0", "2.0.0"}
    assert summary.total > 20
    # every request after the switch went to v2
    confirmed = max(s["at"] for s in payload["steps"] if s["phase"] == "proxy-confirm")
    after = summary.between(_wall(confirmed) + 0.1, float("inf"))
    assert set(after.by_version) == {"2.0.0"}, after.describe()
    # status: the live slot, the weights read back, each slot
    status = slots.status()
    assert status["live_slot"] == "blue"
    assert status["proxy"]["weights"] == {"blue": 100, "green": 0}
    by_slot = {s["slot"]: s for s in status["slots"]}
    assert by_slot["blue"]["container"]["digest"] == host.published["v2.0.0"]
    assert by_slot["green"]["container"]["digest"] == host.published["v1.0.0"]
    assert by_slot["blue"]["container"]["health"] == "healthy"
    assert status["drift"] == []
    # the switch back: every request to green, by hand
    done, summary = _under_load(
        load, slots, lambda: host.run("switch", "--env", "prod", "--to", "green")
    )
    _ok(done)
    assert summary.failures == [], summary.describe()
    assert summary.by_version["1.0.0"] > 0
    # and forward again, then a manual rollback: an instant switch to green
    _ok(host.run("switch", "--env", "prod", "--to", "blue"))
    pulls = _pulls(host)
    done, summary = _under_load(
        load, slots, lambda: host.run("rollback", "--env", "prod", "--format", "json")
    )
    _ok(done)
    assert json.loads(done.stdout)["numbers"]["instant"] is True
    assert _pulls(host) == pulls  # no pull, no new container
    assert summary.failures == [], summary.describe()
    assert host.running_version() is not None
    assert slots.status()["live_slot"] == "green"
    records = host.records()
    assert (records[0]["tag"], records[0]["status"], records[0]["rollback"]) == (
        "v1.0.0", "succeeded", 1)  # fmt: skip


@pytest.mark.parametrize("slots", ["nginx"], indirect=True)
def test_a_bad_image_fails_its_pre_check_and_the_proxy_is_never_touched(
    slots: SlotHost, load: Callable[..., LoadClient]
) -> None:
    host = slots.host
    slots.configure(**{"health-timeout": '"3s"'})
    host.publish("v1.0.0")
    host.publish("v2.0.0", HEALTH="down")
    _ok(host.deploy("v1.0.0"))
    owned = slots.owned_file()
    done, summary = _under_load(load, slots, lambda: host.deploy("v2.0.0"))
    assert done.returncode == ExitCode.VERIFY, done.stderr
    assert "pre-check" in done.stderr
    assert slots.owned_file() == owned
    assert summary.failures == [], summary.describe()
    assert set(summary.by_version) == {"1.0.0"}
    assert host.inspect("blue") is None  # removed


def _wall(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


def _pulls(host: Any) -> int:
    return sum(1 for _, phase, status, _ in host.steps() if (phase, status) == ("pull", "start"))


@pytest.mark.parametrize("slots", ["nginx"], indirect=True)
def test_a_broken_proxy_configuration_aborts_before_the_switch_with_nothing_lost(
    slots: SlotHost, load: Callable[..., LoadClient]
) -> None:
    host = slots.host
    host.publish("v1.0.0")
    host.publish("v2.0.0")
    _ok(host.deploy("v1.0.0"))
    owned = slots.owned_file()
    # the user's own configuration, made invalid (a typo in a file tagkeeper does not own)
    main = slots.proxy.main_config
    main.write_text(main.read_text(encoding="utf-8").replace(
        "events {", "evnets {"), encoding="utf-8")  # fmt: skip
    done, summary = _under_load(load, slots, lambda: host.deploy("v2.0.0", "--format", "json"))
    assert done.returncode == ExitCode.VERIFY, done.stderr
    payload = json.loads(done.stdout)
    assert payload["reason"] == "proxy"
    assert "proxy test failed" in payload["message"]
    assert "evnets" in payload["message"]  # nginx's own words, cleaned
    assert slots.owned_file() == owned  # the previous file is back
    assert summary.failures == [], summary.describe()
    assert set(summary.by_version) == {"1.0.0"}
    assert host.inspect("blue") is None
    assert host.records()[0]["status"] == "failed"
    status = slots.status()
    assert status["live_slot"] == "green"
    assert [d for d in status["drift"] if d["code"] != "proxy"] == []
