"""``tagkeeper doctor``: what a token can do with one GHCR package, without deleting.

:func:`diagnose` checks, through the package's
:class:`~tagkeeper.registries.ghcr_api.PackagesApi`: the token's kind (never its
value), that GitHub accepts it, the owner's kind, that the token can list the package's
versions, and whether it can delete there as far as GitHub shows it (a classic PAT's
scopes; a fine-grained PAT never can; a ``GITHUB_TOKEN`` cannot be told without
deleting).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from tagkeeper.errors import AuthError, RegistryError
from tagkeeper.registries.ghcr_api import OwnerKind, TokenKind, permission_hint
from tagkeeper.transport import describe_response

if TYPE_CHECKING:
    from tagkeeper.registries.ghcr_api import PackagesApi


@dataclass(frozen=True)
class Check:
    """One line of ``doctor``: ``ok``, ``missing`` (required and absent), ``unknown``
    (could not be verified without deleting), or ``warning``."""

    name: str
    status: Literal["ok", "missing", "unknown", "warning"]
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass(frozen=True)
class Diagnosis:
    """What ``doctor`` found about one package and one token."""

    image: str
    token_kind: TokenKind
    owner_kind: OwnerKind | None
    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return all(check.status != "missing" for check in self.checks)

    def to_json(self) -> dict[str, object]:
        return {
            "image": self.image,
            "token_kind": self.token_kind,
            "owner_kind": self.owner_kind,
            "ok": self.ok,
            "checks": [check.to_json() for check in self.checks],
        }


def diagnose(api: PackagesApi) -> Diagnosis:
    """Check, without deleting anything, whether the token can list and delete here."""
    checks: list[Check] = []
    kind = api.kind
    if kind == "none":
        checks.append(
            Check(
                "token",
                "missing",
                "no token was given",
                "pass --token or set GITHUB_TOKEN (or GH_TOKEN)",
            )
        )
        return Diagnosis(api.display, kind, None, tuple(checks))
    checks.append(Check("token", "ok", f"a token is present ({_KIND_TEXT[kind]})"))
    if kind == "fine-grained":
        checks.append(
            Check(
                "token-kind",
                "missing",
                "GitHub Packages accepts only personal access tokens (classic), "
                "GITHUB_TOKEN and OAuth tokens",
                permission_hint(kind),
            )
        )
    try:
        api.identify()
    except AuthError as exc:
        checks.append(Check("credentials", "missing", exc.message, exc.hint or ""))
        return Diagnosis(api.display, kind, None, tuple(checks))
    if api.login:
        checks.append(Check("credentials", "ok", f"valid, authenticated as {api.login}"))
    else:
        checks.append(Check("credentials", "ok", "valid (an app or workflow token)"))
    try:
        owner_kind = api.owner_kind
    except (AuthError, RegistryError) as exc:
        checks.append(Check("owner", "missing", exc.message, exc.hint or ""))
        return Diagnosis(api.display, kind, None, tuple(checks))
    checks.append(Check("owner", "ok", _OWNER_TEXT[owner_kind].format(owner=api.owner)))
    checks.append(_check_list(api))
    checks.append(_check_delete(api))
    return Diagnosis(api.display, kind, owner_kind, tuple(checks))

def _check_list(api: PackagesApi) -> Check:
    url = f"{api.packages_base()}/versions"
    try:
        response = api.rest("GET", url, kind="list", params={"per_page": 1, "page": 1})
    except RegistryError as exc:
        return Check("list", "missing", exc.message, exc.hint or "")
    if response.status_code == 200:
        return Check("list", "ok", "the token can list the package's versions")
    detail = describe_response(response, api.scrub)
    if api.kind == "github-token":
        fix = (
            "give this repository access in the package's settings under 'Manage Actions "
            "access', and 'permissions: packages: read' (or write) in the workflow"
        )
    elif api.kind == "classic":
        fix = "the personal access token (classic) needs the read:packages scope"
    else:
        fix = "use a token that can read the package (classic PAT with read:packages)"
    if response.status_code == 404:
        detail += " (the package does not exist, or this token cannot see it)"
    return Check("list", "missing", f"listing versions failed: {detail}", fix)

def _check_delete(api: PackagesApi) -> Check:
    if api.kind == "classic":
        scopes = api.scopes or frozenset()
        if "delete:packages" in scopes:
            return Check("delete", "ok", "the token has the delete:packages scope")
        shown = ", ".join(sorted(scopes)) or "none"
        return Check(
            "delete",
            "missing",
            f"the token's scopes ({shown}) lack delete:packages",
            permission_hint("classic"),
        )
    if api.kind == "github-token":
        return Check(
            "delete",
            "unknown",
            "GitHub offers no dry-run delete, so deleting with a GITHUB_TOKEN cannot be "
            "verified in advance",
            permission_hint("github-token"),
        )
    if api.kind == "fine-grained":
        return Check(
            "delete",
            "missing",
            "fine-grained tokens cannot delete packages",
            permission_hint("fine-grained"),
        )
    return Check(
        "delete",
        "unknown",
        "this token kind does not show its permissions; deleting cannot be verified",
        permission_hint(api.kind),
    )


_KIND_TEXT: dict[TokenKind, str] = {
    "none": "none",
    "classic": "a personal access token (classic)",
    "fine-grained": "a fine-grained personal access token",
    "github-token": "a GITHUB_TOKEN or GitHub App installation token",
    "oauth": "an OAuth or GitHub App user token",
    "unknown": "a token of unknown kind",
}
_OWNER_TEXT: dict[OwnerKind, str] = {
    "self": "{owner} is the token's own user account",
    "user": "{owner} is a user account",
    "org": "{owner} is an organisation",
}


