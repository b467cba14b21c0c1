"""The broker: one per industry cluster, the cluster's identity authority and metadata registry.

```python
from broker import BrokerConfig, create_app

app = create_app(BrokerConfig.load(Path("broker")))
```
"""

from typing import TYPE_CHECKING

from broker.config import BrokerConfig

if TYPE_CHECKING:
    from broker.app import create_app

__all__ = ["BrokerConfig", "create_app"]


def __getattr__(name: str) -> object:
    # The app pulls in search, crawling and Chinese segmentation; the CLI's operator commands need none of it.
    if name == "create_app":
        from broker.app import create_app

        return create_app
    raise AttributeError(name)
