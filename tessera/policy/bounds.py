"""Bounds on Rego from outside: size and nesting checked before any engine sees a module, and the
first compile and evaluation run in a child process that is killed at a time limit.

regorus parses nested arrays and objects in time that grows about 2.2 times per level (measured:
14 levels 0.5 s, 16 levels 2.5 s, 20 levels 38 s), and its calls cannot be interrupted, so a
60-byte module could hold the event loop for minutes. A module that passed here compiled within the
limit, so deciding with it later (in process) starts just as fast.

    check_bounds(source)                 # PolicyCompileError naming the limit, with line and column
    package = await compile_checked(source)
"""

import asyncio
import json
import sys
from collections.abc import Iterator
from typing import Any

from tessera.errors import PolicyCompileError

__all__ = ["COMPILE_TIMEOUT", "MAX_MODULE_BYTES", "MAX_NESTING", "check_bounds", "compile_checked"]

MAX_MODULE_BYTES = 256 * 1024
MAX_NESTING = 12  # [ and { inside each other; library patterns and compiled agreements use at most 4
COMPILE_TIMEOUT = 5.0  # seconds for the first compile and evaluation
CHILD_MEMORY = 1024 * 1024 * 1024  # bytes of address space the compiling child may use


def check_bounds(source: str) -> None:
    """Refuse a module past the size or nesting limit, before anything parses it."""
    if len(source.encode("utf-8", "surrogatepass")) > MAX_MODULE_BYTES:
        raise PolicyCompileError(f"the module is larger than {MAX_MODULE_BYTES} bytes")
    depth = 0
    for char, line, column in _code(source):
        if char in "[{":
            depth += 1
            if depth > MAX_NESTING:
                what = f"arrays, objects and sets nest deeper than {MAX_NESTING} levels"
                raise PolicyCompileError(what, line=line, column=column)
        elif char in "]}":
            depth = max(0, depth - 1)


def _code(source: str) -> Iterator[tuple[str, int, int]]:
    """The characters of `source` outside strings and comments, with their line and column."""
    line, column = 1, 0
    quote: str | None = None  # the open string's delimiter: "…" has escapes, `…` none
    escaped = comment = False
    for char in source:
        column += 1
        if char == "\n":
            line, column, comment = line + 1, 0, False
        elif comment:
            pass
        elif quote is not None:
            escaped, closes = not escaped and char == "\\" and quote == '"', not escaped and char == quote
            quote = None if closes else quote
        elif char in '"`':
            quote = char
        elif char == "#":
            comment = True
        else:
            yield char, line, column


async def compile_checked(source: str, time_limit: float = COMPILE_TIMEOUT) -> str:
    """The module's package path, compiled and evaluated once in a child process within `time_limit`."""
    check_bounds(source)
    try:
        answer, returncode = await ask_child(
            "tessera.policy.checker", source.encode("utf-8", "surrogatepass"), time_limit
        )
    except TimeoutError:
        raise PolicyCompileError(f"the module took longer than {time_limit:g} s to compile and check") from None
    if not isinstance(answer, dict):  # no answer: the child died, most likely at its memory limit
        ended = f"{CHILD_MEMORY >> 20} MiB of memory, or the checker ended with {returncode}"
        raise PolicyCompileError(f"the module could not be checked within {ended}")
    if "error" in answer:
        raise PolicyCompileError(answer["error"], line=answer.get("line"), column=answer.get("column"))
    return str(answer["package"])


async def ask_child(module: str, request: bytes, time_limit: float) -> tuple[Any, int | None]:
    """Run `python -m module` with `request` on its stdin: its JSON answer (None if it gave none) and exit
    code. Past `time_limit` the child is killed and TimeoutError raised: regorus cannot be interrupted."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        out, _ = await asyncio.wait_for(child.communicate(request), time_limit)
    except TimeoutError:
        child.kill()
        await child.wait()
        raise
    try:
        return json.loads(out), child.returncode
    except ValueError:
        return None, child.returncode
