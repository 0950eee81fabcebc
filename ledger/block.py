"""Block headers: the hash chain over the Merkle log.

A header commits to its predecessor (``prev_hash``) and to the whole log after the block
(``log_size``, ``log_root``), so one header commits to all history. Headers carry no node
signature: every node builds byte-identical blocks; finality comes from co-signed checkpoints.
The block hash is SHA-256 over ``b"credledger/v1/block\\x00"`` and the canonical header bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ledger import codec
from ledger.codec import Fields
from ledger.errors import DecodeError

__all__ = ["GENESIS_PREV", "BlockHeader"]

GENESIS_PREV = bytes(32)
_DOMAIN = b"credledger/v1/block\x00"


@dataclass(frozen=True, slots=True)
class BlockHeader:
    net: str
    height: int
    prev_hash: bytes
    time: int
    first_index: int
    tx_count: int
    log_root: bytes

    def __post_init__(self) -> None:
        if self.height < 0 or self.first_index < 0 or self.tx_count < 1:
            raise ValueError("height/first_index must be >= 0 and a block holds >= 1 tx")
        if len(self.prev_hash) != 32 or len(self.log_root) != 32:
            raise ValueError("prev_hash and log_root are 32 bytes")
        # each both ways: no later block has the zero prev_hash or starts the log (ADR 70)
        if ((self.height == 0) != (self.prev_hash == GENESIS_PREV)
                or (self.height == 0) != (self.first_index == 0)):
            raise ValueError("only block 0 starts the log and has the zero prev_hash")

    @property
    def log_size(self) -> int:
        return self.first_index + self.tx_count

    def to_dict(self) -> dict[str, Any]:
        return {"v": 1, "net": self.net, "height": self.height, "prev_hash": self.prev_hash,
                "time": self.time, "first_index": self.first_index, "tx_count": self.tx_count,
                "log_size": self.log_size, "log_root": self.log_root}

    def to_bytes(self) -> bytes:
        return codec.encode(self.to_dict())

    @property
    def hash(self) -> bytes:
        return hashlib.sha256(_DOMAIN + self.to_bytes()).digest()

    def to_json(self) -> dict[str, Any]:
        d = self.to_dict()
        d.update(prev_hash=self.prev_hash.hex(), log_root=self.log_root.hex(),
                 hash=self.hash.hex())
        return d

    @classmethod
    def from_bytes(cls, unverified: bytes) -> BlockHeader:
        f = Fields(codec.decode(unverified, max_size=4096, what="block"), "block")
        f.int("v", lo=1, hi=1)
        net, height = f.str("net", max_len=64), f.int("height", lo=0)
        prev_hash, time = f.bytes("prev_hash", size=32), f.int("time", lo=0)
        first_index, tx_count = f.int("first_index", lo=0), f.int("tx_count", lo=1)
        log_root, size = f.bytes("log_root", size=32), f.int("log_size", lo=1)
        f.done()
        try:
            header = cls(net, height, prev_hash, time, first_index, tx_count, log_root)
        except ValueError as e:
            raise DecodeError(str(e), "block") from e
        if header.log_size != size:
            raise DecodeError(f"log_size {size} != first_index + tx_count "
                              f"{header.log_size}", "block.log_size")
        return header
