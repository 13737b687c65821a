"""Alembic's environment for the job database: it runs on the connection (and inside the transaction) that
``JobStore`` hands it, so the upgrade and the store's own lock are one transaction."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
