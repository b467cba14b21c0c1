"""The quickstart's whole exchange done by two people in two browsers, in the consoles only: the provider
publishes, the consumer discovers, negotiates, starts a transfer and downloads; both read the metering and the
provider verifies its audit chain. No management API call, no CLI: only what a person can click."""

import csv
import io
from pathlib import Path

from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import compose_research_policy, screenshot, sign_in
from tests.dataspace import PEOPLE, Site

TITLE = "Wearables study: participants"


async def _publish(page: Page, provider: Site, data: Path) -> None:
    await sign_in(page, provider.config.url, provider.config.management_token)
    await page.get_by_role("link", name="Offers").click()
    await page.get_by_role("button", name="New data offer").click()
    await page.get_by_label("Upload a file").set_input_files(str(data))
    await page.get_by_label("Title", exact=True).fill(TITLE)
    await page.get_by_label("Description").first.fill("Resting heart rate and daily steps")
    await page.get_by_label("Keywords").fill("health, wearables, research")
    await page.get_by_label("Holds personal information").check()
    await compose_research_policy(page)
    await expect(page.get_by_test_id("preview-words")).to_contain_text("At most 3 uses")
    await screenshot(page, "walk-1-provider-new-offer")
    await page.get_by_role("button", name="Publish").click()
    await expect(page.get_by_role("status")).to_contain_text("registered at the broker")


async def _discover_and_negotiate(page: Page, consumer: Site) -> None:
    await sign_in(page, consumer.config.url, consumer.config.management_token)
    await page.get_by_role("link", name="Discover").click()
    await page.get_by_label("Search offerings").fill("wearables")
    await page.get_by_role("button", name="Search").click()
    await expect(page.get_by_role("heading", name=TITLE)).to_be_visible()
    await screenshot(page, "walk-2-consumer-discover")
    await page.get_by_role("link", name="Open the provider's catalog").click()
    dataset = page.locator("article.dataset", has=page.get_by_role("heading", name=TITLE))
    await expect(dataset.get_by_test_id("offer-words")).to_contain_text("Only for the purposes: research")
    await dataset.get_by_text("Negotiate this offer").click()
    await dataset.get_by_label("Purposes (comma separated)").fill("research")
    await dataset.get_by_label("Uses", exact=True).fill("3")
    await screenshot(page, "walk-3-consumer-catalog")
    await dataset.get_by_role("button", name="Start the negotiation").click()
    await expect(page.locator("#negotiation-live").get_by_test_id("state")).to_have_text("FINALIZED")
    await screenshot(page, "walk-4-consumer-negotiation")


async def _transfer_and_download(page: Page, saved: Path) -> None:
    await page.get_by_test_id("agreement-link").click()
    await expect(page.get_by_test_id("terms")).to_contain_text("At most 3 uses")
    await expect(page.get_by_test_id("signatures").get_by_text("verifies", exact=True)).to_have_count(2)
    await screenshot(page, "walk-5-consumer-agreement")
    await page.get_by_role("button", name="Start transfer").click()
    await expect(page.get_by_test_id("transfer-state")).to_have_text("STARTED")
    await page.get_by_label("Purpose").fill("research")
    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Download", exact=True).click()
    await (await download_info.value).save_as(saved)
    await screenshot(page, "walk-6-consumer-transfer")


async def test_publish_discover_negotiate_pull_and_meter_in_the_consoles_only(
    browser: Browser, provider: Site, consumer: Site, people_csv: Path, tmp_path: Path
) -> None:
    provider_page, consumer_page = [await (await browser.new_context(locale="en-US")).new_page() for _ in "pc"]

    await _publish(provider_page, provider, people_csv)
    await _discover_and_negotiate(consumer_page, consumer)
    saved = tmp_path / "received.csv"
    await _transfer_and_download(consumer_page, saved)
    received = list(csv.DictReader(io.StringIO(saved.read_text())))
    assert received == [{k: v for k, v in person.items() if k != "email"} for person in PEOPLE]

    # Metering: the provider counted the use against the agreement's three; the consumer sees what it received.
    await provider_page.get_by_role("link", name="Usage").click()
    await expect(provider_page.get_by_test_id("uses")).to_have_text("1 of 3")
    await screenshot(provider_page, "walk-7-provider-usage")
    await consumer_page.get_by_role("link", name="Usage").click()
    await expect(consumer_page.get_by_test_id("bytes-chart")).to_contain_text(f"{saved.stat().st_size} bytes")
    await expect(consumer_page.get_by_test_id("uses")).to_have_text("1 of 3")  # the pulls it received

    await provider_page.get_by_role("link", name="Audit").click()
    await provider_page.get_by_role("button", name="Verify locally only").click()
    await expect(provider_page.get_by_test_id("verify-report")).to_contain_text("intact")
    await screenshot(provider_page, "walk-8-provider-audit")
