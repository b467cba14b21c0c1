"""JSON at the edge: the one alias for values parsed from or written to JSON, and a checked parse.

`JSON` is `Any` on purpose, as typeshed types `json.loads`: a value a peer, a policy or a file sent
is arbitrary until the code reading it narrows it with `isinstance`. Past that edge, data is a
typed class (a dataclass, a pydantic model, a TypedDict).
"""

import json
from collections.abc import Callable
from typing import Any, TypeAlias

__all__ = ["JSON", "JSONObject", "load_object"]

JSON: TypeAlias = Any
JSONObject: TypeAlias = dict[str, JSON]


def load_object(raw: str | bytes, what: str, error: Callable[[str], Exception]) -> JSONObject:
    """`raw` parsed as a JSON object; else `error("<what> is not JSON: …")` or `error("<what> must be a JSON object")`.

    ```python
    header = load_object(text, "JWT header", BuiltinError)
    ```
    """
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise error(f"{what} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise error(f"{what} must be a JSON object")
    return value
