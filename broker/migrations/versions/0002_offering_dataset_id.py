"""the offering's dataset id: the `@id` of the DSP dataset that holds the offer, which search shows

Revision 0002, after 0001. Rows stored before it have "" until the next push or crawl names their dataset.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("broker_offering") as batch:
        batch.add_column(sa.Column("dataset_id", sa.String(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("broker_offering") as batch:
        batch.drop_column("dataset_id")
