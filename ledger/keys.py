"""Ed25519 keys (PyNaCl), key ids, domain-separated signing, and encrypted key files.

A key id is SHA-256 of the raw 32-byte public key. Every signature covers
``b"credledger/v1/" + domain + b"\\x00" + message`` so a signature made for one kind of object can
never be replayed as another. Private keys rest on disk only inside an Argon2id + SecretBox file.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import stat
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.bindings
import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.signing
import nacl.utils

from ledger import codec
from ledger.errors import DecodeError, KeyFileError, SignatureError
from ledger.files import read_capped, write_atomic

__all__ = [
    "DOMAINS",
    "PASSPHRASE_ENV",
    "PrivateKey",
    "PublicKey",
    "key_id",
    "load_private_key",
    "open_secret",
    "read_passphrase",
    "save_private_key",
    "seal_again",
    "seal_secret",
    "signing_message",
]

DOMAINS = frozenset({"tx", "checkpoint", "audit", "status-list", "presentation", "batch",
                     "clock"})
PASSPHRASE_ENV = "LEDGER_KEY_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret


def key_id(public: bytes) -> bytes:
    """SHA-256 of the raw Ed25519 public key."""
    return hashlib.sha256(public).digest()


def signing_message(domain: str, message: bytes) -> bytes:
    """The exact bytes signed for ``message`` in ``domain``."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown signing domain {domain!r}")
    return b"credledger/v1/" + domain.encode() + b"\x00" + message


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An Ed25519 verify key; ``raw`` is the 32-byte encoding."""

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != 32:
            raise ValueError("an Ed25519 public key is 32 bytes")

    @property
    def kid(self) -> bytes:
        return key_id(self.raw)

    def verify(self, domain: str, message: bytes, signature: bytes) -> None:
        """Return None if ``signature`` is this key's over ``message`` in ``domain``; else raise."""
        self.verify_raw(signing_message(domain, message), signature)

    def verify_raw(self, data: bytes, signature: bytes) -> None:
        """Verify a signature over exactly ``data`` (no domain prefix: for foreign formats)."""
        if len(signature) != 64:
            raise SignatureError(f"signature is {len(signature)} bytes, expected 64")
        try:
            nacl.bindings.crypto_sign_open(signature + data, self.raw)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError) as e:
            raise SignatureError(
                f"signature does not verify under key {self.kid.hex()[:16]}"
            ) from e


class PrivateKey:
    """An Ed25519 signing key. Never printed, never logged."""

    __slots__ = ("_sk", "public")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        self._sk = nacl.signing.SigningKey(seed)
        self.public = PublicKey(bytes(self._sk.verify_key))

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(nacl.utils.random(32))

    @property
    def seed(self) -> bytes:
        return bytes(self._sk)

    @property
    def kid(self) -> bytes:
        return self.public.kid

    def sign(self, domain: str, message: bytes) -> bytes:
        """Detached signature over ``message`` in ``domain``."""
        return self.sign_raw(signing_message(domain, message))

    def sign_raw(self, data: bytes) -> bytes:
        """Detached signature over exactly ``data`` (for foreign formats: JWS, C2SP notes)."""
        return self._sk.sign(data).signature

    def __repr__(self) -> str:
        return f"PrivateKey(kid={self.kid.hex()[:16]}…)"


def read_passphrase(prompt: str = "Key passphrase: ", *, confirm: bool = False,
                    env: str = PASSPHRASE_ENV) -> bytes:
    """Passphrase from the environment variable ``env``, else from the file named by
    ``env + "_FILE"`` (a service manager's credential: no secret in the process's
    environment), else from the terminal; a :class:`KeyFileError` says why there is none
    (empty, the two differ, the input ended, a file others may read)."""
    given = os.environ.get(env)
    path = os.environ.get(f"{env}_FILE")
    if given and path:
        raise KeyFileError(f"both {env} and {env}_FILE are set: set one")
    if given:
        return os.fsencode(given)  # the bytes as given, UTF-8 or not
    if path:
        return _passphrase_from_file(path, f"{env}_FILE")
    try:
        # Without a terminal getpass reads standard input (a passphrase piped in) and says
        # that it may be echoed; its GetPassWarning, with a path into Python's library, adds
        # nothing to that.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", getpass.GetPassWarning)
            first = getpass.getpass(prompt)
            if not first:
                raise KeyFileError("an empty passphrase is not allowed")
            if confirm and getpass.getpass("Repeat passphrase: ") != first:
                raise KeyFileError("the two passphrases differ")
    except EOFError:
        print(file=sys.stderr)  # end the prompt's line
        raise KeyFileError(f"no passphrase: the input ended before one was typed (set {env} "
                           "to give it without a terminal)") from None
    return os.fsencode(first)


def _passphrase_from_file(path: str, what: str) -> bytes:
    """The passphrase in the file at ``path``: its bytes without one trailing newline. Refused
    (:class:`KeyFileError`, naming ``what``) when it is not a regular file, when its group or
    others may read or write it, or when it is empty."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        raise KeyFileError(f"{what}: cannot read {path}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"{what}: {path} is not a regular file")
        if st.st_mode & 0o077:
            raise KeyFileError(f"{what}: {path} may be read by others (mode "
                               f"{stat.S_IMODE(st.st_mode):o}); chmod 600 it")
        text = os.read(fd, 4097)
    finally:
        os.close(fd)
    if len(text) > 4096:
        raise KeyFileError(f"{what}: {path} is over 4096 bytes: not a passphrase")
    text = text.removesuffix(b"\r\n") if text.endswith(b"\r\n") else text.removesuffix(b"\n")
    if not text:
        raise KeyFileError(f"{what}: {path} is empty")
    return text


_OPS = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
_MEM = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
# A file names its own Argon2id cost; more than libsodium's SENSITIVE level is refused before any
# memory is taken (a file asking for 16 GiB would otherwise be tried).
_MAX_OPS = nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE
_MAX_MEM = nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE


def _box_key(passphrase: bytes, salt: bytes, ops: int, mem: int, where: object) -> bytes:
    try:
        return bytes(nacl.pwhash.argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase, salt,
                                              opslimit=ops, memlimit=mem))
    except (nacl.exceptions.RuntimeError, MemoryError) as e:
        raise KeyFileError(f"cannot derive the key of {where}: {e}") from e


def _seal(fields: dict[str, Any], data: bytes, passphrase: bytes) -> bytes:
    salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
    sealed = nacl.secret.SecretBox(_box_key(passphrase, salt, _OPS, _MEM, "a new file")
                                   ).encrypt(data)
    return codec.encode({"v": 1, "kdf": "argon2id", "ops": _OPS, "mem": _MEM, "salt": salt,
                         "box": bytes(sealed), **fields})


def _unseal(blob: bytes, passphrase: bytes, where: object,
            extra: Callable[[codec.Fields], Any]) -> tuple[bytes, Any]:
    """The data sealed by :func:`_seal`, and what ``extra`` read of the file's own fields."""
    try:
        f = codec.Fields(codec.decode(blob, max_size=64 * 1024), str(where))
        f.version(1, "key file")
        f.str("kdf", choices=frozenset({"argon2id"}))
        ops = f.int("ops", lo=1, hi=_MAX_OPS)
        mem = f.int("mem", lo=8192, hi=_MAX_MEM)
        salt = f.bytes("salt", size=nacl.pwhash.argon2id.SALTBYTES)
        box = f.bytes("box")
        got = extra(f)
        f.done()
    except DecodeError as e:
        raise KeyFileError(f"cannot read key file {where}: {e}") from e
    try:
        return nacl.secret.SecretBox(_box_key(passphrase, salt, ops, mem, where)
                                     ).decrypt(box), got
    except nacl.exceptions.CryptoError as e:
        raise KeyFileError(f"wrong passphrase or damaged key file {where}") from e


def seal_secret(data: bytes, passphrase: bytes, what: str) -> bytes:
    """``data`` (a TLS private key, say) encrypted as key files are (Argon2id, SecretBox),
    labelled ``what``; :func:`open_secret` reads it back."""
    return _seal({"what": what}, data, passphrase)


def open_secret(blob: bytes, passphrase: bytes, what: str, where: object) -> bytes:
    """The data of a :func:`seal_secret` file labelled ``what``; :class:`KeyFileError` if it is
    not one, the passphrase is wrong or the file is damaged."""
    data, _ = _unseal(blob, passphrase, where,
                      lambda f: f.str("what", choices=frozenset({what})))
    return data


def save_private_key(path: Path, key: PrivateKey, passphrase: bytes, *,
                     overwrite: bool = True) -> None:
    """Write ``key`` encrypted (Argon2id-derived SecretBox key) to ``path``, mode 0600; with
    ``overwrite=False`` never over an existing file (:class:`FileExistsError`)."""
    write_atomic(path, _seal({"kid": key.kid}, key.seed, passphrase), 0o600, overwrite=overwrite)


def load_private_key(path: Path, passphrase: bytes) -> PrivateKey:
    """Decrypt a key written by :func:`save_private_key`; raise :class:`KeyFileError` on failure."""
    try:
        blob = read_capped(path)
    except OSError as e:
        raise KeyFileError(f"cannot read key file {path}: {e.strerror or e}") from e
    seed, kid = _unseal(blob, passphrase, path, lambda f: f.bytes("kid", size=32))
    if len(seed) != 32:
        raise KeyFileError(f"key file {path} holds {len(seed)} bytes, not an Ed25519 seed")
    key = PrivateKey(seed)
    if key.kid != kid:
        raise KeyFileError(f"key file {path} decrypts to a different key than it names")
    return key


def seal_again(path: Path, old: bytes) -> tuple[str, Callable[[bytes], bytes]]:
    """The key file ``path`` (a node or issuer key, or a secret :func:`seal_secret` sealed: a
    credit secret, an evidence key, a TLS key) opened with the passphrase ``old``: its kind's
    words ("an Ed25519 key", "a sealed credit-secret") and a function that seals the same key,
    of the same kind, under a new passphrase (the caller writes its bytes). A
    :class:`KeyFileError` when it cannot be read, is no key file, or ``old`` does not open it."""
    try:
        blob = read_capped(path)
    except OSError as e:
        raise KeyFileError(f"cannot read key file {path}: {e.strerror or e}") from e

    def kind(f: codec.Fields) -> dict[str, Any]:
        if f.has("kid"):
            return {"kid": f.bytes("kid", size=32)}
        if f.has("what"):
            return {"what": f.str("what")}
        raise DecodeError("it names neither a key id nor a label: not a key file")

    data, fields = _unseal(blob, old, path, kind)
    if "kid" in fields and (len(data) != 32 or PrivateKey(data).kid != fields["kid"]):
        raise KeyFileError(f"key file {path} decrypts to a different key than it names")
    return ("an Ed25519 key" if "kid" in fields else f"a sealed {fields['what']}",
            lambda new: _seal(fields, data, new))
