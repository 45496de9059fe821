"""GitHub Deployments as a shared deploy history (PyGithub).

Teams that deploy from several hosts keep their history in the repository's
Deployments: each deploy tagkeeper records is one deployment of an environment, with
this payload (a JSON object; unknown keys are ignored when reading)::

    {"tagkeeper": 1, "image": "ghcr.io/o/app", "tag": "v1.4.0",
     "digest": "sha256:...", "rollback": false, "ci_run_url": "https://..."}

``image`` is the repository without tag. Payloads written by other tools are read when
``image`` holds a full reference (``ghcr.io/o/app:v1.4.0``, optionally ``@digest``) and
``tag`` is absent. A payload sent as a JSON string is decoded.

Anyone with ``deployments: write`` can create a deployment, so a payload is outside text:
one whose tag is not an image tag, or whose digest is not ``sha256:`` and 64 lowercase
hex digits, is never taken as history (tagkeeper never writes one): it is skipped, and
:attr:`GitHubDeployments.refused` says which deployment and why, never echoing it.

A deployment's status is read from its status history, newest first, ignoring
``inactive`` (GitHub adds it to earlier deployments when a newer one succeeds):
the newest other state decides: ``success`` -> succeeded, ``failure``/``error`` ->
failed (``rolled_back`` when its description starts with "rolled back"),
``queued``/``pending``/``in_progress`` or no status -> started.

Writing: a ``started`` deploy creates the deployment (``auto_merge=False``,
``required_contexts=[]``, ``transient_environment=False``) with an ``in_progress``
status; finishing posts ``success`` or ``failure`` on the newest open deployment of that
image and tag (or creates one when there is none); ``rolled_back`` posts ``failure``
with the description "rolled back by tagkeeper" on the newest successful one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tagkeeper.errors import AuthError, RegistryError, UsageError
from tagkeeper.gate.rules import validate_env_name
from tagkeeper.refs import SHA256_DIGEST_RE, is_valid_tag, parse_reference
from tagkeeper.rollback.resolve import DeployRecord, DeployStatus
from tagkeeper.secret import Secret, token_from_env

PAYLOAD_VERSION = 1
ROLLED_BACK_DESCRIPTION = "rolled back by tagkeeper"
OPEN_STATES = frozenset({"queued", "pending", "in_progress"})
STATES = frozenset({"error", "failure", "inactive", "in_progress", "queued", "pending", "success"})
DEFAULT_API_URL = "https://api.github.com"
# How many recent deployments of an environment are searched for the open one to finish.
FINISH_SCAN = 100


@dataclass(frozen=True, slots=True)
class PayloadImage:
    repository: str
    tag: str
    digest: str | None
    rollback: bool
    ci_run_url: str | None


def make_payload(
    repository: str,
    tag: str,
    digest: str | None,
    *,
    rollback: bool = False,
    ci_run_url: str | None = None,
) -> dict[str, Any]:
    """The deployment payload tagkeeper writes."""
    return {
        "tagkeeper": PAYLOAD_VERSION,
        "image": repository,
        "tag": tag,
        "digest": digest,
        "rollback": rollback,
        "ci_run_url": ci_run_url,
    }


@dataclass(frozen=True, slots=True)
class RefusedPayload:
    """A payload that names an image, with a tag or digest that cannot be trusted."""

    repository: str
    problem: str


def read_payload(payload: object) -> PayloadImage | None:
    """The image a deployment payload names, or ``None`` when it names none (or a refused
    one: see :func:`parse_payload`)."""
    image = parse_payload(payload)
    return image if isinstance(image, PayloadImage) else None


_URL_RE = re.compile(r"https?://[\x21-\x7e]+")


def parse_payload(payload: object) -> PayloadImage | RefusedPayload | None:
    """The image a deployment payload names; ``None`` when it names none.

    :class:`RefusedPayload` when it names an image whose tag is not a valid image tag,
    or whose digest (``digest``, or the ``@digest`` of ``image``) is not ``sha256:`` and
    64 lowercase hex digits: the digest a rollback would run, print and write to
    ``$GITHUB_OUTPUT``. A ``ci_run_url`` that is not a plain http(s) URL is dropped.
    """
    if isinstance(payload, str):
        try:
            payload = json.loads(payload) if payload.strip() else {}
        except json.JSONDecodeError:
            return None
    if not isinstance(payload, Mapping):
        return None
    image = payload.get("image")
    if not isinstance(image, str) or not image:
        return None
    tag = payload.get("tag")
    digest = payload.get("digest")
    try:
        ref = parse_reference(image)
    except UsageError:
        return None
    if tag is None or tag == "":
        if ref.tag is None:
            return None
        tag = ref.tag
    if not isinstance(tag, str) or not is_valid_tag(tag):
        return RefusedPayload(ref.repository, "its tag is not a valid image tag")
    if digest is None or digest == "":
        digest = ref.digest
    if digest is not None and not (isinstance(digest, str) and SHA256_DIGEST_RE.fullmatch(digest)):
        return RefusedPayload(
            ref.repository, "its digest is not sha256: followed by 64 lowercase hex digits"
        )
    ci = payload.get("ci_run_url")
    return PayloadImage(
        repository=ref.repository,
        tag=tag,
        digest=digest,
        rollback=payload.get("rollback") is True,
        ci_run_url=ci if isinstance(ci, str) and _URL_RE.fullmatch(ci) else None,
    )


def status_from_states(states: list[tuple[str, str]]) -> DeployStatus:
    """A deploy status from ``(state, description)`` pairs, newest first."""
    for state, description in states:
        if state == "inactive":
            continue
        if state == "success":
            return DeployStatus.SUCCEEDED
        if state in ("failure", "error"):
            if description.lower().startswith("rolled back"):
                return DeployStatus.ROLLED_BACK
            return DeployStatus.FAILED
        return DeployStatus.STARTED
    return DeployStatus.STARTED


_GITHUB_STATE = {
    DeployStatus.STARTED: "in_progress",
    DeployStatus.SUCCEEDED: "success",
    DeployStatus.FAILED: "failure",
    DeployStatus.ROLLED_BACK: "failure",
}


def _translate(exc: Exception, what: str, token: Secret | None) -> Exception:
    from github import GithubException

    if not isinstance(exc, GithubException):
        text = str(exc)
        if token is not None:
            text = token.scrub(text)
        return RegistryError(f"GitHub Deployments: {what} failed: {text}")
    data = exc.data if isinstance(exc.data, Mapping) else {}
    message = str(data.get("message") or exc.message or "").strip()
    if token is not None:
        message = token.scrub(message)
    status = exc.status
    if status == 401:
        return AuthError(
            f"GitHub Deployments: {what}: the token was refused (401 {message})",
            hint="check GITHUB_TOKEN / GH_TOKEN or --token",
        )
    if status in (403, 404):
        return AuthError(
            f"GitHub Deployments: {what}: {status} {message}",
            hint="the token needs the 'deployments' permission (read to list, write to "
            "record) on the repository, and --repo must name it as OWNER/NAME",
        )
    return RegistryError(f"GitHub Deployments: {what}: {status} {message}")


def _aware(value: datetime | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class GitHubDeployments:
    """Deploy history in one repository's GitHub Deployments.

    ``repo`` is a PyGithub ``Repository`` (see :func:`connect`), built by the caller.
    """

    name = "github"

    def __init__(self, repo: Any, *, token: Secret | None = None) -> None:
        self._repo = repo
        self._token = token
        # deployments of the repository read so far whose payload was refused, and why
        self.refused: list[str] = []

    def _record(self, deployment: Any, image: PayloadImage) -> DeployRecord:
        states = [(str(s.state), str(s.description or "")) for s in deployment.get_statuses()]
        status = status_from_states(states)
        creator = getattr(deployment, "creator", None)
        return DeployRecord(
            environment=str(deployment.environment),
            repository=image.repository,
            tag=image.tag,
            status=status,
            started_at=_aware(deployment.created_at),
            digest=image.digest,
            ended_at=_aware(deployment.updated_at) if status is not DeployStatus.STARTED else None,
            rollback=image.rollback,
            id=int(deployment.id),
            user=str(creator.login) if creator is not None else None,
            ci_run_url=image.ci_run_url,
            host=None,
            source="github",
        )

    def iter_history(self, repository: str, environment: str) -> Iterator[DeployRecord]:
        """Deploys of ``repository`` to ``environment``, newest first, fetched lazily."""
        try:
            for deployment in self._repo.get_deployments(environment=environment):
                image = parse_payload(deployment.payload)
                if image is None or image.repository != repository:
                    continue
                if isinstance(image, RefusedPayload):
                    self._refuse(deployment, image, environment)
                    continue
                yield self._record(deployment, image)
        except Exception as exc:
            raise _translate(exc, f"listing deployments of {environment}", self._token) from None

    def _refuse(self, deployment: Any, image: RefusedPayload, environment: str) -> None:
        message = (
            f"GitHub deployment #{int(deployment.id)} of {image.repository} to {environment} "
            f"is not used: {image.problem} (tagkeeper never writes such a payload; check who "
            "can create deployments in the repository)"
        )
        if message not in self.refused:
            self.refused.append(message)

    def history(self, repository: str, environment: str) -> list[DeployRecord]:
        return list(self.iter_history(repository, environment))

    def environments(self, repository: str) -> list[str]:
        """The environments of the newest deployments of ``repository`` (at most
        :data:`FINISH_SCAN` deployments are read), sorted."""
        found: set[str] = set()
        try:
            for count, deployment in enumerate(self._repo.get_deployments()):
                if count >= FINISH_SCAN:
                    break
                image = read_payload(deployment.payload)
                if image is not None and image.repository == repository:
                    found.add(str(deployment.environment))
        except Exception as exc:
            raise _translate(exc, "listing deployments", self._token) from None
        return sorted(found)

    def record(
        self,
        *,
        environment: str,
        repository: str,
        tag: str,
        status: DeployStatus,
        ref: str,
        digest: str | None = None,
        rollback: bool = False,
        ci_run_url: str | None = None,
    ) -> DeployRecord:
        """Record a deploy state (see the module docs for what each status does)."""
        validate_env_name(environment)
        try:
            return self._record_state(
                environment=environment,
                repository=repository,
                tag=tag,
                status=status,
                ref=ref,
                digest=digest,
                rollback=rollback,
                ci_run_url=ci_run_url,
            )
        except (AuthError, RegistryError, UsageError):
            raise
        except Exception as exc:
            raise _translate(exc, f"recording a deploy to {environment}", self._token) from None

    def _find(self, environment: str, repository: str, tag: str, wanted: DeployStatus) -> Any:
        for count, deployment in enumerate(self._repo.get_deployments(environment=environment)):
            if count >= FINISH_SCAN:
                return None
            image = read_payload(deployment.payload)
            if image is None or image.repository != repository or image.tag != tag:
                continue
            states = [(str(s.state), str(s.description or "")) for s in deployment.get_statuses()]
            if status_from_states(states) is wanted:
                return deployment
        return None

    def _record_state(
        self,
        *,
        environment: str,
        repository: str,
        tag: str,
        status: DeployStatus,
        ref: str,
        digest: str | None,
        rollback: bool,
        ci_run_url: str | None,
    ) -> DeployRecord:
        deployment: Any = None
        description = f"{repository}:{tag}"
        if status is DeployStatus.ROLLED_BACK:
            deployment = self._find(environment, repository, tag, DeployStatus.SUCCEEDED)
            description = ROLLED_BACK_DESCRIPTION
        elif status is not DeployStatus.STARTED:
            deployment = self._find(environment, repository, tag, DeployStatus.STARTED)
        if deployment is None:
            deployment = self._repo.create_deployment(
                ref=ref,
                task="deploy",
                auto_merge=False,
                required_contexts=[],
                payload=make_payload(
                    repository, tag, digest, rollback=rollback, ci_run_url=ci_run_url
                ),
                environment=environment,
                description=f"{repository}:{tag}"[:140],
                transient_environment=False,
            )
        kwargs: dict[str, Any] = {"description": description[:140]}
        if ci_run_url:
            kwargs["target_url"] = ci_run_url
        deployment.create_status(_GITHUB_STATE[status], **kwargs)
        image = read_payload(deployment.payload) or PayloadImage(
            repository, tag, digest, rollback, ci_run_url
        )
        return self._record(deployment, image)


def connect(
    repository: str,
    token: Secret,
    *,
    api_url: str = DEFAULT_API_URL,
    timeout: int = 30,
    per_page: int = 100,
    seconds_between_writes: float | None = 1.0,
) -> Any:
    """A PyGithub ``Repository`` for ``OWNER/NAME`` (no request is sent yet).

    Writes are spaced ``seconds_between_writes`` apart, as GitHub asks of integrations.
    """
    import github
    from github import Auth

    from tagkeeper.transport import check_base_url

    if repository.count("/") != 1 or not all(repository.split("/")):
        raise UsageError(
            f"{repository!r} is not a GitHub repository name",
            hint="use OWNER/NAME (--repo, or $GITHUB_REPOSITORY)",
        )
    if not token:
        raise AuthError(
            "GitHub Deployments need a token",
            hint="set GITHUB_TOKEN or GH_TOKEN, or pass --token",
        )
    base = check_base_url(api_url, what="the GitHub API URL")
    client = github.Github(
        auth=Auth.Token(token.reveal()),
        base_url=base,
        timeout=timeout,
        per_page=per_page,
        retry=3,
        seconds_between_requests=None,
        seconds_between_writes=seconds_between_writes,
        lazy=True,
    )
    return client.get_repo(repository)


def repository_and_token(
    environ: Mapping[str, str],
    *,
    repo: str | None = None,
    token: str | None = None,
    api_url: str | None = None,
) -> tuple[str, Secret, str]:
    """Repository, token and API URL from flags, else the usual GitHub variables."""
    name = repo or environ.get("GITHUB_REPOSITORY", "")
    if not name:
        raise UsageError(
            "no GitHub repository given for GitHub Deployments",
            hint="pass --repo OWNER/NAME or set GITHUB_REPOSITORY",
        )
    secret = token_from_env(token, environ) or Secret("")
    url = api_url or environ.get("GITHUB_API_URL") or DEFAULT_API_URL
    return name, secret, url
