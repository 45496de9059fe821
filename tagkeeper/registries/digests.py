"""What a tag points at now: for ``deploy``, ``rollback`` and ``previous --digest``.

A deploy host needs read access only. :class:`RegistryDigests` resolves ``repo:tag`` with
one manifest ``HEAD`` through the registry backends' shared ``/v2`` client
(:meth:`~tagkeeper.inventory.Backend.resolve_tag`), never by listing the repository and
never through the GitHub REST API:

- on ``ghcr.io``: with the GitHub token when there is one (``--token``, ``GITHUB_TOKEN``),
  else with Docker's credentials for ghcr.io (``docker login``: ``config.json``, its
  credential helpers), else anonymously (a public package);
- on any other registry: with the credentials the OCI backend finds (flags, environment,
  Docker's ``config.json``), or anonymously.

When the registry cannot answer (down, or the credentials cannot read the image), the
digest the local engine recorded when it pulled the image (``RepoDigests``) is used, and
:attr:`RegistryDigests.notes` says so. A tag the registry says does not exist is a
:class:`~tagkeeper.errors.UsageError`; any other failure, with no pulled image to fall
back on, is a :class:`DigestUnknown` (a :class:`~tagkeeper.errors.RegistryError`: a
deploy goes on by tag unless ``--require-digest``).

:func:`check_recorded_digest` checks a digest that came from deploy history someone else
can write (GitHub Deployments) before a rollback runs it.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any, Literal

from tagkeeper.errors import AuthError, RateLimited, RegistryError, UsageError
from tagkeeper.untrusted import neutralise

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from tagkeeper.inventory import Backend
    from tagkeeper.refs import ImageRef
    from tagkeeper.registries.factory import BackendOptions

SHA256_FORM = re.compile(r"sha256:[0-9a-f]{64}")


class DigestUnknown(RegistryError):
    """Neither the registry nor the local engine could say what a tag points at."""


class RegistryDigests:
    """A digest resolver (``resolve(ref) -> digest``) over the registries and the engine.

    ``options`` say how to reach the registries (token, API and registry URLs, registry
    credentials: the command's flags and configuration); ``client`` is the HTTP client.
    ``engine`` returns a Docker client for the fallback (``None``: no fallback), called
    only when needed; an engine that cannot be reached is no fallback.
    """

    def __init__(
        self,
        options: BackendOptions,
        client: httpx.Client,
        *,
        engine: Callable[[], Any] | None = None,
    ) -> None:
        self._options = options
        self._client = client
        self._engine = engine
        self._backends: dict[str, Backend] = {}
        self.notes: list[str] = []

    def resolve(self, ref: ImageRef) -> str:
        """The digest ``ref``'s tag points at now (see the module docstring)."""
        if ref.tag is None:
            raise UsageError(f"{ref} names no tag to resolve")
        try:
            digest = self.from_registry(ref.repository, ref.tag)
        except (RegistryError, AuthError, RateLimited) as exc:
            pulled = self._pulled(ref.repository, ref.tag)
            if pulled is None:
                todo = f"; {exc.hint}" if exc.hint else ""
                raise DigestUnknown(
                    f"the registry did not say ({exc.message}{todo}), and the local engine "
                    "has not pulled it",
                    hint=exc.hint,
                ) from None
            self.notes.append(
                f"{ref}: the registry did not say its digest ({exc.message}); using the "
                f"digest the local engine recorded when it pulled it ({pulled})"
            )
            return pulled
        if digest is None:
            raise UsageError(
                f"{ref} does not exist in the registry",
                hint="push it first, check the tag, or pass --no-resolve-digest to deploy an "
                "image that only exists on the host",
            )
        return digest

    def from_registry(self, repository: str, tag: str) -> str | None:
        """One manifest ``HEAD`` for ``repository:tag`` (``None``: no such tag)."""
        return self._backend(repository).resolve_tag(tag)

    def exists(self, repository: str, digest: str) -> bool:
        """Whether the registry has the manifest ``digest`` (one ``HEAD``)."""
        from tagkeeper.registries.backend import RegistryBackend

        backend = self._backend(repository)
        if not isinstance(backend, RegistryBackend):  # pragma: no cover - kind is None
            raise UsageError(f"{repository}: a registry image is needed")
        return backend.registry.exists(digest)

    def _backend(self, repository: str) -> Backend:
        from tagkeeper.registries.factory import open_backend

        found = self._backends.get(repository)
        if found is None:
            options = dataclasses.replace(self._options, kind=None)
            found = open_backend(repository, options, self._client)
            self._backends[repository] = found
        return found

    def _pulled(self, repository: str, tag: str) -> str | None:
        if self._engine is None:
            return None
        from tagkeeper.registries.local import pulled_digest

        try:
            return pulled_digest(self._engine(), repository, tag)
        except (RegistryError, UsageError):
            return None


def check_digest_form(digest: str, *, source: str) -> str:
    """``digest`` when it has the form a deploy may run (``sha256:`` and 64 lowercase hex),
    else :class:`RegistryError` (exit 5) naming where it came from."""
    if SHA256_FORM.fullmatch(digest):
        return digest
    raise RegistryError(
        f"{source} records the digest {neutralise(digest, limit=80)!r}, which is not "
        "sha256: and 64 hex digits; it is not used",
        hint="the deploy history holds something tagkeeper did not write; check who can "
        "create deployments in the repository",
    )


Verdict = Literal["current", "earlier", "unverified"]


def check_recorded_digest(
    resolver: RegistryDigests,
    repository: str,
    tag: str,
    digest: str,
    *,
    earlier: frozenset[str] = frozenset(),
) -> tuple[Verdict, str]:
    """Whether the registry vouches for ``digest`` as ``repository:tag``.

    ``current``: the tag points at it now. ``earlier``: the tag points elsewhere now, but
    the digest is one ``earlier`` lists (digests the deploy history recorded for that
    tag, e.g. from the ledger) and the registry still has it. ``unverified``: the
    registry could not be asked (the reason is the second value). Raises
    :class:`RegistryError` when the registry contradicts it: it has no such manifest, or
    the tag points elsewhere and nothing says the tag ever pointed at it.
    """
    form = check_digest_form(digest, source=f"the deploy history of {repository}:{tag}")
    try:
        now = resolver.from_registry(repository, tag)
    except (RegistryError, AuthError, RateLimited) as exc:
        return "unverified", exc.message
    if now == form:
        return "current", ""
    if form in earlier:
        try:
            kept = resolver.exists(repository, form)
        except (RegistryError, AuthError, RateLimited) as exc:
            return "unverified", exc.message
        if kept:
            return "earlier", ""
        raise RegistryError(
            f"{repository}:{tag} was recorded at {form}, which the registry no longer has",
            hint="pick another rollback target (previous --source ledger), or deploy a tag "
            "explicitly",
        )
    where = f"now points at {now}" if now else "no longer exists"
    raise RegistryError(
        f"{repository}:{tag} {where}, and nothing but the deploy history says it ever "
        f"pointed at {form}; refusing to deploy that digest",
        hint="check the deployment in GitHub (someone with deployments: write may have "
        "created it), or roll back from the ledger (--source ledger), or deploy a tag "
        "explicitly",
    )
