"""The broker's console in a real browser: sign-in with the admin key, search, admission, claims,
suspension, data products and the event log, in English and Chinese; closed without an admin key."""

import base64
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from playwright.async_api import Page, expect

from tessera.identity import generate_key, public_jwk
from tests.browser.conftest import BROKER_ADMIN, broker_with_admin_key, screenshot, sign_in
from tests.dataspace import Dataspace, Site, publish

ADMIN = BROKER_ADMIN
LAB = "urn:tessera:lab"
USCC = "91350100M000100Y43"


@pytest.fixture
async def broker_console(space: Dataspace, provider: Site, people_csv: Path) -> AsyncIterator[str]:
    """A second replica of the space's broker (same database) with an admin key, after the provider
    registered an offering with a Chinese title: the base URL to open the console at."""
    asset = {"title": "空气质量监测数据", "description": "Hourly air quality readings", "keywords": ["air", "环境"]}
    await publish(provider, people_csv, **asset)
    registered = await provider.api.put("/registration", json={"title": "Provider"})
    assert registered.status_code == 200, registered.text
    async with broker_with_admin_key(space) as url:
        yield url


async def test_operator_searches_admits_edits_claims_suspends_and_reads_the_log(
    page: Page, broker_console: str, provider: Site
) -> None:
    base = broker_console
    await sign_in(page, base, ADMIN)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Search")

    await page.get_by_label("Words to find").fill("air")
    await page.get_by_role("button", name="Search", exact=True).click()
    await expect(page.get_by_test_id("total")).to_have_text("1")
    await expect(page.get_by_role("cell", name="空气质量监测数据")).to_be_visible()
    await page.get_by_role("checkbox", name=re.compile("csv")).check()
    await page.get_by_role("button", name="Search", exact=True).click()
    await expect(page).to_have_url(re.compile(r"format=csv"))
    await expect(page.get_by_test_id("total")).to_have_text("1")
    await screenshot(page, "broker-search-en")

    await page.goto(f"{base}/console/participants/new")
    await page.get_by_label("Participant id").fill(LAB)
    await page.get_by_label("Organisation").fill("Lab 实验室")
    await page.get_by_label("Region").fill("CN-east")
    await page.get_by_label("Jurisdiction").fill("China")  # not a country code: refused, nothing written
    await page.get_by_label("Registry", exact=True).select_option("uscc")
    await page.get_by_label("Registry id").fill(USCC)
    await page.get_by_label("Public key (JWK, JSON)").fill(json.dumps(public_jwk(generate_key())))
    await page.get_by_role("button", name="Admit").click()
    await expect(page.get_by_role("alert")).to_contain_text("jurisdiction:")
    async with httpx.AsyncClient(base_url=base) as broker:
        assert (await broker.get(f"/participants/{LAB}")).status_code == 404
        await page.get_by_label("Jurisdiction").fill("CN")
        await screenshot(page, "broker-admit-en")
        await page.get_by_role("button", name="Admit").click()
        await expect(page.get_by_role("status")).to_contain_text(f"participant {LAB} admitted")
        admitted = (await broker.get(f"/participants/{LAB}")).json()
        assert (admitted["org"], admitted["jurisdiction"]) == ("Lab 实验室", "CN")
        assert admitted["claims"]["registry_id"] == {"type": "uscc", "value": USCC}

        await page.get_by_label("Region").fill("CN-north")
        await page.get_by_label("Roles").fill("researcher, member")
        await page.get_by_role("button", name="Save the claims").click()
        await expect(page.get_by_role("status")).to_contain_text("updated: region, roles")
        await expect(page.get_by_test_id("claims")).to_contain_text("CN-north")
        claims = (await broker.get(f"/participants/{LAB}")).json()["claims"]
        assert (claims["region"], claims["roles"]) == ("CN-north", ["researcher", "member"])

        await page.get_by_role("button", name="Suspend").click()
        await expect(page.get_by_test_id("status")).to_have_text("suspended")
        assert (await broker.get(f"/participants/{LAB}")).json()["suspended"] is True
        assert LAB in _suspended((await broker.get("/participant-status")).text)
        await screenshot(page, "broker-participant-en")

    await page.get_by_role("link", name="Participants").click()
    row = page.get_by_role("row").filter(has_text=LAB)
    await expect(row).to_contain_text("suspended")
    await expect(row).to_contain_text(USCC)
    await expect(page.get_by_role("row").filter(has_text=provider.id)).to_contain_text("active")
    await screenshot(page, "broker-participants-en")

    await page.get_by_role("link", name="Data products").click()
    await expect(page.get_by_test_id("products")).to_contain_text("空气质量监测数据")
    await screenshot(page, "broker-products-en")
    await page.get_by_role("link", name=re.compile(r"^TDP-")).first.click()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Data product")
    await expect(page.get_by_test_id("certificate-claims")).to_contain_text("空气质量监测数据")
    async with page.expect_download() as waiting:
        await page.get_by_role("button", name="Download the certificate").click()
    download = await waiting.value
    assert (await download.path()).read_text().count(".") == 2  # a JWT
    await screenshot(page, "broker-product-en")

    await page.get_by_role("link", name="Event log").click()
    events = page.get_by_test_id("events")
    await expect(events.get_by_role("row").nth(1)).to_contain_text("participant.suspended")  # newest first
    await expect(events.get_by_role("row").filter(has_text="participant.added").filter(has_text=LAB)).to_be_visible()
    await expect(events.get_by_role("row").filter(has_text="participant.updated")).to_contain_text("region")
    await screenshot(page, "broker-events-en")


async def test_every_page_speaks_chinese(page: Page, broker_console: str, provider: Site) -> None:
    base = broker_console
    await sign_in(page, base, ADMIN, language="zh-CN")
    await expect(page.get_by_role("heading", level=1)).to_have_text("搜索")
    await page.get_by_label("在标题、描述和关键词中查找的词语").fill("空气")
    await page.get_by_role("button", name="搜索", exact=True).click()
    await expect(page.get_by_test_id("total")).to_have_text("1")
    await screenshot(page, "broker-search-zh-CN")
    code = await page.get_by_role("link", name=re.compile(r"^TDP-")).first.inner_text()

    pages = {
        "/participants": ("参与方", "broker-participants-zh-CN"),
        "/participants/new": ("接纳参与方", "broker-admit-zh-CN"),
        f"/participants/{quote(provider.id, safe='')}": ("参与方", "broker-participant-zh-CN"),
        "/products": ("数据产品", "broker-products-zh-CN"),
        f"/products/{code}": ("数据产品", "broker-product-zh-CN"),
        "/events": ("事件日志", "broker-events-zh-CN"),
    }
    for path, (heading, name) in pages.items():
        await page.goto(f"{base}/console{path}")
        await expect(page.get_by_role("heading", level=1)).to_contain_text(heading)
        await screenshot(page, name)
    await expect(page.get_by_role("columnheader", name="参与方")).to_be_visible()

    await page.goto(f"{base}/console/products/TDP-2000-000000-0")
    await expect(page.get_by_role("alert")).to_contain_text("no data product")


async def test_sign_in_is_refused_when_no_admin_key_is_configured(page: Page, space: Dataspace) -> None:
    base = space.broker_url
    await page.goto(f"{base}/console/")
    await expect(page.get_by_role("alert")).to_contain_text("no admin key")
    await page.get_by_label("Admin key").fill("anything")
    await page.click("form[action$='/signin'] button[type=submit]")
    await expect(page.get_by_role("alert")).to_contain_text("nobody can sign in")
    await screenshot(page, "broker-signin-closed-en")
    async with httpx.AsyncClient(base_url=base + "/console") as browser_like:
        form = await browser_like.get("/signin")
        csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
        refused = await browser_like.post("/signin", data={"key": "", "csrf": csrf})
        assert refused.status_code == 403
        assert (await browser_like.get("/participants")).status_code == 303  # still signed out


def _suspended(document: str) -> list[str]:
    payload = document.split(".")[1]
    suspended: list[str] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["suspended"]
    return suspended
