"""``scripts/bench cluster``: a real 3-agency network (etcd members + nodes over HTTPS) on this
machine.

Figures, each against one core's Ed25519 verify rate measured in the same run:

* committed transactions per second, submitted in batches (``POST /v1/tx/batch``) to all three
  nodes at once; every node verifies and applies every transaction (target >= 0.35). Measured in
  ``rounds`` rounds on the same network, each between two reference measurements taken while
  the network idles; the figure is the median round's ratio, and every round is reported (this
  shared machine's speed moves by a third within minutes, ADR 27);
* p50 / p99 commit latency of single transactions (``POST /v1/tx`` until the receipt) under no
  other load;
* failover: one agency's node and etcd member are killed with SIGKILL during ingest; the time
  until a transaction sent after the kill is committed and acknowledged by another node (the
  issue's bound is 5 s).

``scripts/bench catchup`` (:func:`bench_catchup`): on a network of its own with a retention of 5
blocks, one node is stopped while the other two commit ``n`` transactions, far past what etcd
keeps; the figure is how fast it then catches up from its peers over HTTPS (transactions per
second from its start until its head is theirs), the path of a node down for long and of a new
agency joining (ADR 65).
"""

from __future__ import annotations

import hashlib
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from bench_scale import p99
from chaingen import spread_index

from ledger import codec
from ledger.keys import load_private_key
from ledger.network import Agency, governance_tx, issue_tx
from node.cluster import (
    AGENCY_NAMES,
    ClusterError,
    LocalCluster,
    create_cluster,
    new_cluster_ports_free,
)

PASS = b"bench-cluster"
# Base ports of the two benches' networks (each takes base + 0/100/200 + agency): above the
# 20000-32000 the tests draw their clusters from (tests/clusterkit.py), below Linux's
# ephemeral range (32768-60999), so a bench beside a test run does not take a test's ports.
CLUSTER_BASE, CATCHUP_BASE = 32100, 32400
SPEC = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}


def _agencies(folder: Path, ids: list[str]) -> dict[str, Agency]:
    out = {}
    for a in ids:
        keys = folder / a / "data" / "keys"
        out[a] = Agency(a, AGENCY_NAMES[a], load_private_key(keys / f"{a}.node.key", PASS),
                        load_private_key(keys / f"{a}.issuer.key", PASS))
    return out


def _ports_free(base_port: int) -> None:
    """Refuse in words, before anything is made, a network whose ports another program
    holds (without it, a member failed to start and the bench ended in its log's tail)."""
    try:
        new_cluster_ports_free(3, base_port)
    except ClusterError as e:
        raise SystemExit(f"bench: {e}") from None


def bench_cluster(verify_rate: Callable[[], float], n: int = 12_000, chunk: int = 2000,
                  base_port: int = CLUSTER_BASE, rounds: int = 5) -> dict[str, Any]:
    _ports_free(base_port)
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        folder = Path(tmp) / "net"
        create_cluster(folder, 3, PASS, base_port=base_port, network="bench-cluster")
        cluster = LocalCluster(folder, PASS)
        cluster.start()
        try:
            result = _run(cluster, folder, n, chunk, verify_rate=verify_rate, rounds=rounds)
        finally:
            cluster.stop()
    return result


def bench_catchup(verify_rate: Callable[[], float], n: int = 30_000, chunk: int = 2000,
                  base_port: int = CATCHUP_BASE) -> dict[str, Any]:
    """Catch-up from peers: the rate at which a node stopped for ``n`` transactions takes them
    up again (fetched over HTTPS, checked against the final checkpoint, re-executed in full,
    written), against one core's verify rate measured just before and just after."""
    _ports_free(base_port)
    with tempfile.TemporaryDirectory(prefix="bench-catchup-") as tmp:
        folder = Path(tmp) / "net"
        create_cluster(folder, 3, PASS, base_port=base_port, network="bench-catchup",
                       retention=5)
        cluster = LocalCluster(folder, PASS)
        cluster.start()
        try:
            return _catchup(cluster, folder, n, chunk, verify_rate)
        finally:
            cluster.stop()


def _catchup(cluster: LocalCluster, folder: Path, n: int, chunk: int,
             verify_rate: Callable[[], float]) -> dict[str, Any]:
    ids = [m.agency for m in cluster.members]
    down, up = ids[-1], ids[:-1]
    http = httpx.Client(verify=cluster.ssl_context(), timeout=60.0)
    urls = {a: cluster.member(a).url for a in ids}
    try:
        raws = _setup(http, urls, _agencies(folder, ids), cluster.network, n)
        held = http.get(f"{urls[down]}/v1/head").json()["height"]  # before it falls behind
        cluster.kill_node(down)  # its etcd member stays: only the node falls behind
        _throughput(http, {a: urls[a] for a in up}, up, raws, chunk, 2)
        head = http.get(f"{urls[up[0]]}/v1/head").json()
        ref_before = verify_rate()
        start = time.perf_counter()
        cluster.restart(down, etcd=False)
        started = time.perf_counter()
        deadline = started + 600
        while http.get(f"{urls[down]}/v1/head").json()["hash"] != head["hash"]:
            if time.perf_counter() > deadline:
                raise SystemExit(f"{down} did not catch up to height {head['height']} in 600 s")
            time.sleep(0.02)
        done = time.perf_counter()
        ref = (ref_before + verify_rate()) / 2
        counters = http.get(f"{urls[down]}/v1/cluster").json()["counters"]
    finally:
        http.close()
    if not counters["synced_blocks"]:
        raise SystemExit(f"{down} caught up from etcd, not from its peers: nothing was pruned")
    rate = n / (done - started)
    # the blocks it took: not the genesis and governance blocks it held when it stopped
    return {"catchup_txs": n, "catchup_blocks": head["height"] - held,
            "catchup_from_height": held, "catchup_head_height": head["height"],
            "catchup_synced_blocks": counters["synced_blocks"],
            "catchup_start_seconds": started - start, "catchup_seconds": done - started,
            "catchup_tx_per_s": rate, "catchup_ratio": rate / ref,
            "ref_verify_per_s_one_core": ref}


def _setup(http: httpx.Client, urls: dict[str, str], ag: dict[str, Agency], net: str,
           count: int) -> list[bytes]:
    """Register the bench's type, grant it to edu, and return ``count`` signed issuances."""
    now = int(time.time())
    for seq, (action, args) in enumerate([
            ("register_type", {"type": SPEC}),
            ("grant", {"agency": "edu", "type": "degree", "from": 0, "until": 2 * now})], 1):
        tx = governance_tx(net, seq, action, args, [ag["civil"], ag["edu"]])
        r = http.post(f"{urls['civil']}/v1/tx", content=tx.raw, params={"wait": 30})
        r.raise_for_status()
    # Credential ids are hashes and status indexes spread, as issued: LevelDB takes keys that
    # arrive in order much more cheaply than these.
    # valid_from: no earlier than state.MAX_BACKDATE allows for blocks cut minutes from now
    return [issue_tx(net, ag["edu"], hashlib.sha256(b"cluster-%d" % i).digest(), "degree",
                     spread_index(i), now + 1800, 2 * now, now).raw for i in range(count)]


def _run(cluster: LocalCluster, folder: Path, n: int, chunk: int, *, rest: bool = True,
         per_node: int = 2, verify_rate: Callable[[], float] | None = None,
         rounds: int = 1) -> dict[str, Any]:
    ids = [m.agency for m in cluster.members]
    http = httpx.Client(verify=cluster.ssl_context(), timeout=60.0)
    urls = {a: cluster.member(a).url for a in ids}
    total = n * rounds
    raws = _setup(http, urls, _agencies(folder, ids), cluster.network, total + 400)

    # 1. throughput: batches to all three nodes in parallel, one client thread per node
    refs = [verify_rate()] if verify_rate is not None else []
    rates = []
    for k in range(rounds):
        rates.append(_throughput(http, urls, ids, raws[k * n:(k + 1) * n], chunk, per_node))
        if verify_rate is not None:
            refs.append(verify_rate())
    got: dict[str, Any] = {"cluster_txs": n, "cluster_rounds": rounds,
                           "cluster_tx_per_s_rounds": rates}
    if refs:
        ratios = [rate / ((refs[k] + refs[k + 1]) / 2) for k, rate in enumerate(rates)]
        mid = sorted(range(rounds), key=lambda k: ratios[k])[rounds // 2]
        got |= {"cluster_ratio_rounds": ratios, "cluster_ratio": ratios[mid],
                "cluster_tx_per_s": rates[mid],
                "ref_verify_per_s_one_core": (refs[mid] + refs[mid + 1]) / 2}
    else:
        got["cluster_tx_per_s"] = statistics.median(rates)
    if not rest:
        http.close()
        return got

    # 2. latency of single transactions, round robin over the nodes, no other load
    lat = []
    for i, raw in enumerate(raws[total:total + 200]):
        t0 = time.perf_counter()
        r = http.post(f"{urls[ids[i % 3]]}/v1/tx", content=raw, params={"wait": 30})
        r.raise_for_status()
        lat.append((time.perf_counter() - t0) * 1000)
    lat.sort()

    # 3. failover, worst case: kill the agency whose etcd member leads Raft (node and member)
    #    while another agency's node keeps submitting
    victim = cluster.etcd_leader()
    via = next(a for a in ids if a != victim)
    # (sent, acknowledged) of each committed transaction: the service has continued once a
    # transaction sent after the kill commits (one in flight at the kill, already ordered by
    # etcd, can be acknowledged a few ms later: that is not the network recovering)
    stamps: list[tuple[float, float]] = []
    stop = threading.Event()

    def steady() -> None:
        for raw in raws[total + 200:]:
            if stop.is_set():
                return
            sent = time.perf_counter()
            try:
                r = http.post(f"{urls[via]}/v1/tx", content=raw, params={"wait": 30})
            except httpx.HTTPError:
                continue
            if r.status_code == 200:
                stamps.append((sent, time.perf_counter()))

    worker = threading.Thread(target=steady)
    worker.start()
    while len(stamps) < 20 and worker.is_alive():
        time.sleep(0.01)
    if len(stamps) < 20:  # its transactions ran out, or none committed: no figure to make
        raise SystemExit(f"failover: only {len(stamps)} of the steady client's transactions "
                         f"committed through {via} before the kill; nothing was killed")
    killed = time.perf_counter()
    cluster.kill(victim)
    while not any(s > killed for s, _ in stamps) and worker.is_alive():
        time.sleep(0.01)
    stop.set()
    worker.join()
    http.close()
    resumed = min((a for s, a in stamps if s > killed), default=None)
    if resumed is None:  # a figure of NaN seconds is no figure
        raise SystemExit(f"failover: no transaction sent through {via} after {victim} was "
                         "killed committed: the network did not continue (see the nodes' logs)")
    return {**got, "latency_p50_ms": statistics.median(lat), "latency_p99_ms": p99(lat),
            "failover_seconds": resumed - killed, "failover_killed": victim}


def _throughput(http: httpx.Client, urls: dict[str, str], ids: list[str], raws: list[bytes],
                chunk: int, per_node: int) -> float:
    """Committed transactions per second of ``raws``, sent in ``chunk``-sized batches by
    ``per_node`` client threads per node; all nodes must reach the same head afterwards."""
    parts = [raws[i:i + chunk] for i in range(0, len(raws), chunk)]
    committed = [0]
    lock = threading.Lock()
    lanes = len(ids) * per_node

    def client(k: int) -> None:
        for j in range(k, len(parts), lanes):
            body = codec.encode(parts[j])
            r = http.post(f"{urls[ids[k % len(ids)]]}/v1/tx/batch", content=body,
                          params={"wait": 30})
            r.raise_for_status()
            ok = sum(1 for item in r.json() if item["status"] == "committed")
            with lock:
                committed[0] += ok

    threads = [threading.Thread(target=client, args=(k,)) for k in range(lanes)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if committed[0] != len(raws):
        raise SystemExit(f"only {committed[0]} of {len(raws)} transactions committed")
    heads = {a: http.get(f"{urls[a]}/v1/head").json()["hash"] for a in ids}
    deadline = time.monotonic() + 60
    while len(set(heads.values())) != 1 and time.monotonic() < deadline:
        time.sleep(0.2)
        heads = {a: http.get(f"{urls[a]}/v1/head").json()["hash"] for a in ids}
    if len(set(heads.values())) != 1:
        raise SystemExit(f"nodes did not converge: {heads}")
    return len(raws) / elapsed


def report(got: dict[str, Any]) -> None:
    ref = got["ref_verify_per_s_one_core"]
    rounds = ", ".join(f"{r:.2f}" for r in got["cluster_ratio_rounds"])
    print(f"reference  one core VerifyKey.verify          {ref:10,.0f} /s   (median round)")
    print(f"cluster    3 agencies, {got['cluster_txs']:,} txs committed   "
          f"{got['cluster_tx_per_s']:10,.0f} /s   ratio {got['cluster_ratio']:.2f}  "
          f"(target >= 0.35; rounds {rounds})")
    print(f"latency    single tx commit  p50 {got['latency_p50_ms']:.1f} ms   "
          f"p99 {got['latency_p99_ms']:.1f} ms")
    print(f"failover   kill the etcd leader's agency ({got['failover_killed']}) mid-ingest: "
          f"a transaction sent after it commits in {got['failover_seconds']:.2f} s  (bound 5 s)")


def report_catchup(got: dict[str, Any]) -> None:
    ref = got["ref_verify_per_s_one_core"]
    print(f"reference  one core VerifyKey.verify          {ref:10,.0f} /s")
    print(f"catch-up   {int(got['catchup_txs']):,} txs in {int(got['catchup_blocks'])} blocks "
          f"from peers   {got['catchup_tx_per_s']:10,.0f} /s   ratio {got['catchup_ratio']:.2f}  "
          f"(no target; {got['catchup_seconds']:.1f} s after the node's start, which took "
          f"{got['catchup_start_seconds']:.1f} s)")
