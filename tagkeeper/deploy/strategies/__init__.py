"""Deploy strategies: how a new version replaces the one that serves.

``recreate`` (:mod:`.recreate`) is the candidate pre-check on one host. ``bluegreen`` and
``canary`` switch between two slots behind a proxy. ``script`` is not an engine strategy:
:mod:`tagkeeper.deploy.script` runs the team's own command, as ``deploy`` always did.

A strategy implements :class:`~tagkeeper.deploy.context.DeployStrategy`; the engine finds
it with :func:`strategy_for`, or takes one it is given.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from tagkeeper.deploy.spec import Strategy
from tagkeeper.errors import UsageError

if TYPE_CHECKING:
    from tagkeeper.deploy.context import DeployStrategy
    from tagkeeper.deploy.spec import DeploySpec

# strategy -> (module, class)
STRATEGIES: dict[Strategy, tuple[str, str]] = {
    Strategy.RECREATE: ("tagkeeper.deploy.strategies.recreate", "RecreateStrategy"),
    Strategy.BLUEGREEN: ("tagkeeper.deploy.strategies.bluegreen", "BlueGreenStrategy"),
    Strategy.CANARY: ("tagkeeper.deploy.strategies.canary", "CanaryStrategy"),
}


def strategy_for(spec: DeploySpec) -> DeployStrategy:
    """The strategy ``spec`` names; :class:`UsageError` for ``script`` or one not built in."""
    if spec.strategy is Strategy.SCRIPT:
        raise UsageError(
            f'[deploy.{spec.environment}] uses strategy "script": it runs your own command',
            hint="put the command after '--': tagkeeper deploy --env ENV --image REF -- "
            "./deploy.sh",
        )
    module_name, class_name = STRATEGIES[spec.strategy]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise UsageError(
            f"strategy {spec.strategy!s} is not available in this tagkeeper",
            hint='upgrade tagkeeper, or use strategy = "recreate"',
        ) from None
    strategy: DeployStrategy = getattr(module, class_name)()
    return strategy
