"""Alembic migrations of the job store; run by `flowscope.jobs.migrate`, no alembic.ini needed."""
