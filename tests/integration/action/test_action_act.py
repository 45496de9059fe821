"""The composite action run for real by ``act``: outputs, gates, literal inputs, masking."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import pytest

from tests.integration.action.conftest import COPY_STEP, ActRunner, head_sha

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration


def _workflow(steps: str, on: str = "push") -> str:
    return f"""on: {on}
jobs:
  t:
    runs-on: ubuntu-latest
    steps:
{COPY_STEP}{steps}"""


def _yaml(value: str) -> str:
    """A YAML double-quoted scalar holding ``value`` exactly."""
    return json.dumps(value)


def test_push_to_a_branch_gives_dev_sha_and_passes_the_dev_gate(
    act: ActRunner, tmp_path: Path
) -> None:
    steps = """      - id: tags
        uses: ./
        with:
          command: tags
          image: ghcr.io/acme/app
      - name: Keep the outputs
        env:
          TAGS: ${{ steps.tags.outputs.tags }}
          VERSION: ${{ steps.tags.outputs.version }}
          OUT_ENV: ${{ steps.tags.outputs.env }}
          JSON: ${{ steps.tags.outputs.json }}
        run: |
          printf '%s' "$TAGS" > "$TK_OUT/tags"
          printf '%s' "$VERSION" > "$TK_OUT/version"
          printf '%s' "$OUT_ENV" > "$TK_OUT/env"
          printf '%s' "$JSON" > "$TK_OUT/json"
      - uses: ./
        with:
          command: check
          env: ${{ steps.tags.outputs.env }}
          image: ${{ steps.tags.outputs.tags }}
"""
    result = act(_workflow(steps), payload={"ref": "refs/heads/main"})
    assert result.returncode == 0, result.log[-4000:]
    sha = head_sha(tmp_path / "repo")
    assert result.read("tags") == f"ghcr.io/acme/app:dev-{sha[:7]}"
    assert result.read("version") == ""
    assert result.read("env") == "dev"
    payload = json.loads(result.read("json"))
    assert payload["sha"] == sha
    assert payload["env"] == "dev"
    # the second use of the action in the job reuses the environment the first one built
    assert result.log.count("reusing ") == 1


def test_release_tag_gives_the_exact_version_and_latest_fails_the_prod_gate(
    act: ActRunner,
) -> None:
    steps = """      - id: tags
        uses: ./
        with:
          command: tags
          image: ghcr.io/acme/app
      - name: Keep the outputs
        env:
          TAGS: ${{ steps.tags.outputs.tags }}
          VERSION: ${{ steps.tags.outputs.version }}
          OUT_ENV: ${{ steps.tags.outputs.env }}
        run: |
          printf '%s' "$TAGS" > "$TK_OUT/tags"
          printf '%s' "$VERSION" > "$TK_OUT/version"
          printf '%s' "$OUT_ENV" > "$TK_OUT/env"
      - uses: ./
        with:
          command: check
          env: prod
          image: ${{ steps.tags.outputs.tags }}
      - run: touch "$TK_OUT/gate-passed"
      - uses: ./
        with:
          command: check
          env: prod
          image: ghcr.io/acme/app:latest
      - run: touch "$TK_OUT/after-latest"
"""
    result = act(_workflow(steps), payload={"ref": "refs/tags/v1.2.3"})
    assert result.read("tags") == "ghcr.io/acme/app:v1.2.3"
    assert result.read("version") == "1.2.3"
    assert result.read("env") == "prod"
    assert (result.outdir / "gate-passed").exists()
    # the latest check failed the job: the step after it never ran
    assert result.returncode != 0
    assert not (result.outdir / "after-latest").exists()
    assert "::error" in result.log
    assert "latest" in result.log


INJECTIONS = [
    "$(touch {out}/pwned-subshell)",
    "`touch {out}/pwned-backtick`",
    "x; touch {out}/pwned-semicolon",
    'it\'s "quoted"',
    "line1\n::set-output name=forged::yes\n::error::forged annotation",
]


def test_inputs_are_passed_literally_and_the_token_never_shows(
    act: ActRunner, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    token = "ghp_" + "Q" * 36
    refs = [payload.format(out=out) for payload in INJECTIONS]
    steps = ""
    for number, ref in enumerate(refs):
        args = "--format json --ref " + _shell_quote(f"refs/heads/{ref}")
        steps += f"""      - id: s{number}
        continue-on-error: true
        uses: ./
        with:
          command: tags
          token: {token}
          args: {_yaml(args)}
      - env:
          FORGED: ${{{{ steps.s{number}.outputs.forged }}}}
        run: printf '%s' "$FORGED" > "$TK_OUT/forged{number}"
"""
    steps += f"""      - id: bad
        continue-on-error: true
        uses: ./
        with:
          command: check
          env: prod
          token: {token}
          image: {_yaml(chr(10).join(refs))}
      - env:
          FORGED: ${{{{ steps.bad.outputs.forged }}}}
        run: printf '%s' "$FORGED" > "$TK_OUT/forged-check"
"""
    result = act(_workflow(steps), payload={"ref": "refs/heads/main"})
    assert result.returncode == 0, result.log[-4000:]
    # nothing was executed ...
    assert sorted(p.name for p in out.glob("pwned*")) == []
    # ... every value reached tagkeeper literally (its error quotes what it received) ...
    for ref in refs:
        assert repr(f"refs/heads/{ref}") in result.log
    # ... and no line of it was taken as a workflow command
    for number in range(len(refs)):
        assert result.read(f"forged{number}") == ""
    assert result.read("forged-check") == ""
    # our own annotations may quote the value; a forged one would be an annotation of its own
    assert not re.search(r"❗\s+::error::forged annotation", result.log)
    assert token not in result.log


def _shell_quote(value: str) -> str:
    import shlex

    return shlex.quote(value)
