"""``wallet``: the citizen's encrypted credential wallet (built with the credentials issue)."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(help="The citizen's encrypted credential wallet.", no_args_is_help=True,
                  add_completion=False)
err = Console(stderr=True)


@app.command()
def init() -> None:
    """Create an encrypted wallet and a holder key (credentials issue #3)."""
    err.print("[yellow]not built yet:[/] the wallet arrives with the credentials issue. "
              "Nothing was done.")
    raise typer.Exit(2)


@app.command()
def present() -> None:
    """Present only the requested claims to a verifier (credentials issue #3)."""
    err.print("[yellow]not built yet:[/] presentations arrive with the credentials issue. "
              "Nothing was done.")
    raise typer.Exit(2)


def main() -> None:
    app()
