"""Byte ranges of a stored file (RFC 9110 §14): what a request's `Range` and `If-Range` ask for.

One range only: `bytes=a-b`, `bytes=a-` and `bytes=-n`. A request with several ranges, another unit, a
malformed range or an `If-Range` that is not the file's current ETag gets the whole file (200), as
RFC 9110 allows a server to ignore `Range`; a range that starts past the end cannot be satisfied (416).
"""

import re
from dataclasses import dataclass

_SINGLE = re.compile(r"bytes=(\d*)-(\d*)", re.IGNORECASE)
_MAX_DIGITS = 19  # past this a number is larger than any file


@dataclass(frozen=True)
class ByteRange:
    """Bytes `start` to `end` (exclusive) of a file of `size` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end - 1}/{self.size}"

    @property
    def header(self) -> str:
        """The same range as a canonical `Range` header."""
        return f"bytes={self.start}-{self.end - 1}"


@dataclass(frozen=True)
class Unsatisfiable:
    """A range no byte of the file falls in: answered 416 with `Content-Range: bytes */size`."""

    size: int

    @property
    def content_range(self) -> str:
        return f"bytes */{self.size}"


Wanted = ByteRange | Unsatisfiable | None  # None: the whole file


def requested(header: str | None, if_range: str | None, size: int, etag: str) -> Wanted:
    """What a request's `Range` and `If-Range` headers ask of a file of `size` bytes tagged `etag`."""
    if header is None or (if_range is not None and if_range.strip() != etag):
        return None  # If-Range names another version (or a date): the whole current file
    found = _SINGLE.fullmatch(header.strip())
    if found is None:
        return None  # several ranges, another unit or no range at all
    first, last = found.groups()
    if not first:
        return _suffix(_number(last), size) if last else None
    start = _number(first)
    if last and _number(last) < start:
        return None  # `bytes=9-3` is invalid, and an invalid Range is ignored
    if start >= size:
        return Unsatisfiable(size)
    return ByteRange(start, min(_number(last) + 1 if last else size, size), size)


def _suffix(length: int, size: int) -> Wanted:
    if length == 0 or size == 0:
        return Unsatisfiable(size)
    return ByteRange(max(0, size - length), size, size)


def _number(digits: str) -> int:
    return int(digits) if len(digits) <= _MAX_DIGITS else 10**_MAX_DIGITS
