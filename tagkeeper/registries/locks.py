"""Images a registry marks immutable or locked, where its API shows it.

A registry that refuses to delete an image answers the ``DELETE`` with a refusal, and the
executor plans around it; knowing the lock *before* planning lets the plan keep the image
as a protected root and say why. What is detected, by product:

- **Harbor** (detected by its ``/v2/`` challenge, ``service="harbor-registry"``): tag
  immutability rules. The artifact API (``GET /api/v2.0/projects/{project}/repositories/
  {repository}/artifacts?with_tag=true&with_immutable_status=true``, basic auth with the
  registry credentials, anonymous for a public project) marks each tag ``immutable``; an
  artifact with an immutable tag is locked (Harbor refuses to delete it).
- **Azure Container Registry** (detected by an ``*.azurecr.io``, ``.cn`` or ``.us`` host, or
  the ``x-ms-correlation-request-id`` header of its ``/v2/`` answer): locks set with
  ``az acr repository update --write-enabled false`` or ``--delete-enabled false``. The
  registry's API (``GET /acr/v1/{repository}/_tags`` and ``/_manifests``, the registry's own
  token) gives each tag's and manifest's ``changeableAttributes``; ``deleteEnabled`` or
  ``writeEnabled`` false is a lock.

Not detected: Zot's retention policies (``keepTags``) and other server-side rules that no
API shows, repository-level locks of ACR, and Harbor's project-level retention
policies (Harbor applies them itself). A lock that is not detected still holds: the
registry refuses the ``DELETE`` and the run reports it (exit 6).

A lock API that cannot be read is a warning, not an error: nothing is deleted that the
registry would not refuse anyway. Pure except for the ``get`` function it is handed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from tagkeeper.untrusted import neutralise

__all__ = ["ACR", "HARBOR", "Answer", "Locks", "detect", "read_locks"]

HARBOR = "Harbor"
ACR = "Azure Container Registry"
_ACR_HOSTS = (".azurecr.io", ".azurecr.cn", ".azurecr.us")
_PAGE = 100
_MAX_PAGES = 100  # 10,000 artifacts or tags: a registry that claims more is not believed


@dataclass(frozen=True)
class Answer:
    """What ``get`` returns: the status, the decoded JSON body (``None`` when it is not
    JSON) and the ``Link`` header's next path, if any."""

    status: int
    body: Any
    next_path: str | None = None


Get = Callable[[str, str], Answer]
"""``get(path, kind)``: a ``GET`` of ``path`` (from the registry's root, query included)
with the credentials the product's API takes; ``kind`` names it in request counts."""


@dataclass
class Locks:
    """Locked digests (digest -> why) and what could not be read."""

    product: str | None = None
    locked: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def detect(host: str, ping_headers: Mapping[str, str]) -> str | None:
    """The product a registry is, from its host and its ``/v2/`` answer's headers."""
    headers = {k.lower(): v for k, v in ping_headers.items()}
    challenge = headers.get("www-authenticate", "").lower()
    if 'service="harbor-registry"' in challenge:
        return HARBOR
    name = host.rpartition("@")[2].split(":", 1)[0].lower()
    if name.endswith(_ACR_HOSTS) or "x-ms-correlation-request-id" in headers:
        return ACR
    return None


def read_locks(product: str | None, repository: str, get: Get) -> Locks:
    """The locked digests of ``repository`` (``project/name`` on Harbor)."""
    locks = Locks(product)
    if product == HARBOR:
        _harbor(repository, get, locks)
    elif product == ACR:
        _acr(repository, get, locks)
    return locks


def _pages(first: str, get: Get, kind: str, locks: Locks) -> list[Any] | None:
    """The bodies of ``first`` and the pages its ``Link`` headers lead to; ``None`` (and a
    warning) when one cannot be read."""
    bodies: list[Any] = []
    path: str | None = first
    while path is not None and len(bodies) < _MAX_PAGES:
        answer = get(path, kind)
        if answer.status != 200 or answer.body is None:
            locks.warnings.append(
                f"the {locks.product} API did not list the locked images (answered "
                f"{answer.status}); locks are not shown in the plan, and the registry refuses "
                "to delete what they lock"
            )
            return None
        bodies.append(answer.body)
        path = answer.next_path
    return bodies


def _harbor(repository: str, get: Get, locks: Locks) -> None:
    project, sep, name = repository.partition("/")
    if not sep:
        return  # Harbor names are always project/repository
    encoded = quote(quote(name, safe=""), safe="")  # Harbor: '/' in a name as %252F
    first = (
        f"/api/v2.0/projects/{quote(project, safe='')}/repositories/{encoded}/artifacts"
        f"?with_tag=true&with_immutable_status=true&page_size={_PAGE}&page=1"
    )
    bodies = _pages(first, get, "harbor-artifacts", locks)
    for body in bodies or ():
        for artifact in body if isinstance(body, list) else ():
            if not isinstance(artifact, dict):
                continue
            digest = artifact.get("digest")
            tags = artifact.get("tags") or []
            immutable = sorted(
                str(t.get("name"))
                for t in tags
                if isinstance(t, dict) and t.get("immutable") is True
            )
            if isinstance(digest, str) and immutable:
                shown = ", ".join(neutralise(t, limit=60) for t in immutable[:3])
                locks.locked[digest] = (
                    f"immutable tag {shown} (a Harbor tag immutability rule): the registry "
                    "refuses to delete it"
                )


def _acr(repository: str, get: Get, locks: Locks) -> None:
    base = f"/acr/v1/{quote(repository, safe='/')}"
    for kind, path, key in (
        ("acr-tags", f"{base}/_tags?n={_PAGE}", "tags"),
        ("acr-manifests", f"{base}/_manifests?n={_PAGE}", "manifests"),
    ):
        bodies = _pages(path, get, kind, locks)
        for body in bodies or ():
            items = body.get(key) if isinstance(body, dict) else None
            for item in items if isinstance(items, list) else ():
                _acr_item(item, kind, locks)


def _acr_item(item: Any, kind: str, locks: Locks) -> None:
    if not isinstance(item, dict):
        return
    digest = item.get("digest")
    attributes = item.get("changeableAttributes")
    if not isinstance(digest, str) or not isinstance(attributes, dict):
        return
    off = [name for name in ("deleteEnabled", "writeEnabled") if attributes.get(name) is False]
    if not off:
        return
    what = (
        f"tag {neutralise(str(item.get('name')), limit=60)}" if kind == "acr-tags" else "manifest"
    )
    settings = " and ".join(f"{name}=false" for name in off)
    locks.locked.setdefault(
        digest,
        f"locked in Azure Container Registry ({what}: {settings}): the registry "
        "refuses to delete it",
    )


def decode(text: bytes) -> Any:
    """JSON of an answer, ``None`` when it is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return None
