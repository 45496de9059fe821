"""Values shared by the proxies: slots, weights, what a file says, what a switch did.

Pure: no I/O. Weights are percentages per slot that add up to 100, and never all zero
(nginx refuses ``weight=0`` and a Traefik weighted service whose children all weigh 0
answers 503 to every request), so a file tagkeeper writes always sends traffic somewhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tagkeeper.errors import UsageError, VerificationFailed

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

# the grammars of the ``slots`` and ``upstream`` keys of [deploy.ENV]
SLOT_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,15}")
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
HOST_RE = re.compile(r"[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e]")


def shown(text: str, limit: int = 300) -> str:
    """Outside text (a command's output, an answer) made safe to print: no control
    characters or terminal escapes, at most ``limit`` characters."""
    clean = _CONTROL_RE.sub("?", text).strip()
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


def check_name(value: str, what: str) -> str:
    if not NAME_RE.fullmatch(value):
        raise UsageError(
            f"{what} {shown(value, 80)!r} is not a valid name",
            hint="use letters, digits, '.', '-' and '_' (at most 128), not starting with "
            "'.' or '-'",
        )
    return value


@dataclass(frozen=True, slots=True)
class Slot:
    """One slot behind the proxy: its name (``blue``) and where it listens."""

    name: str
    host: str
    port: int

    def __post_init__(self) -> None:
        if not SLOT_RE.fullmatch(self.name):
            raise UsageError(
                f"slot name {shown(self.name, 80)!r} is not valid",
                hint="use lower-case letters, digits and '-' (at most 16), starting with a "
                "letter or digit",
            )
        if not HOST_RE.fullmatch(self.host):
            raise UsageError(f"slot {self.name}: host {shown(self.host, 80)!r} is not valid")
        if isinstance(self.port, bool) or not 1 <= self.port <= 65535:
            raise UsageError(f"slot {self.name}: port {self.port!r} is not a TCP port")

    @property
    def address(self) -> str:
        """``host:port``, as nginx's ``$upstream_addr`` and Traefik's ``ServiceAddr`` say."""
        return f"{self.host}:{self.port}"


def check_slots(slots: Iterable[Slot]) -> tuple[Slot, ...]:
    """``slots`` as a tuple; at least two, names and addresses distinct."""
    out = tuple(slots)
    if len(out) < 2:
        raise UsageError("a proxy needs at least two slots (default: blue and green)")
    names = [s.name for s in out]
    addresses = [s.address for s in out]
    if len(set(names)) != len(names):
        raise UsageError(f"slot names repeat: {', '.join(names)}")
    if len(set(addresses)) != len(addresses):
        raise UsageError(f"two slots listen on the same address: {', '.join(addresses)}")
    return out


class AllZeroWeights(UsageError):
    """Every slot at weight 0: nginx refuses the file, Traefik answers 503."""


@dataclass(frozen=True, slots=True)
class Weights:
    """Percent of the traffic per slot, in slot order: ``blue=90, green=10``."""

    items: tuple[tuple[str, int], ...]

    @classmethod
    def of(cls, weights: Mapping[str, int]) -> Weights:
        """Checked weights: whole numbers 0..100 that add up to 100 (so never all 0)."""
        items = tuple(weights.items())
        if not items:
            raise UsageError("no weights given")
        for slot, weight in items:
            if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
                raise UsageError(
                    f"weight of {slot} is {weight!r}", hint="weights are whole percents, 0..100"
                )
        total = sum(w for _, w in items)
        if total == 0:
            raise AllZeroWeights(
                "every weight is 0: the proxy would have nowhere to send requests",
                hint="give at least one slot a weight above 0 (weights are percents adding "
                "up to 100)",
            )
        if total != 100:
            raise UsageError(
                f"weights add up to {total}, not 100 ({_listing(items)})",
                hint="weights are percents of the traffic, e.g. 90,10",
            )
        return cls(items)

    @classmethod
    def all_to(cls, slot: str, slots: Iterable[str]) -> Weights:
        """100 for ``slot``, 0 for every other slot."""
        return cls.of({name: 100 if name == slot else 0 for name in slots})

    @classmethod
    def canary(cls, new: str, old: str, percent: int, slots: Iterable[str]) -> Weights:
        """``percent`` to ``new``, the rest to ``old``, 0 to any other slot."""
        return cls.of(
            {
                name: percent if name == new else (100 - percent if name == old else 0)
                for name in slots
            }
        )

    @classmethod
    def parse(cls, text: str, slots: Iterable[str]) -> Weights:
        """``"90,10"`` in slot order (the form ``--weights`` takes)."""
        names = list(slots)
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != len(names) or not all(p.isascii() and p.isdigit() for p in parts):
            example = ",".join(["90", "10"] + ["0"] * (len(names) - 2))
            raise UsageError(
                f"weights {shown(text, 60)!r} are not {len(names)} whole percents",
                hint=f"one per slot, in order ({', '.join(names)}), adding up to 100, "
                f"e.g. {example}",
            )
        return cls.of(dict(zip(names, (int(p) for p in parts), strict=True)))

    def as_dict(self) -> dict[str, int]:
        return dict(self.items)

    def of_slot(self, slot: str) -> int:
        return dict(self.items).get(slot, 0)

    @property
    def serving(self) -> tuple[str, ...]:
        """The slots with a weight above 0."""
        return tuple(s for s, w in self.items if w > 0)

    @property
    def sole(self) -> str | None:
        """The slot that takes all traffic, when one does."""
        serving = self.serving
        return serving[0] if len(serving) == 1 else None

    def check_slots(self, slots: Iterable[Slot]) -> None:
        """Every weighted slot is one of ``slots``, and every slot has a weight."""
        known = [s.name for s in slots]
        named = [s for s, _ in self.items]
        unknown = [s for s in named if s not in known]
        if unknown:
            raise UsageError(
                f"no slot named {', '.join(unknown)}", hint=f"slots are: {', '.join(known)}"
            )
        missing = [s for s in known if s not in named]
        if missing:
            raise UsageError(f"no weight for slot {', '.join(missing)}")

    def __str__(self) -> str:
        return _listing(self.items)


def _listing(items: Iterable[tuple[str, int]]) -> str:
    return ", ".join(f"{slot}={weight}" for slot, weight in items)


@dataclass(frozen=True, slots=True)
class ProxyFile:
    """What the file tagkeeper owns says, read back.

    ``weights`` are what the proxy loads from the file (parsed from its body, not from
    tagkeeper's comment), or ``None`` when the file is missing or cannot be read.
    ``problems`` say why it should not be trusted: missing, corrupt, edited by hand since
    tagkeeper wrote it, or sending traffic nowhere. ``generation`` identifies one write.
    """

    path: str
    exists: bool
    weights: Weights | None = None
    raw_weights: tuple[tuple[str, int], ...] = ()
    generation: str | None = None
    problems: tuple[str, ...] = ()

    @property
    def trusted(self) -> bool:
        return self.exists and self.weights is not None and not self.problems

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "exists": self.exists,
            "weights": None if self.weights is None else self.weights.as_dict(),
            "raw_weights": dict(self.raw_weights) if self.raw_weights else None,
            "generation": self.generation,
            "trusted": self.trusted,
            "problems": list(self.problems),
        }


@dataclass(frozen=True, slots=True)
class LiveState:
    """What the running proxy serves now, seen through the proxy itself.

    ``generation``: the file generation the proxy runs (nginx: from the probe header);
    ``weights``: what it runs (Traefik: from its API); ``slots``: the slots that answered
    probes. ``error`` says why it could not be seen.
    """

    generation: str | None = None
    weights: Weights | None = None
    slots: tuple[str, ...] = ()
    error: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "generation": self.generation,
            "weights": None if self.weights is None else self.weights.as_dict(),
            "slots": list(self.slots),
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class ProxyEvent:
    """One step of a proxy change, for the ``on_event`` callback (and the ledger)."""

    phase: str  # write, test, reload, confirm, restore
    detail: str
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class ApplyReport:
    """A proxy change that took effect, and the numbers that show it."""

    weights: Weights
    previous: Weights | None
    generation: str
    seconds: float  # from the write to the confirmation
    confirm_seconds: float  # from the reload to the confirmation
    probes: int
    answered_by: tuple[str, ...] = ()
    events: tuple[ProxyEvent, ...] = field(default=())

    def to_json(self) -> dict[str, object]:
        return {
            "weights": self.weights.as_dict(),
            "previous": None if self.previous is None else self.previous.as_dict(),
            "generation": self.generation,
            "seconds": round(self.seconds, 3),
            "confirm_seconds": round(self.confirm_seconds, 3),
            "probes": self.probes,
            "answered_by": list(self.answered_by),
        }


class ProxySwitchFailed(VerificationFailed):
    """A proxy change failed its test, reload or confirmation; the old file is back.

    ``phase`` names the step that failed; ``restored`` says whether the previous file
    was put back and the proxy reloaded with it (it serves the old slot, exit 13).
    """

    def __init__(
        self, message: str, *, phase: str, restored: bool, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.phase = phase
        self.restored = restored


def no_events(_event: ProxyEvent) -> None:
    """The default ``on_event``: ignore progress."""


__all__ = [
    "AllZeroWeights",
    "ApplyReport",
    "LiveState",
    "ProxyEvent",
    "ProxyFile",
    "ProxySwitchFailed",
    "Slot",
    "Weights",
    "check_slots",
    "no_events",
    "shown",
]


def drift(file: ProxyFile, live: LiveState) -> tuple[str, ...]:
    """What differs between the owned file and what the proxy runs (for ``status``).

    Empty when they agree. A file renamed but never reloaded (a deploy killed between
    the two) shows as a generation the proxy does not run yet; the next switch reloads.
    """
    notes: list[str] = [f"proxy file: {p}" for p in file.problems]
    if live.error is not None:
        notes.append(f"the proxy could not be asked what it runs: {live.error}")
        return tuple(notes)
    if None not in (live.generation, file.generation) and live.generation != file.generation:
        notes.append(
            f"the proxy runs generation {live.generation}, the file holds "
            f"{file.generation}: it was written but not loaded (an interrupted switch?); "
            "the next deploy, switch or rollback reloads it"
        )
    if live.weights is not None and file.weights is not None and live.weights != file.weights:
        notes.append(
            f"the proxy runs {live.weights}, the file says {file.weights}: not loaded yet, "
            "or refused (see the proxy's log)"
        )
    if file.weights is not None and live.slots:
        stray = [s for s in live.slots if file.weights.of_slot(s) == 0]
        if stray and live.generation in (None, file.generation):
            notes.append(f"slot {', '.join(stray)} answered although the file gives it 0")
    return tuple(notes)
