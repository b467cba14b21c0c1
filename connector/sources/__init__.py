"""Where an asset's data comes from, behind one interface (`Source`, in `base`).

```python
source = source_of(asset)
if (stored := source.stored()) is not None: ...   # the fast path: the bytes as they are
for batch in source.batches(): ...                # otherwise records, a batch at a time
```

An asset names a local file (`path`), or a backend (`source`: `connector.source_specs`): an HTTP API
the provider proxies (`HttpSource`) or a SQL table or named query (`SqlSource`).
"""

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from connector import source_specs
from connector.assets import MEDIA_TYPES, Asset
from connector.source_specs import HttpSpec, SqlSpec
from connector.sources.base import Source, SourceError, Stored, project
from connector.sources.files import FileSource
from connector.sources.http import HttpSource
from connector.sources.sql import Column, SchemaChanged, SqlSource

__all__ = [
    "MEDIA_TYPES",
    "FileSource",
    "HttpSource",
    "SchemaChanged",
    "Source",
    "SourceError",
    "SqlSource",
    "Stored",
    "opened",
    "recorded",
    "source_of",
]


def source_of(asset: Asset, *, environ: Mapping[str, str] | None = None) -> Source:
    """The source of an asset's data; `environ` holds secrets a spec names by `{"env": NAME}` (by default
    the process environment, read at each use so that nothing of them is stored)."""
    if asset.source is None:
        return FileSource(Path(asset.path), asset.format)
    spec = source_specs.load(asset.source)
    if isinstance(spec, HttpSpec):
        return HttpSource(spec, asset.format, environ=os.environ if environ is None else environ)
    recorded = asset.source.get("columns")
    columns = None if recorded is None else [Column(**column) for column in recorded]
    return SqlSource(spec, asset.format, columns=columns)


def recorded(spec: HttpSpec | SqlSpec, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The spec as an asset stores it, once the backend was read (blocking): a SQL source's columns recorded.
    A backend that cannot be read raises `SourceError`."""
    stored = spec.model_dump(mode="json", exclude_none=True)
    if isinstance(spec, SqlSpec):
        return stored | {"columns": [column.to_dict() for column in SqlSource(spec, "jsonl").probe()]}
    next(HttpSource(spec, spec.format, environ=os.environ if environ is None else environ).batches(), None)
    return stored


class Opened:
    """A source read up to its first batch: what fails at opening has failed before a response starts."""

    def __init__(self, source: Source) -> None:
        self.format = source.format
        self._source = source
        self._rest = source.batches()
        self._first = next(self._rest, None)

    def stored(self) -> Stored | None:
        return self._source.stored()

    def schema(self) -> pa.Schema:
        return self._first.schema if self._first is not None else self._source.schema()

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        """The batches, once; `columns` narrows them."""
        if self._first is not None:
            yield project(self._first, columns)
        yield from (project(batch, columns) for batch in self._rest)


def opened(source: Source) -> Source:
    """`source`, read up to its first batch (blocking): a backend that fails, or a SQL table whose columns
    changed, raises here rather than in the middle of a response."""
    return Opened(source)
