"""Discover → negotiate in a real browser: a broker, a provider that registered its offerings, a consumer's console."""

import asyncio
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from playwright.async_api import Page, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.browser.conftest import screenshot, sign_in
from tests.dataspace import RESEARCH_POLICY, Dataspace, Site
from tests.utils import run_server

HEART_RATE = {"title": "心率数据", "description": "可穿戴设备采集的心率数据", "keywords": ["心率", "wearables"]}
METERS = {"title": "Energy meters", "description": "Smart meter readings by the hour", "keywords": ["energy"]}


async def offer(provider: Site, data: Path, asset: dict[str, Any], **offer: Any) -> dict[str, Any]:
    """An asset and an offer of it for research, 3 uses (`offer`: approval …) on the provider."""
    created = await provider.post("/assets", {"format": "csv", "path": str(data)} | asset)
    usage = await provider.post("/policies", {"title": "research", "source": RESEARCH_POLICY})
    terms = {"purposes": ["research"], "uses": 3}
    return await provider.post(
        "/offers", {"asset_id": created["id"], "usage_policy_id": usage["id"], "terms": terms} | offer
    )


async def register(provider: Site) -> None:
    registered = await provider.api.put("/registration", json={"title": "Provider", "description": "Wearables"})
    assert registered.status_code == 200, registered.text


async def provider_negotiation(provider: Site) -> str:
    for _ in range(250):
        items = (await provider.api.get("/negotiations")).json()["items"]
        if items and items[0]["state"] == "REQUESTED":
            return str(items[0]["id"])
        await asyncio.sleep(0.02)
    raise AssertionError("the provider never received the request")


async def test_search_refine_read_the_catalog_and_follow_a_negotiation_live(
    page: Page, provider: Site, consumer: Site, people_csv: Path
) -> None:
    await offer(provider, people_csv, HEART_RATE | {"category": "health"}, approval="manual")
    await offer(provider, people_csv, METERS | {"category": "energy"})
    await register(provider)
    base = consumer.config.url
    await sign_in(page, base, consumer.config.management_token)

    await page.get_by_role("link", name="Discover").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Discover")
    await expect(page.get_by_test_id("total")).to_have_text("2")
    await page.get_by_label("Search offerings").fill("energy")
    await page.get_by_role("button", name="Search").click()
    await expect(page.get_by_role("heading", name="Energy meters")).to_be_visible()
    await expect(page.get_by_role("heading", name="心率数据")).to_have_count(0)

    await page.get_by_label("Search offerings").fill("心率")
    await page.get_by_role("button", name="Search").click()
    result = page.locator("article.result")
    await expect(result).to_have_count(1)
    await expect(result).to_contain_text("可穿戴设备采集的心率数据")
    await expect(result).to_contain_text(provider.id)
    await expect(result).to_contain_text("wearables")
    await expect(result).to_contain_text("Theme: health")
    await screenshot(page, "connector-discover-en")

    # A facet refines the search and keeps the query; clicking it again takes it off.
    await page.goto(f"{base}/console/discover")
    await page.locator("a[data-facet=theme]", has_text="energy").click()
    await expect(page).to_have_url(re.compile(r"theme=energy"))
    await expect(page.get_by_test_id("total")).to_have_text("1")
    await expect(page.get_by_role("heading", name="Energy meters")).to_be_visible()
    await page.get_by_label("Search offerings").fill("心率")
    await page.get_by_role("button", name="Search").click()
    await expect(page.get_by_test_id("total")).to_have_text("0")  # 心率 and theme energy: nothing
    await page.get_by_role("checkbox", name="Theme: energy").uncheck()
    await page.get_by_role("button", name="Search").click()
    await expect(page.get_by_test_id("total")).to_have_text("1")
    await page.locator("a[data-facet=theme]", has_text="health").click()
    await expect(page).to_have_url(re.compile(r"q=%E5%BF%83%E7%8E%87&theme=health"))
    await expect(page.get_by_test_id("total")).to_have_text("1")

    await page.get_by_role("link", name="Open the provider's catalog").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Catalog")
    await expect(page.get_by_test_id("back-to-search")).to_have_attribute(
        "href", "/console/discover?q=%E5%BF%83%E7%8E%87&theme=health"
    )
    dataset = page.locator("article.dataset", has=page.get_by_role("heading", name="心率数据"))
    words = dataset.get_by_test_id("offer-words")
    await expect(words).to_contain_text("Allowed: Use the data")
    await expect(words).to_contain_text("Only for the purposes: research")
    await expect(words).to_contain_text("At most 3 uses")
    await expect(dataset).to_contain_text("category: health")
    await screenshot(page, "connector-discover-catalog-en")

    await dataset.get_by_text("Negotiate this offer").click()
    await dataset.get_by_label("Purposes (comma separated)").fill("research")
    await dataset.get_by_label("Uses", exact=True).fill("3")
    await dataset.get_by_role("button", name="Start the negotiation").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Negotiation")
    await expect(page.get_by_test_id("waiting-for")).to_contain_text("the provider's answer")  # its operator approves
    await page.evaluate("window.stayed = true")  # gone if the page reloads
    await screenshot(page, "connector-negotiation-waiting-en")

    await provider.post(f"/negotiations/{await provider_negotiation(provider)}/accept", {}, 200)
    live = page.locator("#negotiation-live")
    await expect(live.get_by_test_id("state")).to_have_text("FINALIZED", timeout=10_000)
    assert await page.evaluate("window.stayed === true")
    await expect(live).not_to_have_attribute("hx-trigger", re.compile("."))  # polling stops once final
    await expect(page.get_by_role("button", name="Terminate the negotiation")).to_have_count(0)
    [negotiation] = (await consumer.api.get("/negotiations")).json()["items"]
    assert negotiation["needs"] == {**negotiation["needs"], "purposes": ["research"], "uses": 3}
    await expect(page.get_by_test_id("agreement-link")).to_have_attribute(
        "href", re.compile(re.escape(negotiation["agreement_id"].split(":")[-1]))
    )
    await expect(live).to_contain_text("ContractAgreementMessage")
    await screenshot(page, "connector-negotiation-finalized-en")

    await page.get_by_role("link", name="Negotiations", exact=True).click()
    row = page.get_by_role("row", name=re.compile(negotiation["id"]))
    await expect(row.get_by_test_id("state")).to_have_text("FINALIZED")
    await expect(row.get_by_role("link", name=negotiation["agreement_id"])).to_be_visible()
    await screenshot(page, "connector-negotiations-en")


async def test_the_chinese_console_reads_offers_in_chinese_and_terminates(
    page: Page, provider: Site, consumer: Site, people_csv: Path
) -> None:
    await offer(provider, people_csv, HEART_RATE, approval="manual")
    await register(provider)
    base = consumer.config.url
    await sign_in(page, base, consumer.config.management_token, language="zh-CN")

    await page.goto(f"{base}/console/discover?q=心率数据")
    await expect(page.get_by_role("heading", level=1)).to_have_text("发现")
    await expect(page.get_by_role("heading", name="心率数据")).to_be_visible()
    await expect(page.get_by_role("heading", name="筛选")).to_be_visible()
    await screenshot(page, "connector-discover-zh-CN")

    await page.get_by_role("link", name="打开提供方的数据目录").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("数据目录")
    words = page.get_by_test_id("offer-words")
    await expect(words).to_contain_text(re.compile("允许.使用数据"))
    await expect(words).to_contain_text(re.compile("仅用于以下目的.research"))
    await expect(words).to_contain_text("最多使用 3 次")
    await screenshot(page, "connector-discover-catalog-zh-CN")

    await page.get_by_text("协商此报价").click()
    await page.get_by_label("使用次数", exact=True).fill("0")
    await page.get_by_label("使用次数", exact=True).evaluate("e => e.removeAttribute('min')")
    await page.get_by_role("button", name="开始协商").click()
    await expect(page.get_by_role("status")).to_contain_text("uses must be a whole number")  # back on the catalog
    await expect(page.get_by_role("heading", level=1)).to_have_text("数据目录")

    await page.get_by_text("协商此报价").click()
    await page.get_by_role("button", name="开始协商").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("协商")
    await expect(page.get_by_role("heading", name="时间线")).to_be_visible()
    await screenshot(page, "connector-negotiation-zh-CN")
    await page.get_by_label("原因").fill("不再需要")
    await page.get_by_role("button", name="终止协商").click()
    await expect(page.locator("#negotiation-live").get_by_test_id("state")).to_have_text("TERMINATED")
    await expect(page.locator("#negotiation-live")).to_contain_text("不再需要")
    await expect(page.get_by_role("button", name="终止协商")).to_have_count(0)

    await page.goto(f"{base}/console/negotiations")
    await expect(page.get_by_role("heading", level=1)).to_have_text("协商")
    await screenshot(page, "connector-negotiations-zh-CN")

    response = await page.goto(f"{base}/console/negotiations/urn:uuid:no-such-one")
    assert response is not None and response.status == 404
    await expect(page.get_by_role("heading", level=1)).to_have_text("未找到")
    await expect(page.get_by_role("alert")).to_contain_text("urn:uuid:no-such-one")
    await page.goto(f"{base}/console/discover?q={'x' * 2000}")  # the broker's refusal, on the page
    await expect(page.get_by_role("alert")).to_contain_text("the broker refused the search (400)")
    response = await page.goto(f"{base}/console/discover/catalog?provider_id=x")
    assert response is not None and response.status == 400


async def test_a_plain_dsp_peers_catalog_with_single_objects_reads_too(
    page: Page, space: Dataspace, consumer: Site
) -> None:
    peer = await space.admit("peer")  # a participant whose DSP endpoint is not a Tessera connector

    async def catalog(request: Request) -> JSONResponse:
        dataset = {
            "@id": "urn:peer:dataset",
            "@type": "Dataset",
            "title": {"@value": "Wind speeds", "@language": "en"},
            "keyword": "wind",
            "https://w3id.org/tessera/v1/classification": "general",
            "hasPolicy": {
                "@id": "urn:peer:offer",
                "@type": "Offer",
                "permission": {
                    "action": "use",
                    "constraint": {"leftOperand": "count", "operator": "lteq", "rightOperand": 5},
                },
            },
        }
        broken = {"@id": "urn:peer:broken", "@type": "Dataset", "title": "Broken", "hasPolicy": {"@type": "Offer"}}
        single = request.url.path.startswith("/single/")  # `dataset` as one object, as DSP allows
        return JSONResponse({"@type": "Catalog", "dataset": dataset if single else [broken, dataset]})

    app = Starlette(routes=[Route("/{peer}/catalog/request", catalog, methods=["POST"])])
    async with run_server(app) as url:
        await sign_in(page, consumer.config.url, consumer.config.management_token)
        for path in ("/single", "/listed"):
            query = urlencode({"provider_id": peer.participant_id, "provider_url": url + path})
            await page.goto(f"{consumer.config.url}/console/discover/catalog?{query}")
            wind = page.locator("article.dataset", has=page.get_by_role("heading", name="Wind speeds"))
            await expect(wind.get_by_test_id("offer-words")).to_contain_text("At most 5 uses")
            await expect(wind).to_contain_text("Keywords: wind")
            await expect(wind).to_contain_text("classification: general")
        broken = page.locator("article.dataset", has=page.get_by_role("heading", name="Broken"))
        await expect(broken.get_by_role("alert")).to_contain_text("This offer cannot be read")
