"""`tessera transfer pull ID -o FILE`: a transfer's data pulled through our connector into a file, resumed by `Range`.

While a pull runs, `FILE.tessera-pull` (JSON: transfer, ETag, size) sits beside the file. Run again after
an interruption and the pull continues from the file's size with `If-Range` = that ETag; the provider
sends the rest (206) or, when its data changed, all of it (200) and the file starts over. The sidecar is
removed when the file is complete. Data the provider reshapes (masked, filtered) has no ETag: such a
pull cannot be resumed and an interrupted one leaves no file.
"""

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx

SIDECAR_SUFFIX = ".tessera-pull"
READ_CHUNK = 1024 * 1024


class PullFailed(Exception):
    """The pull did not complete; `code` is the CLI's exit code (1 refused, 2 bad input, 3 unreachable)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Pulled:
    transfer: str
    file: Path
    bytes: int  # the file's size now
    received: int  # bytes received by this run
    resumed_from: int  # the offset this run continued from (0: a whole pull)
    etag: str | None

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "file": str(self.file)}


Progress = Callable[[int, int | None], None]  # (bytes so far, total or None) after each chunk


def sidecar_of(file: Path) -> Path:
    return file.with_name(file.name + SIDECAR_SUFFIX)


def pull_to_file(
    http: httpx.Client, transfer: str, file: Path, params: dict[str, str], progress: Progress, *, force: bool = False
) -> Pulled:
    """Pull `transfer`'s data into `file` through the management API `http` points at, resuming a partial file."""
    sidecar = sidecar_of(file)
    remembered = _remembered(sidecar, transfer)
    if file.exists() and remembered is None and not force:
        raise PullFailed(f"{file} exists and is no partial pull of transfer {transfer}; use --force to replace it", 2)
    offset = file.stat().st_size if remembered is not None and file.exists() else 0
    headers = {"Range": f"bytes={offset}-", "If-Range": remembered["etag"]} if remembered and offset else {}
    if remembered is not None and offset == remembered["size"]:
        return _done(transfer, file, sidecar, 0, offset, remembered["etag"])
    with _opened(http, transfer, params, headers) as response:
        if response.status_code == 416:  # our part no longer fits the provider's data: start over
            response.close()
            sidecar.unlink(missing_ok=True)
            return pull_to_file(http, transfer, file, params, progress, force=True)
        resumed = response.status_code == 206
        if resumed and not response.headers.get("content-range", "").startswith(f"bytes {offset}-"):
            raise PullFailed(f"the connector sent another range than asked: {response.headers.get('content-range')}", 3)
        start = offset if resumed else 0
        etag = response.headers.get("etag")
        total = _total(response, start)
        if etag is not None and total is not None:
            sidecar.write_text(json.dumps({"transfer": transfer, "etag": etag, "size": total}))
        with file.open("ab" if resumed else "wb") as out:
            received = _copy(response, out, start, total, progress, keep_partial=etag is not None, file=file)
    return _done(transfer, file, sidecar, received, start, etag)


def _remembered(sidecar: Path, transfer: str) -> dict[str, Any] | None:
    try:
        found = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return None
    fits = isinstance(found, dict) and found.get("transfer") == transfer
    return found if fits and isinstance(found.get("etag"), str) and isinstance(found.get("size"), int) else None


def _total(response: httpx.Response, start: int) -> int | None:
    length = response.headers.get("content-length")
    return start + int(length) if length is not None and length.isdigit() else None


@contextmanager
def _opened(
    http: httpx.Client, transfer: str, params: dict[str, str], headers: dict[str, str]
) -> Iterator[httpx.Response]:
    url = f"/transfers/{quote(transfer, safe='')}/data"
    try:
        with http.stream("GET", url, params=params, headers=headers) as response:
            if response.status_code not in (200, 206, 416):
                response.read()
                raise PullFailed(refusal(response), 1 if response.status_code in (403, 409, 410) else 2)
            yield response
    except httpx.TransportError as exc:
        raise PullFailed(f"the connector is not reachable: {exc}", 3) from exc


def refusal(response: httpx.Response) -> str:
    """A refusal from the management API as one line: status, the problem's detail and its reasons."""
    try:
        problem = response.json()
    except ValueError:
        return f"{response.status_code}: {response.text[:300]}"
    reasons = problem.get("reasons") if isinstance(problem, dict) else None
    detail = problem.get("detail", "") if isinstance(problem, dict) else ""
    return f"{response.status_code}: {detail}" + (f" ({'; '.join(map(str, reasons))})" if reasons else "")


def _copy(
    response: httpx.Response,
    out: BinaryIO,
    start: int,
    total: int | None,
    progress: Progress,
    *,
    keep_partial: bool,
    file: Path,
) -> int:
    received = 0
    try:
        for chunk in response.iter_raw(READ_CHUNK):
            out.write(chunk)
            received += len(chunk)
            progress(start + received, total)
    except httpx.TransportError as exc:
        out.close()
        if not keep_partial:
            file.unlink(missing_ok=True)  # no ETag: nothing to resume from
        hint = "; run the same command again to resume" if keep_partial else ""
        raise PullFailed(f"the pull was interrupted after {start + received} bytes{hint}: {exc}", 3) from exc
    if total is not None and start + received != total:
        raise PullFailed(f"the pull ended after {start + received} of {total} bytes; run it again to resume", 3)
    return received


def _done(transfer: str, file: Path, sidecar: Path, received: int, start: int, etag: str | None) -> Pulled:
    sidecar.unlink(missing_ok=True)
    return Pulled(transfer, file, file.stat().st_size, received, start, etag)
