"""Cron expressions: checked before anything is made, and the same schedule as a systemd timer.

Kubernetes CronJobs and crontab take the classic five fields (minute hour day-of-month month
day-of-week) or a macro (@hourly, @daily...); croniter reads them. systemd's ``OnCalendar=``
has no "either day-of-month or day-of-week" (cron ORs the two when both are restricted), so
such an expression is refused for ``--host`` rather than silently changed.
"""
from __future__ import annotations

from croniter import croniter

from ..errors import ParameterError

MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
          "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
DAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


def validate(expression: str) -> str:
    """The expression, trimmed, if Kubernetes and cron both accept it; else ParameterError (exit 2)."""
    text = " ".join(str(expression).split())
    fields = MACROS.get(text, text).split()
    if len(fields) != 5 or not croniter.is_valid(" ".join(fields)) or any(c in text for c in "?LW#H"):
        raise ParameterError(f"--cron {expression!r}: write five fields, minute hour day-of-month month "
                             f"day-of-week (e.g. \"0 */6 * * *\"), or @hourly/@daily/@weekly/@monthly")
    return text


def _values(field: list) -> list[int] | None:
    return None if field == ["*"] else sorted({int(v) for v in field})


def _join(values: list[int] | None, width: int = 2) -> str:
    return "*" if values is None else ",".join(f"{v:0{width}d}" for v in values)


def on_calendar(expression: str) -> str:
    """The systemd ``OnCalendar=`` value that fires when ``expression`` does."""
    text = validate(expression)
    (minutes, hours, days, months, weekdays), _ = croniter.expand(MACROS.get(text, text))
    minutes, hours, days, months = _values(minutes), _values(hours), _values(days), _values(months)
    weekdays = None if weekdays == ["*"] else sorted({int(d) % 7 for d in weekdays})
    if days is not None and weekdays is not None:
        raise ParameterError(f"--cron {expression!r}: cron runs on the day-of-month OR the day-of-week; "
                             "a systemd timer cannot say that: restrict only one of the two for --host")
    when = f"*-{_join(months)}-{_join(days)} {_join(hours)}:{_join(minutes)}:00"
    return (",".join(DAYS[d] for d in weekdays) + " " + when) if weekdays is not None else when
