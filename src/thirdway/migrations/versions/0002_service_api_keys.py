"""The service's API keys, in the shared PostgreSQL database.

Several ``thirdway serve`` workers read every request's key from here, and ``thirdway keys``
writes here, so a key made or revoked by the admin command holds on every worker from its next
request. Rows are updated (``revoked_at``) but never deleted: a revoked key stays listed.

On SQLite there is nothing to do: one machine's service keeps its keys in the data folder's
``keys.db`` (see ``thirdway.service.auth.SQLiteKeyStore``), apart from the log's file.

Revision ID: 0002_service_api_keys
Revises: 0001_initial
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0002_service_api_keys"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

POSTGRES = [
    "CREATE TABLE service_api_keys (id TEXT PRIMARY KEY, name TEXT NOT NULL,"
    " role TEXT NOT NULL CHECK (role IN ('agent', 'auditor', 'admin')),"
    " digest BYTEA NOT NULL CHECK (octet_length(digest) = 32),"
    " created_at BIGINT NOT NULL, revoked_at BIGINT)",
    "CREATE INDEX service_api_keys_name ON service_api_keys (name)",
]


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        for statement in POSTGRES:
            op.execute(statement)


def downgrade() -> None:
    raise RuntimeError("API keys are never dropped by a downgrade (revocations are the record)")
