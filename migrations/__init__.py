"""Alembic migrations; shipped inside the package as ``requestor._migrations``."""
