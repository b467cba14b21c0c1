"""The fast path: an allowed use that leaves the data untouched sends the stored file as it is.

Starlette's `FileResponse` sends it (its chunked reads, or the server's `pathsend` where offered),
with `Content-Length`, our `ETag` and `Accept-Ranges: bytes`; the range decided on (`connector.ranges`)
is the one it sends, and every body byte that goes out is counted for metering. An unsatisfiable
range is answered 416 problem+json with `Content-Range: bytes */size`.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

import anyio
from starlette.responses import FileResponse, Response
from starlette.types import Message, Receive, Scope, Send

from connector.assets import Asset
from connector.ranges import ByteRange, Unsatisfiable, Wanted, requested
from connector.sources import Stored, source_of
from tessera.problems import problem

SEND_CHUNK = 1024 * 1024  # bytes per read and send: fewer trips to the worker thread than Starlette's 64 KiB


@dataclass(frozen=True)
class Asked:
    """What a request asks of the stored bytes: its `Range` and `If-Range` headers."""

    range: str | None = None
    if_range: str | None = None

    @classmethod
    def of(cls, headers: Mapping[str, str]) -> "Asked":
        return cls(headers.get("range"), headers.get("if-range"))


@dataclass(frozen=True)
class Fetch:
    """A request the stored file can answer as it is: the file, and the bytes asked for."""

    stored: Stored
    wanted: Wanted

    @property
    def length(self) -> int:
        """The bytes the answer carries."""
        if isinstance(self.wanted, ByteRange):
            return self.wanted.length
        return 0 if self.wanted is not None else self.stored.size


def fetch_for(asset: Asset, asked: Asked, fmt: str | None) -> Fetch | None:
    """The stored file's answer to `asked` in format `fmt` (None: as stored), or None when the data must be
    read to be sent."""
    source = source_of(asset)
    if fmt not in (None, source.format):
        return None
    stored = source.stored()
    if stored is None:
        return None
    return Fetch(stored, requested(asked.range, asked.if_range, stored.size, stored.etag))


async def file_bytes(stored: Stored) -> AsyncIterator[bytes]:
    """The stored file as it is, a chunk at a time (a push sends it so, with its `Content-Length`)."""
    async with await anyio.open_file(stored.path, "rb") as fh:
        while chunk := await fh.read(SEND_CHUNK):
            yield chunk


def answer(fetch: Fetch, headers: Mapping[str, str], on_end: Callable[[int], Awaitable[None]]) -> Response:
    """The response for an allowed fast-path use; `on_end` learns the body bytes sent once it ends."""
    if isinstance(fetch.wanted, Unsatisfiable):
        refused = problem(416, "Range not satisfiable", f"the data has {fetch.stored.size} bytes; no range of it asked")
        refused.headers.update({**headers, "Content-Range": fetch.wanted.content_range})
        return refused
    return StoredFileResponse(fetch, headers, on_end)


class StoredFileResponse(FileResponse):
    """`FileResponse` for one use: it sends the range decided on, and counts the bytes that went out."""

    chunk_size = SEND_CHUNK

    def __init__(self, fetch: Fetch, headers: Mapping[str, str], on_end: Callable[[int], Awaitable[None]]) -> None:
        stored = fetch.stored
        super().__init__(stored.path, headers={**headers, "etag": stored.etag}, media_type=stored.media_type)
        self.fetch = fetch
        self.on_end = on_end

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sent = 0

        async def counting(message: Message) -> None:
            nonlocal sent
            await send(message)
            if message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            elif message["type"] == "http.response.pathsend":
                sent += self.fetch.stored.size

        try:
            await super().__call__(self._as_decided(scope), receive, counting)
        finally:
            await asyncio.shield(self.on_end(sent))

    def _as_decided(self, scope: Scope) -> Scope:
        """The request as `FileResponse` should read it: the decided range alone, or none (the whole file)."""
        headers = [(name, value) for name, value in scope["headers"] if name not in (b"range", b"if-range")]
        if isinstance(self.fetch.wanted, ByteRange):
            headers.append((b"range", self.fetch.wanted.header.encode("latin-1")))
        return {**scope, "headers": headers}
