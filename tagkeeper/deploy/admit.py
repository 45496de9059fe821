"""What may be deployed to an environment at all: one rule for every strategy.

The environment's tag rules (mutable tags refused for prod, :class:`PolicyViolation`,
exit 3), and a tag in the reference, since deploys are recorded by tag. Pure: it runs
before anything is pulled, run or recorded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tagkeeper.errors import PolicyViolation, UsageError
from tagkeeper.gate.rules import policy_for
from tagkeeper.refs import parse_reference

if TYPE_CHECKING:
    from tagkeeper.refs import ImageRef


def admit(image: str, environment: str, *, allow_prerelease: bool = False) -> ImageRef:
    """``image`` (``repo:tag[@digest]``) parsed, once ``environment`` accepts it."""
    verdict = policy_for(environment, allow_prerelease=allow_prerelease).judge_text(image)
    if not verdict.ok:
        raise PolicyViolation(
            f"refusing to deploy {image} to {environment}: {verdict.message}",
            hint="nothing was run or recorded",
        )
    ref = parse_reference(image)
    if ref.tag is None:
        raise UsageError(
            f"{image} has no tag; tagkeeper records deploys by tag",
            hint=f"write it as {ref.repository}:<tag>@{ref.digest}",
        )
    return ref
