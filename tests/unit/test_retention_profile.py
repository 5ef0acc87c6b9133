"""The retention period is a declared profile key: `[retention] keep`, 180 days when left out."""

from __future__ import annotations

import tomllib
from datetime import timedelta

import pytest

from clinic_bot.domain.profile import ProfileError, parse_profile
from clinic_bot.operations.retention import retention_period
from clinic_bot.settings import EXAMPLE_PROFILE


def example(**retention) -> dict:
    data = tomllib.loads(EXAMPLE_PROFILE.read_text(encoding="utf-8"))
    data.pop("retention", None)
    if retention:
        data["retention"] = retention
    return data


def test_left_out_it_keeps_180_days():
    assert retention_period(parse_profile(example())) == timedelta(days=180)


def test_a_clinic_sets_its_own_period():
    assert retention_period(parse_profile(example(keep="30d"))) == timedelta(days=30)


@pytest.mark.parametrize("keep", ["0d", "soon", 30])
def test_a_bad_period_is_refused_with_the_key_named(keep):
    with pytest.raises(ProfileError, match=r"retention\.keep"):
        parse_profile(example(keep=keep))


def test_a_misspelled_key_is_refused():
    with pytest.raises(ProfileError, match=r"retention\.kep"):
        parse_profile(example(kep="30d"))
