"""Alembic's environment for the job database: it runs on the connection (and inside the transaction) that
``JobStore`` hands it, so the upgrade and the store's own lock are one transaction. ``target_metadata`` is the
store's tables, so ``alembic check`` (and tests/service/test_store.py) compare the revisions with what the store
queries."""

from alembic import context

from negminer.jobs._store import METADATA

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=METADATA, transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
