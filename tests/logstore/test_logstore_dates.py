"""Times in queries and windows: ISO dates at their precision, date math, look-backs."""

from __future__ import annotations

import pytest

from flowscope.logstore.dates import (
    DateError,
    Interval,
    parse_interval,
    parse_since,
    parse_timestamp,
)

S = 1_000_000_000
NOW = parse_timestamp("2026-03-31T15:45:30.250Z")  # a Tuesday


def at(text: str) -> int:
    return parse_timestamp(text)


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2026", "2026-01-01", "2027-01-01"),
        ("2026-02", "2026-02-01", "2026-03-01"),
        ("2026-12", "2026-12-01", "2027-01-01"),
        ("2026-11-23", "2026-11-23", "2026-11-24"),
        ("2026-11-23T09", "2026-11-23T09:00", "2026-11-23T10:00"),
        ("2026-11-23 09:30", "2026-11-23T09:30", "2026-11-23T09:31"),
        ("2026-11-23T09:30:05", "2026-11-23T09:30:05", "2026-11-23T09:30:06"),
        ("2026-11-23T09:30:05.5Z", "2026-11-23T09:30:05.5", "2026-11-23T09:30:05.6"),
        ("2026-11-23T11:30:05+02:00", "2026-11-23T09:30:05", "2026-11-23T09:30:06"),
        ("2026-11-23T04:30:05-0500", "2026-11-23T09:30:05", "2026-11-23T09:30:06"),
        ("now/d", "2026-03-31", "2026-04-01"),
        ("now/w", "2026-03-30", "2026-04-06"),
        ("now-1d/d", "2026-03-30", "2026-03-31"),
        ("now/M", "2026-03-01", "2026-04-01"),
        ("now/y", "2026-01-01", "2027-01-01"),
        ("now-1h/h", "2026-03-31T14:00", "2026-03-31T15:00"),
    ],
)
def test_dates_cover_their_precision(text: str, start: str, end: str) -> None:
    assert parse_interval(text, NOW) == Interval(at(start), at(end))


def test_date_math_is_an_instant_with_calendar_months() -> None:
    assert parse_interval("now", NOW) == Interval(NOW, NOW + 1)
    assert parse_interval("now-15m", NOW).start_ns == NOW - 15 * 60 * S
    assert parse_interval("now+1d-2h", NOW).start_ns == NOW + 22 * 3600 * S
    # Calendar arithmetic: March 31st minus a month is February's last day.
    assert parse_interval("now-1M", NOW).start_ns == at("2026-02-28T15:45:30.250Z")
    assert parse_interval("now-1y", NOW).start_ns == at("2025-03-31T15:45:30.250Z")


def test_since_takes_lookbacks_and_dates() -> None:
    assert parse_since("15m", NOW) == NOW - 15 * 60 * S
    assert parse_since("1d", NOW) == NOW - 86_400 * S
    assert parse_since("2w", NOW) == NOW - 14 * 86_400 * S
    assert parse_since("2026-11-23", NOW) == at("2026-11-23")
    assert parse_since("now-1d/d", NOW) == at("2026-03-30")


@pytest.mark.parametrize(
    "text", ["yesterday", "1x", "2026-13-01", "2026-02-30", "now-", "now/d-1d", "99999999y", ""]
)
def test_bad_times_say_what_is_accepted(text: str) -> None:
    with pytest.raises(DateError) as caught:
        parse_since(text, NOW)
    assert repr(text) in str(caught.value)
