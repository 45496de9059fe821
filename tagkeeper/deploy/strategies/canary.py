"""``canary``: the new slot's weight goes through ``steps``, each judged on metrics.

See :mod:`.slotbase` for the steps, the judging of each, the watch and the switch back.
"""

from __future__ import annotations

from tagkeeper.deploy.strategies.slotbase import CanaryStrategy

__all__ = ["CanaryStrategy"]
