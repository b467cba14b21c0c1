"""Rego from outside is bounded: size and nesting refused before parsing, the first compile in a child
process that is killed at its time and memory limits, and the service answering meanwhile."""

import asyncio
import time

import httpx
import pytest

from tessera.errors import PolicyCompileError
from tessera.policy.bounds import MAX_NESTING, check_bounds, compile_checked
from tests.dataspace import Site

NESTED = "package p\n\nx := " + "[" * 30 + "]" * 30 + "\n"  # 60 bytes that took regorus hours to parse


def test_nesting_past_the_limit_is_refused_before_parsing_naming_where() -> None:
    started = time.perf_counter()
    with pytest.raises(PolicyCompileError) as caught:
        check_bounds(NESTED)
    assert time.perf_counter() - started < 0.1
    assert f"nest deeper than {MAX_NESTING} levels" in caught.value.detail
    assert (caught.value.line, caught.value.column) == (3, 6 + MAX_NESTING)


def test_brackets_in_strings_and_comments_do_not_count() -> None:
    deep = "[" * 40
    check_bounds(f'package p\n\n# {deep}\nx := "{deep}"\ny := `{deep}`\nz := "\\"{deep}"\n')


def test_a_module_past_the_size_limit_is_refused() -> None:
    with pytest.raises(PolicyCompileError, match="larger than"):
        check_bounds("package p\n" + "# padding\n" * 30_000)


async def test_a_module_that_compiles_too_long_is_stopped_at_the_time_limit() -> None:
    slow = "package p\n\n" + "".join(f"x{i} := " + "[" * 12 + "]" * 12 + "\n" for i in range(40))
    started = time.perf_counter()
    with pytest.raises(PolicyCompileError, match="took longer than 1 s"):
        await compile_checked(slow, time_limit=1)
    assert time.perf_counter() - started < 3


async def test_a_module_that_needs_too_much_memory_is_refused() -> None:
    greedy = "package p\n\nx := count([i | some i in numbers.range(1, 1000000000)])\n"
    with pytest.raises(PolicyCompileError, match="could not be checked"):
        await compile_checked(greedy)


async def test_a_good_module_compiles_and_errors_keep_their_place() -> None:
    assert await compile_checked("package tessera.usage.x\n\ndefault allow := true\n") == "data.tessera.usage.x"
    with pytest.raises(PolicyCompileError) as caught:
        await compile_checked("package p\n\nallow if {\n")
    assert caught.value.line == 4


async def test_the_connector_answers_while_it_checks_a_module(provider: Site) -> None:
    slow = "package tessera.usage.slow\n\n" + "".join(f"x{i} := " + "[" * 12 + "]" * 12 + "\n" for i in range(12))
    upload = asyncio.create_task(provider.api.post("/policies", json={"source": slow}))
    await asyncio.sleep(0.2)
    async with httpx.AsyncClient() as http:
        started = time.perf_counter()
        health = await http.get(provider.config.url + "/health")
    assert health.status_code == 200 and time.perf_counter() - started < 0.3
    assert (await upload).status_code == 201
    refused = await provider.api.post("/policies", json={"source": NESTED.replace("package p", "package tessera.x")})
    assert refused.status_code == 400 and "nest deeper" in refused.json()["detail"]
