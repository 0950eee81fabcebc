"""A network node whose data folder fills while it runs under traffic (ADR 77's Left, 29F).

A real 3-agency network (etcd members and ``ledger-node run`` processes over HTTPS on
127.0.0.1, :mod:`clusterkit`); one agency's ``data`` folder is a small tmpfs of its own. A
steady stream of transactions goes to all three nodes, the small file system is filled
mid-stream, and once the full node has halted, space is freed and the node is restarted as the
README tells an operator. Bounded: every wait has a timeout, the traffic stops by itself.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from clusterkit import PASS, Net, free_base

from ledger.store import Store
from node.cluster import LocalCluster, create_cluster

if shutil.which("etcd") is None:  # scripts/test installs it; a missing etcd is a failure
    raise RuntimeError("etcd is not installed: run scripts/test (it installs etcd-server)")

FULL = "health"  # the agency whose data folder fills
SIZE = 16 << 20  # the small file system's size (the genesis store and keys take a few KiB)


@dataclass
class Sent:
    via: str
    txid: str
    status: int  # 0: no HTTP answer
    body: dict[str, object]
    at: float


@contextlib.contextmanager
def _small_disk(folder: Path, scratch: Path) -> Iterator[Path]:
    """``folder`` (its contents kept) on a tmpfs of its own of ``SIZE`` bytes; unmounted on
    leaving. Skips the test when this machine cannot mount one (not root, no CAP_SYS_ADMIN)."""
    kept = scratch / "kept"
    shutil.copytree(folder, kept, symlinks=True)
    mode = folder.stat().st_mode & 0o7777
    name = f"credledger-full-disk-{os.getpid()}"
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode={mode:o}", name,
                        str(folder)], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a {SIZE >> 20} MiB tmpfs on this machine (the test fills a "
                    f"small file system): {r.stderr.strip() or r.returncode}")
    try:
        for child in kept.iterdir():
            if child.is_dir():
                shutil.copytree(child, folder / child.name, symlinks=True)
            else:
                shutil.copy2(child, folder / child.name)
        yield folder
    finally:
        for _ in range(50):  # a process that held a file in it may be ending still
            if subprocess.run(["umount", str(folder)], capture_output=True,
                              check=False).returncode == 0:
                break
            time.sleep(0.2)
        else:
            subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(disk: Path) -> Path:
    """A file that takes every free byte of ``disk`` (written until ENOSPC)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        while (err := _write(fd, b"\0" * (64 << 10))) is None:
            pass  # a short write takes the last bytes, the next one fails
    finally:
        os.close(fd)
    assert err == errno.ENOSPC, os.strerror(err)
    return filler


def _write(fd: int, chunk: bytes) -> int | None:
    """None once ``chunk`` (or part of it) is written, else the write's errno."""
    try:
        os.write(fd, chunk)
    except OSError as e:
        return e.errno
    return None


def _chain(data: Path) -> tuple[list[bytes], list[bytes]]:
    """Every block header's bytes and every log entry of the store in ``data`` (opened as the
    node opens it: a damaged record refuses the open)."""
    with Store(data / "ledger", create=False) as store:
        assert store.head is not None
        headers = [store.block(h).to_bytes() for h in range(store.head.height + 1)]
        entries = [store.entry(i) for i in range(store.head.log_size)]
    return headers, entries


@pytest.mark.slow
def test_a_node_whose_data_folder_fills_under_traffic_loses_nothing(tmp_path: Path) -> None:
    """Traffic at all three nodes; the third's data folder (a 16 MiB tmpfs) is filled
    mid-stream. The two others go on committing; the full one halts and says why (health, one
    ERROR line, each refusal); freed and restarted, it reaches the others' head. Every receipt
    is on every chain at its index, no transaction twice, the three stores open and hold the
    same blocks byte for byte; a refusal that said "Nothing was taken" is on no chain, one that
    said "ordered by the network" is on it."""
    folder = tmp_path / "net"
    base = free_base(3)
    create_cluster(folder, 3, PASS, base_port=base, network=f"test-{base}")
    data = folder / FULL / "data"
    with _small_disk(data, tmp_path) as disk:
        cluster = LocalCluster(folder, PASS)
        try:
            cluster.start()
            net = Net(folder, cluster)
            try:
                _run(net, cluster, disk)
            finally:
                net.close()
        finally:
            cluster.stop()
        chains = {m.agency: _chain(folder / m.agency / "data") for m in cluster.members}
    ref = chains["civil"]
    for a, (headers, entries) in chains.items():  # the same blocks, byte for byte
        assert headers == ref[0], a
        assert entries == ref[1], a
    ids = [hashlib.sha256(e).hexdigest() for e in ref[1]]
    assert len(ids) == len(set(ids)), "a transaction is on the chain twice"


def _run(net: Net, cluster: LocalCluster, disk: Path) -> None:
    now = int(time.time())
    net.setup_degree("edu", now)
    sent: list[Sent] = []
    lock = threading.Lock()
    stop = threading.Event()

    def traffic(via: str) -> None:
        with httpx.Client(verify=cluster.ssl_context(), timeout=40.0) as http:
            while not stop.is_set():
                tx = net.anchor("edu", now)
                try:
                    r = http.post(f"{net.url(via)}/v1/tx", params={"wait": 20},
                                  content=tx.raw)
                    status, body = r.status_code, r.json()
                except (httpx.HTTPError, ValueError) as e:
                    status, body = 0, {"error": repr(e)}
                with lock:
                    sent.append(Sent(via, tx.txid.hex(), status, body, time.monotonic()))
                if status not in (200, 202):
                    stop.wait(0.05)  # a refusal is answered at once: no busy loop

    def committed(via: str | None = None) -> int:
        with lock:
            return sum(1 for s in sent if s.status == 200 and via in (None, s.via))

    workers = [threading.Thread(target=traffic, args=(a,), daemon=True)
               for a in ("civil", "edu", FULL, FULL, FULL)]
    for w in workers:
        w.start()
    try:
        net.wait_until("some commits at every node",
                       lambda: all(committed(a) >= 10 for a in net.ids), timeout=120)
        filler = _fill(disk)
        filled_at = time.monotonic()
        net.wait_until(f"{FULL} halts", lambda: net.health(FULL)["status"] == "halted",
                       timeout=120)
        halted_at = time.monotonic()
        health = net.health(FULL)
        at_halt = {a: committed(a) for a in ("civil", "edu")}
        net.wait_until("the healthy nodes go on committing",
                       lambda: all(committed(a) >= at_halt[a] + 20 for a in at_halt),
                       timeout=120)
        time.sleep(1.0)  # some more refusals at the full node
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=60)
    assert not any(w.is_alive() for w in workers)
    assert health["status"] == "halted", health
    said = str(health.get("problem", "")) + str(health.get("halted", ""))
    assert "No space left on device" in said and "restart" in said, health
    assert str(disk) not in str(health), health

    # what each client of the full node was told once it was full
    refused = [s for s in sent if s.via == FULL and s.status not in (200, 202)]
    assert refused, "the full node refused nothing"
    words: dict[str, int] = {}
    for s in refused:
        detail = str(s.body.get("detail", s.body))
        key = ("nothing was taken" if "Nothing was taken" in detail else
               "ordered, commits on the others" if "ordered by the network" in detail else
               detail[:80]) + f" (taken={s.body.get('taken')})"
        words[key] = words.get(key, 0) + 1
        assert str(disk) not in detail, detail
        if s.at > halted_at:  # each said why, and what to do
            assert s.status == 503 and "No space left on device" in detail, s
            assert "restart" in detail, s
    assert not [s for s in sent if s.status == 0], [s for s in sent if s.status == 0]
    assert not [s for s in sent if s.via != FULL and s.status != 200], \
        [s for s in sent if s.via != FULL and s.status != 200]

    # free space, then restart the node as the README says
    filler.unlink()
    log = cluster.folder / "logs" / f"node-{FULL}.log"
    proc = cluster._nodes.pop(FULL)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0  # stopped by SIGTERM: exit 0 (its help says)
    restarted = time.monotonic()
    cluster.restart(FULL, etcd=False)
    caught_up = net.wait_until("the restarted node reaches its peers' head", net.converged,
                               timeout=180)
    assert net.health(FULL)["status"] in ("ok", "degraded"), net.health(FULL)
    assert "the block writer stopped" in log.read_text(errors="replace")
    stopped = [line for line in log.read_text(errors="replace").splitlines()
               if "the block writer stopped" in line]
    assert len(stopped) == 1 and "No space left on device" in stopped[0], stopped

    # every receipt a client got is on every node, at its index; refusals that said nothing
    # was taken are on no chain; ordered ones are
    receipts = [s for s in sent if s.status == 200]
    for s in receipts:
        for a in net.ids:
            r = net.http.get(f"{net.url(a)}/v1/tx/{s.txid}")
            assert r.status_code == 200, (a, s)
            assert r.json()["index"] == s.body["index"], (a, s)
    wrong: list[tuple[str, str]] = []
    for s in refused:
        where = net.http.get(f"{net.url('civil')}/v1/tx/{s.txid}").status_code
        detail = str(s.body.get("detail", ""))
        if "Nothing was taken" in detail or s.body.get("taken") is False:
            if where != 404:
                wrong.append(("said nothing was taken, but committed", detail))
        elif "ordered by the network and commits there" in detail and where != 200:
            wrong.append(("said ordered and committing, but on no chain", detail))
    print(f"sent {len(sent)}; committed {len(receipts)} (at {FULL}: "
          f"{sum(1 for s in receipts if s.via == FULL)}); 202 "
          f"{sum(1 for s in sent if s.status == 202)}; refused {len(refused)}: {words}; "
          f"halted {halted_at - filled_at:.1f} s after the fill; caught up "
          f"{caught_up:.1f} s after its start ({time.monotonic() - restarted:.1f} s after the "
          f"stop)")
    assert not wrong, wrong


def test_a_node_started_on_a_full_disk_says_to_free_space(tmp_path: Path) -> None:
    """``ledger-node run`` on a full data disk said "cannot open the node: cannot open store at
    …: IO error: …/MANIFEST-000007: No space left on device" (LevelDB writes a new manifest at
    each open): true, but with no word of what to do. It says to free space and try again,
    and once space is freed the store opens with what it held."""
    folder = tmp_path / "net"
    create_cluster(folder, 3, PASS, base_port=free_base(3), network="test-full-start")
    data = folder / FULL / "data"
    with _small_disk(data, tmp_path) as disk:
        before = _chain(disk)
        filler = _fill(disk)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_KEY_PASS")}
        env["LEDGER_KEY_PASSPHRASE"] = PASS.decode()
        r = subprocess.run([sys.executable, "-m", "node.cli", "run", "--config",
                            str(folder / FULL / "node.toml")], env=env, capture_output=True,
                           text=True, timeout=120, check=False)
        said = " ".join((r.stdout + r.stderr).split())
        assert r.returncode == 1, said
        assert "No space left on device" in said, said
        assert "its disk is full: free space on it, then try again" in said, said
        assert "Traceback" not in said, said
        filler.unlink()
        assert _chain(disk) == before  # it opens, as it was
