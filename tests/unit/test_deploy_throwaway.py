"""``verify --image``: the throw-away container is removed whatever happens."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import httpx
import pytest

from tagkeeper.deploy.containers import LABEL_OWNER, LABEL_ROLE, RunOptions, owner_label
from tagkeeper.deploy.throwaway import Throwaway, reap, verify_image
from tagkeeper.deploy.verify import HealthPolicy
from tagkeeper.errors import UsageError
from tests.unit.deploy_fakes import App, FakeClock, FakeRuntime

if TYPE_CHECKING:
    from collections.abc import Iterator

IMAGE = "ghcr.io/acme/app:v1.0.0"
POLICY = HealthPolicy(interval=1.0, successes=2, timeout=10.0)


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime(FakeClock())


@pytest.fixture
def client(runtime: FakeRuntime) -> Iterator[httpx.Client]:
    with httpx.Client(transport=runtime.transport()) as c:
        yield c


def test_a_healthy_image_passes_and_its_container_is_gone(
    runtime: FakeRuntime, client: httpx.Client
) -> None:
    runtime.publish(IMAGE, App())
    report, reaped = verify_image(
        runtime, IMAGE, Throwaway(port=18999, network="host", port_env="SERVER_PORT"),
        policy=POLICY, client=client, clock=runtime.clock, sleep=runtime.clock.sleep,
    )  # fmt: skip
    assert report.ok
    assert reaped == []
    assert runtime.containers == {}
    [created] = runtime.removed
    assert created.name.startswith("tagkeeper-verify-")
    assert created.options.env["SERVER_PORT"] == "18999"
    assert created.options.restart == "no"
    assert created.options.labels[LABEL_ROLE] == "verify"
    assert created.options.labels[LABEL_OWNER] == owner_label()
    assert [op for _, k, op in runtime.history if k == "pull"] == [f"pull {IMAGE}"]


def test_a_failing_image_reports_why_with_its_log_and_is_removed(
    runtime: FakeRuntime, client: httpx.Client
) -> None:
    runtime.publish(IMAGE, App(exit_after=0.5))
    report, _ = verify_image(
        runtime, IMAGE, Throwaway(port=18999, network="host"),
        policy=POLICY, client=client, clock=runtime.clock, sleep=runtime.clock.sleep,
    )  # fmt: skip
    assert not report.ok
    assert report.reason == "the container exited with code 1"
    assert report.log_tail is not None
    assert "APPLICATION FAILED TO START" in report.log_tail
    assert runtime.containers == {}


def test_ctrl_c_removes_the_container_too(runtime: FakeRuntime) -> None:
    runtime.publish(IMAGE, App(healthy_after=5.0))

    def interrupt(request: httpx.Request) -> httpx.Response:
        raise KeyboardInterrupt

    with (
        httpx.Client(transport=httpx.MockTransport(interrupt)) as client,
        pytest.raises(KeyboardInterrupt),
    ):
        verify_image(
            runtime, IMAGE, Throwaway(port=18999, network="host"),
            policy=POLICY, client=client, clock=runtime.clock, sleep=runtime.clock.sleep,
        )  # fmt: skip
    assert runtime.containers == {}


def test_an_image_on_the_engine_is_not_pulled_unless_asked(
    runtime: FakeRuntime, client: httpx.Client
) -> None:
    runtime.publish(IMAGE, App())
    runtime.pull(IMAGE)
    pulls = len([1 for _, k, _ in runtime.history if k == "pull"])
    verify_image(
        runtime, IMAGE, Throwaway(port=18999, network="host"),
        policy=POLICY, client=client, clock=runtime.clock, sleep=runtime.clock.sleep,
    )  # fmt: skip
    assert len([1 for _, k, _ in runtime.history if k == "pull"]) == pulls
    verify_image(
        runtime, IMAGE, Throwaway(port=18999, network="host", pull="always"),
        policy=POLICY, client=client, clock=runtime.clock, sleep=runtime.clock.sleep,
    )  # fmt: skip
    assert len([1 for _, k, _ in runtime.history if k == "pull"]) == pulls + 1


def test_never_pulling_an_absent_image_is_bad_input(
    runtime: FakeRuntime, client: httpx.Client
) -> None:
    runtime.publish(IMAGE, App())
    with pytest.raises(UsageError, match="not on this Docker engine"):
        verify_image(
            runtime, IMAGE, Throwaway(port=18999, network="host", pull="never"),
            policy=POLICY, client=client, clock=runtime.clock, sleep=runtime.clock.sleep,
        )  # fmt: skip
    assert runtime.history == []


def test_leftovers_of_a_dead_run_are_reaped_and_others_are_left(runtime: FakeRuntime) -> None:
    runtime.publish(IMAGE, App())
    image = runtime.pull(IMAGE)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    owners = {
        "tagkeeper-verify-dead": owner_label(int(dead.stdout)),
        "tagkeeper-verify-mine": owner_label(),
        "tagkeeper-verify-elsewhere": "otherhost 1 123",
    }
    for name, owner in owners.items():
        runtime.create(
            RunOptions(name, image.image_id, 1, labels={LABEL_ROLE: "verify", LABEL_OWNER: owner})
        )
    assert reap(runtime) == ["tagkeeper-verify-dead"]
    assert set(runtime.containers) == {"tagkeeper-verify-mine", "tagkeeper-verify-elsewhere"}
