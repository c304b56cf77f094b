"""seed the inbox notebook

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    notebooks = sa.table("notebooks", sa.column("name", sa.String))
    op.bulk_insert(notebooks, [{"name": "inbox"}])


def downgrade() -> None:
    op.execute("DELETE FROM notebooks WHERE name = 'inbox'")
