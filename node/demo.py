"""The embedded demo: a three-agency network on solo ordering, in one data folder.

Creates a genesis (education bureau, civil affairs, market regulation; quorum 2), commits
governance (credential types and grants), issues and changes the status of a few anchors, then
prints the head, a quorum-signed checkpoint and an inclusion proof that it verifies.
Key files are written encrypted under ``<data>/keys``.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from ledger import merkle
from ledger.chain import Head, build_genesis, checkpoint_key
from ledger.checkpoint import SignedCheckpoint
from ledger.credentials import STATUS_LIST_SIZE
from ledger.errors import StoreError
from ledger.files import make_folders, remove_contents
from ledger.finality import sign_checkpoint, verify_final
from ledger.keys import PrivateKey, save_private_key
from ledger.network import Agency, genesis_tx, governance_tx, issue_tx, status_tx
from ledger.ordering import SoloOrderer
from ledger.state import Registry
from ledger.store import Store, store_unused

NETWORK = "changsheng-demo"
MARKER = ".credledger-demo"

TYPES = [
    {"id": "degree", "title": "Academic degree",
     "claims": {"holder_name": "string", "degree_level": "string", "field": "string",
                "awarded_on": "date"}, "derived": {}},
    {"id": "residence", "title": "Residence permit",
     "claims": {"holder_name": "string", "district": "string", "birth_date": "date",
                "resident_since": "date"},
     "derived": {"age_over_18": {"claim": "birth_date", "age_over": 18},
                 "age_over_65": {"claim": "birth_date", "age_over": 65}}},
    {"id": "business-licence", "title": "Business licence",
     "claims": {"business_name": "string", "registration_no": "string", "scope": "string"},
     "derived": {}},
]
GRANTS = [("edu", "degree"), ("civil", "residence"), ("market", "business-licence")]


@dataclass
class DemoResult:
    head: Head
    checkpoint: SignedCheckpoint
    proven_index: int


def _agencies() -> list[Agency]:
    names = [("edu", "Education Bureau"), ("civil", "Civil Affairs Bureau"),
             ("market", "Market Regulation Bureau")]
    return [Agency(i, n, PrivateKey.generate(), PrivateKey.generate()) for i, n in names]


def run_demo(data: Path, passphrase: bytes, *, clock: Callable[[], int],
             console: Console | None = None) -> DemoResult:
    """Build the demo network in ``data`` (replacing an earlier demo there) and prove a leaf."""
    out = console or Console()
    if data.exists():
        if not (data / MARKER).exists() and (not data.is_dir() or any(data.iterdir())):
            raise SystemExit(f"{data} exists and is not a demo folder; choose another --data")
        try:
            # A node serving this folder would go on acknowledging writes to deleted files.
            with store_unused(data / "ledger"):
                remove_contents(data, last=MARKER)
                data.rmdir()
        except StoreError as e:
            raise SystemExit(f"{e}; the demo replaces {data} only when nothing uses it") from e
    make_folders(data.parent, 0o750)
    data.mkdir(mode=0o750)  # not writable by others whatever the umask: no one
    # the marker first, and removed last (remove_contents): a build or a replacement cut short
    # leaves a folder the next demo still knows as its own (or an empty one)
    (data / MARKER).write_text("created by ledger-node demo; safe to delete\n")
    (data / "keys").mkdir(mode=0o700)    # else may swap the store or keys inside
    agencies = _agencies()
    for a in agencies:
        save_private_key(data / "keys" / f"{a.id}.node.key", a.node_key, passphrase)
        save_private_key(data / "keys" / f"{a.id}.issuer.key", a.issuer_key, passphrase)
    signers = [(a.id, a.node_key) for a in agencies]
    edu, civil, market = agencies
    t0 = clock()

    with Store(data / "ledger") as store:
        genesis = genesis_tx(NETWORK, agencies, 2, t0)
        store.write_block(build_genesis(genesis))

        def on_block(head: Head, _registry: Registry) -> dict[bytes, bytes]:
            cp = sign_checkpoint(NETWORK, head, signers)
            return {checkpoint_key(head.log_size): cp.to_text().encode()}

        with SoloOrderer(store, clock=clock, on_block=on_block) as orderer:
            seq = 0
            for spec in TYPES:
                seq += 1
                tx = governance_tx(NETWORK, seq, "register_type", {"type": spec}, [edu, civil])
                orderer.submit(tx).result()
            for agency_id, kind in GRANTS:
                seq += 1
                args = {"agency": agency_id, "type": kind, "from": t0,
                        "until": t0 + 10 * 365 * 86400}
                orderer.submit(governance_tx(NETWORK, seq, "grant", args, [civil, market]))\
                    .result()
            out.print(f"[bold]genesis[/] {NETWORK}: 3 agencies, quorum 2; "
                      f"{seq} governance transactions (types, grants)")
            issued, txs = [], []
            for n, (agency, kind) in enumerate([(edu, "degree"), (civil, "residence"),
                                                (market, "business-licence")] * 3):
                cid = hashlib.sha256(os.urandom(32)).digest()  # stands for SHA-256 of a JWT
                index = secrets.randbelow(STATUS_LIST_SIZE)
                txs.append(issue_tx(NETWORK, agency, cid, kind, index, t0,
                                    t0 + 5 * 365 * 86400, ts=t0 + n))
                issued.append((agency, cid))
            # queued as one chunk, so one block: one at a time, a busy machine's writer cut
            # them into two blocks now and then, and the demo's chain had another shape
            futures = orderer.submit_many(txs)
            receipts = [(a, cid, f.result()) for (a, cid), f in zip(issued, futures, strict=True)]
            out.print(f"issued {len(receipts)} credential anchors "
                      "(hashes, types, windows, status indexes; no claim values)")
            a0, c0, _ = receipts[0]
            a1, c1, _ = receipts[1]
            orderer.submit(status_tx(NETWORK, a0, c0, "revoked", "withdrawn", t0)).result()
            orderer.submit(status_tx(NETWORK, a1, c1, "suspended", "under-review", t0)).result()
            orderer.submit(status_tx(NETWORK, a1, c1, "valid", "review-cleared", t0)).result()
            out.print("status: revoked one, suspended and reinstated another")

        head = store.head
        registry = store.registry
        if head is None or registry is None:
            raise SystemExit("the demo store has no head after committing")
        text = store.checkpoint(head.log_size)
        if text is None:
            raise SystemExit("no checkpoint stored for the head: the store is inconsistent")
        signed = SignedCheckpoint.from_text(text.decode())
        names = verify_final(signed, registry, head.time)
        _, _, receipt = receipts[2]
        proof = store.inclusion_proof(receipt.index, head.log_size)
        leaf = merkle.leaf_hash(store.entry(receipt.index))
        merkle.verify_inclusion(leaf, receipt.index, head.log_size, proof,
                                signed.checkpoint.root)
        out.print(f"\n[bold]head[/] height {head.height}, log size {head.log_size}, "
                  f"root {head.log_root.hex()}")
        out.print(f"\n[bold]checkpoint[/] (C2SP signed note, final: signed by "
                  f"{', '.join(sorted(names))}; quorum {registry.quorum})")
        out.print(signed.to_text(), markup=False, highlight=False, soft_wrap=True)
        out.print(f"[bold]inclusion proof[/] of leaf {receipt.index} "
                  f"(tx {receipt.txid.hex()[:16]}…) in tree size {head.log_size}:")
        for h in proof:
            out.print(f"  {h.hex()}", highlight=False, soft_wrap=True)
        out.print("[green]verified[/]: the leaf hash and the proof give the checkpoint's root")
        return DemoResult(head, signed, receipt.index)


DEMO_HOLDER_CLAIMS = {
    ("edu", "degree"): {"holder_name": "Chen Xiaoming", "degree_level": "master",
                        "field": "hydrology", "awarded_on": "2019-07-01"},
    ("civil", "residence"): {"holder_name": "Chen Xiaoming", "district": "Changsheng",
                             "birth_date": "1958-04-12", "resident_since": "2003-09-01"},
    ("market", "business-licence"): {"business_name": "Chen's Tea House",
                                     "registration_no": "CS-2021-000417",
                                     "scope": "catering"},
}


SERVICE = "elderly-allowance"
"""The catalogue service the served demo installs, so that `wallet apply` can be tried."""
SERVICE_HOLDER_CLAIMS: dict[tuple[str, str], dict[str, Any]] = {
    ("civil", "person-id"): {"person_id": "440606195804120417", "holder_name": "Chen Xiaoming",
                             "birth_date": "1958-04-12", "district": "changsheng"},
    ("civil", "income-statement"): {"tax_year": 2025, "annual_income": 18_000},
}
SNAPSHOT = "snapshot.bin"
"""The verifier snapshot the served demo writes in its folder (`wallet apply --registry`)."""


def install_service(data: Path, passphrase: bytes, *, clock: Callable[[], int]) -> None:
    """Register the catalogue's elderly allowance on the demo network by governance (edu and
    civil sign): its credential types, civil's grants, the credit policy and the rule. Civil
    affairs stands in for the catalogue's justice role, which the demo has no agency for."""
    from contracts.catalogue import setup_actions
    from ledger.files import write_atomic
    from ledger.keys import load_private_key, seal_secret
    from node.approvals import SECRET_FILE
    from node.service import CREDIT_SECRET, Node

    keys = data / "keys"
    if not (keys / SECRET_FILE).exists():  # the network's credit secret (keyed pseudonyms)
        write_atomic(keys / SECRET_FILE, seal_secret(secrets.token_bytes(32), passphrase,
                                                     CREDIT_SECRET), 0o600, overwrite=False)
    signers = [Agency(a, "", load_private_key(keys / f"{a}.node.key", passphrase),
                      load_private_key(keys / f"{a}.issuer.key", passphrase))
               for a in ("edu", "civil")]
    node = Node(data, "civil", passphrase, clock=clock, workers=0)
    try:
        reg = node.store.registry
        if reg is None:
            raise SystemExit("the demo store lost its registry")
        now = clock()
        for n, (action, args) in enumerate(setup_actions(
                reg.data["types"], now, now + 10 * 365 * 86400, agencies={"justice": "civil"},
                services=[SERVICE]), start=reg.gov_seq + 1):
            node.orderer.submit(governance_tx(NETWORK, n, action, args, signers)).result(
                timeout=60)
    finally:
        node.close()


def write_snapshot(data: Path, passphrase: bytes, *, clock: Callable[[], int]) -> Path:
    """A verifier snapshot of the demo (registry and signed status lists) in its folder."""
    from ledger.files import write_atomic
    from ledger.keys import load_private_key
    from ledger.offline import export_snapshot

    node_keys = {a: load_private_key(data / "keys" / f"{a}.node.key", passphrase)
                 for a in ("edu", "civil", "market")}
    with Store(data / "ledger", create=False) as store:
        blob = export_snapshot(store, clock(), node_keys=node_keys)
    write_atomic(data / SNAPSHOT, blob, 0o644)
    return data / SNAPSHOT


def seed_wallet(data: Path, passphrase: bytes, wallet_path: Path, wallet_passphrase: bytes,
                *, clock: Callable[[], int], console: Console | None = None) -> list[str]:
    """Create a demo citizen wallet and issue it one credential from each demo agency, and the
    identity card and income statement the elderly allowance asks for when the service is
    installed (:func:`install_service`).

    Issuance goes through each agency's :class:`node.service.Node` (the store is free: no
    server runs yet); the wallet verifies each bundle before keeping it. Returns the ids, in
    the order of :data:`DEMO_HOLDER_CLAIMS` then :data:`SERVICE_HOLDER_CLAIMS`.
    """
    from node.service import Node
    from wallet.core import Wallet

    out = console or Console()
    if wallet_path.exists():
        wallet_path.unlink()
    wallet = Wallet.init(wallet_path, wallet_passphrase)
    ids = []
    with Store(data / "ledger", create=False) as store:
        registered = set(store.registry.data["types"]) if store.registry is not None else set()
    holder_claims: dict[tuple[str, str], dict[str, Any]] = dict(DEMO_HOLDER_CLAIMS)
    holder_claims |= {k: v for k, v in SERVICE_HOLDER_CLAIMS.items() if k[1] in registered}
    for (agency, kind), claims in holder_claims.items():
        node = Node(data, agency, passphrase, clock=clock, workers=0)
        try:
            bundle, _ = node.issue(kind, claims, wallet.holder_jwk(), valid_days=365)
            registry = node.store.registry
        finally:
            node.close()
        if registry is None:
            raise SystemExit("the demo store lost its registry")
        info = wallet.receive(bundle.to_bytes(), registry=registry, now=clock())
        ids.append(info.id)
        out.print(f"  wallet received {kind} from {agency}: {info.id}", highlight=False,
                  soft_wrap=True)
    return ids
