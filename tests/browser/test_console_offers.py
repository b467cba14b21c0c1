"""The console's offers in a real browser: "New data offer" in one step, its live preview, the list."""

import asyncio
import re
from pathlib import Path

import httpx
from playwright.async_api import Page, expect

from tests.browser.conftest import compose_research_policy, screenshot, sign_in
from tests.dataspace import Dataspace, Site, publish

TITLE = "Lighthouse keepers"


async def test_a_csv_upload_is_published_and_found_at_the_broker(
    page: Page, provider: Site, space: Dataspace, people_csv: Path
) -> None:
    base = provider.config.url
    await sign_in(page, base, provider.config.management_token)
    await page.goto(f"{base}/console/offers/new")
    await expect(page.get_by_role("heading", level=1)).to_have_text("New data offer")
    await page.get_by_label("Upload a file").set_input_files(str(people_csv))
    await page.get_by_label("Title", exact=True).fill(TITLE)
    await page.get_by_label("Keywords").fill("maritime, people")
    await page.get_by_label("Classification").select_option("important")
    await page.get_by_label("Holds personal information").check()
    await compose_research_policy(page)

    preview = page.get_by_test_id("preview")
    await expect(preview.get_by_test_id("preview-odrl")).to_contain_text('"research"')
    await expect(preview.get_by_test_id("preview-rego")).to_contain_text(re.compile(r"package tessera\.usage\.p"))
    await expect(preview.get_by_test_id("preview-words")).to_contain_text("At most 3 uses")
    await expect(preview.get_by_test_id("preview-odrl")).to_contain_text('"email"')
    await screenshot(page, "connector-offers-new-en")

    await page.get_by_role("button", name="Publish").click()
    await expect(page).to_have_url(f"{base}/console/offers")
    status = page.get_by_role("status")
    await expect(status).to_contain_text("registered at the broker")
    await expect(page.get_by_role("rowheader", name=re.compile(TITLE))).to_be_visible()
    await screenshot(page, "connector-offers-en")

    offers = (await provider.api.get("/offers")).json()["items"]
    assert len(offers) == 1
    await expect(status).to_contain_text(offers[0]["id"])
    asset = (await provider.api.get(f"/assets/{offers[0]['asset_id']}")).json()
    assert (asset["title"], asset["format"], asset["classification"], asset["personal_information"]) == (
        TITLE,
        "csv",
        "important",
        True,
    )
    [stored] = (provider.config.directory / "uploads").glob("*/*")
    assert stored.name == "people.csv"
    assert await asyncio.to_thread(stored.read_bytes) == await asyncio.to_thread(people_csv.read_bytes)
    policy = (await provider.api.get(f"/policies/{offers[0]['usage_policy_id']}")).json()
    assert "max_uses := 3" in policy["source"] and '"research"' in policy["source"]
    async with httpx.AsyncClient(base_url=space.broker_url) as broker:
        found = (await broker.get("/search", params={"q": "Lighthouse"})).json()
    assert found["total"] == 1, found


async def test_an_invalid_parameter_shows_in_the_preview_and_on_submit(
    page: Page, provider: Site, people_csv: Path
) -> None:
    base = provider.config.url
    await sign_in(page, base, provider.config.management_token)
    await page.goto(f"{base}/console/offers/new")
    await page.get_by_label("… or a path on the connector's machine").fill(str(people_csv))
    await page.get_by_label("Title", exact=True).fill(TITLE)
    await compose_research_policy(page)
    await page.get_by_label("Max uses", exact=True).fill("0")
    problems = page.get_by_test_id("preview-problems")
    await expect(problems).to_contain_text("Max uses must be a whole number of at least 1, not '0'")

    await page.get_by_role("button", name="Publish").click()
    await expect(page.get_by_test_id("publish-errors")).to_contain_text("Max uses must be a whole number")
    await expect(page.get_by_label("Title", exact=True)).to_have_value(TITLE)  # what was typed is kept
    await expect(page.get_by_label("Purposes", exact=True)).to_have_value("research")
    for collection in ("/assets", "/policies", "/offers"):
        assert (await provider.api.get(collection)).json()["items"] == []

    # Text where a number belongs, as a script could send it: the preview names it, no 500.
    csrf = await page.locator("meta[name=csrf-token]").get_attribute("content")
    answer = await page.request.post(
        f"{base}/console/offers/preview",
        form={"csrf": csrf or "", "use_max_uses": "on", "max_uses": "abc"},
    )
    assert answer.status == 200
    assert "Max uses must be a whole number of at least 1, not &#39;abc&#39;" in await answer.text()
    own = await page.request.post(
        f"{base}/console/offers/preview",
        form={"csrf": csrf or "", "policy_mode": "rego", "rego": "package mine\n\ndefault allow := true"},
    )
    assert "package mine" in await own.text() and "Allowed: Use the data" in await own.text()


async def test_a_failed_step_names_what_was_created_and_a_retry_goes_on(
    page: Page, provider: Site, people_csv: Path
) -> None:
    taken = await publish(provider, people_csv)  # an offer id the form will collide with
    base = provider.config.url
    await sign_in(page, base, provider.config.management_token)
    await page.goto(f"{base}/console/offers/new")
    await page.get_by_label("… or a path on the connector's machine").fill(str(people_csv))
    await page.get_by_label("Title", exact=True).fill(TITLE)
    await page.get_by_label("Register at the broker").uncheck()
    await compose_research_policy(page)
    await page.locator("input[name=offer_id]").evaluate("(input, id) => { input.value = id }", taken["id"])
    await page.get_by_role("button", name="Publish").click()

    await expect(page.get_by_test_id("publish-errors")).to_contain_text("already exists")
    done = page.get_by_test_id("publish-done")
    await expect(done).to_contain_text("policy")
    await expect(done).to_contain_text("asset")
    await page.locator("input[name=offer_id]").evaluate("input => { input.value = 'urn:test:second-offer' }")
    await page.get_by_role("button", name="Publish").click()
    await expect(page.get_by_role("status")).to_contain_text("urn:test:second-offer")
    await expect(page.get_by_role("status")).to_contain_text("not registered")
    assets = (await provider.api.get("/assets")).json()["items"]
    assert sorted(a["title"] for a in assets) == ["Lighthouse keepers", "People"]  # the asset was not made twice


async def test_the_new_offer_page_in_chinese(page: Page, provider: Site) -> None:
    await sign_in(page, provider.config.url, provider.config.management_token, language="zh-CN")
    await page.goto(f"{provider.config.url}/console/offers/new")
    await expect(page.get_by_role("heading", level=1)).to_have_text("新建数据报价")
    await expect(page.get_by_label("分级")).to_be_visible()
    await expect(page.get_by_label("仅限特定目的")).to_be_visible()
    await expect(page.get_by_role("button", name="发布")).to_be_visible()
    await screenshot(page, "connector-offers-new-zh-CN")
    await page.goto(f"{provider.config.url}/console/offers")
    await expect(page.get_by_role("button", name="新建数据报价")).to_be_visible()
    await screenshot(page, "connector-offers-zh-CN")
