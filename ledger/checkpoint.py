"""Checkpoints (signed tree heads): C2SP ``tlog-checkpoint`` bodies in C2SP ``signed-note`` text.

A signed note is UTF-8 text ending in a newline, a blank line, then one or more signature lines::

    <origin>
    <tree size, decimal, no leading zeros>
    <base64 of the 32-byte RFC 6962 root>
    [extension lines]

    — <key name> base64(4-byte key hash || 64-byte Ed25519 signature)

The key hash is ``SHA-256(name || "\\n" || 0x01 || public key)[:4]`` and a verifier key (vkey) is
``<name>+<hex key hash>+base64(0x01 || public key)``. As the spec requires, signatures from keys we
do not know (name *and* key hash) are ignored; a signature from a known key that fails to verify
rejects the whole note. At most :data:`MAX_SIGNATURES` signature lines are read.

Parsing is strict: decoding and re-encoding a checkpoint gives the same body bytes, base64 must be
canonical, and anything else raises :class:`~ledger.errors.CheckpointError`. Constructors of the
value types raise ``ValueError``/``TypeError`` (programming errors); parsers re-raise those as
``CheckpointError``.

References: c2sp.org/signed-note, c2sp.org/tlog-checkpoint, golang.org/x/mod/sumdb/note.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ledger.errors import BelowQuorumError, CheckpointError, SignatureError
from ledger.keys import PrivateKey, PublicKey

__all__ = [
    "MAX_SIGNATURES",
    "Checkpoint",
    "Equivocation",
    "NoteSignature",
    "SignedCheckpoint",
    "find_equivocation",
    "note_key_hash",
    "open_note",
    "parse_vkey",
    "sign_note",
    "vkey",
]

MAX_SIGNATURES = 100
"""Most signature lines a note may carry (sumdb/note's limit; the spec's floor is 16)."""

_ALG_ED25519 = 0x01
_SIG_PREFIX = "\u2014 "  # em dash, space
_MAX_TREE_SIZE = (1 << 64) - 1
_SIZE_RE = re.compile(r"0|[1-9][0-9]*")
_HASH_RE = re.compile(r"[0-9a-f]{8}")


def _short(text: str, limit: int = 80) -> str:
    """``repr`` of untrusted text, cut so that error messages stay readable."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _valid_name(name: str) -> bool:
    """A key name: non-empty, no Unicode spaces, no ``+``, no control characters, encodable."""
    return (
        bool(name)
        and "+" not in name
        and not any(c.isspace() or ord(c) < 0x20 for c in name)
        and _encodable(name)
    )


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_name(name: str) -> None:
    if not isinstance(name, str):
        raise TypeError(f"a key name is a str, found {type(name).__name__}")
    if not _valid_name(name):
        raise ValueError(
            f"key name {_short(name)} is not valid: expected non-empty, no spaces, no '+'"
        )


def _check_line(what: str, line: str) -> None:
    """A body line: non-empty, UTF-8 encodable, no character below U+0020 (so no newline)."""
    if not isinstance(line, str):
        raise TypeError(f"{what} is a str, found {type(line).__name__}")
    if not line:
        raise ValueError(f"{what} is empty, expected a non-empty line")
    bad = next((c for c in line if ord(c) < 0x20), None)
    if bad is not None:
        raise ValueError(f"{what} {_short(line)} contains control character {bad!r}")
    if not _encodable(line):
        raise ValueError(f"{what} {_short(line)} is not encodable as UTF-8")


def _b64decode_strict(what: str, text: str) -> bytes:
    """Standard base64 with padding, canonical (re-encoding gives ``text`` back)."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError) as e:
        raise ValueError(f"{what} {_short(text)} is not standard padded base64") from e
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError(f"{what} {_short(text)} is not canonical base64")
    return raw


def note_key_hash(name: str, public: bytes) -> bytes:
    """The 4-byte key hash of an Ed25519 note key: SHA-256(name || 0x0A || 0x01 || public)[:4]."""
    _check_name(name)
    if not isinstance(public, bytes) or len(public) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return hashlib.sha256(name.encode() + b"\n" + bytes([_ALG_ED25519]) + public).digest()[:4]


def vkey(name: str, public: bytes) -> str:
    """The verifier key string ``<name>+<8 hex>+base64(0x01 || public)``."""
    key_hash = note_key_hash(name, public)
    return f"{name}+{key_hash.hex()}+{base64.b64encode(bytes([_ALG_ED25519]) + public).decode()}"


def parse_vkey(text: str) -> tuple[str, PublicKey]:
    """Parse an Ed25519 verifier key strictly; the key hash must match. Raise CheckpointError."""
    if not isinstance(text, str):
        raise CheckpointError(f"a verifier key is a str, found {type(text).__name__}")
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise CheckpointError(f"verifier key {_short(text)}: expected <name>+<hash>+<key>")
    name, hash_hex, key_b64 = parts
    if not _valid_name(name):
        raise CheckpointError(f"verifier key {_short(text)}: key name {_short(name)} is not valid")
    if not _HASH_RE.fullmatch(hash_hex):
        raise CheckpointError(
            f"verifier key {_short(text)}: key hash {_short(hash_hex)}, expected 8 lowercase hex"
        )
    try:
        material = _b64decode_strict("key", key_b64)
    except ValueError as e:
        raise CheckpointError(f"verifier key {_short(text)}: {e}") from e
    if not material:
        raise CheckpointError(f"verifier key {_short(text)}: empty key material")
    if material[0] != _ALG_ED25519:
        raise CheckpointError(
            f"verifier key {_short(text)}: key type 0x{material[0]:02x}, expected 0x01 (Ed25519)"
        )
    if len(material) != 33:
        raise CheckpointError(
            f"verifier key {_short(text)}: Ed25519 key is {len(material) - 1} bytes, expected 32"
        )
    public = material[1:]
    expected = note_key_hash(name, public)
    if expected.hex() != hash_hex:
        raise CheckpointError(
            f"verifier key {_short(text)}: key hash {hash_hex}, computed {expected.hex()}"
        )
    return name, PublicKey(public)


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, 4-byte key hash, signature bytes (not yet verified)."""

    name: str
    key_hash: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not isinstance(self.key_hash, bytes) or len(self.key_hash) != 4:
            raise ValueError("a note key hash is 4 bytes")
        if not isinstance(self.signature, bytes) or not self.signature:
            raise ValueError("a note signature is non-empty bytes")

    def to_line(self) -> str:
        """``— <name> <base64(key_hash || signature)>`` without the newline."""
        blob = base64.b64encode(self.key_hash + self.signature).decode()
        return f"{_SIG_PREFIX}{self.name} {blob}"

    @classmethod
    def from_line(cls, unverified_line: str) -> NoteSignature:
        """Parse one signature line (no newline). Raise CheckpointError if malformed."""
        if not unverified_line.startswith(_SIG_PREFIX):
            raise CheckpointError(
                f"signature line {_short(unverified_line)}: expected '— <name> <base64>'"
            )
        name, sep, b64 = unverified_line[len(_SIG_PREFIX) :].partition(" ")
        if not sep or not b64:
            raise CheckpointError(
                f"signature line {_short(unverified_line)}: expected '— <name> <base64>'"
            )
        if not _valid_name(name):
            raise CheckpointError(f"signature line: key name {_short(name)} is not valid")
        try:
            blob = _b64decode_strict("signature", b64)
        except ValueError as e:
            raise CheckpointError(f"signature line for {name!r}: {e}") from e
        if len(blob) < 5:
            raise CheckpointError(
                f"signature line for {name!r}: {len(blob)} bytes, expected 4-byte key hash and more"
            )
        return cls(name, blob[:4], blob[4:])

    def _sort_key(self) -> tuple[str, bytes, bytes]:
        return (self.name, self.key_hash, self.signature)


def _parse_note(unverified_note: str | bytes) -> tuple[str, list[NoteSignature]]:
    """Split a signed note into its text and signature lines (nothing verified)."""
    if isinstance(unverified_note, bytes):
        try:
            unverified_note = unverified_note.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CheckpointError(f"note is not valid UTF-8: {e}") from e
    if not isinstance(unverified_note, str):
        raise CheckpointError(f"a note is str or bytes, found {type(unverified_note).__name__}")
    if not _encodable(unverified_note):
        raise CheckpointError("note is not valid UTF-8 (lone surrogate)")
    bad = next((c for c in unverified_note if ord(c) < 0x20 and c != "\n"), None)
    if bad is not None:
        raise CheckpointError(f"note contains control character {bad!r}, only newline is allowed")
    split = unverified_note.rfind("\n\n")
    if split < 0:
        raise CheckpointError("note has no blank line before its signatures")
    text, block = unverified_note[: split + 1], unverified_note[split + 2 :]
    if not block or not block.endswith("\n"):
        raise CheckpointError("note signature block is empty or does not end in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointError(
            f"note has {len(lines)} signature lines, at most {MAX_SIGNATURES} allowed"
        )
    return text, [NoteSignature.from_line(line) for line in lines]


def _check_note_text(text: str) -> None:
    if not isinstance(text, str):
        raise TypeError(f"note text is a str, found {type(text).__name__}")
    if not text or not text.endswith("\n"):
        raise ValueError("note text must be non-empty and end with a newline")
    bad = next((c for c in text if ord(c) < 0x20 and c != "\n"), None)
    if bad is not None:
        raise ValueError(f"note text contains control character {bad!r}")
    if not _encodable(text):
        raise ValueError("note text is not encodable as UTF-8")


def _signature_for(text: bytes, name: str, key: PrivateKey) -> NoteSignature:
    return NoteSignature(name, note_key_hash(name, key.public.raw), key.sign_raw(text))


def sign_note(text: str, name: str, key: PrivateKey) -> str:
    """Sign ``text`` (ending in a newline) as ``name`` with ``key``; return the signed note."""
    _check_note_text(text)
    return f"{text}\n{_signature_for(text.encode(), name, key).to_line()}\n"


_KnownKeys = dict[tuple[str, bytes], PublicKey]


def _known_from_mapping(verifiers: Mapping[str, PublicKey]) -> _KnownKeys:
    known: _KnownKeys = {}
    for name, public in verifiers.items():
        if not isinstance(public, PublicKey):
            raise TypeError(f"verifier for {name!r} is {type(public).__name__}, expected PublicKey")
        if _valid_name(name):
            known[(name, note_key_hash(name, public.raw))] = public
    return known


def _known_keys(known: Mapping[str, PublicKey] | Iterable[str]) -> _KnownKeys:
    if isinstance(known, Mapping):
        return _known_from_mapping(known)
    if isinstance(known, str):
        raise TypeError("pass a list of verifier keys, not a single string")
    out: _KnownKeys = {}
    for text in known:
        name, public = parse_vkey(text)
        ident = (name, note_key_hash(name, public.raw))
        if ident in out and out[ident] != public:
            raise CheckpointError(
                f"ambiguous verifier key {name}+{ident[1].hex()}: two public keys"
            )
        out[ident] = public
    return out


def _verified_names(
    text: bytes, signatures: Iterable[NoteSignature], known: _KnownKeys
) -> set[str]:
    """Names of known keys whose signatures verify; raise on a known key's bad signature."""
    names: set[str] = set()
    checked: set[tuple[str, bytes, bytes]] = set()
    for sig in signatures:
        public = known.get((sig.name, sig.key_hash))
        if public is None or sig._sort_key() in checked:  # unknown key: ignored, as the spec says
            continue
        checked.add(sig._sort_key())
        try:
            public.verify_raw(text, sig.signature)
        except SignatureError as e:
            raise CheckpointError(
                f"invalid signature for known key {sig.name}+{sig.key_hash.hex()}: {e}"
            ) from e
        names.add(sig.name)
    return names


def open_note(
    unverified_note: str | bytes, known: Mapping[str, PublicKey] | Iterable[str]
) -> tuple[str, set[str]]:
    """Parse and verify a signed note; return its text and the names of known keys that signed.

    ``known`` is a mapping of key name to :class:`PublicKey`, or an iterable of vkey strings.
    Unknown keys are ignored; a known key's bad signature raises; no verified signature raises.
    """
    keys = _known_keys(known)
    text, signatures = _parse_note(unverified_note)
    names = _verified_names(text.encode(), signatures, keys)
    if not names:
        found = sorted({f"{s.name}+{s.key_hash.hex()}" for s in signatures})
        raise CheckpointError(f"note has no signature from a known key: found {found}")
    return text, names


@dataclass(frozen=True)
class Checkpoint:
    """The note text of a C2SP tlog checkpoint: origin, tree size, root hash, extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line("origin", self.origin)
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise TypeError(f"tree size is an int, found {type(self.size).__name__}")
        if not 0 <= self.size <= _MAX_TREE_SIZE:
            raise ValueError(f"tree size {self.size} is outside 0..2^64-1")
        if not isinstance(self.root, bytes) or len(self.root) != 32:
            found = len(self.root) if isinstance(self.root, bytes) else type(self.root).__name__
            raise ValueError(f"root hash is {found} bytes, expected 32")
        if not isinstance(self.extensions, tuple):
            raise TypeError("extensions is a tuple of str")
        for i, line in enumerate(self.extensions):
            _check_line(f"extension line {i}", line)

    def body(self) -> bytes:
        """The exact note text that is signed."""
        root = base64.b64encode(self.root).decode()
        lines = [self.origin, str(self.size), root, *self.extensions]
        return "".join(line + "\n" for line in lines).encode()

    @classmethod
    def from_body(cls, unverified: bytes | str) -> Checkpoint:
        """Parse a checkpoint body strictly. Raise CheckpointError."""
        if isinstance(unverified, bytes):
            try:
                unverified = unverified.decode("utf-8")
            except UnicodeDecodeError as e:
                raise CheckpointError(f"checkpoint body is not valid UTF-8: {e}") from e
        if not isinstance(unverified, str):
            raise CheckpointError(f"checkpoint body is str or bytes, found {type(unverified)}")
        if not unverified.endswith("\n"):
            raise CheckpointError("checkpoint body does not end with a newline")
        lines = unverified[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError(f"checkpoint body has {len(lines)} lines, expected at least 3")
        origin, size_text, root_text, *extensions = lines
        if not _SIZE_RE.fullmatch(size_text):
            raise CheckpointError(
                f"tree size {_short(size_text)}: expected decimal without leading zeros"
            )
        try:
            root = _b64decode_strict("root hash", root_text)
        except ValueError as e:
            raise CheckpointError(str(e)) from e
        if len(root) != 32:
            raise CheckpointError(f"root hash is {len(root)} bytes, expected 32")
        try:
            return cls(origin, int(size_text), root, tuple(extensions))
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"checkpoint body: {e}") from e

    def sign(self, name: str, key: PrivateKey) -> SignedCheckpoint:
        """This checkpoint signed by ``key`` under key name ``name``."""
        return SignedCheckpoint(self, ()).cosign(name, key)


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint and its (unverified) note signatures, kept sorted and free of duplicates.

    ``signatures`` may be empty only before the first :meth:`cosign`; :meth:`to_text` needs one.
    """

    checkpoint: Checkpoint
    signatures: tuple[NoteSignature, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.checkpoint, Checkpoint):
            raise TypeError("checkpoint is a Checkpoint")
        sigs = tuple(self.signatures)
        if not all(isinstance(s, NoteSignature) for s in sigs):
            raise TypeError("signatures are NoteSignature values")
        canonical = tuple(sorted(set(sigs), key=NoteSignature._sort_key))
        if len(canonical) > MAX_SIGNATURES:
            raise ValueError(f"{len(canonical)} signatures, at most {MAX_SIGNATURES} allowed")
        object.__setattr__(self, "signatures", canonical)

    def to_text(self) -> str:
        """The full signed note."""
        if not self.signatures:
            raise CheckpointError("a signed note needs at least one signature, found none")
        lines = "".join(s.to_line() + "\n" for s in self.signatures)
        return f"{self.checkpoint.body().decode()}\n{lines}"

    @classmethod
    def from_text(cls, unverified: str | bytes) -> SignedCheckpoint:
        """Parse a signed checkpoint note strictly; signatures are not checked here."""
        text, signatures = _parse_note(unverified)
        return cls(Checkpoint.from_body(text), tuple(signatures))

    def cosign(self, name: str, key: PrivateKey) -> SignedCheckpoint:
        """A copy with ``key``'s signature under ``name`` added (replacing any by the same key)."""
        new = _signature_for(self.checkpoint.body(), name, key)
        kept = [s for s in self.signatures if (s.name, s.key_hash) != (new.name, new.key_hash)]
        result = SignedCheckpoint(self.checkpoint, (*kept, new))
        return self if result == self else result

    def signers(self, verifiers: Mapping[str, PublicKey]) -> set[str]:
        """Names (keys of ``verifiers``) whose signatures verify; a known key's bad one raises."""
        return _verified_names(
            self.checkpoint.body(), self.signatures, _known_from_mapping(verifiers)
        )

    def verify_quorum(self, verifiers: Mapping[str, PublicKey], quorum: int) -> set[str]:
        """Return the valid signer names if at least ``quorum`` distinct known names signed."""
        if isinstance(quorum, bool) or not isinstance(quorum, int) or quorum < 1:
            raise CheckpointError(f"quorum must be an int of at least 1, found {quorum!r}")
        names = self.signers(verifiers)
        if len(names) < quorum:
            cp = self.checkpoint
            raise BelowQuorumError(
                f"checkpoint {cp.origin!r} at size {cp.size} has {len(names)} of {quorum} "
                f"required signatures: verified {sorted(names)}, known {sorted(verifiers)}"
            )
        return names


def _note_body(note: str) -> str:
    """A note's text before its signatures (the whole note if it has none)."""
    split = note.rfind("\n\n")
    return note if split < 0 else note[: split + 1]


@dataclass(frozen=True)
class Equivocation:
    """Evidence of two validly signed checkpoints for one origin and size that differ: in their
    roots (two logs), or with one root in their extension lines (one log, told otherwise: our
    checkpoints name the block they end at, so two lines are two chains)."""

    origin: str
    size: int
    root_a: bytes
    root_b: bytes
    note_a: str
    note_b: str
    signers_a: frozenset[str] = field(default_factory=frozenset)
    signers_b: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        _check_line("origin", self.origin)
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise ValueError(f"tree size {self.size!r} is not a non-negative int")
        for root in (self.root_a, self.root_b):
            if not isinstance(root, bytes) or len(root) != 32:
                raise ValueError("roots are 32 bytes")
        if self.root_a == self.root_b and _note_body(self.note_a) == _note_body(self.note_b):
            raise ValueError("an equivocation needs two different checkpoints")
        object.__setattr__(self, "signers_a", frozenset(self.signers_a))
        object.__setattr__(self, "signers_b", frozenset(self.signers_b))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (roots in base64, signer names sorted)."""
        return {
            "origin": self.origin,
            "size": self.size,
            "root_a": base64.b64encode(self.root_a).decode(),
            "root_b": base64.b64encode(self.root_b).decode(),
            "note_a": self.note_a,
            "note_b": self.note_b,
            "signers_a": sorted(self.signers_a),
            "signers_b": sorted(self.signers_b),
        }


def find_equivocation(
    a: SignedCheckpoint, b: SignedCheckpoint, verifiers: Mapping[str, PublicKey]
) -> Equivocation | None:
    """Evidence if ``a`` and ``b`` share origin and size but not root (or, with one root, not
    their extension lines), each validly signed.

    Returns None when origins or sizes differ, the checkpoints agree, or either side has no valid
    signature from a key in ``verifiers``. A known key's invalid signature raises CheckpointError.
    """
    ca, cb = a.checkpoint, b.checkpoint
    if ca.origin != cb.origin or ca.size != cb.size or ca == cb:
        return None
    signers_a = a.signers(verifiers)
    signers_b = b.signers(verifiers)
    if not signers_a or not signers_b:
        return None
    return Equivocation(
        origin=ca.origin,
        size=ca.size,
        root_a=ca.root,
        root_b=cb.root,
        note_a=a.to_text(),
        note_b=b.to_text(),
        signers_a=frozenset(signers_a),
        signers_b=frozenset(signers_b),
    )
