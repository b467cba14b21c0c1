"""alembic runs this for every command on the broker's revisions (tessera.migrations drives it; no alembic.ini)."""

from broker.schema import SCHEMA
from tessera.migrations import run_env

run_env(SCHEMA)
