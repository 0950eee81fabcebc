"""Helpers for tests on a real local cluster: etcd members + agency nodes on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import random
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx

from ledger.keys import load_private_key
from ledger.network import Agency, governance_tx, issue_tx
from ledger.tx import Tx
from node.cluster import AGENCY_NAMES, LocalCluster, create_cluster

PASS = b"cluster-test-pw"
DEGREE = {"id": "degree", "title": "Academic degree",
          "claims": {"holder_name": "string", "degree_level": "string"}, "derived": {}}


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port_window() -> tuple[int, int]:
    """The ports this test process draws cluster bases from: 20000-32000 (below Linux's
    ephemeral range, 32768-60999, so an outgoing connection's source port cannot take a
    member's port between two restarts), split between pytest-xdist's workers so that two
    workers never draw overlapping clusters (a cluster takes ``base + 0/100/200 + i``): a
    port free when one worker checked it was bound by the other's etcd a moment later."""
    low, high = 20000, 32000
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker.startswith("gw") or count <= 1:
        return low, high
    width = (high - low) // count
    start = low + int(worker[2:]) % count * width
    return start, start + width


def free_base(n: int) -> int:
    """A base port whose ``n``-agency cluster ports (``base + 0/100/200 + i``) are all free,
    inside this worker's own window."""
    low, high = _port_window()
    for _ in range(200):
        base = random.randrange(low, high - 200 - n, 10)
        if all(_free(base + off + i) for off in (0, 100, 200) for i in range(n)):
            return base
    raise RuntimeError(f"no free port range in {low}-{high}")


class Net:
    """A running cluster plus the agencies' keys (loaded from its folder) and HTTP helpers."""

    def __init__(self, folder: Path, cluster: LocalCluster) -> None:
        self.folder, self.cluster = folder, cluster
        self.http = httpx.Client(verify=cluster.ssl_context(), timeout=40.0)
        self.agencies: dict[str, Agency] = {}
        for m in cluster.members:
            keys = folder / m.agency / "data" / "keys"
            self.agencies[m.agency] = Agency(
                m.agency, AGENCY_NAMES[m.agency],
                load_private_key(keys / f"{m.agency}.node.key", PASS),
                load_private_key(keys / f"{m.agency}.issuer.key", PASS))
        self.seq = 0
        self.ids = [m.agency for m in cluster.members]
        self.token = cluster.token

    def url(self, agency: str) -> str:
        return self.cluster.member(agency).url

    def submit(self, agency: str, tx: Tx, wait: float = 20.0) -> httpx.Response:
        return self.http.post(f"{self.url(agency)}/v1/tx", params={"wait": wait},
                              content=tx.raw)

    def health(self, agency: str) -> dict[str, Any]:
        r = self.http.get(f"{self.url(agency)}/v1/health")
        if r.status_code != 503:  # a halted node answers 503 with its health
            r.raise_for_status()
        return dict(r.json())

    def governance(self, action: str, args: dict[str, Any], via: str | None = None,
                   signers: list[str] | None = None) -> dict[str, Any]:
        self.seq += 1
        names = signers or self.ids[: len(self.ids) // 2 + 1]
        tx = governance_tx(self.cluster.network, self.seq, action, args,
                           [self.agencies[a] for a in names])
        r = self.submit(via or self.ids[0], tx)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def setup_degree(self, issuer: str, now: int) -> None:
        self.governance("register_type", {"type": DEGREE})
        self.governance("grant", {"agency": issuer, "type": "degree", "from": now - 60,
                                  "until": now + 86400 * 365})

    def anchor(self, issuer: str, now: int) -> Tx:
        cid = hashlib.sha256(os.urandom(32)).digest()
        return issue_tx(self.cluster.network, self.agencies[issuer], cid, "degree",
                        secrets.randbelow(2**20), now - 60, now + 86400, ts=now)

    def heads(self) -> dict[str, tuple[int, int]]:
        out = {}
        for a in self.ids:
            if self.cluster.running(a):
                h = self.health(a)
                out[a] = (h["height"], h["log_size"])
        return out

    def head_hashes(self) -> dict[str, str]:
        return {a: self.http.get(f"{self.url(a)}/v1/head").json()["hash"]
                for a in self.ids if self.cluster.running(a)}

    def wait_until(self, what: str, ok: Callable[[], bool], timeout: float = 60.0) -> float:
        start = time.monotonic()
        while not ok():
            if time.monotonic() - start > timeout:
                raise AssertionError(f"{what}: not within {timeout} s; heads {self.heads()}; "
                                     f"{self.said()}; logs kept in {self.keep_logs()}")
            time.sleep(0.1)
        return time.monotonic() - start

    def said(self) -> dict[str, Any]:
        """What each running node's health says beside its head (why a wait timed out)."""
        out: dict[str, Any] = {}
        for a in self.ids:
            if self.cluster.running(a):
                try:
                    h = self.health(a)
                except (httpx.HTTPError, ValueError) as e:
                    out[a] = repr(e)
                    continue
                out[a] = {k: h.get(k) for k in ("status", "halted", "problem") if h.get(k)}
        return out

    def keep_logs(self) -> Path:
        """A copy of the cluster's logs outside pytest's temporary folders, which the next
        three sessions on the machine (another run beside this one) delete."""
        kept = Path("/tmp/credledger-failed-logs") / f"{self.folder.parent.name}-{os.getpid()}"
        shutil.copytree(self.folder / "logs", kept, dirs_exist_ok=True)
        return kept

    def converged(self) -> bool:
        hashes = self.head_hashes()
        return len(set(hashes.values())) == 1

    def close(self) -> None:
        self.http.close()


@contextmanager
def running_cluster(tmp: Path, n: int = 3, retention: int = 1000,
                    max_batch: int | None = None) -> Iterator[Net]:
    base = free_base(n)
    create_cluster(tmp, n, PASS, base_port=base, retention=retention,
                   network=f"test-{base}")
    if max_batch is not None:  # as an operator would: a line added to each node.toml
        for toml in tmp.glob("*/node.toml"):
            toml.write_text(toml.read_text() + f"max_batch = {max_batch}\n")
    cluster = LocalCluster(tmp, PASS)
    try:
        cluster.start()
        net = Net(tmp, cluster)
        try:
            yield net
        finally:
            net.close()
    finally:
        cluster.stop()


@contextmanager
def etcd_as(runtime: Path, agency: str, url: str) -> Iterator[Any]:
    """A gRPC connection to the etcd member at ``url`` with ``agency``'s certificate (from a
    runtime folder of `node.pki.unlock`)."""
    creds = grpc.ssl_channel_credentials(
        root_certificates=(runtime / "ca.crt").read_bytes(),
        private_key=(runtime / f"{agency}.key").read_bytes(),
        certificate_chain=(runtime / f"{agency}.crt").read_bytes())
    with grpc.secure_channel(url.partition("://")[2], creds) as channel:
        yield channel


def live_in_group(pgid: int) -> list[tuple[str, bytes]]:
    """The processes of process group ``pgid`` still running (a zombie not yet reaped aside):
    each one's pid and its command line (NUL-separated, as /proc gives it)."""
    live = []
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            fields = (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()
            args = (proc_dir / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append((proc_dir.name, args))
    return live
