"""What the console's pages share: the broker's state objects and its errors as console refusals."""

from collections.abc import Iterator
from contextlib import contextmanager

from starlette.requests import Request

from broker.authority import Authority
from broker.registry import Registry
from tessera.errors import TesseraError
from tessera.web.console import Refused


def registry_of(request: Request) -> Registry:
    registry: Registry = request.state.registry
    return registry


def authority_of(request: Request) -> Authority:
    authority: Authority = request.state.authority
    return authority


@contextmanager
def refusing() -> Iterator[None]:
    """Our errors (a bad search parameter, an unknown id) as a page that says what went wrong."""
    try:
        yield
    except TesseraError as exc:
        raise Refused(exc.detail, exc.status_code) from exc
