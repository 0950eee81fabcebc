"""The encrypted wallet file: one file, canonical msgpack, nothing readable without the passphrase.

Outer map (canonical msgpack, :mod:`ledger.codec`)::

    {"v": 1, "kind": "credledger-wallet", "kdf": "argon2id", "ops": int, "mem": int,
     "salt": bytes(16), "box": bytes}

``box`` is ``SecretBox(Argon2id(passphrase, salt, ops, mem)).encrypt(inner)`` (XSalsa20-Poly1305,
fresh random 24-byte nonce on every write), and ``inner`` is the canonical msgpack of::

    {"v": 2, "holder_seed": bytes(32),
     "credentials": [{"credential_id": bytes(32), "type": str, "issuer": str,
                      "valid_from": int, "valid_until": int, "added": int,
                      "bundle": bytes, "key": int, "shown": int}, ...],
     "shown_to": [[int, str], ...]}

A credential's ``key`` is the holder key it is bound to (key 0 is the seed's own, the others
derived from it: :func:`wallet.core.holder_key`), ``shown`` how many presentations of it were
made; ``shown_to`` the (key, verifier) pairs of every presentation made (the verifier: its
audience's origin, :func:`wallet.core.verifier_of`), kept apart
from the credentials so that a key stays known as shown when the credential shown is gone
(a restore of an older backup, ADR 52). Version 1 (before ADR 52) had none of them: one holder
key, every credential bound to it, nothing counted.

``bundle`` is :meth:`ledger.presentation.Bundle.to_bytes`. A wrong passphrase and any change to
the file fail the Poly1305 tag (changing ``salt``/``ops``/``mem`` changes the derived key), and
both are reported as one :class:`WalletFileError`. Writes are atomic: a new file created with
``O_EXCL`` and mode 0600, fsynced, then renamed over (or, for a new wallet, hard-linked into
place so an existing wallet is never overwritten), then the directory is fsynced.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

from ledger import codec
from ledger.codec import Fields
from ledger.errors import DecodeError
from wallet.errors import WalletFileError

__all__ = [
    "FILE_KIND",
    "MAX_FILE",
    "Contents",
    "KdfParams",
    "StoredCredential",
    "derive_key",
    "lock",
    "open_sealed",
    "seal",
]

FILE_KIND = "credledger-wallet"
MAX_FILE = 64 << 20
"""Largest wallet file read (64 MiB: some hundreds of credentials with room to spare)."""
MAX_BUNDLE = 256 * 1024
MAX_CREDENTIALS = 10_000
MAX_KEYS = 100
"""Holder keys per wallet: one per copy of a credential (``wallet holder-key --copies``)."""
MAX_SHOWN_TO = 10_000
"""(key, verifier) pairs kept: later presentations still count on their credential."""

_OPS = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
_MEM = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
# A tampered header must not make us spend unbounded time or memory before the tag check fails.
_MAX_OPS = nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE  # libsodium's strongest preset (4)
_MAX_MEM = nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE  # (1 GiB)


@dataclass(frozen=True, slots=True)
class KdfParams:
    """Argon2id parameters and salt, stored in clear in the outer map."""

    salt: bytes
    ops: int = _OPS
    mem: int = _MEM

    def __post_init__(self) -> None:
        if len(self.salt) != nacl.pwhash.argon2id.SALTBYTES:
            raise ValueError(f"the salt is {nacl.pwhash.argon2id.SALTBYTES} bytes")

    @classmethod
    def fresh(cls) -> KdfParams:
        return cls(nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES))


def derive_key(passphrase: bytes, params: KdfParams) -> bytes:
    """The SecretBox key: Argon2id(passphrase, salt) with the file's limits."""
    if not passphrase:
        raise WalletFileError("an empty passphrase is not allowed")
    try:
        return nacl.pwhash.argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase, params.salt,
                                        opslimit=params.ops, memlimit=params.mem)
    except (nacl.exceptions.RuntimeError, MemoryError) as e:
        # A header may ask for up to 1 GiB (a changed one too: the tag is checked only after);
        # a machine or a limit that gives less ended in a traceback (as ledger.keys says it)
        raise WalletFileError(f"cannot derive the wallet's key: the file asks for "
                              f"{params.mem >> 20} MiB of memory to stretch the passphrase, "
                              "more than this process was given; run it where more memory "
                              f"is free (nothing was changed) ({e})") from e


@dataclass(frozen=True, slots=True)
class StoredCredential:
    """One credential in the wallet: its bundle bytes and metadata (no claim values)."""

    credential_id: bytes
    type: str
    issuer: str
    valid_from: int
    valid_until: int
    added: int
    bundle: bytes
    key: int = 0
    """The holder key it is bound to (its index)."""
    shown: int = 0
    """How many presentations of it this wallet made."""

    @property
    def id(self) -> str:
        return self.credential_id.hex()

    def to_map(self) -> dict[str, object]:
        return {"credential_id": self.credential_id, "type": self.type, "issuer": self.issuer,
                "valid_from": self.valid_from, "valid_until": self.valid_until,
                "added": self.added, "bundle": self.bundle, "key": self.key,
                "shown": self.shown}

    @classmethod
    def from_fields(cls, f: Fields, version: int = 2) -> StoredCredential:
        out = cls(credential_id=f.bytes("credential_id", size=32), type=f.str("type"),
                  issuer=f.str("issuer"), valid_from=f.int("valid_from", lo=0),
                  valid_until=f.int("valid_until", lo=0), added=f.int("added", lo=0),
                  bundle=f.bytes("bundle", max_len=MAX_BUNDLE),
                  key=f.int("key", lo=0, hi=MAX_KEYS - 1) if version >= 2 else 0,
                  shown=f.int("shown", lo=0) if version >= 2 else 0)
        f.done()
        return out


@dataclass(frozen=True, slots=True)
class Contents:
    """The decrypted inside of a wallet file."""

    holder_seed: bytes
    credentials: tuple[StoredCredential, ...] = ()
    shown_to: tuple[tuple[int, str], ...] = ()
    """(holder key, verifier) of each presentation made, once each, oldest first."""

    def __post_init__(self) -> None:
        if len(self.holder_seed) != 32:
            raise ValueError("the holder seed is 32 bytes")
        ids = [c.credential_id for c in self.credentials]
        if len(set(ids)) != len(ids):
            raise ValueError("a credential is stored twice")
        if any(not 0 <= c.key < MAX_KEYS for c in self.credentials):
            raise ValueError(f"a credential is bound to a holder key past the {MAX_KEYS}")
        if len(self.shown_to) > MAX_SHOWN_TO or len(set(self.shown_to)) != len(self.shown_to) \
                or any(not 0 <= k < MAX_KEYS for k, _ in self.shown_to):
            raise ValueError("the record of keys shown is malformed")

    def __repr__(self) -> str:  # never print the seed or the bundles
        return f"Contents(<holder key>, {len(self.credentials)} credentials)"

    def to_bytes(self) -> bytes:
        return codec.encode({"v": 2, "holder_seed": self.holder_seed,
                             "credentials": [c.to_map() for c in self.credentials],
                             "shown_to": [[k, a] for k, a in self.shown_to]})

    @classmethod
    def from_bytes(cls, data: bytes) -> Contents:
        f = Fields(codec.decode(data, max_size=MAX_FILE, what="wallet contents"), "contents")
        version = f.version(2, "wallet contents")
        seed = f.bytes("holder_seed", size=32)
        items = f.list("credentials", max_len=MAX_CREDENTIALS)
        pairs = f.list("shown_to", max_len=MAX_SHOWN_TO) if version >= 2 else []
        f.done()
        shown_to = []
        for i, pair in enumerate(pairs):
            if not (isinstance(pair, list) and len(pair) == 2 and type(pair[0]) is int
                    and type(pair[1]) is str and len(pair[1]) <= 2048):
                raise DecodeError("a (key, audience) pair", f"contents.shown_to[{i}]")
            shown_to.append((pair[0], pair[1]))
        creds = tuple(StoredCredential.from_fields(Fields(c, f"contents.credentials[{i}]"),
                                                   version)
                      for i, c in enumerate(items))
        try:
            return cls(seed, creds, tuple(shown_to))
        except ValueError as e:
            raise DecodeError(str(e), "contents") from e


def seal(contents: Contents, key: bytes, params: KdfParams) -> bytes:
    """The file bytes for ``contents`` under ``key`` (from the passphrase and ``params``)."""
    box = nacl.secret.SecretBox(key).encrypt(contents.to_bytes())
    return codec.encode({"v": 1, "kind": FILE_KIND, "kdf": "argon2id", "ops": params.ops,
                         "mem": params.mem, "salt": params.salt, "box": bytes(box)})


def _read_header(blob: bytes, where: str) -> tuple[KdfParams, bytes]:
    raw = codec.decode(blob, max_size=MAX_FILE, what=where)
    if (isinstance(raw, dict) and raw.get("kind") == FILE_KIND and type(raw.get("v")) is int
            and raw["v"] > 1):
        raise WalletFileError(f"{where} was written by a newer version of credledger (wallet "
                              f"file version {raw['v']}); upgrade to open it. It is left as "
                              "it is")
    f = Fields(raw, where)
    f.int("v", lo=1, hi=1)
    f.str("kind", choices=frozenset({FILE_KIND}))
    f.str("kdf", choices=frozenset({"argon2id"}))
    ops = f.int("ops", lo=nacl.pwhash.argon2id.OPSLIMIT_MIN, hi=_MAX_OPS)
    mem = f.int("mem", lo=nacl.pwhash.argon2id.MEMLIMIT_MIN, hi=_MAX_MEM)
    salt = f.bytes("salt", size=nacl.pwhash.argon2id.SALTBYTES)
    box = f.bytes("box", max_len=MAX_FILE)
    f.done()
    return KdfParams(salt, ops, mem), box


def open_sealed(blob: bytes, passphrase: bytes | None = None, *, key: bytes | None = None,
                where: str = "wallet file") -> tuple[Contents, bytes, KdfParams]:
    """Decrypt file bytes with ``passphrase`` (or an already derived ``key``).

    Returns (contents, key, params). Raises :class:`WalletFileError` for anything else, and one
    message for a wrong passphrase and a tampered file: the tag cannot tell them apart.
    """
    try:
        params, box = _read_header(blob, where)
    except DecodeError as e:
        raise WalletFileError(f"{where} is not a wallet file or is damaged: {e}") from e
    if key is None:
        if passphrase is None:
            raise ValueError("a passphrase or a key is needed")
        key = derive_key(passphrase, params)
    try:
        inner = nacl.secret.SecretBox(key).decrypt(box)
    except nacl.exceptions.CryptoError as e:
        raise WalletFileError(f"cannot open {where}: wrong passphrase, or the file was "
                              f"changed or damaged") from e
    try:
        contents = Contents.from_bytes(inner)
    except DecodeError as e:  # authentic but malformed: a bug or an incompatible writer
        raise WalletFileError(f"{where} decrypts but its contents are malformed: {e}") from e
    return contents, key, params


@contextmanager
def lock(path: Path, *, reading: bool = False) -> Iterator[None]:
    """An exclusive advisory lock beside ``path`` (``<name>.lock``) for read-modify-write.
    ``reading``: on a read-only file system, where no lock file can be made, go on without
    one: nothing can change the wallet there either (a backup is taken exactly then)."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o600)
    except OSError as e:
        if reading and e.errno == errno.EROFS:
            yield
            return
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
