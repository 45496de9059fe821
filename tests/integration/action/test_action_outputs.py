"""Every output the action declares reaches a later step, run for real by ``act``.

One job of a repository whose owner is mixed case (``Acme-Corp/App``, as act reads it
from the ``origin`` remote): ``tags`` for the push and for a release ref, ``check``,
``doctor`` and a ``prune`` dry run against the GHCR emulator, then ``record``,
``deploy``, ``previous`` and ``rollback`` on a ledger in the runner's temp folder, and a
``verify --url`` of the emulator (which asks for a token, so it fails). The
last step writes every declared output of every step to a file; each declared output must
have reached it with the value the command means.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
import yaml

from tests.emulators import images
from tests.emulators.ghcr import GhcrEmulator
from tests.integration.action.conftest import COPY_STEP, REPO_ROOT, ActRunner, head_sha

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration

OWNER, PACKAGE = "acme-corp", "app"
DIGEST_1 = "sha256:" + "1" * 64
DIGEST_2 = "sha256:" + "2" * 64
P = "org.opencontainers.image."


def declared_outputs() -> list[str]:
    data = yaml.safe_load((REPO_ROOT / "action.yml").read_text(encoding="utf-8"))
    return list(data["outputs"])


@pytest.fixture
def emu() -> Iterator[GhcrEmulator]:
    with GhcrEmulator() as emulator:
        yield emulator
    if emulator.errors:
        pytest.fail("the GHCR emulator raised inside a handler: " + "; ".join(emulator.errors))


STEPS = ["tags", "release", "check", "doctor", "prune", "previous", "verify"]


def workflow(emu: GhcrEmulator, out: Path) -> str:
    endpoints = f"""          api-url: {emu.api_url}
          registry-url: {emu.registry_url}
"""
    keep = "".join(
        f"          {step.upper()}_{name.upper().replace('-', '_')}: "
        f"${{{{ steps.{step}.outputs.{name} }}}}\n"
        for step in STEPS
        for name in declared_outputs()
    )
    prefixes = "|".join(step.upper() for step in STEPS)
    return f"""on: push
env:
  TAGKEEPER_LEDGER: {out.parent}/deploys/ledger.db
jobs:
  t:
    runs-on: ubuntu-latest
    steps:
{COPY_STEP}      - id: tags
        uses: ./
        with:
          command: tags
          image: ghcr.io/${{{{ github.repository }}}}
      - id: release
        uses: ./
        with:
          command: tags
          image: ghcr.io/${{{{ github.repository }}}}
          args: --ref refs/tags/v1.2.3 --annotation-levels manifest,index
      - id: check
        uses: ./
        with:
          command: check
          env: ${{{{ steps.tags.outputs.env }}}}
          image: ${{{{ steps.tags.outputs.tags }}}}
      - id: doctor
        uses: ./
        with:
          command: doctor
          image: ghcr.io/${{{{ github.repository }}}}
{endpoints}      - id: prune
        uses: ./
        with:
          command: prune
          image: ghcr.io/${{{{ github.repository }}}}
          keep: "1"
          min-age: "0"
          dry-run: "true"
{endpoints}      - uses: ./
        with:
          command: record
          image: ghcr.io/${{{{ github.repository }}}}:v1.0.0@{DIGEST_1}
          env: prod
          status: succeeded
      - uses: ./
        with:
          command: deploy
          image: ghcr.io/${{{{ github.repository }}}}:v1.1.0@{DIGEST_2}
          env: prod
          deploy-command: sh -c 'printf "%s" "$IMAGE" > {out}/deployed'
      - id: previous
        uses: ./
        with:
          command: previous
          image: ghcr.io/${{{{ github.repository }}}}
          env: prod
          args: --digest
      - uses: ./
        with:
          command: rollback
          image: ghcr.io/${{{{ github.repository }}}}
          env: prod
          deploy-command: >-
            sh -c 'printf "%s|%s|%s" "$IMAGE" "$IMAGE_TAG" "$IMAGE_DIGEST" > {out}/rolled-back'
      - id: verify
        continue-on-error: true
        uses: ./
        with:
          command: verify
          args: --url {emu.registry_url} --health /v2/ --successes 1 --timeout 1s
      - uses: ./
        with:
          command: history
          env: prod
          image: ghcr.io/${{{{ github.repository }}}}
          args: --format json
      - name: Keep every output of every step
        env:
{keep}        run: |
          env | grep -E '^({prefixes})_' | cut -d= -f1 | while read -r name; do
            printf '%s' "${{!name}}" > "$TK_OUT/$name"
          done
"""


def test_every_declared_output_reaches_a_later_step(
    act: ActRunner, emu: GhcrEmulator, tmp_path: Path
) -> None:
    emu.add_org(OWNER)
    token = emu.add_token(
        login="github-actions[bot]", kind="github_token", packages={f"{OWNER}/*": "admin"}
    )
    now = datetime.now(UTC)
    for day, tag in enumerate(["dev-aaaaaaa", "dev-bbbbbbb"]):
        built = images.image(label=tag)
        emu.push_built(OWNER, PACKAGE, built, tags=[tag], created=now - timedelta(days=9 - day))
    out = tmp_path / "out"
    result = act(
        workflow(emu, out),
        payload={"ref": "refs/heads/main"},
        secrets={"GITHUB_TOKEN": token},
        remote="https://github.com/Acme-Corp/App.git",
    )
    assert result.returncode == 0, result.log[-6000:]
    sha = head_sha(tmp_path / "repo")

    def output(step: str, name: str) -> str:
        path = out / f"{step.upper()}_{name.upper().replace('-', '_')}"
        return path.read_text(encoding="utf-8") if path.exists() else ""

    # every declared output reached the last step from at least one command
    missing = [n for n in declared_outputs() if not any(output(s, n) for s in STEPS)]
    assert missing == []

    # tags: the mixed-case owner is lower-cased, and the log says so
    image = f"ghcr.io/{OWNER}/{PACKAGE}"
    assert output("tags", "tags") == f"{image}:dev-{sha[:7]}"
    assert "ghcr.io/Acme-Corp/App is written ghcr.io/acme-corp/app" in result.log
    assert (output("tags", "version"), output("tags", "env")) == ("", "dev")
    assert (output("tags", "channel"), output("tags", "sha")) == ("dev", sha)
    assert output("tags", "sha-source") == "push"
    labels = dict(line.split("=", 1) for line in output("tags", "labels").split("\n"))
    assert labels[P + "revision"] == sha
    assert labels[P + "version"] == f"dev-{sha[:7]}"
    assert labels[P + "source"] == "https://github.com/Acme-Corp/App"
    assert labels[P + "title"] == "App"
    assert datetime.fromisoformat(labels[P + "created"]) > now - timedelta(minutes=10)
    assert output("tags", "annotations").split("\n") == [
        f"manifest:{key}={value}" for key, value in labels.items()
    ]
    assert json.loads(output("tags", "json"))["tags"] == [f"{image}:dev-{sha[:7]}"]
    assert (output("release", "tags"), output("release", "version")) == (f"{image}:v1.2.3", "1.2.3")
    assert output("release", "channel") == "release"
    release_annotations = output("release", "annotations").split("\n")
    assert len(release_annotations) == 12
    assert f"index:{P}version=1.2.3" in release_annotations

    # check and doctor: ok, with their JSON
    assert output("check", "ok") == "true"
    assert json.loads(output("check", "json"))["ok"] is True
    assert output("doctor", "ok") == "true"
    assert json.loads(output("doctor", "json"))

    # prune's dry run: one of the two dev images would go
    assert (output("prune", "planned"), output("prune", "kept")) == ("1", "1")
    assert json.loads(output("prune", "json"))["dry_run"] is True
    assert output("prune", "deleted") == "0"  # a dry run deletes nothing (planned: 1)
    assert {v.digest for v in emu.versions(OWNER, PACKAGE)}  # nothing was deleted

    # deploy ran the command with the image as given (lower-cased: GHCR names)
    assert (out / "deployed").read_text(encoding="utf-8") == f"{image}:v1.1.0@{DIGEST_2}"
    # previous: the last good deploy before v1.1.0, pinned by its recorded digest
    assert output("previous", "previous") == f"{image}:v1.0.0@{DIGEST_1}"
    assert output("previous", "tag") == "v1.0.0"
    assert output("previous", "reference") == f"{image}:v1.0.0"
    assert output("previous", "digest") == DIGEST_1
    assert output("previous", "pinned") == f"{image}:v1.0.0@{DIGEST_1}"
    # rollback deployed exactly that, pinned
    assert (out / "rolled-back").read_text(encoding="utf-8") == (
        f"{image}:v1.0.0@{DIGEST_1}|v1.0.0|{DIGEST_1}"
    )
    # verify of a URL that answers 401: the step failed, and said why
    assert output("verify", "ok") == "false"
    assert output("verify", "reason").startswith("not healthy within 1s: /v2/ answered 401")
    assert json.loads(output("verify", "json"))["checks"][0]["name"] == "health /v2/"
    assert token not in result.log
