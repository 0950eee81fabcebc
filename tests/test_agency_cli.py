"""`agency issue` and `agency status`, run as real processes against the demo network."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http.server
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api import CLAIMS as DEGREE
from test_api import NOW, PASS, TOKEN, make_demo, serve, settings_for
from test_audit_since_monitor import _drip, _QuietNode

from ledger import merkle, sdjwt
from ledger.checkpoint import SignedCheckpoint
from ledger.finality import verify_final
from ledger.keys import PrivateKey
from ledger.presentation import Bundle
from ledger.store import Store
from ledger.timetext import local_day, time_zone
from ledger.tx import Tx
from node.app import create_app

BIN = Path(sys.executable).parent
PASSPHRASE = "test-only"
ENV = {**os.environ, "LEDGER_KEY_PASSPHRASE": PASSPHRASE, "COLUMNS": "200"}
HOLDER = PrivateKey(hashlib.sha256(b"agency-cli-holder").digest())
CLAIMS = {"holder_name": "Zhou Min-4f1a", "district": "Furong-7c", "birth_date": "1988-03-14",
          "resident_since": "2012-09-01"}


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True,
                          env=env or ENV, timeout=300, check=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("agency") / "demo-data"
    r = _run("ledger-node", "demo", "--data", str(data))
    assert r.returncode == 0, r.stderr
    return data


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("agency-files")
    (d / "holder.jwk.json").write_text(json.dumps(sdjwt.jwk_from_ed25519(HOLDER.public.raw)))
    (d / "claims.json").write_text(json.dumps(CLAIMS))
    return d


def _issue(demo: Path, files: Path, out: Path, *extra: str, agency: str = "civil",
           kind: str = "residence", claims: Path | None = None,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return _run("agency", "issue", "--data", str(demo), "--agency", agency, "--type", kind,
                "--claims", str(claims or files / "claims.json"),
                "--holder-jwk", str(files / "holder.jwk.json"), "--out", str(out), *extra,
                env=env)


def _status(demo: Path, cid: str, new: str, *extra: str,
            agency: str = "civil") -> subprocess.CompletedProcess[str]:
    return _run("agency", "status", "--data", str(demo), "--agency", agency,
                "--credential-id", cid, "--set", new, *extra)


def _log_size(demo: Path) -> int:
    with Store(demo / "ledger", create=False) as store:
        assert store.head is not None
        return store.head.log_size


def _issued(demo: Path, files: Path, tmp_path: Path) -> tuple[dict[str, Any], Path]:
    out = tmp_path / "bundle.bin"
    r = _issue(demo, files, out, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), out


def _assert_no_claim_values(text: str) -> None:
    for value in CLAIMS.values():
        assert value not in text


def test_issue_writes_a_bundle_that_proves_its_anchor(demo: Path, files: Path,
                                                      tmp_path: Path) -> None:
    before = _log_size(demo)
    out = tmp_path / "bundle.bin"
    r = _issue(demo, files, out, "--valid-days", "30")
    assert r.returncode == 0, r.stderr
    _assert_no_claim_values(r.stdout + r.stderr)
    for name in ("credential_id", "txid", "leaf_index", "height"):
        assert name in r.stdout
    assert out.stat().st_mode & 0o777 == 0o600  # it holds every claim value

    bundle = Bundle.from_bytes(out.read_bytes())
    jwt = bundle.sd_jwt.split("~", 1)[0]
    cid = hashlib.sha256(jwt.encode()).digest()
    assert cid.hex() in r.stdout
    assert bundle.leaf_index == before  # the next leaf of the log
    anchor = Tx.from_bytes(bundle.anchor)
    assert anchor.type == "issue"
    assert anchor.body["credential_id"] == cid
    assert anchor.body["valid_until"] - anchor.body["valid_from"] == 30 * 86400
    with Store(demo / "ledger", create=False) as store:
        assert store.registry is not None
        assert store.head is not None
        assert store.entry(bundle.leaf_index) == bundle.anchor
        signed = SignedCheckpoint.from_text(bundle.checkpoint)
        assert verify_final(signed, store.registry, store.head.time) == {"civil", "edu", "market"}
        cred = store.credential(cid)
    assert cred is not None
    assert (cred.issuer, cred.type, cred.status) == ("civil", "residence", "valid")
    merkle.verify_inclusion(merkle.leaf_hash(bundle.anchor), bundle.leaf_index,
                            signed.checkpoint.size, list(bundle.proof), signed.checkpoint.root)
    claims = sdjwt.verify_issuer_signed(bundle.sd_jwt, issuer_public_jwk=sdjwt.jwk_from_ed25519(
        _issuer_public(demo, anchor)), now=anchor.body["valid_from"])
    assert {k: claims[k] for k in CLAIMS} == CLAIMS
    assert claims["age_over_18"] is True
    assert claims["cnf"]["jwk"] == sdjwt.jwk_from_ed25519(HOLDER.public.raw)


def _issuer_public(demo: Path, anchor: Tx) -> bytes:
    with Store(demo / "ledger", create=False) as store:
        assert store.registry is not None
        return store.registry.public_keys[anchor.sigs[0].kid].raw


def test_issue_counts_birthdays_in_the_time_zone_it_is_given(demo: Path, files: Path,
                                                             tmp_path: Path) -> None:
    """ADR 56. At any moment some zone is on another calendar day than UTC: UTC+14 from 10:00
    UTC, UTC-12 before 12:00. The holder turns 18 on that zone's day."""
    now = dt.datetime.now(dt.UTC)
    name = "Pacific/Kiritimati" if now.hour >= 10 else "Etc/GMT+12"  # UTC+14 / UTC-12
    zone = time_zone(name)
    # the later of the two days: the birthday has come in one calendar and not in the other
    target = max(now.astimezone(zone).date(), now.date())
    born = dt.date(target.year - 18, target.month, min(target.day, 28 if target.month == 2
                                                       else 31))
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps(dict(CLAIMS, birth_date=born.isoformat())))
    out = tmp_path / "bundle.bin"
    r = _issue(demo, files, out, "--time-zone", name, "--json", claims=claims)
    assert r.returncode == 0, r.stderr
    bundle = Bundle.from_bytes(out.read_bytes())
    anchor = Tx.from_bytes(bundle.anchor)
    issued_at = anchor.body["valid_from"]
    said = sdjwt.verify_issuer_signed(bundle.sd_jwt, issuer_public_jwk=sdjwt.jwk_from_ed25519(
        _issuer_public(demo, anchor)), now=issued_at)
    eighteen = dt.date(born.year + 18, born.month, born.day)
    by_zone, by_utc = (local_day(issued_at, z) >= eighteen for z in (zone, dt.UTC))
    assert said["age_over_18"] is by_zone
    # the two calendars' answers differ, unless the run crossed a midnight, or the days are
    # 28 and 29 February (no one 18 then was born on a 29 February)
    if local_day(issued_at, zone) != local_day(issued_at) and (target.month, target.day) != (2, 29):
        assert by_zone is not by_utc
    # a name that is not a zone, and the option with a node (its own setting applies)
    bad = _issue(demo, files, tmp_path / "b1.bin", "--time-zone", "Asia/Shangai")
    assert bad.returncode == 2
    assert "'Asia/Shangai' is not an IANA time zone name" in bad.stderr
    r = _run("agency", "issue", "--node", "http://127.0.0.1:9", "--agency", "civil",
             "--type", "residence", "--claims", str(claims), "--holder-jwk",
             str(files / "holder.jwk.json"), "--out", str(tmp_path / "b2.bin"),
             "--time-zone", "Asia/Shanghai")
    assert r.returncode == 2
    assert "--time-zone is for --data" in r.stderr
    assert not (tmp_path / "b1.bin").exists() and not (tmp_path / "b2.bin").exists()


def test_issue_json_names_the_anchor(demo: Path, files: Path, tmp_path: Path) -> None:
    result, out = _issued(demo, files, tmp_path)
    bundle = Bundle.from_bytes(out.read_bytes())
    assert result["leaf_index"] == bundle.leaf_index
    assert result["txid"] == hashlib.sha256(bundle.anchor).hexdigest()
    with Store(demo / "ledger", create=False) as store:
        loc = store.tx_location(bytes.fromhex(result["txid"]))
    assert loc == (result["leaf_index"], result["height"])


def test_issue_text_names_the_status_index_and_the_end_json_names(demo: Path, files: Path,
                                                                   tmp_path: Path) -> None:
    """`agency issue`'s lines gave the credential id and the anchor's place but not its status
    index (what a status list entry and a revocation are read by) nor its end, which only
    --json gave: the lines name both, as the anchor holds them (helper round 37D)."""
    out = tmp_path / "r.bundle"
    r = _issue(demo, files, out)
    assert r.returncode == 0, r.stderr
    anchor = Tx.from_bytes(Bundle.from_bytes(out.read_bytes()).anchor).body
    end = anchor["valid_until"]
    assert f"  status_index: {anchor['status_index']}\n" in r.stdout, r.stdout
    stamp = dt.datetime.fromtimestamp(end, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert f"  valid_until: {end} ({stamp})\n" in r.stdout, r.stdout


def test_two_issues_draw_different_status_indexes(demo: Path, files: Path,
                                                  tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, _ = _issued(demo, files, tmp_path / "a")
    second, _ = _issued(demo, files, tmp_path / "b")
    assert first["credential_id"] != second["credential_id"]
    assert first["status_index"] != second["status_index"]


@pytest.mark.parametrize(("change", "message"), [
    ({"favourite_colour": "blue-4d2e"}, "not registered ['favourite_colour']"),
    ({"district": None}, "missing ['district']"),
    ({"birth_date": "14/03/1988"}, "'birth_date' must be a date"),
])
def test_claims_that_do_not_fit_the_type_are_refused(demo: Path, files: Path, tmp_path: Path,
                                                     change: dict[str, Any],
                                                     message: str) -> None:
    claims = {k: v for k, v in {**CLAIMS, **change}.items() if v is not None}
    path = tmp_path / "claims.json"
    path.write_text(json.dumps(claims))
    before = _log_size(demo)
    out = tmp_path / "bundle.bin"
    r = _issue(demo, files, out, claims=path)
    assert r.returncode == 1
    assert message in r.stderr
    for value in claims.values():  # the error names claims, never their values
        assert value not in r.stderr
    assert not out.exists()
    assert _log_size(demo) == before


def test_a_claims_file_naming_a_claim_twice_is_refused(demo: Path, files: Path,
                                                      tmp_path: Path) -> None:
    """`{"holder_name": "A", …, "holder_name": "B"}` issued B, which its issuer may never have
    read (privacy hunt, ADR 55): refused as the SD-JWT parser refuses it; a file Notepad saved
    with a byte-order mark is still read."""
    text = json.dumps(CLAIMS)
    twice = tmp_path / "twice.json"
    twice.write_text(text[:-1] + ', "holder_name": "MKDUP-other"}')
    before = _log_size(demo)
    out = tmp_path / "bundle.bin"
    r = _issue(demo, files, out, claims=twice)
    assert r.returncode == 2, r.stderr
    assert "duplicate member name 'holder_name'" in r.stderr
    assert "MKDUP" not in r.stderr and not out.exists() and _log_size(demo) == before
    marked = tmp_path / "bom.json"
    marked.write_bytes(b"\xef\xbb\xbf" + text.encode())
    r = _issue(demo, files, out, claims=marked)
    assert r.returncode == 0, r.stderr
    wide = tmp_path / "utf16.json"  # as PowerShell 5's `>` writes it (review, ADR 55)
    wide.write_bytes(text.encode("utf-16"))
    r = _issue(demo, files, tmp_path / "bundle16.bin", claims=wide)
    assert r.returncode == 0, r.stderr
    wide.write_bytes(text.encode("utf-16")[:-1])  # cut in the middle of a character
    r = _issue(demo, files, tmp_path / "bundle16b.bin", claims=wide)
    assert r.returncode == 2 and "reads as UTF-16" in r.stderr, r.stderr


def test_unregistered_type_is_refused(demo: Path, files: Path, tmp_path: Path) -> None:
    r = _issue(demo, files, tmp_path / "b", kind="passport")
    assert r.returncode == 1
    assert "'passport' is not registered" in r.stderr


def test_agency_without_a_grant_is_refused(demo: Path, files: Path, tmp_path: Path) -> None:
    before = _log_size(demo)
    r = _issue(demo, files, tmp_path / "b", agency="edu")
    assert r.returncode == 1
    assert "'edu' holds no grant to issue 'residence'" in r.stderr
    assert _log_size(demo) == before


def test_unknown_agency_is_a_clear_error(demo: Path, files: Path, tmp_path: Path) -> None:
    r = _issue(demo, files, tmp_path / "b", agency="police")
    assert r.returncode == 2
    assert "unknown agency 'police'" in r.stderr
    assert "civil, edu, market" in r.stderr


def test_wrong_passphrase_is_a_clear_error(demo: Path, files: Path, tmp_path: Path) -> None:
    before = _log_size(demo)
    out = tmp_path / "b"
    r = _issue(demo, files, out, env={**ENV, "LEDGER_KEY_PASSPHRASE": "not-the-passphrase"})
    assert r.returncode == 1
    assert "wrong passphrase" in r.stderr
    assert "civil.issuer.key" in r.stderr
    assert not out.exists()
    assert _log_size(demo) == before


def test_unusable_inputs_exit_2(demo: Path, files: Path, tmp_path: Path) -> None:
    bad_jwk = tmp_path / "jwk.json"
    bad_jwk.write_text(json.dumps({"kty": "OKP", "crv": "X25519", "x": "AAAA"}))
    r = _run("agency", "issue", "--data", str(demo), "--agency", "civil", "--type", "residence",
             "--claims", str(files / "claims.json"), "--holder-jwk", str(bad_jwk),
             "--out", str(tmp_path / "b"))
    assert r.returncode == 2
    assert "holder JWK" in r.stderr
    r = _issue(demo, files, tmp_path / "b", claims=tmp_path / "missing.json")
    assert r.returncode == 2
    assert "cannot read the claims file" in r.stderr
    r = _issue(demo, files, tmp_path / "no-such-folder" / "b")
    assert r.returncode == 2
    assert "cannot write" in r.stderr


def test_revoke_then_reinstating_is_an_illegal_transition(demo: Path, files: Path,
                                                          tmp_path: Path) -> None:
    result, _ = _issued(demo, files, tmp_path)
    cid = result["credential_id"]
    r = _status(demo, cid, "revoked", "--reason", "withdrawn", "--json")
    assert r.returncode == 0, r.stderr
    receipt = json.loads(r.stdout)
    assert receipt["status"] == "revoked"
    assert receipt["reason"] == "withdrawn"
    with Store(demo / "ledger", create=False) as store:
        assert store.tx_location(bytes.fromhex(receipt["txid"])) == (receipt["index"],
                                                                    receipt["height"])
        cred = store.credential(bytes.fromhex(cid))
    assert cred is not None
    assert cred.status == "revoked"

    r = _status(demo, cid, "valid")
    assert r.returncode == 1
    assert "illegal_transition" in r.stderr


def test_suspend_and_reinstate(demo: Path, files: Path, tmp_path: Path) -> None:
    result, _ = _issued(demo, files, tmp_path)
    cid = result["credential_id"]
    r = _status(demo, cid, "suspended", "--reason", "under-review")
    assert r.returncode == 0, r.stderr
    assert "now suspended" in r.stdout
    assert "txid" in r.stdout
    r = _status(demo, cid, "valid", "--reason", "review-cleared")
    assert r.returncode == 0, r.stderr
    with Store(demo / "ledger", create=False) as store:
        cred = store.credential(bytes.fromhex(cid))
    assert cred is not None
    assert cred.status == "valid"


def test_a_status_change_names_its_leaf_index_as_an_issuance_does(demo: Path, files: Path,
                                                                  tmp_path: Path) -> None:
    """`agency issue` printed the receipt's place in the log as "leaf_index", and `agency
    status` the same place as "index", which an officer reads beside the credential's own
    status index as that index. Both say leaf_index (what `ledger prove --index` takes); the
    JSON's names are unchanged (helper round 36D)."""
    result, _ = _issued(demo, files, tmp_path)
    r = _status(demo, result["credential_id"], "suspended", "--reason", "under-review")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert not [line for line in lines if line.strip().startswith("index:")], r.stdout
    said = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    with Store(demo / "ledger", create=False) as store:
        assert store.tx_location(bytes.fromhex(said["txid"])) == (int(said["leaf_index"]),
                                                                 int(said["height"]))
    r = _status(demo, result["credential_id"], "valid", "--reason", "review-cleared", "--json")
    assert r.returncode == 0 and "index" in json.loads(r.stdout), r.stderr


def test_status_rejections_name_their_code(demo: Path, files: Path, tmp_path: Path) -> None:
    """(Another agency's credential and an unknown one are refused before they are signed
    since round 40S: `test_a_change_the_ledger_would_refuse_is_not_signed`.)"""
    result, _ = _issued(demo, files, tmp_path)
    assert _status(demo, result["credential_id"], "revoked").returncode == 0
    r = _status(demo, result["credential_id"], "valid")
    assert r.returncode == 1
    assert "illegal_transition" in r.stderr


def test_status_bad_input(demo: Path) -> None:
    r = _status(demo, "abc", "revoked")
    assert r.returncode == 2
    assert "64 hex digits" in r.stderr
    r = _status(demo, "00" * 32, "deleted")
    assert r.returncode == 2
    r = _status(demo, "00" * 32, "revoked", agency="police")
    assert r.returncode == 2
    assert "unknown agency 'police'" in r.stderr


class _AnsweringNode(_QuietNode):
    """A made-up node's handler: ``_answer`` sends its JSON, nothing is logged."""

    def _answer(self, said: Any) -> None:
        self._send(json.dumps(said).encode(), "application/json")


def test_a_nodes_receipt_is_shown_with_its_escape_sequences_as_text(demo: Path) -> None:
    """``--node`` may name any node of the network, another agency's: its receipt's words
    reach the operator's terminal as text, and no escape sequence in them clears the screen or
    retitles the window to pass a refused change off as done."""

    from test_audit_since_monitor import _start_serving, _stop_serving

    hostile = "\x1b]0;all done\x1b\\\x1b[2J\x1b[Hrevoked"

    class Node(_AnsweringNode):
        def do_GET(self) -> None:
            self._answer({"network": "demo", "agency": "civil"})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            self._answer({"txid": hostile, "index": hostile, "height": hostile})

    url = _start_serving(Node)
    try:
        r = _run("agency", "status", "--node", url, "--data", str(demo), "--agency", "civil",
                 "--credential-id", "00" * 32, "--set", "revoked", "--reason", "withdrawn")
    finally:
        _stop_serving(url)
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout, repr(r.stdout)
    assert "txid: \\x1b]0;all done\\x1b\\\\x1b[2J\\x1b[Hrevoked" in r.stdout, r.stdout


def test_a_change_the_ledger_would_refuse_is_not_signed(demo: Path) -> None:
    """`agency status --data` with all 64 digits of another agency's credential (of a type the
    agency is not granted) or of no credential on the ledger: the change was signed after the
    passphrase, then refused by the ledger (ADR 81, left). Refused before the passphrase, exit
    2, the line naming the agency that issued it; the ledger unchanged (helper round 40S)."""
    from ledger.state import credential_key

    with Store(demo / "ledger", create=False) as store:
        edus = [key[1:] for key, _ in store.iterate(credential_key(b""))
                if (c := store.credential(key[1:])) is not None and c.issuer == "edu"]
        size = store.head.log_size if store.head is not None else 0
    assert edus
    bare = {k: v for k, v in ENV.items() if not k.startswith("LEDGER_")}
    for cid, said in ((edus[0].hex().upper(), f"{edus[0].hex()}: edu's credential (degree), "
                                              "not civil's"),
                      ("00" * 32, "no credential with this id is anchored on this ledger")):
        for env in (ENV, bare):  # before the passphrase: none given, none asked
            r = _run("agency", "status", "--data", str(demo), "--agency", "civil",
                     "--credential-id", cid, "--set", "suspended", env=env)
            told = " ".join(r.stderr.split())
            assert r.returncode == 2 and said in told, told
            assert "nothing was signed" in told and "assphrase" not in told, told
    assert _log_size(demo) == size


def test_agency_status_help_says_which_change_is_refused_before_the_passphrase() -> None:
    """Round 40 refused a change the ledger would refuse before the passphrase, with exit 2 (it
    was 1, the ledger's rejection), and its help said so "with --data", which every use of the
    command gives, though only a change written without --node is checked here. The help says
    when, and the exit code (helper round 41V)."""
    r = _run("agency", "status", "--help", env={**ENV, "COLUMNS": "300"})
    told = " ".join(r.stdout.replace("│", " ").split())
    assert r.returncode == 0, r.stderr
    assert "Without --node, a credential the agency may not change" in told, told
    assert "refused before the passphrase (exit 2)" in told, told


def test_a_credential_start_is_not_taken_from_a_decision_list_that_is_none(demo: Path) -> None:
    """The start of an approval credential id is looked up in the node's decision list: an
    answer that was no list of decisions with 64-digit ids (a credential id of 32 digits, or
    not hex) was taken, and a change signed for a 16-byte id after the passphrase, or a
    traceback. Refused now, nothing signed nor sent (helper round 37D)."""

    from test_audit_since_monitor import _start_serving, _stop_serving

    start = "0123456789abcdef"
    posted: list[str] = []
    for listed in ([{"credential_id": start * 2}], [{"credential_id": start + "zz" * 24}],
                   [{"credential_id": start + "00" * 24}, "not a decision"],
                   {"credential_id": start + "00" * 24}):

        class Node(_AnsweringNode):
            decisions = listed

            def do_GET(self) -> None:
                self._answer(self.decisions if self.path.startswith("/v1/approvals") else
                             {"network": "demo", "agency": "civil"})

            def do_POST(self) -> None:
                posted.append(self.path)
                self._answer({})

        url = _start_serving(Node)
        try:
            r = _run("agency", "status", "--node", url, "--data", str(demo), "--agency", "civil",
                     "--credential-id", start, "--set", "revoked",
                     env={**ENV, "LEDGER_OPERATOR_TOKEN": TOKEN})
        finally:
            _stop_serving(url)
        assert r.returncode == 1, (listed, r.stderr)
        assert "did not answer its decision list like a ledger node" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and not posted, (r.stderr, posted)


def test_explain_refuses_a_decision_list_that_is_none(demo: Path) -> None:
    """`agency approvals --explain START` looks the start up in the node's decision list: a
    list holding anything but decisions (a string, a number) ended in an AttributeError
    traceback. It is one line, exit 1, and no explanation is asked for (helper round 38K)."""

    from test_audit_since_monitor import _start_serving, _stop_serving

    start = "0123456789abcdef"
    asked: list[str] = []
    for listed in (["not a decision"], [7, {"approval_tx": start + "00" * 24}]):

        class Node(_AnsweringNode):
            decisions = listed

            def do_GET(self) -> None:
                asked.append(self.path)
                self._answer(self.decisions)

        url = _start_serving(Node)
        try:
            r = _run("agency", "approvals", "--node", url, "--explain", start,
                     env={**ENV, "LEDGER_OPERATOR_TOKEN": TOKEN})
        finally:
            _stop_serving(url)
        assert r.returncode == 1, (listed, r.stderr)
        assert "did not answer with a list of decisions" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr, r.stderr
        assert asked == ["/v1/approvals"], asked
        asked.clear()


def test_the_agency_another_node_serves_is_quoted_short(demo: Path) -> None:
    """A start of an id looked up at a node serving another agency is refused (exit 2, before
    the passphrase): the agency the node says it serves, its words, is quoted cut to 40
    characters, as the node's other words are (round 38M: no test held the cut)."""

    from test_audit_since_monitor import _start_serving, _stop_serving

    said = "market" + "x" * 200

    class Node(_AnsweringNode):
        def do_GET(self) -> None:
            self._answer({"network": "demo", "agency": said})

    url = _start_serving(Node)
    try:
        r = _run("agency", "status", "--node", url, "--data", str(demo), "--agency", "civil",
                 "--credential-id", "0123456789abcdef", "--set", "revoked",
                 env={**{k: v for k, v in ENV.items() if k != "LEDGER_KEY_PASSPHRASE"},
                      "LEDGER_OPERATOR_TOKEN": TOKEN})
    finally:
        _stop_serving(url)
    assert r.returncode == 2, r.stderr
    text = " ".join(r.stderr.split())
    assert f"is {said[:40]!r}'s node, not 'civil''s" in text, r.stderr
    assert "x" * 40 not in text and "Passphrase" not in r.stderr


def test_issue_a_batch_of_unlinkable_copies(demo: Path, files: Path, tmp_path: Path) -> None:
    keys = [PrivateKey(hashlib.sha256(b"copy-%d" % i).digest()) for i in range(3)]
    jwks = []
    for i, k in enumerate(keys):
        jwks.append(tmp_path / f"copy{i}.jwk.json")
        jwks[-1].write_text(json.dumps(sdjwt.jwk_from_ed25519(k.public.raw)))
    args = [a for j in jwks for a in ("--holder-jwk", str(j))]
    r = _run("agency", "issue", "--data", str(demo), "--agency", "civil", "--type",
             "residence", "--claims", str(files / "claims.json"), *args, "--out",
             str(tmp_path / "copy.bundle"), "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert [g["bundle"] for g in got] == [str(tmp_path / f"copy-{n}.bundle") for n in (1, 2, 3)]
    assert len({g["credential_id"] for g in got}) == 3
    assert len({g["status_index"] for g in got}) == 3
    bundles = [Bundle.from_bytes((tmp_path / f"copy-{n}.bundle").read_bytes()) for n in (1, 2, 3)]
    salts = [set(d.split("~")[1:-1]) for d in (b.sd_jwt for b in bundles)]
    assert not (salts[0] & salts[1]) and not (salts[1] & salts[2])  # no shared disclosure
    again = _run("agency", "issue", "--data", str(demo), "--agency", "civil", "--type",
                 "residence", "--claims", str(files / "claims.json"), "--holder-jwk",
                 str(jwks[0]), "--holder-jwk", str(jwks[0]), "--out",
                 str(tmp_path / "dup.bundle"))
    assert again.returncode == 2 and "repeats a holder key" in again.stderr
    # the same key spelled another way (an extra member) is the same key
    respelled = tmp_path / "respelled.jwk.json"
    respelled.write_text(json.dumps({**json.loads(jwks[0].read_text()), "alg": "EdDSA"}))
    again = _run("agency", "issue", "--data", str(demo), "--agency", "civil", "--type",
                 "residence", "--claims", str(files / "claims.json"), "--holder-jwk",
                 str(jwks[0]), "--holder-jwk", str(respelled), "--out",
                 str(tmp_path / "dup2.bundle"))
    assert again.returncode == 2 and "repeats a holder key" in again.stderr


def test_a_holder_key_repeated_with_a_member_it_does_not_read_is_refused(
        demo: Path, files: Path, tmp_path: Path) -> None:
    """An Ed25519 JWK's ``y`` is not read (an OKP key has none): the same key with one is the
    same key, and two copies bound to it would be linked. Refused before anything is issued."""
    key = PrivateKey(hashlib.sha256(b"copy-y").digest())
    plain, with_y = tmp_path / "plain.jwk.json", tmp_path / "with-y.jwk.json"
    plain.write_text(json.dumps(sdjwt.jwk_from_ed25519(key.public.raw)))
    with_y.write_text(json.dumps({**sdjwt.jwk_from_ed25519(key.public.raw), "y": "AAAA"}))
    before = _log_size(demo)
    r = _run("agency", "issue", "--data", str(demo), "--agency", "civil", "--type",
             "residence", "--claims", str(files / "claims.json"), "--holder-jwk", str(plain),
             "--holder-jwk", str(with_y), "--out", str(tmp_path / "dup.bundle"))
    assert r.returncode == 2 and "repeats a holder key" in r.stderr, r.stderr
    assert _log_size(demo) == before


def test_approval_credentials_are_never_issued_by_hand(demo: Path, files: Path,
                                                       tmp_path: Path) -> None:
    before = _log_size(demo)
    r = _issue(demo, files, tmp_path / "fake.bundle", kind="approval")
    assert r.returncode == 2 and "never by hand" in r.stderr
    assert _log_size(demo) == before and not (tmp_path / "fake.bundle").exists()


def test_status_changes_within_one_second_all_take_effect(demo: Path, files: Path,
                                                          tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Suspend, reinstate, suspend in one second: the third used to sign the first's
    transaction again, which the ledger took as a duplicate (the credential stayed valid)."""
    import time

    from typer.testing import CliRunner

    from ledger import cli

    issued, _ = _issued(demo, files, tmp_path)
    frozen = int(time.time())
    monkeypatch.setattr(cli, "_now", lambda: frozen)
    runner = CliRunner()
    txids = []
    for new in ("suspended", "valid", "suspended"):
        r = runner.invoke(cli.agency_app, [
            "status", "--data", str(demo), "--agency", "civil", "--credential-id",
            issued["credential_id"], "--set", new, "--json"],
            env={"LEDGER_KEY_PASSPHRASE": PASSPHRASE})
        assert r.exit_code == 0, r.output
        got = json.loads(r.stdout)
        assert got["duplicate"] is False
        txids.append(got["txid"])
    assert len(set(txids)) == 3
    with Store(demo / "ledger", create=False) as store:
        record = store.credential(bytes.fromhex(issued["credential_id"]))
        assert record is not None and record.status == "suspended"


def test_a_bundle_that_cannot_be_written_names_the_committed_credential(
        demo: Path, files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills between the commit and the bundle: the credential is on the ledger and
    the holder has nothing, so the error names it and how to revoke it (no traceback)."""
    import errno

    from typer.testing import CliRunner

    from ledger import cli

    def full(*_: object, **__: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cli, "write_atomic", full)
    before = _log_size(demo)
    r = CliRunner().invoke(cli.agency_app, [
        "issue", "--data", str(demo), "--agency", "civil", "--type", "residence", "--claims",
        str(files / "claims.json"), "--holder-jwk", str(files / "holder.jwk.json"), "--out",
        str(tmp_path / "b.bin")], env={"LEDGER_KEY_PASSPHRASE": PASSPHRASE})
    said = " ".join(r.output.split())
    assert r.exit_code == 1 and "No space left on device" in said, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert _log_size(demo) == before + 1  # committed
    with Store(demo / "ledger", create=False) as store:
        assert store.head is not None
        raw = store.entry(before)
    cid = Tx.from_bytes(raw).body["credential_id"].hex()
    assert f"credential {cid}" in said and f"--credential-id {cid} --set revoked" in said


def test_a_later_copy_that_fails_says_the_bundles_written_before_it(
        demo: Path, files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three copies, the second refused by the ledger (a full disk under the store, here):
    the error said only why, so the operator did not know the first was committed and its
    bundle written (and would issue it again). It says how many were (ADR 71)."""
    from typer.testing import CliRunner

    from ledger import cli
    from ledger.errors import StoreError

    real, calls = cli._commit, []

    def second_fails(*a: Any, **k: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise StoreError("cannot write the block: No space left on device")
        return real(*a, **k)

    monkeypatch.setattr(cli, "_commit", second_fails)
    jwks = []
    for i in range(3):
        jwks += ["--holder-jwk", str(tmp_path / f"k{i}.jwk.json")]
        (tmp_path / f"k{i}.jwk.json").write_text(json.dumps(sdjwt.jwk_from_ed25519(
            PrivateKey(hashlib.sha256(b"later-%d" % i).digest()).public.raw)))
    before = _log_size(demo)
    r = CliRunner().invoke(cli.agency_app, [
        "issue", "--data", str(demo), "--agency", "civil", "--type", "residence", "--claims",
        str(files / "claims.json"), *jwks, "--out", str(tmp_path / "c.bundle")],
        env={"LEDGER_KEY_PASSPHRASE": PASSPHRASE})
    said = " ".join(r.output.split())
    assert r.exit_code == 1, r.output
    assert "No space left on device; the 1 bundle(s) before it were written" in said
    assert _log_size(demo) == before + 1
    assert sorted(p.name for p in tmp_path.glob("c-*.bundle")) == ["c-1.bundle"]


def test_an_issued_bundle_is_not_overwritten_and_nothing_is_issued(demo: Path, files: Path,
                                                                  tmp_path: Path) -> None:
    """An --out that exists (an earlier holder's bundle) is bad input without --force: exit 2
    before anything is committed, the file unchanged; with two copies, the second's path
    existing refuses the first too (threat model: a CLI's output overwrites no bundle)."""
    kept = tmp_path / "kept.bundle"
    kept.write_bytes(b"an earlier holder's bundle")
    before = _log_size(demo)
    r = _issue(demo, files, kept)
    assert r.returncode == 2, r.stderr
    assert "exists" in r.stderr and "--force" in r.stderr
    assert kept.read_bytes() == b"an earlier holder's bundle"
    second = tmp_path / "two-2.bundle"
    second.write_bytes(b"the second copy's earlier bundle")
    other = tmp_path / "other.jwk.json"
    other.write_text(json.dumps(sdjwt.jwk_from_ed25519(
        PrivateKey(hashlib.sha256(b"agency-cli-other").digest()).public.raw)))
    r = _issue(demo, files, tmp_path / "two.bundle", "--holder-jwk", str(other))
    assert r.returncode == 2, r.stderr
    assert second.read_bytes() == b"the second copy's earlier bundle"
    assert not (tmp_path / "two-1.bundle").exists()
    assert _log_size(demo) == before  # nothing committed
    _assert_no_claim_values(r.stdout + r.stderr)


def test_a_bundle_path_taken_meanwhile_is_neither_replaced_nor_lost(
        demo: Path, files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two issuances to one --out (two terminals): the path was free when checked, and another
    process wrote it before this credential's bundle. Each used to report success while the
    later bundle replaced the earlier, leaving a committed credential with none. The bundle now
    goes beside it, named by the credential, and the other file stays as it was."""
    from typer.testing import CliRunner

    from ledger import cli

    out = tmp_path / "b.bundle"
    real = cli._commit

    def commit_then_other_writes(*a: Any, **k: Any) -> Any:
        got = real(*a, **k)
        out.write_bytes(b"the other issuance's bundle")
        return got

    monkeypatch.setattr(cli, "_commit", commit_then_other_writes)
    r = CliRunner().invoke(cli.agency_app, [
        "issue", "--data", str(demo), "--agency", "civil", "--type", "residence", "--claims",
        str(files / "claims.json"), "--holder-jwk", str(files / "holder.jwk.json"), "--out",
        str(out), "--json"], env={"LEDGER_KEY_PASSPHRASE": PASSPHRASE})
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    beside = tmp_path / f"b-{got['credential_id'][:16]}.bundle"
    assert got["bundle"] == str(beside)
    assert out.read_bytes() == b"the other issuance's bundle"
    assert Bundle.from_bytes(beside.read_bytes()).sd_jwt
    assert "written meanwhile by another process" in " ".join(r.stderr.split())


def test_outputs_taken_meanwhile_are_not_replaced(tmp_path: Path) -> None:
    """Every other output checked before it is written (keys, snapshots, archives, proposals,
    requests) is written only where nothing is, unless --force: exit 2, the file unchanged."""
    import typer

    from ledger import cli
    from ledger.keys import save_private_key

    taken = tmp_path / "taken"
    taken.write_bytes(b"first")
    with pytest.raises(typer.Exit) as info:
        cli._write_out(taken, b"second", 0o644, False)
    assert info.value.exit_code == 2 and taken.read_bytes() == b"first"
    cli._write_out(taken, b"second", 0o644, True)
    assert taken.read_bytes() == b"second"
    with pytest.raises(FileExistsError):
        save_private_key(taken, PrivateKey.generate(), b"pass", overwrite=False)
    assert taken.read_bytes() == b"second"


_INTERRUPTED = """
import os, signal, sys
import ledger.cli as cli
real, sig = cli._commit, getattr(signal, sys.argv[1])
def commit(*a, **k):
    got = real(*a, **k)
    os.kill(os.getpid(), sig)  # Ctrl-C or SIGTERM right after it
    return got
cli._commit = commit
sys.argv = ["agency", *sys.argv[2:]]
cli.agency_main()
"""


@pytest.mark.parametrize(("sig", "code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_an_interrupt_after_the_commit_still_writes_the_bundle(
        demo: Path, files: Path, tmp_path: Path, sig: str, code: int) -> None:
    """Ctrl-C (or SIGTERM) right after the credential is committed used to stop the process
    before its bundle was written, saying nothing: a valid credential no one held, with no id
    to revoke it by. The bundle is written first, then the process stops as asked."""
    out = tmp_path / "b.bundle"
    before = _log_size(demo)
    r = subprocess.run([sys.executable, "-c", _INTERRUPTED, sig, "issue", "--data", str(demo),
                        "--agency", "civil", "--type", "residence", "--claims",
                        str(files / "claims.json"), "--holder-jwk",
                        str(files / "holder.jwk.json"), "--out", str(out)],
                       capture_output=True, text=True, env=ENV, timeout=300, check=False)
    assert r.returncode == code, r.stderr
    assert "stopping once this credential's bundle is written" in " ".join(r.stderr.split())
    assert _log_size(demo) == before + 1
    bundle = Bundle.from_bytes(out.read_bytes())
    assert Tx.from_bytes(bundle.anchor).txid == Tx.from_bytes(_entry(demo, before)).txid


@pytest.mark.parametrize(("sig", "code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_an_interrupt_with_stderr_gone_still_writes_the_bundle(
        demo: Path, files: Path, tmp_path: Path, sig: str, code: int) -> None:
    """`agency issue … 2>&1 | tee log`, then Ctrl-C: tee dies of the same signal, and saying
    "stopping once …" on the dead pipe raised inside the signal handler, cutting the step it
    was to keep whole (a review found it): committed, no bundle, exit 1."""
    import os

    out = tmp_path / "b.bundle"
    before = _log_size(demo)
    r_fd, w_fd = os.pipe()
    os.close(r_fd)  # the reader is gone
    try:
        got = subprocess.run([sys.executable, "-c", _INTERRUPTED, sig, "issue", "--data",
                              str(demo), "--agency", "civil", "--type", "residence",
                              "--claims", str(files / "claims.json"), "--holder-jwk",
                              str(files / "holder.jwk.json"), "--out", str(out)],
                             stdout=subprocess.DEVNULL, stderr=w_fd, env=ENV, timeout=300,
                             check=False)
    finally:
        os.close(w_fd)
    assert _log_size(demo) == before + 1
    assert out.exists() and got.returncode == code


_DISK_FULL = """
import errno, sys
import ledger.cli as cli
def write_atomic(*a, **k):  # the bundle's disk full once the credential is committed
    raise OSError(errno.ENOSPC, "No space left on device")
cli.write_atomic = write_atomic
sys.argv = ["agency", *sys.argv[1:]]
cli.agency_main()
"""


def test_a_credential_committed_without_its_bundle_is_told_with_a_command_that_runs(
        demo: Path, files: Path, tmp_path: Path) -> None:
    """A credential committed whose bundle could not be written is to be revoked: the line
    said `agency status --credential-id ID --set revoked`, which refuses to run without the
    --data and --agency it needs. It names them (helper round 36D)."""
    r = subprocess.run([sys.executable, "-c", _DISK_FULL, "issue", "--data", str(demo),
                        "--agency", "civil", "--type", "residence", "--claims",
                        str(files / "claims.json"), "--holder-jwk",
                        str(files / "holder.jwk.json"), "--out", str(tmp_path / "b.bundle")],
                       capture_output=True, text=True, env=ENV, timeout=300, check=False)
    assert r.returncode == 1, r.stderr
    said = " ".join(r.stderr.split())
    hint = said.split("revoke it (", 1)[1].split(")", 1)[0]
    assert hint.startswith(f"agency status --data {demo} --agency civil --credential-id "), said
    cid = hint.split("--credential-id ")[1].split()[0]
    ran = _run(*hint.split(), "--reason", "withdrawn")
    assert ran.returncode == 0 and f"credential {cid} is now revoked" in ran.stdout, ran.stderr


_NO_LINKS = """
import errno, os, sys
def link(*a, **k):  # a FAT or exFAT USB stick, some SMB and FUSE mounts: no hard links
    raise PermissionError(errno.EPERM, "Operation not permitted")
os.link = link
import ledger.cli as cli
sys.argv = ["agency", *sys.argv[1:]]
cli.agency_main()
"""


def test_issue_to_a_file_system_without_hard_links(demo: Path, files: Path,
                                                   tmp_path: Path) -> None:
    """A bundle written where nothing may be replaced used link(), which FAT and some mounts
    refuse: the credential was committed and the holder got nothing. It falls back to a rename
    that replaces nothing (renameat2 RENAME_NOREPLACE), and still never replaces a file."""
    out = tmp_path / "b.bundle"
    before = _log_size(demo)
    args = [sys.executable, "-c", _NO_LINKS, "issue", "--data", str(demo), "--agency", "civil",
            "--type", "residence", "--claims", str(files / "claims.json"), "--holder-jwk",
            str(files / "holder.jwk.json"), "--out", str(out)]
    got = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=300,
                         check=False)
    assert got.returncode == 0, got.stderr
    assert _log_size(demo) == before + 1 and Bundle.from_bytes(out.read_bytes()).sd_jwt
    got = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=300,
                         check=False)
    assert got.returncode == 2 and "exists" in got.stderr  # checked first, as before


def _entry(demo: Path, index: int) -> bytes:
    with Store(demo / "ledger", create=False) as store:
        return store.entry(index)


def test_a_reason_is_a_code_never_free_text(demo: Path) -> None:
    """A status reason is public on the ledger for good: the tools take a code, so a name
    cannot be typed into it (ADR 47); nothing is committed."""
    before = _log_size(demo)
    for text in ("deceased Li Hua 1949-11-23", "Withdrawn", "-x", "a" * 65, "under review"):
        r = _status(demo, "ab" * 32, "revoked", "--reason", text)
        assert r.returncode == 2, r.stderr
        assert "must be a code" in " ".join(r.stderr.split()) and text not in r.stderr
    assert _log_size(demo) == before


def test_a_reason_that_is_not_utf8_is_one_clear_error(demo: Path) -> None:
    before = _log_size(demo)
    r = _status(demo, "ab" * 32, "revoked", "--reason", "\udcff")  # the byte 0xff on argv
    assert r.returncode == 2, r.stderr
    assert "must be a code" in r.stderr and "Traceback" not in r.stderr  # no code: refused
    assert _log_size(demo) == before



# -- `agency issue --node`: the agency's running node issues ---------------------------------------

def _node_issue(url: str, files: Path, out: Path, *extra: str, agency: str = "edu",
                token: str = TOKEN) -> subprocess.CompletedProcess[str]:
    (files / "degree.json").write_text(json.dumps(DEGREE))
    return _run("agency", "issue", "--node", url, "--agency", agency, "--type", "degree",
                "--claims", str(files / "degree.json"), "--out", str(out), *extra,
                env={**ENV, "LEDGER_OPERATOR_TOKEN": token})


@contextmanager
def _edu_node(data: Path) -> Iterator[str]:
    """A real node of the test network's education agency over real HTTP (its clock at NOW);
    its store is closed again when the block ends."""
    with serve(create_app(settings_for(data), clock=lambda: NOW, passphrase=PASS)) as url:
        yield url


def test_issue_through_the_running_node(files: Path, tmp_path: Path) -> None:
    """With --node the node signs and anchors (no keys here); a batch of two holder keys gives
    two bundles, each proving its own anchor against the node's checkpoint, and no claim value
    reaches the terminal."""
    data = make_demo(tmp_path / "node-data")
    second = PrivateKey(hashlib.sha256(b"agency-cli-holder-2").digest())
    (files / "holder2.jwk.json").write_text(json.dumps(sdjwt.jwk_from_ed25519(second.public.raw)))
    with _edu_node(data) as url:
        r = _node_issue(url, files, tmp_path / "deg.bin", "--holder-jwk",
                        str(files / "holder.jwk.json"), "--holder-jwk",
                        str(files / "holder2.jwk.json"), "--valid-days", "30", "--json")
    assert r.returncode == 0, r.stderr
    for value in DEGREE.values():
        assert value not in r.stdout + r.stderr
    results = json.loads(r.stdout)
    assert [x["bundle"] for x in results] == [str(tmp_path / "deg-1.bin"),
                                              str(tmp_path / "deg-2.bin")]
    assert results[0]["status_index"] != results[1]["status_index"]
    with Store(data / "ledger", create=False) as store:
        assert store.registry is not None
        for result, holder in zip(results, (HOLDER, second), strict=True):
            path = Path(result["bundle"])
            assert path.stat().st_mode & 0o777 == 0o600  # it holds every claim value
            bundle = Bundle.from_bytes(path.read_bytes())
            anchor = Tx.from_bytes(bundle.anchor)
            assert (anchor.type, anchor.body["issuer"], anchor.body["type"]) == (
                "issue", "edu", "degree")
            assert result["credential_id"] == anchor.body["credential_id"].hex()
            assert result["txid"] == hashlib.sha256(bundle.anchor).hexdigest()
            assert store.tx_location(bytes.fromhex(result["txid"])) == (
                result["leaf_index"], result["height"])
            assert result["leaf_index"] == bundle.leaf_index
            assert store.entry(bundle.leaf_index) == bundle.anchor
            assert result["status_index"] == anchor.body["status_index"]
            assert result["valid_until"] - anchor.body["valid_from"] == 30 * 86400
            signed = SignedCheckpoint.from_text(bundle.checkpoint)
            assert verify_final(signed, store.registry, NOW) == {"civil", "edu", "market"}
            merkle.verify_inclusion(merkle.leaf_hash(bundle.anchor), bundle.leaf_index,
                                    signed.checkpoint.size, list(bundle.proof),
                                    signed.checkpoint.root)
            issuer = store.registry.key(anchor.sigs[0].kid)
            assert issuer is not None and issuer["agency"] == "edu"
            claims = sdjwt.verify_issuer_signed(
                bundle.sd_jwt, issuer_public_jwk=sdjwt.jwk_from_ed25519(
                    store.registry.public_keys[anchor.sigs[0].kid].raw),
                now=anchor.body["valid_from"])
            assert {k: claims[k] for k in DEGREE} == DEGREE
            assert claims["cnf"]["jwk"] == sdjwt.jwk_from_ed25519(holder.public.raw)


def test_issue_through_a_node_refuses_what_it_must(files: Path, tmp_path: Path) -> None:
    """Another agency's node, a missing or wrong operator token, --data with --node, a validity
    the node does not issue, a type it does not know: each is one clear error, no bundle, and
    nothing on the ledger."""
    data = make_demo(tmp_path / "node-data")
    out = tmp_path / "deg.bin"
    hold = ("--holder-jwk", str(files / "holder.jwk.json"))
    with _edu_node(data) as url:
        size = httpx.get(f"{url}/v1/head").json()["log_size"]
        for extra, agency, token, code, said in [
            ((), "civil", TOKEN, 2, "issues for 'edu', not 'civil'"),
            ((), "edu", "", 2, "LEDGER_OPERATOR_TOKEN"),
            ((), "edu", "not-the-token", 1, "refused it (401)"),
            (("--data", str(data)), "edu", TOKEN, 2, "not both"),
            (("--valid-days", "4000"), "edu", TOKEN, 2, "at most 3650 days"),
        ]:
            r = _node_issue(url, files, out, *hold, *extra, agency=agency, token=token)
            assert (r.returncode, said) == (code, said) and said in " ".join(r.stderr.split()), \
                r.stderr
            assert "Traceback" not in r.stderr and not out.exists()
        (files / "fishing.json").write_text(json.dumps({"waters": "Xiang-3b"}))
        r = _run("agency", "issue", "--node", url, "--agency", "edu", "--type", "fishing",
                 "--claims", str(files / "fishing.json"), "--out", str(out), *hold,
                 env={**ENV, "LEDGER_OPERATOR_TOKEN": TOKEN})
        assert r.returncode == 1 and "'fishing' is not registered" in r.stderr, r.stderr
        assert "Xiang-3b" not in r.stderr and not out.exists()
        assert httpx.get(f"{url}/v1/head").json()["log_size"] == size
    r = _run("agency", "issue", "--agency", "edu", "--type", "degree", "--claims",
             str(files / "degree.json"), "--out", str(out), *hold)
    assert r.returncode == 2 and "give --data" in r.stderr, r.stderr


def test_a_node_that_stopped_on_a_full_disk_is_said_why_on_the_next_issue(
        files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The node's disk fills under its block writer (LevelDB's own IOError, at the store's write,
    as `test_ordering` simulates it: a mount needs more than the tests may use). The first issue
    is refused with LevelDB's words; the next one met the node's health answering 503, and said
    only "Service Unavailable", where the body says why and what to do (restart once space is
    back). Nothing is issued and no bundle is written either time."""
    import plyvel

    def full(*_: object, **__: object) -> None:
        raise plyvel.IOError(b"IO error: 000008.log: No space left on device")

    data = make_demo(tmp_path / "node-data")
    out = tmp_path / "deg.bin"
    hold = ("--holder-jwk", str(files / "holder.jwk.json"))
    monkeypatch.setattr(Store, "write_block", full)
    with _edu_node(data) as url:
        size = httpx.get(f"{url}/v1/head").json()["log_size"]
        for _ in range(2):
            r = _node_issue(url, files, out, *hold)
            said = " ".join(r.stderr.split())
            assert r.returncode == 1 and "No space left on device" in said, r.stderr
            assert "Traceback" not in r.stderr and not out.exists()
            _assert_no_claim_values(r.stderr)
            for value in DEGREE.values():
                assert value not in r.stderr
        assert "restarted" in said, r.stderr
        assert httpx.get(f"{url}/v1/head").json()["log_size"] == size


def test_a_snapshot_parts_list_names_reach_the_terminal_as_text(tmp_path: Path) -> None:
    """A node's snapshot part names its lists' issuers and types as it likes: a list the
    registry does not hold is left out, and said so, with the escape sequences in its name
    shown rather than acted on (they would clear the official's screen)."""
    from test_audit_since_monitor import _proxy, _stop_serving

    from ledger import codec

    hostile = "\x1b[2J\x1b[Hedu"

    def part(status: int, body: bytes) -> tuple[int, bytes]:
        snap = codec.decode(body)
        snap["status_lists"] = [*snap["status_lists"],
                                {"issuer": hostile, "type": "degree", "token": "x"}]
        return status, codec.encode(snap)

    data = make_demo(tmp_path / "node-data")
    with _edu_node(data) as url:
        proxy = _proxy(url, answers={"/v1/snapshot": part})
        try:
            r = _run("ledger", "snapshot", "--node", proxy, "--out", str(tmp_path / "s"))
        finally:
            _stop_serving(proxy)
    assert r.returncode == 0, r.stderr
    said = " ".join(r.stderr.split())
    assert "left out urn:credledger:" in said and "\x1b" not in r.stderr, repr(r.stderr)
    assert ":status-list:\\x1b[2J\\x1b[Hedu:degree" in said, said


def test_a_node_schema_error_is_said_without_the_values_it_echoes() -> None:
    """FastAPI's 422 names each problem with the input it got; the CLI says where and what,
    never the input (a claim value)."""
    from ledger.cli import _detail

    detail = [{"type": "string_type", "loc": ["body", "claims", "holder_name"],
               "msg": "Input should be a valid string", "input": "Zhou Min-4f1a"}]
    said = _detail(detail)
    assert said == "claims.holder_name: Input should be a valid string"
    assert _detail([{"loc": ["body"], "msg": "x"}] * 7).endswith("; …")
    assert _detail("no\x1bgood") == "no\\x1bgood"


def test_a_snapshot_from_a_running_solo_node(tmp_path: Path) -> None:
    """`ledger snapshot --node` on a solo node (it holds every agency's node key) gives the
    lists `--data` gives once the node stops; a URL that is no node is one clear error."""
    from ledger.offline import load_snapshot

    data = make_demo(tmp_path / "node-data")
    via_node = tmp_path / "node.snapshot"
    with _edu_node(data) as url:
        r = _run("ledger", "snapshot", "--node", url, "--out", str(via_node), "--json")
        assert r.returncode == 0, r.stderr
        assert httpx.get(f"{url}/v1/snapshot").headers["content-type"].startswith(
            "application/msgpack")
        bad = _run("ledger", "snapshot", "--node", f"{url}/nowhere", "--out",
                   str(tmp_path / "x.snapshot"))
        assert bad.returncode == 1 and "gave no snapshot (404)" in bad.stderr, bad.stderr
        assert not (tmp_path / "x.snapshot").exists()
    assert json.loads(r.stdout)["left_out"] == []
    via_data = tmp_path / "data.snapshot"
    r = _run("ledger", "snapshot", "--data", str(data), "--out", str(via_data),
             env={**ENV, "LEDGER_KEY_PASSPHRASE": PASS.decode()})
    assert r.returncode == 0, r.stderr
    a, b = load_snapshot(via_node.read_bytes()), load_snapshot(via_data.read_bytes())
    assert a.tokens and set(a.tokens) == set(b.tokens)
    assert all(a.status_list(u) == b.status_list(u) for u in a.tokens)
    r = _run("ledger", "snapshot", "--out", str(tmp_path / "y.snapshot"))
    assert r.returncode == 2 and "give --data" in r.stderr


def test_the_demo_keeps_its_keys_folder_private(demo: Path) -> None:
    """As `ledger-node init` does: the folder of (encrypted) keys is its owner's alone."""
    assert (demo / "keys").stat().st_mode & 0o777 == 0o700
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in (demo / "keys").iterdir())


def test_the_operator_token_never_follows_a_redirect(files: Path, tmp_path: Path) -> None:
    """A node address that redirects (a proxy, a wrong host) gets one clear error; the
    operator token and the claims never reach where it points (urllib followed redirects
    with every header)."""
    import threading

    heard: list[str] = []

    class Elsewhere(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            heard.append(self.headers.get("Authorization", ""))
            self.send_response(200)
            self.end_headers()

        def do_POST(self) -> None:
            self.do_GET()

        def log_message(self, *_: object) -> None:
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)

    class Redirecting(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(307)
            # where it points, said: escaped and cut (helper round 40M)
            self.send_header("Location", f"http://localhost:{other.server_address[1]}"
                                         f"{self.path}#\x1b[2J" + "A" * 5000)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            self.do_GET()

        def log_message(self, *_: object) -> None:
            pass

    node = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    for server in (other, node):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{node.server_address[1]}"
        r = _node_issue(url, files, tmp_path / "x.bin", "--holder-jwk",
                        str(files / "holder.jwk.json"))
        assert r.returncode == 1 and "redirects (307)" in r.stderr, r.stderr
        r = _run("agency", "approvals", "--node", url,
                 env={**ENV, "LEDGER_OPERATOR_TOKEN": TOKEN})
        assert r.returncode == 1 and "redirects (307)" in r.stderr, r.stderr
        _shows_no_more_than_a_line_of(r.stderr)
        assert f"to 'http://localhost:{other.server_address[1]}/v1/approvals#\\x1b[2J" in (
            " ".join(r.stderr.split())), r.stderr
    finally:
        for server in (other, node):
            server.shutdown()
            server.server_close()
    assert heard == []
    assert not (tmp_path / "x.bin").exists()


def test_approvals_cuts_each_cell_of_a_nodes_words_and_json_keeps_them_whole() -> None:
    """`agency approvals` escaped the node's words but did not cut them: a reason (or service,
    path, height) of a MiB of words was wrapped onto tens of thousands of lines, filling the
    listing. Each cell of the node's words is cut at 40 characters, the rest said as "…";
    --json gives the answer whole (helper round 39W)."""
    from test_audit_since_monitor import _start_serving, _stop_serving

    def words(mark: str, size: int) -> str:
        return f"{mark}{mark} " * (size // 3)

    decisions = [{"approval_tx": "ab" * 32, "height": words("7", 5000),
                  "service": words("s", 5000), "decision": words("d", 5000),
                  "path": words("p", 5000), "reasons": [words("r", 1 << 20), "short"],
                  "credential_id": "cd" * 32},
                 {"approval_tx": "ef" * 32, "damaged": words("x", 5000),
                  "file": words("f", 5000)},
                 # a reason naming its file: cut too (helper round 40M)
                 {"approval_tx": "12" * 32, "damaged": words("y", 5000) + " /f.bin",
                  "file": "/f.bin"}]

    class Node(_AnsweringNode):
        def do_GET(self) -> None:
            self._answer(decisions)

    url = _start_serving(Node)
    env = {**ENV, "LEDGER_OPERATOR_TOKEN": TOKEN, "COLUMNS": "1000"}  # each cell on one line
    try:
        listed = _run("agency", "approvals", "--node", url, env=env)
        whole = _run("agency", "approvals", "--node", url, "--json", env=env)
    finally:
        _stop_serving(url)
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) < 10, len(listed.stdout.splitlines())
    for mark in "7sdprxy":
        assert (words(mark, 5000)[:40] + "…") in listed.stdout, (mark, listed.stdout[:3000])
    assert "abababababababab" in listed.stdout and "cdcdcdcdcdcdcdcd" in listed.stdout
    assert whole.returncode == 0 and json.loads(whole.stdout) == decisions


def test_approvals_shows_a_nodes_words_as_text_not_markup(tmp_path: Path) -> None:
    """``agency approvals`` gave the node's answer to Rich as markup: a reason holding "[/]"
    ended the command in a MarkupError traceback (helper round 20G's note), and "[red]" would
    restyle the table. The words are shown as they are; an answer of another shape is one line
    and exit 1; so is an answer too large (read no further) or nested too deeply."""
    import threading

    answers = [[{"approval_tx": "ab" * 32, "height": 7, "service": "housing[/]",
                 "decision": "approved", "path": "standard",
                 "reasons": ["[bold red]income below[/] limit"]}], [{"height": 7}],
               ["x" * 1024] * (17 << 10), "[" * 100_000 + "]" * 100_000]

    from test_demo_serve import _JsonNode

    class Node(_JsonNode):
        def body(self) -> bytes:
            return (answers[0] if isinstance(answers[0], str) else json.dumps(answers[0])).encode()

    node = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Node)
    threading.Thread(target=node.serve_forever, daemon=True).start()
    env = {**ENV, "LEDGER_OPERATOR_TOKEN": TOKEN}
    try:
        url = f"http://127.0.0.1:{node.server_address[1]}"
        r = _run("agency", "approvals", "--node", url, env=env)
        assert r.returncode == 0, r.stderr
        assert "housing[/]" in r.stdout and "[bold red]income below[/] limit" in r.stdout
        answers.pop(0)
        r = _run("agency", "approvals", "--node", url, env=env)
        assert r.returncode == 1 and "did not answer with a list of decisions" in r.stderr
        assert "Traceback" not in r.stderr, r.stderr
        for said in ("answered more than 16 MiB", "nested too deeply"):  # read no further
            answers.pop(0)
            r = _run("agency", "approvals", "--node", url, env=env)
            assert r.returncode == 1 and said in r.stderr, r.stderr
            assert "Traceback" not in r.stderr, r.stderr
    finally:
        node.shutdown()
        node.server_close()


def test_hex_ids_are_taken_in_capitals(tmp_path: Path) -> None:
    """Every command that takes a hex id takes it in either case, as `agency status
    --credential-id` does: `approvals --explain` and `credit --withdraw` refused an id copied
    in capitals (helper round 38D)."""

    from test_audit_since_monitor import _start_serving, _stop_serving

    txid = "ab12" * 16
    asked: list[str] = []
    posted: list[dict[str, Any]] = []

    class Node(_AnsweringNode):
        def do_GET(self) -> None:
            asked.append(self.path)
            self._answer([{"approval_tx": txid}] if self.path == "/v1/approvals" else
                         {"explained": True})

        def do_POST(self) -> None:
            posted.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self._answer({"txid": txid, "height": 7})

    subject = tmp_path / "subject.txt"
    subject.write_text("110101199003070000\n")
    op = {**ENV, "LEDGER_OPERATOR_TOKEN": TOKEN}
    url = _start_serving(Node)
    try:
        for given in (txid.upper(), txid[:12].upper()):
            r = _run("agency", "approvals", "--node", url, "--explain", given, env=op)
            assert r.returncode == 0 and json.loads(r.stdout) == {"explained": True}, r.stderr
            assert asked[-1] == f"/v1/approvals/{txid}/explain", asked
        r = _run("agency", "credit", "--node", url, "--reason", "appeal-upheld", "--withdraw",
                 txid.upper(), "--subject-file", str(subject), env=op)
    finally:
        _stop_serving(url)
    assert r.returncode == 0, r.stderr
    assert [p["withdraws"] for p in posted] == [txid], posted


def test_each_hex_id_option_takes_its_count_of_digits_alone(tmp_path: Path) -> None:
    """`_hex_id`'s bounds for each option that takes a hex id (helper round 39M: a digit fewer
    than an option's shortest, and 65, were taken by no test): one digit short of the
    shortest, one past 64 and a letter past f are refused, exit 2, before any node or store
    is asked (the node's URL answers nothing)."""
    from typer.testing import CliRunner

    from ledger.cli import agency_app, ledger_app

    nowhere = "http://127.0.0.1:9"  # the discard port: any request would fail otherwise
    options = (
        (agency_app, ["status", "--data", str(tmp_path), "--agency", "civil", "--set",
                      "revoked", "--node", nowhere, "--credential-id"], 16,
         "--credential-id must be 64 hex digits"),
        (agency_app, ["approvals", "--node", nowhere, "--explain"], 8,
         "--explain takes an approval transaction id"),
        (agency_app, ["credit", "--node", nowhere, "--reason", "appeal-upheld", "--withdraw"],
         64, "--withdraw takes a 64-hex-digit"),
        (ledger_app, ["audit", str(tmp_path), "--genesis"], 64, "--genesis is a block hash"))
    env = {"LEDGER_OPERATOR_TOKEN": TOKEN, "COLUMNS": "200"}
    for app, args, shortest, said in options:
        for bad in ("a" * (shortest - 1), "a" * 65, "a" * (shortest - 1) + "g"):
            r = CliRunner().invoke(app, [*args, bad], env=env)
            assert r.exit_code == 2 and said in " ".join(r.output.split()), (args, bad, r.output)
        assert not list(tmp_path.iterdir())


def test_a_full_credential_id_for_another_agencys_node_is_refused_before_signing(
        demo: Path) -> None:
    """`agency status --node` with all 64 digits of an id checked only a start against the
    node's agency: a change sent to another agency's node was signed after the passphrase, then
    refused by the ledger. Refused now before the passphrase, naming whose node it is, nothing
    signed nor sent (helper round 38D)."""

    from test_audit_since_monitor import _start_serving, _stop_serving

    posted: list[str] = []

    class Node(_AnsweringNode):
        def do_GET(self) -> None:
            self._answer({"network": "demo", "agency": "edu"})

        def do_POST(self) -> None:
            posted.append(self.path)
            self._answer({})

    url = _start_serving(Node)
    try:
        r = _run("agency", "status", "--node", url, "--data", str(demo), "--agency", "civil",
                 "--credential-id", "00" * 32, "--set", "revoked")
        # before the passphrase: none given, none asked (round 39M: the test gave one, so a
        # check after the key was opened passed it too)
        bare = _run("agency", "status", "--node", url, "--data", str(demo), "--agency", "civil",
                    "--credential-id", "00" * 32, "--set", "revoked",
                    env={k: v for k, v in ENV.items() if not k.startswith("LEDGER_")})
    finally:
        _stop_serving(url)
    for done in (r, bare):
        assert done.returncode == 2, done.stderr
        assert f"{url} is 'edu''s node, not 'civil''s" in done.stderr, done.stderr
        assert "assphrase" not in done.stderr, done.stderr
    assert not posted, posted


_MISLEADING = "\x1b[2J\x1b[H[green]ok[/green]\n  txid: ok\u202e" + "A" * (1 << 20)
"""A node's words meant to mislead the operator, a MiB long: a cleared screen, Rich markup, a
faked second line, a right-to-left override."""


def _shows_no_more_than_a_line_of(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr[-2000:]
    assert "\x1b" not in stderr and "\u202e" not in stderr, repr(stderr[:300])
    assert "A" * 400 not in stderr, f"{len(stderr)} characters: {stderr[:300]!r}"
    assert len(stderr) < 1000, f"{len(stderr)} characters: {stderr[:300]!r}"


def test_a_nodes_answer_that_is_no_receipt_is_cut_in_the_error_line(demo: Path,
                                                                     tmp_path: Path) -> None:
    """A node's answer to a submitted transaction or credit event that is no receipt, and its
    refusal's words, were printed whole on the error line: a MiB of a hostile node's text on
    the operator's terminal. They are cut and quoted; the exit is 1, no traceback (helper
    round 39O)."""


    refused = _MISLEADING[:30000]  # a refusal's first 64 KiB are read
    for status, answer in ((200, [_MISLEADING]), (200, {"txid": _MISLEADING}),
                           (500, {"detail": refused}), (503, {"problem": refused}),
                           # its wait ended first: said as not committed yet, its txid cut
                           # (helper round 40M: held by no test)
                           (202, {"txid": _MISLEADING, "status": "pending"}),
                           (500, {"code": refused, "detail": "no"})):  # a code: no number

        class Node(_AnsweringNode):
            said = (status, answer)

            def do_GET(self) -> None:
                self._answer({"network": "demo", "agency": "civil"})

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["content-length"]))
                body = json.dumps(self.said[1]).encode()
                self.send_response(self.said[0])
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        for run, r in enumerate(_status_and_credit_through(Node, demo, tmp_path)):
            assert r.returncode == 1, (status, r.returncode, r.stderr[:300])
            _shows_no_more_than_a_line_of(r.stderr)
            pending = "but has not committed it yet (pending, txid" in " ".join(r.stderr.split())
            assert pending is (status == 202), r.stderr  # each command's (helper round 42L)
            if status == 202 and run == 0:  # the txid it signed said, not the node's words
                assert "[green]ok" not in r.stderr, r.stderr
                continue
            # the start of what was said, as text: no markup taken, its escapes shown
            assert "[green]ok" in r.stderr and "[2J" in r.stderr, r.stderr
            if status in (200, 202):  # no receipt: 40 characters of it (a txid 64)
                assert "A" * 40 not in r.stderr, r.stderr


def _given_up_on_after_1_s(url: str, capsys: pytest.CaptureFixture[str],
                           tmp_path: Path) -> None:
    """`agency …` (``_http``), `ledger monitor` (``_get``) and `ledger snapshot --node` each
    give up on the node at ``url`` after the 1 s the test set as their bound, saying so,
    with nothing written in ``tmp_path``."""
    import typer

    from ledger import cli

    with pytest.raises(typer.Exit) as ended:
        cli._http(url + "/v1/approvals")
    assert ended.value.exit_code == 1
    said = capsys.readouterr().err
    assert f"the node at {url}/v1/approvals was still answering after 1 s" in said, said
    assert "cannot reach" not in said, said  # it answered: too slowly (helper round 40M)
    with pytest.raises(cli._MonitorUnreachable, match="still answering after 1 s"):
        cli._get(url + "/v1/health")
    with pytest.raises(typer.Exit) as ended:
        cli._snapshot_from_nodes([url], None, tmp_path / "never.snap", False, False)
    assert ended.value.exit_code == 1
    said = capsys.readouterr().err
    assert f"the node at {url}/v1/snapshot was still answering after 1 s" in said, said
    assert "cannot reach" not in said, said
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("head", "drop", "tail"), [
    (b"HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n[0", b",0", b"]"),
    (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-slow: ", b"a",
     b"\r\ncontent-length: 2\r\nconnection: close\r\n\r\n[]"),
    # nothing at all for 5 s, then a whole answer: each read's own timeout (60 s) is cut to
    # the time left (helper round 40M: a read waiting its whole timeout passed every test)
    # (its length given: read whole at once, no read after it sees the bound passed)
    (b"", b"", b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n[]")],
    ids=["body", "headers", "silent"])
def test_a_node_that_drips_its_answer_is_given_up_on(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        head: bytes, drop: bytes, tail: bytes) -> None:
    """A node that sends its answer a byte at a time, each before the socket's 60 s timeout,
    held every command that asks a node (`agency …`, `ledger snapshot --node`, `ledger
    monitor`) for as long as it liked: 16 MiB at a byte a second is half a year. Each answer
    now has a deadline in all, and the line past it says so and names the node (helper
    round 39O); the deadline started at the body, so a node dripping its status line and
    headers held them still (100 header lines of 64 KiB): it runs from the request sent
    (helper round 39W)."""
    import threading

    from test_audit_since_monitor import _start_serving, _stop_serving

    from ledger import cli

    stop = threading.Event()

    class Dripping(_AnsweringNode):
        def do_GET(self) -> None:
            self.wfile.write(head)
            if not _drip(self.wfile, [drop] * 100, stop):  # 5 s or more, a few bytes now and then
                return
            self.wfile.write(tail)

    monkeypatch.setattr(cli, "NODE_ANSWER_WAIT", 1.0)  # not 120 s: a test's
    url = _start_serving(Dripping)
    try:
        _given_up_on_after_1_s(url, capsys, tmp_path)
    finally:
        stop.set()
        _stop_serving(url)


def _said_by_agency_and_monitor(node: type[http.server.BaseHTTPRequestHandler], path: str,
                                capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    """What `agency …` (``_http``, which exits 1) and `ledger monitor` (``_get`` at ``path``,
    which refuses) say of a made-up ``node``, each on one line."""
    import typer
    from test_audit_since_monitor import _start_serving, _stop_serving

    from ledger import cli

    url = _start_serving(node)
    try:
        with pytest.raises(typer.Exit):
            cli._http(url + "/v1/approvals")
        said = capsys.readouterr().err
        with pytest.raises(cli._MonitorUnreachable) as monitored:
            cli._get(url + path)
    finally:
        _stop_serving(url)
    return " ".join(said.split()), str(monitored.value)


def test_a_redirect_without_a_location_is_said_to_point_nowhere(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A node's redirect with no Location header was said to point "to null" (`agency …`,
    `ledger monitor`): JSON's word for the header missing. It says there is none (helper
    round 40H)."""

    class Nowhere(_AnsweringNode):
        def do_GET(self) -> None:
            self._send(b"", status=302)

    for line in _said_by_agency_and_monitor(Nowhere, "/v1/health", capsys):
        assert "redirects (302) with no Location" in line and "null" not in line, line


@pytest.mark.parametrize("encoding", [None, "gzip"])
def test_a_node_answering_what_is_not_json_is_said_to_have_answered(
        capsys: pytest.CaptureFixture[str], encoding: str | None) -> None:
    """A node answering an HTML page (or a compressed body, which nothing here asks for or
    opens) was said to be one the command "cannot reach", with the JSON parser's words: it
    was reached, and its answer is not JSON; its start is said, cut (helper round 40H)."""
    import gzip

    import typer
    from test_audit_since_monitor import _start_serving, _stop_serving

    from ledger import cli

    page = b"<html>\x1b[2J" + b"A" * 5000 + b"</html>"

    class Page(_AnsweringNode):
        def do_GET(self) -> None:
            body = page if encoding is None else gzip.compress(page)
            self.send_response(200)
            if encoding is not None:
                self.send_header("content-encoding", encoding)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    url = _start_serving(Page)
    try:
        with pytest.raises(typer.Exit) as ended:
            cli._http(url + "/v1/approvals")
    finally:
        _stop_serving(url)
    said = " ".join(capsys.readouterr().err.split())
    assert ended.value.exit_code == 1
    assert f"the node at {url}/v1/approvals answered with something that is not JSON" in said
    assert "cannot reach" not in said and "\x1b" not in said and "A" * 400 not in said, said


def test_a_read_timeout_within_the_bound_is_a_timeout_not_the_bound(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Past the bound, a node is said to be "still answering"; a read that times out on its
    own timeout before the bound is a timeout (the monitor counts it as a round with no
    answer), and a bound that passed between two reads is the bound, not the socket's
    "Timeout value out of range" (helper round 40M: neither was held by a test)."""
    import threading
    import urllib.request

    import typer
    from test_audit_since_monitor import _start_serving, _stop_serving

    from ledger import cli

    stop = threading.Event()

    class Silent(_AnsweringNode):
        def do_GET(self) -> None:
            if self.path == "/v1/approvals":  # answers at once
                self._answer([])
            else:
                stop.wait(30)

    url = _start_serving(Silent)
    try:
        with pytest.raises(TimeoutError) as timed_out:
            cli._NO_REDIRECTS.open(urllib.request.Request(url + "/v1/health"), timeout=0.2)
        assert not isinstance(timed_out.value, cli._NodeTooSlow), timed_out.value
        monkeypatch.setattr(cli, "NODE_ANSWER_WAIT", 0.0)  # passed before the first read
        with pytest.raises(typer.Exit):
            cli._http(url + "/v1/approvals")
    finally:
        stop.set()
        _stop_serving(url)
    said = capsys.readouterr().err
    assert f"the node at {url}/v1/approvals was still answering after 0 s" in said, said


@pytest.mark.parametrize("body", [b"{" + b" " * 100, b'{"detail": "cut'], ids=["drips", "cut"])
def test_a_refusal_whose_words_drip_or_end_short_is_said_without_them(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        body: bytes) -> None:
    """A node refusing (503) and then dripping its words past the bound, or ending them
    before the length it gave: `agency …` and `ledger snapshot --node` say the refusal
    without its words, `ledger monitor` says what was wrong with the halted node's health; no
    traceback, nothing written (helper round 40M: the bound and the cut answer were tested
    on answers that were no refusal; a connection left open, unread, was a ResourceWarning
    in the next test)."""
    import threading

    import typer
    from test_audit_since_monitor import _start_serving, _stop_serving

    from ledger import cli

    stop = threading.Event()

    class Refusing(_AnsweringNode):
        def do_GET(self) -> None:
            self.send_response(503, "Busy " + "A" * 5000)  # its words: cut
            self.send_header("content-type", "application/json")
            self.send_header("content-length", "1000")
            self.end_headers()
            for byte in body:  # a byte each 50 ms: 5 s of them
                if stop.wait(0.05 if len(body) > 20 else 0):
                    return
                try:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                except OSError:
                    return

    monkeypatch.setattr(cli, "NODE_ANSWER_WAIT", 1.0)  # not 120 s: a test's
    url = _start_serving(Refusing)
    try:
        with pytest.raises(typer.Exit) as ended:
            cli._http(url + "/v1/approvals")
        assert ended.value.exit_code == 1
        said = capsys.readouterr().err
        assert "the node could not do it (503): Busy" in " ".join(said.split()), said
        with pytest.raises(cli._MonitorUnreachable) as unusable:
            cli._get(url + "/v1/health")
        assert unusable.value.reached, unusable.value
        assert ("still answering after 1 s" if len(body) > 20 else
                "gave no HTTP answer (IncompleteRead") in str(unusable.value), unusable.value
        with pytest.raises(cli._MonitorUnreachable) as refused:  # not its health: unread
            cli._get(url + "/v1/registry")
        assert "HTTP Error 503: Busy AAA" in str(refused.value), refused.value
        assert "A" * 400 not in str(refused.value), len(str(refused.value))
        with pytest.raises(typer.Exit) as ended:
            cli._snapshot_from_nodes([url], None, tmp_path / "never.snap", False, False)
        assert ended.value.exit_code == 1
        said = capsys.readouterr().err
        assert f"{url} gave no snapshot (503): Busy" in " ".join(said.split()), said
    finally:
        stop.set()
        _stop_serving(url)
    assert list(tmp_path.iterdir()) == []


def test_an_answer_ending_at_the_limit_is_read_on_past_it() -> None:
    """`_read_within` reads one byte past its limit, so that a caller refuses an answer over
    it: an answer whose first part ends at the limit exactly, the rest coming later, was not
    to be taken whole, cut there (helper round 40M: a loop ending at the limit passed every
    test, which sent more than the limit at once)."""
    import threading
    import urllib.request

    from test_audit_since_monitor import _start_serving, _stop_serving

    from ledger import cli

    stop = threading.Event()

    class InTwo(_AnsweringNode):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-length", "8")
            self.end_headers()
            self.wfile.write(b"1234")
            self.wfile.flush()
            stop.wait(0.3)
            self.wfile.write(b"5678")

    url = _start_serving(InTwo)
    try:
        with cli._NO_REDIRECTS.open(urllib.request.Request(url), timeout=60) as resp:
            assert cli._read_within(resp, 4) == b"12345"
    finally:
        stop.set()
        _stop_serving(url)


def test_an_issuance_through_a_node_says_the_bundles_own_ids(demo: Path, files: Path,
                                                            tmp_path: Path) -> None:
    """`agency issue --node` said (and gave with --json) the credential id and transaction id
    the node's answer named beside the bundle, unchecked: a node naming another credential's
    id (or an escape sequence) had the operator revoke the wrong one later. The ids are the
    bundle's own; a node's answer naming others is refused, nothing written (helper round
    39O); so is one naming none, which was a KeyError traceback (helper round 39W)."""

    from test_audit_since_monitor import _start_serving, _stop_serving

    first = tmp_path / "first.bin"
    assert _issue(demo, files, first).returncode == 0
    raw = first.read_bytes()
    anchor = Tx.from_bytes(Bundle.from_bytes(raw).anchor)
    cid, txid = anchor.body["credential_id"].hex(), anchor.txid.hex()
    bundle = base64.urlsafe_b64encode(raw).decode()
    receipt = {"txid": txid, "index": 3, "height": 3}
    for named, said, written in (
            ({"credential_id": cid, "receipt": receipt}, cid, True),
            ({"credential_id": "ab" * 32, "receipt": receipt}, None, False),
            ({"credential_id": cid, "receipt": {**receipt, "txid": "\x1b[2J" + "A" * 900}},
             None, False),
            # naming none beside it: a KeyError traceback (helper round 39W)
            ({"receipt": receipt}, None, False),
            ({"credential_id": cid, "receipt": {"index": 3, "height": 3}}, None, False)):

        class Node(_AnsweringNode):
            answer = named

            def do_GET(self) -> None:
                self._answer({"network": "demo", "agency": "civil"})

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["content-length"]))
                self._answer({"bundle": bundle, **self.answer})

        out = tmp_path / "from-node.bin"
        url = _start_serving(Node)
        try:
            r = _run("agency", "issue", "--node", url, "--agency", "civil", "--type",
                     "residence", "--claims", str(files / "claims.json"), "--holder-jwk",
                     str(files / "holder.jwk.json"), "--out", str(out), "--json",
                     env={**ENV, "LEDGER_OPERATOR_TOKEN": TOKEN})
        finally:
            _stop_serving(url)
        if said is not None:
            assert r.returncode == 0, r.stderr
            got = json.loads(r.stdout)
            got = got[0] if isinstance(got, list) else got
            assert (got["credential_id"], got["txid"]) == (cid, txid), got
        else:
            assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
            _shows_no_more_than_a_line_of(r.stderr)
            assert "not the bundle's" in r.stderr, r.stderr
            # what to do: the bundle's credential may be on the ledger all the same, its holder
            # without it (no hint before helper round 40H)
            line = " ".join(r.stderr.split())
            assert (f"agency status --data DATA --agency civil --node {url} --credential-id "
                    f"{cid} --set revoked" in line), line
        assert out.exists() is written
        out.unlink(missing_ok=True)


def test_an_answer_that_is_not_http_is_one_line(tmp_path: Path) -> None:
    """A "node" whose answer is not HTTP (a status line of an escape sequence and 60,000
    characters) or ends before the length it gave ended `agency …`, `ledger monitor` and
    `ledger snapshot --node` in a traceback (http.client's exceptions are neither OSError nor
    URLError), its escape sequence sent to the terminal. It is one line, cut, and the
    command's exit code for a node it cannot use (helper round 39O)."""

    from test_audit_since_monitor import _start_serving, _stop_serving

    class NotHttp(_AnsweringNode):
        def do_GET(self) -> None:
            # one status line (a "\n" after "ok" ended it there: helper round 40M)
            self.wfile.write(b"\x1b[2J ok " + b"A" * 60000 + b"\r\n\r\n")

    class CutShort(_AnsweringNode):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", "1000")
            self.end_headers()
            self.wfile.write(b'{"network": ')

    snap = tmp_path / "never.snap"
    op = {**ENV, "LEDGER_OPERATOR_TOKEN": TOKEN}
    for handler in (NotHttp, CutShort):
        url = _start_serving(handler)
        try:
            for args, code in ((("agency", "approvals", "--node", url), 1),
                               (("ledger", "monitor", url, "--once"), 2),
                               (("ledger", "snapshot", "--node", url, "--out", str(snap)), 1)):
                r = _run(*args, env=op)
                assert r.returncode == code, (handler.__name__, args, r.stderr[-3000:])
                _shows_no_more_than_a_line_of(r.stderr)
                assert url in r.stderr, r.stderr
        finally:
            _stop_serving(url)
    assert not snap.exists()


def test_the_agency_a_node_names_is_cut_where_it_is_not_the_one_given(files: Path,
                                                                      tmp_path: Path) -> None:
    """`agency issue --node` said the agency a node's health names, when not the one given,
    whole: a MiB of a hostile node's text on the line. It is cut, as `agency status` cuts it
    (helper round 39O)."""

    from test_audit_since_monitor import _start_serving, _stop_serving

    class Node(_AnsweringNode):
        def do_GET(self) -> None:
            self._answer({"network": "demo", "agency": _MISLEADING})

    url = _start_serving(Node)
    try:
        r = _node_issue(url, files, tmp_path / "x.bin", "--holder-jwk",
                        str(files / "holder.jwk.json"))
    finally:
        _stop_serving(url)
    assert r.returncode == 2, r.stderr[-2000:]
    _shows_no_more_than_a_line_of(r.stderr)
    assert "[green]ok" in r.stderr and not (tmp_path / "x.bin").exists()


def _status_and_credit_through(node: type[_AnsweringNode], demo: Path, tmp_path: Path
                               ) -> list[subprocess.CompletedProcess[str]]:
    """`agency status --node` (a revocation) and `agency credit --withdraw` sent to a made-up
    node answering with ``node``: both runs."""
    from test_audit_since_monitor import _start_serving, _stop_serving

    subject = tmp_path / "subject.txt"
    subject.write_text("110101199003070000\n")
    url = _start_serving(node)
    try:
        return [_run("agency", "status", "--node", url, "--data", str(demo), "--agency",
                     "civil", "--credential-id", "00" * 32, "--set", "revoked",
                     "--reason", "withdrawn"),
                _run("agency", "credit", "--node", url, "--reason", "appeal-upheld",
                     "--withdraw", "ab" * 32, "--subject-file", str(subject),
                     env={**ENV, "LEDGER_OPERATOR_TOKEN": TOKEN})]
    finally:
        _stop_serving(url)


def test_a_receipts_fields_are_cut_where_they_are_shown(demo: Path, tmp_path: Path) -> None:
    """The fields of a node's receipt (`agency status --node`, `agency credit`) were shown
    whole, escaped: a txid of a MiB filled the operator's terminal. Each is cut (helper round
    39O)."""


    class Node(_AnsweringNode):
        def do_GET(self) -> None:
            self._answer({"network": "demo", "agency": "civil"})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            self._answer({"txid": _MISLEADING, "index": _MISLEADING, "height": _MISLEADING})

    for r in _status_and_credit_through(Node, demo, tmp_path):
        assert r.returncode == 0, r.stderr[-2000:]
        assert "\x1b" not in r.stdout and "A" * 400 not in r.stdout, r.stdout[:500]
        assert len(r.stdout) < 1000 and "[green]ok" in r.stdout, r.stdout[:500]


def test_every_agency_command_says_an_accepted_pending_answer_as_one(demo: Path, files: Path,
                                                                   tmp_path: Path) -> None:
    """A node's 202 (it took the request; its wait ended before the commit) was "not a
    receipt" to `agency credit` and "not a bundle" to `agency issue --node`, where `agency
    status --node` said it pending. Each says the same true thing now: accepted, not
    committed yet, and where to see later whether it was; exit 1 as `agency status` (helper
    round 42L)."""

    from test_audit_since_monitor import _start_serving, _stop_serving

    node_txid = "cd" * 32

    class Node(_AnsweringNode):
        def do_GET(self) -> None:
            self._answer({"network": "demo", "agency": "civil"})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            body = json.dumps({"txid": node_txid, "status": "pending",
                               "receipt": f"/v1/tx/{node_txid}/receipt"}).encode()
            self._send(body, "application/json", 202)

    runs = _status_and_credit_through(Node, demo, tmp_path)
    url = _start_serving(Node)
    try:
        runs.append(_run("agency", "issue", "--node", url, "--agency", "civil", "--type",
                         "residence", "--claims", str(files / "claims.json"), "--holder-jwk",
                         str(files / "holder.jwk.json"), "--out", str(tmp_path / "b.bin"),
                         env={**ENV, "LEDGER_OPERATOR_TOKEN": TOKEN}))
    finally:
        _stop_serving(url)
    assert not (tmp_path / "b.bin").exists()
    for r, what in zip(runs, ("status change", "credit withdrawal", "credential"), strict=True):
        line = " ".join(r.stderr.split())
        assert r.returncode == 1, (what, r.returncode, line)
        assert "not a receipt" not in line and "not a bundle" not in line, line
        assert f"accepted the {what} but has not committed it yet (pending" in line, line
        # where to look: the receipt of the transaction (status: the one this side signed)
        found = re.search(r"GET (\S+)/v1/tx/([0-9a-f]{64})/receipt", line)
        assert found is not None and line.startswith(f"the node at {found[1]} "), line
        assert (found[2] == node_txid) is (what != "status change"), line
        assert "before sending it again" in line, line


@pytest.mark.parametrize(("answer", "cause"), [
    (b"HTTP/1.1 200 " + b"O" * 70000 + b"\r\n\r\n", "when reading status line"),
    (b"HTTP/1.1 200 OK\r\nx-long: " + b"a" * 70000 + b"\r\n\r\n", "when reading header line"),
    # a length of 200 digits: the text is longer than any limit, its end still said
    (b"HTTP/1.1 200 OK\r\ncontent-length: " + b"9" * 200 + b"\r\n\r\n[]",
     "more expected)")], ids=["status", "header", "short"])
def test_an_answer_that_is_not_http_is_said_with_its_cause(
        capsys: pytest.CaptureFixture[str], answer: bytes, cause: str) -> None:
    """"gave no HTTP answer" cut the error's text at 40 characters: "got more than 65536 bytes
    when reading h…" dropped which line was too long, and an IncompleteRead its "expected".
    The text is said whole up to 100 characters, and beyond that by its start and its end,
    cut at words (helper round 42L); `agency …` and `ledger monitor` alike."""


    class Raw(_AnsweringNode):
        def do_GET(self) -> None:
            self.wfile.write(answer)
            self.wfile.flush()
            self.close_connection = True

    for line in _said_by_agency_and_monitor(Raw, "/v1/registry", capsys):
        assert "gave no HTTP answer" in line and cause in line, line
        assert "O" * 200 not in line and "a" * 200 not in line and "9" * 200 not in line, line


@pytest.mark.parametrize("way", ["closed", "could-not", "refused", "slow", "not-http"])
def test_a_request_sent_whose_answer_is_lost_is_not_said_as_unreached(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, way: str) -> None:
    """A node that read the whole request and then closed without an answer was one the
    command "cannot reach", and a node that could not do it (503: a commit not seen within its
    wait) one that "refused it": the operator sent it again, where it may have been done. A
    request sent and its answer lost is said as such, with what to do first; a GET as an
    answer that did not come whole; a 4xx stays a refusal (helper round 42L's list). An
    answer given up on past the bound, or one that is not HTTP, after a POST "may have been
    done" too: mutants dropping those words passed (round 43M)."""
    import threading

    import typer
    from test_audit_since_monitor import _start_serving, _stop_serving

    from ledger import cli

    stop = threading.Event()

    class Node(_AnsweringNode):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            if way == "closed":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if way == "slow":  # its headers, then its body a byte now and then
                self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-length: 200\r\n\r\n")
                _drip(self.wfile, [b" "] * 200, stop)  # 10 s or more
                return
            if way == "not-http":
                self.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
                self.close_connection = True
                return
            body = json.dumps({"detail": "not committed within 30 s; it may commit yet"
                               if way == "could-not" else "revoked already"}).encode()
            self._send(body, "application/json", 503 if way == "could-not" else 409)

        def do_GET(self) -> None:  # closed without an answer
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    monkeypatch.setattr(cli, "NODE_ANSWER_WAIT", 1.0)  # not 120 s: a test's
    url = _start_serving(Node)
    try:
        with pytest.raises(typer.Exit):
            cli._http(url + "/v1/head")
        said = " ".join(capsys.readouterr().err.split())
        assert f"the node at {url}/v1/head gave no whole answer" in said, said
        assert "may have been done" not in said, said
        with pytest.raises(typer.Exit) as ended:
            cli._http(url + "/v1/credentials", b"{}", "application/json")
        assert ended.value.exit_code == 1
        said = " ".join(capsys.readouterr().err.split())
        if way == "closed":
            assert "cannot reach" not in said, said
            assert f"the node at {url}/v1/credentials was sent the request" in said, said
            assert "may have been done: look before sending it again" in said, said
        elif way == "could-not":
            assert "refused" not in said, said
            assert "the node could not do it (503): not committed within 30 s" in said, said
            assert "may have been done: look before sending it again" in said, said
        elif way == "slow":
            assert f"the node at {url}/v1/credentials was still answering after 1 s" in said, said
            assert "may have been done: look before sending it again" in said, said
        elif way == "not-http":
            assert "cannot reach" not in said and "gave no HTTP answer" in said, said
            assert "may have been done: look before sending it again" in said, said
        else:
            assert "the node refused it (409): revoked already" in said, said
            assert "may have been done" not in said, said
    finally:
        stop.set()
        _stop_serving(url)


def test_a_503_that_says_when_to_come_back_is_a_refusal_not_maybe_done(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A node refuses a submission before it takes anything with a 503 and ``Retry-After``
    (etcd's NOSPACE alarm, a node cut off from etcd, a busy node: ``node.app``'s handler). The
    command said "could not do it … the request was sent and may have been done: look before
    sending it again" over the node's own "Nothing was taken … send it again" (helper round
    42V). Such a 503 is a refusal for now, with when to send it again; a 503 without
    ``Retry-After`` (a commit not seen within its wait) stays "may have been done"."""
    import typer
    from test_audit_since_monitor import _start_serving, _stop_serving

    from ledger import cli

    class Node(_AnsweringNode):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            body = json.dumps({"detail": "etcd's NOSPACE alarm is raised: this node takes no "
                                         "submissions meanwhile", "error": "NoSpace"}).encode()
            self._send(body, "application/json", 503, {"Retry-After": "30"})

    url = _start_serving(Node)
    try:
        with pytest.raises(typer.Exit) as ended:
            cli._http(url + "/v1/credentials", b"{}", "application/json")
        assert ended.value.exit_code == 1
        said = " ".join(capsys.readouterr().err.split())
        assert "may have been done" not in said and "could not do it" not in said, said
        assert ("the node refused it for now (503): etcd's NOSPACE alarm is raised" in said
                and "nothing was taken; send it again in 30 s or later" in said), said
    finally:
        _stop_serving(url)


def test_a_node_that_knows_it_took_nothing_says_so_and_the_command_says_send_it_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A real solo node whose disk fills under its block writer (LevelDB's IOError at the
    store's write, as the full-disk test above): the first issue failed at the writer (the
    block may be on disk: not known), so its 503 has no ``taken`` and the command says "may
    have been done"; the next one is refused by a stopped orderer before anything is queued:
    ``"taken": false``, and the command says "nothing was taken; send it again" where it said
    "look before sending it again" (helper round 43T, ADR 84)."""
    import plyvel
    import typer

    from ledger import cli

    def full(*_: object, **__: object) -> None:
        raise plyvel.IOError(b"IO error: 000008.log: No space left on device")

    data = make_demo(tmp_path / "node-data")
    holder = sdjwt.jwk_from_ed25519(HOLDER.public.raw)
    body = json.dumps({"type": "degree", "claims": DEGREE, "holder_jwk": holder}).encode()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    monkeypatch.setattr(Store, "write_block", full)
    with _edu_node(data) as url:
        size = httpx.get(f"{url}/v1/head").json()["log_size"]
        for n in range(2):
            with pytest.raises(typer.Exit) as ended:
                cli._http(url + "/v1/credentials", body, "application/json", auth)
            assert ended.value.exit_code == 1
            said = " ".join(capsys.readouterr().err.split())
            if n == 0:
                assert "the node could not do it (503): " in said, said
                assert "may have been done: look before sending it again" in said, said
                assert "nothing was taken" not in said, said
            else:
                assert "the node refused it (503): orderer is stopped" in said, said
                assert said.endswith("nothing was taken; send it again"), said
                assert "may have been done" not in said and "could not do it" not in said
        got = httpx.post(f"{url}/v1/credentials", content=body, headers={
            **auth, "Content-Type": "application/json"})
        assert got.status_code == 503 and got.json()["taken"] is False, got.text
        assert got.json()["error"] == "OrderingError", got.text
        assert httpx.get(f"{url}/v1/head").json()["log_size"] == size


def test_issue_of_several_copies_refused_untaken_says_which_were_written_and_what_to_send(
        files: Path, tmp_path: Path) -> None:
    """`agency issue --node` with three holder keys, the second copy refused with ``"taken":
    false`` (a real solo node: every node key it holds rotated out once the first copy's
    block is written, so it is short of checkpoint keys and refuses the issue before queueing
    it). It said "nothing was taken; send it again; the 1 bundle(s) before it were written":
    sent again as it was, the first copy is issued twice (two credentials, one holder key,
    and its file refused as existing or replaced with --force). It says which copies were
    written and need not be sent again, and which holder keys to send again (ADR 84's Left,
    44T)."""
    from ledger.keys import load_private_key
    from ledger.network import Agency, governance_tx
    from node.service import Node

    data = make_demo(tmp_path / "node-data")
    keys = {a: load_private_key(data / "keys" / f"{a}.issuer.key", PASS)
            for a in ("edu", "civil", "market")}
    box: list[Node] = []
    first_issued: list[int] = []

    def clock() -> int:  # two minutes on once the first copy's block is written
        head = box[0].store.head if box else None
        if first_issued and head is not None and head.height > first_issued[0]:
            return NOW + 120
        return NOW

    node = Node(data, "edu", PASS, clock=clock, workers=0)
    box.append(node)
    holders = []
    for n in (2, 3):
        key = PrivateKey(hashlib.sha256(b"agency-cli-holder-%d" % n).digest())
        holders.append(files / f"copies-holder{n}.jwk.json")
        holders[-1].write_text(json.dumps(sdjwt.jwk_from_ed25519(key.public.raw)))
    try:
        signers = [Agency(a, a, k, k) for a, k in keys.items()]
        for who in ("edu", "civil", "market"):
            node.orderer.submit(governance_tx(
                node.network, node._registry().gov_seq + 1, "rotate_key", {
                    "agency": who, "role": "node", "new_key": PrivateKey.generate().public.raw,
                    "at": NOW + 60}, signers)).result(timeout=30)
        head = node.store.head
        assert head is not None
        first_issued.append(head.height)
        app = create_app(settings_for(data), node=node, clock=clock, passphrase=PASS)
        with serve(app) as url:
            r = _node_issue(url, files, tmp_path / "deg.bin", "--holder-jwk",
                            str(files / "holder.jwk.json"), "--holder-jwk", str(holders[0]),
                            "--holder-jwk", str(holders[1]))
        said = " ".join(r.stderr.split())
        assert r.returncode == 1, said
        assert "the node refused it (503): " in said and "nothing was issued" in said, said
        assert "nothing was taken" in said, said
        written = tmp_path / "deg-1.bin"
        assert written.exists() and not (tmp_path / "deg-2.bin").exists()
        cid = Tx.from_bytes(Bundle.from_bytes(written.read_bytes()).anchor).body[
            "credential_id"].hex()
        assert f"copy 1 was written ({written}: credential {cid}) and need not be sent again" \
            in said, said
        assert f"send again copies 2 to 3 only: --holder-jwk {holders[0]} --holder-jwk " \
            f"{holders[1]}, with another --out" in said, said
        assert "the 1 bundle(s) before it were written" not in said, said
    finally:
        node.close()


def test_a_node_refusal_is_said_taken_only_by_the_json_false(
        files: Path, tmp_path: Path) -> None:
    """`agency issue --node` against a made-up node refusing the issue with a 503: only a JSON
    body whose ``taken`` is the JSON ``false`` is said "nothing was taken; send it again"
    (with "in N s" when ``Retry-After`` says when); the member absent, of another type
    (``"false"``, 0, null), or a body that is not JSON keeps "may have been done" (a hostile
    node cannot get "nothing was taken" said by a wrong type). No bundle is written. A 4xx
    with ``"taken": false`` is a refusal as any 4xx: a mutant taking the member on any status
    said "nothing was taken" of a 409 (round 44M; a node says it only in a 5xx, ADR 84)."""
    from test_audit_since_monitor import _start_serving, _stop_serving

    answers: list[tuple[bytes, str | None, int]] = []

    class Node(_AnsweringNode):
        def do_GET(self) -> None:
            self._answer({"network": "demo", "agency": "edu", "status": "ok"})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            body, retry, status = answers[-1]
            self._send(body, "application/json", status,
                       None if retry is None else {"Retry-After": retry})

    out = tmp_path / "deg.bin"
    hold = ("--holder-jwk", str(files / "holder.jwk.json"))
    detail = "orderer is stopped"
    url = _start_serving(Node)
    try:
        for taken, retry, untaken, status in [
            (False, None, True, 503), (False, "7", True, 503), (None, "x", False, 503),
            ("false", None, False, 503), (0, None, False, 503), (None, None, False, 503),
            ("absent", None, False, 503), ("not json", None, False, 503),
            (False, None, False, 409), (False, None, False, 400),
        ]:
            said_body: dict[str, Any] = {"detail": detail, "error": "OrderingError"}
            if taken != "absent":
                said_body["taken"] = taken
            raw = b"orderer is stopped" if taken == "not json" else json.dumps(
                said_body).encode()
            answers.append((raw, retry, status))
            r = _node_issue(url, files, out, *hold)
            said = " ".join(r.stderr.split())
            assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
            assert not out.exists()
            if status < 500:  # a refusal in words: neither untaken nor maybe done
                assert said.endswith(f"the node refused it ({status}): {detail}"), said
                assert "nothing was taken" not in said and "may have been" not in said, said
            elif untaken:
                assert f"the node refused it{' for now' if retry else ''} (503): {detail}; " \
                       f"nothing was taken; send it again{' in 7 s or later' if retry else ''}" \
                       in said, (taken, said)
                assert "may have been done" not in said, said
            else:
                assert "nothing was taken" not in said, (taken, said)
                assert "may have been done: look before sending it again" in said, said
    finally:
        _stop_serving(url)


def test_a_node_that_cannot_be_reached_is_said_without_urllibs_wrapper(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A closed port was said as urllib's repr, "<urlopen error [Errno 111] Connection
    refused>", by `agency …`, `ledger monitor` and `ledger snapshot --node`: the system's words
    alone now, after the node named (round 43D's note)."""
    import typer

    from ledger import cli

    with socket.socket() as s:  # a port nothing listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        with pytest.raises(typer.Exit) as ended:
            cli._http(url + "/v1/credentials", b"{}", "application/json")
        assert ended.value.exit_code == 1
        said = " ".join(capsys.readouterr().err.split())
        assert f"cannot reach the node at {url}/v1/credentials: Connection refused" in said, said
        with pytest.raises(cli._MonitorUnreachable) as monitored:
            cli._get(url + "/v1/checkpoint")
        assert str(monitored.value) == f"GET {url}/v1/checkpoint: Connection refused"
        with pytest.raises(typer.Exit):
            cli._snapshot_from_nodes([url], None, tmp_path / "s.snapshot", False, False)
        said = " ".join(capsys.readouterr().err.split())
        assert f"cannot reach the node at {url}: Connection refused" in said, said
    for line in (said, str(monitored.value)):
        assert "urlopen" not in line and "Errno" not in line, line
    assert not (tmp_path / "s.snapshot").exists()


@pytest.mark.parametrize(("status", "retry", "said", "maybe"), [
    (500, None, "the node could not do it (500): kept", True),
    (503, "7", "the node refused it for now (503): kept; nothing was taken; send it again in "
               "7 s or later", False),
    (500, "7", "the node refused it for now (500): kept; nothing was taken; send it again in "
               "7 s or later", False),
    (503, "007 ", "send it again in 7 s or later", False),
    (503, "999999999", "send it again in 999999999 s or later", False),
    (503, "1234567890", "the node could not do it (503): kept", True),
    (503, "Wed, 21 Oct 2037 07:28:00 GMT", "the node could not do it (503): kept", True),
    (503, "-5", "the node could not do it (503): kept", True),
    (503, "\xb2", "the node could not do it (503): kept", True)],
    ids=["500", "503-retry", "500-retry", "padded", "nine-digits", "ten-digits", "date",
         "negative", "superscript-two"])
def test_only_a_5xx_with_a_whole_retry_after_is_said_to_have_taken_nothing(
        capsys: pytest.CaptureFixture[str], status: int, retry: str | None, said: str,
        maybe: bool) -> None:
    """Which 5xx answers to a POST are "refused it for now … nothing was taken" and which
    "could not do it … may have been done" (ADR 83): only a ``Retry-After`` of whole seconds
    (ASCII digits, at most 9 of them: a node's, ``node.app``'s handler) says the node took
    nothing; an HTTP date, a sign, a digit of another script ("²", which ``int`` refuses: a
    traceback) or a number without end is not the node's and says nothing; a 500 is as a
    503. A mutant taking any 5xx but 500, or the Retry-After unchecked, passed (round 43M)."""
    import typer
    from test_audit_since_monitor import _start_serving, _stop_serving

    from ledger import cli

    class Node(_AnsweringNode):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            self._send(json.dumps({"detail": "kept"}).encode(), "application/json", status,
                       None if retry is None else {"Retry-After": retry})

    url = _start_serving(Node)
    try:
        with pytest.raises(typer.Exit) as ended:
            cli._http(url + "/v1/credentials", b"{}", "application/json")
        assert ended.value.exit_code == 1
        line = " ".join(capsys.readouterr().err.split())
        assert said in line, line
        assert ("the request was sent and may have been done: look before sending it again"
                in line) is maybe, line
        assert ("nothing was taken" in line) is not maybe, line
    finally:
        _stop_serving(url)


def test_an_answer_that_is_not_http_is_said_whole_up_to_its_limit() -> None:
    """"gave no HTTP answer" shows http.client's text whole up to NOT_HTTP_SHOWN characters,
    limit included, and a longer one by its start and end, cut at words, with its length:
    the tests above use texts far past it and look for the cause alone, so mutants cutting a
    text of the limit, a limit of 40, and cuts inside words all passed (round 43M)."""
    import http.client

    from ledger import cli

    # http.client's own texts are whole (the constant's promise): this one is 50 characters
    text = str(http.client.LineTooLong("header line"))
    assert cli._not_http(http.client.LineTooLong("header line")) == (
        f"gave no HTTP answer (LineTooLong: {text!r})")
    limit = cli.NOT_HTTP_SHOWN
    whole = ("word " * limit)[:limit - 1] + "z"
    said = cli._not_http(http.client.HTTPException(whole))
    assert said == f"gave no HTTP answer (HTTPException: {whole!r})", said
    longer = cli._not_http(http.client.HTTPException(whole + "z"))
    assert longer.endswith(f" ({limit + 1} characters))") and " … " in longer, longer
    # a longer one: its start and its end, each cut at a word, not inside one
    words = " ".join(f"w{i:02d}" for i in range(40))  # 159 characters
    shown = " ".join(f"w{i:02d}" for i in range(15)) + " … " + " ".join(
        f"w{i:02d}" for i in range(33, 40))
    assert cli._not_http(http.client.HTTPException(words)) == (
        f"gave no HTTP answer (HTTPException: {shown!r} (159 characters))")


def test_a_pending_receipts_txid_of_hex_digits_without_end_is_cut(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A node's 202 names its transaction, said (with the receipt URL to look at) only if it
    is a txid (64 hex digits); any other text is cut as the node's words. Round 43M: a mutant
    taking any run of hex digits as a txid passed, and a hostile node's 202 naming 60,000 of
    them put them all on the operator's terminal, twice."""
    import typer

    from ledger import cli

    node = "http://127.0.0.1:9"
    for txid in ("ab" * 32, "ab" * 30000, "ab" * 31):
        with pytest.raises(typer.Exit) as ended:
            cli._refuse_pending(node, {"status": "pending", "txid": txid}, "credit withdrawal")
        assert ended.value.exit_code == 1
        line = " ".join(capsys.readouterr().err.split())
        assert "accepted the credit withdrawal but has not committed it yet" in line, line
        if len(txid) == 64:
            assert f"GET {node}/v1/tx/{txid}/receipt says whether it did" in line, line
        else:
            assert f"GET {node}/v1/tx/TXID/receipt" in line and len(line) < 700, line[:300]
            assert (f"({len(txid)} characters)" in line) is (len(txid) > 64), line[:300]


def test_issue_copies_to_send_again_are_said_as_options_to_paste(tmp_path: Path) -> None:
    """`agency issue --node`'s "send again copies N to M only: --holder-jwk F …" (44T) is
    pasted into a shell: a holder key file whose path holds a space, a quote or a semicolon
    was said bare, and pasted as said sent other files (or ran the rest as a command). Each
    path is quoted as the shell reads it back (round 44V)."""
    import shlex

    from ledger.cli import _send_again

    keys = [tmp_path / "first.jwk", tmp_path / "copy two.jwk", tmp_path / "it's;x.jwk"]
    written = [{"bundle": str(tmp_path / "deg-1.bin"), "credential_id": "ab" * 32}]
    said = _send_again(written, keys)
    options = said.split("send again copies 2 to 3 only: ", 1)[1].rsplit(
        ", with another --out", 1)[0]
    assert shlex.split(options) == ["--holder-jwk", str(keys[1]), "--holder-jwk",
                                    str(keys[2])], said
    plain = [tmp_path / "a.jwk", tmp_path / "b.jwk"]  # a plain path is said as it is
    assert f"--holder-jwk {plain[1]}, with another --out" in _send_again(written, plain)
