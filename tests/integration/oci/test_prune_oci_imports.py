"""An OCI registry prune never loads the Docker SDK: only ``--local`` needs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.emulators import images as im

if TYPE_CHECKING:
    from tests.integration.oci.registry import Pusher, Registry

pytestmark = pytest.mark.integration


def test_an_oci_dry_run_never_imports_the_docker_sdk(
    registry: Registry, pusher: Pusher, tmp_path: Path
) -> None:
    for month in (1, 2):
        built = im.image(created=datetime(2024, month, 1, tzinfo=UTC), label=f"m{month}")
        pusher.push("team/app", built, f"v1.{month}.0")
    image = registry.image("team/app")
    script = (
        "import sys\n"
        "from tagkeeper.cli import main\n"
        f"code = main(['prune', '--image', {image!r}, '--keep', '1', '--min-age', '0',\n"
        "             '--dry-run', '--format', 'json'])\n"
        "loaded = [m for m in ('docker', 'tagkeeper.registries.local') if m in sys.modules]\n"
        "sys.stderr.write('LOADED=' + ','.join(loaded) + '\\n')\n"
        "sys.exit(code)\n"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("TAGKEEPER_", "DOCKER_"))}
    environ["PYTHONPATH"] = str(Path(__file__).parents[3])
    environ["HOME"] = str(tmp_path)  # no Docker config.json credentials
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=environ,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads(result.stdout)["images"]
    assert [d["tags"] for d in entry["delete"]] == [["v1.1.0"]]
    assert "LOADED=\n" in result.stderr
