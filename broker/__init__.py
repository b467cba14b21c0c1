"""The broker: one per industry cluster, the cluster's identity authority and metadata registry.

```python
from broker import BrokerConfig, create_app

app = create_app(BrokerConfig.load(Path("broker")))
```
"""

from broker.app import create_app
from broker.config import BrokerConfig

__all__ = ["BrokerConfig", "create_app"]
