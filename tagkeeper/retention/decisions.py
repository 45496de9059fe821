"""A retention plan as values: :class:`Decision` and :class:`Plan`, how the planner builds
decisions fast, and the delete order.

The delete order is part of the plan's safety: within each group the newest goes first,
and at equal push times a parent (an index) before its children
(:func:`newest_first_versions`). Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from functools import cached_property
from itertools import groupby, repeat
from operator import attrgetter
from typing import TYPE_CHECKING

from tagkeeper.inventory import INDEX_TYPES, Version

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "Decision",
    "Plan",
    "make_decision",
    "make_decisions",
    "newest_first",
    "newest_first_versions",
]


@dataclass(frozen=True, slots=True)
class Decision:
    """The fate of one version, with the rule that decided it and a reason for people."""

    version: Version
    keep: bool
    rule: str
    reason: str

    def to_json(self) -> dict[str, object]:
        v = self.version
        out: dict[str, object] = {
            "digest": v.digest,
            "tags": sorted(v.tags),
            "created": v.created.isoformat(),
            "rule": self.rule,
            "reason": self.reason,
        }
        if v.key is not None:
            out["key"] = v.key
        return out


@dataclass(frozen=True)
class Plan:
    """Every version with keep or delete. ``decisions`` holds the kept versions (newest
    first) followed by the deleted ones in delete order."""

    decisions: tuple[Decision, ...]
    warnings: tuple[str, ...] = ()
    unreadable: tuple[str, ...] = ()
    stats: Mapping[str, int] = field(default_factory=dict, compare=False)

    @cached_property
    def keep(self) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if d.keep)

    @cached_property
    def delete(self) -> tuple[Decision, ...]:
        """In delete order: tagged first (referrer tags before their subjects), newest
        first, then untagged, newest first (an index is pushed after its children; at
        equal push times a version the listing says is an index goes first)."""
        return tuple(d for d in self.decisions if not d.keep)

    def to_json(self) -> dict[str, object]:
        return {
            "keep": [d.to_json() for d in self.keep],
            "delete": [d.to_json() for d in self.delete],
            "warnings": list(self.warnings),
            "unreadable": list(self.unreadable),
        }


def make_decision(version: Version, keep: bool, rule: str, reason: str) -> Decision:
    """``Decision(...)`` without the frozen ``__setattr__`` detour (the hot path: one per
    version). The result is an ordinary, frozen :class:`Decision`."""
    obj = _new(Decision)
    _set_version(obj, version)
    _set_keep(obj, keep)
    _set_rule(obj, rule)
    _set_reason(obj, reason)
    return obj


def make_decisions(versions: list[Version], keep: bool, rule: str, reason: str) -> list[Decision]:
    """Many decisions with the same verdict, built by C-level maps (no Python frame per
    version): the bulk of a large package is untagged garbage."""
    count = len(versions)
    objs: list[Decision] = list(map(_new, repeat(Decision, count)))
    for setter, values in (
        (_set_version, versions),
        (_set_keep, repeat(keep, count)),
        (_set_rule, repeat(rule, count)),
        (_set_reason, repeat(reason, count)),
    ):
        deque(map(setter, objs, values), maxlen=0)
    return objs


_new = object.__new__
_set_version = Decision.__dict__["version"].__set__
_set_keep = Decision.__dict__["keep"].__set__
_set_rule = Decision.__dict__["rule"].__set__
_set_reason = Decision.__dict__["reason"].__set__
_CREATED = attrgetter("created")


def _parents_first(v: Version) -> tuple[bool, int, str]:
    """Order within equal push times: known indexes first, then the later push (when the
    backend knows the push order), then by digest."""
    return v.media_type not in INDEX_TYPES, -(v.sequence or 0), v.digest


def newest_first_versions(versions: list[Version]) -> list[Version]:
    """Newest first; among equal push times, indexes first, then by digest.

    This is also the delete order of each group, so it must put a parent before its
    children. A registry accepts an index only once the manifests it lists are there, so
    an index is never older than its children; it can be exactly as old (an OCI
    registry dates an index by its newest platform image, GHCR dates versions to the
    second), and then the media type decides: an index (or manifest list) goes first.
    When the listing does not say the media type (GHCR's does not), the push order
    decides where the backend knows it (GHCR's version ids grow with every push, and a
    registry accepts an index only after its children). Residual risk: with neither, equal
    times fall back to the digest, and a child can come before its index; the planner
    reads manifests only of the images it keeps, so it knows no better about the ones it
    deletes. The executor then re-plans around any index whose delete does not go through
    (see :mod:`tagkeeper.retention.executor`), but a child deleted before its index was
    refused stays deleted.

    Sorting by time alone is cheap on a listing that is already about newest first; only
    the runs of equal times need a second sort.
    """
    versions.sort(key=_CREATED, reverse=True)
    out: list[Version] = []
    for _when, run in groupby(versions, key=_CREATED):
        same = list(run)
        if len(same) > 1:
            same.sort(key=_parents_first)
        out += same
    return out


def newest_first(decisions: list[Decision]) -> list[Decision]:
    decisions.sort(key=lambda d: d.version.digest)
    decisions.sort(key=lambda d: d.version.created, reverse=True)
    return decisions
