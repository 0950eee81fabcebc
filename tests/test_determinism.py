"""One result on every node (ADR 63): the same ordered input gives the same blocks, state and
approval decisions whatever the process's environment.

The chain test builds a fixed chain (tests/determinism_child.py: governance with non-ASCII rule
text, big and string parameters and doubles, issues, status changes, credit events, approvals
and refusals) in child processes that differ in time zone, locale, hash seed, the int(str)
digits bound and the number of signature workers, and compares head, every stored record and a
re-execution from the stored bytes. The rule tests show the two ways an approval decision
depended on the process and not on its inputs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from contracts import rules as rules_mod
from contracts.catalogue import rule

HERE = Path(__file__).parent
ROOT = HERE.parent


def _env(**changes: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TZ", "LANG", "LC_ALL", "LC_CTYPE", "PYTHONHASHSEED",
                        "PYTHONINTMAXSTRDIGITS", "PYTHONUTF8")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE)])
    env.update(changes)
    return env


def _child(tmp: Path, name: str, workers: int, **env: str) -> dict[str, Any]:
    data = tmp / name
    data.mkdir()
    out = subprocess.run([sys.executable, str(HERE / "determinism_child.py"), str(data),
                          str(workers)], env=_env(**env), capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    got: dict[str, Any] = json.loads(out.stdout)
    return got


def test_the_same_chain_in_every_environment(tmp_path: Path) -> None:
    plain = _child(tmp_path, "plain", 0, TZ="UTC", LANG="C.UTF-8", PYTHONHASHSEED="0")
    odd = _child(tmp_path, "odd", 2, TZ="Pacific/Chatham", LANG="C", LC_ALL="C",
                 PYTHONHASHSEED="4242", PYTHONINTMAXSTRDIGITS="0", PYTHONUTF8="0")
    assert odd == plain
    # what the chain holds: refusals of each kind, and the re-execution from the stored bytes
    # (a node catching up) comes to the same records as building it live
    assert plain["height"] == 6
    assert plain["refusals"] == ["rule_invalid", "credential_exists", "illegal_transition",
                                 "not_authorized", "unknown_reason"]
    assert plain["again"] == plain["state"]


_DIGITS_RULE = rule(
    "certified-copy", needs=[{"type": "person-id", "claims": ["person_id", "district"]}],
    clauses=[{"when": "int(claims.person_id.person_id) == 1", "decision": "rejected",
              "reason": "number_one"}])

_DECIDE = """
import json, sys
from contracts.rules import CelEngine
rule, ids = json.loads(sys.argv[1]), json.loads(sys.argv[2])
engine = CelEngine()
print(json.dumps([engine.compile(rule).evaluate(
    {"person-id": {"person_id": i, "district": "d"}}, None, 1).to_json() for i in ids]))
"""


def test_int_of_a_long_claim_is_decided_alike_whatever_the_int_digits_setting() -> None:
    """``int("000…01")`` read 4,400 digits on a node started with PYTHONINTMAXSTRDIGITS=0 (the
    clause fired: rejected) and failed on every other (needs_review, rule_error); 1,001 digits
    failed only under a bound of 640. Now 4,300 digits everywhere, Python's default."""
    ids = ["0" * 4400 + "1", "0" * 1000 + "1", "1"]
    got = {}
    for setting in ("", "0", "640"):
        env = _env(**({"PYTHONINTMAXSTRDIGITS": setting} if setting else {}))
        out = subprocess.run([sys.executable, "-c", _DECIDE, json.dumps(_DIGITS_RULE),
                              json.dumps(ids)], env=env, capture_output=True, text=True,
                             timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        got[setting] = [(o["decision"], o["reasons"]) for o in json.loads(out.stdout)]
    assert got[""] == [("needs_review", ["rule_error"]), ("rejected", ["number_one"]),
                       ("rejected", ["number_one"])]
    assert got["0"] == got[""]
    assert got["640"] == got[""]


def _deep(levels: int) -> dict[str, Any]:
    return rule("certified-copy", clauses=[{"when": "!" * levels + "true", "decision": "rejected",
                                            "reason": "deep"}])


def _at_depth(frames: int, fn: Any) -> Any:
    """``fn()`` called with ``frames`` more Python frames on the stack."""
    return fn() if frames <= 0 else _at_depth(frames - 1, fn)


def test_a_rule_nested_past_the_depth_bound_is_not_evaluated() -> None:
    """celpy evaluates recursively: a 470-deep ``!!!…true`` was decided in a shallow call and
    raised RecursionError 100 frames deeper (a node's request thread and ``ledger audit`` run
    at different depths). Such a rule is now a cost problem (refused at /v1/tx, not evaluated
    by a node); the ledger still takes it, as any costly rule."""
    too_deep = rules_mod.rule_cost_problem(_deep(470))
    assert too_deep is not None and "nested more than 300 levels deep" in too_deep
    engine = rules_mod.CelEngine()
    engine.check(_deep(470))  # the state machine's judgement is unchanged
    assert engine.compile(_deep(470)).cost_problem is not None
    # a rule within the bound gives one outcome however deep its caller already is
    within = _deep(290)
    assert rules_mod.rule_cost_problem(within) is None
    compiled = engine.compile(within)
    shallow = compiled.evaluate({"person-id": {"person_id": "1", "holder_name": "A",
                                               "district": "d"}}, None, 1)
    deep = _at_depth(700, lambda: compiled.evaluate(
        {"person-id": {"person_id": "1", "holder_name": "A", "district": "d"}}, None, 1))
    assert shallow == deep
    assert (shallow.decision, shallow.reasons) == ("rejected", ("deep",))


_NODE_ENVS: list[dict[str, str]] = [
    {"TZ": "UTC", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"},
    {"TZ": "Pacific/Chatham", "LANG": "C", "LC_ALL": "C", "PYTHONHASHSEED": "4242",
     "PYTHONINTMAXSTRDIGITS": "0"},
    {"TZ": "America/St_Johns", "LANG": "C.UTF-8", "PYTHONHASHSEED": "7"},
]
_NODE_WORKERS = [1, 0, 2]
_CHAIN_RECORDS = frozenset(b"Hbetnrcis")  # blocks, log, tx index, tree, registries, state


def _chain_digest(path: Path) -> str:
    import hashlib

    from ledger.store import Store

    h = hashlib.sha256()
    with Store(path, create=False) as store:
        for k, v in store.iterate(b""):
            if k[0] in _CHAIN_RECORDS:
                h.update(len(k).to_bytes(4, "big") + k + len(v).to_bytes(4, "big") + v)
    return h.hexdigest()


@pytest.mark.slow
def test_cluster_nodes_in_other_environments_build_the_same_chain(tmp_path: Path) -> None:
    """A real 3-agency etcd cluster whose nodes run with other time zones, locales, hash seeds,
    int digits bounds and signature workers (0, 1, 2): governance with non-ASCII text, a rule
    with doubles and big parameters, credit, issues and status changes sent to different
    nodes come to one head and, with the nodes stopped, the same chain records in each store."""
    import hashlib
    import re
    import time

    from clusterkit import PASS, Net, free_base

    from contracts.catalogue import POLICY
    from ledger.network import status_tx
    from ledger.tx import make_tx
    from node.cluster import LocalCluster, Member, create_cluster

    base = free_base(3)
    folder = tmp_path / "net"
    create_cluster(folder, 3, PASS, base_port=base, network=f"test-{base}")
    tomls = sorted(folder.glob("*/node.toml"))
    agencies = [t.parent.name for t in tomls]
    for toml, workers in zip(tomls, _NODE_WORKERS, strict=True):
        toml.write_text(re.sub(r"(?m)^workers = .*$", f"workers = {workers}", toml.read_text()))
    envs = dict(zip(agencies, _NODE_ENVS, strict=True))

    class Mixed(LocalCluster):
        def _start_node(self, m: Member) -> None:
            saved = dict(os.environ)
            os.environ.update(envs[m.agency])
            try:
                super()._start_node(m)
            finally:
                os.environ.clear()
                os.environ.update(saved)

    cluster = Mixed(folder, PASS)
    cluster.start()
    try:
        net = Net(folder, cluster)
        try:
            a, b, c = agencies
            now = int(time.time())
            net.setup_degree(a, now)
            net.governance("register_type", {"type": {
                "id": "permit", "title": "Genehmigung f\u00fcr \u00c4rzte \u0130 \u212b",
                "claims": {"holder_name": "string"}, "derived": {}}}, via=b)
            net.governance("set_credit_policy", {"policy": POLICY}, via=c)
            net.governance("grant_credit", {"agency": a, "category": "tax", "from": now - 60,
                                            "until": now + 86400}, via=b)
            odd = {"service": "odd-permit", "title": "Sonderzulassung \u00df \U0001f600",
                   "area": "licensing", "agency": a,
                   "needs": [{"type": "degree", "claims": ["degree_level"]}],
                   "params": [{"name": "big", "int": 1 << 53},
                              {"name": "street", "str": "Stra\u00dfe \u00e9"}],
                   "subject": [],
                   "clauses": [{"when": "double(params.big) + 1.0 == double(params.big) && "
                                        "params.street.size() == 8",
                                "decision": "needs_review", "reason": "float_rounding"}],
                   "otherwise": {"decision": "approved", "reason": "eligible"},
                   "fast_track": "", "fast_track_reason": "fast_track",
                   "documents": {"fast_track": [], "standard": []}}
            net.governance("register_rule", {"rule": odd}, via=c)
            txs = [net.anchor(a, now) for _ in range(6)]
            subject = hashlib.sha256(b"subject").digest()
            txs.append(make_tx(net.cluster.network, "credit", {
                "subject": subject, "category": "tax", "points": -40, "reason": "late_filing",
                "date": now - 10, "expiry": now + 86400, "ts": now}, [net.agencies[a].issuer_key]))
            for i, tx in enumerate(txs):
                r = net.submit(agencies[i % 3], tx)
                assert r.status_code == 200, r.text
            for i, tx in enumerate(txs[:3]):
                st = status_tx(net.cluster.network, net.agencies[a], tx.body["credential_id"],
                               "revoked", "withdrawn", int(time.time()))
                r = net.submit(agencies[(i + 1) % 3], st)
                assert r.status_code == 200, r.text
            net.wait_until("the nodes agree", net.converged, timeout=60)
            heads = net.heads()
            assert len(set(heads.values())) == 1, heads
            assert len(set(net.head_hashes().values())) == 1
        finally:
            net.close()
    finally:
        cluster.stop()
    digests = {x: _chain_digest(folder / x / "data" / "ledger") for x in agencies}
    assert len(set(digests.values())) == 1, digests
