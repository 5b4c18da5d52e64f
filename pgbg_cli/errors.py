"""The one exception family of pgbg's core, and the exit codes it maps to.

The core (everything but ``cli`` and ``commands``) raises these; the CLI turns
each into one line on stderr and the matching exit code, never a traceback.
"""

from __future__ import annotations

OK = 0
JOB_FAILED = 1  # a job failed, was canceled, timed out or was lost
USAGE = 2  # bad usage or bad input
ENVIRONMENT = 3  # connection, extension, schema or privilege problem
WAIT_TIMEOUT = 124  # a wait ran out of time (as timeout(1) does)

EXIT_CODES: dict[int, str] = {
    OK: "success",
    JOB_FAILED: "a job failed, was canceled, timed out or was lost",
    USAGE: "bad usage or bad input",
    ENVIRONMENT: "connection, extension, schema or privilege problem",
    WAIT_TIMEOUT: "a wait timed out",
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
