"""Child process for the crash test: ingest issue transactions forever, printing each receipt.

Usage: python tests/crash_child.py DATA_DIR START_SEQ
Prints one line per acknowledged transaction: ``ACK <txid hex> <index>``, flushed, only after
the orderer resolved its future (i.e. after the block's synced batch was written).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from ledger.chain import build_genesis
from ledger.credentials import STATUS_LIST_SIZE, STATUS_LISTS
from ledger.network import demo_agency, genesis_tx, governance_tx, issue_tx
from ledger.ordering import SoloOrderer
from ledger.store import Store

NET = "crash"
T0 = 1_700_000_000


def status_index(seq: int) -> int:
    """The status index of the child's issue number ``seq``: all an agency's lists of one type
    (a round's numbers stay inside them: tests/test_crash.py)."""
    return seq % (STATUS_LISTS * STATUS_LIST_SIZE)


def main() -> None:
    data, start = Path(sys.argv[1]), int(sys.argv[2])
    agencies = [demo_agency("edu", "Education"), demo_agency("civil", "Civil Affairs")]
    store = Store(data)
    if store.head is None:
        store.write_block(build_genesis(genesis_tx(NET, agencies, 1, T0)))
    orderer = SoloOrderer(store, clock=lambda: T0 + 10, max_batch=200, max_wait=0.005)
    if store.registry is not None and store.registry.type_def("degree") is None:
        spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
        orderer.submit(governance_tx(NET, 1, "register_type", {"type": spec}, agencies)).result()
        grant = {"agency": "edu", "type": "degree", "from": 0, "until": 2 * T0}
        orderer.submit(governance_tx(NET, 2, "grant", grant, agencies)).result()
    seq = start
    while True:
        txs = []
        for _ in range(50):
            cid = hashlib.sha256(f"crash-{seq}".encode()).digest()
            # rounds start ROUND_SPAN apart and issue far fewer: no index twice
            txs.append(issue_tx(NET, agencies[0], cid, "degree", status_index(seq), T0,
                                2 * T0, seq))
            seq += 1
        for tx, fut in zip(txs, orderer.submit_many(txs), strict=True):
            receipt = fut.result()
            sys.stdout.write(f"ACK {tx.txid.hex()} {receipt.index}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
