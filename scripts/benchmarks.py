"""Benchmarks behind ``scripts/bench``. Every figure is a ratio to a reference from the same run.

ingest   solo durable ingest of signed ``issue`` transactions (submit → receipt after the synced
         block), as a ratio to one core's ``nacl.signing.VerifyKey.verify`` rate; then RFC 9162
         inclusion-proof time on a store of ``--proof-size`` entries after a cold open.
http     verified presentations per second through POST /v1/verify on a local uvicorn under
         a bounded load (8 client threads, 600 requests) as a ratio to in-process verification.
audit    replay audit (ledger.audit, both cores) of a cached --proof-size chain as a ratio
         to one core's verify rate, CPU per transaction, and peak memory; with --since-blocks,
         also `audit --since` a checkpoint that many blocks back vs. the full audit.
present  full presentation-envelope verification per second (checkpoint quorum, inclusion,
         anchor, issuer authority, SD-JWT+KB, status) as a ratio to the `sd-jwt` reference
         verifier's SD-JWT+KB verification of the same presentations: 300 holders per key
         type, a different presentation each call; also with a checkpoint new to the verifier
         each call; envelope size for 3 of 10 claims disclosed, and at 10M entries (ADR 30).
approve  licence-rule decisions per second (scripts/bench_approve.py).
cluster  a 3-agency etcd network on this machine (scripts/bench_cluster.py).
catchup  a node of a 3-agency network stopped past etcd's retention catches up from its peers
         over HTTPS: transactions per second (no target; scripts/bench_cluster.py).
proofs   inclusion/consistency proofs after a cold open on chaingen chains of 1M and 10M
         entries vs pymerkle's SQLite backend at 1M (scripts/bench_scale.py).
scale    per chain size 1k..10M: cold open, proofs, status lists, durable ingest ratio, peak
         memory (scripts/bench_scale.py).
all      every benchmark above, one JSON file of all results, and docs/bench-scale.png
         (scripts/bench_all.py).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import itertools
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nacl.signing
from bench_scale import p99
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from ledger import merkle
from ledger.chain import Head, build_block, build_genesis
from ledger.credentials import STATUS_LIST_SIZE
from ledger.network import Agency, demo_agency, genesis_tx, governance_tx, issue_tx
from ledger.ordering import SoloOrderer
from ledger.store import Store
from ledger.tx import Tx

NET = "bench"
T0 = 1_767_225_600
err = Console(stderr=True, soft_wrap=True)


def verify_rate(seconds: float = 2.0) -> float:
    """Reference: one core's VerifyKey.verify per second on 300-byte messages."""
    sk = nacl.signing.SigningKey(bytes(32))
    vk = sk.verify_key
    msgs = [sk.sign(os.urandom(300)) for _ in range(2000)]
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for m in msgs:
            vk.verify(m)
        n += len(msgs)
    return n / (time.perf_counter() - start)


def _network(path: Path) -> tuple[Store, list[Agency]]:
    agencies = [demo_agency("edu", "Education Bureau", "bench"),
                demo_agency("civil", "Civil Affairs", "bench")]
    store = Store(path)
    store.write_block(build_genesis(genesis_tx(NET, agencies, 1, T0)))
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    grant = {"agency": "edu", "type": "degree", "from": 0, "until": 2 * T0}
    for txs in ([governance_tx(NET, 1, "register_type", {"type": spec}, agencies)],
                [governance_tx(NET, 2, "grant", grant, agencies)]):
        head, reg = store.head, store.registry
        if head is None or reg is None:
            raise SystemExit("bench store lost its head")
        store.write_block(build_block(head, reg, store, store.frontier, txs, T0))
    return store, agencies


def _issues(agency: Agency, start: int, n: int) -> list[bytes]:
    from chaingen import spread_index

    if start + n > STATUS_LIST_SIZE:
        raise SystemExit(f"the bench chain issues one type of one agency, whose status list has "
                         f"{STATUS_LIST_SIZE:,} indexes; {start + n:,} credentials do not fit "
                         f"(build bigger chains with scripts/chaingen.py)")
    return [issue_tx(NET, agency, hashlib.sha256(b"bench-%d" % i).digest(), "degree",
                     spread_index(i), T0, 2 * T0, T0 + i).raw for i in range(start, start + n)]


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}"
                    "/{task.total}"), TimeRemainingColumn(), console=err, transient=True,
                    disable=not err.is_terminal)


def bench_ingest(n: int, clients_chunk: int, workers: int | None = None) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        store, agencies = _network(tmp / "ledger")
        raws = _issues(agencies[0], 0, n)
        orderer = SoloOrderer(store, clock=lambda: T0 + 1, workers=workers)
        start = time.perf_counter()
        futures = []
        for i in range(0, n, clients_chunk):
            futures.extend(orderer.submit_many(raws[i:i + clients_chunk]))
        for f in futures:
            f.result()
        elapsed = time.perf_counter() - start
        orderer.stop()
        store.close()
        return {"ingest_tx_per_s": n / elapsed, "ingest_n": n}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_big_store(path: Path, size: int) -> None:
    """A store of ``size`` log entries, built block by block (signatures verified as usual)."""
    store, agencies = _network(path)
    have = store.head.log_size if store.head else 0
    block = 5000
    with _progress() as progress:
        task = progress.add_task(f"building a {size:,}-entry chain", total=size)
        i = 0
        while have < size:
            k = min(block, size - have)
            txs = [Tx.from_bytes(r) for r in _issues(agencies[0], i, k)]
            head, reg = store.head, store.registry
            if head is None or reg is None:
                raise SystemExit("bench store lost its head")
            store.write_block(build_block(head, reg, store, store.frontier, txs, T0 + 1))
            have += k
            i += k
            progress.update(task, completed=have)
    store.close()


def cached_store(path: Path, size: int) -> None:
    """The store at ``path`` as :func:`build_big_store` makes it, (re)built unless it holds
    ``size`` entries: a build stopped part way leaves a shorter chain, which it cannot extend."""
    if path.exists():
        with Store(path) as store:
            if store.head is not None and store.head.log_size >= size:
                return
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    build_big_store(path, size)


def bench_proofs(path: Path, samples: int = 2000) -> dict[str, float]:
    start = time.perf_counter()
    store = Store(path)  # cold open: reads head, checks it against the stored Merkle nodes
    open_s = time.perf_counter() - start
    if store.head is None:
        raise SystemExit("empty store")
    size = store.head.log_size
    rng = random.Random(1)
    times = []
    for _ in range(samples):
        index = rng.randrange(size)
        t = time.perf_counter()
        proof = store.inclusion_proof(index, size)
        times.append(time.perf_counter() - t)
        merkle.verify_inclusion(store.leaf_hash(index), index, size, proof, store.head.log_root)
    store.close()
    times.sort()
    return {"proof_size": size, "cold_open_s": open_s,
            "inclusion_proof_median_ms": statistics.median(times) * 1e3,
            "inclusion_proof_p99_ms": p99(times) * 1e3}


PROFILE = {"id": "profile", "title": "Resident profile (10 claims)",
           "claims": {"given_name": "string", "family_name": "string", "birth_date": "date",
                      "district": "string", "street": "string", "household_size": "int",
                      "resident_since": "date", "phone": "string", "email": "string",
                      "registered_voter": "bool"},
           "derived": {}}
PROFILE_CLAIMS = {"given_name": "Xiaoming", "family_name": "Chen", "birth_date": "1988-04-12",
                  "district": "Changsheng", "street": "Lingnan Avenue 128",
                  "household_size": 3, "resident_since": "2014-09-01",
                  "phone": "+86-757-0000-0000", "email": "chen.xm@example.org",
                  "registered_voter": True}
WANTED = ("district", "resident_since", "household_size")


def _interleaved(fns: dict[str, Callable[[], object]], seconds: float,
                 slice_s: float = 0.25) -> dict[str, float]:
    """Rates of several functions measured in alternating slices, so load noise hits all alike."""
    counts = dict.fromkeys(fns, 0)
    spent = dict.fromkeys(fns, 0.0)
    while min(spent.values()) < seconds:
        for name, fn in fns.items():
            start = time.perf_counter()
            while time.perf_counter() - start < slice_s:
                fn()
                counts[name] += 1
            spent[name] += time.perf_counter() - start
    return {name: counts[name] / spent[name] for name in fns}


def _in_turn(items: list[tuple[Any, Any]], fn: Callable[..., object]) -> Callable[[], None]:
    """A call that applies ``fn`` to the next of ``items`` each time, round and round."""
    it = itertools.cycle(items)

    def call() -> None:
        fn(*next(it))

    return call


def _district_envelope_sizes(envelope: bytes) -> dict[str, float]:
    """Sizes only (nothing here is verified): ``envelope`` as it would be on a district's
    chain, the 10M-entry chaingen chain (24 proof hashes) of 8 agencies, with all 8 node
    co-signatures on its checkpoint or only a quorum of them (3)."""
    import chaingen

    from ledger.checkpoint import Checkpoint, SignedCheckpoint
    from ledger.finality import block_line
    from ledger.presentation import Envelope

    env = Envelope.from_bytes(envelope)
    size = 10_001_818
    proof = tuple(os.urandom(32) for _ in range((size - 1).bit_length()))
    # (a block line as every node's checkpoint carries: ADR 60; ~1M blocks at 10M entries)
    signed = SignedCheckpoint(Checkpoint(chaingen.NET, size, os.urandom(32),
                                         (block_line(1_000_000, os.urandom(32)),)))
    out = {}
    agencies = chaingen.agencies()
    for n, agency in enumerate(agencies, 1):
        signed = signed.cosign(agency.id, agency.node_key)
        if n in (chaingen.QUORUM, len(agencies)):
            district = Envelope(env.anchor, size - 1, proof, signed.to_text(), env.sd_jwt_kb)
            out[f"envelope_bytes_es256_holder_10m_{n}_signatures"] = float(
                len(district.to_bytes()))
    return out


def bench_present(seconds: float = 3.0, holders: int = 300) -> dict[str, float]:
    """Full envelope verification vs the `sd-jwt` reference verifier, on the same presentations.

    Each kind of holder key gets ``holders`` credentials, one per holder, each anchored in a
    block of its own with its own checkpoint. Every timed call verifies the next presentation
    in turn, so no figure rests on a cached holder key (``sdjwt`` keeps the last 256 parsed
    JWKs, fewer than ``holders``).
    ``present_*`` envelopes prove against the chain's last checkpoint: one checkpoint for all,
    as at a desk whose visitors' wallets synced to the same checkpoint, verified once an hour.
    ``present_cold_*`` envelopes each prove against their own block's checkpoint, so every
    call also checks the checkpoint's co-signatures (more checkpoints than the verifier
    keeps).
    """
    from chaingen import spread_index
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwcrypto.jwk import JWK
    from sd_jwt.verifier import SDJWTVerifier

    from ledger import sdjwt
    from ledger.chain import checkpoint_key
    from ledger.checkpoint import SignedCheckpoint
    from ledger.credentials import issue_credential, status_list, status_list_uri
    from ledger.finality import sign_checkpoint
    from ledger.keys import PrivateKey
    from ledger.presentation import Bundle, Envelope, Request, Verifier

    now = int(time.time())  # the reference verifier reads the wall clock for the KB iat
    tmp = Path(tempfile.mkdtemp(prefix="bench-present-"))
    try:
        store, agencies = _network(tmp / "ledger")
        edu = agencies[0]
        head, reg = store.head, store.registry
        if head is None or reg is None:
            raise SystemExit("bench store lost its head")
        spec = governance_tx(NET, 3, "register_type", {"type": PROFILE}, agencies)
        grant = governance_tx(NET, 4, "grant", {"agency": "edu", "type": "profile", "from": 0,
                                                "until": 4 * T0}, agencies)
        for tx in (spec, grant):
            head, reg = store.head, store.registry
            assert head is not None and reg is not None  # noqa: PT018
            store.write_block(build_block(head, reg, store, store.frontier, [tx], now - 100))
        # (label, index, sd-jwt, its block's checkpoint text, holder key, alg) per credential
        issued: list[tuple[str, int, str, str, Any, str]] = []
        # distinct, spread status indexes (random ones collide about once in six runs of 600)
        indexes = map(spread_index, itertools.count())
        for label, alg in (("ed25519_holder", "EdDSA"), ("es256_holder", "ES256")):
            for _ in range(holders):
                holder: Any = (PrivateKey(os.urandom(32)) if alg == "EdDSA"
                               else ec.generate_private_key(ec.SECP256R1()))
                holder_jwk = (sdjwt.jwk_from_ed25519(holder.public.raw) if alg == "EdDSA"
                              else sdjwt.jwk_from_ec(holder))
                reg, head = store.registry, store.head
                assert reg is not None and head is not None  # noqa: PT018
                cred = issue_credential(registry=reg, agency="edu", issuer_key=edu.issuer_key,
                                        kind="profile", claims=PROFILE_CLAIMS,
                                        holder_jwk=holder_jwk, now=now - 50, valid_for=86400,
                                        status_index=next(indexes))
                result = build_block(head, reg, store, store.frontier, [cred.anchor], now - 50)
                assert result.head is not None
                cp = sign_checkpoint(NET, result.head, [(a.id, a.node_key) for a in agencies])
                store.write_block(result, {checkpoint_key(result.head.log_size):
                                           cp.to_text().encode()})
                issued.append((label, result.accepted[0][1], cred.sd_jwt.serialize(),
                               cp.to_text(), holder, alg))
        reg = store.registry
        assert reg is not None
        last_cp = issued[-1][3]
        lst = status_list(store.status_entries("edu", "profile"))
        uri = status_list_uri(NET, "edu", "profile")

        def lists(u: str) -> Any:
            return lst if u == uri else None

        # (figure, label) -> [(envelope, request)]; "reference" -> [(kb presentation, request)]
        cases: dict[tuple[str, str], list[tuple[Any, Request]]] = {}
        for k, (label, index, sd_jwt, own_cp, holder, alg) in enumerate(issued):
            req = Request(f"bench-nonce-{k}", "https://verifier.example", "profile", WANTED)
            kb = sdjwt.present(sd_jwt, disclose=WANTED, holder_key=holder, nonce=req.nonce,
                               aud=req.audience, iat=now, alg=alg)
            for figure, text in (("present", last_cp), ("present_cold", own_cp)):
                size = SignedCheckpoint.from_text(text).checkpoint.size
                bundle = Bundle(store.entry(index), index,
                                tuple(store.inclusion_proof(index, size)), text, sd_jwt)
                envelope = Envelope.from_bundle(bundle, kb).to_bytes()
                cases.setdefault((figure, label), []).append((envelope, req))
            if label == "es256_holder":
                cases.setdefault(("reference", label), []).append((kb, req))
        store.close()
        results: dict[str, float] = {}
        fns: dict[str, Callable[[], object]] = {}
        issuer_jwk = JWK(**sdjwt.jwk_from_ed25519(edu.issuer_key.public.raw))
        for (figure, label), items in cases.items():
            if figure == "reference":
                fns["reference_sdjwt_per_s"] = _in_turn(
                    items, lambda kb, req: SDJWTVerifier(kb, lambda _i, _h: issuer_jwk,
                                                         req.audience, req.nonce)
                    .get_verified_payload())
                continue
            verifier = Verifier(reg, lists)
            if figure == "present_cold" and len(items) <= verifier._cache_size:
                raise SystemExit("present: more holders than the verifier's checkpoint cache")
            for envelope, req in items:
                report = verifier.verify(envelope, req, now=now)
                if not report.verified:
                    raise SystemExit(f"bench presentation did not verify: {report.to_json()}")

            fns[f"{figure}_{label}_per_s"] = _in_turn(
                items, lambda envelope, req, v=verifier: v.verify(envelope, req, now=now))
            if figure == "present":
                results[f"envelope_bytes_{label}"] = statistics.median(len(e) for e, _ in items)
        results |= _district_envelope_sizes(cases[("present", "es256_holder")][0][0])
        for reference_kb, req in cases[("reference", "es256_holder")]:  # raises if it fails
            SDJWTVerifier(reference_kb, lambda _i, _h: issuer_jwk, req.audience, req.nonce)\
                .get_verified_payload()
        results["present_holders"] = holders
        results.update(_interleaved(fns, seconds))
        ref = results["reference_sdjwt_per_s"]
        for figure in ("present", "present_cold"):
            for label in ("es256_holder", "ed25519_holder"):
                results[f"{figure}_ratio_{label}"] = results[f"{figure}_{label}_per_s"] / ref
        return results
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_LOAD_CLIENT = """
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
import httpx
url, workers = sys.argv[1], int(sys.argv[2])
bodies = json.load(sys.stdin)
with httpx.Client(base_url=url, timeout=60,
                  limits=httpx.Limits(max_connections=workers)) as client:
    def one(body):
        return bool(client.post("/v1/verify", json=body).json().get("verified"))
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        ok = sum(pool.map(one, bodies))
    print(json.dumps({"ok": ok, "rate": len(bodies) / (time.perf_counter() - start)}))
"""


def bench_http(n: int = 600, concurrency: int = 8) -> dict[str, float]:
    """Verified presentations per second through POST /v1/verify (real uvicorn, loopback,
    ``concurrency`` client threads, ``n`` requests) vs the same node's in-process verify rate."""
    import base64
    import hashlib as _hashlib
    import socket
    import subprocess
    import threading

    import httpx
    import uvicorn

    from ledger import sdjwt
    from ledger.keys import PrivateKey
    from ledger.presentation import Envelope
    from node.app import create_app
    from node.config import Settings
    from node.demo import run_demo
    from node.service import Node

    tmp = Path(tempfile.mkdtemp(prefix="bench-http-"))
    try:
        passphrase = b"bench-only"
        run_demo(tmp / "demo", passphrase, clock=lambda: int(time.time()),
                 console=Console(file=io.StringIO()))
        node = Node(tmp / "demo", "civil", passphrase)
        holder = PrivateKey(_hashlib.sha256(b"bench-holder").digest())
        bundle, _ = node.issue("residence", {"holder_name": "Bench Holder",
                                             "district": "Changsheng",
                                             "birth_date": "1960-01-01",
                                             "resident_since": "2000-01-01"},
                               sdjwt.jwk_from_ed25519(holder.public.raw), 30)

        def envelope_for(nonce: str, aud: str) -> bytes:
            kb = sdjwt.present(bundle.sd_jwt, disclose=["district", "age_over_65"],
                               holder_key=holder, nonce=nonce, aud=aud, iat=node.now())
            return Envelope.from_bundle(bundle, kb).to_bytes()

        # In process: the node's own verify (request + envelope prepared beforehand).
        prepared = []
        for _ in range(n):
            p = node.new_request("residence", ["district", "age_over_65"], "https://bench")
            prepared.append((p.request.nonce, envelope_for(p.request.nonce, "https://bench")))
        start = time.perf_counter()
        for nonce, env in prepared:
            if not node.verify(env, nonce).verified:
                raise SystemExit("in-process bench verification failed")
        inproc = n / (time.perf_counter() - start)

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        url = f"http://127.0.0.1:{port}"
        # The rate limiter off: one client opens 600 requests (10 tokens each for its QR code
        # since ADR 47, over the default burst), and the bench measures verification.
        settings = Settings(data=tmp / "demo", agency="civil", port=port, public_url=url,
                            rate_limit_per_minute=0)
        server = uvicorn.Server(uvicorn.Config(create_app(settings, node=node), host="127.0.0.1",
                                               port=port, log_config=None, access_log=False))
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        with httpx.Client(base_url=url, timeout=30) as client:
            bodies = []
            for _ in range(n):
                got = client.post("/v1/presentation-requests",
                                  json={"type": "residence",
                                        "claims": ["district", "age_over_65"]}).json()
                env = envelope_for(got["nonce"], got["audience"])
                bodies.append({"nonce": got["nonce"],
                               "envelope": base64.urlsafe_b64encode(env).rstrip(b"=").decode()})

            # The load comes from a second process, as a real client would: in this process its
            # threads would fight the server for the GIL.
            done = subprocess.run([sys.executable, "-c", _LOAD_CLIENT, url, str(concurrency)],
                                  input=json.dumps(bodies), capture_output=True, text=True,
                                  timeout=600, check=True)
            result = json.loads(done.stdout)
            ok, http_rate = result["ok"], result["rate"]
        server.should_exit = True
        thread.join(timeout=30)
        node.close()
        if ok != n:
            raise SystemExit(f"{n - ok} of {n} HTTP verifications failed")
        return {"http_verify_per_s": http_rate, "inprocess_verify_per_s": inproc,
                "http_ratio": http_rate / inproc, "http_requests": n,
                "http_concurrency": concurrency}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench_audit(path: Path, since_blocks: int = 0) -> dict[str, float]:
    """Replay audit of the store at ``path`` (built by the proofs figure) with both cores."""
    import resource

    from bench_scale import proc_status_kib

    from ledger.audit import audit

    peak = {"RssAnon": 0, "RssFile": 0}

    def sample() -> None:
        """Resident memory by kind (Linux): anonymous vs. file-backed (mapped LevelDB tables)."""
        got = proc_status_kib()
        for name, was in peak.items():
            peak[name] = max(was, got.get(name, 0))

    with _progress() as progress:
        task = progress.add_task("auditing", total=None)
        ticks = [0]

        def tick(done: int, total: int, txs: int) -> None:
            progress.update(task, completed=txs, total=None)
            ticks[0] += 1
            if ticks[0] % 8 == 0:
                sample()

        before = verify_rate(1.0)
        cpu0 = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
            resource.RUSAGE_CHILDREN))
        start = time.perf_counter()
        cores = os.cpu_count() or 2
        report = audit(path, now=int(time.time()), progress=tick, workers=cores)
        elapsed = time.perf_counter() - start
        cpu1 = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
            resource.RUSAGE_CHILDREN))
        after = verify_rate(1.0)
    main_cpu, workers_cpu = (b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime
                             for a, b in zip(cpu0, cpu1, strict=True))
    if not report.clean:
        raise SystemExit(f"the bench chain did not audit clean (a chain cached by an older "
                         f"version? delete {path} to rebuild it): {report.to_json()}")
    txs = report.txs_checked
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    ref = (before + after) / 2
    sample()
    got = {"audit_txs": txs, "audit_tx_per_s": txs / elapsed, "audit_ratio": txs / elapsed / ref,
           "audit_seconds": elapsed, "audit_ref_verify_per_s": ref, "audit_peak_rss_mib": me,
           "audit_main_cpu_us_per_tx": main_cpu / max(txs, 1) * 1e6,
           "audit_workers_cpu_us_per_tx": workers_cpu / max(txs, 1) * 1e6,
           "audit_sampled_peak_anon_mib": peak["RssAnon"] / 1024,
           "audit_sampled_peak_file_mib": peak["RssFile"] / 1024,
           "audit_worker_peak_rss_mib": kids, "audit_cores": cores}
    if since_blocks:
        got |= bench_audit_since(path, since_blocks, elapsed)
    return got


def bench_audit_since(path: Path, blocks: int, full_seconds: float) -> dict[str, float]:
    """``audit --since`` a checkpoint ``blocks`` blocks before the head, vs. the full audit."""
    from ledger.audit import audit
    from ledger.finality import sign_checkpoint
    from ledger.network import demo_agency

    with Store(path) as store:
        head = store.head
        if head is None or head.height <= blocks:
            raise SystemExit(f"the bench chain has fewer than {blocks + 1} blocks")
        old = store.block(head.height - blocks)
    old_head = Head(old.height, old.hash, old.log_size, old.log_root, old.time)
    signers = [(a, demo_agency(a, "", "bench").node_key) for a in ("edu", "civil")]
    cp = sign_checkpoint(NET, old_head, signers)
    start = time.perf_counter()
    report = audit(path, now=int(time.time()), workers=os.cpu_count() or 2, since=cp)
    elapsed = time.perf_counter() - start
    if not report.clean:
        raise SystemExit(f"the incremental audit was not clean: {report.to_json()}")
    return {"since_new_txs": report.txs_checked, "since_seconds": elapsed,
            "since_speedup": full_seconds / elapsed}


def _count(least: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``least`` (a clear error, not a figure of
    a negative or empty run, or a traceback)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}: {value}")
        return value
    return parse


def _sizes(text: str) -> str:
    """--sizes: comma-separated chain sizes, each at least 1 (kept as text for bench_all)."""
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not comma-separated whole numbers: {text!r}") \
            from None
    if min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"chain sizes must be at least 1: {text!r}")
    return ",".join(map(str, sizes))


def main() -> None:
    ap = argparse.ArgumentParser(prog="scripts/bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["ingest", "present", "http", "audit", "approve", "cluster",
                                     "catchup", "proofs", "scale", "all"],
                    help="which benchmark to run (proofs, scale, all: scripts/bench_scale.py, "
                         "scripts/bench_all.py)")
    ap.add_argument("--n", type=_count(1), default=40_000, help="transactions to ingest (40000)")
    ap.add_argument("--proof-size", type=_count(0), default=1_000_000,
                    help="log size for the proof figure (1000000; 0 skips)")
    ap.add_argument("--cache", type=Path, default=Path(".bench"),
                    help="folder that keeps the big proof store between runs (.bench)")
    ap.add_argument("--since-blocks", type=_count(0), default=0,
                    help="audit: also time `audit --since` a checkpoint that many blocks before "
                         "the head (0 skips)")
    ap.add_argument("--json", action="store_true", help="print machine-readable results")
    ap.add_argument("--sizes", type=_sizes, default=None,
                    help="proofs/scale: comma-separated chain sizes (proofs: 1000000,10000000; "
                         "scale: 1000,...,10000000)")
    ap.add_argument("--out", type=Path, default=None,
                    help="all: the JSON file of every result (.bench/all-<time>.json)")
    args = ap.parse_args()

    if args.what in ("proofs", "scale", "all"):  # scripts/bench_scale.py, scripts/bench_all.py
        from bench_all import dispatch
        dispatch(args)
        return

    if args.what == "cluster":  # scripts/bench_cluster.py
        from bench_cluster import bench_cluster
        from bench_cluster import report as cluster_report
        err.print("starting a 3-agency etcd cluster on 127.0.0.1 …")
        got_c = bench_cluster(verify_rate, n=min(args.n, 12_000))
        print(json.dumps(got_c, indent=2)) if args.json else cluster_report(got_c)
        return
    if args.what == "catchup":  # scripts/bench_cluster.py
        from bench_cluster import bench_catchup, report_catchup
        err.print("starting a 3-agency etcd cluster on 127.0.0.1; one node falls behind …")
        got_u = bench_catchup(verify_rate, n=min(args.n, 30_000))
        print(json.dumps(got_u, indent=2)) if args.json else report_catchup(got_u)
        return
    if args.what == "approve":  # scripts/bench_approve.py
        from bench_approve import bench_approve, report
        got = bench_approve(verify_rate)
        print(json.dumps(got, indent=2)) if args.json else report(got)
        return
    if args.what == "audit":
        size = args.proof_size or 1_000_000
        # Its own chain, not the proof figure's: the audit compares every stored record with the
        # replay, so a chain cached by an older state format would not audit clean.
        path = args.cache / f"audit-chain-{size}"
        cached_store(path, size)
        err.print(f"replaying the {size:,}-entry chain in {path} …")
        got = bench_audit(path, args.since_blocks)
        if args.json:
            print(json.dumps(got, indent=2))
            return
        ref_rate, rate = got["audit_ref_verify_per_s"], got["audit_tx_per_s"]
        print(f"reference  one core VerifyKey.verify         {ref_rate:10,.0f} /s")
        print(f"audit      replay of {int(got['audit_txs']):,} txs             "
              f"{rate:10,.0f} /s   ratio {got['audit_ratio']:.2f}  (target >= 1.6; "
              f"{int(got['audit_cores'])} cores against one)")
        print(f"audit      CPU per tx: auditor {got['audit_main_cpu_us_per_tx']:.0f} us, "
              f"workers {got['audit_workers_cpu_us_per_tx']:.0f} us (one verify: "
              f"{1e6 / ref_rate:.0f} us)")
        if args.since_blocks:
            print(f"audit      --since {args.since_blocks} blocks back: "
                  f"{int(got['since_new_txs']):,} new txs in {got['since_seconds']:.1f} s "
                  f"vs {got['audit_seconds']:.1f} s for the full audit "
                  f"({got['since_speedup']:.1f}x faster)")
        print(f"audit      peak RSS: auditor {got['audit_peak_rss_mib']:.0f} MiB (sampled: "
              f"{got['audit_sampled_peak_anon_mib']:.0f} anonymous, "
              f"{got['audit_sampled_peak_file_mib']:.0f} file-backed), "
              f"largest worker {got['audit_worker_peak_rss_mib']:.0f} MiB")
        return
    if args.what == "http":
        err.print("verifying presentations through POST /v1/verify and in process …")
        got = bench_http()
        if args.json:
            print(json.dumps(got, indent=2))
            return
        inproc = got["inprocess_verify_per_s"]
        print(f"reference  in-process Node.verify              {inproc:9,.0f} /s")
        print(f"http       POST /v1/verify, {int(got['http_concurrency'])} clients"
              f"          {got['http_verify_per_s']:9,.0f} /s   ratio {got['http_ratio']:.2f}")
        return
    if args.what == "present":
        err.print("verifying presentations: ours (full envelope) and the sd-jwt reference …")
        pres = bench_present()
        if args.json:
            print(json.dumps(pres, indent=2))
            return
        ref_rate = pres["reference_sdjwt_per_s"]
        print(f"reference  sd-jwt SDJWTVerifier (SD-JWT+KB only) {ref_rate:9,.0f} /s")
        for label in ("es256_holder", "ed25519_holder"):
            rate, ratio = pres[f"present_{label}_per_s"], pres[f"present_ratio_{label}"]
            print(f"ours       full envelope, {label:15}   {rate:9,.0f} /s"
                  f"   ratio {ratio:.2f}  (target >= 2.0)")
        for label in ("es256_holder", "ed25519_holder"):
            rate, ratio = (pres[f"present_cold_{label}_per_s"],
                           pres[f"present_cold_ratio_{label}"])
            print(f"ours       each its own checkpoint, {label:15} {rate:6,.0f} /s"
                  f"   ratio {ratio:.2f}")
        print(f"           ({int(pres['present_holders'])} holders per key type, each "
              f"presentation in turn; the first rows share one checkpoint)")
        for label in ("es256_holder", "ed25519_holder"):
            size = int(pres[f"envelope_bytes_{label}"])
            print(f"envelope   3 of 10 claims, {label:15}  {size:9,} bytes"
                  "  (target <= 2,900: one QR code)")
        for n in (8, 3):
            size = int(pres[f"envelope_bytes_es256_holder_10m_{n}_signatures"])
            print(f"envelope   the same at 10M entries, {n} co-signatures {size:6,} bytes"
                  "  (size only: 24 proof hashes, 8 agencies)")
        return
    err.print("measuring the reference: one core's VerifyKey.verify rate …")
    before = verify_rate()
    err.print(f"ingesting {args.n:,} signed issue transactions (durable, solo) …")
    ingest = bench_ingest(args.n, 500)
    after = verify_rate()
    ref = (before + after) / 2  # measured on both sides of the ingest run: load drifts
    res: dict[str, float] = {"ref_verify_per_s_one_core": ref, "ref_before": before,
                             "ref_after": after, "cores": os.cpu_count() or 1, **ingest}
    res["ingest_ratio"] = res["ingest_tx_per_s"] / ref
    if args.proof_size:
        path = args.cache / f"proofs-{args.proof_size}"
        cached_store(path, args.proof_size)
        res.update(bench_proofs(path))
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(f"reference  one core VerifyKey.verify     {ref:10,.0f} /s")
    print(f"ingest     solo durable issue txs        {res['ingest_tx_per_s']:10,.0f} /s"
          f"   ratio {res['ingest_ratio']:.2f}  (target >= 1.0)")
    if args.proof_size:
        print(f"proofs     cold open of {res['proof_size']:,} entries   "
              f"{res['cold_open_s'] * 1e3:8.1f} ms")
        print(f"proofs     inclusion proof median / p99  {res['inclusion_proof_median_ms']:.3f}"
              f" / {res['inclusion_proof_p99_ms']:.3f} ms  (O(log n) stored-node reads)")


if __name__ == "__main__":
    sys.exit(main())
