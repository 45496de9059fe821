"""The README's library examples run as written, against the GHCR emulator.

The Python blocks of "Library use" that speak to GitHub and ghcr.io (tags and the gate,
one image's prune, the ledger's ``previous``, a whole prune with the history cascade) are
run in order in one namespace, exactly as the README prints them. Only the network is
replaced: the HTTP client ``build_client()`` returns sends what is meant for
``api.github.com`` and ``ghcr.io`` to the emulator, and shows the emulator's own URLs in
answers (the token realm, pagination links) as GitHub's, so the realm policy is the real
one. The deploy engine's, verify's and the proxies' examples need a Docker host and a
proxy; the deploy integration tests run those paths.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

import tagkeeper.transport
from tagkeeper.bounded import arm
from tagkeeper.rollback.ledger import Actor, Ledger
from tagkeeper.rollback.resolve import DeployStatus
from tests.emulators import images

if TYPE_CHECKING:
    import pytest

    from tests.emulators.ghcr import GhcrEmulator

README = Path(__file__).resolve().parents[3] / "README.md"
OWNER, PACKAGE = "acme", "app"
IMAGE = f"ghcr.io/{OWNER}/{PACKAGE}"
RUN = ("# tags of this build", "A whole `tagkeeper prune --env prod`")


def library_blocks() -> list[str]:
    """The Python blocks of "Library use" that reach GitHub, ghcr.io and the ledger."""
    text = README.read_text(encoding="utf-8")
    start = text.index("## Library use")
    section = text[start : text.index("\n## ", start + 5)]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) >= 4, "the README's library examples moved"
    needs_a_host = ("Engine(", "verify(", "open_proxy")
    keep = [b for b in blocks if not any(word in b for word in needs_a_host)]
    assert any("prune_images(" in b for b in keep)
    assert any("previous_from_history(" in b for b in keep)
    return keep


class ToEmulator(httpx.BaseTransport):
    """api.github.com and ghcr.io are the emulator; its URLs in answers are GitHub's."""

    def __init__(self, emu: GhcrEmulator) -> None:
        self.emu = emu
        self.inner = httpx.HTTPTransport()
        self.hosts: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.hosts.append(request.url.host)
        path = request.url.raw_path.decode()
        if request.url.host == "api.github.com":
            target = httpx.URL(self.emu.api_url + path)
        elif request.url.host == "ghcr.io":
            target = httpx.URL(self.emu.registry_url + path)
        else:
            raise AssertionError(f"the example asked {request.url.host}")
        request.url = target
        request.headers["host"] = target.netloc.decode()
        response = self.inner.handle_request(request)
        for name in ("www-authenticate", "link", "location"):
            if name in response.headers:
                value = response.headers[name].replace(self.emu.api_url, "https://api.github.com")
                response.headers[name] = value.replace(self.emu.registry_url, "https://ghcr.io")
        return response

    def close(self) -> None:
        self.inner.close()


def seed(emu: GhcrEmulator) -> dict[str, str]:
    """Eight releases a day apart (v2.3.1 deployed to prod, then v2.3.7) and a dev image."""
    digests = {}
    start = datetime.now(UTC) - timedelta(days=30)
    for n in range(8):
        when = start + timedelta(days=n)
        built = images.image(created=when, label=f"v2.3.{n}")
        emu.push_built(OWNER, PACKAGE, built, tags=[f"v2.3.{n}"], created=when)
        digests[f"v2.3.{n}"] = built.digest
    return digests


def test_the_library_examples_run_as_written(
    ghcr: GhcrEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digests = seed(ghcr)
    token = ghcr.add_token(login=OWNER)
    ledger = tmp_path / "ledger.db"
    with Ledger(ledger) as book:
        for tag in ("v2.3.1", "v2.3.7"):
            book.record(environment="prod", repository=IMAGE, tag=tag,
                        status=DeployStatus.SUCCEEDED, actor=Actor(user="ci", host="h"),
                        digest=digests[tag])  # fmt: skip
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("GITHUB_", "GH_", "TAGKEEPER_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GITHUB_TOKEN", token)
    monkeypatch.setenv("TAGKEEPER_LEDGER", str(ledger))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567")
    monkeypatch.setenv("GITHUB_REF", "refs/heads/main")
    monkeypatch.setenv("GITHUB_EVENT_NAME", "push")
    monkeypatch.setenv("GITHUB_REPOSITORY", f"{OWNER}/{PACKAGE}")
    transports: list[ToEmulator] = []

    def build_client(**_kw: Any) -> httpx.Client:
        transports.append(ToEmulator(ghcr))
        client = httpx.Client(transport=transports[-1], follow_redirects=True, timeout=30)
        arm(client)
        return client

    monkeypatch.setattr(tagkeeper.transport, "build_client", build_client)
    namespace: dict[str, Any] = {"__name__": "readme"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for block in library_blocks():
            exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - the README's own code
    printed = out.getvalue()

    assert {h for t in transports for h in t.hosts} == {"api.github.com", "ghcr.io"}
    left = {t for v in ghcr.versions(OWNER, PACKAGE) for t in v.tags}
    # the first prune keeps 5 releases and the one protected by hand; the second keeps
    # what prod runs (v2.3.7) and its rollback target (v2.3.1) besides the newest 5
    assert "v2.3.1" in left
    assert {"v2.3.3", "v2.3.4", "v2.3.5", "v2.3.6", "v2.3.7"} <= left
    assert "v2.3.0" not in left
    run = namespace["run"]
    assert int(run.exit_code) == 0
    assert "rollback target for prod" in " ".join(run.to_json()["images"][0]["protected"].values())
    # previous from the ledger: the deploy before v2.3.7
    assert f"{IMAGE}:v2.3.1@{digests['v2.3.1']}" in printed
    assert namespace["target"].source == "ledger"
    assert token not in printed
