"""Prune's rough edges, in-process: a mistyped OCI repository, Ctrl-C during the deletes,
and ``--format json`` on a terminal."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from tagkeeper.cli import main
from tagkeeper.errors import ExitCode
from tests.emulators import images as im
from tests.unit.oci_fake import HOST, NO_DIGEST, FakeRegistry, serve

if TYPE_CHECKING:
    from pathlib import Path

    from pytest_httpx import HTTPXMock


@pytest.fixture
def registry(
    httpx_mock: HTTPXMock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> FakeRegistry:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tagkeeper.toml").write_text("", encoding="utf-8")
    for name in ("GITHUB_ACTIONS", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_TOKEN",
                 "TAGKEEPER_REGISTRY_PASSWORD"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    return serve(httpx_mock)


def push_versions(registry: FakeRegistry, count: int) -> None:
    for n in range(1, count + 1):
        built = im.image(created=datetime(2024, 1, n, tzinfo=UTC), label=f"v{n}")
        registry.push(built, f"dev-{n:04d}")


PRUNE = ["prune", "--kind", "oci", "--min-age", "0", "--keep", "1"]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_mistyped_oci_repository_is_a_registry_error_not_nothing_to_delete(
    fmt: str, registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    push_versions(registry, 2)
    code = main([*PRUNE, "--image", f"{HOST}/ap", "--dry-run", "--format", fmt])
    captured = capsys.readouterr()
    assert code == ExitCode.REGISTRY, captured.err
    assert "nothing to delete" not in captured.err
    assert f"{HOST}/ap" in captured.err
    assert "check the image name" in captured.err
    if fmt == "json":
        [entry] = json.loads(captured.out)["images"]
        assert entry["error"]["code"] == ExitCode.REGISTRY
    assert not [m for m, _ in registry.log if m == "DELETE"]


# -- Ctrl-C during the deletes ------------------------------------------------------------


def interrupt_at(monkeypatch: pytest.MonkeyPatch, n: int, when: str) -> None:
    """Ctrl-C at the ``n``th delete: ``before`` its request goes out, ``answered`` after
    the registry deleted it but before tagkeeper heard, ``after`` it was counted."""
    from tagkeeper.cli import prune_cmd
    from tagkeeper.retention import executor

    real = executor._attempt
    calls = [0]

    def attempt(backend: object, version: object) -> object:
        calls[0] += 1
        if calls[0] == n and when == "before":
            raise KeyboardInterrupt
        result = real(backend, version)  # type: ignore[arg-type]
        if calls[0] == n and when == "answered":
            raise KeyboardInterrupt
        return result

    progress = prune_cmd._Progress.__call__

    def counted(self: object, result: object) -> None:
        progress(self, result)  # type: ignore[arg-type]
        if calls[0] == n and when == "after":
            raise KeyboardInterrupt

    monkeypatch.setattr(executor, "_attempt", attempt)
    monkeypatch.setattr(prune_cmd._Progress, "__call__", counted)


@pytest.mark.parametrize(
    ("when", "in_registry", "counted"), [("before", 1, 1), ("answered", 2, 1), ("after", 2, 2)]
)
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_ctrl_c_during_the_deletes_says_what_was_deleted_and_what_is_left(  # noqa: PLR0917
    fmt: str, when: str, in_registry: int, counted: int, registry: FakeRegistry,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    push_versions(registry, 5)  # keep 1: 4 deletes, newest first (dev-0004, dev-0003...)
    with monkeypatch.context() as patched:
        interrupt_at(patched, 2, when)
        code = main([*PRUNE, "--image", f"{HOST}/app", "--yes", "--format", fmt])
    captured = capsys.readouterr()
    assert code == ExitCode.INTERRUPTED, captured.err
    assert int(ExitCode.INTERRUPTED) == 130  # the shells' 128 + SIGINT: scripts rely on it
    deletes = [u for m, u in registry.log if m == "DELETE" and NO_DIGEST not in u]
    assert len(deletes) == in_registry  # (NO_DIGEST: the probe that deletes are allowed)
    err = captured.err
    assert f"interrupted after {counted} deletes, {4 - counted} left" in err
    assert "rerun to continue" in err
    if when != "after":  # the second delete was sent: nobody can say whether it happened
        assert "[dev-0003]: interrupted while its delete was sent: it may have been" in err
    for tag in ("dev-0004", "dev-0003")[:counted]:
        assert "  deleted: sha256:" in err
        assert f"[{tag}]\n" in err
    assert "[dev-0001]: not attempted: interrupted" in err
    if fmt == "json":
        [entry] = json.loads(captured.out)["images"]
        assert entry["applied"]["counts"]["deleted"] == counted
        assert entry["error"]["code"] == 130
    # rerunning continues: the next run deletes what is left, and nothing it must keep
    registry_after = main([*PRUNE, "--image", f"{HOST}/app", "--yes"])
    assert registry_after == ExitCode.OK
    assert sorted(registry.tags) == ["dev-0005"]


def test_ctrl_c_before_a_later_image_leaves_it_untouched(
    registry: FakeRegistry, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    push_versions(registry, 3)
    interrupt_at(monkeypatch, 1, "before")
    code = main([*PRUNE, "--image", f"{HOST}/app", "--image", f"{HOST}/other", "--yes"])
    err = capsys.readouterr().err
    assert code == 130
    assert f"{HOST}/other: not started" in err
    assert not [u for _, u in registry.log if "/other/" in u]


# -- --format json on a terminal ----------------------------------------------------------


@pytest.mark.parametrize("answer", [False, True])
def test_json_on_a_terminal_shows_the_plan_on_stderr_before_asking(
    answer: bool, registry: FakeRegistry, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    import io

    import typer

    push_versions(registry, 3)
    seen: list[tuple[str, str]] = []

    def confirm(question: str, **_kw: object) -> bool:
        before = capsys.readouterr()
        seen.append((before.out, before.err))
        print(question, file=sys.stderr)
        return answer

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal())
    monkeypatch.setattr(typer, "confirm", confirm)
    code = main([*PRUNE, "--image", f"{HOST}/app", "--format", "json"])
    after = capsys.readouterr()
    assert code == (ExitCode.OK if answer else ExitCode.ABORTED)
    [(out, err)] = seen
    assert out == ""  # stdout stays one JSON document, written at the end
    assert "DELETE" in err  # the plan table, on stderr, before the question
    assert "dev-0001" in err
    assert "KEEP" in err
    payload = json.loads(after.out)
    assert len(payload["images"][0]["delete"]) == 2


def test_json_with_yes_or_dry_run_prints_no_table(
    registry: FakeRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    push_versions(registry, 3)
    for flag in ("--yes", "--dry-run"):
        code = main([*PRUNE, "--image", f"{HOST}/app", "--format", "json", flag])
        captured = capsys.readouterr()
        assert code == ExitCode.OK
        assert "DELETE" not in captured.err
        json.loads(captured.out)
