"""``ledger-node``: run and operate an agency's ledger node."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ledger.errors import LedgerError
from ledger.keys import PASSPHRASE_ENV, read_passphrase

app = typer.Typer(help="Run and operate an agency's ledger node (node operators).",
                  no_args_is_help=True, add_completion=False)
err = Console(stderr=True)


def _not_yet(what: str) -> None:
    err.print(f"[yellow]not built yet:[/] {what}. Nothing was done.")
    raise typer.Exit(2)


@app.command()
def demo(
    data: Annotated[Path, typer.Option(help="Demo data folder (an earlier demo there is "
                                            "replaced).")] = Path("demo-data"),
) -> None:
    """Create a three-agency demo network (solo ordering, LevelDB) and prove an anchor.

    Key files are encrypted with the passphrase from $LEDGER_KEY_PASSPHRASE or a prompt.
    """
    from node.demo import run_demo

    passphrase = read_passphrase(f"Passphrase for the demo key files (or set {PASSPHRASE_ENV}): ",
                                 confirm=True)
    try:
        run_demo(data, passphrase, clock=lambda: int(time.time()))
    except LedgerError as e:
        err.print(f"[red]demo failed:[/] {e}")
        raise typer.Exit(1) from e


@app.command()
def run(config: Annotated[Path, typer.Option(help="Node config file (TOML).")] = Path(
        "node.toml")) -> None:
    """Run the node's HTTP service (issue #4)."""
    _not_yet("the HTTP node service (`ledger-node run`) arrives with the node-service issue")


@app.command()
def init() -> None:
    """Write a node config, keys and (for a new network) a genesis (issue #4)."""
    _not_yet("`ledger-node init` arrives with the node-service issue")


@app.command()
def pki() -> None:
    """Create the network CA and per-agency certificates (issue #5)."""
    _not_yet("`ledger-node pki` arrives with the multi-agency (etcd) issue")


@app.command()
def cluster() -> None:
    """Start a local N-agency network on etcd (issue #5)."""
    _not_yet("`ledger-node cluster` arrives with the multi-agency (etcd) issue")


def main() -> None:
    app()
