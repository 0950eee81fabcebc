"""The whole paper-free path through the real command lines, as the three roles run it.

agency (demo network) → citizen wallet (init, receive with a verifier snapshot, present) →
verifying official (`ledger verify`, offline and live) → agency revokes → official sees it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def test_issue_receive_present_verify_revoke(tmp_path: Path) -> None:
    env = {**os.environ, "LEDGER_KEY_PASSPHRASE": "agency-pw", "WALLET_PASSPHRASE": "citizen-pw",
           "WALLET_PATH": str(tmp_path / "wallet.db"), "COLUMNS": "200"}

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True,
                           env=env, cwd=tmp_path, timeout=300, check=False)
        if ok:
            assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r

    run("ledger-node", "demo", "--data", "demo")
    run("wallet", "init")
    (tmp_path / "holder.json").write_text(run("wallet", "holder-key").stdout)
    claims = {"holder_name": "Wang Fang-5e1d", "district": "Changsheng",
              "birth_date": "1955-03-02", "resident_since": "2001-05-01"}
    (tmp_path / "claims.json").write_text(json.dumps(claims))
    issued = run("agency", "issue", "--data", "demo", "--agency", "civil", "--type",
                 "residence", "--claims", "claims.json", "--holder-jwk", "holder.json",
                 "--out", "res.bundle")
    assert "Wang Fang" not in issued.stdout + issued.stderr
    run("ledger", "snapshot", "--data", "demo", "--out", "snap.bin")
    cid = run("wallet", "receive", "res.bundle", "--registry", "snap.bin").stdout.strip()
    assert len(cid) == 64

    request = {"nonce": "n-e2e-0001", "audience": "https://civil.example/desk",
               "type": "residence", "claims": ["district", "age_over_65"]}
    (tmp_path / "req.json").write_text(json.dumps(request))
    run("wallet", "present", cid[:12], "--request", "req.json", "--out", "env.bin", "--yes")
    assert (tmp_path / "env.png").read_bytes().startswith(b"\x89PNG")
    # a node's answer to POST /v1/presentation-requests, saved whole, is a request too; once
    # it has expired the wallet says so instead of presenting for nothing (ADR 54)
    import time

    answer = {**request, "nonce": "n-e2e-0002", "created": int(time.time()) - 60,
              "expires": int(time.time()) + 540, "qr_svg": "<svg/>"}
    (tmp_path / "api-req.json").write_text(json.dumps(answer))
    run("wallet", "present", cid[:12], "--request", "api-req.json", "--out", "api.bin", "--yes")
    assert json.loads(run("ledger", "verify", "api.bin", "--request", "api-req.json",
                          "--snapshot", "snap.bin", "--json").stdout)["verified"] is True
    (tmp_path / "old-req.json").write_text(json.dumps({**answer, "expires": answer["created"]}))
    old = run("wallet", "present", cid[:12], "--request", "old-req.json", "--out", "old.bin",
              "--yes", ok=False)
    assert old.returncode == 2 and "expired at" in old.stderr and "new one" in old.stderr
    assert "is not a verifier's request" not in old.stderr
    assert not (tmp_path / "old.bin").exists()

    offline = json.loads(run("ledger", "verify", "env.bin", "--request", "req.json",
                             "--snapshot", "snap.bin", "--json").stdout)
    assert offline["verified"] is True
    assert offline["claims"] == {"district": "Changsheng", "age_over_65": True}
    assert "snapshot_age_s" in offline

    run("agency", "status", "--data", "demo", "--agency", "civil", "--credential-id", cid,
        "--set", "revoked", "--reason", "moved-away")
    live = run("ledger", "verify", "env.bin", "--request", "req.json", "--data", "demo",
               "--json", ok=False)
    assert live.returncode == 1
    report = json.loads(live.stdout)
    assert report["verified"] is False
    assert report["status"] == "revoked"
    # The old snapshot still says valid (and says how old it is): offline means cached.
    stale = json.loads(run("ledger", "verify", "env.bin", "--request", "req.json",
                           "--snapshot", "snap.bin", "--json").stdout)
    assert stale["status"] == "valid"


def test_a_terminal_that_cannot_show_every_character(tmp_path: Path) -> None:
    """An ASCII terminal (LC_ALL=C without Python's UTF-8 mode) and claims in Chinese: each
    tool did its work, then crashed printing a character (``→``, ``—``, a claim): an anchored
    credential with no id shown, a verification that spent its nonce and said nothing. Such
    characters are escapes now, and ``--json`` is still JSON (``\\u`` escapes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "PYTHONIO"))}
    env |= {"LEDGER_KEY_PASSPHRASE": "agency-pw", "WALLET_PASSPHRASE": "citizen-pw",
            "WALLET_PATH": str(tmp_path / "wallet.db"), "COLUMNS": "200", "LANG": "C",
            "LC_ALL": "C", "PYTHONUTF8": "0"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True,
                           encoding="ascii", errors="strict", env=env, cwd=tmp_path,
                           timeout=300, check=False)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r

    probe = subprocess.run([sys.executable, "-c", "import sys; print(sys.stdout.encoding)"],
                           capture_output=True, text=True, env=env, check=True)
    assert probe.stdout.strip().lower() in ("ascii", "ansi_x3.4-1968"), probe.stdout
    run("ledger-node", "demo", "--data", "demo")
    run("wallet", "init")
    (tmp_path / "holder.json").write_text(run("wallet", "holder-key").stdout)
    claims = {"holder_name": "李华 Zoë", "district": "Chángshēng 长盛",
              "birth_date": "1955-03-02", "resident_since": "2001-05-01"}
    (tmp_path / "claims.json").write_text(json.dumps(claims, ensure_ascii=False),
                                          encoding="utf-8")
    issued = run("agency", "issue", "--data", "demo", "--agency", "civil", "--type",
                 "residence", "--claims", "claims.json", "--holder-jwk", "holder.json",
                 "--out", "res.bundle", "--json")
    assert json.loads(issued.stdout)["credential_id"]
    run("ledger", "snapshot", "--data", "demo", "--out", "snap.bin")
    cid = run("wallet", "receive", "res.bundle", "--registry", "snap.bin").stdout.strip()
    assert "\\u" in run("wallet", "show", cid[:12]).stdout  # the claims, escaped
    request = {"nonce": "n-ascii-0001", "audience": "https://civil.example/desk",
               "type": "residence", "claims": ["district"]}
    (tmp_path / "req.json").write_text(json.dumps(request))
    run("wallet", "present", cid[:12], "--request", "req.json", "--out", "env.bin", "--yes")
    shown = run("ledger", "verify", "env.bin", "--request", "req.json", "--snapshot",
                "snap.bin", "--nonce-log", "nonces.log")
    assert "Ch\\xe1ngsh\\u0113ng" in shown.stdout
    request["nonce"] = "n-ascii-0002"
    (tmp_path / "req.json").write_text(json.dumps(request))
    run("wallet", "present", cid[:12], "--request", "req.json", "--out", "env2.bin", "--yes")
    report = json.loads(run("ledger", "verify", "env2.bin", "--request", "req.json",
                            "--snapshot", "snap.bin", "--json").stdout)
    assert report["verified"] is True and report["claims"] == {"district": "Chángshēng 长盛"}


def test_concurrent_receives_of_one_wallet_keep_every_credential(tmp_path: Path) -> None:
    """Three `wallet receive` runs on one wallet at once: each takes in what the others saved
    under the wallet's lock, so all three credentials are kept; before ADR 68 all but one
    were refused ("changed since it was opened… retry") whenever their opens overlapped."""
    env = {**os.environ, "LEDGER_KEY_PASSPHRASE": "agency-pw", "WALLET_PASSPHRASE": "citizen-pw",
           "WALLET_PATH": str(tmp_path / "wallet.db"), "COLUMNS": "200"}

    def run(*args: str) -> str:
        r = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True,
                           env=env, cwd=tmp_path, timeout=300, check=False)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r.stdout

    run("ledger-node", "demo", "--data", "demo")
    (tmp_path / "holder.json").write_text(run("wallet", "init"))
    (tmp_path / "claims.json").write_text(json.dumps({
        "holder_name": "Wang Fang-5e1d", "district": "Changsheng", "birth_date": "1955-03-02",
        "resident_since": "2001-05-01"}))
    for n in range(3):
        run("agency", "issue", "--data", "demo", "--agency", "civil", "--type", "residence",
            "--claims", "claims.json", "--holder-jwk", "holder.json", "--out", f"r{n}.bundle")
    run("ledger", "snapshot", "--data", "demo", "--out", "snap.bin")
    receiving = [subprocess.Popen([str(BIN / "wallet"), "receive", f"r{n}.bundle", "--registry",
                                   "snap.bin"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=env, cwd=tmp_path) for n in range(3)]
    said = [p.communicate(timeout=300) for p in receiving]
    assert [p.returncode for p in receiving] == [0, 0, 0], [e for _, e in said]
    ids = [out.strip() for out, _ in said]
    assert len(set(ids)) == 3 and all(len(i) == 64 for i in ids)
    from wallet.core import Wallet

    kept = Wallet.open(tmp_path / "wallet.db", b"citizen-pw").list()
    assert sorted(c.id for c in kept) == sorted(ids)
