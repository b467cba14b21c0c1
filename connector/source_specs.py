"""Where a provider's asset reads its data, when that is not a local file: an HTTP backend the provider
proxies, or a SQL table or named query. The spec is what the management API takes and the connector's
database keeps; how a source reads it is `connector.sources`.

A spec holds the backend's address and secrets: nothing outside the provider's own database shows it
(`public` gives only the kind and the format), and no error text built here quotes it.
"""

import re
from typing import Annotated, Any, Literal
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from tessera.urls import check_url

BodyFormat = Literal["csv", "json", "jsonl"]
MAX_HEADERS = 32
MAX_HEADER_VALUE = 8192
MAX_QUERY_LENGTH = 65536
MAX_IDENTIFIER_LENGTH = 63  # PostgreSQL's NAMEDATALEN - 1
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")  # an RFC 9110 token
SQL_SCHEMES = ("postgresql", "postgres", "sqlite")
# Headers the proxy sets itself: a backend must not be told another host or body framing.
RESERVED_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer"}


class FromEnvironment(BaseModel):
    """A secret read from the provider's environment at each use: nothing of it is stored."""

    model_config = ConfigDict(extra="forbid")

    env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class HttpSpec(BaseModel):
    """An HTTP backend the provider proxies: `GET url` with `headers`, a body in `format`."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["http"]
    url: str
    format: BodyFormat
    headers: dict[str, str | FromEnvironment] = Field(default_factory=dict, max_length=MAX_HEADERS)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            return check_url(value, "the backend URL")
        except ValueError:  # check_url's text may quote part of the URL, and a URL may hold a key
            raise ValueError("must be an absolute http or https URL with a host") from None

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str | FromEnvironment]) -> dict[str, str | FromEnvironment]:
        for name, given in value.items():
            if not HEADER_NAME.fullmatch(name):
                raise ValueError("a header name must be an HTTP token (letters, digits, !#$%&'*+-.^_`|~)")
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(f"{name} is set by the connector, not by the source")
            if isinstance(given, str) and not header_value_ok(given):
                raise ValueError(f"the value of {name} must be 1-{MAX_HEADER_VALUE} printable Latin-1 characters")
        return value


class SqlSpec(BaseModel):
    """A table, or the provider's own named query, on a PostgreSQL or SQLite database named by URL."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["sql"]
    url: str = Field(min_length=1, max_length=2048)
    table: str | None = Field(default=None, min_length=1, max_length=2 * MAX_IDENTIFIER_LENGTH + 1)
    query: str | None = Field(default=None, min_length=1, max_length=MAX_QUERY_LENGTH)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.isprintable() or any(char.isspace() for char in value):
            raise ValueError("must hold no spaces or control characters")
        scheme = value.partition(":")[0].lower()
        if scheme not in SQL_SCHEMES:
            raise ValueError("must be a postgresql://, postgres:// or sqlite:/// URL")
        if scheme == "sqlite" and not sqlite_path(value).startswith("/"):
            raise ValueError("a SQLite URL names an absolute path: sqlite:////path/to/db.sqlite")
        return value

    @field_validator("table")
    @classmethod
    def _table(cls, value: str | None) -> str | None:
        if value is not None:
            table_parts(value)
        return value

    @field_validator("query")
    @classmethod
    def _query(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("must hold no NUL character")
        return value

    @model_validator(mode="after")
    def _table_or_query(self) -> "SqlSpec":
        if (self.table is None) == (self.query is None):
            raise ValueError("give either table (a table name) or query (a named query of the provider), not both")
        return self

    @property
    def dialect(self) -> Literal["postgresql", "sqlite"]:
        return "sqlite" if self.url.lower().startswith("sqlite:") else "postgresql"


SourceSpec = Annotated[HttpSpec | SqlSpec, Field(discriminator="kind")]
_specs: TypeAdapter[HttpSpec | SqlSpec] = TypeAdapter(SourceSpec)


def header_value_ok(value: str) -> bool:
    return 0 < len(value) <= MAX_HEADER_VALUE and value.isprintable() and all(ord(char) < 256 for char in value)


def sqlite_path(url: str) -> str:
    """The file a `sqlite:///…` URL names: `sqlite:////data/db.sqlite` is `/data/db.sqlite`."""
    prefix = "sqlite:///"
    return unquote(url[len(prefix) :].partition("?")[0]) if url.lower().startswith(prefix) else ""


def table_parts(table: str) -> tuple[str, ...]:
    """`table` or `schema.table` as identifiers to quote; a name with a dot in it cannot be named here."""
    parts = tuple(table.split("."))
    if len(parts) > 2 or not all(0 < len(part) <= MAX_IDENTIFIER_LENGTH and part.isprintable() for part in parts):
        raise ValueError(f"must be table or schema.table, each 1-{MAX_IDENTIFIER_LENGTH} printable characters")
    return parts


def load(stored: dict[str, Any]) -> HttpSpec | SqlSpec:
    """A spec as the database keeps it (the recorded columns of a SQL source aside)."""
    return _specs.validate_python({name: value for name, value in stored.items() if name != "columns"})


def public(stored: dict[str, Any]) -> dict[str, Any]:
    """What anyone but the provider's database sees of a source: its kind (and an HTTP body's format)."""
    shown = {"kind": stored["kind"]}
    return shown | {"format": stored["format"]} if stored["kind"] == "http" else shown
