"""Every console page, in English and Chinese, checked by axe-core (WCAG 2.1 A and AA: labels, names, roles,
contrast, language, headings) in the real browser, with records on every page; and the keyboard alone
signs in and reaches the navigation."""

from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import BROKER_ADMIN, broker_with_admin_key, sign_in
from tests.dataspace import Dataspace, Site, negotiate, publish, start_transfer

WCAG = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}
LANGUAGES = ("en", "zh-CN")


async def _violations(page: Page, url: str) -> list[str]:
    answer = await page.goto(url)
    assert answer is not None and answer.status == 200, url
    results = await Axe().run(page, options=WCAG)
    return [
        f"{url}: {violation['id']} ({violation['impact']}): {node['target']} {node['failureSummary']}"
        for violation in results.response["violations"]
        for node in violation["nodes"]
    ]


async def _connector_pages(space: Dataspace, provider: Site, consumer: Site, data: Path) -> dict[str, list[str]]:
    """Both connectors' page paths, with an offer, a finished negotiation, an agreement and a transfer."""
    offer = await publish(provider, data, title="Wearables", keywords=["wearables"])
    await provider.api.put("/registration", json={"title": "Provider"})
    negotiation = await negotiate(consumer, provider, offer)
    agreement = quote(negotiation["agreement_id"], safe="")
    transfer = await start_transfer(consumer, negotiation["agreement_id"])
    catalog = urlencode({"provider_id": provider.id, "provider_url": provider.dsp_url})
    common = ["/", "/offers", "/discover", "/negotiations", "/agreements", "/transfers", "/usage", "/audit"]
    return {
        provider.config.url: [*common, "/offers/new", "/playground", f"/agreements/{agreement}"],
        consumer.config.url: [
            *common,
            "/discover?q=wearables",
            f"/discover/catalog?{catalog}",
            f"/negotiations/{quote(negotiation['id'], safe='')}",
            f"/agreements/{agreement}",
            f"/transfers/{quote(transfer['id'], safe='')}",
        ],
    }


async def test_axe_finds_what_it_is_for(page: Page) -> None:
    """The check above can fail: a field without a label and grey on grey are caught."""
    await page.set_content(
        '<html lang="en"><title>t</title><main><input><p><font color="#bbb">faint</font></p></main></html>'
    )
    found = {violation["id"] for violation in (await Axe().run(page, options=WCAG)).response["violations"]}
    assert {"label", "color-contrast"} <= found


@pytest.mark.parametrize("language", LANGUAGES)
async def test_every_connector_page_passes_axe(
    browser: Browser, space: Dataspace, provider: Site, consumer: Site, people_csv: Path, language: str
) -> None:
    pages = await _connector_pages(space, provider, consumer, people_csv)
    found: list[str] = []
    for base, paths in pages.items():
        page = await (await browser.new_context(bypass_csp=True)).new_page()  # axe is injected as a script
        token = provider.config.management_token if base == provider.config.url else consumer.config.management_token
        found += await _violations(page, f"{base}/console/language?to={language}&next=/signin")
        await sign_in(page, base, token, language=language)
        for path in paths:
            found += await _violations(page, f"{base}/console{path}")
    assert found == []


@pytest.mark.parametrize("language", LANGUAGES)
async def test_every_broker_page_passes_axe(
    browser: Browser, space: Dataspace, provider: Site, people_csv: Path, language: str
) -> None:
    await publish(provider, people_csv, title="空气质量", keywords=["air"])
    await provider.api.put("/registration", json={"title": "Provider"})
    async with broker_with_admin_key(space) as base:
        page = await (await browser.new_context(bypass_csp=True)).new_page()
        await sign_in(page, base, BROKER_ADMIN, language=language)
        participant = quote(provider.id, safe="")
        paths = ["/", "/?q=air", "/participants", "/participants/new", f"/participants/{participant}"]
        found: list[str] = []
        for path in [*paths, "/products", "/events"]:
            found += await _violations(page, f"{base}/console{path}")
    assert found == []


async def test_the_keyboard_alone_signs_in_and_walks_the_navigation(page: Page, provider: Site) -> None:
    await page.goto(f"{provider.config.url}/console/")
    await expect(page.get_by_label("Management key")).to_be_focused()  # the sign-in form starts in its field
    await page.keyboard.type(provider.config.management_token)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")
    await page.keyboard.press("Tab")  # the skip link comes first
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    offers = page.get_by_role("link", name="Offers")
    for _ in range(12):
        await page.keyboard.press("Tab")
        if await offers.evaluate("link => link === document.activeElement"):
            break
    await expect(offers).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Offers")
