"""A local N-agency network on 127.0.0.1: etcd members + agency nodes, for demos and tests.

:func:`create_cluster` lays out a folder::

    cluster.toml                 network id, agencies, ports (read back by LocalCluster)
    pki/                         CA + one certificate per agency (keys encrypted)
    <agency>/data/ledger         the agency's store (starts at the shared genesis)
    <agency>/data/keys           its node and issuer keys (encrypted), nobody else's
    <agency>/node.toml           its node config (ordering = "etcd", HTTPS)
    <agency>/etcd/               its etcd member's data
    logs/                        each process's output

:class:`LocalCluster` starts, kills, restarts and stops the processes. Ports: node ``base + i``,
etcd client ``base + 100 + i``, etcd peer ``base + 200 + i``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time as _time
import tomllib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from ledger import codec
from ledger.chain import build_genesis
from ledger.errors import LedgerError
from ledger.files import hold_empty_folder, interrupts_held, remove_contents, write_atomic
from ledger.keys import PASSPHRASE_ENV, PrivateKey, save_private_key, seal_secret
from ledger.network import Agency, genesis_tx
from ledger.store import Store
from ledger.tx import Tx
from node.config import network_lines
from node.etcdadmin import EtcdAdmin, EtcdAdminError
from node.pki import (
    PkiError,
    create_pki,
    ensure_crl,
    ensure_operator_cert,
    issue_agency_cert,
    list_certificates,
    lock,
    operator_credentials,
    revoke_agency_cert,
    revoked_only,
    runtime_base,
    sweep_stale_runtimes,
    unlock,
)
from node.service import CREDIT_SECRET, CREDIT_SECRET_FILE, read_credit_secret

__all__ = ["AGENCY_NAMES", "OPERATOR_TOKEN_FILE", "RESTART_SOCKET", "ClusterError",
           "LocalCluster", "RestartDesk", "ask_restart", "check_etcd_installed",
           "check_new_cluster", "check_ports_free", "create_cluster", "etcd_command",
           "new_cluster_ports_free", "run_etcd_member"]

OPERATOR_TOKEN_FILE = "operator.token"  # noqa: S105 - a file name, not a secret
"""The cluster's operator token (random, 0600); each node.toml holds only its SHA-256."""

AGENCY_NAMES = {
    "civil": "Civil Affairs Bureau", "edu": "Education Bureau", "health": "Health Commission",
    "market": "Market Regulation Bureau", "labour": "Human Resources and Social Security",
    "tax": "Tax Bureau", "transport": "Transport Bureau", "housing": "Housing Bureau",
    "justice": "Justice Bureau",
}
ETCD_SNAPSHOT_COUNT = 2000
"""etcd keeps its Raft log in memory until a snapshot every this many entries (then 5,000 more
for slow followers). Its default, 100,000, is sized for small values; our batch entries are up to
~0.8 MB, so the default would let each member hold gigabytes (ADR 28)."""

_PASSPHRASE_VARS = frozenset({PASSPHRASE_ENV, f"{PASSPHRASE_ENV}_FILE"})
_PROXY_VARS = frozenset({"http_proxy", "https_proxy", "all_proxy", "no_proxy", "grpc_proxy"})


def _etcd_env() -> dict[str, str]:
    """The environment an etcd member is started with: ours without the key passphrase (etcd
    needs none, and /proc shows a process's environment to its user's other processes for as
    long as it runs) and without proxies, in any case (ADR 84: a member talks to its peers
    directly, as the node does; etcd follows ``HTTPS_PROXY`` for its peer traffic)."""
    return {k: v for k, v in os.environ.items()
            if k not in _PASSPHRASE_VARS and k.lower() not in _PROXY_VARS}
_PASSPHRASE_FILE = "node.passphrase"  # noqa: S105 - a file name, not a secret
"""A node's key passphrase in its runtime folder, between its start and its health."""


class ClusterError(LedgerError):
    """A local cluster that cannot be created, started or reached."""


@dataclass(frozen=True)
class Member:
    agency: str
    index: int
    node_port: int
    client_port: int
    peer_port: int

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.node_port}"

    @property
    def client_url(self) -> str:
        return f"https://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"https://127.0.0.1:{self.peer_port}"


def _listened_on(port: int) -> bool:
    """Whether a process listens on 127.0.0.1:``port`` (a port only in TIME_WAIT is free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _members(agencies: Sequence[str], base: int) -> list[Member]:
    return [Member(a, i, base + i, base + 100 + i, base + 200 + i)
            for i, a in enumerate(agencies)]


def check_ports_free(members: Iterable[Member]) -> None:
    """Raise ClusterError naming the ports of ``members`` some process listens on."""
    taken = [p for m in members for p in (m.node_port, m.client_port, m.peer_port)
             if _listened_on(p)]
    if taken:  # another cluster on this folder (its nodes would answer our health checks)
        raise ClusterError(f"port{'s' if len(taken) > 1 else ''} "
                           f"{', '.join(map(str, taken))} on 127.0.0.1 "
                           f"{'are' if len(taken) > 1 else 'is'} in use (another "
                           "`ledger-node cluster` on this folder, or another program): "
                           "nothing was started")


def check_new_cluster(n: int, base_port: int) -> None:
    """Raise ClusterError unless ``n`` agencies from ``base_port`` make a cluster: bad input,
    known before a passphrase is asked for or anything is made."""
    if not 1 <= n <= len(AGENCY_NAMES):
        raise ClusterError(f"--agencies must be 1..{len(AGENCY_NAMES)}, got {n}")
    _check_base_port(n, base_port)


def new_cluster_ports_free(n: int, base_port: int) -> None:
    """Raise ClusterError if a new ``n``-agency cluster on ``base_port`` could not start
    (checked before its folder is made: a refused start leaves nothing behind)."""
    if 1 <= n <= len(AGENCY_NAMES):
        _check_base_port(n, base_port)
        check_ports_free(_members(list(AGENCY_NAMES)[:n], base_port))


def _check_base_port(n: int, base_port: int) -> None:
    """ClusterError unless every port of ``n`` agencies from ``base_port`` (base+i to
    base+200+i) is a port: one past 65535 ended in an OverflowError traceback."""
    top = 65535 - 200 - (n - 1)
    if not 1 <= base_port <= top:
        raise ClusterError(f"--base-port {base_port}: {n} agencies use ports base to "
                           f"base+{200 + n - 1}, so give 1 to {top}")


def create_cluster(folder: Path, n: int, passphrase: bytes, *, network: str = "district-local",
                   base_port: int = 8100, now: int | None = None,
                   retention: int = 1000) -> None:
    """Create a new N-agency network in ``folder`` (which must be new or empty)."""
    check_new_cluster(n, base_port)
    if folder.exists() and any(folder.iterdir()):
        raise ClusterError(f"{folder} is not empty: a new cluster needs a new folder")
    t = int(_time.time()) if now is None else now
    ids = list(AGENCY_NAMES)[:n]
    agencies = [Agency(a, AGENCY_NAMES[a], PrivateKey.generate(), PrivateKey.generate())
                for a in ids]
    quorum = n // 2 + 1
    genesis = genesis_tx(network, agencies, quorum, t)
    block0 = build_genesis(genesis).header
    assert block0 is not None
    genesis_hash = block0.hash.hex()
    # held while it is filled: another `cluster` (or init) into the same folder waits, then
    # finds it not empty; a cut-short run removes only what it wrote (not the other's)
    held, made = hold_empty_folder(folder, 0o755)
    if held is None:
        raise ClusterError(f"{folder} is not empty: a new cluster needs a new folder (another "
                           "process wrote into it meanwhile)")
    try:
        create_pki(folder / "pki", network, ids, passphrase,
                   now=_dt.datetime.fromtimestamp(t, _dt.UTC))
        members = _members(ids, base_port)
        # A random operator token, kept 0600 in the folder: one derived from the key passphrase
        # would let anyone who reads a node.toml test passphrase guesses at hash speed.
        token = secrets.token_urlsafe(32)
        write_atomic(folder / OPERATOR_TOKEN_FILE, token.encode() + b"\n", 0o600)
        credit = secrets.token_bytes(32)  # the network's credit secret: one for every agency
        for agency, m in zip(agencies, members, strict=True):
            root = folder / agency.id
            _agency_folders(root)
            save_private_key(root / "data" / "keys" / f"{agency.id}.node.key", agency.node_key,
                             passphrase)
            save_private_key(root / "data" / "keys" / f"{agency.id}.issuer.key", agency.issuer_key,
                             passphrase)
            write_atomic(root / "data" / "keys" / CREDIT_SECRET_FILE,
                         seal_secret(credit, passphrase, CREDIT_SECRET), 0o600)
            with Store(root / "data" / "ledger") as store:
                store.write_block(build_genesis(genesis))
            write_atomic(root / "node.toml", _node_config(agency.id, m, members, network, token,
                                                          retention).encode(), 0o600)
        (folder / "logs").mkdir(mode=0o750)
        _write_meta(folder, {"network": network, "agencies": ids, "base_port": base_port,
                             "quorum": quorum, "genesis_time": t, "retention": retention,
                             "genesis_hash": genesis_hash})
    except BaseException:
        # Cut short (an error, Ctrl-C, SIGTERM): what was written goes, so the next run can
        # create the cluster in the same folder instead of finding it "not empty".
        with contextlib.suppress(OSError):
            remove_contents(folder)
            if made:
                folder.rmdir()
        raise
    finally:
        os.close(held)


def _agency_folders(root: Path) -> None:
    """An agency's folder, its ``data`` and ``data/keys`` (0750, 0750, 0700), each with its own
    mode whatever the umask: ``mkdir(parents=True)`` made the first two 0777 under umask 000,
    so anyone could swap the node.toml, the store or the keys folder of the agency inside."""
    root.mkdir(mode=0o750, exist_ok=True)  # as before: one already there is taken
    (root / "data").mkdir(mode=0o750, exist_ok=True)
    (root / "data" / "keys").mkdir(mode=0o700)


def open_log(path: Path) -> BinaryIO:
    """``path`` opened to append a process's output, made 0640 if new (``open(path, "ab")`` made
    it 0666 under umask 000: anyone could rewrite what a node or etcd member said)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    return os.fdopen(fd, "ab")


_LAUNCH = ("import os, signal, sys\n"
           "from ledger.files import die_with_parent\n"
           "die_with_parent(signal.SIGTERM, int(sys.argv[1]))\n"
           "os.execvp(sys.argv[2], sys.argv[2:])\n")


def _dies_with_us(cmd: Sequence[str]) -> list[str]:
    """``cmd`` started through a small launcher that asks Linux to send it SIGTERM (a clean
    stop) when this supervisor dies, even by SIGKILL, and then execs it (the request survives
    exec), instead of the child running on as an orphan holding the cluster's ports. Linux
    sends it when the *thread* that started the child ends: LocalCluster starts processes from
    the thread that drives it, which lives as long as the cluster. (No ``preexec_fn``: it is
    not safe in a process with threads.)"""
    return [sys.executable, "-c", _LAUNCH, str(os.getpid()), *cmd]


def check_etcd_installed(etcd_bin: str) -> None:
    """Raise :class:`ClusterError` when there is no etcd at ``etcd_bin``."""
    if not shutil.which(etcd_bin) and not Path(etcd_bin).exists():
        raise ClusterError("etcd is not installed: apt-get install etcd-server (Debian; "
                           "in a clone of the repository, scripts/test installs it)")


def etcd_command(etcd_bin: str, agency: str, data: Path, *, runtime: Path, crl: Path,
                 client_url: str, peer_url: str, initial_cluster: str, token: str,
                 state: str, listen_client: str | None = None,
                 listen_peer: str | None = None) -> list[str]:
    """The argv of ``agency``'s etcd member: mTLS for clients and peers with the agency's
    certificate and clear key in ``runtime`` (:func:`unlock`), the CA's revocation list ``crl``
    (read on every new connection, ADR 48), and the cluster's timing and snapshot settings.
    It advertises ``client_url`` and ``peer_url`` and listens there unless ``listen_*`` say
    where (e.g. https://0.0.0.0:2379 behind a host name)."""
    crt, key, ca = runtime / f"{agency}.crt", runtime / f"{agency}.key", runtime / "ca.crt"
    return [etcd_bin, "--name", agency, "--data-dir", str(data),
            "--listen-client-urls", listen_client or client_url,
            "--advertise-client-urls", client_url,
            "--listen-peer-urls", listen_peer or peer_url,
            "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", initial_cluster, "--initial-cluster-token", token,
            "--initial-cluster-state", state,
            "--client-cert-auth", "--trusted-ca-file", str(ca), "--cert-file", str(crt),
            "--key-file", str(key), "--peer-client-cert-auth", "--peer-trusted-ca-file",
            str(ca), "--peer-cert-file", str(crt), "--peer-key-file", str(key),
            "--client-crl-file", str(crl), "--peer-crl-file", str(crl),
            "--logger", "zap", "--log-level", "warn", "--heartbeat-interval", "100",
            "--election-timeout", "1000", "--snapshot-count", str(ETCD_SNAPSHOT_COUNT)]


def run_etcd_member(pki: Path, agency: str, passphrase: bytes, cmd_of: Callable[
        [Path, Path], list[str]]) -> int:
    """Run one agency's etcd member in the foreground (``ledger-node etcd run``) until it
    exits; its exit status. ``cmd_of(runtime, crl)`` gives its argv (:func:`etcd_command`).

    The agency's key is decrypted only into a 0600 file of a private 0700 runtime folder
    (:func:`unlock`; in memory where there is /dev/shm), removed however this ends: etcd
    exiting, a stop (SIGTERM, Ctrl-C: etcd is stopped first), an error. If this process is
    killed outright, etcd gets SIGTERM (:func:`_dies_with_us`) and the next start sweeps the
    folder away. etcd is handed no passphrase (it is not in its environment)."""
    crl = pki / "crl.pem"  # the keeper's copy: a revocation copied here counts at once
    runtime: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    try:
        with _whole():  # a stop while the key is written comes after runtime is known
            runtime = unlock(pki, agency, passphrase)
        with _whole():
            proc = subprocess.Popen(  # noqa: S603 - our own argv
                _dies_with_us(cmd_of(runtime, crl)), stdin=subprocess.DEVNULL, env=_etcd_env())
        return proc.wait()
    finally:
        if proc is not None:
            _stop_all([proc])
        if runtime is not None:
            lock(runtime)


def _operator_token(folder: Path, agencies: Sequence[str]) -> str:
    """The cluster's operator token. A folder made before the token was random (ADR 42) gets
    one now: the file, and its SHA-256 in each node.toml (both 0600)."""
    path = folder / OPERATOR_TOKEN_FILE
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError) as e:
        raise ClusterError(f"cannot read the cluster's operator token {path}: {e}") from e
    token = secrets.token_urlsafe(32)
    line = f'operator_token_sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"'
    try:
        for agency in agencies:
            config = folder / agency / "node.toml"
            text = re.sub(r'(?m)^operator_token_sha256 = "[0-9a-f]{64}"$', line,
                          config.read_text(encoding="utf-8"))
            write_atomic(config, text.encode(), 0o600)
        write_atomic(path, token.encode() + b"\n", 0o600)
    except OSError as e:
        raise ClusterError(f"cannot give {folder} an operator token: {e}") from e
    return token


def _log_tail(log: Path | None, lines: int = 5) -> str:
    """The last lines of a process's log, to show why it exited (empty if none). An etcd that
    panicked (a full disk at its WAL) ends its log with a Go stack that says nothing of why:
    its last panic or fatal entry's words come first."""
    if log is None:
        return ""
    try:
        text = log.read_bytes()[-65536:].decode("utf-8", "replace")
    except OSError:
        return ""
    tail = text.splitlines()[-lines:]
    why = ""
    for line in reversed(text.splitlines()):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("panic", "fatal"):
            error = entry.get("error")
            why = f" says {entry.get('msg')}" + (f": {error}" if error else "") + ", and"
            break
    return "; its log " + str(log) + why + " ends:\n  " + "\n  ".join(tail) if tail else ""


def _whole() -> contextlib.AbstractContextManager[None]:
    """A process started and kept in the cluster's table as one step: a stop (Ctrl-C, SIGTERM)
    that came while Popen ran, after the child existed, left it out of the table, so the
    cluster's stop did not stop it or wait for it (helper round 29O). On the main thread only
    (signal handlers can be set there alone)."""
    if threading.current_thread() is not threading.main_thread():
        return contextlib.nullcontext()
    return interrupts_held(lambda: None)


def _stop_all(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each running process, then wait for all of them (SIGKILL after 20 s)."""
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _revoked_only(pki: Path, agencies: Sequence[str]) -> set[str]:
    """The agencies whose certificates in ``pki`` are all revoked (``ledger-node pki revoke``
    took them out): none of their processes can start, nor should they."""
    try:
        return revoked_only(list_certificates(pki)) & set(agencies)
    except (PkiError, OSError):  # no PKI yet, or one the start reports in its own words
        return set()


def _write_meta(folder: Path, meta: dict[str, Any]) -> None:
    lines = [f"{k} = {json.dumps(v)}" for k, v in meta.items()]
    # 0644 whatever the umask (write_text made it 0666 under umask 000: anyone could say etcd's
    # auth was on, or name other agencies and ports), and whole or not at all
    write_atomic(folder / "cluster.toml", ("\n".join(lines) + "\n").encode(), 0o644)


def _node_config(agency: str, m: Member, members: Sequence[Member], network: str, token: str,
                 retention: int) -> str:
    endpoints = [m.client_url] + [o.client_url for o in members if o is not m]
    peers = [o.url for o in members if o is not m]
    return (f"# {agency}'s node in the local cluster {network}\n"
            f'data = "data"\nagency = "{agency}"\nhost = "127.0.0.1"\nport = {m.node_port}\n'
            f'operator_token_sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"\n'
            f'public_url = "{m.url}"\nmax_body_bytes = {4 << 20}\n'
            + network_lines(endpoints, peers, "../pki", tls=True) +
            f"retention = {retention}\n"
            f"workers = {max(1, (os.cpu_count() or 1) // len(members))}  "
            "# the agencies share this machine's cores\n")


class LocalCluster:
    """The processes of a cluster folder made by :func:`create_cluster`."""

    def _share_credit_secret(self, keys: Path) -> None:
        """Give a newly admitted agency the network's credit secret (a copy sealed as the
        others are), when the founders have one (folders from before ADR 51 may not)."""
        for m in self.members:
            got = read_credit_secret(self.folder / m.agency / "data" / "keys" /
                                     CREDIT_SECRET_FILE, self.passphrase)
            if got is not None:
                write_atomic(keys / CREDIT_SECRET_FILE,
                             seal_secret(got, self.passphrase, CREDIT_SECRET), 0o600)
                return

    def _ensure_credit_secret(self) -> None:
        """A folder made before ADR 51 has no credit secret: make the network's one for every
        agency at its first start since (ADR 52), as create_cluster does for a new folder."""
        files = [self.folder / m.agency / "data" / "keys" / CREDIT_SECRET_FILE
                 for m in self.members if m.agency not in self.removed]
        if any(f.exists() for f in files):
            return  # one is there: a newcomer gets its copy when admitted (join)
        credit = secrets.token_bytes(32)
        for f in files:
            write_atomic(f, seal_secret(credit, self.passphrase, CREDIT_SECRET), 0o600,
                         overwrite=False)

    def __init__(self, folder: Path, passphrase: bytes, *, etcd_bin: str = "etcd",
                 python: str = sys.executable) -> None:
        try:
            meta = tomllib.loads((folder / "cluster.toml").read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ClusterError(f"{folder} is not a cluster folder: {e}") from e
        self.folder, self.passphrase = folder, passphrase
        self.meta = meta
        self.network: str = meta["network"]
        self.members = _members(meta["agencies"], int(meta["base_port"]))
        # agencies taken out by revoke(): they keep their place (ports follow it), never start;
        # so do those taken out as the README has an operator do it (`ledger-node pki revoke`,
        # `etcd take-out`): their PKI folder holds their certificate revoked only
        self.removed: set[str] = set(meta.get("removed", [])) | _revoked_only(
            folder / "pki", meta["agencies"])
        self.etcd_bin = shutil.which(etcd_bin) or etcd_bin
        self.python = python
        self.token = _operator_token(folder, meta["agencies"])
        self._etcd: dict[str, subprocess.Popen[bytes]] = {}
        self._nodes: dict[str, subprocess.Popen[bytes]] = {}
        self._runtime: dict[str, Path] = {}
        self.rejoined: list[str] = []
        """Agencies whose etcd member :meth:`start` rejoined (its data folder was gone)."""
        # its own members on 127.0.0.1: no proxy of the environment (trust_env)
        self._http = httpx.Client(verify=self.ssl_context(), timeout=5.0, trust_env=False)
        self._operator: tuple[bytes, bytes, bytes] | None = None

    @property
    def ca(self) -> str:
        return str(self.folder / "pki" / "ca.crt")

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this cluster's CA (and nothing else)."""
        return ssl.create_default_context(cafile=self.ca)

    def member(self, agency: str) -> Member:
        for m in self.members:
            if m.agency == agency:
                return m
        raise ClusterError(f"no agency {agency!r} in this cluster")

    # -- etcd --
    def _start_etcd(self, m: Member, state: str | None = None,
                    among: Sequence[Member] | None = None) -> None:
        check_etcd_installed(self.etcd_bin)
        if m.agency in self.removed:
            raise ClusterError(f"{m.agency} was taken out of this cluster (its certificate "
                               "is revoked)")
        # The CA's revocation list, read by etcd on every new connection: a revocation
        # written there shuts the certificate out at once (ADR 48).
        now = _dt.datetime.now(_dt.UTC)
        crl = ensure_crl(self.folder / "pki", self.passphrase, now=now)
        ensure_operator_cert(self.folder / "pki", self.passphrase, now=now)
        rt = self._runtime_of(m.agency)
        data = self.folder / m.agency / "etcd"
        # a member that ran has its WAL (etcd renames wal.tmp to wal once it is whole); a first
        # start cut short (a full disk at the WAL's preallocation) left member/ without one,
        # and "existing" then looked for peers that had never formed a cluster
        state = state or ("existing" if (data / "member" / "wal").exists() else "new")
        # etcd compares this with its membership when a member joins: not the ones taken out
        # (nor, while lost ones rejoin, those not added back yet: ``among``)
        initial = ",".join(f"{o.agency}={o.peer_url}" for o in (among or self.members)
                           if o.agency not in self.removed)
        cmd = etcd_command(self.etcd_bin, m.agency, data, runtime=rt, crl=crl,
                           client_url=m.client_url, peer_url=m.peer_url,
                           initial_cluster=initial, token=self.network, state=state)
        log = open_log(self._log("etcd", m.agency))
        with _whole():  # (etcd is handed no passphrase and no proxy: _etcd_env)
            self._etcd[m.agency] = subprocess.Popen(  # noqa: S603 - our own argv
                _dies_with_us(cmd), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                env=_etcd_env())
        log.close()

    def _etcd_healthy(self, m: Member) -> bool:
        rt = self._runtime[m.agency]
        ctx = ssl.create_default_context(cafile=str(rt / "ca.crt"))
        ctx.load_cert_chain(str(rt / f"{m.agency}.crt"), str(rt / f"{m.agency}.key"))
        try:
            r = httpx.get(f"{m.client_url}/health", verify=ctx, timeout=2.0, trust_env=False)
            return r.status_code == 200 and r.json().get("health") == "true"
        except (httpx.HTTPError, ValueError):
            return False

    def _admin(self, m: Member) -> EtcdAdmin:
        """The operator's administration of ``m``'s etcd member (ADR 48)."""
        if self._operator is None:
            self._operator = operator_credentials(self.folder / "pki", self.passphrase)
        return EtcdAdmin(m.client_url, self._operator)

    def _secure_etcd(self, m: Member) -> None:
        """Turn on etcd's auth, once, through ``m`` (:meth:`EtcdAdmin.secure`)."""
        if self.meta.get("etcd_auth"):
            return
        self._admin(m).secure(self.network, [x.agency for x in self.members
                                             if x.agency not in self.removed])
        self.meta["etcd_auth"] = True
        _write_meta(self.folder, self.meta)

    def _running_member(self, but: str | None = None) -> Member:
        for m in self.members:
            p = self._etcd.get(m.agency)
            if m.agency != but and p is not None and p.poll() is None:
                return m
        raise ClusterError("no etcd member is running" + (f" but {but}'s" if but else ""))

    def etcd_members(self) -> dict[str, int]:
        """Name → id of each etcd member, as the first running member lists them."""
        return self._admin(self._running_member()).members()

    def etcd_leader(self) -> str:
        """The agency whose etcd member is the Raft leader now, as the first running member
        that answers tells it."""
        why = "no etcd member is running"
        for m in self.members:
            p = self._etcd.get(m.agency)
            if p is None or p.poll() is not None:
                continue
            try:
                return self._admin(m).leader()
            except EtcdAdminError as e:
                why = str(e)
        raise ClusterError(f"no etcd leader found: {why}")

    # -- nodes --
    def _start_node(self, m: Member) -> None:
        env = {k: v for k, v in os.environ.items() if k not in _PASSPHRASE_VARS}
        given = os.environ.get(f"{PASSPHRASE_ENV}_FILE")
        if given and not os.environ.get(PASSPHRASE_ENV):
            env[f"{PASSPHRASE_ENV}_FILE"] = given  # the node reads the same file (ADR 47)
        else:
            # Not in its environment, which /proc shows for the node's whole life (and any
            # process it starts inherits): a 0600 file in the agency's 0700 runtime folder in
            # memory, removed once the node is up (:meth:`_wait_node`), ADR 55.
            env[f"{PASSPHRASE_ENV}_FILE"] = str(self._passphrase_file(m.agency))
        log = open_log(self._log("node", m.agency))
        with _whole():
            self._nodes[m.agency] = subprocess.Popen(  # noqa: S603 - our own argv
                _dies_with_us([self.python, "-m", "node.cli", "run", "--config",
                               str(self.folder / m.agency / "node.toml")]),
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env)
        log.close()

    def health(self, agency: str) -> dict[str, Any] | None:
        try:
            r = self._http.get(f"{self.member(agency).url}/v1/health")
            return dict(r.json()) if r.status_code in (200, 503) else None  # 503: halted
        except (httpx.HTTPError, ValueError):
            return None

    def _wait(self, what: str, ok: Any, timeout: float,
              proc: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
        """Until ``ok()``; ClusterError after ``timeout``, or at once if ``proc`` exits (a
        port already taken, a bad config), with the end of its ``log``."""
        deadline = _time.monotonic() + timeout
        while not ok():
            if proc is not None and proc.poll() is not None:
                raise ClusterError(f"{what} exited with status {proc.returncode} before it was "
                                   f"up{_log_tail(log)}")
            if _time.monotonic() > deadline:
                raise ClusterError(f"{what} not up within {timeout:.0f} s; see "
                                   f"{self.folder / 'logs'}")
            _time.sleep(0.1)

    # -- lifecycle --
    def start(self, timeout: float = 60.0) -> None:
        """Start every etcd member, then every node; if any does not come up, stop all of them
        (no process is left behind) and raise ClusterError."""
        live = [m for m in self.members if m.agency not in self.removed]
        check_ports_free(live)
        self._ensure_credit_secret()
        # A member whose etcd data folder is gone (a lost disk) once the cluster has run
        # (its etcd secured) would start a new, separate etcd cluster: it rejoins instead,
        # once the others run. A first start cut short is started as new again.
        kept = [m for m in live if (self.folder / m.agency / "etcd" / "member").exists()]
        lost = [m for m in live if m not in kept] if self.meta.get("etcd_auth") else []
        if lost and len(kept) <= len(live) // 2:
            raise ClusterError(
                f"the etcd data of {', '.join(m.agency for m in lost)} is gone, and the "
                f"{len(kept)} member(s) left are no majority of {len(live)}: etcd cannot go on "
                "from them (restore the data folders from a backup, or make a new network)")
        try:
            for m in live:
                if m not in lost:
                    self._start_etcd(m)
            for m in live:
                if m not in lost:
                    self._wait_etcd(m, timeout)
            self._rejoin(kept, lost, timeout)
            self._secure_etcd(kept[0] if kept else live[0])
            for m in live:
                self._start_node(m)
            for m in live:
                self._wait_node(m, timeout)
        except BaseException:
            self.stop()
            raise

    def _rejoin(self, kept: list[Member], lost: list[Member], timeout: float) -> None:
        """Members whose data folders are lost join ``kept`` (running) anew, one at a time:
        every lost one is removed first (etcd adds no member while a voting one is down),
        then each is added and started to copy the others' data."""
        if not lost:
            return
        admin = self._admin(kept[0])
        for m in lost:
            admin.forget(m.agency, m.peer_url)
        among = list(kept)
        for m in lost:
            admin.add_member(m.peer_url, wait=30.0)
            among.append(m)
            self._start_etcd(m, state="existing", among=among)
            self._wait_etcd(m, timeout)
            self.rejoined.append(m.agency)

    def kill(self, agency: str) -> None:
        """SIGKILL the agency's node and etcd member (a crash, mid-whatever)."""
        for procs in (self._nodes, self._etcd):
            p = procs.pop(agency, None)
            if p is not None:
                p.kill()
                p.wait()

    def kill_node(self, agency: str) -> None:
        p = self._nodes.pop(agency, None)
        if p is not None:
            p.kill()
            p.wait()

    def kill_etcd(self, agency: str) -> None:
        """SIGKILL the agency's etcd member only (its node runs on, on the other members)."""
        p = self._etcd.pop(agency, None)
        if p is not None:
            p.kill()
            p.wait()

    def restart_etcd(self, agency: str, timeout: float = 60.0) -> None:
        m = self.member(agency)
        if agency not in self._etcd:
            self._start_etcd(m)
            self._wait_etcd(m, timeout)

    def restart_stopped(self, agency: str, timeout: float = 60.0,
                        said: Callable[[str], None] = lambda _: None) -> list[str]:
        """Start again what of ``agency``'s etcd member and node is not running (its etcd member
        first: it rejoins the others from its data folder, and the node catches up from them);
        what was started, in order. ClusterError, with nothing started, for an agency not in
        the cluster or taken out of it, or one whose etcd member and node both run; ``said``
        hears each step before it is taken."""
        m = self.member(agency)
        if agency in self.removed:
            raise ClusterError(f"{agency} was taken out of this cluster (its certificate is "
                               "revoked): it is not started again")
        etcd_up = (p := self._etcd.get(agency)) is not None and p.poll() is None
        node_up = self.running(agency)
        if etcd_up and node_up:
            raise ClusterError(f"{agency}'s etcd member and node are both running: nothing to "
                               "restart")
        started = []
        if not etcd_up:
            self._etcd.pop(agency, None)  # ended: its exit was said (exited) or is moot now
            said("etcd member")
            self._start_etcd(m)
            self._wait_etcd(m, timeout)
            started.append("etcd member")
        if not node_up:
            self._nodes.pop(agency, None)
            said("node")
            self._start_node(m)
            self._wait_node(m, timeout)
            started.append("node")
        return started

    def restart(self, agency: str, timeout: float = 60.0, *, etcd: bool = True) -> None:
        m = self.member(agency)
        if etcd and agency not in self._etcd:
            self._start_etcd(m)
            self._wait_etcd(m, timeout)
        self._start_node(m)
        self._wait_node(m, timeout)

    def _wait_etcd(self, m: Member, timeout: float) -> None:
        self._wait(f"etcd member {m.agency}", lambda: self._etcd_healthy(m), timeout,
                   self._etcd.get(m.agency), self._log("etcd", m.agency))

    def _runtime_of(self, agency: str) -> Path:
        """``agency``'s runtime folder (its clear TLS files, :func:`unlock`), made once."""
        rt = self._runtime.get(agency)
        if rt is None:
            rt = self._runtime[agency] = unlock(self.folder / "pki", agency, self.passphrase)
        return rt

    def _passphrase_file(self, agency: str) -> Path:
        """The key passphrase in a new 0600 file of ``agency``'s runtime folder (0700, in
        memory where there is /dev/shm, made with its TLS files)."""
        path = self._runtime_of(agency) / _PASSPHRASE_FILE
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:  # the reader takes one ending "\r\n" or "\n" off
            f.write(self.passphrase + b"\r\n")
        return path

    def _wait_node(self, m: Member, timeout: float) -> None:
        try:
            self._wait(f"node {m.agency}", lambda: self.health(m.agency) is not None, timeout,
                       self._nodes.get(m.agency), self._log("node", m.agency))
        finally:  # up (it read its passphrase at start), or given up on
            rt = self._runtime.get(m.agency)
            if rt is not None:
                (rt / _PASSPHRASE_FILE).unlink(missing_ok=True)

    # -- admitting a new agency --
    def prepare_agency(self, agency: str) -> Agency:
        """Keys, certificate, genesis store and config for a new agency (not yet admitted).

        Governance must then admit it (``add_agency`` with :meth:`Agency.spec`) before
        :meth:`join` starts its etcd member and node; the node catches up from etcd or a peer.
        """
        if agency in {m.agency for m in self.members}:
            raise ClusterError(f"{agency!r} is already in this cluster")
        # The genesis comes from a running peer and must hash to the network's pinned genesis.
        peer = next((m for m in self.members if self.running(m.agency)), None)
        if peer is None:
            raise ClusterError("no node is running to take the genesis from")
        try:
            got = self._http.get(f"{peer.url}/v1/sync/blocks", params={"from": 0, "count": 1})
            got.raise_for_status()
            header, entries = codec.decode(got.content, max_size=1 << 20, what="genesis")[0]
            genesis = build_genesis(Tx.from_bytes(entries[0]))
        except (httpx.HTTPError, LedgerError, ValueError, TypeError) as e:
            raise ClusterError(f"{peer.agency} gave no genesis: {e}") from e
        if genesis.header is None or genesis.header.to_bytes() != header or \
                genesis.header.hash.hex() != self.meta.get("genesis_hash"):
            raise ClusterError(f"{peer.agency} served a genesis that is not this network's")
        new = Agency(agency, AGENCY_NAMES.get(agency, agency), PrivateKey.generate(),
                     PrivateKey.generate())
        root = self.folder / agency
        _agency_folders(root)
        try:
            save_private_key(root / "data" / "keys" / f"{agency}.node.key", new.node_key,
                             self.passphrase)
            save_private_key(root / "data" / "keys" / f"{agency}.issuer.key", new.issuer_key,
                             self.passphrase)
            self._share_credit_secret(root / "data" / "keys")
            with Store(root / "data" / "ledger") as store:
                store.write_block(genesis)
            issue_agency_cert(self.folder / "pki", agency, self.passphrase,
                              now=_dt.datetime.now(_dt.UTC))
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)  # nothing half-made is left to trip a retry
            raise
        base = int(self.meta["base_port"])
        i = len(self.members)
        m = Member(agency, i, base + i, base + 100 + i, base + 200 + i)
        self.members.append(m)
        write_atomic(root / "node.toml", _node_config(
            agency, m, self.members, self.network, self.token,
            int(self.meta.get("retention", 1000))).encode(), 0o600)
        self.meta["agencies"] = [x.agency for x in self.members]
        _write_meta(self.folder, self.meta)
        return new

    def join(self, agency: str, timeout: float = 60.0) -> None:
        """Add the prepared agency's etcd member to the cluster, then start it and its node."""
        m = self.member(agency)
        admin = self._admin(self._running_member())
        if self.meta.get("etcd_auth"):
            admin.admit(agency)
        # etcd refuses ("unhealthy cluster") until the member asked has been connected to
        # every voting one for 5 s: right after a member restarted, or on a loaded machine
        added = admin.add_member(m.peer_url, wait=30.0)
        try:
            self._start_etcd(m, state="existing")
            self._wait_etcd(m, timeout)
        except BaseException:
            # A member etcd counts but that never runs raises the quorum for good (3 of 4):
            # take it out again.
            p = self._etcd.pop(agency, None)
            if p is not None:
                _stop_all([p])
            with contextlib.suppress(EtcdAdminError):
                admin.remove_member(added, wait=0)
            raise
        self._start_node(m)
        self._wait_node(m, timeout)

    # -- taking an agency out --
    def revoke(self, agency: str) -> None:
        """Take an agency governance removed out of the ordering, as its operator would: stop
        its node and etcd member, revoke its certificates (``crl.pem``, which every etcd member
        reads on each new connection, and the nodes when they start), delete its etcd user
        (refused at once, even on connections it holds) and remove its member from the Raft
        cluster (:meth:`EtcdAdmin.take_out`). Governance must have removed it first; the others
        keep running. May be run again to finish one cut short."""
        self.member(agency)  # raises for an agency not in the cluster
        admin = self._admin(self._running_member(but=agency))
        # Its processes stop first, and stay stopped whatever fails next; every step may be
        # run again (a revoke cut short by a timeout is finished by the next call).
        _stop_all([p for p in (self._nodes.pop(agency, None), self._etcd.pop(agency, None))
                   if p is not None])
        rt = self._runtime.pop(agency, None)
        if rt is not None:
            lock(rt)
        self.removed.add(agency)
        self.meta["removed"] = sorted(self.removed)
        _write_meta(self.folder, self.meta)
        if (self.folder / "pki" / f"{agency}.crt").exists():
            revoke_agency_cert(self.folder / "pki", agency, self.passphrase,
                               now=_dt.datetime.now(_dt.UTC))
        try:
            admin.take_out(agency)
        except EtcdAdminError as e:
            raise ClusterError(f"{agency}'s certificate is revoked and its processes stopped, "
                               f"but {e}; run the same again to finish") from e

    def _log(self, kind: str, agency: str) -> Path:
        return self.folder / "logs" / f"{kind}-{agency}.log"

    def exited(self) -> list[tuple[str, str, int, Path]]:
        """``(agency, "etcd member" or "node", exit code, its log)`` of each process that ended
        without being stopped or killed here. Each is reported once: it is forgotten, as after
        :meth:`kill`, so :meth:`restart` can start it again."""
        out = []
        for what, kind, procs in (("etcd member", "etcd", self._etcd),
                                  ("node", "node", self._nodes)):
            for agency, p in list(procs.items()):
                code = p.poll()
                if code is not None:
                    del procs[agency]
                    out.append((agency, what, code, self._log(kind, agency)))
        return out

    def _live_leader(self) -> str | None:
        try:
            return self.etcd_leader()
        except ClusterError:
            return None  # no quorum, no member up: the order does not matter then

    def running(self, agency: str) -> bool:
        p = self._nodes.get(agency)
        return p is not None and p.poll() is None

    def stop(self) -> None:
        """Stop nodes (they finish what is queued), then etcd members, the Raft leader last;
        remove clear keys."""
        self._http.close()  # an open keep-alive connection would hold a node's shutdown
        _stop_all(self._nodes.values())
        self._nodes.clear()
        # A leader told to stop first hands its leadership to a live peer and waits for that
        # (up to etcd's request timeout, 7 s here, when the peers are stopping as well). Alone,
        # it has no one to hand to and stops at once.
        leader = self._live_leader()
        _stop_all(p for a, p in self._etcd.items() if a != leader)
        _stop_all(p for a, p in self._etcd.items() if a == leader)
        self._etcd.clear()
        for rt in self._runtime.values():
            lock(rt)
        self._runtime.clear()
        for m in self.members:  # the clear keys of nodes killed here (kill, kill_node)
            sweep_stale_runtimes(runtime_base(), m.agency)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


RESTART_SOCKET = "restart.sock"
"""The running `ledger-node cluster`'s Unix socket in its folder (0600, its user only), on which
`ledger-node cluster restart` asks it to start one agency's stopped processes again."""

_ASK_MAX = 256
"""The longest request the desk reads: ``restart <agency>`` and a newline."""

_ASK_WITHIN = 10.0
"""Seconds the desk waits for a whole request (not each read of it): one slow asker holds it,
and the requests behind it, no longer."""


@contextlib.contextmanager
def _socket_path(path: Path) -> Iterator[str]:
    """``path`` as a Unix socket address, which holds 107 bytes: through its folder's
    descriptor (opened O_PATH for as long as this lasts) when the path itself is longer."""
    if len(os.fsencode(path)) <= 100:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


@dataclass(frozen=True)
class RestartAsk:
    """One `ledger-node cluster restart`: the agency asked for, and its open connection, on
    which :meth:`say` writes the answer, line by line."""

    agency: str
    conn: socket.socket

    def say(self, line: str) -> None:
        with contextlib.suppress(OSError):  # the asker gone (Ctrl-C): the restart goes on
            self.conn.sendall(line.encode() + b"\n")

    def close(self, last: str | None = None) -> None:
        if last is not None:
            self.say(last)
        with contextlib.suppress(OSError):
            self.conn.close()


def restart_socket_problem(folder: Path) -> str | None:
    """Why a cluster must not bind its :data:`RESTART_SOCKET` in ``folder``, or None: the path
    holds something that is not a socket (a file, a folder, a link: never removed), or a socket
    a running cluster answers on. A socket none answers on is stale (a cluster killed
    outright): the desk removes it."""
    path = folder.absolute() / RESTART_SOCKET
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"cannot look at {path}: {e.strerror or e}"
    if not stat.S_ISSOCK(mode):
        return (f"{path} is not a socket (the restart socket's name), and is not removed: "
                "move it away, then start the cluster")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with _socket_path(path) as name:
            probe.connect(name)
    except (ConnectionRefusedError, FileNotFoundError):  # nothing listens: stale (or gone)
        return None
    except OSError as e:  # another kind of socket, not ours to connect to: not known stale
        return (f"cannot tell whether {path} is in use ({e.strerror or e}), and it is not "
                "removed: move it away, then start the cluster")
    finally:
        probe.close()
    return (f"{path} is in use: a `ledger-node cluster` answers on it (stop that one first)")


class RestartDesk:
    """The running cluster's :data:`RESTART_SOCKET`: a thread takes each request (from this
    user only) into a queue; the thread that drives the cluster (the one whose children die
    with it) takes them with :meth:`asks` and starts the processes itself. Bound once the
    cluster is up: a second `ledger-node cluster` on the folder is refused before (its ports),
    so a socket it finds is a stale one, from a cluster killed outright, and removed; anything
    else there (a file, a folder, a link, a socket answered on) is refused, left as it was."""

    def __init__(self, folder: Path) -> None:
        import queue

        self.path = folder.absolute() / RESTART_SOCKET
        self._queue: queue.Queue[RestartAsk] = queue.Queue()
        problem = restart_socket_problem(folder)
        if problem is not None:
            raise ClusterError(f"cannot open the restart socket: {problem}")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with _socket_path(self.path) as name:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name)  # a stale socket (checked just above)
                self._sock.bind(name)
                os.chmod(name, 0o600)  # the folder is 0755; the peer check below holds too
            self._ino = os.stat(self.path).st_ino
            self._sock.listen(8)
        except OSError as e:
            self._sock.close()
            raise ClusterError(f"cannot open {self.path} for `ledger-node cluster restart`: "
                               f"{e.strerror or e}") from e
        self._closed = False
        self._thread = threading.Thread(target=self._take, name="restart-desk", daemon=True)
        self._thread.start()

    def _take(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            try:
                ask = self._read(conn)
            except (OSError, ValueError):
                conn.close()
                continue
            if ask is not None:
                self._queue.put(ask)

    def _read(self, conn: socket.socket) -> RestartAsk | None:
        import struct

        _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        until = _time.monotonic() + _ASK_WITHIN  # one slow asker holds the desk no longer
        got = b""
        while b"\n" not in got and len(got) <= _ASK_MAX:
            left = until - _time.monotonic()
            if left <= 0:
                raise TimeoutError("the request was not whole in time")
            conn.settimeout(left)
            chunk = conn.recv(_ASK_MAX + 1)
            if not chunk:
                break
            got += chunk
        conn.settimeout(None)
        # refused once its request is read: a connection closed with bytes unread is reset,
        # and its asker never read why (a traceback; helper round 42M)
        if uid not in (os.getuid(), 0):
            RestartAsk("", conn).close("refused: only the user running the cluster may restart "
                                       "its processes")
            return None
        # not ASCII: refused below (the regex), not dropped unanswered
        verb, _, agency = got.partition(b"\n")[0].decode("ascii", "replace").partition(" ")
        ask = RestartAsk(agency, conn)
        if verb != "restart" or not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", agency):
            ask.close("refused: not a request of `ledger-node cluster restart`")
            return None
        if self._closed:
            ask.close("failed: the cluster is stopping; nothing was restarted")
            return None
        return ask

    def asks(self) -> list[RestartAsk]:
        """The requests come in since the last call, oldest first."""
        import queue

        out = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        """No more requests: those waiting are told the cluster stops; the socket goes."""
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=15)
        for ask in self.asks():
            ask.close("failed: the cluster is stopping; nothing was restarted")
        with contextlib.suppress(OSError):  # ours only (not one a later cluster bound)
            if os.stat(self.path).st_ino == self._ino:
                self.path.unlink()


def ask_restart(folder: Path, agency: str, heard: Callable[[str], None]) -> tuple[str, str]:
    """Ask the `ledger-node cluster` running on ``folder`` to start ``agency``'s stopped etcd
    member and node again; ``heard`` gets each step it says. Its answer: ``("ok" | "refused" |
    "failed", why)``. ClusterError when no cluster runs there."""
    path = folder.absolute() / RESTART_SOCKET
    if "\n" in agency:  # the desk reads one line: its first would be taken for the agency
        return "refused", "not a request of `ledger-node cluster restart`"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            with _socket_path(path) as name:
                sock.connect(name)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise ClusterError(f"no `ledger-node cluster` is running on {folder} (start it: "
                               f"ledger-node cluster --data {folder})") from e
        except OSError as e:
            raise ClusterError(f"cannot reach the cluster at {path}: {e.strerror or e}") from e
        # Each step is bounded by the cluster (60 s per process it starts); this is only a
        # guard against a cluster that hangs.
        sock.settimeout(300.0)
        try:
            sock.sendall(f"restart {agency}\n".encode())
            with sock.makefile("rb") as answers:
                for raw in answers:
                    line = raw.decode("utf-8", "replace").rstrip("\n")
                    kind, _, why = line.partition(": ")
                    if kind in ("ok", "refused", "failed"):
                        return kind, why
                    heard(line)
        except TimeoutError:
            return "failed", f"the cluster did not answer within 300 s; see {folder / 'logs'}"
        except OSError as e:  # reset: the cluster died while it answered
            return "failed", (f"the cluster hung up before it answered ({e.strerror or e}); "
                              f"see {folder / 'logs'}")
    return "failed", "the cluster stopped before it answered"
