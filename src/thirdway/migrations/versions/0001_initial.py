"""The initial schema: the transparency log (entries, perfect-subtree nodes, checkpoints,
metadata), the PostgreSQL sequencer's ``log_state`` row, and the capability spent-set.

Both backends refuse UPDATE and DELETE on the log's tables. On PostgreSQL TRUNCATE is refused too
(it bypasses row triggers), and ``log_state`` may only grow: its one row can be updated to a
larger size by the sequencer but never shrunk or removed.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY_MESSAGE = "thirdway log is append-only"
LOG_TABLES = ("meta", "entries", "nodes", "checkpoints")

SQLITE = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS entries ("
    " idx INTEGER PRIMARY KEY, data BLOB NOT NULL, leaf_hash BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS nodes (id INTEGER PRIMARY KEY, hash BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS checkpoints ("
    " seq INTEGER PRIMARY KEY, size INTEGER NOT NULL, note TEXT NOT NULL)",
    *[
        f"CREATE TRIGGER IF NOT EXISTS {table}_no_{action.lower()} BEFORE {action} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
        for table in LOG_TABLES
        for action in ("UPDATE", "DELETE")
    ],
    "CREATE TABLE IF NOT EXISTS capability_spent ("
    " nonce TEXT PRIMARY KEY NOT NULL, expires_at INTEGER NOT NULL, spent_at REAL NOT NULL"
    ") WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS capability_spent_expiry ON capability_spent (expires_at)",
]

POSTGRES = [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE entries (idx BIGINT PRIMARY KEY CHECK (idx >= 0),"
    " data BYTEA NOT NULL, leaf_hash BYTEA NOT NULL CHECK (octet_length(leaf_hash) = 32))",
    "CREATE TABLE nodes (id BIGINT PRIMARY KEY CHECK (id >= 0),"
    " hash BYTEA NOT NULL CHECK (octet_length(hash) = 32))",
    "CREATE TABLE checkpoints (seq BIGINT PRIMARY KEY CHECK (seq >= 1),"
    " size BIGINT NOT NULL CHECK (size >= 0), note TEXT NOT NULL)",
    "CREATE TABLE log_state (id SMALLINT PRIMARY KEY CHECK (id = 1),"
    " size BIGINT NOT NULL CHECK (size >= 0))",
    "INSERT INTO log_state (id, size) VALUES (1, 0)",
    f"""CREATE FUNCTION thirdway_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}' USING ERRCODE = 'raise_exception',
        DETAIL = TG_OP || ' on ' || TG_TABLE_NAME || ' refused';
END
$$""",
    f"""CREATE FUNCTION thirdway_log_state_grows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' OR NEW.id <> OLD.id OR NEW.size < OLD.size THEN
        RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}' USING ERRCODE = 'raise_exception',
            DETAIL = 'log_state may only grow';
    END IF;
    RETURN NEW;
END
$$""",
    *[
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
        " FOR EACH ROW EXECUTE FUNCTION thirdway_append_only()"
        for table in LOG_TABLES
    ],
    *[
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}"
        " FOR EACH STATEMENT EXECUTE FUNCTION thirdway_append_only()"
        for table in (*LOG_TABLES, "log_state")
    ],
    "CREATE TRIGGER log_state_grows BEFORE UPDATE OR DELETE ON log_state"
    " FOR EACH ROW EXECUTE FUNCTION thirdway_log_state_grows()",
    "CREATE TABLE capability_spent (nonce TEXT PRIMARY KEY,"
    " expires_at BIGINT NOT NULL, spent_at DOUBLE PRECISION NOT NULL)",
    "CREATE INDEX capability_spent_expiry ON capability_spent (expires_at)",
]


def upgrade() -> None:
    statements = POSTGRES if op.get_context().dialect.name == "postgresql" else SQLITE
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    raise RuntimeError("the log is append-only: its schema is never downgraded")
