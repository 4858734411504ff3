"""Exit codes of the BIDS Apps execution spec, and the one error type that carries them.

Every failure the user can act on is raised as a GadoError whose message says what was wrong and
what to do; the CLI turns it into that message on stderr and the matching exit code.
"""
import enum


class ExitCode(enum.IntEnum):
    SUCCESS = 0
    FAILURE = 1  # generic failure, also: some participants failed
    VALIDATION_FAILED = 16  # input dataset is not valid BIDS
    NOTHING_SELECTED = 18  # filters / labels selected no data
    USAGE = 64  # bad command line
    NO_INPUT = 66  # bids_dir missing or unreadable, no ce- scans at all
    CANNOT_CREATE_OUTPUT = 73  # output folder not writable, or owned by another version
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
    TERMINATED = 143  # SIGTERM, e.g. a batch system's time limit or scancel (128 + SIGTERM)


class GadoError(Exception):
    """An error with a user-facing message and a BIDS Apps exit code."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.FAILURE):
        super().__init__(message)
        self.exit_code = ExitCode(exit_code)


class InputImageError(GadoError):
    """One input image cannot be used; fails its participant, never the whole run."""

    def __init__(self, message: str):
        super().__init__(message, ExitCode.FAILURE)


class Terminated(BaseException):
    """SIGTERM, raised where Python code runs next.

    A BaseException (like KeyboardInterrupt) so that no per-participant `except Exception`
    mistakes it for that participant's failure: the run stops, every `finally` removes its
    temporary files and scratch folder, and files already under final names stay complete."""
