"""The PostgreSQL search backend: the SQLite backend's lexemes in a `tsvector` with a GIN index, ranked by BM25.

Both backends must answer alike, so this one indexes what FTS5 would: the segmented fields
(`broker.search.segmented`) go through FTS5's own tokenizer (`broker.text.fts5_tokens`), and the
resulting lexemes are stored as they are (`array_to_tsvector`: no text search configuration touches them).
A query's terms are stemmed the same way and ANDed as prefixes (`'lexeme':*`) into a `tsquery` built from
our own lexemes and bound as a parameter, never parsed from the user's text.

Ranking is FTS5's bm25 (k1 = 1.2, b = 0.75, the column weights of `broker.search.WEIGHTS`), computed from
the same inputs FTS5 keeps: each row's per-column lexeme counts (`counts`), its token count (`tokens`), the
number of indexed rows and tokens (the one-row totals table) and, per query term, how many rows hold it.
`ts_rank` would order differently; this gives the same scores, so the same order.

`ddl()` is all the schema this backend needs beyond the SQLModel tables; a migration can run it as is.
"""

import asyncio
import math
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from broker.search import (
    OFFERING_TABLE,
    WEIGHTS,
    CursorValue,
    Document,
    Params,
    SqlSearch,
    segmented,
)
from broker.text import COLUMNS, fts5_counted, fts5_terms
from tessera.clock import aware
from tessera.errors import BadRequest
from tessera.store import Database

SEARCH_TABLE = "broker_offering_search"
TOTALS_TABLE = "broker_offering_search_totals"
K1, B = 1.2, 0.75  # FTS5's bm25 constants
MAX_LEXEME_BYTES = 2046  # longer words cannot go into a tsvector: they are counted but not indexed
BIGINT = 2**63


def ddl() -> list[str]:
    """The statements creating this backend's tables and index (idempotent)."""
    return [
        f"CREATE TABLE IF NOT EXISTS {SEARCH_TABLE} ("
        "pk bigint PRIMARY KEY, "
        "lexemes tsvector NOT NULL, "  # the distinct lexemes, for the GIN index
        "counts jsonb NOT NULL, "  # lexeme -> occurrences in title, description, keywords
        "tokens integer NOT NULL)",  # all token occurrences: bm25's document length
        f"CREATE INDEX IF NOT EXISTS {SEARCH_TABLE}_lexemes ON {SEARCH_TABLE} USING gin (lexemes)",
        f"CREATE TABLE IF NOT EXISTS {TOTALS_TABLE} (id integer PRIMARY KEY, documents bigint NOT NULL, "
        "tokens bigint NOT NULL)",
        f"INSERT INTO {TOTALS_TABLE} (id, documents, tokens) VALUES (1, 0, 0) ON CONFLICT (id) DO NOTHING",
    ]


class TsvectorSearch(SqlSearch):
    """PostgreSQL: FTS5's lexemes in a GIN-indexed tsvector, bm25 computed in SQL."""

    _text_from = f"{SEARCH_TABLE} s JOIN {OFFERING_TABLE} o ON o.pk = s.pk"
    _keyword_condition = (
        "EXISTS (SELECT 1 FROM json_array_elements_text(o.keywords) AS k(value) WHERE lower(k.value) = :keyword)"
    )

    async def setup(self, db: Database) -> None:
        if db.engine.dialect.name != "postgresql":
            raise BadRequest("the tsvector search backend needs a PostgreSQL database")
        async with db.engine.begin() as connection:
            for statement in ddl():
                await connection.execute(text(statement))

    async def index(self, connection: AsyncConnection, documents: Sequence[Document]) -> None:
        if not documents:
            return
        await self.remove(connection, [d.pk for d in documents])
        rows, tokens = await asyncio.to_thread(_rows, documents)  # jieba and the tokenizer are CPU work
        await connection.execute(
            text(
                f"INSERT INTO {SEARCH_TABLE} (pk, lexemes, counts, tokens) SELECT :pk, "
                "array_to_tsvector(ARRAY(SELECT k FROM jsonb_object_keys(c) AS k WHERE octet_length(k) <= :longest)), "
                "c, :tokens FROM (SELECT CAST(:counts AS jsonb) AS c) AS counted"
            ),
            rows,
        )
        await _add_totals(connection, len(rows), tokens)

    async def remove(self, connection: AsyncConnection, pks: Sequence[int]) -> None:
        if not pks:
            return
        statement = f"DELETE FROM {SEARCH_TABLE} WHERE pk = ANY(CAST(:pks AS bigint[])) RETURNING tokens"
        removed = (await connection.execute(text(statement), {"pks": list(pks)})).scalars().all()
        if removed:
            await _add_totals(connection, -len(removed), -sum(removed))

    async def _text_condition(self, terms: list[str], params: Params) -> str:
        if not terms:
            return ""
        lexemes = await asyncio.to_thread(fts5_terms, terms)
        if not lexemes:
            return "false"
        for i, lexeme in enumerate(lexemes):
            params[f"t{i}"] = lexeme
        params["match"] = " & ".join(_prefix(lexeme) for lexeme in lexemes)
        return "s.lexemes @@ CAST(:match AS tsquery)"

    async def _ranking(self, db: Database, terms: list[str], params: Params) -> tuple[str, str]:
        lexemes = [str(params[f"t{i}"]) for i in range(len(params)) if f"t{i}" in params]
        if not lexemes:
            return "0.0", ""
        counted = ", ".join(
            f"(SELECT count(*) FROM {SEARCH_TABLE} WHERE lexemes @@ CAST(:q{i} AS tsquery))"
            for i in range(len(lexemes))
        )
        statement = f"SELECT documents, tokens, {counted} FROM {TOTALS_TABLE} WHERE id = 1"
        async with db.engine.connect() as connection:
            row = (
                await connection.execute(text(statement), {f"q{i}": _prefix(x) for i, x in enumerate(lexemes)})
            ).one()
        documents, tokens, holding = int(row[0]), int(row[1]), [int(n) for n in row[2:]]
        # As FTS5's bm25: idf = ln((N - n + 0.5) / (n + 0.5)), at least 1e-6; avgdl = all tokens / N.
        params.update(
            avgdl=tokens / documents if documents else 1.0,
            bm25_k1=K1,
            bm25_k1_plus_1=K1 + 1.0,
            bm25_b=B,
            bm25_one_minus_b=1 - B,
        )
        for i, n in enumerate(holding):
            idf = math.log((documents - n + 0.5) / (n + 0.5))
            params[f"idf{i}"] = idf if idf > 0.0 else 1e-6
        title, description, keywords = WEIGHTS
        frequencies = ", ".join(
            f"(SELECT CAST(coalesce(sum({int(title)} * (c->>0)::int + {int(description)} * (c->>1)::int "
            f"+ {int(keywords)} * (c->>2)::int), 0) AS double precision) FROM jsonb_each(s.counts) AS e(lexeme, c) "
            f"WHERE starts_with(e.lexeme, :t{i})) AS f{i}"
            for i in range(len(lexemes))
        )
        length = "(CAST(:bm25_one_minus_b AS double precision) + CAST(:bm25_b AS double precision) * s.tokens "
        length += "/ CAST(:avgdl AS double precision))"
        parts = [
            f"CAST(:idf{i} AS double precision) * ((f.f{i} * CAST(:bm25_k1_plus_1 AS double precision)) "
            f"/ (f.f{i} + CAST(:bm25_k1 AS double precision) * {length}))"
            for i in range(len(lexemes))
        ]
        return f"-({' + '.join(parts)})", f" CROSS JOIN LATERAL (SELECT {frequencies}) AS f"

    def _sort_key(self, key: str) -> str:
        # Text sorts by code point, as SQLite's BINARY collation does, whatever the database's locale.
        return key if key in ("o.pk", "o.changed_at") else f'{key} COLLATE "C"'

    def _cursor_bind(self, key: str, value: CursorValue) -> str | int | float | datetime:
        # SQLite compares any value with any other; PostgreSQL needs the column's type, so a foreign cursor is a 400.
        if key == "o.changed_at" and isinstance(value, str):
            try:
                return aware(datetime.fromisoformat(value))
            except ValueError:
                pass
        elif key == "o.pk" and isinstance(value, int) and -BIGINT <= value < BIGINT:
            return value
        elif key == "score" and isinstance(value, int | float):
            return float(value)
        elif key not in ("o.changed_at", "o.pk", "score") and isinstance(value, str) and "\x00" not in value:
            return value
        raise BadRequest("cursor is not one this broker issued")


def _rows(documents: Sequence[Document]) -> tuple[list[dict[str, object]], int]:
    """The search table's rows for `documents` (counts as JSON text), and how many tokens they add."""
    fields = segmented(documents)
    counted = fts5_counted([[str(row[column]) for column in COLUMNS] for row in fields])
    rows: list[dict[str, object]] = [
        {"pk": document.pk, "counts": counts, "tokens": tokens, "longest": MAX_LEXEME_BYTES}
        for document, (counts, tokens) in zip(documents, counted, strict=True)
    ]
    return rows, sum(tokens for _, tokens in counted)


def _prefix(lexeme: str) -> str:
    """`lexeme` as a quoted tsquery prefix term: quotes doubled, backslashes escaped, no operator survives."""
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "':*"


async def _add_totals(connection: AsyncConnection, documents: int, tokens: int) -> None:
    await connection.execute(
        text(f"UPDATE {TOTALS_TABLE} SET documents = documents + :documents, tokens = tokens + :tokens WHERE id = 1"),
        {"documents": documents, "tokens": tokens},
    )
