"""Logs: the process a line is about, and one JSON object per line for log shippers (`log_format = "json"`).

Handlers that work on one negotiation or transfer run inside `handling(pid)`; every line logged there
carries `process_id`, in the JSON format and to any `logging.Filter` that reads `process_id`.

```python
uvicorn.run(app, log_config=log_config("json"))
```
"""

import copy
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from uvicorn.config import LOGGING_CONFIG

LOG_FORMATS = ("text", "json")
# Loggers that say something per request at INFO; their lines add volume, not news.
_QUIET = ("httpx", "httpcore", "aiosqlite", "asyncio")

process_id: ContextVar[str | None] = ContextVar("tessera_process_id", default=None)


@contextmanager
def handling(pid: str | None) -> Iterator[None]:
    """Lines logged inside name `pid`, the negotiation or transfer being worked on (None: unchanged)."""
    if pid is None:
        yield
        return
    token = process_id.set(pid)
    try:
        yield
    finally:
        process_id.reset(token)


def check_log_format(value: str) -> str:
    if value not in LOG_FORMATS:
        raise ValueError(f"log_format must be one of {LOG_FORMATS}, not {value!r}")
    return value


class JsonFormatter(logging.Formatter):
    """A record as one JSON line: time (RFC 3339, UTC), level, logger, message, process_id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if (pid := process_id.get()) is not None:
            line["process_id"] = pid
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


def log_config(log_format: str, level: str = "INFO") -> dict[str, Any]:
    """A `logging.config.dictConfig` for uvicorn's `log_config`: for "json" every logger, uvicorn's access
    log too, as JSON lines on stderr; for "text" uvicorn's own format, as before."""
    if check_log_format(log_format) == "text":
        return copy.deepcopy(LOGGING_CONFIG)
    propagate = {"handlers": [], "level": level, "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "loggers": {
            "uvicorn": propagate,
            "uvicorn.error": propagate,
            "uvicorn.access": propagate,
            **{name: {"level": "WARNING"} for name in _QUIET},
        },
        "root": {"handlers": ["stderr"], "level": level},
    }
