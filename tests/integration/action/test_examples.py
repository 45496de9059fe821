"""The example workflows of ``examples/workflows/``, each run by ``act`` far enough to check
the values it produces, for a repository whose owner is mixed case (``Acme-Corp/App``).

Each example is run as written, with three changes a runner without the network needs:
``actions/checkout`` becomes a copy of this checkout; the ``docker/*`` actions become local
stand-ins that record the inputs they were given (what the example would build and push);
and the tagkeeper steps that talk to GitHub get the emulator's ``api-url``/``registry-url``.
The release example's build really builds the deploy tests' app under the computed tag,
so that its ``verify`` step (host networking here: this engine has no bridge) runs it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from tests.emulators import images
from tests.emulators.deployments import install
from tests.emulators.ghcr import GhcrEmulator
from tests.integration.action.conftest import REPO_ROOT, ActResult, ActRunner, head_sha

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

pytestmark = pytest.mark.integration

EXAMPLES = REPO_ROOT / "examples" / "workflows"
REMOTE = "https://github.com/Acme-Corp/App.git"
OWNER, PACKAGE = "acme-corp", "app"
IMAGE = f"ghcr.io/{OWNER}/{PACKAGE}"
P = "org.opencontainers.image."

COPY = """cd "$TK_SRC"
git ls-files -z --cached --others --exclude-standard |
  xargs -0 cp --parents -t "$GITHUB_WORKSPACE"
cp -r "$TK_STUBS" "$GITHUB_WORKSPACE/.tk-stubs"
"""


def stub_action(slug: str, inputs: list[str]) -> str:
    """A composite action that writes each input it got to ``$TK_OUT/<slug>/<input>``,
    and answers a ``digest`` output of ``$TK_STUB_DIGEST`` (empty when it is not set)."""
    env = "".join(
        f"        IN_{i}: ${{{{ inputs.{name} }}}}\n" for i, name in enumerate(inputs)
    )
    writes = "".join(
        f'        printf "%s" "$IN_{i}" > "$TK_OUT/{slug}/{name}"\n'
        for i, name in enumerate(inputs)
    )
    declared = "".join(f"  {name}:\n    required: false\n" for name in ["unused", *inputs])
    env += "        NONE: none\n"
    writes += '        echo "digest=${TK_STUB_DIGEST:-}" >> "$GITHUB_OUTPUT"\n'
    return f"""name: {slug} (stand-in)
description: records its inputs
inputs:
{declared}outputs:
  digest:
    description: what TK_STUB_DIGEST says
    value: ${{{{ steps.record.outputs.digest }}}}
runs:
  using: composite
  steps:
    - shell: bash
      id: record
      env:
{env}      run: |
        mkdir -p "$TK_OUT/{slug}"
{writes}"""


def runnable(
    name: str,
    stubs: Path,
    extra_with: Mapping[str, Mapping[str, str]] | None = None,
    replace: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """The example ``name`` as act can run it here (see the module docstring).

    ``replace`` swaps a step, by name, for another (a build that must really build)."""
    data: dict[Any, Any] = yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))
    data["on"] = data.pop(True)  # YAML 1.1 reads the key 'on' as true
    for job in data["jobs"].values():
        job["runs-on"] = "ubuntu-latest"
        steps = []
        for original in job["steps"]:
            step = dict(original)
            if step.get("name") in (replace or {}):
                steps.append(dict((replace or {})[step["name"]]))
                continue
            uses = step.get("uses", "")
            if uses.startswith("actions/checkout@"):
                steps.append({"name": "Bring in the checkout under test", "run": COPY})
                continue
            if uses.startswith("docker/"):
                slug = uses.split("/", 1)[1].split("@", 1)[0]
                (stubs / slug).mkdir(parents=True, exist_ok=True)
                (stubs / slug / "action.yml").write_text(
                    stub_action(slug, list(step.get("with", {}))), encoding="utf-8"
                )
                step["uses"] = f"./.tk-stubs/{slug}"
            elif uses == "./" and step.get("id") in (extra_with or {}):
                step["with"] = {**step["with"], **(extra_with or {})[step["id"]]}
            steps.append(step)
        job["steps"] = steps
    return yaml.safe_dump(data, sort_keys=False)


def run_example(
    act: ActRunner,
    tmp_path: Path,
    name: str,
    *,
    event: str,
    payload: Mapping[str, Any],
    extra_with: Mapping[str, Mapping[str, str]] | None = None,
    secrets: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    replace: Mapping[str, Mapping[str, Any]] | None = None,
    remote: str = REMOTE,
    succeed: bool = True,
    variables: Mapping[str, str] | None = None,
) -> ActResult:
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    result = act(
        runnable(name, stubs, extra_with, replace),
        event=event,
        payload=payload,
        remote=remote,
        env={"TK_STUBS": str(stubs), **(env or {})},
        secrets={"GITHUB_TOKEN": "ghs_" + "E" * 36, **(secrets or {})},
        variables=variables,
    )
    if succeed:
        assert result.returncode == 0, result.log[-6000:]
    return result


def labels_of(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.split("\n"))


def test_dev_build_pushes_dev_sha_with_labels_and_annotations(
    act: ActRunner, tmp_path: Path
) -> None:
    result = run_example(
        act, tmp_path, "dev-build.yml", event="push", payload={"ref": "refs/heads/feature/x"}
    )
    sha = head_sha(tmp_path / "repo")
    assert result.read("login-action/registry") == "ghcr.io"
    built = "build-push-action/"
    assert result.read(built + "push") == "true"
    assert result.read(built + "tags") == f"{IMAGE}:dev-{sha[:7]}"
    labels = labels_of(result.read(built + "labels"))
    assert labels[P + "revision"] == sha
    assert labels[P + "version"] == f"dev-{sha[:7]}"
    assert labels[P + "source"] == "https://github.com/Acme-Corp/App"
    assert labels[P + "title"] == "App"
    created = datetime.fromisoformat(labels[P + "created"])
    assert abs(created - datetime.now(UTC)) < timedelta(minutes=10)
    assert result.read(built + "annotations").split("\n") == [
        f"manifest:{key}={value}" for key, value in labels.items()
    ]
    assert "ghcr.io/Acme-Corp/App is written ghcr.io/acme-corp/app" in result.log


# The release example's build step, really building the test app (the image the verify
# step runs) under the tags it computed; BAD_ENV bakes a failure mode into it.
BUILD_SCRIPT = """"$TK_PYTHON" - <<'PY'
import os, sys
sys.path.insert(0, os.environ["TK_SRC"])
import docker
from tests.deploykit.app import build_app
from tests.integration.deploy.engine_host import derived
client = docker.from_env()
image = build_app(client, version="1.4.0")
bad = dict(item.split("=", 1) for item in os.environ.get("BAD_ENV", "").split())
if bad:
    image = derived(client, image, bad)
for ref in os.environ["TAGS"].split():
    repo, _, tag = ref.rpartition(":")
    client.api.tag(image, repo, tag)
PY
"""
BUILD_APP = {
    "name": "Build the test app into the runner's engine",
    "env": {"TAGS": "${{ steps.tags.outputs.tags }}"},
    "run": BUILD_SCRIPT,
}


@pytest.fixture
def release_repo() -> Iterator[str]:
    """A repository name of this test's own; the image built under it is removed after."""
    import uuid

    import docker
    import docker.errors

    name = f"App-{uuid.uuid4().hex[:8]}"
    yield name
    client = docker.from_env()
    try:
        image = client.api.inspect_image(f"ghcr.io/acme-corp/{name.lower()}:v1.4.0")
        client.api.remove_image(image["Id"], force=True)
    except docker.errors.ImageNotFound:
        pass
    finally:
        client.close()


def _verify_here(port: int) -> dict[str, dict[str, str]]:
    # host networking (this engine has no bridge) on a free port; the example's smoke file
    return {
        "verify": {
            "args": f"--network host --port {port} --port-env SERVER_PORT --interval 500ms "
            "--timeout 30s --smoke examples/smoke.toml"
        }
    }


def test_release_gates_verifies_and_pushes_the_exact_version(
    act: ActRunner, tmp_path: Path, release_repo: str
) -> None:
    import sys

    from tests.services import free_port

    result = run_example(
        act, tmp_path, "release.yml", event="push", payload={"ref": "refs/tags/v1.4.0"},
        remote=f"https://github.com/Acme-Corp/{release_repo}.git",
        replace={"Build into the runner's engine": BUILD_APP},
        extra_with=_verify_here(free_port()), env={"TK_PYTHON": sys.executable},
    )  # fmt: skip
    image = f"ghcr.io/acme-corp/{release_repo.lower()}"
    assert f"verify {image}:v1.4.0: passed: healthy, 4 smoke checks passed" in result.log
    built = "build-push-action/"
    assert result.read(built + "push") == "true"  # the push step ran after the verify step
    assert result.read(built + "tags") == f"{image}:v1.4.0"
    labels = labels_of(result.read(built + "labels"))
    assert labels[P + "version"] == "1.4.0"
    assert labels[P + "revision"] == head_sha(tmp_path / "repo")
    assert f"manifest:{P}version=1.4.0" in result.read(built + "annotations").split("\n")
    assert "ok (exact release 1.4.0; acceptable for prod)" in result.log


def test_release_stops_before_the_push_when_the_image_fails_verify(
    act: ActRunner, tmp_path: Path, release_repo: str
) -> None:
    import sys

    import docker

    from tests.services import free_port

    result = run_example(
        act, tmp_path, "release.yml", event="push", payload={"ref": "refs/tags/v1.4.0"},
        remote=f"https://github.com/Acme-Corp/{release_repo}.git",
        replace={"Build into the runner's engine": BUILD_APP},
        extra_with=_verify_here(free_port()),
        env={"TK_PYTHON": sys.executable, "BAD_ENV": "FAIL_PATHS=/api/public/testimonials"},
        succeed=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "smoke check 'testimonials' failed: answered 500, expected 2xx" in result.log
    assert "  | " in result.log  # the container's log tail
    assert not (result.outdir / "build-push-action" / "push").exists()  # never pushed
    image = f"ghcr.io/acme-corp/{release_repo.lower()}:v1.4.0"
    client = docker.from_env()
    try:  # the throw-away container is gone
        left = client.api.containers(all=True, filters={"label": "org.tagkeeper.role=verify"})
        assert [c for c in left if c.get("Labels", {}).get("org.tagkeeper.image") == image] == []
    finally:
        client.close()


# The release example's deploy job reaches the host with DEPLOY_SSH (`ssh` by default).
# Here it is this stand-in: it records the arguments it was given (what ssh would run),
# prints the host's stderr and JSON, and exits as tagkeeper on the host did.
FAKE_SSH = """#!/bin/sh
printf '%s\\n' "$@" > "$TK_OUT/ssh-args"
cat "$RUNNER_TEMP/known_hosts" > "$TK_OUT/known-hosts"
stat -c '%a' "$RUNNER_TEMP/deploy_key" > "$TK_OUT/key-mode"
printf '%s\\n' "$FAKE_STDERR" >&2
printf '%s\\n' "$FAKE_JSON"
exit "$FAKE_EXIT"
"""
DIGEST = "sha256:" + "d" * 64
KNOWN = "web1.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfWeb1ForTheTest"
KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAtestkeyonly\n-----END OPENSSH PRIVATE KEY-----"


def _release_and_deploy(
    act: ActRunner, tmp_path: Path, release_repo: str, *, code: int,
    host_json: dict[str, Any], stderr: str = "  pre-check: done: healthy",
) -> ActResult:  # fmt: skip
    import sys

    from tests.services import free_port

    ssh = tmp_path / "fake-ssh"
    ssh.write_text(FAKE_SSH, encoding="utf-8")
    ssh.chmod(0o755)
    return run_example(
        act, tmp_path, "release.yml", event="push", payload={"ref": "refs/tags/v1.4.0"},
        remote=f"https://github.com/Acme-Corp/{release_repo}.git",
        replace={"Build into the runner's engine": BUILD_APP},
        extra_with=_verify_here(free_port()),
        env={"TK_PYTHON": sys.executable, "TK_STUB_DIGEST": DIGEST, "FAKE_EXIT": str(code),
             "FAKE_JSON": json.dumps(host_json), "FAKE_STDERR": stderr},
        variables={"DEPLOY_HOST": "deploy@web1.example.com", "DEPLOY_SSH": str(ssh),
                   "DEPLOY_KNOWN_HOSTS": KNOWN, "DEPLOY_CONFIG": "/etc/tagkeeper/tagkeeper.toml"},
        secrets={"DEPLOY_SSH_KEY": KEY},
        succeed=code == 0,
    )  # fmt: skip


def _parsed(argv: list[str]) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """What tagkeeper's CLI makes of ``argv`` (parsed, never run): the root options, the
    command and its options; click's ``UsageError`` for a line it would refuse."""
    import typer

    from tagkeeper.cli import build_app

    group = typer.main.get_command(build_app())
    with group.make_context("tagkeeper", list(argv)) as ctx:
        # a group takes its own options first: what is left, the command and its
        # arguments, is the end of argv
        rest = list(argv[len(argv) - len(ctx.args) - 1 :])
        name, sub, rest = group.resolve_command(ctx, rest)  # type: ignore[attr-defined]
        assert name is not None
        assert sub is not None
        with sub.make_context(name, rest, parent=ctx) as sub_ctx:
            return dict(ctx.params), name, dict(sub_ctx.params)


def test_the_parsing_check_refuses_a_misplaced_option() -> None:
    with pytest.raises(Exception, match="No such option: --config"):  # click's UsageError
        _parsed(["deploy", "--env", "prod", "--image", "a/b:v1", "--config", "/x.toml"])


def test_release_deploys_on_the_host_over_ssh_by_digest(
    act: ActRunner, tmp_path: Path, release_repo: str
) -> None:
    image = f"ghcr.io/acme-corp/{release_repo.lower()}:v1.4.0"
    from tagkeeper.deploy.engine import DeployResult
    from tagkeeper.rollback.resolve import DeployStatus

    answer = DeployResult("prod", "bluegreen", "app", f"{image}@{DIGEST}", DIGEST,
                          DeployStatus.SUCCEEDED, "slot green serves it", deploy_id=7,
                          slot="green")  # fmt: skip
    result = _release_and_deploy(act, tmp_path, release_repo, code=0,
                                 host_json=answer.as_dict())  # fmt: skip
    args = result.read("ssh-args").splitlines()
    # what ssh would run: the host's key checked, the key for that host only, then the
    # remote command, each argument separate, pinned by the digest that was pushed
    dash = args.index("--")
    options, (host, *remote) = args[:dash], args[dash + 1 :]
    assert host == "deploy@web1.example.com"
    assert remote[0] == "tagkeeper"
    # the command line means, to tagkeeper's own parser, exactly this deploy
    root, command, params = _parsed(remote[1:])
    assert str(root["config"]) == "/etc/tagkeeper/tagkeeper.toml"
    assert command == "deploy"
    assert (params["env"], params["image"], str(params["fmt"])) == (
        "prod", f"{image}@{DIGEST}", "json")  # fmt: skip
    assert params["command"] in (None, [], ())
    assert options[:4] == ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
    known = next(o for o in options if o.startswith("UserKnownHostsFile="))
    assert result.read("known-hosts").strip() == KNOWN
    assert known.endswith("/known_hosts")
    key = options[options.index("-i") + 1]
    assert "IdentitiesOnly=yes" in options
    assert result.read("key-mode").strip() == "600"
    assert not Path(key).exists()  # removed once the deploy ended
    assert "Deploy of `" + f"{image}@{DIGEST}` to prod: released" in result.log
    assert "slot: green" in result.log


@pytest.mark.parametrize(
    ("code", "reason", "verdict"),
    [
        (14, "canary-step", "released, then rolled back automatically"),
        (14, "watch", "released, then rolled back automatically"),
        (13, "pre-check", "refused: nothing was switched, the previous version still serves"),
    ],
)
def test_release_job_fails_with_the_reason_when_the_deploy_did_not_hold(  # noqa: PLR0917
    act: ActRunner, tmp_path: Path, release_repo: str, code: int, reason: str, verdict: str
) -> None:
    from tagkeeper.deploy.engine import DeployResult
    from tagkeeper.rollback.resolve import DeployStatus

    message = "the canary step 1/4 (5%) to slot blue failed: error rate 100% (20 of 20)"
    image = f"ghcr.io/acme-corp/{release_repo.lower()}:v1.4.0@{DIGEST}"
    status = DeployStatus.ROLLED_BACK if code == 14 else DeployStatus.FAILED
    # what tagkeeper on the host prints with --format json for such an end
    back = None
    if reason == "watch":  # the old slot took every request again: its own record
        back = DeployResult("prod", "canary", "app", image.replace("v1.4.0@", "v1.3.0@"),
                            DIGEST, DeployStatus.SUCCEEDED, "switched back", rollback=True,
                            deploy_id=9, slot="green")  # fmt: skip
    host = DeployResult("prod", "canary", "app", image, DIGEST, status, message,
                        reason=reason, deploy_id=8, slot="blue", followup=back)  # fmt: skip
    assert host.exit_code == code
    result = _release_and_deploy(act, tmp_path, release_repo, code=code, host_json=host.as_dict(),
                                 stderr="::error::from the host")  # fmt: skip
    assert result.returncode != 0
    assert f"to prod: {verdict}" in result.log  # the job summary
    assert f"reason: `{reason}`" in result.log
    assert f"::error title=deploy to prod::{verdict} ({reason}): " in result.log
    assert "error rate 100% (20 of 20)" in result.log
    if back is not None:
        assert f"serves again: `{back.image}` (slot green)" in result.log
    # the host's output is shown, never run as a workflow command
    assert "::error::from the host" in result.log
    assert "❗  ::error::from the host" not in result.log


@pytest.fixture
def emu() -> Iterator[GhcrEmulator]:
    emulator = GhcrEmulator(latency=0.0)
    deployments = install(emulator)
    emulator.start()
    emulator.deployments = deployments  # type: ignore[attr-defined]
    try:
        yield emulator
    finally:
        emulator.stop()
    if emulator.errors:
        pytest.fail("the emulator raised inside a handler: " + "; ".join(emulator.errors))


def test_prune_keeps_the_newest_per_channel_and_reports(
    act: ActRunner, tmp_path: Path, emu: GhcrEmulator
) -> None:
    emu.add_org(OWNER)
    token = emu.add_token(
        login="github-actions[bot]", kind="github_token", packages={f"{OWNER}/*": "admin"}
    )
    base = datetime.now(UTC) - timedelta(days=30)
    dev = []
    for day in range(12):
        tag = f"dev-{day + 0xA0000:07x}"
        built = images.image(label=tag)
        emu.push_built(OWNER, PACKAGE, built, tags=[tag], created=base + timedelta(days=day))
        dev.append(built.digest)
    garbage = images.image(label="garbage")
    emu.push_built(OWNER, PACKAGE, garbage, created=base)
    endpoints = {"prune": {"api-url": emu.api_url, "registry-url": emu.registry_url}}
    # the upload of the report (no artifact service here) keeps the file it was given
    keep = {"Keep the whole plan": {"name": "Keep the whole plan (stand-in)",
                                    "run": 'cp prune-report.json "$TK_OUT/"'}}  # fmt: skip
    result = run_example(
        act, tmp_path, "prune.yml", event="schedule", payload={"schedule": "17 3 * * *"},
        extra_with=endpoints, secrets={"GITHUB_TOKEN": token}, replace=keep,
    )  # fmt: skip
    left = {v.digest for v in emu.versions(OWNER, PACKAGE)}
    assert left == set(dev[2:])  # keep-dev 10; the two oldest and the garbage went
    assert "planned 3, deleted 3, kept 10" in result.log
    assert token not in result.log
    # the whole plan went to the report file the workflow uploads
    report = json.loads(result.read("prune-report.json"))
    assert report["dry_run"] is False
    (entry,) = report["images"]
    assert {item["digest"] for item in entry["delete"]} == {*dev[:2], garbage.digest}
    assert entry["applied"]["counts"]["deleted"] == 3


def test_rollback_prints_one_pinned_reference(
    act: ActRunner, tmp_path: Path, emu: GhcrEmulator
) -> None:
    """The printed IMAGE is exactly what ``previous --digest`` answers, never prefixed twice
    (it used to print ``IMAGE=ghcr.io/o/r:ghcr.io/o/r:v1.2.4@sha256:...``)."""
    fake = emu.deployments  # type: ignore[attr-defined]
    emu.add_user("octo")
    token = emu.add_token(login="octo", kind="github_token", default="write")
    digests = {"v1.2.3": "sha256:" + "3" * 64, "v1.2.4": "sha256:" + "4" * 64}
    for tag, digest in digests.items():
        payload = {"tagkeeper": 1, "image": IMAGE, "tag": tag, "digest": digest,
                   "rollback": False, "ci_run_url": None}  # fmt: skip
        deployment = fake.add_deployment("Acme-Corp/App", environment="prod", payload=payload)
        fake.add_status("Acme-Corp/App", deployment, "success")
    result = run_example(
        act, tmp_path, "rollback.yml", event="workflow_dispatch",
        payload={"inputs": {"environment": "prod", "current": ""}},
        extra_with={"previous": {"api-url": emu.api_url}},
        secrets={"GITHUB_TOKEN": token},
        env={"TAGKEEPER_LEDGER": str(tmp_path / "no-ledger-here" / "ledger.db")},
    )  # fmt: skip
    expected = f"{IMAGE}:v1.2.3@{digests['v1.2.3']}"
    printed = [
        line.split("| ", 1)[-1].strip()
        for line in result.log.splitlines()
        if "IMAGE=" in line and "./deploy.sh" in line and "echo" not in line
    ]
    assert printed == [f"IMAGE={expected} PROFILE=prod ./deploy.sh"], result.log[-3000:]
    assert f"{IMAGE}:{IMAGE}" not in result.log
