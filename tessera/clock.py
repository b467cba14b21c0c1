"""Time: aware UTC datetimes inside, RFC 3339 text (`2026-12-01T09:25:30Z`) at the JSON edge."""

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime) -> datetime:
    """`moment` in UTC; a naive datetime (as SQLite hands them back) is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def rfc3339(moment: datetime | None = None, *, timespec: str = "seconds") -> str:
    """`moment` (default: now) as RFC 3339 text in UTC with a `Z`."""
    text = aware(moment or utcnow()).isoformat(timespec=timespec)
    return text.replace("+00:00", "Z")


def parse(text: str) -> datetime:
    """An RFC 3339 / ISO 8601 timestamp as an aware datetime; ValueError if it is not one."""
    return aware(datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text))
