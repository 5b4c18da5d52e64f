"""The one exception family of pgbg's core, and the exit codes it maps to.

The core (everything but ``cli`` and ``commands``) raises these; the CLI turns
each into one line on stderr and the matching exit code, never a traceback.
"""

from __future__ import annotations

OK = 0
JOB_FAILED = 1  # a job failed, was canceled, timed out, was lost or detached
USAGE = 2  # bad usage or bad input
ENVIRONMENT = 3  # connection, extension, schema or privilege problem
WARNED = 4  # wait/launch --wait --strict: every job succeeded, and one said WARNING
NOT_STARTED = 75  # launch: the job is queued and nothing will start it (EX_TEMPFAIL: try again later)
WAIT_TIMEOUT = 124  # a wait ran out of time (as timeout(1) does)
INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it); a --watch view ends with 0

EXIT_CODES: dict[int, str] = {
    OK: "success",
    JOB_FAILED: "a job failed, was canceled, timed out, was lost or detached",
    USAGE: "bad usage or bad input",
    ENVIRONMENT: "connection, extension, schema or privilege problem",
    WARNED: "with --strict: the jobs succeeded, but one emitted a WARNING",
    NOT_STARTED: "a job is queued and nothing will start it (no worker slot, no dispatcher)",
    WAIT_TIMEOUT: "a wait timed out",
    INTERRUPTED: "interrupted (Ctrl-C), except a --watch view, which Ctrl-C ends with 0",
}


class PgbgError(Exception):
    """An error with a one-line message meant for the user."""

    exit_code: int = ENVIRONMENT

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class UsageError(PgbgError):
    exit_code = USAGE


class ConnectionProblem(PgbgError):
    exit_code = ENVIRONMENT


class ExtensionProblem(PgbgError):
    exit_code = ENVIRONMENT


class PrivilegeProblem(PgbgError):
    exit_code = ENVIRONMENT


class SchemaMissing(PgbgError):
    exit_code = ENVIRONMENT


class JobFailed(PgbgError):
    exit_code = JOB_FAILED


class WaitTimedOut(PgbgError):
    exit_code = WAIT_TIMEOUT


# pg_background's library lacks a function of its SQL objects (42883 "could not find function
# ... in file"): a package of another version was installed over the extension.
LIBRARY_MISMATCH = (
    "pg_background's library does not match its SQL objects (a package of another version was installed "
    "over the extension): DROP EXTENSION pg_background; CREATE EXTENSION pg_background (then pgbg init, "
    "unless a superuser ran it last); queued jobs wait and then run"
)
# pgbg's wrappers over the extension are gone (42883 "function pgbg._bg_... does not exist").
UNBOUND = (
    "pgbg is not bound to pg_background (the extension was dropped, recreated or changed under it): "
    "run pgbg init (as a superuser); queued jobs wait and then run"
)


def extension_trouble(sqlstate: str | None, message: str) -> str | None:
    """The one-line fix for a database error that means pg_background cannot be called."""
    if sqlstate != "42883":
        return None
    if 'could not find function "pg_background' in message:
        return LIBRARY_MISMATCH
    if "function pgbg._bg_" in message:
        return UNBOUND
    return None
