"""Finding image references in compose files, env files and deploy scripts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tagkeeper.gate.rules import Code, policy_for
from tagkeeper.gate.scan import Finding, Kind, expand, judge_findings, scan_text

if TYPE_CHECKING:
    from pathlib import Path

COMPOSE = """\
# deploy stack
name: shop
x-common: &common
  restart: unless-stopped

services:
  web:
    <<: *common
    image: ghcr.io/acme/web:v1.2.3   # pinned release
    environment:
      - APP_IMAGE=ghcr.io/acme/app:latest
      - "SIDECAR_IMAGE=ghcr.io/acme/side:v2.0.0"
      - PROFILE=prod
  worker:
    image: "ghcr.io/acme/worker:dev-abc1234"
  db:
    image: '${DB_IMAGE:-ghcr.io/acme/db:v1.0.0}'
  cache:
    image: >-
      ghcr.io/acme/cache:nightly
  migrate:
    image:
      ghcr.io/acme/migrate:v3.1.4
  # image: ghcr.io/acme/old:latest
  proxy:
    build: ./proxy
    labels:
      com.example.image: "not-a-key-we-read"
"""

DEPLOY_SH = """\
#!/usr/bin/env bash
set -euo pipefail
# IMAGE=ghcr.io/acme/app:latest   (a comment, not an assignment)
export IMAGE=ghcr.io/acme/app:v1.2.3
APP_IMAGE="ghcr.io/acme/app:v1.2.3"; FOO_IMAGE='ghcr.io/acme/foo:v1'
IMAGE=ghcr.io/acme/app:dev-latest PROFILE=prod ./deploy.sh
cd /srv/app && PROFILE=prod IMAGE="${IMAGE:-ghcr.io/acme/app:latest}" ./deploy.sh
echo IMAGE=ghcr.io/acme/app:latest
docker run -e IMAGE=ghcr.io/acme/app:latest busybox
readonly BASE_IMAGE=ghcr.io/acme/base:v9.9.9 # trailing comment
image=$(cat .image)
IMAGE_TAG=v1
"""

DOTENV = """\
# compose .env
IMAGE=ghcr.io/acme/app:v2.3.4
WORKER_IMAGE="ghcr.io/acme/worker:v2.3.4-rc.1"
db_image='ghcr.io/acme/db:LATEST'
TAG=v2.3.4
"""


def write(tmp_path: Path, name: str, text: str) -> tuple[str, str]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path), path.read_text(encoding="utf-8")


def summary(findings: list[Finding]) -> list[tuple[int, str, str]]:
    return [(f.line, f.name, f.text) for f in findings]


def test_compose_file(tmp_path: Path) -> None:
    name, text = write(tmp_path, "compose.yml", COMPOSE)
    found = scan_text(text, name)
    assert summary(found) == [
        (9, "image", "ghcr.io/acme/web:v1.2.3"),
        (11, "APP_IMAGE", "ghcr.io/acme/app:latest"),
        (12, "SIDECAR_IMAGE", "ghcr.io/acme/side:v2.0.0"),
        (15, "image", "ghcr.io/acme/worker:dev-abc1234"),
        (17, "image", "${DB_IMAGE:-ghcr.io/acme/db:v1.0.0}"),
        (20, "image", "ghcr.io/acme/cache:nightly"),
        (23, "image", "ghcr.io/acme/migrate:v3.1.4"),
    ]
    assert all(f.file == name for f in found)
    lines = COMPOSE.splitlines()
    for finding in found:
        # the column points at the value's first character in its line
        line = lines[finding.line - 1]
        assert line[finding.column - 1 :].startswith(finding.raw), finding
    db = found[4]
    assert db.unresolved is not None
    assert "$DB_IMAGE" in db.unresolved
    assert "ghcr.io/acme/db:v1.0.0" in db.unresolved  # the default is named
    assert [f.kind for f in found[:2]] == [Kind.YAML_KEY, Kind.ASSIGNMENT]


def test_compose_verdicts(tmp_path: Path) -> None:
    name, text = write(tmp_path, "compose.yml", COMPOSE)
    verdicts = judge_findings(scan_text(text, name), policy_for("prod"))
    assert [(v.line, v.code) for v in verdicts] == [
        (9, Code.OK),
        (11, Code.LATEST),
        (12, Code.OK),
        (15, Code.DEV_TAG),
        (17, Code.UNRESOLVED),
        (20, Code.NON_RELEASE),
        (23, Code.OK),
    ]
    assert all(v.file == name for v in verdicts)
    unresolved = verdicts[4]
    assert unresolved.ref == "${DB_IMAGE:-ghcr.io/acme/db:v1.0.0}"
    assert "--var" in unresolved.message


def test_deploy_script(tmp_path: Path) -> None:
    name, text = write(tmp_path, "deploy.sh", DEPLOY_SH)
    found = scan_text(text, name)
    assert summary(found) == [
        (4, "IMAGE", "ghcr.io/acme/app:v1.2.3"),
        (5, "APP_IMAGE", "ghcr.io/acme/app:v1.2.3"),
        (5, "FOO_IMAGE", "ghcr.io/acme/foo:v1"),
        (6, "IMAGE", "ghcr.io/acme/app:dev-latest"),
        (7, "IMAGE", "${IMAGE:-ghcr.io/acme/app:latest}"),
        (10, "BASE_IMAGE", "ghcr.io/acme/base:v9.9.9"),
        (11, "image", "$(cat .image)"),
    ]
    lines = DEPLOY_SH.splitlines()
    for finding in found:
        line = lines[finding.line - 1]
        assert line[finding.column - 1 :].startswith(finding.raw), finding
    assert [f.unresolved is None for f in found] == [True, True, True, True, False, True, False]
    by_line = {(f.line, f.name): f for f in found}
    assert by_line[(7, "IMAGE")].unresolved is not None
    assert by_line[(11, "image")].unresolved is not None
    assert "command substitution" in (by_line[(11, "image")].unresolved or "")
    assert by_line[(10, "BASE_IMAGE")].unresolved is None


def test_env_file(tmp_path: Path) -> None:
    name, text = write(tmp_path, ".env", DOTENV)
    verdicts = judge_findings(scan_text(text, name), policy_for("prod"))
    assert [(v.line, v.ref, v.code) for v in verdicts] == [
        (2, "ghcr.io/acme/app:v2.3.4", Code.OK),
        (3, "ghcr.io/acme/worker:v2.3.4-rc.1", Code.PRERELEASE),
        (4, "ghcr.io/acme/db:LATEST", Code.LATEST),
    ]
    assert [v.column for v in verdicts] == [7, 15, 11]


def test_single_quotes_keep_dollar_literal() -> None:
    found = scan_text("IMAGE='ghcr.io/o/r:$TAG'\n", "x.sh")
    assert found[0].unresolved is None
    assert found[0].text == "ghcr.io/o/r:$TAG"
    verdict = judge_findings(found, policy_for("prod"))[0]
    assert verdict.code is Code.UNPARSEABLE


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("IMAGE=ghcr.io/o/r:$TAG", "$TAG is not known"),
        ('IMAGE="ghcr.io/o/r:${TAG}"', "$TAG is not known"),
        ("IMAGE=ghcr.io/o/r:`cat tag`", "command substitution"),
        ("IMAGE=$1", "shell parameter $1"),
        ("IMAGE=ghcr.io/o/r:$$", "unsupported expansion"),
        ("IMAGE=", "empty"),
        ("IMAGE=${TAG#v}", "unsupported expansion"),
    ],
)
def test_unresolved_shell_values_are_reported(line: str, why: str) -> None:
    found = scan_text(line + "\n", "deploy.sh")
    assert len(found) == 1
    assert found[0].unresolved is not None
    assert why in found[0].unresolved
    verdict = judge_findings(found, policy_for("dev"))[0]
    assert verdict.code is Code.UNRESOLVED
    assert not verdict.ok
    assert (verdict.file, verdict.line) == ("deploy.sh", 1)


def test_github_expression_is_unresolved() -> None:
    workflow = "jobs:\n  deploy:\n    env:\n      IMAGE: ghcr.io/o/r:${{ github.sha }}\n"
    found = scan_text(workflow, "deploy.yml")
    assert len(found) == 1
    assert found[0].line == 4
    assert "GitHub Actions expression" in (found[0].unresolved or "")


def test_variables_resolve_values() -> None:
    text = (
        'IMAGE="ghcr.io/o/r:${TAG}"\n'
        "OTHER_IMAGE=${OTHER:-ghcr.io/o/other:v1.0.0}\n"
        "services:\n  a:\n    image: ${REGISTRY}/o/a:${TAG:?set TAG}\n"
    )
    found = scan_text(text, "f", {"TAG": "v1.2.3", "REGISTRY": "ghcr.io"})
    assert [(f.text, f.unresolved) for f in found] == [
        ("ghcr.io/o/r:v1.2.3", None),
        ("ghcr.io/o/other:v1.0.0", None),
        ("ghcr.io/o/a:v1.2.3", None),
    ]
    missing = scan_text(text, "f", {})
    assert "$TAG is not set" in (missing[0].unresolved or "")
    assert missing[1].text == "ghcr.io/o/other:v1.0.0"  # the default applies
    assert "required" in (missing[2].unresolved or "")


@pytest.mark.parametrize(
    ("template", "variables", "text"),
    [
        ("a:${X:-d}", {"X": ""}, "a:d"),
        ("a:${X-d}", {"X": ""}, "a:"),
        ("a:${X-d}", {}, "a:d"),
        ("a:${X:+alt}", {"X": "1"}, "a:alt"),
        ("a:${X:+alt}", {"X": ""}, "a:"),
        ("a:${X+alt}", {"X": ""}, "a:alt"),
        ("a:$X", {"X": "v1"}, "a:v1"),
        ("a:${X:-${Y}}", {"Y": "v2"}, "a:v2"),
        ("a$$b", {}, "a$b"),
        ("price: $", {}, "price: $"),
    ],
)
def test_expand_follows_compose_semantics(
    template: str, variables: dict[str, str], text: str
) -> None:
    assert expand(template, variables) == (text, [])


def test_yaml_edge_cases() -> None:
    text = """\
services:
  a:
    image: &img ghcr.io/o/a:v1.0.0
  b:
    image: *img
  c:
    "image": "ghcr.io/o/c:v1.0.0 # not a comment"
  d:
    image: 'it''s'
  e:
    image:
  f:
    image:   ghcr.io/o/f:v1.0.0#frag
  helm:
    image:
      repository: ghcr.io/o/r
      tag: v1
  list:
    image:
      - ghcr.io/o/x:v1
"""
    found = scan_text(text, "c.yml")
    assert [(f.line, f.raw, f.unresolved is None) for f in found] == [
        (3, "ghcr.io/o/a:v1.0.0", True),
        (5, "*img", False),
        (7, "ghcr.io/o/c:v1.0.0 # not a comment", True),
        (9, "it's", True),
        (13, "ghcr.io/o/f:v1.0.0#frag", True),
    ]
    assert found[0].column == 17  # after the anchor
    assert found[2].column == 15  # inside the quotes


def test_image_key_inside_a_heredoc_is_found() -> None:
    script = "cat > compose.yml <<EOF\nservices:\n  a:\n    image: ghcr.io/o/a:latest\nEOF\n"
    found = scan_text(script, "deploy.sh")
    assert [(f.line, f.text) for f in found] == [(4, "ghcr.io/o/a:latest")]


def test_nothing_found_in_unrelated_text() -> None:
    assert scan_text("hello\n# IMAGE=x\necho image: done\nIMAGES=a\nMY_IMAGES=b\n", "f") == []


def located(found: list[Finding], text: str) -> list[tuple[int, int, str, bool]]:
    """(line, column, raw, resolved), checking that each column points at the raw value."""
    lines = text.splitlines()
    for finding in found:
        assert lines[finding.line - 1][finding.column - 1 :].startswith(finding.raw), finding
    return [(f.line, f.column, f.raw, f.unresolved is None) for f in found]


def test_flow_mappings_on_one_line() -> None:
    text = """\
services:
  web: {image: "ghcr.io/o/web:latest", ports: ["80:80"]}
  - {image: ghcr.io/o/a:v1.0.0}
  my-worker.x: &w !!map {IMAGE: 'ghcr.io/o/w:v2.0.0', env: {APP_IMAGE: ghcr.io/o/e:latest}}
  helm: {image: {repository: ghcr.io/o/r, tag: latest}}
  empty: {image: , other: x}
  aliased: {image: *img}
  odd: {image:ghcr.io/o/x:latest}
"""
    found = scan_text(text, "c.yml")
    assert located(found, text) == [
        (2, 17, "ghcr.io/o/web:latest", True),
        (3, 13, "ghcr.io/o/a:v1.0.0", True),
        (4, 34, "ghcr.io/o/w:v2.0.0", True),
        (4, 72, "ghcr.io/o/e:latest", True),
        # helm: a mapping is not a reference, as in block style; empty: null, nothing runs
        (7, 20, "*img", False),
        (8, 9, "image:ghcr.io/o/x:latest", False),  # one key with no value in YAML
    ]
    assert [f.name for f in found] == ["image", "image", "IMAGE", "APP_IMAGE", "image", "image"]
    codes = [v.code for v in judge_findings(found, policy_for("prod"))]
    assert codes == [Code.LATEST, Code.OK, Code.OK, Code.LATEST, Code.UNRESOLVED, Code.UNRESOLVED]


def test_multi_line_flow_mappings_and_json() -> None:
    text = """\
{
  "services": {
    "web": {
      "image":"ghcr.io/o/web:latest",
      "environment": ["PROFILE=prod", "SIDE_IMAGE=ghcr.io/o/side:v1.0.0"]
    },
    # a comment inside the flow mapping
    db: {
      image:
        ghcr.io/o/db:v3.0.0,
      x: [a,
          {image: 'ghcr.io/o/q:v1.0.0'}]
    }
  }
}
"""
    found = scan_text(text, "compose.json")
    assert located(found, text) == [
        (4, 16, "ghcr.io/o/web:latest", True),
        (5, 51, "ghcr.io/o/side:v1.0.0", True),
        (10, 9, "ghcr.io/o/db:v3.0.0", True),
        (12, 20, "ghcr.io/o/q:v1.0.0", True),
    ]
    assert [f.kind for f in found] == [Kind.YAML_KEY, Kind.ASSIGNMENT, Kind.YAML_KEY, Kind.YAML_KEY]
    quoted = scan_text("a: {image: 'it''s', b: \"x\\\"y\\u0041\"}\n", "c.yml")
    assert [f.raw for f in quoted] == ["it's"]


def test_flow_sequence_environment_items() -> None:
    text = "environment: [IMAGE=ghcr.io/o/web:latest, 'X_IMAGE=a/b:v1.0.0', TAG=v1]\n"
    found = scan_text(text, "c.yml")
    assert located(found, text) == [
        (1, 21, "ghcr.io/o/web:latest", True),
        (1, 52, "a/b:v1.0.0", True),
    ]
    # the value ends at the comma (not "ghcr.io/o/web:latest,")
    multi = "environment: [\n  IMAGE=ghcr.io/o/web:latest,\n]\n"
    assert [f.text for f in scan_text(multi, "c.yml")] == ["ghcr.io/o/web:latest"]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("web: {image: ghcr.io/o/web:v1.0.0\n   :latest}\n", "continues on the next line"),
        # YAML refuses the whole file: so does the check, whichever key holds the escape
        ('web: {image: ghcr.io/o/web:v1.0.0, b: "\\q"}\n', "'\\q' is not a YAML escape"),
    ],
)
def test_flow_values_split_over_lines_are_unresolved(text: str, why: str) -> None:
    (finding,) = scan_text(text, "c.yml")
    assert finding.unresolved is not None
    assert why in finding.unresolved


@pytest.mark.parametrize(
    "text",
    [
        "services:\n  web: {image: ghcr.io/o/web:v1.0.0, ports: [80}\n",  # mismatched
        "services:\n  web: {image: ghcr.io/o/web:v1.0.0,\n",  # never closed
        "services:\n  web: {image: ghcr.io/o/web:v1.0.0} trailing\n",  # text after it
        "services:\n  web: {? image : ghcr.io/o/web:v1.0.0}\n",  # explicit key: not read
        'services:\n  web: {build: ., "image": | x}\n',  # a block scalar in a flow
    ],
)
def test_a_flow_collection_that_cannot_be_read_fails_closed(text: str) -> None:
    found = scan_text(text, "c.yml")
    assert len(found) == 1
    (finding,) = found
    assert finding.unresolved is not None
    assert "flow collection" in finding.unresolved
    assert finding.line == 2
    assert text.splitlines()[1][finding.column - 1 :].lstrip('"').lower().startswith("image")
    (verdict,) = judge_findings(found, policy_for("dev"))
    assert verdict.code is Code.UNRESOLVED  # refused even by the dev rules


def test_lines_after_an_unreadable_flow_are_still_read_once() -> None:
    text = """\
services:
  web: {image: ghcr.io/o/web:v1.0.0,
    ports: [80]
  db:
    image: ghcr.io/o/db:latest
"""
    found = scan_text(text, "c.yml")
    assert [(f.line, f.unresolved is None, f.text) for f in found] == [
        (2, False, "image: ghcr.io/o/web:v1.0.0,"),
        (5, True, "ghcr.io/o/db:latest"),
    ]


def test_shell_braces_and_brackets_are_not_image_references() -> None:
    script = """\
[ -z "$IMAGE" ] && exit 1
{ echo a; echo b; } > out
if [ -f x ]; then echo "[image: none]"; fi
[[ $IMAGE == *:latest ]] && echo no
{ IMAGE=ghcr.io/o/web:v1.0.0; ./deploy.sh; }
"""
    found = scan_text(script, "deploy.sh")
    assert [(f.line, f.kind, f.text) for f in found] == [
        (5, Kind.ASSIGNMENT, "ghcr.io/o/web:v1.0.0")
    ]


def test_deep_or_endless_flow_nesting_is_refused_not_a_crash() -> None:
    deep = "web: {image: ghcr.io/o/web:v1.0.0, x: " + "[" * 500 + "]" * 500 + "}\n"
    (finding,) = scan_text(deep, "c.yml")
    assert finding.unresolved is not None
    assert "nested deeper" in finding.unresolved
    # every line opens a mapping that never closes: each image key is reported once
    endless = "{image: ghcr.io/o/web:v1.0.0,\n" * 2000
    found = scan_text(endless, "c.yml")
    assert [f.line for f in found] == list(range(1, 2001))
    assert all(f.unresolved is not None for f in found)
