"""alembic runs this for every command on the connector's revisions (tessera.migrations drives it; no alembic.ini)."""

from connector.schema import SCHEMA
from tessera.migrations import run_env

run_env(SCHEMA)
