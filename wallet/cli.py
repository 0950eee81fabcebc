"""``wallet``: the citizen's encrypted credential wallet on the command line.

The passphrase comes from ``$WALLET_PASSPHRASE``, the file ``$WALLET_PASSPHRASE_FILE`` names,
or is asked on the terminal; the wallet file
from ``--wallet``, ``$WALLET_PATH`` or ``~/.credledger/wallet.db``. Claim values are printed by
``wallet show`` only. Exit codes: 0 done, 1 refused or failed (the message says why), 2 usage.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape as _markup_escape
from rich.table import Table

from ledger.display import printable
from ledger.errors import LedgerError
from ledger.files import NOT_STDOUT, confirm, make_folders, run_cli
from ledger.timetext import local_text
from wallet.errors import WalletError

if TYPE_CHECKING:
    from wallet.core import CredentialInfo

PASSPHRASE_ENV = "WALLET_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret
PATH_ENV = "WALLET_PATH"
APPLY_WAIT = 180.0
"""Seconds `wallet apply` waits for the node's answer to the presentations. The node answers
once it committed the decision and the approval credential's anchor and (replicated) saw a
final checkpoint cover it: up to 75 s on a slow cluster. Given up on sooner (it was 60 s),
the decision commits all the same and its credential, given once, reaches no one."""

app = typer.Typer(
    pretty_exceptions_show_locals=False,
    help="The citizen's encrypted credential wallet: keep credentials that agencies issue you, "
         "and show a verifier only the claims it asks for.\n\n"
         f"The passphrase is read from ${PASSPHRASE_ENV}, else from the file "
         f"${PASSPHRASE_ENV}_FILE names, else asked on the terminal. "
         "Exit codes: 0 done, 1 refused or failed, 2 usage error.",
    no_args_is_help=True, add_completion=False)
# emoji=False: ":lock:" in a verifier's text must show as typed, not as a picture
out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


class _State:
    wallet_option: Path | None = None


_state = _State()


def escape(text: str) -> str:
    """Outside text for a Rich line: control characters made visible, then markup escaped."""
    return _markup_escape(printable(text))


def _name(text: str) -> str:
    """A credential's type or issuer (an outside issuer's words) for a Rich line: escaped,
    and a run of spaces as one, so that padding cannot wrap a tail onto a line of its own
    that reads as the wallet's (a credential's dates and state in `wallet list`)."""
    return _markup_escape(" ".join(printable(text).split()))


_OUTSIDE = " (outside the network)"
"""After the issuer of a credential from outside the network: that issuer chose its own name,
which may be a network agency's."""


def _from(info: Any) -> str:
    """``<type> from <issuer>`` for a Rich line, marked when the credential is from outside the
    network (an outside issuer named ``civil`` read as the network's agency)."""
    return f"{_name(info.type)} from {_name(info.issuer)}{_OUTSIDE if info.foreign else ''}"


def _flat(text: str, limit: int) -> str:
    """Outside text on one line: unprintable characters as escapes (a terminal's ESC
    sequences among them), runs of spaces as one, cut at ``limit``."""
    flat = " ".join(printable(text).split())
    return flat if len(flat) <= limit else flat[:limit] + "…"


def _shown(text: str, limit: int = 120) -> str:
    """A verifier's audience or nonce in a prompt: quoted, runs of spaces as one, cut at
    ``limit``, so padding cannot push fake lines into the preview."""
    return "“" + _markup_escape(_flat(text, limit)) + "”"


def _quoted(text: str, limit: int = 120) -> str:
    """A node's words in an error line (escaped as markup where it is printed): quoted and
    :func:`_flat`. A node's collect challenge put its audience, ESC sequences and all, on the
    terminal."""
    return repr(_flat(text, limit))


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def _names(names: Sequence[str], none: str) -> str:
    """Claim names for a preview line, joined by commas, ``none`` if there are none. A name
    an outside issuer chose freely (spaces, a comma) is quoted as :func:`_shown` quotes: else
    ``"x, given_name"`` read as two names, and padding wrapped ``(no claim)`` onto a line
    that read as the wallet's."""
    return ", ".join(n if _PLAIN_NAME.fullmatch(n) else _shown(n) for n in names) or none


def _wallet_path() -> Path:
    """The wallet file: --wallet, $WALLET_PATH, or the default (UsageError without a HOME)."""
    return _state.wallet_option if _state.wallet_option is not None else _default_path()


def _default_path() -> Path:
    home = os.environ.get("HOME")
    if home is not None and not os.path.isabs(home):  # HOME= would make it /.credledger
        from wallet.errors import UsageError
        raise UsageError(f"$HOME is {home!r}, not a folder's full path: name the wallet with "
                         "--wallet or $WALLET_PATH")
    return Path.home() / ".credledger" / "wallet.db"


@app.callback()
def _main(
    wallet: Annotated[Path | None, typer.Option(
        "--wallet", envvar=PATH_ENV, dir_okay=False,
        help="Wallet file (default: ~/.credledger/wallet.db)")] = None,
) -> None:
    _state.wallet_option = wallet  # the default is worked out when a command opens it


@contextmanager
def _errors() -> Iterator[None]:
    """Turn the wallet's and ledger's errors into one red line and exit code 1."""
    from wallet.errors import UsageError

    try:
        yield
    except LedgerError as e:
        err.print(f"[red]error:[/] {escape(str(e))}")
        raise typer.Exit(2 if isinstance(e, UsageError) else 1) from e
    except OSError as e:
        err.print(f"[red]error:[/] {escape(e.strerror or str(e))}"
                  f"{': ' + escape(str(e.filename)) if e.filename else ''}")
        raise typer.Exit(1) from e


def _make_folder(path: Path) -> None:
    """Create the wallet's folder (0700) if missing; a file in its place is said as such."""
    from wallet.errors import WalletError

    try:
        make_folders(path.parent, 0o700)
    except (FileExistsError, NotADirectoryError) as e:
        raise WalletError(f"cannot keep a wallet in {path.parent}: a file is in the way "
                          "(a folder is needed there)") from e


def _passphrase(*, confirm: bool = False) -> bytes:
    from ledger.errors import KeyFileError
    from ledger.keys import read_passphrase
    from wallet.errors import WalletError

    try:
        return read_passphrase("Wallet passphrase: ", confirm=confirm, env=PASSPHRASE_ENV)
    except KeyFileError as e:
        raise WalletError(str(e)) from e


def _open() -> Any:
    from wallet.core import Wallet

    return Wallet.open(_wallet_path(), _passphrase())


def _read_file(path: Path, what: str) -> bytes:
    """An input file the command was given, whole; one it cannot read as one (missing, a
    folder, over 64 MiB) is bad input, exit 2, as `ledger` says of its own files."""
    from wallet.core import read_at_most
    from wallet.errors import UsageError, WalletError
    from wallet.store import MAX_FILE

    try:
        # MAX_FILE: the largest of what is read here (a wallet backup; a snapshot's own
        # limit is the same 64 MiB), so nothing that could be one is refused
        return read_at_most(path, MAX_FILE, f"the {what}")
    except OSError as e:
        raise UsageError(f"cannot read the {what} {path}: {e.strerror or e}") from e
    except WalletError as e:  # over MAX_FILE
        raise UsageError(str(e)) from e


def _date(t: int) -> str:
    """A time as this machine's clock shows it (its zone's offset named): a holder reads
    validity in their own day, not UTC's."""
    return local_text(t, None, seconds=False)


def _dates(c: CredentialInfo, now: int) -> str:
    """What ``wallet list`` and ``remove`` say of a credential's dates at ``now``: its state as
    a verifier says it (the verifiers' clock skew at each end), and, within that skew, that
    its dates themselves say otherwise (a bare "valid" beside an end already past read as
    untrue, and a verifier checking a minute later refuses it)."""
    from ledger.sdjwt import CLOCK_SKEW

    state = c.state(now)
    if state == "valid" and now >= c.valid_until:
        return f"ended: verifiers allow {CLOCK_SKEW} s"
    if state == "valid" and now < c.valid_from:
        return f"not started: verifiers allow {CLOCK_SKEW} s"
    return state


def _ended_note(c: CredentialInfo, now: int) -> str:
    """``wallet present``'s words for a credential whose end is past but within the verifiers'
    clock skew (one a verifier takes now, and refuses a minute later); else empty."""
    from ledger.sdjwt import CLOCK_SKEW

    if c.state(now) != "valid" or now < c.valid_until:
        return ""
    return (f"this credential ended (valid {_date(c.valid_from)} to {_date(c.valid_until)}): "
            f"a verifier allows {CLOCK_SKEW} s for clock differences, so one that checks it at "
            "once takes it, one that checks it later refuses it")


def _confirm(question: str, yes: bool) -> None:
    from wallet.errors import WalletError

    if yes:
        return
    if not sys.stdin.isatty():
        raise WalletError("confirmation needed: run on a terminal, or pass --yes")
    try:
        agreed = confirm(question)
    except KeyboardInterrupt:
        err.print("Nothing was done.")
        raise typer.Exit(130) from None
    if not agreed:
        err.print("Nothing was done.")
        raise typer.Exit(1)


@app.command()
def init() -> None:
    """Create a new encrypted wallet with a fresh holder key (never overwrites one)."""
    from wallet.core import Wallet
    from wallet.errors import WalletFileError

    with _errors():
        path = _wallet_path()
        _make_folder(path)
        if path.resolve().exists():  # said before a new passphrase is asked for (twice)
            raise WalletFileError(
                f"a wallet already exists at {path.resolve()}; not overwriting it")
        w = Wallet.init(path, _passphrase(confirm=True))
        err.print(f"Created wallet {escape(str(path))}")
        print(json.dumps(w.holder_jwk()))  # plain: machine-readable, never wrapped


@app.command("holder-key")
def holder_key(
    copies: Annotated[int, typer.Option(
        "--copies", min=1, max=100,
        help="How many keys: one per copy of a credential an agency issues for you (`agency "
             "issue --holder-jwk FILE`, once per key). Give every agency the same keys: the "
             "wallet shows each verifier copies bound to a key no other verifier saw")] = 1,
    out_file: Annotated[Path | None, typer.Option(
        "--out", dir_okay=False,
        help="Write the keys to files (FILE, or FILE-1, FILE-2, … before its suffix for "
             "several) instead of printing one JSON line per key; never over a file unless "
             "--force")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace key files that exist (the keys are the same every time)")
    ] = False,
) -> None:
    """Print the holder public keys (JWK) that an agency binds your credentials to: the first,
    or with --copies N the first N (the same ones every time, for every agency).

    Each verifier is shown credentials bound to a key of its own where the wallet can: N keys
    keep N verifiers from linking you, whatever the types of credential. Give every agency the
    same keys: an application shows credentials bound to one key (the node's proof that they
    are one holder's). For more keys later, ask for a larger N and give each agency the keys
    past the ones it has."""
    from ledger.files import write_atomic
    from wallet.errors import UsageError, WalletError

    with _errors():
        outs: list[Path] = []
        if out_file is not None and str(out_file) != "-":  # -: standard output, as without
            outs = [out_file] if copies == 1 else [
                out_file.with_name(f"{out_file.stem}-{n}{out_file.suffix}")
                for n in range(1, copies + 1)]
            for o in outs:
                if not o.parent.is_dir():
                    raise UsageError(f"cannot write {o}: there is no folder {o.parent}")
                _not_the_wallets(o)
                if not force and (o.exists() or o.is_symlink()):
                    raise UsageError(f"{o} exists; choose another --out, or add --force to "
                                     "replace it (the keys are the same every time)")
        jwks = _open().holder_jwks(copies)
        if not outs:
            for jwk in jwks:
                print(json.dumps(jwk))  # plain: machine-readable, never wrapped
            return
        for o, jwk in zip(outs, jwks, strict=True):
            try:
                write_atomic(o, json.dumps(jwk).encode() + b"\n", 0o644, overwrite=force)
            except FileExistsError as e:
                raise WalletError(f"{o} was written meanwhile (the keys before it are in "
                                  "their files)") from e
            err.print(f"holder key → {escape(str(o))}")


@app.command()
def receive(
    bundle_file: Annotated[Path, typer.Argument(
        help="Credential bundle from the agency; with --trust, an SD-JWT VC (text) from an "
             "issuer outside the network", dir_okay=False)],
    registry: Annotated[Path | None, typer.Option(
        "--registry", dir_okay=False,
        help="The verifier snapshot from `ledger snapshot` (or raw registry bytes) used to "
             "check the issuer and the checkpoint quorum")] = None,
    trust: Annotated[Path | None, typer.Option(
        "--trust", dir_okay=False,
        help="For a credential from an issuer outside the network: the trust list (JSON) "
             "naming its issuer and keys, as the verifiers you will show it to keep it")] = None,
) -> None:
    """Verify a credential and keep it.

    A bundle from an agency of the network (--registry) is checked first: issuer signature and
    key, your holder key, anchor, proof, checkpoint quorum.

    A credential from an issuer outside the network (--trust) has no ledger evidence: its issuer
    must be on the trust list and have signed it, and it must be bound to your holder key.
    """
    from ledger.offline import load_snapshot
    from ledger.state import Registry
    from wallet.errors import WalletError

    with _errors():
        if (registry is None) == (trust is None):
            raise typer.BadParameter("give exactly one of --registry (a bundle from an agency "
                                     "of the network) or --trust (a credential from outside "
                                     "it)")
        if trust is not None:
            trust_list = _trust_list(trust)
            raw = _read_file(bundle_file, "credential")
            try:
                text = raw.decode("ascii").strip()
            except UnicodeDecodeError as e:
                raise WalletError(f"{bundle_file} is not an SD-JWT (text); a bundle from an "
                                  "agency of the network goes with --registry") from e
            w = _open()
            info = w.receive_foreign(text, trust=trust_list, now=int(time.time()))
            err.print(f"[green]Received[/] {_name(info.type)} from {_name(info.issuer)} "
                      f"(outside the network), valid until {_date(info.valid_until)}")
            out.print(info.id)
            return
        if registry is None:  # exactly one, checked above; for the type checker
            raise typer.Exit(2)
        raw_registry = _read_file(registry, "registry snapshot")
        try:
            reg = load_snapshot(raw_registry).registry
        except LedgerError as as_snapshot:
            try:
                reg = Registry.from_unverified(raw_registry)
            except LedgerError as e:
                raise WalletError(f"{registry} is neither a `ledger snapshot` file "
                                  f"({as_snapshot}) nor a registry ({e})") from e
        bundle = _read_file(bundle_file, "bundle")
        w = _open()
        info = w.receive(bundle, registry=reg, now=int(time.time()))
        err.print(f"[green]Received[/] {_name(info.type)} from {_name(info.issuer)}, "
                  f"valid until {_date(info.valid_until)}")
        out.print(info.id)


def _trust_list(path: Path) -> Any:
    from ledger.foreign import read_trust_list
    from wallet.errors import WalletError

    try:
        return read_trust_list(path)
    except LedgerError as e:
        raise WalletError(str(e)) from e


_LIST_WIDTH = 110  # the columns `wallet list`'s table needs whole


def _folding_table(*columns: str, **options: Any) -> Table:
    """A table whose cells wrap onto more lines, never cut short with "…", on a narrow
    terminal or a pipe (80 columns): a date, an id or a claim name is whole, or not shown."""
    table = Table(**options)
    for name in columns:
        table.add_column(name, overflow="fold", min_width=16 if name == "id" else None)
    return table


@app.command("list")
def list_() -> None:
    """List your credentials (no claim values). "dates" says whether now is within a
    credential's validity dates, allowing the verifiers' clock skew at each end as they do;
    whether its agency revoked or suspended it is on the ledger's status list, which a
    verifier checks, not in the wallet."""
    with _errors():
        w = _open()
        now = int(time.time())
        table = _folding_table(
                      "id", "type", "issuer", "valid from", "valid until", "dates", "key",
                      "shown",
                      caption="dates only: revocation and suspension are checked by the "
                              "verifier, from the ledger (for a credential from outside the "
                              "network, from its issuer's status list); key: the holder key it "
                              "is bound to "
                              "(copies of one credential have one each, numbered as `wallet "
                              "holder-key --copies N --out` numbers its files); shown: how "
                              "many presentations of it this wallet made")
        rows = [(c.id[:16], _name(c.type), _name(c.issuer) + (_OUTSIDE if c.foreign else ""),
                 _date(c.valid_from),
                 _date(c.valid_until), _dates(c, now), str(c.key + 1), str(c.shown))
                for c in w.list()]
        if not rows:
            err.print("The wallet holds no credentials yet.")
            return
        if out.width < _LIST_WIDTH:  # a narrow terminal, or a pipe (80): lines, nothing cut
            for cid, kind, issuer, start, end, state, key, shown in rows:  # issuer: marked
                out.print(f"{cid}  {kind} from {issuer}\n  valid {start} to {end} ({state}), "
                          f"key {key}, shown {shown}")
            err.print(table.caption)
            return
        for row in rows:
            table.add_row(*row)
        out.print(table)


@app.command()
def show(credential_id: Annotated[str, typer.Argument(
        metavar="ID", help="Credential id (at least 6 hex digits)")]) -> None:
    """Show one credential's claims WITH their values, on your own terminal."""
    with _errors():
        w = _open()
        info = w.info(credential_id)
        claims = w.show(credential_id)
        table = _folding_table("claim", "value",
                               title=_from(info))
        for name, value in claims.items():
            table.add_row(escape(name), escape(json.dumps(value, ensure_ascii=False)
                                               if not isinstance(value, str) else value))
        out.print(table)
        out.print(f"id {info.id}\nvalid {_date(info.valid_from)} to {_date(info.valid_until)}")


@app.command()
def remove(
    credential_id: Annotated[str, typer.Argument(
        metavar="ID", help="Credential id (at least 6 hex digits)")],
    with_copies: Annotated[bool, typer.Option(
        "--copies", help="Also its copies (the same claims from the same issuer, each bound "
                         "to another holder key)")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask before removing")] = False,
) -> None:
    """Take a credential out of the wallet: one that expired, was revoked, or that you no longer
    want to carry. Asks first (unless --yes). A backup made before still holds it; the ledger
    keeps its anchor (no personal data) whatever the wallet does."""
    with _errors():
        w = _open()
        info = w.info(credential_id)
        copies = w.copies_to_remove(info.id)
        group = copies if with_copies else (info.id,)
        now = int(time.time())
        err.print(f"[bold]remove[/] {_from(info)}:")
        for cid in group:  # each as it is: a citizen removing an expired one sees what else goes
            c = w.info(cid)
            err.print(f"  {cid[:16]}  key {c.key + 1}, valid {_date(c.valid_from)} to "
                      f"{_date(c.valid_until)} ({_dates(c, now)})")
        stay = len(copies) - len(group)
        if stay:
            err.print(f"  ({stay} {'copy' if stay == 1 else 'copies'} of it on other keys "
                      f"{'stays' if stay == 1 else 'stay'}; --copies removes "
                      f"{'it' if stay == 1 else 'them'} too)")
        _confirm("Remove from the wallet?", yes)
        w.remove(group)  # exactly those shown: one received meanwhile stays
        for cid in group:
            print(cid)


@app.command()
def present(
    credential_id: Annotated[str, typer.Argument(
        metavar="ID", help="Credential id (at least 6 hex digits)")],
    request: Annotated[Path, typer.Option(
        "--request", dir_okay=False,
        help="The verifier's request: JSON with nonce, audience, type and claims")],
    out_file: Annotated[Path | None, typer.Option(
        "--out", dir_okay=False,
        help="Envelope file to write (default: presentation-<first 12 digits of the id>.bin, "
             ".sd-jwt for a credential from outside the network); the QR code goes to "
             "the same name with .png. - writes no file: only the text, on standard output "
             "(to pipe into `ledger verify -`)")] = None,
    yes: Annotated[bool, typer.Option(
        "--yes", help="Do not ask before signing (the preview is still printed)")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace the envelope and QR files if they exist")] = False,
) -> None:
    """Show a verifier ONLY the claims its request names, bound to its nonce and audience.

    Prints what will be disclosed and asks before signing (unless --yes).

    Writes the envelope (binary), prints it as base64url, writes a QR code PNG beside it,
    and on a terminal also draws the QR code (when the envelope fits one).
    """
    from ledger.errors import DecodeError
    from ledger.files import write_atomic
    from ledger.presentation import Request
    from ledger.sdjwt import MalformedError, strict_json_file
    from wallet import qr
    from wallet.errors import UsageError, WalletError

    with _errors():
        try:
            # strict, as `ledger verify` reads the same file (a member named twice refused)
            req = Request.from_file_json(strict_json_file(_read_file(request, "request"),
                                                          "request"), now=int(time.time()))
        # (MalformedError: also JSON nested too deeply, a SizeError, which went out as exit 1)
        except (ValueError, DecodeError, MalformedError) as e:  # bad input: 2, as `ledger verify`
            if isinstance(e, DecodeError) and e.where == "request.expires":
                raise UsageError(f"{request}: {str(e).removeprefix(e.where + ': ')}") from e
            raise UsageError(f"{request} is not a verifier's request (JSON with nonce, "
                             f"audience, type and claims): {e}") from e
        w = _open()
        given = w.info(credential_id)
        credential_id = w.copy_for(given.id, req.audience, int(time.time()))
        linked = w.would_link(credential_id, req.audience)
        if credential_id != given.id and not linked:
            why = ("the key this verifier saw before" if w.seen_by(credential_id, req.audience)
                   else "a key no verifier saw")
            err.print(f"presenting {given.id[:16]}'s copy {credential_id[:16]}, bound to {why} "
                      "(verifiers who compare what they saw cannot link the two)")
        elif credential_id != given.id:  # the named one not valid now, every valid key shown
            err.print(f"presenting {given.id[:16]}'s copy {credential_id[:16]}, valid now")
        if linked:
            err.print("[yellow]this credential's holder key was shown to another verifier "
                      "before, and no copy of it is bound to a key never shown:[/] the two can "
                      "link these presentations if they compare. Every key shown counts, for "
                      "every type of credential: for more, `wallet holder-key --copies M` with "
                      "M larger than before, and give each agency the keys past the ones it "
                      "has (`agency issue --holder-jwk` once per key)")
        p = w.preview(credential_id, req)
        chosen = w.info(credential_id)
        now = int(time.time())
        state = chosen.state(now)
        foreign = w.is_foreign(credential_id)
        to_stdout = out_file == Path("-")  # the text only: no file, no QR code
        if to_stdout and sys.stdout is None:  # `>&-`: the text would go nowhere, counted
            raise UsageError("--out - writes the presentation to standard output, which is "
                             "closed; nothing was signed")
        dest = out_file or Path(f"presentation-{p.credential_id[:12]}."
                                f"{'sd-jwt' if foreign else 'bin'}")
        png = dest.with_suffix(".png") if dest.suffix != ".png" else dest.with_suffix(".qr.png")
        if not to_stdout and not dest.parent.is_dir():
            raise UsageError(f"cannot write {dest}: there is no folder {dest.parent}")
        for target in () if to_stdout else (dest, png):
            _not_the_wallets(target)
            if not force and (target.exists() or target.is_symlink()):
                raise UsageError(f"{target} exists; choose another --out, or add --force to "
                                 "replace it")
        err.print(f"[bold]{_shown(p.audience)}[/] asks for your "
                  f"{_shown(p.credential_type)} credential {p.credential_id[:16]} from "
                  f"{_shown(p.issuer)}{_OUTSIDE if foreign else ''} "
                  f"(nonce {_shown(p.nonce, 64)}).")
        err.print(f"  disclosed: {_names(p.claims, '(no claim)')}")
        err.print("  always shown: issuer, credential type, validity dates, status list entry, "
                  "holder public key")
        err.print(f"  withheld:  {_names(p.withheld, '(nothing)')}")
        if state != "valid":  # no valid copy held: said before anything is signed
            err.print(f"[yellow]  this credential is {state}[/] (valid "
                      f"{_date(chosen.valid_from)} to {_date(chosen.valid_until)}), and no copy "
                      "of it is valid now: the verifier will refuse it, the claims disclosed "
                      "for nothing. Ask its agency for a new one (`wallet list` shows each "
                      "copy's dates)")
        elif _ended_note(chosen, now):
            err.print(f"[yellow]  {_ended_note(chosen, now)}[/]")
        if p.on_ledger:
            err.print(f"  not disclosed, but public anyway: {_names(p.on_ledger, '')} "
                      "(the agency's decision on the ledger shows them to anyone holding this "
                      "presentation)")
        _confirm("Sign and disclose these claims?", yes)
        env = w.present(credential_id, req, now=int(time.time()))
        if w.presented != credential_id:
            err.print(f"another wallet process presented with {credential_id[:16]}'s key "
                      f"meanwhile: presented its copy {str(w.presented)[:16]} instead")
        if w.uncounted:
            err.print(f"[yellow]not counted as shown:[/] {escape(w.uncounted)}")
        text = env.decode("ascii") if foreign else qr.b64url(env)
        if to_stdout:
            print(text)
            return
        try:  # a file that appeared at --out while the citizen read the prompt stays
            write_atomic(dest, env, overwrite=force)
        except FileExistsError as e:
            raise WalletError(f"{dest} exists now; choose another --out, or add --force to "
                              "replace it (nothing was written)") from e
        err.print(f"{'Presentation (SD-JWT+KB, outside the network)' if foreign else 'Envelope'}"
                  f": {escape(str(dest))} ({len(env)} bytes)")
        code = None
        try:
            code = qr.make_qr(env)
        except WalletError as e:
            err.print(f"[yellow]no QR code:[/] {escape(str(e))}")
        if code is not None:
            try:
                write_atomic(png, qr.png_bytes(code), overwrite=force)
            except FileExistsError:
                err.print(f"[yellow]no QR code file:[/] {escape(str(png))} exists now")
                code = None
        if code is not None:
            err.print(f"QR code:  {escape(str(png))}")
            if sys.stdout is not None and sys.stdout.isatty():
                qr.print_qr(code, sys.stdout)
        print(text)


@app.command()
def apply(
    service: Annotated[str, typer.Argument(help="The service to apply for (e.g. "
                                                "elderly-allowance)")],
    node: Annotated[str, typer.Option("--node", help="The approving agency's node URL")],
    registry: Annotated[Path, typer.Option(
        "--registry", dir_okay=False,
        help="The verifier snapshot from `ledger snapshot` used to check the approval "
             "credential")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask before signing")] = False,
    collect: Annotated[bool, typer.Option(
        "--collect", help="Apply for nothing: collect the approval credential of the agency's "
                          "decision on an application this wallet sent to --node before, whose "
                          "answer never came (the node stopped, the connection dropped). The "
                          "wallet proves the holder key it applied with (one it showed that "
                          "node, no other); the node gives the credential of its newest recorded "
                          "decision (one a decision, the same each time), and decides nothing "
                          "again")] = False,
) -> None:
    """Apply for SERVICE: answer its rule's requests with only the claims it needs, and keep
    the approval credential the agency issues. With --collect, collect that credential of an
    application sent before whose answer was lost."""
    import base64
    import contextlib

    import httpx

    from ledger.files import interrupts_held
    from ledger.offline import load_snapshot
    from ledger.presentation import Request
    from ledger.sdjwt import MalformedError
    from ledger.state import rule_hash
    from ledger.within import client as within_client
    from wallet.core import Wallet, beyond_rule
    from wallet.errors import PresentationError, WalletError

    with _errors(), contextlib.ExitStack() as finishing:
        snap = load_snapshot(_read_file(registry, "registry snapshot"))
        reg = snap.registry
        rule = reg.rule(service)
        if rule is None:
            raise WalletError(f"{service!r} is not a service registered as of {registry} (the "
                              "wallet cannot tell which claims it needs); if it was registered "
                              "since, take a newer snapshot")
        passphrase = _passphrase()  # asked once: a save raced below opens again
        w = Wallet.open(_wallet_path(), passphrase)
        base = node.rstrip("/")
        if collect:
            got = _collect(w, base, service)
            _keep_decision(got, w, passphrase, service, rule, reg, registry)
            return
        try:
            with within_client(timeout=60) as client:
                opened = _fetch(client, "POST", f"{base}/v1/services/{service}/applications")
                if opened.status_code != 200:
                    raise WalletError(f"the node refused the application: {_detail(opened)}")
                try:
                    requests = [Request.from_json({k: r[k] for k in ("nonce", "audience",
                                                                     "type", "claims")})
                                for r in _answer_json(opened)["requests"]]
                except (ValueError, KeyError, TypeError, MalformedError) as e:
                    raise WalletError(f"{base} did not answer with an application's requests "
                                      f"({type(e).__name__}: {e}); is it a node?") from e
                for r in requests:
                    # A presentation is bound to its audience: signed for another audience, it
                    # could be relayed there by whoever runs the URL given here.
                    if not _same_origin(r.audience, base):
                        raise WalletError(f"the node at {base} asks for a presentation bound "
                                          f"to {r.audience}, not to itself: whoever runs "
                                          f"{base} could relay it there. Apply at the node of "
                                          "the agency that decides, by its own address; "
                                          "nothing was signed")
                    # The rule as registered says what the agency may ask for; a node (or
                    # whoever runs the URL given) asking for more gets nothing.
                    beyond = beyond_rule(rule, r)
                    if beyond is None or beyond:
                        raise WalletError(
                            f"the node at {base} asks for {r.credential_type} claims "
                            f"{beyond or list(r.claims)} that the rule for {service!r} in "
                            f"{registry} does not need; nothing was signed (if the rule changed "
                            "since that snapshot, take a newer one)")
                missing = []
                for r in requests:
                    try:
                        w.pick(r, int(time.time()))
                    except PresentationError:
                        missing.append(r.credential_type)
                if missing:
                    raise WalletError(
                        f"{service!r} needs {' and '.join(repr(m) for m in missing)} "
                        f"credential{'s' if len(missing) > 1 else ''} this wallet does not "
                        "hold (valid now); nothing was signed")
                for r in requests:
                    err.print(f"  {_name(r.credential_type)}: discloses "
                              f"{_names(r.claims, '(no claim)')} to {_shown(r.audience)}")
                err.print(f"  (the rule registered for {escape(service)}, version "
                          f"{rule_hash(rule).hex()[:16]}, needs these and no more)")
                # a copy the snapshot's lists say revoked or suspended is left out
                w.application(requests, now=int(time.time()), dry=True,
                              status=snap.status_list)
                if w.relinked:
                    err.print("[yellow]every holder key these credentials share was shown to "
                              "another verifier before:[/] the two can link this application "
                              "to it if they compare (for more keys, `wallet holder-key "
                              "--copies M` with M larger than before; give each agency the "
                              "keys past the ones it has)")
                _confirm(f"Apply for {service} with these claims?", yes)
                holder, answers = w.application(requests, now=int(time.time()),
                                                status=snap.status_list)
                body = {"holder_jwk": holder, "presentations": [
                    {"nonce": n, "envelope": base64.urlsafe_b64encode(e).rstrip(b"=").decode()}
                    for n, e in answers]}
                # From here the node decides, commits the decision and issues the approval
                # credential once: a Ctrl-C or SIGTERM while it answers, or before the answer is
                # kept, lost the credential for good (the decision stayed on the ledger). It
                # takes effect once the credential is in the wallet or in a file beside it.
                finishing.enter_context(interrupts_held(_finishing_application))
                try:
                    # the version of the rule shown above: a node whose rule changed since
                    # decides nothing (a node before ADR 82 reads no such parameter)
                    got = _fetch(client, "POST", f"{base}/v1/services/{service}/apply?rule="
                                 f"{rule_hash(rule).hex()}", json=body,
                                 timeout=httpx.Timeout(60, read=APPLY_WAIT))
                except (httpx.HTTPError, _AnswerGivenUp) as e:
                    if isinstance(e, (httpx.ConnectError, httpx.ConnectTimeout,
                                      httpx.PoolTimeout)):  # never reached: nothing sent
                        raise
                    # Sent: the node may have decided and committed already, and gives the
                    # approval credential once; applying again is decided again. So too for
                    # an answer given up on (too long, too slow: "nothing was kept from it"
                    # said no more; helper round 40H).
                    raise WalletError(
                        f"the application was sent to {base} but no answer it could use came "
                        f"back ({e}): "
                        "the agency may have decided it and recorded the decision on the "
                        "ledger, and its approval credential did not reach this wallet. "
                        f"Collect it: `wallet apply {service} --node {base} --registry "
                        f"{registry} --collect` (an application sent again is decided "
                        "again)") from e
        except httpx.HTTPError as e:
            raise WalletError(f"cannot reach {base}: {e}") from e
        if got.status_code >= 400 and _code(got) == "decided_not_issued":
            # the decision is on the ledger, its credential's issue refused after it (44T):
            # collect it; an application sent again would be decided again
            raise WalletError(
                "the agency decided the application and recorded its decision on the ledger, "
                f"but did not issue its approval credential: {_detail(got)}; collect it: "
                f"`wallet apply {service} --node {base} --registry {registry} --collect` (an "
                "application sent again is decided again)")
        if got.status_code >= 500 and _untaken(got):  # took nothing, it says (ADR 84)
            raise WalletError(f"the node refused the application ({_code(got) or got.status_code}"
                              f"): {_detail(got)}; nothing was taken; apply again"
                              f"{_retry_in(got)}")
        if got.status_code != 200:
            # a node's own failure may come after its commit (a stop before the issue)
            raise WalletError(f"the application was refused: {_detail(got)}" + (
                f"; if the agency decided it all the same, collect its approval credential: "
                f"`wallet apply {service} --node {base} --registry {registry} --collect`"
                if got.status_code >= 500 else
                f"; the rule changed since the snapshot {registry} was taken: take a newer "
                "one (`ledger snapshot`), see what the rule asks now, and apply again"
                if _code(got) == "stale_rule" else ""))
        _keep_decision(got, w, passphrase, service, rule, reg, registry)


def _keep_decision(got: Any, w: Any, passphrase: bytes, service: str, rule: dict[str, Any],
                   reg: Any, registry: Path) -> None:
    """Keep the approval credential of a node's decision (the answer ``got`` of an application
    or of a collect) in the wallet ``w``, or beside it; say the decision."""
    import base64

    from ledger.files import write_atomic
    from ledger.sdjwt import MalformedError
    from wallet.core import Wallet, approval_claims
    from wallet.errors import WalletChangedError, WalletError, WalletFileError

    try:
        decision = _answer_json(got)
        raw = decision["bundle"]
        bundle = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        # the node's own words, unchecked where its credential does not check out: cut, as
        # a hostile node's MiB of them (escape sequences and all) filled the error line
        said = _flat(f"{decision['decision']} ({decision['path']}): "
                     f"{', '.join(decision['reasons'])}", 200)
    except (ValueError, KeyError, TypeError, MalformedError) as e:
        raise WalletError(f"the node's answer to the application is not a decision "
                          f"({type(e).__name__}: {e})") from e
    held = _held_id(w, bundle)
    if held is not None:  # collected again: that very credential (one per decision)
        _say_decision(w.show(held), rule, " (this wallet holds it already)")
        out.print(held)
        return
    try:
        try:
            # only the approval of this service, by its agency, is kept as the answer
            claims = approval_claims(bundle, rule)
            info = w.receive(bundle, registry=reg, now=int(time.time()))
        except WalletChangedError:
            # the wallet file no longer opens with the key it was opened with (another
            # wallet restored in its place while the application took a round trip; a
            # save by another process is taken in, ADR 68): open it again and try once more
            info = Wallet.open(_wallet_path(), passphrase).receive(
                bundle, registry=reg, now=int(time.time()))
    except LedgerError as e:
        # The decision is on the ledger already (its credential is collected again only with
        # a proof of the holder key): keep it beside the wallet (a folder the wallet writes
        # to), else print it.
        # named by the node's word for its transaction: its hex digits only (a path there
        # was a ValueError, the credential neither kept nor shown)
        txid = "".join(c for c in str(decision.get("approval_tx", ""))[:64]
                       if c in "0123456789abcdef")
        kept = _wallet_path().resolve().with_name(f"approval-{service}-{txid[:12]}.bundle")
        try:
            write_atomic(kept, bundle, 0o600, overwrite=False)
        except OSError as w_err:
            err.print(f"[bold]the agency decided: {escape(said)}[/]; its approval credential "
                      f"could not be kept in {escape(str(kept))} ({escape(str(w_err))}). "
                      "Here it is; save it and `wallet receive` it:")
            print(base64.urlsafe_b64encode(bundle).rstrip(b"=").decode())
            raise WalletError(f"the approval credential could not be saved in the wallet "
                              f"({e})" if isinstance(e, WalletFileError) else
                              f"the approval credential did not check out against "
                              f"{registry} ({e})") from e
        if isinstance(e, WalletFileError):  # changed by another process, unreadable, …
            raise WalletError(f"the agency decided: {said}; its approval credential could "
                              f"not be saved: {e}. It is kept in {kept}: `wallet receive "
                              f"{kept} --registry {registry}`") from e
        raise WalletError(f"the agency decided: {said}; its approval credential did not "
                          f"check out against {registry} ({e}). It is kept in {kept}: "
                          f"`wallet receive {kept} --registry NEWER_SNAPSHOT`") from e
    # what the credential, now verified, says: not the answer's own words about it
    _say_decision(claims, rule)
    out.print(info.id)


def _say_decision(claims: dict[str, Any], rule: dict[str, Any], note: str = "") -> None:
    """The decision an approval credential's verified ``claims`` say, the documents still
    required, and the version of the rule that decided where it is not ``rule``'s (the one
    shown: a node before ADR 82 reads no version an application names; a decision collected
    was made by the rule of its day)."""
    from ledger.state import rule_hash

    reasons = str(claims.get("reasons", "")).replace(",", ", ")
    said = f"{claims.get('decision')} ({claims.get('path')}): {reasons}"
    err.print(f"[bold]{escape(said)}[/]{escape(note)}")
    documents = str(claims.get("documents", "none"))
    if documents != "none":
        err.print(f"  documents still required: {escape(documents.replace(',', ', '))}")
    version, shown = str(claims.get("rule_version", "")), rule_hash(rule).hex()
    if version and version != shown:  # (a credential naming no version: nothing to compare)
        err.print(f"[yellow]decided by version {escape(version[:16])} of the rule, not by "
                  f"version {shown[:16]} this wallet's snapshot has[/] (the rule changed; a "
                  "newer snapshot says what it asks now)")


def _held_id(w: Any, bundle: bytes) -> str | None:
    """The id of the credential in ``bundle`` if the wallet ``w`` holds it already; else (or
    if the bundle cannot be read: receiving it says why) None."""
    from ledger.presentation import Bundle
    from ledger.tx import Tx

    try:
        cid = Tx.from_checked_bytes(Bundle.from_bytes(bundle).anchor).body["credential_id"]
        held = cid.hex() if isinstance(cid, bytes) else None
    except (LedgerError, KeyError, TypeError, AttributeError):
        return None
    return held if held in {c.id for c in w.list()} else None


def _collect(w: Any, base: str, service: str) -> Any:
    """``wallet apply --collect``: the node's answer holding the approval credential of its
    decision on ``service``, proven with each holder key this wallet showed the node in turn
    (no other: the node learns no key it had not seen)."""
    import httpx

    from ledger.within import client as within_client
    from wallet.errors import WalletError

    url = f"{base}/v1/services/{service}/collect"
    try:
        with within_client(timeout=60) as client:
            tried = 0
            while True:
                opened = _fetch(client, "POST", f"{url}/challenge")
                if opened.status_code in (404, 405) and _detail(opened) in (
                        "Not Found", "Method Not Allowed"):  # the web framework's: no route
                    raise WalletError(f"{base} offers no collect (no route for it): a node of "
                                      "a version before ADR 78, which cannot issue a lost "
                                      "approval credential again (nor can it once upgraded, "
                                      "for a decision it made before), or no node; nothing "
                                      "was signed")
                if opened.status_code != 200:
                    raise WalletError(f"the node refused a collect challenge: "
                                      f"{_detail(opened)}")
                try:
                    challenge = _answer_json(opened)
                    audience = str(challenge["audience"])
                    str(challenge["nonce"]), str(challenge["typ"]), str(challenge["service"])
                except (ValueError, KeyError, TypeError) as e:
                    raise WalletError(f"{base} did not answer with a collect challenge "
                                      f"({type(e).__name__}); is it a node?") from e
                if not _same_origin(audience, base):
                    raise WalletError(f"the node at {base} asks for a proof bound to "
                                      f"{_quoted(audience)}, not to itself; nothing was "
                                      "signed")
                if challenge["service"] != service:
                    raise WalletError(f"the node at {base} asks for a proof for "
                                      f"{_quoted(challenge['service'])}, not {service!r}; "
                                      "nothing was signed")
                keys = w.shown_keys(audience)
                if not keys:
                    raise WalletError(f"this wallet never showed a holder key to {base}: it "
                                      "sent it no application to collect (nothing was signed)")
                proof = w.collect_proof(keys[tried], challenge, now=int(time.time()))
                got = _fetch(client, "POST", url, json={
                    "holder_jwk": w.holder_jwk(keys[tried]), "proof": proof},
                    timeout=httpx.Timeout(60, read=APPLY_WAIT))
                tried += 1
                if got.status_code == 200:
                    return got
                if got.status_code != 404 or tried >= len(keys):
                    raise WalletError(f"the node gave no approval credential to collect: "
                                      f"{_detail(got)}")
    except httpx.HTTPError as e:
        raise WalletError(f"cannot collect at {base}: {e}") from e


def _finishing_application() -> None:
    err.print("[yellow]stopping once the agency's answer is kept (it may have decided "
              "already, and gives its approval credential once); Ctrl-C again to stop at "
              "once[/]")


MAX_ANSWER = 16 << 20
"""The most a node's answer may hold: an approval's bundle is a few KiB, a proof a few hundred
bytes. A node (or whoever runs the URL given) sending more is refused, not read to the end."""


ANSWER_WAIT_MORE = 60.0
"""Seconds a node's answer may take in all beyond the read timeout of its request (a minute)."""


class _AnswerGivenUp(WalletError):
    """A node's answer :func:`_fetch` gave up on: more than :data:`MAX_ANSWER`, or past its
    time."""


def _fetch(client: Any, method: str, url: str, **kw: Any) -> Any:
    """``client.request(method, url, **kw)``, its body read up to :data:`MAX_ANSWER` bytes and
    for at most ``kw["timeout"]``'s read time plus :data:`ANSWER_WAIT_MORE` in all from the
    request's start, status line and headers too (a node trickling bytes found no end: each
    read's timeout starts again); WalletError past either."""
    import httpx

    from ledger.within import UNCOMPRESSED, Bound, bounded, compressed, within

    timeout = kw.get("timeout")
    wait = (timeout.read if isinstance(timeout, httpx.Timeout) else None) or 60.0
    bound = Bound(wait + ANSWER_WAIT_MORE)  # from the request's start, its headers too
    kw["headers"] = {**kw.get("headers", {}), **UNCOMPRESSED}
    try:
        with within(bound), bounded(client).stream(method, url, **kw) as resp:
            encoding = compressed(resp.headers)
            if encoding is not None:
                raise _AnswerGivenUp(f"{url} answered compressed ({encoding!r}), which the "
                                     "wallet did not ask for; nothing was kept from it")
            body = bytearray()
            for chunk in resp.iter_raw():  # as it came: nothing is opened
                body += chunk
                if len(body) > MAX_ANSWER:
                    raise _AnswerGivenUp(f"{url} answered with more than {MAX_ANSWER} bytes: "
                                         "no node answers that much; nothing was kept from it")
            # as they came, in bytes: a value not in ASCII ("Retry-After: ²", a proxy's
            # Latin-1 word), decoded and then encoded again as ASCII, was a traceback, also
            # after an application was sent (its "collect it" advice lost; round 44M)
            headers = [(k, v) for k, v in resp.headers.raw
                       if k.lower() not in (b"content-encoding", b"content-length")]
            return httpx.Response(resp.status_code, headers=headers, content=bytes(body),
                                  request=resp.request)
    except httpx.TimeoutException:
        if not bound.passed():
            raise
        raise _AnswerGivenUp(f"{url} was still answering after {wait + ANSWER_WAIT_MORE:g} s: "
                             "no node answers that slowly; nothing was kept from it") from None


def _answer_json(resp: Any) -> Any:
    """A node's answer as JSON, read strictly (:func:`ledger.sdjwt.strict_json`): JSON nested
    thousands deep from a node (or whoever runs the URL given) was a RecursionError traceback
    where ``resp.json()`` read it; a LedgerError says what is wrong instead."""
    from ledger.sdjwt import strict_json

    return strict_json(resp.content, "the node's answer")


def _detail(resp: Any) -> str:
    """A node's error reply in one line: its JSON ``detail``, else the start of its text."""
    from ledger.sdjwt import MalformedError

    if 300 <= resp.status_code < 400:  # no client here follows one: say where it points
        where = resp.headers.get("location")
        return (f"HTTP {resp.status_code}: a redirect to "
                f"{_quoted(where) if where is not None else '(no Location)'}, not followed; "
                "give that URL with --node if it is the node")
    try:
        detail = _answer_json(resp).get("detail")
    except (ValueError, AttributeError, MalformedError):
        detail = None
    if detail is None:
        detail = f"HTTP {resp.status_code}: {resp.text[:200].strip() or '(no body)'}"
    detail = str(detail)  # a node's words: one line's worth (5,000 characters filled a screen)
    return detail if len(detail) <= 300 else detail[:300] + "…"


def _code(resp: Any) -> str | None:
    """A node's refusal code (``stale_rule``, …) in its JSON error reply, else None."""
    from ledger.sdjwt import MalformedError

    try:
        code = _answer_json(resp).get("code")
    except (ValueError, AttributeError, MalformedError):
        return None
    return code if isinstance(code, str) else None


def _untaken(resp: Any) -> bool:
    """Whether a node's JSON error reply says it took nothing of the request (``"taken":
    false``, ADR 84): the JSON false only; another value (``"false"``, 0, null), a body that
    is not JSON or no member is not known, and the words for "may have been done" stay."""
    from ledger.errors import LedgerError

    try:
        body = _answer_json(resp)
    except (ValueError, LedgerError):  # not JSON, or not strict JSON
        return False
    return isinstance(body, dict) and body.get("taken") is False


def _retry_in(resp: Any) -> str:
    """" in N s or later" when a node's refusal says when to come back (``Retry-After``
    seconds), else nothing."""
    retry = (resp.headers.get("retry-after") or "").strip()
    ok = retry.isascii() and retry.isdigit() and len(retry) <= 9
    return f" in {int(retry)} s or later" if ok else ""


def _same_origin(audience: str, url: str) -> bool:
    """Whether ``audience`` names the same scheme, host and port as ``url``."""
    from urllib.parse import urlsplit

    def origin(u: str) -> tuple[str, str, int | None]:
        parts = urlsplit(u.strip().rstrip("/"))
        scheme = parts.scheme.lower()
        try:
            port = parts.port or {"http": 80, "https": 443}.get(scheme)
        except ValueError:
            port = -1
        return scheme, (parts.hostname or "").lower(), port

    return origin(audience) == origin(url) and origin(url)[1] != ""


@app.command()
def refresh(
    node: Annotated[str, typer.Option("--node", help="A node of the network, e.g. "
                                                     "http://127.0.0.1:8000")],
    registry: Annotated[Path, typer.Option(
        "--registry", dir_okay=False,
        help="A verifier snapshot from `ledger snapshot`, recent enough to know the node keys "
             "that sign the node's checkpoint now")],
    only: Annotated[list[str] | None, typer.Option(
        "--id", help="Refresh only this credential (an id prefix; repeat for more)")] = None,
) -> None:
    """Prove the wallet's credentials (all, or those given with --id) against the node's latest
    checkpoint.

    Each credential's proof is replaced only once the new checkpoint is final under the
    snapshot's registry and the new proof leads from its anchor to that checkpoint's root;
    a credential that does not check out keeps what it had. Run it after agencies rotate their
    node keys (a checkpoint signed by retired keys no longer counts), or to show verifiers a
    recent checkpoint.

    The node learns which leaf indexes are asked for together, and so that they belong to one
    wallet (no claim values, no key). To keep credentials of different agencies unlinkable to a
    node, refresh each with --id at its own agency's node.
    """
    import base64

    import httpx

    from ledger.checkpoint import SignedCheckpoint
    from ledger.errors import CheckpointError
    from ledger.offline import load_snapshot
    from ledger.sdjwt import MalformedError
    from ledger.within import client as within_client
    from wallet.errors import WalletError

    with _errors():
        w = _open()
        wanted = {w.info(prefix).id for prefix in only} if only else None
        indexes = w.leaf_indexes()  # credentials from outside the network have none
        outside = [c.id for c in w.list() if c.id not in indexes]
        if wanted is not None and wanted & set(outside):
            raise WalletError(f"credential {sorted(wanted & set(outside))[0][:16]} was issued "
                              "outside the network: it has no ledger proof to refresh")
        if wanted is None and outside:
            err.print(f"  {len(outside)} credential(s) from outside the network skipped: no "
                      "ledger proof")
        reg = load_snapshot(_read_file(registry, "registry snapshot")).registry
        base = node.rstrip("/")
        proofs: dict[str, list[bytes]] = {}
        try:
            with within_client(timeout=60) as client:
                got = _fetch(client, "GET", f"{base}/v1/checkpoint")
                if got.status_code != 200:
                    raise WalletError(f"{base} gave no checkpoint (HTTP {got.status_code})")
                checkpoint = got.text
                size = SignedCheckpoint.from_text(checkpoint).checkpoint.size
                for cid, index in indexes.items():
                    if wanted is not None and cid not in wanted:
                        continue
                    r = _fetch(client, "GET", f"{base}/v1/proofs/inclusion",
                               params={"index": index, "size": size})
                    if r.status_code != 200:
                        raise WalletError(f"{base} gave no proof for leaf {index} at size "
                                          f"{size} (HTTP {r.status_code})")
                    proofs[cid] = [base64.b64decode(h, validate=True)
                                   for h in _answer_json(r)["proof"]]
        except httpx.HTTPError as e:
            raise WalletError(f"cannot reach {base}: {e}") from e
        except (KeyError, TypeError, ValueError, MalformedError, CheckpointError) as e:
            # a junk checkpoint too: its line said what was wrong but not which node sent it
            raise WalletError(f"{base} did not answer like a ledger node: {e!r}") from e
        results = w.refresh(proofs, checkpoint, registry=reg, now=int(time.time()))
        for cid, problem in results.items():
            if problem is None:
                err.print(f"  {cid[:16]} proven at checkpoint {size}")
            else:
                err.print(f"  [yellow]{cid[:16]} kept as it was:[/] {escape(problem)}")
        done = sum(p is None for p in results.values())
        out.print(f"{done} of {len(results)} credentials proven at checkpoint {size}")
        if done < len(results):
            raise typer.Exit(1)


def _not_the_wallets(target: Path) -> None:
    """Refuse an output at the wallet file or its lock file, even with --force: a JWK written
    over the wallet lost every credential in it, and a presentation over the lock let another
    wallet command run beside one that holds it."""
    from wallet.errors import UsageError

    wallet_file = _wallet_path().resolve()
    for own, what in ((wallet_file, "the wallet file itself"),
                      (wallet_file.with_name(wallet_file.name + ".lock"), "the wallet's lock "
                                                                          "file")):
        if target.resolve() == own:
            raise UsageError(f"{target} is {what}; choose another --out")


@app.command()
def backup(file: Annotated[Path, typer.Argument(
        dir_okay=False, help="Where to write the copy (must not exist)")]) -> None:
    """Copy the wallet file, still encrypted, after checking your passphrase opens it."""
    from wallet.errors import UsageError

    with _errors():
        if str(file) == "-":  # standard output, which a backup is never written to
            raise UsageError(NOT_STDOUT)
        if not file.parent.is_dir():  # bad input (2); a folder it cannot write is a failure (1)
            raise UsageError(f"cannot write {file}: there is no folder {file.parent}")
        if file.exists() or file.is_symlink():
            raise UsageError(f"{file} exists; choose another file (a backup replaces nothing)")
        _open().backup(file)
        err.print(f"Backed up to {escape(str(file))} (encrypted with the same passphrase)")


@app.command()
def restore(
    file: Annotated[Path, typer.Argument(dir_okay=False, help="A backup made by `wallet backup`")],
    yes: Annotated[bool, typer.Option("--yes", help="Replace an existing wallet without "
                                                    "asking")] = False,
) -> None:
    """Replace the wallet by a backup, after checking the passphrase opens the backup."""
    from wallet.core import Wallet
    from wallet.store import open_sealed

    with _errors():
        blob = _read_file(file, "backup")
        passphrase = _passphrase()
        backup = open_sealed(blob, passphrase, where=str(file))[0]
        path = _wallet_path()
        if path.exists():
            _say_what_the_backup_lacks(path, passphrase, {c.id for c in backup.credentials})
            _confirm(f"Replace the wallet at {path} with {file}?", yes)
        _make_folder(path)
        w = Wallet.restore(file, path, passphrase)
        n = len(w.list())
        err.print(f"Restored {escape(str(path))}: {n} credential{'' if n == 1 else 's'}")
        if w.replaced is not None:
            err.print(f"The wallet it replaced is kept, still encrypted, in "
                      f"{escape(str(w.replaced))}")


def _say_what_the_backup_lacks(path: Path, passphrase: bytes, in_backup: set[str]) -> None:
    """Before a restore: name the credentials of the wallet at ``path`` that the backup does
    not hold (received since it was made); they stay only in the copy kept aside."""
    from wallet.core import Wallet
    from wallet.errors import WalletError

    try:
        current = Wallet.open(path, passphrase)
    except WalletError as e:  # said as it is: a newer version's file, one too large, … too
        err.print(f"[yellow]note:[/] what the backup lacks cannot be listed ({escape(str(e))}); "
                  f"{escape(str(path))} is kept aside, encrypted")
        return
    lacking = [c for c in current.list() if c.id not in in_backup]
    if not lacking:
        return
    err.print(f"[yellow]The backup lacks {len(lacking)} credential"
              f"{'' if len(lacking) == 1 else 's'} this wallet holds[/] (received since it was "
              "made):")
    for c in lacking:
        err.print(f"  {_shown(c.type)} {c.id[:16]} from {_shown(c.issuer)}"
                  f"{_OUTSIDE if c.foreign else ''}")
    err.print("After the restore they are only in the copy of this wallet kept beside it "
              "(`wallet restore <that copy>` brings it back whole).")


def main() -> None:
    run_cli(app)
