"""Shared fixtures: fixed demo agencies, fixed times, and a small harness over a real Store.

Everything is deterministic: keys come from :func:`ledger.network.demo_agency` (fixed labels) and
every time is a parameter, so the same test builds byte-identical blocks on every run.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import settings

from ledger.chain import BlockResult, build_block, build_genesis
from ledger.network import Agency, demo_agency, genesis_tx, governance_tx
from ledger.state import Registry
from ledger.store import Store
from ledger.tx import Tx

# pytest-xdist's workers start with COLUMNS=80 and LINES=24 in their environment, and the
# command-line tools' rich consoles, made when a test module imports them, would keep that width
# for good: a test's own COLUMNS (the CliRunner env) then changes nothing and wide tables are
# cut. Without them each console asks at each print, as in a run without workers.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)


def pytest_configure(config: pytest.Config) -> None:
    """A suite started in the background (``nohup scripts/test``, ``scripts/test &`` in a shell
    without job control) inherits SIGINT and SIGHUP ignored, and so would the tools the
    interrupt tests start: they would finish instead of stopping (exit 0, not 130 or 129).
    Signals ignored on entry are given back their defaults here, as a terminal gives them."""
    del config
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)

# Shared, noisy CI machines: no per-example deadline (speed is measured in scripts/bench).
settings.register_profile("credledger", deadline=None)
settings.load_profile("credledger")

NET = "demo"
T0 = 1_700_000_000
DAY = 86_400


@pytest.fixture
def net() -> str:
    return NET


@pytest.fixture
def t0() -> int:
    return T0


@pytest.fixture
def agencies() -> dict[str, Agency]:
    """Three founding agencies with fixed (public, test-only) keys."""
    return {
        "reg": demo_agency("reg", "Civil Registry"),
        "edu": demo_agency("edu", "Education Office"),
        "tax": demo_agency("tax", "Tax Office"),
    }


class LedgerHarness:
    """A store opened on a fresh genesis, with helpers to build and commit blocks."""

    def __init__(self, path: Path, founders: Sequence[Agency], quorum: int, time: int,
                 network: str = NET) -> None:
        self.path = path
        self.net = network
        self.founders = list(founders)
        self.store = Store(path)
        self.genesis = genesis_tx(network, self.founders, quorum, time)
        self.store.write_block(build_genesis(self.genesis))
        self.time = time

    @property
    def registry(self) -> Registry:
        assert self.store.registry is not None
        return self.store.registry

    def build(self, txs: Sequence[Tx], time: int) -> BlockResult:
        """Build (but do not write) the next block."""
        assert self.store.head is not None
        assert self.store.registry is not None
        return build_block(self.store.head, self.store.registry, self.store,
                           self.store.frontier, list(txs), time)

    def commit(self, txs: Sequence[Tx], time: int) -> BlockResult:
        """Build the next block and write it if anything was accepted."""
        r = self.build(txs, time)
        if r.header is not None:
            self.store.write_block(r)
            self.time = max(self.time, time)
        return r

    def gov_tx(self, action: str, args: dict[str, Any], signers: Sequence[Agency],
               seq: int | None = None) -> Tx:
        """A governance transaction with the next sequence number (unless ``seq`` is given)."""
        n = self.registry.gov_seq + 1 if seq is None else seq
        return governance_tx(self.net, n, action, args, signers)

    def govern(self, action: str, args: dict[str, Any], signers: Sequence[Agency],
               time: int) -> BlockResult:
        """Commit one governance transaction and insist that it was accepted."""
        r = self.commit([self.gov_tx(action, args, signers)], time)
        assert not r.rejected, [(e.code, e.message) for _, e in r.rejected]
        assert len(r.accepted) == 1
        return r

    def reopen(self) -> Store:
        self.store.close()
        self.store = Store(self.path)
        return self.store

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def make_ledger(tmp_path: Path) -> Iterator[Callable[..., LedgerHarness]]:
    """Factory: ``make_ledger(founders, quorum, time)`` opens a fresh store under ``tmp_path``."""
    opened: list[LedgerHarness] = []

    def make(founders: Sequence[Agency], quorum: int, time: int = T0,
             network: str = NET, name: str = "store") -> LedgerHarness:
        h = LedgerHarness(tmp_path / name, founders, quorum, time, network)
        opened.append(h)
        return h

    yield make
    for h in opened:
        h.close()


@pytest.fixture
def ledger(make_ledger: Callable[..., LedgerHarness],
           agencies: dict[str, Agency]) -> LedgerHarness:
    """Three founders (reg, edu, tax), quorum 2, genesis at T0."""
    return make_ledger(list(agencies.values()), 2, T0)


@contextmanager
def served_demo(cwd: Path, env: dict[str, str], stdout: Any = subprocess.PIPE,
                stderr: Any = subprocess.PIPE) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`ledger-node demo --data demo-data --serve` in ``cwd`` on a free local port, as the main
    job runs it: (its URL, the process) once it answers /v1/health (up to a minute to build
    the demo and start the server); stopped with SIGTERM after."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    with subprocess.Popen([str(Path(sys.executable).parent / "ledger-node"), "demo", "--data",
                           "demo-data", "--serve", "--port", str(port)], cwd=cwd, env=env,
                          stdout=stdout, stderr=stderr, text=True) as proc:
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                if proc.poll() is not None:
                    said = proc.stderr.read() if proc.stderr else "(its stderr went to a file)"
                    pytest.fail(f"demo exited: {said}")
                try:
                    if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            else:
                pytest.fail("the demo node never answered /v1/health")
            yield url, proc
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
