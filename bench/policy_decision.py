"""Microseconds per usage decision through EmbeddedRegoEngine.decide on the quickstart policy.

    python bench/policy_decision.py [--n 5000]

Every decision is checked against a plain-Python reading of the policy, so wrong answers are counted.
"""

import argparse
import asyncio
import random
import statistics
import time

from connector.policy import Decision, EmbeddedRegoEngine, PolicyModule
from policies import read_pattern


def requests(n: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    return [
        {
            "agreement": {"id": f"urn:uuid:{i}", "assigner": "provider", "assignee": "consumer", "target": "d"},
            "caller": {"sub": "consumer", "org": "ACME", "region": "EU-DE", "security_profile": "base"},
            "purpose": rng.choice(["research", "research", "marketing"]),
            "uses": rng.randint(0, 4),
            "now": "2026-11-23T10:00:00Z",
            "asset": {"id": "d", "format": "csv"},
        }
        for i in range(n)
    ]


def expected(request: dict) -> bool:
    return request["purpose"] == "research" and request["uses"] < 3


async def main(n: int, warmup: int) -> None:
    engine = EmbeddedRegoEngine()
    module = PolicyModule(id="research_limited", source=read_pattern("examples/research_limited"))
    inputs = requests(n + warmup)
    for request in inputs[:warmup]:
        await engine.decide(module, request)
    times, wrong = [], 0
    for request in inputs[warmup:]:
        start = time.perf_counter_ns()
        decision: Decision = await engine.decide(module, request)
        times.append((time.perf_counter_ns() - start) / 1000)
        wrong += decision.allow != expected(request)
    times.sort()
    print(
        f"decide: n={n} mean={statistics.fmean(times):.1f}us p50={times[n // 2]:.1f}us "
        f"p99={times[int(n * 0.99)]:.1f}us wrong={wrong}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.warmup))
