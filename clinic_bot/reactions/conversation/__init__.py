"""The per-patient conversation: a persisted state machine over WhatsApp buttons and lists.

`respond` answers one patient event; `show_menu` puts the main menu in front of a patient.
The states and transitions are data in `table.py` (`print(table.describe())`).
"""

from __future__ import annotations

from clinic_bot.reactions.conversation.machine import respond, show_menu

# Global command ids other areas may put on their own buttons ("Book again" after a visit).
MENU_BOOK = "menu:book"
MENU_APPOINTMENTS = "menu:appointments"
MENU_RECEPTION = "menu:reception"

__all__ = ["MENU_APPOINTMENTS", "MENU_BOOK", "MENU_RECEPTION", "respond", "show_menu"]
