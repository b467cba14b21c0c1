"""`policies.playground.try_policy`: a trial from outside is bounded (size, nesting, time, memory) and
reports its problems as errors with line numbers; the browser tests cover the explained decision."""

from policies.playground import MAX_SOURCE_BYTES, try_policy

EXPENSIVE = "package x\n\nallow if {\n\tcount([n | some n in numbers.range(1, 100000000)]) > 0\n}\n"


async def test_a_trial_past_its_time_or_memory_is_stopped() -> None:
    trial = await try_policy(EXPENSIVE, {}, time_limit=1.0)
    assert trial["error"]["in"] == "limits"


async def test_too_large_or_too_deep_sources_never_reach_the_engine() -> None:
    large = await try_policy("package x\n" + "#" * MAX_SOURCE_BYTES, {})
    assert large["error"] == {"in": "policy", "message": f"the policy is larger than {MAX_SOURCE_BYTES} bytes"}
    deep = await try_policy("package x\nallow := true\n", {}, "package t\nv := " + "[" * 20 + "]" * 20 + "\n")
    assert deep["error"]["in"] == "tests" and deep["error"]["line"] == 2


async def test_a_syntax_error_names_its_line_and_a_deny_rule_its_reason() -> None:
    broken = await try_policy("package x\n\nallow if {\n\tinput.x ==\n}\n", {})
    assert broken["error"]["in"] == "policy" and broken["error"]["line"] == 5
    source = 'package x\n\ndefault allow := false\n\nallow if count(deny) == 0\n\ndeny contains "no" if input.x != 1\n'
    trial = await try_policy(source, {"x": 2}, 'package t\n\ntest_one if data.x.allow with input as {"x": 1}\n')
    assert trial["decision"]["allow"] is False
    assert [(r["line"], r["holds"], r["messages"]) for r in trial["rules"]] == [(5, False, []), (7, False, ["no"])]
    assert trial["counts"] == {"PASS": 1, "FAIL": 0, "ERROR": 0}
