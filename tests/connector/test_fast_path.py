"""The fast path (`connector/fast_path.py`, `connector/ranges.py`, `connector/resumes.py`): an allowed use that
leaves the data untouched gets the stored bytes as they are, with Content-Length, ETag and Range; an
interrupted pull resumes as the same use; push sends the file as it is; the CLI pulls to a file and resumes.

The data file's lines end in LF and its quoting is its own: re-serialised records would come out otherwise
(CRLF, other quotes), so a byte-exact answer shows the file went out untouched.
"""

import asyncio
import json
from pathlib import Path

import anyio
import httpx
import pytest

from connector.ranges import ByteRange, Unsatisfiable, Wanted, requested
from policies.patterns import PatternUse, render
from tests.dataspace import Site, json_value, negotiate, publish, sql, start_transfer, tessera

OPEN_POLICY = "package tessera.usage.open\ndefault allow := true\n"
ONE_USE = render("tessera.usage.once", [PatternUse.of("max_uses", max_uses=1)])
MASKING = 'package tessera.usage.masking\ndefault allow := true\nmask contains "email"\n'


@pytest.fixture
def data_csv(tmp_path: Path) -> Path:
    """About 3 MB of CSV, LF line ends, every field quoted."""
    path = tmp_path / "readings.csv"
    lines = ['"id","sensor","value"'] + [f'"{i}","s-{i % 97}","{i * 7 % 1000}.5"' for i in range(120_000)]
    path.write_bytes(("\n".join(lines) + "\n").encode())
    return path


@pytest.fixture
def stored(data_csv: Path) -> bytes:
    """The data file's bytes, as an exact answer must give them."""
    return data_csv.read_bytes()


@pytest.mark.parametrize(
    ("header", "if_range", "size", "wanted"),
    [
        ("bytes=-0", None, 10, Unsatisfiable(10)),
        ("bytes=0-", None, 0, Unsatisfiable(0)),  # an empty file has no byte to send
        ("bytes=-20", None, 10, ByteRange(0, 10, 10)),
        ("bytes=" + "9" * 5000 + "-", None, 10, Unsatisfiable(10)),
        (" bytes=2-3 ", '"e"', 10, ByteRange(2, 4, 10)),
        ("bytes=2-3", 'W/"e"', 10, None),
        ("bytes=2-", "Tue, 01 Dec 2026 10:00:00 GMT", 10, None),
        ("bytes=-", None, 10, None),
    ],
)
def test_what_a_range_asks_of_a_file(header: str, if_range: str | None, size: int, wanted: Wanted) -> None:
    assert requested(header, if_range, size, '"e"') == wanted


async def _pull_transfer(provider: Site, consumer: Site, data: Path, policy: str = OPEN_POLICY) -> tuple[str, str]:
    """A started pull transfer of `data` under `policy`: (transfer id on the consumer, agreement id)."""
    offer = await publish(provider, data, policy=policy)
    agreement_id = (await negotiate(consumer, provider, offer))["agreement_id"]
    return (await start_transfer(consumer, agreement_id))["id"], agreement_id


async def _data_plane(consumer: Site, transfer_id: str) -> tuple[str, dict[str, str]]:
    """The provider's data URL and the data token header, as the consumer's connector holds them."""
    (row,) = await sql(consumer.config, "SELECT data_address FROM transfer WHERE id = :id", id=transfer_id)
    address = json_value(row["data_address"])
    token = next(p["value"] for p in address["endpointProperties"] if p["name"] == "authorization")
    return address["endpoint"], {"Authorization": f"Bearer {token}"}


async def _counter(provider: Site, agreement_id: str, *, bytes: int = 1) -> dict:
    """The agreement's counter once at least `bytes` are metered (they commit just after the last is sent)."""
    for _ in range(200):
        items = (await provider.api.get("/usage")).json()["items"]
        (counter,) = [c for c in items if c["agreement_id"] == agreement_id]
        if counter["bytes"] >= bytes:
            break
        await asyncio.sleep(0.02)
    return counter


async def _interrupted(url: str, headers: dict[str, str], after: int) -> None:
    """Start a pull and drop the connection once `after` bytes arrived."""
    async with httpx.AsyncClient(timeout=30) as http, http.stream("GET", url, headers=headers) as response:
        assert response.status_code in (200, 206)
        got = 0
        async for chunk in response.aiter_raw(64 * 1024):
            got += len(chunk)
            if got >= after:
                break


async def test_an_untouched_use_sends_the_stored_bytes_with_length_and_etag(
    provider: Site, consumer: Site, data_csv: Path, stored: bytes
) -> None:
    transfer_id, agreement_id = await _pull_transfer(provider, consumer, data_csv)
    url, token = await _data_plane(consumer, transfer_id)
    async with httpx.AsyncClient(headers=token, timeout=30) as http:
        response = await http.get(url)
        assert response.status_code == 200 and response.content == stored
    assert response.headers["content-length"] == str(len(stored))
    assert response.headers["etag"].startswith('"') and response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-type"].startswith("text/csv")
    assert "Tessera-Labels" in response.headers
    counter = await _counter(provider, agreement_id, bytes=len(stored))
    assert (counter["uses"], counter["bytes"]) == (1, len(stored))


@pytest.mark.parametrize(
    ("asked", "start", "end"),
    [
        ("bytes=100-199", 100, 200),
        ("bytes=1000-", 1000, None),
        ("bytes=-500", -500, None),
        ("bytes=10-99999999999", 10, None),  # an end past the file is the file's end
    ],
)
async def test_one_range_is_answered_206_with_its_bytes(
    provider: Site, consumer: Site, data_csv: Path, asked: str, start: int, end: int | None, stored: bytes
) -> None:
    transfer_id, agreement_id = await _pull_transfer(provider, consumer, data_csv)
    url, token = await _data_plane(consumer, transfer_id)
    async with httpx.AsyncClient(headers=token, timeout=30) as http:
        response = await http.get(url, headers={"Range": asked})
    part = stored[start:end]
    first = start % len(stored)
    assert response.status_code == 206 and response.content == part
    assert response.headers["content-range"] == f"bytes {first}-{first + len(part) - 1}/{len(stored)}"
    assert response.headers["content-length"] == str(len(part)) and "Tessera-Labels" in response.headers
    counter = await _counter(provider, agreement_id, bytes=len(part))
    assert (counter["uses"], counter["bytes"]) == (1, len(part))


async def test_a_range_past_the_end_is_416_and_costs_no_use(
    provider: Site, consumer: Site, data_csv: Path, stored: bytes
) -> None:
    transfer_id, agreement_id = await _pull_transfer(provider, consumer, data_csv, ONE_USE)
    url, token = await _data_plane(consumer, transfer_id)
    size = len(stored)
    async with httpx.AsyncClient(headers=token, timeout=30) as http:
        refused = await http.get(url, headers={"Range": f"bytes={size}-"})
        whole = await http.get(url)
    assert refused.status_code == 416 and refused.headers["content-range"] == f"bytes */{size}"
    assert refused.headers["content-type"] == "application/problem+json" and "Tessera-Labels" in refused.headers
    assert whole.status_code == 200  # the one use was still there
    assert (await _counter(provider, agreement_id, bytes=size))["uses"] == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"Range": "bytes=0-9", "If-Range": '"another-version"'},
        {"Range": "bytes=0-9,20-29"},  # several ranges: the whole body, as RFC 9110 allows
        {"Range": "lines=1-2"},
        {"Range": "bytes=9-3"},
    ],
)
async def test_a_range_that_cannot_be_used_gets_the_whole_file(
    provider: Site, consumer: Site, data_csv: Path, headers: dict[str, str], stored: bytes
) -> None:
    transfer_id, _ = await _pull_transfer(provider, consumer, data_csv)
    url, token = await _data_plane(consumer, transfer_id)
    async with httpx.AsyncClient(headers=token, timeout=30) as http:
        response = await http.get(url, headers=headers)
    assert response.status_code == 200 and response.content == stored


async def test_reshaped_data_ignores_range_and_has_no_etag(
    provider: Site, consumer: Site, data_csv: Path, stored: bytes
) -> None:
    transfer_id, _ = await _pull_transfer(provider, consumer, data_csv, MASKING)
    url, token = await _data_plane(consumer, transfer_id)
    async with httpx.AsyncClient(headers=token, timeout=30) as http:
        response = await http.get(url, headers={"Range": "bytes=0-9"})
    assert response.status_code == 200 and "etag" not in response.headers
    # The whole (reshaped) data, not ten bytes of it.
    assert len(response.content) > 10 and response.headers["Tessera-Masked-Fields"] == "email"


async def test_a_client_that_disconnects_half_way_is_metered_what_went_out(
    provider: Site, consumer: Site, tmp_path: Path
) -> None:
    big, size = tmp_path / "big.csv", 2 + 8 * 4_000_000  # 32 MB: more than loopback buffers hold
    await anyio.Path(big).write_bytes(b"n\n" + b"1234567\n" * 4_000_000)
    transfer_id, agreement_id = await _pull_transfer(provider, consumer, big)
    url, token = await _data_plane(consumer, transfer_id)
    await _interrupted(url, token, after=1_000_000)
    counter = await _counter(provider, agreement_id, bytes=1_000_000)
    assert 1_000_000 <= counter["bytes"] < size // 2


async def test_one_use_allows_a_resume_but_not_a_second_full_pull(
    provider: Site, consumer: Site, data_csv: Path, stored: bytes
) -> None:
    transfer_id, agreement_id = await _pull_transfer(provider, consumer, data_csv, ONE_USE)
    url, token = await _data_plane(consumer, transfer_id)
    async with httpx.AsyncClient(headers=token, timeout=30) as http:
        first = await http.get(url, headers={"Range": "bytes=0-999"})
        rest = await http.get(url, headers={"Range": "bytes=1000-", "If-Range": first.headers["etag"]})
        again = await http.get(url)
        from_zero = await http.get(url, headers={"Range": "bytes=0-", "If-Range": first.headers["etag"]})
    assert first.status_code == 206 and rest.status_code == 206
    assert first.content + rest.content == stored
    assert again.status_code == 403 and from_zero.status_code == 403
    counter = await _counter(provider, agreement_id, bytes=len(stored))
    assert (counter["uses"], counter["bytes"]) == (1, len(stored))


async def test_resuming_over_and_over_runs_out(provider: Site, consumer: Site, people_csv: Path) -> None:
    """`bytes=1-` again and again is no way to more copies: past the use's allowance it is a new use."""
    transfer_id, _ = await _pull_transfer(provider, consumer, people_csv, ONE_USE)
    url, token = await _data_plane(consumer, transfer_id)
    async with httpx.AsyncClient(headers=token, timeout=30) as http:
        statuses = [(await http.get(url, headers={"Range": "bytes=1-"})).status_code for _ in range(4)]
    assert statuses == [206, 206, 403, 403]


async def test_a_suspended_transfer_refuses_a_resume(provider: Site, consumer: Site, data_csv: Path) -> None:
    transfer_id, _ = await _pull_transfer(provider, consumer, data_csv)
    url, token = await _data_plane(consumer, transfer_id)
    async with httpx.AsyncClient(headers=token, timeout=30) as http:
        etag = (await http.get(url, headers={"Range": "bytes=0-99"})).headers["etag"]
        await consumer.post(f"/transfers/{transfer_id}/suspend", {"reason": "pause"}, 200)
        provider_id = (await provider.api.get("/transfers")).json()["items"][0]["id"]
        await provider.wait_for(f"/transfers/{provider_id}", "SUSPENDED")
        resumed = await http.get(url, headers={"Range": "bytes=100-", "If-Range": etag})
    assert resumed.status_code == 403 and "SUSPENDED" in resumed.json()["detail"]


async def test_the_management_api_passes_ranges_through(
    provider: Site, consumer: Site, data_csv: Path, stored: bytes
) -> None:
    transfer_id, _ = await _pull_transfer(provider, consumer, data_csv)
    size = len(stored)
    data = f"/transfers/{transfer_id}/data"
    part = await consumer.api.get(data, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == stored[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{size}" and part.headers["content-length"] == "10"
    etag = part.headers["etag"]
    rest = await consumer.api.get(data, headers={"Range": "bytes=20-", "If-Range": etag})
    assert rest.status_code == 206 and rest.content == stored[20:]
    whole = await consumer.api.get(data, headers={"Range": "bytes=0-9", "If-Range": '"old"'})
    assert whole.status_code == 200 and whole.content == stored and whole.headers["etag"] == etag
    past = await consumer.api.get(data, headers={"Range": f"bytes={size}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{size}"
    copies = (await consumer.api.get("/copies")).json()["items"]
    assert [c["bytes"] for c in copies] == [size]  # only the whole pull is kept, and kept whole
    assert await anyio.Path(copies[0]["path"]).read_bytes() == stored


async def test_the_cli_resumes_an_interrupted_pull_into_a_byte_exact_file(
    provider: Site, consumer: Site, data_csv: Path, tmp_path: Path, stored: bytes
) -> None:
    transfer_id, agreement_id = await _pull_transfer(provider, consumer, data_csv, ONE_USE)
    out = tmp_path / "out" / "readings.csv"
    out.parent.mkdir()
    # An earlier run got 1 MB and was cut off: the file holds what arrived, the sidecar its ETag.
    api = f"{consumer.config.url}/api/transfers/{transfer_id}/data"
    auth = {"Authorization": f"Bearer {consumer.config.management_token}"}
    async with httpx.AsyncClient(timeout=30) as http, http.stream("GET", api, headers=auth) as response:
        etag = response.headers["etag"]
        with out.open("wb") as fh:
            async for chunk in response.aiter_raw(64 * 1024):
                fh.write(chunk)
                if fh.tell() >= 1_000_000:
                    break
    had = out.stat().st_size
    sidecar = out.with_name(out.name + ".tessera-pull")
    sidecar.write_text(json.dumps({"transfer": transfer_id, "etag": etag, "size": len(stored)}))

    code, stdout, stderr = await tessera(
        "transfer", "pull", "--dir", str(consumer.config.directory), transfer_id, "-o", str(out), "--json"
    )
    assert code == 0, stderr
    result = json.loads(stdout)
    assert await anyio.Path(out).read_bytes() == stored and not sidecar.exists()
    assert (result["resumed_from"], result["received"], result["bytes"]) == (had, len(stored) - had, len(stored))

    code, stdout, _ = await tessera("usage", "report", "--dir", str(provider.config.directory), "--json")
    (row,) = [r for r in json.loads(stdout) if r["agreement_id"] == agreement_id]
    assert row["uses"] == 1
    assert len(stored) <= row["bytes"] < 2 * len(stored)  # all of it, plus what the broken connection lost
    again = await tessera("transfer", "pull", "--dir", str(consumer.config.directory), transfer_id, "-o", str(out))
    assert again[0] == 2 and "--force" in again[2]  # a complete file is not overwritten unasked
    code, _, stderr = await tessera(
        "transfer", "pull", "--dir", str(consumer.config.directory), transfer_id, "-o", str(out), "--force"
    )
    assert code == 1 and "403" in stderr  # the one use is spent


async def test_the_cli_starts_over_when_the_providers_data_changed(
    provider: Site, consumer: Site, data_csv: Path, tmp_path: Path, stored: bytes
) -> None:
    transfer_id, _ = await _pull_transfer(provider, consumer, data_csv)
    out = tmp_path / "pulled.csv"
    out.write_bytes(b"stale bytes of an older version")
    sidecar = out.with_name(out.name + ".tessera-pull")
    sidecar.write_text(json.dumps({"transfer": transfer_id, "etag": '"older"', "size": 10**6}))
    code, stdout, stderr = await tessera(
        "transfer", "pull", "--dir", str(consumer.config.directory), transfer_id, "-o", str(out), "--json"
    )
    assert code == 0, stderr
    assert await anyio.Path(out).read_bytes() == stored and json.loads(stdout)["resumed_from"] == 0
    assert not sidecar.exists()


async def test_the_cli_names_a_transfer_it_does_not_know(consumer: Site, tmp_path: Path) -> None:
    code, _, stderr = await tessera(
        "transfer", "pull", "--dir", str(consumer.config.directory), "no-such", "-o", str(tmp_path / "x")
    )
    assert code == 2 and "no-such" in stderr


async def test_a_push_of_an_untouched_use_arrives_byte_exact(
    provider: Site, consumer: Site, data_csv: Path, stored: bytes
) -> None:
    offer = await publish(provider, data_csv, policy=OPEN_POLICY)
    agreement_id = (await negotiate(consumer, provider, offer))["agreement_id"]
    transfer = await start_transfer(consumer, agreement_id, until=("COMPLETED",), format="HttpData-PUSH")
    assert transfer["state"] == "COMPLETED", transfer
    (copy,) = (await consumer.api.get("/copies")).json()["items"]
    assert await anyio.Path(copy["path"]).read_bytes() == stored
    assert (await _counter(provider, agreement_id, bytes=len(stored)))["bytes"] == len(stored)
