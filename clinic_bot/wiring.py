"""Import the areas that register hooks and ticks, so they are in place before any work runs."""

from __future__ import annotations

_wired = False


def wire() -> None:
    """Import every area module once; each registers its hooks/ticks on import."""
    global _wired
    if _wired:
        return
    _wired = True
    # Each area adds one line here: `from . import <area>` with a noqa for F401.
    from . import (
        broadcasts,  # noqa: F401
        reminders,  # noqa: F401
    )
