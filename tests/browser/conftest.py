"""Browser tests: playwright drives Debian's chromium (`/usr/bin/chromium`, installed by the Makefile with
fonts-wqy-microhei for Chinese), never a browser of its own download. Screenshots go to
`$TESSERA_ARTIFACTS/screenshots` (default `test-artifacts/screenshots`), kept as CI artefacts."""

import dataclasses
import os
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from broker.app import create_app as create_broker_app
from tests.dataspace import Dataspace
from tests.utils import run_server

CHROMIUM = os.environ.get("TESSERA_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
HAS_CHROMIUM = Path(CHROMIUM).exists()
ARTIFACTS = Path(os.environ.get("TESSERA_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
BROKER_ADMIN = "broker-admin-key-for-tests"
# Flags this machine's closed network needs: no background connections, no first-run, no sandbox as root.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not HAS_CHROMIUM:
        if os.environ.get("CI") == "true":
            pytest.fail(f"no chromium at {CHROMIUM}: `make test` installs Debian's package")
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium fonts-wqy-microhei)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    opened = await context.new_page()
    try:
        yield opened
    finally:
        await context.close()


async def screenshot(page: Page, name: str) -> Path:
    """A full-page screenshot kept as a test artefact; `name` becomes its file name."""
    folder = ARTIFACTS / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (re.sub(r"[^A-Za-z0-9_.-]+", "-", name) + ".png")
    await page.screenshot(path=str(path), full_page=True)
    return path


async def sign_in(page: Page, base_url: str, key: str, *, language: str = "en") -> None:
    """Open the console at `base_url` (a connector's or broker's URL), choose the language and sign in."""
    await page.goto(f"{base_url}/console/language?to={language}&next=/signin")
    await page.fill("input[name=key]", key)
    await page.click("form[action$='/signin'] button[type=submit]")
    await page.wait_for_url(re.compile(r"/console/(\?.*)?$|/console/[^s]"))


async def compose_research_policy(page: Page) -> None:
    """On "New data offer": the quickstart's policy from the library's patterns (research, 3 uses, e-mail masked)."""
    await page.get_by_label("Only for some purposes").check()
    await page.get_by_label("Purposes", exact=True).fill("research")
    await page.get_by_label("A number of uses").check()
    await page.get_by_label("Max uses", exact=True).fill("3")
    await page.get_by_label("Mask fields before delivery").check()
    await page.locator("#p-masked_fields").fill("email")


@asynccontextmanager
async def broker_with_admin_key(space: Dataspace) -> AsyncIterator[str]:
    """A second replica of the space's broker (same database) whose console opens with `BROKER_ADMIN`: its URL."""
    assert space.broker_config is not None
    config = dataclasses.replace(space.broker_config, admin_token=BROKER_ADMIN)
    async with run_server(create_broker_app(config, crawl=False)) as url:
        yield url
