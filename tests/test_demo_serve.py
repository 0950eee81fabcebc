"""The main job (`scripts/run` = `ledger-node demo --serve`) end to end over real HTTP.

The demo seeds a wallet and serves civil affairs' node; the official creates a request, the
citizen presents with the `wallet` CLI, the node verifies; the agency revokes by submitting a
signed transaction to the running node (`agency status --node`); the next check says revoked.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import served_demo

from wallet.core import Wallet

BIN = Path(sys.executable).parent


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    env = {**os.environ, "LEDGER_KEY_PASSPHRASE": "demo-pw", "WALLET_PASSPHRASE": "wallet-pw",
           "WALLET_PATH": str(tmp_path / "demo-data" / "wallet.db"), "COLUMNS": "200"}
    with served_demo(tmp_path, env) as (url, _):
        yield url, env, tmp_path


def _apply_at(handler: type[http.server.BaseHTTPRequestHandler], env: dict[str, str],
              tmp: Path, *, yes: bool = True, collect: bool = False
              ) -> subprocess.CompletedProcess[str]:
    """`wallet apply elderly-allowance` (``--collect``) against a server of ``handler`` on a
    free local port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        return subprocess.run([str(BIN / "wallet"), "apply", "elderly-allowance", "--node",
                               f"http://127.0.0.1:{server.server_address[1]}",
                               "--registry", "demo-data/snapshot.bin", *(["--yes"] * yes),
                               *(["--collect"] * collect)],
                              capture_output=True, text=True, env=env, cwd=tmp, timeout=120,
                              check=False)
    finally:
        server.shutdown()
        server.server_close()


def _elderly_requests(me: str) -> dict[str, object]:
    """What a made-up node at ``me`` answers an application for elderly-allowance with: the
    two requests its rule needs (the demo's), each bound to that node."""
    return {"requests": [
        {"nonce": "n-1", "audience": me, "type": "person-id",
         "claims": ["district", "age_over_65"]},
        {"nonce": "n-2", "audience": me, "type": "income-statement",
         "claims": ["annual_income"]}]}


class _JsonNode(http.server.BaseHTTPRequestHandler):
    """A made-up node: every POST (and GET) gets ``answer()`` as JSON (``body()``: its
    bytes)."""

    query = ""  # the request's query, taken off ``path`` (``?rule=`` of an application)

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        self.path, _, self.query = self.path.partition("?")
        return parsed

    def answer(self) -> dict[str, object]:
        raise NotImplementedError

    def body(self) -> bytes:
        return json.dumps(self.answer()).encode()

    def status(self) -> int:
        return 200

    def more_headers(self) -> dict[str, str]:
        return {}

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = self.body()
        self.send_response(self.status())
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        for name, value in self.more_headers().items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST  # noqa: N815 - the handler name http.server calls

    def log_message(self, *_: object) -> None:
        pass


def _request(url: str, tmp: Path, name: str) -> tuple[Path, str]:
    got = httpx.post(f"{url}/v1/presentation-requests",
                     json={"type": "residence", "claims": ["district", "age_over_65"]}).json()
    path = tmp / name
    path.write_text(json.dumps({k: got[k] for k in ("nonce", "audience", "type", "claims")}))
    return path, got["nonce"]


def test_demo_serves_verify_then_revoke(demo_server: tuple[str, dict[str, str], Path]) -> None:
    url, env, tmp = demo_server

    def run(*args: str) -> str:
        r = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True,
                           env=env, cwd=tmp, timeout=120, check=False)
        assert r.returncode == 0, (args, r.stderr)
        return r.stdout

    listing = run("wallet", "list")
    assert "residence" in listing
    assert "Changsheng" not in listing  # the list shows no claim values
    wallet = Wallet.open(Path(env["WALLET_PATH"]), env["WALLET_PASSPHRASE"].encode())
    full = next(c.id for c in wallet.list() if c.type == "residence")
    cid_prefix = full[:12]

    req, nonce = _request(url, tmp, "req1.json")
    envelope = run("wallet", "present", cid_prefix, "--request", str(req), "--out", "e1.bin",
                   "--yes").strip().splitlines()[-1]
    report = httpx.post(f"{url}/v1/verify", json={"nonce": nonce, "envelope": envelope}).json()
    assert report["verified"] is True, report
    assert report["claims"] == {"district": "Changsheng", "age_over_65": True}

    run("agency", "status", "--data", "demo-data", "--agency", "civil", "--credential-id", full,
        "--set", "revoked", "--reason", "moved-away", "--node", url)

    req, nonce = _request(url, tmp, "req2.json")
    envelope = run("wallet", "present", cid_prefix, "--request", str(req), "--out", "e2.bin",
                   "--yes").strip().splitlines()[-1]
    report = httpx.post(f"{url}/v1/verify", json={"nonce": nonce, "envelope": envelope}).json()
    assert report["verified"] is False
    assert report["status"] == "revoked"


def test_a_presentation_piped_from_the_wallet_to_the_verifier(
        demo_server: tuple[str, dict[str, str], Path]) -> None:
    """`wallet present … --out - --yes | ledger verify - …`: the envelope goes through the
    pipe only (no file, no QR code, so it can be done again), never on a command line."""
    _, env, tmp = demo_server
    wallet = Wallet.open(Path(env["WALLET_PATH"]), env["WALLET_PASSPHRASE"].encode())
    cid = next(c.id for c in wallet.list() if c.type == "residence")
    before = sorted(p.name for p in tmp.iterdir())
    for n in range(2):
        req = tmp / f"pipe-req{n}.json"
        req.write_text(json.dumps({"nonce": f"pipe-nonce-{n}-5c1e", "audience":
                                   "https://desk.example", "type": "residence",
                                   "claims": ["district"]}))
        with subprocess.Popen([str(BIN / "wallet"), "present", cid[:12], "--request",
                               str(req), "--out", "-", "--yes"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, env=env, cwd=tmp) as present:
            verify = subprocess.run([str(BIN / "ledger"), "verify", "-", "--request", str(req),
                                     "--snapshot", "demo-data/snapshot.bin", "--json"],
                                    stdin=present.stdout, capture_output=True, text=True,
                                    env=env, cwd=tmp, timeout=120, check=False)
        assert present.returncode == 0
        assert verify.returncode == 0, verify.stderr
        report = json.loads(verify.stdout)
        assert report["verified"] is True and report["claims"] == {"district": "Changsheng"}
        assert "command line" not in verify.stderr
    assert sorted(p.name for p in tmp.iterdir()) == sorted([*before, "pipe-req0.json",
                                                            "pipe-req1.json"])


def test_apply_without_the_credentials_names_every_one_missing(
        demo_server: tuple[str, dict[str, str], Path]) -> None:
    """A wallet that lacks what a rule needs is told every type it lacks before any preview
    of what it would disclose; nothing is signed."""
    url, env, tmp = demo_server
    needs = [n["type"] for n in httpx.get(f"{url}/v1/services/elderly-allowance").json()[
        "needs"]]
    empty = {**env, "WALLET_PATH": str(tmp / "empty-wallet.db")}
    assert subprocess.run([str(BIN / "wallet"), "init"], capture_output=True, env=empty,
                          timeout=120, check=False).returncode == 0
    r = subprocess.run([str(BIN / "wallet"), "apply", "elderly-allowance", "--node", url,
                        "--registry", "demo-data/snapshot.bin", "--yes"], capture_output=True,
                       text=True, env=empty, cwd=tmp, timeout=120, check=False)
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and "this wallet does not hold" in said, said
    assert all(repr(t) in said for t in needs) and "nothing was signed" in said
    assert "discloses" not in said


def _apply_in_process(demo_server: tuple[str, dict[str, str], Path],
                      monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], None]) -> Any:
    """`wallet apply elderly-allowance` at the served demo, run in this process so that
    ``meanwhile`` (another process's doing) runs exactly once, after the wallet was opened and
    the node answered, before the wallet keeps the approval credential: the CLI's result."""
    from typer.testing import CliRunner

    from wallet import cli as wallet_cli

    url, env, tmp = demo_server
    receive, ran = Wallet.receive, []

    def receiving(self: Wallet, *args: Any, **kwargs: Any) -> Any:
        if not ran:
            meanwhile()
            ran.append(True)
        return receive(self, *args, **kwargs)

    monkeypatch.setattr(Wallet, "receive", receiving)
    got = CliRunner().invoke(wallet_cli.app, [
        "apply", "elderly-allowance", "--node", url, "--registry",
        str(tmp / "demo-data" / "snapshot.bin"), "--yes"], env=env)
    monkeypatch.undo()
    assert ran, got.output
    return got


def test_demo_serves_the_elderly_allowance(demo_server: tuple[str, dict[str, str], Path],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Step 5 of the demo's "Try" list: the served demo has the catalogue's elderly allowance
    installed, the demo wallet holds what it asks for, and `wallet apply` gets a decision and
    keeps the approval credential (the snapshot the demo wrote checks it)."""
    url, env, tmp = demo_server
    services = httpx.get(f"{url}/v1/services").json()
    assert [s["service"] for s in services] == ["elderly-allowance"]
    # A service the citizen's snapshot does not register: said so, nothing asked of the node.
    r = subprocess.run([str(BIN / "wallet"), "apply", "business-licence", "--node", url,
                        "--registry", "demo-data/snapshot.bin", "--yes"], capture_output=True,
                       text=True, env=env, cwd=tmp, timeout=120, check=False)
    assert r.returncode == 1 and "not a service registered as of" in r.stderr, r.stderr
    # Through another address (a relay would be one) the requests are bound to the node's own
    # audience, not to the address given: the wallet signs nothing.
    relayed = url.replace("127.0.0.1", "localhost")
    r = subprocess.run([str(BIN / "wallet"), "apply", "elderly-allowance", "--node", relayed,
                        "--registry", "demo-data/snapshot.bin", "--yes"], capture_output=True,
                       text=True, env=env, cwd=tmp, timeout=120, check=False)
    assert r.returncode == 1 and "not to itself" in r.stderr and "nothing was signed" in r.stderr
    # A server that is no node (its error reply is HTML) is said in one line, not a traceback.
    def apply_at(handler: type[http.server.BaseHTTPRequestHandler]
                 ) -> subprocess.CompletedProcess[str]:
        return _apply_at(handler, env, tmp)

    r = apply_at(http.server.SimpleHTTPRequestHandler)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "the node refused the application: HTTP 501" in r.stderr
    # A node that asks for more than the registered rule needs (the citizen's identifier and
    # name besides district and age) gets nothing: the rule is in the citizen's snapshot.
    applied: list[str] = []

    class OverAsking(_JsonNode):
        def answer(self) -> dict[str, object]:
            applied.append(self.path)
            me = f"http://127.0.0.1:{self.server.server_address[1]}"
            return {"requests": [
                {"nonce": "n-1", "audience": me, "type": "person-id",
                 "claims": ["district", "age_over_65", "person_id", "holder_name"]},
                {"nonce": "n-2", "audience": me, "type": "income-statement",
                 "claims": ["annual_income"]}]}

    r = apply_at(OverAsking)
    assert r.returncode == 1 and "does not need" in r.stderr, r.stderr
    assert "['holder_name', 'person_id']" in r.stderr and "nothing was signed" in r.stderr
    assert applied == ["/v1/services/elderly-allowance/applications"]  # no /apply came
    # Another wallet process saves while the application is out (a second `wallet apply`, a
    # refresh): the credential is fine, and the wallet keeps it beside what the other process
    # saved (ADR 48, 68). Run in this process, so the other save can come exactly then.
    wallet_file, wallet_pw = Path(env["WALLET_PATH"]), env["WALLET_PASSPHRASE"].encode()

    def other_save() -> None:  # between this one's open and its save
        other = Wallet.open(wallet_file, wallet_pw)
        other._save(other._contents)

    got = _apply_in_process(demo_server, monkeypatch, other_save)
    assert got.exit_code == 0, got.output
    r = subprocess.CompletedProcess([], 0, got.stdout, got.output)
    assert "approved (standard): eligible" in r.stderr + r.stdout
    # the standard path of the catalogue's rule still asks for a paper (A05, ADR 70)
    assert "documents still required: bank_account_form" in r.stderr + r.stdout
    assert "discloses district, age_over_65" in r.stderr + r.stdout
    # the served demo's credit secret rests sealed (ADR 46), and the node read it to decide
    from ledger.keys import open_secret

    secret = tmp / "demo-data" / "keys" / "credit.secret"
    assert len(open_secret(secret.read_bytes(), b"demo-pw", "credit-secret", secret)) == 32
    wallet = Wallet.open(Path(env["WALLET_PATH"]), env["WALLET_PASSPHRASE"].encode())
    approval = [c for c in wallet.list() if c.type == "approval"]
    assert len(approval) == 1 and approval[0].id == r.stdout.strip().splitlines()[0]


def test_apply_keeps_its_credential_in_a_wallet_made_again_from_its_seed_meanwhile(
        demo_server: tuple[str, dict[str, str], Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The wallet file is replaced while the application is out by one made again from the
    same holder seed (a new file, sealed under a new key): the first save finds a file that
    no longer opens with its key, so `wallet apply` opens the wallet again and keeps the
    approval credential there; nothing is left beside it (A06, ADR 70)."""
    _, env, tmp = demo_server
    wallet_file, wallet_pw = Path(env["WALLET_PATH"]), env["WALLET_PASSPHRASE"].encode()
    seed = Wallet.open(wallet_file, wallet_pw)._contents.holder_seed
    replaced = []

    def made_again() -> None:
        again = tmp / "again.wallet"
        Wallet.init(again, wallet_pw, seed=seed)
        again.replace(wallet_file)
        replaced.append(wallet_file.read_bytes())

    got = _apply_in_process(demo_server, monkeypatch, made_again)
    assert got.exit_code == 0, got.output
    assert "approved (standard): eligible" in got.output
    now = Wallet.open(wallet_file, wallet_pw)
    assert now._contents.holder_seed == seed and wallet_file.read_bytes() != replaced[0]
    assert [c.id for c in now.list() if c.type == "approval"] == [
        got.stdout.strip().splitlines()[0]]
    assert not list(wallet_file.parent.glob("approval-*.bundle"))


def test_apply_says_what_the_node_answered_and_signs_nothing_unasked(
        demo_server: tuple[str, dict[str, str], Path]) -> None:
    """Against made-up nodes: a refusal of the application or of the answers is said in the
    node's words; a request for a type the rule does not name gets nothing signed; without
    --yes and no terminal to ask on, nothing is sent."""
    _, env, tmp = demo_server
    posted: list[str] = []

    def requests_of(me: str, kind: str = "person-id") -> dict[str, object]:
        return {"requests": [
            {"nonce": "n-1", "audience": me, "type": kind, "claims": ["district", "age_over_65"]},
            {"nonce": "n-2", "audience": me, "type": "income-statement",
             "claims": ["annual_income"]}]}

    class Node(_JsonNode):
        refuse_at = ""
        kind = "person-id"

        def me(self) -> str:
            return f"http://127.0.0.1:{self.server.server_address[1]}"

        def status(self) -> int:
            return 409 if self.refuse_at and self.path.endswith(self.refuse_at) else 200

        def answer(self) -> dict[str, object]:
            posted.append(self.path.rsplit("/", 1)[1])
            if self.status() != 200:
                return {"detail": f"refused at {self.refuse_at}", "error": "Conflict"}
            if self.path.endswith("/apply"):  # a bundle this wallet cannot check: kept beside
                return {"decision": "pending", "path": "standard", "reasons": ["documents"],
                        "approval_tx": "cd" * 32, "documents": ["tenancy-contract"],
                        "bundle": base64.urlsafe_b64encode(b"x").decode()}
            return requests_of(self.me(), self.kind)

    def said(r: subprocess.CompletedProcess[str]) -> str:
        return " ".join(r.stderr.split())

    class RefusesApplications(Node):
        refuse_at = "/applications"

    r = _apply_at(RefusesApplications, env, tmp)
    assert r.returncode == 1 and "the node refused the application: refused at " \
        "/applications" in said(r), said(r)

    class RefusesAnswers(Node):
        refuse_at = "/apply"

    posted.clear()
    r = _apply_at(RefusesAnswers, env, tmp)
    assert r.returncode == 1 and "the application was refused: refused at /apply" in said(r)
    assert posted == ["applications", "apply"]
    assert "--collect" not in said(r)  # a refusal in words: nothing decided to collect
    assert "rule changed" not in said(r)  # nor a stale rule: its code is not stale_rule

    class FailsAfterSending(RefusesAnswers):
        def status(self) -> int:  # the node's own failure, maybe after its commit
            return 503 if self.path.endswith(self.refuse_at) else 200

    r = _apply_at(FailsAfterSending, env, tmp)
    assert r.returncode == 1 and "the application was refused: refused at /apply" in said(r)
    assert "if the agency decided it all the same, collect its approval credential: `wallet " \
        "apply elderly-allowance --node http://127.0.0.1:" in said(r), said(r)

    # a 503 that says it took nothing (ADR 84, the JSON false only): apply again (when its
    # Retry-After says, in ASCII digits: "²" was a traceback), no collect; a 4xx saying it is
    # a refusal as any, a body not JSON says nothing (round 44M: mutants taking the member on
    # a 409, dropping the Retry-After or its ASCII check, or reading a body not JSON as
    # "taken": false, lived)
    for taken, took_nothing, code, retry in [
            (False, True, 503, None), (False, True, 503, "7"), (False, True, 503, "\xb2"),
            ("false", False, 503, None), (0, False, 503, None), (None, False, 503, None),
            ("not json", False, 503, None), (False, False, 409, None)]:
        class TookNothing(FailsAfterSending):
            taken_said: object = taken
            code_said, retry_said = code, retry

            def status(self) -> int:
                return self.code_said if self.path.endswith(self.refuse_at) else 200

            def more_headers(self) -> dict[str, str]:
                return {} if self.retry_said is None else {"Retry-After": self.retry_said}

            def answer(self) -> dict[str, object]:
                said = super().answer()
                return {**said, "taken": self.taken_said} if self.status() != 200 else said

            def body(self) -> bytes:  # a 503 not in JSON (a proxy's page) says nothing
                if self.taken_said == "not json" and self.status() != 200:
                    return b"refused at /apply, not in JSON"
                return super().body()

        r = _apply_at(TookNothing, env, tmp)
        assert r.returncode == 1, said(r)
        if code < 500:
            assert said(r).endswith("the application was refused: refused at /apply"), said(r)
            assert "nothing was taken" not in said(r) and "--collect" not in said(r), said(r)
        elif took_nothing:
            assert said(r).endswith(
                "the node refused the application (503): refused at /apply; nothing was "
                f"taken; apply again{' in 7 s or later' if retry == '7' else ''}"), said(r)
            assert "--collect" not in said(r), said(r)
        else:
            assert "nothing was taken" not in said(r), (taken, said(r))
            assert "if the agency decided it all the same, collect" in said(r), said(r)

    # the decision committed, its credential's issue refused after it (44T): the node says
    # so with code decided_not_issued; collect, never "apply again" (a "taken": false beside
    # it, which a node never sends with it, does not make it one)
    for taken_too in (None, False):
        class DecidedNotIssued(FailsAfterSending):
            taken_said: object = taken_too

            def answer(self) -> dict[str, object]:
                said = super().answer()
                if self.status() == 200:
                    return said
                got = {**said, "code": "decided_not_issued", "error": "DecidedNotIssued"}
                return got if self.taken_said is None else {**got, "taken": self.taken_said}

        r = _apply_at(DecidedNotIssued, env, tmp)
        assert r.returncode == 1, said(r)
        assert "the agency decided the application and recorded its decision on the ledger, " \
            "but did not issue its approval credential: refused at /apply; collect it: " \
            "`wallet apply elderly-allowance --node http://127.0.0.1:" in said(r), said(r)
        assert "apply again" not in said(r) and "nothing was taken" not in said(r), said(r)
        assert "refused" not in said(r).replace("refused at /apply", ""), said(r)

    class AsksForAnotherType(Node):
        kind = "tax-return"

    posted.clear()
    r = _apply_at(AsksForAnotherType, env, tmp)
    assert r.returncode == 1 and "asks for tax-return claims ['district', 'age_over_65'] " \
        "that the rule" in said(r), said(r)
    assert "nothing was signed" in said(r) and posted == ["applications"]

    posted.clear()
    r = _apply_at(Node, env, tmp, yes=False)  # no terminal here to ask on
    assert r.returncode == 1 and "confirmation needed" in said(r), said(r)
    assert posted == ["applications"]


def test_a_node_answering_json_nested_past_any_depth_gets_one_line_not_a_traceback(
        demo_server: tuple[str, dict[str, str], Path]) -> None:
    """A node's answer nested thousands deep, as its requests, its refusal or its decision:
    `wallet apply` ended in a RecursionError traceback; it says what the node answered."""
    _, env, tmp = demo_server
    deep = b"[" * 100_000 + b"]" * 100_000

    class Deep(_JsonNode):
        at = "/applications"
        code = 200

        def answer(self) -> dict[str, object]:
            me = f"http://127.0.0.1:{self.server.server_address[1]}"
            return _elderly_requests(me)

        def body(self) -> bytes:
            return deep if self.path.endswith(self.at) else super().body()

        def status(self) -> int:
            return self.code if self.path.endswith(self.at) else 200

    class DeepRefusal(Deep):
        code = 409

    class DeepDecision(Deep):
        at = "/apply"

    for node, words in ((Deep, "did not answer with an application's requests"),
                        (DeepRefusal, "the node refused the application: HTTP 409"),
                        (DeepDecision, "the node's answer to the application is not a "
                                       "decision")):
        r = _apply_at(node, env, tmp)
        said = " ".join(r.stderr.split())
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert words in said, said


def test_an_approval_that_does_not_check_out_is_kept_beside_the_wallet(
        demo_server: tuple[str, dict[str, str], Path]) -> None:
    """The decision is on the ledger once the node answers, and no node gives its credential
    twice: a bundle the wallet cannot check against its snapshot is kept in a file beside the
    wallet (never over another), else printed, and the wallet itself is left as it was."""
    _, env, tmp = demo_server
    bundle = b"not a bundle a wallet can check"
    wallet_path = Path(env["WALLET_PATH"])

    def held() -> list[str]:
        return [c.id for c in Wallet.open(wallet_path,
                                          env["WALLET_PASSPHRASE"].encode()).list()]

    before = held()  # the presentations made count as shown (ADR 52); nothing else changes

    class Deciding(_JsonNode):
        """Asks for exactly what the registered rule needs, then decides with a bad bundle."""

        approval_tx = "ab" * 32

        def answer(self) -> dict[str, object]:
            me = f"http://127.0.0.1:{self.server.server_address[1]}"
            if self.path.endswith("/apply"):
                return {"decision": "approved", "path": "standard", "reasons": ["eligible"],
                        "approval_tx": self.approval_tx, "documents": [],
                        "bundle": base64.urlsafe_b64encode(bundle).decode()}
            return _elderly_requests(me)

    kept = wallet_path.with_name("approval-elderly-allowance-abababababab.bundle")
    r = _apply_at(Deciding, env, tmp)
    assert r.returncode == 1, r.stderr
    assert "the agency decided: approved (standard): eligible" in r.stderr
    assert f"It is kept in {kept}" in " ".join(r.stderr.split()), r.stderr
    assert kept.read_bytes() == bundle and kept.stat().st_mode & 0o777 == 0o600
    assert held() == before
    # A second decision of the same name does not replace the first: it is printed instead.
    # (At another address, this made-up node's new port: the holder keys it is shown were
    # shown to the first, which the preview says before anything is signed.)
    r = _apply_at(Deciding, env, tmp)
    assert "can link this application to it" in " ".join(r.stderr.split()), r.stderr
    assert r.returncode == 1, r.stderr
    assert "could not be kept" in " ".join(r.stderr.split()), r.stderr
    assert r.stdout.strip() == base64.urlsafe_b64encode(bundle).rstrip(b"=").decode()
    assert kept.read_bytes() == bundle and held() == before

    # The file is named by the transaction id the node answered: only its hex digits name it
    # (a path in its place was a ValueError traceback, the credential neither kept nor shown).
    class NamingAPath(Deciding):
        approval_tx = "../x/../../y"

    r = _apply_at(NamingAPath, env, tmp)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    named = wallet_path.with_name("approval-elderly-allowance-.bundle")
    assert f"It is kept in {named}" in " ".join(r.stderr.split()), r.stderr
    assert named.read_bytes() == bundle and held() == before


def test_a_nodes_decision_words_are_cut_where_its_credential_does_not_check_out(
        demo_server: tuple[str, dict[str, str], Path]) -> None:
    """A node's own words of its decision (decision, path, reasons: unchecked, as its credential
    did not check out) were said whole on the error line, a MiB of a hostile node's text and
    its escape sequences; they are cut, escaped, the wallet left as it was (helper round
    39O)."""
    _, env, tmp = demo_server
    bundle = b"not a bundle a wallet can check"
    wallet_path = Path(env["WALLET_PATH"])
    kept = wallet_path.with_name("approval-elderly-allowance-cdcdcdcdcdcd.bundle")
    def held() -> list[str]:
        return [c.id for c in Wallet.open(wallet_path,
                                          env["WALLET_PASSPHRASE"].encode()).list()]

    before = held()  # the presentations made count as shown (ADR 52); nothing else changes
    misleading = "\x1b[2J[green]approved[/green]\n  ok\u202e" + "A" * (1 << 20)

    class Misleading(_JsonNode):
        def answer(self) -> dict[str, object]:
            me = f"http://127.0.0.1:{self.server.server_address[1]}"
            if self.path.endswith("/apply"):
                return {"decision": misleading, "path": misleading, "reasons": [misleading],
                        "approval_tx": "cd" * 32, "documents": [],
                        "bundle": base64.urlsafe_b64encode(bundle).decode()}
            return _elderly_requests(me)

    try:
        r = _apply_at(Misleading, env, tmp)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert "\x1b" not in r.stderr and "\u202e" not in r.stderr, repr(r.stderr[:500])
        assert "A" * 400 not in r.stderr and len(r.stderr) < 3000, len(r.stderr)
        assert f"It is kept in {kept}" in " ".join(r.stderr.split()), r.stderr
        assert kept.read_bytes() == bundle
    finally:
        kept.unlink(missing_ok=True)
    assert held() == before


def _approval_not_kept(url: str, env: dict[str, str]) -> dict[str, Any]:
    """The demo node's answer to an elderly-allowance application of the demo wallet (made
    through the wallet's API), its approval credential left out of the wallet: what a node
    answers `wallet apply` with."""
    from ledger.presentation import Request

    wallet = Wallet.open(Path(env["WALLET_PATH"]), env["WALLET_PASSPHRASE"].encode())
    opened = httpx.post(f"{url}/v1/services/elderly-allowance/applications").json()
    requests = [Request.from_json({k: r[k] for k in ("nonce", "audience", "type", "claims")})
                for r in opened["requests"]]
    holder, answers = wallet.application(requests, now=int(time.time()))
    got: dict[str, Any] = httpx.post(f"{url}/v1/services/elderly-allowance/apply", json={
        "holder_jwk": holder, "presentations": [
            {"nonce": n, "envelope": base64.urlsafe_b64encode(e).decode()}
            for n, e in answers]}, timeout=120).json()
    return got


def test_apply_says_what_the_approval_credential_says_and_keeps_only_that(
        demo_server: tuple[str, dict[str, str], Path]) -> None:
    """The node's answer says a decision and carries the approval credential: the wallet
    says the decision (and documents still required) the credential it checked says, not the
    answer's own words; and a credential that is not an approval of the service applied for
    (another credential of the holder's) is not kept in the wallet as if it were one (it was
    kept and "approved" said)."""
    url, env, tmp = demo_server
    wallet_path, wallet_pw = Path(env["WALLET_PATH"]), env["WALLET_PASSPHRASE"].encode()
    real = _approval_not_kept(url, env)
    assert (real["decision"], real["path"], real["documents"]) == (
        "approved", "standard", ["bank_account_form"]), real
    wallet = Wallet.open(wallet_path, wallet_pw)
    residence = next(c for c in wallet.list() if c.type == "residence")
    residence_bundle = wallet._find(residence.id).bundle
    wallet.remove([residence.id])

    class Answering(_JsonNode):
        """Asks for what the rule needs, then answers with ``bundle`` and words of its own."""

        bundle = ""

        def answer(self) -> dict[str, object]:
            me = f"http://127.0.0.1:{self.server.server_address[1]}"
            if self.path.endswith("/apply"):
                return {"decision": "approved", "path": "fast_track",
                        "reasons": ["eligible", "fast_track"], "documents": [],
                        "approval_tx": real["approval_tx"], "bundle": self.bundle}
            return _elderly_requests(me)

    class WithTheApproval(Answering):
        bundle = real["bundle"]

    r = _apply_at(WithTheApproval, env, tmp)
    said = " ".join(r.stderr.split())
    assert r.returncode == 0, said
    assert "approved (standard): eligible" in said and "fast_track" not in said, said
    assert "documents still required: bank_account_form" in said, said

    class WithAnotherCredential(Answering):
        bundle = base64.urlsafe_b64encode(residence_bundle).decode()

    r = _apply_at(WithAnotherCredential, env, tmp)
    said = " ".join(r.stderr.split())
    assert r.returncode == 1, said
    assert "not an approval of 'elderly-allowance'" in said, said
    held = Wallet.open(wallet_path, wallet_pw).list()
    assert not any(c.type == "residence" for c in held)
    assert [c.type for c in held].count("approval") == 1


def test_an_approval_answered_as_the_wallet_is_stopped_is_still_kept(
        demo_server: tuple[str, dict[str, str], Path]) -> None:
    """A SIGTERM (or Ctrl-C) that reaches `wallet apply` while the node decides: the node
    commits its decision and gives the approval credential once, so the wallet takes the
    answer in and keeps the credential before it stops (exit 143); stopped on the spot, it
    lost the credential for good, with the decision on the ledger."""
    url, env, tmp = demo_server
    wallet_path, pw = Path(env["WALLET_PATH"]), env["WALLET_PASSPHRASE"].encode()
    # The node's answer: a real approval credential bound to this wallet's key, one it does
    # not hold, so that keeping it shows in the wallet.
    approval = _approval_not_kept(url, env)
    applying: list[subprocess.Popen[str]] = []

    class StoppedWhileDeciding(_JsonNode):
        """Asks for what the rule needs; at /apply stops the wallet, then answers."""

        def answer(self) -> dict[str, object]:
            me = f"http://127.0.0.1:{self.server.server_address[1]}"
            if self.path.endswith("/apply"):
                applying[0].send_signal(signal.SIGTERM)  # the decision is being made
                return approval
            return _elderly_requests(me)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StoppedWhileDeciding)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with subprocess.Popen([str(BIN / "wallet"), "apply", "elderly-allowance", "--node",
                               f"http://127.0.0.1:{server.server_address[1]}", "--registry",
                               "demo-data/snapshot.bin", "--yes"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, cwd=tmp) as proc:
            applying.append(proc)
            _, said = proc.communicate(timeout=120)
    finally:
        server.shutdown()
        server.server_close()
    held = Wallet.open(wallet_path, pw).list()
    assert [c.type for c in held].count("approval") == 1, said  # the node's answer's
    assert not list(wallet_path.parent.glob("approval-*.bundle"))
    assert proc.returncode == 128 + signal.SIGTERM, said  # it stops, as asked, afterwards
    assert "stopping once the agency's answer is kept" in " ".join(said.split()), said
    assert "approved (standard): eligible" in said


def test_the_served_demo_run_from_another_folder_says_where_its_commands_are(
        tmp_path: Path) -> None:
    """scripts/run goes back to the folder it was started from: from any other folder than the
    repository's, the steps said no PATH and `wallet present` in another terminal was "command
    not found". The hint names this installation's bin folder, wherever the demo runs."""
    env = {**os.environ, "LEDGER_KEY_PASSPHRASE": "demo-pw", "COLUMNS": "200"}
    said = tmp_path / "stderr.txt"
    assert not (tmp_path / ".venv").exists()
    with said.open("w") as stderr, served_demo(tmp_path, env, stderr=stderr):
        text = said.read_text()
    assert f"export PATH={BIN}:$PATH" in text, text
    assert "demo-pw" not in text  # the user's own key passphrase is never said


def test_a_node_gone_while_deciding_is_not_said_to_be_unreachable(
        demo_server: tuple[str, dict[str, str], Path]) -> None:
    """The node's connection dropped after the application's answers were sent (the node
    killed while it decided): `wallet apply` said `cannot reach URL`, as if nothing had been
    sent, where the node may have decided and committed already (and gives the approval
    credential once). It says the application was sent and may be decided, and applying
    again would be decided again."""
    _, env, tmp = demo_server
    posted: list[str] = []

    class DiesAtApply(_JsonNode):
        def answer(self) -> dict[str, object]:
            me = f"http://127.0.0.1:{self.server.server_address[1]}"
            return _elderly_requests(me)

        def do_POST(self) -> None:
            posted.append(self.path.rsplit("/", 1)[1])
            if self.path.endswith("/apply"):  # read, then gone without a word
                self.rfile.read(int(self.headers.get("content-length", 0)))
                self.close_connection = True
                return
            super().do_POST()

    r = _apply_at(DiesAtApply, env, tmp)
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and posted == ["applications", "apply"], said
    assert "cannot reach" not in said, said
    assert "may have decided" in said and "decided again" in said, said
    assert "Traceback" not in said
    # ... and names the command that collects its credential (helper round 33H)
    assert "--collect`" in said, said
    port = said.split("--node http://127.0.0.1:", 1)[1].split()[0]
    assert (f"`wallet apply elderly-allowance --node http://127.0.0.1:{port} --registry "
            "demo-data/snapshot.bin --collect`") in said, said


def test_an_answer_to_an_application_past_the_wallets_bound_names_the_collect(
        demo_server: tuple[str, dict[str, str], Path]) -> None:
    """An answer to the application the wallet gives up on (more than MAX_ANSWER; past its
    time, the same line) said "nothing was kept from it" and no more, where the node may have
    decided and committed already: it says so and names the command that collects the
    approval credential, as for an answer that never came (helper round 40H)."""
    import contextlib

    from wallet.cli import MAX_ANSWER

    _, env, tmp = demo_server

    class TooMuch(_JsonNode):
        def answer(self) -> dict[str, object]:
            return _elderly_requests(f"http://127.0.0.1:{self.server.server_address[1]}")

        def do_POST(self) -> None:
            if not self.path.endswith("/apply"):
                super().do_POST()
                return
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(200)
            self.send_header("content-length", str(MAX_ANSWER + (1 << 20)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the wallet hung up: what it should do
                for _ in range((MAX_ANSWER >> 20) + 1):
                    self.wfile.write(b" " * (1 << 20))

    r = _apply_at(TooMuch, env, tmp)
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and "Traceback" not in said, said
    assert f"more than {MAX_ANSWER} bytes" in said, said
    assert "may have decided" in said and "--collect`" in said, said


def test_an_approval_whose_answer_was_lost_is_collected_with_the_key_it_was_applied_with(
        demo_server: tuple[str, dict[str, str], Path]) -> None:
    """The node decided and committed an application, and its answer (the approval
    credential) never reached the wallet: `wallet apply --collect` gets that decision's
    credential with the holder key the wallet applied with, and keeps it; nothing is decided
    again. A wallet that never applied there is told so, and signs nothing (helper round
    33H)."""
    from ledger.presentation import Request

    url, env, tmp = demo_server
    wallet = Wallet.open(Path(env["WALLET_PATH"]), env["WALLET_PASSPHRASE"].encode())
    opened = httpx.post(f"{url}/v1/services/elderly-allowance/applications").json()
    requests = [Request.from_json({k: r[k] for k in ("nonce", "audience", "type", "claims")})
                for r in opened["requests"]]
    holder, answers = wallet.application(requests, now=int(time.time()))
    decided = httpx.post(f"{url}/v1/services/elderly-allowance/apply", timeout=120, json={
        "holder_jwk": holder, "presentations": [
            {"nonce": n, "envelope": base64.urlsafe_b64encode(e).rstrip(b"=").decode()}
            for n, e in answers]})
    assert decided.status_code == 200, decided.text  # the answer the wallet never had
    before = {c.id for c in wallet.list()}
    collect = [str(BIN / "wallet"), "apply", "elderly-allowance", "--node", url, "--registry",
               "demo-data/snapshot.bin", "--collect"]
    r = subprocess.run(collect, capture_output=True, text=True, env=env, cwd=tmp, timeout=120,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert decided.json()["decision"] in r.stderr, r.stderr
    kept = Wallet.open(Path(env["WALLET_PATH"]), env["WALLET_PASSPHRASE"].encode())
    new = [c for c in kept.list() if c.id not in before]
    assert [(c.type, c.key) for c in new] == [("approval", 0)] and r.stdout.strip() == new[0].id
    # the credential of that decision: none made again
    assert kept.show(new[0].id)["approval_tx"] == decided.json()["approval_tx"]
    # collected again into the wallet that holds it: that very credential, said so (it read
    # as a credential that "did not check out", kept in a file beside the wallet; helper
    # round 34C)
    beside = set(Path(env["WALLET_PATH"]).parent.iterdir())
    r = subprocess.run(collect, capture_output=True, text=True, env=env, cwd=tmp, timeout=120,
                       check=False)
    said = " ".join(r.stderr.split())
    assert r.returncode == 0 and "this wallet holds it already" in said, said
    assert r.stdout.strip() == new[0].id and "check out" not in said
    assert set(Path(env["WALLET_PATH"]).parent.iterdir()) == beside
    assert len(Wallet.open(Path(env["WALLET_PATH"]),
                           env["WALLET_PASSPHRASE"].encode()).list()) == len(kept.list())
    empty = {**env, "WALLET_PATH": str(tmp / "empty-wallet.db")}
    assert subprocess.run([str(BIN / "wallet"), "init"], capture_output=True, env=empty,
                          timeout=120, check=False).returncode == 0
    r = subprocess.run(collect, capture_output=True, text=True, env=empty, cwd=tmp,
                       timeout=120, check=False)
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and "never showed a holder key" in said, said
    assert "nothing was signed" in said


def test_a_collect_challenge_for_another_node_or_service_is_not_signed(
        demo_server: tuple[str, dict[str, str], Path]) -> None:
    """A node that relays another node's collect challenge (its audience the node the wallet
    applied at), or one for another service, gets no proof: the wallet signs nothing and
    sends nothing more (helper round 35M: without the check of the challenge's audience or
    service every test passed, and a proof made for the real node went to the relaying one)."""
    from ledger.presentation import Request

    url, env, tmp = demo_server
    wallet = Wallet.open(Path(env["WALLET_PATH"]), env["WALLET_PASSPHRASE"].encode())
    opened = httpx.post(f"{url}/v1/services/elderly-allowance/applications").json()
    wallet.application([Request.from_json({k: r[k] for k in (
        "nonce", "audience", "type", "claims")}) for r in opened["requests"]],
        now=int(time.time()))  # the wallet has shown a holder key to the real node
    real_audience = opened["requests"][0]["audience"]
    assert wallet.shown_keys(real_audience)
    posted: list[str] = []
    for audience, service, words in (
            (real_audience, "elderly-allowance", f"a proof bound to '{real_audience}'"),
            (None, "business-licence", "a proof for 'business-licence', not 'elderly-allowance'"),
            # the node's words with a terminal's escapes: shown escaped, never run
            ("https://x.example/\x1b]0;pwned\x07\x1b[2J", "elderly-allowance",
             "a proof bound to"),
            (None, "licence\x1b[2J" + "x" * 5000, "a proof for")):

        class Relaying(_JsonNode):
            sent = (audience, service)

            def answer(self) -> dict[str, object]:
                posted.append(self.path)
                me = f"http://127.0.0.1:{self.server.server_address[1]}"
                return {"service": self.sent[1], "nonce": "relayed",
                        "typ": "approval-collect+jwt", "audience": self.sent[0] or me,
                        "expires": int(time.time()) + 600}

        posted.clear()
        wallet_file = Path(env["WALLET_PATH"])
        before = wallet_file.read_bytes()
        r = _apply_at(Relaying, env, tmp, yes=False, collect=True)
        said = " ".join(r.stderr.split())
        assert r.returncode == 1 and "Traceback" not in said, said
        assert words in said and "nothing was signed" in said, said
        assert "\x1b" not in r.stderr and "\x07" not in r.stderr and len(said) < 2000, said
        assert posted == ["/v1/services/elderly-allowance/collect/challenge"], posted
        assert wallet_file.read_bytes() == before


def test_collect_at_a_node_of_a_version_without_collect_says_so_and_changes_nothing(
        demo_server: tuple[str, dict[str, str], Path]) -> None:
    """A node before ADR 78 has no collect route: its POST .../collect/challenge answers
    404 {"detail": "Not Found"} (ffae088's node did, round 34U). The wallet said "the node
    refused a collect challenge: Not Found", read as no such service or decision: it says the
    node has no collect (an older version, or no node), signs nothing, changes nothing."""
    _, env, tmp = demo_server
    posted: list[str] = []

    class OlderNode(_JsonNode):
        def answer(self) -> dict[str, object]:
            posted.append(self.path)
            return {"detail": "Not Found"}

        def status(self) -> int:
            return 404

    wallet_file = Path(env["WALLET_PATH"])
    before = wallet_file.read_bytes()
    r = _apply_at(OlderNode, env, tmp, yes=False, collect=True)
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and "Traceback" not in said, said
    assert "offers no collect" in said and "a version before ADR 78" in said, said
    assert "nothing was signed" in said
    assert posted == ["/v1/services/elderly-allowance/collect/challenge"]
    assert wallet_file.read_bytes() == before


@pytest.mark.parametrize("collect", [False, True])
def test_a_nodes_refusal_reaches_the_terminal_without_its_escapes(
        demo_server: tuple[str, dict[str, str], Path], collect: bool) -> None:
    """A node's refusal (its JSON ``detail``) is put in the wallet's error line: ESC
    sequences in it are shown escaped, on one line (they were), and a long one filled the
    terminal: it is cut."""
    _, env, tmp = demo_server

    class Refusing(_JsonNode):
        def answer(self) -> dict[str, object]:
            return {"detail": "refused\x1b]0;pwned\x07\x1b[2J\nFAKE: approved " + "x" * 5000}

        def status(self) -> int:
            return 422

    r = _apply_at(Refusing, env, tmp, collect=collect)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "refused" in r.stderr and "\\x1b" in r.stderr, r.stderr
    assert "\x1b" not in r.stderr and "\x07" not in r.stderr, r.stderr
    assert "\nFAKE" not in r.stderr and len(r.stderr) < 2000, r.stderr


@pytest.mark.parametrize("collect", [False, True])
def test_a_nodes_redirect_is_said_with_where_it_points_not_followed(
        demo_server: tuple[str, dict[str, str], Path], collect: bool) -> None:
    """A node answering with a redirect was said as ``HTTP 302: (no body)``: the operator did
    not learn where it pointed, nor that it was not followed. Its Location is said, quoted and
    cut (a node's words: 5,000 characters here), and that it was not followed (helper round
    39W)."""
    _, env, tmp = demo_server
    heard: list[str] = []

    class Elsewhere(_JsonNode):
        def do_GET(self) -> None:
            heard.append(self.path)

        do_POST = do_GET  # noqa: N815 - the handler name http.server calls

    elsewhere = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)
    threading.Thread(target=elsewhere.serve_forever, daemon=True).start()
    where = f"http://127.0.0.1:{elsewhere.server_address[1]}/v1/" + "x" * 5000

    class Redirecting(_JsonNode):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(302)
            self.send_header("Location", where)
            self.send_header("content-length", "0")
            self.end_headers()

    try:
        r = _apply_at(Redirecting, env, tmp, collect=collect)
    finally:
        elsewhere.shutdown()
        elsewhere.server_close()
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "(no body)" not in said, said
    assert f"a redirect to '{where[:60]}" in said and "not followed" in said, said
    assert "x" * 200 not in said, said
    assert heard == []


def test_an_application_names_the_version_of_the_rule_the_applicant_was_shown(
        demo_server: tuple[str, dict[str, str], Path]) -> None:
    """`wallet apply` shows the rule of its registry snapshot and its version; the application
    names that version (``?rule=``), so a node whose rule changed since decides nothing
    (``stale_rule``), and the wallet says to take a newer snapshot and apply again."""
    from ledger.offline import load_snapshot
    from ledger.state import rule_hash

    _, env, tmp = demo_server
    snap = load_snapshot((tmp / "demo-data" / "snapshot.bin").read_bytes())
    shown = rule_hash(snap.registry.rule("elderly-allowance")).hex()
    asked: list[str] = []

    class Upgraded(_JsonNode):
        def status(self) -> int:
            return 409 if self.path.endswith("/apply") else 200

        def answer(self) -> dict[str, object]:
            if self.path.endswith("/apply"):
                asked.append(self.query)
                return {"detail": "stale_rule: the rule for 'elderly-allowance' is version "
                                  "0123456789abcdef now, not …", "error": "TxRejected",
                        "code": "stale_rule"}
            return _elderly_requests(f"http://127.0.0.1:{self.server.server_address[1]}")

    r = _apply_at(Upgraded, env, tmp)
    said = " ".join(r.stderr.split())
    assert r.returncode == 1, said
    assert asked == [f"rule={shown}"]
    assert f"version {shown[:16]}, needs these and no more" in said, said
    assert "the rule changed since the snapshot" in said and "ledger snapshot" in said, said
    assert "--collect" not in said  # nothing was decided


@pytest.mark.parametrize("code", ["not_authorized", None])
def test_another_refusal_of_an_application_is_not_said_a_changed_rule(
        demo_server: tuple[str, dict[str, str], Path], code: str | None) -> None:
    """Only a refusal whose code is ``stale_rule`` gets the wallet's "the rule changed since
    the snapshot" hint: another code, or none, is said in the node's own words alone.
    Mutation round 42M: the hint given on every 4xx refusal left every test passing."""
    class Refusing(_JsonNode):
        def status(self) -> int:
            return 409 if self.path.endswith("/apply") else 200

        def answer(self) -> dict[str, object]:
            if self.path.endswith("/apply"):
                refusal: dict[str, object] = {"detail": "refused for another reason",
                                              "error": "TxRejected"}
                return refusal if code is None else {**refusal, "code": code}
            return _elderly_requests(f"http://127.0.0.1:{self.server.server_address[1]}")

    _, env, tmp = demo_server
    r = _apply_at(Refusing, env, tmp)
    said = " ".join(r.stderr.split())
    assert r.returncode == 1, said
    assert "the application was refused: refused for another reason" in said, said
    assert "the rule changed" not in said and "--collect" not in said, said


def test_the_served_demos_steps_leave_no_file_the_readmes_next_block_writes(
        tmp_path: Path) -> None:
    """The served demo's steps had the reader save the desk's request as request.json, in the
    folder where the README's next block ("Try the paper-free path", once scripts/run is
    stopped) writes `--out request.json`: a newcomer following both word for word was refused,
    "request.json exists" (helper round 43D). The files the steps have the reader make are
    none of the ones that block makes."""
    import re

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("### Try the paper-free path", 1)[1].split("```sh", 1)[1]
    block = block.split("```", 1)[0]
    written = set(re.findall(r"(?:--out|>)\s+([A-Za-z][\w-]*\.\w+)", block))
    assert "request.json" in written, written  # the block this guards
    env = {**os.environ, "LEDGER_KEY_PASSPHRASE": "demo-pw", "COLUMNS": "200"}
    said = tmp_path / "stderr.txt"
    with said.open("w") as stderr, served_demo(tmp_path, env, stderr=stderr):
        text = said.read_text()
    steps = text.split("Try", 1)[1].split("Stop with Ctrl-C", 1)[0]
    named = set(re.findall(r"(?:--out|--request|as)\s+([\w-]+\.(?:json|bundle|bin))", steps))
    assert named and not named & written, (named, written)
