"""What pgbg works with, stated once: decided by what its test matrix runs (README
"Versions", `make test-matrix`). Imports nothing, so that `pgbg --help` can say it cheaply."""

from __future__ import annotations

MIN_VERSION = (1, 8)  # pg_background
MAX_VERSION = (3, 0)  # exclusive: 3.0 drops the _v2 names
SUPPORTED_RANGE = "1.8 to 2.x"
MIN_SERVER = 150000  # server_version_num
MAX_SERVER = 189999
SUPPORTED_SERVERS = "PostgreSQL 15 to 18"
WORKS_WITH = f"pg_background {SUPPORTED_RANGE} on {SUPPORTED_SERVERS}"
