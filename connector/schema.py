"""The connector's database schema: the modules that declare its tables, its revisions in `connector/migrations/`.

`Database.open` creates and migrates exactly these tables, whatever else the process imported (tests
import the broker's as well); `tests/tessera/test_migrations.py` checks that every table a module of
ours declares belongs to one schema.
"""

from pathlib import Path

from tessera.migrations import Schema

SCHEMA = Schema(
    name="connector",
    modules=(
        "connector.agreements",
        "connector.anchoring",
        "connector.assets",
        "connector.catalog",
        "connector.compute.differencing",
        "connector.compute.privacy",
        "connector.copies",
        "connector.negotiations",
        "connector.outbox",
        "connector.receipts",
        "connector.replies",
        "connector.resumes",
        "connector.timeline",
        "connector.transfers",
        "connector.usage",
        "tessera.audit",  # the kernel's hash-chained log
        "tessera.leases",  # which replica holds which background work
    ),
    directory=Path(__file__).parent / "migrations",
)
