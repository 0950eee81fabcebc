"""The command lines, run as real processes: the demo, `ledger head`, `ledger prove`, stubs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ledger import merkle
from ledger.checkpoint import SignedCheckpoint
from ledger.store import Store

BIN = Path(sys.executable).parent
ENV = {**os.environ, "LEDGER_KEY_PASSPHRASE": "test-only", "COLUMNS": "200"}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True,
                          env=ENV, timeout=300, check=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("cli") / "demo-data"
    r = _run("ledger-node", "demo", "--data", str(data))
    assert r.returncode == 0, r.stderr
    assert "verified" in r.stdout
    return data


def test_demo_builds_a_final_chain_with_encrypted_keys(demo: Path) -> None:
    keys = sorted(p.name for p in (demo / "keys").iterdir())
    assert keys == sorted(f"{a}.{r}.key" for a in ("civil", "edu", "market")
                          for r in ("issuer", "node"))
    for p in (demo / "keys").iterdir():
        assert p.stat().st_mode & 0o777 == 0o600
    with Store(demo / "ledger") as store:
        assert store.head is not None
        assert store.head.log_size == 19  # genesis + 6 governance + 9 issues + 3 status changes


def test_ledger_head_reports_a_final_checkpoint(demo: Path) -> None:
    r = _run("ledger", "head", str(demo), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["final_signers"] == ["civil", "edu", "market"]
    cp = SignedCheckpoint.from_text(out["checkpoint"]).checkpoint
    assert cp.size == out["head"]["log_size"]
    assert cp.root.hex() == out["head"]["log_root"]
    plain = _run("ledger", "head", str(demo))  # one "name: value" line per header field
    assert plain.returncode == 0, plain.stderr
    assert f"log_size: {cp.size}\n" in plain.stdout and f"log_root: {cp.root.hex()}\n" in \
        plain.stdout


def test_ledger_prove_prints_a_verifiable_proof(demo: Path) -> None:
    r = _run("ledger", "prove", str(demo), "--index", "7")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    with Store(demo / "ledger") as store:
        leaf = merkle.leaf_hash(store.entry(7))
    merkle.verify_inclusion(leaf, 7, out["size"], [bytes.fromhex(h) for h in out["proof"]],
                            bytes.fromhex(out["root"]))


def test_ledger_prove_rejects_an_index_past_the_log(demo: Path) -> None:
    """Bad input: exit 2, as for other ranges the tools are given (the CLI contract hunt)."""
    r = _run("ledger", "prove", str(demo), "--index", "10000")
    assert r.returncode == 2
    assert "--index 10000: the tree of size 19 has leaves 0 to 18" in r.stderr
    r = _run("ledger", "prove", str(demo), "--index", "0", "--size", "0")
    assert r.returncode == 2 and '"verified"' not in r.stdout, r.stdout  # not the head's size
    assert "--size 0: the log has 19 entries" in r.stderr


def test_demo_refuses_to_overwrite_a_folder_it_did_not_create(tmp_path: Path) -> None:
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "file").write_text("keep me")
    r = _run("ledger-node", "demo", "--data", str(tmp_path / "precious"))
    assert r.returncode != 0
    assert (tmp_path / "precious" / "file").read_text() == "keep me"


def test_a_demo_replacement_cut_short_leaves_a_folder_the_next_demo_replaces(
        demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The old demo's marker goes last: a replacement cut short (Ctrl-C) after it went left
    a folder that every later demo refused as "not a demo folder". An empty folder is taken."""
    import io

    from rich.console import Console

    from node.demo import MARKER, run_demo

    real = os.unlink
    unlinked: list[str] = []

    def unlink(path: Any, *args: Any, **kw: Any) -> None:
        unlinked.append(os.path.basename(os.fsdecode(path)))
        if stop_at and len(unlinked) == stop_at:
            raise KeyboardInterrupt
        real(path, *args, **kw)

    def replace(folder: Path) -> None:
        run_demo(folder, b"pw", clock=lambda: 1_750_000_000, console=Console(file=io.StringIO()))

    monkeypatch.setattr(os, "unlink", unlink)
    stop_at = 0
    shutil.copytree(demo, tmp_path / "whole")
    replace(tmp_path / "whole")
    assert unlinked[-1] == MARKER and unlinked.count(MARKER) == 1, unlinked
    shutil.copytree(demo, tmp_path / "cut")
    stop_at = 3 + len(unlinked)
    with pytest.raises(KeyboardInterrupt):
        replace(tmp_path / "cut")
    monkeypatch.undo()
    assert (tmp_path / "cut" / MARKER).exists()
    for folder in (tmp_path / "cut", tmp_path / "empty"):
        folder.mkdir(exist_ok=True)
        r = _run("ledger-node", "demo", "--data", str(folder))
        assert r.returncode == 0, r.stderr


def test_demo_does_not_replace_a_folder_a_node_serves(demo: Path, tmp_path: Path) -> None:
    copy = tmp_path / "served"
    shutil.copytree(demo, copy)
    with Store(copy / "ledger"):  # as a running node holds it
        before = sorted(p.relative_to(copy) for p in copy.rglob("*"))
        r = _run("ledger-node", "demo", "--data", str(copy))
        assert sorted(p.relative_to(copy) for p in copy.rglob("*")) == before
    assert r.returncode != 0
    assert "open in another process" in r.stderr


def test_a_folder_that_is_no_store_is_bad_input_and_left_untouched(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for args in (["ledger", "head", str(tmp_path / "empty")],
                 ["ledger", "snapshot", "--data", str(tmp_path / "empty"), "--out",
                  str(tmp_path / "s.bin")]):
        r = _run(*args)
        assert r.returncode == 2, r.stderr
        assert "neither a ledger store nor a node's data folder" in r.stderr
        assert list((tmp_path / "empty").iterdir()) == []  # no LOCK or LOG left behind


def test_tampered_store_is_refused(demo: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(demo, copy)
    import plyvel

    db = plyvel.DB(str(copy / "ledger"))
    # Overwrite the largest stored subtree of the head's compact range (16 of the 19 leaves).
    size = 19
    level = size.bit_length() - 1
    assert db.get(b"n" + bytes([level]) + (0).to_bytes(8, "big")) is not None
    db.put(b"n" + bytes([level]) + (0).to_bytes(8, "big"), bytes(32))
    db.close()
    r = _run("ledger", "head", str(copy))
    assert r.returncode == 1
    assert "does not match its Merkle log" in r.stderr


def test_pki_without_its_options_is_a_usage_error() -> None:
    r = _run("ledger-node", "pki", "create")
    assert r.returncode == 2
    assert "Missing option" in r.stderr and "--out" in r.stderr


def _out_commands(demo: Path, tmp_path: Path) -> dict[str, list[str]]:
    """Every ``ledger`` and ``agency`` command that writes a file the user names, up to its
    output argument (which comes last)."""
    from test_agency_cli import CLAIMS, HOLDER

    from ledger import sdjwt

    holder = tmp_path / "holder.jwk.json"
    holder.write_text(json.dumps(sdjwt.jwk_from_ed25519(HOLDER.public.raw)))
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps(CLAIMS))
    args = tmp_path / "args.json"
    args.write_text("{}")
    return {
        "request": ["ledger", "request", "--type", "residence", "--audience", "x", "--out"],
        "snapshot": ["ledger", "snapshot", "--data", str(demo), "--out"],
        "export": ["ledger", "export", str(demo), "--out"],
        "audit": ["ledger", "audit", str(demo), "--statement-key", str(args),
                  "--statement-out"],
        "issue": ["agency", "issue", "--data", str(demo), "--agency", "civil", "--type",
                  "residence", "--claims", str(claims), "--holder-jwk", str(holder), "--out"],
        "keygen": ["agency", "keygen", "--out"],
        "propose": ["agency", "propose", "add_agency", "--args", str(args), "--data", str(demo),
                    "--agency", "civil", "--out"],
    }


def test_an_output_that_cannot_be_written_exits_by_one_rule(demo: Path, tmp_path: Path) -> None:
    """A folder that does not exist is bad input (2); one that cannot be written is a failure
    (1), as a full disk is, except where the command's 1 is its verdict (`ledger audit`: the
    chain is broken), which stays 2. Nothing is committed or written either way."""
    from test_audit import _make_read_only

    ro = tmp_path / "ro"
    ro.mkdir()
    with Store(demo / "ledger") as store:
        assert store.head is not None
        before = store.head.log_size
    undo = _make_read_only([ro])
    try:
        for name, args in _out_commands(demo, tmp_path).items():
            r = _run(*args, str(tmp_path / "no-such-folder" / "f"))
            assert r.returncode == 2 and "cannot write" in r.stderr, (name, r.stderr)
            r = _run(*args, str(ro / "f"))
            assert r.returncode == (2 if name == "audit" else 1), (name, r.returncode, r.stderr)
            assert f"the folder {ro} cannot be written" in r.stderr, (name, r.stderr)
    finally:
        subprocess.run(undo, check=True)
    assert list(ro.iterdir()) == []
    with Store(demo / "ledger") as store:
        assert store.head is not None and store.head.log_size == before


def test_an_output_the_disk_cannot_take_is_a_failure(demo: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk at write time is a failure (1) with one line, not bad input (2), and leaves
    no file: a file-size limit under the request's size, and an injected ENOSPC where a store
    is opened too (the limit would stop LevelDB first)."""
    import errno
    import resource

    from typer.testing import CliRunner

    from ledger import cli

    commands = _out_commands(demo, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    args = commands["request"]
    r = subprocess.run([str(BIN / args[0]), *args[1:], str(out / "f")], capture_output=True,
                       text=True, env=ENV, timeout=300, check=False,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64)))
    assert r.returncode == 1 and r.stderr == f"cannot write {out / 'f'}: File too large\n", \
        r.stderr

    def full(*_: object, **__: object) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(cli, "write_atomic", full)
    monkeypatch.setattr(cli, "atomic_output", full)
    for name in ("snapshot", "export"):
        got = CliRunner().invoke(cli.ledger_app, [*commands[name][1:], str(out / "f")],
                                 env={"LEDGER_KEY_PASSPHRASE": "test-only", "COLUMNS": "300"})
        assert got.exit_code == 1, (name, got.output)
        assert f"cannot write {out / 'f'}: No space left on device" in got.output, got.output
    assert list(out.iterdir()) == []


def test_standard_output_on_a_full_disk_is_named_as_what_failed(demo: Path,
                                                                tmp_path: Path) -> None:
    """Output sent to a full disk (``> file``; /dev/full always is one) is one line that says
    standard output could not be written, not a bare "No space left on device" that a command
    which wrote a file first (`agency keygen`) leaves the operator to take for that file."""
    key = tmp_path / "k.key"
    for args in (("ledger", "head", str(demo), "--json"),
                 ("agency", "keygen", "--out", str(key), "--json")):
        with open("/dev/full", "w") as full:
            r = subprocess.run([str(BIN / args[0]), *args[1:]], stdout=full,
                               stderr=subprocess.PIPE, text=True, env=ENV, timeout=300,
                               check=False)
        assert r.returncode == 1, r.stderr
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
        assert "No space left on device" in r.stderr and "standard output" in r.stderr, \
            r.stderr
    assert key.is_file()  # written whole before its words could not be
