"""``verify --image``: check an image in a throw-away container that is always removed.

:func:`verify_image` starts ``tagkeeper-verify-<random>`` from the image (pulled only
when it is not on the engine, unless told otherwise), runs the health and smoke checks
against it, and removes it whatever happens: a pass, a failure, an error, or Ctrl-C and
SIGTERM (which the CLI turns into ``KeyboardInterrupt``). Only SIGKILL (or a crash of the
machine) can leave one behind; the container names its owner (host, pid and the
process's start time in :data:`~tagkeeper.deploy.containers.LABEL_OWNER`), and the next
run of ``verify --image`` or ``deploy`` on this host removes those whose owner is gone
(:func:`reap`).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tagkeeper.deploy.checks import Masker
from tagkeeper.deploy.containers import (
    LABEL_IMAGE,
    LABEL_OWNER,
    LABEL_ROLE,
    Role,
    RunOptions,
    owner_gone,
    owner_label,
)
from tagkeeper.deploy.verify import HealthPolicy, VerifyReport, verify
from tagkeeper.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    import httpx

    from tagkeeper.deploy.checks import Request
    from tagkeeper.deploy.containers import ContainerRuntime

PULL_CHOICES = ("missing", "always", "never")


@dataclass(frozen=True, slots=True)
class Throwaway:
    """How the throw-away container runs. ``port``: where the app listens (and, with
    bridge networking, where it is published on ``127.0.0.1``)."""

    port: int = 8520
    network: str = "bridge"
    port_env: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    volumes: tuple[str, ...] = ()
    command: tuple[str, ...] | None = None
    user: str | None = None
    pull: str = "missing"


def reap(runtime: ContainerRuntime) -> list[str]:
    """Remove throw-away containers whose owning process on this host is gone."""
    removed: list[str] = []
    for state in runtime.list({LABEL_ROLE: str(Role.VERIFY)}):
        owner = state.labels.get(LABEL_OWNER, "")
        if owner_gone(owner):
            runtime.remove(state.id)
            removed.append(state.name)
    return removed


def _image(runtime: ContainerRuntime, image: str, pull: str) -> str:
    """The image to run, pulled when ``pull`` says so; its id."""
    if pull not in PULL_CHOICES:
        raise UsageError(f"--pull {pull!r}", hint=f"use one of: {', '.join(PULL_CHOICES)}")
    local = runtime.local_image(image) if pull != "always" else None
    if local is not None:
        return local.image_id
    if pull == "never":
        raise UsageError(
            f"{image} is not on this Docker engine",
            hint="build or pull it first, or drop --pull never",
        )
    return runtime.pull(image).image_id


def verify_image(
    runtime: ContainerRuntime,
    image: str,
    options: Throwaway,
    *,
    policy: HealthPolicy,
    smoke: Sequence[Request] = (),
    client: httpx.Client,
    masker: Masker | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[str], None] | None = None,
    log_lines: int = 30,
) -> tuple[VerifyReport, list[str]]:
    """Run ``image`` in a throw-away container and check it; the report and the names of
    leftovers of earlier runs that were removed first."""
    reaped = reap(runtime)
    image_id = _image(runtime, image, options.pull)
    name = f"tagkeeper-verify-{secrets.token_hex(5)}"
    env = dict(options.env)
    if options.port_env is not None:
        env[options.port_env] = str(options.port)
    run = RunOptions(
        name=name,
        image=image_id,
        port=options.port,
        network=options.network,
        env=env,
        volumes=options.volumes,
        restart="no",
        user=options.user,
        labels={LABEL_ROLE: str(Role.VERIFY), LABEL_OWNER: owner_label(), LABEL_IMAGE: image},
        command=options.command,
    )
    try:
        runtime.create(run)
        runtime.start(name)
        first = runtime.inspect(name)
        restarts = first.restart_count if first is not None else 0

        def alive() -> str | None:
            state = runtime.inspect(name)
            return "was removed" if state is None else state.gone_reason(restarts)

        report = verify(
            f"http://127.0.0.1:{options.port}",
            policy,
            smoke,
            client=client,
            clock=clock,
            sleep=sleep,
            alive=alive,
            log_tail=lambda: runtime.logs(name, log_lines),
            masker=masker or Masker(),
            progress=progress,
            container=name,
        )
    finally:
        runtime.remove(name)
    return report, reaped
