"""A generator of large, realistic chains for benchmarks and tests.

A district network: eight agencies, twelve issuer/type pairs (the service catalogue's types and
seven more), the catalogue's credit policy, credit grants and approval rules, then a body of
blocks that mixes, per issued credential, on average:

* 1 ``issue`` (random-looking status index: an odd multiplier modulo 2^index_bits, unique per
  issuer and type);
* 0.18 ``status`` changes (10% suspended after ``lag`` issues, a third of those reinstated and a
  third revoked after 2x ``lag``; 5% revoked outright);
* 0.17 ``credit`` events over many keyed-pseudonym subjects (three events per subject; one
  event in nine is a withdrawal of the one before it);
* 0.04 ``approval`` decisions under the four catalogue rules.

Everything is deterministic: the same parameters give the same chain, byte for byte (Ed25519
signatures are deterministic and the keys derive from a fixed label, so they are public:
benchmarks and tests only). Block ``h`` of the body holds the transactions planned for issues
``[(h - first) * block_issues, (h - first + 1) * block_issues)``, so a build resumes from the
store's head without a side file telling where it stopped.

Signing runs in worker processes (spawned; one per core by default), a bounded number of blocks
ahead of the writer; the writer parses each envelope (``Tx.from_checked_bytes``: the bytes are
our own), applies the block with :func:`ledger.chain.build_block` with signatures marked checked
(any rejection is a generator bug and stops the build), and commits it with
:meth:`ledger.store.Store.write_block`. Every ``checkpoint_every`` blocks it stores a checkpoint
signed by the quorum's node keys. :mod:`ledger.audit` re-verifies all of it.

Usage: ``python scripts/chaingen.py PATH --size N [--workers 2] [--log rates.jsonl]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger import codec
from ledger.chain import build_block, build_genesis, checkpoint_key
from ledger.files import write_atomic
from ledger.finality import sign_checkpoint
from ledger.keys import PrivateKey
from ledger.network import Agency, demo_agency, genesis_tx, governance_tx
from ledger.state import Registry, rule_hash
from ledger.store import Store
from ledger.tx import Tx

NET = "district"
LABEL = "chaingen"
T0 = 1_767_225_600
YEAR = 365 * 86_400
QUORUM = 3

AGENCIES = [("civil", "Civil Affairs Bureau"), ("edu", "Education Bureau"),
            ("market", "Market Regulation Administration"), ("justice", "Justice Bureau"),
            ("health", "Health Commission"), ("transport", "Transport Bureau"),
            ("housing", "Housing and Urban Development Bureau"),
            ("labour", "Human Resources and Social Security Bureau")]


def _type(tid: str, title: str, claims: dict[str, str]) -> dict[str, Any]:
    return {"id": tid, "title": title, "claims": claims, "derived": {}}


EXTRA_TYPES: list[tuple[dict[str, Any], str]] = [
    (_type("vaccination", "Vaccination record", {"vaccine": "string", "dose": "int",
                                                 "given_on": "date"}), "health"),
    (_type("health-certificate", "Food handler health certificate",
           {"holder_name": "string", "fit": "bool"}), "health"),
    (_type("driving-licence", "Driving licence", {"holder_name": "string", "classes": "string",
                                                  "expires_on": "date"}), "transport"),
    (_type("vehicle-registration", "Vehicle registration", {"plate": "string", "vin": "string"}),
     "transport"),
    (_type("tenancy-record", "Registered tenancy", {"address": "string", "since": "date"}),
     "housing"),
    (_type("work-permit", "Work permit", {"employer": "string", "until": "date"}), "labour"),
    (_type("skills-certificate", "Vocational skills certificate",
           {"trade": "string", "level": "int"}), "labour"),
]

SERVICES = ["elderly-allowance", "qualification-recognition", "business-licence",
            "certified-copy"]
CREDIT = [("market", "permits", -40), ("civil", "tax", -25), ("civil", "utilities", 15),
          ("justice", "courts", -60)]


def agencies() -> list[Agency]:
    return [demo_agency(a, name, LABEL) for a, name in AGENCIES]


def pairs() -> list[tuple[str, str]]:
    """(issuer, type) of every credential kind the body issues, in a fixed order."""
    from contracts.catalogue import ISSUERS

    return [(issuer, kind) for kind, issuer in ISSUERS.items()] + [
        (issuer, t["id"]) for t, issuer in EXTRA_TYPES]


def setup_txs(ags: list[Agency]) -> list[Tx]:
    """Governance after genesis: catalogue types, grants, credit policy and rules; extra types."""
    from contracts.catalogue import setup_actions

    actions = setup_actions({}, T0, T0 + 50 * YEAR)
    for t, issuer in EXTRA_TYPES:
        actions.append(("register_type", {"type": t}))
        actions.append(("grant", {"agency": issuer, "type": t["id"], "from": T0,
                                  "until": T0 + 50 * YEAR}))
    signers = ags[:QUORUM]
    return [governance_tx(NET, seq, action, args, signers)
            for seq, (action, args) in enumerate(actions, 1)]


def spread_index(k: int, bits: int = 20) -> int:
    """The ``k``-th status index of a list of 2^bits, random-looking as issued ones are: an odd
    multiplier is a bijection modulo 2^bits, so indexes repeat only after 2^bits of them.
    (Indexes in order would let LevelDB take their keys far more cheaply than real ones.)"""
    return (k * 2_654_435_761) & ((1 << bits) - 1)


@dataclass(frozen=True)
class Params:
    """What fixes the chain's content (stored beside the store as ``<path>.chaingen.json``)."""

    block_issues: int = 1440  # about 2,000 transactions per block, as the solo orderer cuts
    index_bits: int = 20      # status indexes per issuer/type: STATUS_LIST_SIZE (2^20)
    lag: int = 1000           # issues between an issue and the status changes it gets
    checkpoint_every: int = 50

    def to_json(self) -> dict[str, int]:
        return {"block_issues": self.block_issues, "index_bits": self.index_bits,
                "lag": self.lag, "checkpoint_every": self.checkpoint_every,
                "generation": GENERATION}


GENERATION = 4
"""Bumped whenever what the generator writes changes (2: status changes signed at about their
block's time, as ledger.state now requires; 3: credit events too, ADR 69; 4: approval
decisions too, ADR 70): a chain of another
generation is not reused."""


# -- the plan: small tuples, made in the writer, signed in the workers ---------------------------

Op = tuple[Any, ...]


def plan(start: int, stop: int, p: Params) -> list[Op]:
    """Operations for issues ``[start, stop)``, in commit order."""
    ops: list[Op] = []
    lag = p.lag
    for i in range(start, stop):
        ops.append(("issue", i))
        c = i - lag
        if c >= 0:
            if c % 20 in (3, 13):
                ops.append(("status", c, "suspended", "under_review", i))
            elif c % 20 == 7:
                ops.append(("status", c, "revoked", "withdrawn_by_issuer", i))
        c = i - 2 * lag
        if c >= 0:
            if c % 60 == 3:
                ops.append(("status", c, "valid", "review_cleared", i))
            elif c % 60 == 13:
                ops.append(("status", c, "revoked", "review_upheld", i))
        if i % 6 == 0:
            ops.append(("credit", i // 6))
        if i % 25 == 0:
            ops.append(("approval", i // 25))
    return ops


class _Signer:
    """Turns plan operations into signed envelope bytes (one instance per worker process)."""

    def __init__(self, p: Params, rule_hashes: dict[str, bytes]) -> None:
        self.p = p
        self.keys: dict[str, PrivateKey] = {a.id: a.issuer_key for a in agencies()}
        self.kids = {a: k.kid for a, k in self.keys.items()}
        self.pairs = pairs()
        self.rule_hashes = rule_hashes
        self.mask = (1 << p.index_bits) - 1
        from contracts.catalogue import RULES

        self.rules = RULES

    def _signed(self, agency: str, kind: str, body: dict[str, Any]) -> bytes:
        # make_tx without its schema round trip: these bodies are ours, the auditor re-parses
        payload = codec.encode({"net": NET, "type": kind, "body": body})
        key = self.keys[agency]
        return codec.encode({"v": 1, "payload": payload,
                             "sigs": [{"kid": self.kids[agency], "sig": key.sign("tx", payload)}]})

    def credential_id(self, i: int) -> bytes:
        return hashlib.sha256(b"chaingen/credential/%d" % i).digest()

    def issue(self, i: int) -> bytes:
        issuer, kind = self.pairs[i % len(self.pairs)]
        k = i // len(self.pairs)
        if k > self.mask:
            raise ValueError(f"more than 2^{self.p.index_bits} credentials of {issuer}/{kind}")
        index = spread_index(k, self.p.index_bits)
        return self._signed(issuer, "issue", {
            "credential_id": self.credential_id(i), "issuer": issuer, "type": kind,
            # valid_from no earlier than its block's time allows (state.MAX_BACKDATE)
            "valid_from": T0 + i // self.p.block_issues,
            "valid_until": T0 + 10 * YEAR + i % 1000 * 86_400,
            "status_index": index, "ts": T0 + i})

    def status(self, c: int, status: str, reason: str, i: int) -> bytes:
        """A change of credential ``c``, in the block of issue ``i``: signed at about that
        block's time (state.MAX_BACKDATE bounds ``ts`` both ways)."""
        issuer = self.pairs[c % len(self.pairs)][0]
        return self._signed(issuer, "status", {"credential_id": self.credential_id(c),
                                               "status": status, "reason": reason,
                                               "ts": T0 + i // self.p.block_issues})

    def credit(self, j: int) -> bytes:
        """Credit event ``j``, in the block of issue ``6 * j`` (see :func:`plan`): signed at
        about that block's time (state.MAX_BACKDATE bounds ``ts`` both ways, ADR 69)."""
        subject = hashlib.sha256(b"chaingen/subject/%d" % (j // 3)).digest()
        ts = T0 + 6 * j // self.p.block_issues
        if j % 9 == 2:  # an appeal upheld: withdraw the subject's previous event
            agency, category, _ = CREDIT[(j - 1) % len(CREDIT)]
            withdrawn = hashlib.sha256(self.credit(j - 1)).digest()
            return self._signed(agency, "credit", {
                "subject": subject, "category": category, "points": 0,
                "reason": "appeal_upheld", "date": T0, "expiry": T0 + 5 * YEAR,
                "withdraws": withdrawn, "ts": ts})
        agency, category, points = CREDIT[j % len(CREDIT)]
        return self._signed(agency, "credit", {
            "subject": subject, "category": category, "points": points - j % 7,
            "reason": "late_filing" if points < 0 else "on_time_payments", "date": T0,
            "expiry": T0 + (1 + j % 5) * YEAR, "ts": ts})

    def approval(self, j: int) -> bytes:
        service = SERVICES[j % len(SERVICES)]
        rule = self.rules[service]
        clauses = rule["clauses"]
        if rule["fast_track"] and j % 3 == 0:
            decision, path, reasons = "approved", "fast_track", [rule["fast_track_reason"]]
        elif clauses and j % 5 == 1:
            cl = clauses[j % len(clauses)]
            decision, path, reasons = cl["decision"], "standard", [cl["reason"]]
        else:
            decision, path = rule["otherwise"]["decision"], "standard"
            reasons = [rule["otherwise"]["reason"]]
        return self._signed(rule["agency"], "approval", {
            "service": service, "rule_hash": self.rule_hashes[service], "decision": decision,
            "path": path, "reasons": reasons,
            "evidence": hashlib.sha256(b"chaingen/evidence/%d" % j).digest(),
            "ts": T0 + 25 * j // self.p.block_issues})  # its block's time (ADR 70)

    def sign(self, ops: list[Op]) -> list[bytes]:
        out = []
        for op in ops:
            kind = op[0]
            if kind == "issue":
                out.append(self.issue(op[1]))
            elif kind == "status":
                out.append(self.status(op[1], op[2], op[3], op[4]))
            elif kind == "credit":
                out.append(self.credit(op[1]))
            else:
                out.append(self.approval(op[1]))
        return out


_worker: list[_Signer] = []


def _init_worker(p: Params, rule_hashes: dict[str, bytes]) -> None:
    _worker[:] = [_Signer(p, rule_hashes)]


def _sign(ops: list[Op]) -> list[bytes]:
    return _worker[0].sign(ops)


# -- the writer -----------------------------------------------------------------------------------


@dataclass
class Progress:
    """Reported after every block: log size, height, seconds since start, txs in this run."""

    log_size: int
    height: int
    elapsed: float
    txs: int


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".chaingen.json")


def _founding(store: Store) -> int:
    """Genesis and the set-up block; returns the height of the first body block."""
    ags = agencies()
    if store.head is None:
        store.write_block(build_genesis(genesis_tx(NET, ags, QUORUM, T0)))
    head, reg = store.head, store.registry
    if head is None or reg is None:
        raise SystemExit("chaingen: the store lost its head")
    if head.height == 0:  # also a run stopped between the two blocks: write the set-up block
        result = build_block(head, reg, store, store.frontier, setup_txs(ags), T0 + 1)
        if result.rejected:
            raise SystemExit(f"chaingen set-up rejected: {result.rejected[0][1]}")
        store.write_block(result)
    return 2


def rule_hashes(registry: Registry) -> dict[str, bytes]:
    out = {}
    for s in SERVICES:
        rule = registry.rule(s)
        if rule is None:
            raise SystemExit(f"chaingen: rule {s} is not registered")
        out[s] = rule_hash(rule)
    return out


def generate(path: Path | str, size: int, *, params: Params | None = None,
             workers: int | None = None, ahead: int = 6,
             progress: Callable[[Progress], None] | None = None) -> Store:
    """Build (or extend) the chain at ``path`` until it holds at least ``size`` log entries.

    Returns the open store; the caller closes it. Resumes a store this function built with the
    same parameters; refuses one built with others.
    """
    path = Path(path)
    p = params or Params()
    side = sidecar(path)
    if side.exists():
        if json.loads(side.read_text()) != p.to_json():
            raise SystemExit(f"{path} was generated with other parameters ({side})")
    elif path.exists():
        raise SystemExit(f"{path} exists but was not made by chaingen")
    # the parameters first, whole (a build stopped before its store exists is resumed; one
    # stopped while writing them left a file the next run could not read)
    write_atomic(side, json.dumps(p.to_json()).encode(), 0o644)
    store = Store(path)
    try:
        first = _founding(store)
        head, reg = store.head, store.registry
        if head is None or reg is None:
            raise SystemExit("chaingen: the store lost its head")
        if head.log_size >= size:
            return store
        next_block = head.height + 1
        hashes = rule_hashes(reg)
        ctx = multiprocessing.get_context("spawn")
        n_workers = workers or multiprocessing.cpu_count()
        signers = agencies()[:QUORUM]
        start = time.perf_counter()
        done = 0
        with ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(p, hashes)) as pool:
            inflight: deque[Future[list[bytes]]] = deque()
            planned = next_block
            while True:
                while len(inflight) < ahead:
                    i0 = (planned - first) * p.block_issues
                    inflight.append(pool.submit(_sign, plan(i0, i0 + p.block_issues, p)))
                    planned += 1
                raws = inflight.popleft().result()
                head, reg = store.head, store.registry
                if head is None or reg is None:
                    raise SystemExit("chaingen: the store lost its head")
                if head.log_size >= size:
                    break
                txs = [Tx.from_checked_bytes(r) for r in raws]
                t = T0 + 10 + head.height
                result = build_block(head, reg, store, store.frontier, txs, t,
                                     checked=[True] * len(txs))
                if result.rejected or result.duplicates or result.head is None:
                    why = result.rejected[0][1] if result.rejected else "duplicates"
                    raise SystemExit(f"chaingen block {head.height + 1} failed: {why}")
                extra: dict[bytes, bytes] = {}
                if (result.head.height - first) % p.checkpoint_every == p.checkpoint_every - 1:
                    cp = sign_checkpoint(NET, result.head, [(a.id, a.node_key) for a in signers])
                    extra[checkpoint_key(result.head.log_size)] = cp.to_text().encode()
                store.write_block(result, extra)
                done += len(txs)
                if result.head.height % 100 == 0:  # state reads touch mapped table pages
                    store.release_mapped_pages()
                if progress is not None:
                    progress(Progress(result.head.log_size, result.head.height,
                                      time.perf_counter() - start, done))
                if result.head.log_size >= size:
                    break
            for f in inflight:
                f.cancel()
        return store
    except BaseException:
        store.close()
        raise


def main() -> None:
    ap = argparse.ArgumentParser(prog="scripts/chaingen.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", type=Path, help="store folder (created, or extended)")
    ap.add_argument("--size", type=int, required=True, help="log entries to reach")
    ap.add_argument("--workers", type=int, default=None, help="signing processes (cores)")
    ap.add_argument("--log", type=Path, default=None,
                    help="append JSON lines {log_size, tx_per_s, ...} every ~100k entries")
    args = ap.parse_args()
    last = [0.0, 0, 0]  # elapsed, txs, log size at the last report

    def report(pr: Progress) -> None:
        if pr.log_size - last[2] < 100_000:
            return
        rate = (pr.txs - last[1]) / max(pr.elapsed - last[0], 1e-9)
        line = {"log_size": pr.log_size, "height": pr.height, "elapsed_s": round(pr.elapsed, 1),
                "tx_per_s": round(rate), "time": time.time()}
        last[:] = [pr.elapsed, pr.txs, pr.log_size]
        print(json.dumps(line), flush=True)
        if args.log:
            with args.log.open("a") as f:
                f.write(json.dumps(line) + "\n")

    start = time.perf_counter()
    store = generate(args.path, args.size, workers=args.workers, progress=report)
    head = store.head
    store.close()
    assert head is not None
    print(json.dumps({"done": True, "log_size": head.log_size, "height": head.height,
                      "seconds": round(time.perf_counter() - start, 1)}), flush=True)


if __name__ == "__main__":
    main()
