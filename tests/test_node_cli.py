"""`ledger-node init` (new network: keys, genesis, config) and `ledger-node run`, as processes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from clusterkit import free_base, live_in_group
from test_privacy import _children, _core_file_limit, _cores_allowed

BIN = Path(sys.executable).parent


def _health_once_up(proc: subprocess.Popen[str], port: int) -> dict[str, Any]:
    """The node's /v1/health once it answers (up to 30 s); fails if the node exits first."""
    for _ in range(300):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            return dict(httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).json())
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("the node never answered /v1/health")


def _stop_a_running_node(cmd: list[str], env: dict[str, str], port: int,
                         stop: Callable[[subprocess.Popen[str]], None],
                         **popen: Any) -> tuple[int, str]:
    """``cmd`` (a ``ledger-node run``) started, ``stop(proc)`` once its health answers, and
    its exit code and standard error once it ends (killed if it has not in 60 s)."""
    with subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, **popen) as proc:
        try:
            _health_once_up(proc, port)
            stop(proc)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.stderr is not None
        return proc.returncode, proc.stderr.read()


def test_init_new_network_then_run(tmp_path: Path) -> None:
    env = {**os.environ, "LEDGER_KEY_PASSPHRASE": "init-pw"}
    r = subprocess.run([str(BIN / "ledger-node"), "init", "--data", str(tmp_path / "data"),
                        "--agency", "edu", "--new-network", "district-7",
                        "--founder", "edu=Education Bureau", "--founder", "civil=Civil Affairs",
                        "--quorum", "2", "--config-out", str(tmp_path / "node.toml")],
                       capture_output=True, text=True, env=env, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip().rsplit(" ", 1)[-1]
    config = tomllib.loads((tmp_path / "node.toml").read_text())
    assert config["agency"] == "edu"
    assert token not in (tmp_path / "node.toml").read_text()  # only its hash is stored
    keys = sorted(p.name for p in (tmp_path / "data" / "keys").iterdir())
    assert keys == ["civil.issuer.key", "civil.node.key", "edu.issuer.key", "edu.node.key"]
    for p in (tmp_path / "data" / "keys").iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    head = subprocess.run([str(BIN / "ledger"), "head", str(tmp_path / "data" / "ledger")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert head.returncode == 0 and "no checkpoint stored yet" in head.stdout, head.stdout
    # the genesis it names is the one `ledger audit --genesis` pins (block 0's hash, in full),
    # not the genesis transaction's id
    said = " ".join(r.stderr.split())
    assert "genesis " in said, said
    pinned = said.split("genesis ", 1)[1].split(",", 1)[0]
    audit = subprocess.run([str(BIN / "ledger"), "audit", str(tmp_path / "data" / "ledger"),
                            "--genesis", pinned], capture_output=True, text=True, timeout=60,
                           check=False)
    assert audit.returncode == 0, (pinned, audit.stdout, audit.stderr)

    again = subprocess.run([str(BIN / "ledger-node"), "init", "--data", str(tmp_path / "data"),
                            "--agency", "edu", "--new-network", "district-7", "--founder",
                            "edu=Education Bureau", "--config-out", str(tmp_path / "x.toml")],
                           capture_output=True, text=True, env=env, timeout=120, check=False)
    assert again.returncode == 2  # bad input, as --help says
    assert "not empty" in again.stderr
    many = [arg for i in range(65) for arg in ("--founder", f"a{i:02d}=Agency {i}")]
    for args, said in ((["--founder", "edu"], "bad --founder 'edu'"),
                       (["--founder", "civil=Civil Affairs"], "must be one of the --founder"),
                       (["--founder", "edu=Education", *many], "at most 64 signatures")):
        bad = subprocess.run([str(BIN / "ledger-node"), "init", "--data", str(tmp_path / "d2"),
                              "--agency", "edu", "--new-network", "district-7", *args,
                              "--config-out", str(tmp_path / "y.toml")],
                             capture_output=True, text=True, env=env, timeout=120, check=False)
        assert bad.returncode == 2 and said in bad.stderr, (bad.returncode, bad.stderr)
        assert not (tmp_path / "d2").exists() and not (tmp_path / "y.toml").exists()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with subprocess.Popen([str(BIN / "ledger-node"), "run", "--config", str(tmp_path /
                                                                           "node.toml"),
                           "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True) as proc:
        try:
            health = _health_once_up(proc, port)
            assert health["network"] == "district-7"
            assert health["height"] == 0
            agencies = httpx.get(f"http://127.0.0.1:{port}/v1/registry/agencies").json()
            assert {a["id"] for a in agencies} == {"edu", "civil"}
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        # A stop asked for by SIGTERM (systemd, `ledger-node cluster`) closes the node and exits
        # 0, its signature workers' queues released too.
        assert proc.returncode == 0
        assert proc.stderr is not None
        assert "leaked semaphore" not in proc.stderr.read()
    # A port another process holds: exit 1 saying where, no traceback (uvicorn's own exit is 3)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        r = subprocess.run([str(BIN / "ledger-node"), "run", "--config",
                            str(tmp_path / "node.toml"), "--port", str(busy)], env=env,
                           capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 1, r.stderr
    assert f"could not serve on 127.0.0.1:{busy}" in r.stderr
    assert "Traceback" not in r.stderr
    # The rate limit keys on the socket's peer: a local process cannot pick its address with
    # X-Forwarded-For (uvicorn would take it from 127.0.0.1 by default).
    limited = {**env, "LEDGER_NODE_RATE_LIMIT_PER_MINUTE": "1", "LEDGER_NODE_RATE_LIMIT_BURST":
               "2"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with subprocess.Popen([str(BIN / "ledger-node"), "run", "--config",
                           str(tmp_path / "node.toml"), "--port", str(port)], env=limited,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as proc:
        try:
            for _ in range(300):
                assert proc.poll() is None
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.1)
            codes = [httpx.get(f"http://127.0.0.1:{port}/v1/head", timeout=10,
                               headers={"X-Forwarded-For": f"198.51.100.{i}"}).status_code
                     for i in range(4)]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    assert codes == [200, 200, 429, 429], codes
    r = subprocess.run([str(BIN / "ledger-node"), "run", "--config", str(tmp_path / "no.toml")],
                       env=env, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2 and "bad config" in r.stderr, r.stderr  # bad input: 2


def test_a_running_node_collects_young_objects_less_often() -> None:
    """`ledger-node run` freezes its start-up objects and raises the collector's thresholds
    (ADR 27); the previous settings come back after the check."""
    import gc

    from node.cli import GC_THRESHOLDS, _tune_gc

    before = gc.get_threshold()
    stop = None
    try:
        stop = _tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] > before[0]
        assert gc.get_freeze_count() > 0
    finally:
        if stop is not None:
            stop.set()
        gc.unfreeze()
        gc.set_threshold(*before)


def test_a_running_node_collects_cycles_on_a_clock_too() -> None:
    """With automatic collection off altogether, the node's own collector still frees an
    unreachable cycle (what a dropped TLS connection leaves: ADR 50), within its interval."""
    import gc
    import weakref

    from node.cli import _collect_every

    class Cycle:
        pass

    was = gc.isenabled()
    gc.disable()
    stop = _collect_every(0.05)
    try:
        a, b = Cycle(), Cycle()
        a.other, b.other = b, a  # type: ignore[attr-defined]
        gone = weakref.ref(a)
        del a, b
        assert gone() is not None  # nothing collects it but the node's collector
        deadline = time.monotonic() + 30
        while gone() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gone() is None
    finally:
        stop.set()
        if was:
            gc.enable()


def test_init_that_cannot_finish_leaves_no_half_made_network(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills while `init --new-network` writes the genesis: no keys or partial store
    are left (a re-run would otherwise be refused as "not empty"), one line says why, exit 1;
    a config that cannot be written leaves no empty file (ADR 47)."""
    import plyvel
    from typer.testing import CliRunner

    from ledger.store import Store
    from node import cli

    def full(*_: object, **__: object) -> None:
        raise plyvel.IOError(b"IO error: 000003.log: No space left on device")

    env = {"LEDGER_KEY_PASSPHRASE": "init-pw"}
    args = ["init", "--data", str(tmp_path / "data"), "--agency", "edu", "--new-network",
            "district-9", "--founder", "edu=Education Bureau", "--config-out",
            str(tmp_path / "node.toml")]
    with monkeypatch.context() as m:
        m.setattr(Store, "write_block", full)
        r = CliRunner().invoke(cli.app, args, env=env)
    assert r.exit_code == 1, r.output
    assert "cannot create the network" in r.output and "No space left" in r.output
    assert not (tmp_path / "data").exists() and not (tmp_path / "node.toml").exists()
    (tmp_path / "node.toml").mkdir()  # a folder where the config goes: refused first
    r = CliRunner().invoke(cli.app, [*args, "--force"], env=env)
    assert r.exit_code == 2 and "give a file path" in r.output, r.output
    assert not (tmp_path / "data").exists()
    (tmp_path / "node.toml").rmdir()
    import errno

    def no_room(*_: object, **__: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:  # the network is made, then the config cannot be
        m.setattr(cli, "write_atomic", no_room)
        r = CliRunner().invoke(cli.app, [*args, "--force"], env=env)
    assert r.exit_code == 1 and "cannot write" in r.output, r.output
    assert not (tmp_path / "node.toml").exists() and "operator token" in r.output


def _init_one_founder(tmp_path: Path, network: str, env: dict[str, str]) -> None:
    """`ledger-node init` of a new one-agency network in tmp_path/data, config in node.toml."""
    r = subprocess.run([str(BIN / "ledger-node"), "init", "--data", str(tmp_path / "data"),
                        "--agency", "edu", "--new-network", network,
                        "--founder", "edu=Education Bureau", "--config-out",
                        str(tmp_path / "node.toml")],
                       capture_output=True, text=True, env=env, timeout=120, check=False)
    assert r.returncode == 0, r.stderr


def test_the_key_passphrase_can_come_from_a_file(tmp_path: Path) -> None:
    """``$LEDGER_KEY_PASSPHRASE_FILE``: the tools read the passphrase from a file only its
    owner may read, so no process's environment holds it (ADR 47)."""
    from ledger.keys import load_private_key

    secret = tmp_path / "passphrase"
    secret.write_text("from-a-file\n")
    secret.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k != "LEDGER_KEY_PASSPHRASE"}
    env["LEDGER_KEY_PASSPHRASE_FILE"] = str(secret)
    _init_one_founder(tmp_path, "district-9", env)
    assert load_private_key(tmp_path / "data" / "keys" / "edu.node.key", b"from-a-file")
    secret.chmod(0o644)
    r = subprocess.run([str(BIN / "ledger"), "head", str(tmp_path / "data")],
                       capture_output=True, text=True, env=env, timeout=120, check=False)
    assert r.returncode == 0, r.stderr  # reads no key: the file is not looked at
    r = subprocess.run([str(BIN / "ledger-node"), "run", "--config", str(tmp_path / "node.toml"),
                        "--port", "1"], capture_output=True, text=True, env=env, timeout=120,
                       check=False)
    assert r.returncode != 0 and "may be read by others" in r.stderr, r.stderr


def test_ctrl_c_stops_a_node_and_its_workers_without_tracebacks(tmp_path: Path) -> None:
    """Ctrl-C in a terminal sends SIGINT to the whole process group, the signature workers
    included: the node stops cleanly and no worker prints a KeyboardInterrupt traceback."""
    env = {**os.environ, "LEDGER_KEY_PASSPHRASE": "init-pw", "LEDGER_NODE_WORKERS": "2"}
    _init_one_founder(tmp_path, "district-8", env)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # As a terminal's foreground job: its own process group, SIGINT not ignored (a test runner
    # started in the background may ignore it, and exec keeps an ignored signal ignored).
    foreground = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                  "os.execv(sys.argv[1], sys.argv[1:])")
    def ctrl_c(proc: subprocess.Popen[str]) -> None:
        workers = subprocess.run(["pgrep", "-g", str(proc.pid), "-f", "spawn_main"],
                                 capture_output=True, text=True, check=False).stdout.split()
        assert len(workers) == 2  # the node's signature workers share its process group
        os.killpg(proc.pid, signal.SIGINT)

    _, said = _stop_a_running_node(
        [sys.executable, "-c", foreground, str(BIN / "ledger-node"), "run", "--config",
         str(tmp_path / "node.toml"), "--port", str(port)], env, port, ctrl_c,
        start_new_session=True)
    assert "Traceback" not in said, said
    assert "KeyboardInterrupt" not in said, said
    assert "while starting" not in said, said


def test_credit_secret_made_once_and_sealed_again_for_another_agency(tmp_path: Path) -> None:
    """`ledger-node credit-secret` makes the network's secret sealed (0600, never printed),
    refuses to replace it (a new one would give every subject a new pseudonym), and seals
    another agency's copy under that agency's passphrase: the same secret in both."""
    from node.service import read_credit_secret

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "ledger-node"), "credit-secret", *args],
                              capture_output=True, text=True, timeout=120, check=False,
                              env={k: v for k, v in os.environ.items()
                                   if not k.startswith("LEDGER_")} | env)

    first, second = tmp_path / "civil.secret", tmp_path / "edu.secret"
    r = run("--out", str(first), LEDGER_KEY_PASSPHRASE="civil-pw")
    assert r.returncode == 0, r.stderr
    made = read_credit_secret(first, b"civil-pw")
    assert made is not None and len(made) == 32
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    assert made.hex() not in r.stdout + r.stderr and made not in first.read_bytes()
    # at a ceremony no node runs yet: nothing to restart, it is taken at a node's start
    assert "at its next start" in r.stderr and "restart the node" not in r.stderr
    r = run("--out", str(first), LEDGER_KEY_PASSPHRASE="civil-pw")
    assert r.returncode == 2 and "--force" in r.stderr
    assert read_credit_secret(first, b"civil-pw") == made
    r = run("--from", str(first), "--out", str(second), LEDGER_FROM_PASSPHRASE="wrong",
            LEDGER_KEY_PASSPHRASE="edu-pw")
    assert r.returncode == 1 and "wrong passphrase" in r.stderr and not second.exists()
    r = run("--from", str(first), "--out", str(second), LEDGER_FROM_PASSPHRASE="civil-pw",
            LEDGER_KEY_PASSPHRASE="edu-pw")
    assert r.returncode == 0, r.stderr
    assert read_credit_secret(second, b"edu-pw") == made


def test_a_founder_seals_its_keys_again_under_a_passphrase_only_it_knows(
        tmp_path: Path) -> None:
    """`ledger-node seal-again`: the ceremony's one passphrase opens every founder's keys; a
    founder seals its own again under its own passphrase, after the current one opened every
    file. Its node then starts with the new passphrase and not with the ceremony's; bad input
    (a missing file, a file of another kind, a wrong or the same passphrase) writes nothing."""
    from ledger.errors import KeyFileError
    from ledger.keys import load_private_key
    from node.service import read_credit_secret

    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    _init_one_founder(tmp_path, "district-6", {**env, "LEDGER_KEY_PASSPHRASE": "ceremony-pw"})
    keys = tmp_path / "data" / "keys"
    node_key, issuer_key = keys / "edu.node.key", keys / "edu.issuer.key"
    secret = keys / "credit.secret"
    r = subprocess.run([str(BIN / "ledger-node"), "credit-secret", "--out", str(secret)],
                       capture_output=True, text=True, timeout=120, check=False,
                       env={**env, "LEDGER_KEY_PASSPHRASE": "ceremony-pw"})
    assert r.returncode == 0, r.stderr
    issuer_key.chmod(0o640)  # a mode of the agency's own choosing is kept
    before = {p: p.read_bytes() for p in (node_key, issuer_key, secret)}
    made = load_private_key(node_key, b"ceremony-pw").kid

    def seal(*files: Path, old: str = "ceremony-pw",
             new: str = "edu-own-pw") -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "ledger-node"), "seal-again",
                               *[x for f in files for x in ("--key", str(f))]],
                              capture_output=True, text=True, timeout=120, check=False,
                              stdin=subprocess.DEVNULL,
                              env={**env, "LEDGER_FROM_PASSPHRASE": old,
                                   "LEDGER_KEY_PASSPHRASE": new})

    for files, old, new, code, said in (
            ((node_key, tmp_path / "none.key"), "ceremony-pw", "edu-own-pw", 2, "none.key"),
            ((node_key, tmp_path / "node.toml"), "ceremony-pw", "edu-own-pw", 1,
             "cannot read key file"),
            ((node_key, issuer_key), "wrong-pw", "edu-own-pw", 1, "wrong passphrase"),
            ((node_key, issuer_key), "ceremony-pw", "ceremony-pw", 2, "is the current one")):
        r = seal(*files, old=old, new=new)
        assert r.returncode == code and said in r.stderr, (files, r.returncode, r.stderr)
        assert "nothing was written" in " ".join(r.stderr.split()), r.stderr
        assert "Traceback" not in r.stderr
        assert {p: p.read_bytes() for p in before} == before  # nothing changed
    r = seal(node_key, issuer_key, secret)
    assert r.returncode == 0, r.stderr
    for word in ("ceremony-pw", "edu-own-pw", read_credit_secret(secret, b"edu-own-pw").hex()):
        assert word not in r.stdout + r.stderr
    assert all(p.read_bytes() != before[p] for p in before)
    assert stat.S_IMODE(node_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(issuer_key.stat().st_mode) == 0o640
    assert sorted(p.name for p in keys.iterdir()) == sorted(p.name for p in before)  # no tmp
    assert load_private_key(node_key, b"edu-own-pw").kid == made  # the same key
    assert read_credit_secret(secret, b"edu-own-pw") is not None
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_private_key(issuer_key, b"ceremony-pw")

    run = [str(BIN / "ledger-node"), "run", "--config", str(tmp_path / "node.toml")]
    r = subprocess.run([*run, "--port", "1"], capture_output=True, text=True, timeout=120,
                       check=False, env={**env, "LEDGER_KEY_PASSPHRASE": "ceremony-pw"})
    assert r.returncode != 0 and "wrong passphrase" in r.stderr, r.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with subprocess.Popen([*run, "--port", str(port)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True,
                          env={**env, "LEDGER_KEY_PASSPHRASE": "edu-own-pw"}) as proc:
        try:
            assert _health_once_up(proc, port)["network"] == "district-6"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    assert proc.returncode == 0


def test_seal_again_takes_the_key_files_of_a_folder_from_before_adr_46(tmp_path: Path) -> None:
    """A folder kept since before ADR 46 holds key files its node still reads: a clear
    credit.secret and an agency TLS key in PEM (PBKDF2, under the key passphrase). `seal-again`
    refused both ("not canonical msgpack"), so an agency changing its passphrase as the help
    says (every key file its node opens) could not: left out, the TLS key kept the old
    passphrase and the node would not start. It seals them as key files are now (every
    version since ADR 46 reads them); a PEM key the current passphrase does not open, or a
    clear file of another name, is still refused and nothing is written (helper round 37U)."""
    from cryptography.hazmat.primitives import serialization
    from test_pki import NOW

    from ledger.keys import load_private_key, open_secret
    from node.pki import PkiError, create_pki, lock, unlock
    from node.service import read_credit_secret

    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    _init_one_founder(tmp_path, "district-7", {**env, "LEDGER_KEY_PASSPHRASE": "old-pw"})
    keys = tmp_path / "data" / "keys"
    node_key, secret = keys / "edu.node.key", keys / "credit.secret"
    clear = bytes(range(1, 33))
    secret.write_bytes(clear)  # a clear credit secret, as written before ADR 46
    secret.chmod(0o600)
    pki = tmp_path / "pki"  # the agency's PKI folder, its key in PEM as before ADR 46
    create_pki(pki, "n", ["edu"], b"old-pw", now=NOW)
    tls = pki / "edu.key"
    key = serialization.load_der_private_key(
        open_secret(tls.read_bytes(), b"old-pw", "tls-key", tls), None)
    tls.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(b"old-pw")))
    other = tmp_path / "notes.bin"  # 32 clear bytes that are no credit secret
    other.write_bytes(clear)
    before = {p: p.read_bytes() for p in (node_key, secret, tls, other)}
    made = load_private_key(node_key, b"old-pw").kid

    def seal(*files: Path, old: str = "old-pw") -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "ledger-node"), "seal-again",
                               *[x for f in files for x in ("--key", str(f))]],
                              capture_output=True, text=True, timeout=120, check=False,
                              stdin=subprocess.DEVNULL,
                              env={**env, "LEDGER_FROM_PASSPHRASE": old,
                                   "LEDGER_KEY_PASSPHRASE": "new-pw"})

    for files, old, said in (((node_key, other), "old-pw", "cannot read key file"),
                             ((tls,), "wrong-pw", "wrong passphrase")):
        r = seal(*files, old=old)
        assert r.returncode == 1 and said in r.stderr, (files, r.stderr)
        assert "nothing was written" in " ".join(r.stderr.split()), r.stderr
        assert {p: p.read_bytes() for p in before} == before
    r = seal(node_key, secret, tls)
    assert r.returncode == 0, r.stderr
    assert "3 key file(s) now open with the new passphrase only" in " ".join(r.stderr.split())
    assert clear.hex() not in r.stdout + r.stderr
    assert not secret.read_bytes().startswith(clear) and not tls.read_bytes().startswith(b"-")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(tls.stat().st_mode) == 0o600
    assert read_credit_secret(secret, b"new-pw") == clear  # the same secret, sealed
    assert load_private_key(node_key, b"new-pw").kid == made
    runtime = unlock(pki, "edu", b"new-pw", now=NOW)  # as the node opens it: the same key
    try:
        copy = serialization.load_pem_private_key((runtime / "edu.key").read_bytes(), None)
        assert copy.private_numbers() == key.private_numbers()  # type: ignore[union-attr]
    finally:
        lock(runtime)
    with pytest.raises(PkiError, match="wrong passphrase"):
        unlock(pki, "edu", b"old-pw", now=NOW)


def test_seal_again_stopped_by_a_signal_says_which_files_are_under_which_passphrase(
        tmp_path: Path) -> None:
    """`seal-again` stopped by SIGTERM or SIGINT between files printed no closing list: the
    operator could not tell which files open with the new passphrase and which with the old.
    A signal while files are written is taken where every file is whole (since round 40S,
    before any is replaced); the command then names both lists and exits 128 + the signal's
    number (helper round 38D).

    Deterministic: the command starts with the signal blocked (a mask its parent passes on)
    and already sent, so it is pending from the first file on, as one that arrives while the
    first file is written."""
    from node.service import read_credit_secret

    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    for signo in (signal.SIGTERM, signal.SIGINT):
        folder = tmp_path / signo.name
        folder.mkdir()
        files = [folder / f"{n}.secret" for n in ("a", "b", "c")]
        for f in files:
            r = subprocess.run([str(BIN / "ledger-node"), "credit-secret", "--out", str(f)],
                               capture_output=True, text=True, timeout=120, check=False,
                               env={**env, "LEDGER_KEY_PASSPHRASE": "old-pw"})
            assert r.returncode == 0, r.stderr
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signo})
        try:
            proc = subprocess.Popen(
                [str(BIN / "ledger-node"), "seal-again",
                 *[x for f in files for x in ("--key", str(f))]],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, env={**env, "LEDGER_FROM_PASSPHRASE": "old-pw",
                                "LEDGER_KEY_PASSPHRASE": "new-pw", "COLUMNS": "300"})
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        proc.send_signal(signo)
        _, said = proc.communicate(timeout=120)
        said = " ".join(said.split())
        assert proc.returncode == 128 + signo, (signo, proc.returncode, said)
        assert "Traceback" not in said, said
        assert f"stopped by {signo.name}" in said, said
        # taken before any file is replaced (round 40S: the first file was): nothing written
        assert "sealed again under the new passphrase: none" in said, said
        assert (f"still under the current passphrase: {files[0]}, {files[1]}, {files[2]}"
                in said), said
        for f in files:
            assert read_credit_secret(f, b"old-pw") is not None
        assert sorted(p.name for p in folder.iterdir()) == ["a.secret", "b.secret", "c.secret"]


def test_seal_again_holds_a_stop_that_comes_once_it_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test above starts `seal-again` with the signal already blocked by its parent, so
    the command's own blocking while it writes was held by no test (helper round 39M: without
    it, the test still passed). Here SIGINT comes as the writes begin, the command running
    in this process with SIGINT delivered: it is held until the file being written is whole,
    then taken (both lists, nothing replaced, exit 130), not a KeyboardInterrupt midway. The
    writes themselves are the command's own; only the signal is sent as they begin."""
    import threading

    from typer.testing import CliRunner

    from node import cli
    from node.service import read_credit_secret

    files = [tmp_path / f"{n}.secret" for n in ("a", "b")]
    for f in files:
        r = CliRunner().invoke(cli.app, ["credit-secret", "--out", str(f)],
                               env={"LEDGER_KEY_PASSPHRASE": "old-pw"})
        assert r.exit_code == 0, r.output
    writes = cli._seal_each_again

    def stopped_as_it_begins(*args: Any) -> None:
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)
        writes(*args)

    monkeypatch.setattr(cli, "_seal_each_again", stopped_as_it_begins)
    r = CliRunner().invoke(cli.app, ["seal-again", *[x for f in files for x in ("--key", str(f))]],
                           env={"LEDGER_FROM_PASSPHRASE": "old-pw",
                                "LEDGER_KEY_PASSPHRASE": "new-pw", "COLUMNS": "300"})
    said = " ".join(r.output.split())
    assert r.exit_code == 128 + signal.SIGINT and "stopped by SIGINT" in said, said
    assert f"still under the current passphrase: {files[0]}, {files[1]}" in said, said
    for f in files:
        assert read_credit_secret(f, b"old-pw") is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.secret", "b.secret"]  # no tmp
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())


def _node_cli(env: dict[str, str], *args: str, old: str, new: str
              ) -> subprocess.CompletedProcess[str]:
    """`ledger-node ARGS` with ``old`` as $LEDGER_FROM_PASSPHRASE and ``new`` as
    $LEDGER_KEY_PASSPHRASE, beside ``env``."""
    return subprocess.run([str(BIN / "ledger-node"), *args], capture_output=True, text=True,
                          timeout=120, check=False, stdin=subprocess.DEVNULL,
                          env={**env, "LEDGER_FROM_PASSPHRASE": old,
                               "LEDGER_KEY_PASSPHRASE": new})


@pytest.mark.skipif(os.geteuid() != 0, reason="gives a file to another owner (root only)")
def test_seal_again_keeps_a_files_owner_and_refuses_one_with_another_name(
        tmp_path: Path) -> None:
    """`seal-again` (round 37K): a key file of the node's user, sealed again by root (`sudo`),
    keeps its owner and group, as it keeps its mode (before, root's new file left the node
    unable to open its own key); a file with a second name (a hard link) is refused before the
    passphrase, as that name would keep a copy the current passphrase opens while the command
    said every file opens with the new one only."""
    from node.service import read_credit_secret

    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    secret, linked = tmp_path / "credit.secret", tmp_path / "credit.secret.bak"

    def run(*args: str, old: str = "old-pw", new: str = "new-pw"
            ) -> subprocess.CompletedProcess[str]:
        return _node_cli(env, *args, old=old, new=new)

    assert run("credit-secret", "--out", str(secret), new="old-pw").returncode == 0
    os.chown(secret, 4242, 4343)
    secret.chmod(0o640)
    os.link(secret, linked)
    before = secret.read_bytes()
    r = run("seal-again", "--key", str(secret))
    assert r.returncode == 2 and "hard link" in r.stderr, r.stderr
    assert "nothing was written" in " ".join(r.stderr.split())
    assert secret.read_bytes() == before and linked.read_bytes() == before
    linked.unlink()
    r = run("seal-again", "--key", str(secret))
    assert r.returncode == 0, r.stderr
    info = secret.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (4242, 4343, 0o640)
    assert read_credit_secret(secret, b"new-pw") is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["credit.secret"]  # no tmp left


def test_seal_again_writes_nothing_over_a_file_replaced_while_it_ran(tmp_path: Path) -> None:
    """`seal-again` reads every key file, then asks the new passphrase (a person types it
    twice), then writes: a file put in one's place meanwhile (a new credit secret, a key made
    again) was replaced by the key it held before, sealed under the new passphrase, and the
    command said it was done (helper round 38K). A file changed since it was opened is named,
    exit 1, and nothing is written: neither it nor the file before it."""
    from ledger.keys import load_private_key
    from node.service import read_credit_secret

    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    _init_one_founder(tmp_path, "district-7", {**env, "LEDGER_KEY_PASSPHRASE": "old-pw"})
    keys = tmp_path / "data" / "keys"
    node_key, secret, fresh = keys / "edu.node.key", keys / "credit.secret", tmp_path / "new"
    for out in (secret, fresh):
        r = subprocess.run([str(BIN / "ledger-node"), "credit-secret", "--out", str(out)],
                           capture_output=True, text=True, timeout=120, check=False,
                           stdin=subprocess.DEVNULL, env={**env, "LEDGER_KEY_PASSPHRASE": "old-pw"})
        assert r.returncode == 0, r.stderr
    made = read_credit_secret(fresh, b"old-pw")
    assert made is not None and made != read_credit_secret(secret, b"old-pw")
    before = node_key.read_bytes()

    def meanwhile(change: Callable[[], object]) -> bytes:
        """seal-again of both files, ``change`` made while it asks the new passphrase: what it
        said (it exits 1)."""
        # the new passphrase from standard input (no terminal: a session of its own), so the
        # file is changed after both files were read and before the passphrase is given
        proc = subprocess.Popen([str(BIN / "ledger-node"), "seal-again", "--key",
                                 str(node_key), "--key", str(secret)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True,
                                env={**env, "LEDGER_FROM_PASSPHRASE": "old-pw",
                                     "COLUMNS": "300"})
        assert proc.stdin is not None and proc.stderr is not None
        said = b""
        while b"Passphrase for the key files" not in said:
            chunk = os.read(proc.stderr.fileno(), 4096)
            assert chunk, said
            said += chunk
        change()
        _, rest = proc.communicate(b"new-pw\nnew-pw\n", timeout=120)
        said = b" ".join((said + rest).split())
        assert proc.returncode == 1 and b"Traceback" not in said, said
        assert b"changed while seal-again ran" in said and b"nothing was written" in said, said
        return said

    meanwhile(lambda: fresh.replace(secret))  # the operator's new secret takes its place
    assert node_key.read_bytes() == before
    assert read_credit_secret(secret, b"old-pw") == made
    load_private_key(node_key, b"old-pw")
    # removed meanwhile (round 39M: no test held it): named, as one replaced
    said = meanwhile(secret.unlink)
    assert str(secret).encode() in said, said
    assert node_key.read_bytes() == before and not secret.exists()


def test_seal_again_takes_a_clear_credit_secret_by_the_name_given(tmp_path: Path) -> None:
    """A clear file is taken as a credit secret from before ADR 46 only by its name: a link
    named credit.secret (the node's keys folder) to a clear file of another name is the node's
    secret, sealed in the file, the link kept; the same file given by its own name is no key
    file, exit 1, nothing written (ADR 81 left the name given untested; helper round 40S)."""
    from node.service import read_credit_secret

    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    keys = tmp_path / "keys"
    keys.mkdir()
    kept, link = tmp_path / "secret-2019.bin", keys / "credit.secret"
    clear = bytes(range(7, 39))
    kept.write_bytes(clear)
    kept.chmod(0o600)
    link.symlink_to(kept)
    r = _node_cli(env, "seal-again", "--key", str(kept), old="old-pw", new="new-pw")
    assert r.returncode == 1 and "cannot read key file" in r.stderr, r.stderr
    assert kept.read_bytes() == clear
    r = _node_cli(env, "seal-again", "--key", str(link), old="old-pw", new="new-pw")
    assert r.returncode == 0, r.stderr
    assert clear.hex() not in r.stdout + r.stderr
    assert link.is_symlink() and kept.read_bytes() != clear
    assert read_credit_secret(link, b"new-pw") == clear


def test_seal_again_replaces_no_file_unless_it_can_write_them_all(tmp_path: Path) -> None:
    """`seal-again` wrote file by file: a file whose folder it could not write stopped it with
    the files before it already under the new passphrase (ADR 81, left; helper round 40S).
    Every new file is now written beside its file first and none takes its place unless all
    were written: a folder it cannot write (immutable, as root ignores modes) exits 1 with
    every file as it was and nothing left beside them. A file the rename cannot replace (an
    immutable file: its folder takes the new file, the rename is refused) is said with both
    lists, each file whole under one passphrase or the other, and nothing left beside it."""
    from test_audit import _make_read_only

    from node.service import read_credit_secret

    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    first, second = tmp_path / "first", tmp_path / "second"
    files = [first / "a.secret", second / "b.secret"]
    for f in files:
        f.parent.mkdir()
        assert _node_cli(env, "credit-secret", "--out", str(f), old="", new="old-pw"
                         ).returncode == 0
    before = {f: f.read_bytes() for f in files}
    seal = ["seal-again", *[x for f in files for x in ("--key", str(f))]]
    env["COLUMNS"] = "300"
    for locked, code, said in (
            (second, 1, f"cannot write {files[1]}"),  # before: a.secret was sealed again
            (files[1], 1, f"cannot replace {files[1]}")):
        undo = _make_read_only([locked])
        try:
            r = _node_cli(env, *seal, old="old-pw", new="new-pw")
        finally:
            subprocess.run(undo, check=True)
        told = " ".join(r.stderr.split())
        assert r.returncode == code and said in told, told
        assert "Traceback" not in told, told
        assert sorted(p.name for p in first.iterdir()) == ["a.secret"]  # nothing left beside
        assert sorted(p.name for p in second.iterdir()) == ["b.secret"]
        assert files[1].read_bytes() == before[files[1]]
        if locked == second:
            assert "nothing was written" in told, told
            assert files[0].read_bytes() == before[files[0]]
        else:
            assert (f"sealed again under the new passphrase: {files[0]}; still under the "
                    f"current passphrase: {files[1]}") in told, told
            assert read_credit_secret(files[0], b"new-pw") is not None
            assert read_credit_secret(files[1], b"old-pw") is not None


def test_seal_again_keeps_a_link_and_refuses_what_is_no_file(tmp_path: Path) -> None:
    """`seal-again` (round 38M: no test held these): a key file named through a symbolic link
    is sealed in its place, the link kept (replaced by a file, the link's target kept the copy
    the current passphrase opens), named twice is sealed once, and keeps its mode whatever the
    umask; a folder or a FIFO (whose read waits for a writer) is refused before the
    passphrase, exit 2, nothing written."""
    from node.service import read_credit_secret

    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    keys = tmp_path / "keys"
    keys.mkdir()
    secret, link, fifo = keys / "credit.secret", tmp_path / "credit.link", tmp_path / "pipe"

    def run(*args: str, old: str = "old-pw", new: str = "new-pw"
            ) -> subprocess.CompletedProcess[str]:
        return _node_cli(env, *args, old=old, new=new)

    assert run("credit-secret", "--out", str(secret), new="old-pw").returncode == 0
    link.symlink_to(secret)
    os.mkfifo(fifo)
    before = secret.read_bytes()
    for bad in (keys, fifo):
        r = run("seal-again", "--key", str(secret), "--key", str(bad))
        assert r.returncode == 2 and "is not a file" in r.stderr, r.stderr
        assert "nothing was written" in " ".join(r.stderr.split()) and "Passphrase" not in r.stderr
        assert secret.read_bytes() == before
    secret.chmod(0o640)  # kept under an umask that would take the group's read (round 38M)
    r = subprocess.run(["sh", "-c", 'umask 077 && exec "$0" "$@"', str(BIN / "ledger-node"),
                        "seal-again", "--key", str(link), "--key", str(secret)],
                       capture_output=True, text=True, timeout=120, check=False,
                       stdin=subprocess.DEVNULL, env={**env, "LEDGER_FROM_PASSPHRASE": "old-pw",
                                                      "LEDGER_KEY_PASSPHRASE": "new-pw"})
    assert r.returncode == 0, r.stderr
    assert "1 key file(s) now open with the new passphrase only" in " ".join(r.stderr.split())
    assert link.is_symlink() and link.resolve() == secret.resolve()
    assert stat.S_IMODE(secret.stat().st_mode) == 0o640
    assert read_credit_secret(secret, b"new-pw") is not None
    assert sorted(p.name for p in keys.iterdir()) == ["credit.secret"]  # no tmp left


def test_a_founders_ceremony_writes_no_config_nobody_would_use(tmp_path: Path) -> None:
    """`init --new-network --no-config` (the founders' ceremony) makes every founder's keys
    and the genesis only: no config pointing at the ceremony's folder (wiped once each founder
    took its part) and no operator token (round 36K: the README had it write one to
    ceremony/unused.toml). Options of a config with it, or it without --new-network, are
    refused (exit 2) and make nothing; without it init still needs --agency."""
    env = {**os.environ, "LEDGER_KEY_PASSPHRASE": "ceremony-pw"}

    def init(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "ledger-node"), "init", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120, check=False,
                              stdin=subprocess.DEVNULL)

    ceremony = ["--new-network", "district-5", "--founder", "civil=Civil Affairs", "--founder",
                "edu=Education Bureau", "--quorum", "2", "--data", "ceremony"]
    for args, said in (
            ([*ceremony, "--no-config", "--agency", "civil"], "leave out --agency"),
            ([*ceremony, "--no-config", "--config-out", "c.toml"], "leave out --config-out"),
            ([*ceremony, "--no-config", "--etcd-endpoint", "https://127.0.0.1:1"],
             "leave out --etcd-endpoint"),
            # a config's bind address and port were taken and dropped (round 37K)
            ([*ceremony, "--no-config", "--port", "9000"], "leave out --port"),
            ([*ceremony, "--no-config", "--host", "0.0.0.0"], "leave out --host"),
            # each of a config's other options, one at a time (round 38M)
            ([*ceremony, "--no-config", "--peer", "https://127.0.0.1:1"], "leave out --peer"),
            ([*ceremony, "--no-config", "--pki", "pki"], "leave out --pki"),
            ([*ceremony, "--no-config", "--tls"], "leave out --tls"),
            ([*ceremony, "--no-config", "--public-url", "https://edu.example"],
             "leave out --public-url"),
            ([*ceremony, "--no-config", "--force"], "leave out --force"),
            (["--data", "ceremony", "--no-config"], "it is for --new-network"),
            (["--new-network", "district-5", "--data", "ceremony", "--no-config"],
             "give each with --founder"),
            (ceremony, "missing option --agency")):
        r = init(*args)
        assert r.returncode == 2 and said in " ".join(r.stderr.split()), (args, r.stderr)
        assert "Traceback" not in r.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing made
    r = init(*ceremony, "--no-config")
    assert r.returncode == 0, r.stderr
    assert "operator token" not in r.stdout + r.stderr and r.stdout == ""
    assert "no config written" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ceremony"]
    assert sorted(p.name for p in (tmp_path / "ceremony").iterdir()) == ["keys", "ledger"]
    assert sorted(p.name for p in (tmp_path / "ceremony" / "keys").iterdir()) == [
        "civil.issuer.key", "civil.node.key", "edu.issuer.key", "edu.node.key"]
    # a founder's own config, once it has its part (here: the ceremony's folder itself)
    r = init("--data", "ceremony", "--agency", "edu", "--config-out", "edu/node.toml")
    assert r.returncode == 0 and "operator token" in r.stdout, r.stderr
    assert tomllib.loads((tmp_path / "edu" / "node.toml").read_text())["agency"] == "edu"


def test_init_refuses_network_options_without_a_new_network(tmp_path: Path) -> None:
    """--founder and --quorum only mean something with --new-network: without it, init used
    to ignore them and write the config of the folder as it is."""
    from typer.testing import CliRunner

    from node import cli

    r = CliRunner().invoke(cli.app, ["init", "--data", str(tmp_path / "d"), "--agency", "edu",
                                     "--quorum", "5", "--config-out", str(tmp_path / "n.toml")])
    assert r.exit_code == 2 and "give --new-network" in " ".join(r.output.split()), r.output
    assert not (tmp_path / "n.toml").exists()


def test_the_served_demo_names_the_passphrase_its_wallet_has() -> None:
    """With $WALLET_PASSPHRASE the demo wallet is sealed with it, not the key passphrase: the
    hint said "both passphrases: demo-only-not-secret" and the wallet did not open with it."""
    from node.cli import passphrase_hint

    own = passphrase_hint(demo_keys=True, own_wallet_pass=True)
    assert "$WALLET_PASSPHRASE" in own and "both" not in own
    assert "demo-only-not-secret" in own.split(";")[1]  # the keys' passphrase, said as such
    assert "demo-only" not in passphrase_hint(demo_keys=False, own_wallet_pass=True)
    assert "both passphrases: demo-only-not-secret" in passphrase_hint(True, False)
    assert "demo-only" not in passphrase_hint(demo_keys=False, own_wallet_pass=False)


@pytest.mark.parametrize(("args", "shown"), [
    # an agency id is checked, and refused, quoting what was given
    (["init", "--data", "{tmp}/d", "--agency", "a[/]"], "a[/]"),
    (["init", "--data", "{tmp}/d", "--agency", "edu", "--new-network", "n",
      "--founder", "edu=Education", "--founder", "civil[/b]"], "civil[/b]"),
    # a name of spaces only: stripped, it was an agency named "" on the ledger for good
    (["init", "--data", "{tmp}/d", "--agency", "edu", "--new-network", "n",
      "--founder", "edu=  ", "--config-out", "{tmp}/node.toml"], "bad --founder 'edu=  '"),
    # a quorum no 64-bit integer holds: a ValueError traceback from the codec
    (["init", "--data", "{tmp}/d", "--agency", "edu", "--new-network", "n",
      "--founder", "edu=Education", "--quorum", str(2**64)],
     f"cannot make that genesis: integer {2**64} outside the 64-bit range"),
    # a folder name that looks like markup: said as it is, not dropped from the message
    (["init", "--data", "{tmp}/data[old]", "--agency", "edu"], "data[old]/ledger"),
    (["pki", "add", "--pki", "{tmp}/pki[/]", "--agency", "edu"], "pki[/]/ca.crt"),
    (["pki", "list", "--pki", "{tmp}/pki[bold]"], "pki[bold]"),
])
def test_bad_node_input_is_one_line_that_says_it_as_given(tmp_path: Path, args: list[str],
                                                          shown: str) -> None:
    """Messages are written with Rich markup; an id, a path or an error quoting one was put
    into them as markup too, so ``[/]`` ended in a MarkupError traceback and ``[old]`` was
    dropped from the path said. Bad input is one line that says it as given, exit 1 or 2."""
    env = {**os.environ, "LEDGER_KEY_PASSPHRASE": "pw", "COLUMNS": "300"}
    r = subprocess.run([str(BIN / "ledger-node"), *(a.format(tmp=tmp_path) for a in args)],
                       capture_output=True, text=True, env=env, timeout=120, check=False,
                       stdin=subprocess.DEVNULL)
    assert r.returncode in (1, 2), r.stderr
    assert "Traceback" not in r.stderr and "MarkupError" not in r.stderr, r.stderr
    assert shown in r.stderr, r.stderr
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("base", ["70000", "65400", "0"])
def test_a_cluster_base_port_past_the_last_port_is_one_line(tmp_path: Path, base: str) -> None:
    """``ledger-node cluster --base-port 70000`` (or 65400: its etcd peers past 65535) ended
    in an OverflowError traceback from bind(); refused in one line, nothing made."""
    env = {**os.environ, "LEDGER_KEY_PASSPHRASE": "pw", "COLUMNS": "300"}
    r = subprocess.run([str(BIN / "ledger-node"), "cluster", "--data", str(tmp_path / "c"),
                        "--base-port", base, "--once"], capture_output=True, text=True,
                       env=env, timeout=120, check=False, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"--base-port {base}: 3 agencies use ports base to base+202, so give 1 to 65333" \
        in r.stderr, r.stderr
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(("args", "said"), [
    (["--agencies", "0"], "--agencies must be 1..9, got 0"),
    (["--agencies", "10"], "--agencies must be 1..9, got 10"),
    (["--base-port", "70000"], "--base-port 70000: 3 agencies use ports base to base+202"),
])
def test_a_cluster_refuses_bad_input_before_asking_for_a_passphrase_exit_2(
        tmp_path: Path, args: list[str], said: str) -> None:
    """``ledger-node cluster --agencies 10`` asked for the keys' passphrase first (typed twice
    at a terminal), then refused, and exited 1 where the help says bad input is 2. Now the
    refusal comes first, with exit 2, and nothing is made."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_KEY_PASSPHRASE")}
    r = subprocess.run([str(BIN / "ledger-node"), "cluster", "--data", str(tmp_path / "c"),
                        *args, "--once"], capture_output=True, text=True,
                       env={**env, "COLUMNS": "300"}, timeout=120, check=False,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert said in r.stderr and "assphrase" not in r.stderr, r.stderr
    assert not (tmp_path / "c").exists()


def test_a_demo_port_past_the_last_port_is_refused_before_the_demo_is_built(
        tmp_path: Path) -> None:
    """``ledger-node demo --serve --port 70000`` built the whole demo, then ended in a
    ConfigError traceback when it came to serve it."""
    env = {**os.environ, "LEDGER_KEY_PASSPHRASE": "pw", "COLUMNS": "300"}
    r = subprocess.run([str(BIN / "ledger-node"), "demo", "--data", str(tmp_path / "d"),
                        "--serve", "--port", "70000"], capture_output=True, text=True, env=env,
                       timeout=120, check=False, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "--port': Input should be less than or equal to 65535" in r.stderr, r.stderr
    assert not (tmp_path / "d").exists()


def test_the_auditors_copy_is_never_written_over_the_nodes_evidence_key(tmp_path: Path) -> None:
    """``ledger-node evidence-key --out <data>/keys/evidence.key --force`` sealed the node's
    own evidence key again under the auditor's passphrase: the node could no longer open it
    (nor start), and no command turns it back. Refused even with --force; nothing changed."""
    from ledger.sealed import EVIDENCE_KEY_FILE, load_evidence_key, read_evidence_key

    keys = tmp_path / "data" / "keys"
    keys.mkdir(parents=True)
    key = load_evidence_key(keys, b"agency-pw")
    before = (keys / EVIDENCE_KEY_FILE).read_bytes()
    env = {**os.environ, "LEDGER_KEY_PASSPHRASE": "agency-pw",
           "LEDGER_EVIDENCE_PASSPHRASE": "auditor-pw", "COLUMNS": "300"}
    (tmp_path / "link.key").symlink_to(keys / EVIDENCE_KEY_FILE)
    for out in (keys / EVIDENCE_KEY_FILE, keys / ".." / "keys" / EVIDENCE_KEY_FILE,
                tmp_path / "link.key"):
        r = subprocess.run([str(BIN / "ledger-node"), "evidence-key", "--data",
                            str(tmp_path / "data"), "--out", str(out), "--force"],
                           capture_output=True, text=True, env=env, timeout=120, check=False,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 2 and "the node's own evidence key" in r.stderr, r.stderr
        assert (keys / EVIDENCE_KEY_FILE).read_bytes() == before
    assert read_evidence_key(keys / EVIDENCE_KEY_FILE, b"agency-pw") == key


def test_a_cluster_creation_cut_short_by_sigterm_leaves_the_folder_to_create_again(
        tmp_path: Path) -> None:
    """SIGTERM while ``ledger-node cluster`` writes a new network's keys and stores (seconds of
    Argon2id) left a half-made folder that every later run refused as "not empty: a new cluster
    needs a new folder". What was written goes, so the same command can be run again."""
    folder = tmp_path / "c"
    env = {**os.environ, "LEDGER_KEY_PASSPHRASE": "pw"}
    proc = subprocess.Popen([str(BIN / "ledger-node"), "cluster", "--agencies", "3", "--data",
                             str(folder), "--base-port", str(free_base(3)), "--once"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        while not (folder / "pki").exists():  # the first thing written
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.005)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert not (folder / "cluster.toml").exists(), "made whole before the signal: rerun"
    # a stop asked for, said in one line (ADR 76: it ended with 143 and no word before)
    assert proc.returncode == 0, err
    assert "the cluster stopped by SIGTERM while starting" in err, err
    assert "Traceback" not in err, err
    assert not folder.exists(), sorted(p.name for p in folder.iterdir())



def _waiting_at_the_prompt(args: list[str]) -> subprocess.Popen[bytes]:
    """``ledger-node`` started with no passphrase in its environment, returned once it asks
    for one (it has checked its input and written nothing yet)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_KEY_PASSPHRASE")}
    proc = subprocess.Popen([str(BIN / "ledger-node"), *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    said = b""
    while b"Passphrase" not in said:
        chunk = os.read(proc.stderr.fileno(), 4096)
        assert chunk, said  # it ended before asking
        said += chunk
    return proc


def test_two_new_networks_at_once_in_one_folder_leave_the_one_made_whole(
        tmp_path: Path) -> None:
    # Both found the folder empty and asked for the passphrase; the second then failed on
    # "keys" (the first's) and, cleaning up what it took for its own half-made network,
    # removed the first's keys and ledger (or the whole folder) though the first had said it
    # was made. Now the folder is held and checked again before anything is written: the
    # second is refused as "not empty" and removes nothing.
    for pre_made in (False, True):
        data = tmp_path / f"data-{pre_made}"
        if pre_made:
            data.mkdir()  # an empty folder made beforehand, as init allows
        procs = [_waiting_at_the_prompt(
            ["init", "--data", str(data), "--agency", "edu", "--new-network", f"net-{n}",
             "--founder", "edu=Education Bureau",
             "--config-out", str(tmp_path / f"node-{pre_made}-{n}.toml")]) for n in range(2)]
        first, second = (p.communicate(b"init-pw\ninit-pw\n", timeout=120) for p in procs)
        assert procs[0].returncode == 0, first[1]
        assert procs[1].returncode == 2, second[1]
        assert b"not empty" in second[1] and b"Traceback" not in second[1], second[1]
        keys = sorted(p.name for p in (data / "keys").iterdir())
        assert keys == ["edu.issuer.key", "edu.node.key"]
        head = subprocess.run([str(BIN / "ledger"), "head", "--json", str(data / "ledger")],
                              capture_output=True, text=True, timeout=60, check=False)
        assert head.returncode == 0, head.stderr
        assert (tmp_path / f"node-{pre_made}-0.toml").exists()
        assert not (tmp_path / f"node-{pre_made}-1.toml").exists()


def test_a_new_cluster_waits_for_another_writer_of_its_folder_and_removes_nothing(
        tmp_path: Path) -> None:
    """`ledger-node cluster` checked its folder empty once, at the start: another process
    filling the same folder meanwhile (a second `cluster`, an `init`) was not seen, and a
    creation that then failed on the other's files removed them as its own. The folder is
    held while it is filled: a creation waits for another holder, then finds it not empty
    and removes nothing."""
    import threading

    from ledger.files import hold_empty_folder
    from node.cluster import ClusterError, create_cluster

    folder = tmp_path / "net"
    held, made = hold_empty_folder(folder)
    assert held is not None and made
    outcome: list[BaseException | None] = []

    def create() -> None:
        try:
            create_cluster(folder, 2, b"pw", base_port=free_base(2))
            outcome.append(None)
        except BaseException as e:
            outcome.append(e)

    creating = threading.Thread(target=create)
    creating.start()
    creating.join(0.5)  # long enough for a creation that does not wait to be well under way
    (folder / "theirs").write_text("another process's file\n")
    os.close(held)
    creating.join(60)
    assert len(outcome) == 1 and isinstance(outcome[0], ClusterError), outcome
    assert "not empty" in str(outcome[0])
    assert sorted(p.name for p in folder.iterdir()) == ["theirs"]
    # a held folder found empty is filled as ever
    create_cluster(tmp_path / "fresh", 2, b"pw", base_port=free_base(2))
    assert (tmp_path / "fresh" / "cluster.toml").is_file()


def test_sighup_stops_a_node_gracefully_without_a_traceback(tmp_path: Path) -> None:
    """A closed terminal or SSH session sends SIGHUP: the node shuts down as for SIGTERM
    (uvicorn's graceful shutdown, the store closed, exit 0), not with a traceback in its log
    from the signal landing inside the event loop."""
    env = {**os.environ, "LEDGER_KEY_PASSPHRASE": "init-pw", "LEDGER_NODE_WORKERS": "1"}
    _init_one_founder(tmp_path, "district-6", env)
    port = free_base(1)
    code, said = _stop_a_running_node(
        [str(BIN / "ledger-node"), "run", "--config", str(tmp_path / "node.toml"), "--port",
         str(port)], env, port, lambda proc: proc.send_signal(signal.SIGHUP))
    assert "Traceback" not in said, said
    assert "Shutting down" in said, said  # uvicorn's graceful shutdown ran
    assert "while starting" not in said, said  # it had started: a stop, not a start cut short
    assert code == 0, (code, said)
    head = subprocess.run([str(BIN / "ledger"), "head", str(tmp_path / "data" / "ledger")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert head.returncode == 0, head.stderr



def test_a_serving_node_allows_itself_no_core_file(tmp_path: Path) -> None:
    """A serving node holds its agency's decrypted issuing and node keys (and with them the
    claims of what it issues and decides): started where core files are allowed (an
    operator's ``ulimit -c unlimited``, a service's ``LimitCORE=infinity``), a crash wrote
    them all into a core file. While it serves, its limit on core files is 0, and so is its
    signature workers'."""
    env = {**os.environ, "LEDGER_KEY_PASSPHRASE": "init-pw", "LEDGER_NODE_WORKERS": "1"}
    _init_one_founder(tmp_path, "district-5", env)
    port = free_base(1)
    seen: dict[int, str] = {}

    def look_then_stop(proc: subprocess.Popen[str]) -> None:
        for pid in [proc.pid, *_children(proc.pid)]:
            with contextlib.suppress(OSError):  # a process gone meanwhile
                seen[pid] = _core_file_limit(Path(f"/proc/{pid}/limits").read_text())
        proc.send_signal(signal.SIGTERM)

    code, said = _stop_a_running_node(
        [str(BIN / "ledger-node"), "run", "--config", str(tmp_path / "node.toml"), "--port",
         str(port)], env, port, look_then_stop, preexec_fn=_cores_allowed)
    assert code == 0, said
    assert len(seen) > 1, seen  # the node and its signature worker
    assert set(seen.values()) == {"0"}, seen


def test_run_refuses_port_zero(tmp_path: Path) -> None:
    """``port = 0`` (or ``--port 0``) let the system pick a port, which no peer and no
    public_url names, and the node then called itself port 0 in its log and health: refused
    in words (exit 2, bad config) before the store is opened."""
    env = {**os.environ, "LEDGER_KEY_PASSPHRASE": "init-pw", "LEDGER_NODE_WORKERS": "0"}
    _init_one_founder(tmp_path, "district-0", env)
    config = tmp_path / "node.toml"

    def run(*args: str) -> tuple[int, str]:
        """Its exit code and standard error; a node that starts serving instead is stopped
        once it says where (the old behaviour), and the test fails on its code."""
        with subprocess.Popen([str(BIN / "ledger-node"), "run", "--config", str(config), *args],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) as proc:
            assert proc.stderr is not None
            said = ""
            for line in proc.stderr:
                said += line
                if " ordering) on " in line:  # it serves
                    proc.kill()
            return proc.wait(), said

    code, said = run("--port", "0")
    assert code == 2 and "port: 0" in said, (code, said)
    config.write_text(config.read_text().replace("port = 8000", "port = 0"))
    assert "port = 0" in config.read_text()
    code, said = run()
    assert code == 2 and "port: 0" in said, (code, said)


def _workers_in_group(pgid: int) -> list[str]:
    """The signature workers (spawned processes) of process group ``pgid`` still running; a
    zombie not yet reaped, and multiprocessing's resource tracker (which ends by itself once
    its pipe from the node closes), are not."""
    return [pid for pid, args in live_in_group(pgid) if b"spawn_main" in args]


def _stop_while_starting(cmd: list[str], env: dict[str, str], signum: signal.Signals,
                         after: str, what: str, **popen: Any) -> None:
    """``cmd`` (a command that starts a node) stopped by ``signum`` (SIGINT to its process
    group, as a terminal sends it) right after the first line of its standard error that holds
    ``after``: it exits 0 with no traceback, says in one line that ``what`` stopped (or uvicorn
    says it shut down), and leaves no signature worker running."""
    with subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, start_new_session=True, **popen) as proc:
        assert proc.stderr is not None
        said = ""
        try:
            for line in proc.stderr:
                said += line
                if after in line and proc.poll() is None:
                    if signum == signal.SIGINT:
                        os.killpg(proc.pid, signum)
                    else:
                        proc.send_signal(signum)
                    after = "\0"  # once
            code = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert after == "\0", said  # the line came, and the stop after it
    assert "Traceback" not in said and "could not serve" not in said, said
    assert code == 0, (code, said)
    name = "SIGINT (Ctrl-C)" if signum == signal.SIGINT else signum.name
    assert f"{what} stopped by {name} while starting" in said or "Shutting down" in said, said
    if "Shutting down" not in said:  # one line, not uvicorn's as well
        assert said.count("stopped by") == 1, said
    assert _workers_in_group(proc.pid) == [], said


@pytest.mark.parametrize(("signum", "after"), [
    (signal.SIGTERM, " ordering) on "),  # gc.freeze, then uvicorn's start
    (signal.SIGTERM, "Started server process"),
    (signal.SIGTERM, "Waiting for application startup"),
    (signal.SIGTERM, "Application startup complete"),
    (signal.SIGINT, " ordering) on "),
    (signal.SIGINT, "Waiting for application startup"),
])
def test_a_stop_at_each_step_of_start_up_is_clean(tmp_path: Path, signum: signal.Signals,
                                                   after: str) -> None:
    """SIGTERM (to the node) or Ctrl-C (SIGINT to its process group, as a terminal sends it)
    right after each line the node says as it starts: it exits 0 with no traceback, says in
    one line that it stopped (or uvicorn says it shut down), leaves no signature worker
    running and its store free. A stop in uvicorn's start used to be taken for a port it could
    not serve on (exit 1), and one before it ended with no word."""
    env = {**os.environ, "LEDGER_KEY_PASSPHRASE": "init-pw", "LEDGER_NODE_WORKERS": "2"}
    _init_one_founder(tmp_path, "district-9", env)
    _stop_while_starting([str(BIN / "ledger-node"), "run", "--config", str(tmp_path / "node.toml"),
                          "--port", str(free_base(1))], env, signum, after, "the node")
    from ledger.store import Store

    Store(tmp_path / "data" / "ledger", create=False).close()


@pytest.mark.parametrize(("signum", "after"), [
    (signal.SIGTERM, "Stop with Ctrl-C"),  # the node open, then uvicorn's start
    (signal.SIGINT, "Stop with Ctrl-C"),
    (signal.SIGTERM, "Started server process"),
    (signal.SIGINT, "Waiting for application startup"),
])
def test_a_stop_while_the_served_demo_starts_is_clean(tmp_path: Path, signum: signal.Signals,
                                                      after: str) -> None:
    """`ledger-node demo --serve` (the main job's command) stopped as its node starts: as
    `ledger-node run`, it exits 0 in one line with no worker left and its store free. It
    called uvicorn.run itself: a stop in uvicorn's start was said as a port it "could not
    serve on" (exit 1), and a Ctrl-C was a traceback (helper round 29O)."""
    env = {**os.environ, "LEDGER_KEY_PASSPHRASE": "demo-pw", "WALLET_PASSPHRASE": "wallet-pw"}
    _stop_while_starting([str(BIN / "ledger-node"), "demo", "--data", "demo-data", "--serve",
                          "--port", str(free_base(1))], env, signum, after, "the demo node",
                         cwd=tmp_path)
    from ledger.store import Store

    Store(tmp_path / "demo-data" / "ledger", create=False).close()


def test_a_path_in_a_message_reaches_the_terminal_as_text(tmp_path: Path) -> None:
    """`ledger-node`'s messages quote paths and errors (etcd's details come from another
    agency's member): their escape sequences were written raw (Rich drops BEL, not ESC), so a
    file name could set the terminal's title or clear it. They are shown as escapes now."""
    name = "no\x1b]0;pwned\x07such.toml"
    r = subprocess.run([str(BIN / "ledger-node"), "run", "--config", name], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2, r.stderr
    assert "\x1b" not in r.stderr and "no\\x1b]0;pwned\\x07such.toml" in r.stderr, r.stderr


def test_init_writes_a_network_nodes_config(tmp_path: Path) -> None:
    """`init` wrote only a solo config: a new agency's node then ran solo on a network's store
    (round 31G). --etcd-endpoint, --peer, --pki and --tls write a network node's (round 32J)."""
    import datetime as dt

    from typer.testing import CliRunner

    from node import cli
    from node.config import Settings
    from node.pki import create_pki

    pki = tmp_path / "pki"
    create_pki(pki, "district-9", ["edu"], b"pki-pw", now=dt.datetime.now(dt.UTC))
    r = CliRunner().invoke(cli.app, [
        "init", "--data", str(tmp_path / "data"), "--agency", "edu", "--new-network",
        "district-9", "--founder", "edu=Education Bureau", "--config-out",
        str(tmp_path / "node.toml"), "--etcd-endpoint", "https://127.0.0.1:8303",
        "--etcd-endpoint", "https://127.0.0.1:8300", "--peer", "https://127.0.0.1:8100",
        "--pki", str(pki), "--tls", "--port", "8103", "--public-url", "https://127.0.0.1:8103"],
        env={"LEDGER_KEY_PASSPHRASE": "init-pw"})
    assert r.exit_code == 0, r.output
    s = Settings.from_toml(tmp_path / "node.toml")
    assert s.ordering == "etcd" and s.tls and s.pki == pki.resolve()
    assert s.etcd_endpoints == ("https://127.0.0.1:8303", "https://127.0.0.1:8300")
    assert s.peers == ("https://127.0.0.1:8100",) and s.port == 8103
    assert s.public_url == "https://127.0.0.1:8103"


@pytest.mark.parametrize(("extra", "said"), [
    (["--peer", "https://127.0.0.1:8100"], "give its --etcd-endpoint"),
    (["--etcd-endpoint", "ftp://127.0.0.1:2379"], "etcd_endpoints"),
    (["--etcd-endpoint", "https://127.0.0.1:2379"], "needs the PKI"),
    (["--etcd-endpoint", "http://127.0.0.1:2379", "--pki", "no-such-pki"], "holds no ca.crt"),
    (["--etcd-endpoint", "http://127.0.0.1:2379", "--tls"], "needs the PKI"),
    (["--port", "0"], "port"),
    (["--port", "70000"], "port"),
    (["--public-url", "node.example"], "public_url"),
])
def test_init_refuses_bad_network_options_before_writing(tmp_path: Path, extra: list[str],
                                                         said: str) -> None:
    from typer.testing import CliRunner

    from node import cli

    r = CliRunner().invoke(cli.app, [
        "init", "--data", str(tmp_path / "data"), "--agency", "edu", "--new-network", "n-1",
        "--founder", "edu=Education Bureau", "--config-out", str(tmp_path / "node.toml"),
        *extra], env={"LEDGER_KEY_PASSPHRASE": "init-pw"})
    assert r.exit_code == 2 and said in " ".join(r.output.split()), r.output
    assert not (tmp_path / "node.toml").exists() and not (tmp_path / "data").exists()


def test_seal_again_names_what_a_run_killed_outright_left_beside_a_key(tmp_path: Path) -> None:
    """A `seal-again` killed outright (SIGKILL, a power cut) between its writes and its renames
    leaves each new file beside its key under a hidden name (``.NAME.<hex>.tmp``): a copy of
    the key under the passphrase then given, which no later run said or removed. The next run
    names each such file (its passphrase is not known here: the operator removes it), and
    never takes one for a key; nothing else of the run changes."""
    from node.service import read_credit_secret

    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    key = tmp_path / "a.secret"
    assert _node_cli(env, "credit-secret", "--out", str(key), old="", new="old-pw"
                     ).returncode == 0
    left = tmp_path / ".a.secret.0123456789ab.tmp"  # as _write_beside names it
    left.write_bytes(key.read_bytes())
    left.chmod(0o600)
    other = tmp_path / ".b.secret.0123456789ab.tmp"  # another key's: not this run's to name
    other.write_bytes(b"x")
    env["COLUMNS"] = "300"
    r = _node_cli(env, "seal-again", "--key", str(key), old="old-pw", new="new-pw")
    told = " ".join(r.stderr.split())
    assert r.returncode == 0, told
    assert str(left) in told and "interrupted `ledger-node seal-again`" in told, told
    assert str(other) not in told, told
    assert left.exists() and read_credit_secret(key, b"new-pw") is not None
