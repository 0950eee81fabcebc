"""Test helper: check a store's whole chain (hash links, log continuity, roots, leaves)."""

from __future__ import annotations

from ledger import merkle
from ledger.block import GENESIS_PREV
from ledger.store import Store
from ledger.tx import Tx


def check_chain(store: Store) -> int:
    """Walk every block; assert links, sizes, stored leaves and roots. Returns the tx count."""
    assert store.head is not None
    prev = GENESIS_PREV
    size = 0
    for height in range(store.head.height + 1):
        header = store.block(height)
        assert header.prev_hash == prev, f"block {height}: broken hash link"
        assert header.first_index == size, f"block {height}: log gap"
        for i, raw in enumerate(store.block_entries(header)):
            index = header.first_index + i
            assert store.leaf_hash(index) == merkle.leaf_hash(raw), f"leaf {index} differs"
            assert store.tx_location(Tx.from_bytes(raw).txid) == (index, height)
        size = header.log_size
        assert store.root_at(size) == header.log_root, f"block {height}: root differs"
        prev = header.hash
    assert prev == store.head.hash and size == store.head.log_size
    return size
