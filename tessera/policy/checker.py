"""The child process of `tessera.policy.bounds.compile_checked`: compiles the module on stdin within a
memory limit and prints its package, or the compile error, as JSON."""

import asyncio
import json
import resource
import sys

from tessera.errors import PolicyCompileError
from tessera.policy.bounds import CHILD_MEMORY
from tessera.policy.embedded import EmbeddedRegoEngine


def main() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))
    source = sys.stdin.buffer.read().decode("utf-8", "surrogatepass")
    try:
        package = asyncio.run(EmbeddedRegoEngine().compile_here(source))
    except PolicyCompileError as exc:
        print(json.dumps({"error": exc.detail, "line": exc.line, "column": exc.column}))
        return
    print(json.dumps({"package": package}))


if __name__ == "__main__":
    main()
