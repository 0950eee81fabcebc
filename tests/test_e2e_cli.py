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
