"""Every error ghga-tasks raises on purpose, and the exit code it maps to.

    GhgaTasksError                      exit 1   (base: anything we anticipated)
    ├── ConfigurationError              exit 2   bad env var, config key, file ID or key file
    ├── Cancelled                       exit 3   the user or the skip policy said stop
    ├── StagingTimeout                  exit 4   a file was not staged within max_wait_time
    ├── IntegrityError                  exit 5   bytes on disk are not what the archive sent
    │   └── EnvelopeRejected            exit 5   envelope malformed, or not by the key you gave
    ├── PublicKeyMismatch               exit 6   the user's key file is not the archive's copy
    ├── OutputExists                    exit 1   a file is already under the final name
    ├── LocalStorageError               exit 1   the output directory cannot take the file
    │   ├── NoSpaceLeft                 exit 1   disk full or quota exceeded
    │   └── OutputLocked                exit 1   another run or job is writing there
    ├── ApiError                        exit 1   the Download API answered something unusable
    │   ├── AuthorizationError          exit 1   401/403 from the Download API or the WPS
    │   └── Unreachable                 exit 1   no answer at all (refused, timeout, TLS)
    ├── TransferError                   exit 1   the object store did not deliver the bytes
    ├── FilesFailed                     exit 1*  some files failed, the others downloaded
    ├── WorkflowFailed                  exit 1   Snakemake stopped; the job's log says why
    └── Interrupted                     exit 130 Ctrl-C or SIGTERM stopped a download

    * the failed files' own exit code when they all share one (4: all timed out, ...)

Each error takes keyword-only context and builds its own one-line message, so the
CLI can print ``Error: <message>`` and Snakemake logs show the same line.
"""

from __future__ import annotations


class GhgaTasksError(Exception):
    """Base class: an anticipated failure with a human message and an exit code."""

    exit_code = 1


class ConfigurationError(GhgaTasksError):
    """A setting (env var, config key, key file) is missing or invalid."""

    exit_code = 2

    def __init__(self, *, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"{setting}: {problem}")


class Cancelled(GhgaTasksError):
    """The run was stopped on purpose (a prompt answer or the skip policy)."""

    exit_code = 3

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class StagingTimeout(GhgaTasksError):
    exit_code = 4

    def __init__(self, *, file_id: str, waited_seconds: float, max_wait_time: float) -> None:
        self.file_id = file_id
        self.waited_seconds = waited_seconds
        super().__init__(
            f"{file_id} was still being staged after {waited_seconds:.0f} s "
            f"(max_wait_time is {max_wait_time:.0f} s); run again later to resume"
        )


class IntegrityError(GhgaTasksError):
    """What was written does not match what the archive said it would be."""

    exit_code = 5

    def __init__(self, *, file_id: str, problem: str) -> None:
        self.file_id = file_id
        self.problem = problem
        super().__init__(f"{file_id}: integrity check failed: {problem}")


class EnvelopeRejected(IntegrityError):
    """The Crypt4GH envelope is malformed, or not written with the GHGA key the user gave."""

    def __init__(self, *, file_id: str, problem: str) -> None:
        super().__init__(file_id=file_id, problem=f"envelope rejected: {problem}")


class PublicKeyMismatch(GhgaTasksError):
    exit_code = 6

    def __init__(self, *, key_file: str) -> None:
        self.key_file = key_file
        super().__init__(
            f"the public key in {key_file} is not the key this work package was made for; "
            "use the key pair you gave the GHGA data portal (config key user_public_key)"
        )


class OutputExists(GhgaTasksError):
    def __init__(
        self, *, path: str, hint: str = "ghga-tasks never replaces a file: move it away first"
    ) -> None:
        self.path = path
        super().__init__(f"{path} already exists; {hint}")


class LocalStorageError(GhgaTasksError):
    """Writing to the output directory failed (not the archive's fault)."""

    def __init__(self, *, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class NoSpaceLeft(LocalStorageError):
    """The file system (or the user's quota) has no room for the file."""

    def __init__(self, *, path: str, needed: int | None = None, free: int | None = None) -> None:
        detail = ""
        if needed is not None and free is not None:
            detail = f" (needs {needed} bytes, {free} free)"
        super().__init__(
            path=path,
            problem=f"no space left on device{detail}; free some space or choose another "
            "output_dir, then run again",
        )


class OutputLocked(LocalStorageError):
    """Another ghga-tasks run or download job holds the lock on this path."""

    def __init__(self, *, path: str, holder: str) -> None:
        super().__init__(path=path, problem=f"{holder}; wait for it to finish or stop it first")


class ApiError(GhgaTasksError):
    """The Download API answered with a status or body we cannot use."""

    def __init__(
        self, *, url: str, problem: str, status_code: int | None = None, file_id: str = ""
    ) -> None:
        self.url = url
        self.problem = problem
        self.status_code = status_code
        self.file_id = file_id
        status = f" (HTTP {status_code})" if status_code is not None else ""
        subject = f"{file_id}: " if file_id else ""
        super().__init__(f"{subject}{problem}{status} from {url}")


class AuthorizationError(ApiError):
    """401/403: the token is missing, expired or not for this file."""


class Unreachable(ApiError):
    """No answer at all, after the retries: connection refused, timed out, TLS failed."""

    def __init__(self, *, url: str, problem: str, file_id: str = "") -> None:
        self.url, self.problem, self.status_code, self.file_id = url, problem, None, file_id
        subject = f"{file_id}: " if file_id else ""
        GhgaTasksError.__init__(self, f"{subject}cannot reach {url}: {problem}")


class TransferError(GhgaTasksError):
    """The object store did not deliver the requested bytes."""

    def __init__(self, *, file_id: str, problem: str) -> None:
        self.file_id = file_id
        self.problem = problem
        super().__init__(f"{file_id}: download failed: {problem}")


class FilesFailed(GhgaTasksError):
    """Files of the batch failed (each already recorded); the rest went on regardless."""

    def __init__(self, *, errors: list[str], exit_codes: list[int]) -> None:
        self.errors = errors
        shared = set(exit_codes)
        self.exit_code = shared.pop() if len(shared) == 1 else 1
        more = f" (and {len(errors) - 1} more failed file(s))" if len(errors) > 1 else ""
        super().__init__(f"{errors[0]}{more}; every file's outcome is in the report")


class WorkflowFailed(GhgaTasksError):
    """Snakemake stopped with a failed job and no file recorded why (the job's log says)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)


class Interrupted(GhgaTasksError):
    """A stop request (Ctrl-C, SIGTERM) ended a download.

    Raised instead of ``KeyboardInterrupt`` by a download job: Snakemake ignores a job
    thread's ``KeyboardInterrupt`` and would wait for that job forever. ``kept`` says which
    partial file stays for the next run to resume (``resume_partial``), if any.
    """

    exit_code = 130

    def __init__(self, *, kept: str = "") -> None:
        self.detail = kept or "no partial file was kept"
        super().__init__(f"interrupted: {self.detail}")
