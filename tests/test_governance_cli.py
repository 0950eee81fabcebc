"""Governance proposals passed from agency to agency (``agency propose``, ``cosign``, ``submit``):
the real CLI on a real store, and over real HTTP to a running node. A proposal commits only with
the quorum's signatures, each verified before anyone adds theirs; a stale, forged or foreign file
is refused and changes nothing."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api import NOW, PASS, make_demo, serve, settings_for

from ledger.errors import DecodeError
from ledger.governance import args_from_json, describe, parse_proposal
from ledger.keys import load_private_key
from ledger.store import Store
from ledger.tx import MAX_TX_SIZE, Tx, make_tx
from node.app import create_app

AGENCY = str(Path(sys.executable).with_name("agency"))


def agency(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LEDGER_KEY_PASSPHRASE": PASS.decode(), "COLUMNS": "200"}
    return subprocess.run([AGENCY, *args], capture_output=True, text=True, env=env, timeout=120,
                          input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
                          check=False)


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    return make_demo(tmp_path / "demo-data")


def _govern(data: Path, action: str, args: Path, proposer: str, cosigner: str) -> None:
    """Propose, cosign and submit one change with the CLI (a quorum of two), embedded."""
    prop = args.with_suffix(".prop")
    for step in (["propose", action, "--args", str(args), "--data", str(data), "--agency",
                  proposer, "--out", str(prop)],
                 ["cosign", str(prop), "--data", str(data), "--agency", cosigner, "--yes"],
                 ["submit", str(prop), "--data", str(data)]):
        r = agency(*step)
        assert r.returncode == 0, (step[0], r.stderr)


def _rotation(tmp: Path, victim: str, role: str) -> tuple[Path, Path]:
    """A fresh key from `agency keygen` and the arguments rotating ``victim``'s ``role`` key to
    it from now: (the new key file, the arguments file)."""
    fresh = tmp / f"{victim}.{role}.key.new"
    r = agency("keygen", "--out", str(fresh), "--json")
    assert r.returncode == 0, r.stderr
    args = tmp / "rotate.json"
    args.write_text(json.dumps({"agency": victim, "role": role, "at": int(time.time()),
                                "new_key": json.loads(r.stdout)["public_key"]}))
    return fresh, args


def _rotate_issuer_key(data: Path, tmp: Path, victim: str, signers: tuple[str, str]) -> Path:
    """Two other agencies rotate ``victim``'s issuer key to a fresh one from `agency keygen`,
    from now; the new key file."""
    fresh, args = _rotation(tmp, victim, "issuer")
    _govern(data, "rotate_key", args, *signers)
    return fresh


def _grants(data: Path) -> dict[str, list[str]]:
    with Store(data / "ledger", create=False) as store:
        assert store.registry is not None
        return store.registry.grants_at(int(dt.datetime(2028, 1, 1, tzinfo=dt.UTC).timestamp()))


def _gov_seq(data: Path) -> int:
    with Store(data / "ledger", create=False) as store:
        assert store.registry is not None
        return store.registry.gov_seq


# -- the arguments a person writes -----------------------------------------------------------------

def test_json_arguments_become_ledger_arguments() -> None:
    kid = "ab" * 32
    got = args_from_json({"kid": kid, "from": "2027-01-01", "until": "2027-01-01T08:00:00+08:00",
                          "at": 5, "agency": {"id": "x", "node_key": "00" * 32}})
    assert got == {"kid": bytes.fromhex(kid), "from": 1798761600, "until": 1798761600, "at": 5,
                   "agency": {"id": "x", "node_key": bytes(32)}}
    # a credential type's claims may be named as arguments are: left as written
    spec = {"id": "permit", "title": "Permit", "claims": {"from": "date", "kid": "string",
                                                         "at": "string"}, "derived": {}}
    assert args_from_json({"type": spec}) == {"type": spec}


@pytest.mark.parametrize(("args", "message"), [
    ({"kid": "abc"}, r"args\.kid: must be 64 hex digits"),
    ({"kid": "zz" * 32}, r"args\.kid: must be 64 hex digits"),
    ({"agency": {"issuer_key": "00" * 31}}, r"args\.agency\.issuer_key: must be 64 hex"),
    ({"at": "2027-01-01T08:00:00"}, r"args\.at: an ISO 8601 time needs its offset"),
    ({"from": "next tuesday"}, r"args\.from: must be a Unix time \(a JSON number"),
    # numbers with no canonical encoding: a traceback from the encoder before
    ({"quorum": 2.0}, r"args\.quorum: 2\.0 is not an integer"),
    ({"from": float("inf")}, r"args\.from: inf is not an integer"),
    ({"policy": {"weights": {"a": float("nan")}}}, r"args\.policy\.weights\.a: nan is not"),
    ({"quorum": 10**23}, r"args\.quorum: is outside the range of a 64-bit integer"),
    ({"from": -(10**26)}, r"args\.from: is outside the range"),
])
def test_bad_json_arguments_name_the_member(args: dict[str, object], message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        args_from_json(args)


def test_members_inside_a_list_are_left_as_written() -> None:
    """A rule's or an agency's list items are not arguments: a ``kid`` or ``from`` there is a
    claim's name or value, not a key or a time to convert."""
    needs = {"rule": {"needs": [{"kid": "ab" * 32, "from": "2027-01-01"}]}}
    assert args_from_json(needs) == needs
    agency = {"agency": {"id": "x", "keys": [{"kid": "ab" * 32}]}}
    assert args_from_json(agency) == agency


def test_the_64_bit_bounds_are_exact() -> None:
    """The ledger's integers are msgpack's: -(2**63) up to 2**64 - 1, both ends included."""
    for n in (-(2**63), 2**64 - 1):
        assert args_from_json({"at": n}) == {"at": n}
    for n in (-(2**63) - 1, 2**64):
        with pytest.raises(DecodeError, match=r"args\.at: is outside the range"):
            args_from_json({"at": n})


# -- embedded: the CLI writes the store itself ----------------------------------------------------

def test_a_proposal_commits_once_the_quorum_has_signed(demo: Path, tmp_path: Path) -> None:
    args = tmp_path / "grant.json"
    args.write_text(json.dumps({"agency": "edu", "type": "residence", "from": "2027-01-01",
                                "until": "2030-01-01"}))
    prop = tmp_path / "grant.prop"
    seq = _gov_seq(demo)
    assert "residence" not in _grants(demo).get("edu", [])

    r = agency("propose", "grant", "--args", str(args), "--data", str(demo), "--agency", "edu",
               "--out", str(prop))
    assert r.returncode == 0, r.stderr
    assert f"governance #{seq + 1}" in r.stdout and "2027-01-01 00:00:00 UTC" in r.stdout
    assert "signed by 1 of the 2 agencies needed (edu)" in r.stdout
    tx = parse_proposal(prop.read_bytes())
    assert tx.body["args"]["from"] == 1798761600
    assert describe(tx)[0] == f"governance #{seq + 1} on 'changsheng-demo': grant"

    r = agency("submit", str(prop), "--data", str(demo))  # one of two: refused
    assert r.returncode == 1 and "signed by 1 of the 2 agencies needed" in r.stderr
    assert _gov_seq(demo) == seq

    r = agency("cosign", str(prop), "--data", str(demo), "--agency", "civil")  # no answer
    assert r.returncode == 1 and "not signed" in r.stderr
    assert len(parse_proposal(prop.read_bytes()).sigs) == 1
    # Enter alone takes the question's default, no (helper round 36M: a yes passed)
    r = agency("cosign", str(prop), "--data", str(demo), "--agency", "civil", stdin="\n")
    assert r.returncode == 1 and "[y/N]" in r.stderr and "not signed" in r.stderr, r.stderr
    assert len(parse_proposal(prop.read_bytes()).sigs) == 1

    r = agency("cosign", str(prop), "--data", str(demo), "--agency", "civil", stdin="y\n")
    assert r.returncode == 0, r.stderr
    assert "2 of the 2 agencies needed; next: agency submit" in r.stdout
    signed = parse_proposal(prop.read_bytes())
    assert signed.payload == tx.payload and len(signed.sigs) == 2  # the same proposal

    r = agency("submit", str(prop), "--data", str(demo), "--json")
    assert r.returncode == 0, r.stderr
    receipt = json.loads(r.stdout)
    assert (receipt["seq"], receipt["action"], receipt["signers"]) == (seq + 1, "grant",
                                                                       ["civil", "edu"])
    assert "residence" in _grants(demo)["edu"]
    assert _gov_seq(demo) == seq + 1

    for again in (["submit", str(prop), "--data", str(demo)],
                  ["cosign", str(prop), "--data", str(demo), "--agency", "market", "--yes"]):
        r = agency(*again)
        assert r.returncode == 1 and "stale" in r.stderr
    assert _gov_seq(demo) == seq + 1


def _propose_quorum(demo: Path, tmp_path: Path, quorum: int, by: str
                    ) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """`agency propose set_quorum` of ``quorum`` by ``by`` into ``tmp_path/q.prop``: the
    proposal's path and the command's result."""
    args = tmp_path / "quorum.json"
    args.write_text(json.dumps({"quorum": quorum}))
    prop = tmp_path / "q.prop"
    return prop, agency("propose", "set_quorum", "--args", str(args), "--data", str(demo),
                        "--agency", by, "--out", str(prop))


def test_forged_foreign_and_malformed_proposals_are_refused(demo: Path, tmp_path: Path) -> None:
    prop, r = _propose_quorum(demo, tmp_path, 1, "market")
    assert r.returncode == 0, r.stderr
    args = tmp_path / "quorum.json"  # its arguments, for the bad actions below
    original = prop.read_bytes()
    seq = _gov_seq(demo)

    # a signature that does not verify (its last byte changed): nobody adds theirs to it
    tx = Tx.from_bytes(original)
    forged = prop.with_name("forged.prop")
    forged.write_bytes(_with_sig_byte_flipped(tx))
    r = agency("cosign", str(forged), "--data", str(demo), "--agency", "civil", "--yes")
    assert r.returncode == 1 and "does not verify" in r.stderr
    assert forged.read_bytes() == _with_sig_byte_flipped(tx)

    # a proposal for another network, its signature good (this agency's own key): nobody here
    # adds theirs to it, nor submits it
    foreign = prop.with_name("foreign.prop")
    market = load_private_key(demo / "keys" / "market.issuer.key", PASS)
    made = make_tx("other-net", "governance", tx.body, [market]).raw
    foreign.write_bytes(made)
    for step in (["cosign", str(foreign), "--data", str(demo), "--agency", "civil", "--yes"],
                 ["submit", str(foreign), "--data", str(demo)]):
        r = agency(*step)
        assert r.returncode == 1 and "is a proposal for network 'other-net'" in r.stderr, \
            r.stderr
    assert foreign.read_bytes() == made

    # not a proposal at all, and a transaction that is not governance
    junk = tmp_path / "junk.prop"
    junk.write_bytes(original[: len(original) // 2])
    r = agency("cosign", str(junk), "--data", str(demo), "--agency", "civil", "--yes")
    assert r.returncode == 2 and "is not a governance proposal" in r.stderr
    with Store(demo / "ledger", create=False) as store:
        head = store.head
        assert head is not None
        issue = next(Tx.from_bytes(store.entry(i)) for i in range(head.log_size)
                     if Tx.from_bytes(store.entry(i)).type == "issue")
    other = tmp_path / "issue.prop"
    other.write_bytes(issue.raw)
    r = agency("submit", str(other), "--data", str(demo))
    assert r.returncode == 2 and "not a governance proposal" in r.stderr

    # bad actions and arguments write nothing
    out = tmp_path / "none.prop"
    for bad in (["frobnicate", "--args", str(args)],
                ["grant", "--args", str(args)]):  # set_quorum's arguments for a grant
        r = agency("propose", *bad, "--data", str(demo), "--agency", "civil", "--out", str(out))
        assert r.returncode == 2, r.stderr
        assert "unknown governance action" in r.stderr or "do not fit 'grant'" in r.stderr
    assert not out.exists()
    r = agency("propose", "set_quorum", "--args", str(args), "--data", str(demo), "--agency",
               "civil", "--out", str(prop))
    assert r.returncode == 2 and "--force" in r.stderr
    assert prop.read_bytes() == original
    assert _gov_seq(demo) == seq


def _with_sig_byte_flipped(tx: Tx) -> bytes:
    from ledger import codec

    sigs = [{"kid": s.kid, "sig": s.sig} for s in tx.sigs]
    sigs[0]["sig"] = sigs[0]["sig"][:-1] + bytes([sigs[0]["sig"][-1] ^ 1])
    return codec.encode({"v": 1, "payload": tx.payload, "sigs": sigs})


# -- a running node: the registry from it, the proposal submitted to it ----------------------------

def test_over_http_to_a_running_node(tmp_path: Path) -> None:
    data = make_demo(tmp_path / "demo-data")
    keys_only = tmp_path / "agency-folder"  # an agency's keys, away from the node's store
    keys_only.mkdir()
    (keys_only / "keys").symlink_to(data / "keys")
    args = tmp_path / "type.json"
    args.write_text(json.dumps({"type": {
        "id": "fishing-licence", "title": "Fishing licence",
        "claims": {"holder_name": "string", "waters": "string", "valid_on": "date"},
        "derived": {}}}))
    prop = tmp_path / "type.prop"
    app = create_app(settings_for(data), clock=lambda: NOW, passphrase=PASS)
    with serve(app) as url:
        before = httpx.get(f"{url}/v1/registry").json()
        assert before["network"] == "changsheng-demo" and before["quorum"] == 2
        r = agency("propose", "register_type", "--args", str(args), "--data", str(keys_only),
                   "--agency", "edu", "--node", url, "--out", str(prop))
        assert r.returncode == 0, r.stderr
        r = agency("submit", str(prop), "--node", url)
        assert r.returncode == 1 and "1 of the 2" in r.stderr
        typo = tmp_path / "typo.json"  # the node's registry names the members too
        typo.write_text(json.dumps({"agency": "edu-typo", "type": "residence",
                                    "from": "2027-01-01", "until": "2030-01-01"}))
        r = agency("propose", "grant", "--args", str(typo), "--data", str(keys_only),
                   "--agency", "edu", "--node", url, "--out", str(tmp_path / "typo.prop"))
        assert r.returncode == 2 and "'edu-typo' is not an agency of" in r.stderr, r.stderr
        r = agency("cosign", str(prop), "--data", str(keys_only), "--agency", "market",
                   "--node", url, "--yes")
        assert r.returncode == 0, r.stderr
        r = agency("submit", str(prop), "--node", url, "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["signers"] == ["edu", "market"]
        assert "fishing-licence" in httpx.get(f"{url}/v1/registry/types").json()
        after = httpx.get(f"{url}/v1/registry").json()
        assert after["gov_seq"] == before["gov_seq"] + 1
        assert after["height"] == before["height"] + 1
        keys = httpx.get(f"{url}/v1/registry/keys").json()
        assert all(len(bytes.fromhex(k["public_key"])) == 32 for k in keys)


def test_a_new_agency_makes_its_keys_and_the_members_admit_it(demo: Path, tmp_path: Path) -> None:
    """``agency keygen`` gives the public keys a proposal needs; ``add_agency`` with them,
    cosigned and submitted, puts the agency in the registry with exactly those keys."""
    new: dict[str, str] = {}
    for role in ("node", "issuer"):
        path = tmp_path / f"justice.{role}.key"
        r = agency("keygen", "--out", str(path), "--json")
        assert r.returncode == 0, r.stderr
        made = json.loads(r.stdout)
        key = load_private_key(path, PASS)
        assert (made["public_key"], made["kid"]) == (key.public.raw.hex(), key.kid.hex())
        new[role] = made["public_key"]
        again = agency("keygen", "--out", str(path))
        assert again.returncode == 2 and "--force" in again.stderr
        assert load_private_key(path, PASS).kid == key.kid  # not replaced
    args = tmp_path / "admit.json"
    args.write_text(json.dumps({"agency": {"id": "justice", "name": "Justice Bureau",
                                           "node_key": new["node"],
                                           "issuer_key": new["issuer"]}}))
    _govern(demo, "add_agency", args, "civil", "market")
    with Store(demo / "ledger", create=False) as store:
        reg = store.registry
        assert reg is not None and reg.agency("justice") is not None
        assert {k["pub"].hex() for _, k in reg.keys_of("justice")} == set(new.values())


def test_a_stolen_issuer_key_is_rotated_from_the_command_line(demo: Path, tmp_path: Path) -> None:
    """The recovery of THREAT_MODEL.md without the victim's machine: two other agencies rotate
    civil's issuer key; the old key file then signs nothing the ledger accepts, the new one
    does."""
    fresh = _rotate_issuer_key(demo, tmp_path, "civil", ("edu", "market"))
    with Store(demo / "ledger", create=False) as store:
        head = store.head
        assert head is not None
        cid = next(tx.body["credential_id"].hex() for tx in
                   (Tx.from_bytes(store.entry(i)) for i in range(head.log_size))
                   if tx.type == "issue" and tx.body["issuer"] == "civil")
    status = ["status", "--data", str(demo), "--agency", "civil", "--credential-id", cid,
              "--set", "suspended"]
    r = agency(*status)  # the stolen (old) key file
    assert r.returncode == 1 and "key_not_valid" in r.stderr

    from node.service import Node

    def issuer_problem() -> str | None:
        node = Node(demo, "civil", PASS, workers=0)
        try:
            return node.issuer_problem()
        finally:
            node.close()

    # a node still holding the old key file said "ok" while refusing every issuance
    assert "not a valid issuer key of 'civil' now" in (issuer_problem() or "")
    (demo / "keys" / "civil.issuer.key").unlink()
    fresh.rename(demo / "keys" / "civil.issuer.key")
    assert issuer_problem() is None
    r = agency(*status)
    assert r.returncode == 0, r.stderr
    assert "is now suspended" in r.stdout


def test_a_float_argument_on_the_command_line_is_one_line(demo: Path, tmp_path: Path) -> None:
    args = tmp_path / "quorum.json"
    args.write_text('{"quorum": 2.0}')
    r = agency("propose", "set_quorum", "--args", str(args), "--data", str(demo), "--agency",
               "edu", "--out", str(tmp_path / "q.prop"))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "args.quorum: 2.0 is not an integer" in r.stderr
    assert not (tmp_path / "q.prop").exists()


def test_a_signature_that_stopped_counting_is_named_before_signing_or_submitting(
        demo: Path, tmp_path: Path) -> None:
    """A proposal still travelling when a signer's key is rotated: the ledger refuses any
    governance transaction with such a signature, so cosign and submit say so (submit counted
    the others, said the quorum was met, and met a rejection)."""
    quorum = tmp_path / "quorum.json"
    quorum.write_text('{"quorum": 2}')
    _rotate_issuer_key(demo, tmp_path, "edu", ("civil", "market"))
    seq = _gov_seq(demo)
    # a proposal for the next step that edu signed with the key it held before (a copy of edu's
    # old key file signs here, as edu's machine would have before it learned of the rotation)
    r = agency("propose", "set_quorum", "--args", str(quorum), "--data", str(demo), "--agency",
               "market", "--out", str(tmp_path / "m.prop"))
    assert r.returncode == 0, r.stderr
    tx = parse_proposal((tmp_path / "m.prop").read_bytes())
    old_edu = load_private_key(demo / "keys" / "edu.issuer.key", PASS)
    (tmp_path / "m.prop").write_bytes(tx.sign(old_edu).raw)
    for step in (["cosign", str(tmp_path / "m.prop"), "--data", str(demo), "--agency", "civil",
                  "--yes"], ["submit", str(tmp_path / "m.prop"), "--data", str(demo)]):
        r = agency(*step)
        assert r.returncode == 1, (step[0], r.stdout, r.stderr)
        assert "may not sign on" in r.stderr and "edu (key" in r.stderr, r.stderr
    assert _gov_seq(demo) == seq


def test_a_node_key_rotated_from_now_leaves_a_chain_that_audits_clean(
        demo: Path, tmp_path: Path) -> None:
    """Quorum 3 of 3, civil's node key rotated from now by the documented CLI path: the block
    that rotates it is not signed by the key it rotates out, and with two current keys left it
    gets no checkpoint at all (a stored checkpoint is final: ADR 46). Once the new key file is
    in place the next block is final, and the chain audits clean throughout."""
    quorum = tmp_path / "quorum.json"
    quorum.write_text('{"quorum": 3}')
    _govern(demo, "set_quorum", quorum, "edu", "market")
    fresh, args = _rotation(tmp_path, "civil", "node")
    prop = tmp_path / "rotate.prop"
    for step in (["propose", "rotate_key", "--args", str(args), "--data", str(demo),
                  "--agency", "civil", "--out", str(prop)],
                 ["cosign", str(prop), "--data", str(demo), "--agency", "edu", "--yes"],
                 ["cosign", str(prop), "--data", str(demo), "--agency", "market", "--yes"],
                 ["submit", str(prop), "--data", str(demo)]):
        r = agency(*step)
        assert r.returncode == 0, (step[0], r.stderr)
    assert "only 2 of the node keys here are current after it (quorum 3)" in \
        " ".join(r.stderr.split())

    def audit() -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(Path(sys.executable).with_name("ledger")), "audit",
                               str(demo), "--json"], capture_output=True, text=True,
                              timeout=300, check=False)

    with Store(demo / "ledger", create=False) as store:
        head, latest = store.head, store.checkpoint()
        assert head is not None and latest is not None
        assert f"\n{head.log_size}\n" not in latest.decode()  # no checkpoint for that block
    r = audit()
    assert r.returncode == 0, r.stdout + r.stderr
    (demo / "keys" / "civil.node.key").unlink()
    fresh.rename(demo / "keys" / "civil.node.key")
    grant = tmp_path / "grant.json"
    grant.write_text('{"agency": "edu", "type": "residence", "from": "2027-01-01", '
                     '"until": "2030-01-01"}')
    prop = tmp_path / "grant.prop"
    for step in (["propose", "grant", "--args", str(grant), "--data", str(demo), "--agency",
                  "edu", "--out", str(prop)],
                 ["cosign", str(prop), "--data", str(demo), "--agency", "civil", "--yes"],
                 ["cosign", str(prop), "--data", str(demo), "--agency", "market", "--yes"],
                 ["submit", str(prop), "--data", str(demo)]):
        r = agency(*step)
        assert r.returncode == 0, (step[0], r.stderr)
    r = audit()
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout)
    with Store(demo / "ledger", create=False) as store:
        assert store.head is not None
        assert report["attested_size"] == store.head.log_size  # final at the head again


def test_two_agencies_signing_one_file_at_once_lose_no_signature(
        demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two agencies co-sign one shared proposal file at the same moment: each read it with the
    proposer's signature only, and the later write dropped the earlier one. The file is now
    written only if it is still what was read; the later signer is told to run again."""
    from typer.testing import CliRunner

    from ledger import cli

    args = tmp_path / "grant.json"
    args.write_text(json.dumps({"agency": "edu", "type": "residence", "from": "2027-01-01",
                                "until": "2030-01-01"}))
    prop = tmp_path / "grant.prop"
    assert agency("propose", "grant", "--args", str(args), "--data", str(demo), "--agency",
                  "edu", "--out", str(prop)).returncode == 0
    real = cli._show_proposal

    def meanwhile_market_signs(*a: Any, **k: Any) -> None:
        real(*a, **k)
        r = agency("cosign", str(prop), "--data", str(demo), "--agency", "market", "--yes")
        assert r.returncode == 0, r.stderr

    monkeypatch.setattr(cli, "_show_proposal", meanwhile_market_signs)
    r = CliRunner().invoke(cli.agency_app, ["cosign", str(prop), "--data", str(demo),
                                            "--agency", "civil", "--yes"],
                           env={"LEDGER_KEY_PASSPHRASE": PASS.decode(), "COLUMNS": "200"})
    assert r.exit_code == 1, r.output
    assert "changed since it was read" in " ".join(r.output.split())
    assert len(parse_proposal(prop.read_bytes()).sigs) == 2  # edu's and market's, both kept
    monkeypatch.setattr(cli, "_show_proposal", real)
    assert agency("cosign", str(prop), "--data", str(demo), "--agency", "civil",
                  "--yes").returncode == 0
    assert len(parse_proposal(prop.read_bytes()).sigs) == 3


def test_an_invalidation_says_how_far_back_a_thief_may_date() -> None:
    """A verifier judges an issuer key at a credential's valid_from, which a signer may date
    up to MAX_BACKDATE before its block: invalidated from the time of compromise itself, a
    thief's backdated credential still verified (a hunt on a live network). Whoever proposes
    or co-signs an invalidation is told to go back that far."""
    from ledger.keys import PrivateKey
    from ledger.state import MAX_BACKDATE

    key = PrivateKey(b"\x07" * 32)
    tx = make_tx("n", "governance", {"seq": 1, "action": "invalidate_key",
                                     "args": {"kid": key.kid, "from": 1_800_000_000}}, [key])
    said = " ".join(describe(tx))
    assert f"minus {MAX_BACKDATE // 60} minutes" in said and "thief" in said
    assert f"dated up to {MAX_BACKDATE // 60} minutes before it" in said
    assert describe(tx)[1] == "  from = 1800000000 (2027-01-15 08:00:00 UTC)"
    other = make_tx("n", "governance", {"seq": 1, "action": "set_quorum",
                                        "args": {"quorum": 2}}, [key])
    # a number that is not a time is shown as it is
    assert describe(other) == ["governance #1 on 'n': set_quorum", "  quorum = 2"]


def test_an_at_in_the_past_is_said_to_take_effect_at_the_block(demo: Path,
                                                                tmp_path: Path) -> None:
    """rotate_key, withdraw_grant and withdraw_credit_grant take effect at their block's time
    when their ``at`` is earlier (the ledger never rewrites the past), but proposer and
    cosigners were shown only ``at = <that earlier time>``: agencies rotating a stolen key "at"
    the time of compromise took what it signed since for shut out, and it all still verified.
    They are told the change takes effect at the block, not at the time given."""
    from ledger.keys import PrivateKey

    key = PrivateKey(b"\x07" * 32)
    rotate = make_tx("n", "governance", {"seq": 1, "action": "rotate_key", "args": {
        "agency": "civil", "role": "issuer", "new_key": bytes(32), "at": 1_800_000_000}}, [key])
    withdraw = make_tx("n", "governance", {"seq": 1, "action": "withdraw_grant", "args": {
        "agency": "civil", "type": "residence", "at": 1_800_000_000}}, [key])
    for tx in (rotate, withdraw):
        said = " ".join(describe(tx, 1_800_000_001))
        assert "not from 2027-01-15 08:00:00 UTC" in said, said
        assert "from the block that commits it" in said, said
        assert "note" not in " ".join(describe(tx, 1_800_000_000))  # not before now: as given
        assert "note" not in " ".join(describe(tx))
    assert "invalidate_key" in " ".join(describe(rotate, 1_800_000_001))

    args = tmp_path / "rotate.json"
    args.write_text(json.dumps({"agency": "market", "role": "issuer", "new_key": "ab" * 32,
                                "at": "2026-01-01"}))
    r = agency("propose", "rotate_key", "--args", str(args), "--data", str(demo), "--agency",
               "edu", "--out", str(tmp_path / "rotate.prop"))
    assert r.returncode == 0, r.stderr
    assert "not from 2026-01-01 00:00:00 UTC" in r.stdout, r.stdout
    r = agency("cosign", str(tmp_path / "rotate.prop"), "--data", str(demo), "--agency",
               "civil")  # no answer: shown, not signed
    assert r.returncode == 1 and "not from 2026-01-01 00:00:00 UTC" in r.stdout, r.stdout


def test_a_proposal_for_an_agency_that_is_no_member_is_neither_proposed_nor_signed(
        demo: Path, tmp_path: Path) -> None:
    """A grant to an agency the network never admitted (a typo in its id), or an add_agency of
    an id it holds, was written, shown and cosigned by the whole quorum, and only the commit
    refused it (unknown_agency, agency_exists). A proposal is numbered for the registry the
    ledger applies it to, so propose says so and writes nothing, and cosign signs nothing."""
    seq = _gov_seq(demo)
    args = tmp_path / "grant.json"
    out = tmp_path / "none.prop"
    for action, given, said in (
            ("grant", {"agency": "edu-typo", "type": "residence", "from": "2027-01-01",
                       "until": "2030-01-01"}, "agency 'edu-typo' is not an agency of"),
            ("add_agency", {"agency": {"id": "civil", "name": "Civil again",
                                       "node_key": "ab" * 32, "issuer_key": "cd" * 32}},
             "agency 'civil' is on 'changsheng-demo' already")):
        args.write_text(json.dumps(given))
        r = agency("propose", action, "--args", str(args), "--data", str(demo), "--agency",
                   "edu", "--out", str(out))
        assert r.returncode == 2 and said in r.stderr, (r.returncode, r.stderr)
        assert "no proposal was written" in r.stderr and not out.exists()

    edu = load_private_key(demo / "keys" / "edu.issuer.key", PASS)
    prop = tmp_path / "typo.prop"
    prop.write_bytes(make_tx("changsheng-demo", "governance", {
        "seq": seq + 1, "action": "rotate_key", "args": {
            "agency": "edu-typo", "role": "issuer", "new_key": bytes(range(32)),
            "at": int(time.time())}}, [edu]).raw)
    before = prop.read_bytes()
    r = agency("cosign", str(prop), "--data", str(demo), "--agency", "civil", "--yes")
    assert r.returncode == 1 and "not signed: agency 'edu-typo' is not an agency of" in r.stderr
    assert "(members: civil, edu, market)" in r.stderr, r.stderr
    assert prop.read_bytes() == before and _gov_seq(demo) == seq

    # a member still gets its proposal written and signed
    args.write_text(json.dumps({"agency": "edu", "type": "residence", "from": "2027-01-01",
                                "until": "2030-01-01"}))
    r = agency("propose", "grant", "--args", str(args), "--data", str(demo), "--agency", "edu",
               "--out", str(out))
    assert r.returncode == 0, r.stderr
    r = agency("cosign", str(out), "--data", str(demo), "--agency", "civil", "--yes")
    assert r.returncode == 0, r.stderr


def test_a_peer_quiet_since_its_node_key_was_rotated_is_named_so(demo: Path,
                                                                  tmp_path: Path) -> None:
    """A node whose key governance rotated out says nothing until its operator restarts it
    with the new key file: its peers called it "down, cut off from etcd, or no longer
    applying" (the live rotation hunt). Quiet since about the rotation, it is named so."""
    from node.service import Node

    _, args = _rotation(tmp_path, "civil", "node")
    _govern(demo, "rotate_key", args, "edu", "market")
    # an issuer key rotated at the same time does not stop a node from speaking
    _, args = _rotation(tmp_path, "market", "issuer")
    _govern(demo, "rotate_key", args.rename(tmp_path / "rotate-issuer.json"), "edu", "civil")
    node = Node(demo, "edu", PASS, workers=0)
    try:
        assert node.keys_gone_quiet({"civil": 40, "market": 40}) == {"civil"}
        assert node.keys_gone_quiet({"civil": 0}) == {"civil"}  # quiet for under a poll
        assert node.keys_gone_quiet({"edu": 40}) == set()
    finally:
        node.close()


def _neither_cosigned_nor_submitted(demo: Path, prop: Path, body: dict[str, Any],
                                    where: str) -> None:
    """A proposal of ``body`` made by another tool (signed by edu) is not cosigned by civil,
    and signed by both is not submitted: each says ``where`` (never the text)."""
    keys = demo / "keys"
    edu, civil = (load_private_key(keys / f"{a}.issuer.key", PASS) for a in ("edu", "civil"))
    prop.write_bytes(make_tx("changsheng-demo", "governance", body, [edu]).raw)
    r = agency("cosign", str(prop), "--data", str(demo), "--agency", "civil", "--yes")
    assert r.returncode == 1, r.stderr
    assert where in " ".join(r.stderr.split()) and "ngsha" not in r.stderr
    assert len(parse_proposal(prop.read_bytes()).sigs) == 1
    prop.write_bytes(make_tx("changsheng-demo", "governance", body, [edu, civil]).raw)
    r = agency("submit", str(prop), "--data", str(demo))
    assert r.returncode == 1, r.stderr
    assert where in " ".join(r.stderr.split())


def test_a_rule_whose_text_no_claim_could_hold_is_neither_proposed_signed_nor_submitted(
        demo: Path, tmp_path: Path) -> None:
    """A rule parameter typed with a separate accent (NFD) would never equal a claim (claims
    are refused unless NFC), so an eligible citizen would be refused (ADR 53): `agency propose`
    refuses to write it, and a proposal of it from another tool is neither cosigned nor
    submitted. The message names where, never the text. The same rule in NFC is proposed."""
    def residence_rule(district: str) -> dict[str, Any]:
        return {
            "service": "residence-check", "title": "Residence check", "area": "licensing",
            "agency": "civil", "needs": [{"type": "residence", "claims": ["district"]}],
            "params": [{"name": "district", "str": district}], "subject": [],
            "clauses": [{"when": "claims.residence.district != params.district",
                         "decision": "rejected", "reason": "not_resident"}],
            "otherwise": {"decision": "approved", "reason": "eligible"},
            "fast_track": "", "fast_track_reason": "fast_track",
            "documents": {"fast_track": [], "standard": []}}

    where = "rule.params[0].str (parameter 'district') is not in Unicode's composed form (NFC)"
    args = tmp_path / "rule.json"
    args.write_text(json.dumps({"rule": residence_rule("Cha\u0301ngsha")}))
    prop = tmp_path / "rule.prop"
    seq = _gov_seq(demo)
    r = agency("propose", "register_rule", "--args", str(args), "--data", str(demo), "--agency",
               "edu", "--out", str(prop))
    assert r.returncode == 2, r.stderr
    assert where in " ".join(r.stderr.split()) and "ngsha" not in r.stderr
    assert not prop.exists()

    body = {"seq": seq + 1, "action": "register_rule",
            "args": {"rule": residence_rule("Cha\u0301ngsha")}}
    _neither_cosigned_nor_submitted(demo, prop, body, where)
    assert _gov_seq(demo) == seq

    prop.unlink()
    args.write_text(json.dumps({"rule": residence_rule("Changsha")}))
    _govern(demo, "register_rule", args, "edu", "civil")
    assert _gov_seq(demo) == seq + 1


def test_a_costly_rule_is_neither_proposed_signed_nor_submitted(demo: Path,
                                                                tmp_path: Path) -> None:
    """Nodes refuse a rule whose evaluation could cost seconds at every application at
    /v1/tx (ADR 57); the agencies learnt it only there, with the quorum's signatures
    collected. `agency propose` refuses to write it, `cosign` to sign and `submit` to send one
    made by another tool, naming where the cost is."""
    nested = "true"
    for d in range(4):
        nested = f"[0,0,0,0,0,0,0,0,0,0].all(x{d}, {nested})"
    rule = {"service": "residence-check", "title": "Residence check", "area": "licensing",
            "agency": "civil", "needs": [{"type": "residence", "claims": ["district"]}],
            "params": [], "subject": [],
            "clauses": [{"when": nested, "decision": "rejected", "reason": "not_resident"}],
            "otherwise": {"decision": "approved", "reason": "eligible"},
            "fast_track": "", "fast_track_reason": "fast_track",
            "documents": {"fast_track": [], "standard": []}}
    where = "rule.clauses[0].when: a comprehension"
    args = tmp_path / "rule.json"
    args.write_text(json.dumps({"rule": rule}))
    prop = tmp_path / "rule.prop"
    seq = _gov_seq(demo)
    r = agency("propose", "register_rule", "--args", str(args), "--data", str(demo), "--agency",
               "edu", "--out", str(prop))
    assert r.returncode == 2, r.stderr
    assert where in " ".join(r.stderr.split())
    assert not prop.exists()
    body = {"seq": seq + 1, "action": "register_rule", "args": {"rule": rule}}
    _neither_cosigned_nor_submitted(demo, prop, body, where)
    assert _gov_seq(demo) == seq


def test_a_cosignature_that_would_pass_the_size_limit_is_refused_before_asking(
        demo: Path, tmp_path: Path) -> None:
    """A rule's clauses may fill a proposal nearly to MAX_TX_SIZE: `agency propose` writes it
    (one signature fits), and `agency cosign` refuses, before asking, a second signature that
    would make bytes no node reads; it said so with a traceback (round 13). The file is left
    as it was."""
    def rule(pad: int) -> dict[str, Any]:
        when = f"claims.residence.district == '{'a' * pad}'"
        return {"service": "residence-check", "title": "Residence check", "area": "licensing",
                "agency": "civil", "needs": [{"type": "residence", "claims": ["district"]}],
                "params": [], "subject": [],
                "clauses": [{"when": when, "decision": "rejected", "reason": "not_resident"}]
                * 32,
                "otherwise": {"decision": "approved", "reason": "eligible"},
                "fast_track": "", "fast_track_reason": "fast_track",
                "documents": {"fast_track": [], "standard": []}}

    seq = _gov_seq(demo)
    edu = load_private_key(demo / "keys" / "edu.issuer.key", PASS)

    def size(pad: int) -> int:
        return len(make_tx("changsheng-demo", "governance", {
            "seq": seq + 1, "action": "register_rule", "args": {"rule": rule(pad)}}, [edu]).raw)

    pad = 1900 + (MAX_TX_SIZE - 60 - size(1900)) // 32  # one signature fits, not two (109 B)
    assert MAX_TX_SIZE - 109 < size(pad) <= MAX_TX_SIZE
    args = tmp_path / "rule.json"
    args.write_text(json.dumps({"rule": rule(pad)}))
    prop = tmp_path / "rule.prop"
    r = agency("propose", "register_rule", "--args", str(args), "--data", str(demo), "--agency",
               "edu", "--out", str(prop))
    assert r.returncode == 0, r.stderr
    before = prop.read_bytes()
    assert len(parse_proposal(before).sigs) == 1
    r = agency("cosign", str(prop), "--data", str(demo), "--agency", "civil")  # no --yes
    assert r.returncode == 1, r.stderr
    said = " ".join(r.stderr.split())
    assert "Traceback" not in r.stderr
    assert "not signed: tx: with one more signature the transaction is" in said
    assert f"over the {MAX_TX_SIZE}-byte limit" in said and "propose the change again" in said
    assert "Sign this" not in r.stderr  # refused before asking
    assert prop.read_bytes() == before
    assert _gov_seq(demo) == seq


def test_rule_text_is_held_to_what_a_claim_may_hold() -> None:
    """Each catalogue rule is plain; line breaks and tabs are taken in expressions only, and a
    script's own joiners (Uyghur's zero-width non-joiner) in a parameter as in a claim."""
    from contracts.catalogue import RULES
    from ledger.keys import PrivateKey
    from ledger.network import rule_text_problem

    key = PrivateKey(b"\x07" * 32)

    def problem(**changes: Any) -> str | None:
        rule = {**RULES["elderly-allowance"], **changes}
        return rule_text_problem(make_tx("n", "governance", {
            "seq": 1, "action": "register_rule", "args": {"rule": rule}}, [key]))

    for name in RULES:
        assert problem(**RULES[name]) is None, name
    assert problem(clauses=[{"when": "claims.person_id.district !=\n\tparams.district",
                             "decision": "rejected", "reason": "not_resident"}]) is None
    assert problem(params=[{"name": "district", "str": "\u0626\u06c7\u200c\u064a"}]) is None
    # a line break is taken in an expression, never in a parameter a claim is compared with
    assert str(problem(params=[{"name": "district", "str": "Chang\nsheng"}])).startswith(
        "rule.params[0].str (parameter 'district') holds the invisible or control character "
        "\\x0a")
    assert problem(title="Allowance\ttab") == (
        "rule.title holds the invisible or control character \\x09 (U+0009): string claims may "
        "not hold one, and it would not look like what it is")
    assert str(problem(fast_track="now > 0 && '\u202e' == ''")).startswith(
        "rule.fast_track holds the invisible or control character \\u202e (U+202E)")
    # every string parameter, not just the first; and each clause
    assert str(problem(params=[{"name": "district", "str": "Changsheng"},
                               {"name": "office", "str": "East\u200bGate"}])).startswith(
        "rule.params[1].str (parameter 'office') holds the invisible or control character "
        "\\u200b")
    assert str(problem(clauses=[*RULES["elderly-allowance"]["clauses"], {
        "when": "claims.person_id.district == 'Cha\u0301ngsheng'", "decision": "rejected",
        "reason": "not_resident"}])).startswith(
        f"rule.clauses[{len(RULES['elderly-allowance']['clauses'])}].when is not in "
        "Unicode's composed form (NFC)")


def test_a_key_file_of_another_agency_signs_for_no_one_it_does_not_belong_to(
        demo: Path, tmp_path: Path) -> None:
    """``--agency civil`` with edu's issuer key in civil.issuer.key (a copied or misnamed file
    in a folder holding several agencies' keys) proposed and cosigned, saying "signed by civil",
    while the signature was edu's: civil's operator believed civil had signed, and a later
    ``cosign --agency edu`` said edu had signed already. Refused, naming whose key it is, and
    nothing written."""
    keys = demo / "keys"
    (keys / "civil.issuer.key").write_bytes((keys / "edu.issuer.key").read_bytes())
    prop, r = _propose_quorum(demo, tmp_path, 2, "civil")
    assert r.returncode == 1, r.stdout
    assert "civil.issuer.key holds the issuer key of 'edu', not of 'civil'" in r.stderr, r.stderr
    assert not prop.exists()

    prop, r = _propose_quorum(demo, tmp_path, 2, "market")
    assert r.returncode == 0, r.stderr
    before = prop.read_bytes()
    r = agency("cosign", str(prop), "--data", str(demo), "--agency", "civil", "--yes")
    assert r.returncode == 1 and "holds the issuer key of 'edu'" in r.stderr, r.stdout
    assert prop.read_bytes() == before


def test_an_invalidation_names_whose_key_it_shuts_out(demo: Path, tmp_path: Path) -> None:
    """An invalidate_key proposal showed its key only as 64 hex digits: an agency asked to
    cosign could not see that the key was, say, its own issuer key. Proposer and cosigner are
    told whose key, and which, it is (or that the registry knows no such key)."""
    civil = load_private_key(demo / "keys" / "civil.node.key", PASS)
    args = tmp_path / "invalidate.json"
    args.write_text(json.dumps({"kid": civil.kid.hex(), "from": int(time.time())}))
    prop = tmp_path / "invalidate.prop"
    r = agency("propose", "invalidate_key", "--args", str(args), "--data", str(demo),
               "--agency", "edu", "--out", str(prop))
    assert r.returncode == 0, r.stderr
    assert "  kid is the node key of 'civil'" in r.stdout, r.stdout
    r = agency("cosign", str(prop), "--data", str(demo), "--agency", "market")  # no answer
    assert r.returncode == 1 and "  kid is the node key of 'civil'" in r.stdout, r.stdout

    # a key the registry does not know: the ledger would refuse its invalidation, and with
    # the registry at hand propose says so and writes nothing (it was written, shown as "no
    # key the registry knows", before)
    args.write_text(json.dumps({"kid": "ab" * 32, "from": int(time.time())}))
    r = agency("propose", "invalidate_key", "--args", str(args), "--data", str(demo),
               "--agency", "edu", "--out", str(prop), "--force")
    assert r.returncode == 2, r.stderr
    assert "key abababababababab is not registered (unknown_key)" in r.stderr, r.stderr
    assert "no proposal was written" in r.stderr


def test_node_option_help_says_what_each_command_does_with_the_node() -> None:
    """``agency propose --help`` and ``cosign --help`` said --node reads the registry "(and
    submit to it)": neither submits anything, and each still reads its key from --data."""
    from typer.testing import CliRunner

    from ledger.cli import agency_app

    for command, submits in (("propose", False), ("cosign", False), ("submit", True)):
        r = CliRunner().invoke(agency_app, [command, "--help"], env={"COLUMNS": "400"})
        assert r.exit_code == 0, r.output
        said = " ".join(r.output.replace("│", " ").split())
        assert ("submit to it" in said) == submits, (command, said)
        assert ("key file is still read from --data" in said) != submits, (command, said)


def test_a_change_the_ledger_refuses_whoever_signs_it_is_neither_proposed_nor_signed(
        demo: Path, tmp_path: Path) -> None:
    """A grant of a type the network never registered, a key rotated to one registered
    already, a quorum above the agencies that can sign: each was written, shown and cosigned
    by the whole quorum, and only the commit refused it. With the registry at hand (--data),
    propose applies the change to it as a block would, says the ledger's reason and writes
    nothing, and cosign signs nothing (ADR 72 left it)."""
    seq = _gov_seq(demo)
    civil_issuer = load_private_key(demo / "keys" / "civil.issuer.key", PASS).public.raw
    args = tmp_path / "args.json"
    out = tmp_path / "none.prop"
    refused = (
        ("grant", {"agency": "edu", "type": "no-such-type", "from": "2027-01-01",
                   "until": "2030-01-01"}, "credential type 'no-such-type' is not registered"),
        ("rotate_key", {"agency": "edu", "role": "node", "new_key": civil_issuer.hex(),
                        "at": int(time.time())}, "is already registered (key_reused)"),
        ("set_quorum", {"quorum": 4}, "quorum 4 > 3 member agencies that can still sign"))
    for action, given, said in refused:
        args.write_text(json.dumps(given))
        r = agency("propose", action, "--args", str(args), "--data", str(demo), "--agency",
                   "edu", "--out", str(out))
        assert r.returncode == 2, (action, r.stderr)
        assert said in " ".join(r.stderr.split()), (action, r.stderr)
        assert "no proposal was written" in r.stderr and not out.exists()
    edu = load_private_key(demo / "keys" / "edu.issuer.key", PASS)
    prop = tmp_path / "other-tool.prop"
    prop.write_bytes(make_tx("changsheng-demo", "governance", {
        "seq": seq + 1, "action": "set_quorum", "args": {"quorum": 4}}, [edu]).raw)
    before = prop.read_bytes()
    r = agency("cosign", str(prop), "--data", str(demo), "--agency", "civil", "--yes")
    assert r.returncode == 1 and "not signed: quorum 4 > 3" in " ".join(r.stderr.split())
    assert prop.read_bytes() == before and _gov_seq(demo) == seq

    # what the ledger takes is still proposed; with a quorum of one, submit comes next
    args.write_text(json.dumps({"quorum": 1}))
    _govern(demo, "set_quorum", args, "edu", "civil")
    args.write_text(json.dumps({"agency": "market"}))
    prop = tmp_path / "remove.prop"
    r = agency("propose", "remove_agency", "--args", str(args), "--data", str(demo),
               "--agency", "edu", "--out", str(prop))
    assert r.returncode == 0, r.stderr
    assert f"next: agency submit {prop}" in " ".join(r.stdout.split()), r.stdout
    assert agency("submit", str(prop), "--data", str(demo)).returncode == 0
    # the ledger's own words for an id given again after its agency was removed
    market = load_private_key(demo / "keys" / "market.issuer.key", PASS).public.raw
    prop.write_bytes(make_tx("changsheng-demo", "governance", {
        "seq": _gov_seq(demo) + 1, "action": "add_agency", "args": {"agency": {
            "id": "market", "name": "Market again", "node_key": bytes(range(32)),
            "issuer_key": market}}}, [edu]).raw)
    r = agency("submit", str(prop), "--data", str(demo))
    assert r.returncode == 1, r.stderr
    assert "'market' was removed, and an agency id is never given again" in r.stderr, r.stderr


def test_a_submit_the_disk_cannot_take_is_one_line_and_commits_nothing(
        demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`agency submit --data` whose block the store cannot write (a full disk, here the store's
    write injected as LevelDB raises it): one line saying the proposal was not committed and
    why, exit 1, not the orderer's traceback; the proposal file and the registry stay."""
    import plyvel
    from typer.testing import CliRunner

    from ledger import cli

    args = tmp_path / "grant.json"
    args.write_text(json.dumps({"agency": "edu", "type": "residence", "from": "2027-01-01",
                                "until": "2030-01-01"}))
    prop = tmp_path / "grant.prop"
    for step in (["propose", "grant", "--args", str(args), "--data", str(demo), "--agency",
                  "edu", "--out", str(prop)],
                 ["cosign", str(prop), "--data", str(demo), "--agency", "civil", "--yes"]):
        r = agency(*step)
        assert r.returncode == 0, (step[0], r.stderr)
    signed, seq = prop.read_bytes(), _gov_seq(demo)

    def full(*_: object, **__: object) -> None:
        raise plyvel.IOError(f"IO error: {demo}/ledger/000009.log: No space left on "
                             "device".encode())

    monkeypatch.setattr(Store, "write_block", full)
    got = CliRunner().invoke(cli.agency_app, ["submit", str(prop), "--data", str(demo)],
                             env={"LEDGER_KEY_PASSPHRASE": PASS.decode(), "COLUMNS": "300"})
    assert got.exit_code == 1 and isinstance(got.exception, SystemExit), (got.output,
                                                                          got.exception)
    said = " ".join(got.output.split())
    assert "not committed" in said and "No space left on device" in said, said
    assert prop.read_bytes() == signed
    monkeypatch.undo()
    assert _gov_seq(demo) == seq


def test_a_date_that_is_no_day_or_a_time_before_1970_is_said_as_such() -> None:
    """A date written as YYYY-MM-DD whose day does not exist (29 February of a common year,
    a 31 April) was refused as if it were no date at all ("must be a Unix time (a JSON number,
    not a string), a date YYYY-MM-DD or …"); now the refusal says the day does not exist. A
    time half a second before 1970 became 1970 itself (rounded towards zero), a time after
    it: it is the second before, which the ledger's schema refuses (below 0)."""
    from ledger.governance import unix_time

    for day in ("2025-02-29", "2026-04-31", "2026-13-01"):
        with pytest.raises(DecodeError, match=rf"--date: {day} is no day of the calendar"):
            unix_time(day, "--date")
    assert unix_time("2024-02-29", "--date") == 1709164800  # a leap day is one
    assert unix_time("1969-12-31T23:59:59.5Z", "--date") == -1
    assert unix_time("1970-01-01T00:00:00.5Z", "--date") == 0
    with pytest.raises(DecodeError, match=r"--date: must be a Unix time"):  # the day is one
        unix_time("2026-01-01T25:00:00Z", "--date")


def test_a_nodes_answer_to_a_proposal_is_cut_where_it_is_shown(tmp_path: Path) -> None:
    """`agency submit --node` showed the node's receipt fields whole, and its answer that was
    no receipt whole on the error line: a hostile node's MiB on the terminal. Both are cut
    (helper round 39O)."""
    from test_agency_cli import _AnsweringNode
    from test_audit_since_monitor import _start_serving, _stop_serving

    data = make_demo(tmp_path / "demo-data")
    args = tmp_path / "type.json"
    args.write_text(json.dumps({"type": {
        "id": "fishing-licence", "title": "Fishing licence",
        "claims": {"holder_name": "string"}, "derived": {}}}))
    prop = tmp_path / "type.prop"
    long = "\x1b[2J[green]ok[/green]\n" + "A" * (1 << 20)
    app = create_app(settings_for(data), clock=lambda: NOW, passphrase=PASS)
    with serve(app) as real:
        for who, step in (("edu", "propose"), ("market", "cosign")):
            r = (agency("propose", "register_type", "--args", str(args), "--data", str(data),
                        "--agency", who, "--node", real, "--out", str(prop))
                 if step == "propose" else
                 agency("cosign", str(prop), "--data", str(data), "--agency", who, "--node",
                        real, "--yes"))
            assert r.returncode == 0, r.stderr
        for answer, code in (({"txid": long, "index": long, "height": long}, 0),
                             ([long], 1),
                             # its wait ended first: accepted, pending, its receipt's place
                             # named by the proposal's own txid (helper round 42L)
                             ({"txid": long, "status": "pending"}, 1)):

            class Node(_AnsweringNode):
                said = answer

                def do_GET(self) -> None:  # the registry as the real node has it
                    self._answer(httpx.get(real + self.path).json())

                def do_POST(self) -> None:
                    self.rfile.read(int(self.headers["content-length"]))
                    self._answer(self.said)

            url = _start_serving(Node)
            try:
                r = agency("submit", str(prop), "--node", url)
            finally:
                _stop_serving(url)
            assert r.returncode == code, r.stderr[-2000:]
            shown = r.stdout + r.stderr
            assert "\x1b" not in shown and "A" * 400 not in shown, shown[:500]
            if isinstance(answer, dict) and answer.get("status") == "pending":
                line = " ".join(shown.split())
                assert "accepted the proposal but has not committed it yet" in line, line
                assert re.search(r"/v1/tx/[0-9a-f]{64}/receipt", line), line
                continue
            assert len(shown) < 1000 and "[green]ok" in shown, shown[:500]
