"""Tessera's Rego pattern library, and the `tessera policy` commands (`eval`, `test`).

Patterns live in `usage/` (one module per pattern, each with its `_test.rego`) and `examples/`.
"""

from pathlib import Path

__all__ = ["LIBRARY", "read_pattern"]

LIBRARY = Path(__file__).parent


def read_pattern(name: str) -> str:
    """The source of a pattern by name, e.g. `usage/purpose` or `examples/research_limited`."""
    path = (LIBRARY / f"{name}.rego").resolve()
    if LIBRARY.resolve() not in path.parents or not path.is_file():
        raise FileNotFoundError(f"no policy pattern named {name!r}")
    return path.read_text(encoding="utf-8")
