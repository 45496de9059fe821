"""Bounded I/O: every answer has a size cap and every request a deadline.

A registry (or whatever answers in its place) can send a body without end, a gzip that
expands a thousandfold, or one byte every few seconds. Two defences, used by
:class:`tagkeeper.transport.Sender` for every request:

- :func:`read_body` reads an answer as a stream and stops at the cap of its kind
  (:class:`Caps`), counting bytes *after* decompression: ``gzip`` and ``deflate`` are
  expanded here, never more than the cap allows plus one chunk, and any other
  ``Content-Encoding`` is refused (tagkeeper only asks for these two).
- a deadline per attempt: :func:`deadline` sets it for the request being sent in this
  thread; :func:`read_body` checks it between chunks, and :func:`arm` makes every socket
  read and write of a client's connections wait at most until it (a server that drips
  its headers a byte at a time is cut off too). The deadline is wall-clock time of this
  process (``time.monotonic``), not the injected clock of retries.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from collections.abc import Iterator

    import httpcore

MiB = 1024 * 1024


@dataclass(frozen=True)
class Caps:
    """The largest answer tagkeeper reads, per kind, in bytes (after decompression)."""

    manifest: int = 4 * MiB  # what distribution itself accepts
    config: int = 8 * MiB  # an image config: labels, history
    tag_list: int = 4 * MiB  # one page: 1,000 tags of up to 128 characters, with room
    listing: int = 8 * MiB  # one page of a REST listing (100 package versions)
    token: int = 256 * 1024  # a token answer: a JWT of a few KiB
    error: int = 64 * 1024  # an error body: only ever shown, in part
    default: int = 8 * MiB


CAPS = Caps()


class TooLarge(ValueError):
    """The answer is larger than its cap (it was not read to its end)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"larger than {_size(limit)}")
        self.limit = limit


class TooSlow(TimeoutError):
    """The answer did not finish before the request's deadline."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"did not finish within {seconds:g} seconds")
        self.seconds = seconds


class BadEncoding(ValueError):
    """The answer is compressed in a way tagkeeper did not ask for, or is corrupt."""


def _size(limit: int) -> str:
    if limit >= MiB and limit % MiB == 0:
        return f"{limit // MiB} MiB"
    if limit >= 1024 and limit % 1024 == 0:
        return f"{limit // 1024} KiB"
    return f"{limit} bytes"


# -- the deadline of the request being sent in this thread ------------------------------

_DEADLINE: contextvars.ContextVar[tuple[float, float] | None] = contextvars.ContextVar(
    "tagkeeper_deadline", default=None
)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Let what runs inside take at most ``seconds`` (socket reads and writes, and
    :func:`read_body`), in this thread."""
    token = _DEADLINE.set((time.monotonic() + seconds, seconds))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _remaining(timeout: float | None) -> float | None:
    """``timeout`` cut to what is left before the deadline; raises past it."""
    current = _DEADLINE.get()
    if current is None:
        return timeout
    end, seconds = current
    left = end - time.monotonic()
    if left <= 0:
        raise TooSlow(seconds)
    return left if timeout is None else min(timeout, left)


def check_deadline() -> None:
    """Raise :class:`TooSlow` when the request's deadline has passed."""
    _remaining(None)


# -- bounded reading --------------------------------------------------------------------


class _Inflate:
    """A zlib stream (``gzip``, or ``deflate`` with or without its zlib wrapper) that
    never expands one chunk beyond ``room`` bytes."""

    def __init__(self, encoding: str) -> None:
        self._gzip = encoding == "gzip"
        self._raw = False
        self._started = False
        self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS if self._gzip else zlib.MAX_WBITS)

    def feed(self, data: bytes, room: int) -> bytes:
        try:
            out = self._decoder.decompress(data, room)
        except zlib.error as exc:
            if self._gzip or self._started or self._raw:
                raise BadEncoding(f"the compressed answer is corrupt ({exc})") from None
            self._raw = True  # "deflate" sent without its zlib wrapper, as some servers do
            self._decoder = zlib.decompressobj(-zlib.MAX_WBITS)
            return self.feed(data, room)
        self._started = True
        if self._decoder.unconsumed_tail:
            raise TooLarge(0)  # more output than the room left: over the cap
        return out

    def flush(self, room: int) -> bytes:
        try:
            out = self._decoder.flush(room)
        except zlib.error as exc:
            raise BadEncoding(f"the compressed answer is corrupt ({exc})") from None
        if self._decoder.unconsumed_tail:
            raise TooLarge(0)
        return out


def _decoder(response: httpx.Response) -> _Inflate | None:
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip", "deflate"):
        return _Inflate("deflate" if encoding == "deflate" else "gzip")
    raise BadEncoding(
        f"the answer is compressed as {encoding[:40]!r}, which tagkeeper did not ask for"
    )


def read_body(response: httpx.Response, limit: int) -> bytes:
    """The decoded body of a streamed ``response``, at most ``limit`` bytes.

    Raises :class:`TooLarge` as soon as it is known to be larger (the rest is never
    read), :class:`TooSlow` past the deadline, :class:`BadEncoding` for an encoding
    tagkeeper did not ask for or a corrupt stream.
    """
    decoder = _decoder(response)
    out = bytearray()
    for chunk in response.iter_raw():
        check_deadline()
        room = limit + 1 - len(out)
        try:
            data = decoder.feed(chunk, room) if decoder is not None else chunk
        except TooLarge:
            raise TooLarge(limit) from None
        out += data
        if len(out) > limit:
            raise TooLarge(limit)
    if decoder is not None:
        try:
            out += decoder.flush(limit + 1 - len(out))
        except TooLarge:
            raise TooLarge(limit) from None
        if len(out) > limit:
            raise TooLarge(limit)
    return bytes(out)


def loaded(response: httpx.Response, body: bytes) -> httpx.Response:
    """A response like ``response`` whose body is ``body`` (already read and decoded)."""
    headers = [
        (name, value)
        for name, value in response.headers.multi_items()
        if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=body,
        request=response.request,
        extensions={k: v for k, v in response.extensions.items() if k != "network_stream"},
    )


# -- deadlines on sockets ---------------------------------------------------------------


class _Stream:
    """A network stream whose reads and writes end at the request's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _remaining_or_timeout(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _remaining_or_timeout(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, *args: Any, **kwargs: Any) -> _Stream:
        return _Stream(self._inner.start_tls(*args, **kwargs))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


def _remaining_or_timeout(timeout: float | None) -> float | None:
    import httpcore

    try:
        return _remaining(timeout)
    except TooSlow as exc:
        raise httpcore.ReadTimeout(str(exc)) from None


class _Backend:
    """A network backend whose streams keep the deadline (wraps httpcore's own)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def connect_tcp(self, *args: Any, **kwargs: Any) -> _Stream:
        return _Stream(self._inner.connect_tcp(*args, **kwargs))

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> _Stream:
        return _Stream(self._inner.connect_unix_socket(*args, **kwargs))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def arm(client: httpx.Client) -> bool:
    """Make every connection of ``client`` keep the request deadline on each socket
    read and write. Returns whether it could (httpx keeps its connection pools
    private; a future httpx that moves them leaves :func:`read_body`'s check alone)."""
    armed = False
    transports = [getattr(client, "_transport", None)]
    transports += list(getattr(client, "_mounts", {}).values())
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        inner = getattr(pool, "_network_backend", None)
        if inner is None:
            continue
        if not isinstance(inner, _Backend):
            pool._network_backend = _Backend(inner)  # type: ignore[union-attr]
        armed = True
    return armed
