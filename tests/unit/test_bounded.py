"""Bounded reading: caps counted after decompression, encodings, deadlines, the client."""

from __future__ import annotations

import gzip
import time
import zlib
from typing import TYPE_CHECKING

import httpx
import pytest

from tagkeeper.bounded import BadEncoding, TooLarge, TooSlow, arm, deadline, read_body
from tagkeeper.transport import build_client

if TYPE_CHECKING:
    from collections.abc import Iterator


class Chunks(httpx.SyncByteStream):
    def __init__(self, *chunks: bytes, pause: float = 0.0) -> None:
        self.chunks = chunks
        self.pause = pause
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            time.sleep(self.pause)
            self.sent += 1
            yield chunk


def answer(stream: Chunks, encoding: str | None = None) -> httpx.Response:
    headers = {"Content-Encoding": encoding} if encoding else {}
    return httpx.Response(200, headers=headers, stream=stream)


@pytest.mark.parametrize("encoding", [None, "gzip", "deflate", "raw-deflate"])
def test_a_body_within_the_cap_is_read_whole_in_every_encoding(encoding: str | None) -> None:
    body = b'{"tags": ["v1"]}' * 100
    if encoding == "gzip":
        data = gzip.compress(body)
    elif encoding == "deflate":
        data = zlib.compress(body)
    elif encoding == "raw-deflate":
        squeeze = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        data = squeeze.compress(body) + squeeze.flush()
        encoding = "deflate"
    else:
        data = body
    halves = (data[: len(data) // 2], data[len(data) // 2 :])
    assert read_body(answer(Chunks(*halves), encoding), len(body)) == body


@pytest.mark.parametrize("encoding", [None, "gzip"])
def test_the_cap_counts_bytes_after_decompression_and_stops_reading(
    encoding: str | None,
) -> None:
    block = b"a" * 65536
    chunks = [gzip.compress(block * 64)] if encoding else [block] * 64
    stream = Chunks(*chunks, *([b"never read"] * 100))
    with pytest.raises(TooLarge, match="1 MiB"):
        read_body(answer(stream, encoding), 1024 * 1024)
    assert stream.sent < 20


def test_an_encoding_tagkeeper_did_not_ask_for_is_refused() -> None:
    with pytest.raises(BadEncoding, match="br"):
        read_body(answer(Chunks(b"x"), "br"), 100)
    with pytest.raises(BadEncoding, match="corrupt"):
        read_body(answer(Chunks(b"not gzip at all"), "gzip"), 100)


def test_the_deadline_ends_a_slow_body_between_chunks() -> None:
    stream = Chunks(*([b"x"] * 1000), pause=0.01)
    started = time.monotonic()
    with deadline(0.2), pytest.raises(TooSlow, match=r"0\.2 seconds"):
        read_body(answer(stream), 10_000)
    assert time.monotonic() - started < 2


def test_the_client_is_armed_and_insecure_hosts_skip_verification_only_there() -> None:
    with build_client(insecure_hosts=["registry.example.com:5443"]) as client:
        assert arm(client)  # every connection keeps the deadline (already armed: no change)
        mounts = {str(pattern.pattern): transport for pattern, transport in client._mounts.items()}
        insecure = mounts["https://registry.example.com:5443"]
        assert isinstance(insecure, httpx.HTTPTransport)
        context = insecure._pool._ssl_context
        assert context is not None
        assert context.verify_mode.name == "CERT_NONE"
        default = client._transport._pool._ssl_context  # type: ignore[attr-defined]
        assert default.verify_mode.name == "CERT_REQUIRED"
        assert len(mounts) == 1
