"""Reading a GHCR package's versions list safely while other jobs push and delete.

GitHub's package versions API pages by offset (``page``/``per_page``, newest first). A
list read in several requests is not a snapshot:

- a version deleted (by another job) between the reads of page *k* and page *k+1*
  shifts every later version one place up, and the first version of page *k+1* is never
  seen; pages read in parallel can also skip one when a push shifts them down. A kept
  index that is never seen leaves its platform images looking like garbage.
- a version pushed after the listing is not in the plan at all: if it lists a manifest
  the plan deletes as garbage (buildx reuses unchanged platform manifests), the delete
  breaks it.

:func:`read_consistently` lists until two consecutive listings agree, version id for
version id (a later listing may only add new versions in front); a package that keeps
changing is an error, and nothing is planned. A listing that fits in one page is one
answer, a snapshot, and is read once. The second listing is sent as conditional requests
(``If-None-Match`` with the first listing's ``ETag``): unchanged pages answer
``304 Not Modified``, which GitHub does not count against the primary rate limit.

:class:`PushWatch` finds the versions pushed since the listing, for the re-check before
each delete (see :meth:`tagkeeper.registries.ghcr.GhcrBackend.delete`): it reads the
newest versions, conditionally, until it reaches versions older than the newest one the
listing had. When nothing was pushed the answer is a ``304``.

The guarantee the re-check gives, and that any cheaper mechanism must keep: no
``DELETE`` is sent for a manifest that a version pushed before the re-check's look
lists (directly or through other indexes). The window is what lies between that look and
GitHub handling the ``DELETE``: today one request, because the look is taken after the
pacing wait, right before each ``DELETE``. A cheaper mechanism (one look for several
deletes) is a different :class:`PushWatch` policy, and it must state its window the same
way: the time from its last look to the ``DELETE`` it covers.

Nothing here sends a request itself: the backend passes a ``fetch`` function.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tagkeeper.errors import RegistryError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime


LISTINGS = 4  # listings read at most before a package that keeps changing is an error
WATCH_PER_PAGE = 10  # the newest versions a re-check reads per page


@dataclass(frozen=True)
class Page:
    """One answer of the versions list: its raw items, ``ETag`` and last page number."""

    items: tuple[Any, ...]
    etag: str | None = None
    last: int = 1

    @property
    def ids(self) -> list[str]:
        return [_item_id(item) for item in self.items]


Fetch = Callable[[int, int, "Page | None"], Page]
"""``fetch(page, per_page, previous)``: that page of the list. ``previous`` is an earlier
answer for the same page and size; when the server says it is unchanged (304), ``fetch``
returns it as it is."""


def _item_id(item: Any) -> str:
    return str(item.get("id")) if isinstance(item, dict) else repr(item)


def listings_agree(first: Sequence[Page], second: Sequence[Page]) -> bool:
    """Whether ``second`` confirms ``first``: no version listed twice in either, and
    ``second`` is ``first`` with, at most, new versions in front (pushed meanwhile).

    A version skipped by ``first`` because the pages shifted under it shows up in
    ``second`` at its place, and a version deleted meanwhile is missing from ``second``:
    either way they disagree.
    """
    a = [i for page in first for i in page.ids]
    b = [i for page in second for i in page.ids]
    if len(set(a)) != len(a) or len(set(b)) != len(b):
        return False
    new = len(b) - len(a)
    return new >= 0 and b[new:] == a and not set(b[:new]) & set(a)


def read_consistently(
    read: Callable[[Sequence[Page] | None], list[Page]],
    *,
    display: str,
    listings: int = LISTINGS,
) -> list[Page]:
    """List with ``read(previous)`` until two consecutive listings agree; return the later.

    ``read(None)`` lists from scratch; ``read(previous)`` may send conditional requests
    against ``previous``. Raises :class:`RegistryError` (nothing planned, nothing deleted)
    when ``listings`` listings in a row disagree.
    """
    previous = read(None)
    if len(previous) <= 1:
        return previous  # one answer: a snapshot
    for _ in range(listings - 1):
        current = read(previous)
        if listings_agree(previous, current):
            return current
        previous = current
    raise RegistryError(
        f"{display}: the package's versions changed during each of {listings} listings "
        "(another job is pushing or deleting versions); nothing was planned or deleted",
        hint="rerun when that job is done; a listing that shifts while it is read could "
        "hide an image that is kept",
    )


class PushWatch:
    """The versions pushed since a listing, found by reading the newest versions.

    ``known`` are the version ids of the listing, ``newest`` the newest push time it
    had: a version pushed later is at least as new, so reading stops at the first page
    that reaches older versions. Page answers are kept and sent back as
    ``If-None-Match``: when nothing changed the check costs one ``304``. Thread-safe.
    """

    def __init__(
        self,
        fetch: Fetch,
        known: frozenset[str],
        newest: datetime | None,
        *,
        created_of: Callable[[Any], datetime | None],
        per_page: int = WATCH_PER_PAGE,
    ) -> None:
        self._fetch = fetch
        self._known = known
        self._newest = newest
        self._created_of = created_of
        self._per_page = per_page
        self._pages: dict[int, Page] = {}
        self._lock = threading.Lock()
        self.looks = 0

    def new_versions(self) -> list[Any]:
        """The raw items of every version the listing did not have, newest first."""
        with self._lock:
            self.looks += 1
            found: list[Any] = []
            page = 1
            while True:
                answer = self._fetch(page, self._per_page, self._pages.get(page))
                self._pages[page] = answer
                found.extend(item for item in answer.items if _item_id(item) not in self._known)
                if len(answer.items) < self._per_page or self._reaches_older(answer):
                    return found
                page += 1

    def _reaches_older(self, answer: Page) -> bool:
        if self._newest is None:  # the listing was empty: everything is new
            return False
        created = self._created_of(answer.items[-1])
        return created is not None and created < self._newest
