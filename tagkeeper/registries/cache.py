"""The one manifest cache of a run: in memory (:class:`Memo`) and on disk
(:class:`ManifestCache`, ``--manifest-cache``).

:class:`~tagkeeper.registries.distribution.Registry` keeps every manifest it read (or
failed to read) in a :class:`Memo` for the run, so a re-plan during the apply reads
nothing twice; with ``--manifest-cache DIR`` the bytes also go to disk by digest and are
verified against it whenever they are read back.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Generic, TypeVar

from tagkeeper.inventory import ManifestUnreadable
from tagkeeper.refs import SHA256_DIGEST_RE
from tagkeeper.registries.manifests import digest_matches

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

K = TypeVar("K")
T = TypeVar("T")


class Memo(Generic[K, T]):
    """Compute each key at most once, even across threads (later callers wait).

    Failures are remembered as answers: a manifest that could not be read is not read
    again in the same run, and every caller sees the same reason.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._futures: dict[K, Future[T]] = {}

    def get(self, key: K, compute: Callable[[], T]) -> T:
        with self._lock:
            future = self._futures.get(key)
            owner = future is None
            if future is None:
                future = Future()
                self._futures[key] = future
        if owner:
            try:
                future.set_result(compute())
            except BaseException as exc:
                future.set_exception(exc)
        try:
            return future.result()
        except ManifestUnreadable as exc:  # a fresh copy: callers never share a traceback
            raise type(exc)(exc.digest, exc.reason) from None

    def peek(self, key: K) -> T | None:
        """The answer for ``key`` when it is known and not a failure."""
        with self._lock:
            future = self._futures.get(key)
        if future is None or not future.done() or future.exception() is not None:
            return None
        return future.result()

    def fail(self, key: K, error: BaseException) -> None:
        """Answer ``error`` for ``key`` from now on, whatever was known before (an answer
        found to be untrustworthy after it was read)."""
        future: Future[T] = Future()
        future.set_exception(error)
        with self._lock:
            self._futures[key] = future

    def put(self, key: K, value: T) -> None:
        """Remember ``value`` for ``key`` unless an answer is already known or coming."""
        with self._lock:
            if key not in self._futures:
                future: Future[T] = Future()
                future.set_result(value)
                self._futures[key] = future


class ManifestCache:
    """An on-disk cache of manifests keyed by digest (content-addressed, verified).

    Only ``sha256`` digests are kept; an entry whose bytes no longer match its digest
    (damaged, or written by someone else) is deleted and read from the registry again.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def _paths(self, digest: str) -> tuple[Path, Path] | None:
        if not SHA256_DIGEST_RE.fullmatch(digest):
            return None
        folder = self.root / "sha256"
        hexpart = digest.split(":", 1)[1]
        return folder / hexpart, folder / f"{hexpart}.type"

    def get(self, digest: str) -> tuple[bytes, str] | None:
        paths = self._paths(digest)
        if paths is None:
            return None
        try:
            raw = paths[0].read_bytes()
            media = paths[1].read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return None
        if not digest_matches(digest, raw):  # damaged or tampered: never trust it
            with contextlib.suppress(OSError):
                paths[0].unlink()
            return None
        return raw, media

    def put(self, digest: str, raw: bytes, media: str) -> None:
        paths = self._paths(digest)
        if paths is None or not digest_matches(digest, raw):
            return
        try:
            paths[0].parent.mkdir(parents=True, exist_ok=True)
            for path, data in ((paths[1], media.encode()), (paths[0], raw)):
                tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
                tmp.write_bytes(data)
                tmp.replace(path)
        except OSError:
            return  # a cache that cannot be written only costs requests
