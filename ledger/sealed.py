"""Records sealed at rest under an agency's evidence key (ADR 66).

An approving node keeps each decision's evidence (the claims presented, an identifier among
them for a credit rule) for auditors, in ``<data>/approvals``. Those files are sealed with the
node's **evidence key**: 32 random bytes in ``<data>/keys/evidence.key``, itself sealed with
the agency's key passphrase as key files are (Argon2id, SecretBox). A sealed record is the
canonical msgpack map ``{"v": 2, "key": mark, "box": SecretBox(record)}``, ``mark`` being 8 bytes
that name the key without giving it away; a record from before (``{"v": 1, "tx": …}``) is read
as it is. An auditor is given a copy of the key under a passphrase of its own
(``ledger-node evidence-key``) and opens the records with it (``ledger audit --evidence DIR
--evidence-key FILE``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.secret

from ledger import codec
from ledger.errors import DecodeError, KeyFileError, LedgerError
from ledger.files import read_capped, write_atomic
from ledger.keys import open_secret, seal_secret

__all__ = ["EVIDENCE_KEY", "EVIDENCE_KEY_FILE", "EVIDENCE_PASSPHRASE_ENV", "SEALED_PREFIX",
           "SealedError", "is_sealed", "key_mark", "load_evidence_key", "open_record",
           "read_evidence_key", "seal_record"]

EVIDENCE_KEY_FILE = "evidence.key"
"""The node's evidence key in its keys folder."""
EVIDENCE_KEY = "evidence-key"
"""The label of a sealed evidence key file (not a secret)."""
EVIDENCE_PASSPHRASE_ENV = "LEDGER_EVIDENCE_PASSPHRASE"  # noqa: S105 - a variable's name
"""The passphrase of the evidence key copies an auditor is given."""
SEALED_PREFIX = b"\x83\xa3box"
"""The first bytes of every sealed record (a canonical map whose first key is "box"); a clear
record (ADR 17) is a larger map whose first key is "documents"."""


class SealedError(LedgerError):
    """A sealed record whose key was not given."""


def key_mark(key: bytes) -> bytes:
    """8 bytes naming an evidence key without giving it away (HMAC under its own domain)."""
    return hmac.new(key, b"credledger/v1/evidence-key-mark\x00", hashlib.sha256).digest()[:8]


def seal_record(data: bytes, key: bytes) -> bytes:
    """``data`` (a canonical msgpack record) sealed under the evidence ``key``."""
    box = nacl.secret.SecretBox(key).encrypt(data)
    return codec.encode({"v": 2, "key": key_mark(key), "box": bytes(box)})


def open_record(blob: bytes, keys: Mapping[bytes, bytes], what: str,
                max_size: int = 1 << 21) -> dict[str, Any]:
    """The record in ``blob``: opened with the key of ``keys`` (mark → key) it names if it is
    sealed, read as it is if it is a clear one from before ADR 66 (a sealed one that a node of
    that version filed, its ``index`` and ``height`` beside the seal, opened with them).
    :class:`DecodeError` if it is no record or its seal does not open (damaged, or sealed by
    another key of the same mark); :class:`SealedError` if none of ``keys`` is its key."""
    rec = codec.decode(blob, max_size=max_size, what=what)
    if not isinstance(rec, dict):
        raise DecodeError(f"{what} is not a map")
    if rec.get("v") != 2:
        return rec  # a clear record from before ADR 66
    f = codec.Fields(rec, what)
    f.version(2, what)
    mark = f.bytes("key", size=8)
    box = f.bytes("box", max_len=max_size)  # a record's size, not a field's 4096 bytes
    # A node before ADR 66 (rolled back onto) files a sealed `.pending` record as it filed its
    # clear ones: the committed decision's place added beside the seal's fields
    place = {n: f.int(n, lo=0) for n in ("index", "height") if f.has(n)}
    f.done()
    key = keys.get(mark)
    if key is None:
        raise SealedError(f"{what} is sealed with the evidence key {mark.hex()}, which was not "
                          "given")
    try:
        inner = nacl.secret.SecretBox(key).decrypt(box)
    except nacl.exceptions.CryptoError as e:
        raise DecodeError(f"{what} is damaged: its seal does not open") from e
    got = codec.decode(inner, max_size=max_size, what=what)
    if not isinstance(got, dict) or got.get("v") == 2:
        raise DecodeError(f"{what} holds no record")
    if set(place) & set(got):
        raise DecodeError(f"{what} names its place both in its seal and beside it "
                          f"({', '.join(sorted(set(place) & set(got)))})")
    return {**got, **place}


def read_evidence_key(path: Path, passphrase: bytes) -> bytes:
    """The evidence key sealed in ``path``; :class:`KeyFileError` if it cannot be read, the
    passphrase is wrong, or it is not an evidence key."""
    try:
        blob = read_capped(path)
    except OSError as e:
        raise KeyFileError(f"cannot read {path}: {e.strerror or e}") from e
    key = open_secret(blob, passphrase, EVIDENCE_KEY, path)
    if len(key) != nacl.secret.SecretBox.KEY_SIZE:
        raise KeyFileError(f"{path} holds no evidence key ({len(key)} bytes, not 32)")
    return key


def load_evidence_key(keys: Path, passphrase: bytes, records: Path | None = None) -> bytes:
    """The node's evidence key in ``keys``; made (random, sealed with ``passphrase``, 0600) if
    there is none yet, unless the folder ``records`` holds a record sealed (by the key gone):
    a new key would leave those unopened, and the records it sealed would not open with the
    old key put back (:class:`KeyFileError`)."""
    path = keys / EVIDENCE_KEY_FILE
    if path.exists():
        return read_evidence_key(path, passphrase)
    if records is not None and _holds_sealed(records):
        raise KeyFileError(f"{path} is missing, but {records} holds sealed approval records: "
                           "put the evidence key they were sealed with back in its place (a "
                           "new one would leave them unopened for the agency and its "
                           "auditors)")
    key = secrets.token_bytes(nacl.secret.SecretBox.KEY_SIZE)
    try:
        write_atomic(path, seal_secret(key, passphrase, EVIDENCE_KEY), 0o600, overwrite=False)
    except FileExistsError:  # another process made it first: that one is the key
        return read_evidence_key(path, passphrase)
    except OSError as e:
        raise KeyFileError(f"cannot write the evidence key {path}: {e.strerror or e}") from e
    return key


def _holds_sealed(folder: Path) -> bool:
    """Whether ``folder`` holds a sealed record (told by its first bytes)."""
    try:
        paths = [p for p in folder.iterdir() if p.suffix in (".ev", ".pending")]
    except FileNotFoundError:
        return False
    except OSError as e:
        raise KeyFileError(f"cannot read {folder}: {e.strerror or e}") from e
    for p in paths:
        try:
            if is_sealed(p):
                return True
        except OSError as e:
            raise KeyFileError(f"cannot read {p}: {e.strerror or e}") from e
    return False


def is_sealed(path: Path) -> bool:
    """Whether the record file ``path`` is sealed, told by its first bytes (OSError if it
    cannot be read)."""
    with path.open("rb") as f:
        return f.read(len(SEALED_PREFIX)) == SEALED_PREFIX
