"""The approving agency's off-chain evidence record, and its digest on the ledger.

The record holds the verified inputs (claim values: personal data, so it stays with the agency),
the evaluation height and block time, the subject pseudonym and credit summary, the presented
credential ids and a 16-byte random salt (so the digest on the chain cannot be confirmed by
guessing claim values). ``approval.evidence`` = SHA-256(domain ‖ canonical record bytes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from contracts.errors import ContractError
from ledger import codec
from ledger.codec import Fields
from ledger.errors import DecodeError

__all__ = ["Evidence"]

DOMAIN = b"credledger/v1/evidence\x00"


@dataclass(frozen=True)
class Evidence:
    service: str
    rule_hash: bytes
    height: int
    time: int
    claims: Mapping[str, Mapping[str, Any]]
    credentials: tuple[bytes, ...]
    salt: bytes
    subject: bytes = b""
    credit: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.salt) != 16 or len(self.rule_hash) != 32:
            raise ContractError("evidence needs a 16-byte salt and a 32-byte rule hash")
        if self.subject and len(self.subject) != 32:
            raise ContractError("a subject pseudonym is 32 bytes")

    def to_bytes(self) -> bytes:
        """The canonical record; ContractError (naming no value) for a claim the ledger's
        encoding cannot hold: a fraction or an integer past 64 bits, which a credential
        issued without the claims' check can carry (JSON holds both). Its ValueError named
        the value, in the traceback of a 500."""
        try:
            return codec.encode({"v": 1, "service": self.service, "rule_hash": self.rule_hash,
                                 "height": self.height, "time": self.time,
                                 "claims": {k: dict(v) for k, v in self.claims.items()},
                                 "credentials": list(self.credentials), "salt": self.salt,
                                 "subject": self.subject, "credit": dict(self.credit)})
        except (TypeError, ValueError):
            raise ContractError("the evidence cannot record a presented claim's value (a "
                                "fraction, or an integer past 64 bits: the credential was "
                                "not issued as its type says); nothing was decided") from None

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(DOMAIN + self.to_bytes()).digest()

    @classmethod
    def from_bytes(cls, unverified: bytes) -> Evidence:
        try:
            f = Fields(codec.decode(unverified, max_size=1 << 20, what="evidence"), "evidence")
            f.version(1, "approval evidence")
            claims = f.raw_map("claims", max_len=8)
            if not all(isinstance(v, dict) for v in claims.values()):
                raise DecodeError("claims are maps per credential type", "evidence.claims")
            creds = f.list("credentials", max_len=8)
            if not all(isinstance(c, bytes) and len(c) == 32 for c in creds):
                raise DecodeError("credential ids are 32 bytes", "evidence.credentials")
            credit = f.raw_map("credit", max_len=8)
            out = cls(f.str("service", max_len=64), f.bytes("rule_hash", size=32),
                      f.int("height", lo=0), f.int("time", lo=0), claims, tuple(creds),
                      f.bytes("salt", size=16), f.bytes("subject", max_len=32), credit)
            f.done()
        except DecodeError as e:
            raise ContractError(f"malformed evidence record: {e}") from e
        return out
