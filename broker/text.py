"""Turning text into search tokens, the same way for documents and queries.

SQLite's `unicode61` tokenizer splits on spaces and punctuation, which leaves a run of Chinese characters
as one long token: "医疗数据共享平台" would only match itself. So before text reaches the index, every run
of CJK characters is replaced by its jieba search segmentation (`cut_for_search`: words and the shorter
words inside them) plus its character bigrams, so a two-character query such as "数据" or "医疗" finds
every text that contains it. Other scripts pass through untouched; `unicode61` handles them.

The PostgreSQL backend indexes the very tokens the SQLite one does: `fts5_tokens` runs segmented text
through FTS5's own tokenizer (`TOKENIZER`: unicode61 case and diacritic folding, Porter stemming) in an
in-memory SQLite database, so both backends agree on every lexeme, stem and token count.

Segmentation is CPU work in pure Python (about 5 ms per thousand characters): the search backend runs it
in a worker thread (`asyncio.to_thread`), and at most `MAX_INDEXED_CHARS` of each field are indexed, so a
large registration or crawled catalog neither blocks the event loop nor costs without bound.
"""

import json
import logging
import re
import sqlite3
import threading
from collections.abc import Sequence
from functools import lru_cache

import jieba

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
# Letters and digits, as unicode61 keeps them: "_" separates, so every query term is one FTS5 token.
_WORD = re.compile(r"[^\W_]+")
_lock = threading.Lock()
MAX_QUERY_TERMS = 16
TOKENIZER = "porter unicode61 remove_diacritics 2"  # FTS5's, for both backends
COLUMNS = ("title", "description", "keywords")  # the indexed fields, in the index's column order
MAX_INDEXED_CHARS = 8192  # of one field (title, description, keywords); registrations allow no longer descriptions

jieba.setLogLevel(logging.WARNING)


def warm_up() -> None:
    """Load jieba's dictionary now (about a second) rather than inside the first request."""
    with _lock:
        jieba.initialize()


def index_text(text: str) -> str:
    """The first `MAX_INDEXED_CHARS` of `text`, each CJK run replaced by its words and bigrams, space separated.

    CPU-bound: call it from a worker thread (jieba is used by one thread at a time).
    """
    with _lock:
        return _CJK.sub(lambda match: " " + " ".join(_cjk_tokens(match.group())) + " ", text[:MAX_INDEXED_CHARS])


@lru_cache(maxsize=4096)
def _cjk_tokens(run: str) -> list[str]:
    words = [w for w in jieba.cut_for_search(run) if w.strip()]
    bigrams = [run[i : i + 2] for i in range(len(run) - 1)]
    return list(dict.fromkeys([*words, *bigrams]))


def query_terms(query: str) -> list[str]:
    """The tokens of a search query: words as typed, CJK runs as jieba words (bigrams for short runs)."""
    terms: list[str] = []
    position = 0
    for match in _CJK.finditer(query):
        terms.extend(_WORD.findall(query[position : match.start()]))
        run = match.group()
        if len(run) <= 2:
            terms.append(run)
        else:
            # The longest words jieba finds, so "医疗数据" asks for 医疗 AND 数据, not every sub-word.
            terms.extend(w for w in jieba.cut(run) if w.strip())
        position = match.end()
    terms.extend(_WORD.findall(query[position:]))
    return list(dict.fromkeys(term.lower() for term in terms))[:MAX_QUERY_TERMS]


Counts = dict[str, list[int]]  # lexeme -> its occurrences per column, in `COLUMNS` order
_vocabularies = threading.local()


def fts5_tokens(rows: Sequence[Sequence[str]]) -> list[tuple[Counts, int]]:
    """Each row's (already segmented) columns as FTS5 tokenizes them: lexeme counts and the number of tokens."""
    return [(json.loads(counts), tokens) for counts, tokens in fts5_counted(rows)]


def fts5_counted(rows: Sequence[Sequence[str]]) -> list[tuple[str, int]]:
    """`fts5_tokens` with the counts as JSON text, for a database to parse (no Python object per lexeme)."""
    connection = _vocabulary()
    try:
        connection.executemany(
            "INSERT INTO d (rowid, title, description, keywords) VALUES (?, ?, ?, ?)",
            [(i, *row) for i, row in enumerate(rows)],
        )
        found = [("{}", 0) for _ in rows]
        for doc, counts, tokens in connection.execute(_COUNTED):
            found[doc] = counts, tokens
        return found
    finally:
        connection.execute("DELETE FROM d")


# Per document: {lexeme: [occurrences per column]} as JSON text, and its number of tokens. Counted inside
# SQLite, so a large registration (hundreds of thousands of lexemes) costs no Python loop per lexeme.
_PER_COLUMN = ", ".join(f"sum(col = '{column}')" for column in COLUMNS)
_COUNTED = (
    "SELECT doc, json_group_object(term, json(counts)), sum(occurrences) FROM ("
    f"SELECT doc, term, json_array({_PER_COLUMN}) AS counts, count(*) AS occurrences "
    "FROM v GROUP BY doc, term ORDER BY doc, term) GROUP BY doc"
)


def fts5_terms(terms: Sequence[str]) -> list[str]:
    """Query terms as FTS5 reads them in a query (folded, stemmed), in order; one lexeme per `query_terms` term."""
    tokenized = fts5_tokens([(term, "", "") for term in terms])
    return [lexeme for counts, _ in tokenized for lexeme in counts]


def _vocabulary() -> sqlite3.Connection:
    # One in-memory FTS5 table per thread (sqlite3 connections stay in the thread that made them).
    connection: sqlite3.Connection | None = getattr(_vocabularies, "connection", None)
    if connection is None:
        connection = sqlite3.connect(":memory:")
        connection.execute(f"CREATE VIRTUAL TABLE d USING fts5({', '.join(COLUMNS)}, tokenize = '{TOKENIZER}')")
        connection.execute("CREATE VIRTUAL TABLE v USING fts5vocab(d, instance)")
        _vocabularies.connection = connection
    return connection
