"""Where an asset's data comes from, behind one interface (`Source`, in `base`).

```python
source = source_of(asset)
if (stored := source.stored()) is not None: ...   # the fast path: the bytes as they are
for batch in source.batches(): ...                # otherwise records, a batch at a time
```
"""

from pathlib import Path

from connector.assets import Asset
from connector.sources.base import MEDIA_TYPES, Source, SourceError, Stored
from connector.sources.files import FileSource

__all__ = ["MEDIA_TYPES", "FileSource", "Source", "SourceError", "Stored", "source_of"]


def source_of(asset: Asset) -> Source:
    return FileSource(Path(asset.path), asset.format)
