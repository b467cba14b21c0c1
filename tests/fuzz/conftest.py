"""The fuzzed data space, one per module: setting it up (a negotiation, a transfer) costs seconds."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuzz.harness import Harness


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    running = Harness(Path(tmp_path_factory.mktemp("fuzz")))
    running.targets = running.start()
    try:
        yield running
    finally:
        running.stop()
