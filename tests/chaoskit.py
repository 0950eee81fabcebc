"""A Jepsen-style randomized fault run on a real local cluster, and its checker.

:class:`Chaos` runs a 3-agency cluster (etcd members + nodes on 127.0.0.1, a small retention so
that pruning and catch-up from peers happen) for a fixed time under a seeded RNG: client threads
submit issuance transactions (``POST /v1/tx`` and ``/v1/tx/batch``) to random nodes, sending the
same bytes again after an error, a timeout or a pending answer, and record each one as
acknowledged (200 with its receipt), refused (with the message) or unknown. Meanwhile the main
thread injects faults every few seconds, one agency impaired at a time (sometimes a second one
for 1-3 s): SIGKILL of a node, of an etcd member (the Raft leader half the time) or of both,
SIGSTOP of a node or member for 1-20 s (sometimes 31-45 s, past PRUNER_QUIET and PEER_QUIET),
restarts (some late enough to fall past retention, some killed again while they catch up),
now and then two etcd members frozen together for 5-35 s (no quorum), and governance changes
(``register_type``). The first agency, whose node prunes etcd, is hit more often. An extra
"oracle" client sends only to nodes not stopped or killed: its acknowledgements measure the
network's availability without a client's timeout on a frozen node.

Then everything is healed, and :meth:`Chaos.check` waits for convergence and checks:

1. every acknowledged transaction is in the log exactly once, at its receipt's index; nothing
   refused is in it; no transaction id is in it twice (:func:`judge`); a sample is looked up by
   id on every node;
2. every node has the same log, head (height and hash) and final checkpoint; none halted; no
   equivocation evidence;
3. ``ledger audit`` of every node's stopped store says CLEAN;
4. the longest time with no acknowledgement while a quorum was up is reported (not asserted:
   tests do not bound speed on this shared machine).

Faults are driven from the thread that started the cluster: LocalCluster's processes die with
the thread that started them (``die_with_parent``).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from clusterkit import DEGREE, PASS, Net, free_base

from ledger import codec
from ledger.network import governance_tx, issue_tx
from node.cluster import LocalCluster, create_cluster

WAIT = 2  # the `wait` a client asks a node for; a pending answer is sent again
TIMEOUT = httpx.Timeout(4.0, connect=1.0)  # a stopped node accepts, then never answers
GIVE_UP = 90.0  # a transaction not answered for this long stays unknown


@dataclass
class TxRecord:
    raw: bytes
    txid: str
    sent: float
    attempts: int = 0
    status: str = "unknown"  # acked, refused, unknown
    receipt: dict[str, Any] | None = None
    refusals: list[str] = field(default_factory=list)
    acked_at: float | None = None


def judge(records: Iterable[TxRecord], log: Sequence[str]) -> tuple[list[str], dict[str, int]]:
    """Problems of the client's records against the log (transaction ids in log order), and
    counts: each acknowledged transaction once at its receipt's index, nothing refused, no id
    twice."""
    problems: list[str] = []
    where: dict[str, list[int]] = {}
    for i, t in enumerate(log):
        where.setdefault(t, []).append(i)
    twice = {t: p for t, p in where.items() if len(p) > 1}
    if twice:
        problems.append(f"{len(twice)} transaction ids in the log more than once, e.g. "
                        f"{list(twice.items())[:3]}")
    stats = {"acked": 0, "refused": 0, "unknown": 0, "unknown_committed": 0}
    for r in records:
        stats[r.status] += 1
        at = where.get(r.txid, [])
        if r.status == "acked":
            assert r.receipt is not None
            if len(at) != 1:
                problems.append(f"acknowledged {r.txid} is in the log {len(at)} times")
            elif at[0] != r.receipt["index"]:
                problems.append(f"acknowledged {r.txid} is at {at[0]}, its receipt says "
                                f"{r.receipt['index']}")
        elif r.status == "refused" and at:
            problems.append(f"refused {r.txid} ({r.refusals[:2]}) is in the log at {at}")
        elif at:
            stats["unknown_committed"] += 1
    return problems, stats


def longest_gap(start: float, end: float, acks: Iterable[float],
                down: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(the longest time between ``start``, acknowledgements and ``end`` not counting the
    spans in ``down`` (no quorum), when it began after ``start``)."""
    marks = [start, *sorted(t for t in acks if start <= t <= end), end]
    worst, at = 0.0, 0.0
    for x, y in itertools.pairwise(marks):
        gap = y - x - sum(max(0.0, min(y, b) - max(x, a)) for a, b in down)
        if gap > worst:
            worst, at = gap, x - start
    return worst, at


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.txs: dict[str, TxRecord] = {}
        self.acks: list[float] = []
        self.violations: list[str] = []
        self.events: list[tuple[float, str]] = []
        self.verbose = True

    def event(self, what: str) -> None:
        with self.lock:
            self.events.append((time.monotonic(), what))
        if self.verbose:
            print(f"[{time.strftime('%H:%M:%S')}] {what}", flush=True)

    def ack(self, rec: TxRecord, receipt: Mapping[str, Any]) -> None:
        with self.lock:
            if receipt.get("txid") != rec.txid:
                self.violations.append(f"a receipt for {receipt.get('txid')} answered "
                                       f"{rec.txid}")
                return
            if rec.status == "refused":
                self.violations.append(f"{rec.txid} refused ({rec.refusals}), then acknowledged")
            if rec.receipt is not None and (rec.receipt["index"], rec.receipt["height"]) != (
                    receipt["index"], receipt["height"]):
                self.violations.append(f"{rec.txid}: two receipts, {rec.receipt} and "
                                       f"{dict(receipt)}")
            if rec.status != "acked":
                rec.acked_at = time.monotonic()
                self.acks.append(rec.acked_at)
            rec.status, rec.receipt = "acked", dict(receipt)

    def refuse(self, rec: TxRecord, msg: str) -> None:
        with self.lock:
            rec.refusals.append(msg)
            if rec.status == "acked":
                self.violations.append(f"{rec.txid} acknowledged, then refused: {msg}")
            else:
                rec.status = "refused"


class Chaos:
    """One seeded run on a new cluster in ``folder`` (see the module's docstring)."""

    def __init__(self, seed: int, duration: float, folder: Path, retention: int = 5,
                 clients: int = 2) -> None:
        self.rng = random.Random(seed)
        self.seed, self.duration, self.folder, self.clients = seed, duration, folder, clients
        create_cluster(folder, 3, PASS, base_port=free_base(3), retention=retention,
                       network=f"chaos-{seed}")
        self.cluster = LocalCluster(folder, PASS)
        self.rec = Recorder()
        self.index = 0
        self.index_lock = threading.Lock()
        self.ending = threading.Event()
        self.state: dict[str, dict[str, str]] = {}  # agency → node/etcd → up/stopped/killed
        self.heals: list[tuple[float, str, str, str]] = []  # (due, agency, part, action)
        self.faults: dict[str, int] = {}
        self.quorum_down: list[tuple[float, float]] = []
        self._down_since: float | None = None
        self.governed: list[str] = []
        self.oracle_acks: list[float] = []
        self.gov_lock = threading.Lock()
        self.start = 0.0

    # -- processes --
    def _proc(self, agency: str, part: str) -> subprocess.Popen[bytes] | None:
        procs = self.cluster._nodes if part == "node" else self.cluster._etcd
        return procs.get(agency)

    def impaired(self) -> set[str]:
        return {a for a, s in self.state.items() if any(v != "up" for v in s.values())}

    def _note_quorum(self) -> None:
        up = (sum(s["etcd"] == "up" for s in self.state.values()) >= 2
              and any(s["node"] == "up" for s in self.state.values()))
        now = time.monotonic()
        if not up and self._down_since is None:
            self._down_since = now
        elif up and self._down_since is not None:
            self.quorum_down.append((self._down_since, now))
            self._down_since = None

    def _count(self, kind: str) -> None:
        self.faults[kind] = self.faults.get(kind, 0) + 1

    def pause(self, agency: str, part: str, seconds: float) -> None:
        p = self._proc(agency, part)
        if p is None:
            return
        os.kill(p.pid, signal.SIGSTOP)
        self.state[agency][part] = "stopped"
        self.heals.append((time.monotonic() + seconds, agency, part, "cont"))
        self._count(f"sigstop_{part}")
        self.rec.event(f"SIGSTOP {part} {agency} for {seconds:.1f} s")

    def kill(self, agency: str, part: str, seconds: float, then: str = "restart") -> None:
        {"node": self.cluster.kill_node, "etcd": self.cluster.kill_etcd,
         "both": self.cluster.kill}[part](agency)
        for x in (["node", "etcd"] if part == "both" else [part]):
            self.state[agency][x] = "killed"
        self.heals.append((time.monotonic() + seconds, agency, part, then))
        self._count(f"kill_{part}")
        self.rec.event(f"SIGKILL {part} {agency}, restart in {seconds:.1f} s")

    def _heal(self, agency: str, part: str, action: str) -> None:
        if action == "kill":  # a node killed again while it catches up from its peers
            self.kill(agency, part, self.rng.uniform(1, 5))
            return
        if action == "cont":
            p = self._proc(agency, part)
            if p is not None:
                os.kill(p.pid, signal.SIGCONT)
            self.state[agency][part] = "up"
            self.rec.event(f"SIGCONT {part} {agency}")
            return
        t0 = time.monotonic()
        if part in ("etcd", "both"):
            self.cluster.restart_etcd(agency, timeout=90)
            self.state[agency]["etcd"] = "up"
            self._note_quorum()
        if part in ("node", "both"):
            self.cluster.restart(agency, timeout=120, etcd=False)
            self.state[agency]["node"] = "up"
        self.rec.event(f"restarted {part} {agency} ({time.monotonic() - t0:.1f} s)")
        if action == "restart_rekill":
            self.heals.append((time.monotonic() + self.rng.uniform(0.2, 2), agency, "node",
                               "kill"))

    def heal_due(self, everything: bool = False) -> None:
        now = time.monotonic()
        due = [h for h in self.heals if everything or h[0] <= now]
        self.heals = [h for h in self.heals if h not in due]
        due.sort(key=lambda h: (h[3] != "cont", h[2] == "node"))  # SIGCONT, etcd, nodes
        for _, agency, part, action in due:
            self._heal(agency, part, action)
            self._note_quorum()

    # -- clients --
    def _new_tx(self) -> TxRecord:
        with self.index_lock:
            self.index += 1
            i = self.index
        now = int(time.time())
        cid = hashlib.sha256(b"chaos-%d-%d" % (self.seed, i)).digest()
        tx = issue_tx(self.cluster.network, self.net.agencies["edu"], cid, "degree", i,
                      now - 60, now + 86400, ts=now)
        rec = TxRecord(tx.raw, tx.txid.hex(), time.monotonic())
        with self.rec.lock:
            self.rec.txs[rec.txid] = rec
        return rec

    def _client(self, k: int, http: httpx.Client, oracle: bool = False) -> None:
        """Submit until the run ends, then until each is answered or given up on. An
        ``oracle`` client sends only to nodes the fault injector has not stopped or killed
        (as a load balancer with perfect health checks would): its acknowledgements measure
        the network's availability, not a client's wait on a stopped node."""
        rng = random.Random(self.seed * 1000 + k)
        pending: list[TxRecord] = []
        shun: dict[str, float] = {}  # a node that timed out or failed, until when
        while not (self.ending.is_set() and not pending):
            if not self.ending.is_set():
                pending.extend(self._new_tx() for _ in range(
                    1 if rng.random() < 0.5 else rng.randint(2, 12)))
            now = time.monotonic()
            pending = [r for r in pending if r.status == "unknown" and now - r.sent < GIVE_UP]
            if not pending:
                continue
            todo = pending[:32]
            good = [a for a in self.net.ids if shun.get(a, 0.0) < now and not (
                oracle and self.state[a]["node"] != "up")]
            via = rng.choice(good or self.net.ids)
            url = self.net.url(via)
            for r in todo:
                r.attempts += 1
            try:
                if len(todo) == 1 and rng.random() < 0.7:
                    resp = http.post(f"{url}/v1/tx", params={"wait": WAIT}, content=todo[0].raw)
                    if resp.status_code == 200:
                        self.rec.ack(todo[0], resp.json())
                        if oracle:
                            self.oracle_acks.append(time.monotonic())
                    elif resp.status_code == 409:
                        self.rec.refuse(todo[0], f"{via}: {resp.text[:300]}")
                else:
                    resp = http.post(f"{url}/v1/tx/batch", params={"wait": WAIT},
                                     content=codec.encode([r.raw for r in todo]))
                    if resp.status_code == 200:
                        for r, item in zip(todo, resp.json(), strict=True):
                            if item["status"] == "committed":
                                self.rec.ack(r, item)
                                if oracle:
                                    self.oracle_acks.append(time.monotonic())
                            elif item["status"] in ("rejected", "malformed"):
                                self.rec.refuse(r, f"{via}: {item['code']} {item['error']}")
                if resp.status_code >= 500:
                    shun[via] = time.monotonic() + 5
            except httpx.HTTPError:
                shun[via] = time.monotonic() + 10
                time.sleep(rng.uniform(0.1, 0.5))
            pending = [r for r in pending if r.status == "unknown"]
            time.sleep(rng.uniform(0.05, 0.4))

    def _governance(self, http: httpx.Client) -> None:
        with self.gov_lock:
            self.net.seq += 1
            seq = self.net.seq
            spec = dict(DEGREE, id=f"kind{seq}", title=f"Kind {seq}")
            tx = governance_tx(self.cluster.network, seq, "register_type", {"type": spec},
                               [self.net.agencies[a] for a in self.signers[seq % 3]])
            deadline = time.monotonic() + GIVE_UP
            while time.monotonic() < deadline:
                via = self.net.ids[int(time.monotonic() * 10) % 3]
                try:
                    r = http.post(f"{self.net.url(via)}/v1/tx", params={"wait": WAIT},
                                  content=tx.raw)
                except httpx.HTTPError:
                    time.sleep(0.5)
                    continue
                if r.status_code == 200:
                    self.rec.event(f"governance seq {seq} committed")
                    self.governed.append(tx.txid.hex())
                    return
                if r.status_code == 409:
                    self.rec.violations.append(f"governance seq {seq} refused: {r.text}")
                    return
                time.sleep(0.5)
            self.rec.violations.append(f"governance seq {seq} not committed in {GIVE_UP} s")

    # -- the run --
    def run(self) -> dict[str, Any]:
        """Run, heal, check; the report (its ``problems`` empty when every check passed)."""
        self.cluster.start()
        try:
            self.net = Net(self.folder, self.cluster)
            self.signers = [self.net.ids[:2], self.net.ids[1:], self.net.ids[::2]]
            for a in self.net.ids:
                self.state[a] = {"node": "up", "etcd": "up"}
            self.net.setup_degree("edu", int(time.time()))
            return self._run()
        finally:
            for _, agency, part, action in self.heals:
                p = self._proc(agency, part) if action == "cont" else None
                if p is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p.pid, signal.SIGCONT)
            self.net.close()
            self.cluster.stop()

    def _leader_or(self, agency: str) -> str:
        if self.rng.random() < 0.5:
            try:
                leader = self.cluster.etcd_leader()
            except Exception as e:  # no leader: the random one then
                self.rec.event(f"no etcd leader: {e}")
                return agency
            self._count("leader_targeted")
            return leader
        return agency

    def _inject(self, http: httpx.Client, helpers: list[threading.Thread]) -> None:
        rng, ids = self.rng, self.net.ids
        impaired = self.impaired()
        roll = rng.random()
        if roll < 0.12:
            self._count("governance")
            g = threading.Thread(target=self._governance, args=(http,), daemon=True)
            g.start()
            helpers.append(g)
        elif impaired:
            if roll < 0.25:  # a second agency, briefly
                self._count("second_agency")
                self.pause(rng.choice([a for a in ids if a not in impaired]),
                           rng.choice(["node", "etcd"]), rng.uniform(1, 3))
        else:
            # the first agency's node prunes etcd (the lowest live one): hit it more often
            a, kind = ids[0] if rng.random() < 0.3 else rng.choice(ids), rng.random()
            long = rng.random() < 0.5  # past retention: a catch-up from peers
            # a pause past PRUNER_QUIET / PEER_QUIET: the others take it for gone, another
            # node prunes, and it wakes up as if nothing happened
            pause = rng.uniform(31, 45) if rng.random() < 0.2 else rng.uniform(1, 20)
            if kind < 0.05:  # no quorum: two members frozen, puts unconfirmed, then taken
                self._count("quorum_outage")
                seconds = rng.uniform(5, 35)
                for b in rng.sample(ids, 2):
                    self.pause(b, "etcd", seconds)
            elif kind < 0.2:
                self.kill(a, "node", rng.uniform(20, 45) if long else rng.uniform(1, 8),
                          "restart_rekill" if long and rng.random() < 0.4 else "restart")
            elif kind < 0.4:
                self.kill(self._leader_or(a), "etcd", rng.uniform(1, 25))
            elif kind < 0.5:
                self.kill(a, "both", rng.uniform(20, 45) if long else rng.uniform(1, 8))
            elif kind < 0.75:
                self.pause(a, "node", pause)
            else:
                self.pause(self._leader_or(a), "etcd", pause)
        self._note_quorum()

    def _run(self) -> dict[str, Any]:
        ctx = self.cluster.ssl_context()
        https = [httpx.Client(verify=ctx, timeout=TIMEOUT) for _ in range(self.clients + 2)]
        workers = [threading.Thread(target=self._client, args=(k, https[k], k == self.clients),
                                    daemon=True) for k in range(self.clients + 1)]
        helpers: list[threading.Thread] = []
        self.start = time.monotonic()
        end = self.start + self.duration
        for w in workers:
            w.start()
        next_fault = self.start + self.rng.uniform(3, 6)
        try:
            while time.monotonic() < end:
                time.sleep(0.1)
                self.heal_due()
                self._note_quorum()
                if time.monotonic() >= next_fault:
                    next_fault = time.monotonic() + self.rng.uniform(2, 7)
                    self._inject(https[-1], helpers)
            self.rec.event("run over: healing everything")
            self.heal_due(everything=True)
            self._note_quorum()
        finally:
            self.ending.set()
            for t in workers + helpers:
                t.join(timeout=GIVE_UP + 30)
            for h in https:
                h.close()
        return self.check(end)

    # -- the checker --
    def _get(self, url: str, **params: int) -> httpx.Response:
        """GET, waiting out the node's rate limit (429) and its catch-up replies' limit."""
        for _ in range(60):
            got = self.net.http.get(url, params=params)
            if got.status_code not in (429, 503) or "/health" in url:
                return got
            time.sleep(1.0)
        return got

    def log_of(self, agency: str, height: int) -> list[str]:
        """Transaction ids of ``agency``'s log up to ``height``, in order (its blocks)."""
        ids: list[str] = []
        h = 0
        while h <= height:
            got = self._get(f"{self.net.url(agency)}/v1/sync/blocks", **{"from": h,
                                                                          "count": 100})
            got.raise_for_status()
            blocks = codec.decode(got.content, max_size=64 << 20, what="blocks")
            if not blocks:
                raise AssertionError(f"{agency} served no block from {h}")
            for _header, entries in blocks:
                ids.extend(hashlib.sha256(e).hexdigest() for e in entries)
            h += len(blocks)
        return ids

    def _settled(self) -> bool:
        net = self.net
        try:
            healths = [net.health(a) for a in net.ids]
            hashes = net.head_hashes()
        except (httpx.HTTPError, ValueError):
            return False
        if not (len(hashes) == 3 and len(set(hashes.values())) == 1
                and all(h["final_log_size"] == h["log_size"] for h in healths)):
            return False
        # the same final checkpoint, signatures and all: each node merges every co-signature
        finals = {self.net.http.get(f"{net.url(a)}/v1/checkpoint").text for a in net.ids}
        return len(finals) == 1

    def check(self, end: float) -> dict[str, Any]:
        net, rec = self.net, self.rec
        problems: list[str] = list(rec.violations)
        exited = self.cluster.exited()
        if exited:
            problems.append(f"processes ended on their own: {exited}")
            for agency, what, _, _ in sorted(exited, key=lambda e: e[1] == "node"):
                if what == "node":
                    self.cluster.restart(agency, etcd=False)
                else:
                    self.cluster.restart_etcd(agency)
        t0 = time.monotonic()
        try:
            net.wait_until("every node at the same final head", self._settled, timeout=240)
        except AssertionError as e:
            problems.append(str(e))
        converged = time.monotonic() - t0
        healths = {a: net.health(a) for a in net.ids}
        heads = {a: self._get(f"{net.url(a)}/v1/head").json() for a in net.ids}
        finals = {a: self._get(f"{net.url(a)}/v1/checkpoint").text for a in net.ids}
        evidence = {a: self._get(f"{net.url(a)}/v1/evidence").json() for a in net.ids}
        counters = {a: self._get(f"{net.url(a)}/v1/cluster").json()["counters"]
                    for a in net.ids}
        if len({(h["height"], h["hash"]) for h in heads.values()}) != 1:
            problems.append(f"the heads differ: {heads}")
        if len(set(finals.values())) != 1:
            problems.append(f"the final checkpoints differ: {finals}")
        notes = []
        for a, h in healths.items():
            if h["status"] == "halted" or h.get("halted"):
                problems.append(f"{a} halted: {h}")
            elif h["status"] != "ok":
                notes.append(f"{a} is {h['status']}: {h['problem']}")
        problems += [f"{a} holds equivocation evidence: {json.dumps(ev)[:2000]}"
                     for a, ev in evidence.items() if ev]
        logs = {a: self.log_of(a, heads[a]["height"]) for a in net.ids}
        first = net.ids[0]
        problems += [f"{a}'s log differs from {first}'s" for a in net.ids[1:]
                     if logs[a] != logs[first]]
        found, stats = judge(rec.txs.values(), logs[first])
        problems += found
        problems += [f"governance {g} is in the log {logs[first].count(g)} times"
                     for g in self.governed if logs[first].count(g) != 1]
        acked = [r for r in rec.txs.values() if r.status == "acked"]
        for r in random.Random(self.seed).sample(acked, min(100, len(acked))):
            assert r.receipt is not None
            for a in net.ids:
                got = self._get(f"{net.url(a)}/v1/tx/{r.txid}")
                if got.status_code != 200 or got.json()["index"] != r.receipt["index"]:
                    problems.append(f"GET /v1/tx/{r.txid} on {a}: {got.status_code} "
                                    f"{got.text[:200]}")
        self._note_quorum()
        worst, worst_at = longest_gap(self.start, end, rec.acks, self.quorum_down)
        oracle, oracle_at = longest_gap(self.start, end, self.oracle_acks, self.quorum_down)
        net.close()
        self.cluster.stop()  # the stores are closed: audited as they are on disk
        audits = {}
        ledger_cli = Path(sys.executable).parent / "ledger"
        for a in net.ids:
            out = subprocess.run([str(ledger_cli), "audit", str(self.folder / a / "data")],
                                 capture_output=True, text=True, check=False)
            clean = out.returncode == 0 and out.stdout.strip().endswith("CLEAN")
            audits[a] = "CLEAN" if clean else f"exit {out.returncode}"
            if not clean:
                problems.append(f"ledger audit of {a}: exit {out.returncode}\n"
                                f"{out.stdout[-2000:]}{out.stderr[-2000:]}")
        return {"seed": self.seed, "duration_s": self.duration, "faults": self.faults,
                "sent": len(rec.txs), **stats, "log_size": len(logs[first]),
                "height": heads[first]["height"], "converged_in_s": round(converged, 1),
                "quorum_down_s": round(sum(b - a for a, b in self.quorum_down), 1),
                "longest_unacknowledged_with_quorum_s": round(worst, 2),
                "it_began_at_s": round(worst_at, 1),
                "longest_unacknowledged_to_the_oracle_client_s": round(oracle, 2),
                "that_began_at_s": round(oracle_at, 1),
                "synced_blocks": {a: c["synced_blocks"] for a, c in counters.items()},
                "pruned_batches": {a: c["pruned_batches"] for a, c in counters.items()},
                "audits": audits, "notes": notes, "problems": problems}

    def events(self) -> list[tuple[float, str]]:
        return [(round(t - self.start, 2), e) for t, e in self.rec.events]


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description="a randomized fault run on a local cluster")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--duration", type=float, default=300.0)
    p.add_argument("--folder", type=Path, required=True)
    p.add_argument("--retention", type=int, default=5)
    args = p.parse_args()
    chaos = Chaos(args.seed, args.duration, args.folder, args.retention)
    report = chaos.run()
    print(json.dumps(report, indent=1))
    (args.folder / "report.json").write_text(json.dumps(report, indent=1))
    (args.folder / "events.json").write_text(json.dumps(chaos.events(), indent=0))
    sys.exit(1 if report["problems"] else 0)


if __name__ == "__main__":
    main()
