"""Small process and file helpers shared by the service starters."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.deploykit import ServiceError


def find_binary(name: str, why: str) -> str:
    """The path of ``name`` (PATH, then beside this Python: venv scripts), or raise."""
    import sys

    # PATH first; then the venv's scripts (pytest run as .venv/bin/python without an
    # activated venv) and the sbin folders (nginx) a non-root PATH may lack.
    path = shutil.which(name)
    for folder in (Path(sys.executable).parent, Path("/usr/sbin"), Path("/sbin")):
        candidate = folder / name
        if path is None and candidate.is_file() and os.access(candidate, os.X_OK):
            path = str(candidate)
    if path is None:
        raise ServiceError(f"{name} is not installed ({why}); run .ci/run, which installs it")
    return path


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 15.0) -> None:
    """Wait until ``proc`` listens on 127.0.0.1:``port``; raise with its log if it dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"{proc.args!r} exited with {proc.returncode}; log:\n{tail(log)}")
        if port_open(port):
            return
        time.sleep(0.05)
    raise ServiceError(f"{proc.args!r} does not listen on 127.0.0.1:{port}; log:\n{tail(log)}")


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """TERM, then KILL after ``timeout``; always reaped."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def write_atomic(path: Path, text: str, temp_dir: Path | None = None) -> None:
    """Write ``text`` to a temporary file, then rename it over ``path``.

    The temporary file is ``.NAME.tmp`` beside ``path`` (a name a watching service must
    ignore), or in ``temp_dir``, which must be on the same filesystem.
    """
    temp = (temp_dir or path.parent) / f".{path.name}.tmp"
    with temp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
