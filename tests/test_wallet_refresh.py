"""`wallet refresh`: credentials proven again against a node's newer checkpoint, over real HTTP.

The case it exists for: agencies rotate their node keys, the checkpoint in every bundle a citizen
holds is no longer final under the registry (its co-signers' keys are retired), and presenting
fails until the wallet takes a proof against a checkpoint the new keys signed."""

from __future__ import annotations

import contextlib
import http.server
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_api import PASS, make_demo, serve, settings_for
from test_audit_since_monitor import _drip, _QuietNode

from ledger.chain import Head, checkpoint_key
from ledger.finality import sign_checkpoint
from ledger.keys import PrivateKey, load_private_key, save_private_key
from ledger.network import Agency, governance_tx
from ledger.offline import export_snapshot
from ledger.ordering import SoloOrderer
from ledger.presentation import Request, Verifier
from ledger.store import Store
from node.app import create_app
from node.demo import DEMO_HOLDER_CLAIMS, NETWORK
from node.service import Node
from wallet.core import Wallet

WALLET = str(Path(sys.executable).with_name("wallet"))
AGENCIES = ("edu", "civil", "market")


def _key(data: Path, name: str) -> PrivateKey:
    return load_private_key(data / "keys" / name, PASS)


def _snapshot(data: Path, path: Path) -> Path:
    keys = {a: _key(data, f"{a}.node.key") for a in AGENCIES}
    with Store(data / "ledger", create=False) as store:
        path.write_bytes(export_snapshot(store, int(time.time()), node_keys=keys))
    return path


def _rotate_node_keys(data: Path, agencies: tuple[str, ...]) -> None:
    """Governance (edu and civil sign) rotates the node keys of ``agencies``; the new key files
    take the old ones' place. The block is co-signed by the new keys."""
    now = int(time.time())
    issuers = [Agency(a, "", _key(data, f"{a}.node.key"), _key(data, f"{a}.issuer.key"))
               for a in ("edu", "civil")]
    new = {a: PrivateKey.generate() for a in agencies}
    with Store(data / "ledger") as store:
        reg = store.registry
        assert reg is not None
        signers = [(a, new.get(a) or _key(data, f"{a}.node.key")) for a in AGENCIES]

        def on_block(head: Head, _registry: object) -> dict[bytes, bytes]:
            cp = sign_checkpoint(NETWORK, head, signers)
            return {checkpoint_key(head.log_size): cp.to_text().encode()}

        with SoloOrderer(store, clock=lambda: now, workers=0, on_block=on_block) as orderer:
            for seq, agency in enumerate(agencies, start=reg.gov_seq + 1):
                args = {"agency": agency, "role": "node", "new_key": new[agency].public.raw,
                        "at": now}
                orderer.submit(governance_tx(NETWORK, seq, "rotate_key", args, issuers)).result()
    for agency, key in new.items():
        save_private_key(data / "keys" / f"{agency}.node.key", key, PASS)


def _failed(wallet: Wallet, cid: str, snapshot: Path) -> list[str]:
    """The checks a fresh presentation of ``cid`` fails under ``snapshot`` (none: verified)."""
    from ledger.offline import load_snapshot

    snap = load_snapshot(snapshot.read_bytes())
    request = Request("n-" + os.urandom(8).hex(), "https://desk.example", "residence",
                      ("district",))
    envelope = wallet.present(cid, request, now=int(time.time()))
    report = Verifier(snap.registry, snap.status_list).verify(envelope, request,
                                                              now=int(time.time()))
    failed = [c.name for c in report.checks if not c.ok]
    assert failed or report.verified, report.to_json()
    return failed


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, Wallet, str]:
    data = make_demo(tmp_path / "demo-data")
    wallet = Wallet.init(tmp_path / "wallet.db", b"wallet-pass")
    return data, wallet, _residence_to(data, wallet)


def _residence_to(data: Path, wallet: Wallet) -> str:
    """A residence credential civil's node (over ``data``) issues into ``wallet``: its id."""
    node = Node(data, "civil", PASS, workers=0)
    try:
        bundle, _ = node.issue("residence", DEMO_HOLDER_CLAIMS[("civil", "residence")],
                               wallet.holder_jwk(), valid_days=365)
        reg = node.store.registry
        assert reg is not None
        return wallet.receive(bundle.to_bytes(), registry=reg, now=int(time.time())).id
    finally:
        node.close()


def _refresh_cli(wallet: Wallet, url: str, snapshot: Path,
                 *more: str) -> subprocess.CompletedProcess[str]:
    """`wallet refresh` of ``wallet`` through the real CLI, from the node at ``url``."""
    env = {**os.environ, "WALLET_PASSPHRASE": "wallet-pass", "COLUMNS": "200"}
    return subprocess.run([WALLET, "--wallet", str(wallet.path), "refresh", "--node", url,
                           "--registry", str(snapshot), *more], capture_output=True,
                          text=True, env=env, timeout=120, check=False)


def test_refresh_after_a_node_key_rotation(world: tuple[Path, Wallet, str],
                                           tmp_path: Path) -> None:
    data, wallet, cid = world
    assert _failed(wallet, cid, _snapshot(data, tmp_path / "before.bin")) == []
    _rotate_node_keys(data, ("civil", "market"))
    snapshot = _snapshot(data, tmp_path / "after.bin")
    assert _failed(wallet, cid, snapshot) == ["checkpoint"]  # edu's old key alone: no quorum
    app = create_app(settings_for(data), passphrase=PASS)
    with serve(app) as url:
        def refresh(*more: str) -> subprocess.CompletedProcess[str]:
            return _refresh_cli(wallet, url, snapshot, *more)

        r = refresh("--id", "ffffffff")
        assert r.returncode == 2 and "no credential with id 'ffffffff'" in r.stderr
        r = refresh("--id", cid[:10])
    assert r.returncode == 0, r.stderr
    assert "1 of 1 credentials proven at checkpoint" in r.stdout
    assert _failed(Wallet.open(wallet.path, b"wallet-pass"), cid, snapshot) == []


def test_a_proof_that_does_not_check_out_leaves_the_credential_as_it_was(
        world: tuple[Path, Wallet, str]) -> None:
    data, wallet, cid = world
    with Store(data / "ledger", create=False) as store:
        reg, text = store.registry, store.checkpoint()
        assert reg is not None and text is not None
    before = wallet.path.read_bytes()
    got = wallet.refresh({cid: [bytes(32)] * 4}, text.decode(), registry=reg,
                         now=int(time.time()))
    problem = got[cid]
    assert problem is not None and "inclusion" in problem
    assert wallet.path.read_bytes() == before  # nothing saved
    with pytest.raises(Exception, match="no credential"):
        wallet.refresh({"ab" * 32: []}, text.decode(), registry=reg, now=int(time.time()))


def test_refresh_with_id_proves_only_the_credentials_named(world: tuple[Path, Wallet, str],
                                                         tmp_path: Path) -> None:
    """--id keeps the node from learning the other credentials' leaves: only the one named is
    asked for and proven (a mutation round, round 15); without it, every one is."""
    data, wallet, cid = world
    other = _residence_to(data, wallet)
    snapshot = _snapshot(data, tmp_path / "snap.bin")
    app = create_app(settings_for(data), passphrase=PASS)
    with serve(app) as url:
        def refresh(*more: str) -> subprocess.CompletedProcess[str]:
            return _refresh_cli(wallet, url, snapshot, *more)

        one = refresh("--id", other[:10])
        every = refresh()
    assert one.returncode == 0, one.stderr
    assert "1 of 1 credentials proven" in one.stdout
    assert other[:12] in one.stderr and cid[:12] not in one.stderr
    # its id cut as `wallet list` cuts it, 16 digits (12 only in file names; helper round 37D)
    assert f"  {other[:16]} proven at checkpoint" in one.stderr, one.stderr
    assert every.returncode == 0 and "2 of 2 credentials proven" in every.stdout, every.stderr


def _refresh_at(handler: type[http.server.BaseHTTPRequestHandler], wallet: Wallet,
                snapshot: Path) -> subprocess.CompletedProcess[str]:
    """`wallet refresh` against a node of the test's own making (``handler``, an
    ``http.server`` request handler) on a free port: the finished process."""
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        return _refresh_cli(wallet, f"http://127.0.0.1:{server.server_address[1]}", snapshot)
    finally:
        server.shutdown()
        server.server_close()


def test_a_node_answering_a_proof_nested_past_any_depth_is_named_not_a_traceback(
        world: tuple[Path, Wallet, str], tmp_path: Path) -> None:
    """A node (or whoever runs the URL given) that answers the proof asked for with JSON
    nested thousands deep: `wallet refresh` ended in a RecursionError traceback; it says the
    node did not answer like one, and the wallet is left as it was."""

    import httpx

    data, wallet, _ = world
    snapshot = _snapshot(data, tmp_path / "snap.bin")
    before = wallet.path.read_bytes()
    app = create_app(settings_for(data), passphrase=PASS)
    with serve(app) as url:
        class Deep(_QuietNode):
            def do_GET(self) -> None:
                self._send(httpx.get(f"{url}{self.path}").content
                           if self.path == "/v1/checkpoint" else b"[" * 100_000 + b"]" * 100_000)

        r = _refresh_at(Deep, wallet, snapshot)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "did not answer like a ledger node" in " ".join(r.stderr.split()), r.stderr
    assert wallet.path.read_bytes() == before


def test_a_junk_checkpoint_is_said_with_the_node_that_sent_it(
        world: tuple[Path, Wallet, str], tmp_path: Path) -> None:
    """A node answering its checkpoint with junk: the line said what was wrong with the note
    but not which node sent it. It names the node; the wallet is left as it was (helper round
    39W)."""
    data, wallet, _ = world
    snapshot = _snapshot(data, tmp_path / "snap.bin")
    before = wallet.path.read_bytes()

    class Junk(_QuietNode):
        def do_GET(self) -> None:
            self._send(b"no checkpoint at all")

    r = _refresh_at(Junk, wallet, snapshot)
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "http://127.0.0.1:" in said and "did not answer like a ledger node" in said, said
    assert "blank line" in said, said  # what was wrong with it, still said
    assert wallet.path.read_bytes() == before


@pytest.mark.parametrize("chunked", [False, True])
def test_a_node_answering_without_end_is_cut_off_at_a_bound(
        world: tuple[Path, Wallet, str], tmp_path: Path, chunked: bool) -> None:
    """A node (or whoever runs the URL given) answering with more than any node sends: the
    wallet read it all into memory (a few GiB, or without end), then failed on what it was.
    It stops at MAX_ANSWER and says so; the wallet is left as it was (ADR 71)."""

    from wallet.cli import MAX_ANSWER

    data, wallet, _ = world
    snapshot = _snapshot(data, tmp_path / "snap.bin")
    before = wallet.path.read_bytes()
    total = MAX_ANSWER + (4 << 20)

    class Endless(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            if chunked:
                self.send_header("transfer-encoding", "chunked")
            else:
                self.send_header("content-length", str(total))
            self.end_headers()
            piece = b"a" * (1 << 20)
            try:
                for _ in range(total >> 20):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked
                                     else piece)
                if chunked:
                    self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass  # the wallet hung up: what it should do

        def log_message(self, *_: object) -> None:
            pass

    r = _refresh_at(Endless, wallet, snapshot)
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert f"answered with more than {MAX_ANSWER} bytes" in said, said
    assert wallet.path.read_bytes() == before


def test_a_checkpoint_older_than_the_one_held_does_not_replace_it(
        world: tuple[Path, Wallet, str]) -> None:
    """A lagging or hostile node's checkpoint, final but older than the one a credential is
    proven at: `wallet refresh` took it all the same (and said "proven at checkpoint N"),
    so verifiers were shown a staler ledger than the wallet had. It keeps the newer one."""
    from ledger.checkpoint import SignedCheckpoint
    from ledger.presentation import Bundle

    data, wallet, cid = world
    held = wallet._record(wallet._find(cid))
    assert isinstance(held, Bundle)
    older = SignedCheckpoint.from_text(held.checkpoint).checkpoint.size
    _residence_to(data, wallet)  # the log grows past it
    index = wallet.leaf_indexes()[cid]
    with Store(data / "ledger", create=False) as store:
        reg, newer = store.registry, store.head_checkpoint()
        assert reg is not None and newer is not None
        size = SignedCheckpoint.from_text(newer.decode()).checkpoint.size
        assert size > older
        proofs = {n: store.inclusion_proof(index, n) for n in (older, size)}
        old_text = store.checkpoint(older)
        assert old_text is not None
    now = int(time.time())
    assert wallet.refresh({cid: proofs[size]}, newer.decode(), registry=reg, now=now) == {
        cid: None}
    before = wallet.path.read_bytes()
    got = wallet.refresh({cid: proofs[older]}, old_text.decode(), registry=reg, now=now)
    assert got[cid] is not None and "older" in got[cid], got
    assert wallet.path.read_bytes() == before
    record = Wallet.open(wallet.path, b"wallet-pass")._record(wallet._find(cid))
    assert isinstance(record, Bundle)
    assert SignedCheckpoint.from_text(record.checkpoint).checkpoint.size == size


def test_a_refresh_takes_in_what_another_process_saved_meanwhile(
        world: tuple[Path, Wallet, str]) -> None:
    """`wallet refresh` opened the wallet, asked the node, then saved: a credential another
    `wallet receive` kept during that round trip made it fail whole ("changed since it was
    opened"). It now takes that save in under the wallet's lock; both are kept."""
    from ledger.presentation import Bundle

    data, wallet, cid = world
    refreshing = Wallet.open(wallet.path, b"wallet-pass")  # opened, then asks the node …
    other = _residence_to(data, wallet)                   # … while another process receives
    held = refreshing._record(refreshing._find(cid))
    assert isinstance(held, Bundle)
    with Store(data / "ledger", create=False) as store:
        reg = store.registry
    assert reg is not None
    got = refreshing.refresh({cid: held.proof}, held.checkpoint, registry=reg,
                             now=int(time.time()))
    assert got == {cid: None}
    assert {c.id for c in Wallet.open(wallet.path, b"wallet-pass").list()} == {cid, other}


@pytest.mark.parametrize(("head", "drop", "tail"), [
    (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-slow: ", b"a",
     b"\r\ncontent-length: 2\r\nconnection: close\r\n\r\n[]"),
    (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
     b"transfer-encoding: chunked\r\n\r\n1;", b"x", b"\r\n[\r\n1\r\n]\r\n0\r\n\r\n")],
    ids=["headers", "chunk-size-line"])
@pytest.mark.parametrize("kept_alive", [False, True], ids=["new", "kept-alive"])
def test_a_node_that_drips_its_headers_is_given_up_on_by_the_wallet(
        monkeypatch: pytest.MonkeyPatch, head: bytes, drop: bytes, tail: bytes,
        kept_alive: bool) -> None:
    """The wallet's bound on a node's answer (``_fetch``) was checked between the body's
    chunks: a node dripping its status line and headers (or one chunk's size line) a byte at a
    time, each within the 60 s read timeout, held `wallet apply` and `wallet refresh` for as
    long as it liked. The bound runs from the request sent, headers too, as the ledger CLI's,
    on a connection kept alive from an answer before too (helper round 40H)."""
    import threading

    import httpx
    from test_audit_since_monitor import _start_serving, _stop_serving

    from ledger.within import bounded
    from ledger.within import client as within_client
    from wallet import cli
    from wallet.errors import WalletError

    stop, sent = threading.Event(), threading.Event()
    ports: list[int] = []

    class Dripping(_QuietNode):
        protocol_version = "HTTP/1.1"  # a connection kept alive after an answer

        def do_GET(self) -> None:
            ports.append(self.client_address[1])
            if self.path == "/v1/health":  # answered at once, the connection kept
                self._send(b"[]")
                return
            self.wfile.write(head)
            if not _drip(self.wfile, [drop] * 400, stop):  # 20 s or more, a few bytes now and then
                return
            self.wfile.write(tail)
            sent.set()

    monkeypatch.setattr(cli, "ANSWER_WAIT_MORE", 0.0)  # not a minute: a test's
    url = _start_serving(Dripping)
    try:
        with within_client(timeout=60) as client:
            if kept_alive:
                assert cli._fetch(client, "GET", f"{url}/v1/health").json() == []
            with pytest.raises(WalletError, match=r"still answering after 1 s"):
                cli._fetch(client, "GET", f"{url}/v1/checkpoint",
                           timeout=httpx.Timeout(60, read=1.0))
        assert not sent.is_set()  # given up on as it dripped, not once it was done
        assert len(ports) == 1 + kept_alive and len(set(ports)) == 1  # one connection
    finally:
        stop.set()
        _stop_serving(url)
    # a client made elsewhere is refused, not read unbounded (httpx has no public way in)
    with httpx.Client() as foreign, pytest.raises(TypeError, match="cannot be bounded"):
        bounded(foreign)


def test_the_wallets_bound_holds_by_https_with_the_default_trust(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The wallet's clients (``ledger.within.client``, a transport of ours on httpx's and
    httpcore's public API; helper round 41W) trust as httpx's default does (SSL_CERT_FILE
    here): a node of a network's own CA is refused by TLS without it (an ``httpx`` error, as
    the wallet catches), trusted with it, and a node dripping its headers by HTTPS is given up
    on at the bound, on the connection kept alive from the answer before."""
    import threading

    import httpx
    from test_audit_since_monitor import _node_tls, _start_serving, _stop_serving

    from ledger.within import client
    from wallet import cli
    from wallet.errors import WalletError

    stop, sent = threading.Event(), threading.Event()

    class Dripping(_QuietNode):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path == "/v1/health":
                self._send(b"[]")
                return
            self.wfile.write(b"HTTP/1.1 200 OK\r\nx-slow: ")
            if not _drip(self.wfile, [b"a"] * 400, stop):  # 20 s or more, a byte now and then
                return
            sent.set()

    tls, ca = _node_tls(tmp_path / "pki")
    monkeypatch.setattr(cli, "ANSWER_WAIT_MORE", 0.0)  # not a minute: a test's
    url = _start_serving(Dripping, tls)
    try:
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        with client(timeout=60) as untrusting, pytest.raises(
                httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            cli._fetch(untrusting, "GET", f"{url}/v1/health")
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))
        with client(timeout=60) as trusting:
            assert cli._fetch(trusting, "GET", f"{url}/v1/health").json() == []
            with pytest.raises(WalletError, match=r"still answering after 1 s"):
                cli._fetch(trusting, "GET", f"{url}/v1/checkpoint",
                           timeout=httpx.Timeout(60, read=1.0))
        assert not sent.is_set()  # given up on as it dripped, not once it was done
    finally:
        stop.set()
        _stop_serving(url)


def test_the_wallet_reaches_a_node_through_the_proxy_of_the_environment_bounded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The wallet's clients took HTTP_PROXY (and HTTPS_PROXY, ALL_PROXY, NO_PROXY) from the
    environment, as httpx's do, and its bound held through the proxy's connections too; its
    own transport (helper round 41W) keeps both: a node reached through a proxy answers, and
    one dripping its headers through it is given up on at the bound."""
    import threading

    import httpx
    from test_audit_since_monitor import _start_serving, _stop_serving

    from ledger.within import client
    from wallet import cli
    from wallet.errors import WalletError

    stop, sent = threading.Event(), threading.Event()
    asked: list[str] = []

    class Proxy(_QuietNode):  # answers itself what it is asked to fetch
        def do_GET(self) -> None:
            asked.append(self.path)
            if self.path.endswith("/v1/health"):
                self._send(b"[]")
                return
            self.wfile.write(b"HTTP/1.1 200 OK\r\nx-slow: ")
            if not _drip(self.wfile, [b"a"] * 400, stop):  # 20 s or more, a byte now and then
                return
            sent.set()

    monkeypatch.setattr(cli, "ANSWER_WAIT_MORE", 0.0)  # not a minute: a test's
    proxy = _start_serving(Proxy)
    node = "http://node.wallet-test.invalid"  # no such name: only the proxy reaches it
    try:
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY",
                     "https_proxy", "http_proxy", "REQUEST_METHOD"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy)
        with client(timeout=60) as proxied:
            assert cli._fetch(proxied, "GET", f"{node}/v1/health").json() == []
            with pytest.raises(WalletError, match=r"still answering after 1 s"):
                cli._fetch(proxied, "GET", f"{node}/v1/checkpoint",
                           timeout=httpx.Timeout(60, read=1.0))
        assert not sent.is_set()  # given up on as it dripped, not once it was done
        assert asked == [f"{node}/v1/health", f"{node}/v1/checkpoint"]
        monkeypatch.setenv("NO_PROXY", ".wallet-test.invalid")  # the node's name: no proxy
        with client(timeout=60) as direct, pytest.raises(httpx.ConnectError):
            cli._fetch(direct, "GET", f"{node}/v1/health")
        assert len(asked) == 2
    finally:
        stop.set()
        _stop_serving(proxy)


def _dripping_relay(upstream: str, stop: Any, every: float = 0.02) -> tuple[str, Any]:
    """A relay on 127.0.0.1 to ``upstream`` (a server's URL) passing what the client sends at
    once and what the server answers a byte every ``every`` seconds, TLS handshake included,
    until ``stop`` is set: its URL (same scheme) and a function that closes it."""
    import socket
    import threading
    from urllib.parse import urlsplit

    target = urlsplit(upstream)
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = [listener]

    def pump(source: socket.socket, sink: socket.socket, dripping: bool) -> None:
        try:
            while not stop.is_set():
                got = source.recv(1 if dripping else 65536)
                if not got:
                    return
                sink.sendall(got)
                if dripping and stop.wait(every):
                    return
        except OSError:
            return

    def serve() -> None:
        while not stop.is_set():
            try:
                near, _ = listener.accept()
            except OSError:
                return
            far = socket.create_connection((target.hostname or "", target.port or 0))
            held.extend((near, far))
            threading.Thread(target=pump, args=(near, far, False), daemon=True).start()
            threading.Thread(target=pump, args=(far, near, True), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()

    def close() -> None:
        stop.set()
        for s in held:
            s.close()

    return f"{target.scheme}://127.0.0.1:{listener.getsockname()[1]}", close


def test_a_node_that_drips_its_tls_handshake_is_given_up_on_at_the_bound(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The bound on a node's answer cut each read's timeout, but the TLS handshake ran on the
    socket below those reads, under the connect timeout alone, which starts again with every
    read: a node dripping its handshake a byte at a time held the wallet (and the archive
    download) for as long as it liked. The handshake now ends at the bound too (a ConnectTimeout,
    as httpx names a handshake's), before the node has sent it whole (helper round 42H)."""
    import threading

    import httpx
    from test_audit_since_monitor import _node_tls, _start_serving, _stop_serving

    from ledger.within import client
    from wallet import cli
    from wallet.errors import WalletError

    reached = threading.Event()

    class Node(_QuietNode):
        def do_GET(self) -> None:
            reached.set()
            self._send(b"[]")

    tls, ca = _node_tls(tmp_path / "pki")
    monkeypatch.setattr(cli, "ANSWER_WAIT_MORE", 0.0)  # not a minute: a test's
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    url = _start_serving(Node, tls)
    stop = threading.Event()
    relay, close = _dripping_relay(url, stop)
    try:
        with client(timeout=60) as trusting:
            with pytest.raises(WalletError, match=r"still answering after 1 s") as given_up:
                cli._fetch(trusting, "GET", f"{relay}/v1/health",
                           timeout=httpx.Timeout(60, read=1.0))
            assert isinstance(given_up.value.__context__, httpx.ConnectTimeout)
            assert not reached.is_set()  # given up on mid-handshake, not once it was done
            close()  # the relay and its connections closed: the node serves on (its accept
            # held the handshake), and the same client reaches it directly
            assert cli._fetch(trusting, "GET", f"{url}/v1/health").json() == []
    finally:
        close()
        _stop_serving(url)


def test_a_compressed_answer_is_neither_asked_for_nor_opened_by_the_wallet() -> None:
    """The wallet asked for compressed answers (httpx's default) and opened what came, a read
    of 64 KiB at a time (its bound was checked after each): gzip made that 64 MiB, and zstd or
    brotli, were either installed, GiBs, from a few KiB of a hostile node's. It asks for none,
    and an answer compressed all the same is refused, unopened (helper round 40H)."""
    import gzip

    from test_audit_since_monitor import _start_serving, _stop_serving

    from ledger.within import client as within_client
    from wallet import cli
    from wallet.errors import WalletError

    asked: list[str | None] = []

    class Compressing(_QuietNode):
        def do_GET(self) -> None:
            asked.append(self.headers.get("accept-encoding"))
            body = gzip.compress(b"[]")
            self.send_response(200)
            self.send_header("content-encoding", "gzip")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    url = _start_serving(Compressing)
    try:
        with within_client(timeout=60) as client, pytest.raises(
                WalletError, match=r"compressed \('gzip'\), which the wallet did not ask for"):
            cli._fetch(client, "GET", f"{url}/v1/checkpoint")
    finally:
        _stop_serving(url)
    assert asked == ["identity"]


@pytest.mark.parametrize(("name", "value", "said"), [
    ("HTTPS_PROXY", "ftp://proxy.wallet-test.invalid", "HTTPS_PROXY"),
    ("HTTP_PROXY", "http://proxy.wallet-test.invalid:port", "HTTP_PROXY"),
    ("ALL_PROXY", "socks5://proxy.wallet-test.invalid:1080", "ALL_PROXY")],
    ids=["scheme", "port", "socks"])
def test_a_proxy_of_the_environment_that_cannot_be_used_is_said_not_a_traceback(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        name: str, value: str, said: str) -> None:
    """A proxy setting of the environment httpx cannot use (a scheme it does not know, a port
    that is no number, SOCKS without the ``socksio`` package) raised ValueError, httpx's
    InvalidURL or ImportError out of ``within.client``, which neither the wallet nor the
    archive download catches: a traceback. It is an ``httpx.ProxyError`` naming the variable,
    said as every other failure to reach the node, nothing fetched (helper round 42H)."""
    import importlib.util

    import httpx
    import typer

    import ledger.cli
    from ledger.within import client
    from wallet import cli
    from wallet.errors import WalletError

    if name == "ALL_PROXY" and importlib.util.find_spec("socksio") is not None:
        pytest.skip("socksio is installed: a SOCKS proxy can be used")
    for other in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY",
                  "https_proxy", "HTTP_PROXY", "http_proxy", "REQUEST_METHOD"):
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv(name, value)
    with pytest.raises(httpx.ProxyError, match=rf"the proxy set in {said} cannot be used"):
        client(timeout=60)
    node = "http://node.wallet-test.invalid"
    with pytest.raises(WalletError, match=rf"cannot collect at {node}: the proxy set in {said}"):
        cli._collect(None, node, "library")
    with (tmp_path / "fetched").open("wb") as dest, pytest.raises(typer.Exit) as ended:
        ledger.cli._fetch_archive(node, None, dest, str(tmp_path))
    assert ended.value.exit_code == 1
    assert f"the proxy set in {said} cannot be used" in " ".join(capsys.readouterr().err.split())
    assert (tmp_path / "fetched").read_bytes() == b""


def test_a_within_client_keeps_trust_env_and_refuses_options_its_transports_would_drop(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``within.client(trust_env=False)`` still took the environment's proxies and its
    SSL_CERT_FILE, where an httpx client so made takes neither; and the options httpx hands
    to the transports it makes (``limits``, ``http2``, ``cert``, ``proxy``, …) were passed to
    ``httpx.Client`` beside our transport, which dropped them unsaid, or (``proxy``) made a
    transport of httpx's own for every URL, read unbounded and let through by ``bounded()``.
    ``trust_env`` is now carried as httpx carries it, the others refused (helper round 42H)."""
    import httpx
    from test_audit_since_monitor import _node_tls, _start_serving, _stop_serving

    from ledger.within import bounded, client
    from wallet import cli

    asked: list[str] = []

    class Node(_QuietNode):
        def do_GET(self) -> None:
            asked.append(self.path)
            self._send(b"[]")

    tls, ca = _node_tls(tmp_path / "pki")
    proxy, direct, secure = _start_serving(Node), _start_serving(Node), _start_serving(Node, tls)
    try:
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY",
                     "https_proxy", "http_proxy", "REQUEST_METHOD", "SSL_CERT_DIR"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))
        for made in (client, httpx.Client):  # ours as httpx's
            with made(timeout=60) as trusting:
                assert trusting.get(f"{secure}/v1/health").json() == []
                assert trusting.get(f"{direct}/v1/health").json() == []
            assert asked == ["/v1/health", f"{direct}/v1/health"]  # the second by the proxy
            asked.clear()
            with made(timeout=60, trust_env=False) as untrusting:
                with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    untrusting.get(f"{secure}/v1/health")
                assert untrusting.get(f"{direct}/v1/health").json() == []
            assert asked == ["/v1/health"]  # straight to the node, no proxy
            asked.clear()
        with client(timeout=60, trust_env=False) as untrusting:
            assert cli._fetch(bounded(untrusting), "GET", f"{direct}/v1/health").json() == []
        for option in ({"limits": httpx.Limits(max_connections=1)}, {"http2": True},
                       {"cert": str(ca)}, {"proxy": proxy}, {"mounts": {}},
                       {"transport": httpx.HTTPTransport()},
                       # each refused option named (round 43M: these three passed unchecked)
                       {"app": lambda *_: None}, {"http1": False}, {"proxies": proxy}):
            with pytest.raises(TypeError, match=rf"takes no {next(iter(option))}: its "
                                                r"transports are its own"):
                client(timeout=60, **option)
    finally:
        for url in (proxy, direct, secure):
            _stop_serving(url)


def test_a_request_body_a_node_does_not_read_is_given_up_on_at_the_bound() -> None:
    """A node that takes the connection and reads nothing held a request's write for its
    write timeout, or for ever with none, past the answer's bound: the write's timeout is cut
    to what is left of it too, a WriteTimeout as httpx names it (helper round 42H). The node
    hangs up after 30 s, a WriteError, should the write outlast the bound."""
    import socket
    import threading

    import httpx

    from ledger.within import Bound, client, within

    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))

    def take() -> None:
        near, _ = listener.accept()
        with near:
            stop.wait(30)  # reads nothing

    threading.Thread(target=take, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        with client(timeout=httpx.Timeout(60, write=None)) as untimed, within(Bound(1.0)), \
                pytest.raises(httpx.WriteTimeout):
            untimed.post(url, content=bytes(64 << 20))
    finally:
        stop.set()
        listener.close()


def test_a_read_begun_past_its_bound_is_a_read_timeout_not_a_value_error() -> None:
    """A read through a client of ``ledger.within`` that begins once its bound has passed (an
    answer whose bytes kept coming until the deadline, each read quick) is given up at once
    as one of httpx's timeouts, which the wallet and the archive fetch say as a slow answer: the
    socket's timeout would have been set negative (a ValueError, a traceback). Mutation round
    42M: the check dropped left every test passing, since their slow answers time out within
    a read. The server answers at once: only the passed bound stops the read."""
    import httpx
    from test_audit_since_monitor import _start_serving, _stop_serving

    from ledger.within import Bound, client, within

    class Quick(_QuietNode):
        def do_GET(self) -> None:
            with contextlib.suppress(OSError):  # the client gave up: it hung up
                self._send(b"[]")

    url = _start_serving(Quick)
    try:
        with client(timeout=60) as http:
            assert http.get(f"{url}/v1/checkpoint").content == b"[]"  # control: unbounded
            with within(Bound(0.0)) as bound:
                assert bound.passed()
                with pytest.raises(httpx.TimeoutException):  # round 42H: cut at its write
                    http.get(f"{url}/v1/checkpoint")
    finally:
        _stop_serving(url)


def test_a_silent_node_is_given_up_on_at_the_bound_not_at_the_read_timeout() -> None:
    """Each read's timeout is cut to what is left of the bound: a node that says nothing for
    longer than what is left is given up on at the bound, not after the request's own read
    timeout (60 s here; the archive's 60 s against its 120 s first wait). The node answers
    after 3 s: a read left at its 60 s takes that answer, past the 1 s bound. Mutation round
    42M: the cut dropped left every test passing (their nodes drip, and each read begun past
    the bound is refused)."""
    import threading

    import httpx
    from test_audit_since_monitor import _start_serving, _stop_serving

    from ledger.within import Bound, client, within

    stop = threading.Event()

    class Silent(_QuietNode):
        def do_GET(self) -> None:
            if stop.wait(3.0):
                return
            with contextlib.suppress(OSError):  # the client gave up: it hung up
                self._send(b"[]")

    url = _start_serving(Silent)
    try:
        with client(timeout=60) as http, within(Bound(1.0)), pytest.raises(httpx.ReadTimeout):
            http.get(f"{url}/v1/checkpoint")
    finally:
        stop.set()
        _stop_serving(url)


def test_a_client_made_elsewhere_is_refused_by_the_wallets_bounded_fetch() -> None:
    """A client not made by ``ledger.within.client`` cannot have its reads bounded through
    httpx's public API (nor keeps a --ca it was not made with): ``bounded`` refuses it (a
    TypeError) before anything is sent, where standing in one of its own for it would lose
    that client's trust unsaid (ADR 82). Mutation round 42M: the check dropped left every
    test passing."""
    import httpx

    from ledger.within import bounded, client
    from wallet import cli

    with httpx.Client(timeout=60) as elsewhere:
        with pytest.raises(TypeError, match=r"not made by ledger\.within\.client"):
            bounded(elsewhere)
        with pytest.raises(TypeError, match=r"cannot be bounded in time"):
            cli._fetch(elsewhere, "GET", "http://127.0.0.1:9/v1/checkpoint")
    with client(timeout=60) as ours:
        assert bounded(ours) is ours


def test_a_within_client_takes_the_environments_no_proxy_as_httpx_does(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``within.client`` reads the environment's proxies itself (httpx reads them only for a
    client given no transport), NO_PROXY included; a client ignoring ``NO_PROXY=*`` (or one of
    its other forms) passed every test: a node the operator exempted was reached through the
    proxy. Each setting here routes a request as httpx's own client routes it (round 43M)."""
    import httpx
    from test_audit_since_monitor import _start_serving, _stop_serving

    from ledger.within import client

    asked: list[tuple[str, str]] = []

    def serving(label: str) -> str:
        class Node(_QuietNode):
            def do_GET(self) -> None:
                asked.append((label, self.path))
                self._send(b"[]")
        return _start_serving(Node)

    proxy, node = serving("proxy"), serving("node")
    port = node.rsplit(":", 1)[1]
    through = "127.0.0.1:" + proxy.rsplit(":", 1)[1]
    cases = [  # (the environment, the URL asked, whether the proxy is asked)
        ({"HTTP_PROXY": proxy}, node, True),
        ({"HTTP_PROXY": through}, node, True),  # no scheme: http:// is meant
        ({"ALL_PROXY": proxy}, node, True),
        ({"HTTP_PROXY": proxy, "NO_PROXY": "*"}, node, False),
        ({"ALL_PROXY": proxy, "NO_PROXY": "other.invalid, *"}, node, False),
        ({"HTTP_PROXY": proxy, "NO_PROXY": "127.0.0.1"}, node, False),
        ({"HTTP_PROXY": proxy, "NO_PROXY": "127.0.0.2"}, node, True),
        ({"HTTP_PROXY": proxy, "NO_PROXY": f"http://127.0.0.1:{port}"}, node, False),
        ({"HTTP_PROXY": proxy, "NO_PROXY": "localhost"}, f"http://localhost:{port}", False),
        ({"HTTP_PROXY": proxy, "NO_PROXY": "localhost"},
         f"http://node.localhost:{port}", True),  # a name under localhost is not it
        ({"HTTP_PROXY": proxy, "NO_PROXY": "::1"}, node, True),
        ({"HTTP_PROXY": proxy, "NO_PROXY": ",,"}, node, True)]
    try:
        for environment, url, proxied in cases:
            for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY",
                         "https_proxy", "HTTP_PROXY", "http_proxy", "REQUEST_METHOD"):
                monkeypatch.delenv(name, raising=False)
            for name, value in environment.items():
                monkeypatch.setenv(name, value)
            for made in (httpx.Client, client):  # httpx's as ours
                with made(timeout=60) as trusting:
                    assert trusting.get(f"{url}/v1/health").json() == []
                want = [("proxy", f"{url}/v1/health")] if proxied else [("node", "/v1/health")]
                assert asked == want, (made, environment, url)
                asked.clear()
    finally:
        for url in (proxy, node):
            _stop_serving(url)


def test_a_node_that_reads_no_request_is_given_up_on_at_the_bound_not_its_write_timeout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The bound on a node's answer cuts the write's timeout too (ADR 83): a node that takes
    the connection and reads nothing of a large request stalls the write, which the socket's
    write timeout (here 60 s) alone would hold. Round 43M: a mutant without that cut passed
    every test (no test wrote more than a socket's buffers). The node here reads the request
    only after 20 s and then answers: the wallet has given up before, at its 1 s bound."""
    import socket
    import threading

    import httpx

    from ledger.within import client
    from wallet import cli
    from wallet.errors import WalletError

    stop, answered = threading.Event(), threading.Event()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def late_reader() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                if stop.wait(20):  # the wallet gave up: it hangs up
                    return
                conn.settimeout(30)
                while conn.recv(1 << 20):
                    if not answered.is_set():
                        answered.set()
                        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n[]")

    reader = threading.Thread(target=late_reader, daemon=True)
    reader.start()
    monkeypatch.setattr(cli, "ANSWER_WAIT_MORE", 0.0)  # not a minute: a test's
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        with client(timeout=60, trust_env=False) as direct, pytest.raises(
                (WalletError, httpx.WriteTimeout)):
            cli._fetch(direct, "POST", f"{url}/v1/apply", content=b"x" * (64 << 20),
                       timeout=httpx.Timeout(60, read=1.0))
        assert not answered.is_set()  # given up on while it read nothing
    finally:
        stop.set()
        listener.close()
        reader.join(30)
