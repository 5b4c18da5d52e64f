"""pgbg: operate PostgreSQL's pg_background extension from the shell."""

__version__ = "0.1.0"
