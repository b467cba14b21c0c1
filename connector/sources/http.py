"""An HTTP backend the provider proxies: `GET` its URL with its secret headers, the body (CSV, a JSON array
or JSON Lines) read as it streams into record batches.

The backend's address and secrets stay here: errors say what went wrong, never where, and the request
goes through httpx's transport rather than its client, whose log line names the URL.
"""

import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import httpx
import ijson
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json

from connector.source_specs import FromEnvironment, HttpSpec, header_value_ok
from connector.sources.base import CSV_PARSE, SourceError, Stored, json_array_batches, project

BLOCK_BYTES = 1 << 20  # what a reader parses at a time: memory stays bounded whatever the body's size
MAX_HEADER_LINE = 1 << 20
MAX_REDIRECTS = 5
TIMEOUT = httpx.Timeout(30.0, connect=5.0)  # per read: a slow, steady backend may stream for long
ACCEPT = {"csv": "text/csv", "json": "application/json", "jsonl": "application/x-ndjson"}


class HttpSource:
    """`HttpSource(spec, "csv", environ=os.environ).batches()`: the backend's records, served as csv."""

    def __init__(
        self, spec: HttpSpec, format: str, *, environ: Mapping[str, str], timeout: httpx.Timeout = TIMEOUT
    ) -> None:
        self.spec = spec
        self.format = format
        self.environ = environ
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"HttpSource(format={self.spec.format!r})"  # never the URL or a header

    def stored(self) -> Stored | None:
        return None  # the backend's bytes are no file of ours: they are read, then served

    def schema(self) -> pa.Schema:
        first = next(self.batches(), None)
        return first.schema if first is not None else pa.schema([])

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        with self._body() as body:
            try:
                yield from (project(batch, columns) for batch in _read(body, self.spec.format))
            except (OSError, pa.ArrowInvalid, ijson.JSONError, UnicodeDecodeError) as exc:
                raise SourceError(f"the HTTP backend's body is not valid {self.spec.format}: {exc}") from None

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": ACCEPT[self.spec.format]}
        for name, value in self.spec.headers.items():
            if isinstance(value, FromEnvironment):
                value = self.environ.get(value.env, "")
                if not header_value_ok(value):
                    raise SourceError(f"the secret for the backend's {name} header is not set in the environment")
            headers[name] = value
        return headers

    @contextmanager
    def _body(self) -> Iterator[io.BufferedReader]:
        with httpx.HTTPTransport(retries=0) as transport:
            response = self._send(transport)
            try:
                yield io.BufferedReader(_Body(response.iter_bytes()), BLOCK_BYTES)
            finally:
                response.close()

    def _send(self, transport: httpx.HTTPTransport) -> httpx.Response:
        url = httpx.URL(self.spec.url)
        for _ in range(MAX_REDIRECTS + 1):
            request = httpx.Request("GET", url, headers=self._headers(), extensions={"timeout": self.timeout.as_dict()})
            try:
                response = transport.handle_request(request)
            except httpx.HTTPError as exc:
                raise SourceError(f"the HTTP backend could not be reached ({type(exc).__name__})") from None
            if not response.is_redirect:
                break
            response.close()
            url = _same_origin(url, response.headers.get("location", ""))
        else:
            raise SourceError(f"the HTTP backend redirected more than {MAX_REDIRECTS} times")
        if not response.is_success:
            response.close()
            raise SourceError(f"the HTTP backend answered {response.status_code}")
        return response


def _same_origin(url: httpx.URL, location: str) -> httpx.URL:
    """Where a redirect points, if on the backend's own scheme, host and port: the secret goes nowhere else."""
    try:
        target = url.join(location)
    except httpx.InvalidURL:
        raise SourceError("the HTTP backend redirected to no valid URL") from None
    if (target.scheme, target.host, target.port) != (url.scheme, url.host, url.port):
        raise SourceError("the HTTP backend redirected to another host; the connector follows no such redirect")
    return target


class _Body(io.RawIOBase):
    """A response's byte chunks as a file for Arrow's and ijson's readers; a broken stream is an OSError."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._rest = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._rest:
            try:
                chunk = next(self._chunks, None)
            except httpx.HTTPError as exc:
                raise OSError(f"the body broke off ({type(exc).__name__})") from None
            if chunk is None:
                return 0
            self._rest = memoryview(chunk)
        size = min(len(buffer), len(self._rest))
        buffer[:size] = self._rest[:size]
        self._rest = self._rest[size:]
        return size


def _read(body: io.BufferedReader, fmt: str) -> Iterator[pa.RecordBatch]:
    if fmt == "csv":
        yield from _csv(body)
    elif fmt == "jsonl":
        if body.peek(1):  # Arrow's reader refuses an empty body; no lines are no records
            yield from pa_json.open_json(body, read_options=pa_json.ReadOptions(block_size=BLOCK_BYTES))
    else:
        yield from _json_array(body)


def _csv(body: io.BufferedReader) -> Iterator[pa.RecordBatch]:
    """CSV columns as strings, the values exactly as sent (as `FileSource` reads a file)."""
    line = body.readline(MAX_HEADER_LINE)
    if not line:
        return
    names = next(csv.reader([line.decode("utf-8-sig")]), [])
    as_text = pa_csv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False)
    yield from pa_csv.open_csv(
        body,
        read_options=pa_csv.ReadOptions(column_names=names, block_size=BLOCK_BYTES),
        parse_options=CSV_PARSE,
        convert_options=as_text,
    )


def _json_array(body: io.BufferedReader) -> Iterator[pa.RecordBatch]:
    return json_array_batches(body, "the HTTP backend's")
