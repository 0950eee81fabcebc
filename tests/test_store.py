"""Tests for ledger.store: durability across reopen, Merkle proofs from stored nodes, tamper checks.

A chain of a few hundred transactions in blocks of many sizes is built once per module from fixed
keys and times; proofs served by the store are compared with ledger.merkle's reference functions
(which the published transparency-dev vectors pin down in test_merkle.py) and verified.
"""

from __future__ import annotations

import hashlib
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import plyvel
import pytest

from ledger import merkle
from ledger.block import GENESIS_PREV, BlockHeader
from ledger.chain import (
    BlockResult,
    CompactRange,
    Head,
    block_key,
    build_block,
    build_genesis,
    checkpoint_key,
    entry_key,
    follow_block,
    head_key,
    node_key,
    registry_key,
)
from ledger.errors import DecodeError, ProofError, StoreError
from ledger.network import demo_agency, genesis_tx, governance_tx, issue_tx, status_tx
from ledger.state import Registry
from ledger.store import Store, store_unused, stored_consistency_proof
from ledger.tx import Tx

NET = "demo"
T0 = 1_700_000_000
DAY = 86_400
REG = demo_agency("reg", "Civil Registry")
EDU = demo_agency("edu", "Education Office")
TAX = demo_agency("tax", "Tax Office")
DIPLOMA = {"id": "diploma", "title": "Diploma", "claims": {"degree": "string"}, "derived": {}}
BLOCK_SIZES = [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 32, 33, 64, 65, 10]


def cid(n: int) -> bytes:
    return hashlib.sha256(f"credential {n}".encode()).digest()


def commit(store: Store, txs: list[Tx], t: int) -> BlockResult:
    assert store.head is not None
    assert store.registry is not None
    r = build_block(store.head, store.registry, store, store.frontier, txs, t)
    assert [e.code for _, e in r.rejected] == []
    assert len(r.accepted) == len(txs)
    store.write_block(r)
    return r


def chain_blocks() -> Iterator[tuple[list[Tx], int]]:
    """The blocks after genesis, deterministic: (transactions, block time)."""
    yield [governance_tx(NET, 1, "register_type", {"type": DIPLOMA}, [REG, EDU])], T0 + 10
    yield [governance_tx(NET, 2, "grant", {"agency": "edu", "type": "diploma", "from": T0,
                                           "until": T0 + 1000 * DAY}, [REG, TAX])], T0 + 20
    n = 0
    for b, size in enumerate(BLOCK_SIZES):
        t = T0 + (b + 1) * DAY
        txs = []
        for _ in range(size):
            if n % 10 == 9:  # every tenth transaction revokes an earlier credential
                txs.append(status_tx(NET, EDU, cid(n - 5), "revoked", "test", t))
            else:
                txs.append(issue_tx(NET, EDU, cid(n), "diploma", n, t, t + 365 * DAY, t))
            n += 1
        yield txs, t


def build_chain(path: Path) -> Store:
    store = Store(path)
    store.write_block(build_genesis(genesis_tx(NET, [REG, EDU, TAX], 2, T0)))
    for txs, t in chain_blocks():
        commit(store, txs, t)
    return store


@pytest.fixture(scope="module")
def chain_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("chain") / "store"
    build_chain(path).close()
    return path


@pytest.fixture(scope="module")
def store(chain_path: Path) -> Iterator[Store]:
    s = Store(chain_path)
    yield s
    s.close()


@pytest.fixture(scope="module")
def leaves(store: Store) -> list[bytes]:
    assert store.head is not None
    return [merkle.leaf_hash(store.entry(i)) for i in range(store.head.log_size)]


def sample_pairs(n: int, count: int, seed: int) -> list[tuple[int, int]]:
    """(a, b) with 0 <= a < b <= n: all pairs for small trees, edges, and a seeded sample."""
    rng = random.Random(seed)
    pairs = {(a, b) for b in range(1, 34) for a in range(b)}
    for b in (n, n - 1, 64, 65, 127, 128, 129, 255, 256, 257):
        if 1 <= b <= n:
            pairs.update({(0, b), (b - 1, b), (b // 2, b)})
    while len(pairs) < count:
        b = rng.randint(1, n)
        pairs.add((rng.randrange(b), b))
    return sorted(pairs)


# --- the chain as built --------------------------------------------------------------------------


def test_chain_shape(store: Store, leaves: list[bytes]) -> None:
    head = store.head
    assert head is not None
    assert head.height == 2 + len(BLOCK_SIZES)
    assert head.log_size == 3 + sum(BLOCK_SIZES) == len(leaves)
    assert head.log_size > 300
    assert head.log_root == merkle.root_hash(leaves)
    prev = None
    for h in range(head.height + 1):
        b = store.block(h)
        assert b.height == h
        assert b.net == NET
        assert b.prev_hash == (GENESIS_PREV if prev is None else prev.hash)
        assert b.first_index == (0 if prev is None else prev.log_size)
        assert b.log_root == merkle.root_hash(leaves[: b.log_size])
        assert b.log_root == store.root_at(b.log_size)
        assert BlockHeader.from_bytes(b.to_bytes()) == b
        assert [merkle.leaf_hash(e) for e in store.block_entries(b)] == \
            leaves[b.first_index: b.log_size]
        prev = b
    assert prev is not None
    assert prev.hash == head.hash


_COUNTS = "height/first_index must be >= 0"
_SIZES = "are 32 bytes"
_FIRST = "only block 0 starts the log"


@pytest.mark.parametrize(("height", "prev", "first", "count", "why"), [
    (-1, b"\x01" * 32, 1, 1, _COUNTS),  # a negative height
    (1, b"\x01" * 32, -1, 1, _COUNTS),  # a negative first index
    (1, b"\x01" * 32, 1, 0, _COUNTS),  # a block of no transaction
    (1, b"\x01" * 31, 1, 1, _SIZES),  # a previous hash that is not 32 bytes
    (1, GENESIS_PREV, 0, 1, _FIRST),  # a later block starting the log with the zero prev hash
    (0, GENESIS_PREV, 5, 1, _FIRST),  # block 0 not starting the log
    (0, b"\x01" * 32, 0, 1, _FIRST),  # block 0 after something
    (1, GENESIS_PREV, 5, 1, _FIRST),  # a later block with the zero prev hash (ADR 70)
    (1, b"\x01" * 32, 0, 1, _FIRST),  # a later block starting the log (ADR 70)
])
def test_a_header_that_cannot_be_is_refused(height: int, prev: bytes, first: int,
                                             count: int, why: str) -> None:
    """The header's own rules, built or decoded: a block 0 that does not start the log, or
    follows something, is refused as a decoded header too."""
    with pytest.raises(ValueError, match=why):
        BlockHeader(NET, height, prev, T0, first, count, bytes(32))
    if why == _FIRST:
        from ledger import codec

        raw = codec.encode({"v": 1, "net": NET, "height": height, "prev_hash": prev, "time": T0,
                            "first_index": first, "tx_count": count, "log_size": first + count,
                            "log_root": bytes(32)})
        with pytest.raises(DecodeError, match=why):
            BlockHeader.from_bytes(raw)


@pytest.mark.parametrize(("change", "where"), [
    ({"log_size": 4}, "block.log_size"),  # not first_index + tx_count (3)
    ({"v": 2}, "block.v"),
    ({"extra": 1}, "extra"),
    ({"tx_count": 0, "log_size": 1}, "block.tx_count"),
])
def test_a_header_decodes_only_in_its_schema(change: dict[str, int], where: str) -> None:
    """A header whose log size is not its first index plus its count, of another version,
    with a member the schema lacks, or of no transaction does not decode, and says where
    (its hash, over the re-encoded header, would not be over the bytes stored)."""
    from ledger import codec

    good = BlockHeader(NET, 1, b"\x01" * 32, T0, 1, 2, bytes(32))
    assert BlockHeader.from_bytes(good.to_bytes()) == good
    with pytest.raises(DecodeError, match=where):
        BlockHeader.from_bytes(codec.encode({**good.to_dict(), **change}))


def test_tx_index(store: Store) -> None:
    assert store.head is not None
    for i in (0, 1, 2, 3, 100, store.head.log_size - 1):
        tx = Tx.from_bytes(store.entry(i))
        loc = store.tx_location(tx.txid)
        assert loc is not None
        assert loc[0] == i
        b = store.block(loc[1])
        assert b.first_index <= i < b.log_size
        assert store.tx(tx.txid) == tx
    assert store.tx_location(bytes(32)) is None
    assert store.tx(bytes(32)) is None


def test_credential_state(store: Store) -> None:
    # chain_blocks(): position n % 10 == 9 revokes credential n - 5
    for n in (4, 14, 104):
        c = store.credential(cid(n))
        assert c is not None
        assert c.status == "revoked"
    for n in (0, 1, 5, 100):
        c = store.credential(cid(n))
        assert c is not None
        assert c.status == "valid"
        assert c.status_index == n
        assert c.issuer == "edu"
    assert store.credential(cid(9)) is None  # position 9 was a status transaction


def test_leaf_hashes_match_stored_nodes(store: Store, leaves: list[bytes]) -> None:
    for i, h in enumerate(leaves):
        assert store.leaf_hash(i) == h


# --- proofs against the reference implementation ----------------------------------------------


def test_root_at_every_size(store: Store, leaves: list[bytes]) -> None:
    for size in range(1, len(leaves) + 1):
        assert store.root_at(size) == merkle.root_hash(leaves[:size]), size


def test_inclusion_proofs(store: Store, leaves: list[bytes]) -> None:
    n = len(leaves)
    pairs = sample_pairs(n, 1200, seed=1)
    for index, size in pairs:
        proof = store.inclusion_proof(index, size)
        assert proof == merkle.inclusion_proof(leaves[:size], index), (index, size)
        merkle.verify_inclusion(leaves[index], index, size, proof, store.root_at(size))
    # every leaf in the full tree
    root = store.root_at(n)
    for index in range(n):
        proof = store.inclusion_proof(index, n)
        merkle.verify_inclusion(leaves[index], index, n, proof, root)


def test_consistency_proofs(store: Store, leaves: list[bytes]) -> None:
    n = len(leaves)
    pairs = sample_pairs(n, 1200, seed=2)
    for a, b in pairs:
        old = a + 1  # old sizes 1..b
        proof = store.consistency_proof(old, b)
        assert proof == merkle.consistency_proof(leaves[:b], old), (old, b)
        merkle.verify_consistency(old, b, store.root_at(old), store.root_at(b), proof)
    for size in range(1, n + 1):
        assert store.consistency_proof(size, size) == []


def test_consistency_between_every_pair_of_blocks(store: Store) -> None:
    assert store.head is not None
    headers = [store.block(h) for h in range(store.head.height + 1)]
    for old in headers:
        for new in headers[old.height:]:
            proof = store.consistency_proof(old.log_size, new.log_size)
            merkle.verify_consistency(old.log_size, new.log_size, old.log_root, new.log_root,
                                      proof)


def test_proofs_fail_against_wrong_root(store: Store, leaves: list[bytes]) -> None:
    n = len(leaves)
    proof = store.inclusion_proof(5, n)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(leaves[6], 5, n, proof, store.root_at(n))
    with pytest.raises(ProofError):
        merkle.verify_inclusion(leaves[5], 5, n, proof, store.root_at(n - 1))
    cproof = store.consistency_proof(10, n)
    with pytest.raises(ProofError):
        merkle.verify_consistency(10, n, store.root_at(11), store.root_at(n), cproof)


# --- range errors --------------------------------------------------------------------------------


def test_out_of_range_errors(store: Store) -> None:
    assert store.head is not None
    n = store.head.log_size
    bad_calls = [
        lambda: store.inclusion_proof(n, n),
        lambda: store.inclusion_proof(-1, n),
        lambda: store.inclusion_proof(0, 0),
        lambda: store.inclusion_proof(0, n + 1),
        lambda: store.inclusion_proof(5, 5),
        lambda: store.consistency_proof(0, n),
        lambda: store.consistency_proof(-1, n),
        lambda: store.consistency_proof(n, n + 1),
        lambda: store.consistency_proof(6, 5),
        lambda: store.consistency_proof(1, 0),
        lambda: store.root_at(0),
        lambda: store.root_at(-1),
        lambda: store.root_at(n + 1),
        lambda: store.leaf_hash(n),
        lambda: store.leaf_hash(-1),
        lambda: store.entry(n),
        lambda: store.entry(-1),
        lambda: store.block(store.head.height + 1),  # type: ignore[union-attr]
        lambda: store.block(-1),
    ]
    for call in bad_calls:
        with pytest.raises(StoreError):
            call()


def test_empty_store(tmp_path: Path) -> None:
    with Store(tmp_path / "empty") as s:
        assert s.head is None
        assert s.registry is None
        assert s.frontier.size == 0
        for call in (lambda: s.root_at(1), lambda: s.inclusion_proof(0, 1),
                     lambda: s.consistency_proof(1, 1), lambda: s.entry(0),
                     lambda: s.block(0), lambda: s.registry_at(0), lambda: s.leaf_hash(0)):
            with pytest.raises(StoreError):
                call()
        assert s.checkpoint() is None


def test_open_missing_without_create(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="there is no ledger store there"):
        Store(tmp_path / "absent", create=False)


def test_a_store_open_elsewhere_is_refused_in_plain_words(tmp_path: Path) -> None:
    Store(tmp_path / "s").close()
    with Store(tmp_path / "s"), pytest.raises(StoreError, match="another process has it open"):
        Store(tmp_path / "s")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from ledger.store import Store; "
         f"s = Store({str(tmp_path / 's')!r}); print('open', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        with pytest.raises(StoreError, match="another process has it open"):
            Store(tmp_path / "s")
        with pytest.raises(StoreError, match="open in another process"), \
                store_unused(tmp_path / "s"):
            pass
    finally:
        holder.communicate("", timeout=30)
    with store_unused(tmp_path / "s"):  # free again
        pass
    with store_unused(tmp_path / "absent"):  # nothing to lock
        pass


def test_a_store_held_unused_by_another_process_is_refused_to_a_second(tmp_path: Path) -> None:
    """Replacing a store folder holds it exclusively: a second process replacing or copying
    it (a shared hold) is refused while the first holds it."""
    Store(tmp_path / "s").close()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from ledger.store import store_unused\n"
         f"with store_unused({str(tmp_path / 's')!r}):\n"
         "    print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        for shared in (False, True):
            with pytest.raises(StoreError, match="open in another process"), \
                    store_unused(tmp_path / "s", shared=shared):
                pass
    finally:
        holder.communicate("")
    with store_unused(tmp_path / "s"):
        pass


# --- reopen ------------------------------------------------------------------------------------


def test_reopen_same_head_and_registry(tmp_path: Path) -> None:
    path = tmp_path / "s"
    s = build_chain(path)
    head, registry, frontier = s.head, s.registry, s.frontier
    assert registry is not None
    s.close()
    with Store(path) as again:
        assert again.head == head
        assert again.registry is not None
        assert again.registry.to_bytes() == registry.to_bytes()
        assert again.registry.data == registry.data
        assert again.frontier.size == frontier.size
        assert again.frontier.hashes == frontier.hashes
        assert again.frontier.root() == head.log_root  # type: ignore[union-attr]
        # and it keeps growing correctly after a restart
        t = T0 + 500 * DAY
        r = commit(again, [issue_tx(NET, EDU, cid(10_000), "diploma", 10_000, t, t + DAY, t)],
                   t)
        assert r.header is not None
        assert r.header.prev_hash == head.hash  # type: ignore[union-attr]
        n = again.head.log_size  # type: ignore[union-attr]
        leaves = [merkle.leaf_hash(again.entry(i)) for i in range(n)]
        assert again.root_at(n) == merkle.root_hash(leaves) == r.header.log_root
    with Store(path) as third:
        assert third.head == r.head


def test_identical_inputs_give_identical_chains(tmp_path: Path, store: Store) -> None:
    with build_chain(tmp_path / "twin") as twin:
        assert twin.head == store.head
        assert twin.registry.to_bytes() == store.registry.to_bytes()  # type: ignore[union-attr]


def test_context_manager_closes(tmp_path: Path) -> None:
    path = tmp_path / "cm"
    with Store(path) as s:
        s.write_block(build_genesis(genesis_tx(NET, [REG, EDU], 1, T0)))
        commit(s, [governance_tx(NET, 1, "set_quorum", {"quorum": 2}, [REG])], T0 + 1)
    # a closed LevelDB can be opened again (the lock was released)
    with Store(path) as s2:
        assert s2.head is not None
        assert s2.head.height == 1
        assert s2.registry is not None
        assert s2.registry.quorum == 2
    s.close()  # closing twice is harmless


def test_reopen_genesis_only_store(tmp_path: Path) -> None:
    """A node that has committed only its genesis block must be able to restart."""
    path = tmp_path / "genesis-only"
    with Store(path) as s:
        s.write_block(build_genesis(genesis_tx(NET, [REG, EDU], 1, T0)))
        head, registry = s.head, s.registry
        assert registry is not None
    with Store(path) as again:
        assert again.head == head
        assert again.registry is not None
        assert again.registry.to_bytes() == registry.to_bytes()


# --- write_block misuse --------------------------------------------------------------------------


def test_write_block_rejects_wrong_height_and_empty(tmp_path: Path) -> None:
    with Store(tmp_path / "w") as s:
        g = build_genesis(genesis_tx(NET, [REG, EDU, TAX], 2, T0))
        s.write_block(g)
        with pytest.raises(StoreError, match="height"):
            s.write_block(g)
        assert s.head is not None
        assert s.registry is not None
        empty = build_block(s.head, s.registry, s, s.frontier, [], T0 + 1)
        assert empty.header is None
        with pytest.raises(StoreError):
            s.write_block(empty)
        nxt = build_block(s.head, s.registry, s, s.frontier,
                          [governance_tx(NET, 1, "set_quorum", {"quorum": 1}, [REG, EDU])],
                          T0 + 1)
        s.write_block(nxt)
        with pytest.raises(StoreError, match="height"):
            s.write_block(nxt)
        assert s.head.height == 1


def test_build_block_rejects_stale_frontier(tmp_path: Path) -> None:
    with Store(tmp_path / "f") as s:
        s.write_block(build_genesis(genesis_tx(NET, [REG, EDU], 1, T0)))
        assert s.head is not None
        assert s.registry is not None
        with pytest.raises(ValueError, match="frontier"):
            build_block(s.head, s.registry, s, CompactRange(), [], T0)


def test_a_compact_range_holds_one_hash_per_set_bit_of_its_size() -> None:
    h = merkle.leaf_hash(b"x")
    assert CompactRange(5, [h, h]).root() == merkle.node_hash(h, h)
    for size, hashes in [(5, [h]), (4, [h, h]), (0, [h]), (1, [])]:
        with pytest.raises(ValueError, match="compact range"):
            CompactRange(size, hashes)


def test_checkpoints_and_extra_records(tmp_path: Path) -> None:
    with Store(tmp_path / "k") as s:
        s.write_block(build_genesis(genesis_tx(NET, [REG], 1, T0)), {b"k" + (1).to_bytes(8, "big"):
                                                                     b"cp1"})
        assert s.checkpoint(1) == b"cp1"
        s.put_checkpoint(3, b"cp3")
        s.put_checkpoint(2, b"cp2")
        assert s.checkpoint() == b"cp3"
        assert s.checkpoint(2) == b"cp2"
        assert s.checkpoint(9) is None


def test_the_head_checkpoint_is_the_last_one_the_head_covers(tmp_path: Path) -> None:
    """One at the head's own size counts; one past the head (its block not yet the head)
    does not."""
    with Store(tmp_path / "k") as s:
        s.write_block(build_genesis(genesis_tx(NET, [REG], 1, T0)))
        assert s.head_checkpoint() is None
        s.put_checkpoint(1, b"cp1")
        assert s.head_checkpoint() == b"cp1"
        s.put_checkpoint(2, b"cp2")
        assert s.checkpoint() == b"cp2"
        assert s.head_checkpoint() == b"cp1"


def test_a_status_list_ends_where_the_next_begins(tmp_path: Path) -> None:
    """Credentials at the last index of list 0, the first of list 1 and the last of the last
    list: each list's entries and values are its own."""
    from ledger.state import STATUS_LIST_SIZE, STATUS_LISTS

    last = STATUS_LISTS * STATUS_LIST_SIZE - 1
    indexes = [STATUS_LIST_SIZE - 1, STATUS_LIST_SIZE, last]
    with Store(tmp_path / "lists") as s:
        s.write_block(build_genesis(genesis_tx(NET, [REG, EDU, TAX], 2, T0)))
        commit(s, [governance_tx(NET, 1, "register_type", {"type": DIPLOMA}, [REG, EDU]),
                   governance_tx(NET, 2, "grant", {"agency": "edu", "type": "diploma",
                                                   "from": T0, "until": T0 + DAY},
                                 [REG, EDU])], T0 + 10)
        commit(s, [issue_tx(NET, EDU, cid(i), "diploma", i, T0, T0 + DAY, T0 + 20)
                   for i in indexes], T0 + 20)
        assert s.status_lists("edu", "diploma") == [0, 1, STATUS_LISTS - 1]
        for number, index in zip([0, 1, STATUS_LISTS - 1], indexes, strict=True):
            assert list(s.status_entries("edu", "diploma", number)) == [(index, "valid")]
            assert list(s.status_values("edu", "diploma", number)) == [(index, "valid")]
        assert sorted(s.status_values("edu", "diploma")) == [(i, "valid") for i in indexes]


# --- registry_at -------------------------------------------------------------------------------


def test_registry_at(store: Store) -> None:
    r1, r2 = store.registry_at(1), store.registry_at(2)
    assert r1.type_def("diploma") is not None
    assert r1.grants_at(T0 + DAY) == {}
    assert r1.gov_seq == 1
    assert r2.grants_at(T0 + DAY) == {"edu": ["diploma"]}
    assert r2.gov_seq == 2
    assert store.head is not None
    assert store.registry is not None
    for h in range(2, store.head.height + 1):
        assert store.registry_at(h).to_bytes() == r2.to_bytes()
    assert store.registry_at(store.head.height).to_bytes() == store.registry.to_bytes()
    assert [h for h, _ in store.registry_history()] == [0, 1, 2]
    with pytest.raises(StoreError):
        store.registry_at(-1)


def test_registry_at_genesis_height(store: Store) -> None:
    """Height 0 is the genesis registry (the only record at or before it is r/0)."""
    history = dict(store.registry_history())
    assert 0 in history
    r0 = store.registry_at(0)
    assert r0.to_bytes() == history[0].to_bytes()
    assert r0.type_def("diploma") is None
    assert r0.gov_seq == 0


def test_registry_at_after_later_governance(tmp_path: Path) -> None:
    with build_chain(tmp_path / "g") as s:
        assert s.head is not None
        before = s.head.height
        t = T0 + 600 * DAY
        commit(s, [governance_tx(NET, 3, "remove_agency", {"agency": "tax"}, [REG, EDU])], t)
        after = s.head.height
        assert s.registry_at(before).current_agencies(t) == ["edu", "reg", "tax"]
        assert s.registry_at(after).current_agencies(t) == ["edu", "reg"]
        assert s.registry_at(after).gov_seq == 3
        assert s.registry_at(before).gov_seq == 2
        assert [h for h, _ in s.registry_history()] == [0, 1, 2, after]


# --- following another node's blocks without the state (follow_block, ADR 64) -------------------


def _head_of(header: BlockHeader) -> Head:
    return Head(header.height, header.hash, header.log_size, header.log_root, header.time)


def _genesis_start(store: Store) -> tuple[Head, Registry, CompactRange]:
    frontier = CompactRange()
    frontier.append(merkle.leaf_hash(store.entry(0)), {})
    return _head_of(store.block(0)), store.registry_at(0), frontier


def test_following_blocks_by_governance_alone_ends_where_building_them_did(store: Store) -> None:
    """A node catching up past a rotation finds the registry a peer's checkpoint is judged by
    by following the peer's blocks: headers, entries and governance only, no state. At every
    block it must agree with the chain as built: head, registry and log root."""
    assert store.head is not None
    at, registry, frontier = _genesis_start(store)
    for h in range(1, store.head.height + 1):
        header = store.block(h)
        at, registry, frontier = follow_block(at, registry, frontier, header.to_bytes(),
                                              store.block_entries(header))
        assert at == _head_of(header)
        assert registry.to_bytes() == store.registry_at(h).to_bytes()
        assert frontier.root() == header.log_root == store.root_at(header.log_size)
    assert at == store.head and registry.gov_seq == 2


def _block_of(prev: Head, entries: list[bytes], frontier: CompactRange, t: int) -> bytes:
    """A well-formed header for ``entries`` after ``prev`` (their log root, its height)."""
    fr = frontier.copy()
    for e in entries:
        fr.append(merkle.leaf_hash(e), {})
    return BlockHeader(NET, prev.height + 1, prev.hash, t, prev.log_size, len(entries),
                       fr.root()).to_bytes()


@pytest.mark.parametrize("fault", ["skipped", "prev-hash", "earlier", "entry", "count",
                                   "network", "no-quorum", "not-canonical"])
def test_a_block_that_does_not_follow_is_refused_by_name(store: Store, fault: str) -> None:
    """What following checks, each refused with what was wrong: a block after a gap, one
    naming another block as its parent (its height and first index right), one dated before
    its parent, an entry that is not the one the header's log root commits to, a
    count that is not the entries', another network's, a governance change signed by fewer
    agencies than the quorum (its own header and root well-formed), a header not in canonical
    bytes."""
    at, registry, frontier = _genesis_start(store)
    one = store.block(1)
    header, entries = one.to_bytes(), store.block_entries(one)
    expected = {"skipped": "does not follow block 0", "prev-hash": "does not follow block 0",
                "earlier": "is before block 0",
                "entry": "do not make its log root", "count": "counts 1 transactions and holds 2",
                "network": "is of network 'elsewhere'", "no-quorum": "does not apply",
                "not-canonical": "header"}[fault]
    if fault == "skipped":
        header, entries = store.block(2).to_bytes(), store.block_entries(store.block(2))
    elif fault == "prev-hash":
        header = BlockHeader(NET, 1, b"\x01" * 32, one.time, 1, 1, one.log_root).to_bytes()
    elif fault == "earlier":
        header = BlockHeader(NET, 1, at.hash, at.time - 1, 1, 1, one.log_root).to_bytes()
    elif fault == "entry":  # an issuance of block 3 in its place
        entries = store.block_entries(store.block(3))[:1]
    elif fault == "count":
        entries = entries * 2
    elif fault == "network":
        header = BlockHeader("elsewhere", 1, at.hash, one.time, 1, 1, one.log_root).to_bytes()
    elif fault == "no-quorum":
        entries = [governance_tx(NET, 1, "register_type", {"type": DIPLOMA}, [REG]).raw]
        header = _block_of(at, entries, frontier, one.time)
    else:
        header = header[:-1] + header[-1:] + b"\x00"  # trailing bytes
    with pytest.raises(ValueError, match=re.escape(expected)):
        follow_block(at, registry, frontier, header, entries)
    assert frontier.size == 1  # (the caller's frontier is left as it was)


# --- tampering ---------------------------------------------------------------------------------


@pytest.fixture
def small_store(tmp_path: Path) -> Path:
    """A closed store of genesis plus two blocks (log size 1 + 1 + 5 = 7)."""
    path = tmp_path / "small"
    with Store(path) as s:
        s.write_block(build_genesis(genesis_tx(NET, [REG, EDU, TAX], 2, T0)))
        commit(s, [governance_tx(NET, 1, "register_type", {"type": DIPLOMA}, [REG, EDU])],
               T0 + 10)
        commit(s, [governance_tx(NET, 2, "grant", {"agency": "edu", "type": "diploma",
                                                   "from": T0, "until": T0 + DAY},
                                 [REG, EDU])]
               + [issue_tx(NET, EDU, cid(i), "diploma", i, T0, T0 + DAY, T0)
                  for i in range(4)], T0 + 20)
        assert s.head is not None
        assert s.head.log_size == 7
    return path


def _edit(path: Path, puts: dict[bytes, bytes] | None = None,
          deletes: tuple[bytes, ...] = ()) -> None:
    db = plyvel.DB(str(path))
    try:
        for k, v in (puts or {}).items():
            db.put(k, v)
        for k in deletes:
            assert db.get(k) is not None, k
            db.delete(k)
    finally:
        db.close()


def _head(path: Path) -> Head:
    db = plyvel.DB(str(path))
    try:
        return Head.from_bytes(db.get(head_key))
    finally:
        db.close()


def test_a_damaged_record_in_leveldbs_log_stops_the_open(small_store: Path,
                                                         tmp_path: Path) -> None:
    """The blocks written since the last table sit in LevelDB's log. A flipped byte there made
    LevelDB drop that record and the rest of its block on open: acknowledged blocks gone, an
    older head that still checks out, the audit clean. Opened with paranoid checks, the store
    refuses instead, and says so (ADR 47)."""
    import shutil

    logs = sorted(small_store.glob("*.log"))
    assert logs and logs[-1].stat().st_size > 1000  # the three blocks are in the log
    raw = bytearray(logs[-1].read_bytes())
    raw[len(raw) * 2 // 3] ^= 0x40  # inside the last block's record
    logs[-1].write_bytes(bytes(raw))
    lenient = tmp_path / "lenient"
    shutil.copytree(small_store, lenient)
    db = plyvel.DB(str(lenient))  # LevelDB's default: the damage is dropped, silently
    try:
        assert Head.from_bytes(db.get(head_key)).height < 2
    finally:
        db.close()
    with pytest.raises(StoreError, match=r"it is damaged \(Corruption: .*restore it from a "
                                         r"backup"):
        Store(small_store, create=False)
    from ledger.audit import AuditError, audit

    with pytest.raises(AuditError, match="it is damaged"):  # not a clean audit of less
        audit(small_store, now=T0 + 30)


def test_small_store_opens(small_store: Path) -> None:
    head = _head(small_store)
    with Store(small_store) as s:
        assert s.head == head


@pytest.mark.parametrize("root", [bytes(32), b"\xff" * 32])
def test_tampered_head_root(small_store: Path, root: bytes) -> None:
    h = _head(small_store)
    _edit(small_store, {head_key: Head(h.height, h.hash, h.log_size, root, h.time).to_bytes()})
    with pytest.raises(StoreError, match="Merkle"):
        Store(small_store)


def test_tampered_head_root_of_older_tree(small_store: Path) -> None:
    """A root that is genuine but belongs to another size still refuses to open."""
    with Store(small_store) as s:
        old_root = s.root_at(6)
    h = _head(small_store)
    _edit(small_store, {head_key: Head(h.height, h.hash, h.log_size, old_root, h.time).to_bytes()})
    with pytest.raises(StoreError):
        Store(small_store)


def test_tampered_head_hash(small_store: Path) -> None:
    h = _head(small_store)
    _edit(small_store, {head_key: Head(h.height, b"\x01" * 32, h.log_size, h.log_root,
                                       h.time).to_bytes()})
    with pytest.raises(StoreError):
        Store(small_store)


def test_tampered_head_height(small_store: Path) -> None:
    h = _head(small_store)
    _edit(small_store, {head_key: Head(h.height - 1, h.hash, h.log_size, h.log_root,
                                       h.time).to_bytes()})
    with pytest.raises(StoreError):
        Store(small_store)


def test_tampered_head_size(small_store: Path) -> None:
    h = _head(small_store)
    for size in (h.log_size - 1, h.log_size + 1):
        _edit(small_store, {head_key: Head(h.height, h.hash, size, h.log_root,
                                           h.time).to_bytes()})
        with pytest.raises(StoreError):
            Store(small_store)


def test_garbage_head(small_store: Path) -> None:
    _edit(small_store, {head_key: b"\xc1garbage"})
    with pytest.raises(StoreError):
        Store(small_store)


def test_a_head_record_with_a_member_too_many_is_refused(small_store: Path) -> None:
    from ledger import codec

    h = _head(small_store)
    extra = codec.encode({**codec.decode(h.to_bytes()), "zz": 1})
    _edit(small_store, {head_key: extra})
    with pytest.raises(StoreError, match="store head is corrupt"):
        Store(small_store)


def test_tampered_block_root(small_store: Path) -> None:
    h = _head(small_store)
    with Store(small_store) as s:
        b = s.block(h.height)
    forged = BlockHeader(b.net, b.height, b.prev_hash, b.time, b.first_index, b.tx_count,
                         bytes(32))
    _edit(small_store, {block_key(h.height): forged.to_bytes()})
    with pytest.raises(StoreError):
        Store(small_store)


def test_a_stored_record_that_does_not_decode_is_the_stores_damage_naming_it(
        small_store: Path) -> None:
    """A block header or registry of the store's own that does not decode is the store's
    damage (StoreError: the API's 503, `ledger-node start`'s "cannot open"), naming the record
    and the audit; it was a DecodeError, which the API answered as the client's 400."""
    _edit(small_store, {block_key(1): b"\x93\x01", registry_key(1): b"\x93\x01"})
    with Store(small_store) as s:  # (the head's block and registry are whole)
        with pytest.raises(StoreError, match=r"stored header of block 1 does not decode .*"
                                             r"`ledger audit`"):
            s.block(1)
        with pytest.raises(StoreError, match="stored registry of block 1 does not decode"):
            s.registry_at(1)
        with pytest.raises(StoreError, match="stored registry of block 1 does not decode"):
            list(s.registry_history())
    _edit(small_store, {registry_key(2): b"\x93\x01"})
    with pytest.raises(StoreError, match="stored registry of block 2 does not decode"):
        Store(small_store)


def test_a_credential_record_that_does_not_decode_is_the_stores_damage(
        small_store: Path) -> None:
    """A damaged credential record read for a status list (in full or incrementally) was a
    DecodeError, or msgpack's ValueError: the client's 400, or a bare 500."""
    from ledger.state import credential_key

    _edit(small_store, {credential_key(cid(1)): b"\x93\x01"})
    with Store(small_store) as s:
        with pytest.raises(StoreError, match=f"record of credential {cid(1).hex()} does not "
                                             "decode"):
            s.credential(cid(1))
        with pytest.raises(StoreError, match="does not decode"):
            list(s.status_entries("edu", "diploma"))
        with pytest.raises(StoreError, match="status index 1 of edu/diploma points at"):
            list(s.status_values("edu", "diploma"))


def test_a_status_index_pointing_at_another_credential_serves_no_status(
        small_store: Path) -> None:
    """A status index record of the store's own pointing at another credential (damaged on
    disk): the list served that credential's status as this index's, silently (a revoked
    credential could read valid). The record's own issuer, type and index must be the index's."""
    from ledger.state import index_key

    with Store(small_store) as s:
        assert sorted(s.status_values("edu", "diploma")) == [(i, "valid") for i in range(4)]
    _edit(small_store, {index_key("edu", "diploma", 1): cid(2)})
    with Store(small_store) as s:
        for read in (s.status_values, s.status_entries):
            with pytest.raises(StoreError, match="status index 1 of edu/diploma points at a "
                                                 "credential of another list or index"):
                list(read("edu", "diploma"))
    # an index of another issuer's list, or another type's, pointing at edu's credential at
    # that same index: not that list's either
    for issuer, kind in (("tax", "diploma"), ("edu", "permit")):
        _edit(small_store, {index_key(issuer, kind, 1): cid(1)})
        with Store(small_store) as s:
            for read in (s.status_values, s.status_entries):
                with pytest.raises(StoreError, match=f"status index 1 of {issuer}/{kind} "
                                                     "points at a credential of another"):
                    list(read(issuer, kind))


def test_a_block_root_off_the_log_is_refused_with_the_head_naming_that_block(
        small_store: Path) -> None:
    """The head names a forged last block (its hash) and the log's true root: the block's
    own root is not the log's, and the store refuses to open."""
    h = _head(small_store)
    with Store(small_store) as s:
        b = s.block(h.height)
    forged = BlockHeader(b.net, b.height, b.prev_hash, b.time, b.first_index, b.tx_count,
                         bytes(32))
    _edit(small_store, {block_key(h.height): forged.to_bytes(),
                        head_key: Head(h.height, forged.hash, h.log_size, h.log_root,
                                       h.time).to_bytes()})
    with pytest.raises(StoreError, match="does not match its Merkle log"):
        Store(small_store)


def test_only_bookkeeping_records_are_written_directly(tmp_path: Path) -> None:
    with Store(tmp_path / "x") as s:
        s.write_block(build_genesis(genesis_tx(NET, [REG], 1, T0)))
        head = s.head
        for write in (lambda: s.put_records({b"H": b"forged"}),
                      lambda: s.put_checkpoints({}, {b"H": b"forged"}),
                      lambda: s.put_checkpoints({}, {b"H": None})):
            with pytest.raises(StoreError, match="only x-prefixed"):
                write()
        s.put_checkpoints({}, {b"x1": b"kept"})
        assert s.get(b"x1") == b"kept"
    with Store(tmp_path / "x") as again:
        assert again.head == head


@pytest.mark.parametrize("which", range(len(CompactRange.nodes_for(7))))
def test_missing_frontier_node(small_store: Path, which: int) -> None:
    level, index = CompactRange.nodes_for(7)[which]
    _edit(small_store, deletes=(node_key(level, index),))
    with pytest.raises(StoreError, match="missing"):
        Store(small_store)


def test_tampered_frontier_node(small_store: Path) -> None:
    level, index = CompactRange.nodes_for(7)[0]
    _edit(small_store, {node_key(level, index): b"\x00" * 32})
    with pytest.raises(StoreError):
        Store(small_store)


def test_missing_head_block(small_store: Path) -> None:
    h = _head(small_store)
    _edit(small_store, deletes=(block_key(h.height),))
    with pytest.raises(StoreError, match="missing"):
        Store(small_store)


def test_missing_registry(small_store: Path) -> None:
    _edit(small_store, deletes=tuple(registry_key(h) for h in range(3)))
    with pytest.raises(StoreError):
        Store(small_store)


def _cp_text(size: int, root: bytes, lines: tuple[str, ...]) -> bytes:
    from ledger.checkpoint import Checkpoint

    return Checkpoint(NET, size, root, lines).sign("reg", REG.node_key).to_text().encode()


@pytest.mark.parametrize("case", ["ahead", "root", "height", "later", "hash", "size", "line"])
def test_a_store_off_its_own_checkpoint_is_refused(small_store: Path, case: str) -> None:
    """The last stored checkpoint must lie on the store's chain: its size within the head's
    (else the store was rolled back), its root the log's there, and (ADR 60) the block it names
    the block ending there (else the same log was regrouped into blocks no quorum signed)."""
    from ledger.finality import block_line

    with Store(small_store, create=False) as s:
        assert s.head is not None
        top = s.block(s.head.height)
        size, root, height, block_hash = top.log_size, top.log_root, top.height, top.hash
        inner_root = s.root_at(size - 1)
        good = _cp_text(size, root, (block_line(height, block_hash),))
        s.put_checkpoints({size: good})
    with Store(small_store, create=False) as s:  # the true checkpoint: it opens
        assert s.checkpoint() == good
    bad = {
        "ahead": (size + 1, root, block_line(height + 1, block_hash), "rolled back"),
        "root": (size, bytes(32), block_line(height, block_hash), "expected root"),
        "height": (size, root, block_line(height - 1, block_hash), "names block"),
        # the head block's hash, at a height past the head
        "later": (size, root, block_line(height + 1, block_hash), "names block"),
        "hash": (size, root, block_line(height, bytes(32)), "names block"),
        # a true root inside the block, naming the block: the block does not end there
        "size": (size - 1, inner_root, block_line(height, block_hash), "names block"),
        "line": (size, root, "block x", "checkpoint is corrupt"),
    }[case]
    _edit(small_store, {checkpoint_key(bad[0]): _cp_text(bad[0], bad[1], (bad[2],))},
          deletes=(checkpoint_key(size),) if bad[0] < size else ())  # the bad one is the last
    with pytest.raises(StoreError, match=bad[3]) as refused:
        Store(small_store, create=False)
    # and what the operator does about it (helper round 28T: the start said only "corrupt")
    assert "run `ledger audit` on this data folder" in str(refused.value)


def test_refused_open_releases_lock(small_store: Path) -> None:
    h = _head(small_store)
    good = h.to_bytes()
    _edit(small_store, {head_key: Head(h.height, h.hash, h.log_size, bytes(32),
                                       h.time).to_bytes()})
    with pytest.raises(StoreError):
        Store(small_store)
    # the failed open closed the DB: it can be repaired and opened
    _edit(small_store, {head_key: good})
    with Store(small_store) as s:
        assert s.head == h


def test_an_entry_past_the_head_is_not_read(small_store: Path) -> None:
    """A record past the head's log (left by no block) is not the log's entry."""
    _edit(small_store, {entry_key(7): b"stray"})
    with Store(small_store) as s:
        assert s.entry(6)
        with pytest.raises(StoreError, match="no log entry at index 7"):
            s.entry(7)


def test_a_consistency_proof_from_raw_records_is_the_stores(small_store: Path) -> None:
    """The auditor's proof from a store's raw records (no head trusted): the store's own for
    every pair of sizes; sizes out of order or from the empty tree, and a missing node, are
    a StoreError."""
    with Store(small_store) as s:
        for new in range(1, 8):
            for old in range(1, new + 1):
                assert stored_consistency_proof(s.get, old, new) == \
                    s.consistency_proof(old, new)
    _edit(small_store, deletes=(node_key(1, 2),))  # leaves 4 and 5
    db = plyvel.DB(str(small_store))
    try:
        for old, new in [(0, 7), (-1, 7), (5, 4)]:
            with pytest.raises(StoreError, match=f"old size {old} is not in"):
                stored_consistency_proof(db.get, old, new)
        with pytest.raises(StoreError, match=r"missing Merkle node \[4, 6\)"):
            stored_consistency_proof(db.get, 3, 7)
    finally:
        db.close()


def test_missing_entry_detected_on_read(small_store: Path) -> None:
    _edit(small_store, deletes=(entry_key(3),))
    with Store(small_store) as s:
        with pytest.raises(StoreError, match="missing"):
            s.entry(3)
        assert s.entry(2)


# --- resident memory of a long-running reader ----------------------------------------------------


def _mapped_table_kib(store_path: Path) -> int:
    """Resident KiB of this process's mappings of the store's table files (/proc/self/smaps)."""
    prefix = f"{store_path.resolve()}/"
    total, in_table = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", fields[0]):  # a mapping's header line
            in_table = (len(fields) == 6 and fields[5].startswith(prefix)
                        and fields[5].endswith(".ldb"))
        elif in_table and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="Linux /proc only")
def test_proof_reads_release_the_mapped_table_pages_over_the_budget(chain_path: Path,
                                                                    tmp_path: Path) -> None:
    import shutil

    from ledger import store as store_mod

    path = tmp_path / "copy"
    shutil.copytree(chain_path, path)
    s = Store(path)  # reopening turns LevelDB's log into a mapped table file
    try:
        # finish compactions now, so no background thread maps table pages during the checks
        s._db.compact_range()
        assert s.head is not None
        size = s.head.log_size
        # a budget far above this small store's tables: checks run, nothing is released
        s.mapped_budget = 1 << 40
        reads = 0
        while reads < 4 * store_mod._CHECK_AFTER_READS:
            reads += len(s.inclusion_proof(reads % size, size))
        for _ in range(500):  # the background check runs (a busy machine: give it 5 s)
            if s._mapped_floor is not None:
                break
            time.sleep(0.01)
        assert s._mapped_floor is not None
        assert _mapped_table_kib(path) > 0  # the proofs left pages mapped
        assert s.releases == 0
        # a budget of nothing: the next check releases every mapped table page
        s.mapped_budget = -(1 << 40)
        while reads < 8 * store_mod._CHECK_AFTER_READS:
            reads += len(s.inclusion_proof(reads % size, size))
        for _ in range(500):
            if s.releases:
                break
            time.sleep(0.01)
        assert s.releases >= 1
        # no read from here on: one more check releases what the last proofs mapped
        done = s.releases
        s._release_wanted.set()
        for _ in range(500):
            if s.releases > done:
                break
            time.sleep(0.01)
        assert s.releases > done
        s.mapped_budget = 1 << 40
        assert _mapped_table_kib(path) == 0
        for i in range(50):  # and reads keep working, from the page cache
            merkle.verify_inclusion(s.leaf_hash(i), i, size, s.inclusion_proof(i, size),
                                    s.head.log_root)
    finally:
        s.close()


def test_file_resident_bytes_reads_statm() -> None:
    from ledger.store import _file_resident_bytes

    got = _file_resident_bytes()
    if Path("/proc/self/statm").exists():
        assert got is not None and got > 0  # at least the interpreter's own code pages
    else:
        assert got is None

def test_status_list_scan_leaves_the_block_cache_alone(chain_path: Path, tmp_path: Path) -> None:
    """The full status-list read is a bulk scan: it reads with fill_cache=False, so it neither
    evicts hot blocks nor grows LevelDB's block cache (64 MiB) to its bound on a big chain.

    The store writes its tables uncompressed (ADR 29), and LevelDB reads blocks of a mapped,
    uncompressed table in place, without its block cache. Blocks do go through the cache for
    tables written compressed (stores from before ADR 29) and for tables beyond LevelDB's
    mapping limit, so the records are copied into a store written compressed first."""
    import shutil

    import plyvel

    shutil.copytree(chain_path, tmp_path / "live")  # the module's store may hold chain_path
    path = tmp_path / "copy"
    src = plyvel.DB(str(tmp_path / "live"))
    db = plyvel.DB(str(path), create_if_missing=True, compression="snappy",
                   block_size=16 << 10, bloom_filter_bits=10)
    with db.write_batch() as wb:
        for k, v in src:
            wb.put(k, v)
    src.close()
    db.compact_range()  # flushes the memtable into tables, compressed
    db.close()
    s = Store(path)  # a fresh, empty block cache
    try:

        def usage() -> int:
            return int(s._db.get_property(b"leveldb.approximate-memory-usage"))

        before = usage()
        pairs = {tuple(k[1:].split(b"\x00")[:2]) for k in s._db.iterator(prefix=b"i",
                                                                         include_value=False)}
        assert pairs
        read = sum(1 for a, b in pairs for _ in s.status_values(a.decode(), b.decode()))
        assert read > 0
        after_values = usage()
        for _ in s._db.iterator(prefix=b"c"):  # the same credential records, cached this time
            pass
        filled = usage() - after_values
        assert filled > 0
        assert after_values - before < filled / 2
    finally:
        s.close()


def test_tables_are_written_uncompressed(tmp_path: Path) -> None:
    """Every table block ends in a 5-byte trailer whose first byte names its compression
    (0 none, 1 snappy); the store writes type 0 (ADR 29), even for very compressible values."""
    s = Store(tmp_path / "s")
    try:
        s.put_records({b"x%06d" % i: bytes(200) for i in range(20_000)})
        s._db.compact_range()
    finally:
        s.close()
    tables = list((tmp_path / "s").glob("*.ldb"))
    assert tables
    data = sum(t.stat().st_size for t in tables)
    assert data > 20_000 * 200  # snappy would shrink 4 MB of zeros to a small fraction
    raw = tables[0].read_bytes()
    # the footer (last 48 bytes) starts with the metaindex and index block handles (varints)

    def varint(buf: bytes, at: int) -> tuple[int, int]:
        n = shift = 0
        while True:
            b = buf[at]
            n |= (b & 0x7F) << shift
            at += 1
            shift += 7
            if b < 0x80:
                return n, at

    footer = raw[-48:]
    _, at = varint(footer, 0)
    _, at = varint(footer, at)
    index_off, at = varint(footer, at)
    index_len, _ = varint(footer, at)
    assert raw[index_off + index_len] == 0  # the index block's trailer: no compression


def test_status_values_name_a_missing_credential_record(chain_path: Path, tmp_path: Path) -> None:
    import shutil

    path = tmp_path / "copy"
    shutil.copytree(chain_path, path)
    s = Store(path)
    try:
        prefix = b"iedu\x00diploma\x00"
        entries = [(bytes(k), bytes(v)) for k, v in s._db.iterator(prefix=prefix)]
        assert len(entries) > 2
        assert len(list(s.status_values("edu", "diploma"))) == len(entries)
        # delete the record the middle index entry points at: the seek lands on the next one
        k, cid = entries[len(entries) // 2]
        s._db.delete(b"c" + cid)
        index = int.from_bytes(k[len(prefix):], "big")
        with pytest.raises(StoreError, match=f"status index {index} of edu/diploma points at"):
            list(s.status_values("edu", "diploma"))
    finally:
        s.close()


def test_status_entries_name_a_missing_credential_record(small_store: Path) -> None:
    _edit(small_store, deletes=(b"c" + cid(1),))
    with Store(small_store) as s, \
            pytest.raises(StoreError, match="status index 00000001 points at no credential"):
        list(s.status_entries("edu", "diploma"))


def test_status_values_refuse_a_record_of_no_known_status(chain_path: Path,
                                                          tmp_path: Path) -> None:
    import shutil

    import msgpack

    path = tmp_path / "copy"
    shutil.copytree(chain_path, path)
    s = Store(path)
    try:
        prefix = b"iedu\x00diploma\x00"
        k, credential = next((bytes(k), bytes(v)) for k, v in s._db.iterator(prefix=prefix))
        rec = msgpack.unpackb(s._db.get(b"c" + credential), raw=False)
        assert rec[2] in ("valid", "revoked")
        s._db.put(b"c" + credential, msgpack.packb([*rec[:2], "forgotten", *rec[3:]]))
        index = int.from_bytes(k[len(prefix):], "big")
        with pytest.raises(StoreError, match=f"status index {index} of edu/diploma points at"):
            list(s.status_values("edu", "diploma"))
    finally:
        s.close()
