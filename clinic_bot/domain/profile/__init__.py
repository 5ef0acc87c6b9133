"""The clinic profile (CONTRACT §3): a TOML file validated at start-up by a declared schema.

`schema.py` declares every key (type, default, meaning), `loader.py` turns a file into the
`Profile` of `model.py` or one `ProfileError` naming the key, `fields.py` parses TOML values.
"""

from clinic_bot.domain.profile.fields import WEEKDAYS
from clinic_bot.domain.profile.loader import ProfileError, load_profile, parse_profile
from clinic_bot.domain.profile.model import Faq, IntakeQuestion, Practitioner, Profile, Service

__all__ = [
    "WEEKDAYS",
    "Faq",
    "IntakeQuestion",
    "Practitioner",
    "Profile",
    "ProfileError",
    "Service",
    "load_profile",
    "parse_profile",
]
