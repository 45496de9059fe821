"""Listing GHCR versions under concurrent pushes and deletes (pure parts, no HTTP).

A fake versions list pages by offset exactly as GitHub's does, newest first; tests
change it between page reads, as another job would.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tagkeeper.errors import RegistryError
from tagkeeper.registries.ghcr_versions import (
    LISTINGS,
    Page,
    PushWatch,
    listings_agree,
    read_consistently,
)

if TYPE_CHECKING:
    import random
    from collections.abc import Sequence

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def item(n: int, minute: int | None = None) -> dict[str, Any]:
    return {"id": n, "created_at": (T0 + timedelta(minutes=n if minute is None else minute))}


def created_of(raw: Any) -> datetime | None:
    when = raw.get("created_at")
    return when if isinstance(when, datetime) else None


class OffsetList:
    """A versions list paged by offset, newest first; ``between`` runs before each read."""

    def __init__(self, ids: Sequence[int]) -> None:
        self.items = [item(n) for n in sorted(ids, reverse=True)]
        self.reads: list[tuple[int, int, bool]] = []  # (page, per_page, conditional)
        self.between: list[Any] = []  # callables run before the next reads, one each

    def page(self, page: int, per_page: int, previous: Page | None) -> Page:
        if self.between:
            self.between.pop(0)()
        self.reads.append((page, per_page, previous is not None))
        chunk = tuple(self.items[(page - 1) * per_page : page * per_page])
        last = max(1, -(-len(self.items) // per_page))
        etag = repr([i["id"] for i in chunk])
        if previous is not None and previous.etag == etag:
            return previous  # 304
        return Page(chunk, etag, last)

    def listing(self, per_page: int, rnd: random.Random | None = None) -> Any:
        """A listing as the backend reads it: page 1, then the others in any order (in
        parallel) when ``rnd`` is given."""

        def read(previous: Sequence[Page] | None) -> list[Page]:
            before = list(previous or ())
            first = self.page(1, per_page, before[0] if before else None)
            rest = list(range(2, first.last + 1))
            if rnd is not None:
                rnd.shuffle(rest)
            got = {1: first}
            for n in rest:
                got[n] = self.page(n, per_page, before[n - 1] if n <= len(before) else None)
            return [got[n] for n in sorted(got)]

        return read

    def delete(self, n: int) -> None:
        self.items = [i for i in self.items if i["id"] != n]

    def push(self, n: int) -> None:
        self.items.insert(0, item(n))


def ids(pages: Sequence[Page]) -> list[int]:
    return [int(i) for page in pages for i in page.ids]


def pages_of(*groups: Sequence[int]) -> list[Page]:
    return [Page(tuple(item(n) for n in group)) for group in groups]


def test_listings_agree_only_when_nothing_was_skipped_or_deleted() -> None:
    a = pages_of([9, 8, 7], [6, 5])
    assert listings_agree(a, pages_of([9, 8, 7], [6, 5]))
    assert listings_agree(a, pages_of([11, 10, 9], [8, 7, 6], [5]))  # pushes in front
    assert not listings_agree(a, pages_of([9, 8, 7], [6]))  # 5 was deleted meanwhile
    assert not listings_agree(pages_of([9, 8, 7], [5]), pages_of([9, 8, 7], [6, 5]))  # skipped
    assert not listings_agree(pages_of([9, 8, 7], [7, 6]), pages_of([9, 8, 7], [7, 6]))  # twice
    assert not listings_agree(a, pages_of([9, 8, 10], [7, 6, 5]))  # new, but not in front


def test_one_page_is_a_snapshot_and_is_read_once() -> None:
    versions = OffsetList(range(1, 51))
    pages = read_consistently(versions.listing(100), display="app")
    assert ids(pages) == list(range(50, 0, -1))
    assert versions.reads == [(1, 100, False)]


def test_a_delete_between_page_reads_is_caught_and_listed_again() -> None:
    versions = OffsetList(range(1, 26))  # 25 versions, pages of 10
    # another job deletes #20 (on page 1) after page 1 was read: page 2 shifts, and #15,
    # the first version of page 2, is never seen by that listing
    versions.between = [lambda: None, lambda: versions.delete(20)]
    pages = read_consistently(versions.listing(10), display="app")
    assert ids(pages) == [n for n in range(25, 0, -1) if n != 20]
    assert 15 in ids(pages)
    # first listing (3 reads), the one that disagreed (3), the one that confirmed it (3)
    assert len(versions.reads) == 9
    assert [c for _p, _n, c in versions.reads] == [False] * 3 + [True] * 6


def test_a_push_between_page_reads_does_not_hide_anything() -> None:
    versions = OffsetList(range(1, 26))
    versions.between = [lambda: None, lambda: versions.push(100)]
    pages = read_consistently(versions.listing(10), display="app")
    assert sorted(ids(pages)) == [*range(1, 26), 100]


def test_a_package_that_keeps_changing_is_an_error() -> None:
    versions = OffsetList(range(1, 101))
    victims = iter(range(100, 0, -1))

    def delete_one() -> None:
        versions.delete(next(victims))  # another prune, deleting all the time

    def nothing() -> None:
        return None

    # during every listing, after its first page: each listing shifts under itself
    versions.between = [delete_one if k % 10 == 1 else nothing for k in range(LISTINGS * 10)]
    with pytest.raises(RegistryError, match=f"changed during each of {LISTINGS} listings"):
        read_consistently(versions.listing(10), display="ghcr.io/acme/app")


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 60),
    st.integers(1, 12),
    st.lists(st.tuples(st.integers(0, 40), st.sampled_from(["push", "delete"])), max_size=6),
    st.randoms(use_true_random=False),
)
def test_whatever_changes_meanwhile_an_accepted_listing_misses_no_version_that_stayed(
    count: int, per_page: int, events: list[tuple[int, str]], rnd: random.Random
) -> None:
    versions = OffsetList(range(1, count + 1))
    at: dict[int, list[str]] = {}
    for when, what in events:
        at.setdefault(when, []).append(what)
    new_ids = iter(range(1000, 2000))
    removed: set[int] = set()

    def event(whats: list[str]) -> Any:
        def run() -> None:
            for what in whats:
                if what == "push":
                    versions.push(next(new_ids))
                elif versions.items:
                    victim = versions.items[len(versions.items) // 2]["id"]
                    removed.add(victim)
                    versions.delete(victim)

        return run

    versions.between = [event(at.get(k, [])) for k in range(41)]
    try:
        pages = read_consistently(versions.listing(per_page, rnd), display="app")
    except RegistryError:
        return  # failing closed is always allowed
    seen = set(ids(pages))
    stayed = set(range(1, count + 1)) - removed
    assert stayed <= seen
    assert len(ids(pages)) == len(seen)


def test_the_watch_finds_pushes_and_costs_a_304_when_there_are_none() -> None:
    versions = OffsetList(range(1, 31))
    watch = PushWatch(
        versions.page, frozenset(str(n) for n in range(1, 31)), T0 + timedelta(minutes=30),
        created_of=created_of,
    )
    assert watch.new_versions() == []
    assert watch.new_versions() == []
    assert versions.reads == [(1, 10, False), (1, 10, True)]  # the second: conditional
    versions.push(99)
    (found,) = watch.new_versions()
    assert found["id"] == 99


def test_the_watch_reads_on_while_a_page_holds_only_versions_as_new_as_the_listing() -> None:
    versions = OffsetList(range(1, 31))
    # 12 versions pushed in the same minute as the newest listed one (one big push)
    for n in range(40, 52):
        versions.items.insert(0, item(n, minute=30))
    watch = PushWatch(
        versions.page, frozenset(str(n) for n in range(1, 31)), T0 + timedelta(minutes=30),
        created_of=created_of,
    )
    found = {i["id"] for i in watch.new_versions()}
    assert found == set(range(40, 52))
    assert [p for p, _n, _c in versions.reads] == [1, 2]
