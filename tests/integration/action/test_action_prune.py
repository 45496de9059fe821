"""``command: prune`` and ``command: doctor`` through ``uses: ./``, run by ``act``, against
the GHCR emulator (real HTTP on 127.0.0.1).

One job (each job installs the action's environment once): doctor with the workflow
token, doctor with a token that has no access, a dry run, then the real run. The verdict
comes from the emulator's state (read back through its Python API and ghcr.io's ``/v2``),
not from the action's own claims; the outputs and the summary must agree with it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.emulators import images
from tests.emulators.ghcr import GhcrEmulator, Request, Response
from tests.integration.action.conftest import COPY_STEP, ActResult, ActRunner

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration

OWNER = "acme"  # an organization, as most deployed packages are
PACKAGE = "app"
IMAGE = f"ghcr.io/{OWNER}/{PACKAGE}"
ACCEPT = ", ".join(
    (images.OCI_INDEX, images.OCI_MANIFEST, images.DOCKER_LIST, images.DOCKER_MANIFEST)
)


@pytest.fixture
def emu() -> Iterator[GhcrEmulator]:
    # GitHub's documented limits, no hidden delete budget: the action's default pacing
    # (60 deletes a minute to start with) stays the one a real workflow gets.
    with GhcrEmulator() as emulator:
        yield emulator
    if emulator.errors:
        pytest.fail("the GHCR emulator raised inside a handler: " + "; ".join(emulator.errors))


@dataclass
class Seeded:
    all: set[str]  # every version digest pushed
    left: set[str]  # what must survive keep=2 with the default 1h grace period
    kept_tags: dict[str, images.Built]  # tag -> what it must still resolve to, whole


def seed(emu: GhcrEmulator) -> Seeded:
    """dev images built by buildx (index + 2 platforms + 2 attestations), releases pushed
    out of SemVer order, cosign signatures, untagged garbage old and young.

    The expectation is derived here, from the rules (keep the 2 newest dev images by push
    time and the 2 highest releases by SemVer, with everything they reach; nothing younger
    than 1h goes), not from what tagkeeper answers."""
    now = datetime.now(UTC)
    base = now - timedelta(days=30)
    left: set[str] = set()
    kept_tags: dict[str, images.Built] = {}
    devs = []
    for day in range(4):
        tag = f"dev-{day + 10:07x}"
        built = images.multiarch(label=tag)
        emu.push_built(OWNER, PACKAGE, built, tags=[tag], created=base + timedelta(days=day))
        devs.append((tag, built))
    for tag, built in devs[2:]:  # the two newest
        kept_tags[tag] = built
        left |= {b.digest for b in built.walk()}
    # A hotfix on an old line is the newest push but not among the two highest versions:
    # by push time v1.2.0 and v1.9.0 would stay, by SemVer v1.10.0 and v1.9.0 do.
    releases: dict[str, images.Built] = {}
    for tag, day in (("v1.10.0", 1), ("v1.9.0", 3), ("v1.2.0", 5)):
        releases[tag] = images.image(label=tag)
        emu.push_built(
            OWNER, PACKAGE, releases[tag], tags=[tag], created=base + timedelta(days=day)
        )
    for tag in ("v1.10.0", "v1.9.0"):
        kept_tags[tag] = releases[tag]
        left.add(releases[tag].digest)
    # cosign signatures: of a kept release (stays with it) and of a deleted dev image
    for subject, stays in ((releases["v1.10.0"], True), (devs[0][1], False)):
        signature = images.cosign_signature(subject)
        emu.push_built(
            OWNER,
            PACKAGE,
            signature,
            tags=[images.cosign_tag(subject.digest)],
            created=base + timedelta(days=6),
        )
        if stays:
            left.add(signature.digest)
    # untagged garbage (tags that moved away): two old ones go, a fresh one is in its
    # grace period and stays
    for i in range(2):
        garbage = images.image(label=f"garbage{i}")
        emu.push_built(OWNER, PACKAGE, garbage, created=base + timedelta(days=7 + i))
    fresh = images.image(label="fresh")
    emu.push_built(OWNER, PACKAGE, fresh, created=now - timedelta(minutes=10))
    left.add(fresh.digest)
    everything = {v.digest for v in emu.versions(OWNER, PACKAGE)}
    assert left < everything  # the fixture itself is what we think it is
    return Seeded(all=everything, left=left, kept_tags=kept_tags)


def add_checkpoints(emu: GhcrEmulator) -> dict[str, set[str]]:
    """A test-only route: ``POST /_test/checkpoint/<name>`` records the package's digests
    at that moment, so a workflow step can mark a point between two action steps."""
    seen: dict[str, set[str]] = {}

    def record(req: Request) -> Response:
        name = req.match.group("name")
        with emu.lock:
            seen[name] = {v.digest for v in emu.versions(OWNER, PACKAGE)}
        return Response(204)

    emu.add_route("POST", r"/_test/checkpoint/(?P<name>[a-z-]+)", record, kind="rest.unknown")
    return seen


def resolve_whole(emu: GhcrEmulator, token: str, tag: str) -> set[str]:
    """Pull ``tag`` through ``/v2`` as a client would (token exchange, then the manifest
    and every manifest it lists, recursively); the digests served."""
    with httpx.Client(base_url=emu.registry_url, trust_env=False, timeout=10) as client:
        answer = client.get(
            "/token",
            params={"scope": f"repository:{OWNER}/{PACKAGE}:pull", "service": "ghcr.io"},
            auth=("x", token),
        )
        assert answer.status_code == 200, answer.text
        headers = {"Accept": ACCEPT, "Authorization": f"Bearer {answer.json()['token']}"}
        served: set[str] = set()
        todo = [tag]
        while todo:
            ref = todo.pop()
            got = client.get(f"/v2/{OWNER}/{PACKAGE}/manifests/{ref}", headers=headers)
            assert got.status_code == 200, f"{tag} -> {ref}: {got.status_code} {got.text}"
            served.add(got.headers["docker-content-digest"])
            todo.extend(m["digest"] for m in got.json().get("manifests", []))
        return served


def summaries(log: str) -> list[str]:
    """The job summaries act printed (``Summary - <first line>`` then the other lines)."""
    found = []
    for match in re.finditer(r"Summary - (.*?)(?=\n\[|\Z)", log, flags=re.DOTALL):
        found.append(match.group(1))
    return found


def _keep_outputs(step: str) -> str:
    return f"""      - name: Keep the outputs of {step}
        env:
          DELETED: ${{{{ steps.{step}.outputs.deleted }}}}
          KEPT: ${{{{ steps.{step}.outputs.kept }}}}
          JSON: ${{{{ steps.{step}.outputs.json }}}}
        run: |
          printf '%s' "$DELETED" > "$TK_OUT/{step}-deleted"
          printf '%s' "$KEPT" > "$TK_OUT/{step}-kept"
          printf '%s' "$JSON" > "$TK_OUT/{step}-json"
"""


def workflow(emu: GhcrEmulator, outsider_token: str) -> str:
    endpoints = f"""          api-url: {emu.api_url}
          registry-url: {emu.registry_url}
"""
    prune = f"""        uses: ./
        with:
          command: prune
          image: {IMAGE}
          keep: "2"
{endpoints}"""
    return f"""on: push
permissions:
  contents: read
  packages: write
jobs:
  t:
    runs-on: ubuntu-latest
    steps:
{COPY_STEP}      - id: doctor
        uses: ./
        with:
          command: doctor
          image: {IMAGE}
{endpoints}      - id: doctor-outsider
        continue-on-error: true
        uses: ./
        with:
          command: doctor
          image: {IMAGE}
          token: {outsider_token}
{endpoints}      - name: Keep the doctor outcomes
        env:
          OWN: ${{{{ steps.doctor.outcome }}}}
          OUTSIDER: ${{{{ steps.doctor-outsider.outcome }}}}
        run: |
          printf '%s' "$OWN" > "$TK_OUT/doctor-outcome"
          printf '%s' "$OUTSIDER" > "$TK_OUT/doctor-outsider-outcome"
      - id: dry
{prune}          dry-run: "true"
{_keep_outputs("dry")}      - name: Mark the point between the dry run and the real run
        run: curl -fsS -X POST "{emu.api_url}/_test/checkpoint/after-dry-run"
      - id: real
{prune}          dry-run: "false"
{_keep_outputs("real")}"""


def test_prune_dry_run_then_real_run_through_the_action(act: ActRunner, emu: GhcrEmulator) -> None:
    emu.add_org(OWNER)
    token = emu.add_token(
        login="github-actions[bot]", kind="github_token", packages={f"{OWNER}/*": "admin"}
    )
    outsider = emu.add_token(login="github-actions[bot]", kind="github_token")
    seeded = seed(emu)
    checkpoints = add_checkpoints(emu)
    # the workflow token reaches the action as the default of its 'token' input
    result: ActResult = act(workflow(emu, outsider), secrets={"GITHUB_TOKEN": token})
    assert result.returncode == 0, result.log[-6000:]
    gone = seeded.all - seeded.left

    # doctor: the workflow token can list (delete cannot be verified in advance); a token
    # without the package's Actions access fails the step with what is missing
    assert result.read("doctor-outcome") == "success"
    assert result.read("doctor-outsider-outcome") == "failure"
    assert "listing versions failed" in result.log
    assert "Manage Actions access" in result.log

    # the dry run deleted nothing, and announced exactly what the real run then deleted
    assert checkpoints["after-dry-run"] == seeded.all
    dry = json.loads(result.read("dry-json"))
    assert dry["dry_run"] is True
    (dry_image,) = dry["images"]
    assert dry_image["applied"] is None
    assert {item["digest"] for item in dry_image["delete"]} == gone
    assert result.read("dry-deleted") == "0"  # a dry run deletes nothing; planned says what
    assert result.read("dry-kept") == str(len(seeded.left))

    # the real run left exactly the expected versions
    after = {v.digest for v in emu.versions(OWNER, PACKAGE)}
    assert after == seeded.left, (sorted(after - seeded.left), sorted(seeded.left - after))
    real = json.loads(result.read("real-json"))
    assert real["dry_run"] is False
    (real_image,) = real["images"]
    statuses = {r["digest"]: r["status"] for r in real_image["applied"]["results"]}
    assert statuses == dict.fromkeys(gone, "deleted")
    assert result.read("real-deleted") == str(len(gone))
    assert result.read("real-kept") == str(len(after))
    # every kept tag still pulls whole: its index, platform images and attestations
    for tag, built in seeded.kept_tags.items():
        assert resolve_whole(emu, token, tag) == {b.digest for b in built.walk()}, tag

    # a Markdown table in the job summary, for each run
    texts = summaries(result.log)
    dry_summary = next(t for t in texts if t.startswith("### tagkeeper prune (dry run)"))
    real_summary = next(t for t in texts if t.startswith("### tagkeeper prune\n"))
    row = re.compile(r"^\| `" + re.escape(IMAGE) + r"` \| (\d+) \| (\d+) \| (\d+) \| (.*) \|$")
    for summary, deleted in ((dry_summary, 0), (real_summary, len(gone))):
        assert "|---|" in summary
        rows = [m.groups() for m in map(row.match, summary.splitlines()) if m]
        assert rows == [(str(len(seeded.left)), str(len(gone)), str(deleted), "-")], summary

    # the token was masked before anything was printed, and never printed
    assert token not in result.log
    assert outsider not in result.log
