"""The emulator's HTTP plumbing: requests, answers, errors, routes and the threaded server."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import re

    from tests.emulators.ghcr import GhcrEmulator
    from tests.emulators.ghcr.state import Token

Surface = Literal["rest", "registry"]
DOCS = "https://docs.github.com/rest"


@dataclass(slots=True)
class Response:
    """An answer: status, body bytes and headers (Content-Length is added when sent)."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering

    @classmethod
    def json(
        cls, obj: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> Response:
        body = json.dumps(obj).encode()
        merged = {"Content-Type": "application/json; charset=utf-8"}
        merged.update(headers or {})
        return cls(status, body, merged)


class HttpError(Exception):
    """Raised by a handler to answer with ``response``."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"HTTP {response.status}")
        self.response = response


def rest_error(
    status: int,
    message: str,
    *,
    documentation_url: str = DOCS,
    headers: Mapping[str, str] | None = None,
) -> HttpError:
    """A GitHub REST error answer: ``{"message", "documentation_url", "status"}``."""
    body = {"message": message, "documentation_url": documentation_url, "status": str(status)}
    return HttpError(Response.json(body, status, headers))


def registry_error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> HttpError:
    """An OCI distribution error answer: ``{"errors": [{"code", "message"}]}``."""
    body = {"errors": [{"code": code, "message": message}]}
    return HttpError(Response.json(body, status, headers))


@dataclass(slots=True)
class Request:
    """What a route handler receives."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    match: re.Match[str]
    emulator: GhcrEmulator
    surface: Surface
    kind: str
    token: Token | None = None

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def require_token(self) -> Token:
        if self.token is None:
            raise rest_error(401, "Requires authentication")
        return self.token


Handler = Callable[[Request], Response]


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    kind: str
    surface: Surface


def call(handler: Handler, request: Request) -> Response:
    """``handler(request)``, with an :class:`HttpError` turned into its answer."""
    try:
        return handler(request)
    except HttpError as exc:
        return exc.response


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: GhcrEmulator) -> None:
        self.emulator = emulator
        super().__init__(address, _RequestHandler)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes
    server_version = "ghcr-emulator"
    sys_version = ""

    def _serve(self) -> None:
        server = self.server
        assert isinstance(server, _Server)
        server.emulator._serve(self)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        return

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""


def _never() -> re.Match[str]:
    raise AssertionError("unreachable")
