"""`ledger verify` and `ledger snapshot` as real processes: demo → agency issue → present → verify,
live (--data) and offline (--snapshot), plus the snapshot format's own checks."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ledger import codec, sdjwt
from ledger.credentials import status_list, status_list_uri
from ledger.keys import PrivateKey, load_private_key
from ledger.offline import (
    SnapshotError,
    export_snapshot,
    load_snapshot,
    merge_snapshots,
    store_status_list,
)
from ledger.presentation import Bundle, Envelope, Request, verify_envelope
from ledger.statuslist import make_token
from ledger.store import Store

BIN = Path(sys.executable).parent
ENV = {**os.environ, "LEDGER_KEY_PASSPHRASE": "test-only", "COLUMNS": "200"}
NETWORK = "changsheng-demo"
HOLDER = PrivateKey(hashlib.sha256(b"verify-cli-holder").digest())
CLAIMS = {"holder_name": "Chen Jie-93b0", "district": "Yuelu-2a", "birth_date": "1979-11-30",
          "resident_since": "2001-02-03"}
REQUEST = {"nonce": "n-5f0c2b8e9d1a", "audience": "https://housing.example/verify",
           "type": "residence", "claims": ["district", "age_over_18"]}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True,
                          env=ENV, timeout=300, check=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("verify") / "demo-data"
    r = _run("ledger-node", "demo", "--data", str(data))
    assert r.returncode == 0, r.stderr
    return data


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("verify-files")
    (d / "holder.jwk.json").write_text(json.dumps(sdjwt.jwk_from_ed25519(HOLDER.public.raw)))
    (d / "claims.json").write_text(json.dumps(CLAIMS))
    (d / "request.json").write_text(json.dumps(REQUEST))
    return d


def _issue(demo: Path, work: Path, name: str) -> tuple[Bundle, str]:
    out = work / f"{name}.bundle"
    r = _run("agency", "issue", "--data", str(demo), "--agency", "civil", "--type", "residence",
             "--claims", str(work / "claims.json"), "--holder-jwk",
             str(work / "holder.jwk.json"), "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    return Bundle.from_bytes(out.read_bytes()), json.loads(r.stdout)["credential_id"]


def _present(bundle: Bundle, request: dict[str, Any] = REQUEST) -> bytes:
    kb = sdjwt.present(bundle.sd_jwt, disclose=request["claims"], holder_key=HOLDER,
                       nonce=request["nonce"], aud=request["audience"], iat=int(time.time()))
    return Envelope.from_bundle(bundle, kb).to_bytes()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _verify(envelope: str | Path, *mode: str, request: Path | None = None,
            as_json: bool = True) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    args = ["ledger", "verify", str(envelope), "--request", str(request), *mode]
    r = _run(*args, *(["--json"] if as_json else []))
    return r, (json.loads(r.stdout) if as_json and r.stdout.strip() else {})


@pytest.fixture(scope="module")
def issued(demo: Path, work: Path) -> Bundle:
    bundle, _ = _issue(demo, work, "main")
    return bundle


def test_verified_and_only_the_requested_claims(demo: Path, work: Path, issued: Bundle) -> None:
    env = work / "env.bin"
    env.write_bytes(_present(issued))
    r, report = _verify(env, "--data", str(demo), request=work / "request.json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert {"verified", "checks", "claims"} <= set(report)
    assert report["verified"] is True
    assert report["status"] == "valid"
    assert report["claims"] == {"district": "Yuelu-2a", "age_over_18": True}
    assert all(c["ok"] for c in report["checks"])
    assert "snapshot_age_s" not in report


def test_envelope_as_base64url_argument_and_as_text_file(demo: Path, work: Path,
                                                         issued: Bundle) -> None:
    text = _b64url(_present(issued))
    r, report = _verify(text, "--data", str(demo), request=work / "request.json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert report["verified"] is True
    path = work / "env.b64"
    path.write_text(text + "\n")
    r, report = _verify(path, "--data", str(demo), request=work / "request.json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert report["verified"] is True
    assert "command line" not in r.stderr  # a file keeps the claims off it


def test_envelope_from_standard_input_and_a_note_for_one_on_the_command_line(
        demo: Path, work: Path, issued: Bundle) -> None:
    """Any user of the machine can read a command line while it runs: the envelope text on it
    (its disclosed claims) gets a note, and ``-`` reads it from a pipe instead."""
    text = _b64url(_present(issued))
    r, report = _verify(text, "--data", str(demo), request=work / "request.json")
    assert r.returncode == 0 and report["verified"] is True, r.stderr
    assert "/proc/<pid>/cmdline" in " ".join(r.stderr.split())
    for given in (text.encode() + b"\n", _present(issued)):
        r = subprocess.run([str(BIN / "ledger"), "verify", "-", "--request",
                            str(work / "request.json"), "--data", str(demo), "--json"],
                           input=given, capture_output=True, env=ENV, timeout=300, check=False)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["verified"] is True and b"cmdline" not in r.stderr
    r = subprocess.run([str(BIN / "ledger"), "verify", "-", "--request",
                        str(work / "request.json"), "--data", str(demo)],
                       input=b"", capture_output=True, env=ENV, timeout=300, check=False)
    assert r.returncode == 2 and b"no envelope on standard input" in r.stderr, r.stderr


def test_readable_report(demo: Path, work: Path, issued: Bundle) -> None:
    r, _ = _verify(_b64url(_present(issued)), "--data", str(demo),
                   request=work / "request.json", as_json=False)
    assert r.returncode == 0, r.stdout + r.stderr
    for text in ("Presentation checks", "anchor_inclusion", "Disclosed claims", "Yuelu-2a",
                 "status: valid", "VERIFIED"):
        assert text in r.stdout
    assert "outside the network" not in r.stdout  # said of a credential checked by --trust
    assert "Chen Jie-93b0" not in r.stdout  # not requested, so not disclosed


def test_wrong_nonce_is_not_verified(demo: Path, work: Path, issued: Bundle) -> None:
    other = work / "other-nonce.json"
    other.write_text(json.dumps({**REQUEST, "nonce": "n-another-one"}))
    r, report = _verify(_b64url(_present(issued)), "--data", str(demo), request=other)
    assert r.returncode == 1
    assert report["verified"] is False
    failed = [c for c in report["checks"] if not c["ok"]]
    assert failed[0]["check"] == "sd_jwt"
    assert report["claims"] == {}


def test_revocation_shows_as_revoked(demo: Path, work: Path) -> None:
    bundle, cid = _issue(demo, work, "to-revoke")
    text = _b64url(_present(bundle))
    r, report = _verify(text, "--data", str(demo), request=work / "request.json")
    assert r.returncode == 0, r.stdout + r.stderr
    r = _run("agency", "status", "--data", str(demo), "--agency", "civil", "--credential-id",
             cid, "--set", "revoked", "--reason", "withdrawn")
    assert r.returncode == 0, r.stderr
    r, report = _verify(text, "--data", str(demo), request=work / "request.json")
    assert r.returncode == 1
    assert report["verified"] is False
    assert report["status"] == "revoked"
    r, _ = _verify(text, "--data", str(demo), request=work / "request.json", as_json=False)
    assert r.returncode == 1
    assert "status: revoked" in r.stdout
    assert "NOT VERIFIED" in r.stdout


def _snapshot(demo: Path, out: Path) -> None:
    r = _run("ledger", "snapshot", "--data", str(demo), "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    assert status_list_uri(NETWORK, "civil", "residence") in json.loads(r.stdout)["status_lists"]


def test_snapshot_mode_verifies_offline_and_reports_its_age(demo: Path, work: Path) -> None:
    bundle, cid = _issue(demo, work, "offline")
    text = _b64url(_present(bundle))
    before = work / "before.snapshot"
    _snapshot(demo, before)
    r, report = _verify(text, "--snapshot", str(before), request=work / "request.json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert report["verified"] is True
    assert report["claims"] == {"district": "Yuelu-2a", "age_over_18": True}
    assert isinstance(report["snapshot_age_s"], int)
    r, _ = _verify(text, "--snapshot", str(before), request=work / "request.json",
                   as_json=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "snapshot made" in r.stdout

    r = _run("agency", "status", "--data", str(demo), "--agency", "civil", "--credential-id",
             cid, "--set", "suspended", "--reason", "under-review")
    assert r.returncode == 0, r.stderr
    # The old snapshot still says what the lists said when it was made; a new one knows.
    r, report = _verify(text, "--snapshot", str(before), request=work / "request.json")
    assert report["status"] == "valid"
    after = work / "after.snapshot"
    _snapshot(demo, after)
    r, report = _verify(text, "--snapshot", str(after), request=work / "request.json")
    assert r.returncode == 1
    assert report["status"] == "suspended"


def test_a_snapshot_older_than_the_credential_leaves_its_status_undetermined(
        demo: Path, work: Path) -> None:
    old = work / "older.snapshot"
    _snapshot(demo, old)
    bundle, cid = _issue(demo, work, "after-the-snapshot")
    r = _run("agency", "status", "--data", str(demo), "--agency", "civil", "--credential-id",
             cid, "--set", "revoked", "--reason", "withdrawn")
    assert r.returncode == 0, r.stderr
    text = _b64url(_present(bundle))
    r, report = _verify(text, "--snapshot", str(old), request=work / "request.json")
    assert r.returncode == 1, r.stdout
    assert (report["verified"], report["status"]) == (False, "undetermined")
    assert "before this credential was anchored" in report["checks"][-1]["detail"]
    r, report = _verify(text, "--data", str(demo), request=work / "request.json")
    assert report["status"] == "revoked"


def _snapshot_map(path: Path) -> dict[str, Any]:
    value = codec.decode(path.read_bytes(), max_size=1 << 26)
    assert isinstance(value, dict)
    return value


def test_forged_status_list_is_undetermined(demo: Path, work: Path, issued: Bundle) -> None:
    """A list not signed by the issuer's node key is never believed, whatever it says."""
    path = work / "forged.snapshot"
    _snapshot(demo, path)
    snap = _snapshot_map(path)
    wrong_key = load_private_key(demo / "keys" / "civil.issuer.key", b"test-only")
    cid = hashlib.sha256(issued.sd_jwt.split("~", 1)[0].encode()).digest()
    with Store(demo / "ledger", create=False) as store:
        cred = store.credential(cid)
    assert cred is not None
    uri = status_list_uri(NETWORK, "civil", "residence")
    forged = make_token(status_list([(cred.status_index, "revoked")]), sub=uri,
                        iat=snap["fetched_at"], exp=None, ttl=None, key=wrong_key,
                        kid=wrong_key.kid.hex())
    for item in snap["status_lists"]:
        if (item["issuer"], item["type"]) == ("civil", "residence"):
            item["token"] = forged
    path.write_bytes(codec.encode(snap))
    r, report = _verify(_b64url(_present(issued)), "--snapshot", str(path),
                        request=work / "request.json")
    assert r.returncode == 1
    assert report["status"] == "undetermined"

    snap["status_lists"] = [i for i in snap["status_lists"] if i["issuer"] != "civil"]
    path.write_bytes(codec.encode(snap))
    r, report = _verify(_b64url(_present(issued)), "--snapshot", str(path),
                        request=work / "request.json")
    assert r.returncode == 1
    assert report["status"] == "undetermined"


def test_snapshot_library_round_trip(demo: Path, issued: Bundle) -> None:
    keys = {a: load_private_key(demo / "keys" / f"{a}.node.key", b"test-only")
            for a in ("civil", "edu", "market")}
    with Store(demo / "ledger", create=False) as store:
        assert store.head is not None
        now = store.head.time + 5
        blob = export_snapshot(store, now, node_keys=keys)
        with pytest.raises(SnapshotError, match="no node key of 'civil'"):
            export_snapshot(store, now, node_keys={"edu": keys["edu"]})
        with pytest.raises(SnapshotError, match="not its valid node key"):
            export_snapshot(store, now, node_keys={**keys, "civil": keys["edu"]})
        head = store.head
    assert codec.encode(codec.decode(blob, max_size=1 << 26)) == blob
    snap = load_snapshot(blob)
    assert (snap.network, snap.fetched_at, snap.log_size) == (NETWORK, now, head.log_size)
    assert snap.age(now + 42) == 42
    uri = status_list_uri(NETWORK, "civil", "residence")
    assert snap.status_lists(uri) is not None
    assert snap.status_lists(status_list_uri(NETWORK, "civil", "degree")) is None
    req = Request.from_json(REQUEST)
    env = _present(issued)
    report = verify_envelope(env, req, registry=snap.registry, now=int(time.time()),
                             status_lists=snap.status_lists)
    assert report.verified, report.to_json()


@pytest.mark.parametrize("mutate", [
    lambda m: {**m, "extra": 1},
    lambda m: {**m, "network": "another-net"},
    lambda m: {**m, "checkpoint": m["checkpoint"].split("\n\n")[0] + "\n\n"},
    lambda m: {k: v for k, v in m.items() if k != "registry"},
])
def test_malformed_snapshots_are_refused(demo: Path, work: Path, issued: Bundle,
                                         mutate: Any) -> None:
    path = work / "base.snapshot"
    if not path.exists():
        _snapshot(demo, path)
    bad = codec.encode(mutate(_snapshot_map(path)))
    with pytest.raises(SnapshotError):
        load_snapshot(bad)
    bad_path = work / "bad.snapshot"
    bad_path.write_bytes(bad)
    r, _ = _verify(_b64url(_present(issued)), "--snapshot", str(bad_path),
                   request=work / "request.json", as_json=False)
    assert r.returncode == 2
    assert "bad.snapshot" in r.stderr


def test_bad_input_exits_2(demo: Path, work: Path, issued: Bundle) -> None:
    text = _b64url(_present(issued))
    req = work / "request.json"
    r, _ = _verify(text, request=req, as_json=False)
    assert r.returncode == 2
    assert "exactly one of --data" in r.stderr
    r, _ = _verify(text, "--data", str(demo), "--snapshot", str(work / "x"), request=req,
                   as_json=False)
    assert r.returncode == 2
    r, _ = _verify(str(work / "no-such-envelope.bin"), "--data", str(demo), request=req,
                   as_json=False)
    assert r.returncode == 2
    assert "neither an existing file nor a base64url string" in r.stderr
    r, _ = _verify(_b64url(b"\x92\x01" + bytes(60)), "--data", str(demo), request=req,
                   as_json=False)
    assert r.returncode == 2
    assert "not a presentation envelope" in r.stderr
    r, _ = _verify("envelope", "--data", str(demo), request=req, as_json=False)
    assert r.returncode == 2
    assert "there is no envelope file envelope" in r.stderr
    png = work / "envelope.png"  # the QR code image, which people will try
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    r, _ = _verify(png, "--data", str(demo), request=req, as_json=False)
    assert r.returncode == 2
    assert "is a PNG image" in r.stderr
    bad_req = work / "bad-request.json"
    bad_req.write_text(json.dumps({"nonce": "n", "audience": "a"}))
    r, _ = _verify(text, "--data", str(demo), request=bad_req, as_json=False)
    assert r.returncode == 2
    assert "not a presentation request" in r.stderr
    r, _ = _verify(text, "--snapshot", str(work / "missing.snapshot"), request=req,
                   as_json=False)
    assert r.returncode == 2
    assert "cannot read the snapshot" in r.stderr
    from ledger.offline import MAX_SNAPSHOT

    huge = work / "huge.snapshot"  # sparse: read whole (64 MiB and more) before it was refused
    with huge.open("wb") as f:
        f.truncate(MAX_SNAPSHOT + 1)
    for named in (huge, Path("/dev/zero")):  # /dev/zero was read without end
        r, _ = _verify(text, "--snapshot", str(named), request=req, as_json=False)
        assert r.returncode == 2
        said = " ".join(r.stderr.split())
        assert f"the snapshot file {named} is over {MAX_SNAPSHOT} bytes" in said


def test_unreadable_envelopes_with_json_still_print_a_verdict(demo: Path, work: Path,
                                                              issued: Bundle) -> None:
    """--json: an envelope that cannot be read is bad input (exit 2), and standard output
    still holds one JSON report, not verified, saying what could not be read."""
    req = work / "request.json"
    whole = _present(issued)
    truncated, not_envelope = work / "truncated.bin", work / "not-an-envelope.bin"
    truncated.write_bytes(whole[:len(whole) // 2])
    not_envelope.write_bytes(codec.encode({"hello": 1}))
    png = work / "qr.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    folder = work / "a-folder.bin"  # exists, but no file to read (root reads what chmod hides)
    folder.mkdir(exist_ok=True)
    for source, said in [(truncated, "not a presentation envelope"),
                         (not_envelope, "not a presentation envelope"),
                         (_b64url(whole[:60]), "not a presentation envelope"),
                         (png, "is a PNG image"),
                         (folder, "cannot read the envelope file"),
                         (work / "no-such-envelope.bin", "neither an existing file"),
                         ("envelope", "there is no envelope file envelope")]:
        r, report = _verify(source, "--data", str(demo), request=req)
        assert r.returncode == 2, (source, r.stdout, r.stderr)
        assert said in r.stderr, r.stderr
        assert report["verified"] is False and report["status"] == "undetermined", report
        assert said in report["error"] and report["claims"] == {}
        assert report["checks"] == [{"check": "envelope", "ok": False,
                                     "detail": report["error"]}]
    r, report = _verify(truncated, "--snapshot", str(work / "x"), request=req)
    assert r.returncode == 2 and report["verified"] is False  # --snapshot: the same
    r, _ = _verify(truncated, request=req)  # a usage error is no verdict: stdout stays empty
    assert r.returncode == 2 and r.stdout == "" and "exactly one of --data" in r.stderr


def test_request_command_makes_fresh_valid_requests(work: Path) -> None:
    out = work / "fresh-request.json"
    r = _run("ledger", "request", "--type", "residence", "--audience", "https://desk.example",
             "--claim", "district", "--claim", "age_over_18", "--claim", "district",
             "--out", str(out))
    assert r.returncode == 0, r.stderr
    body = json.loads(out.read_text())
    req = Request.from_json(body)
    assert (req.credential_type, req.audience, req.claims) == (
        "residence", "https://desk.example", ("district", "age_over_18"))
    assert len(req.nonce) >= 22  # 128 random bits, base64url
    printed = _run("ledger", "request", "--type", "residence", "--audience", "x")
    assert printed.returncode == 0, printed.stderr
    again = json.loads(printed.stdout)
    assert again["claims"] == []
    assert again["nonce"] != body["nonce"]
    # An approval credential means nothing without its decision (rejections get one too).
    approval = _run("ledger", "request", "--type", "approval", "--audience", "x",
                    "--claim", "path")
    assert approval.returncode == 0, approval.stderr
    assert json.loads(approval.stdout)["claims"] == ["path", "service", "decision", "approval_tx"]
    assert "also asking for service, decision, approval_tx" in approval.stderr
    bad = _run("ledger", "request", "--type", "", "--audience", "x")
    assert bad.returncode == 2
    assert "request.type" in bad.stderr
    bad = _run("ledger", "request", "--type", "residence", "--audience", "x", "--claim", "")
    assert bad.returncode == 2
    assert "request.claims[0]" in bad.stderr
    # An existing file (say, a nonce log named by mistake) is not replaced without --force.
    log = work / "kept.log"
    log.write_text("keep me\n")
    bad = _run("ledger", "request", "--type", "residence", "--audience", "x", "--out", str(log))
    assert bad.returncode == 2
    assert "exists" in bad.stderr and "--force" in bad.stderr
    assert log.read_text() == "keep me\n"
    forced = _run("ledger", "request", "--type", "residence", "--audience", "x", "--out",
                  str(log), "--force")
    assert forced.returncode == 0, forced.stderr
    assert Request.from_json(json.loads(log.read_text())).audience == "x"


def test_a_request_for_what_the_registry_does_not_hold_is_refused_when_it_is_given(
        demo: Path, work: Path) -> None:
    """`ledger request --type` took any type (ADR 77): a misspelt one was found only when the
    citizen's wallet refused it. With the registry (--snapshot or --data, as `ledger verify`
    reads it), a type no issuer of the network issues, or a claim it does not have, is refused
    (exit 2) and nothing is written; without one, the type is taken as it is (an outside
    issuer's type for `ledger verify --trust`, which no registry holds)."""
    snap = work / "request-registry.json"
    _snapshot(demo, snap)
    out = work / "refused-request.json"
    for source in (["--snapshot", str(snap)], ["--data", str(demo)]):
        bad = _run("ledger", "request", "--type", "residense", "--audience", "x", *source,
                   "--out", str(out))
        assert bad.returncode == 2 and not out.exists() and not bad.stdout, bad
        assert "'residense' is not a credential type of the network" in bad.stderr, bad.stderr
        bad = _run("ledger", "request", "--type", "residence", "--audience", "x", "--claim",
                   "districtt", *source)
        assert bad.returncode == 2 and not bad.stdout, bad
        assert "'districtt' is not a claim of 'residence'" in bad.stderr, bad.stderr
        good = _run("ledger", "request", "--type", "residence", "--audience", "x", "--claim",
                    "district", "--claim", "age_over_65", *source)
        assert good.returncode == 0, good.stderr
        assert json.loads(good.stdout)["claims"] == ["district", "age_over_65"]
    both = _run("ledger", "request", "--type", "residence", "--audience", "x", "--data",
                str(demo), "--snapshot", str(snap))
    assert both.returncode == 2 and "one of --data or --snapshot" in both.stderr, both.stderr
    outside = _run("ledger", "request", "--type", "https://register.example/birth",
                   "--audience", "x", "--claim", "birth_date")
    assert outside.returncode == 0, outside.stderr


def test_nonce_log_refuses_a_replayed_presentation(demo: Path, work: Path,
                                                   issued: Bundle) -> None:
    request = {**REQUEST, "nonce": "n-once-7c1e"}
    req = work / "once-request.json"
    req.write_text(json.dumps(request))
    log = work / "used-nonces.log"
    envelope = _b64url(_present(issued, request))
    first, report = _verify(envelope, "--data", str(demo), "--nonce-log", str(log), request=req)
    assert first.returncode == 0, first.stdout + first.stderr
    assert report["verified"] is True
    # the log keeps a digest of the nonce, not the nonce
    assert log.read_text() == hashlib.sha256(b"n-once-7c1e").hexdigest() + "\n"
    assert "n-once-7c1e" not in log.read_text()
    # the same presentation again, live or offline: a replay
    snap = work / "once.snapshot"
    made = _run("ledger", "snapshot", "--data", str(demo), "--out", str(snap))
    assert made.returncode == 0, made.stderr
    for mode in (("--data", str(demo)), ("--snapshot", str(snap))):
        again, report = _verify(envelope, *mode, "--nonce-log", str(log), request=req)
        assert again.returncode == 1
        assert report["verified"] is False
        assert report["checks"] == [{"check": "nonce_fresh", "ok": False,
                                     "detail": "this request's nonce was already used: a "
                                               "replay"}]
    assert len(log.read_text().splitlines()) == 1
    # without the log nothing is remembered (each run stands alone)
    plain, report = _verify(envelope, "--data", str(demo), request=req)
    assert plain.returncode == 0, plain.stdout + plain.stderr


def test_nonce_log_that_is_not_one_is_refused_and_left_alone(demo: Path, work: Path,
                                                             issued: Bundle) -> None:
    text = _b64url(_present(issued))
    other = work / "not-a-log.txt"
    other.write_text("shopping list\n")
    r, _ = _verify(text, "--data", str(demo), "--nonce-log", str(other),
                   request=work / "request.json", as_json=False)
    assert r.returncode == 2
    assert "is not a nonce digest" in r.stderr
    assert other.read_text() == "shopping list\n"
    r, _ = _verify(text, "--data", str(demo), "--nonce-log", str(work / "no-dir" / "x.log"),
                   request=work / "request.json", as_json=False)
    assert r.returncode == 2
    assert "cannot use the nonce log" in r.stderr


def test_a_removed_agencys_lists_are_left_out_of_snapshots_and_refused_in_them(
        demo: Path, tmp_path: Path) -> None:
    """A removed agency signs nothing a verifier counts: `ledger snapshot` leaves its lists out
    (and says so) instead of signing them with its node key, or failing for everyone once that
    key is gone; a snapshot carrying such a list has it refused (ADR 46)."""
    import shutil

    from ledger.errors import LedgerError
    from ledger.offline import left_out_lists
    from ledger.ordering import SoloOrderer
    from ledger.tx import make_tx

    data = tmp_path / "demo-data"
    shutil.copytree(demo, data)
    issuers = [load_private_key(data / "keys" / f"{a}.issuer.key", b"test-only")
               for a in ("civil", "edu")]
    with Store(data / "ledger", create=False) as store:
        assert store.registry is not None
        gov = make_tx(store.registry.network, "governance",
                      {"seq": store.registry.gov_seq + 1, "action": "remove_agency",
                       "args": {"agency": "market"}}, issuers)
        with SoloOrderer(store, clock=lambda: int(time.time()), workers=0) as orderer:
            orderer.submit(gov).result()
        assert store.registry is not None
        market = status_list_uri(store.registry.network, "market", "business-licence")
        assert list(left_out_lists(store, int(time.time()))) == [market]
    (data / "keys" / "market.node.key").unlink()  # the removed agency's key is gone too
    out = tmp_path / "snap.bin"
    r = _run("ledger", "snapshot", "--data", str(data), "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    assert f"left out {market}" in " ".join(r.stderr.split())
    assert json.loads(r.stdout)["left_out"] == [market]
    snap = _snapshot_map(out)
    assert "market" not in {i["issuer"] for i in snap["status_lists"]}
    # a snapshot that carries the removed agency's list, signed with its node key: refused
    market_key = load_private_key(demo / "keys" / "market.node.key", b"test-only")
    token = make_token(status_list([]), sub=market, iat=snap["fetched_at"], exp=None,
                       ttl=None, key=market_key, kid=market_key.kid.hex())
    snap["status_lists"].append({"issuer": "market", "type": "business-licence",
                                 "token": token})
    loaded = load_snapshot(codec.encode(snap))
    assert loaded.status_lists(market) is None
    with pytest.raises(LedgerError, match="not a member of the network"):
        loaded.status_list(market)


def test_a_current_agency_with_no_valid_node_key_has_its_lists_left_out(
        demo: Path, tmp_path: Path) -> None:
    """An agency whose node key was invalidated with no successor cannot sign its lists; the
    snapshot leaves them out and says why, rather than failing for every agency (ADR 47)."""
    import shutil

    from ledger.offline import left_out_lists
    from ledger.ordering import SoloOrderer
    from ledger.tx import make_tx

    data = tmp_path / "demo-data"
    shutil.copytree(demo, data)
    issuers = [load_private_key(data / "keys" / f"{a}.issuer.key", b"test-only")
               for a in ("civil", "edu")]
    market_node = load_private_key(data / "keys" / "market.node.key", b"test-only")
    now = int(time.time())
    with Store(data / "ledger", create=False) as store:
        assert store.registry is not None
        market = status_list_uri(store.registry.network, "market", "business-licence")
        assert left_out_lists(store, now) == {}
        gov = make_tx(store.registry.network, "governance",
                      {"seq": store.registry.gov_seq + 1, "action": "invalidate_key",
                       "args": {"kid": market_node.kid, "from": now - 5}}, issuers)
        with SoloOrderer(store, clock=lambda: int(time.time()), workers=0) as orderer:
            orderer.submit(gov).result()
        assert store.registry is not None
        assert store.registry.agency_current("market", now)
        why = left_out_lists(store, now)
        assert list(why) == [market]
        assert "no valid node key" in why[market]
    (data / "keys" / "market.node.key").unlink()
    out = tmp_path / "snap.bin"
    r = _run("ledger", "snapshot", "--data", str(data), "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    said = " ".join(r.stderr.split())
    assert f"left out {market}: 'market' has no valid node key" in said
    assert json.loads(r.stdout)["left_out"] == [market]
    snap = _snapshot_map(out)
    issuers_left = {i["issuer"] for i in snap["status_lists"]}
    assert "market" not in issuers_left and {"civil", "edu"} <= issuers_left


def test_parts_of_each_agencys_node_merge_into_one_snapshot(demo: Path, issued: Bundle) -> None:
    """On a network each agency's node signs its own lists (GET /v1/snapshot): the parts merge
    into the snapshot one holder of every key would make; a missing part is named, and a
    list signed by another agency's key is refused without hiding the right one."""
    keys = {a: load_private_key(demo / "keys" / f"{a}.node.key", b"test-only")
            for a in ("civil", "edu", "market")}
    with Store(demo / "ledger", create=False) as store:
        assert store.head is not None
        now = store.head.time + 5
        whole = load_snapshot(export_snapshot(store, now, node_keys=keys))
        parts = {a: export_snapshot(store, now + n, node_keys={a: keys[a]}, only_keyed=True)
                 for n, a in enumerate(keys)}
        civil_list = store_status_list(store, status_list_uri(NETWORK, "civil", "residence"))
    assert all(load_snapshot(p).tokens for p in parts.values())
    blob, missing = merge_snapshots(list(parts.values()))
    snap = load_snapshot(blob)
    assert missing == {} and snap.fetched_at == now  # as of the earliest part
    assert (snap.head_height, snap.log_size, snap.checkpoint) == (
        whole.head_height, whole.log_size, whole.checkpoint)
    assert set(snap.tokens) == set(whole.tokens)
    for uri in whole.tokens:
        assert snap.status_list(uri) == whole.status_list(uri)
    req = Request.from_json(REQUEST)
    report = verify_envelope(_present(issued), req, registry=snap.registry,
                             now=int(time.time()), status_lists=snap.status_lists)
    assert report.verified and report.status == "valid", report.to_json()

    _, missing = merge_snapshots([parts["edu"], parts["market"]])
    assert list(missing) == ["civil"] and "its own node was not asked" in missing["civil"]

    uri = status_list_uri(NETWORK, "civil", "residence")
    assert civil_list is not None
    forged = codec.decode(parts["edu"], max_size=1 << 26)
    forged["fetched_at"] = now + 9  # the newest part: its list of civil's is offered first
    forged["status_lists"] = [*forged["status_lists"], {
        "issuer": "civil", "type": "residence", "token": make_token(
            civil_list, sub=uri, iat=now, exp=None, ttl=None, key=keys["edu"],
            kid=keys["edu"].kid.hex())}]
    forged["status_lists"].sort(key=lambda e: (e["issuer"], e["type"]))
    forged_part = codec.encode(forged)
    _, missing = merge_snapshots([forged_part, parts["market"]])
    assert "not a node key of 'civil'" in missing[uri]
    blob, missing = merge_snapshots([forged_part, parts["civil"], parts["market"]])
    assert uri not in missing and load_snapshot(blob).status_list(uri) == civil_list
    other = codec.decode(parts["civil"], max_size=1 << 26)
    with pytest.raises(SnapshotError, match="part 2: snapshot network 'elsewhere' differs"):
        merge_snapshots([parts["edu"], codec.encode({**other, "network": "elsewhere"})])
    with pytest.raises(SnapshotError, match="no part"):
        merge_snapshots([])


def test_a_part_with_a_registry_of_its_own_is_refused(demo: Path, work: Path,
                                                      tmp_path: Path) -> None:
    """A node could bring a part of its own making: a registry with keys of its own that
    "finalize" its own checkpoint, furthest along so that its registry would judge every list.
    The parts must carry one registry, so the merge stops."""
    keys = {a: load_private_key(demo / "keys" / f"{a}.node.key", b"test-only")
            for a in ("civil", "edu", "market")}
    other = tmp_path / "other-demo"  # the same network id, other keys
    r = _run("ledger-node", "demo", "--data", str(other))
    assert r.returncode == 0, r.stderr
    with Store(demo / "ledger", create=False) as store:
        assert store.head is not None
        honest_size = store.head.log_size
    for n in range(30):  # grow the other chain past the honest one
        with Store(other / "ledger", create=False) as store:
            assert store.head is not None
            if store.head.log_size > honest_size:
                break
        r = _run("agency", "issue", "--data", str(other), "--agency", "civil", "--type",
                 "residence", "--claims", str(work / "claims.json"), "--holder-jwk",
                 str(work / "holder.jwk.json"), "--out", str(tmp_path / f"o{n}.bundle"))
        assert r.returncode == 0, r.stderr
    other_keys = {a: load_private_key(other / "keys" / f"{a}.node.key", b"test-only")
                  for a in keys}
    now = int(time.time()) + 1  # both demos' keys valid
    with Store(demo / "ledger", create=False) as store:
        parts = [export_snapshot(store, now, node_keys={a: keys[a]}, only_keyed=True)
                 for a in keys]
    with Store(other / "ledger", create=False) as store:
        assert store.head is not None and store.head.log_size > honest_size
        forged = export_snapshot(store, now, node_keys={"civil": other_keys["civil"]},
                                 only_keyed=True)
    assert load_snapshot(forged).network == NETWORK  # a snapshot in its own right
    with pytest.raises(SnapshotError, match="the parts carry different registries"):
        merge_snapshots([*parts, forged])
    blob, _ = merge_snapshots(parts)  # without it, the honest parts merge
    assert load_snapshot(blob).log_size == honest_size


def test_a_merged_snapshot_is_as_of_its_least_advanced_part(demo: Path, work: Path) -> None:
    """Parts are made one after another, and a part's head is not signed: the merged snapshot
    takes the smallest log size (and the earliest time), so a credential anchored after one
    part's lists were made, then revoked, is *undetermined* offline, never *valid*; a part
    claiming a head far ahead moves nothing; parts far apart in time are refused."""
    keys = {a: load_private_key(demo / "keys" / f"{a}.node.key", b"test-only")
            for a in ("civil", "edu", "market")}

    def part(agency: str, t: int) -> bytes:
        with Store(demo / "ledger", create=False) as store:
            return export_snapshot(store, t, node_keys={agency: keys[agency]},
                                   only_keyed=True)

    now = int(time.time())
    early = part("civil", now)
    early_size = load_snapshot(early).log_size
    late, cid = _issue(demo, work, "after-civils-part")  # civil issues, then revokes it
    r = _run("agency", "status", "--data", str(demo), "--agency", "civil", "--credential-id",
             cid, "--set", "revoked", "--reason", "withdrawn")
    assert r.returncode == 0, r.stderr
    parts = [early, part("edu", now + 1), part("market", now + 2)]
    blob, _ = merge_snapshots(parts)
    snap = load_snapshot(blob)
    assert snap.log_size == early_size <= late.leaf_index and snap.fetched_at == now
    report = verify_envelope(_present(late), Request.from_json(REQUEST), registry=snap.registry,
                             now=int(time.time()), status_lists=snap.status_lists,
                             status_as_of=snap.log_size)
    assert not report.verified and report.status == "undetermined", report.to_json()
    # a part that claims a head far ahead (the head is not signed) moves nothing
    inflated = codec.decode(parts[1], max_size=1 << 26)
    inflated |= {"log_size": 1 << 40, "head_height": 1 << 40}
    blob, _ = merge_snapshots([early, codec.encode(inflated), parts[2]])
    assert load_snapshot(blob).log_size == early_size
    with pytest.raises(SnapshotError, match="made 61 s apart"):
        merge_snapshots([early, part("edu", now + 61)])


def test_a_nodes_request_saved_whole_is_refused_once_it_has_expired(
        demo: Path, work: Path, issued: Bundle) -> None:
    """A node's answer to ``POST /v1/presentation-requests`` saved whole is a request file;
    `wallet present` refused it once past its ``expires``, but `ledger verify` checked a
    presentation for it all the same, so an expired request had an answer after all. Both
    sides of the exchange now refuse it (exit 2, naming the expiry); a live one verifies."""
    now = int(time.time())
    live = {**REQUEST, "nonce": "n-expiry-live", "created": now - 60, "expires": now + 540,
            "qr_svg": "<svg/>"}
    (work / "live-req.json").write_text(json.dumps(live))
    env = work / "live.bin"
    env.write_bytes(_present(issued, live))
    r, report = _verify(env, "--data", str(demo), request=work / "live-req.json")
    assert r.returncode == 0 and report["verified"] is True, r.stdout + r.stderr
    old = {**live, "nonce": "n-expiry-old", "created": now - 700, "expires": now - 100}
    (work / "old-req.json").write_text(json.dumps(old))
    env = work / "old.bin"
    env.write_bytes(_present(issued, old))  # a wallet that did not look at `expires`
    r, _ = _verify(env, "--data", str(demo), request=work / "old-req.json", as_json=False)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "expired at" in r.stderr and "new one" in r.stderr


def test_a_malformed_disclosure_is_refused_without_its_content(demo: Path, work: Path,
                                                               issued: Bundle) -> None:
    """A disclosure whose value repeats a member name, or holds a number past a float's range,
    was refused with the repeated name or the number's digits quoted (``duplicate member name
    'Meng Lixue-7c41'``, ``number 1e9999999473 is too large``): what a presentation holds inside
    a claim's value went into the verifier's report, its logs and the pages' verdicts."""
    import dataclasses

    envelope = Envelope.from_bytes(_present(issued))
    parts = envelope.sd_jwt_kb.split("~")
    for raw, secret in (('["c2FsdA","district",{"Meng Lixue-7c41":1,"Meng Lixue-7c41":2}]',
                         "Meng Lixue-7c41"),
                        ('["c2FsdA","district",1e9999999473]', "9999999473")):
        parts[1] = _b64url(raw.encode())
        bad = dataclasses.replace(envelope, sd_jwt_kb="~".join(parts))
        (work / "malformed.bin").write_bytes(bad.to_bytes())
        for as_json in (True, False):
            r, report = _verify(work / "malformed.bin", "--data", str(demo),
                                request=work / "request.json", as_json=as_json)
            assert r.returncode == 1, r.stdout + r.stderr
            assert "disclosure #0: invalid JSON" in r.stdout
            assert secret not in r.stdout + r.stderr
            assert report.get("verified") is (False if as_json else None)
