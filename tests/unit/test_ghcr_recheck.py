"""The GHCR re-check by looks (:mod:`tagkeeper.registries.ghcr_recheck`): its window and
its cost, against an in-memory versions list that other jobs change at random.

The property: whatever other jobs do (push, move or add tags, delete versions), every
answer of :meth:`ListingWatch.look_for` began at most ``window`` seconds ago and shows
exactly the tags the version had and every version pushed when it began. So a change made
more than ``window`` seconds before a ``DELETE`` is always seen by the look that covers it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tagkeeper.registries.ghcr_recheck import ListingWatch
from tagkeeper.registries.ghcr_versions import Page, PushWatch

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Server:
    """A versions list, newest first, paged as GitHub pages it (ETags, 304)."""

    now: float = 0.0
    versions: list[dict[str, Any]] = field(default_factory=list)  # newest first
    next_id: int = 1
    requests: int = 0
    pushed_at: dict[str, float] = field(default_factory=dict)

    def push(self, tags: list[str]) -> str:
        for v in self.versions:  # a tag lives on one version: it moves
            v["metadata"]["container"]["tags"] = [
                t for t in v["metadata"]["container"]["tags"] if t not in tags
            ]
        ident = self.next_id
        self.next_id += 1
        created = T0 + timedelta(seconds=ident)
        item = {
            "id": ident,
            "name": f"sha256:{ident:064x}",
            "created_at": created.isoformat(),
            "metadata": {"container": {"tags": list(tags)}},
        }
        self.versions.insert(0, item)
        self.pushed_at[str(ident)] = self.now
        return str(ident)

    def tag(self, ident: str, tag: str) -> None:
        for v in self.versions:
            tags = v["metadata"]["container"]["tags"]
            if str(v["id"]) == ident:
                if tag not in tags:
                    tags.append(tag)
            elif tag in tags:
                tags.remove(tag)

    def delete(self, ident: str) -> None:
        self.versions = [v for v in self.versions if str(v["id"]) != ident]

    def tags_of(self, ident: str) -> frozenset[str] | None:
        for v in self.versions:
            if str(v["id"]) == ident:
                return frozenset(v["metadata"]["container"]["tags"])
        return None

    def fetch(self, page: int, per_page: int, previous: Page | None) -> Page:
        self.requests += 1
        chunk = self.versions[(page - 1) * per_page : page * per_page]
        items = tuple(
            {**v, "metadata": {"container": {"tags": list(v["metadata"]["container"]["tags"])}}}
            for v in chunk
        )
        etag = repr([(v["id"], v["metadata"]["container"]["tags"]) for v in items])
        if previous is not None and previous.etag == etag:
            return previous
        return Page(items, etag, max(1, -(-len(self.versions) // per_page)))


def created(item: Any) -> datetime | None:
    return datetime.fromisoformat(item["created_at"])


def start(server: Server, window: float, per_page: int) -> ListingWatch:
    order = [str(v["id"]) for v in server.versions]
    watch = PushWatch(
        server.fetch,
        frozenset(order),
        created(server.versions[0]) if server.versions else None,
        created_of=created,
        per_page=10,
    )
    return ListingWatch(
        server.fetch,
        order,
        watch=watch,
        tags_of=lambda item: frozenset(item["metadata"]["container"]["tags"]),
        id_of=lambda item: str(item["id"]),
        clock=lambda: server.now,
        window=window,
        per_page=per_page,
    )


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("wait"), st.floats(min_value=0.0, max_value=4.0)),
        st.tuples(st.just("push"), st.integers(0, 30)),
        st.tuples(st.just("tag"), st.integers(0, 10_000)),
        st.tuples(st.just("other-delete"), st.integers(0, 10_000)),
        st.tuples(st.just("delete-next"), st.just(0)),
    ),
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(1, 60),
    window=st.sampled_from([0.0, 1.0, 5.0]),
    per_page=st.sampled_from([5, 10, 100]),
    ops=OPS,
)
def test_every_look_is_within_the_window_and_true_when_it_began(
    size: int, window: float, per_page: int, ops: list[tuple[str, Any]]
) -> None:
    server = Server()
    for i in range(size):
        server.push([f"dev-{i:07x}"])
    watch = start(server, window, per_page)
    planned = [str(v["id"]) for v in server.versions]  # delete order: newest first
    listed = set(planned)
    # the true state at each time a look began: version id -> tags, and what was pushed
    history: dict[float, tuple[dict[str, frozenset[str]], set[str]]] = {}

    def record() -> None:
        state = {
            str(v["id"]): frozenset(v["metadata"]["container"]["tags"]) for v in server.versions
        }
        pushed = {i for i in state if i not in listed}
        history[server.now] = (state, pushed)

    for op, arg in ops:
        server.now += 0.001  # every change at a time of its own
        if op == "wait":
            server.now += arg
        elif op == "push":
            server.push([f"dev-{arg:07x}"])
        elif op == "tag" and server.versions:
            victim = server.versions[arg % len(server.versions)]
            server.tag(str(victim["id"]), f"t{arg % 7}")
        elif op == "other-delete" and server.versions:
            server.delete(str(server.versions[arg % len(server.versions)]["id"]))
        elif op == "delete-next" and planned:
            key = planned.pop(0)
            record()  # a look that begins now sees this state
            look = watch.look_for(key)
            if look is None:  # not where its place says: the caller asks about it alone
                continue
            assert server.now - look.began < window or look.began == server.now
            state, pushed = history[look.began]
            assert look.tags[key] == state[key]
            assert {str(item["id"]) for item in look.pushed} >= pushed
            server.delete(key)
            watch.forget(key)


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 300),
    pushes=st.lists(st.integers(0, 300), max_size=20),
    rate=st.floats(min_value=0.5, max_value=4.0),
)
def test_without_other_deletes_every_version_is_where_its_place_says(
    size: int, pushes: list[int], rate: float
) -> None:
    """Only this run deletes (and others push): no version is asked about alone, and the
    looks cost about one page read per window."""
    server = Server()
    for i in range(size):
        server.push([f"dev-{i:07x}"])
    watch = start(server, 5.0, 100)
    planned = [str(v["id"]) for v in server.versions]
    before = server.requests
    for n, key in enumerate(planned):
        if n in pushes:
            server.push([f"new-{n}"])
        server.now += 1.0 / rate
        look = watch.look_for(key)
        assert look is not None
        server.delete(key)
        watch.forget(key)
    seconds = len(planned) / rate
    windows = seconds / 5.0 + 1
    # a look per window, plus a look where a page ends or a push fills page 1
    assert server.requests - before <= 2 * windows + len(pushes) + len(planned) / 100 + 1


def test_a_change_older_than_the_window_is_seen_and_a_newer_one_is_not_yet() -> None:
    server = Server()
    for i in range(5):
        server.push([f"dev-{i:07x}"])
    watch = start(server, 5.0, 100)
    newest_first = [str(v["id"]) for v in server.versions]
    first = watch.look_for(newest_first[0])
    assert first is not None
    assert server.requests == 1
    server.now += 1.0
    server.tag(newest_first[1], "stable")  # within the window: the look is reused
    look = watch.look_for(newest_first[1])
    assert look is first
    assert look.tags[newest_first[1]] == frozenset({"dev-0000003"})
    server.now += 4.5  # now the look began 5.5 s ago: renewed
    look = watch.look_for(newest_first[1])
    assert look is not None
    assert look is not first
    assert look.tags[newest_first[1]] == frozenset({"dev-0000003", "stable"})
    assert server.requests == 2
    assert watch.covered(look) == 0.0


def test_a_full_page_of_pushes_asks_the_push_watch_too() -> None:
    server = Server()
    for i in range(3):
        server.push([f"dev-{i:07x}"])
    watch = start(server, 0.0, 5)
    target = str(server.versions[0]["id"])
    for i in range(7):  # seven pushes: page 1 (5 per page) is all new
        server.push([f"ci-{i}"])
    look = watch.look_for(target)
    assert look is not None
    assert len(look.pushed) == 7  # the push watch read on past page 1
