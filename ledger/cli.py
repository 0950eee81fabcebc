"""Command lines of the core package: ``ledger`` (verifying officials, auditors) and ``agency``
(issuing agencies).

Exit codes: 0 done (``ledger verify``: verified); 1 refused or failed (a rejection, a claim that
does not fit its type, a wrong passphrase, a presentation that does not verify); 2 bad input
(unreadable or malformed files and arguments, an unknown agency).

Until the node service exists, ``agency issue``/``status`` run in *embedded solo mode*: they open
the store themselves, order the block and co-sign its checkpoint with the node keys found in
``<data>/keys`` (as ``ledger-node demo`` does), so the store must not be open elsewhere.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import datetime as dt
import errno
import fcntl
import functools
import http.client
import io
import json
import os
import re
import secrets
import shlex
import stat
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Final, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ledger import codec, merkle, sdjwt, timetext
from ledger.block import BlockHeader
from ledger.chain import Head, checkpoint_key
from ledger.checkpoint import SignedCheckpoint, find_equivocation, parse_vkey
from ledger.credentials import (
    RESERVED_TYPES,
    ClaimError,
    check_claims,
    derive_claims,
    draw_status_index,
    issue_credential,
    status_lists_in_order,
)
from ledger.display import printable
from ledger.errors import (
    CheckpointError,
    DecodeError,
    KeyFileError,
    LedgerError,
    ProofError,
    SignatureError,
    StoreError,
    TxRejected,
)
from ledger.files import (
    NOT_STDOUT,
    atomic_output,
    confirm,
    interrupts_held,
    run_cli,
    stdout_json,
    write_atomic,
)
from ledger.finality import (
    checkpoint_block,
    checkpoint_verifiers,
    sign_checkpoint,
    verify_final,
)
from ledger.governance import (
    Signer,
    args_from_json,
    describe,
    parse_proposal,
    signers,
    unix_time,
)
from ledger.governance import propose as propose_tx
from ledger.keys import (
    PASSPHRASE_ENV,
    PrivateKey,
    PublicKey,
    load_private_key,
    read_passphrase,
    save_private_key,
)
from ledger.network import (
    not_a_repeat,
    reason_code_problem,
    rule_cost_of,
    rule_text_problem,
)
from ledger.noncelog import NonceLog, NonceLogError
from ledger.offline import (
    MAX_SNAPSHOT,
    SnapshotError,
    export_snapshot,
    left_out_lists,
    load_snapshot,
    merge_snapshots,
    store_status_list,
)
from ledger.ordering import Receipt, SoloOrderer
from ledger.presentation import (
    MAX_ENVELOPE,
    Bundle,
    Check,
    Envelope,
    Report,
    Request,
    bundle_from_store,
    verify_envelope,
    with_implied_claims,
)
from ledger.sealed import EVIDENCE_PASSPHRASE_ENV
from ledger.state import (
    Registry,
    RuleEngineMissing,
    credential_key,
    index_key,
    may_change_status,
    registry_after,
)
from ledger.statuslist import StatusList
from ledger.store import Store
from ledger.tx import GOV_ACTIONS, MAX_SIGS, Tx, make_tx

ledger_app = typer.Typer(help="Inspect and check a ledger (verifying officials and auditors).\n\n"
                              "Exit codes: 0 done (verified, clean), 1 refused or a check "
                              "failed, 2 bad input or usage.",
                         no_args_is_help=True, add_completion=False,
                         pretty_exceptions_show_locals=False)
agency_app = typer.Typer(help="Issue, revoke and suspend credentials, and propose, cosign and "
                              "submit governance changes (issuing agencies).\n\n"
                              "Exit codes: 0 done, 1 refused or failed, 2 bad input or usage.",
                         no_args_is_help=True, add_completion=False,
                         pretty_exceptions_show_locals=False)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

DataArg = Annotated[Path, typer.Argument(help="A node's data folder or its LevelDB store.",
                                         exists=True, file_okay=False)]


def _store_folder(data: Path) -> Path:
    """The LevelDB store in ``data``: the store itself or a node's data folder."""
    if not (data / "CURRENT").exists():
        if not (data / "ledger" / "CURRENT").exists():
            _fail(f"{data} is neither a ledger store nor a node's data folder (with ledger/ "
                  "in it)", 2)
        data = data / "ledger"  # a node's data folder rather than its store
    return data


def _open(data: Path, copy_of: Path | None = None) -> Store:
    """The store in ``data``, which holds a chain; ``copy_of``: ``data`` is a copy of that
    store, which messages name."""
    data = _store_folder(data)
    named = data if copy_of is None else copy_of
    try:
        store = Store(data, create=False)
    except LedgerError as e:
        _fail(f"cannot open the store: {str(e).replace(str(data), str(named))}")
    if store.head is None:
        store.close()
        err.print(Text(f"{named} holds no chain yet", style="red"))
        raise typer.Exit(1)
    return store


@contextlib.contextmanager
def _open_copy(data: Path, doing: str) -> Iterator[Store]:
    """The store in ``data`` opened from a copy (LevelDB has no read-only open: opening the
    store itself writes into its folder, and fails on read-only media), as the audit reads it
    (ADR 40); the copy is removed afterwards. ``doing`` names the command in errors."""
    from ledger.audit import AuditError, store_copy

    folder = _store_folder(data)
    try:
        with store_copy(folder, lambda said: err.print(Text(said, style="yellow"),
                                                       soft_wrap=True), doing=doing) as copy, \
                _open(copy, folder.resolve()) as store:
            yield store
    except AuditError as e:
        _fail(str(e))


@ledger_app.command()
def head(data: DataArg,
         as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False
         ) -> None:
    """Show the head block and the latest checkpoint, checking the checkpoint's quorum.

    Exit 0: the checkpoint is final and the head's (or none is stored yet: a genesis alone);
    1: it is not final, or blocks after it are attested by no checkpoint; 2: the folder is
    not a store or cannot be read."""
    with _open(data) as store:
        if store.head is None or store.registry is None:  # _open checked; for the type checker
            raise typer.Exit(1)
        header = store.block(store.head.height)
        text = store.checkpoint()
        final: list[str] = []
        problem = said = ""  # (said: as the text output puts it)
        if text is not None:
            try:
                signed = SignedCheckpoint.from_text(text.decode())
                final = sorted(verify_final(signed, store.registry, store.head.time))
            except LedgerError as e:
                problem, said = str(e), f"checkpoint not final: {e}"
            else:
                problem = said = _head_unattested(signed, store.head.log_size)
        if as_json:
            print(json.dumps({"head": header.to_json(), "checkpoint": text.decode() if text
                              else None, "final_signers": final, "problem": problem or None}))
        else:
            for name, value in header.to_json().items():
                out.print(f"{name}: {value}", markup=False, highlight=False)
            if text:
                out.print(text.decode(), markup=False, highlight=False, soft_wrap=True)
            out.print(Text(said, style="red") if said else
                      Text(f"checkpoint final, signed by {', '.join(final)}") if text else
                      Text("no checkpoint stored yet (a genesis alone has none)"))
        if problem:
            raise typer.Exit(1)


def _head_unattested(signed: SignedCheckpoint, log_size: int) -> str:
    """Why the head is not final though the newest stored checkpoint is ("" when it is the
    head's): a checkpoint of an older block attests nothing after it (an archive imported with
    its last blocks' checkpoints left out, say)."""
    size = signed.checkpoint.size
    if size == log_size:
        return ""
    try:
        named = checkpoint_block(signed.checkpoint)
    except CheckpointError:
        named = None
    after = "it" if named is None else f"block {named[0]}"
    return (f"the newest checkpoint is of log size {size}, the head's is {log_size}: the "
            f"blocks after {after} are attested by no checkpoint")


@ledger_app.command()
def prove(data: DataArg,
          index: Annotated[int, typer.Option(help="Leaf index of the transaction.")],
          size: Annotated[int | None, typer.Option(help="Tree size (default: the head).")] = None
          ) -> None:
    """Print the RFC 9162 inclusion proof of a log entry and verify it."""
    with _open(data) as store:
        if store.head is None:  # _open checked; for the type checker
            raise typer.Exit(1)
        have = store.head.log_size
        n = have if size is None else size
        if not 1 <= n <= have:  # bad input (2), as ledger and agency say of other ranges
            _fail(f"--size {n}: the log has {have} entries; give 1 to {have}", 2)
        if not 0 <= index < n:
            _fail(f"--index {index}: the tree of size {n} has leaves 0 to {n - 1}", 2)
        try:
            proof = store.inclusion_proof(index, n)
            root = store.root_at(n)
            merkle.verify_inclusion(merkle.leaf_hash(store.entry(index)), index, n, proof, root)
        except LedgerError as e:
            err.print(Text(str(e), style="red"), soft_wrap=True)
            raise typer.Exit(1) from e
        print(json.dumps({"index": index, "size": n, "root": root.hex(),
                          "proof": [h.hex() for h in proof], "verified": True}, indent=2))


# -- shared by the commands below -------------------------------------------------------------

MAX_INPUT = 1 << 20
"""Largest JSON input file (claims, JWK, request) read."""


def _fail(message: str, code: int = 1) -> NoReturn:
    """Print ``message`` (markup-free: it may quote untrusted input) and exit with ``code``."""
    err.print(Text(printable(message), style="red"), soft_wrap=True)
    raise typer.Exit(code)


def _hex_id(value: str, shortest: int, problem: str) -> str:
    """``value``, ``shortest`` to 64 hex digits of either case (an id copied in capitals is the
    same id), in small letters as nodes and the ledger write it; else exit 2 with ``problem``."""
    if not re.fullmatch(rf"[0-9a-fA-F]{{{shortest},64}}", value):
        _fail(problem, 2)
    return value.lower()


class _Unreadable(Exception):
    """An input that cannot be read (bad input, exit 2); its message says why."""


def _bounded_read(path: Path, what: str, limit: int = MAX_INPUT) -> bytes:
    """A file the user names, at most ``limit`` bytes; :class:`_Unreadable` if it cannot be
    read or is larger."""
    try:
        with path.open("rb") as f:
            raw = f.read(limit + 1)
    except OSError as e:
        raise _Unreadable(f"cannot read the {what} file {path}: {e.strerror or e}") from e
    if len(raw) > limit:
        raise _Unreadable(f"the {what} file {path} is over {limit} bytes")
    return raw


def _evidence_keys(paths: list[Path]) -> list[bytes]:
    """The evidence keys in ``paths``, all unlocked with one passphrase; exits 2 if one cannot
    be opened."""
    from ledger.sealed import read_evidence_key

    if not paths:
        return []
    try:
        passphrase = read_passphrase(f"Passphrase of the evidence key (or set "
                                     f"{EVIDENCE_PASSPHRASE_ENV}): ", env=EVIDENCE_PASSPHRASE_ENV)
        return [read_evidence_key(p, passphrase) for p in paths]
    except KeyFileError as e:
        _fail(f"cannot open the evidence key: {e}", 2)


def _read_input(path: Path, what: str) -> bytes:
    """A file the user names, at most MAX_INPUT bytes; unreadable or oversize is bad input (2)."""
    try:
        return _bounded_read(path, what)
    except _Unreadable as e:
        _fail(str(e), 2)


def _read_json(path: Path, what: str) -> Any:
    """A JSON file the user names; anything unreadable is bad input (exit 2). Strict, as the
    SD-JWT parser is: a member named twice (``{"holder_name": "A", …, "holder_name": "B"}``
    took the last and issued a credential its issuer never read), NaN or a lone surrogate
    escape are refused (ADR 55)."""
    raw = _read_input(path, what)
    try:
        return sdjwt.strict_json_file(raw, what)
    except LedgerError as e:
        _fail(f"the {what} file {path} is not JSON: {e}", 2)


def _read_json_object(path: Path, what: str) -> dict[str, Any]:
    value = _read_json(path, what)
    if not isinstance(value, dict):
        _fail(f"the {what} file {path} must hold a JSON object", 2)
    return value


def _now() -> int:
    return int(time.time())


def _keys_dir(data: Path) -> Path:
    """``<data>/keys`` of a node's data folder (also when given the store inside it)."""
    if (data / "CURRENT").exists() and not (data / "keys").is_dir():
        data = data.parent
    keys = data / "keys"
    if not keys.is_dir():
        _fail(f"{data} has no keys folder: give the node's data folder (the one holding "
              "ledger/ and keys/)")
    return keys


def _agency_known(registry: Registry, agency: str) -> None:
    if registry.agency(agency) is None:
        known = ", ".join(sorted(registry.agencies()))
        _fail(f"unknown agency {agency!r} on network {registry.network!r} (agencies: {known})", 2)


def _load_key(path: Path, passphrase: bytes) -> PrivateKey:
    try:
        return load_private_key(path, passphrase)
    except KeyFileError as e:
        _fail(f"cannot load a key: {e}")


def _passphrase() -> bytes:
    try:
        return read_passphrase(f"Passphrase of the key files (or set {PASSPHRASE_ENV} or "
                               f"{PASSPHRASE_ENV}_FILE): ")
    except KeyFileError as e:
        _fail(str(e))


def _node_signers(keys: Path, registry: Registry, now: int,
                  passphrase: bytes) -> list[tuple[str, PrivateKey]]:
    """Every ``<agency>.node.key`` in ``keys`` that decrypts and is that agency's current node key.

    Embedded solo mode: this process orders blocks and co-signs each checkpoint with these keys,
    as the demo does, until the node service exists. A key that cannot be used is named and left
    out; fewer keys than the quorum is an error (the checkpoint could never be final).
    """
    current = checkpoint_verifiers(registry, now)
    signers: list[tuple[str, PrivateKey]] = []
    for path in sorted(keys.glob("*.node.key")):
        agency = path.name.removesuffix(".node.key")
        try:
            key = load_private_key(path, passphrase)
        except KeyFileError as e:
            err.print(Text(f"skipping node key {path.name}: {e}", style="yellow"), soft_wrap=True)
            continue
        if current.get(agency) != key.public:
            err.print(Text(f"skipping node key {path.name}: not the current node key of "
                           f"{agency!r} in the registry", style="yellow"), soft_wrap=True)
            continue
        signers.append((agency, key))
    if len(signers) < registry.quorum:
        _fail(f"{len(signers)} usable node key(s) in {keys} ({', '.join(a for a, _ in signers)}"
              f"), but a checkpoint needs {registry.quorum}: nothing was committed")
    return signers


def _agency_keys(data: Path, registry: Registry, agency: str,
                 now: int) -> tuple[PrivateKey, list[tuple[str, PrivateKey]]]:
    """The agency's issuer key and the node keys that co-sign checkpoints."""
    keys = _keys_dir(data)
    path = keys / f"{agency}.issuer.key"
    if not path.is_file():
        _fail(f"no issuer key of {agency!r} in {keys} (expected {path.name})")
    passphrase = _passphrase()
    issuer_key = _load_key(path, passphrase)
    return issuer_key, _node_signers(keys, registry, now, passphrase)


def _commit(store: Store, signers: list[tuple[str, PrivateKey]], tx: Tx) -> Receipt:
    """Order ``tx`` into a block (solo, in this process), storing the co-signed checkpoint."""
    if store.registry is None:
        raise typer.Exit(1)  # _open checked; for the type checker
    network = store.registry.network

    def on_block(head: Head, registry: Registry) -> dict[bytes, bytes]:
        # Signed with the keys the block's own registry counts at its time: a block that
        # rotates a node key out is not signed by it. Below the quorum the block is kept with
        # no checkpoint (a stored checkpoint is final, and the audit holds it to that).
        current = checkpoint_verifiers(registry, head.time)
        usable = [(a, k) for a, k in signers if current.get(a) == k.public]
        if len(usable) < registry.quorum:
            err.print(Text(f"the block at height {head.height} is committed, but only "
                           f"{len(usable)} of the node keys here are current after it (quorum "
                           f"{registry.quorum}): it gets a final checkpoint with the next "
                           "block signed once the new node keys are in the keys folder",
                           style="yellow"), soft_wrap=True)
            return {}
        cp = sign_checkpoint(network, head, usable)
        return {checkpoint_key(head.log_size): cp.to_text().encode()}

    with SoloOrderer(store, clock=_now, workers=0, on_block=on_block) as orderer:
        return orderer.submit(tx).result()


_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
"""A folder or file the user may not write (modes, the immutable attribute, read-only media)."""


def _check_out(path: Path, force: bool, *, unwritable: int = 1) -> None:
    """Refuse an output path that cannot be written, or that exists (unless ``force``), *before*
    anything is committed: an earlier bundle, nonce log or archive is not replaced silently.

    One rule for every output (ADR 49): a path that is no file path in an existing folder, or
    that exists, is bad input (2); a folder that cannot be written, as a full disk at write
    time, is a failure (1), or ``unwritable`` where a command's 1 is its verdict."""
    parent = path.parent
    if str(path) == "-":  # not a file named "-": standard output, which these do not write
        _fail(NOT_STDOUT, 2)
    if path.is_dir() or not parent.is_dir():
        _fail(f"cannot write {path}: give a file path in an existing folder", 2)
    if not os.access(parent, os.W_OK):
        _fail(f"cannot write {path}: the folder {parent} cannot be written", unwritable)
    if not force and (path.exists() or path.is_symlink()):
        _fail(f"{path} exists; choose another path, or add --force to replace it", 2)


def _write_out(path: Path, data: bytes, mode: int, force: bool) -> None:
    """Write an output checked by :func:`_check_out`, whole, replacing a file only with
    ``force``: another process can write the same path between the check and the write (two
    terminals, one command), and the later one must not replace the first's silently."""
    try:
        write_atomic(path, data, mode, overwrite=force)
    except FileExistsError:
        _written_meanwhile(path)


def _written_meanwhile(path: Path) -> NoReturn:
    _fail(f"{path} was written meanwhile by another process and is not replaced: choose "
          "another path, or add --force to replace it", 2)


ForceOpt = Annotated[bool, typer.Option("--force", help="Replace the output file if it exists.")]


AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
DataOpt = Annotated[Path, typer.Option("--data", help="The node's data folder (ledger/, keys/).",
                                       exists=True, file_okay=False)]
AgencyOpt = Annotated[str, typer.Option("--agency", help="The issuing agency's id, e.g. civil.")]


# -- ledger: verifying officials and auditors -------------------------------------------------

_B64URL = re.compile(r"\A[A-Za-z0-9_-]+={0,2}\Z")


def _names_a_file(source: str) -> bool:
    """Whether an argument that may be a file name or the text itself names an existing file
    (base64url text has no '/' and no '.': a long one is text; exists() raises for a name of
    over 255 bytes, or a path longer than PATH_MAX)."""
    if len(source) > 255 and "/" not in source and "." not in source:
        return False
    try:
        return Path(source).exists()
    except OSError:
        return False


STDIN = "-"
"""The argument that reads a presentation from standard input."""

_ON_ARGV = ("[yellow]note:[/] the presentation, with its disclosed claims, is on this command "
            "line, which other users of this machine can read while it runs "
            "(/proc/<pid>/cmdline); give its file, or - and pipe it in")


def _stdin_bytes(what: str) -> bytes:
    """The presentation piped in (``-``), bounded as a file is; :class:`_Unreadable` if there
    is none or too much."""
    raw = sys.stdin.buffer.read(4 * MAX_ENVELOPE + 1)
    if len(raw) > 4 * MAX_ENVELOPE:
        raise _Unreadable(f"the {what} on standard input is over {4 * MAX_ENVELOPE} bytes")
    if not raw.strip():
        raise _Unreadable(f"no {what} on standard input (- reads it from there)")
    return raw


def _envelope_bytes(source: str) -> bytes:
    """An envelope from a file (raw msgpack or base64url text), standard input (``-``) or a
    base64url argument (which says that it puts the claims on the command line);
    :class:`_Unreadable` if there is none to be read."""
    text: str | None = source
    path = Path(source)
    if source == STDIN or _names_a_file(source):
        if source == STDIN:
            raw, where = _stdin_bytes("envelope"), "standard input"
        else:
            raw, where = _bounded_read(path, "envelope", 4 * MAX_ENVELOPE), str(path)
        if raw.startswith(b"\x89PNG\r\n\x1a\n"):
            raise _Unreadable(f"{where} is a PNG image (the QR code): give the envelope file "
                              "(.bin) or its base64url text, or read the image on a node's "
                              "/verify page")
        try:
            text = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            text = None
        if text is None or not _B64URL.match(text):
            return raw  # the binary envelope itself
    elif text is not None and _B64URL.match(text) and len(source) >= 64:
        err.print(_ON_ARGV)
    if text is None or not _B64URL.match(text):
        raise _Unreadable("the envelope is neither an existing file nor a base64url string")
    if len(source) < 64 and source != STDIN and not _names_a_file(source):  # a mistyped name?
        raise _Unreadable(f"there is no envelope file {source}, and it is too short to be "
                          "base64url envelope text")
    try:
        return base64.urlsafe_b64decode(text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4))
    except (binascii.Error, ValueError) as e:
        raise _Unreadable(f"the envelope is not valid base64url: {e}") from e


def _no_verdict(message: str, as_json: bool, check: str, extra: dict[str, Any]) -> NoReturn:
    """The presentation cannot be read: bad input, exit 2. With --json standard output still
    holds a report of the verdict's shape: not verified, its one failed ``check`` and
    ``error`` saying what could not be read (with ``extra`` members)."""
    if as_json:
        report = Report(checks=[Check(check, False, message)])
        print(stdout_json({**report.to_json(), "error": message, **extra}))
    _fail(message, 2)


def _human_age(seconds: int) -> str:
    if seconds < 0:
        return f"{-seconds} s in the future (check this computer's clock)"
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days"


def _print_report(report: Report, age: int | None, foreign: bool = False) -> None:
    table = Table(title="Presentation checks", title_justify="left")
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    for c in report.checks:
        table.add_row(Text(c.name), Text("pass", style="green") if c.ok else
                      Text("FAIL", style="bold red"), Text(printable(c.detail)))
    out.print(table)
    if report.claims:
        claims = Table(title="Disclosed claims", title_justify="left")
        claims.add_column("claim", overflow="fold")
        claims.add_column("value", overflow="fold")
        for name, value in sorted(report.claims.items()):
            shown = value if isinstance(value, str) else json.dumps(value)
            claims.add_row(Text(printable(name)), Text(printable(shown)))
        out.print(claims)
    style = {"valid": "green", "revoked": "bold red", "suspended": "yellow"}
    out.print(Text.assemble("status: ", (report.status, style.get(report.status, "yellow"))))
    if age is not None:
        out.print(Text(f"offline: registry and status lists are from a snapshot made "
                       f"{_human_age(age)} ago"))
    if foreign:  # its issuer and type are names that issuer chose, maybe a network agency's
        out.print(Text("from an issuer outside the network: checked against the trust list, "
                       "not the ledger"), soft_wrap=True)
    out.print(Text("VERIFIED", style="bold green") if report.verified else
              Text("NOT VERIFIED", style="bold red"))


@ledger_app.command("request")
def new_request(
    credential_type: Annotated[str, typer.Option(
        "--type", help="The credential type asked for (e.g. residence).")],
    audience: Annotated[str, typer.Option(
        help="Who asks: the verifier's URL or name, bound into the presentation.")],
    claim: Annotated[list[str] | None, typer.Option(
        help="A claim to be disclosed (repeat for several; none = only the credential "
             "itself).")] = None,
    out_file: Annotated[Path | None, typer.Option(
        "--out", help="Write the request here instead of printing it.")] = None,
    force: ForceOpt = False,
    data: Annotated[Path | None, typer.Option(
        help="Check the type and claims against this node's registry (data folder or store): "
             "one no issuer of the network issues is refused.",
        exists=True, file_okay=False)] = None,
    snapshot: Annotated[Path | None, typer.Option(
        help="Check the type and claims against the registry of a snapshot made by `ledger "
             "snapshot`, as --data does.")] = None,
) -> None:
    """Make a presentation request with a fresh random nonce, for one visitor (`wallet present
    --request`, then `ledger verify --request`).

    With --data or --snapshot, a type the network's registry does not hold, or a claim the
    type does not have, is refused (exit 2); without either, the type is taken as given (an
    issuer's outside the network, for `ledger verify --trust`, is in no registry)."""
    if data is not None and snapshot is not None:
        _fail("give one of --data or --snapshot (the registry to check the type against)", 2)
    if data is not None or snapshot is not None:
        _known_to_registry(credential_type, claim or [], data, snapshot)
    body = {"nonce": secrets.token_urlsafe(16), "audience": audience, "type": credential_type,
            "claims": with_implied_claims(credential_type, claim or [])}
    if added := [c for c in body["claims"] if c not in (claim or [])]:
        err.print(Text(f"also asking for {', '.join(added)}: a {credential_type!r} credential "
                       "means nothing without them"), soft_wrap=True)
    try:
        Request.from_json(body)
    except DecodeError as e:
        _fail(f"not a valid request: {e}", 2)
    if out_file is not None and str(out_file) == "-":
        out_file = None  # standard output, as without --out
    if out_file is not None:
        _check_out(out_file, force)
    text = (json.dumps(body, ensure_ascii=False) if out_file is not None
            else stdout_json(body)) + "\n"
    if out_file is None:
        print(text, end="")
        return
    try:  # whole or not at all: a full disk leaves no empty file at --out
        _write_out(out_file, text.encode(), 0o644, force)
    except OSError as e:
        _fail(f"cannot write {out_file}: {e.strerror or e}")
    n = len(body["claims"])
    err.print(Text(f"request for {credential_type!r} ({n} claim{'' if n == 1 else 's'}) in "
                   f"{out_file}; nonce {body['nonce']}"), soft_wrap=True)


def _known_to_registry(kind: str, claims: list[str], data: Path | None,
                       snapshot: Path | None) -> None:
    """Exit 2 unless the registry of ``data`` or ``snapshot`` holds the type ``kind`` with
    every one of ``claims`` (its claims or derived claims), as a node opens a request."""
    if snapshot is not None:
        try:
            registry = load_snapshot(_bounded_read(snapshot, "snapshot", MAX_SNAPSHOT)).registry
        except _Unreadable as e:
            _fail(str(e), 2)
        except SnapshotError as e:
            _fail(f"{snapshot}: {e}", 2)
    else:
        assert data is not None  # one of the two is given
        with _open(data) as store:
            if store.registry is None:  # a chain without its genesis registry: none to check
                raise typer.Exit(1)
            registry = store.registry
    type_def = registry.type_def(kind)
    if type_def is None:
        _fail(f"{kind!r} is not a credential type of the network (its registry "
              "holds none of that name); for an issuer's type outside the network, leave out "
              "--data and --snapshot", 2)
    known = set(type_def["claims"]) | set(type_def.get("derived", {}))
    if unknown := [c for c in claims if c not in known]:
        _fail(f"{unknown[0]!r} is not a claim of {kind!r} (its "
              f"claims: {', '.join(sorted(known))})", 2)


@ledger_app.command()
def verify(
    envelope: Annotated[str, typer.Argument(
        help="The presentation envelope: a file (binary or base64url text), - to read it "
             "from standard input (e.g. piped from `wallet present`), or the base64url string "
             "itself (other local users can read a command line: prefer a file or -).")],
    request: Annotated[Path, typer.Option(help="The verifier's request (JSON: nonce, audience, "
                                               "type, claims).")],
    data: Annotated[Path | None, typer.Option(
        help="Check against this node's live store (data folder or store).",
        exists=True, file_okay=False)] = None,
    snapshot: Annotated[Path | None, typer.Option(
        help="Check offline against a snapshot made by `ledger snapshot`.")] = None,
    nonce_log: Annotated[Path | None, typer.Option(
        help="Accept each request's nonce once: keep the used nonces in this file (created if "
             "missing; SHA-256 digests, not the nonces) and refuse a presentation for a nonce "
             "used before (a replay). Give every visitor a fresh request (`ledger request`).")
    ] = None,
    trust: Annotated[Path | None, typer.Option(
        help="A credential from an issuer OUTSIDE the network: check the presentation (an "
             "SD-JWT+KB, file or text) against this trust list (JSON: issuers, their keys) "
             "instead of the ledger (docs/foreign-issuers.md in the source repository).",
             dir_okay=False)] = None,
    status_token: Annotated[list[Path] | None, typer.Option(
        help="With --trust: a Status List Token (JWT file) from the issuer; repeat for several "
             "lists. Without one, the status is undetermined.", dir_okay=False)] = None,
    as_json: AsJson = False,
) -> None:
    """Verify a citizen's presentation against a request; exit 0 only if verified.

    Credentials of the network are checked against the ledger (--data or --snapshot), foreign
    ones against a trust list (--trust).
    """
    if trust is not None:
        if data is not None or snapshot is not None:
            _fail("--trust checks a credential from outside the network, without the ledger: "
                  "leave out --data and --snapshot", 2)
        _verify_foreign_cli(envelope, request, trust, status_token or [], nonce_log, as_json)
        return
    if status_token:
        _fail("--status-token goes with --trust (a credential from outside the network); the "
              "network's status lists come from --data or --snapshot", 2)
    if (data is None) == (snapshot is None):
        _fail("give exactly one of --data (live store) or --snapshot (offline), or --trust for "
              "a credential from outside the network", 2)
    try:
        raw = _envelope_bytes(envelope)
        try:
            Envelope.from_bytes(raw)
        except DecodeError as e:
            raise _Unreadable(f"not a presentation envelope: {e}") from e
    except _Unreadable as e:
        _no_verdict(str(e), as_json, "envelope", {})
    now = _now()
    req = _request_file(request, now)
    age: int | None = None
    with _used_nonces(nonce_log) as used, contextlib.ExitStack() as stack:
        if snapshot is not None:
            try:  # read up to the limit: a huge file (or /dev/zero) is not read whole first
                snap = load_snapshot(_bounded_read(snapshot, "snapshot", MAX_SNAPSHOT))
            except _Unreadable as e:
                _fail(str(e), 2)
            except SnapshotError as e:
                _fail(f"{snapshot}: {e}", 2)
            age = snap.age(now)
            report = verify_envelope(raw, req, registry=snap.registry, now=now,
                                     status_lists=snap.status_lists, used_nonces=used,
                                     status_as_of=snap.log_size)
        else:
            if data is None:  # exactly one of the two, checked above; for the type checker
                raise typer.Exit(2)
            store = stack.enter_context(_open(data))
            if store.registry is None:  # _open checked; for the type checker
                raise typer.Exit(1)

            def lists(uri: str) -> StatusList | None:
                return store_status_list(store, uri)

            report = verify_envelope(raw, req, registry=store.registry, now=now,
                                     status_lists=lists, used_nonces=used,
                                     ledger=store)
    _give_report(report, as_json, {} if age is None else {"snapshot_age_s": age}, age)


def _request_file(request: Path, now: int) -> Request:
    """The verifier's request in the file ``request``; a node's answer saved whole is refused
    once past its ``expires`` (exit 2), as `wallet present` refuses it: that request has no
    answer any more."""
    try:
        return Request.from_file_json(_read_json(request, "request"), now=now)
    except DecodeError as e:
        if e.where == "request.expires":
            _fail(f"{request}: {str(e).removeprefix(e.where + ': ')}", 2)
        _fail(f"the request file {request} is not a presentation request: {e}", 2)


@contextlib.contextmanager
def _used_nonces(path: Path | None) -> Iterator[NonceLog | None]:
    """The nonce log at ``path`` (None: none kept); its errors, also those while it is in use,
    are bad input (exit 2)."""
    if path is None:
        yield None
        return
    try:
        with NonceLog(path) as used:
            yield used
    except NonceLogError as e:
        _fail(str(e), 2)


def _give_report(report: Report, as_json: bool, extra: dict[str, Any],
                 age: int | None = None) -> None:
    """The verdict as JSON (with ``extra`` members) or as tables; exit 1 unless verified."""
    if as_json:
        # \u escapes where standard output cannot take every character: JSON all the same
        print(stdout_json({**report.to_json(), **extra}))
    else:
        _print_report(report, age, bool(extra.get("foreign")))
    if not report.verified:
        raise typer.Exit(1)


def _foreign_text(source: str) -> str:
    """A foreign presentation (SD-JWT+KB text) from a file, standard input (``-``) or the
    argument itself; :class:`_Unreadable` if there is none to be read."""
    if source == STDIN or _names_a_file(source):
        raw = _stdin_bytes("presentation") if source == STDIN else \
            _bounded_read(Path(source), "presentation")
        try:
            return raw.decode("ascii").strip()
        except UnicodeDecodeError as e:
            where = "standard input" if source == STDIN else str(Path(source))
            raise _Unreadable(f"{where} is not an SD-JWT+KB (text); an envelope from a wallet "
                              "of the network goes with --data or --snapshot, not "
                              "--trust") from e
    if "~" in source:
        err.print(_ON_ARGV)
        return source.strip()
    raise _Unreadable(f"there is no presentation file {source}, and it is not SD-JWT+KB text")


def _verify_foreign_cli(source: str, request: Path, trust: Path, token_files: list[Path],
                        nonce_log: Path | None, as_json: bool) -> None:
    from ledger.foreign import read_trust_list, tokens_by_uri, verify_foreign

    try:
        text = _foreign_text(source)
    except _Unreadable as e:
        _no_verdict(str(e), as_json, "presentation", {"foreign": True})
    try:
        trust_list = read_trust_list(trust)
    except LedgerError as e:
        _fail(str(e), 2)
    req = _request_file(request, _now())
    tokens = []
    for f in token_files:
        try:
            tokens.append(_read_input(f, "status token").decode("ascii").strip())
        except UnicodeDecodeError:
            _fail(f"the status token file {f} is not a JWT (text)", 2)
    try:
        by_uri = tokens_by_uri(tokens)
    except DecodeError as e:
        _fail(str(e), 2)
    with _used_nonces(nonce_log) as used:
        report = verify_foreign(text, req, trust=trust_list, now=_now(), status_tokens=by_uri,
                                used_nonces=used)
    _give_report(report, as_json, {"foreign": True})


@ledger_app.command()
def snapshot(
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the snapshot.")],
    data: Annotated[Path | None, typer.Option(
        help="The node's data folder (ledger/, keys/): made here, with every agency's node "
             "key in <data>/keys (embedded solo mode). Not with --node.",
        exists=True, file_okay=False)] = None,
    nodes: Annotated[list[str] | None, typer.Option(
        "--node", help="A running node's URL: its part (GET /v1/snapshot) has its own "
                       "agency's lists, signed by it. Repeat for each agency's node; a solo "
                       "node holding every node key gives them all.")] = None,
    ca: Annotated[Path | None, typer.Option(
        "--ca", help="CA certificate to trust for https nodes (a local cluster's "
                     "pki/ca.crt); default: the system's.", exists=True, dir_okay=False)] = None,
    as_json: AsJson = False,
    force: ForceOpt = False,
) -> None:
    """Write an offline snapshot: registry, latest checkpoint and signed status lists.

    With --data (embedded solo mode) each agency's status lists are signed with its node key
    from <data>/keys (passphrase from $LEDGER_KEY_PASSPHRASE, the file
    $LEDGER_KEY_PASSPHRASE_FILE names, or a prompt). With --node, on a running network, each
    agency's node signs its own lists, and the parts are put together here: they must carry one
    registry, and the snapshot is as of the part least far along.
    """
    if (data is None) == (not nodes):
        _fail("give --data (a store no node is serving) or --node (each agency's running "
              "node)" + (", not both" if data is not None else ""), 2)
    _check_out(out_file, force)
    if nodes:
        _snapshot_from_nodes(list(dict.fromkeys(n.rstrip("/") for n in nodes)), ca, out_file,
                             as_json, force)
        return
    assert data is not None
    now = _now()
    with _open(data) as store:
        if store.registry is None or store.head is None:  # _open checked; for the type checker
            raise typer.Exit(1)
        registry = store.registry
        keys = _keys_dir(data)
        passphrase = _passphrase()
        node_keys: dict[str, PrivateKey] = {}
        for path in sorted(keys.glob("*.node.key")):
            node_keys[path.name.removesuffix(".node.key")] = _load_key(path, passphrase)
        busy = (err.status("reading and signing every status list…") if err.is_terminal
                else contextlib.nullcontext())
        try:
            with busy:
                blob = export_snapshot(store, now, node_keys=node_keys)
            left_out = left_out_lists(store, now)
        except SnapshotError as e:
            _fail(f"cannot make a snapshot: {e}")
        head = store.head
    for uri, why in left_out.items():
        err.print(Text(f"left out {uri}: {why}, so no current key vouches for it; offline, "
                       "its credentials' status is undetermined (a node still tells it)",
                       style="yellow"), soft_wrap=True)
    try:
        snap = load_snapshot(blob)  # what a verifier will load: fail here rather than there
    except SnapshotError as e:
        _fail(f"cannot make a snapshot a verifier could load: {e}")
    try:
        _write_out(out_file, blob, 0o644, force)
    except OSError as e:
        _fail(f"cannot write {out_file}: {e.strerror or e}")
    summary = {"file": str(out_file), "network": registry.network, "fetched_at": now,
               "head_height": head.height, "log_size": head.log_size,
               "status_lists": sorted(snap.tokens), "left_out": list(left_out),
               "bytes": len(blob)}
    if as_json:
        print(json.dumps(summary))
    else:
        out.print(Text(f"snapshot of {registry.network!r} at height {head.height} (log size "
                       f"{head.log_size}), {len(snap.tokens)} signed status list(s), "
                       f"{len(blob)} bytes → {out_file}"), soft_wrap=True)


def _snapshot_from_nodes(nodes: list[str], ca: Path | None, out_file: Path,
                         as_json: bool, force: bool) -> None:
    """``ledger snapshot --node``: each node's part, merged (:func:`merge_snapshots`)."""
    bad = [u for u in nodes if not u.startswith(("http://", "https://"))]
    if bad:
        _fail(f"--node must be an http(s) URL, not {bad[0]!r}", 2)
    opener = _opener(ca)
    parts, asked, unproven = [], set[str](), set[str]()
    for url in nodes:
        got = url.rstrip("/") + "/v1/snapshot"
        try:
            with opener.open(urllib.request.Request(got), timeout=120) as resp:  # noqa: S310
                part = _read_within(resp, MAX_SNAPSHOT)
                claimed = {a.strip() for a in resp.headers.get("Snapshot-Agencies", "").split(",")
                           if a.strip()}
        except urllib.error.HTTPError as e:
            _fail(f"{url} gave no snapshot ({e.code}): {_refusal(e)[1]}"
                  + ("; a node of a version before ADR 51 has no GET /v1/snapshot: upgrade it, "
                     "or leave it out (its agency's lists are then left out)"
                     if e.code == 404 else ""))
        except _NodeTooSlow as e:
            _fail(str(e))
        except (urllib.error.URLError, OSError, ValueError) as e:
            _fail(f"cannot reach the node at {url}: {_unreached(e)}"
                  + ("; give its CA with --ca" if _ca_hint(e) else ""))
        except http.client.HTTPException as e:  # neither OSError nor URLError: a traceback
            _fail(f"the node at {url} {_not_http(e)}")
        if len(part) > MAX_SNAPSHOT:
            _fail(f"{url} sent a snapshot over {MAX_SNAPSHOT} bytes")
        parts.append(part)
        # A node speaks for an agency whose lists its part signs, or for its own one alone: it
        # cannot hide another agency's absence by naming it.
        try:
            signs = {issuer for issuer, _ in load_snapshot(part).tokens.values()}
        except SnapshotError:
            signs = set()  # merge_snapshots says what is wrong with it
        asked |= claimed & signs if len(claimed) > 1 else claimed
        unproven |= claimed - signs if len(claimed) > 1 else set()
    try:
        blob, missing = merge_snapshots(parts, asked)
    except SnapshotError as e:
        _fail(f"cannot make a snapshot: {e}")
    for agency in unproven & set(missing):  # a solo node's agency that issued nothing, say
        missing[agency] = (f"no status list of {agency!r}: it has issued nothing, or the node "
                           "naming it does not hold its lists")
    for what, why in missing.items():  # a list's name is as a node's part gives it
        err.print(Text(printable(f"left out {what}: {why}; offline, its credentials' status is "
                                 "undetermined (a node still tells it)"), style="yellow"),
                  soft_wrap=True)
    snap = load_snapshot(blob)
    try:
        _write_out(out_file, blob, 0o644, force)
    except OSError as e:
        _fail(f"cannot write {out_file}: {e.strerror or e}")
    summary = {"file": str(out_file), "network": snap.network, "fetched_at": snap.fetched_at,
               "head_height": snap.head_height, "log_size": snap.log_size,
               "status_lists": sorted(snap.tokens), "left_out": list(missing),
               "bytes": len(blob), "nodes": nodes}
    if as_json:
        print(json.dumps(summary))
        return
    out.print(Text(f"snapshot of {snap.network!r} at height {snap.head_height} (log size "
                   f"{snap.log_size}) from {len(nodes)} node(s), {len(snap.tokens)} signed "
                   f"status list(s), {len(blob)} bytes → {out_file}"), soft_wrap=True)


def _progress_bar(enabled: bool, what: str = "replay") -> Any:
    """A rich progress bar (blocks, txs, rate, time left) named ``what`` on a terminal; a
    no-op otherwise."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    class _Bar:
        def __init__(self) -> None:
            self.p = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                              MofNCompleteColumn(), TextColumn("blocks, {task.fields[txs]} txs"),
                              TextColumn("{task.fields[rate]} txs/s"),
                              TimeRemainingColumn(), console=err,
                              disable=not (enabled and err.is_terminal))
            self.task = self.p.add_task(what, total=None, txs=0, rate="-")
            self.start = time.monotonic()

        def __enter__(self) -> _Bar:
            self.p.__enter__()
            return self

        def __exit__(self, *exc: object) -> None:
            self.p.__exit__(None, None, None)

        def __call__(self, done: int, total: int, txs: int) -> None:
            spent = max(time.monotonic() - self.start, 1e-6)
            self.p.update(self.task, completed=done, total=total, txs=txs,
                          rate=f"{txs / spent:,.0f}")

    return _Bar()


GenesisOpt = Annotated[str | None, typer.Option(
    "--genesis", metavar="HASH", help="The network's genesis block hash, 64 hex digits (the "
    "`genesis` line of an earlier audit, or GET /v1/blocks/0 of a node you trust): a chain "
    "whose block 0 is another is reported broken by the audit and refused by the import, "
    "whatever its network's name (another network's agencies would sign it as well).")]


def _genesis_hash(genesis: str | None) -> bytes | None:
    """``--genesis``: 64 hex digits (exit 2 otherwise), or None."""
    if genesis is None:
        return None
    return bytes.fromhex(_hex_id(genesis, 64, "--genesis is a block hash: 64 hex digits"))


ArchiveNodeOpt = Annotated[str | None, typer.Option(
    "--node", help="A running node's base URL instead of a data folder (its GET /v1/archive): "
                   "LevelDB lets only the node open its store while it runs.")]
CaOpt = Annotated[Path | None, typer.Option(
    "--ca", help="CA certificate to trust for an https --node (a local cluster's pki/ca.crt); "
                 "default: the system's.", exists=True, dir_okay=False)]


def _ca_context(ca: Path) -> Any:
    """A TLS context trusting ``ca`` (``--ca``); a file that is no CA certificate is bad input."""
    import ssl

    try:
        return ssl.create_default_context(cafile=str(ca))
    except (ssl.SSLError, OSError) as e:
        _fail(f"{ca} is not a CA certificate: {e}", 2)


DISK_RESERVE = 512 << 20
"""Bytes that fetching a node's archive leaves free on the disk it writes to (``--node``): at
most this, at most a twentieth of that disk (a small one is not refused outright), checked
before each 64 MiB."""


class _Tee:
    """A read-only stream over an HTTP body that writes every byte it hands out to ``dest``:
    the archive is checked (:func:`ledger.archive.check_archive`) as it arrives, so a reply
    stops at the archive's trailer (anything after it is refused), at its first bad frame,
    or before the disk is down to :data:`DISK_RESERVE`."""

    def __init__(self, chunks: Iterator[bytes], dest: BinaryIO, where: str) -> None:
        self._chunks, self._dest, self._where = chunks, dest, where
        self._buf = bytearray()
        self._told = self.got = 0
        self._next_check = 0

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            if self.got >= self._next_check:  # now, then every 64 MiB
                st = os.fstatvfs(self._dest.fileno())
                reserve = min(DISK_RESERVE, st.f_blocks * st.f_frsize // 20)
                if st.f_bavail * st.f_frsize < reserve + len(chunk):
                    _fail(f"stopped after {self.got} bytes: the disk of {self._where} is down "
                          f"to {st.f_bavail * st.f_frsize >> 20} MiB free (the fetch leaves "
                          f"{reserve >> 20} MiB)", 2)
                self._next_check = self.got + (64 << 20)
            self._dest.write(chunk)
            self.got += len(chunk)
            self._buf += chunk
        if n < 0:
            n = len(self._buf)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        self._told += len(out)
        return out

    def tell(self) -> int:
        return self._told


def _shown_as_fetched(chunks: Iterator[bytes], url: str) -> Iterator[bytes]:
    """``chunks``, with the bytes fetched so far and the rate on a terminal (the archive's size
    is not known before its trailer)."""
    from rich.markup import escape
    from rich.progress import DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with Progress(TextColumn(f"[bold]fetching[/] {escape(url)}"), DownloadColumn(),
                  TransferSpeedColumn(), console=err, transient=True,
                  disable=not err.is_terminal) as bar:
        task = bar.add_task("fetch", total=None)
        for chunk in chunks:
            bar.advance(task, len(chunk))
            yield chunk


ARCHIVE_FIRST_WAIT = 120.0
"""Seconds a node's archive may take to start (its status line and headers within them)."""


ARCHIVE_LEAST_RATE = 16 << 10
"""Bytes a second a node's archive comes at the least, on average, after its first
:data:`ARCHIVE_FIRST_WAIT` (an archive may be large: its bound is a rate; 16 KiB/s is 128
kbit/s, below any link a node is reached by)."""


def _fetch_archive(url: str, ca: Path | None, dest: BinaryIO, where: str, *,
                   keep_damaged: bool = False, unreadable: int = 1) -> Any:
    """Download ``url``'s ``GET /v1/archive`` into ``dest`` (in the folder ``where``), checking
    it as it comes (every frame's checksum, the counts, the trailer, nothing after it); its
    :class:`ledger.archive.ExportSummary`. The checksums do not vouch for the chain: the audit
    or the import replays it. Damage stops the download: an error, or with ``keep_damaged``
    None and ``dest`` holding what came up to it (the audit reports it as for a file). A node
    that cannot be reached or refuses exits ``unreadable`` (the audit's 2: no verdict on the
    chain, which 1 would give)."""
    import httpx

    from ledger.archive import ArchiveError, check_archive
    from ledger.within import UNCOMPRESSED, Bound, compressed, within
    from ledger.within import client as client_of

    if not url.startswith(("http://", "https://")):
        _fail(f"the node URL must be http(s), not {url!r}", 2)
    verify: Any = True if ca is None else _ca_context(ca)
    # httpx's read timeout starts again with every byte: a node dripping its archive held
    # the command for ever (ADR 81, Left)
    bound = Bound(ARCHIVE_FIRST_WAIT, ARCHIVE_LEAST_RATE)
    try:
        with within(bound), client_of(verify=verify, timeout=60) as client, \
                client.stream("GET", f"{url.rstrip('/')}/v1/archive",
                              headers=UNCOMPRESSED) as r:
            encoding = compressed(r.headers)
            if encoding is not None:  # read raw below: a gzip bomb is not opened
                _fail(f"the archive from {url} came compressed ({encoding!r}), which was not "
                      "asked for (nothing kept)", unreadable)
            if r.status_code != 200:
                said = b""
                for chunk in r.iter_raw(1 << 14):  # a few KiB say why; more is not read
                    said += chunk
                    if len(said) >= 1 << 16:
                        break
                try:
                    body = json.loads(said)
                except ValueError:
                    body = None
                detail = body.get("detail") if isinstance(body, dict) else None
                _fail(f"{url} refused the archive: HTTP {r.status_code}"
                      + (f" ({printable(str(detail)[:300])})" if detail else ""), unreadable)
            tee = _Tee(_shown_as_fetched(r.iter_raw(1 << 20), url), dest, where)
            try:
                return check_archive(tee)  # type: ignore[arg-type]
            except ArchiveError as e:
                if keep_damaged:
                    return None
                _fail(f"the archive from {url} is damaged or cut short (nothing kept): {e}")
    except httpx.HTTPError as e:
        if isinstance(e, httpx.TimeoutException) and bound.passed():
            _fail(f"the archive from {url} came slower than {ARCHIVE_LEAST_RATE >> 10} KiB/s "
                  f"on average after its first {ARCHIVE_FIRST_WAIT:g} s (its headers within "
                  "them): no node sends it that slowly; given up on", unreadable)
        _fail(f"cannot fetch the archive from {url}: {e}", unreadable)


@ledger_app.command()
def export(
    data: Annotated[Path | None, typer.Argument(
        help="A node's data folder or its LevelDB store.", file_okay=False)] = None,
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the archive "
                                                          "(required).",
                                           show_default=False)] = Path(),
    node: ArchiveNodeOpt = None,
    ca: CaOpt = None,
    as_json: AsJson = False,
    force: ForceOpt = False,
) -> None:
    """Write a portable archive of the whole chain (blocks, transactions, checkpoints), from a
    data folder or, with --node, from a running node."""
    from ledger.archive import ArchiveError, export_archive

    if (data is None) == (node is None):
        _fail("give exactly one of DATA (a store) or --node URL", 2)
    if out_file == Path():
        _fail("give --out FILE: where to write the archive", 2)
    _check_out(out_file, force)
    if node is not None:
        try:
            # --out only once the whole is checked
            with atomic_output(out_file, 0o644, overwrite=force) as f:
                summary = _fetch_archive(node, ca, f, str(out_file.parent))
        except FileExistsError:
            _written_meanwhile(out_file)
        except OSError as e:
            _fail(f"cannot write {out_file}: {e.strerror or e}")
        result = {"file": str(out_file), "network": summary.network, "blocks": summary.blocks,
                  "txs": summary.txs, "checkpoints": summary.checkpoints,
                  "sha256": summary.sha256.hex(), "bytes": summary.bytes, "node": node}
        if as_json:
            print(json.dumps(result))
        else:
            out.print(Text(f"archived {summary.blocks} blocks, {summary.txs} transactions, "
                           f"{summary.checkpoints} checkpoints of {summary.network!r} from "
                           f"{node} → {out_file} ({summary.bytes} bytes, checksum "
                           f"{summary.sha256.hex()})"), soft_wrap=True)
        return
    assert data is not None
    if not data.exists():
        _fail(f"{data} does not exist", 2)
    with _open_copy(data, "export") as store, _progress_bar(not as_json, "export") as bar:
        try:
            with atomic_output(out_file, 0o644, overwrite=force) as f:
                summary = export_archive(store, f, progress=bar)
        except (ArchiveError, LedgerError) as e:
            _fail(f"cannot export: {e}")
        except FileExistsError:
            _written_meanwhile(out_file)
        except OSError as e:
            _fail(f"cannot write {out_file}: {e.strerror or e}")
    result = {"file": str(out_file), "network": summary.network, "blocks": summary.blocks,
              "txs": summary.txs, "checkpoints": summary.checkpoints,
              "sha256": summary.sha256.hex(), "bytes": summary.bytes}
    if as_json:
        print(json.dumps(result))
    else:
        out.print(Text(f"archived {summary.blocks} blocks, {summary.txs} transactions, "
                       f"{summary.checkpoints} checkpoints of {summary.network!r} → {out_file} "
                       f"({summary.bytes} bytes, checksum {summary.sha256.hex()})"),
                  soft_wrap=True)


@ledger_app.command("import")
def import_(
    archive: Annotated[Path, typer.Argument(help="The archive file.", exists=True,
                                            dir_okay=False)],
    data: Annotated[Path, typer.Option("--data", help="The NEW store folder to build.")],
    until_final: Annotated[bool, typer.Option(
        "--until-final", help="Stop at the archive's newest final checkpoint: how a node of a "
                              "network is restored (it rebuilds the later blocks from etcd's "
                              "batches and takes no tail that no quorum signed). Reads the "
                              "archive twice (three times when a checkpoint on the way is "
                              "below quorum: it stops at the newest final one before it).")
    ] = False,
    genesis: GenesisOpt = None,
    as_json: AsJson = False,
) -> None:
    """Rebuild a store from an archive by replaying and verifying every block and checkpoint.

    A node of a network takes only final blocks from an archive: import with --until-final."""
    from ledger.archive import (
        ArchiveError,
        NotFinalError,
        import_archive,
        import_final,
        last_checkpointed,
        read_archive,
    )

    pinned = _genesis_hash(genesis)

    with contextlib.suppress(OSError):  # not there: said below as for any unreadable file
        if not stat.S_ISREG(archive.stat().st_mode):  # a FIFO would wait for a writer
            _fail(f"{archive} is not a regular file (a pipe or a device): import reads the "
                  "archive more than once; save it to a file first", 2)
    try:
        with archive.open("rb") as f:
            header = read_archive(f)[0]  # a file that is no archive is bad input, as for audit
    except OSError as e:
        _fail(f"cannot read {archive}: {e.strerror or e}", 2)
    except ArchiveError as e:
        _fail(f"{archive} is not a readable archive: {e}", 2)
    if data.exists() or data.is_symlink():  # a link to nowhere is taken too
        _fail(f"{data} already exists: import builds a new store", 2)
    if not data.parent.is_dir():
        _fail(f"cannot create {data}: its parent folder does not exist", 2)
    until = None
    stopped: NotFinalError | None = None
    try:
        if until_final:
            with archive.open("rb") as f, _progress_bar(not as_json, "read") as bar:
                until = last_checkpointed(f, progress=bar)
            if until is None:
                _fail(f"refused: {archive} holds no checkpoint: nothing final to import")
            with archive.open("rb") as f, _progress_bar(not as_json) as bar:
                new_head, stopped = import_final(f, data, until, progress=bar, genesis=pinned)
        else:
            with archive.open("rb") as f, _progress_bar(not as_json) as bar:
                new_head = import_archive(f, data, progress=bar, genesis=pinned)
    except ArchiveError as e:  # the archive's content: refused
        _fail(f"refused: {e}")
    except (OSError, StoreError) as e:  # the new store (a full disk, a folder taken): not the
        # archive's fault, which was readable above; nothing is left behind either way
        detail = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        if isinstance(e, OSError) and e.errno in _NOT_WRITABLE:
            detail = f"the folder {data.parent} cannot be written ({detail})"
        _fail(f"cannot build the store at {data}: {detail}")
    except LedgerError as e:
        _fail(f"refused: {e}")
    left = header.blocks - (new_head.height + 1)
    # every checkpoint replayed was final; blocks after the last one are attested by none (an
    # archive cut after its last checkpoint, or with the last ones left out: whoever served it
    # could have made them)
    with Store(data, create=False) as built:
        text = built.checkpoint()
    unattested = (_head_unattested(SignedCheckpoint.from_text(text.decode()), new_head.log_size)
                  if text is not None else "no block is attested by a checkpoint"
                  if new_head.height > 0 else "")
    result = {"data": str(data), "height": new_head.height, "hash": new_head.hash.hex(),
              "log_size": new_head.log_size, "log_root": new_head.log_root.hex(),
              "blocks_left_out": left,
              "below_quorum": None if stopped is None else {"height": stopped.height,
                                                            "reason": stopped.reason},
              "unattested": unattested or None}
    if as_json:
        print(json.dumps(result))
    else:
        out.print(Text(f"imported and verified {new_head.height + 1} blocks "
                       f"({new_head.log_size} transactions) into {data}; head "
                       f"{new_head.hash.hex()}"), soft_wrap=True)
        if stopped is not None:
            out.print(Text(f"stopped before block {stopped.height}: {stopped.reason}"),
                      soft_wrap=True)
        if until is not None:
            out.print(Text(f"final up to here; {left} later block(s) of the archive left "
                           "out (its node rebuilds them from etcd's batches or its peers)"),
                      soft_wrap=True)
        elif unattested:
            out.print(Text(f"not final: {unattested} (`--until-final` leaves them out)",
                           style="yellow"), soft_wrap=True)


@ledger_app.command()
def audit(
    data: Annotated[Path | None, typer.Argument(
        help="A node's data folder or its LevelDB store.", file_okay=False)] = None,
    archive: Annotated[Path | None, typer.Option("--archive", help="Audit an archive file "
                                                 "instead of a store.", dir_okay=False)] = None,
    as_json: AsJson = False,
    statement_key: Annotated[Path | None, typer.Option(
        "--statement-key", help="The auditor's key file (`agency keygen --out FILE` makes one, "
                                "unlocked with $LEDGER_KEY_PASSPHRASE, the file "
                                "$LEDGER_KEY_PASSPHRASE_FILE names, or a prompt): sign an audit "
                                "statement; `ledger statement` checks it.")] = None,
    statement_out: Annotated[Path | None, typer.Option(
        "--statement-out", help="Where to write the signed audit statement.")] = None,
    workers: Annotated[int | None, typer.Option(
        help="Signature-checking processes (default: one per core; 0: in this process).",
        min=0, max=256)] = None,
    since: Annotated[Path | None, typer.Option(
        "--since", help="An earlier audited checkpoint (C2SP note file): report only the blocks "
        "after it, once it is shown final and consistent with the head.",
        dir_okay=False)] = None,
    evidence: Annotated[Path | None, typer.Option(
        "--evidence", help="A folder of the approving agencies' evidence records "
        "(<data>/approvals/*.ev): re-evaluate every approval against the rule version in force "
        "at its evaluation height; an approval without a record is a finding.",
        file_okay=False)] = None,
    evidence_key: Annotated[list[Path] | None, typer.Option(
        "--evidence-key", metavar="FILE", help="An agency's evidence key, which opens its "
        "sealed evidence records (a copy for you from `ledger-node evidence-key`; once per "
        f"agency), unlocked with ${EVIDENCE_PASSPHRASE_ENV}, the file "
        f"${EVIDENCE_PASSPHRASE_ENV}_FILE names, or a prompt.", dir_okay=False)] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace the --statement-out file if it exists.")] = False,
    node: ArchiveNodeOpt = None,
    ca: CaOpt = None,
    genesis: GenesisOpt = None,
) -> None:
    """Replay a chain from genesis and report the first broken block, tx or checkpoint: of a
    store (DATA), an archive (--archive) or a running node (--node URL: its archive is fetched
    into a temporary file, audited, and removed; trust in the node is not needed).

    With --since, the log up to the old checkpoint must hash to its root (else: a fork, exit 1
    with the expected and found roots), also listed as an equivocation if the chain holds a
    final checkpoint of that size; the state there is rebuilt from that already audited
    part without checking its signatures again, the old checkpoint must be final at its height,
    the later blocks are audited in full and reported, and the old checkpoint must be
    consistent with the head.

    Exit 0: clean; 1: something is broken (the report names it); 2: the source cannot be read.
    """
    from ledger.audit import AuditError, sign_statement
    from ledger.audit import audit as run_audit

    if sum(x is not None for x in (data, archive, node)) != 1:
        _fail("give exactly one of DATA (a store), --archive FILE or --node URL", 2)
    if (statement_key is None) != (statement_out is None):
        _fail("--statement-key and --statement-out go together", 2)
    source = data if data is not None else archive
    if node is None and (source is None or not source.exists()):
        _fail(f"{source} does not exist", 2)
    old = None if since is None else _read_checkpoint(since)
    pinned = _genesis_hash(genesis)
    if evidence_key and evidence is None:
        _fail("--evidence-key opens the records of --evidence: give the folder too", 2)
    opened = _evidence_keys(evidence_key or [])
    key = None
    if statement_key is not None and statement_out is not None:
        _check_out(statement_out, force, unwritable=2)  # 1 would say the chain is broken
        try:  # a passphrase that cannot be had is bad input (2) too: 1 says "broken"
            key = load_private_key(statement_key, read_passphrase(
                f"Passphrase of the statement key (or set {PASSPHRASE_ENV} or "
                f"{PASSPHRASE_ENV}_FILE): "))
        except KeyFileError as e:
            _fail(f"cannot load the statement key: {e}", 2)
    n = (os.cpu_count() or 1) if workers is None else workers
    with contextlib.ExitStack() as fetched:
        if node is not None:
            folder = Path(fetched.enter_context(tempfile.TemporaryDirectory(
                prefix="ledger-audit-")))
            source = folder / "node.archive"
            if not as_json:
                err.print(Text(f"fetching the chain from {node} …"), soft_wrap=True)
            try:
                with source.open("wb") as f:  # damage: the audit's report names it
                    _fetch_archive(node, ca, f, str(folder), keep_damaged=True, unreadable=2)
            except OSError as e:  # a full disk, say
                _fail(f"cannot keep the archive from {node} in {folder}: {e.strerror or e}", 2)
        assert source is not None
        try:
            with _progress_bar(not as_json) as bar:
                report = run_audit(source, now=_now(), progress=bar,
                                   workers=n if n > 1 else 0, since=old, evidence=evidence,
                                   evidence_keys=opened, genesis=pinned,
                                   notice=lambda said: err.print(Text(said, style="yellow"),
                                                                 soft_wrap=True))
        except AuditError as e:
            _fail(str(e).replace(str(source), f"the archive from {node}") if node else str(e),
                  2)
        if node is not None:
            report.source_kind, report.source = "node", node
    unwritten = None
    if key is not None and statement_out is not None:
        try:
            write_atomic(statement_out, sign_statement(report, key), 0o644, overwrite=force)
        except OSError as e:
            unwritten = e  # the report is still shown; the exit says the statement is missing
    if as_json:
        print(stdout_json(report.to_json(), sort_keys=True))
    else:
        _print_audit(report, statement_out if key is not None and unwritten is None else None)
    if unwritten is not None:
        _fail(f"cannot write the statement {statement_out}: {unwritten.strerror or unwritten}", 2)
    if not report.clean:
        raise typer.Exit(1)


@ledger_app.command()
def statement(
    file: Annotated[Path, typer.Argument(help="A signed audit statement "
                                               "(`ledger audit --statement-out`).",
                                         dir_okay=False)],
    auditor_key: Annotated[str, typer.Option(
        "--auditor-key", help="The auditor's public key, 64 hex digits (what `agency keygen` "
                              "printed as public_key when the auditor made the key).")],
    as_json: AsJson = False,
) -> None:
    """Check a signed audit statement: that this auditor signed it, and what it says (the
    network, the audited checkpoint, clean or not, the report's SHA-256).

    Exit 0: signed by that auditor (read `clean` for the verdict it records); 1: not signed by
    that key; 2: not a statement, or a bad key.
    """
    from ledger.audit import verify_statement

    try:
        public = PublicKey(bytes.fromhex(auditor_key))
    except ValueError as e:
        _fail(f"--auditor-key: 64 hex digits of an Ed25519 public key ({e})", 2)
    raw = _read_input(file, "statement")
    try:
        said = verify_statement(raw, public)
    except SignatureError as e:
        _fail(f"{file} is not signed by that auditor: {e}")
    except DecodeError as e:
        _fail(f"{file} is not an audit statement: {e}", 2)
    if as_json:
        print(json.dumps(said, sort_keys=True))
        return
    chain = "" if said["v"] < 2 else (
        f"; genesis {said['genesis'] or 'none'}, head {said['head'] or 'none'} (height "
        f"{said['head_height']}, log size {said['log_size']}, {said['attested_size']} of it "
        "attested by a final checkpoint)")
    out.print(Text(f"signed by the auditor key {said['auditor'][:16]}… (kid "
                   f"{said['auditor_kid'][:16]}): network {said['network']!r}, "
                   f"{said['blocks']} blocks and {said['txs']} transactions audited at "
                   f"{said['audited_at']}, {'CLEAN' if said['clean'] else 'NOT CLEAN'}; report "
                   f"sha256 {said['report_sha256']}{chain}"), soft_wrap=True)
    out.print(said["checkpoint"], markup=False, highlight=False, soft_wrap=True)


def _read_checkpoint(path: Path) -> SignedCheckpoint:
    """A C2SP checkpoint note file the user names; unreadable or malformed is bad input (2)."""
    raw = _read_input(path, "checkpoint")
    try:
        return SignedCheckpoint.from_text(raw)
    except CheckpointError as e:
        _fail(f"the checkpoint file {path} is not a signed checkpoint: {e}", 2)


def _print_audit(report: Any, statement: Path | None) -> None:
    table = Table(title=Text(printable(f"Audit of {report.source_kind} {report.source}")),
                  title_justify="left")  # the path as given: never read as markup
    table.add_column("item")
    table.add_column("value", overflow="fold")
    table.add_row("network", Text(printable(str(report.network))) if report.network
                  is not None else "not read (the audit stopped before the genesis block)")
    if report.genesis is not None:  # what --genesis pins on the next audit
        table.add_row("genesis", report.genesis.hex())
    if report.since is not None:
        cp = report.since.checkpoint
        table.add_row("since", f"checkpoint of size {cp.size} ({cp.root.hex()}), " + (
            f"block {report.since_height}: only later blocks are reported"
            if report.since_height is not None else
            "not reached in this log (below): no later block is reported"))
    table.add_row("blocks checked", f"{report.blocks_checked} of {report.blocks_total}")
    table.add_row("transactions checked", str(report.txs_checked))
    table.add_row("checkpoints checked", str(report.checkpoints_checked))
    if report.approvals_total:
        table.add_row("approvals", f"{report.approvals_total}: {report.approvals_rechecked} "
                      "re-evaluated against their rule" + (
                          "" if report.approvals_rechecked == report.approvals_total else
                          f", {report.approvals_total - report.approvals_rechecked} not "
                          "(give --evidence)"))
    table.add_row("by type", Text(", ".join(f"{k} {v}" for k, v in
                                            sorted(report.tx_types.items()))))
    table.add_row("by agency", Text(", ".join(f"{k} {v}" for k, v in
                                              sorted(report.agencies.items()))))
    if report.head is not None:
        table.add_row("head", f"height {report.head.height}, {report.head.hash.hex()}")
        table.add_row("attested", _attested(report.attested_size, report.head.log_size))
    out.print(table)
    for p in report.problems:  # an archive's network name and found values come from outside
        out.print(Text(printable(f"BROKEN {p}"), style="bold red"), soft_wrap=True)
    if report.problems_omitted:
        out.print(Text(f"BROKEN … and {report.problems_omitted} more problem(s) not listed",
                       style="bold red"), soft_wrap=True)
    for eq in report.equivocations:
        out.print(Text(f"EQUIVOCATION at size {eq.size}: roots {eq.root_a.hex()} "
                       f"({', '.join(sorted(eq.signers_a))}) and {eq.root_b.hex()} "
                       f"({', '.join(sorted(eq.signers_b))})", style="bold red"), soft_wrap=True)
    if report.equivocations_omitted:
        out.print(Text(f"EQUIVOCATION … and {report.equivocations_omitted} more not listed",
                       style="bold red"), soft_wrap=True)
    if report.free_text_count:
        first = report.free_text[0]
        out.print(Text(f"NOTE {report.free_text_count} status or credit transaction(s) carry a "
                       "reason in free text, not a code: public for good, it may hold personal "
                       f"data (first: block {first['height']}, tx {first['txid']}; --json lists "
                       "them). Not a break: the ledger takes such text.", style="yellow"),
                  soft_wrap=True)
    if report.blockless:
        out.print(Text(f"NOTE {report.blockless} checkpoint(s) name no block: written by a "
                       "version before ADR 60 (before the network was upgraded); each binds "
                       "the log's entries, not how they were grouped into blocks" + (
                           ", and the newest is one of them: upgrade every node" if
                           report.blockless_last else "; a later checkpoint naming its block "
                           "binds those blocks") + ". Not a break.", style="yellow"),
                  soft_wrap=True)
    if statement is not None:
        out.print(Text(f"signed audit statement → {statement}"), soft_wrap=True)
    out.print(Text("CLEAN", style="bold green") if report.clean else
              Text("NOT CLEAN", style="bold red"))


def _attested(size: int, log_size: int) -> Text:
    """What the newest final checkpoint vouches for, in words."""
    if size == 0 and log_size > 0:
        return Text("nothing: no final checkpoint was checked, so no quorum vouches for this "
                    "chain and a copy cut short would audit the same; compare its head with a "
                    "checkpoint from elsewhere (ledger monitor, --since)", style="yellow")
    if size < log_size:
        return Text(f"log size {size} of {log_size}: the last {log_size - size} transactions "
                    "await a final checkpoint", style="yellow")
    return Text(f"log size {size} of {log_size}, by a final checkpoint")


class _MonitorAlarm(Exception):
    """An inconsistency or equivocation: the evidence, printed before exiting 1."""


class _MonitorUnreachable(Exception):
    """The node did not answer usably (retried unless --once): ``reached`` False when no
    answer came (refused, timed out, a certificate not trusted), True for one not usable (an
    HTTP error, not JSON, not headers)."""

    def __init__(self, reason: str, *, reached: bool = True) -> None:
        super().__init__(reason)
        self.reached = reached

    @property
    def kind(self) -> str:
        """The reason without its URLs' queries (the headers asked for change as the chain
        grows): a reason said once is not said again each round for its numbers."""
        return re.sub(r"\?[^\s:]*", "", str(self))


class _MonitorHttp:
    opener: Any = None
    """What ``ledger monitor`` asks its node with: no redirect followed (a node's redirect to
    another host had that host's checkpoints checked and kept as the given node's), its --ca
    trusted (set by each monitor)."""


def _within_limit(url: str, body: bytes) -> bytes:
    """``body``, a node's answer at ``url``, if it is within MAX_INPUT; else it is refused
    (it was cut and the cut bytes used: a JSON padded with spaces still parsed)."""
    if len(body) > MAX_INPUT:
        raise _MonitorUnreachable(f"GET {url}: the node at {url} answered more than "
                                  f"{MAX_INPUT >> 20} MiB, the monitor's limit for one answer; "
                                  "refused, nothing of it used; is it a node?")
    return body


def _get(url: str) -> bytes:
    req = urllib.request.Request(url)  # noqa: S310 - the scheme is checked by monitor
    try:
        with (_MonitorHttp.opener or _NO_REDIRECTS).open(req, timeout=30) as resp:
            return _within_limit(url, _read_within(resp, MAX_INPUT))
    except urllib.error.HTTPError as e:
        with e:  # its connection closed, its words read or not (left open: a ResourceWarning)
            if 300 <= e.code < 400:
                raise _MonitorUnreachable(f"GET {url}: redirects ({e.code}) "
                                          f"{_redirect_target(e)} (not followed)") from e
            if e.code == 503 and url.endswith("/v1/health"):  # a halted node says why
                try:
                    return _within_limit(url, _read_within(e, MAX_INPUT))
                except _NodeTooSlow as slow:
                    raise _MonitorUnreachable(f"GET {url}: {slow}") from slow
                except http.client.HTTPException as cut:
                    raise _MonitorUnreachable(f"GET {url}: the node at {url} {_not_http(cut)}"
                                              ) from cut
            raise _MonitorUnreachable(f"GET {url}: {printable(str(e))[:REFUSAL_SHOWN]}") from e
    except _NodeTooSlow as e:
        raise _MonitorUnreachable(f"GET {url}: {e}") from e
    except http.client.RemoteDisconnected as e:  # (an HTTPException too) no answer at all
        raise _MonitorUnreachable(f"GET {url}: the node at {url} closed the connection "
                                  "without an answer", reached=False) from e
    except http.client.HTTPException as e:  # neither OSError nor URLError: a traceback
        raise _MonitorUnreachable(f"GET {url}: the node at {url} {_not_http(e)}") from e
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise _MonitorUnreachable(f"GET {url}: {_unreached(e)}", reached=False) from e


def _monitor_ca_hint(e: _MonitorUnreachable, ca: Path | None) -> str:
    """What to do about a node certificate the monitor does not trust."""
    if "CERTIFICATE_VERIFY_FAILED" not in str(e):
        return ""
    if ca is None:
        return ("; a node of a network with its own CA: give --ca with that CA's certificate "
                "(a local cluster's pki/ca.crt)")
    return f"; is {ca} the CA of this node's network?"


def _get_json(url: str) -> Any:
    try:
        return json.loads(_get(url))
    except ValueError as e:
        raise _MonitorUnreachable(f"GET {url}: not JSON: {e}") from e
    except RecursionError as e:  # was a traceback: the monitor ended for good
        raise _MonitorUnreachable(f"GET {url}: JSON nested too deeply; is it a node?") from e


def _note_keys(base: str) -> tuple[dict[str, PublicKey], int]:
    """Current agencies' note keys and the registry's governance quorum (``GET /v1/registry``;
    a majority of the listed agencies, as this used to assume, is too few where the quorum is
    larger and would have passed checkpoints that are not final)."""
    summary = _get_json(base + "/v1/registry")
    quorum = summary.get("quorum") if isinstance(summary, dict) else None
    if type(quorum) is not int or quorum < 1:
        raise _MonitorUnreachable("/v1/registry gives no quorum")
    agencies = _get_json(base + "/v1/registry/agencies")
    if not isinstance(agencies, list):
        raise _MonitorUnreachable("/v1/registry/agencies is not a list")
    keys: dict[str, PublicKey] = {}
    for a in agencies:
        if not isinstance(a, dict) or not a.get("current") or not a.get("note_vkey"):
            continue
        try:
            name, public = parse_vkey(str(a["note_vkey"]))
        except CheckpointError as e:
            raise _MonitorUnreachable(f"agency {_said(a.get('id'))}: {e}") from e
        if name != a.get("id"):  # the node's words, cut: an id may be a MiB
            raise _MonitorUnreachable(f"agency {_said(a.get('id'))} lists a note key named "
                                      f"{_said(name)}")
        keys[name] = public
    if not keys:
        raise _MonitorUnreachable("the node lists no agency with a note key")
    return keys, quorum


def _monitor_round(base: str, last: SignedCheckpoint | None) -> SignedCheckpoint:
    """Fetch and verify the node's checkpoint; check it against ``last``; return it."""
    keys, quorum = _note_keys(base)
    health = _get_json(base + "/v1/health")
    network = health.get("network") if isinstance(health, dict) else None
    if isinstance(health, dict) and health.get("halted"):
        # its line breaks too shown as escapes: the alarm is printed line by line
        # cut: a hostile node's reason may be a MiB
        raise _MonitorAlarm("HALTED: the node stopped applying blocks: "
                            + _cut(printable(str(health["halted"])), REFUSAL_SHOWN))
    evidence = _get_json(base + "/v1/evidence")
    if isinstance(evidence, list) and evidence:
        raise _MonitorAlarm(f"EQUIVOCATION: the node holds {len(evidence)} record(s) of "
                            f"two checkpoints signed for one size (GET "
                            f"{base}/v1/evidence)\n{json.dumps(evidence, indent=1)}")
    try:
        new = SignedCheckpoint.from_text(_get(base + "/v1/checkpoint"))
        signers = new.verify_quorum(keys, quorum)
    except CheckpointError as e:
        raise _MonitorAlarm(f"the node's checkpoint does not verify: {e}") from e
    cp = new.checkpoint
    if cp.origin != network:
        raise _MonitorAlarm(f"checkpoint origin {cp.origin!r} is not the node's network "
                            f"{_said(network)}")
    # note key names are the node's (it lists the keys): C1 controls and bidi overrides shown
    who = printable(", ".join(sorted(signers)))
    if last is None:
        out.print(Text(f"checkpoint {cp.size} {cp.root.hex()} signed by {who} (first seen)"),
                  soft_wrap=True)
        return new
    old = last.checkpoint
    if old.origin != cp.origin:
        raise _MonitorAlarm(f"the last checkpoint is of {old.origin!r}, the node's of "
                            f"{cp.origin!r}")
    if old.size == cp.size:
        if old == cp:
            out.print(Text(f"checkpoint {cp.size} {cp.root.hex()} unchanged"), soft_wrap=True)
            return new
        try:
            eq = find_equivocation(last, new, keys)
        except CheckpointError:
            eq = None
        kind = "EQUIVOCATION" if eq is not None else "INCONSISTENT"
        # one root in two blocks (each checkpoint names the block it ends at: ADR 60) is a fork
        said = (f"roots {old.root.hex()} (last seen) and {cp.root.hex()} (now)"
                if old.root != cp.root else
                f"root {cp.root.hex()} in two blocks: {' '.join(old.extensions)!r} (last seen) "
                f"and {' '.join(cp.extensions)!r} (now)")
        raise _MonitorAlarm(f"{kind} at size {cp.size}: {said}\n--- last seen\n"
                            f"{last.to_text()}--- now\n{new.to_text()}")
    if old.size > cp.size:
        raise _MonitorAlarm(f"INCONSISTENT: the log shrank from size {old.size} to {cp.size}\n"
                            f"--- last seen\n{last.to_text()}--- now\n{new.to_text()}")
    got = _get_json(f"{base}/v1/proofs/consistency?old={old.size}&new={cp.size}")
    try:
        if not isinstance(got, dict):
            raise ProofError("the answer is not a JSON object")
        proof = [base64.b64decode(h, validate=True) for h in got.get("proof", [])]
        merkle.verify_consistency(old.size, cp.size, old.root, cp.root, proof)
    except (ProofError, binascii.Error, TypeError, ValueError) as e:
        node_old = got.get("old_root") if isinstance(got, dict) else None
        raise _MonitorAlarm(
            f"INCONSISTENT: checkpoint {cp.size} is not consistent with the last seen "
            f"checkpoint {old.size}: {e}\n  last seen root at {old.size}: {old.root.hex()}\n"
            f"  node's root at {old.size}: {_hex_b64(node_old)}\n"
            f"--- last seen\n{last.to_text()}--- now\n{new.to_text()}"
            f"--- proof\n{json.dumps(got)}") from e
    descent = _check_descent(base, last, new)
    out.print(Text(f"checkpoint {cp.size} {cp.root.hex()} signed by {who}, consistent with "
                   f"{old.size}{descent}"), soft_wrap=True)
    return new


MONITOR_HEADERS: Final = 2000
"""Headers per ``GET /v1/sync/headers`` of the monitor (~150 bytes each: well inside
:data:`MAX_INPUT`; 4 rate-limit tokens)."""


def _check_descent(base: str, last: SignedCheckpoint, new: SignedCheckpoint) -> str:
    """That the block ``new`` names descends from the block ``last`` names: the node's headers
    from the one to the other, each chaining from the one before, the first and last being the
    blocks the two checkpoints name. A quorum signed both blocks' hashes, so the chain proves
    the network's history only grew; the same entries grouped or timed otherwise pass the
    consistency proof and are a fork (ADR 60, 68). What was checked, for the round's line;
    nothing for a checkpoint that names no block (a version before ADR 60)."""
    old, cp = last.checkpoint, new.checkpoint
    try:
        (start, start_hash), (end, end_hash) = checkpoint_block(old), checkpoint_block(cp)
    except CheckpointError:
        return " (a checkpoint names no block: its descent is not checked)"
    evidence = f"--- last seen\n{last.to_text()}--- now\n{new.to_text()}"
    if end <= start:
        raise _MonitorAlarm(f"FORK: the log grew from size {old.size} to {cp.size}, but the "
                            f"checkpoint names block {end}, not after block {start} of the last "
                            f"seen one\n{evidence}")
    height, prev = start, b""
    tail: BlockHeader | None = None
    while height < end:
        first = start if height == start and not prev else height + 1
        url = (f"{base}/v1/sync/headers?from={first}"
               f"&count={min(MONITOR_HEADERS, end - first + 1)}")
        try:
            got = codec.decode(_get(url), max_size=MAX_INPUT, what="headers")
            if not isinstance(got, list) or not got:
                raise DecodeError("not a non-empty list")
            headers = [BlockHeader.from_bytes(raw if isinstance(raw, bytes) else b"")
                       for raw in got]
        except (DecodeError, ValueError) as e:
            raise _MonitorUnreachable(f"GET {url}: not block headers: {e}") from e
        for i, header in enumerate(headers):
            if header.height != first + i or header.height > end:
                raise _MonitorUnreachable(f"GET {url}: header {i} is of block {header.height}, "
                                          f"not {first + i}")
            if header.height == start:
                if (header.hash, header.log_size, header.log_root) != (start_hash, old.size,
                                                                       old.root):
                    raise _MonitorAlarm(
                        f"FORK: the node's block {start} is {header.hash.hex()} ending at size "
                        f"{header.log_size}, not {start_hash.hex()} ending at {old.size}, the "
                        f"block the last seen checkpoint names\n{evidence}")
            elif header.prev_hash != prev:
                raise _MonitorAlarm(
                    f"FORK: the node's block {header.height} does not chain from its block "
                    f"{header.height - 1} (prev_hash {header.prev_hash.hex()}, block "
                    f"{header.height - 1} is {prev.hex()}): block {end} does not descend from "
                    f"block {start}, the last seen checkpoint's\n{evidence}")
            height, prev, tail = header.height, header.hash, header
            if height == end:
                break  # (headers past it, which the node was not asked for, are not read)
    if tail is None or (prev, tail.log_size, tail.log_root) != (end_hash, cp.size, cp.root):
        raise _MonitorAlarm(  # (tail is set: end > start, so at least one header was read)
            f"FORK: the node's block {end} is {prev.hex()} ending at size "
            f"{tail.log_size if tail else '?'}, not {end_hash.hex()} ending at {cp.size}, the "
            f"block its checkpoint names\n{evidence}")
    return f"; block {end} descends from block {start} ({end - start} headers checked)"


def _hex_b64(value: Any) -> str:
    if not isinstance(value, str):
        return "none given" if value is None else repr(value)  # not "None" read as base64
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        return repr(value)


@ledger_app.command()
def monitor(
    url: Annotated[str, typer.Argument(help="The node's base URL, e.g. http://127.0.0.1:8000")],
    interval: Annotated[float, typer.Option(help="Seconds between rounds (at most a day).",
                                            min=0.1, max=86400.0)] = 30.0,
    once: Annotated[bool, typer.Option("--once", help="One round, then exit.")] = False,
    state: Annotated[Path | None, typer.Option(
        "--state", help="File keeping the last checkpoint seen (read, then rewritten).",
        dir_okay=False)] = None,
    ca: Annotated[Path | None, typer.Option(
        "--ca", help="CA certificate to trust for an https node (a local cluster's "
                     "pki/ca.crt); default: the system's.", exists=True, dir_okay=False)] = None,
    give_up: Annotated[int | None, typer.Option(
        "--give-up-after", metavar="N", min=1,
        help="Exit 3 once N rounds in a row failed (the node could not be reached, or its "
             "answers could not be used); default: retry for good.")] = None,
) -> None:
    """Watch a node's checkpoints: each must be quorum-signed and consistent with the last, and
    the block it names must descend from the last one's (the node's headers between them).

    Note keys come from /v1/registry/agencies and the quorum from /v1/registry: the governance
    quorum of the current agencies must sign.

    A node that does not answer is said once, and again only when the reason changes or when
    it answers again; while it does not, the rounds come less often (the wait doubles, up to
    ten times --interval or an hour, whichever is less, never under --interval).

    Exit 1 on an inconsistency or equivocation, also one the node itself holds as evidence
    (/v1/evidence), or when the node halted on a fork (the evidence is printed); 2 on bad input
    or (with --once) an unreachable node; 3 when --give-up-after N rounds in a row failed (the
    node could not be reached, or its answers could not be used).
    """
    if not url.startswith(("http://", "https://")):
        _fail(f"the URL must be http(s), not {url!r}", 2)
    _MonitorHttp.opener = _NO_REDIRECTS if ca is None else _opener(ca)
    base = url.rstrip("/")
    last = None
    if state is not None and state.exists():
        last = _read_checkpoint(state)
    failed = 0  # rounds in a row that could not reach the node or use its answers
    unreached = 0  # those of them that had no answer at all
    said = ""  # the reason last said for them (its kind)
    while True:
        try:
            last = _monitor_round(base, last)
        except _MonitorAlarm as e:
            # line by line: the evidence's checkpoint notes must stay copyable as note files
            for line in str(e).splitlines():
                err.print(Text(printable(line), style="red"), soft_wrap=True)
            raise typer.Exit(1) from None
        except _MonitorUnreachable as e:
            hint = _monitor_ca_hint(e, ca)
            if once:
                _fail(f"cannot monitor {base}: {e}{hint}", 2)
            failed += 1
            unreached += not e.reached
            if give_up is not None and failed >= give_up:
                _fail(f"cannot monitor {base}: {e}{hint}; gave up after {failed} "
                      f"round{'s' * (failed > 1)} in a row", 3)
            if e.kind != said:  # once, not a line a round: again when the reason changes
                said = e.kind
                # a node's words (an HTTP reason phrase) are the node's: shown, not acted on
                err.print(Text(printable(
                    f"cannot monitor {base}: {e}{hint}; retrying" + (
                        ", less often while it fails" if failed == 1 else
                        f" ({failed} rounds in a row failed)")), style="yellow"),
                    soft_wrap=True)
        else:
            if failed:
                rounds = f"{failed} round{'s' * (failed > 1)}"
                err.print(Text(printable(f"{base} answers again, after {rounds} " + (
                    "that could not reach it" if unreached == failed else
                    "whose answers could not be used" if not unreached else
                    f"that failed ({unreached} could not reach it)"))), soft_wrap=True)
            failed, unreached, said = 0, 0, ""
            if state is not None:
                try:
                    write_atomic(state, last.to_text().encode(), 0o644)
                except OSError as e:  # not a fork: exit 2, as for bad input
                    _fail(f"cannot write the state file {state}: {e.strerror or e}", 2)
        if once:
            return
        time.sleep(_monitor_wait(interval, failed))


def _monitor_wait(interval: float, failed: int) -> float:
    """The wait before the next round after ``failed`` rounds in a row that could not reach
    the node: ``interval``, doubled for each failed round past the first, up to ten times it
    or an hour, whichever is less (never under ``interval``)."""
    if failed <= 1:
        return interval
    return min(interval * 2.0 ** min(failed - 1, 64), max(interval, min(10 * interval, 3600.0)))


# -- agency: issuing agencies -------------------------------------------------------------------


@agency_app.command()
def issue(
    agency: AgencyOpt,
    kind: Annotated[str, typer.Option("--type", help="The registered credential type.")],
    claims_file: Annotated[Path, typer.Option("--claims", help="The claims (JSON object).")],
    holder_jwk_files: Annotated[list[Path], typer.Option(
        "--holder-jwk", help="The holder's public key (JWK JSON). Repeat with a fresh key per "
        "copy to issue a batch of unlinkable copies (own salts, key, id, status index).")],
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the holder's bundle "
                                           "(with several copies: <stem>-<n><suffix>).")],
    data: Annotated[Path | None, typer.Option(
        "--data", help="The node's data folder (ledger/, keys/): this process writes the store "
                       "itself. Not with --node.", exists=True, file_okay=False)] = None,
    valid_days: Annotated[int, typer.Option(help="Days the credential is valid.",
                                            min=1, max=100 * 366)] = 365,
    as_json: AsJson = False,
    force: ForceOpt = False,
    node: Annotated[str | None, typer.Option(
        help="URL of this agency's running node (e.g. https://127.0.0.1:8443): the node signs "
             "with its issuer key and anchors the credential (POST /v1/credentials, operator "
             "token from $LEDGER_OPERATOR_TOKEN; an https node's CA from $SSL_CERT_FILE). "
             "Instead of --data.")] = None,
    time_zone: Annotated[str | None, typer.Option(
        "--time-zone", help="With --data: the IANA time zone whose calendar birthdays count "
                            "in for derived claims such as age_over_18 (e.g. Asia/Shanghai; "
                            "UTC when not given). With --node the node's time_zone setting "
                            "applies.")] = None,
) -> None:
    """Issue an SD-JWT VC, anchor it on the ledger and write the holder's bundle.

    With --data (embedded solo mode) this process orders the block and co-signs its checkpoint
    with the node keys in <data>/keys (passphrase from $LEDGER_KEY_PASSPHRASE, the file
    $LEDGER_KEY_PASSPHRASE_FILE names, or a prompt). With --node the agency's running node
    (solo or one of a network's) issues it, and the bundle proves it against a final
    checkpoint. Claim values are never printed and never reach the ledger.
    """
    if (data is None) == (node is None):
        _fail("give either --data (write the store here) or --node (the agency's running "
              "node issues it), not both" if data else "give --data (write the store here) "
              "or --node (the agency's running node issues it)", 2)
    if kind in RESERVED_TYPES:
        _fail(f"{kind!r} credentials record a decision: the node's approvals service issues "
              "them with the decision transaction (wallet apply), never by hand", 2)
    if node is not None and time_zone is not None:
        _fail("--time-zone is for --data: a node counts days in its own time_zone setting "
              "(node config, LEDGER_NODE_TIME_ZONE)", 2)
    try:
        zone = dt.UTC if time_zone is None else timetext.time_zone(time_zone)
    except timetext.TimeZoneError as e:
        _fail(f"--time-zone: {e}", 2)
    claims = _read_json_object(claims_file, "claims")
    holder_jwks = [_read_json_object(f, "holder JWK") for f in holder_jwk_files]
    seen: set[tuple[object, ...]] = set()
    for jwk, path in zip(holder_jwks, holder_jwk_files, strict=True):
        try:
            key = sdjwt.public_key_from_jwk(jwk)
        except sdjwt.JwkError as e:
            _fail(f"the holder JWK in {path} is not usable: {e}", 2)
        # the key itself, not its spelling: extra members ("alg", "use", an Ed25519 key's "y",
        # which is not read) name the same key
        ident = tuple(sdjwt.jwk_of(key).get(m) for m in ("kty", "crv", "x", "y"))
        if ident in seen:
            _fail(f"{path} repeats a holder key: each copy needs its own (a shared key links "
                  "the copies)", 2)
        seen.add(ident)
    outs = [out_file] if len(holder_jwks) == 1 else [
        out_file.with_name(f"{out_file.stem}-{n}{out_file.suffix}")
        for n in range(1, len(holder_jwks) + 1)]
    for o in outs:
        _check_out(o, force)
    if node is not None:
        results = _issue_at_node(node, agency, kind, claims, holder_jwks, outs, valid_days,
                                 force, holder_jwk_files)
    else:
        assert data is not None  # one of the two, checked above
        results = _issue_here(data, agency, kind, claims, holder_jwks, outs, valid_days, force,
                              zone)
    if as_json:
        print(json.dumps(results[0] if len(results) == 1 else results))
        return
    for result in results:
        out.print(Text(f"issued a {kind!r} credential by {agency!r}; bundle → "
                       f"{result['bundle']}"), soft_wrap=True)
        for name in ("credential_id", "txid", "leaf_index", "height",  # a node's words
                     "status_index"):
            out.print(Text(printable(f"  {name}: {result[name]}")), soft_wrap=True)
        # its end, as --json gives it and in UTC (the officer's tools keep UTC; README)
        out.print(f"  valid_until: {result['valid_until']} "
                  f"({timetext.utc_text(result['valid_until'])})", soft_wrap=True)


NODE_MAX_VALID_DAYS = 3650
"""The longest validity a node's ``POST /v1/credentials`` issues (its schema's bound)."""


def _issue_at_node(node: str, agency: str, kind: str, claims: dict[str, Any],
                   holder_jwks: list[dict[str, Any]], outs: list[Path],
                   valid_days: int, force: bool,
                   holder_jwk_files: list[Path]) -> list[dict[str, Any]]:
    """Have the agency's running node issue one credential per holder key; write each bundle."""
    token = _operator_token()
    if valid_days > NODE_MAX_VALID_DAYS:
        _fail(f"--valid-days: a node issues for at most {NODE_MAX_VALID_DAYS} days", 2)
    base = node.rstrip("/")
    serves = _node_health(node)["agency"]
    if serves != agency:
        _fail(f"the node at {node} issues for {_said(serves)}, not {agency!r}: give that "
              "agency's own node", 2)
    results: list[dict[str, Any]] = []
    for holder_jwk, target in zip(holder_jwks, outs, strict=True):
        body = json.dumps({"type": kind, "claims": claims, "holder_jwk": holder_jwk,
                           "valid_days": valid_days}).encode()
        with interrupts_held(_finishing):
            results.append(_one_at_node(base, token, body, agency, kind, target, force,
                                        len(results), _send_again(results, holder_jwk_files)))
    return results


def _one_at_node(base: str, token: str, body: bytes, agency: str, kind: str, target: Path,
                 force: bool, written: int, again: str = "") -> dict[str, Any]:
    """One credential issued by the node, its bundle written (ADR 52: not cut in two);
    ``again`` says what to send again if the node took nothing of it (:func:`_send_again`)."""
    got = _http(base + "/v1/credentials", body, "application/json",
                {"Authorization": f"Bearer {token}"}, after=_written(written), again=again)
    _refuse_pending(base, got, "credential", after=_written(written))
    try:
        raw = base64.urlsafe_b64decode(got["bundle"] + "=" * (-len(got["bundle"]) % 4))
        issued = Tx.from_bytes(Bundle.from_bytes(raw).anchor)
        anchor, receipt = issued.body, got["receipt"]
        # the ids are the bundle's own: the node's words beside it, unchecked, were said (and
        # later revoked by) as the credential's
        if not isinstance(anchor["credential_id"], bytes):
            raise TypeError("its anchor names no credential id")
        cid, txid = anchor["credential_id"].hex(), issued.txid.hex()
        result = {"credential_id": cid, "txid": txid,
                  "leaf_index": int(receipt["index"]), "height": int(receipt["height"]),
                  "agency": agency, "type": kind,
                  "status_index": int(anchor["status_index"]),
                  "valid_until": int(anchor["valid_until"])}
    except (KeyError, TypeError, ValueError, binascii.Error, LedgerError) as e:
        _fail(f"the node answered the issuance with something that is not a bundle ({e})"
              + _written(written))
    # .get: an answer naming none beside the bundle was a KeyError traceback
    for what, its, bundles in (("credential id", got.get("credential_id"), cid),
                               ("transaction id", receipt.get("txid"), txid)):
        if its != bundles:
            named = "none" if its is None else _said(its)
            _fail(f"the node at {base} names the credential's {what} {named}, not the "
                  f"bundle's {bundles}: is it a node? Nothing written; the bundle's "
                  f"credential may be committed all the same, its holder without it: revoke "
                  f"it (agency status --data DATA --agency {agency} --node {base} "
                  f"--credential-id {cid} --set revoked; the ledger refuses an unknown one) "
                  "and issue again at the agency's own node" + _written(written))
    result["bundle"] = str(_keep_bundle(target, raw, force, cid, _lost(
        cid, txid, written, f"--data DATA --agency {agency} --node {base}")))
    return result


def _finishing() -> None:
    err.print(Text("stopping once this credential's bundle is written (it may be committed "
                   "already); Ctrl-C again to stop at once", style="yellow"), soft_wrap=True)


def _keep_bundle(target: Path, raw: bytes, force: bool, cid: str, lost: str) -> Path:
    """Write a committed credential's bundle to ``target`` (replacing a file only with
    ``force``); where another process wrote ``target`` since it was checked (two issuances to
    one --out), beside it, named by the credential: the credential is committed, and its
    holder's only copy must not be lost, nor the other one replaced."""
    try:
        write_atomic(target, raw, 0o600, overwrite=force)
        return target
    except FileExistsError:
        beside = target.with_name(f"{target.stem}-{cid[:16]}{target.suffix}")
        try:
            write_atomic(beside, raw, 0o600, overwrite=False)
        except OSError as e:
            _fail(f"cannot write {target}, written meanwhile by another process, nor {beside} "
                  f"({e.strerror or e}): {lost}")
        err.print(Text(f"{target} was written meanwhile by another process (another issuance "
                       f"to the same --out?): this credential's bundle is in {beside}",
                       style="yellow"), soft_wrap=True)
        return beside
    except OSError as e:  # a full disk: the credential is on the ledger already
        _fail(f"cannot write {target} ({e.strerror or e}): {lost}")


def _send_again(results: list[dict[str, Any]], holder_jwk_files: list[Path]) -> str:
    """What to send again when the node took nothing of the next copy: with copies written
    before it, which (their files and ids, not to be sent again) and the holder keys still to
    send. The same command sent again issued the written ones twice (44T). Empty when none
    was written: the command as it was."""
    n, total = len(results), len(holder_jwk_files)
    if not n:
        return ""
    done = ", ".join(f"{r['bundle']}: credential {r['credential_id']}" for r in results)
    # as the shell reads them back: the line is pasted (a path with a space was two words)
    left = " ".join(f"--holder-jwk {shlex.quote(str(f))}" for f in holder_jwk_files[n:])
    return (f"; {'copy 1 was' if n == 1 else f'copies 1 to {n} were'} written ({done}) and "
            f"need not be sent again; send again "
            f"{f'copy {total}' if n + 1 == total else f'copies {n + 1} to {total}'} only: "
            f"{left}, with another --out (its files would be named as the written ones)")


def _written(n: int) -> str:
    """What an issuance of several copies had done when it stopped."""
    return f"; the {n} bundle(s) before it were written" if n else ""


def _lost(cid: str, txid: str, written: int, where: str) -> str:
    """What to do about a credential committed whose holder got no bundle; ``where``: the
    options `agency status` needs to revoke it (it refuses to run without them)."""
    return (f"credential {cid} (txid {txid}) is committed, but the holder has no bundle: "
            f"revoke it (agency status {where} --credential-id {cid} --set revoked) and issue "
            "again" + _written(written))


def _issue_here(data: Path, agency: str, kind: str, claims: dict[str, Any],
                holder_jwks: list[dict[str, Any]], outs: list[Path],
                valid_days: int, force: bool, zone: dt.tzinfo) -> list[dict[str, Any]]:
    """Issue and anchor in the store in ``data`` (embedded solo mode); write each bundle."""
    now = _now()
    results: list[dict[str, Any]] = []
    with _open(data) as store:
        registry = store.registry
        if registry is None:  # _open checked; for the type checker
            raise typer.Exit(1)
        _agency_known(registry, agency)
        type_def = registry.type_def(kind)
        try:
            if type_def is None:
                raise ClaimError(f"credential type {kind!r} is not registered on "
                                 f"{registry.network!r}")
            check_claims(type_def, claims)  # before any key is decrypted
            derive_claims(type_def, claims, now, zone)  # e.g. a birth date still to come
        except ClaimError as e:
            _fail(str(e))
        if not registry.grant_covers(agency, kind, now):
            _fail(f"{agency!r} holds no grant to issue {kind!r} now")
        issuer_key, signers = _agency_keys(data, registry, agency, now)
        now = _now()  # after the passphrase prompt: the credentials date from their block
        for holder_jwk, target in zip(holder_jwks, outs, strict=True):
            with interrupts_held(_finishing):  # committed, then written: never one alone
                cred, receipt = _issue_one(store, registry, signers, issuer_key, agency, kind,
                                           claims, holder_jwk, now, valid_days, zone,
                                           len(results))
                cid = cred.credential_id.hex()
                lost = _lost(cid, receipt.txid.hex(), len(results),
                             f"--data {shlex.quote(str(data))} --agency {agency}")
                try:
                    bundle = bundle_from_store(store, receipt.index, cred.sd_jwt.serialize())
                except LedgerError as e:
                    _fail(f"the anchor cannot be proven ({e}): {lost}")
                kept = _keep_bundle(target, bundle.to_bytes(), force, cid, lost)
            results.append({"credential_id": cid,
                            "txid": receipt.txid.hex(), "leaf_index": receipt.index,
                            "height": receipt.height, "agency": agency, "type": kind,
                            "status_index": cred.status_index,
                            "valid_until": now + valid_days * 86400, "bundle": str(kept)})
    return results


def _issue_one(store: Store, registry: Registry, signers: Any, issuer_key: PrivateKey,
               agency: str, kind: str, claims: dict[str, Any], holder_jwk: dict[str, Any],
               now: int, valid_days: int, zone: dt.tzinfo, written: int = 0
               ) -> tuple[Any, Receipt]:
    """Issue and anchor one copy, drawing a fresh status index until one is free (``written``:
    the copies before it, whose bundles a failure names)."""
    def taken(index: int) -> bool:  # used before (indexes are never reused)
        return store.get(index_key(agency, kind, index)) is not None

    # from the type's last list holding credentials: those before it are full (ADR 55)
    first = status_lists_in_order(store.status_lists(agency, kind))
    for _ in range(32):
        try:
            index = draw_status_index(taken, first)
            cred = issue_credential(registry=registry, agency=agency, issuer_key=issuer_key,
                                    kind=kind, claims=claims, holder_jwk=holder_jwk, now=now,
                                    valid_for=valid_days * 86400, status_index=index,
                                    zone=zone)
            return cred, _commit(store, signers, cred.anchor)
        except TxRejected as e:
            if e.code == "status_index_used":
                continue
            _fail(f"the ledger rejected the anchor ({e.code}): {e.message}"
                  + _written(written))
        except LedgerError as e:  # ClaimError, no grant, key not valid, orderer failure
            _fail(str(e) + _written(written))
    _fail(f"no free status index of {agency}/{kind} found in 32 draws" + _written(written))


class NewStatus(StrEnum):
    valid = "valid"
    revoked = "revoked"
    suspended = "suspended"


@agency_app.command()
def status(
    data: DataOpt,
    agency: AgencyOpt,
    credential_id: Annotated[str, typer.Option(help=(
        "The credential id: 64 hex digits, or its start of 16 or more as `agency approvals` "
        "shows it (with --node, looked up among that node's decisions, which must be "
        "--agency's node, operator token from $LEDGER_OPERATOR_TOKEN; without, among "
        "--agency's credentials in --data's ledger). Capitals are read as small letters."))],
    new: Annotated[NewStatus, typer.Option("--set", help="The new status.")],
    reason: Annotated[str, typer.Option(help="A reason code: 1 to 64 lowercase letters, digits, "
                                             "'.', '_' or '-', e.g. withdrawn, under-review. "
                                             "Public on the ledger for good: never a name or "
                                             "other personal detail.")] = "unspecified",
    as_json: AsJson = False,
    node: Annotated[str | None, typer.Option(
        help="URL of this agency's running node (e.g. http://127.0.0.1:8000): sign here and "
             "submit the transaction to it instead of writing the store directly.")] = None,
) -> None:
    """Revoke, suspend or reinstate a credential with a status transaction (revoked is final;
    --set valid reinstates a suspended credential).

    The transaction is signed here with the agency's issuer key from <data>/keys. Without
    --node this process also orders it into the store (embedded mode); with --node the running
    node orders it (a signed transaction is its own authority: no operator token needed).
    Without --node, a credential the agency may not change (another agency's, of a type it is
    not granted) or none on the ledger is refused before the passphrase (exit 2), naming its
    issuer; with --node, the node's ledger refuses it (exit 1).
    """
    credential_id = _hex_id(credential_id, 16, (
        "--credential-id must be 64 hex digits (SHA-256 of the issuer-signed JWT), or its start "
        "of 16 or more as `agency approvals` shows it"))
    problem = reason_code_problem(reason)
    if problem is not None:
        _fail(f"--reason: {problem}", 2)
    now = _now()
    if node is not None:
        network = _agencys_node(node, agency, f"--credential-id {credential_id}")
        cid = bytes.fromhex(credential_id if len(credential_id) == 64 else
                            _approval_credential_of(node, credential_id))
        body = {"credential_id": cid, "status": new.value, "reason": reason}
        key = _agency_key(data, agency)  # once: the retries sign again only
        try:
            remote = not_a_repeat(lambda ts: _submit_to_node(
                node, make_tx(network, "status", {**body, "ts": ts}, [key]), "status change"),
                _repeated, _now())
        except LedgerError as e:
            _fail(str(e))
        _print_status(remote, cid, new.value, reason, as_json)
        return
    with _open(data) as store:
        registry = store.registry
        if registry is None:  # _open checked; for the type checker
            raise typer.Exit(1)
        _agency_known(registry, agency)
        cid = bytes.fromhex(credential_id if len(credential_id) == 64 else
                            _credential_of(store, agency, credential_id))
        _changeable(store, registry, agency, cid, now)
        body = {"credential_id": cid, "status": new.value, "reason": reason}
        issuer_key, signers = _agency_keys(data, registry, agency, now)
        try:  # signed after the passphrase prompt (a change signed long before is stale)
            done = not_a_repeat(lambda ts: _commit(store, signers, make_tx(
                registry.network, "status", {**body, "ts": ts}, [issuer_key])).to_json(),
                _repeated, _now())
        except TxRejected as e:
            _fail(f"rejected ({e.code}): {e.message}")
        except LedgerError as e:
            _fail(str(e))
    _print_status(done, cid, new.value, reason, as_json)


def _changeable(store: Store, registry: Registry, agency: str, cid: bytes, now: int) -> None:
    """Exit 2 unless ``agency`` may change the status of credential ``cid`` on this ledger, as
    the ledger decides it: a change of an unknown credential or of another agency's (not
    granted its type) was signed after the passphrase, then refused (helper round 40S)."""
    cred = store.credential(cid)
    if cred is None:
        _fail(f"--credential-id {cid.hex()}: no credential with this id is anchored on this "
              "ledger; nothing was signed", 2)
    if not may_change_status(registry, agency, cred, now):
        _fail(f"--credential-id {cid.hex()}: {cred.issuer}'s credential ({cred.type}), not "
              f"{agency}'s: only {cred.issuer} "
              f"{'' if cred.type in RESERVED_TYPES else 'or an agency granted its type '}"
              "may change its status; nothing was signed", 2)


def _one_credential(start: str, found: list[str], where: str) -> str:
    """The one credential id of ``found`` that begins with ``start``; exit 2 for none or more
    than one (a status change is signed for exactly the credential the officer meant)."""
    if len(found) != 1:
        _fail(f"{len(found) or 'no'} credentials {where} start with {start}"
              + ("; give more digits" if found else "; give all 64 digits of another "
                 "credential's id"), 2)
    return found[0]


def _agencys_node(node: str, agency: str, given: str) -> str:
    """The network of ``node``, which must serve ``agency``: a status change of its credential
    sent to another agency's node is signed there, then refused by the ledger (the node signs
    with its own agency's key). Checked before the passphrase; exit 2 naming whose node it is."""
    health = _node_health(node)
    serves = health["agency"]
    if serves != agency:
        _fail(f"{given}: {node} is {serves[:40]!r}'s node, not {agency!r}'s: a status change "
              f"of {agency}'s credential goes to {agency}'s node; nothing was signed", 2)
    return str(health["network"])


def _approval_credential_of(node: str, start: str) -> str:
    """The approval credential id of the node's decisions that begins with ``start`` (the
    list's column), from its decision list: the node keeps no other index of credential ids.
    The node serves the agency (`_agencys_node`), and its list must be one of decisions with
    64-digit ids: both before the passphrase."""
    auth = {"Authorization": f"Bearer {_operator_token()}"}
    listed = _http(node.rstrip("/") + "/v1/approvals", headers=auth)
    if not isinstance(listed, list) or not all(
            isinstance(a, dict) and (a.get("credential_id") is None or re.fullmatch(
                r"[0-9a-f]{64}", str(a["credential_id"]))) for a in listed):
        _fail(f"{node} did not answer its decision list like a ledger node (a list of "
              "decisions, each credential id 64 hex digits or none); nothing was signed")
    found = sorted({str(a["credential_id"]) for a in listed
                    if str(a.get("credential_id") or "").startswith(start)})
    return _one_credential(start, found, "of this node's decisions")


def _credential_of(store: Store, agency: str, start: str) -> str:
    """The id of the credential ``agency`` anchored on this ledger that begins with ``start``."""
    found = []
    for key, _ in store.iterate(credential_key(bytes.fromhex(start[:len(start) // 2 * 2]))):
        cid = key[1:]
        if cid.hex().startswith(start):
            cred = store.credential(cid)
            if cred is not None and cred.issuer == agency:
                found.append(cid.hex())
    return _one_credential(start, found, f"{agency} issued on this ledger")


def _repeated(receipt: dict[str, Any]) -> bool:
    """A receipt (as JSON) for a transaction the ledger held already."""
    return bool(receipt.get("duplicate"))


def _print_status(receipt: dict[str, Any], cid: bytes, status: str, reason: str,
                  as_json: bool) -> None:
    result = {**receipt, "credential_id": cid.hex(), "status": status, "reason": reason}
    if as_json:
        print(json.dumps(result))
        return
    out.print(Text(f"credential {cid.hex()} is now {status} (reason {reason!r})"),
              soft_wrap=True)
    # the receipt's place in the log as `agency issue` and `ledger prove --index` name it: a
    # bare "index" read as the credential's status index (helper round 36D)
    for name, key in (("txid", "txid"), ("leaf_index", "index"), ("height", "height")):
        # a node's words (--node: any node of the network)
        out.print(Text(printable(f"  {name}: {_cut(result.get(key))}")), soft_wrap=True)


class _Stay(urllib.request.HTTPRedirectHandler):
    """Follows no redirect: urllib would send the operator token (and a request's claims) on
    to wherever a node's address redirects, any host and scheme."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Within(io.RawIOBase):
    """A node's answer as read from its socket, status line and headers too, for at most
    :data:`NODE_ANSWER_WAIT` from the request sent: each read's own timeout is cut to what is
    left of it (a node dripping its headers a byte at a time, each within the 60 s, held a
    command for as long as it liked); past it, :class:`_NodeTooSlow` naming ``url``."""

    def __init__(self, sock: Any, url: str) -> None:
        super().__init__()
        self._sock, self._url = sock, url
        self._raw = sock.makefile("rb", buffering=0)  # the socket's own reader: kept open
        self._each = sock.gettimeout()
        self._deadline = time.monotonic() + NODE_ANSWER_WAIT

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int | None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise _NodeTooSlow(_too_slow(self._url))
        self._sock.settimeout(left if self._each is None else min(self._each, left))
        try:
            got: int | None = self._raw.readinto(b)
        except TimeoutError:
            if time.monotonic() >= self._deadline:
                raise _NodeTooSlow(_too_slow(self._url)) from None
            raise
        return got

    def close(self) -> None:
        self._raw.close()
        super().close()


class _WithinResponse(http.client.HTTPResponse):
    """An HTTP response read through :class:`_Within`."""

    def __init__(self, sock: Any, debuglevel: int = 0, method: str | None = None,
                 url: str | None = None, *, where: str = "") -> None:
        super().__init__(sock, debuglevel, method, url)
        self.fp.close()  # the reader http.client made: this one instead
        self.fp = io.BufferedReader(_Within(sock, where))


def _within(connection: Any, url: str) -> Any:
    """``connection`` (an HTTP(S)Connection class) as urllib makes one, its answers read
    through :class:`_WithinResponse` (``url`` named past the bound)."""

    def make(host: str, **kwargs: Any) -> Any:
        made = connection(host, **kwargs)
        made.response_class = functools.partial(_WithinResponse, where=url)
        return made

    return make


class _WithinHttp(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_within(http.client.HTTPConnection, req.full_url), req)


class _WithinHttps(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_within(http.client.HTTPSConnection, req.full_url), req,
                            context=self._context)  # type: ignore[attr-defined]


def _opener(ca: Path | None = None) -> Any:
    """What the CLI asks a node with: no redirect followed (:class:`_Stay`), each answer read
    within :data:`NODE_ANSWER_WAIT` from the request sent, ``ca`` trusted if given."""
    return urllib.request.build_opener(
        _Stay, _WithinHttp, _WithinHttps() if ca is None else _WithinHttps(
            context=_ca_context(ca)))


_NO_REDIRECTS = _opener()


NODE_ANSWER_MAX = 16 << 20
"""The most of a node's JSON answer the CLI reads (a hostile node's could be endless), as the
wallet's ``MAX_ANSWER``."""


NODE_ANSWER_WAIT = 120.0
"""The longest, in seconds, the CLI reads one answer of a node, its headers too (from the
request sent): each read's own timeout starts again with every byte, and a node dripping its
answer a byte at a time held a command for ever (a submit's answer comes within its 30 s
wait)."""


def _too_slow(url: str) -> str:
    return (f"the node at {url} was still answering after {NODE_ANSWER_WAIT:g} s: no node "
            "answers that slowly (nothing was kept from it)")


class _NodeTooSlow(TimeoutError):
    """A node's answer not read whole within :data:`NODE_ANSWER_WAIT`; the message says so."""


def _read_within(resp: Any, limit: int) -> bytes:
    """Up to ``limit`` + 1 bytes of a node's answer ``resp`` (more is not read: the caller
    refuses it); its time is bounded by the reader :func:`_opener` gives it (:class:`_Within`:
    :class:`_NodeTooSlow` past :data:`NODE_ANSWER_WAIT`). An answer ending before its
    Content-Length is IncompleteRead (read1, as read(n), took it as whole)."""
    body = bytearray()
    while len(body) <= limit:
        chunk = resp.read1(min(1 << 16, limit + 1 - len(body)))
        if not chunk:
            left = getattr(resp, "length", None)  # of the length it gave: cut short
            if left:
                raise http.client.IncompleteRead(bytes(body), left)
            break
        body += chunk
    return bytes(body)


def _http(url: str, data: bytes | None = None, content_type: str = "",
          headers: dict[str, str] | None = None, *, after: str = "", again: str = "") -> Any:
    """One JSON request to a node (stdlib only: the core imports no web client); ``after`` is
    added to a failure's words (what was done before it); ``again``, when given, replaces
    "send it again" and ``after`` where the node took nothing (what exactly to send again)."""
    if not url.startswith(("http://", "https://")):
        _fail(f"--node must be an http(s) URL, not {url!r}", 2)
    sent = dict(headers or {}) | ({"Content-Type": content_type} if content_type else {})
    req = urllib.request.Request(url, data=data, headers=sent)  # noqa: S310 - scheme checked
    # a request sent whose answer is lost or that the node could not finish may have been done
    maybe = "" if data is None else "; the request was sent and may have been done: look " \
        "before sending it again"
    try:
        with _NO_REDIRECTS.open(req, timeout=60) as resp:
            body = _read_within(resp, NODE_ANSWER_MAX)
        if len(body) > NODE_ANSWER_MAX:  # read no further: a node's answer without end
            _fail(f"the node at {url} answered more than {NODE_ANSWER_MAX >> 20} MiB; is it a "
                  f"node?{after}")
        try:
            return json.loads(body)
        except ValueError:  # reached (it was "cannot reach"): an HTML page, a compressed body
            _fail(f"the node at {url} answered with something that is not JSON "
                  f"({_said(body.decode('utf-8', 'replace'))}); is it a node?{after}")
    except RecursionError:
        _fail(f"the node at {url} answered JSON nested too deeply; is it a node?{after}")
    except urllib.error.HTTPError as e:
        if 300 <= e.code < 400:
            _fail(f"the node at {url} redirects ({e.code}) {_redirect_target(e, '--node')} "
                  "(nothing was sent on)" + after)
        code, said, untaken = _refusal(e)
        retry = (e.headers.get("Retry-After") or "").strip() if e.headers else ""
        if e.code >= 500 and retry.isascii() and retry.isdigit() and len(retry) <= 9:
            # a node refusing before it takes anything (NOSPACE, cut off from etcd, busy)
            # says when to come back (node.app): not "may have been done"
            _fail(f"the node refused it for now ({code}): {said}; nothing was taken"
                  + (f"{again} (in {int(retry)} s or later)" if again else
                     f"; send it again in {int(retry)} s or later{after}"))
        if e.code >= 500 and untaken:  # the node says it handed nothing on (ADR 84)
            _fail(f"the node refused it ({code}): {said}; nothing was taken"
                  + (again or f"; send it again{after}"))
        if e.code >= 500:  # not a refusal: a commit not seen within its wait "may commit yet"
            _fail(f"the node could not do it ({code}): {said}{maybe}{after}")
        _fail(f"the node refused it ({code}): {said}{after}")
    except _NodeTooSlow as e:
        _fail(f"{e}{maybe}{after}")
    except (urllib.error.URLError, ValueError) as e:  # URLError: before the request was sent
        _fail(f"cannot reach the node at {url}: {_unreached(e)}{_ca_hint(e)}{after}")
    except OSError as e:  # reached, then the answer lost: reset, closed, timed out
        if data is None:
            _fail(f"the node at {url} gave no whole answer: {e or type(e).__name__}{after}")
        _fail(f"the node at {url} was sent the request, and its answer was lost "
              f"({e or type(e).__name__}){maybe}{after}")
    except http.client.HTTPException as e:  # neither OSError nor URLError: a traceback
        _fail(f"the node at {url} {_not_http(e)}; is it a node?{maybe}{after}")


def _redirect_target(e: urllib.error.HTTPError, option: str = "") -> str:
    """Where a node's redirect ``e`` points, as said after "redirects (302)": its Location cut
    (the node's words: 64 KiB may come) and what to do, or that it has none."""
    where = e.headers.get("Location")
    if where is None:  # json.dumps said it "to null"
        return "with no Location (it points nowhere): is it a node?"
    return (f"to {_said(where, 200)}: give that URL{f' with {option}' if option else ''} if "
            "it is the node")


REFUSAL_SHOWN = 300
"""How much of a node's refusal (its detail) an error line shows, as the wallet's."""


NOT_HTTP_SHOWN = 100
"""How much of the text of an answer that is not HTTP an error line shows: each of
http.client's own texts whole ("got more than 65536 bytes when reading header line")."""


def _not_http(e: http.client.HTTPException) -> str:
    """What is wrong with an answer that is not HTTP, or cut short: its words, a longer text
    by its start and its end, cut at words (a status line may be 64 KiB of a hostile node's
    text; the cause is said at the end of http.client's: cut at 40 characters, "when reading
    h…" lost which line)."""
    text = str(e)
    if len(text) <= NOT_HTTP_SHOWN:
        return f"gave no HTTP answer ({type(e).__name__}: {_said(text, NOT_HTTP_SHOWN)})"
    head, tail = text[:60], text[-30:]
    head = head[:head.rfind(" ")] if " " in head[20:] else head
    tail = tail[tail.find(" ") + 1:] if " " in tail[:-10] else tail
    shown = printable(repr(f"{head} … {tail}"))
    return f"gave no HTTP answer ({type(e).__name__}: {shown} ({len(text)} characters))"


def _refusal(e: urllib.error.HTTPError) -> tuple[object, str, bool]:
    """A node's refusal: its code (the JSON body's, else the HTTP status), its words, once
    (a few KiB of the body are read), and whether it says it took nothing (``"taken":
    false``, ADR 84: the JSON false only; any other value, or none, is not known)."""
    try:
        body = json.loads(_read_within(e, 64 * 1024))
    except (ValueError, OSError, http.client.HTTPException):  # too slow, cut short, not JSON
        body = {}
    finally:
        e.close()  # read or not: its connection (was left open, a ResourceWarning)
    if not isinstance(body, dict):
        body = {}
    code = body.get("code") or e.code
    # a node that answers its health with 503 (halted, a full disk) says why in "problem"
    said = _detail(body.get("detail") or body.get("problem") or e.reason)
    said = said.removeprefix(f"{code}: ")  # a node's own words: one line's worth, not 64 KiB
    code = code if isinstance(code, int) else printable(str(code)[:NODE_WORDS_SHOWN])
    return code, _cut(said, REFUSAL_SHOWN), body.get("taken") is False


def _node_health(node: str) -> dict[str, Any]:
    """A node's ``GET /v1/health``, which names the network and the agency it serves."""
    health = _http(node.rstrip("/") + "/v1/health")
    if not isinstance(health, dict) or not all(isinstance(health.get(k), str)
                                               for k in ("network", "agency")):
        _fail(f"{node} did not answer like a ledger node")
    return health


def _operator_token() -> str:
    token = os.environ.get("LEDGER_OPERATOR_TOKEN", "")
    if not token:
        _fail("set $LEDGER_OPERATOR_TOKEN to the node's operator token", 2)
    return token


def _unreached(e: BaseException) -> str:
    """Why a request did not reach a node, in the system's words: urllib's ``<urlopen error
    [Errno 111] Connection refused>`` as "Connection refused" (a certificate's failure keeps
    its ``[SSL: CERTIFICATE_VERIFY_FAILED] …``)."""
    reason = e.reason if isinstance(e, urllib.error.URLError) else e
    if isinstance(reason, OSError):
        return printable(reason.strerror or str(reason) or type(reason).__name__)
    return printable(str(reason))


def _ca_hint(e: BaseException) -> str:
    """A hint for a node whose certificate this machine does not trust (a network's own CA)."""
    if "CERTIFICATE_VERIFY_FAILED" not in str(e):
        return ""
    return ("; a node of a network with its own CA: set SSL_CERT_FILE to that CA's certificate "
            "(a local cluster's pki/ca.crt)")


NODE_WORDS_SHOWN = 40
"""How much of a node's answer that is not what was asked an error line quotes: enough to see
what it is (an HTML page, another service's error), not a hostile node's MiB."""


def _said(answer: object, limit: int = NODE_WORDS_SHOWN) -> str:
    """A node's answer (or a part of it) in an error line: its start, quoted (a text) or as JSON
    (pure ASCII), unprintable characters escaped, cut at ``limit`` characters (the whole length
    said)."""
    text = answer if isinstance(answer, str) else json.dumps(answer)
    shown = printable(repr(text[:limit]) if isinstance(answer, str) else text[:limit])
    return shown if len(text) <= limit else f"{shown}… ({len(text)} characters)"


def _cut(value: object, limit: int = 80) -> str:
    """A field of a node's receipt as shown (a txid is 64 digits): a hostile node's MiB cut."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _refuse_pending(node: str, got: object, what: str, txid: str | None = None,
                    after: str = "") -> None:
    """Exit 1 (as `agency status` always did) if ``got`` is a node's 202 (``status:
    pending``): it took the ``what`` and its wait ended before the commit. Said as that, with
    where to see later whether it committed: the receipt of ``txid`` (the transaction this
    side signed), else of the node's (its words: shown only as a transaction id)."""
    if not (isinstance(got, dict) and got.get("status") == "pending"):
        return
    its = txid if txid is not None else got.get("txid")
    base = node.rstrip("/")
    if isinstance(its, str) and re.fullmatch(r"[0-9a-f]{64}", its):
        named, check = its, f"GET {base}/v1/tx/{its}/receipt"
    else:
        named, check = _said(its, 64), f"GET {base}/v1/tx/TXID/receipt"
    _fail(f"the node at {node} accepted the {what} but has not committed it yet (pending, "
          f"txid {named}): it may commit later; {check} says whether it did (404 while not "
          f"committed, 409 if refused): look there before sending it again{after}")


def _not_a_receipt(node: str, got: object, what: str, txid: str | None = None) -> NoReturn:
    """Exit 1: ``got``, a node's answer to a submitted ``what``, is no receipt (its words cut:
    a hostile node's answer may be 16 MiB); a 202 said as pending."""
    _refuse_pending(node, got, what, txid)
    _fail(f"the node at {node} did not answer with a receipt for the {what}: it said "
          f"{_said(got)}")


def _detail(detail: Any) -> str:
    """A node's error detail as one line: a schema error (422) as ``where: what`` per problem,
    without the input it echoes (claim values stay off the terminal and its scrollback)."""
    if isinstance(detail, list):
        parts = []
        for item in detail[:5]:
            if isinstance(item, dict):
                where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                parts.append(f"{where or 'request'}: {item.get('msg', 'not valid')}")
        if parts:
            return "; ".join(parts) + ("; …" if len(detail) > 5 else "")
    return printable(str(detail))


@agency_app.command()
def approvals(
    node: Annotated[str, typer.Option("--node", help="The agency's node URL")],
    explain: Annotated[str | None, typer.Option(
        "--explain", metavar="TXID", help="Explain one decision: inputs, the expression that "
                                          "decided, the clauses found false before it, reason "
                                          "(prints claim values). Its transaction id, or the "
                                          "start of it the list shows (8 hex digits or more).")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """List this agency's approval decisions, or explain one (operator token from
    $LEDGER_OPERATOR_TOKEN).

    The list's "in block" (height in --json) is the block the decision is in; its
    "credential" is the start of the decision's approval credential id, which `agency status
    --credential-id` takes ("-" until the credential is issued). An explanation's height and
    time are where the evidence was read (the ledger state the rule saw); its in_block is the
    decision's block. Each cell of the node's words is cut at 40 characters ("…"); --json
    gives them whole.
    """
    token = _operator_token()
    if explain is not None:
        explain = _hex_id(explain, 8, "--explain takes an approval transaction id: 8 to 64 hex "
                                      "digits (its start, as the list shows it)")
    auth = {"Authorization": f"Bearer {token}"}
    if explain is not None and len(explain) < 64:
        listed = _http(node.rstrip("/") + "/v1/approvals", headers=auth)
        if not isinstance(listed, list) or not all(isinstance(a, dict) for a in listed):
            _fail(f"{node} did not answer with a list of decisions; is it a node?", 1)
        hits = [a["approval_tx"] for a in listed
                if str(a.get("approval_tx", "")).startswith(explain)]
        if len(hits) != 1:
            _fail(f"{len(hits) or 'no'} decisions of this node start with {explain}"
                  + ("; give more digits" if hits else ""), 2)
        explain = hits[0]
    path = "/v1/approvals" + (f"/{explain}/explain" if explain else "")
    got = _http(node.rstrip("/") + path, headers=auth)
    if explain or as_json:
        print(json.dumps(got, indent=2 if explain else None, sort_keys=True))
        return
    # "in block": the block the decision is in (an explanation's height is the evidence's);
    # "credential": the start of the approval credential's id, as `agency status
    # --credential-id` takes it ("-" until it is issued)
    if not isinstance(got, list):
        _fail(f"{node} did not answer with a list of decisions; is it a node?", 1)
    if not got:  # a sentence, not the column headings of an empty table
        out.print("This node has recorded no approval decisions yet.")
        return
    table = Table("approval tx", "in block", "service", "decision", "path", "reasons",
                  "credential")
    try:
        for a in got:
            # the node's words as text, never as Rich markup: a reason holding "[/]" ended
            # the command in a MarkupError traceback, and one could restyle the table
            if "damaged" in a:  # a record the node cannot read: what is wrong, and its file
                said = str(a["damaged"])  # (under reasons: its service is what is unread)
                file = str(a["file"])
                table.add_row(*(Text(printable(v)) for v in (
                    str(a.get("approval_tx", "?"))[:16], "-", "-", "damaged", "-",
                    _cut(said, NODE_WORDS_SHOWN) if file in said
                    else f"{_cut(said, NODE_WORDS_SHOWN)} (file {_cut(file, NODE_WORDS_SHOWN)})",
                    "-")))
                continue
            # each cell cut (a reason of a MiB of words wrapped onto thousands of lines); the
            # whole answer with --json or --explain
            table.add_row(*(Text(printable(_cut(v, NODE_WORDS_SHOWN))) for v in (
                a["approval_tx"][:16], a["height"], a["service"], a["decision"], a["path"],
                ", ".join(map(str, a["reasons"])), str(a.get("credential_id") or "-")[:16])))
    except (TypeError, KeyError) as e:
        _fail(f"{node} did not answer with a list of decisions ({type(e).__name__}: "
              f"{printable(str(e))[:80]}); is it a node?", 1)
    out.print(table)


def _subject_identifier(path: Path | None) -> str:
    """The credit subject's identifier, from a file, the terminal or a pipe: never from the
    command line, which other users of the machine can read while it runs. ``-`` is standard
    input, as for other tools that read a file."""
    if path is not None and str(path) == "-":
        path = None
    if path is not None:
        raw = _read_input(path, "subject file")
        try:  # a GBK file (Notepad's default in China) read as replacement characters was
            text = raw.decode("utf-8").strip()  # another subject, its events recorded there
        except UnicodeDecodeError:
            _fail(f"{path} is not UTF-8 text (saved as GBK?): save it as UTF-8; nothing was "
                  "recorded", 2)
    elif sys.stdin.isatty():
        text = typer.prompt("The subject's identifier (person-id number or business "
                            "registration number)").strip()
    else:
        text = sys.stdin.readline(1024).strip()
    if not text:
        _fail("no subject identifier given (--subject-file, or type or pipe it in)", 2)
    return text


@agency_app.command()
def credit(
    node: Annotated[str, typer.Option(
        "--node", help="URL of this agency's running node: it signs with the agency's issuing "
                       "key and keys the subject with the network's credit secret (operator "
                       "token from $LEDGER_OPERATOR_TOKEN).")],
    reason: Annotated[str, typer.Option(
        help="A reason code: 1 to 64 lowercase letters, digits, '.', '_' or '-', e.g. "
             "clean-inspections. Public on the ledger for good: never a name.")],
    category: Annotated[str | None, typer.Option(
        help="A category of the network's credit policy, e.g. permits.")] = None,
    points: Annotated[int | None, typer.Option(
        help="Points the event moves the score by (negative for a fault).",
        min=-1_000_000, max=1_000_000)] = None,
    date: Annotated[str | None, typer.Option(
        help="When it happened: YYYY-MM-DD (UTC) or an ISO 8601 time with its offset "
             "(default: now).")] = None,
    valid_days: Annotated[int, typer.Option(
        help="Days from --date until it stops counting.", min=1, max=100 * 366)] = 3 * 365,
    withdraw: Annotated[str | None, typer.Option(
        metavar="TXID", help="Withdraw this agency's earlier event of the subject (its "
                             "transaction id) instead of recording one.")] = None,
    subject_file: Annotated[Path | None, typer.Option(
        help="A file holding the subject's identifier, or - for standard input (else it is "
             "asked for, or read from a pipe; never on the command line).",
        dir_okay=False)] = None,
    as_json: AsJson = False,
) -> None:
    """Record a credit event of this agency about a citizen or business, or withdraw one.

    The node keeps the subject on the ledger only as a keyed pseudonym (the network's credit
    secret); the agency needs a credit grant for the category, and the reason is public.
    """
    token = _operator_token()
    problem = reason_code_problem(reason)
    if problem is not None:
        _fail(f"--reason: {problem}", 2)
    body: dict[str, Any] = {"reason": reason}
    if withdraw is not None:
        withdraw = _hex_id(withdraw, 64, "--withdraw takes a 64-hex-digit credit event "
                                         "transaction id")
        if category is not None or points is not None or date is not None:
            _fail("--withdraw takes no --category, --points or --date (a withdrawal has the "
                  "event's own)", 2)
        body["withdraws"] = withdraw
    else:
        if category is None or points is None:
            _fail("a credit event needs --category and --points", 2)
        if points == 0:
            _fail("--points: a credit event moves the score (not 0)", 2)
        body |= {"category": category, "points": points, "valid_days": valid_days}
        if date is not None:  # else the node's own now: this machine's clock may be ahead
            try:
                body["date"] = unix_time(date, "--date")
            except DecodeError as e:
                _fail(str(e), 2)
    body["subject"] = _subject_identifier(subject_file)
    got = _http(node.rstrip("/") + "/v1/credit/events", json.dumps(body).encode(),
                "application/json", {"Authorization": f"Bearer {token}"})
    what = "credit withdrawal" if withdraw else "credit event"
    if not isinstance(got, dict) or not all(k in got for k in ("txid", "height")):
        _refuse_pending(node, got, what)
        _fail(f"the node at {node} answered something that is not a receipt for the {what}: "
              f"{_said(got)}")
    if as_json:
        print(json.dumps(got))
        return
    # the node's words: escaped and cut
    out.print(Text(printable(f"credit event {'withdrawn' if withdraw else 'recorded'}: txid "
                             f"{_cut(got['txid'])} at height {_cut(got['height'])}")
                   + (" (it was recorded before)" if got.get("duplicate") else "")),
              soft_wrap=True)


def _agency_key(data: Path, agency: str) -> PrivateKey:
    """The agency's issuer key (decrypted here)."""
    path = _keys_dir(data) / f"{agency}.issuer.key"
    if not path.is_file():
        _fail(f"no issuer key of {agency!r} in {path.parent} (expected {path.name})")
    return _load_key(path, _passphrase())


def _submit_to_node(node: str, tx: Tx, what: str) -> dict[str, Any]:
    got = _http(node.rstrip("/") + "/v1/tx?wait=30", tx.raw, "application/msgpack")
    if not isinstance(got, dict) or "index" not in got:
        _not_a_receipt(node, got, what, tx.txid.hex())
    return got


# -- agency: governance proposals, signed agency by agency (ADR 36) ---------------------------

NodeOpt = Annotated[str | None, typer.Option(
    "--node", help="URL of a running node of the network: read the registry from it instead of "
                   "opening the store in --data, which a running node holds (the agency's key "
                   "file is still read from --data's keys/).")]
SubmitNodeOpt = Annotated[str | None, typer.Option(
    "--node", help="URL of a running node of the network: read the registry from it and submit "
                   "to it, instead of committing in --data, whose store a running node holds.")]


@dataclasses.dataclass(frozen=True)
class _GovView:
    """What a governance command needs of the registry, from the store or from a node."""

    network: str
    quorum: int
    gov_seq: int
    public_keys: dict[bytes, PublicKey]
    owners: dict[bytes, str]
    may_sign: frozenset[bytes]
    """Issuer keys of current agencies, valid now: the keys whose signatures count."""
    roles: dict[bytes, str]
    """Each key's role (node or issuer), by key id."""
    agencies: dict[str, bool]
    """Every agency the registry has held, and whether it is a member (not removed)."""
    registry: Registry | None = None
    """The registry itself, read from ``--data`` (a node's answers do not hold all of it)."""


def _gov_view(data: Path | None, node: str | None) -> _GovView:
    now = _now()
    if node is not None:
        base = node.rstrip("/")
        summary = _http(base + "/v1/registry")
        keys = _http(base + "/v1/registry/keys")
        agencies = _http(base + "/v1/registry/agencies")
        try:
            current = {a["id"] for a in agencies if a.get("current")}
            return _GovView(
                summary["network"], int(summary["quorum"]), int(summary["gov_seq"]),
                {bytes.fromhex(k["kid"]): PublicKey(bytes.fromhex(k["public_key"])) for k in keys},
                {bytes.fromhex(k["kid"]): k["agency"] for k in keys},
                frozenset(bytes.fromhex(k["kid"]) for k in keys
                          if k["role"] == "issuer" and k["agency"] in current
                          and k["valid_from"] <= now
                          and (k["invalid_from"] is None or now < k["invalid_from"])),
                {bytes.fromhex(k["kid"]): k["role"] for k in keys},
                {a["id"]: a["removed"] is None for a in agencies})
        except (AttributeError, KeyError, TypeError, ValueError, LedgerError) as e:
            _fail(f"{node} did not answer like a ledger node: {e!r}")
    if data is None:
        _fail("give --data (the node's data folder) or --node (a running node's URL)", 2)
    with _open(data) as store:
        reg = store.registry
        if reg is None:  # _open checked; for the type checker
            raise typer.Exit(1)
        owners = {kid: a for a in reg.agencies() for kid, _ in reg.keys_of(a)}
        return _GovView(reg.network, reg.quorum, reg.gov_seq, dict(reg.public_keys), owners,
                        frozenset(kid for kid, a in owners.items()
                                  if reg.key_valid(kid, now, "issuer")
                                  and reg.agency_current(a, now)),
                        {kid: k["role"] for a in reg.agencies() for kid, k in reg.keys_of(a)},
                        {a: v["removed"] is None for a, v in reg.agencies().items()}, reg)


def _read_proposal(path: Path, view: _GovView) -> tuple[Tx, list[Signer]]:
    """The proposal in ``path``, for this network's next governance step, every signature
    verified; or the reason it is not (exit 2 for a file that is no proposal, 1 otherwise)."""
    try:
        tx = parse_proposal(_read_input(path, "proposal"))
    except LedgerError as e:
        _fail(f"{path} is not a governance proposal: {e}", 2)
    if tx.net != view.network:
        _fail(f"{path} is a proposal for network {tx.net!r}, not {view.network!r}")
    seq = tx.body["seq"]
    if seq <= view.gov_seq:
        _fail(f"{path} proposes governance #{seq}, but the ledger is already at #{view.gov_seq}: "
              "it is stale (committed, or overtaken by another proposal); propose it again")
    if seq > view.gov_seq + 1:
        _fail(f"{path} proposes governance #{seq}, but the next is #{view.gov_seq + 1}: is this "
              "registry behind?")
    try:
        found = signers(tx, view.public_keys, view.owners)
    except LedgerError as e:
        _fail(f"a signature on {path} does not verify: {e}")
    return tx, found


def _refuse_unclear_rule(proposal: Path, tx: Tx) -> None:
    """A rule whose text a string claim could not hold would never match one (ADR 53): not
    signed, not submitted (``agency propose`` refuses to write it)."""
    unclear = rule_text_problem(tx)
    if unclear is not None:
        _fail(f"{proposal} registers a rule that would never match a claim: {unclear}; "
              "propose it again with the text fixed")
    costly = rule_cost_of(tx)
    if costly is not None:
        _fail(f"{proposal} registers a rule that would cost too much at every application "
              f"(nodes refuse it): {costly}; propose a cheaper version")


_MEMBER_ACTIONS = frozenset({"remove_agency", "rotate_key", "grant", "grant_credit"})
"""Governance actions on ``args.agency`` that the ledger refuses unless it is a member (as
``register_rule`` on ``args.rule.agency``)."""


def _agency_problem(tx: Tx, view: _GovView) -> str | None:
    """Why the ledger will refuse ``tx`` for the agency it names: one that is no member (never
    admitted, or removed), or an ``add_agency`` of an id the registry holds already; or None.
    A proposal is numbered for the registry in ``view`` (its next step), the registry the
    ledger applies it to: this is known before anyone signs."""
    args, action = tx.body["args"], tx.body["action"]
    if action == "add_agency":
        aid = args["agency"]["id"]
        if aid in view.agencies:
            return (f"agency {aid!r} is on {view.network!r} already" if view.agencies[aid]
                    else f"agency {aid!r} was removed from {view.network!r}, and an agency id "
                         "is never given again")
        return None
    aid = (args["rule"]["agency"] if action == "register_rule"
           else args["agency"] if action in _MEMBER_ACTIONS else None)
    if aid is None or view.agencies.get(aid, False):
        return None
    members = ", ".join(sorted(a for a, member in view.agencies.items() if member))
    return (f"agency {aid!r} " + ("was removed from" if aid in view.agencies
                                  else "is not an agency of") +
            f" {view.network!r} (members: {members})")


def _ledger_refusal(tx: Tx, view: _GovView) -> str | None:
    """Why the ledger will refuse ``tx`` whoever signs it, or None: :func:`_agency_problem`,
    then, with the registry at hand (``--data``), the change applied to it now as a block
    would (a grant of a type not registered, a key registered already, a quorum more than the
    agencies that can sign, …). It is known before anyone signs; a registry read from a node
    is checked for the agency alone."""
    problem = _agency_problem(tx, view)
    if problem is not None or view.registry is None:
        return problem
    try:
        registry_after(view.registry, tx, _now())
    except TxRejected as e:
        return f"{e.message} ({e.code})"
    except RuleEngineMissing:  # no rule engine installed: the node checks the rule
        return None
    return None


def _counted(found: list[Signer], view: _GovView) -> list[str]:
    """The distinct agencies whose signatures count toward the quorum."""
    return sorted({s.agency for s in found if s.agency is not None and s.kid in view.may_sign})


def _refuse_dead_signatures(proposal: Path, found: list[Signer], view: _GovView) -> None:
    """The ledger refuses a governance transaction with any signature that may not sign now
    (a key rotated or invalidated since, an agency removed): say so before signing or
    submitting, instead of counting the others and meeting a rejection at commit."""
    dead = [s for s in found if s.kid not in view.may_sign]
    if dead:
        who = ", ".join(f"{s.agency or 'an unknown key'} (key {s.kid.hex()[:16]})" for s in dead)
        _fail(f"{proposal} carries signatures that may not sign on {view.network!r} now: {who}. "
              "The ledger refuses a governance transaction with any such signature; propose "
              "the change again (agency propose) and have it cosigned afresh")


def _signer_key(data: Path, agency: str, view: _GovView) -> PrivateKey:
    path = _keys_dir(data) / f"{agency}.issuer.key"
    if not path.is_file():
        _fail(f"no issuer key of {agency!r} in {path.parent} (expected {path.name})")
    key = _load_key(path, _passphrase())
    owner = view.owners.get(key.kid)
    if owner is not None and owner != agency:
        # said as --agency's signature, counted by the ledger as the owner's
        _fail(f"{path.name} holds the issuer key of {owner!r}, not of {agency!r}: nothing "
              "signed (put that agency's own key file in its place)")
    if key.kid not in view.may_sign:
        _fail(f"{path.name} is not a current issuer key of a member agency on "
              f"{view.network!r}: its signature would not count")
    return key


def _show_proposal(tx: Tx, found: list[Signer], view: _GovView) -> None:
    for line in describe(tx, _now()):
        out.print(Text(printable(line)), soft_wrap=True)
    if tx.body["action"] == "invalidate_key":  # 64 hex digits say nothing to a person
        kid = tx.body["args"]["kid"]
        owner = view.owners.get(kid)
        out.print(Text(f"  kid is the {view.roles[kid]} key of {owner!r}" if owner is not None
                       else "  kid is no key the registry knows (the ledger refuses it)"),
                  soft_wrap=True)
    names = ", ".join(s.agency or s.kid.hex()[:16] for s in found)
    out.print(Text(f"signed by {len(_counted(found, view))} of the {view.quorum} agencies needed"
                   f" ({names})"), soft_wrap=True)


@agency_app.command()
def keygen(
    out_file: Annotated[Path, typer.Option("--out", help="The key file to write (encrypted with "
                                                         f"${PASSPHRASE_ENV}, the file "
                                                         f"${PASSPHRASE_ENV}_FILE names, or a "
                                                         "prompt).")],
    force: ForceOpt = False,
    as_json: AsJson = False,
) -> None:
    """Make a new Ed25519 key file and print its public key and key id, for a governance
    proposal: a new agency's node and issuer keys (add_agency), or a key to rotate to
    (rotate_key). Put it in place of the old key file once the change is committed."""
    _check_out(out_file, force)
    try:
        passphrase = read_passphrase(f"Passphrase for the new key file (or set "
                                     f"{PASSPHRASE_ENV}): ", confirm=True)
    except KeyFileError as e:
        _fail(str(e))
    key = PrivateKey.generate()
    try:
        save_private_key(out_file, key, passphrase, overwrite=force)
    except FileExistsError:
        _written_meanwhile(out_file)
    result = {"file": str(out_file), "public_key": key.public.raw.hex(), "kid": key.kid.hex()}
    if as_json:
        print(json.dumps(result))
        return
    out.print(Text(f"new key → {out_file}\n  public_key: {result['public_key']}\n"
                   f"  kid: {result['kid']}"), soft_wrap=True)


@agency_app.command()
def propose(
    action: Annotated[str, typer.Argument(
        help=f"The governance action: {', '.join(sorted(GOV_ACTIONS))}.")],
    args_file: Annotated[Path, typer.Option(
        "--args", exists=True, dir_okay=False,
        help="A JSON object with the action's arguments. Keys and key ids (node_key, issuer_key, "
             "new_key, kid) as 64 hex digits; times (from, until, at) as Unix times (JSON "
             "numbers), dates YYYY-MM-DD (UTC) or ISO 8601 times with their offset. Numbers are "
             "integers.")],
    data: DataOpt,
    agency: AgencyOpt,
    out_file: Annotated[Path, typer.Option("--out", help="The proposal file to write.")],
    node: NodeOpt = None,
    force: ForceOpt = False,
) -> None:
    """Propose a governance change and sign it first; pass the file to the other agencies.

    The proposal is the governance transaction itself, numbered as the registry's next step and
    signed with this agency's issuer key. Each other agency adds its signature with `agency
    cosign`; once the quorum has signed, any of them commits it with `agency submit`.
    """
    _check_out(out_file, force)
    if action not in GOV_ACTIONS:
        _fail(f"unknown governance action {action!r} (one of {', '.join(sorted(GOV_ACTIONS))})",
              2)
    try:
        args = args_from_json(_read_json_object(args_file, "arguments"))
    except DecodeError as e:
        _fail(f"bad arguments in {args_file}: {e}", 2)
    view = _gov_view(data, node)
    key = _signer_key(data, agency, view)
    try:
        tx = propose_tx(view.network, view.gov_seq + 1, action, args, key)
    except (DecodeError, TypeError, ValueError) as e:  # the last two: values with no encoding
        _fail(f"the arguments do not fit {action!r}: {e}", 2)
    unclear = rule_text_problem(tx) or rule_cost_of(tx)
    if unclear is not None:
        _fail(f"bad arguments in {args_file}: {unclear}", 2)
    doomed = _ledger_refusal(tx, view)
    if doomed is not None:  # signed by the quorum, then refused at commit
        _fail(f"bad arguments in {args_file}: {doomed}; the ledger would refuse it, so no "
              "proposal was written", 2)
    _write_out(out_file, tx.raw, 0o644, force)
    _show_proposal(tx, [Signer(key.kid, agency)], view)
    out.print(Text(f"proposal → {out_file}; next: " + (
        f"agency cosign {out_file} --data … --agency …" if view.quorum > 1 else
        f"agency submit {out_file} --data … | --node … (a quorum of 1: signed enough)")),
        soft_wrap=True)


@agency_app.command()
def cosign(
    proposal: Annotated[Path, typer.Argument(help="The proposal file (signed in place).",
                                             exists=True, dir_okay=False)],
    data: DataOpt,
    agency: AgencyOpt,
    node: NodeOpt = None,
    yes: Annotated[bool, typer.Option("--yes", help="Sign without asking.")] = False,
) -> None:
    """Check a governance proposal, show what it does, and add this agency's signature.

    Every signature already on it is verified against the registry, and a proposal for another
    network or an outdated step is refused, before anything is signed.
    """
    view = _gov_view(data, node)
    before = _read_input(proposal, "proposal")
    tx, found = _read_proposal(proposal, view)
    _show_proposal(tx, found, view)
    _refuse_dead_signatures(proposal, found, view)
    _refuse_unclear_rule(proposal, tx)
    doomed = _ledger_refusal(tx, view)
    if doomed is not None:
        _fail(f"not signed: {doomed}, so the ledger would refuse {proposal} whoever signed it")
    key = _signer_key(data, agency, view)
    if any(s.kid == key.kid for s in found):
        out.print(Text(f"{agency!r} has signed it already; nothing changed"), soft_wrap=True)
        return
    if len(tx.sigs) >= MAX_SIGS:  # one more could never be read again (ADR 48)
        _fail(f"not signed: the proposal carries {len(tx.sigs)} signatures, the most a "
              f"transaction can; the quorum needs {view.quorum}: submit it as it is "
              f"(agency submit {proposal})")
    try:  # before asking: a signature that takes it past the size limit is never added
        signed = tx.sign(key)
    except DecodeError as e:
        _fail(f"not signed: {e}; the quorum needs {view.quorum}: propose the change again "
              "smaller (a rule with fewer or shorter clauses)")
    try:
        agreed = yes or confirm(f"Sign this as {agency!r}?")
    except KeyboardInterrupt:
        err.print("not signed")
        raise typer.Exit(130) from None
    if not agreed:
        _fail("not signed (answer y to sign, or give --yes)")
    # Two agencies signing one shared file at once: the later write would drop the earlier
    # signature. Under a lock on the file, it is written only if it is still what was read.
    with proposal.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if _read_input(proposal, "proposal") != before:
            _fail(f"not signed: {proposal} changed since it was read (another agency signing "
                  "it?); run agency cosign again")
        write_atomic(proposal, signed.raw, 0o644)
    found.append(Signer(key.kid, agency))
    have = len(_counted(found, view))
    out.print(Text(f"signed by {agency!r}: {have} of the {view.quorum} agencies needed"
                   + (f"; next: agency submit {proposal} --data … | --node …"
                      if have >= view.quorum else "")),
              soft_wrap=True)


@agency_app.command()
def submit(
    proposal: Annotated[Path, typer.Argument(help="The proposal file.", exists=True,
                                             dir_okay=False)],
    data: Annotated[Path | None, typer.Option(
        "--data", exists=True, file_okay=False,
        help="The node's data folder: commit in this process (embedded mode, no node "
             "running), its node keys co-signing the checkpoint.")] = None,
    node: SubmitNodeOpt = None,
    as_json: AsJson = False,
) -> None:
    """Commit a governance proposal that the quorum has signed."""
    view = _gov_view(None if node is not None else data, node)
    tx, found = _read_proposal(proposal, view)
    _refuse_dead_signatures(proposal, found, view)
    _refuse_unclear_rule(proposal, tx)
    have = _counted(found, view)
    if len(have) < view.quorum:
        _fail(f"{proposal} is signed by {len(have)} of the {view.quorum} agencies needed "
              f"({', '.join(have) or 'none that count'}): more must cosign it first")
    if node is not None:
        receipt = _http(node.rstrip("/") + "/v1/tx?wait=30", tx.raw, "application/msgpack")
        if not isinstance(receipt, dict) or "index" not in receipt:
            _not_a_receipt(node, receipt, "proposal", tx.txid.hex())
    else:
        assert data is not None  # _gov_view refused neither
        with _open(data) as store:
            if store.registry is None:  # _open checked; for the type checker
                raise typer.Exit(1)
            node_signers = _node_signers(_keys_dir(data), store.registry, _now(), _passphrase())
            try:
                receipt = _commit(store, node_signers, tx).to_json()
            except TxRejected as e:
                _fail(f"rejected ({e.code}): {e.message}")
            except LedgerError as e:  # the block not written (a full disk): no traceback
                _fail(f"{proposal} was not committed to the store in {data}: {e}")
    result = {**receipt, "seq": tx.body["seq"], "action": tx.body["action"], "signers": have}
    if as_json:
        print(json.dumps(result))
        return
    out.print(Text(f"governance #{tx.body['seq']} ({tx.body['action']}) committed, signed by "
                   f"{', '.join(have)}"), soft_wrap=True)
    for name in ("txid", "index", "height"):  # with --node, that node's words: cut
        out.print(Text(printable(f"  {name}: {_cut(result.get(name))}")), soft_wrap=True)


def ledger_main() -> None:
    run_cli(ledger_app)


def agency_main() -> None:
    run_cli(agency_app)
