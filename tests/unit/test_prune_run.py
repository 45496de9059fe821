"""A prune of several images through the library, with confirmation and progress as
callbacks (:func:`tagkeeper.retention.runner.prune_images`), without ``tagkeeper.cli``.

The registries are in-memory fakes implementing the real ``Backend``, handed out by the
factory; the deploy history is a fake history source behind a real ``RollbackGuard``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx
import pytest

import tagkeeper.registries.factory
from tagkeeper.errors import ExitCode, RegistryError, UsageError
from tagkeeper.registries.factory import BackendOptions
from tagkeeper.retention.planner import Policy
from tagkeeper.retention.runner import PruneListener, prune_images
from tagkeeper.rollback.protection import NoHistory
from tagkeeper.rollback.resolve import DeployRecord, DeployStatus
from tagkeeper.rollback.sources import RollbackGuard
from tests.unit.fakes import FakeRegistry, digest_of

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from tagkeeper.inventory import DeleteResult
    from tagkeeper.retention.executor import ApplyReport
    from tagkeeper.retention.planner import Plan

A = "registry.test/acme/a"
B = "registry.test/acme/b"
NOW = datetime(2030, 1, 1, tzinfo=UTC)
POLICY = Policy.uniform(1, min_age=timedelta(0))


def registry(display: str) -> FakeRegistry:
    reg = FakeRegistry(display=display)
    for minutes, tag in enumerate(("v1.0.0", "v1.1.0", "v1.2.0")):
        reg.add(f"{display}{tag}", tags=[tag], created=minutes)
    return reg


@pytest.fixture
def registries(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeRegistry]:
    regs = {A: registry(A), B: registry(B)}

    def open_fake(image: str, options: object, client: object) -> FakeRegistry:
        return regs[image]

    monkeypatch.setattr(tagkeeper.registries.factory, "open_backend", open_fake)
    return regs


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as c:
        yield c


@dataclass
class Recorder(PruneListener):
    """Every callback, in order; answers ``confirm`` from ``answers`` (default yes)."""

    answers: dict[str, bool] = field(default_factory=dict)
    events: list[tuple[str, ...]] = field(default_factory=list)

    def planned(self, image: str, plan: Plan) -> None:
        self.events.append(("planned", image, str(len(plan.delete))))

    def skipped(self, image: str, why: str) -> None:
        self.events.append(("skipped", image, why))

    def confirm(self, image: str, count: int) -> bool:
        self.events.append(("confirm", image, str(count)))
        return self.answers.get(image, True)

    def started(self, image: str, total: int) -> None:
        self.events.append(("started", image, str(total)))

    def progress(self, image: str, result: DeleteResult) -> None:
        self.events.append(("progress", image, result.status.value))

    def applied(self, image: str, report: ApplyReport) -> None:
        self.events.append(("applied", image, str(report.deleted)))

    def failed(self, image: str, error: Exception) -> None:
        self.events.append(("failed", image, type(error).__name__))


def run(
    client: httpx.Client, listener: PruneListener, **kw: object
) -> tuple[object, ...]:
    result = prune_images(
        [A, B], POLICY, options=BackendOptions(kind="oci"), client=client,
        clock=lambda: NOW, listener=listener, **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    return (result,)


def test_each_image_is_planned_confirmed_and_applied_with_progress(
    registries: dict[str, FakeRegistry], client: httpx.Client
) -> None:
    events = Recorder()
    (result,) = run(client, events)
    for image in (A, B):
        assert [v.tags for v in registries[image].versions()] == [frozenset({"v1.2.0"})]
    assert events.events == [
        ("planned", A, "2"), ("confirm", A, "2"), ("started", A, "2"),
        ("progress", A, "deleted"), ("progress", A, "deleted"), ("applied", A, "2"),
        ("planned", B, "2"), ("confirm", B, "2"), ("started", B, "2"),
        ("progress", B, "deleted"), ("progress", B, "deleted"), ("applied", B, "2"),
    ]  # fmt: skip
    assert result.exit_code is ExitCode.OK  # type: ignore[attr-defined]
    assert (result.planned, result.deleted, result.kept) == (4, 4, 2)  # type: ignore[attr-defined]


def test_a_declined_confirmation_stops_the_run_and_deletes_nothing_more(
    registries: dict[str, FakeRegistry], client: httpx.Client
) -> None:
    events = Recorder(answers={A: False})
    (result,) = run(client, events)
    assert registries[A].deleted == []
    assert registries[B].deleted == []
    assert events.events[-1] == ("failed", A, "Aborted")
    assert all(e[1] == A for e in events.events)  # B is never even listed
    assert result.exit_code is ExitCode.ABORTED  # type: ignore[attr-defined]
    [only] = result.results  # type: ignore[attr-defined]
    assert only.to_json()["error"]["code"] == int(ExitCode.ABORTED)


def test_a_dry_run_deletes_nothing_and_counts_what_it_would(
    registries: dict[str, FakeRegistry], client: httpx.Client
) -> None:
    events = Recorder()
    (result,) = run(client, events, dry_run=True)
    assert registries[A].delete_calls == []
    assert registries[B].delete_calls == []
    assert ("skipped", A, "dry run, nothing deleted") in events.events
    assert not any(e[0] == "confirm" for e in events.events)
    assert (result.planned, result.deleted) == (4, 0)  # type: ignore[attr-defined]
    assert result.to_json()["dry_run"] is True  # type: ignore[attr-defined]


def test_an_image_that_fails_does_not_stop_the_next_and_the_worst_code_wins(
    registries: dict[str, FakeRegistry], client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down() -> Sequence[object]:
        raise RegistryError("registry.test is down")

    monkeypatch.setattr(registries[A], "versions", down)
    events = Recorder()
    (result,) = run(client, events)
    assert ("failed", A, "RegistryError") in events.events
    assert len(registries[B].deleted) == 2
    assert result.exit_code is ExitCode.REGISTRY  # type: ignore[attr-defined]


@dataclass
class History:
    """A deploy history source: prod ran v1.0.0 of A only."""

    name: str = "ledger"
    asked: list[str] = field(default_factory=list)

    def history(self, repository: str, environment: str) -> Sequence[DeployRecord]:
        self.asked.append(repository)
        if repository != A or environment != "prod":
            return []
        when = datetime(2029, 1, 1, tzinfo=UTC)
        return [
            DeployRecord("prod", A, "v1.0.0", DeployStatus.SUCCEEDED, when,
                         digest=digest_of(f"{A}v1.0.0")),
        ]  # fmt: skip

    def environments(self, repository: str) -> Sequence[str]:
        return ["prod"] if repository == A else []


def test_history_protects_what_runs_and_a_named_environment_without_it_stops_first(
    registries: dict[str, FakeRegistry], client: httpx.Client
) -> None:
    source = History()
    guard = RollbackGuard(("prod",), (source,), "ledger", required=("prod",))
    events = Recorder()
    with pytest.raises(NoHistory):
        run(client, events, guard=guard)
    assert source.asked == [A, B]  # both histories read before any registry is listed
    assert events.events == []
    assert registries[A].delete_calls == []
    assert registries[B].delete_calls == []

    lenient = RollbackGuard(("prod",), (source,), "ledger")  # not named: B only warned
    (result,) = run(client, Recorder(), guard=lenient, dry_run=True)
    a_entry, b_entry = result.to_json()["images"]  # type: ignore[attr-defined]
    assert "v1.0.0" in {t for item in a_entry["keep"] for t in item["tags"]}
    assert any("prod" in w for w in b_entry["warnings"])


def test_an_image_no_backend_takes_is_refused_before_anything_is_asked(
    registries: dict[str, FakeRegistry], client: httpx.Client
) -> None:
    source = History()
    guard = RollbackGuard(("prod",), (source,), "ledger")
    with pytest.raises(UsageError):
        prune_images(
            [A, "acme/app"], POLICY, options=BackendOptions(), client=client,
            clock=lambda: NOW, guard=guard,
        )  # fmt: skip
    assert source.asked == []
