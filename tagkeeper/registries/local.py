"""The Docker engine of this host as a prune backend (docker SDK, low-level API).

One repository of the engine (``ghcr.io/acme/app``, named as ``docker images`` shows it)
is described as :class:`~tagkeeper.inventory.Version` values, one per local image:

- ``digest`` and ``key`` are the image id (``sha256:...`` of the image config),
  ``tags`` are the tags of *this* repository only, ``created`` is the image's creation
  time. The engine lists it in whole seconds; images that tie on that second are
  inspected for the exact time (``Created`` to the nanosecond, kept to the microsecond),
  and ``sequence`` orders the ones that still tie (a reproducible build: the same
  ``Created`` everywhere) by when they were tagged on this host (``Metadata.LastTagTime``:
  a pull, a load or a tag).
- Local images have no index and no referrers: the manifest reader answers "no
  children" for every image.

What the engine is asked, and how often (each call is counted in :attr:`stats`):

- ``images``: one ``GET /images/json?filters={"reference": [REPO]}`` lists every image
  of the repository with its tags, without inspecting each image; with ``dangling``
  a second, filtered call confirms the untagged leftovers (only when there are
  candidates).
- ``containers``: one ``GET /containers/json?all=1`` finds the image of every container
  in any state (running, paused, created, exited...).
- ``inspect``: one per image that ties with another on the listed second (the exact
  times), and one per version just before deleting it (the re-check of its tags).
- ``remove``: one per removed reference (``repo:tag`` or ``repo@sha256:...``).

Removal never forces. Each of the version's tags of this repository is removed by
name; the engine untags the image and deletes it with its last reference. An image
that also carries a tag of another repository is therefore only untagged here, and
the other repository keeps it. The engine refuses (409) to remove the last reference
of an image a container uses: the result is ``REFUSED`` and names the container.

Untagged leftovers (``--dangling``): an image of this repository is a leftover when it
has no tag in any repository and at least one digest reference of this repository
(``REPO@sha256:...``, what a ``docker pull``/``push`` records). That is what a
deploy host accumulates when ``REPO:tag`` is pulled again and moves to a newer image.
Images with no reference at all (``<none>@<none>``) carry no record of the repository
they came from, so they are never attributed to one; ``docker image prune`` is the tool
for those.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from tagkeeper.errors import RegistryError
from tagkeeper.inventory import (
    Backend,
    DeleteResult,
    DeleteStatus,
    ManifestInfo,
    RequestStats,
    Version,
)
from tagkeeper.refs import DIGEST_RE, parse_repository

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

IMAGE_CONFIG = "application/vnd.docker.container.image.v1+json"
"""The media type of a local image: its id is the digest of its config."""

_DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_ENGINE_HINT = (
    "check that dockerd runs and that DOCKER_HOST names it (e.g. unix:///var/run/docker.sock)"
)


class EngineAPI(Protocol):
    """The part of the docker SDK's low-level ``APIClient`` this backend uses."""

    def images(self, name: str | None = None, *, filters: dict[str, Any] | None = None) -> Any: ...

    def containers(self, *, all: bool = False, filters: dict[str, Any] | None = None) -> Any: ...

    def inspect_image(self, image: str) -> Any: ...

    def remove_image(self, image: str, force: bool = False, noprune: bool = False) -> Any: ...


class HasEngineAPI(Protocol):
    """A ``docker.DockerClient``: the high-level client, whose ``api`` is the low-level one."""

    @property
    def api(self) -> EngineAPI: ...


def engine_repository(text: str) -> str:
    """The repository name as the engine lists it, from a user's ``--image``.

    Raises :class:`UsageError` for a reference with a tag or digest. Docker Hub names are
    written as the engine shows them: ``docker.io/library/redis`` -> ``redis``,
    ``docker.io/acme/app`` -> ``acme/app``.
    """
    ref = parse_repository(text, why="--local --image takes a repository (every tag of it)")
    if ref.host in _DOCKER_HUB_HOSTS:
        path = ref.path
        if path.startswith("library/") and path.count("/") == 1:
            path = path.removeprefix("library/")
        return path
    return ref.repository


def pulled_digest(client: EngineAPI | HasEngineAPI, repository: str, tag: str) -> str | None:
    """The registry digest the engine recorded for ``repository:tag`` when it pulled it
    (its ``RepoDigests`` entry for that repository), or ``None`` when the engine has no
    such image, or only built it (no registry digest). Engine failures are
    :class:`RegistryError`."""
    api: EngineAPI = client.api if hasattr(client, "api") else client
    name = engine_repository(repository)
    try:
        data = api.inspect_image(f"{name}:{tag}")
    except Exception as exc:
        if _status_code(exc) == 404:
            return None
        code = _status_code(exc)
        raise RegistryError(
            f"the Docker engine {'answered ' + str(code) if code else 'did not answer'} while "
            f"inspecting {name}:{tag}: {_explanation(exc)}",
            hint=_ENGINE_HINT,
        ) from None
    for ref in _strings(data.get("RepoDigests") if isinstance(data, dict) else None):
        found_name, _, digest = ref.partition("@")
        if found_name == name and DIGEST_RE.fullmatch(digest):
            return digest
    return None


def connect(timeout: float = 60.0) -> Any:
    """A ``docker.DockerClient`` for the engine ``DOCKER_HOST`` names (or the default socket).

    Raises :class:`RegistryError` when no engine answers.
    """
    import docker
    import docker.errors
    import requests

    try:
        return docker.from_env(timeout=int(timeout))
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise RegistryError(f"cannot reach the Docker engine: {exc}", hint=_ENGINE_HINT) from None


@dataclass(frozen=True, slots=True)
class LocalManifests:
    """Manifest reader for local images: no index, no children, no referrers."""

    def manifest(self, digest: str) -> ManifestInfo:
        return ManifestInfo(digest=digest, media_type=IMAGE_CONFIG)

    def referrers(self, digest: str) -> Sequence[str]:
        return ()


def _split_tag(ref: str) -> tuple[str, str] | None:
    """``repo:tag`` -> (repo, tag); ``None`` for ``<none>:<none>`` and malformed entries."""
    repo, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag or repo == "<none>" or tag == "<none>":
        return None
    return repo, tag


def _created(value: object) -> datetime:
    seconds = value if isinstance(value, int | float) else 0
    return datetime.fromtimestamp(seconds, tz=UTC)


def _nanoseconds(value: object) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 time such as the engine writes
    (``2026-03-01T10:00:05.123456789Z``); ``None`` when it is not one, or is year 1 (the
    engine's "never")."""
    if not isinstance(value, str):
        return None
    head, dot, rest = value.partition(".")
    fraction = ""
    zone = rest if dot else ""
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        fraction, zone = rest[:digits], rest[digits:]
    else:
        for mark in ("Z", "+", "-"):
            at = head.find(mark, 10)
            if at != -1:
                head, zone = head[:at], head[at:]
                break
    if not fraction.isdigit() and fraction:
        return None
    try:
        whole = datetime.fromisoformat(head + (zone.replace("Z", "+00:00") or "+00:00"))
    except ValueError:
        return None
    if whole.year <= 1:
        return None
    return int(whole.timestamp()) * 1_000_000_000 + int((fraction + "000000000")[:9])


def _with_exact_time(version: Version, second: datetime, data: Any) -> Version:
    """``version`` with the exact ``Created`` of the inspect ``data`` (when it falls in
    the listed ``second``) and its ``LastTagTime`` as ``sequence``."""
    if not isinstance(data, dict):
        return version
    created = _nanoseconds(data.get("Created"))
    metadata = data.get("Metadata")
    tagged = _nanoseconds(metadata.get("LastTagTime") if isinstance(metadata, dict) else None)
    when = version.created
    if created is not None and created // 1_000_000_000 == int(second.timestamp()):
        micros = created // 1000
        when = datetime.fromtimestamp(micros // 1_000_000, tz=UTC) + timedelta(
            microseconds=micros % 1_000_000
        )
    return replace(version, created=when, sequence=tagged)


def _strings(value: object) -> list[str]:
    if not isinstance(value, list):
        return []  # the engine sends null for "none"
    return [item for item in value if isinstance(item, str)]


def _status_code(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    return code if isinstance(code, int) else None


def _explanation(exc: BaseException) -> str:
    text = getattr(exc, "explanation", None)
    return str(text) if text else str(exc)


class LocalEngine(Backend):
    """One repository of the local Docker engine, as a :class:`~tagkeeper.inventory.Backend`.

    ``client`` is a ``docker.DockerClient`` (``docker.from_env()``, or :func:`connect`) or
    its low-level ``APIClient``; the backend never builds one. ``repository`` is the
    repository name as the engine lists it (see :func:`engine_repository`). With
    ``dangling``, :meth:`versions` also lists the repository's untagged leftovers.
    """

    def __init__(
        self,
        client: EngineAPI | HasEngineAPI,
        repository: str,
        *,
        dangling: bool = False,
        stats: RequestStats | None = None,
    ) -> None:
        api: EngineAPI = client.api if hasattr(client, "api") else client
        self._api = api
        self._repo = repository
        self._dangling = dangling
        self._stats = stats if stats is not None else RequestStats()
        self._reader = LocalManifests()
        self._digest_refs: dict[str, tuple[str, ...]] = {}  # image id -> our REPO@sha256 refs

    # -- Backend protocol -------------------------------------------------------------

    @property
    def display(self) -> str:
        return self._repo

    @property
    def stats(self) -> RequestStats:
        return self._stats

    @property
    def reader(self) -> LocalManifests:
        return self._reader

    @property
    def dangling(self) -> bool:
        return self._dangling

    def versions(self) -> list[Version]:
        """The images of the repository (and its untagged leftovers with ``dangling``)."""
        entries = self._call(
            "images",
            f"listing the images of {self._repo}",
            lambda: self._api.images(name=self._repo),
        )
        tagged: list[Version] = []
        leftovers: dict[str, Version] = {}
        self._digest_refs = {}
        for entry in entries if isinstance(entries, list) else []:
            image_id = entry.get("Id") if isinstance(entry, dict) else None
            if not isinstance(image_id, str):
                continue
            tags = frozenset(
                split[1]
                for ref in _strings(entry.get("RepoTags"))
                if (split := _split_tag(ref)) is not None and split[0] == self._repo
            )
            digests = tuple(
                ref
                for ref in _strings(entry.get("RepoDigests"))
                if ref.partition("@")[0] == self._repo
            )
            self._digest_refs[image_id] = digests
            version = Version(
                digest=image_id,
                tags=tags,
                created=_created(entry.get("Created")),
                key=image_id,
                media_type=IMAGE_CONFIG,
            )
            if tags:
                tagged.append(version)
            elif digests:
                # No tag of this repository. The filtered listing hides other
                # repositories' tags, so only the engine's "dangling" filter (no tag in
                # any repository) can tell a leftover from an image retagged elsewhere.
                leftovers[image_id] = version
        result = tagged
        if self._dangling and leftovers:
            confirmed = self._call(
                "images",
                f"listing the untagged images of {self._repo}",
                lambda: self._api.images(filters={"dangling": True, "reference": [self._repo]}),
            )
            ids = {
                entry.get("Id")
                for entry in (confirmed if isinstance(confirmed, list) else [])
                if isinstance(entry, dict)
            }
            result = tagged + [v for image_id, v in leftovers.items() if image_id in ids]
        return sorted(self._exact_times(result), key=lambda v: (v.created, v.digest))

    def _exact_times(self, versions: list[Version]) -> list[Version]:
        """``versions`` with the exact times of those that tie on the listed second.

        One inspect per tied image. A time the inspect does not give (or that does not
        fall in the listed second) leaves the listed one; an image gone meanwhile keeps
        its listed time (its delete finds it gone)."""
        by_second: dict[datetime, list[Version]] = {}
        for v in versions:
            by_second.setdefault(v.created, []).append(v)
        out: list[Version] = []
        for second, group in by_second.items():
            if len(group) == 1:
                out += group
                continue
            for v in group:
                image_id = v.key or v.digest
                try:
                    self._stats.count("inspect")
                    data = self._api.inspect_image(image_id)
                except Exception as exc:
                    if _status_code(exc) == 404:
                        out.append(v)
                        continue
                    raise self._engine_error(f"inspecting image {image_id}", exc) from None
                out.append(_with_exact_time(v, second, data))
        return out

    def resolve_tag(self, tag: str) -> str | None:
        """The id of the image ``REPO:tag`` names on this engine (one inspect), or
        ``None`` when the engine has no such tag."""
        try:
            self._stats.count("inspect")
            data = self._api.inspect_image(f"{self._repo}:{tag}")
        except Exception as exc:
            if _status_code(exc) == 404:
                return None
            raise self._engine_error(f"inspecting {self._repo}:{tag}", exc) from None
        image_id = data.get("Id") if isinstance(data, dict) else None
        return image_id if isinstance(image_id, str) else None

    def current_tags(self, version: Version) -> frozenset[str] | None:
        """Re-inspect the image: its tags of this repository now, ``None`` when it is gone."""
        image_id = version.key or version.digest
        try:
            self._stats.count("inspect")
            data = self._api.inspect_image(image_id)
        except Exception as exc:
            if _status_code(exc) == 404:
                return None
            raise self._engine_error(f"inspecting image {image_id}", exc) from None
        mine: set[str] = set()
        for ref in _strings(data.get("RepoTags") if isinstance(data, dict) else None):
            split = _split_tag(ref)
            if split is None:
                continue
            if split[0] == self._repo:
                mine.add(split[1])
        digests = _strings(data.get("RepoDigests") if isinstance(data, dict) else None)
        self._digest_refs[image_id] = tuple(d for d in digests if d.partition("@")[0] == self._repo)
        return frozenset(mine)

    def delete(self, version: Version) -> DeleteResult:
        """Remove the version's references of this repository; never forced.

        Tags go by ``REPO:tag``; an untagged leftover goes by its ``REPO@sha256:...``
        references. The engine deletes the image with its last reference; an image that
        another repository still references is only untagged here.
        """
        image_id = version.key or version.digest
        refs = [f"{self._repo}:{tag}" for tag in sorted(version.tags)]
        if not refs:
            refs = list(self._digest_refs.get(image_id, ()))
        if not refs:
            return DeleteResult(
                version,
                DeleteStatus.REFUSED,
                f"no reference of {self._repo} left on image {image_id}; not removed",
            )
        removed: list[str] = []
        gone = 0
        image_deleted = False
        for ref in refs:
            try:
                self._stats.count("remove")
                records = self._api.remove_image(ref, force=False, noprune=False)
            except Exception as exc:
                code = _status_code(exc)
                if code == 404:
                    gone += 1
                    continue
                done = f" (already untagged: {', '.join(removed)})" if removed else ""
                if code == 409:
                    user = self._user_of(image_id)
                    who = f"in use by {user}" if user else _explanation(exc)
                    return DeleteResult(
                        version, DeleteStatus.REFUSED, f"{ref}: {who}; not removed{done}"
                    )
                return DeleteResult(
                    version,
                    DeleteStatus.FAILED,
                    f"{ref}: the engine answered {code or 'no response'}: "
                    f"{_explanation(exc)}{done}",
                )
            removed.append(ref)
            for record in records if isinstance(records, list) else []:
                if isinstance(record, dict) and record.get("Deleted") == image_id:
                    image_deleted = True
        if not removed:
            return DeleteResult(version, DeleteStatus.ALREADY_GONE, "no such reference any more")
        if image_deleted:
            return DeleteResult(
                version, DeleteStatus.DELETED, f"removed {', '.join(removed)} and the image"
            )
        return self._after_untag(version, image_id, removed)

    # -- protected images -------------------------------------------------------------

    def in_use(self) -> dict[str, str]:
        """Image id -> "used by container NAME (STATE)" for every container, in any state."""
        containers = self._call(
            "containers", "listing containers", lambda: self._api.containers(all=True)
        )
        users: dict[str, list[str]] = {}
        for entry in containers if isinstance(containers, list) else []:
            image_id = entry.get("ImageID") if isinstance(entry, dict) else None
            if not isinstance(image_id, str):
                continue
            names = _strings(entry.get("Names"))
            name = names[0].lstrip("/") if names else str(entry.get("Id", "?"))[:12]
            state = entry.get("State") or "unknown"
            users.setdefault(image_id, []).append(f"{name} ({state})")
        return {
            image_id: ("used by container " if len(who) == 1 else "used by containers ")
            + ", ".join(sorted(who))
            for image_id, who in users.items()
        }

    def protected(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The ``protected`` input of the planner for this host.

        Every image a container uses, plus ``extra`` (what the deploy ledger says is
        current or the rollback target). Keys of ``extra`` may be tags, image ids, or
        registry manifest digests (``sha256:...`` as pulled, or ``REPO@sha256:...``):
        a registry digest is mapped to the local image that carries it.
        Call after :meth:`versions` so registry digests can be mapped.
        """
        protected = self.in_use()
        by_registry_digest: dict[str, str] = {}
        for image_id, refs in self._digest_refs.items():
            for ref in refs:
                by_registry_digest[ref.partition("@")[2]] = image_id
        for given, reason in (extra or {}).items():
            name, at, digest = given.rpartition("@")
            key = digest if at and name == self._repo else given
            protected.setdefault(key, reason)
            mapped = by_registry_digest.get(key)
            if mapped is not None:
                protected.setdefault(mapped, reason)
        return protected

    # -- helpers ----------------------------------------------------------------------

    def _call(self, kind: str, action: str, call: Callable[[], Any]) -> Any:
        self._stats.count(kind)
        try:
            return call()
        except Exception as exc:
            raise self._engine_error(action, exc) from None

    def _engine_error(self, action: str, exc: BaseException) -> RegistryError:
        code = _status_code(exc)
        where = f"answered {code}" if code else "did not answer"
        return RegistryError(
            f"the Docker engine {where} while {action}: {_explanation(exc)}",
            hint=_ENGINE_HINT if code is None else "rerun; the engine's log says more",
        )

    def _user_of(self, image_id: str) -> str | None:
        try:
            users = self.in_use()
        except RegistryError:
            return None
        return users.get(image_id, "").removeprefix("used by ") or None

    def _after_untag(self, version: Version, image_id: str, removed: list[str]) -> DeleteResult:
        """Our references are gone but the engine did not report the image deleted."""
        try:
            self._stats.count("inspect")
            data = self._api.inspect_image(image_id)
        except Exception as exc:
            if _status_code(exc) == 404:
                return DeleteResult(
                    version, DeleteStatus.DELETED, f"removed {', '.join(removed)} and the image"
                )
            return DeleteResult(
                version,
                DeleteStatus.FAILED,
                f"removed {', '.join(removed)}; the image could not be inspected: "
                f"{_explanation(exc)}",
            )
        others = _strings(data.get("RepoTags")) + _strings(data.get("RepoDigests"))
        others = [ref for ref in others if not ref.startswith("<none>")]
        if others:
            return DeleteResult(
                version,
                DeleteStatus.DELETED,
                f"removed {', '.join(removed)}; the image stays: other repositories still "
                f"reference it ({', '.join(sorted(others))})",
            )
        # No reference left and the engine kept it: remove it by id, still never forced
        # (the engine refuses when a container uses it).
        try:
            self._stats.count("remove")
            self._api.remove_image(image_id, force=False, noprune=False)
        except Exception as exc:
            code = _status_code(exc)
            if code == 404:
                return DeleteResult(
                    version, DeleteStatus.DELETED, f"removed {', '.join(removed)} and the image"
                )
            status = DeleteStatus.REFUSED if code == 409 else DeleteStatus.FAILED
            return DeleteResult(
                version,
                status,
                f"removed {', '.join(removed)}; the image itself was not removed: "
                f"{_explanation(exc)}",
            )
        return DeleteResult(
            version, DeleteStatus.DELETED, f"removed {', '.join(removed)} and the image"
        )
