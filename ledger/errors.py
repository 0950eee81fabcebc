"""The exception tree of the ``ledger`` package.

::

    LedgerError                      base of everything this package raises
    ├── DecodeError                  bytes that are not canonical, closed-schema, in-limit input
    ├── SignatureError               a signature that does not verify, or a key that is not usable
    ├── KeyFileError                 an encrypted key file that cannot be read or decrypted
    ├── ProofError                   an RFC 9162 inclusion/consistency proof that does not verify
    ├── CheckpointError              a C2SP checkpoint: malformed, badly signed or short of quorum
    ├── TxRejected                   a transaction the state machine refuses (carries ``code``)
    ├── StoreError                   a store that is corrupt, inconsistent or misused
    ├── OrderingError                the orderer is stopped or could not commit
    ├── ClaimError                   (ledger.credentials) claims that do not fit a registered type
    ├── StatusListError              (ledger.statuslist) a malformed list or Status List Token
    └── VerificationError            (ledger.sdjwt) an SD-JWT / SD-JWT+KB check failed; its
                                     subclasses name the check (alg, exp, kb_nonce, …)

Internals raise ``ValueError``/``TypeError``; public boundaries re-raise as one of these ``from e``.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "DecodeError",
    "KeyFileError",
    "LedgerError",
    "OrderingError",
    "ProofError",
    "SignatureError",
    "StoreError",
    "TxRejected",
]  # error classes only (tests/test_exports.py); ``damaged`` words a StoreError's message


class LedgerError(Exception):
    """Base class of every error the ledger package raises on purpose.

    ``taken`` is False where the raiser knows it handed nothing of the request on (nothing
    written to the store, put in etcd or queued to a writer): the node's error body then says
    ``"taken": false`` and a client may send it again. None (the default) where that is not
    known; never True."""

    taken: bool | None = None

    def __init__(self, *args: object, taken: bool | None = None) -> None:
        super().__init__(*args)
        if taken is not None:
            self.taken = taken


class DecodeError(LedgerError):
    """Input bytes are malformed, non-canonical, oversize, or do not match the closed schema.

    ``where`` names the position (a dotted path such as ``tx.body.status``) when known.
    """

    def __init__(self, message: str, where: str = "") -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class SignatureError(LedgerError):
    """A signature does not verify, or the key that made it is unknown or not allowed."""


class KeyFileError(LedgerError):
    """An encrypted private-key file is malformed or the passphrase is wrong."""


class ProofError(LedgerError):
    """An RFC 9162 Merkle proof does not verify (the message shows expected and computed values)."""


class CheckpointError(LedgerError):
    """A checkpoint (C2SP signed note) is malformed, carries a bad signature, or lacks quorum."""


class BelowQuorumError(CheckpointError):
    """A checkpoint whose signatures verify but are fewer than the quorum: not final (yet: a
    node stores its own signature first, its peers' co-signatures as they come)."""


class TxRejected(LedgerError):
    """The state machine refused a transaction. ``code`` is a stable machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class StoreError(LedgerError):
    """The store is corrupt, inconsistent with its own Merkle root, or used wrongly."""


class OrderingError(LedgerError):
    """The orderer is not running or a block could not be made durable."""


def damaged(what: str, e: Exception | None, fails: str = "does not decode") -> str:
    """A record of this store's own that does not decode (or verify), said as the store's
    damage (HTTP 503, not a client's 400), with what the operator does about it."""
    why = "" if e is None else f" ({e})"
    return (f"{what} {fails}{why}: this node's store is damaged; its operator should stop "
            "the node and run `ledger audit` on its data folder, which names what is damaged")
