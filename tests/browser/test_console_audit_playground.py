"""The console's audit page (search, verify, checkpoints and receipts) and the policy playground (an
example decided rule by rule, a syntax error, tests, a composition), in a real browser, in both languages."""

import asyncio
import json
from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

from tests.browser.conftest import screenshot, sign_in
from tests.dataspace import RESEARCH_POLICY, Site, negotiate, publish, sql


def _json_file(path: Path) -> Any:
    return json.loads(path.read_text())


async def _held_receipt(provider: Site, within: float = 10.0) -> None:
    """Wait until the provider holds the consumer's checkpoint (the consumer's outbox delivers it)."""
    for _ in range(int(within / 0.1)):
        if await sql(provider.config, "SELECT id FROM audit_receipt"):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the provider never received the consumer's checkpoint")


async def test_audit_search_verify_checkpoints_and_receipts(
    page: Page, provider: Site, consumer: Site, people_csv: Path
) -> None:
    negotiation = await negotiate(consumer, provider, await publish(provider, people_csv))
    assert negotiation["state"] == "FINALIZED"
    await _held_receipt(provider)
    entries = (await provider.api.get("/audit", params={"limit": "100"})).json()["items"]
    subject = next(e["subject"] for e in entries if e["action"].startswith("negotiation."))
    base = provider.config.url

    await sign_in(page, base, provider.config.management_token)
    await page.goto(f"{base}/console/audit")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Audit")
    await expect(page.get_by_test_id("audit-entry")).to_have_count(len(entries))
    await page.get_by_label("Subject").fill(subject)
    await page.get_by_role("button", name="Search").click()
    shown = page.get_by_test_id("audit-entry")
    await expect(shown).to_have_count(sum(e["subject"] == subject for e in entries))
    for cell in await shown.locator("td:nth-child(5)").all_inner_texts():
        assert cell == subject
    await shown.first.locator("summary").click()  # the details open
    await expect(shown.first.locator("pre")).to_be_visible()
    await page.get_by_role("button", name="Verify against the checkpoints others hold").click()
    report = page.get_by_test_id("verify-report")
    await expect(report).to_contain_text("intact")
    await expect(report.get_by_test_id("verify-entries")).to_have_text(str(len(entries)))
    await page.get_by_role("button", name="Verify locally only").click()
    await expect(report).to_contain_text("locally: the chain recomputed")

    made = (await provider.api.get("/audit/checkpoints")).json()["items"]
    assert made, "a negotiation's end makes a checkpoint"
    await expect(page.get_by_test_id("checkpoint")).to_have_count(len(made))
    await expect(page.get_by_test_id("checkpoint").first).to_contain_text(consumer.id)  # it went to the consumer
    await expect(page.get_by_test_id("receipt")).to_have_count(1)
    await expect(page.get_by_test_id("receipt")).to_contain_text(consumer.id)
    async with page.expect_download() as download_info:
        await page.get_by_test_id("receipt").get_by_role("link").click()
    receipt = _json_file(await (await download_info.value).path())
    assert receipt["type"] and receipt["participant_id"] == consumer.id and receipt["checkpoint"].count(".") == 2
    async with page.expect_download() as download_info:
        await page.get_by_test_id("checkpoint").first.get_by_role("link").click()
    checkpoint = _json_file(await (await download_info.value).path())
    assert checkpoint == made[0]
    await screenshot(page, "connector-audit-en")
    await page.get_by_label("Action contains").fill("no such action")
    await page.get_by_role("button", name="Search").click()
    await expect(page.get_by_role("status")).to_have_text("No entry matches.")

    await page.goto(f"{base}/console/language?to=zh-CN&next=/audit")
    await expect(page.get_by_role("heading", level=1)).to_have_text("审计")
    await expect(page.get_by_role("heading", name="我们持有的回执")).to_be_visible()
    await page.get_by_role("button", name="仅在本地验证").click()
    await expect(page.get_by_test_id("verify-report")).to_contain_text("完好")
    await screenshot(page, "connector-audit-zh-CN")


async def _decide(page: Page) -> None:
    await page.get_by_role("button", name="Decide and run the tests").click()


async def test_playground_explains_an_example_runs_its_tests_and_shows_errors(page: Page, provider: Site) -> None:
    base = provider.config.url
    await sign_in(page, base, provider.config.management_token)
    await page.goto(f"{base}/console/playground")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Policy playground")
    await page.get_by_label("An example").select_option("research_limited")
    await page.get_by_role("button", name="Load the example").click()
    await expect(page.get_by_label("Policy (Rego)")).to_have_value(RESEARCH_POLICY)
    sample = json.loads(await page.get_by_label("Input (JSON)").input_value())
    assert sample["purpose"] == "research" and sample["uses"] == 0

    await _decide(page)
    decision = page.get_by_test_id("decision")
    await expect(decision).to_contain_text("ALLOWED")
    rules = page.get_by_test_id("rule")
    await expect(rules).to_have_count(4)  # allow and the three deny rules, each decided alone
    await expect(rules.filter(has_text="does not deny")).to_have_count(3)
    await expect(page.get_by_test_id("values")).to_contain_text('"research"')
    await expect(page.get_by_test_id("inputs")).to_contain_text("input.purpose")
    await expect(page.get_by_test_id("test-counts")).to_have_text("PASS: 6/6")
    await screenshot(page, "connector-playground-en")

    await page.get_by_label("Input (JSON)").fill(json.dumps(sample | {"purpose": "marketing"}))
    await _decide(page)
    await expect(decision).to_contain_text("DENIED")
    await expect(page.get_by_test_id("reasons")).to_have_text(
        'purpose "marketing" is not allowed (allowed: "research")'
    )
    denying = rules.filter(has_text="denies")
    await expect(denying).to_have_count(1)
    await expect(denying).to_contain_text("19")  # the purpose rule's line
    await expect(denying).to_contain_text("allowed_purpose")

    tests = await page.get_by_label("Tests (Rego").input_value()
    await page.get_by_label("Tests (Rego").fill(
        tests + "\ntest_marketing_is_fine if { research_limited.allow with input as {} }\n"
    )
    await _decide(page)
    await expect(page.get_by_test_id("test-counts")).to_contain_text("PASS: 6/7")
    await expect(page.get_by_test_id("test-counts")).to_contain_text("FAIL: 1/7")
    await expect(page.get_by_test_id("test").filter(has_text="test_marketing_is_fine")).to_contain_text("FAIL")

    source = await page.get_by_label("Policy (Rego)").input_value()
    broken = source.replace("allow if count(deny) == 0", "allow if count(deny) ==")
    await page.get_by_label("Policy (Rego)").fill(broken)
    await _decide(page)
    error = page.get_by_test_id("playground-error")
    await expect(error).to_contain_text("Error in the policy")
    await expect(error).to_contain_text("line 19")  # the parser stops where the expression should be
    await page.get_by_label("Input (JSON)").fill('{"purpose": ')
    await _decide(page)
    await expect(error).to_contain_text("Error in the input")

    await page.goto(f"{base}/console/language?to=zh-CN&next=/playground")
    await expect(page.get_by_role("heading", level=1)).to_have_text("策略试验场")
    await _decide_zh(page)
    await expect(page.get_by_test_id("decision")).to_contain_text("允许")
    await screenshot(page, "connector-playground-zh-CN")


async def _decide_zh(page: Page) -> None:
    await page.get_by_role("button", name="判定并运行测试").click()


async def test_playground_composes_patterns_and_audit_shows_empty_lists(page: Page, provider: Site) -> None:
    base = provider.config.url
    await sign_in(page, base, provider.config.management_token)
    await page.goto(f"{base}/console/audit?limit=0")
    await expect(page.get_by_role("alert")).to_contain_text("limit must be an integer from 1 to 1000")
    await expect(page.get_by_test_id("no-checkpoints")).to_be_visible()
    await expect(page.get_by_test_id("no-receipts")).to_be_visible()

    await page.goto(f"{base}/console/playground")
    await page.get_by_label("A library pattern").select_option("regions")
    await page.get_by_label("Its parameters").fill('{"allowed_regions": ["EU-FR"]}')
    await page.get_by_role("button", name="Add and compose").click()
    source = await page.get_by_label("Policy (Rego)").input_value()
    assert "# pattern regions" in source and "# pattern purpose" in source
    await _decide(page)
    await expect(page.get_by_test_id("decision")).to_contain_text("DENIED")
    patterns = page.get_by_test_id("patterns")
    await expect(patterns.locator("tbody tr")).to_have_count(3)  # purpose, max_uses, regions
    await expect(patterns.locator("tr", has_text="regions")).to_contain_text("denies")
    await expect(patterns.locator("tr", has_text="regions")).to_contain_text('caller.region="EU-DE"')
    await expect(patterns.locator("tr", has_text="purpose")).to_contain_text("allows")

    await page.get_by_label("A library pattern").select_option("max_uses")
    await page.get_by_label("Its parameters").fill('{"max_uses": -1}')
    await page.get_by_role("button", name="Add and compose").click()
    await expect(page.get_by_role("alert")).to_contain_text("max_uses.max_uses must be a non-negative integer")
