"""``bluegreen``: the new slot is checked on its own port, then takes every request at once.

See :mod:`.slotbase` for the steps, the watch and the switch back.
"""

from __future__ import annotations

from tagkeeper.deploy.strategies.slotbase import SlotStrategy


class BlueGreenStrategy(SlotStrategy):
    """Two slots behind a proxy, switched at once."""

    name = "bluegreen"


__all__ = ["BlueGreenStrategy"]
