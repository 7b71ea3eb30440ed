"""Times in queries: ISO dates at any precision, Elasticsearch-style date math (`now-1d/d`) and
`--since 1d` windows. A date is an interval at its own precision, so `@timestamp:2026-11-23`
is the whole day and `@timestamp > 2026-11-23` starts the next day, as Elasticsearch rounds
`gt` / `lte` up over missing date components. All times are UTC nanoseconds since the epoch."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

NS_PER_S = 1_000_000_000
_UNIT_NS = {
    "w": 7 * 86_400 * NS_PER_S,
    "d": 86_400 * NS_PER_S,
    "h": 3_600 * NS_PER_S,
    "H": 3_600 * NS_PER_S,
    "m": 60 * NS_PER_S,
    "s": NS_PER_S,
}
_UNITS = "yMwdhHms"


class DateError(ValueError):
    """A time the user wrote that cannot be read; the message says what is accepted."""


@dataclass(frozen=True)
class Interval:
    """[start_ns, end_ns): the instants a date value covers."""

    start_ns: int
    end_ns: int


_ISO = re.compile(
    r"""(?P<year>\d{4})
    (?:-(?P<month>\d{2})
      (?:-(?P<day>\d{2})
        (?:[T\ ](?P<hour>\d{2})
          (?::(?P<minute>\d{2})
            (?::(?P<second>\d{2})(?:[.,](?P<fraction>\d{1,9}))?)?
          )?
        )?
      )?
    )?
    (?P<zone>Z|[+-]\d{2}(?::?\d{2})?)?""",
    re.ASCII | re.VERBOSE,
)
_MATH_STEP = re.compile(r"([+-])(\d{1,9})([yMwdhHms])|/([yMwdhHms])", re.ASCII)
_DURATION = re.compile(r"(\d{1,9})\s*([yMwdhHms])", re.ASCII)

DATE_HELP = (
    "use an ISO date such as 2026-11-23 or \"2026-11-23T09:30:00Z\" (quote values with ':'), "
    "or date math such as now, now-1d, now-15m, now/d"
)


def parse_interval(text: str, now_ns: int) -> Interval:
    """The interval a date value covers: `now-1d` (an instant), `now/d` (today),
    `2026-11` (that month), `2026-11-23T09:30:00.5Z` (that instant)."""
    text = text.strip()
    try:
        if text.startswith("now"):
            return _date_math(text[3:], now_ns)
        return _iso_interval(text)
    except (OverflowError, ValueError) as exc:
        if isinstance(exc, DateError):
            raise
        raise DateError(f"{text!r} is not a date ({exc}); {DATE_HELP}") from None


def parse_since(text: str, now_ns: int) -> int:
    """`--since`: a look-back (`15m`, `2h`, `1d`, `1w`) or the start of a date value."""
    match = _DURATION.fullmatch(text.strip())
    if match is not None:
        amount, unit = int(match.group(1)), match.group(2)
        try:
            return _shift(now_ns, -amount, unit)
        except (OverflowError, ValueError):
            raise DateError(f"{text!r} reaches before year 1; look back less far") from None
    try:
        return parse_interval(text, now_ns).start_ns
    except DateError:
        raise DateError(
            f"{text!r} is neither a look-back such as 15m, 2h, 1d, 1w nor a date; {DATE_HELP}"
        ) from None


def to_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * NS_PER_S + delta.microseconds * 1000


def from_ns(time_ns: int) -> datetime:
    seconds, nanos = divmod(time_ns, NS_PER_S)
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds, microseconds=nanos // 1000)


def _iso_interval(text: str) -> Interval:
    match = _ISO.fullmatch(text)
    if match is None:
        raise DateError(f"{text!r} is not a date; {DATE_HELP}")
    parts = match.groupdict()
    zone = _zone(parts["zone"])
    year = int(parts["year"])
    month = int(parts["month"] or 1)
    day = int(parts["day"] or 1)
    hour = int(parts["hour"] or 0)
    minute = int(parts["minute"] or 0)
    second = int(parts["second"] or 0)
    start = datetime(year, month, day, hour, minute, second, tzinfo=zone)
    fraction = parts["fraction"]
    start_ns = to_ns(start) + (int(fraction.ljust(9, "0")) if fraction else 0)
    if fraction:
        end_ns = start_ns + 10 ** (9 - len(fraction))
    elif parts["second"]:
        end_ns = start_ns + NS_PER_S
    elif parts["minute"]:
        end_ns = start_ns + 60 * NS_PER_S
    elif parts["hour"]:
        end_ns = start_ns + 3_600 * NS_PER_S
    elif parts["day"]:
        end_ns = start_ns + 86_400 * NS_PER_S
    elif parts["month"]:
        end_ns = _shift(start_ns, 1, "M")
    else:
        end_ns = _shift(start_ns, 1, "y")
    return Interval(start_ns, end_ns)


def _zone(text: str | None) -> timezone:
    if text is None or text == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if hours > 23 or minutes > 59:
        raise DateError(f"{text!r} is not a UTC offset")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _date_math(expression: str, now_ns: int) -> Interval:
    """`now` followed by steps `+N<unit>` / `-N<unit>` and at most one final rounding `/<unit>`."""
    position = 0
    moment = now_ns
    while position < len(expression):
        match = _MATH_STEP.match(expression, position)
        if match is None:
            raise DateError(
                f"'now{expression}': cannot read date math at {expression[position:]!r}; "
                f"write steps like -1d, +2h and an optional rounding like /d (units {_UNITS})"
            )
        position = match.end()
        if match.group(4) is not None:
            if position != len(expression):
                raise DateError(f"'now{expression}': the rounding (/unit) must come last")
            start = _floor(moment, match.group(4))
            return Interval(start, _shift(start, 1, match.group(4)))
        amount = int(match.group(2)) * (-1 if match.group(1) == "-" else 1)
        moment = _shift(moment, amount, match.group(3))
    return Interval(moment, moment + 1)


def _shift(time_ns: int, amount: int, unit: str) -> int:
    if unit in _UNIT_NS:
        shifted = time_ns + amount * _UNIT_NS[unit]
        from_ns(shifted)  # raises OverflowError / ValueError outside the calendar
        return shifted
    months = amount * (12 if unit == "y" else 1)
    moment = from_ns(time_ns)
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    shifted_moment = moment.replace(year=year, month=month + 1, day=day)
    return to_ns(shifted_moment) + time_ns % 1000


def _floor(time_ns: int, unit: str) -> int:
    moment = from_ns(time_ns)
    if unit == "y":
        moment = moment.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    elif unit == "M":
        moment = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    elif unit == "w":
        moment = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        moment -= timedelta(days=moment.weekday())  # weeks start on Monday, as in Elasticsearch
    elif unit == "d":
        moment = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    elif unit in ("h", "H"):
        moment = moment.replace(minute=0, second=0, microsecond=0)
    elif unit == "m":
        moment = moment.replace(second=0, microsecond=0)
    else:
        moment = moment.replace(microsecond=0)
    return to_ns(moment)


def parse_timestamp(text: str) -> int:
    """`@timestamp` of a stored document (ISO 8601, UTC unless it says otherwise) in ns."""
    return _iso_interval(text.strip()).start_ns
