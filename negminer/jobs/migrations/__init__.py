"""Alembic migrations of the job database (``negminer.jobs.JobStore`` upgrades a database at start-up)."""
