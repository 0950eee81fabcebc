"""What the four command lines' ``--help`` shows: every option's help text as written (round 43D).

The help is drawn with Rich, which reads ``[word ...]`` as a markup tag and drops it: `ledger-node
init --help` showed `--config-out` as "Where to write the config." with its default lost."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

BIN = Path(sys.executable).parent
TAG = re.compile(r"(?<!\\)\[([a-z#/@][^\[]*?)\]")  # what Rich's markup takes for a tag


def _apps() -> dict[str, typer.Typer]:
    from ledger.cli import agency_app, ledger_app
    from node.cli import app as node_app
    from wallet.cli import app as wallet_app
    return {"ledger-node": node_app, "agency": agency_app, "wallet": wallet_app,
            "ledger": ledger_app}


def _commands(path: list[str], cmd: Any) -> Iterator[tuple[list[str], Any]]:
    """Every command under ``cmd`` with its words (Typer's own click: no click types)."""
    yield path, cmd
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        yield from _commands([*path, name], sub)


def _options(cmd: Any) -> list[Any]:
    return [p for p in cmd.params if p.param_type_name == "option"]


def _shown(args: list[str]) -> str:
    """``args --help`` as a reader sees it, the box drawing and line breaks taken out."""
    out = subprocess.run([str(BIN / args[0]), *args[1:], "--help"], check=False,
                         capture_output=True, text=True, timeout=120,
                         env={"COLUMNS": "120", "PATH": str(BIN)})
    assert out.returncode == 0, out.stderr
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", out.stdout).split())


def test_no_help_text_holds_what_rich_would_take_for_a_tag() -> None:
    """A help text with ``[default: node.toml]`` in it lost those words on the screen."""
    found = []
    for prog, app in _apps().items():
        for path, cmd in _commands([prog], typer.main.get_command(app)):
            texts = [cmd.help or ""] + [p.help or "" for p in _options(cmd)]
            found += [f"{' '.join(path)}: {m.group(0)}" for t in texts for m in TAG.finditer(t)]
    assert found == []


def test_init_help_says_where_the_config_goes_and_that_a_new_network_needs_a_new_folder(
) -> None:
    """`ledger-node init --help` gave --config-out no default (the README: it "writes
    node.toml", in the current folder) and called --data "an existing node data folder",
    where --new-network refuses any folder that is not empty."""
    shown = _shown(["ledger-node", "init"])
    assert "default: node.toml in the current folder" in shown
    assert "with --new-network, a new or empty folder" in shown


@pytest.mark.parametrize("prog", ["ledger-node", "agency", "wallet", "ledger"])
def test_every_subcommand_help_renders(prog: str) -> None:
    """Each subcommand's --help runs (exit 0) and shows each option's help text whole (a
    bracket Rich took for a tag was cut out of it)."""
    app = _apps()[prog]
    for path, cmd in _commands([prog], typer.main.get_command(app)):
        if len(path) == 1:
            continue
        shown = _shown(path)
        for p in _options(cmd):
            if p.help and not p.hidden:
                text = " ".join(p.help.split())
                assert text in shown, (path, p.name, text)


def test_every_option_the_readme_and_docs_give_a_command_is_one_it_takes() -> None:
    """Each `PROG SUB [SUBSUB] ... --option` written in README.md or docs/*.md (a line, or
    lines joined by a trailing backslash) names an option that subcommand has, so a renamed
    or removed option cannot stay in the docs (round 43D walked them by hand)."""
    root = Path(__file__).parents[1]
    tree = {prog: typer.main.get_command(app) for prog, app in _apps().items()}
    call = re.compile(r"\b(ledger-node|agency|wallet|ledger)\s+([a-z][a-z-]+)([^`|#;&)]*)")
    wrong, seen = [], 0
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        text = re.sub(r"\\\n", " ", doc.read_text())
        for line in text.splitlines():
            for m in call.finditer(line):
                prog, sub, rest = m.groups()
                cmd = getattr(tree[prog], "commands", {}).get(sub)
                if cmd is None:
                    continue
                for word in rest.split():  # a group's subcommand, also after its options
                    if word in getattr(cmd, "commands", {}):
                        cmd = cmd.commands[word]
                    elif word.startswith("--"):
                        opt = re.match(r"--[a-z][a-z0-9-]*", word)
                        if opt is None:
                            continue
                        seen += 1
                        takes = {o for p in cmd.params for o in
                                 [*getattr(p, "opts", []), *getattr(p, "secondary_opts", [])]}
                        if opt.group(0) not in takes | {"--help"}:
                            wrong.append(f"{doc.name}: {prog} {sub}: {opt.group(0)}")
    assert seen > 100, seen  # the docs were read
    assert wrong == [], wrong
