"""The console's frame in a real browser: sign-in, session, CSRF, languages, the dashboard."""

import httpx
from playwright.async_api import Page, expect

from tests.browser.conftest import screenshot, sign_in
from tests.dataspace import Site


async def test_sign_in_shows_the_dashboard_in_both_languages(page: Page, provider: Site) -> None:
    base = provider.config.url
    await page.goto(f"{base}/console/")
    await expect(page).to_have_url(f"{base}/console/signin?next=%2F")
    await page.fill("input[name=key]", "not the key")
    await page.click("form[action$='/signin'] button[type=submit]")
    await expect(page.get_by_role("alert")).to_contain_text("wrong key")

    await sign_in(page, base, provider.config.management_token)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")
    await expect(page.get_by_test_id("participant-id")).to_have_text(provider.id)
    await screenshot(page, "connector-dashboard-en")

    await page.get_by_role("button", name="English").or_(page.locator("summary", has_text="English")).click()
    await page.get_by_role("link", name="简体中文").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("概览")
    await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    await screenshot(page, "connector-dashboard-zh-CN")

    await page.get_by_role("button", name="退出").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("登录")
    await page.goto(f"{base}/console/")
    await expect(page.get_by_role("heading", level=1)).to_have_text("登录")


async def test_a_post_without_the_session_token_is_refused(provider: Site) -> None:
    base = provider.config.url + "/console"
    async with httpx.AsyncClient(base_url=base) as browser_like:
        form = await browser_like.get("/signin")
        assert form.headers["content-security-policy"].startswith("default-src 'self'")
        csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
        refused = await browser_like.post("/signin", data={"key": provider.config.management_token, "csrf": "x"})
        assert refused.status_code == 403
        forged = await browser_like.post(
            "/signin",
            data={"key": provider.config.management_token, "csrf": csrf},
            headers={"Origin": "https://evil.example"},
        )
        assert forged.status_code == 403
        signed = await browser_like.post("/signin", data={"key": provider.config.management_token, "csrf": csrf})
        assert signed.status_code == 303
        assert "httponly" in signed.headers["set-cookie"].lower()
        assert "samesite=strict" in signed.headers["set-cookie"].lower()
        # After sign-in the session has a new token: the one from before no longer works.
        again = await browser_like.post("/signout", data={"csrf": csrf})
        assert again.status_code == 403
        assert (await browser_like.get("/")).status_code == 200
