"""The step summaries of ``watch`` and of a deploy rolled back by the watch quote what came
from outside (a hand-edited ledger's tag, a proxy's or a check's words) as text: nothing
in them renders as HTML, a link, or closes the code span of the reference."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from markdown_it import MarkdownIt

from tagkeeper.cli.deploy_render import deploy_summary, watch_summary
from tagkeeper.deploy.engine import DeployResult
from tagkeeper.deploy.operate import WatchResult
from tagkeeper.deploy.watch import WatchCheck, WatchReport
from tagkeeper.rollback.resolve import DeployRecord, DeployStatus
from tagkeeper.untrusted import neutralise
from tests.unit.test_output_escapes import TEXT

_MD = MarkdownIt("commonmark", {"html": True}).enable("table")
REPO = "ghcr.io/acme/app"


def _one_span(line: str, reference: str) -> None:
    """``line`` holds ``reference`` as exactly one code span, shown as it is (neutralised)."""
    spans = [c for t in _MD.parse(line) for c in (t.children or []) if c.type == "code_inline"]
    assert len(spans) == 1, line
    assert spans[0].content == neutralise(reference, limit=None).replace("|", "\\|"), line


def _html_free(markdown: str) -> None:
    tokens = _MD.parse(markdown)
    kinds = {t.type for t in tokens} | {c.type for t in tokens for c in (t.children or [])}
    assert not kinds & {"html_inline", "html_block", "link_open", "image"}, markdown


@given(TEXT)
def test_the_watch_summary_shows_outside_text_as_text(text: str) -> None:
    watched = DeployRecord("prod", REPO, text, DeployStatus.ROLLED_BACK,
                           datetime(2026, 1, 1, tzinfo=UTC), id=4)  # fmt: skip
    check = WatchCheck(2.0, "fail", text, 2, 0)
    result = WatchResult("prod", "green", watched, WatchReport("green", True, text, 4.0, (check,)),
                         "rolled_back", text)  # fmt: skip
    summary = watch_summary(result)
    _html_free(summary)
    _one_span(summary.split("\n", 1)[0], watched.reference)


@given(TEXT)
def test_a_deploy_rolled_back_by_the_watch_quotes_what_serves_again(text: str) -> None:
    back = DeployResult("prod", "bluegreen", "app", f"{REPO}:{text}", None,
                        DeployStatus.SUCCEEDED, text, rollback=True, slot="green")  # fmt: skip
    result = DeployResult("prod", "bluegreen", "app", f"{REPO}:v2", None,
                          DeployStatus.ROLLED_BACK, text, reason="watch", slot="blue",
                          followup=back)  # fmt: skip
    summary = deploy_summary(result)
    _html_free(summary)
    line = next(row for row in summary.splitlines() if row.startswith("#### rolled back to"))
    _one_span(line, back.image)
