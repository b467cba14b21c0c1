import pytest
import typer
from typer.testing import CliRunner

from policies.cli import register


@pytest.fixture
def tessera() -> typer.Typer:
    """A `tessera` app with only the policy commands plugged in, as connector.cli does."""
    app = typer.Typer(name="tessera", pretty_exceptions_enable=False)
    register(app)
    return app


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()
