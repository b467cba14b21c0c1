"""Policy benchmarks: a usage decision through the connector's decision point vs the raw engine call,
the data plane's decision (compiled agreement + bound module, one evaluation) vs the raw engine on the
bound module alone, and record throughput with masking obligations vs without.

    python bench/policy.py [--n 5000] [--records 200000] [--json]

Decision: `EmbeddedRegoEngine.decide` (the decision point: cached compiled module, input, the
convention's rules, decision convention) against the raw engine: a regorus engine holding the module
alone, queried for the package document as one would with `opa eval` (`set_input` +
`eval_query_as_json` + `json.loads`), on the same inputs, interleaved in one run. Every decision is
also checked against a plain-Python reading of the quickstart policy.
Agreement: `decide_all([compiled agreement, bound module])`, the agreement being the issue's example
(purpose isAnyOf research, count lteq 3, elapsedTime lteq P30D) compiled by `compile_agreement`,
against the raw engine evaluating the bound module alone, interleaved on the same inputs (target: at most 1.5 times).
Throughput: `apply_record_obligations` over CSV-like records (dicts of strings), with a mask
obligation and with none.
"""

import argparse
import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable

from policies import read_pattern
from policies.compiler import compile_agreement
from tessera.json import JSONObject
from tessera.policy import Decision, EmbeddedRegoEngine, Obligation, PolicyModule
from tessera.policy.embedded import load_engine
from tessera.policy.obligations import apply_record_obligations


def requests(n: int, seed: int = 7) -> list[JSONObject]:
    rng = random.Random(seed)
    return [
        {
            "agreement": {
                "id": f"urn:uuid:{i}",
                "assigner": "provider",
                "assignee": "consumer",
                "target": "d",
                "timestamp": rng.choice(["2026-11-20T10:00:00Z", "2026-11-20T10:00:00Z", "2026-09-01T00:00:00Z"]),
            },
            "caller": {"sub": "consumer", "org": "ACME", "region": "EU-DE", "security_profile": "base"},
            "purpose": rng.choice(["research", "research", "marketing"]),
            "uses": rng.randint(0, 4),
            "now": "2026-11-23T10:00:00Z",
            "asset": {"id": "d", "format": "csv"},
            "connector": {"id": "https://consumer.example/dsp"},
        }
        for i in range(n)
    ]


def percentile(times: list[float], q: float) -> float:
    return sorted(times)[min(len(times) - 1, int(len(times) * q))]


Decide = Callable[[JSONObject], Awaitable[Decision]]
BOUND = PolicyModule(id="research_limited", source=read_pattern("examples/research_limited"))


async def against_raw(
    engine: EmbeddedRegoEngine, decide: Decide, name: str, expected: Callable[[JSONObject], bool], n: int, warmup: int
) -> JSONObject:
    """`decide` and the raw engine on the bound module alone, interleaved on the same inputs; p50/p99 and ratios."""
    inputs = requests(n + warmup)
    for request in inputs[:warmup]:
        await engine.decide(BOUND, request)
        await decide(request)
    plain = load_engine([BOUND])
    query = "data.tessera.usage.research_limited"
    raw: list[float] = []
    point: list[float] = []
    wrong = 0
    for request in inputs[warmup:]:
        start = time.perf_counter_ns()
        plain.set_input(request)
        json.loads(plain.eval_query_as_json(query))
        raw.append((time.perf_counter_ns() - start) / 1000)
        start = time.perf_counter_ns()
        decision = await decide(request)
        point.append((time.perf_counter_ns() - start) / 1000)
        wrong += decision.allow != expected(request)
    await engine.aclose()
    del plain
    result: JSONObject = {"n": n, "wrong": wrong}
    for label, times in (("raw", raw), (name, point)):
        result[label] = {"p50_us": round(percentile(times, 0.5), 1), "p99_us": round(percentile(times, 0.99), 1)}
    result["ratio_p50"] = round(result[name]["p50_us"] / result["raw"]["p50_us"], 2)
    result["ratio_p99"] = round(result[name]["p99_us"] / result["raw"]["p99_us"], 2)
    return result


def research_within_limits(request: JSONObject) -> bool:
    return bool(request["purpose"] == "research" and request["uses"] < 3)


async def decisions(n: int, warmup: int) -> JSONObject:
    """The decision point (`decide`) vs the raw engine calls it makes."""
    engine = EmbeddedRegoEngine()
    return await against_raw(
        engine, lambda request: engine.decide(BOUND, request), "decide", research_within_limits, n, warmup
    )


AGREEMENT = {
    "@id": "urn:uuid:bench-agreement",
    "@type": "Agreement",
    "target": "d",
    "assigner": "provider",
    "assignee": "consumer",
    "timestamp": "2026-11-20T10:00:00Z",
    "permission": [
        {
            "action": "use",
            "constraint": [
                {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["research"]},
                {"leftOperand": "count", "operator": "lteq", "rightOperand": "3"},
                {"leftOperand": "elapsedTime", "operator": "lteq", "rightOperand": "P30D"},
            ],
        }
    ],
}


async def agreement_decisions(n: int, warmup: int) -> JSONObject:
    """The data plane's decision (compiled agreement + bound module in one evaluation) vs the raw engine."""
    engine = EmbeddedRegoEngine()
    law = compile_agreement(AGREEMENT).module

    def expected(request: JSONObject) -> bool:
        recent = request["agreement"]["timestamp"] == "2026-11-20T10:00:00Z"
        return research_within_limits(request) and recent

    return await against_raw(
        engine, lambda request: engine.decide_all([law, BOUND], request), "agreement_and_module", expected, n, warmup
    )


def throughput(count: int) -> dict[str, int]:
    rows = [
        {"id": str(i), "name": f"name {i}", "email": f"p{i}@example.org", "age": str(20 + i % 60), "region": "EU-DE"}
        for i in range(count)
    ]
    result = {"records": count}
    cases: list[tuple[str, list[Obligation]]] = [("none", []), ("mask", [Obligation("mask", {"fields": ["email"]})])]
    for name, obligations in cases:
        copies = [dict(r) for r in rows]
        start = time.perf_counter()
        released = sum(1 for _ in apply_record_obligations(copies, obligations))
        elapsed = time.perf_counter() - start
        assert released == count
        result[f"{name}_records_per_s"] = round(count / elapsed)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = {
        "decision": asyncio.run(decisions(args.n, args.warmup)),
        "agreement": asyncio.run(agreement_decisions(args.n, args.warmup)),
        "throughput": throughput(args.records),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    d, t = report["decision"], report["throughput"]
    print(f"{'':24}{'p50 µs':>10}{'p99 µs':>10}")
    print(f"{'raw regorus':24}{d['raw']['p50_us']:>10}{d['raw']['p99_us']:>10}")
    print(f"{'decide (decision point)':24}{d['decide']['p50_us']:>10}{d['decide']['p99_us']:>10}")
    print(f"{'ratio':24}{d['ratio_p50']:>10}{d['ratio_p99']:>10}   wrong={d['wrong']} of {d['n']}")
    a = report["agreement"]
    print(f"{'raw (bound module)':24}{a['raw']['p50_us']:>10}{a['raw']['p99_us']:>10}")
    joint = a["agreement_and_module"]
    print(f"{'agreement + module':24}{joint['p50_us']:>10}{joint['p99_us']:>10}")
    print(f"{'ratio':24}{a['ratio_p50']:>10}{a['ratio_p99']:>10}   wrong={a['wrong']} of {a['n']} (target <= 1.5)")
    none, mask = t["none_records_per_s"], t["mask_records_per_s"]
    print(f"records/s over {t['records']:,}: no obligations {none:,}, mask {mask:,}")


if __name__ == "__main__":
    main()
