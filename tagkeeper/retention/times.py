"""Which creation times can change a retention decision (pure).

Reading an image's creation time can cost registry requests (a config blob per image on
a generic OCI registry). Under a given :class:`~tagkeeper.retention.planner.Policy` the time of
some versions cannot change their fate, and backends may skip reading it:

- ``dev-*`` and ``pr-*`` images are ranked by time: their time is always needed;
- with a grace period (or ``older_than``), every other version's age decides whether the
  grace period keeps it, unless something keeps it regardless of age: a protect glob or
  regex, or a tag that matches no channel while unmatched tags are kept;
- without a grace period (``min_age == 0``), releases and prereleases (ranked by SemVer),
  unmatched tags and cosign / referrers-schema tags (which follow their subject) need no
  time.

The answer errs towards reading: a time read in vain costs a request, never an image.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from tagkeeper.retention.planner import Channel, Policy, classify, referrer_subject

if TYPE_CHECKING:
    from collections.abc import Callable

_TIMED = frozenset({Channel.DEV, Channel.PR})


def time_needed(policy: Policy) -> Callable[[frozenset[str]], bool]:
    """A predicate on a version's tags: whether its creation time can matter."""
    # --older-than is a second age condition: like a grace period, age can keep anything
    grace = policy.min_age > timedelta(0) or bool(policy.older_than)
    keep_unmatched = policy.unmatched == "keep"
    scheme = policy.version_scheme

    def needed(tags: frozenset[str]) -> bool:
        if not tags:
            return True
        channels = {classify(tag, scheme) for tag in tags}
        if channels & _TIMED:
            return True
        if not grace:
            return False
        for tag in tags:
            if policy.protects(tag):
                return False
            if keep_unmatched and classify(tag, scheme) is None and referrer_subject(tag) is None:
                return False
        return True

    return needed
