"""Ranked full-text search over offerings, with facets, filters, stable sort and cursor paging.

One small interface, `SearchBackend`, so the registry never writes search SQL itself; `Fts5Search` is the
default (SQLite FTS5, bm25 ranking). A PostgreSQL (tsvector) or OpenSearch backend implements the same
three methods. The backend indexes title, description and keywords, and reads the facet columns
(participant, theme, format, license, classification, region, liveness) from the registry's offering table.

```python
backend = Fts5Search()
await backend.setup(db)
async with db.transaction() as session:
    await backend.index(await session.connection(), [Document(pk=1, title="医疗数据", ...)])
page = await backend.search(db, SearchQuery(text="数据", filters={"format": ("csv",)}))
```
"""

import asyncio
import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypedDict

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from broker.text import COLUMNS, TOKENIZER, index_text, query_terms
from tessera.errors import BadRequest
from tessera.json import parse
from tessera.store import Database

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_FACET_VALUES = 20
OFFERING_TABLE = "broker_offering"
FTS_TABLE = "broker_offering_fts"
# bm25 weights per indexed column: a hit in the title counts most, then keywords, then description.
WEIGHTS = (10.0, 2.0, 5.0)  # per column of `broker.text.COLUMNS`: title, description, keywords
BM25 = f"bm25({FTS_TABLE}, {', '.join(map(str, WEIGHTS))})"

# facet name -> offering column; the names are also the filter parameters of GET /search.
FACETS = {
    "participant": "participant_id",
    "theme": "theme",
    "format": "format",
    "license": "license",
    "classification": "classification",
    "region": "region",
    "liveness": "state",
}
# sort name -> (key columns, descending); every key ends in a unique column so the order is total.
SORTS: dict[str, tuple[tuple[str, ...], bool]] = {
    "relevance": (("score", "o.pk"), False),
    "participant": (("o.participant_id", "o.id"), False),
    "title": (("o.title", "o.pk"), False),
    "changed": (("o.changed_at", "o.pk"), True),
}


Params = dict[str, str | int | float | datetime]  # bind parameters of the search SQL
CursorValue = str | int | float  # one sort key of the last row on a page


class FacetCount(TypedDict):
    value: str
    count: int


@dataclass(frozen=True, kw_only=True)
class Document:
    """What the backend indexes for one offering; `pk` is the offering's row id."""

    pk: int
    title: str
    description: str
    keywords: Sequence[str]


@dataclass(frozen=True, kw_only=True)
class SearchQuery:
    text: str = ""
    filters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    keyword: str | None = None
    sort: str | None = None  # relevance if there is text, participant otherwise
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    cursor: str | None = None
    facets: bool = True


@dataclass(frozen=True, kw_only=True)
class SearchPage:
    total: int
    pks: list[int]
    scores: list[float]
    facets: dict[str, list[FacetCount]]
    next_cursor: str | None


class SearchBackend:
    """Where offerings are indexed and found. Writes join the caller's transaction (`connection`)."""

    async def setup(self, db: Database) -> None:
        raise NotImplementedError  # pragma: no cover

    async def index(self, connection: AsyncConnection, documents: Sequence[Document]) -> None:
        raise NotImplementedError  # pragma: no cover

    async def remove(self, connection: AsyncConnection, pks: Sequence[int]) -> None:
        raise NotImplementedError  # pragma: no cover

    async def search(self, db: Database, query: SearchQuery) -> SearchPage:
        raise NotImplementedError  # pragma: no cover


class SqlSearch(SearchBackend):
    """What the SQL backends share: the filters, facets, sort orders and cursor paging over the offering table.

    A backend says how text matches (`_text_from`, `_text_condition`) and scores (`_ranking`), and what its
    dialect needs (`_facet_column`, `_keyword_condition`, `_sort_key`, `_cursor_bind`).
    """

    _text_from = ""
    _keyword_condition = ""

    async def search(self, db: Database, query: SearchQuery) -> SearchPage:
        terms = query_terms(query.text)
        if query.text.strip() and not terms:
            return SearchPage(total=0, pks=[], scores=[], facets={}, next_cursor=None)
        sort = query.sort or ("relevance" if terms else "participant")
        if sort == "relevance" and not terms:
            sort = "participant"
        params: Params = {}
        sql_from, where = self._matching(query, await self._text_condition(terms, params), params)
        # Sequential on purpose: running the two scans on two connections measured slower (bench/broker.py).
        pks, scores, next_cursor = await self._page(db, query, sort, terms, sql_from, where, params)
        facets, total = await self._facets(db, sql_from, where, params, query.facets)
        return SearchPage(total=total, pks=pks, scores=scores, facets=facets, next_cursor=next_cursor)

    async def _text_condition(self, terms: list[str], params: Params) -> str:
        """The WHERE condition matching every term as a prefix (bound in `params`); "" without terms."""
        raise NotImplementedError  # pragma: no cover

    async def _ranking(self, db: Database, terms: list[str], params: Params) -> tuple[str, str]:
        """The score expression (lower ranks first) and what the page's FROM clause adds for it."""
        raise NotImplementedError  # pragma: no cover

    def _facet_column(self, column: str, text: bool) -> str:
        return f"o.{column}"

    def _sort_key(self, key: str) -> str:
        return key

    def _cursor_bind(self, key: str, value: CursorValue) -> str | int | float | datetime:
        return value

    def _matching(self, query: SearchQuery, text_condition: str, params: Params) -> tuple[str, list[str]]:
        """FROM clause and WHERE conditions for the offerings `query` matches; binds go into `params`."""
        sql_from = self._text_from if text_condition else f"{OFFERING_TABLE} o"
        where = ["o.listed", "o.participant_id NOT IN (SELECT id FROM broker_participant WHERE suspended)"]
        if text_condition:
            where.append(text_condition)
        for name, values in query.filters.items():
            marks = []
            for i, value in enumerate(values):
                params[f"f_{name}_{i}"] = value
                marks.append(f":f_{name}_{i}")
            where.append(f"{self._facet_column(FACETS[name], bool(text_condition))} IN ({', '.join(marks)})")
        if query.keyword is not None:
            params["keyword"] = query.keyword.lower()
            where.append(self._keyword_condition)
        return sql_from, where

    async def _page(
        self,
        db: Database,
        query: SearchQuery,
        sort: str,
        terms: list[str],
        sql_from: str,
        where: list[str],
        params: Params,
    ) -> tuple[list[int], list[float], str | None]:
        page_where, params = list(where), dict(params)
        score, score_from = await self._ranking(db, terms, params) if terms else ("0.0", "")
        names, descending = SORTS[sort]
        keys = tuple(score if name == "score" else self._sort_key(name) for name in names)
        if query.cursor:
            values = _decode_cursor(query.cursor, len(keys))
            marks = ", ".join(f":k{i}" for i in range(len(keys)))
            page_where.append(f"({', '.join(keys)}) {'<' if descending else '>'} ({marks})")
            params.update(
                {f"k{i}": self._cursor_bind(n, v) for i, (n, v) in enumerate(zip(names, values, strict=True))}
            )
        direction = " DESC" if descending else ""
        statement = (
            f"SELECT o.pk, {score} AS score, {', '.join(keys)} FROM {sql_from}{score_from} "
            f"WHERE {' AND '.join(page_where)} "
            f"ORDER BY {', '.join(k + direction for k in keys)} LIMIT :limit OFFSET :offset"
        )
        params.update(limit=query.limit + 1, offset=query.offset)
        async with db.engine.connect() as connection:
            rows = (await connection.execute(text(statement), params)).all()
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        next_cursor = _encode_cursor([_json_value(v) for v in rows[-1][2:]]) if more and rows else None
        return [row[0] for row in rows], [round(-float(row[1]), 4) for row in rows], next_cursor

    async def _facets(
        self, db: Database, sql_from: str, where: list[str], params: Params, wanted: bool
    ) -> tuple[dict[str, list[FacetCount]], int]:
        condition = " AND ".join(where)
        if not wanted:
            async with db.engine.connect() as connection:
                count = await connection.execute(text(f"SELECT count(*) FROM {sql_from} WHERE {condition}"), params)
                return {}, int(count.scalar_one())
        # One pass over the matching rows, then a GROUP BY per facet over that materialized set.
        columns = ", ".join(f"o.{column} AS {name}" for name, column in FACETS.items())
        groups = " UNION ALL ".join(f"SELECT '{name}', {name}, count(*) FROM m GROUP BY {name}" for name in FACETS)
        statement = f"WITH m AS MATERIALIZED (SELECT {columns} FROM {sql_from} WHERE {condition}) {groups}"
        counts: dict[str, list[tuple[str, int]]] = {name: [] for name in FACETS}
        async with db.engine.connect() as connection:
            found = (await connection.execute(text(statement), params)).all()
        for name, value, count in found:
            counts[name].append((value, count))
        total = sum(count for _, count in counts["participant"])
        return {name: _most_frequent(pairs) for name, pairs in counts.items()}, total


class Fts5Search(SqlSearch):
    """SQLite FTS5 with bm25 ranking and Porter stemming; CJK text segmented by `broker.text` before indexing."""

    _text_from = f"{FTS_TABLE} JOIN {OFFERING_TABLE} o ON o.pk = {FTS_TABLE}.rowid"
    _keyword_condition = "EXISTS (SELECT 1 FROM json_each(o.keywords) WHERE lower(json_each.value) = :keyword)"

    async def setup(self, db: Database) -> None:
        if db.engine.dialect.name != "sqlite":
            raise BadRequest("the FTS5 search backend needs a SQLite database")
        columns = ", ".join(COLUMNS)
        async with db.engine.begin() as connection:
            await connection.execute(
                text(f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5({columns}, tokenize = '{TOKENIZER}')")
            )

    async def index(self, connection: AsyncConnection, documents: Sequence[Document]) -> None:
        if not documents:
            return
        await self.remove(connection, [d.pk for d in documents])
        rows = await asyncio.to_thread(segmented, documents)  # jieba is CPU work: off the event loop
        columns = "(rowid, title, description, keywords) VALUES (:pk, :title, :description, :keywords)"
        await connection.execute(text(f"INSERT INTO {FTS_TABLE} {columns}"), rows)

    async def remove(self, connection: AsyncConnection, pks: Sequence[int]) -> None:
        if pks:
            await connection.execute(text(f"DELETE FROM {FTS_TABLE} WHERE rowid = :pk"), [{"pk": pk} for pk in pks])

    async def _text_condition(self, terms: list[str], params: Params) -> str:
        if not terms:
            return ""
        # Each term quoted (no FTS syntax from users) and as a prefix, all of them required.
        params["match"] = " AND ".join('"' + term.replace('"', '""') + '"*' for term in terms)
        return f"{FTS_TABLE} MATCH :match"

    async def _ranking(self, db: Database, terms: list[str], params: Params) -> tuple[str, str]:
        return BM25, ""

    def _facet_column(self, column: str, text: bool) -> str:
        # With text, the FTS index must drive the query: a unary + keeps SQLite off the facet column's index.
        return f"{'+' if text else ''}o.{column}"


def _most_frequent(pairs: list[tuple[str, int]]) -> list[FacetCount]:
    """A facet's non-empty values with their counts, most frequent first, ties by value."""
    ranked = sorted(pairs, key=lambda pair: (-pair[1], pair[0]))
    return [FacetCount(value=value, count=count) for value, count in ranked if value][:MAX_FACET_VALUES]


def segmented(documents: Sequence[Document]) -> list[dict[str, int | str]]:
    """The documents' fields as both backends index them: CJK runs segmented (`broker.text.index_text`)."""
    return [
        {
            "pk": d.pk,
            "title": index_text(d.title),
            "description": index_text(d.description),
            "keywords": index_text(" ".join(d.keywords)),
        }
        for d in documents
    ]


def _json_value(value: object) -> CursorValue:
    # PostgreSQL hands back timestamps as datetimes; a cursor carries them as RFC 3339 text.
    if isinstance(value, datetime):
        return value.isoformat()
    assert isinstance(value, str | int | float)
    return value


def _encode_cursor(values: list[CursorValue]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, ensure_ascii=False).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, size: int) -> list[CursorValue]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError) as exc:
        raise BadRequest("cursor is not one this broker issued") from exc
    # Strict, like every JSON from outside: no NaN, no lone surrogate (which SQLite cannot bind), bounded depth.
    values = parse(raw, "cursor", BadRequest)
    if not isinstance(values, list) or len(values) != size:
        raise BadRequest("cursor does not fit this sort order")
    if not all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in values):
        raise BadRequest("cursor is not one this broker issued")
    return values
