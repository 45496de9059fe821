"""A fake of GitHub's Deployments REST endpoints, served by the GHCR emulator.

:func:`install` registers these routes on a running or not-yet-started
:class:`~tests.emulators.ghcr.GhcrEmulator` (under its ``api_url``):

* ``GET  /repos/{owner}/{repo}/deployments`` — filters ``environment``, ``ref``, ``sha``,
  ``task``; newest first; ``per_page`` (default 30, max 100) and ``page`` with a ``Link``
  header (``prev``/``next``/``last``/``first``, absolute URLs keeping the query).
* ``POST /repos/{owner}/{repo}/deployments`` — ``ref`` required; ``task`` (default
  "deploy"), ``environment`` (default "production"), ``payload`` stored as given (an
  object or a string), ``description``, ``transient_environment`` (default false),
  ``production_environment`` (default: true for "production"), ``auto_merge``,
  ``required_contexts``; answers 201 with the deployment.
* ``GET  /repos/{owner}/{repo}/deployments/{id}``
* ``GET  /repos/{owner}/{repo}/deployments/{id}/statuses`` — newest first, paginated.
* ``POST /repos/{owner}/{repo}/deployments/{id}/statuses`` — ``state`` one of error,
  failure, inactive, in_progress, queued, pending, success (else 422); ``auto_inactive``
  (default true): a ``success`` adds an ``inactive`` status to every earlier deployment of
  the same environment that is neither transient nor a production environment and whose
  statuses include ``success``, as GitHub documents.

Shapes follow GitHub's documented objects (``url``, ``id``, ``node_id``, ``sha``, ``ref``,
``task``, ``payload``, ``original_environment``, ``environment``, ``description``,
``creator``, ``created_at``, ``updated_at``, ``statuses_url``, ``repository_url``,
``transient_environment``, ``production_environment``; statuses with ``state``,
``description``, ``environment``, ``target_url``, ``log_url``, ``deployment_url``...).
Every request needs a token the emulator knows (401 otherwise); writes need the token's
login to be a writer of the repository (``add_repo(..., writers=...)``; default: anyone).

Tests seed history through the Python API: :meth:`DeploymentsFake.add_deployment` and
:meth:`DeploymentsFake.add_status`, with explicit times when the order matters.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from tests.emulators.ghcr import GhcrEmulator, Request, Response, rest_error

STATES = frozenset({"error", "failure", "inactive", "in_progress", "queued", "pending", "success"})
_REPO = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"


@dataclass
class Status:
    id: int
    state: str
    description: str
    environment: str
    target_url: str
    log_url: str
    environment_url: str
    creator: str
    created_at: datetime


@dataclass
class Deployment:
    id: int
    repo: str  # owner/name, as added
    ref: str
    sha: str
    task: str
    payload: Any
    environment: str
    original_environment: str
    description: str | None
    creator: str
    created_at: datetime
    updated_at: datetime
    transient_environment: bool
    production_environment: bool
    auto_merge: bool
    required_contexts: list[str] | None
    statuses: list[Status] = field(default_factory=list)  # oldest first


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


class DeploymentsFake:
    """State and handlers of the fake; see :func:`install`."""

    def __init__(self, emu: GhcrEmulator, *, start: datetime | None = None) -> None:
        self.emu = emu
        self._repos: dict[str, set[str] | None] = {}
        self._names: dict[str, str] = {}
        self._deployments: dict[str, list[Deployment]] = {}
        self._ids = 100
        self._status_ids = 5000
        # Each object created gets a time one second after the previous one, so order
        # never depends on the wall clock's resolution.
        self._time = start or datetime(2026, 1, 1, tzinfo=UTC)
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []

    # -- Python API ----------------------------------------------------------------

    def add_repo(self, full_name: str, *, writers: set[str] | None = None) -> None:
        with self.emu.lock:
            key = full_name.lower()
            self._repos[key] = writers
            self._names.setdefault(key, full_name)
            self._deployments.setdefault(key, [])

    def _tick(self, when: datetime | None) -> datetime:
        if when is not None:
            self._time = max(self._time, when)
            return when
        self._time += timedelta(seconds=1)
        return self._time

    def add_deployment(
        self,
        repo: str,
        *,
        environment: str,
        payload: Any,
        ref: str = "main",
        task: str = "deploy",
        creator: str = "octo",
        created_at: datetime | None = None,
        transient: bool = False,
        production: bool | None = None,
        description: str | None = None,
    ) -> int:
        with self.emu.lock:
            key = repo.lower()
            if key not in self._repos:
                self.add_repo(repo)
            self._ids += 1
            when = self._tick(created_at)
            sha = (
                ref
                if len(ref) == 40 and all(c in "0123456789abcdef" for c in ref)
                else (hashlib.sha1(ref.encode(), usedforsecurity=False).hexdigest())
            )
            deployment = Deployment(
                id=self._ids,
                repo=repo,
                ref=ref,
                sha=sha,
                task=task,
                payload=payload,
                environment=environment,
                original_environment=environment,
                description=description,
                creator=creator,
                created_at=when,
                updated_at=when,
                transient_environment=transient,
                production_environment=(
                    environment == "production" if production is None else production
                ),
                auto_merge=True,
                required_contexts=None,
            )
            self._deployments[key].append(deployment)
            return deployment.id

    def add_status(
        self,
        repo: str,
        deployment_id: int,
        state: str,
        *,
        description: str = "",
        creator: str = "octo",
        auto_inactive: bool = True,
        created_at: datetime | None = None,
        target_url: str = "",
    ) -> int:
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        with self.emu.lock:
            deployment = self.deployment(repo, deployment_id)
            if deployment is None:
                raise KeyError(deployment_id)
            when = self._tick(created_at)
            self._status_ids += 1
            new_id = self._status_ids
            deployment.statuses.append(
                Status(
                    id=self._status_ids,
                    state=state,
                    description=description,
                    environment=deployment.environment,
                    target_url=target_url,
                    log_url=target_url,
                    environment_url="",
                    creator=creator,
                    created_at=when,
                )
            )
            deployment.updated_at = when
            if state == "success" and auto_inactive:
                self._inactivate_earlier(repo, deployment, creator, when)
            return new_id

    def _inactivate_earlier(
        self, repo: str, deployment: Deployment, creator: str, when: datetime
    ) -> None:
        for other in self._deployments[repo.lower()]:
            if other.id >= deployment.id or other.environment != deployment.environment:
                continue
            if other.transient_environment or other.production_environment:
                continue
            states = [s.state for s in other.statuses]
            if "success" not in states or (states and states[-1] == "inactive"):
                continue
            self._status_ids += 1
            other.statuses.append(
                Status(
                    self._status_ids, "inactive", "", other.environment, "", "", "", creator, when
                )
            )
            other.updated_at = when

    def deployments(self, repo: str) -> list[Deployment]:
        """Every deployment of ``repo``, oldest first (the live objects)."""
        with self.emu.lock:
            return list(self._deployments.get(repo.lower(), []))

    def deployment(self, repo: str, deployment_id: int) -> Deployment | None:
        with self.emu.lock:
            for deployment in self._deployments.get(repo.lower(), []):
                if deployment.id == deployment_id:
                    return deployment
            return None

    # -- JSON shapes ---------------------------------------------------------------

    def _user(self, login: str) -> dict[str, Any]:
        api = self.emu.api_url
        return {
            "login": login,
            "id": abs(hash(login)) % 10_000_000,
            "node_id": f"U_{login}",
            "avatar_url": "",
            "url": f"{api}/users/{login}",
            "html_url": f"https://github.com/{login}",
            "type": "User",
            "site_admin": False,
        }

    def _deployment_json(self, d: Deployment) -> dict[str, Any]:
        api = self.emu.api_url
        url = f"{api}/repos/{d.repo}/deployments/{d.id}"
        return {
            "url": url,
            "id": d.id,
            "node_id": f"DE_{d.id}",
            "sha": d.sha,
            "ref": d.ref,
            "task": d.task,
            "payload": d.payload,
            "original_environment": d.original_environment,
            "environment": d.environment,
            "description": d.description,
            "creator": self._user(d.creator),
            "created_at": _iso(d.created_at),
            "updated_at": _iso(d.updated_at),
            "statuses_url": f"{url}/statuses",
            "repository_url": f"{api}/repos/{d.repo}",
            "transient_environment": d.transient_environment,
            "production_environment": d.production_environment,
        }

    def _status_json(self, d: Deployment, s: Status) -> dict[str, Any]:
        api = self.emu.api_url
        url = f"{api}/repos/{d.repo}/deployments/{d.id}"
        return {
            "url": f"{url}/statuses/{s.id}",
            "id": s.id,
            "node_id": f"DES_{s.id}",
            "state": s.state,
            "creator": self._user(s.creator),
            "description": s.description,
            "environment": s.environment,
            "target_url": s.target_url,
            "created_at": _iso(s.created_at),
            "updated_at": _iso(s.created_at),
            "deployment_url": url,
            "repository_url": f"{api}/repos/{d.repo}",
            "environment_url": s.environment_url,
            "log_url": s.log_url,
        }

    # -- handlers ------------------------------------------------------------------

    def _repo(self, req: Request, *, write: bool = False) -> str:
        token = req.require_token()
        self.requests.append((req.method, req.path, dict(req.query)))
        key = f"{req.match['owner']}/{req.match['repo']}".lower()
        if key not in self._repos:
            raise rest_error(404, "Not Found")
        writers = self._repos[key]
        if write and writers is not None and token.login not in writers:
            raise rest_error(403, "Resource not accessible by integration")
        return key

    def _page(self, req: Request, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
        per_page = min(100, max(1, _int(req.param("per_page"), 30)))
        page = max(1, _int(req.param("page"), 1))
        last = max(1, math.ceil(len(items) / per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        pairs = [(k, v) for k, values in req.query.items() for v in values if k != "page"]

        def url(target: int) -> str:
            return f"{self.emu.api_url}{req.path}?{urlencode([*pairs, ('page', str(target))])}"

        parts: list[str] = []
        if page > 1:
            parts.append(f'<{url(min(page - 1, last))}>; rel="prev"')
        if page < last:
            parts.append(f'<{url(page + 1)}>; rel="next"')
            parts.append(f'<{url(last)}>; rel="last"')
        if page > 1:
            parts.append(f'<{url(1)}>; rel="first"')
        return chunk, ({"Link": ", ".join(parts)} if parts else {})

    def _find(self, req: Request, key: str) -> Deployment:
        wanted = int(req.match["id"])
        for deployment in self._deployments[key]:
            if deployment.id == wanted:
                return deployment
        raise rest_error(404, "Not Found")

    def list_deployments(self, req: Request) -> Response:
        with self.emu.lock:
            key = self._repo(req)
            items = list(reversed(self._deployments[key]))
            for name in ("environment", "ref", "sha", "task"):
                value = req.param(name)
                if value is not None:
                    items = [d for d in items if getattr(d, name) == value]
            chunk, headers = self._page(req, items)
            return Response.json([self._deployment_json(d) for d in chunk], headers=headers)

    def create_deployment(self, req: Request) -> Response:
        with self.emu.lock:
            key = self._repo(req, write=True)
            body = req.json()
            if not isinstance(body, dict):
                raise rest_error(400, "Problems parsing JSON")
            ref = body.get("ref")
            if not isinstance(ref, str) or not ref:
                raise rest_error(422, 'Invalid request.\n\n"ref" wasn\'t supplied.')
            contexts = body.get("required_contexts")
            if contexts is not None and not isinstance(contexts, list):
                raise rest_error(422, "Invalid request: required_contexts must be an array")
            environment = body.get("environment", "production")
            payload = body.get("payload", {})
            if not isinstance(payload, dict | str):
                raise rest_error(422, "Invalid request: payload must be an object or a string")
            assert req.token is not None
            new_id = self.add_deployment(
                self._repos_name(key),
                environment=str(environment),
                payload=payload,
                ref=ref,
                task=str(body.get("task", "deploy")),
                creator=req.token.login,
                transient=bool(body.get("transient_environment", False)),
                production=body.get("production_environment"),
                description=body.get("description"),
            )
            deployment = self.deployment(key, new_id)
            assert deployment is not None
            deployment.auto_merge = bool(body.get("auto_merge", True))
            deployment.required_contexts = contexts
            return Response.json(self._deployment_json(deployment), 201)

    def _repos_name(self, key: str) -> str:
        return self._names.get(key, key)

    def get_deployment(self, req: Request) -> Response:
        with self.emu.lock:
            key = self._repo(req)
            return Response.json(self._deployment_json(self._find(req, key)))

    def list_statuses(self, req: Request) -> Response:
        with self.emu.lock:
            key = self._repo(req)
            deployment = self._find(req, key)
            items = list(reversed(deployment.statuses))
            chunk, headers = self._page(req, items)
            return Response.json([self._status_json(deployment, s) for s in chunk], headers=headers)

    def create_status(self, req: Request) -> Response:
        with self.emu.lock:
            key = self._repo(req, write=True)
            deployment = self._find(req, key)
            body = req.json()
            state = body.get("state") if isinstance(body, dict) else None
            if state not in STATES:
                raise rest_error(
                    422,
                    f"Validation Failed: state {state!r} is not one of "
                    + ", ".join(sorted(STATES)),
                )
            assert req.token is not None
            target = body.get("log_url") or body.get("target_url") or ""
            status_id = self.add_status(
                deployment.repo,
                deployment.id,
                state,
                description=str(body.get("description") or ""),
                creator=req.token.login,
                auto_inactive=bool(body.get("auto_inactive", True)),
                target_url=str(target),
            )
            status = next(s for s in deployment.statuses if s.id == status_id)
            return Response.json(self._status_json(deployment, status), 201)


def install(emu: GhcrEmulator, **options: Any) -> DeploymentsFake:
    """Register the Deployments routes on ``emu``; the fake is also ``emu.extensions``."""
    fake = DeploymentsFake(emu, **options)
    emu.extensions["deployments"] = fake
    emu.add_route(
        "GET", _REPO + "/deployments", fake.list_deployments, kind="rest.deployments.list"
    )
    emu.add_route(
        "POST", _REPO + "/deployments", fake.create_deployment, kind="rest.deployments.create"
    )
    emu.add_route(
        "GET",
        _REPO + r"/deployments/(?P<id>[0-9]+)",
        fake.get_deployment,
        kind="rest.deployments.get",
    )
    emu.add_route(
        "GET",
        _REPO + r"/deployments/(?P<id>[0-9]+)/statuses",
        fake.list_statuses,
        kind="rest.deployments.statuses.list",
    )
    emu.add_route(
        "POST",
        _REPO + r"/deployments/(?P<id>[0-9]+)/statuses",
        fake.create_status,
        kind="rest.deployments.statuses.create",
    )
    return fake
