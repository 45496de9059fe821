"""The action's deploy-side commands, its strict input checks, GHCR names, its outputs and
its lock file."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tagkeeper.action import COMMANDS, build_invocation, ghcr_lowercase
from tagkeeper.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]


def argv(**inputs: str) -> list[str]:
    return build_invocation({f"TK_{k.upper()}": v for k, v in inputs.items()}).argv


# -- deploy, rollback, record ---------------------------------------------------------------


def test_deploy_runs_the_deploy_command_after_the_separator_never_through_a_shell() -> None:
    assert argv(
        command="deploy",
        image="ghcr.io/acme/app:v1.2.3",
        env="prod",
        deploy_command="./deploy.sh --profile 'prod eu' $HOME;id",
        args="--github --require-digest",
    ) == [
        "deploy", "--image", "ghcr.io/acme/app:v1.2.3", "--env", "prod",
        "--github", "--require-digest",
        "--", "./deploy.sh", "--profile", "prod eu", "$HOME;id",
    ]  # fmt: skip


def test_rollback_and_its_dry_run() -> None:
    assert argv(
        command="rollback", image="ghcr.io/acme/app", env="prod", dry_run="true",
        deploy_command="./deploy.sh", args="--source github",
    ) == [
        "rollback", "--image", "ghcr.io/acme/app", "--env", "prod", "--dry-run",
        "--source", "github", "--", "./deploy.sh",
    ]  # fmt: skip
    real = argv(command="rollback", image="ghcr.io/a/b", deploy_command="x", dry_run="false")
    assert "--dry-run" not in real


def test_record_needs_a_status() -> None:
    assert argv(command="record", image="ghcr.io/a/b:v1.0.0", env="prod", status="succeeded") == [
        "record", "--image", "ghcr.io/a/b:v1.0.0", "--env", "prod", "--status", "succeeded",
    ]  # fmt: skip
    with pytest.raises(UsageError, match="'status' is required"):
        argv(command="record", image="ghcr.io/a/b:v1.0.0")
    with pytest.raises(UsageError, match="'status' does not apply to the 'deploy'"):
        argv(command="deploy", image="ghcr.io/a/b:v1", status="failed", deploy_command="x")


@pytest.mark.parametrize("command", ["deploy", "rollback"])
def test_a_deploy_command_is_required_and_only_for_deploy_and_rollback(command: str) -> None:
    with pytest.raises(UsageError, match="'deploy-command' is required"):
        argv(command=command, image="ghcr.io/a/b:v1")
    with pytest.raises(UsageError, match="'deploy-command' cannot be split"):
        argv(command=command, image="ghcr.io/a/b:v1", deploy_command="./d.sh 'open")
    for other in set(COMMANDS) - {"deploy", "rollback"}:
        status = "started" if other == "record" else ""
        with pytest.raises(UsageError, match="applies only to the 'deploy' and 'rollback'"):
            argv(command=other, image="ghcr.io/a/b:v1", status=status, deploy_command="./d.sh")


@pytest.mark.parametrize("command", COMMANDS)
def test_args_can_never_smuggle_a_command_or_references(command: str) -> None:
    status = "started" if command == "record" else ""
    with pytest.raises(UsageError, match="contains '--'"):
        argv(command=command, image="ghcr.io/a/b:v1", status=status, args="--env p -- rm -rf /")


@pytest.mark.parametrize("command", ["previous", "doctor", "history", "record", "deploy"])
def test_one_image_commands_refuse_several(command: str) -> None:
    with pytest.raises(UsageError, match="takes one image"):
        argv(command=command, image="ghcr.io/a/b:v1\nghcr.io/a/c:v1")


@pytest.mark.parametrize("command", ["prune", "previous", "doctor", "record", "deploy"])
def test_an_image_is_required_where_the_command_needs_one(command: str) -> None:
    with pytest.raises(UsageError, match="'image' is required"):
        argv(command=command)


@pytest.mark.parametrize("command", ["tags", "check", "previous", "deploy", "record"])
def test_dry_run_is_refused_where_it_means_nothing(command: str) -> None:
    status = "started" if command == "record" else ""
    runs = "x" if command == "deploy" else ""
    with pytest.raises(UsageError, match="'dry-run' applies only"):
        argv(
            command=command, image="ghcr.io/a/b:v1", dry_run="true", status=status,
            deploy_command=runs,
        )


# -- mixed-case owners ----------------------------------------------------------------------


def test_ghcr_names_are_lowercased_with_a_note_other_registries_are_left_alone() -> None:
    inv = build_invocation(
        {"TK_COMMAND": "prune", "TK_IMAGE": "ghcr.io/Acme-Corp/App\nregistry:5000/Team/App"}
    )
    assert inv.argv[:5] == [
        "prune", "--image", "ghcr.io/acme-corp/app", "--image", "registry:5000/Team/App",
    ]  # fmt: skip
    assert inv.notes == (
        "ghcr.io/Acme-Corp/App is written ghcr.io/acme-corp/app (GHCR names are lower case)",
    )
    deploy = argv(
        command="deploy", image="ghcr.io/Acme-Corp/App:V1.2.3-RC", deploy_command="x"
    )
    assert deploy[2] == "ghcr.io/acme-corp/app:V1.2.3-RC"  # the tag keeps its case
    check = argv(command="check", image="ghcr.io/Acme/App:v1.0.0\nGHCR.IO/Acme/App:latest")
    assert check[-2:] == ["ghcr.io/acme/app:v1.0.0", "ghcr.io/acme/app:latest"]
    # tags lower-cases every repository itself (and says so): the input goes as written
    assert argv(command="tags", image="ghcr.io/Acme/App")[1:3] == ["--image", "ghcr.io/Acme/App"]


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("ghcr.io/O/R", "ghcr.io/o/r"),
        ("GHCR.io/O/R@sha256:" + "a" * 64, "ghcr.io/o/r@sha256:" + "a" * 64),
        ("ghcr.io.evil.example/O/R", "ghcr.io.evil.example/O/R"),
        ("docker.io/Library/App", "docker.io/Library/App"),
        ("Ghcr.Io", "Ghcr.Io"),
    ],
)
def test_ghcr_lowercase(image: str, expected: str) -> None:
    assert ghcr_lowercase(image) == expected


# -- outputs: everything the CLI writes is declared by the action ----------------------------


def cli_outputs() -> dict[str, set[str]]:
    """Every step output name the CLI can write, by module, read from the source: each
    ``write_outputs({...})`` call must use a literal dict with literal keys, so that no
    output can be added without this test seeing it."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "tagkeeper" / "cli").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name != "write_outputs" or path.name == "gha.py":
                continue
            assert node.args, f"{path.name}:{node.lineno}: write_outputs() without outputs"
            outputs = node.args[0]
            assert isinstance(outputs, ast.Dict), (
                f"{path.name}:{node.lineno}: pass write_outputs a literal dict, so the "
                "action's declared outputs can be checked against it"
            )
            for key in outputs.keys:
                assert isinstance(key, ast.Constant), f"{path.name}:{node.lineno}: literal keys"
                assert isinstance(key.value, str)
                found.setdefault(path.name, set()).add(key.value)
    return found


def action() -> dict[str, object]:
    data = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_the_action_declares_every_output_the_cli_writes_and_no_other() -> None:
    written = set().union(*cli_outputs().values())
    assert {"tags", "labels", "annotations", "ok", "pinned", "planned", "sha-source"} <= written
    outputs = action()["outputs"]
    assert isinstance(outputs, dict)
    assert set(outputs) == written
    for name, spec in outputs.items():
        assert spec["value"] == "${{ steps.run.outputs." + name + " }}", name
        assert spec["description"].strip()


def test_every_input_reaches_the_run_step_through_env() -> None:
    data = action()
    inputs = data["inputs"]
    assert isinstance(inputs, dict)
    runs = data["runs"]
    assert isinstance(runs, dict)
    run_step = next(step for step in runs["steps"] if step.get("id") == "run")
    env = run_step["env"]
    for name in inputs:
        variable = "TK_" + name.upper().replace("-", "_")
        assert env[variable] == "${{ inputs." + name + " }}"
    for step in runs["steps"]:
        assert "inputs." not in step["run"], "inputs reach scripts through env: only"


def test_the_command_input_lists_every_command() -> None:
    inputs = action()["inputs"]
    assert isinstance(inputs, dict)
    description = inputs["command"]["description"]
    listed = set(re.findall(r"[a-z]+", description.split(":", 1)[1]))
    assert set(COMMANDS) <= listed


# -- the lock file matches pyproject.toml -----------------------------------------------------


def lock_entries() -> dict[str, tuple[Version, str | None, list[str], list[str]]]:
    """name -> (version, marker, hashes, via) from requirements.lock."""
    text = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    entries: dict[str, tuple[Version, str | None, list[str], list[str]]] = {}
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    for block in blocks:
        head = block.split("\\", 1)[0].strip()
        requirement = Requirement(head)
        (spec,) = requirement.specifier
        assert spec.operator == "==", head
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", block)
        via = re.findall(r"^\s+#\s+(?:via\s+)?([A-Za-z0-9._-]+)", block, flags=re.MULTILINE)
        marker = str(requirement.marker) if requirement.marker else None
        entries[canonicalize_name(requirement.name)] = (Version(spec.version), marker, hashes, via)
    return entries


def test_the_lock_pins_every_runtime_dependency_within_its_bounds_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    entries = lock_entries()
    direct = [Requirement(text) for text in project["dependencies"]]
    for requirement in direct:
        name = canonicalize_name(requirement.name)
        assert name in entries, f"{name} is a dependency but is not in requirements.lock"
        version = entries[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {name}=={version}, outside {requirement.specifier}: "
            "run the command at the top of requirements.lock again"
        )
        # an upper bound on every runtime dependency: a new major cannot arrive unseen
        assert any(spec.operator in ("<", "<=", "==", "~=") for spec in requirement.specifier)
    direct_names = {canonicalize_name(r.name) for r in direct}
    for pinned, (_version, _marker, hashes, via) in entries.items():
        assert hashes, f"{pinned} has no hash in requirements.lock"
        # nothing is pinned that no dependency needs: a dependency removed from
        # pyproject.toml leaves no orphan behind
        assert pinned in direct_names or {canonicalize_name(v) for v in via} & set(entries), (
            pinned,
            via,
        )
        if pinned in direct_names:
            assert "tagkeeper" in via or any(canonicalize_name(v) in entries for v in via)


def test_the_lock_was_compiled_from_pyproject_with_hashes_for_every_platform() -> None:
    header = (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines()[:2]
    command = header[1].lstrip("# ").split()
    assert command[:4] == ["uv", "pip", "compile", "pyproject.toml"]
    assert {"--generate-hashes", "--universal"} <= set(command)
    assert command[command.index("--python-version") + 1] == "3.11"
    assert command[command.index("-o") + 1] == "requirements.lock"
    entries = lock_entries()
    # wheels for more than one platform and interpreter: cryptography has many
    assert len(entries[canonicalize_name("cryptography")][2]) > 10


def test_the_license_matches_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text
    assert "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert "APPENDIX: How to apply the Apache License to your work." in text
    assert len(text) > 10_000  # the full text, not a pointer to it


@pytest.mark.parametrize("command", ["deploy", "rollback", "previous", "prune", "doctor"])
def test_the_registry_url_reaches_every_command_that_reads_a_registry(command: str) -> None:
    image = "ghcr.io/acme/app:v1" if command == "deploy" else "ghcr.io/acme/app"
    extra = {"deploy_command": "./deploy.sh"} if command in ("deploy", "rollback") else {}
    got = argv(command=command, image=image, registry_url="https://ghcr.example", **extra)
    assert got[got.index("--registry-url") + 1] == "https://ghcr.example"
