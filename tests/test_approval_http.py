"""End to end through real HTTP: apply for a business licence with a wallet, get the approval
credential, present it to a verifier; decisions are the same bytes on the node, on a second copy
of its store and after a replay of the chain."""

from __future__ import annotations

import base64
import json
import shutil
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api import AUTH, PASS, T0, make_demo, serve, settings_for
from test_contracts_world import SECRET

from contracts import reevaluate, stated
from contracts.catalogue import RULES, setup_actions
from contracts.credit import pseudonym
from ledger import codec, sdjwt
from ledger.chain import build_block, build_genesis
from ledger.keys import load_private_key
from ledger.network import governance_tx
from ledger.presentation import Bundle, Request
from ledger.store import Store
from ledger.timetext import utc_text
from ledger.tx import Tx, make_tx
from node.app import create_app
from node.service import Node
from wallet.core import Wallet

NOW = T0 + 100
REG_NO = "91440606-MA4W0001"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _issuer_keys(data: Path, *agencies: str) -> dict[str, Any]:
    """The demo agencies' issuer keys, from the data folder's key files."""
    return {a: load_private_key(data / "keys" / f"{a}.issuer.key", PASS) for a in agencies}


def _licence_answers(node: Node, wallet: Wallet) -> tuple[Any, list[Any]]:
    """market's approvals service and the wallet's answers to a new business-licence
    application's requests."""
    from node.approvals import Approvals

    service = Approvals(node)
    pending = service.open_application("business-licence", "https://market.example")
    return service, wallet.answer([p.request for p in pending], now=NOW)


def prepare(tmp: Path) -> tuple[Path, Wallet]:
    data = make_demo(tmp / "data")
    (data / "keys" / "credit.secret").write_bytes(SECRET)
    keys = {a: load_private_key(data / "keys" / f"{a}.issuer.key", PASS)
            for a in ("edu", "civil", "market")}
    wallet = Wallet.init(tmp / "wallet.db", b"wallet-pass")
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        reg = node.store.registry
        assert reg is not None
        seq = reg.gov_seq
        from ledger.network import Agency
        signers = [Agency(a, "", keys[a], keys[a]) for a in ("edu", "civil")]
        for action, args in setup_actions(reg.data["types"], T0, T0 + 3650 * 86_400,
                                          agencies={"justice": "civil"},
                                          services=["business-licence"]):
            seq += 1
            node.orderer.submit(governance_tx(node.network, seq, action, args,
                                              signers)).result(timeout=30)
        bundle, _ = node.issue("business-registration",
                               {"registration_no": REG_NO, "business_name": "Lingnan Tea House",
                                "scope": "catering"}, wallet.holder_jwk(), 365)
        wallet.receive(bundle.to_bytes(), registry=node._registry(), now=NOW)
        credit = make_tx(node.network, "credit", {
            "subject": pseudonym(REG_NO, SECRET), "category": "permits", "points": 150,
            "reason": "clean_inspections", "date": NOW - 50, "expiry": NOW + 86_400 * 365,
            "ts": NOW}, [keys["market"]])
        node.orderer.submit(credit).result(timeout=30)
    finally:
        node.close()
    return data, wallet


def _market_app(data: Path) -> Any:
    """The market agency's node over ``data`` (it decides the permits services), at NOW."""
    settings = settings_for(data)
    return create_app(replace(settings, agency="market"), clock=lambda: NOW, passphrase=PASS)


LATE_FILING: dict[str, Any] = {"subject": REG_NO, "reason": "late-filing",
                               "category": "permits", "points": -40, "valid_days": 30}
"""A credit event the market agency records (in permits)."""


def test_answers_holding_claim_values_are_stored_by_no_cache(tmp_path: Path) -> None:
    """The answers that hold a person's data (an application's approval credential, a
    verification's disclosed claims, a credit record, a decision explained with its inputs)
    say ``Cache-Control: no-store``, as the desk's pages do: ``no-cache`` let a browser's or
    an HTTP library's cache keep them on disk (it only has to ask again before reuse). The
    chain's own answers still say ``no-cache`` (ADR 74)."""
    data, wallet = prepare(tmp_path)
    with serve(_market_app(data)) as url, httpx.Client(base_url=url, timeout=60) as http:
        opened = http.post("/v1/services/business-licence/applications").json()
        requests = [Request.from_json({k: r[k] for k in ("nonce", "audience", "type", "claims")})
                    for r in opened["requests"]]
        got = http.post("/v1/services/business-licence/apply", json={
            "holder_jwk": wallet.holder_jwk(),
            "presentations": [{"nonce": n, "envelope": b64url(e)}
                              for n, e in wallet.answer(requests, now=NOW)]})
        assert got.status_code == 200 and got.json()["bundle"], got.text  # a credential
        why = http.get(f"/v1/approvals/{got.json()['approval_tx']}/explain", headers=AUTH)
        assert why.status_code == 200 and REG_NO in why.text, why.text
        asked = http.post("/v1/presentation-requests", json={
            "type": "business-registration", "claims": ["registration_no"]}).json()
        shown = wallet.present(wallet.list()[0].id, Request.from_json(
            {k: asked[k] for k in ("nonce", "audience", "type", "claims")}), now=NOW)
        report = http.post("/v1/verify", json={"nonce": asked["nonce"],
                                               "envelope": b64url(shown)})
        assert report.json()["claims"] == {"registration_no": REG_NO}, report.text
        cr = http.post("/v1/credit/requests", json={"type": "business-registration"}).json()
        shown = wallet.present(wallet.list()[0].id, Request.from_json(
            {k: cr[k] for k in ("nonce", "audience", "type", "claims")}), now=NOW)
        record = http.post("/v1/credit/record", json={"nonce": cr["nonce"],
                                                      "envelope": b64url(shown)})
        assert [e["points"] for e in record.json()["events"]] == [150], record.text
        for answer in (got, why, report, record):
            assert answer.headers["cache-control"] == "no-store", answer.request.url
        assert http.get(f"/v1/tx/{got.json()['approval_tx']}").headers["cache-control"] == \
            "no-cache"


def test_apply_get_credential_present_it(tmp_path: Path) -> None:
    data, wallet = prepare(tmp_path)
    settings = settings_for(data)
    # 15:08 UTC, 00:08 on the next day in Tokyo: the decision is dated by the agency's
    # calendar (ADR 56)
    settings = type(settings)(**{**settings.__dict__, "agency": "market",
                                 "time_zone": "Asia/Tokyo"})
    app = create_app(settings, clock=lambda: NOW, passphrase=PASS)
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        svc = http.get("/v1/services/business-licence").json()
        assert svc["needs"] == [{"type": "business-registration",
                                 "claims": ["registration_no", "scope"]}]
        opened = http.post("/v1/services/business-licence/applications").json()
        requests = [Request.from_json({k: r[k] for k in ("nonce", "audience", "type", "claims")})
                    for r in opened["requests"]]
        answers = wallet.answer(requests, now=NOW)
        got = http.post("/v1/services/business-licence/apply", json={
            "holder_jwk": wallet.holder_jwk(),
            "presentations": [{"nonce": n, "envelope": b64url(e)} for n, e in answers]})
        assert got.status_code == 200, got.text
        decision = got.json()
        assert (decision["decision"], decision["path"], decision["reasons"],
                decision["documents"]) == ("approved", "fast_track",
                                           ["licensed", "good_credit"], ["premises_plan"])
        # the approval tx on the chain holds no claim value
        tx = http.get(f"/v1/tx/{decision['approval_tx']}").json()
        assert REG_NO not in str(tx) and "catering" not in str(tx)
        # the wallet keeps the approval credential and shows it to a verifier
        info = wallet.receive(unb64url(decision["bundle"]), registry=app.state.node._registry(),
                              now=NOW)
        assert info.type == "approval"
        said = sdjwt.verify_issuer_signed(
            Bundle.from_bytes(unb64url(decision["bundle"])).sd_jwt, now=NOW,
            issuer_public_jwk=sdjwt.jwk_from_ed25519(
                load_private_key(data / "keys" / "market.issuer.key", PASS).public.raw))
        assert (said["decided_on"], utc_text(NOW, "%Y-%m-%d")) == ("2025-06-16", "2025-06-15")
        req = http.post("/v1/presentation-requests", json={
            "type": "approval", "claims": ["service", "decision", "path"]}).json()
        # the preview calls withheld only what nobody learns: the decision on the public
        # ledger (the transaction approval_tx names) shows the reasons, rule and date (ADR 47)
        preview = wallet.preview(info.id, Request.from_json(
            {k: req[k] for k in ("nonce", "audience", "type", "claims")}))
        assert preview.withheld == ("documents",), preview
        assert set(preview.on_ledger) == {"reasons", "rule_version", "decided_on"}
        assert {"reasons", "rule_hash", "ts"} <= set(tx["body"])
        env = wallet.present(info.id, Request.from_json(
            {k: req[k] for k in ("nonce", "audience", "type", "claims")}), now=NOW)
        report = http.post("/v1/verify", json={"nonce": req["nonce"],
                                               "envelope": b64url(env)}).json()
        assert report["verified"], report
        assert report["claims"] == {"service": "business-licence", "decision": "approved",
                                    "path": "fast_track",
                                    "approval_tx": decision["approval_tx"]}
        assert ("approval_decision", True) in [(c["check"], c["ok"]) for c in report["checks"]]
        # an official who forgets the decision gets it asked for anyway (a rejection also
        # gets an approval credential, ADR 41), and the transaction it names
        asked = http.post("/v1/presentation-requests", json={
            "type": "approval", "claims": ["path"]}).json()
        assert asked["claims"] == ["path", "service", "decision", "approval_tx"]
        # An approval credential no decision backs (anchored by hand, as an agency holding
        # the approval grant could): a verifier with the ledger refuses it (ADR 43).
        node = app.state.node

        def refused_at_the_desk(forged: Any, claims: list[str]) -> list[tuple[str, str]]:
            """The failed checks of ``forged`` received and presented for ``claims``: the
            first is the approval decision's."""
            got_fake = wallet.receive(forged.to_bytes(), registry=node._registry(), now=NOW)
            req = http.post("/v1/presentation-requests", json={
                "type": "approval", "claims": claims}).json()
            env = wallet.present(got_fake.id, Request.from_json(
                {k: req[k] for k in ("nonce", "audience", "type", "claims")}), now=NOW)
            report = http.post("/v1/verify", json={"nonce": req["nonce"],
                                                   "envelope": b64url(env)}).json()
            failed = [(c["check"], c["detail"]) for c in report["checks"] if not c["ok"]]
            assert not report["verified"] and failed[0][0] == "approval_decision", report
            return failed

        for fake, why in (
                ({"service": "elderly-allowance", "approval_tx": decision["approval_tx"]},
                 "the credential says service 'elderly-allowance'"),
                ({"service": "business-licence", "approval_tx": "00" * 32},
                 "is no approval transaction on the ledger"),
                ({"service": "business-licence", "approval_tx": decision["approval_tx"],
                  "decision": "rejected"},
                 "the credential says decision 'rejected'")):
            forged, _ = node.issue("approval", {
                "decision": "approved", "path": "standard", "rule_version": "x",
                "reasons": "eligible", "documents": "none", "decided_on": "2026-01-01",
                **fake}, wallet.holder_jwk(), 30)
            failed = refused_at_the_desk(forged, ["decision"])
            assert why in failed[0][1]
        # ... and one naming this very decision, its path, reasons and rule, but not the
        # documents its rule still requires on that path (helper round 20A)
        forged, _ = node.issue("approval", {
            "service": "business-licence", "decision": "approved", "path": "fast_track",
            "rule_version": decision["rule_hash"], "reasons": "licensed,good_credit",
            "documents": "none", "decided_on": "2025-06-16",
            "approval_tx": decision["approval_tx"]}, wallet.holder_jwk(), 30)
        failed = refused_at_the_desk(forged, ["path", "reasons", "documents"])
        assert "the credential says documents 'none'" in failed[0][1], failed
        # the agency lists and explains its decision
        assert http.get("/v1/approvals").status_code == 401
        listed = http.get("/v1/approvals", headers=AUTH).json()
        assert [a["approval_tx"] for a in listed] == [decision["approval_tx"]]
        why = http.get(f"/v1/approvals/{decision['approval_tx']}/explain", headers=AUTH).json()
        assert why["decided_by"] == "otherwise"
        # why "otherwise": every clause, each found false (the rule's own text)
        assert why["not_met"] == [{"clause": i, "when": c["when"], "decision": c["decision"],
                                   "reason": c["reason"]}
                                  for i, c in enumerate(RULES["business-licence"]["clauses"])]
        assert why["not_met"]
        assert "credit.score >= params.fast_track_score" in why["expression"]
        assert why["inputs"]["credit"]["score"] == 750
        # the operator's command line lists it, and says the node's own reason for a refusal
        from test_api import TOKEN
        from typer.testing import CliRunner

        from ledger.cli import agency_app
        cli = CliRunner()
        r = cli.invoke(agency_app, ["approvals", "--node", url],
                       env={"LEDGER_OPERATOR_TOKEN": TOKEN, "COLUMNS": "200"})
        assert r.exit_code == 0, r.output
        assert decision["approval_tx"][:16] in r.output and "fast_track" in r.output
        op = {"LEDGER_OPERATOR_TOKEN": TOKEN, "COLUMNS": "200"}
        r = cli.invoke(agency_app, ["approvals", "--node", url, "--json"], env=op)
        assert r.exit_code == 0 and json.loads(r.stdout) == listed, r.output
        # explained by the start of its id, as the table shows it
        r = cli.invoke(agency_app, ["approvals", "--node", url, "--explain",
                                    decision["approval_tx"][:11]], env=op)
        assert r.exit_code == 0 and json.loads(r.stdout) == why, r.output
        r = cli.invoke(agency_app, ["approvals", "--node", url, "--explain", "0123abcd"],
                       env=op)
        assert r.exit_code == 2 and "no decisions of this node start with 0123abcd" in r.output
        r = cli.invoke(agency_app, ["approvals", "--node", url, "--explain", "abc"], env=op)
        assert r.exit_code == 2 and "8 to 64 hex digits" in r.output
        r = cli.invoke(agency_app, ["approvals", "--node", url],
                       env={"LEDGER_OPERATOR_TOKEN": "wrong", "COLUMNS": "200"})
        assert r.exit_code == 1 and "the node refused it (401)" in r.output, r.output
        # a replayed presentation cannot be reused for a second application
        again = http.post("/v1/services/business-licence/apply", json={
            "holder_jwk": wallet.holder_jwk(),
            "presentations": [{"nonce": n, "envelope": b64url(e)} for n, e in answers]})
        assert again.status_code == 404
        # the business reads its own credit record after proving who it is
        cr = http.post("/v1/credit/requests", json={"type": "business-registration"}).json()
        reg_id = wallet.pick(Request.from_json({k: cr[k] for k in ("nonce", "audience", "type",
                                                                    "claims")}), NOW)
        env = wallet.present(reg_id, Request.from_json(
            {k: cr[k] for k in ("nonce", "audience", "type", "claims")}), now=NOW)
        record = http.post("/v1/credit/record", json={"nonce": cr["nonce"],
                                                      "envelope": b64url(env)}).json()
        assert record["score"] == 750
        assert [e["points"] for e in record["events"]] == [150]
        # the nonce of a request that did not ask for the identifier is refused in words (it
        # answered 500 with a KeyError)
        other = http.post("/v1/presentation-requests", json={
            "type": "business-registration", "claims": ["business_name"]}).json()
        env = wallet.present(reg_id, Request.from_json(
            {k: other[k] for k in ("nonce", "audience", "type", "claims")}), now=NOW)
        refused = http.post("/v1/credit/record", json={"nonce": other["nonce"],
                                                       "envelope": b64url(env)})
        assert refused.status_code == 400, refused.text
        assert "not a credit record request" in refused.json()["detail"]
        node_bytes = None
        evidence = codec.encode(evidence_record(data))
    assert_same_decision_everywhere(data, tmp_path, decision["approval_tx"], evidence,
                                    node_bytes)


def evidence_record(data: Path, path: Path | None = None) -> dict[str, Any]:
    """An approval record of the node over ``data`` (its first, without ``path``), opened
    with the node's evidence key (ADR 66)."""
    from ledger.sealed import EVIDENCE_KEY_FILE, key_mark, open_record, read_evidence_key

    key = read_evidence_key(data / "keys" / EVIDENCE_KEY_FILE, PASS)
    path = path or next((data / "approvals").glob("*.ev"))
    return open_record(path.read_bytes(), {key_mark(key): key}, path.name)


def assert_same_decision_everywhere(data: Path, tmp: Path, txid_hex: str, record: bytes,
                                    _: Any) -> None:
    rec = codec.decode(record, max_size=1 << 21)
    tx = Tx.from_bytes(rec["tx"])
    assert tx.txid.hex() == txid_hex
    shutil.copytree(data / "ledger", tmp / "copy")
    results = []
    with Store(data / "ledger") as node_store:
        h = codec.decode(rec["evidence"])["height"]
        reg = node_store.registry_at(h)
        want = stated(node_store.registry or reg, tx)
        results.append(reevaluate(reg, node_store, tx, rec["evidence"],
                                  block_time=node_store.block(h).time))
        # replay the chain block by block into a fresh store
        with Store(tmp / "replay") as replay:
            for height in range(node_store.head.height + 1 if node_store.head else 0):
                header = node_store.block(height)
                txs = [Tx.from_bytes(r) for r in node_store.block_entries(header)]
                if height == 0:
                    replay.write_block(build_genesis(txs[0]))
                    continue
                assert replay.head is not None and replay.registry is not None
                r = build_block(replay.head, replay.registry, replay, replay.frontier, txs,
                                header.time)
                assert not r.rejected and r.header == header
                replay.write_block(r)
            results.append(reevaluate(replay.registry_at(h), replay, tx, rec["evidence"],
                                      block_time=replay.block(h).time))
    with Store(tmp / "copy") as second:  # a second node's copy of the chain
        results.append(reevaluate(second.registry_at(h), second, tx, rec["evidence"],
                                  block_time=second.block(h).time))
    assert results == [want] * 3


def test_an_agency_without_the_approval_grant_decides_nothing(tmp_path: Path) -> None:
    """Refused before any decision: nothing committed, no evidence record, no listed decision,
    however often the citizen retries (it committed a decision on every attempt)."""
    import pytest

    from contracts.errors import ApplicationError
    from ledger.network import Agency
    from node.approvals import Approvals

    data, wallet = prepare(tmp_path)
    keys = _issuer_keys(data, "edu", "civil")
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        reg = node.store.registry
        assert reg is not None
        signers = [Agency(a, "", keys[a], keys[a]) for a in ("edu", "civil")]
        # an application opened before the grant is withdrawn, answered after
        pending = Approvals(node).open_application("business-licence", "https://market.example")
        answers = wallet.answer([p.request for p in pending], now=NOW)
        node.orderer.submit(governance_tx(node.network, reg.gov_seq + 1, "withdraw_grant",
                                          {"agency": "market", "type": "approval", "at": NOW},
                                          signers)).result(timeout=30)
        service = Approvals(node)
        head = node.store.head
        for _ in range(2):
            with pytest.raises(ApplicationError, match="holds no grant to issue 'approval'"):
                service.apply("business-licence", answers, wallet.holder_jwk())
            # and no claim is asked for: the application is refused before any request
            with pytest.raises(ApplicationError, match="holds no grant to issue 'approval'"):
                service.open_application("business-licence", "https://market.example")
        for p in pending:  # the answers were never opened: their requests are still open
            assert node.request(p.request.nonce, purpose=None) == p
        assert node.store.head == head
        assert service.list() == []
    finally:
        node.close()


def test_a_rule_on_credit_asks_for_nothing_where_there_is_no_credit_secret(
        tmp_path: Path) -> None:
    """A node without the network's credit secret cannot decide a rule on credit: it says so
    before the citizen is asked for a claim (it used to verify, and so see, the claims first)."""
    import pytest

    from node.approvals import Approvals

    data, _ = prepare(tmp_path)
    (data / "keys" / "credit.secret").unlink()
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        service = Approvals(node)
        from ledger.errors import LedgerError

        with pytest.raises(LedgerError, match="holds no network credit secret"):
            service.open_application("business-licence", "https://market.example")
        # nor for the identifier that would read a credit record it cannot find (helper
        # round 20A: it asked, and refused only once it was shown)
        with pytest.raises(LedgerError, match="holds no network credit secret"):
            service.credit_request("business-registration", "https://market.example")
        # and its health says so before any citizen is refused
        from node.api import node_status

        status, problem, _, _ = node_status(node)
        assert status == "degraded" and problem is not None
        assert "decides business-licence (rules on credit) but holds no credit secret" in problem
    finally:
        node.close()
    node = Node(data, "edu", PASS, clock=lambda: NOW, workers=0)
    try:  # an agency that decides no rule on credit needs no secret
        assert node_status(node)[:2] == ("ok", None)
    finally:
        node.close()


def test_a_decision_is_never_committed_without_its_evidence_kept(
        tmp_path: Path, monkeypatch: Any) -> None:
    """The evidence is written before the decision commits: a disk that cannot take it refuses
    the application (503, nothing committed). Once committed, a record that cannot be filed
    stays pending and is filed later, and the citizen still gets the credential (ADR 47)."""
    import errno
    import os
    import time

    from node import approvals

    data, wallet = prepare(tmp_path)
    app = _market_app(data)
    real = approvals.write_atomic

    def refusing(suffix: str) -> Any:
        def write(path: Path, *args: Any, **kwargs: Any) -> None:
            if path.name.endswith(suffix):
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            real(path, *args, **kwargs)
        return write

    def apply(http: httpx.Client) -> httpx.Response:
        opened = http.post("/v1/services/business-licence/applications").json()
        requests = [Request.from_json({k: r[k] for k in ("nonce", "audience", "type", "claims")})
                    for r in opened["requests"]]
        return http.post("/v1/services/business-licence/apply", json={
            "holder_jwk": wallet.holder_jwk(), "presentations": [
                {"nonce": n, "envelope": b64url(e)} for n, e in wallet.answer(requests,
                                                                               now=NOW)]})

    folder = data / "approvals"
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        before = http.get("/v1/head").json()["log_size"]
        monkeypatch.setattr(approvals, "write_atomic", refusing(".pending"))
        r = apply(http)
        assert r.status_code == 503, r.text
        assert "cannot keep the decision's evidence" in r.json()["detail"]
        assert "No space left on device" in r.json()["detail"]
        assert str(tmp_path) not in r.text  # an applicant is told no folder of the node's
        assert http.get("/v1/head").json()["log_size"] == before  # nothing decided
        monkeypatch.setattr(approvals, "write_atomic", refusing(".ev"))
        r = apply(http)
        assert r.status_code == 200, r.text  # decided, and the credential issued
        txid = r.json()["approval_tx"]
        assert [p.name for p in folder.iterdir()] == [f"{txid}.pending"]
        # it holds claim values: the node's user alone reads it, as the filed record
        assert (folder / f"{txid}.pending").stat().st_mode & 0o777 == 0o600
        # ... and sealed with the evidence key as the filed record is (ADR 66): a record left
        # pending (a disk that refuses filing, a crash) keeps no claim value in its bytes
        assert REG_NO.encode() not in (folder / f"{txid}.pending").read_bytes()
        monkeypatch.setattr(approvals, "write_atomic", real)
        # a record of a decision that never reached the ledger, a day old: removed
        stale = folder / f"{'ab' * 32}.pending"
        stale.write_bytes(b"claims it no longer needs")
        os.utime(stale, (NOW - 2 * 86400, time.time() - 2 * 86400))
        # the node still running an hour on (no restart): the next request files what is
        # pending, and removes what never will be
        app.state.approvals._filed_at -= 3601
        listed = http.get("/v1/approvals", headers=AUTH)
        assert listed.status_code == 200, listed.text
        assert [a["approval_tx"] for a in listed.json()] == [txid]
        filed = [p.name for p in folder.iterdir() if p.is_file()]
        assert len(filed) == 1 and filed[0].endswith(f"-{txid}.ev")


def test_an_agency_records_and_withdraws_a_credit_event_through_its_node(tmp_path: Path) -> None:
    """`agency credit --node`: the node signs with the agency's issuing key and keys the subject
    with the credit secret; the identifier comes from a file or a pipe, never the command line,
    and is neither printed nor on the ledger. A withdrawal names the event; a free-text reason,
    a category outside the policy and a missing token are refused, and nothing is recorded."""
    import json
    import os
    import subprocess
    import sys

    from ledger.state import credit_events

    data, _ = prepare(tmp_path)
    agency = str(Path(sys.executable).with_name("agency"))
    subject_file = tmp_path / "subject.txt"
    subject_file.write_text(REG_NO + "\n")
    env = {**os.environ, "LEDGER_OPERATOR_TOKEN": AUTH["Authorization"].split()[1]}

    def run(*args: str, stdin: str = "", token: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([agency, "credit", "--node", url, *args, "--json"], input=stdin,
                              capture_output=True, text=True, timeout=120, check=False,
                              env=env if token else {k: v for k, v in env.items()
                                                     if k != "LEDGER_OPERATOR_TOKEN"})

    app = _market_app(data)
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        size = http.get("/v1/head").json()["log_size"]
        for args, stdin, token, code, said in [
            (("--reason", "Late filing by Mr Li"), "", True, 2, "must be a code"),
            (("--reason", "late", "--category", "permits", "--points", "-5"), "", False, 2,
             "LEDGER_OPERATOR_TOKEN"),
            (("--reason", "late", "--category", "gossip", "--points", "-5"), REG_NO, True, 1,
             "unknown_category"),
            (("--reason", "late", "--points", "-5"), REG_NO, True, 2, "--category"),
        ]:
            r = run(*args, stdin=stdin, token=token)
            assert r.returncode == code and said in r.stderr, (args, r.stderr)
            assert REG_NO not in r.stdout + r.stderr
        # a subject typed in full-width (an input method) or saved as GBK would be another
        # subject, its events split from the business's own: refused
        wide = run("--reason", "late", "--category", "permits", "--points", "-5",
                   stdin=REG_NO.translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)}))
        assert wide.returncode != 0 and "full-width" in wide.stderr, wide.stderr
        gbk = subject_file.with_name("subject-gbk.txt")
        gbk.write_bytes("长盛贸易".encode("gbk"))
        r = run("--reason", "late", "--category", "permits", "--points", "-5",
                "--subject-file", str(gbk))
        assert r.returncode == 2 and "not UTF-8" in r.stderr, r.stderr
        assert http.get("/v1/head").json()["log_size"] == size
        r = run("--reason", "late-filing", "--category", "permits", "--points", "-40",
                "--date", "2025-06-01", "--subject-file", str(subject_file))
        assert r.returncode == 0, r.stderr
        recorded = json.loads(r.stdout)
        # without --date the event is dated by the node's clock (behind this machine's here)
        r = run("--reason", "clean-record", "--category", "permits", "--points", "10",
                "--valid-days", "30", stdin=REG_NO)
        assert r.returncode == 0, r.stderr
        undated = json.loads(r.stdout)
        r = run("--reason", "filed-in-error", "--withdraw", recorded["txid"],
                "--subject-file", "-", stdin=REG_NO + "\n")  # "-": standard input
        assert r.returncode == 0, r.stderr
        withdrawn = json.loads(r.stdout)
        assert REG_NO not in r.stdout + r.stderr
    with Store(data / "ledger", create=False) as store:
        events = credit_events(store, pseudonym(REG_NO, SECRET))
        raw = b"".join(store.entry(i) for i in range(size, size + 3))
    ours = [e for e in events if e.txid.hex() == recorded["txid"]]
    assert len(ours) == 1
    e = ours[0]
    assert (e.agency, e.category, e.points, e.reason) == ("market", "permits", -40, "late-filing")
    assert e.date == 1748736000 and e.expiry == e.date + 3 * 365 * 86400
    assert e.withdrawn_by.hex() == withdrawn["txid"]
    by_node = next(e for e in events if e.txid.hex() == undated["txid"])
    assert (by_node.date, by_node.expiry) == (NOW, NOW + 30 * 86400)
    assert REG_NO.encode() not in raw  # the ledger holds the pseudonym only


# -- found by a mutation round of the node, the verifier and the codec (ADR 54) ----------------

def test_the_operator_routes_of_approvals_and_credit_refuse_a_missing_or_wrong_token(
        tmp_path: Path) -> None:
    """Recording a credit event (signed with the agency's issuing key, about any subject) and
    reading a decision's explanation (claim values) are operator-only on the server itself:
    401 without a token or with a wrong one, and nothing is recorded. (The `agency credit`
    CLI refuses to send without a token, so its test never reaches the server's check.)"""
    data, _ = prepare(tmp_path)
    app = _market_app(data)
    event = dict(LATE_FILING)
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        size = http.get("/v1/head").json()["log_size"]
        for headers in ({}, {"Authorization": "Bearer not-the-token"}):
            r = http.post("/v1/credit/events", json=event, headers=headers)
            assert r.status_code == 401, r.text
            assert r.headers["www-authenticate"] == "Bearer"
            r = http.get(f"/v1/approvals/{'ab' * 32}/explain", headers=headers)
            assert r.status_code == 401, r.text
            assert http.get("/v1/approvals", headers=headers).status_code == 401
        assert http.get("/v1/head").json()["log_size"] == size  # nothing was recorded
        # the same event with the token is recorded: the refusals above were the token's
        r = http.post("/v1/credit/events", json=event, headers=AUTH)
        assert r.status_code == 200, r.text
        assert http.get("/v1/head").json()["log_size"] == size + 1


def test_a_credit_event_already_expired_is_refused_in_words(tmp_path: Path) -> None:
    """An event whose expiry is already past when the node would record it counts for nothing:
    the ledger takes it, so the node refuses it, saying so, and records nothing (ADR 70)."""
    data, _ = prepare(tmp_path)
    app = _market_app(data)
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        size = http.get("/v1/head").json()["log_size"]
        event = {**LATE_FILING, "valid_days": None, "date": NOW - 10 * 86400}
        for expiry in (NOW - 86400, NOW):
            r = http.post("/v1/credit/events", json={**event, "expiry": expiry}, headers=AUTH)
            assert r.status_code == 400, r.text
            assert "already past: it would never count" in r.json()["detail"], r.text
        assert http.get("/v1/head").json()["log_size"] == size
        r = http.post("/v1/credit/events", json={**event, "expiry": NOW + 1}, headers=AUTH)
        assert r.status_code == 200, r.text
        assert http.get("/v1/head").json()["log_size"] == size + 1


def test_a_credit_event_given_both_expiry_and_valid_days_is_refused(tmp_path: Path) -> None:
    """An event given an expiry and valid_days that disagree was recorded with the expiry, the
    valid_days said nothing about: which one the operator meant cannot be told (helper round
    20A). Refused in words, nothing recorded."""
    data, _ = prepare(tmp_path)
    app = _market_app(data)
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        size = http.get("/v1/head").json()["log_size"]
        r = http.post("/v1/credit/events", headers=AUTH,
                      json={**LATE_FILING, "expiry": NOW + 5 * 86400})  # and valid_days 30
        assert r.status_code == 400, r.text
        assert "expiry or valid_days, not both" in r.json()["detail"], r.text
        assert http.get("/v1/head").json()["log_size"] == size


def test_an_application_whose_presentations_are_not_bound_to_the_applicants_key_is_refused(
        tmp_path: Path) -> None:
    """The approval credential is issued to the holder_jwk the application names; every
    presented credential must be bound to that same key. Otherwise one person's verified
    business registration would get an approval credential bound to somebody else's key (or
    credentials of several holders would be pooled into one application). Refused, and
    nothing is decided or committed."""
    import pytest

    from contracts.errors import ApplicationError
    from ledger import sdjwt
    from ledger.keys import PrivateKey

    data, wallet = prepare(tmp_path)
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        service, answers = _licence_answers(node, wallet)
        stranger = sdjwt.jwk_from_ed25519(PrivateKey.generate().public.raw)
        head = node.store.head
        with pytest.raises(ApplicationError, match="bound to the applicant's holder key"):
            service.apply("business-licence", list(answers), stranger)
        assert node.store.head == head  # no approval, no approval credential
        assert service.list() == []
    finally:
        node.close()


def test_an_answer_to_a_desks_request_reads_no_credit_record_and_decides_nothing(
        tmp_path: Path) -> None:
    """A request opened at the verifier's desk asks a citizen to show a claim to the desk. Its
    answer (a QR code on the citizen's phone, the text the official pastes) was taken as well
    by ``/v1/credit/record``, which is public: whoever held it (the official, a bystander who
    photographed the code) read the business's credit events and score, and spent the desk's
    request; and by an application, deciding one the citizen never made. An answer counts only
    where its request was opened: elsewhere it is refused in words and spends nothing."""
    from node.approvals import application_purpose

    data, wallet = prepare(tmp_path)
    app = _market_app(data)
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        def desk_answer(claims: list[str]) -> tuple[str, str]:
            got = http.post("/v1/presentation-requests", json={
                "type": "business-registration", "claims": claims}).json()
            request = Request.from_json({k: got[k] for k in ("nonce", "audience", "type",
                                                             "claims")})
            env = wallet.present(wallet.pick(request, NOW), request, now=NOW)
            return request.nonce, b64url(env)

        nonce, env = desk_answer(["registration_no"])
        read = http.post("/v1/credit/record", json={"nonce": nonce, "envelope": env})
        assert read.status_code == 400, read.text
        assert "not a credit record request" in read.json()["detail"]
        assert "score" not in read.text and "clean_inspections" not in read.text
        before = http.get("/v1/head").json()["log_size"]
        nonce2, env2 = desk_answer(["registration_no", "scope"])
        applied = http.post("/v1/services/business-licence/apply", json={
            "holder_jwk": wallet.holder_jwk(),
            "presentations": [{"nonce": nonce2, "envelope": env2}]})
        assert applied.status_code == 400, applied.text
        assert "not a request of an application" in applied.json()["detail"]
        assert http.get("/v1/head").json()["log_size"] == before  # nothing decided
        assert not (data / "approvals").exists() or not any((data / "approvals").iterdir())
        # neither was spent: the desk checks both
        for n, e in ((nonce, env), (nonce2, env2)):
            checked = http.post("/v1/verify", json={"nonce": n, "envelope": e})
            assert checked.status_code == 200 and checked.json()["verified"], checked.text
        # and the other way round: a credit record request's answer is not the desk's
        cr = http.post("/v1/credit/requests", json={"type": "business-registration"}).json()
        request = Request.from_json({k: cr[k] for k in ("nonce", "audience", "type", "claims")})
        env3 = b64url(wallet.present(wallet.pick(request, NOW), request, now=NOW))
        desk = http.post("/v1/verify", json={"nonce": request.nonce, "envelope": env3})
        assert desk.status_code == 404, desk.text
        record = http.post("/v1/credit/record", json={"nonce": request.nonce, "envelope": env3})
        assert record.status_code == 200 and record.json()["score"] == 750, record.text
        # nor does an application's answer count for another service's (civil decides two):
        # a request opened for another service's application decides nothing here
        other = app.state.node.new_request(
            "business-registration", ["registration_no", "scope"], app.state.settings.audience,
            purpose=application_purpose("elderly-allowance")).request
        env4 = b64url(wallet.present(wallet.pick(other, NOW), other, now=NOW))
        before = http.get("/v1/head").json()["log_size"]
        applied = http.post("/v1/services/business-licence/apply", json={
            "holder_jwk": wallet.holder_jwk(),
            "presentations": [{"nonce": other.nonce, "envelope": env4}]})
        assert applied.status_code == 400, applied.text
        assert "not a request of an application for 'business-licence'" in applied.text
        assert http.get("/v1/head").json()["log_size"] == before


def test_a_revoked_identity_credential_reads_no_credit_record(tmp_path: Path) -> None:
    """Reading a credit record needs an identity presentation that *verifies*, status
    included: a revoked (say stolen) business registration, whose signatures and disclosures
    all check, must not give its presenter the business's credit events and score."""
    import pytest

    from contracts.errors import ApplicationError
    from node.approvals import Approvals

    data, wallet = prepare(tmp_path)
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        service = Approvals(node)
        pending = service.credit_request("business-registration", "https://market.example")
        reg_id = wallet.pick(pending.request, NOW)
        env = wallet.present(reg_id, pending.request, now=NOW)
        node.set_status(bytes.fromhex(reg_id), "revoked", "stolen")
        with pytest.raises(ApplicationError, match="did not verify"):
            service.credit_record(pending.request.nonce, env)
        # (the same presentation not revoked reads the record: test_apply_get_credential_...)
    finally:
        node.close()


def test_a_node_of_another_agency_opens_no_application_for_a_service_it_does_not_decide(
        tmp_path: Path) -> None:
    """business-licence is decided by market: civil's node refuses to open an application
    for it (and to decide one), naming the agency that decides it, before it asks anyone for
    a claim. The ledger would refuse its approval at commit, but only after the citizen's
    claims were collected and checked by the wrong agency."""
    import pytest

    from contracts.errors import ApplicationError
    from node.approvals import Approvals

    data, wallet = prepare(tmp_path)
    node = Node(data, "civil", PASS, clock=lambda: NOW, workers=0)
    try:
        service = Approvals(node)
        head = node.store.head
        with pytest.raises(ApplicationError, match="decided by 'market', not by this node"):
            service.open_application("business-licence", "https://civil.example")
        assert not node._requests  # nothing asked of anyone
        with pytest.raises(ApplicationError, match="decided by 'market', not by this node"):
            service.apply("business-licence", [], wallet.holder_jwk())
        assert node.store.head == head
    finally:
        node.close()


def test_an_identifier_in_full_width_characters_is_not_issued(tmp_path: Path) -> None:
    """An identity credential whose identifier an input method typed in full-width characters
    would give its holder a pseudonym no credit event names: every credit-checked application
    with it would be refused ("type it again"). The node refuses to issue it, naming the claim
    and why, never the value (ADR 55): the registration number a rule reads as the subject,
    and the catalogue's person id."""
    import pytest

    from ledger.credentials import ClaimError, identifier_claims

    data, wallet = prepare(tmp_path)
    with Store(data / "ledger", create=False) as store:
        reg = store.registry
        assert reg is not None
        # only the type a rule's subject names: another type's claim of that name is no one's
        # identifier (a mutant reading every rule's subject claim in every type went unnoticed)
        assert identifier_claims(reg, "business-registration") == {
            "registration_no": "business-licence"}
        assert identifier_claims(reg, "person-id") == {}
    wide_reg = "".join(chr(ord(c) + 0xFEE0) for c in REG_NO)  # U+FF01.. forms of ASCII
    wide_id = "\uff11\uff11\uff10\uff11\uff10\uff15\uff11\uff19\uff18\uff10"
    for agency, kind, claims, claim, why in (
            ("market", "business-registration",
             {"registration_no": wide_reg, "business_name": "Lingnan Tea House",
              "scope": "catering"}, "registration_no", "the service 'business-licence' reads"),
            ("civil", "person-id",
             {"person_id": wide_id, "holder_name": "Chen Xiaoming", "birth_date": "1958-03-02",
              "district": "Changsheng"}, "person_id", "identifier for credit records")):
        node = Node(data, agency, PASS, clock=lambda: NOW, workers=0)
        try:
            before = node.store.head
            with pytest.raises(ClaimError) as e:
                node.issue(kind, claims, wallet.holder_jwk(), 365)
            assert f"claim {claim!r} holds full-width" in str(e.value) and why in str(e.value)
            assert claims[claim] not in str(e.value)
            assert node.store.head == before  # nothing anchored
            half = {**claims, claim: unicodedata.normalize("NFKC", claims[claim])}
            node.issue(kind, half, wallet.holder_jwk(), 365)  # the same typed half-width
        finally:
            node.close()


def test_no_application_is_decided_under_a_costly_rule_already_on_the_chain(
        tmp_path: Path) -> None:
    """A rule registered before nodes refused costly rules at /v1/tx (ADR 57) stays on the
    chain: the node decides no application under it (each would cost seconds of CPU), and
    opens none, and says so; the agency registers a cheaper version. Here the costly version
    replaces the rule between an application's opening and its answers."""
    from contracts.catalogue import rule
    from ledger.network import Agency

    data, wallet = prepare(tmp_path)
    nested = "true"
    for d in range(4):
        nested = f"[0,0,0,0,0,0,0,0,0,0].all(x{d}, {nested})"
    keys = _issuer_keys(data, "edu", "civil")
    app = _market_app(data)
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        opened = http.post("/v1/services/business-licence/applications").json()
        requests = [Request.from_json({k: r[k] for k in ("nonce", "audience", "type", "claims")})
                    for r in opened["requests"]]
        answers = wallet.answer(requests, now=NOW)
        node = app.state.node  # through the orderer, as an older node's /v1/tx took it
        costly = rule("business-licence", agency="market", clauses=[
            {"when": nested, "decision": "rejected", "reason": "scope_not_licensable"}])
        node.orderer.submit(governance_tx(
            node.network, node.store.registry.gov_seq + 1, "register_rule", {"rule": costly},
            [Agency(a, "", keys[a], keys[a]) for a in ("edu", "civil")])).result(timeout=30)
        head = http.get("/v1/head").json()
        got = http.post("/v1/services/business-licence/apply", json={
            "holder_jwk": wallet.holder_jwk(),
            "presentations": [{"nonce": n, "envelope": b64url(e)} for n, e in answers]})
        assert got.status_code == 400, got.text
        said = got.json()["detail"]
        assert "is not decided by this node: its rule would cost too much" in said, said
        assert "a comprehension" in said and "register a cheaper version" in said
        assert http.get("/v1/head").json() == head  # nothing decided, nothing recorded
        again = http.post("/v1/services/business-licence/applications")
        assert again.status_code == 400, again.text
        assert "would cost too much" in again.json()["detail"]


# -- found by a mutation round of the wallet, the contracts and the approvals (ADR 56) ---------

def test_a_node_that_could_not_prove_a_decision_asks_for_no_claim(tmp_path: Path) -> None:
    """A solo node holding fewer current node keys than the quorum could commit a decision
    but not prove the approval credential: it opens no application (no claim is asked for or
    seen), and one opened before it lost them is decided nothing, nothing committed."""
    import pytest

    from ledger.errors import OrderingError

    data, wallet = prepare(tmp_path)
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        service, answers = _licence_answers(node, wallet)
        # its node keys other than its own are gone (rotated by governance, say)
        node._node_key_files = {"market": node._node_key_files["market"]}
        head = node.store.head
        with pytest.raises(OrderingError, match="a final checkpoint needs 2"):
            service.open_application("business-licence", "https://market.example")
        with pytest.raises(OrderingError, match="a final checkpoint needs 2"):
            service.apply("business-licence", answers, wallet.holder_jwk())
        assert node.store.head == head and service.list() == []
        assert not (data / "approvals").exists() or not any((data / "approvals").iterdir())
    finally:
        node.close()


def test_an_application_with_a_presentation_that_does_not_verify_is_decided_nothing(
        tmp_path: Path) -> None:
    """The answers' signatures and disclosures all check, but the business registration was
    revoked after the application opened: its presentation does not verify (status), so no
    decision is made or committed, and no approval credential issued."""
    import pytest

    from contracts.errors import ApplicationError

    data, wallet = prepare(tmp_path)
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        service, answers = _licence_answers(node, wallet)
        reg_id = wallet.list()[0].id
        node.set_status(bytes.fromhex(reg_id), "revoked", "stolen")
        head = node.store.head
        with pytest.raises(ApplicationError, match=r"'business-registration' presentation did "
                                                   r"not verify \(.*status"):
            service.apply("business-licence", answers, wallet.holder_jwk())
        assert node.store.head == head and service.list() == []
    finally:
        node.close()


def test_a_rule_reads_now_as_the_head_s_block_time_not_the_node_s_clock(tmp_path: Path) -> None:
    """``now`` in a rule is the block time of the head the decision is evaluated at (what the
    evidence records and an audit evaluates again), not the node's clock: here a serious event
    turns three years old between the head's time and the node's clock, and the licence is
    decided as at the head (standard path), which re-evaluation confirms."""
    from contracts import reevaluate
    from contracts.catalogue import YEAR
    from ledger import codec

    data, wallet = prepare(tmp_path)
    clock = [NOW]
    node = Node(data, "market", PASS, clock=lambda: clock[0], workers=0)
    try:
        civil = load_private_key(data / "keys" / "civil.issuer.key", PASS)
        serious = make_tx(node.network, "credit", {  # utilities weigh 50: 750 - 50 = 700
            "subject": pseudonym(REG_NO, SECRET), "category": "utilities", "points": -100,
            "reason": "unpaid", "date": NOW - 3 * YEAR + 50, "expiry": NOW + YEAR,
            "ts": NOW}, [civil])
        node.orderer.submit(serious).result(timeout=30)
        head = node.store.head
        assert head is not None and head.time == NOW
        clock[0] = NOW + 100  # no block since: the head's time stays NOW
        service, answers = _licence_answers(node, wallet)
        decided = service.apply("business-licence", answers, wallet.holder_jwk())
        assert (decided.outcome.decision, decided.outcome.path) == ("approved", "standard")
        record = evidence_record(data)
        ev = codec.decode(record["evidence"])
        assert (ev["height"], ev["time"], ev["credit"]["score"]) == (head.height, NOW, 700)
        store = node.store
        assert reevaluate(store.registry_at(ev["height"]), store, decided.approval,
                          record["evidence"], block_time=store.block(ev["height"]).time) == \
            stated(store.registry_at(ev["height"]), decided.approval)
    finally:
        node.close()


def test_a_decision_the_ledger_refuses_leaves_no_record_of_its_claims(
        tmp_path: Path, monkeypatch: Any) -> None:
    """The evidence (claim values) is kept as a pending record before the decision commits; a
    decision the ledger then refuses (here: a new version of the rule committed between the
    evaluation and the commit, so the decision's is stale) is no decision, and its record is
    removed at once rather than a day later."""
    import pytest

    from contracts.catalogue import rule
    from ledger.errors import TxRejected
    from ledger.network import Agency

    data, wallet = prepare(tmp_path)
    keys = _issuer_keys(data, "edu", "civil")
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        service, answers = _licence_answers(node, wallet)
        real_commit = node.commit
        upgraded = rule("business-licence", agency="market", title="Operating licence v2")

        def upgrade_first(tx: Tx, what: str, then: str) -> Any:
            reg = node.store.registry
            assert reg is not None
            node.orderer.submit(governance_tx(
                node.network, reg.gov_seq + 1, "register_rule", {"rule": upgraded},
                [Agency(a, "", keys[a], keys[a]) for a in ("edu", "civil")])).result(timeout=30)
            return real_commit(tx, what, then)

        monkeypatch.setattr(node, "commit", upgrade_first)
        with pytest.raises(TxRejected) as e:
            service.apply("business-licence", answers, wallet.holder_jwk())
        assert e.value.code == "stale_rule"
        assert list((data / "approvals").iterdir()) == []  # no claim values kept
        assert service.list() == []
    finally:
        node.close()


def test_a_decision_the_node_took_nothing_of_leaves_no_record_of_its_claims(
        tmp_path: Path) -> None:
    """A decision whose commit the node refused before taking anything (its orderer stopped:
    "taken": false, ADR 84) is no decision either: its pending record, with the claim values,
    stayed for a day (helper round 43T's note)."""
    import pytest

    from ledger.errors import OrderingError

    data, wallet = prepare(tmp_path)
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        service, answers = _licence_answers(node, wallet)
        node.orderer.stop()
        with pytest.raises(OrderingError, match="orderer is stopped") as e:
            service.apply("business-licence", answers, wallet.holder_jwk())
        assert e.value.taken is False
        assert list((data / "approvals").iterdir()) == []  # no claim values kept
    finally:
        node.close()


def test_a_decision_whose_commit_may_yet_be_taken_keeps_its_pending_record(
        tmp_path: Path, monkeypatch: Any) -> None:
    """A commit that failed without saying it took nothing (here the block writer's disk is
    full: the block may be on disk, ``taken`` unknown) keeps the decision's pending record: it
    may commit yet, and the record is what its approval credential is collected from. Only a
    refusal that took nothing (the test above) removes it; a mutant removing it on any
    failure of the commit lived (round 44M)."""
    import plyvel
    import pytest

    from ledger.errors import LedgerError

    data, wallet = prepare(tmp_path)
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        service, answers = _licence_answers(node, wallet)

        def full(*_: object, **__: object) -> None:
            raise plyvel.IOError(b"IO error: 000008.log: No space left on device")

        monkeypatch.setattr(Store, "write_block", full)
        with pytest.raises(LedgerError) as e:
            service.apply("business-licence", answers, wallet.holder_jwk())
        assert e.value.taken is None, e.value
        kept = list((data / "approvals").iterdir())
        assert len(kept) == 1 and kept[0].name.endswith(".pending"), kept
    finally:
        node.close()


def test_a_decision_committed_before_its_credential_was_refused_is_not_said_untaken(
        tmp_path: Path) -> None:
    """A refusal that took nothing of the approval credential's issue (here: a planned
    rotation of two node keys comes due between the decision's commit and the issue, so the
    solo node is short of checkpoint keys) came after the decision was committed: the answer
    said ``"taken": false`` and `wallet apply` said "nothing was taken; apply again", and an
    application sent again is decided again (a second decision on the ledger). It says the
    decision is on the ledger and how to collect its credential (helper round 43V)."""
    from ledger.keys import PrivateKey

    # due a minute on: then market's node key alone is held
    got, data, before, after = _applied_as_changes_come_due(tmp_path, [
        ("rotate_key", {"agency": who, "role": "node", "new_key": PrivateKey.generate().public.raw,
                        "at": NOW + 60}) for who in ("edu", "civil")])
    assert got.status_code == 503, got.text
    assert "taken" not in got.json(), got.text  # the decision was taken
    said = got.json()["detail"]
    assert "is committed" in said and "--collect" in said, said
    decisions = list((data / "approvals").glob("*.ev"))
    assert len(decisions) == 1, decisions  # kept: its credential is collected later
    assert after == before + 1  # the decision


def _applied_as_changes_come_due(tmp_path: Path, changes: list[tuple[str, dict[str, Any]]]
                                 ) -> tuple[httpx.Response, Path, int, int]:
    """A business-licence application answered by market's solo node, the governance
    ``changes`` submitted first (each due a minute on), the node's clock two minutes on once
    the decision's block is written: (the answer, the data folder, the height before the
    application, the height after)."""
    from ledger.network import Agency

    data, wallet = prepare(tmp_path)
    keys = _issuer_keys(data, "edu", "civil", "market")
    node_box: list[Node] = []
    decided_above: list[int] = []

    def clock() -> int:  # two minutes on once the decision's block is written
        if decided_above and node_box[0].store.head.height > decided_above[0]:
            return NOW + 120
        return NOW

    node = Node(data, "market", PASS, clock=clock, workers=0)
    node_box.append(node)
    try:
        signers = [Agency(a, a, k, k) for a, k in keys.items()]
        for action, args in changes:
            node.orderer.submit(governance_tx(node.network, node._registry().gov_seq + 1,
                                              action, args, signers)).result(timeout=30)
        app = create_app(replace(settings_for(data), agency="market"), node=node)
        with serve(app) as url, httpx.Client(base_url=url, timeout=60) as http:
            opened = http.post("/v1/services/business-licence/applications").json()
            requests = [Request.from_json({k: r[k] for k in ("nonce", "audience", "type",
                                                             "claims")})
                        for r in opened["requests"]]
            answers = wallet.answer(requests, now=NOW)
            head = node.store.head
            assert head is not None
            decided_above.append(head.height)
            got = http.post("/v1/services/business-licence/apply", json={
                "holder_jwk": wallet.holder_jwk(),
                "presentations": [{"nonce": n, "envelope": b64url(e)} for n, e in answers]})
        after = node.store.head
        assert after is not None
        return got, data, decided_above[0], after.height
    finally:
        node.close()


@pytest.mark.parametrize("change", ["withdraw_grant", "rotate_issuer_key"])
def test_a_decision_committed_before_a_4xx_of_its_credential_says_how_to_collect_it(
        tmp_path: Path, change: str) -> None:
    """The refusals of the approval credential's issue that are a 4xx (ADR 84's Left, 44T):
    after the decision is committed, ``_issue_approval`` checks again that the agency may
    issue approval credentials with the node's issuing key now, and a grant withdrawn or an
    issuer key rotated that comes due between the two was answered 400 "holds no grant" /
    "not a valid issuer key": a plain refusal of the application, though its decision is on
    the ledger (an application sent again is decided again). The answer says the decision is
    committed and how to collect its credential, with code ``decided_not_issued``."""
    from ledger.keys import PrivateKey

    got, data, before, after = _applied_as_changes_come_due(tmp_path, [
        ("withdraw_grant", {"agency": "market", "type": "approval", "at": NOW + 60})
        if change == "withdraw_grant" else
        ("rotate_key", {"agency": "market", "role": "issuer",
                        "new_key": PrivateKey.generate().public.raw, "at": NOW + 60})])
    assert got.status_code >= 500, got.text  # not a refusal of the application
    assert "taken" not in got.json(), got.text
    assert got.json().get("code") == "decided_not_issued", got.text
    said = got.json()["detail"]
    assert "is committed" in said and "wallet apply business-licence --collect" in said, said
    assert ("no grant" if change == "withdraw_grant" else "issuer key") in said, said
    decisions = list((data / "approvals").glob("*.ev"))
    assert len(decisions) == 1, decisions  # kept: its credential is collected later
    assert after == before + 1  # the decision


def test_a_pending_record_is_removed_only_a_day_after_it_was_written(tmp_path: Path) -> None:
    """A record whose decision is not on the ledger may be one still being committed: it stays
    until a day after it was written (PENDING_DAYS), and only then goes."""
    import os

    from node.approvals import PENDING_DAYS, Approvals

    data, _ = prepare(tmp_path)
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        service = Approvals(node)
        service.folder.mkdir(mode=0o700)
        young, old = (service.folder / f"{c * 64}.pending" for c in "ab")
        now = 2_000_000_000.0
        for path, age in ((young, PENDING_DAYS * 86400 - 10), (old, PENDING_DAYS * 86400 + 10)):
            path.write_bytes(b"claims of a decision not (yet) on the ledger")
            os.utime(path, (now - age, now - age))
        assert service.file_pending(now) == 0
        assert [p.name for p in service.folder.iterdir()] == [young.name]
    finally:
        node.close()


def test_a_pending_record_stays_while_this_copy_has_not_reached_where_its_decision_could_be(
        tmp_path: Path) -> None:
    """A replicated node that was down over a day starts behind: its first approval request
    filed the pending records, and removed those a day old whose decisions its copy did not
    hold yet, though they may be committed in blocks it was still to read (a decision commits
    in a block within MAX_BACKDATE of its ts): decisions on the ledger with no evidence for any
    audit. A record goes only once this copy's head is past where its decision could commit
    (helper round 20A)."""
    import os

    from contracts import Evidence
    from contracts.rules import Outcome
    from ledger.state import MAX_BACKDATE
    from node.approvals import PENDING_DAYS, Approvals

    data, _ = prepare(tmp_path)
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        service = Approvals(node)
        head = node.store.head
        assert head is not None

        def pending(ts: int) -> Path:
            """A decision's pending record, as apply keeps it, signed at ``ts``."""
            evidence = Evidence("business-licence", bytes(32), head.height, head.time, {}, (),
                                bytes(16))
            tx = make_tx(node.network, "approval", {
                "service": "business-licence", "rule_hash": bytes(32), "decision": "approved",
                "path": "standard", "reasons": ["licensed"], "evidence": evidence.digest,
                "ts": ts}, [node.issuer_key])
            path, _ = service._keep_pending(tx, evidence, Outcome(
                "approved", "standard", ("licensed",), (), -1, ""), {})
            os.utime(path, (ts, ts))
            return path

        later = pending(head.time + 3 * 86400)  # signed after this copy's head: not read yet
        past = pending(head.time - MAX_BACKDATE - 1)  # could only be in blocks it holds
        now = head.time + 3 * 86400 + PENDING_DAYS * 86400 + 10
        assert service.file_pending(now) == 0
        assert [p.name for p in service.folder.iterdir()] == [later.name]
        assert not past.exists()
    finally:
        node.close()


def test_an_explanation_lists_as_not_met_only_the_clauses_before_the_one_that_decided(
        tmp_path: Path) -> None:
    """Decided by clauses[1] (low credit): clause 0 was found false, clause 1 itself was
    not."""
    from node.approvals import Approvals

    data, wallet = prepare(tmp_path)
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        market = load_private_key(data / "keys" / "market.issuer.key", PASS)
        node.orderer.submit(make_tx(node.network, "credit", {  # 750 - 500: under 300
            "subject": pseudonym(REG_NO, SECRET), "category": "permits", "points": -500,
            "reason": "fraud", "date": NOW, "expiry": NOW + 86_400, "ts": NOW + 1},
            [market])).result(timeout=30)
        service = Approvals(node)
        pending = service.open_application("business-licence", "https://market.example")
        decided = service.apply("business-licence",
                                wallet.answer([p.request for p in pending], now=NOW),
                                wallet.holder_jwk())
        assert decided.outcome.reasons == ("low_credit",)
        why = service.explain(decided.approval.txid.hex())
        clauses = RULES["business-licence"]["clauses"]
        assert (why["decided_by"], why["expression"]) == ("clauses[1]", clauses[1]["when"])
        assert why["not_met"] == [{"clause": 0, "when": clauses[0]["when"],
                                   "decision": clauses[0]["decision"],
                                   "reason": clauses[0]["reason"]}]
    finally:
        node.close()


def test_a_credit_event_with_a_free_text_reason_or_withdrawing_no_event_is_refused(
        tmp_path: Path) -> None:
    """The node itself (not only `agency credit`) refuses a reason that is not a public code
    (free text could name the person), a withdrawal of an event the subject does not have, and
    a withdrawal given what only a new event has (as if it amended the event); nothing is
    committed."""
    import pytest

    from contracts.errors import ApplicationError
    from node.approvals import Approvals
    from node.service import NotFound

    data, _ = prepare(tmp_path)
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        service = Approvals(node)
        head = node.store.head
        with pytest.raises(ApplicationError, match="reason: "):
            service.record_credit(REG_NO, reason="Late filing by Mr Li", category="permits",
                                  points=-5, valid_days=30)
        with pytest.raises(NotFound, match="no credit event with that id"):
            service.record_credit(REG_NO, reason="filed-in-error", withdraws=bytes(32))
        assert node.store.head == head
        # A withdrawal given points (or a category, dates) as if it amended the event: the
        # event was withdrawn and the rest ignored, no amended event recorded. Refused.
        recorded = service.record_credit(REG_NO, reason="late-filing", category="permits",
                                         points=-40, valid_days=30)
        head = node.store.head
        for amended in ({"points": -20}, {"category": "permits"}, {"date": NOW},
                        {"expiry": NOW + 86_400}, {"valid_days": 10}):
            with pytest.raises(ApplicationError, match="a withdrawal takes no"):
                service.record_credit(REG_NO, reason="amended", withdraws=recorded.txid,
                                      **amended)
        assert node.store.head == head
    finally:
        node.close()


def test_an_application_without_the_subject_s_presentation_is_refused_in_words(
        tmp_path: Path) -> None:
    """A rule on credit reads its subject from one presented credential: an application that
    leaves it out is refused, naming the type (it was a KeyError: HTTP 500)."""
    import pytest

    from contracts.errors import ApplicationError
    from node.approvals import Approvals

    data, wallet = prepare(tmp_path)
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        service = Approvals(node)
        head = node.store.head
        with pytest.raises(ApplicationError,
                           match="'business-licence' needs a 'business-registration' "
                                 "presentation"):
            service.apply("business-licence", [], wallet.holder_jwk())
        assert node.store.head == head
    finally:
        node.close()


def test_an_application_whose_identity_presentation_leaves_out_the_subject_claim_is_refused(
        tmp_path: Path) -> None:
    """The subject's identifier is read from the presented claims: answering a request for
    the identity type that does not ask for it (an application's, for the scope alone, as a
    node of another version might open; a desk's is refused before, as not an application's)
    is refused in words over HTTP, and nothing is decided (it was a KeyError: HTTP 500)."""
    from node.approvals import application_purpose

    data, wallet = prepare(tmp_path)
    app = _market_app(data)
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        request = app.state.node.new_request(
            "business-registration", ["scope"], app.state.settings.audience,
            purpose=application_purpose("business-licence")).request
        answers = wallet.answer([request], now=NOW)
        size = http.get("/v1/head").json()["log_size"]
        got = http.post("/v1/services/business-licence/apply", json={
            "holder_jwk": wallet.holder_jwk(),
            "presentations": [{"nonce": n, "envelope": b64url(e)} for n, e in answers]})
        assert got.status_code == 400, got.text
        assert "'registration_no'" in got.json()["detail"], got.text
        assert REG_NO not in got.text and "catering" not in got.text
        assert http.get("/v1/head").json()["log_size"] == size
        assert http.get("/v1/approvals", headers=AUTH).json() == []


def test_an_application_keeps_only_the_claims_its_rule_needs(tmp_path: Path) -> None:
    """The evidence record keeps the claims the rule needs and no others: answered with a
    request asking for more (an application's asking for the business's name too, as a node
    of another version might open; a desk's is refused before, as not an application's), the
    decision is made and the name is not kept (it was, in the record and its explanation,
    for as long as the agency keeps decisions). Two presentations of one type (which one's
    claims decide?) or one of a type the rule does not need are refused, nothing decided."""
    from node.approvals import application_purpose

    data, wallet = prepare(tmp_path)
    app = _market_app(data)
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        def desk(kind: str, claims: list[str]) -> Request:
            return app.state.node.new_request(
                kind, claims, app.state.settings.audience,
                purpose=application_purpose("business-licence")).request

        def apply(requests: list[Request]) -> httpx.Response:
            answers = wallet.answer(requests, now=NOW)
            return http.post("/v1/services/business-licence/apply", json={
                "holder_jwk": wallet.holder_jwk(),
                "presentations": [{"nonce": n, "envelope": b64url(e)} for n, e in answers]})

        wide = ["registration_no", "scope", "business_name"]
        got = apply([desk("business-registration", wide)])
        assert got.status_code == 200, got.text
        why = http.get(f"/v1/approvals/{got.json()['approval_tx']}/explain", headers=AUTH)
        assert why.json()["inputs"]["claims"] == {"business-registration": {
            "registration_no": REG_NO, "scope": "catering"}}, why.text
        record = evidence_record(data)
        assert b"Lingnan Tea House" not in record["evidence"]
        # the approval credential just issued: a type the licence does not need
        wallet.receive(unb64url(got.json()["bundle"]), registry=app.state.node._registry(),
                       now=NOW)
        size = http.get("/v1/head").json()["log_size"]
        for requests, said in (
                ([desk("business-registration", wide), desk("business-registration", wide)],
                 "two presentations of 'business-registration'"),
                ([desk("business-registration", wide), desk("approval", ["service"])],
                 "does not need ['approval']")):
            got = apply(requests)
            assert got.status_code == 400 and said in got.json()["detail"], got.text
            assert http.get("/v1/head").json()["log_size"] == size


def test_a_node_whose_issuing_key_was_invalidated_decides_nothing(tmp_path: Path) -> None:
    """Governance invalidated the agency's issuing key (stolen, say): its node, still holding
    it, opens no application and decides none, before any claim is seen and before anything
    is committed (the decision would otherwise be on the ledger with no approval credential
    the key could still issue)."""
    import pytest

    from contracts.errors import ApplicationError
    from ledger.network import Agency

    data, wallet = prepare(tmp_path)
    keys = _issuer_keys(data, "edu", "civil")
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        service, answers = _licence_answers(node, wallet)
        reg = node.store.registry
        assert reg is not None
        node.orderer.submit(governance_tx(
            node.network, reg.gov_seq + 1, "invalidate_key",
            {"kid": node.issuer_key.public.kid, "from": NOW},
            [Agency(a, "", keys[a], keys[a]) for a in ("edu", "civil")])).result(timeout=30)
        head = node.store.head
        for attempt in (lambda: service.apply("business-licence", answers, wallet.holder_jwk()),
                        lambda: service.open_application("business-licence",
                                                         "https://market.example")):
            with pytest.raises(ApplicationError, match="issuing key is not a valid issuer key"):
                attempt()
        assert node.store.head == head and service.list() == []
    finally:
        node.close()


# -- found by the mutation round of the node's HTTP surface (round 14) ---------------------------

def test_the_bodies_of_approvals_and_credit_are_bounded_before_anything_is_read(
        tmp_path: Path) -> None:
    """Each field of a credit event, an application and a credit record request has its bounds
    (HTTP 422 naming the field, nothing recorded): a reason or subject of any length, points
    beyond a million, a date or expiry past 64 bits (the transaction could not be encoded: a
    500), a withdrawal that is not a transaction id (it was read as hex: a 500),
    no presentation or more than eight, a nonce or envelope out of size."""
    from ledger.keys import PrivateKey

    data, _ = prepare(tmp_path)
    app = _market_app(data)
    event = dict(LATE_FILING)
    jwk = sdjwt.jwk_from_ed25519(PrivateKey.generate().public.raw)
    answer = {"nonce": "n", "envelope": "AA"}
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        size = http.get("/v1/head").json()["log_size"]
        for field, value in [("subject", ""), ("subject", "x" * 257), ("reason", ""),
                             ("reason", "a" * 65), ("category", "c" * 65),
                             ("points", 1_000_001), ("points", -1_000_001), ("date", -1),
                             ("expiry", -1), ("date", 2**64), ("expiry", 10**30),
                             ("valid_days", 0), ("valid_days", 100 * 366 + 1),
                             ("withdraws", "zz"), ("withdraws", "AB" * 32)]:
            r = http.post("/v1/credit/events", json={**event, field: value}, headers=AUTH)
            assert r.status_code == 422, (field, value, r.text)
            assert r.json()["detail"][0]["loc"] == ["body", field], r.text
        assert http.get("/v1/head").json()["log_size"] == size  # nothing was recorded
        for presentations in ([], [answer] * 9, [{**answer, "nonce": ""}],
                              [{**answer, "nonce": "n" * 129}], [{**answer, "envelope": ""}],
                              [{**answer, "envelope": "A" * (64 * 1024 + 1)}]):
            r = http.post("/v1/services/business-licence/apply",
                          json={"holder_jwk": jwk, "presentations": presentations})
            assert r.status_code == 422, (len(presentations), r.text)
            assert r.json()["detail"][0]["loc"][:2] == ["body", "presentations"], r.text
        assert http.post("/v1/credit/requests", json={"type": "t" * 65}).status_code == 422
        for record in ({**answer, "nonce": ""}, {**answer, "nonce": "n" * 129},
                       {**answer, "envelope": ""}):
            assert http.post("/v1/credit/record", json=record).status_code == 422, record
        assert http.get("/v1/head").json()["log_size"] == size


def test_a_claim_the_evidence_cannot_record_is_refused_in_words_nothing_decided(
        tmp_path: Path, monkeypatch: Any, caplog: Any) -> None:
    """A business registration issued by a tool without issue_credential's check of the claims
    (its scope a fraction, or an integer past 64 bits: JSON holds both, and the presentation
    verifies) evaluates to rule_error, but its evidence record could not be encoded: the
    application was a 500, the integer's value in the log's traceback. Refused in words now,
    before anything is kept or committed (helper round 20A)."""
    import logging

    import ledger.credentials

    data, _ = prepare(tmp_path)
    app = _market_app(data)
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        node = app.state.node
        for odd in (7 * 10**25 + 13, 1.5):
            wallet = Wallet.init(tmp_path / f"w-{odd}.db", b"wallet-pass")
            with monkeypatch.context() as m:  # an issuing tool that does not check claims
                m.setattr(ledger.credentials, "check_claims", lambda *_: None)
                bundle, _ = node.issue("business-registration", {
                    "registration_no": REG_NO, "business_name": "Lingnan Tea House",
                    "scope": odd}, wallet.holder_jwk(), 365)
            wallet.receive(bundle.to_bytes(), registry=node._registry(), now=NOW)
            opened = http.post("/v1/services/business-licence/applications").json()
            answers = wallet.answer([Request.from_json(
                {k: r[k] for k in ("nonce", "audience", "type", "claims")})
                for r in opened["requests"]], now=NOW)
            size = http.get("/v1/head").json()["log_size"]
            with caplog.at_level(logging.DEBUG):
                got = http.post("/v1/services/business-licence/apply", json={
                    "holder_jwk": wallet.holder_jwk(),
                    "presentations": [{"nonce": n, "envelope": b64url(e)} for n, e in answers]})
            assert got.status_code == 400, got.text
            assert "cannot record" in got.json()["detail"] and str(odd) not in got.text
            assert str(odd) not in caplog.text
            assert http.get("/v1/head").json()["log_size"] == size
            assert not list((data / "approvals").glob("*"))


def test_an_applicants_holder_key_with_members_it_does_not_read_is_the_same_key(
        tmp_path: Path) -> None:
    """The node compared each presented credential's ``cnf.jwk`` with the application's
    ``holder_jwk`` as text: the same key given with ``alg`` and ``kid`` (as many JWK tools
    write it) was refused as another holder's (helper round 20V's note). Compared as read,
    the one spelling of ``sdjwt.public_jwk``; the approval credential is bound to that."""
    from ledger import sdjwt

    data, wallet = prepare(tmp_path)
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        service, answers = _licence_answers(node, wallet)
        spelled = {**wallet.holder_jwk(), "alg": "EdDSA", "kid": "my-phone", "use": "sig"}
        decided = service.apply("business-licence", answers, spelled)
        assert decided.outcome.decision in ("approved", "rejected")
        cnf = sdjwt.parse(decided.bundle.sd_jwt).payload["cnf"]["jwk"]
        assert cnf == sdjwt.public_jwk(wallet.holder_jwk()) == sdjwt.public_jwk(spelled)
    finally:
        node.close()


def test_a_damaged_stored_credit_record_is_said_as_the_store_s_damage(tmp_path: Path) -> None:
    """A subject's credit events record altered on disk while the node was stopped: withdrawing
    one of its events answered 400 with the codec's words, as if the operator had sent something
    malformed. It is this node's own record: 503 naming the damaged record and the audit to
    run, with no claim value in it, and nothing is recorded (helper round 21S)."""
    from test_api import _damage

    from ledger.state import credit_events, credit_key

    data, _ = prepare(tmp_path)
    subject = pseudonym(REG_NO, SECRET)
    with Store(data / "ledger", create=False) as store:
        [event] = credit_events(store, subject)
    _damage(data, credit_key(subject), lambda v: v[:-3])
    app = _market_app(data)
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        size = http.get("/v1/head").json()["log_size"]
        r = http.post("/v1/credit/events", headers=AUTH, json={
            "subject": REG_NO, "reason": "filed-in-error", "withdraws": event.txid.hex()})
        assert r.status_code == 503, r.text
        said = r.json()["detail"]
        assert "credit events" in said and "store is damaged" in said, said
        assert "ledger audit" in said and REG_NO not in said, said
        assert http.get("/v1/head").json()["log_size"] == size


def test_one_damaged_approval_record_is_listed_as_damaged_and_the_others_are_listed(
        tmp_path: Path) -> None:
    """The listing of an agency's decisions opened every record, and one record damaged on disk
    (or a stray file named ``*.ev``) failed the whole of it: no decision listed at all. Each
    record that cannot be read is listed as damaged, by its file's name and what is wrong (no
    claim value), and the others as before; the operator's table says it too."""
    from test_api import TOKEN
    from typer.testing import CliRunner

    from ledger.cli import agency_app
    from node.approvals import Approvals

    data, wallet = prepare(tmp_path)
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        service = Approvals(node)
        decided = []
        for _ in range(2):
            pending = service.open_application("business-licence", "https://market.example")
            decided.append(service.apply("business-licence",
                                         wallet.answer([p.request for p in pending], now=NOW),
                                         wallet.holder_jwk()).approval.txid.hex())
    finally:
        node.close()
    folder = data / "approvals"
    [broken] = folder.glob(f"*-{decided[0]}.ev")
    broken.write_bytes(broken.read_bytes()[:-5])
    (folder / "notes.ev").write_bytes(b"not a record")
    with serve(_market_app(data)) as url, httpx.Client(base_url=url, timeout=60) as http:
        r = http.get("/v1/approvals", headers=AUTH)
        assert r.status_code == 200, r.text
        listed = r.json()
        good = [a for a in listed if "damaged" not in a]
        assert [a["approval_tx"] for a in good] == [decided[1]]
        assert good[0]["service"] == "business-licence" and good[0]["decision"] == "approved"
        bad = {a["file"]: a for a in listed if "damaged" in a}
        assert sorted(bad) == sorted([broken.name, "notes.ev"])
        assert bad[broken.name]["approval_tx"] == decided[0]
        assert "notes.ev" in bad["notes.ev"]["damaged"] and "approval_tx" not in bad["notes.ev"]
        assert REG_NO not in r.text and "Lingnan" not in r.text
        why = http.get(f"/v1/approvals/{decided[0]}/explain", headers=AUTH)  # its own record:
        assert why.status_code == 503, why.text  # the store's damage, not the operator's 400
        assert "store is damaged" in why.json()["detail"] and broken.name in why.text
        assert http.get(f"/v1/approvals/{decided[1]}/explain", headers=AUTH).status_code == 200
        out = CliRunner().invoke(agency_app, ["approvals", "--node", url],
                                 env={"LEDGER_OPERATOR_TOKEN": TOKEN, "COLUMNS": "200"})
        assert out.exit_code == 0, out.output
        assert decided[1][:16] in out.output and "approved" in out.output
        assert out.output.count("damaged") >= 2 and "notes.ev" in out.output, out.output
        # a damaged record's file is no service: under reasons, with what is wrong with it
        # (its file's name sat under the service heading; helper round 37D)
        for name in (broken.name, "notes.ev"):
            [row] = [line for line in out.output.splitlines() if name[:12] in line and
                     "damaged" in line]
            cells = [c.strip() for c in row.strip("│┃ ").split("│")]
            assert cells[2] == "-" and cells[3] == "damaged", row


def test_an_empty_decision_list_is_said_in_a_sentence(tmp_path: Path) -> None:
    """`agency approvals` of a node that has decided nothing printed a table of headings and no
    row, for the officer to tell from a failure; it says so in a sentence, exit 0, and --json
    stays the empty list (helper round 37D)."""
    from test_api import TOKEN
    from typer.testing import CliRunner

    from ledger.cli import agency_app
    data, _ = prepare(tmp_path)
    env = {"LEDGER_OPERATOR_TOKEN": TOKEN, "COLUMNS": "200"}
    with serve(_market_app(data)) as url:
        out = CliRunner().invoke(agency_app, ["approvals", "--node", url], env=env)
        as_json = CliRunner().invoke(agency_app, ["approvals", "--node", url, "--json"], env=env)
    assert out.exit_code == 0, out.output
    assert out.output.strip() == "This node has recorded no approval decisions yet.", out.output
    assert as_json.exit_code == 0 and json.loads(as_json.stdout) == [], as_json.output


def test_requests_opened_for_applications_and_credit_records_pay_for_their_places(
        tmp_path: Path) -> None:
    """An open request holds a place in a bounded table whose oldest goes when it is full. At
    one token a request, one client at the default rate filled it before a request's 10
    minutes were up, ending every desk's and citizen's request (helper round 22H). Each
    request these routes open takes OPEN_TOKENS; one refused opens nothing."""
    from node.api_approvals import OPEN_TOKENS

    data, _ = prepare(tmp_path)
    settings = replace(settings_for(data), agency="market", rate_limit_per_minute=60,
                       rate_limit_burst=10)
    now = [0.0]
    app = create_app(settings, clock=lambda: NOW, passphrase=PASS, rate_clock=lambda: now[0])
    needs = len(RULES["business-licence"]["needs"])
    assert OPEN_TOKENS == 3 and needs == 1
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        node = app.state.node
        body = {"type": "business-registration"}  # 10 tokens: 3 each, 1 left
        assert http.post("/v1/credit/requests", json=body).status_code == 200
        assert http.post("/v1/credit/requests", json=body).status_code == 200
        opened = http.post("/v1/services/business-licence/applications")
        assert opened.status_code == 200 and len(opened.json()["requests"]) == needs
        held = len(node._requests)
        r = http.post("/v1/credit/requests", json=body)  # its own token, not the 2 more
        assert r.status_code == 429, r.text
        assert f"each request it opens takes {OPEN_TOKENS} tokens" in r.json()["detail"]
        assert "a credit record's request" in r.json()["detail"]
        now[0] += 2.0  # 2 tokens back (60 a minute)
        r = http.post("/v1/services/business-licence/applications")
        assert r.status_code == 429 and "an application for 'business-licence'" in r.text
        assert len(node._requests) == held  # nothing opened by the refused ones


def test_an_approval_credential_lost_after_the_commit_is_collected_by_its_holder_key(
        tmp_path: Path, monkeypatch: Any) -> None:
    """The node stopped between committing a decision and issuing its approval credential
    (its record still pending): the credential was lost for good (a reserved type no route
    gave again; applying again is a second decision). After a restart the applicant's wallet
    collects it with a proof of the holder key it applied with, over a fresh challenge: an
    approval credential of that very decision, bound to that key, that the desk verifies; a
    second collect gives a copy. A proof by another key, a replayed proof, a key that never
    applied, a service this node does not decide: refused in one line, nothing issued. The
    audit stays clean (the record's holder member is one it does not read)."""
    from ledger.audit import audit
    from ledger.sealed import EVIDENCE_KEY_FILE, read_evidence_key
    from node import approvals

    data, wallet = prepare(tmp_path)
    service = "/v1/services/business-licence"
    first = _market_app(data)
    real = approvals.write_atomic

    def no_ev(path: Path, *args: Any, **kwargs: Any) -> None:
        if path.name.endswith(".ev"):  # the node gone before it filed its record ...
            raise OSError("stopped")
        real(path, *args, **kwargs)

    def gone(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("stopped")  # ... and before it issued the credential

    with serve(first) as url, httpx.Client(base_url=url, timeout=60) as http:
        opened = http.post(f"{service}/applications").json()
        requests = [Request.from_json({k: r[k] for k in ("nonce", "audience", "type", "claims")})
                    for r in opened["requests"]]
        body = {"holder_jwk": wallet.holder_jwk(), "presentations": [
            {"nonce": n, "envelope": b64url(e)} for n, e in wallet.answer(requests, now=NOW)]}
        monkeypatch.setattr(approvals, "write_atomic", no_ev)
        monkeypatch.setattr(first.state.node, "issue", gone)
        lost = http.post(f"{service}/apply", json=body)
        assert lost.status_code == 500 and "bundle" not in lost.text  # no credential came
        monkeypatch.undo()
    pending = list((data / "approvals").glob("*.pending"))
    assert len(pending) == 1 and not list((data / "approvals").glob("*.ev"))
    txid = pending[0].stem
    restarted = _market_app(data)
    with serve(restarted) as url, httpx.Client(base_url=url, timeout=60) as http:
        assert http.get(f"/v1/tx/{txid}").status_code == 200  # decided and committed

        def challenge() -> dict[str, Any]:
            got = http.post(f"{service}/collect/challenge")
            assert got.status_code == 200, got.text
            return dict(got.json())

        def collect(key: int, signer: int | None = None,
                    proof: str | None = None) -> httpx.Response:
            proof = proof or wallet.collect_proof(key if signer is None else signer,
                                                  challenge(), now=NOW)
            return http.post(f"{service}/collect", json={"holder_jwk": wallet.holder_jwk(key),
                                                         "proof": proof})

        size = http.get("/v1/head").json()["log_size"]
        refusals = [
            (collect(0, signer=1), 400, "not signed by the holder key given"),
            (collect(1), 404, "no committed decision on 'business-licence'"),
            (http.post("/v1/services/elderly-allowance/collect/challenge"), 404,
             "no approval rule is registered"),
            (http.post(f"{service}/collect", json={
                "holder_jwk": wallet.holder_jwk(), "proof": wallet.collect_proof(
                    0, {**challenge(), "nonce": "never-given"}, now=NOW)}), 404,
             "no open collect challenge")]
        for got, status, said in refusals:
            assert got.status_code == status and said in got.json()["detail"], got.text
            assert REG_NO not in got.text and "catering" not in got.text
        assert http.get("/v1/head").json()["log_size"] == size  # nothing issued
        proof = wallet.collect_proof(0, challenge(), now=NOW)
        got = collect(0, proof=proof)
        assert got.status_code == 200, got.text
        decision = got.json()
        assert (decision["approval_tx"], decision["decision"], decision["path"],
                decision["documents"]) == (txid, "approved", "fast_track", ["premises_plan"])
        assert [p.suffix for p in (data / "approvals").iterdir() if p.is_file()] == [".ev"]
        again = collect(0, proof=proof)  # the same proof again: its challenge is used
        assert again.status_code == 404 and "no open collect challenge" in again.text
        copy = collect(0)  # a second collect: the same credential of the same decision
        assert copy.status_code == 200 and copy.json()["approval_tx"] == txid, copy.text
        bundles = [Bundle.from_bytes(unb64url(d["bundle"])) for d in (decision, copy.json())]
        for b in bundles:  # bound to the holder key the application was bound to
            payload = sdjwt.parse(b.sd_jwt).payload
            assert sdjwt.public_jwk(payload["cnf"]["jwk"]) == wallet.holder_jwk()
        req = http.post("/v1/presentation-requests", json={
            "type": "approval", "claims": ["service", "decision", "path", "documents"]}).json()
        info = wallet.receive(bundles[0].to_bytes(),
                              registry=restarted.state.node._registry(), now=NOW)
        env = wallet.present(info.id, Request.from_json(
            {k: req[k] for k in ("nonce", "audience", "type", "claims")}), now=NOW)
        report = http.post("/v1/verify", json={"nonce": req["nonce"],
                                               "envelope": b64url(env)}).json()
        assert report["verified"], report
        assert ("approval_decision", True) in [(c["check"], c["ok"]) for c in report["checks"]]
        assert report["claims"]["documents"] == "premises_plan"
    key = read_evidence_key(data / "keys" / EVIDENCE_KEY_FILE, PASS)
    report = audit(data, now=NOW, evidence=data / "approvals", evidence_keys=[key])
    assert report.clean, report.problems
    assert report.approvals_total == report.approvals_rechecked == 1


def test_collecting_a_decision_recorded_before_holder_keys_were_kept_says_so(
        tmp_path: Path) -> None:
    """A decision recorded by a version before ADR 78 (upgraded since: its sealed record has
    no ``holder``) cannot be collected. The node said it held no committed decision on the
    service for the key, which the holder reads as no decision at all (round 34U, upgrading
    from ffae088): it says that its decisions recorded before it kept holder keys cannot be
    collected, in one line, and issues nothing."""
    from ledger.sealed import EVIDENCE_KEY_FILE, read_evidence_key, seal_record

    data, wallet = prepare(tmp_path)
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        service, answers = _licence_answers(node, wallet)
        service.apply("business-licence", list(answers), wallet.holder_jwk())
    finally:
        node.close()
    path = next((data / "approvals").glob("*.ev"))
    record = evidence_record(data, path)
    del record["holder"]  # as ffae088 (before ADR 78) wrote it
    key = read_evidence_key(data / "keys" / EVIDENCE_KEY_FILE, PASS)
    path.write_bytes(seal_record(codec.encode(record), key))
    shutil.rmtree(data / "approvals" / "holders")  # ffae088 kept no index of holder keys
    url_service = "/v1/services/business-licence"
    with serve(_market_app(data)) as url, httpx.Client(base_url=url, timeout=60) as http:
        size = http.get("/v1/head").json()["log_size"]
        challenge = http.post(f"{url_service}/collect/challenge").json()
        got = http.post(f"{url_service}/collect", json={
            "holder_jwk": wallet.holder_jwk(), "proof": wallet.collect_proof(
                0, challenge, now=NOW)})
        assert got.status_code == 404, got.text
        detail = got.json()["detail"]
        assert "recorded before it kept the applicant's holder key" in detail, detail
        assert "before ADR 78" in detail and "cannot be collected" in detail
        assert "\n" not in detail and REG_NO not in got.text and "catering" not in got.text
        assert http.get("/v1/head").json()["log_size"] == size  # nothing issued
        listed = http.get("/v1/approvals", headers=AUTH).json()
        assert [a["approval_tx"] for a in listed] == [path.stem.split("-", 1)[1]]


def _apply_over_http(http: httpx.Client, wallet: Wallet, service: str) -> dict[str, Any]:
    """The node's answer to ``wallet``'s application for ``service`` (its first holder key)."""
    opened = http.post(f"{service}/applications").json()
    requests = [Request.from_json({k: r[k] for k in ("nonce", "audience", "type", "claims")})
                for r in opened["requests"]]
    got = http.post(f"{service}/apply", json={
        "holder_jwk": wallet.holder_jwk(), "presentations": [
            {"nonce": n, "envelope": b64url(e)} for n, e in wallet.answer(requests, now=NOW)]})
    assert got.status_code == 200, got.text
    return dict(got.json())


def _collect_over_http(http: httpx.Client, wallet: Wallet, service: str) -> httpx.Response:
    """A collect by ``wallet``'s first holder key, over a fresh challenge."""
    challenge = http.post(f"{service}/collect/challenge")
    assert challenge.status_code == 200, challenge.text
    return http.post(f"{service}/collect", json={
        "holder_jwk": wallet.holder_jwk(),
        "proof": wallet.collect_proof(0, challenge.json(), now=NOW)})


def _shown_at_the_desk(http: httpx.Client, wallet: Wallet, bundle: bytes,
                       registry: Any) -> dict[str, Any]:
    """The desk's report on ``bundle`` (an approval credential), kept in ``wallet`` unless
    it holds it already, and presented from there."""
    req = http.post("/v1/presentation-requests", json={
        "type": "approval", "claims": ["service", "decision"]}).json()
    cid = Tx.from_checked_bytes(Bundle.from_bytes(bundle).anchor).body["credential_id"].hex()
    if cid not in {c.id for c in wallet.list()}:
        wallet.receive(bundle, registry=registry, now=NOW)
    env = wallet.present(cid, Request.from_json(
        {k: req[k] for k in ("nonce", "audience", "type", "claims")}), now=NOW)
    report = http.post("/v1/verify", json={"nonce": req["nonce"], "envelope": b64url(env)})
    assert report.status_code == 200, report.text
    return dict(report.json())


def test_an_approval_credential_the_agency_revoked_is_not_collected_again_valid(
        tmp_path: Path) -> None:
    """Each collect issued a new credential (its own id and status index): once the agency
    revoked the approval credential its applicant had (`agency status --credential-id ...
    --set revoked`), a collect gave a copy the desk verified as valid, and so did a copy
    collected before. A collect gives that decision's one credential again: the same id and
    status index, nothing anchored, so its revocation reaches whatever the holder collects
    (helper round 34C)."""
    data, wallet = prepare(tmp_path)
    service = "/v1/services/business-licence"
    app = _market_app(data)
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        node = app.state.node
        decided = _apply_over_http(http, wallet, service)
        first = Bundle.from_bytes(unb64url(decided["bundle"]))
        cid = Tx.from_checked_bytes(first.anchor).body["credential_id"]
        size = http.get("/v1/head").json()["log_size"]
        before = _collect_over_http(http, wallet, service)  # collected before the revocation
        assert before.status_code == 200, before.text
        assert http.get("/v1/head").json()["log_size"] == size  # nothing anchored
        node.set_status(cid, "revoked", "withdrawn")
        after = _collect_over_http(http, wallet, service)
        assert after.status_code == 200, after.text
        for got in (before, after):
            copy = Bundle.from_bytes(unb64url(got.json()["bundle"]))
            report = _shown_at_the_desk(http, wallet, copy.to_bytes(), node._registry())
            assert not report["verified"] and report["status"] == "revoked", report
            assert Tx.from_checked_bytes(copy.anchor).body["credential_id"] == cid


def test_a_collect_opens_the_records_of_its_key_alone_and_a_store_without_the_index_works(
        tmp_path: Path, monkeypatch: Any) -> None:
    """A collect (anyone's cheap request) opened every sealed record of the node to find the
    one of its key: O(all decisions) decryptions each. The node keeps an index under a keyed
    digest of the holder key and service (sealed entries: no key or claim in the clear), so a
    collect opens that key's records alone; a store from before the index (none there) gets it
    built once, and collects still find their decision (helper round 34C)."""
    from ledger.sealed import seal_record
    from node import approvals

    data, wallet = prepare(tmp_path)
    service = "/v1/services/business-licence"
    app = _market_app(data)
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        decided = _apply_over_http(http, wallet, service)
        node = app.state.node
        folder = data / "approvals"
        record = evidence_record(data)
        other = dict(wallet.holder_jwk(1))
        for i in range(40):  # other applicants' decisions, filed as the node files them
            (folder / f"{10**9 + i:012d}-{i:064x}.ev").write_bytes(seal_record(
                codec.encode({**record, "holder": other}), node.evidence_key))
        real = approvals.open_record
        opened: list[int] = []

        def counted(*args: Any, **kwargs: Any) -> Any:
            opened.append(1)
            return real(*args, **kwargs)

        monkeypatch.setattr(approvals, "open_record", counted)
        # filed without the index (written here): the first collect indexes them once
        assert _collect_over_http(http, wallet, service).status_code == 200
        assert 40 <= len(opened) <= 43, len(opened)
        opened.clear()
        got = _collect_over_http(http, wallet, service)
        assert got.status_code == 200 and got.json()["approval_tx"] == decided["approval_tx"]
        assert len(opened) <= 3, len(opened)  # its own record (and its index entry)
        index = folder / approvals.INDEX_FOLDER
        blobs = b"".join(p.read_bytes() for p in index.iterdir())
        for secret in (wallet.holder_jwk()["x"], REG_NO, "catering"):
            assert secret.encode() not in blobs and secret not in str(list(index.iterdir()))
        shutil.rmtree(index)  # a store from before the index
    app = _market_app(data)
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        got = _collect_over_http(http, wallet, service)
        assert got.status_code == 200 and got.json()["approval_tx"] == decided["approval_tx"]
        opened.clear()
        got = _collect_over_http(http, wallet, service)
        assert got.status_code == 200 and len(opened) <= 3, len(opened)
        assert _collect_over_http(http, wallet, service).status_code == 200


def test_an_agency_finds_the_approval_credential_of_a_decision_to_revoke_it(
        tmp_path: Path) -> None:
    """The agency revokes an approval by its credential's id (`agency status --credential-id
    ID --set revoked`), but its list of decisions named none: only the applicant's copy held
    it. The list (and an explanation) names the decision's one approval credential once
    issued; revoked by that id, the credential its holder shows or collects is revoked
    (helper round 34C)."""
    data, wallet = prepare(tmp_path)
    service = "/v1/services/business-licence"
    app = _market_app(data)
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        decided = _apply_over_http(http, wallet, service)
        listed = http.get("/v1/approvals", headers=AUTH).json()
        assert [a["approval_tx"] for a in listed] == [decided["approval_tx"]]
        cid = listed[0].get("credential_id")
        held = Bundle.from_bytes(unb64url(decided["bundle"]))
        assert cid == Tx.from_checked_bytes(held.anchor).body["credential_id"].hex(), listed
        explained = http.get(f"/v1/approvals/{decided['approval_tx']}/explain", headers=AUTH)
        assert explained.json()["credential_id"] == cid
        app.state.node.set_status(bytes.fromhex(cid), "revoked", "withdrawn")
        got = _collect_over_http(http, wallet, service)
        assert got.status_code == 200, got.text
        report = _shown_at_the_desk(http, wallet, unb64url(got.json()["bundle"]),
                                    app.state.node._registry())
        assert report["status"] == "revoked", report


def test_the_decision_list_names_each_approval_credential_as_agency_status_takes_it(
        tmp_path: Path) -> None:
    """`agency approvals`' table showed no credential id (only --json and an explanation had
    its 64 digits): an officer revoking the approval of one decision had to find it elsewhere.
    The table's "credential" column gives its start, which `agency status --credential-id`
    takes, through the node (its decision list) or with --data (the ledger's credentials of
    the agency); a start that names none, or too short, is refused and nothing changes
    (helper round 36D)."""
    import time

    from test_api import TOKEN
    from typer.testing import CliRunner

    from ledger.cli import agency_app
    data, wallet = prepare(tmp_path)
    service = "/v1/services/business-licence"
    env = {"LEDGER_OPERATOR_TOKEN": TOKEN, "COLUMNS": "200", "LEDGER_KEY_PASSPHRASE": "test-only"}
    cli = CliRunner()
    with serve(_market_app(data)) as url, httpx.Client(base_url=url, timeout=60) as http:
        decided = _apply_over_http(http, wallet, service)
        [listed] = http.get("/v1/approvals", headers=AUTH).json()
        cid = listed["credential_id"]
        # an explanation's height is the evidence's; the decision's block, the list's height,
        # is named in_block in both
        why = http.get(f"/v1/approvals/{decided['approval_tx']}/explain", headers=AUTH).json()
        assert why["in_block"] == listed["height"] == decided["height"]
        assert why["height"] < listed["height"], (why["height"], listed["height"])
        table = cli.invoke(agency_app, ["approvals", "--node", url], env=env)
        assert table.exit_code == 0, table.output
        assert "credential" in table.output and "in block" in table.output, table.output
        [row] = [line for line in table.output.splitlines() if decided["approval_tx"][:16] in line]
        assert cid[:16] in row, table.output
        # the cells: in block is the decision's block, credential the id's start (round 38M)
        cells = [c.strip() for c in row.split("\u2502")[1:-1]]
        assert cells[1] == str(listed["height"]) and cells[-1] == cid[:16], row
    # the node at the officer's time (a status change is dated now), over the same data
    with serve(create_app(replace(settings_for(data), agency="market"), clock=time.time,
                          passphrase=PASS)) as url:
        common = ["status", "--node", url, "--data", str(data), "--agency", "market"]
        for start, why in ((cid[:15], "64 hex digits"),
                           ("0" * 16 if not cid.startswith("0" * 16) else "f" * 16,
                            "no credentials of this node's decisions start with")):
            r = cli.invoke(agency_app, [*common, "--credential-id", start, "--set",
                                        "suspended"], env=env)
            assert r.exit_code == 2 and why in r.output, r.output
        r = cli.invoke(agency_app, [*common, "--credential-id", cid[:16], "--set", "suspended",
                                    "--json"], env=env)
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["credential_id"] == cid
    with Store(data / "ledger", create=False) as store:
        cred = store.credential(bytes.fromhex(cid))
        assert cred is not None and cred.status == "suspended"
    # and with --data, this process writing the store: the ledger's credentials of the agency
    common = ["status", "--data", str(data), "--agency", "market"]
    # an odd number of digits: the 17th is compared too, not only the whole bytes (round 38M)
    other = cid[:16] + ("1" if cid[16] == "0" else "0")
    r = cli.invoke(agency_app, [*common, "--credential-id", other, "--set", "valid"], env=env)
    assert r.exit_code == 2 and "no credentials market issued on this ledger start with" in \
        r.output, r.output
    r = cli.invoke(agency_app, [*common, "--credential-id", cid[:17], "--set", "valid"],
                   env=env)
    assert r.exit_code == 0, r.output
    assert f"credential {cid} is now valid" in r.output.replace("\n", ""), r.output
    r = cli.invoke(agency_app, ["status", "--data", str(data), "--agency", "civil",
                                "--credential-id", cid[:16], "--set", "revoked"], env=env)
    assert r.exit_code == 2 and "no credentials civil issued on this ledger start with" in \
        r.output, r.output
    with Store(data / "ledger", create=False) as store:
        cred = store.credential(bytes.fromhex(cid))
        assert cred is not None and cred.status == "valid"


def test_a_credential_start_is_looked_up_only_at_the_agencys_own_node(tmp_path: Path) -> None:
    """`agency status --node URL --agency A --credential-id START` looked START up among the
    node's decisions whatever agency the node serves: at another agency's node it found that
    agency's approval credential, asked A's passphrase and signed a change A's key cannot make,
    which the ledger then refused. Refused before the passphrase now (exit 2, nothing signed);
    an id copied in capitals is the same id (helper round 37D)."""
    import time

    from test_api import TOKEN
    from typer.testing import CliRunner

    from ledger.cli import agency_app
    data, wallet = prepare(tmp_path)
    with serve(_market_app(data)) as url, httpx.Client(base_url=url, timeout=60) as http:
        _apply_over_http(http, wallet, "/v1/services/business-licence")
        [listed] = http.get("/v1/approvals", headers=AUTH).json()
    cid = listed["credential_id"]
    env = {"LEDGER_OPERATOR_TOKEN": TOKEN, "COLUMNS": "200"}  # no passphrase: none is asked
    cli = CliRunner()
    with serve(create_app(replace(settings_for(data), agency="market"), clock=time.time,
                          passphrase=PASS)) as url:
        r = cli.invoke(agency_app, ["status", "--node", url, "--data", str(data), "--agency",
                                    "civil", "--credential-id", cid[:16], "--set", "revoked"],
                       env=env)
        assert r.exit_code == 2, r.output
        assert "is 'market''s node, not 'civil''s" in r.output, r.output
        r = cli.invoke(agency_app, ["status", "--node", url, "--data", str(data), "--agency",
                                    "market", "--credential-id", cid[:20].upper(), "--set",
                                    "suspended", "--json"],
                       env={**env, "LEDGER_KEY_PASSPHRASE": "test-only"})
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["credential_id"] == cid
    with Store(data / "ledger", create=False) as store:
        cred = store.credential(bytes.fromhex(cid))
        assert cred is not None and cred.status == "suspended"


def test_a_credential_start_that_names_more_than_one_credential_is_refused() -> None:
    """Two credential ids with the same start are not guessed between: exit 2, more digits
    asked for (no two real ids share 16 digits, so the choice is tested alone)."""
    import pytest
    import typer

    from ledger.cli import _one_credential
    with pytest.raises(typer.Exit) as e:
        _one_credential("ab" * 8, ["ab" * 32, "ab" * 8 + "cd" * 24], "of this node's decisions")
    assert e.value.exit_code == 2
    assert _one_credential("ab" * 8, ["ab" * 32], "here") == "ab" * 32


def test_a_kept_approval_credential_is_collected_after_the_agency_may_issue_no_more(
        tmp_path: Path) -> None:
    """A collect was refused once governance withdrew the agency's grant of approval
    credentials ("holds no grant to issue ..."), though the decision's credential, issued
    under the grant, is kept and is only given again: nothing is issued. It is given; a
    decision with none kept yet is still refused (helper round 34C)."""
    import pytest

    from contracts.errors import ApplicationError
    from ledger.network import Agency
    from ledger.sealed import seal_record

    data, wallet = prepare(tmp_path)
    keys = _issuer_keys(data, "edu", "civil")
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        service, answers = _licence_answers(node, wallet)
        decided = service.apply("business-licence", answers, wallet.holder_jwk())
        reg = node.store.registry
        assert reg is not None
        node.orderer.submit(governance_tx(
            node.network, reg.gov_seq + 1, "withdraw_grant",
            {"agency": "market", "type": "approval", "at": NOW},
            [Agency(a, "", keys[a], keys[a]) for a in ("edu", "civil")])).result(timeout=30)
        head = node.store.head
        audience = "https://market.example"
        proof = wallet.collect_proof(0, service.challenge("business-licence", audience), now=NOW)
        got = service.collect("business-licence", wallet.holder_jwk(), proof, audience)
        assert got.bundle.anchor == decided.bundle.anchor  # that very credential
        assert node.store.head == head  # nothing issued
        # a decision whose record keeps none (one from before it kept them) would need one
        # issued: refused in words
        [path] = (data / "approvals").glob("*.ev")
        record = evidence_record(data)
        del record["credential"]
        path.write_bytes(seal_record(codec.encode(record), node.evidence_key))
        proof = wallet.collect_proof(0, service.challenge("business-licence", audience), now=NOW)
        with pytest.raises(ApplicationError, match="holds no grant to issue 'approval'"):
            service.collect("business-licence", wallet.holder_jwk(), proof, audience)
        assert node.store.head == head
    finally:
        node.close()


def test_a_collect_finds_the_newest_decision_filed_where_the_index_did_not_see_it(
        tmp_path: Path) -> None:
    """The index of decisions by holder key was marked complete once, and never checked
    against the records again: ``holders/`` restored from a backup older than the records, or
    a record filed by a version or a path that does not touch the index (a node rolled back
    past the index and upgraded again), left a decision out of it for good; a collect then gave
    an older decision of the key (or none). The mark names how many records it covers and the
    newest: records filed since are indexed on the next collect (helper round 35X)."""
    from ledger.sealed import EVIDENCE_KEY_FILE, read_evidence_key, seal_record

    data, wallet = prepare(tmp_path)
    folder = data / "approvals"
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        service, answers = _licence_answers(node, wallet)
        first = service.apply("business-licence", list(answers), wallet.holder_jwk())
        shutil.copytree(folder / "holders", tmp_path / "backup")  # the index of one decision
        service, answers = _licence_answers(node, wallet)
        second = service.apply("business-licence", list(answers), wallet.holder_jwk())
    finally:
        node.close()
    assert first.approval.txid != second.approval.txid
    url_service = "/v1/services/business-licence"
    shutil.rmtree(folder / "holders")
    shutil.copytree(tmp_path / "backup", folder / "holders")  # restored from the backup
    with serve(_market_app(data)) as url, httpx.Client(base_url=url, timeout=60) as http:
        got = _collect_over_http(http, wallet, url_service)
        assert got.status_code == 200, got.text
        assert got.json()["approval_tx"] == second.approval.txid.hex(), "an older decision"
    # a version before the index files a decision without its holder key, and no index entry
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        shutil.copytree(folder / "holders", tmp_path / "backup2")
        service, answers = _licence_answers(node, wallet)
        third = service.apply("business-licence", list(answers), wallet.holder_jwk())
    finally:
        node.close()
    path = next(folder.glob(f"*-{third.approval.txid.hex()}.ev"))
    record = evidence_record(data, path)
    del record["holder"]
    key = read_evidence_key(data / "keys" / EVIDENCE_KEY_FILE, PASS)
    path.write_bytes(seal_record(codec.encode(record), key))
    shutil.rmtree(folder / "holders")
    shutil.copytree(tmp_path / "backup2", folder / "holders")
    # the decisions of the key kept are gone (only to tell the answers apart): the node says
    # its decision recorded without the key cannot be collected, not that it has none
    for p in folder.glob("*.ev"):
        if p != path:
            p.unlink()
    with serve(_market_app(data)) as url, httpx.Client(base_url=url, timeout=60) as http:
        got = _collect_over_http(http, wallet, url_service)
        assert got.status_code == 404, got.text
        assert "recorded before it kept the applicant's holder key" in got.json()["detail"]


def test_a_holder_key_of_an_unknown_kind_is_refused_without_quoting_it(tmp_path: Path) -> None:
    """An apply or collect with a holder key of a ``kty``, ``crv`` or ``use`` the node does not
    take was refused with the caller's text quoted in the 400 line (escaped); a fixed phrase
    says it, and the caller's text is not echoed (helper round 35X)."""
    data, _ = prepare(tmp_path)
    service = "/v1/services/business-licence"
    odd = "<b>caller-text</b>"
    keys = [{"kty": odd, "crv": "Ed25519", "x": "AA"}, {"kty": "OKP", "crv": odd, "x": "AA"},
            {"kty": "EC", "crv": odd, "x": "AA", "y": "AA"},
            {"kty": "OKP", "crv": "Ed25519", "x": "AA", "use": odd}]
    with serve(_market_app(data)) as url, httpx.Client(base_url=url, timeout=60) as http:
        for jwk in keys:
            for route, body in (("apply", {"holder_jwk": jwk, "presentations": [
                    {"nonce": "n", "envelope": "AA"}]}), ("collect", {"holder_jwk": jwk,
                                                                       "proof": "a.b.c"})):
                got = http.post(f"{service}/{route}", json=body)
                assert got.status_code == 400, got.text
                assert "caller-text" not in got.text, got.text
                assert "not supported" in got.text or "not for signatures" in got.text


def test_a_collect_proof_is_taken_only_of_its_type_audience_service_and_open_challenge(
        tmp_path: Path) -> None:
    """Each check of a collect proof is pinned (helper round 35M: dropping any one left every
    test passing): a proof typed as a verifier's key-binding JWT, one for another audience or
    another service, one over a challenge past REQUEST_TTL on the node's timer: refused, and
    the challenge of a refused proof is used up. A challenge REQUEST_TTL old is still open.
    Nothing is issued by any of them."""
    import pytest

    from contracts.errors import ApplicationError
    from node.approvals import COLLECT_TYP
    from node.service import REQUEST_TTL, NotFound

    data, wallet = prepare(tmp_path)
    clock = [1000.0]
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0, timer=lambda: clock[0])
    try:
        service, answers = _licence_answers(node, wallet)
        decided = service.apply("business-licence", answers, wallet.holder_jwk())
        head = node.store.head
        aud, name = "https://market.example", "business-licence"

        def proof(challenge: dict[str, Any], **changed: Any) -> str:
            header = {"typ": changed.pop("typ", COLLECT_TYP)}
            return sdjwt.sign_jws(header, {"nonce": challenge["nonce"], "aud": aud,
                                           "service": name, "iat": NOW, **changed},
                                  wallet._holder(0))

        for changed in ({"typ": "kb+jwt"}, {"aud": "https://other.example"},
                        {"service": "elderly-allowance"}):
            challenge = service.challenge(name, aud)
            with pytest.raises(ApplicationError, match="audience and this service"):
                service.collect(name, wallet.holder_jwk(), proof(challenge, **changed), aud)
            with pytest.raises(NotFound, match="no open collect challenge"):  # used up
                service.collect(name, wallet.holder_jwk(), proof(challenge), aud)
        for garbage in ("not-a-jws", "a.b", proof(service.challenge(name, aud)) + ".x"):
            with pytest.raises(ApplicationError, match="not a compact JWS"):
                service.collect(name, wallet.holder_jwk(), garbage, aud)
        late = service.challenge(name, aud)
        on_time = service.challenge(name, aud)
        clock[0] += REQUEST_TTL
        got = service.collect(name, wallet.holder_jwk(), proof(on_time), aud)
        assert got.approval.txid == decided.approval.txid
        clock[0] += 1
        with pytest.raises(NotFound, match="expired"):
            service.collect(name, wallet.holder_jwk(), proof(late), aud)
        assert node.store.head == head
    finally:
        node.close()


def test_a_collect_gives_the_newest_decision_of_its_key(tmp_path: Path) -> None:
    """A holder key that applied twice for a service collects the credential of the second
    decision, not of the first (helper round 35M: a collect that kept the first decision it
    found passed every test)."""
    data, wallet = prepare(tmp_path)
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        decided = []
        for _ in range(2):
            service, answers = _licence_answers(node, wallet)
            decided.append(service.apply("business-licence", answers, wallet.holder_jwk()))
        audience = "https://market.example"
        proof = wallet.collect_proof(0, service.challenge("business-licence", audience), now=NOW)
        got = service.collect("business-licence", wallet.holder_jwk(), proof, audience)
        assert got.approval.txid == decided[1].approval.txid != decided[0].approval.txid
        assert got.bundle.anchor == decided[1].bundle.anchor
    finally:
        node.close()


def test_a_collect_challenge_is_taken_for_its_own_service_alone(tmp_path: Path) -> None:
    """A challenge given for one service does not open a collect of another, even with a
    proof that names the other: the node says the challenge is not one for that service, and
    the challenge is used up (helper round 36M: the challenge's own service was not compared,
    only the proof's, and every test passed)."""
    import pytest

    from node.service import NotFound

    data, wallet = prepare(tmp_path)
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        service, answers = _licence_answers(node, wallet)
        service.apply("business-licence", answers, wallet.holder_jwk())
        aud = "https://market.example"
        challenge = service.challenge("business-licence", aud)
        other = wallet.collect_proof(0, {**challenge, "service": "elderly-allowance"}, now=NOW)
        with pytest.raises(NotFound, match="no open collect challenge with this nonce for this "
                                           "service"):
            service.collect("elderly-allowance", wallet.holder_jwk(), other, aud)
        with pytest.raises(NotFound, match="no open collect challenge"):  # used up
            service.collect("business-licence", wallet.holder_jwk(),
                            wallet.collect_proof(0, challenge, now=NOW), aud)
    finally:
        node.close()


def test_a_collect_in_the_same_run_files_the_pending_record_of_its_decision(
        tmp_path: Path) -> None:
    """A decision whose record could not be filed when it committed (the disk refused it:
    kept pending, its credential issued from there) is collected in the same run, before the
    node's hourly filing or a restart files it: the collect files it first, and gives the
    credential the apply issued (helper round 36M: a collect that did not file it first
    passed every test, and said "not committed yet" of a committed decision)."""
    from node.approvals import Approvals

    class DiskRefusesOnce(Approvals):
        refused = False

        def _keep(self, pending: Path, record: dict[str, Any], receipt: Any) -> Path:
            if not self.refused:
                self.refused = True
                raise OSError(28, "No space left on device")
            return super()._keep(pending, record, receipt)

    data, wallet = prepare(tmp_path)
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        service = DiskRefusesOnce(node)
        pending = service.open_application("business-licence", "https://market.example")
        answers = wallet.answer([p.request for p in pending], now=NOW)
        decided = service.apply("business-licence", list(answers), wallet.holder_jwk())
        folder = data / "approvals"
        assert [p.suffix for p in folder.iterdir() if p.is_file()] == [".pending"]
        aud = "https://market.example"
        proof = wallet.collect_proof(0, service.challenge("business-licence", aud), now=NOW)
        got = service.collect("business-licence", wallet.holder_jwk(), proof, aud)
        assert got.approval.txid == decided.approval.txid
        assert (got.bundle.sd_jwt, got.bundle.anchor) == (decided.bundle.sd_jwt,
                                                          decided.bundle.anchor)
        assert [p.suffix for p in folder.iterdir() if p.is_file()] == [".ev"]
    finally:
        node.close()


def test_a_collect_during_the_apply_waits_for_its_credential_and_gives_the_same_one(
        tmp_path: Path) -> None:
    """A collect of a decision whose credential the apply is issuing at that moment waits for
    it, and gives that credential: one credential per decision, not two, the second one
    written over the first in the record, out of reach of the agency's revocation (helper
    round 36M: dropping the per-decision lock passed every test). The interleaving is forced:
    the apply's issue is held until the collect either waits for the decision's lock or
    issues a credential of its own."""
    import threading

    from node.approvals import Approvals

    moved = threading.Event()  # the collect waits for the lock, or issues: the apply goes on
    issued: list[str] = []
    collected: list[Any] = []

    class SeenLock:
        """The decision's lock, saying when a second user finds it held."""

        def __init__(self, lock: Any) -> None:
            self.lock = lock

        def __enter__(self) -> None:
            if not self.lock.acquire(blocking=False):
                moved.set()
                self.lock.acquire()

        def __exit__(self, *exc: object) -> None:
            self.lock.release()

    class SeenLocks(dict[bytes, tuple[Any, int]]):
        def __setitem__(self, txid: bytes, value: tuple[Any, int]) -> None:
            lock, users = value
            super().__setitem__(txid, (lock if isinstance(lock, SeenLock) else SeenLock(lock),
                                       users))

    class HeldIssue(Node):
        def issue(self, *args: Any, **kwargs: Any) -> Any:
            issued.append(threading.current_thread().name)
            if len(issued) == 1:  # the apply's: the collect starts now
                collector.start()
                assert moved.wait(timeout=120), "the collect neither waited nor issued"
            else:
                moved.set()
            return super().issue(*args, **kwargs)

    data, wallet = prepare(tmp_path)
    node = HeldIssue(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        service = Approvals(node)
        service._issuing = SeenLocks()
        pending = service.open_application("business-licence", "https://market.example")
        answers = wallet.answer([p.request for p in pending], now=NOW)
        aud = "https://market.example"
        proof = wallet.collect_proof(0, service.challenge("business-licence", aud), now=NOW)
        collector = threading.Thread(target=lambda: collected.append(service.collect(
            "business-licence", wallet.holder_jwk(), proof, aud)), name="collect")
        decided = service.apply("business-licence", list(answers), wallet.holder_jwk())
        collector.join(timeout=120)
        assert not collector.is_alive() and len(collected) == 1
        assert issued == ["MainThread"], issued  # one credential, issued by the apply
        got = collected[0]
        assert got.approval.txid == decided.approval.txid
        assert (got.bundle.sd_jwt, got.bundle.anchor) == (decided.bundle.sd_jwt,
                                                          decided.bundle.anchor)
    finally:
        node.close()


def test_a_damaged_entry_of_the_collect_index_is_built_again(tmp_path: Path) -> None:
    """An index entry that cannot be opened (a torn write, a damaged disk) in an index marked
    complete is built again from the records, and the collect finds its decision (helper
    round 35M: a collect that took a damaged entry as no decision passed every test)."""
    from node import approvals

    data, wallet = prepare(tmp_path)
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        service, answers = _licence_answers(node, wallet)
        decided = service.apply("business-licence", answers, wallet.holder_jwk())
        index = data / "approvals" / approvals.INDEX_FOLDER
        [entry] = [p for p in index.iterdir() if p.name != "complete"]
        assert (index / "complete").exists()
        entry.write_bytes(entry.read_bytes()[:-5])
        audience = "https://market.example"
        proof = wallet.collect_proof(0, service.challenge("business-licence", audience), now=NOW)
        got = service.collect("business-licence", wallet.holder_jwk(), proof, audience)
        assert got.approval.txid == decided.approval.txid
        assert got.bundle.anchor == decided.bundle.anchor
    finally:
        node.close()


@contextmanager
def _licence_upgraded(tmp_path: Path) -> Iterator[tuple[Any, httpx.Client, Wallet, dict[str, Any],
                                                       dict[str, Any]]]:
    """market's node served, its business-licence rule upgraded by governance once served:
    (the app, a client of it, the applicant's wallet, the rule before, the rule now)."""
    from contracts.catalogue import rule
    from ledger.network import Agency

    data, wallet = prepare(tmp_path)
    keys = _issuer_keys(data, "edu", "civil")
    settings = settings_for(data)
    settings = type(settings)(**{**settings.__dict__, "agency": "market"})
    app = create_app(settings, clock=lambda: NOW, passphrase=PASS)
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        node = app.state.node
        reg = node.store.registry
        assert reg is not None
        before = reg.rule("business-licence")
        upgraded = rule("business-licence", agency="market", title="Operating licence v2")
        node.orderer.submit(governance_tx(
            node.network, reg.gov_seq + 1, "register_rule", {"rule": upgraded},
            [Agency(a, "", keys[a], keys[a]) for a in ("edu", "civil")])).result(timeout=30)
        yield app, http, wallet, before, upgraded


def test_an_application_made_by_an_older_version_of_the_rule_is_decided_by_none(
        tmp_path: Path) -> None:
    """The wallet shows the applicant the rule of its registry snapshot, and says its version;
    a node whose rule changed since decided by the new one all the same. The application names
    the version it was made by (``?rule=``): another version now decides nothing, keeps
    nothing, and says so (``stale_rule``, the ledger's own word for it); the version in force
    decides; an application naming none is decided as before (wallets before this change)."""
    from ledger.state import rule_hash

    data = tmp_path / "data"
    with _licence_upgraded(tmp_path) as (_, http, wallet, before, upgraded):
        old, new = rule_hash(before).hex(), rule_hash(upgraded).hex()
        assert new != old

        def apply(query: str) -> httpx.Response:
            opened = http.post("/v1/services/business-licence/applications").json()
            requests = [Request.from_json({k: r[k] for k in ("nonce", "audience", "type",
                                                            "claims")})
                        for r in opened["requests"]]
            answers = wallet.answer(requests, now=NOW)
            return http.post(f"/v1/services/business-licence/apply{query}", json={
                "holder_jwk": wallet.holder_jwk(),
                "presentations": [{"nonce": n, "envelope": b64url(e)} for n, e in answers]})

        height = http.get("/v1/health").json()["height"]
        got = apply(f"?rule={old}")
        assert got.status_code == 409 and got.json()["code"] == "stale_rule", got.text
        assert f"version {new[:16]} now, not {old[:16]}" in got.json()["detail"], got.text
        assert "nothing was decided" in got.json()["detail"]
        assert http.get("/v1/health").json()["height"] == height  # nothing committed
        assert not (data / "approvals").exists() or list((data / "approvals").iterdir()) == []
        for bad in ("?rule=xyz", f"?rule={old[:-2]}"):
            got = apply(bad)
            assert got.status_code == 422, got.text
        got = apply(f"?rule={new.upper()}")
        assert got.status_code == 200 and got.json()["rule_hash"] == new, got.text
        got = apply("")
        assert got.status_code == 200 and got.json()["rule_hash"] == new, got.text


def test_a_stale_rule_is_refused_before_any_answer_is_opened(tmp_path: Path) -> None:
    """`?rule=` naming a version no longer in force is refused before the answers are read
    (ADR 82: "checked before the answers are opened"): presentations that would fail, a nonce
    no request has or an envelope that is none, get ``stale_rule`` (409), not the words of the
    check that opened them; with the version in force the same answers are refused by that
    check (the order shows). Mutation round 42M: the first check dropped left every test
    passing, the one at the head refusing the same application after its answers were read."""
    from ledger.state import rule_hash

    with _licence_upgraded(tmp_path) as (_, http, wallet, before, upgraded):
        old, new = rule_hash(before).hex(), rule_hash(upgraded).hex()
        opened = http.post("/v1/services/business-licence/applications").json()
        nonce = opened["requests"][0]["nonce"]
        height = http.get("/v1/health").json()["height"]
        for presentations in ([{"nonce": nonce, "envelope": b64url(b"not an envelope")}],
                              [{"nonce": "n" * 32, "envelope": b64url(b"x")}]):
            body = {"holder_jwk": wallet.holder_jwk(), "presentations": presentations}
            got = http.post(f"/v1/services/business-licence/apply?rule={old}", json=body)
            assert got.status_code == 409 and got.json()["code"] == "stale_rule", got.text
            assert f"version {new[:16]} now, not {old[:16]}" in got.json()["detail"]
            got = http.post(f"/v1/services/business-licence/apply?rule={new}", json=body)
            assert got.status_code not in (200, 409), got.text  # opened: its own refusal
            assert got.json().get("code") != "stale_rule", got.text
        assert http.get("/v1/health").json()["height"] == height  # nothing committed


def test_a_decision_by_another_version_of_the_rule_than_the_wallets_is_said(
        tmp_path: Path, capsys: Any) -> None:
    """A node before ADR 82 reads no version an application names, and decides by the rule in
    force; a decision collected was made by the rule of its day. The approval credential says
    the version that decided (`rule_version`): the wallet says where it is not the one its
    snapshot has (helper round 41V's question)."""
    import httpx as client_lib

    from ledger.state import rule_hash
    from wallet.cli import _keep_decision

    with _licence_upgraded(tmp_path) as (app, http, wallet, shown, upgraded):
        opened = http.post("/v1/services/business-licence/applications").json()
        requests = [Request.from_json({k: r[k] for k in ("nonce", "audience", "type", "claims")})
                    for r in opened["requests"]]
        answers = wallet.answer(requests, now=NOW)
        got = http.post("/v1/services/business-licence/apply", json={  # as an older wallet
            "holder_jwk": wallet.holder_jwk(),
            "presentations": [{"nonce": n, "envelope": b64url(e)} for n, e in answers]})
        assert got.status_code == 200, got.text[:500]
        now_reg = app.state.node._registry()
    answer = client_lib.Response(200, json=got.json())
    _keep_decision(answer, wallet, b"wallet-pass", "business-licence", shown, now_reg,
                   tmp_path / "snap.bin")
    said = " ".join(capsys.readouterr().err.split())
    assert "approved (fast_track)" in said, said
    assert (f"decided by version {rule_hash(upgraded).hex()[:16]} of the rule, not by version "
            f"{rule_hash(shown).hex()[:16]} this wallet's snapshot has") in said, said
    _keep_decision(answer, wallet, b"wallet-pass", "business-licence", upgraded, now_reg,
                   tmp_path / "snap.bin")  # held already: by the version the snapshot has
    said = " ".join(capsys.readouterr().err.split())
    assert "holds it already" in said and "decided by version" not in said, said
