"""Where a negotiation's time goes: transactions and statements per connector, and a CPU profile.

A broker and two connectors run in this one process (tests/dataspace.py), so one cProfile sees all
three; every SQL statement and commit is counted by the database it went to (SQLAlchemy events).

    python bench/profile_negotiation.py [--negotiations 30] [--top 25]
"""

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.dataspace import dataspace, negotiate, publish, write_people_csv  # noqa: E402

statements: Counter[str] = Counter()  # "<database> <first words of the statement>"
commits: Counter[str] = Counter()  # database -> commits


def _database(conn: Any) -> str:
    return Path(str(conn.engine.url.database)).parent.name


@event.listens_for(Engine, "before_cursor_execute")
def _statement(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
    words = " ".join(statement.split()[:4])
    statements[f"{_database(conn)}: {words}"] += 1


@event.listens_for(Engine, "commit")
def _commit(conn: Any) -> None:
    commits[_database(conn)] += 1


async def run(negotiations: int, profile: cProfile.Profile) -> None:
    with tempfile.TemporaryDirectory(prefix="tessera-profile-") as tmp:
        root = Path(tmp)
        async with dataspace(root) as space:
            provider = await space.start(await space.admit("provider"))
            consumer = await space.start(await space.admit("consumer"))
            offer = await publish(provider, write_people_csv(root / "people.csv"))
            await negotiate(consumer, provider, offer)  # warm up: tokens, JWKS, policy compilation
            await asyncio.sleep(0.5)  # let checkpoints and other background deliveries settle
            statements.clear()
            commits.clear()
            profile.enable()
            for _ in range(negotiations):
                done = await negotiate(consumer, provider, offer)
                assert done["state"] == "FINALIZED", done
            await asyncio.sleep(0.3)
            profile.disable()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--negotiations", type=int, default=30)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    profile = cProfile.Profile()
    asyncio.run(run(args.negotiations, profile))
    n = args.negotiations
    print(f"per negotiation (n={n}), polling by the client included:")
    for database, count in sorted(commits.items()):
        print(f"  {database}: {count / n:.1f} commits")
    for key, count in statements.most_common(40):
        print(f"  {count / n:6.1f}  {key}")
    stats = pstats.Stats(profile).sort_stats("cumulative")
    stats.print_stats(args.top)
    stats.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
