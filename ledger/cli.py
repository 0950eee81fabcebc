"""Command lines of the core package: ``ledger`` (verifying officials, auditors) and ``agency``
(issuing agencies). Subcommands whose capability is not built yet say so and exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ledger import merkle
from ledger.checkpoint import SignedCheckpoint
from ledger.errors import LedgerError
from ledger.finality import verify_final
from ledger.store import Store

ledger_app = typer.Typer(help="Inspect and check a ledger (verifying officials and auditors).",
                         no_args_is_help=True, add_completion=False)
agency_app = typer.Typer(help="Issue, revoke and suspend credentials (issuing agencies).",
                         no_args_is_help=True, add_completion=False)
out = Console()
err = Console(stderr=True)

DataArg = Annotated[Path, typer.Argument(help="A node's data folder or its LevelDB store.",
                                         exists=True, file_okay=False)]


def _not_yet(what: str) -> None:
    err.print(f"[yellow]not built yet:[/] {what}. Nothing was done.")
    raise typer.Exit(2)


def _open(data: Path) -> Store:
    if not (data / "CURRENT").exists() and (data / "ledger" / "CURRENT").exists():
        data = data / "ledger"  # a node's data folder rather than its store
    try:
        store = Store(data, create=False)
    except LedgerError as e:
        err.print(f"[red]cannot open the store:[/] {e}")
        raise typer.Exit(1) from e
    if store.head is None:
        store.close()
        err.print(f"[red]{data} holds no chain yet[/]")
        raise typer.Exit(1)
    return store


@ledger_app.command()
def head(data: DataArg,
         as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False
         ) -> None:
    """Show the head block and the latest checkpoint, checking the checkpoint's quorum."""
    with _open(data) as store:
        if store.head is None or store.registry is None:  # _open checked; for the type checker
            raise typer.Exit(1)
        header = store.block(store.head.height)
        text = store.checkpoint()
        final: list[str] = []
        problem = ""
        if text is not None:
            try:
                signed = SignedCheckpoint.from_text(text.decode())
                final = sorted(verify_final(signed, store.registry, store.head.time))
            except LedgerError as e:
                problem = str(e)
        if as_json:
            print(json.dumps({"head": header.to_json(), "checkpoint": text.decode() if text
                              else None, "final_signers": final, "problem": problem or None}))
        else:
            out.print(header.to_json())
            if text:
                out.print(text.decode(), markup=False, highlight=False, soft_wrap=True)
            out.print(f"[red]checkpoint not final:[/] {problem}" if problem else
                      f"checkpoint final, signed by {', '.join(final)}")
        if problem:
            raise typer.Exit(1)


@ledger_app.command()
def prove(data: DataArg,
          index: Annotated[int, typer.Option(help="Leaf index of the transaction.")],
          size: Annotated[int | None, typer.Option(help="Tree size (default: the head).")] = None
          ) -> None:
    """Print the RFC 9162 inclusion proof of a log entry and verify it."""
    with _open(data) as store:
        if store.head is None:  # _open checked; for the type checker
            raise typer.Exit(1)
        n = size or store.head.log_size
        try:
            proof = store.inclusion_proof(index, n)
            root = store.root_at(n)
            merkle.verify_inclusion(merkle.leaf_hash(store.entry(index)), index, n, proof, root)
        except LedgerError as e:
            err.print(f"[red]{e}[/]")
            raise typer.Exit(1) from e
        print(json.dumps({"index": index, "size": n, "root": root.hex(),
                          "proof": [h.hex() for h in proof], "verified": True}, indent=2))


@ledger_app.command()
def verify() -> None:
    """Verify a citizen's presentation against a request (credentials issue #3)."""
    _not_yet("`ledger verify` arrives with the credentials issue")


@ledger_app.command()
def audit() -> None:
    """Replay a chain from genesis and report any broken block (auditor issue #7)."""
    _not_yet("`ledger audit` arrives with the auditor's tools issue")


@agency_app.command()
def issue() -> None:
    """Issue an SD-JWT VC and anchor it (credentials issue #3)."""
    _not_yet("`agency issue` arrives with the credentials issue")


@agency_app.command()
def status() -> None:
    """Revoke, suspend or reinstate a credential (credentials issue #3)."""
    _not_yet("`agency status` arrives with the credentials issue")


def ledger_main() -> None:
    ledger_app()


def agency_main() -> None:
    agency_app()
