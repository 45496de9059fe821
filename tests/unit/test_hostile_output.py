"""Text from outside, through every command and format: never printed raw.

Each test feeds a hostile value (a workflow command, terminal escapes, HTML, Markdown
table and link syntax, line breaks) to a command where it really comes from outside (a
registry's tag list or error body, a file in the checkout, the deploy ledger, the GitHub
API), runs the command in-process in each format, and checks everything it wrote: stdout,
stderr, ``$GITHUB_OUTPUT`` and the step summary, rendered by a real CommonMark parser.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
import pytest
from markdown_it import MarkdownIt

from tagkeeper.cli import main
from tagkeeper.errors import ExitCode
from tests.emulators import images as im
from tests.unit.oci_fake import HOST, FakeRegistry, serve

if TYPE_CHECKING:
    from pathlib import Path

    from pytest_httpx import HTTPXMock

HOSTILE = (
    "x\n::error::pwned\x1b[31m<img src=x onerror=alert(1)>|`b`|[a](https://e.example)"
    "\r##[warning]y\u202e<script>z</script>"
)
FORMATS = ("text", "json", "github")
_OWN_ANNOTATION = re.compile(r"^::(error|warning|notice)( [^:]*)?::")


def assert_safe_stream(text: str) -> None:
    """Nothing in ``text`` can drive a terminal or be read as a workflow command, except
    the annotations tagkeeper writes itself; what those carry cannot either."""
    for ch in text:
        assert ch in "\n\t" or ch.isprintable(), f"raw {ch!r} in output:\n{text}"
    assert "##[" not in text
    for line in text.split("\n"):
        if not line.lstrip().startswith("::"):
            continue
        assert _OWN_ANNOTATION.match(line), f"a workflow command from outside: {line!r}"
        data = line[_OWN_ANNOTATION.match(line).end():]  # type: ignore[union-attr]
        for part in data.replace("%0D", "\n").replace("%0A", "\n").split("\n"):
            assert not part.lstrip().startswith("::"), f"hidden command in {line!r}"
            assert "\x1b" not in part


_MD = MarkdownIt("commonmark", {"html": True}).enable("table")
_TAG = re.compile(r"<\s*([a-zA-Z][a-zA-Z0-9]*)")
_ALLOWED_TAGS = {
    "h1", "h2", "h3", "h4", "p", "table", "thead", "tbody", "tr", "th", "td", "code",
    "ul", "ol", "li", "strong", "em", "details", "summary", "pre", "br", "hr", "blockquote",
}  # fmt: skip


def assert_safe_summary(markdown: str) -> None:
    """The summary renders with no markup from outside: no element tagkeeper does not
    write (an image, a script, a link), and every table row has its header's cells."""
    assert "\x1b" not in markdown
    html = _MD.render(markdown)
    tags = {m.group(1).lower() for m in _TAG.finditer(html)}
    assert tags <= _ALLOWED_TAGS, f"markup from outside: {tags - _ALLOWED_TAGS}\n{html}"
    tokens = _MD.parse(markdown)
    width = None
    cells = 0
    for token in tokens:
        if token.type == "tr_open":
            cells = 0
        elif token.type in ("th_open", "td_open"):
            cells += 1
        elif token.type == "tr_close":
            if width is None:
                width = cells
            assert cells == width, f"a row with {cells} cells, not {width}:\n{markdown}"
        elif token.type == "table_close":
            width = None


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """An empty folder with an empty config, as a GitHub Actions step (runtime files)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tagkeeper.toml").write_text("", encoding="utf-8")
    files = {"output": tmp_path / "out.txt", "summary": tmp_path / "summary.md"}
    for path in files.values():
        path.write_text("")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_OUTPUT", str(files["output"]))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(files["summary"]))
    for name in ("GITHUB_TOKEN", "GH_TOKEN", "TAGKEEPER_REGISTRY_PASSWORD", "GITHUB_REPOSITORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("TAGKEEPER_LEDGER", str(tmp_path / "ledger.db"))
    return files


def check_everything(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], fmt: str
) -> tuple[str, str]:
    captured = capsys.readouterr()
    assert_safe_stream(captured.out)
    assert_safe_stream(captured.err)
    if fmt == "json" and captured.out.strip():
        json.loads(captured.out)  # still one JSON document
    summary = files["summary"].read_text()
    if fmt == "github":
        assert_safe_summary(summary)
    return captured.out, captured.err


# -- check: image references in a file of the checkout ---------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_check_prints_hostile_references_from_a_file_safely(
    fmt: str, runtime: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    escaped = json.dumps("ghcr.io/o/app:" + HOSTILE)  # a YAML double-quoted scalar
    compose = runtime["output"].parent / "compose.yaml"
    compose.write_text(
        "services:\n"
        f"  web:\n    image: {escaped}\n"
        f"  db:\n    image: {json.dumps('postgres:latest' + HOSTILE)}\n",
        encoding="utf-8",
    )
    code = main(["check", "--file", str(compose), "--format", fmt])
    out, err = check_everything(capsys, runtime, fmt)
    assert code in (ExitCode.POLICY, ExitCode.USAGE)
    assert "pwned" in out + err + runtime["summary"].read_text()  # said, but harmless


# -- prune: a registry's tag names and error bodies ------------------------------------


@pytest.fixture
def registry(httpx_mock: HTTPXMock) -> FakeRegistry:
    return serve(httpx_mock)


PRUNE = ["prune", "--image", f"{HOST}/app", "--kind", "oci", "--min-age", "0", "--keep", "1"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_prune_prints_hostile_tags_safely(
    fmt: str, registry: FakeRegistry, runtime: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    old = im.image(created=datetime(2024, 1, 1, tzinfo=UTC), label="old")
    registry.push(old, "dev-0001")
    registry.push(im.image(created=datetime(2024, 2, 1, tzinfo=UTC), label="new"), "dev-0002")
    registry.tags[HOSTILE] = old.digest
    code = main([*PRUNE, "--dry-run", "--format", fmt])
    _out, err = check_everything(capsys, runtime, fmt)
    assert code == ExitCode.OK, err
    assert "pwned" in err  # the warning names it, harmlessly


@pytest.mark.parametrize("fmt", FORMATS)
def test_prune_prints_a_hostile_registry_error_safely(
    fmt: str, registry: FakeRegistry, runtime: dict[str, Path],
    httpx_mock: HTTPXMock, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    del registry
    httpx_mock.add_response(
        url=f"http://{HOST}/v2/app/tags/list?n=1000",
        status_code=400,
        json={"errors": [{"code": "DENIED", "message": HOSTILE}]},
    )
    code = main([*PRUNE, "--dry-run", "--format", fmt])
    out, err = check_everything(capsys, runtime, fmt)
    assert code == ExitCode.REGISTRY
    assert "pwned" in out + err


# -- history and previous: a deploy ledger someone changed by hand ---------------------


@pytest.fixture
def tampered_ledger(runtime: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> Path:
    import sqlite3

    ledger = runtime["output"].parent / "ledger.db"
    for tag in ("v1.0.0", "v1.0.1", "v1.0.2"):
        code = main(["record", "--env", "prod", "--image", f"ghcr.io/o/app:{tag}",
                     "--status", "succeeded", "--digest", "sha256:" + tag[-1] * 64])  # fmt: skip
        assert code == ExitCode.OK
    capsys.readouterr()
    with sqlite3.connect(ledger) as db:
        db.execute(
            "UPDATE deploys SET user = ?, ci_run_url = ?, host = ?, detail = ?",
            (HOSTILE, "https://ci.example/" + HOSTILE, HOSTILE, HOSTILE),
        )
        db.execute("UPDATE deploys SET tag = ? WHERE tag = 'v1.0.1'", ("v1.0.1" + HOSTILE,))
    for path in runtime.values():
        path.write_text("")
    return ledger


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_history_prints_a_tampered_ledger_safely(
    fmt: str, tampered_ledger: Path, runtime: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    del tampered_ledger
    code = main(["history", "--env", "prod", "--image", "ghcr.io/o/app", "--format", fmt])
    out, err = check_everything(capsys, runtime, fmt)
    assert code == ExitCode.OK, err
    assert "pwned" in out + err + runtime["output"].read_text()


@pytest.mark.parametrize("fmt", FORMATS)
def test_previous_with_a_tampered_ledger_prints_safely(
    fmt: str, tampered_ledger: Path, runtime: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    del tampered_ledger
    code = main(["previous", "--env", "prod", "--image", "ghcr.io/o/app", "--current",
                 "v1.0.2", "--source", "ledger", "--format", fmt])  # fmt: skip
    check_everything(capsys, runtime, fmt)
    assert code in (ExitCode.OK, ExitCode.NO_TARGET, ExitCode.LEDGER)


@pytest.mark.parametrize("fmt", FORMATS)
def test_prune_prints_hostile_ghcr_tags_safely(
    fmt: str, runtime: dict[str, Path], httpx_mock: HTTPXMock,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    api = "https://api.github.test"
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_" + "x" * 36)
    httpx_mock.add_response(url=f"{api}/user", json={"login": "someone"}, is_optional=True)
    httpx_mock.add_response(url=f"{api}/users/acme", json={"type": "Organization"})
    versions = [
        {
            "id": n,
            "name": "sha256:" + f"{n:02x}" * 32,
            "created_at": f"2024-01-0{n}T00:00:00Z",
            "metadata": {"container": {"tags": tags}},
        }
        for n, tags in ((1, [HOSTILE]), (2, ["dev-0001", "v1.0.0" + HOSTILE]), (3, ["dev-0002"]))
    ]
    httpx_mock.add_response(
        url=f"{api}/orgs/acme/packages/container/app/versions?per_page=100&page=1",
        json=versions, is_reusable=True,
    )  # fmt: skip

    def registry(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(200, json={"token": "t"})
        return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN"}]})

    httpx_mock.add_callback(
        registry, url=re.compile(r"https://ghcr\.test/.*"), is_optional=True, is_reusable=True
    )
    code = main(["prune", "--image", "ghcr.io/acme/app", "--api-url", api,
                 "--registry-url", "https://ghcr.test", "--keep", "0", "--min-age", "0",
                 "--unmatched", "delete", "--dry-run", "--format", fmt])  # fmt: skip
    out, err = check_everything(capsys, runtime, fmt)
    assert "pwned" in out + err, err
    assert code in (ExitCode.OK, ExitCode.REGISTRY), err


# -- verify and deploy: a container's log, a smoke check's answer ----------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_verify_prints_a_hostile_container_log_safely(
    fmt: str, runtime: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from tests.unit.deploy_fakes import REPO, App, FakeClock, FakeRuntime
    from tests.unit.test_cli_verify_status import use_runtime

    engine = FakeRuntime(FakeClock())
    engine.publish(f"{REPO}:v2", App(api_status=500, version=HOSTILE))
    use_runtime(monkeypatch, engine)
    smoke = runtime["output"].parent / "smoke.toml"
    smoke.write_text('[[check]]\nname = "stats"\npath = "/api/stats"\n')
    code = main(["verify", "--image", f"{REPO}:v2", "--network", "host", "--port", "18702",
                 "--port-env", "SERVER_PORT", "--interval", "10ms", "--smoke", str(smoke),
                 "--format", fmt])  # fmt: skip
    out, err = check_everything(capsys, runtime, fmt)
    assert code == ExitCode.VERIFY, err
    if fmt != "json":  # the log tail is for people: stderr and the summary
        assert "pwned" in out + err + runtime["summary"].read_text()


def test_deploy_summary_of_hostile_results_renders_no_markup() -> None:
    from tagkeeper.cli import deploy_render
    from tagkeeper.deploy.engine import DeployResult
    from tagkeeper.deploy.verify import CheckResult, VerifyReport
    from tagkeeper.rollback.ledger_schema import DeployStep
    from tagkeeper.rollback.resolve import DeployStatus

    report = VerifyReport(
        target=HOSTILE, ok=False, reason=HOSTILE,
        checks=(CheckResult(HOSTILE, "smoke", False, HOSTILE, 0.1),),
        seconds=1.0, log_tail=(HOSTILE, "```", "</details><img src=x>", "\x1b[2J"),
        container=HOSTILE,
    )  # fmt: skip
    result = DeployResult(
        environment="prod", strategy="recreate", container=HOSTILE, image=HOSTILE,
        digest=None, status=DeployStatus.FAILED, message=HOSTILE, reason=HOSTILE,
        reports={HOSTILE: report},
        steps=(DeployStep(1, 1, HOSTILE, HOSTILE, datetime(2024, 1, 1, tzinfo=UTC), HOSTILE),),
    )  # fmt: skip
    summaries = (deploy_render.deploy_summary(result), deploy_render.verify_summary(report, "x"))
    for markdown in summaries:
        assert_safe_summary(markdown)
        html = _MD.render(markdown)
        assert "</details>" not in html.split("<pre>")[-1].split("</pre>")[0]


# -- doctor: what the GitHub API answers -----------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_doctor_prints_a_hostile_api_answer_safely(
    fmt: str, runtime: dict[str, Path], httpx_mock: HTTPXMock,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    api = "https://api.github.test"
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_" + "x" * 36)

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/user":
            scopes = "repo, ::error::pwned, <img src=x onerror=alert(1)>|x"  # headers: ASCII
            return httpx.Response(200, json={"login": HOSTILE}, headers={"X-OAuth-Scopes": scopes})
        if request.url.path == "/users/acme":
            return httpx.Response(200, json={"type": "Organization"})
        return httpx.Response(404, json={"message": HOSTILE})

    httpx_mock.add_callback(answer, is_reusable=True)
    code = main(["doctor", "--image", "ghcr.io/acme/app", "--api-url", api,
                 "--registry-url", "https://ghcr.test", "--format", fmt])  # fmt: skip
    out, err = check_everything(capsys, runtime, fmt)
    assert code in (ExitCode.AUTH, ExitCode.REGISTRY, ExitCode.OK), err
    assert "pwned" in out + err + runtime["summary"].read_text()


# -- tags: a branch name is chosen by whoever pushes it ---------------------------------

# git allows < > | ` and & in a branch name (not spaces, ~ ^ : ? * [ \ or controls): no
# attributes, but whole elements
BRANCH = "feature/<img>|`x`|<sub>&amp;</sub><a>"


@pytest.mark.parametrize("fmt", FORMATS)
def test_tags_print_a_hostile_branch_name_safely(
    fmt: str, runtime: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    event = runtime["output"].parent / "event.json"
    event.write_text("{}", encoding="utf-8")
    for name, value in {
        "CI": "true", "GITHUB_EVENT_NAME": "push", "GITHUB_EVENT_PATH": str(event),
        "GITHUB_SHA": "3f2a9c1d" + "0" * 32, "GITHUB_REF": f"refs/heads/{BRANCH}",
        "GITHUB_REF_NAME": BRANCH, "GITHUB_REPOSITORY": "o/app",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    code = main(["tags", "--image", "ghcr.io/o/app", "--format", fmt])
    _out, err = check_everything(capsys, runtime, fmt)
    assert code == ExitCode.OK, err
    if fmt == "github":
        assert "&lt;img&gt;" in runtime["summary"].read_text()  # shown, as text


# -- status: the ledger's records of a host's deploys ------------------------------------


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_status_prints_a_tampered_ledger_safely(
    fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    import sqlite3

    from tests.unit.deploy_fakes import new_world
    from tests.unit.test_cli_verify_status import CONFIG, use_runtime

    monkeypatch.chdir(tmp_path)
    for name in ("GITHUB_ACTIONS", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "tagkeeper.toml").write_text(CONFIG, encoding="utf-8")
    ledger = tmp_path / "ledger.db"
    monkeypatch.setenv("TAGKEEPER_LEDGER", str(ledger))
    with new_world(tmp_path) as world:
        world.publish("v1.0.0")
        world.deploy("v1.0.0")
        use_runtime(monkeypatch, world.runtime)
        capsys.readouterr()
        with sqlite3.connect(ledger) as db:
            db.execute("UPDATE deploys SET tag = ?, reason = ?, detail = ?",
                       (HOSTILE, HOSTILE, HOSTILE))  # fmt: skip
        code = main(["status", "--env", "prod", "--format", fmt])
    captured = capsys.readouterr()
    assert_safe_stream(captured.out)
    assert_safe_stream(captured.err)
    assert code == ExitCode.OK, captured.err
    assert "pwned" in captured.out
