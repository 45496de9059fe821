"""How ``deploy``, ``rollback`` and ``previous`` reach registries: their ``--token``,
``--api-url`` and ``--registry-url`` (and the configuration), the digest resolver they
build, and the check of a digest that came from GitHub Deployments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tagkeeper.cli import common

if TYPE_CHECKING:
    from collections.abc import Sequence

    import typer

    from tagkeeper.deploy.script import DigestResolver
    from tagkeeper.registries.digests import RegistryDigests
    from tagkeeper.registries.factory import BackendOptions
    from tagkeeper.rollback.resolve import DeployRecord, RollbackTarget


@dataclass(frozen=True, slots=True)
class RegistryFlags:
    """How a command reaches registries: its --token, --api-url and --registry-url (the
    configuration's ``api-url`` and ``registry-url`` fill in what they leave out)."""

    token: str | None = None
    api_url: str | None = None
    registry_url: str | None = None

    def options(self, ctx: typer.Context) -> BackendOptions:
        from tagkeeper.cli.rollback_cmd import history_settings

        settings = history_settings(
            ctx, token=self.token, api_url=self.api_url, registry_url=self.registry_url
        )
        return settings.backend_options()


def registry_resolver(ctx: typer.Context, flags: RegistryFlags) -> RegistryDigests:
    """What a tag points at: one manifest HEAD with read access only (the GitHub token,
    else Docker's credentials, else anonymous), else what this host's engine pulled."""
    from tagkeeper.registries.digests import RegistryDigests
    from tagkeeper.transport import build_client

    engines: list[Any] = []

    def engine() -> Any:
        from tagkeeper.registries.local import connect

        if not engines:
            engines.append(connect(timeout=10))
            ctx.call_on_close(engines[0].close)
        return engines[0]

    return RegistryDigests(flags.options(ctx), ctx.with_resource(build_client()), engine=engine)


def notes_of(resolver: DigestResolver) -> list[str]:
    """What the resolver had to fall back on (printed as warnings)."""
    notes = getattr(resolver, "notes", None)
    return [str(n) for n in notes] if isinstance(notes, list) else []


def vouch(
    target: RollbackTarget,
    resolver: RegistryDigests,
    records: Sequence[DeployRecord] | None,
) -> RollbackTarget:
    """A rollback target whose digest came from GitHub Deployments (anyone with
    ``deployments: write`` can write one), checked against the registry before it is
    used: the tag must point at it now, or the ledger of this host must have recorded it
    for that tag (``records``: this host's ledger records of the repository, the only
    history trusted to vouch for an earlier digest) and the registry still have it. Says
    clearly when it cannot be checked; raises :class:`~tagkeeper.errors.RegistryError`
    (exit 5) when the registry contradicts it."""
    from tagkeeper.registries.digests import check_recorded_digest

    if target.source != "github" or not target.digest:
        return target
    earlier = frozenset(
        r.digest for r in records or () if r.tag == target.tag and r.digest is not None
    )
    verdict, why = check_recorded_digest(
        resolver, target.repository, target.tag, target.digest, earlier=earlier
    )
    if verdict == "unverified":
        common.error(
            f"warning: {target.reference(pinned=True)} comes from GitHub Deployments and "
            f"could not be checked against the registry ({why}); it is used as recorded"
        )
    else:
        how = "the tag points at it now" if verdict == "current" else (
            "this host's ledger recorded it for that tag"
        )
        common.info(f"note: the digest from GitHub Deployments checked: {how}")
    return target
