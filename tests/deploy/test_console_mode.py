"""`make console`: the quickstart's data space left running for a person at a browser, as separate
processes; the consoles it names answer and open with the keys it prints, and SIGTERM stops them all."""

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
CONSOLE_LINE = re.compile(r"^(provider connector|consumer connector|broker): (http://\S+/console)\s+key (\S+)$")


async def _lines_until_ready(stream: asyncio.StreamReader) -> list[str]:
    seen: list[str] = []
    while not any("Press Ctrl-C" in line for line in seen):
        line = (await asyncio.wait_for(stream.readline(), 90)).decode()
        assert line, "the console mode ended before it was ready:\n" + "".join(seen)
        seen.append(line)
    return seen


async def test_the_console_mode_prints_consoles_that_open_with_their_keys(tmp_path: Path) -> None:
    work = tmp_path / "space"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REPO / "deploy" / "quickstart.py"),
        "--console",
        "--keep",
        str(work),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "400", "TERM": "dumb", "NO_COLOR": "1"},
    )
    assert child.stdout is not None
    try:
        lines = await _lines_until_ready(child.stdout)
        consoles = {m[1]: (m[2], m[3]) for line in lines if (m := CONSOLE_LINE.match(line.strip()))}
        assert set(consoles) == {"provider connector", "consumer connector", "broker"}, lines
        async with httpx.AsyncClient() as browser_like:
            for url, key in consoles.values():
                signin = await browser_like.get(url + "/signin")
                csrf = signin.text.split('name="csrf" value="')[1].split('"')[0]
                signed = await browser_like.post(url + "/signin", data={"key": key, "csrf": csrf})
                assert signed.status_code == 303 and signed.headers["location"] == "/console/", url
                browser_like.cookies.clear()
    finally:
        child.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(child.wait(), 30) == 0
    for url, _ in consoles.values():
        try:
            async with httpx.AsyncClient() as late:
                await late.get(url + "/signin")
        except httpx.TransportError:
            continue
        raise AssertionError(f"{url} still answers after the console mode stopped")
