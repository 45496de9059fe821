"""The re-check before each GHCR delete, at about one request per few seconds.

Before a version is deleted, tagkeeper makes sure of two things (see
:meth:`tagkeeper.registries.ghcr.GhcrBackend.delete`): the version still carries the tags
the plan saw (a version whose tags changed is skipped), and no version pushed since the
listing reaches it (a push that reuses a manifest the plan deletes as garbage stops that
delete). Asking GitHub about each version (``GET .../versions/{id}``) and about new pushes
before each ``DELETE`` costs two requests per delete, and a workflow's ``GITHUB_TOKEN`` has
1,000 requests an hour.

:class:`ListingWatch` answers both from *looks*: one read of the page of the versions
list (100 per page, newest first) that holds the version asked about. One answer shows
the tags of up to 100 versions at once, and deletes go newest first, so the next deletes
sit on the same page (after the newest kept versions, page 1 holds them). Page 1 also
shows what was pushed since the listing (new versions come first); when the page read is
another one, or page 1 is all new, the newest versions are read as well
(:class:`~tagkeeper.registries.ghcr_versions.PushWatch`, a ``304`` when nothing was
pushed). A look is reused for at most ``window`` seconds.

**The window.** A ``DELETE`` is sent at most ``window`` seconds (default
:data:`RECHECK_WINDOW`, 5 s) after the look that last saw the version's tags and the
pushes began: the time is taken *before* the look's first request, so the stated window
bounds how old what it saw can be. A tag move or a push later than that is not seen
before that ``DELETE``; every later ``DELETE`` sees it once its look is renewed. With a
window of 0 every ``DELETE`` gets a look of its own (one or two requests).

A version that is not on the page where its place in the listing says it should be
(another job deleted or pushed many versions meanwhile) is asked about on its own, as
before (``GET`` of the version). Only the cost depends on the places; what is checked
never does.

Nothing here sends a request itself: the backend passes the functions that do. Pure
apart from those and the clock; thread-safe.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from tagkeeper.registries.ghcr_versions import Fetch, Page, PushWatch

__all__ = ["RECHECK_PER_PAGE", "RECHECK_WINDOW", "ListingWatch", "Look"]

RECHECK_WINDOW = 5.0  # seconds between a look and the last DELETE it covers, at most
RECHECK_PER_PAGE = 100  # GitHub's largest page: one look covers up to 100 versions


@dataclass(frozen=True)
class Look:
    """What one look saw: when it began (``clock()`` before its first request), the tags
    of the versions on the page it read (version id -> tags), and the raw items of the
    versions pushed since the listing."""

    began: float
    tags: Mapping[str, frozenset[str]]
    pushed: tuple[Any, ...]


class _Gone:
    """Counts, per place in the listing, the versions deleted since (a Fenwick tree)."""

    def __init__(self, size: int) -> None:
        self._tree = [0] * (size + 1)

    def add(self, index: int) -> None:
        i = index + 1
        while i < len(self._tree):
            self._tree[i] += 1
            i += i & -i

    def before(self, index: int) -> int:
        total, i = 0, index
        while i > 0:
            total += self._tree[i]
            i -= i & -i
        return total


class ListingWatch:
    """Looks at the page of the versions list that holds a version, reused for at most
    ``window`` seconds (see the module docstring).

    ``order``: the version ids of the listing, newest first (its places). ``fetch``
    reads a page (conditionally on an earlier answer). ``tags_of`` and ``id_of`` read a
    raw item; ``watch`` finds pushes beyond page 1.
    """

    def __init__(
        self,
        fetch: Fetch,
        order: Sequence[str],
        *,
        watch: PushWatch,
        tags_of: Callable[[Any], frozenset[str]],
        id_of: Callable[[Any], str],
        clock: Callable[[], float],
        window: float = RECHECK_WINDOW,
        per_page: int = RECHECK_PER_PAGE,
    ) -> None:
        self._fetch = fetch
        self._place = {key: i for i, key in enumerate(order)}
        self._gone = _Gone(len(order))
        self._forgotten: set[str] = set()
        self._watch = watch
        self._tags_of = tags_of
        self._id_of = id_of
        self._clock = clock
        self.window = max(0.0, window)
        self._per_page = per_page
        self._pages: dict[int, Page] = {}
        self._seen: dict[str, Look] = {}  # version id -> the latest look that showed it
        self._pushed = 0  # versions pushed since the listing, as the latest look saw
        self._lock = threading.Lock()
        self.looks = 0
        self.widest = 0.0  # the longest time from a look to a DELETE it covered

    def forget(self, key: str) -> None:
        """``key`` is gone (deleted by this run, or found gone): later places move up."""
        with self._lock:
            place = self._place.get(key)
            if place is not None and key not in self._forgotten:
                self._forgotten.add(key)
                self._gone.add(place)
            self._seen.pop(key, None)

    def look_for(self, key: str) -> Look | None:
        """A look that shows ``key`` and began at most ``window`` seconds ago; ``None``
        when the page where ``key`` should be does not show it (ask about it alone)."""
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and self._clock() - seen.began < self.window:
                return seen
            page = self._page_of(key)
            if page is None:
                return None
            look = self._look(key, page)
            if look is None:  # pushes seen by this look may have moved it to another page
                again = self._page_of(key)
                if again is not None and again != page:
                    look = self._look(key, again)
            return look

    def covered(self, look: Look) -> float:
        """Record that a ``DELETE`` covered by ``look`` is being sent now; its age."""
        age = self._clock() - look.began
        with self._lock:
            self.widest = max(self.widest, age)
        return age

    def _page_of(self, key: str) -> int | None:
        """The page where ``key`` should be: its place, less the versions deleted above
        it, plus the versions pushed since the listing (they come first)."""
        place = self._place.get(key)
        if place is None or key in self._forgotten:
            return None
        expected = place - self._gone.before(place) + self._pushed
        return expected // self._per_page + 1

    def _look(self, key: str, page: int) -> Look | None:
        began = self._clock()
        answer = self._fetch(page, self._per_page, self._pages.get(page))
        self._pages[page] = answer
        self.looks += 1
        items = answer.items
        known = self._place
        if page == 1 and not self._overflows(items):
            pushed = [item for item in items if self._id_of(item) not in known]
        else:
            pushed = self._watch.new_versions()
        self._pushed = len(pushed)
        tags: dict[str, frozenset[str]] = {}
        for item in items:
            ident = self._id_of(item)
            if ident in known and ident not in self._forgotten:
                tags[ident] = self._tags_of(item)
        look = Look(began, tags, tuple(pushed))
        for ident in tags:
            self._seen[ident] = look
        return look if key in tags else None

    def _overflows(self, items: Sequence[Any]) -> bool:
        """Whether page 1 may not show every push: it is full of versions the listing did
        not have (pushes come first, so one it had means every push is above it)."""
        if len(items) < self._per_page:
            return False
        return not any(self._id_of(item) in self._place for item in items)
