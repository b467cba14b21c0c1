"""The console's agreements, transfers and usage pages in a real browser, over a real broker, provider and
consumer: terms in plain words, signatures, a transfer started, watched, downloaded, refused, suspended,
resumed and terminated from its page, and the provider's metering with its charts and cross-border filings."""

import csv
import io
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Page, expect

from connector.config import CrossBorderRules
from tests.browser.conftest import screenshot, sign_in
from tests.dataspace import PEOPLE, Dataspace, Site, negotiate, publish, start_transfer

OPEN = "package tessera.usage.open\n\ndefault allow := true\n"


async def agreed(consumer: Site, provider: Site, data: Path, **offer_fields: Any) -> str:
    """An agreement on the research offer with the offer's `terms`; its id."""
    published = await publish(provider, data)
    offer = await provider.post(
        "/offers", {"asset_id": published["asset_id"], "usage_policy_id": published["usage_policy_id"], **offer_fields}
    )
    negotiation = await negotiate(consumer, provider, offer)
    assert negotiation["state"] == "FINALIZED", negotiation
    agreement_id: str = negotiation["agreement_id"]
    return agreement_id


async def test_an_agreement_is_read_signed_downloaded_and_used_from_the_console(
    page: Page, provider: Site, consumer: Site, people_csv: Path, tmp_path: Path
) -> None:
    agreement_id = await agreed(consumer, provider, people_csv, terms={"purposes": ["research"], "uses": 3})
    base = consumer.config.url
    await sign_in(page, base, consumer.config.management_token)

    await page.get_by_role("link", name="Agreements").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Agreements")
    await page.get_by_role("link", name=agreement_id).click()
    terms = page.get_by_test_id("terms")
    await expect(terms).to_contain_text("Allowed: Use the data")
    await expect(terms).to_contain_text("Only for the purposes: research")
    await expect(terms).to_contain_text("At most 3 uses")
    signatures = page.get_by_test_id("signatures")
    await expect(signatures.get_by_text("verifies", exact=True)).to_have_count(2)
    await expect(signatures).to_contain_text(provider.id)
    await expect(signatures).to_contain_text("ES256")
    await expect(page.get_by_test_id("usage-policy")).to_contain_text("sha256:")
    await screenshot(page, "connector-agreement-en")

    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Download as JSON").click()
    download = await download_info.value
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    assert saved.suffix == ".json"
    assert json.loads(saved.read_text())["agreement"]["@id"] == agreement_id

    await page.get_by_role("button", name="Start transfer").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Transfer details")
    await expect(page.get_by_test_id("transfer-state")).to_have_text("STARTED")  # polled: it started REQUESTED
    transfer_id = await page.get_by_test_id("transfer-id").inner_text()
    await expect(page.get_by_label("Purpose")).to_have_value("research")
    await screenshot(page, "connector-transfer-en")

    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Download", exact=True).click()
    download = await download_info.value
    assert download.suggested_filename.endswith(".csv")
    saved = tmp_path / "data.csv"
    await download.save_as(saved)
    assert list(csv.DictReader(io.StringIO(saved.read_text()))) == [
        {k: v for k, v in person.items() if k != "email"} for person in PEOPLE
    ]
    await expect(page.get_by_test_id("received-bytes")).to_have_text(str(saved.stat().st_size))

    await page.get_by_label("Purpose").fill("marketing")
    await page.get_by_role("button", name="Download", exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Download refused")
    await expect(page.get_by_test_id("refusal-reasons")).to_contain_text('purpose "marketing" is not allowed')
    await screenshot(page, "connector-download-refused-en")
    await page.get_by_role("link", name="Back to the transfer").click()

    for button, state in (("Suspend", "SUSPENDED"), ("Resume", "STARTED"), ("Terminate", "TERMINATED")):
        await page.get_by_label("Reason").fill(f"{button} from the console")
        await page.get_by_role("button", name=button).click()
        await expect(page.get_by_test_id("transfer-state")).to_have_text(state)
    await expect(page.get_by_role("button", name="Terminate")).to_have_count(0)
    await expect(page.locator("#transfer-live")).not_to_have_attribute("hx-trigger", re.compile("."))

    await page.get_by_role("link", name="Transfers").click()
    await expect(page.get_by_role("link", name=transfer_id)).to_be_visible()
    await expect(page.locator("td .badge.bad", has_text="TERMINATED")).to_be_visible()
    await screenshot(page, "connector-transfers-en")

    # The provider meters the agreement: one use of three, the bytes it served, in a table and in charts.
    await sign_in(page, provider.config.url, provider.config.management_token)
    await page.get_by_role("link", name="Usage").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Usage and metering")
    await expect(page.get_by_test_id("uses")).to_have_text("1 of 3")
    chart = page.get_by_role("img", name="Uses against the limit, per agreement")
    await expect(chart).to_be_visible()
    await expect(chart.locator("rect.bar.limit")).to_have_count(1)
    await expect(page.get_by_test_id("bytes-chart")).to_contain_text(f"{saved.stat().st_size} bytes")
    await expect(page.get_by_test_id("filings")).to_have_count(0)
    await screenshot(page, "connector-usage-en")

    await page.goto(f"{provider.config.url}/console/language?to=zh-CN&next=/usage")
    await expect(page.get_by_role("heading", level=1)).to_have_text("使用与计量")
    await expect(page.get_by_test_id("uses")).to_have_text("已用 1 次，共 3 次")  # noqa: RUF001 - the Chinese comma
    await screenshot(page, "connector-usage-zh-CN")
    await sign_in(page, base, consumer.config.management_token, language="zh-CN")
    for path, heading, name in (
        ("/agreements", "协议", "agreements"),
        (f"/agreements/{agreement_id}", "协议详情", "agreement"),
        ("/transfers", "传输", "transfers"),
        (f"/transfers/{transfer_id}", "传输详情", "transfer"),
    ):
        await page.goto(f"{base}/console{path}")
        await expect(page.get_by_role("heading", level=1)).to_have_text(heading)
        await screenshot(page, f"connector-{name}-zh-CN")
    await expect(page.get_by_test_id("transfer-state")).to_have_text("TERMINATED")
    await page.goto(f"{base}/console/agreements/{agreement_id}")
    await expect(page.get_by_test_id("terms")).to_contain_text("最多使用 3 次")


async def test_the_usage_page_lists_cross_border_filings(space: Dataspace, people_csv: Path, page: Page) -> None:
    rules = CrossBorderRules(destinations=("DE",), never_leave_levels=("core",), never_leave_categories=())
    config = replace(await space.admit("provider", jurisdiction="CN"), cross_border=rules)
    config.save()
    provider = await space.start(config)
    consumer = await space.start(
        await space.admit("consumer", jurisdiction="DE", registry_type="uscc", registry_id="91350100M000100Y43")
    )
    offer = await publish(provider, people_csv, policy=OPEN, home_jurisdiction="CN", category="health")
    negotiation = await negotiate(consumer, provider, offer)
    transfer = await start_transfer(consumer, negotiation["agreement_id"])
    assert (await consumer.api.get(f"/transfers/{transfer['id']}/data")).status_code == 200

    await sign_in(page, provider.config.url, provider.config.management_token)
    await page.goto(f"{provider.config.url}/console/usage")
    filings = page.get_by_test_id("filings")
    await expect(filings).to_contain_text("91350100M000100Y43")
    await expect(filings.locator("tbody tr")).to_have_count(1)
    await expect(filings).to_contain_text("DE")
    await expect(page.get_by_test_id("uses")).to_have_text("1, no limit")
    await screenshot(page, "connector-usage-cross-border-en")

    # Bad input reads as a page, never a 500.
    consumer_console = f"{consumer.config.url}/console"
    await sign_in(page, consumer.config.url, consumer.config.management_token)
    answer = await page.goto(f"{consumer_console}/transfers/{transfer['id']}/download?format=xml&purpose=research")
    assert answer is not None and answer.status == 400
    await expect(page.get_by_role("alert")).to_contain_text("format must be one of csv, jsonl, json, parquet")
    answer = await page.goto(f"{consumer_console}/agreements/urn:uuid:none")
    assert answer is not None and answer.status == 404
    await expect(page.get_by_role("heading", level=1)).to_have_text("Not possible")


async def test_the_transfer_page_shows_a_download_in_flight(
    space: Dataspace, provider: Site, consumer: Site, tmp_path: Path
) -> None:
    big = tmp_path / "readings.csv"
    big.write_text("id,value\n" + "".join(f"{n},{n * 7 % 1000}\n" for n in range(300_000)))
    offer = await publish(provider, big, policy=OPEN)
    negotiation = await negotiate(consumer, provider, offer)
    transfer = await start_transfer(consumer, negotiation["agreement_id"])
    console = f"{consumer.config.url}/console"
    async with httpx.AsyncClient(base_url=console) as browser_like:
        signin = await browser_like.get("/signin")
        csrf = signin.text.split('name="csrf" value="')[1].split('"')[0]
        signed = await browser_like.post("/signin", data={"key": consumer.config.management_token, "csrf": csrf})
        assert signed.status_code == 303
        state = f"/transfers/{transfer['id']}/state"
        assert 'data-testid="downloading-bytes"' not in (await browser_like.get(state)).text
        async with browser_like.stream("GET", f"/transfers/{transfer['id']}/download?format=csv") as download:
            assert download.status_code == 200
            chunks = download.aiter_raw()
            first = await anext(chunks)
            during = (await browser_like.get(state)).text  # the download waits for us: still in flight
            sent = int(during.split('data-testid="downloading-bytes">')[1].split("<")[0])
            assert len(first) <= sent < big.stat().st_size
            total = len(first) + sum([len(chunk) async for chunk in chunks])
        after = (await browser_like.get(state)).text
    assert 'data-testid="downloading-bytes"' not in after
    assert f'data-testid="received-bytes">{total}<' in after
