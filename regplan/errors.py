"""The domain errors. Each carries the exit code the CLI maps it to (README: Exit codes)."""

from __future__ import annotations

from typing import ClassVar


class RegplanError(Exception):
    """An expected failure with a one-line message for the user."""

    exit_code: ClassVar[int] = 1


class StorageError(RegplanError):
    """The root is not registry storage, or the storage cannot be read."""


class SelectionError(RegplanError):
    """The request names a repository or tag that does not exist."""


class PolicyError(SelectionError):
    """A policy file with mistakes: each is one line, ``FILE:LINE:COLUMN: message``."""

    def __init__(self, file: str, errors: list[str]) -> None:
        more = (
            f" (and {len(errors) - 1} more: regplan policy check {file})" if len(errors) > 1 else ""
        )
        super().__init__(errors[0] + more)
        self.file = file
        self.errors = errors


class PlanFormatError(RegplanError):
    """The plan file is not a valid regplan plan of a version we read."""


class PlanWriteError(RegplanError):
    """The plan file could not be written (nothing is left half written)."""


class SpoolError(PlanWriteError):
    """The planner's temporary files (``TMPDIR``) could not be written: no plan is."""


class KeyFileError(RegplanError):
    """A key file is missing, unreadable, or not an Ed25519 key of ours."""


class SignatureError(RegplanError):
    """A signature is invalid, or not enough trusted keys signed the plan."""

    exit_code = 3


class StalePlanError(RegplanError):
    """The tree changed since the plan was made, or the plan was already applied."""

    exit_code = 4


class LockHeldError(RegplanError):
    """Another apply, rollback or purge holds the storage lock."""

    exit_code = 5


class ApplyError(RegplanError):
    """An apply, rollback or purge could not proceed; nothing further was moved."""


class RegistryError(RegplanError):
    """The running registry could not be asked (bad URL, TLS, authentication)."""


class RegistryOnlineError(RegplanError):
    """The registry accepts writes: storage must not change under it (README: Exit codes)."""

    exit_code = 6


class RegistryUnknownError(RegistryOnlineError):
    """Nothing says the registry cannot write: no URL to probe, no config, no
    --registry-stopped. Apply and rollback move nothing (exit 6)."""


class CheckFailed(RegplanError):  # noqa: N818 (what the user reads: the check failed)
    """``regplan check`` found a broken image, or a removed one still served."""
