"""The ``Proxy`` protocol and the one way every proxy file is changed.

A proxy tagkeeper drives has one file that tagkeeper owns (nginx: an ``upstream``
included in ``http {}``; Traefik: a weighted service in the file provider's directory).
That file is the truth about the weights. :class:`FileProxy` changes it the same way for
every proxy:

1. keep the previous file's bytes (to restore them);
2. render the new weights (pure, and read back before anything is written);
3. write a temporary file beside it under a name the proxy never loads, fsync, rename
   over the owned file, fsync the folder (a reader sees the old or the new file, whole);
4. test the configuration (``nginx -t``), reload (``nginx -s reload``);
5. confirm through the proxy, within a bound, that requests now reach the intended
   slots (and only them);
6. on any failure, or an interruption, put the previous bytes back (the same way), reload
   again if a reload was sent, and raise :class:`ProxySwitchFailed` (exit 13).

Commands are argument lists run without a shell, with the default environment of
:mod:`tagkeeper.deploy.passenv` (no token); their output is outside text, shown only
after :func:`~tagkeeper.deploy.proxies.model.shown` has cleaned it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

from tagkeeper.deploy.passenv import choose
from tagkeeper.deploy.proxies.model import (
    ApplyReport,
    LiveState,
    ProxyEvent,
    ProxyFile,
    ProxySwitchFailed,
    Slot,
    Weights,
    check_name,
    check_slots,
    no_events,
    shown,
)
from tagkeeper.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

MAX_FILE_BYTES = 1 << 20  # an owned file is a few hundred bytes; more is not ours
STATE_PREFIX = "# tagkeeper-state: "
TEMP_SUFFIX = ".tagkeeper-tmp"  # never *.conf, *.yml, *.yaml or *.toml: no proxy loads it
_GENERATION_RE = re.compile(r"[0-9a-f]{12}")


@dataclass(frozen=True, slots=True)
class CommandResult:
    returncode: int
    output: str


class CommandRunner(Protocol):
    def __call__(self, args: Sequence[str], timeout: float) -> CommandResult: ...


def run_command(args: Sequence[str], timeout: float) -> CommandResult:
    """Run ``args`` (no shell) and return its exit status and combined output.

    The command gets :data:`~tagkeeper.deploy.passenv.DEFAULT` of tagkeeper's environment
    (``PATH``, ``HOME``, ``DOCKER_HOST``...), never a token.
    """
    env = choose(os.environ).variables
    try:
        done = subprocess.run(  # noqa: S603 - an argument list from the configuration
            list(args), capture_output=True, timeout=timeout, check=False, env=env
        )
    except FileNotFoundError:
        return CommandResult(127, f"{args[0]}: command not found")
    except PermissionError:
        return CommandResult(126, f"{args[0]}: permission denied")
    except subprocess.TimeoutExpired:
        return CommandResult(124, f"did not finish within {timeout:g}s")
    output = (done.stdout + done.stderr).decode("utf-8", errors="replace")
    return CommandResult(done.returncode, output)


class Proxy(Protocol):
    """A proxy in front of the slots, driven through the file tagkeeper owns."""

    kind: ClassVar[str]

    @property
    def path(self) -> Path: ...

    @property
    def slots(self) -> tuple[Slot, ...]: ...

    def render(self, weights: Weights, generation: str) -> str:
        """The owned file's text for ``weights`` (pure)."""
        ...

    def read(self) -> ProxyFile:
        """What the owned file says now (missing, corrupt or hand-edited is reported)."""
        ...

    def live(self) -> LiveState:
        """What the running proxy serves now, seen through the proxy."""
        ...

    def apply(
        self, weights: Weights, *, on_event: Callable[[ProxyEvent], None] = no_events
    ) -> ApplyReport:
        """Write, test, reload and confirm ``weights``; restore and raise on failure."""
        ...


def new_generation() -> str:
    """A fresh id for one write of the owned file."""
    return secrets.token_hex(6)


def body_digest(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def state_line(generation: str, body: str) -> str:
    """The comment that says tagkeeper wrote this body (a hand edit changes the digest)."""
    state = {"format": 1, "generation": generation, "sha256": body_digest(body)}
    return STATE_PREFIX + json.dumps(state, separators=(",", ":"), sort_keys=True)


class Unreadable(Exception):
    """The owned file's body is not in a form tagkeeper can read."""


@dataclass(frozen=True, slots=True)
class Parsed:
    """What a proxy reads in a body: weight per address (in file order), generation."""

    weights: tuple[tuple[str, int], ...]
    generation: str | None = None


@dataclass(frozen=True, slots=True)
class Timing:
    """Bounds of a proxy change.

    ``confirm_timeout``: how long the switch may take to show through the proxy (nginx
    reloads in well under a second; Traefik's file provider waits about 2 s before it
    applies a change). ``confirm_probes``: answers in a row from the new configuration
    that count as confirmed, and ``confirm_settle``: for at least this long (nginx's old
    workers keep accepting connections for about 100 ms after the new ones start, so a
    quick streak of new answers does not yet mean the old ones stopped).
    ``command_timeout``: for ``proxy-test`` and ``proxy-reload``.
    """

    confirm_timeout: float = 5.0
    confirm_probes: int = 5
    confirm_settle: float = 0.0
    command_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.confirm_probes < 1 or self.confirm_timeout <= 0 or self.command_timeout <= 0:
            raise UsageError("proxy timing: the probe count and timeouts must be positive")
        if not 0 <= self.confirm_settle < self.confirm_timeout:
            raise UsageError("proxy timing: confirm_settle must be below confirm_timeout")


def write_atomic(path: Path, data: bytes, *, temp_dir: Path | None = None) -> None:
    """``data`` to a temporary name the proxy ignores, fsync, rename over ``path``.

    The temporary file is written beside ``path``, or in ``temp_dir`` (which must be on
    the same filesystem: the rename fails with ``EXDEV`` otherwise).
    """
    temp = (temp_dir or path.parent) / f".{path.name}{TEMP_SUFFIX}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(temp, path.stat().st_mode & 0o7777)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    with contextlib.suppress(OSError):  # make the rename itself survive a crash
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class FileProxy:
    """The write / test / reload / confirm / restore cycle shared by every proxy.

    Subclasses render and parse their file and confirm through their proxy. ``clock``
    (monotonic seconds) and ``sleep`` are injected so tests never wait.
    """

    kind: ClassVar[str] = "file"
    TYPE_WORD: ClassVar[str] = "proxy"

    def __init__(
        self,
        path: Path,
        slots: Iterable[Slot],
        upstream: str,
        *,
        test_command: Sequence[str] | None,
        reload_command: Sequence[str] | None,
        runner: CommandRunner = run_command,
        timing: Timing | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._path = Path(path)
        self._slots = check_slots(slots)
        self.upstream = check_name(upstream, "upstream")
        self.test_command = list(test_command) if test_command else None
        self.reload_command = list(reload_command) if reload_command else None
        self.runner = runner
        self.timing = timing or Timing()
        self.clock = clock
        self.sleep = sleep

    @property
    def path(self) -> Path:
        return self._path

    @property
    def slots(self) -> tuple[Slot, ...]:
        return self._slots

    def slot_of(self, address: str) -> str | None:
        for slot in self._slots:
            if slot.address == address:
                return slot.name
        return None

    # -- for each proxy -----------------------------------------------------------
    def render_body(self, weights: Weights, generation: str) -> str:
        raise NotImplementedError

    def parse_body(self, body: str) -> Parsed:
        """Weights per address and the generation in ``body``, or :class:`Unreadable`."""
        raise NotImplementedError

    def confirm(self, weights: Weights, generation: str) -> tuple[int, tuple[str, ...]]:
        """Wait until the proxy serves ``weights``: (probes sent, slots that answered).

        Raises :class:`ProxySwitchFailed` (phase ``confirm``) when it does not within
        the timing's ``confirm_timeout``.
        """
        raise NotImplementedError

    def live(self) -> LiveState:
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        """Replace the owned file with ``data`` atomically."""
        write_atomic(self._path, data)

    # -- rendering and reading ----------------------------------------------------
    def render(self, weights: Weights, generation: str) -> str:
        weights.check_slots(self._slots)
        if not _GENERATION_RE.fullmatch(generation):
            raise UsageError(f"generation {generation!r} is not 12 hex digits")
        body = self.render_body(weights, generation)
        head = [
            f"# Written by tagkeeper for the {self.TYPE_WORD} {self.upstream!r}: do not edit.",
            "# Change weights with tagkeeper (deploy, switch, rollback); `tagkeeper status`",
            "# reports an edit by hand.",
            state_line(generation, body),
        ]
        return "\n".join(head) + "\n" + body

    def read(self) -> ProxyFile:
        where = str(self._path)
        try:
            with self._path.open("rb") as handle:
                raw = handle.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return ProxyFile(where, False, problems=("the file does not exist",))
        except OSError as exc:
            return ProxyFile(where, True, problems=(f"cannot be read: {exc.strerror or exc}",))
        if len(raw) > MAX_FILE_BYTES:
            return ProxyFile(where, True, problems=("larger than 1 MiB: not tagkeeper's file",))
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return ProxyFile(where, True, problems=("not UTF-8 text: corrupt",))
        return self.read_text(text)

    def read_text(self, text: str) -> ProxyFile:
        """A :class:`ProxyFile` from the owned file's ``text`` (pure).

        The weights come from the body, which is what the proxy loads; tagkeeper's state
        line only tells whether the body is still the one tagkeeper wrote.
        """
        where = str(self._path)
        problems: list[str] = []
        state, body = _split_state(text)
        try:
            parsed = self.parse_body(body)
        except Unreadable as exc:
            return ProxyFile(where, True, problems=(f"corrupt or not in tagkeeper's form: {exc}",))
        generation = parsed.generation
        if state is None:
            problems.append("no tagkeeper-state line: not written by tagkeeper, or edited")
        else:
            if state.get("sha256") != body_digest(body):
                problems.append("edited by hand since tagkeeper wrote it")
            written = state.get("generation")
            if isinstance(written, str) and _GENERATION_RE.fullmatch(written):
                if generation is None:
                    generation = written
                elif generation != written:
                    problems.append("its generation does not match tagkeeper's state line")
        raw: list[tuple[str, int]] = []
        for address, weight in parsed.weights:
            slot = self.slot_of(address)
            if slot is None:
                problems.append(f"it sends traffic to {shown(address, 80)}, which is no slot")
            elif any(name == slot for name, _ in raw):
                problems.append(f"slot {slot} ({address}) appears twice")
            else:
                raw.append((slot, weight))
        by_slot = dict(raw)
        ordered = [(s.name, by_slot.get(s.name, 0)) for s in self._slots]
        total = sum(w for _, w in ordered)
        weights: Weights | None = None
        if total == 0:
            problems.append("every slot is at weight 0: the proxy has nowhere to send requests")
        elif total == 100:
            weights = Weights(tuple(ordered))
        else:  # a hand edit such as weights 3 and 1: what the proxy does, as percents
            weights = as_percent(ordered)
            problems.append(f"weights add up to {total}, not 100 (shown as percents)")
        return ProxyFile(
            where,
            True,
            weights=weights,
            raw_weights=tuple(raw),
            generation=generation,
            problems=tuple(problems),
        )

    # -- applying -----------------------------------------------------------------
    def apply(
        self, weights: Weights, *, on_event: Callable[[ProxyEvent], None] = no_events
    ) -> ApplyReport:
        weights.check_slots(self._slots)
        events: list[ProxyEvent] = []

        def emit(phase: str, detail: str, since: float) -> None:
            event = ProxyEvent(phase, detail, self.clock() - since)
            events.append(event)
            on_event(event)

        start = self.clock()
        previous_raw = self._previous_bytes()
        previous = self.read()
        generation = new_generation()
        text = self.render(weights, generation)
        check = self.read_text(text)
        if check.weights != weights or check.problems:  # a renderer bug: never write it
            raise RuntimeError(f"the rendered file reads back as {check}, not {weights}")
        try:
            self.write(text.encode("utf-8"))
        except OSError as exc:
            raise ProxySwitchFailed(
                f"{self._path}: cannot be written ({exc.strerror or exc}); nothing was changed",
                phase="write",
                restored=True,
                hint="tagkeeper writes a temporary file beside it and renames it: the folder "
                "must be writable",
            ) from None
        emit("write", f"{self._path}: {weights} (generation {generation})", start)
        reload_sent = False
        try:
            step = self.clock()
            if self.test_command:
                self._run("test", self.test_command)
                emit("test", " ".join(self.test_command), step)
            step = self.clock()
            if self.reload_command:
                reload_sent = True
                self._run("reload", self.reload_command)
                emit("reload", " ".join(self.reload_command), step)
            reloaded = self.clock()
            probes, answered = self.confirm(weights, generation)
            confirmed = self.clock()
            emit("confirm", f"{probes} probes, answered by {', '.join(answered)}", reloaded)
        except BaseException as exc:
            step = self.clock()
            restored, how = self._restore(previous_raw, reload_sent=reload_sent)
            emit("restore", how, step)
            if isinstance(exc, ProxySwitchFailed):
                raise ProxySwitchFailed(
                    f"{exc.message}; {how}", phase=exc.phase, restored=restored, hint=exc.hint
                ) from None
            raise
        return ApplyReport(
            weights=weights,
            previous=previous.weights,
            generation=generation,
            seconds=confirmed - start,
            confirm_seconds=confirmed - reloaded,
            probes=probes,
            answered_by=answered,
            events=tuple(events),
        )

    def _previous_bytes(self) -> bytes | None:
        try:
            return self._path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ProxySwitchFailed(
                f"{self._path}: cannot be read ({exc.strerror or exc}); nothing was changed",
                phase="read",
                restored=True,
                hint="tagkeeper keeps the previous file to restore it: fix the permissions",
            ) from None

    def _run(self, phase: str, command: Sequence[str]) -> None:
        result = self.runner(command, self.timing.command_timeout)
        if result.returncode != 0:
            raise ProxySwitchFailed(
                f"proxy {phase} failed: {' '.join(command)} exited with {result.returncode}: "
                f"{shown(result.output) or '(no output)'}",
                phase=phase,
                restored=False,
                hint="the proxy's whole configuration must pass its own check; fix the error "
                "shown (it may be in a file tagkeeper does not own), then deploy again",
            )

    def _restore(self, previous: bytes | None, *, reload_sent: bool) -> tuple[bool, str]:
        """Put the previous file back; reload when a reload was sent. (ok, what was done)."""
        try:
            if previous is None:
                self._path.unlink(missing_ok=True)
            else:
                self.write(previous)
        except OSError as exc:
            return False, (
                f"the previous file could NOT be restored ({exc.strerror or exc}): "
                f"{self._path} holds the new weights"
            )
        if not reload_sent or not self.reload_command:
            return True, "the previous file was restored (the proxy was not reloaded)"
        result = self.runner(self.reload_command, self.timing.command_timeout)
        if result.returncode != 0:
            return False, (
                "the previous file was restored but reloading it failed: "
                f"{shown(result.output) or result.returncode}"
            )
        return True, "the previous file was restored and the proxy reloaded with it"


def _split_state(text: str) -> tuple[dict[str, object] | None, str]:
    """(tagkeeper's state, the body after it), from the leading comment lines."""
    lines = text.split("\n")
    for index, line in enumerate(lines[:8]):
        if not line.startswith("#"):
            break
        if line.startswith(STATE_PREFIX):
            try:
                loaded = json.loads(line[len(STATE_PREFIX) :])
            except ValueError:
                return None, text
            if not isinstance(loaded, dict):
                return None, text
            return loaded, "\n".join(lines[index + 1 :])
    return None, text


def as_percent(weights: list[tuple[str, int]]) -> Weights:
    """Relative weights (3 and 1) as percents that add up to 100 (75 and 25); not all 0."""
    total = sum(w for _, w in weights)
    shares = [(s, w * 100 // total) for s, w in weights]
    short = 100 - sum(w for _, w in shares)
    largest = max(range(len(shares)), key=lambda i: weights[i][1])
    slot, weight = shares[largest]
    shares[largest] = (slot, weight + short)
    return Weights(tuple(shares))
