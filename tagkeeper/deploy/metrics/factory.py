"""Which metrics source a ``metrics`` setting names (``access-log:PATH``, ``prometheus:URL``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tagkeeper.deploy.metrics.accesslog import AccessLog
from tagkeeper.deploy.metrics.prometheus import Prometheus
from tagkeeper.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Mapping

    import httpx


def open_source(
    kind: str,
    target: str,
    client: httpx.Client,
    *,
    queries: Mapping[str, str] | None = None,
) -> AccessLog | Prometheus:
    """The source for ``kind`` (``access-log`` or ``prometheus``) at ``target``."""
    if kind == "access-log":
        if queries:
            raise UsageError("'metrics-queries' apply to prometheus:URL only")
        return AccessLog(Path(target))
    if kind == "prometheus":
        from tagkeeper.transport import check_base_url

        return Prometheus(check_base_url(target, what="metrics"), client, queries=queries)
    raise UsageError(
        f"metrics source {kind!r} is not known",
        hint='use "access-log:PATH" or "prometheus:URL"',
    )
