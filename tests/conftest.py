"""Fixtures shared by the whole suite."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.dataspace import Dataspace, Site, dataspace, write_people_csv
from tests.postgres import postgres  # noqa: F401 - the fixture, for every test that takes it


@pytest.fixture
async def space(tmp_path: Path) -> AsyncIterator[Dataspace]:
    """A running broker; tests admit and start the connectors they need."""
    async with dataspace(tmp_path) as running:
        yield running


@pytest.fixture
async def provider(space: Dataspace) -> Site:
    return await space.start(await space.admit("provider", region="EU-DE"))


@pytest.fixture
async def consumer(space: Dataspace) -> Site:
    return await space.start(await space.admit("consumer", region="EU-FR"))


@pytest.fixture
def people_csv(tmp_path: Path) -> Path:
    return write_people_csv(tmp_path / "people.csv")
