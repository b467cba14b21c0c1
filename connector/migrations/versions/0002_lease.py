"""the lease table: which replica holds a resource (an outbox message, a sweep, a push) until when

Revision 0002, after 0001. The model is `tessera.leases.Lease` (from the replicas work).
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lease",
        sa.Column("resource", sa.String(), nullable=False),
        sa.Column("holder", sa.String(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("resource"),
    )
    op.create_index("ix_lease_expires_at", "lease", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_lease_expires_at", table_name="lease")
    op.drop_table("lease")
