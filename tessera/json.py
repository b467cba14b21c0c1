"""JSON at the edge: the one alias for values parsed from or written to JSON, and the one strict parse.

`JSON` is `Any` on purpose, as typeshed types `json.loads`: a value a peer, a policy or a file sent
is arbitrary until the code reading it narrows it with `isinstance`. Past that edge, data is a
typed class (a dataclass, a pydantic model, a TypedDict).

Everything from outside is read with `parse` (or `load_object`): I-JSON (RFC 7493), so a value we
accept can be stored, hashed, signed and sent on without surprises. `json.loads` alone takes `NaN`,
`Infinity`, `1e400` (as inf), lone surrogates (`"\\ud800"`, which no UTF-8 encoder can write back),
duplicate names (the last wins, where another parser may keep the first) and any depth (until the
interpreter's recursion limit ends it with a RecursionError).
"""

import json
import math
import re
from collections.abc import Callable
from typing import Any, NoReturn, TypeAlias

__all__ = ["JSON", "MAX_DEPTH", "JSONObject", "load_object", "nul_at", "parse"]

JSON: TypeAlias = Any
JSONObject: TypeAlias = dict[str, JSON]

MAX_DEPTH = 64  # arrays and objects inside each other; DSP and ODRL documents nest about a dozen deep
_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


class _Refused(ValueError):
    """A parse stopped by one of the rules above; the message says which."""


def parse(raw: str | bytes, what: str, error: Callable[[str], Exception]) -> JSON:
    """`raw` as strict JSON; else `error("<what> is not JSON: …")`.

    ```python
    document = parse(body, "the message", InvalidMessage)
    ```
    """
    try:  # UTF-8 only (RFC 8259 §8.1), which json.loads would not insist on for bytes
        data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
        text = data.decode("utf-8").removeprefix("\ufeff")  # a byte order mark may be ignored
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite, object_pairs_hook=_unique)
    except RecursionError:
        raise error(f"{what} is not JSON: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # UnicodeDecodeError and _Refused are ValueErrors too
        raise error(f"{what} is not JSON: {exc}") from None
    if text.count("[") + text.count("{") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise error(f"{what} is not JSON: nested deeper than {MAX_DEPTH} levels")
    if _ESCAPED_SURROGATE.search(text) and (found := _lone_surrogate(value)) is not None:
        raise error(f"{what} is not JSON: a string holds a lone surrogate ({found!r})")
    return value


def load_object(raw: str | bytes, what: str, error: Callable[[str], Exception]) -> JSONObject:
    """`raw` parsed (strictly) as a JSON object; else `error("<what> is not JSON: …")` or
    `error("<what> must be a JSON object")`.

    ```python
    header = load_object(text, "JWT header", BuiltinError)
    ```
    """
    value = parse(raw, what, error)
    if not isinstance(value, dict):
        raise error(f"{what} must be a JSON object")
    return value


def _no_constant(name: str) -> NoReturn:
    raise _Refused(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise _Refused(f"{text} is beyond the range of a double")
    return number


def _unique(pairs: list[tuple[str, JSON]]) -> JSONObject:
    found = dict(pairs)
    if len(found) != len(pairs):
        names = [name for name, _ in pairs]
        repeated = next(name for i, name in enumerate(names) if name in names[:i])
        raise _Refused(f"the name {repeated!r} appears twice in one object")
    return found


def _depth(value: JSON) -> int:
    """How deep arrays and objects nest in `value`, without recursion."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            pending.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _lone_surrogate(value: JSON) -> str | None:
    """The first string (name or value) in `value` holding a surrogate code point, if any."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return item
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return None


def nul_at(value: JSON) -> str | None:
    """Where a string (name or value) in `value` holds U+0000, as a dotted path (`"" ` for `value` itself);
    None if none does. Valid JSON, but PostgreSQL's text columns cannot store it: refuse it at the edge."""
    pending: list[tuple[str, JSON]] = [("", value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, str) and "\x00" in item:
            return path
        if isinstance(item, dict):
            for name, child in item.items():
                inner = f"{path}.{name}" if path else str(name)
                if "\x00" in name:
                    return inner
                pending.append((inner, child))
        elif isinstance(item, list):
            pending.extend((f"{path}.{i}" if path else str(i), child) for i, child in enumerate(item))
    return None
