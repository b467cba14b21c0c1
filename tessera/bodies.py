"""Request bodies read within a limit: what passes it is refused before it is buffered.

`await request.body()` reads everything a client sends before anyone can look at its size; a 96 MB
body would sit in memory (twice) before a size check said no. `read_body` stops at the limit.
"""

from starlette.requests import Request

from tessera.errors import ContentTooLarge

__all__ = ["read_body"]


async def read_body(request: Request, limit: int, what: str = "request body") -> bytes:
    """The body of `request`, or ContentTooLarge (413) as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ContentTooLarge(f"{what} larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise ContentTooLarge(f"{what} larger than {limit} bytes")
    return bytes(body)
