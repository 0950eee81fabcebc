"""The tools in environments developers do not use (a hunt): a umask of 000, an empty $HOME,
closed standard output, long paths and names, ``--out -`` where it means no file."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ledger.files import write_atomic
from ledger.noncelog import NonceLog

BIN = Path(sys.executable).parent


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def test_a_nonce_log_is_the_officials_alone_whatever_the_umask(tmp_path: Path) -> None:
    """Under umask 000 the log was rw-rw-rw-: anyone could truncate it and replay."""
    log = tmp_path / "nonces.log"
    with _umask(0), NonceLog(log) as seen:
        seen.add("a" * 64)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    with NonceLog(log) as seen:  # and it still reads back
        assert "a" * 64 in seen
    log.chmod(0o666)  # one made before, under umask 000: no longer anyone's to write
    with NonceLog(log) as seen:
        assert "a" * 64 in seen
    assert stat.S_IMODE(log.stat().st_mode) == 0o664
    log.chmod(0o602)  # others may write, its group may not: the others' bit goes all the same
    with NonceLog(log) as seen:
        assert "a" * 64 in seen
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_a_long_file_name_is_written_whole(tmp_path: Path) -> None:
    """The temporary name beside it added 18 characters: a 249-character name failed, and a
    name of 79 Chinese characters (241 bytes) too; a name that is not UTF-8 is written too."""
    for name in ("s" * 245 + ".bin", "证" * 79 + ".bin", os.fsdecode(b"\xffnot-utf8.bin")):
        long = tmp_path / name
        write_atomic(long, b"data")
        assert long.read_bytes() == b"data"
    assert len(list(tmp_path.iterdir())) == 3


def _run(*args: str, env: dict[str, str], cwd: Path,
         **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300, check=False, **kw)  # type: ignore[call-overload]


def test_the_demo_folder_cannot_be_changed_by_others_under_umask_000(tmp_path: Path) -> None:
    """A folder others may write lets them swap the store ``ledger verify --data`` trusts."""
    env = {**os.environ, "LEDGER_KEY_PASSPHRASE": "pw"}
    with _umask(0):
        r = _run("ledger-node", "demo", "--data", "demo", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE((tmp_path / "demo").stat().st_mode) & 0o022 == 0
    assert stat.S_IMODE((tmp_path / "demo" / "keys").stat().st_mode) == 0o700
    # --out - names standard output, which `ledger snapshot` does not write: refused, no file
    r = _run("ledger", "snapshot", "--data", "demo", "--out", "-", env=env, cwd=tmp_path)
    assert r.returncode == 2 and "standard output" in r.stderr, r.stderr
    assert not (tmp_path / "-").exists()


def test_an_imported_store_cannot_be_changed_by_others_under_umask_000(tmp_path: Path) -> None:
    """`ledger import` built its store in a folder made 0777 under umask 000 (helper round
    28S): anyone could swap the tables of the store a node is then restored from."""
    env = {**os.environ, "LEDGER_KEY_PASSPHRASE": "pw"}
    assert _run("ledger-node", "demo", "--data", "demo", env=env, cwd=tmp_path).returncode == 0
    r = _run("ledger", "export", "demo", "--out", "chain.arc", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with _umask(0):
        r = _run("ledger", "import", "chain.arc", "--data", "restored", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE((tmp_path / "restored").stat().st_mode) & 0o022 == 0


def test_folders_made_above_a_wallet_or_a_config_cannot_be_changed_by_others(
        tmp_path: Path) -> None:
    """Only the last folder of a path got the protected mode: `wallet init` at a/b/w.db and
    `ledger-node init --config-out c/d/node.toml` made a, b, c and d 0777 under umask 000
    (helper round 28S), and anyone could rename the wallet's folder aside and put their own."""
    env = {**os.environ, "LEDGER_KEY_PASSPHRASE": "pw", "WALLET_PASSPHRASE": "pw",
           "WALLET_PATH": str(tmp_path / "a" / "b" / "w.db")}
    with _umask(0):
        r = _run("wallet", "init", env=env, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        r = _run("ledger-node", "init", "--data", "x/y/data", "--agency", "civil",
                 "--new-network", "n", "--founder", "civil=Civil Affairs", "--config-out",
                 "c/d/node.toml", env=env, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    for folder in ("a", "a/b", "x", "x/y", "x/y/data", "c", "c/d"):
        mode = stat.S_IMODE((tmp_path / folder).stat().st_mode)
        assert mode & 0o022 == 0, (folder, oct(mode))
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700


def test_commands_that_write_only_files_refuse_a_dash_for_standard_output(tmp_path: Path) -> None:
    """``-`` made a file (or, for the PKI, a folder) named ``-`` that the user took for standard
    output: `wallet backup -` piped nothing, and the credit secret or a config landed in a file
    named ``-``. As for the `ledger` and `agency` outputs: refused (2), nothing made."""
    env = {**os.environ, "LEDGER_KEY_PASSPHRASE": "pw", "WALLET_PASSPHRASE": "pw",
           "WALLET_PATH": str(tmp_path / "w.db")}
    assert _run("wallet", "init", env=env, cwd=tmp_path).returncode == 0
    for args in (("wallet", "backup", "-"),
                 ("ledger-node", "credit-secret", "--out", "-"),
                 ("ledger-node", "init", "--data", "data", "--agency", "civil",
                  "--config-out", "-"),
                 ("ledger-node", "pki", "create", "--out", "-", "--network", "n",
                  "--agency", "civil")):
        r = _run(*args, env=env, cwd=tmp_path)
        assert r.returncode == 2 and "standard output" in r.stderr, (args, r.stderr)
        assert not (tmp_path / "-").exists(), args
    assert [p.name for p in tmp_path.iterdir()] == ["w.db"]


def test_an_empty_home_is_not_taken_for_the_root_folder(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "WALLET_PATH"}
    env |= {"HOME": "", "WALLET_PASSPHRASE": "pw"}
    r = _run("wallet", "init", env=env, cwd=tmp_path)
    assert r.returncode == 2 and "$HOME" in r.stderr and "--wallet" in r.stderr, r.stderr
    assert _run("wallet", "list", "--help", env=env, cwd=tmp_path).returncode == 0  # help works
    # - is standard output for the commands that print without --out: no file named -
    r = _run("wallet", "--wallet", str(tmp_path / "w.db"), "init", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    keys = _run("wallet", "--wallet", str(tmp_path / "w.db"), "holder-key", "--out", "-",
                env=env, cwd=tmp_path)
    assert keys.returncode == 0 and '"kty"' in keys.stdout, keys.stderr
    req = _run("ledger", "request", "--type", "residence", "--claim", "district",
               "--audience", "https://desk.example", "--out", "-", env=env, cwd=tmp_path)
    assert req.returncode == 0 and '"nonce"' in req.stdout, req.stderr
    assert not (tmp_path / "-").exists()


def test_a_presentation_to_a_closed_standard_output_is_not_signed(tmp_path: Path) -> None:
    """``wallet present --out - >&-`` exited 0 with the envelope gone nowhere and counted; with
    a file, it crashed after writing it (``sys.stdout`` is None)."""
    import json

    env = {**os.environ, "LEDGER_KEY_PASSPHRASE": "pw", "WALLET_PASSPHRASE": "pw",
           "WALLET_PATH": str(tmp_path / "w.db"), "COLUMNS": "200"}
    assert _run("ledger-node", "demo", "--data", "demo", env=env, cwd=tmp_path).returncode == 0
    r = _run("wallet", "init", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (tmp_path / "holder.json").write_text(r.stdout)
    (tmp_path / "claims.json").write_text(json.dumps({
        "holder_name": "Wang Fang-5e1d", "district": "Changsheng", "birth_date": "1955-03-02",
        "resident_since": "2001-05-01"}))
    r = _run("agency", "issue", "--data", "demo", "--agency", "civil", "--type", "residence",
             "--claims", "claims.json", "--holder-jwk", "holder.json", "--out", "r.bundle",
             env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _run("ledger", "snapshot", "--data", "demo", "--out", "s.bin", env=env,
                cwd=tmp_path).returncode == 0
    cid = _run("wallet", "receive", "r.bundle", "--registry", "s.bin", env=env,
               cwd=tmp_path).stdout.strip()
    (tmp_path / "req.json").write_text(json.dumps({
        "nonce": "n-closed-0001", "audience": "https://civil.example/desk",
        "type": "residence", "claims": ["district"]}))
    def present(*out: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", "-c", 'exec "$0" "$@" >&-', str(BIN / "wallet"), "present", cid[:12],
             "--request", "req.json", *out, "--yes"],
            capture_output=False, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
            timeout=300, check=False)

    r = present("--out", "-")
    assert r.returncode == 2 and "closed" in r.stderr, r.stderr
    r = present("--out", "e.bin")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "e.bin").stat().st_size > 0
    listed = _run("wallet", "list", env={**env, "COLUMNS": "80"}, cwd=tmp_path).stdout
    assert "shown 1" in listed, listed  # the file's presentation only


def test_an_envelope_file_deep_in_folders_is_taken_for_a_file(tmp_path: Path) -> None:
    """A path of 1,024 characters or more was taken for base64url text ("neither an existing
    file nor a base64url string"), well below PATH_MAX."""
    from ledger.cli import _names_a_file

    deep = tmp_path
    while len(str(deep)) < 1500:
        deep = deep / ("d" * 200)
    deep.mkdir(parents=True)
    envelope = deep / "env.bin"
    envelope.write_bytes(b"\x00")
    assert _names_a_file(str(envelope))
    assert not _names_a_file("A" * 3000)  # base64url text: no '/' and no '.'


def test_no_tool_prints_local_variables_in_a_traceback() -> None:
    """Typer's rich tracebacks print each frame's local variables where a release defaults to
    it (pyproject allows typer >= 0.16): an unexpected error would show a passphrase or claim
    values (privacy hunt, ADR 55). Every console script turns it off itself."""
    from ledger.cli import agency_app, ledger_app
    from node.cli import app as node_app
    from node.cli import etcd_app, pki_app
    from wallet.cli import app as wallet_app

    for app in (ledger_app, agency_app, node_app, pki_app, etcd_app, wallet_app):
        assert app.pretty_exceptions_show_locals is False, app.info.help


def test_a_served_demo_whose_wallet_passphrase_file_is_missing_stops_before_it_builds(
        tmp_path: Path) -> None:
    """The demo reads its wallet's passphrase at its start (so no process it starts inherits
    it); a file that is not there stopped it with a traceback, now with the reason (2), and
    nothing is built."""
    env = {**os.environ, "LEDGER_KEY_PASSPHRASE": "pw",
           "WALLET_PASSPHRASE_FILE": str(tmp_path / "absent")}
    env.pop("WALLET_PASSPHRASE", None)
    r = _run("ledger-node", "demo", "--data", "demo", "--serve", env=env, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "WALLET_PASSPHRASE_FILE: cannot read" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "demo").exists()


def test_a_request_file_named_like_markup_is_said_as_named(tmp_path: Path) -> None:
    """``ledger request --out 'r[bold].json'`` wrote r[bold].json and said "in r.json": the
    path went into a message as Rich markup (``[/]`` in a folder's name: a traceback after the
    file was written)."""
    (tmp_path / "in[/]").mkdir(parents=True)  # a folder "in[" holding "]"
    for out in ("r[bold].json", "in[/]/r.json"):
        r = _run("ledger", "request", "--type", "residence", "--claim", "district", "--audience",
                 "https://desk.example", "--out", out, env={**os.environ, "COLUMNS": "300"},
                 cwd=tmp_path)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        assert f"in {out};" in r.stderr, r.stderr
        assert (tmp_path / out).exists()


def test_a_cluster_folder_cannot_be_changed_by_others_under_umask_000(tmp_path: Path) -> None:
    """``ledger-node cluster`` made each agency's folder and its ``data`` with ``mkdir(parents=
    True)``, the logs folder with ``mkdir()`` and each process's log with ``open(.., "ab")``:
    under umask 000 all were writable by anyone, who could swap an agency's node.toml, store or
    keys folder, or rewrite what its node said."""
    from clusterkit import free_base

    from node.cluster import create_cluster, open_log

    folder = tmp_path / "c"
    with _umask(0):
        create_cluster(folder, 2, b"cluster-test-pw", base_port=free_base(2))
        with open_log(folder / "logs" / "node-civil.log") as log:
            log.write(b"started\n")
    made = [folder / "logs", folder / "logs" / "node-civil.log", folder / "cluster.toml"]
    for agency in ("civil", "edu"):
        made += [folder / agency, folder / agency / "data", folder / agency / "data" / "keys"]
    for path in made:
        assert stat.S_IMODE(path.stat().st_mode) & 0o022 == 0, path
    assert stat.S_IMODE((folder / "civil" / "data" / "keys").stat().st_mode) == 0o700
    with open_log(folder / "logs" / "node-civil.log") as log:  # appended to, not replaced
        log.write(b"again\n")
    assert (folder / "logs" / "node-civil.log").read_bytes() == b"started\nagain\n"
