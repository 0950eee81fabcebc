"""Golden chain: genesis, blocks, head and checkpoint from fixed keys and times, byte for byte.

Ed25519 signatures are deterministic, so the same inputs must give the same bytes forever; a
change here is a change of the wire format. Regenerate deliberately with UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from pathlib import Path

from ledger.chain import build_block, build_genesis
from ledger.finality import sign_checkpoint
from ledger.network import demo_agency, genesis_tx, governance_tx, issue_tx, status_tx
from ledger.store import Store

GOLDEN = Path(__file__).parent / "golden" / "chain.json"
NET = "golden"
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def _build(tmp: Path) -> dict[str, object]:
    edu, civil, market = (demo_agency(i, n, label="golden") for i, n in
                          [("edu", "Education Bureau"), ("civil", "Civil Affairs"),
                           ("market", "Market Regulation")])
    genesis = genesis_tx(NET, [edu, civil, market], 2, T0)
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string", "field": "string"},
            "derived": {}}
    batches = [
        [governance_tx(NET, 1, "register_type", {"type": spec}, [edu, civil])],
        [governance_tx(NET, 2, "grant", {"agency": "edu", "type": "degree", "from": T0,
                                         "until": T0 + 86400 * 365}, [civil, market])],
        [issue_tx(NET, edu, hashlib.sha256(b"cred-%d" % i).digest(), "degree", 1000 + i, T0,
                  T0 + 86400 * 30, T0 + 100 + i) for i in range(3)],
        [status_tx(NET, edu, hashlib.sha256(b"cred-1").digest(), "revoked", "withdrawn",
                   T0 + 500)],
    ]
    out: dict[str, object] = {"genesis_tx": genesis.raw.hex()}
    blocks = []
    with Store(tmp / "golden") as store:
        store.write_block(build_genesis(genesis))
        blocks.append(store.block(0).to_bytes().hex())
        for n, txs in enumerate(batches, start=1):
            head, reg = store.head, store.registry
            assert head is not None
            assert reg is not None
            result = build_block(head, reg, store, store.frontier, txs, T0 + 60 * n)
            assert not result.rejected, result.rejected
            store.write_block(result)
            blocks.append(store.block(n).to_bytes().hex())
        assert store.head is not None
        out["blocks"] = blocks
        out["head"] = store.head.to_bytes().hex()
        out["checkpoint"] = sign_checkpoint(
            NET, store.head, [("edu", edu.node_key), ("civil", civil.node_key)]).to_text()
    return out


def test_golden_chain_bytes(tmp_path: Path) -> None:
    built = _build(tmp_path)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(built, indent=2) + "\n")
    expected = json.loads(GOLDEN.read_text())
    assert built["genesis_tx"] == expected["genesis_tx"]
    assert built["blocks"] == expected["blocks"]
    assert built["head"] == expected["head"]
    assert built["checkpoint"] == expected["checkpoint"]


def test_golden_file_is_self_consistent() -> None:
    """The committed head's hash is SHA-256 over the block domain and the last block header."""
    from ledger.block import BlockHeader
    from ledger.chain import Head

    expected = json.loads(GOLDEN.read_text())
    headers = [BlockHeader.from_bytes(bytes.fromhex(b)) for b in expected["blocks"]]
    for prev, cur in itertools.pairwise(headers):
        assert cur.prev_hash == prev.hash
        assert cur.first_index == prev.log_size
    head = Head.from_bytes(bytes.fromhex(expected["head"]))
    assert head.hash == headers[-1].hash
    assert head.log_root == headers[-1].log_root
