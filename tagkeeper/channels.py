"""The grammar of build tags, defined once: ``dev-<sha>`` and ``pr-<number>``.

``tagkeeper tags`` writes them, ``check`` refuses them in prod, retention counts them per
channel and rollback orders dev builds by them; all of these read the tag the same way.

* ``dev-<hex>``: 4 to 64 lowercase hexadecimal digits of the commit (SHA-1 ids have 40,
  SHA-256 ids 64; ``tags --sha-length`` writes 4 to 40 of them).
* ``pr-<digits>``: a pull request number.

Matching is exact and case-sensitive: tagkeeper writes lowercase, so ``dev-BEEF`` is not a
build tag. :func:`looks_like_build_tag` is the loose, case-insensitive form, for refusing
names (such as a moving pointer) that a reader could take for one.
"""

from __future__ import annotations

import re

MIN_SHA_DIGITS = 4
MAX_SHA_DIGITS = 64

SHA_RE = re.compile(rf"[0-9a-f]{{{MIN_SHA_DIGITS},{MAX_SHA_DIGITS}}}")
DEV_TAG_RE = re.compile(rf"dev-{SHA_RE.pattern}")
PR_TAG_RE = re.compile(r"pr-[0-9]+")
_LOOKALIKE_RE = re.compile(rf"(?i){DEV_TAG_RE.pattern}|{PR_TAG_RE.pattern}")


def is_dev_tag(tag: str) -> bool:
    """True for a branch build tag ``dev-<4..64 lowercase hex>``."""
    return DEV_TAG_RE.fullmatch(tag) is not None


def is_pr_tag(tag: str) -> bool:
    """True for a pull request build tag ``pr-<digits>``."""
    return PR_TAG_RE.fullmatch(tag) is not None


def looks_like_build_tag(name: str) -> bool:
    """True when ``name`` is a dev or pr build tag in any letter case."""
    return _LOOKALIKE_RE.fullmatch(name) is not None
