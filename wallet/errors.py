"""The exception tree of the ``wallet`` package.

::

    LedgerError (ledger.errors)
    └── WalletError                  base of everything the wallet raises on purpose
        ├── WalletFileError          no wallet, one already there, unreadable, wrong passphrase,
        │                            tampered or damaged file, changed by another process
        ├── BundleRefused            a received bundle failed a check (``step`` names which)
        ├── PresentationError        unknown credential, wrong type, a claim it does not hold
        │   └── CredentialIdError    an id too short, unknown or matching several (also a
        │                            UsageError: the CLI exits 2)
        └── UsageError               bad input to a command (the CLI exits 2)

Messages name claims and steps, never claim values.
"""

from __future__ import annotations

from ledger.errors import LedgerError

__all__ = ["BundleRefused", "CredentialIdError", "PresentationError", "UsageError",
           "WalletChangedError", "WalletError", "WalletFileError"]


class WalletError(LedgerError):
    """Base class of every error the wallet package raises on purpose."""


class UsageError(WalletError):
    """The command was given something it cannot use (an output file that exists, a folder
    that does not): the CLI exits 2, as for any bad input, not 1."""


class WalletFileError(WalletError):
    """The wallet file is missing, already exists, cannot be decrypted, or is damaged."""


class WalletChangedError(WalletFileError):
    """Another wallet process saved the file since this one opened it: nothing was saved;
    open it again and retry."""


class BundleRefused(WalletError):
    """A credential bundle failed verification; ``step`` is the check that failed."""

    def __init__(self, step: str, detail: str) -> None:
        self.step = step
        self.detail = detail
        super().__init__(f"bundle refused at {step}: {detail}")


class PresentationError(WalletError):
    """A presentation cannot be made: unknown credential, other type, or missing claims."""


class CredentialIdError(PresentationError, UsageError):
    """The credential id given is too short, names no credential or matches several: bad
    input, so the CLI exits 2."""
