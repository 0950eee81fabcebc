"""``ledger-node``: run and operate an agency's ledger node."""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import hmac
import os
import secrets
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from ledger.display import printable
from ledger.errors import KeyFileError, LedgerError
from ledger.files import (
    NOT_STDOUT,
    SigtermSeen,
    Terminated,
    hold_empty_folder,
    make_folders,
    read_capped,
    run_cli,
    sigterm_raises,
    write_atomic,
)
from ledger.keys import PASSPHRASE_ENV, read_passphrase

if TYPE_CHECKING:
    import uvicorn
    from cryptography import x509

    from node.cluster import LocalCluster, RestartAsk
    from node.etcdadmin import EtcdAdmin
    from node.etcdlog import TlsFiles

app = typer.Typer(help="Run and operate an agency's ledger node (node operators).\n\n"
                       "Exit codes: 0 done (or stopped by SIGTERM), 1 refused or failed, 2 "
                       "bad input or usage.",
                  no_args_is_help=True, add_completion=False,
                  pretty_exceptions_show_locals=False)
err = Console(stderr=True, soft_wrap=True)


def _q(value: object) -> str:
    """``value`` (an id, a path, an error that may quote input) as itself in a message written
    with Rich markup: ``[/]`` or ``[old]`` in it would be read as a tag (a MarkupError
    traceback, or the text dropped from what is said)."""
    return escape(printable(str(value)))


@app.command()
def demo(
    data: Annotated[Path, typer.Option(help="Demo data folder (an earlier demo there is "
                                            "replaced).")] = Path("demo-data"),
    serve: Annotated[bool, typer.Option(help="Then seed a demo wallet and serve the civil "
                                             "affairs node (API, explorer, verifier page).")
                     ] = False,
    port: Annotated[int, typer.Option(help="Port for --serve (on 127.0.0.1).", min=1,
                                      max=65535)] = 8000,
) -> None:
    """Create a three-agency demo network (solo ordering, LevelDB) and prove an anchor.

    Key files are encrypted with the passphrase from $LEDGER_KEY_PASSPHRASE (or the file
    $LEDGER_KEY_PASSPHRASE_FILE names) or a prompt; the demo
    wallet (with --serve) with $WALLET_PASSPHRASE (default: the key passphrase).
    """
    import os

    from node.demo import install_service, run_demo, seed_wallet, write_snapshot

    passphrase = _ask_passphrase("for the demo key files", confirm=True)
    given = any(os.environ.get(v) for v in ("WALLET_PASSPHRASE", "WALLET_PASSPHRASE_FILE"))
    try:
        wallet_passphrase = (read_passphrase(env="WALLET_PASSPHRASE") if serve and given
                             else passphrase)
    except KeyFileError as e:  # before anything is built: the demo's wallet would not open
        err.print(f"[red]error:[/] {_q(e)}")
        raise typer.Exit(2) from e
    # Read once, as `ledger-node run` does: every process started from here on (the served
    # node's signature workers, multiprocessing's resource tracker) would otherwise hold both
    # passphrases in its environment, which /proc shows for its whole life.
    for name in (PASSPHRASE_ENV, "WALLET_PASSPHRASE"):
        os.environ.pop(name, None)
    clock = lambda: int(time.time())  # noqa: E731 - the one clock of this command
    try:
        run_demo(data, passphrase, clock=clock)
        if not serve:
            return
        install_service(data, passphrase, clock=clock)
        wallet_path = data / "wallet.db"
        err.print(f"\n[bold]demo wallet[/] {_q(wallet_path)}")
        ids = seed_wallet(data, passphrase, wallet_path, wallet_passphrase, clock=clock)
        snapshot = write_snapshot(data, passphrase, clock=clock)
    except LedgerError as e:
        err.print(f"[red]demo failed:[/] {_q(e)}")
        raise typer.Exit(1) from e
    _serve_demo(data, passphrase, port, wallet_path, ids[1], snapshot, own_wallet_pass=given)


def passphrase_hint(demo_keys: bool, own_wallet_pass: bool) -> str:
    """Which passphrase opens the served demo's wallet: $WALLET_PASSPHRASE(_FILE) when given,
    else the key passphrase (said only when it is scripts/run's throw-away one)."""
    keys = "demo-only-not-secret, the one scripts/run sets"
    if own_wallet_pass:
        return ("(the wallet's passphrase is the one $WALLET_PASSPHRASE gave"
                + (f"; the keys': {keys})" if demo_keys else ")"))
    return (f"(both passphrases: {keys})" if demo_keys
            else "(the wallet's passphrase is the key passphrase this demo was built with)")


def _serve_demo(data: Path, passphrase: bytes, port: int, wallet_path: Path,
                residence_id: str, snapshot: Path, *, own_wallet_pass: bool = False) -> None:
    import hashlib
    import json
    import secrets

    import uvicorn

    from node.app import configure_logging, create_app
    from node.config import Settings
    from node.demo import DEMO_HOLDER_CLAIMS
    from node.service import Node

    url = f"http://127.0.0.1:{port}"
    # An operator token of this run only, said below: the running node holds the store, so
    # issuing more (copies for unlinkable presentations) goes through it (ADR 52).
    token = secrets.token_urlsafe(24)
    settings = Settings(data=data.resolve(), agency="civil", port=port, public_url=url,
                        operator_token_sha256=hashlib.sha256(token.encode()).hexdigest())
    claims = data / "residence-claims.json"  # the demo citizen's (made up)
    write_atomic(claims, json.dumps(DEMO_HOLDER_CLAIMS["civil", "residence"]).encode(), 0o600)
    # As `ledger-node run`: from opening the node on, a stop (SIGTERM, SIGHUP, Ctrl-C) closes it
    # and ends in one line, and uvicorn's start is _serve's. The node was opened before the
    # clean-up that closes it, and a stop in uvicorn's start was said as "could not serve".
    with _stop_on_sigterm("the demo node") as started:
        try:
            node = Node(settings.data, "civil", passphrase)
        except LedgerError as e:
            err.print(f"[red]cannot open the node:[/] {_q(e)}")
            raise typer.Exit(1) from e
        try:
            _say_demo_steps(data, passphrase, url, token, claims, wallet_path, residence_id,
                            snapshot, own_wallet_pass)
            configure_logging()
            with _startup_failure("127.0.0.1", port):
                _serve(uvicorn.Config(create_app(settings, node=node), host="127.0.0.1",
                                      port=port, log_config=None, access_log=False,
                                      server_header=False, proxy_headers=False), started)
        finally:
            node.close()


def _say_demo_steps(data: Path, passphrase: bytes, url: str, token: str, claims: Path,
                    wallet_path: Path, residence_id: str, snapshot: Path,
                    own_wallet_pass: bool) -> None:
    env = f"WALLET_PATH={wallet_path} WALLET_PASSPHRASE=…"
    # The throw-away demo passphrase of scripts/run is said; one of the user's own never is.
    demo_pass = passphrase == b"demo-only-not-secret"
    key_env = "LEDGER_KEY_PASSPHRASE=demo-only-not-secret " if demo_pass else ""
    said = passphrase_hint(demo_pass, own_wallet_pass)
    # a repository's scripts/run puts .venv/bin on its own PATH, not on another terminal's,
    # and may be run from another folder than the repository's; an installed credledger's
    # commands (outside a virtual environment) are on PATH already
    bindir = Path(sys.executable).parent
    path_hint = (f": export PATH={_q(shlex.quote(str(bindir)))}:$PATH"
                 if sys.prefix != sys.base_prefix and (bindir / "wallet").exists() else "")
    err.print(f"""
[bold]Open[/] {url}/ (explorer) and {url}/verify (the verifying official's page).
[bold]Try[/] (in another terminal, in this folder{path_hint})
  1. In /verify, ask for a [bold]residence[/] credential with district and age_over_65;
     save the request JSON the page shows as desk-request.json.
  2. {_q(env)} wallet present {residence_id[:12]} --request desk-request.json --yes
     and paste the printed string into the page (or upload the PNG): VERIFIED.
  3. {key_env}agency status --data {_q(data)} --agency civil \\
       --credential-id {residence_id} --set revoked --node {url}
  4. Create a new request and present again: NOT VERIFIED, revoked.
  5. {_q(env)} wallet apply elderly-allowance --node {url} --registry {_q(snapshot)} --yes
     applies for the elderly allowance with only the claims its rule needs: approved, and
     the wallet keeps the approval credential.
  6. Copies that two desks cannot link (a holder key each):
     {_q(env)} wallet holder-key --copies 3 --out k.json
     LEDGER_OPERATOR_TOKEN={token} agency issue --node {url} --agency civil \\
       --type residence --claims {_q(claims)} --holder-jwk k-1.json --holder-jwk k-2.json \\
       --holder-jwk k-3.json --out r.bundle
     {_q(env)} wallet receive r-1.bundle --registry {_q(snapshot)}   (and r-2, r-3)
     ledger request --audience https://desk-a.example --type residence --claim district \\
       --out a.json   (and desk-b, b.json), then wallet present ID --request a.json (and
     b.json) with ID one of the three: each desk sees another holder key (the first key is
     the one steps 2 and 4 showed, so the wallet presents the copies of the others). The
     token is this run's only.
  {said}
Stop with Ctrl-C.""", highlight=False, soft_wrap=True)


LIMIT_CONCURRENCY = 512
"""Connections and tasks a node serves at once; more get 503 at once (uvicorn), so slow
clients cannot hold its memory without bound (ADR 46)."""

GC_THRESHOLDS = (20_000, 20, 20)
"""Collector thresholds of a running node (ADR 27). Python's default (700, 10, 10) collects the
young generation every ~50 parsed transactions, and each older collection walks the node's
long-lived objects; measured on a 3-agency cluster, the node processes spent ~18% less CPU per
transaction with these values and the start-up objects frozen."""


def _ask_passphrase(what: str, *, confirm: bool) -> bytes:
    """The passphrase ``what`` (e.g. "for the PKI keys") from the environment or the terminal;
    exits 2 with the reason when there is none."""
    try:
        return read_passphrase(f"Passphrase {what} (or set {PASSPHRASE_ENV} or "
                           f"{PASSPHRASE_ENV}_FILE): ", confirm=confirm)
    except KeyFileError as e:
        err.print(f"[red]error:[/] {_q(e)}")
        raise typer.Exit(2) from e


class _Started:
    """Whether ``ledger-node run`` got as far as serving: uvicorn then says how it stopped."""

    serving = False


@contextlib.contextmanager
def _stop_on_sigterm(starting: str | None = None) -> Iterator[_Started]:
    """Within: SIGTERM raises :class:`~ledger.files.Terminated`, so the ``finally`` blocks inside
    close the store and remove the clear TLS key; the stop it asks for then ends the block quietly.

    uvicorn handles SIGTERM itself (a graceful shutdown), then puts back the handler it found and
    raises the signal again. With the default handler that ended the process on the spot: no
    ``finally`` ran, so the store was never closed and the clear key stayed in its runtime
    folder under /dev/shm. A node stopped this way now exits with status 0.

    With ``starting`` (what is starting): Ctrl-C is a stop too, and a stop that comes before
    the yielded flag says it serves is one line on stderr. A stop in the node's start-up
    (reading its config, opening the store, starting the signature workers or uvicorn) ended
    with no word, with status 143 or 130, or, in uvicorn's start, as a port it "could not
    serve on" (exit 1)."""
    started = _Started()
    seen = SigtermSeen()
    try:
        with sigterm_raises() as seen:
            yield started
    except Terminated:
        if starting is not None and not started.serving:
            err.print(f"{starting} stopped by {seen.signum.name} while starting")
    except KeyboardInterrupt:
        if starting is None:
            raise
        if not started.serving:
            err.print(f"{starting} stopped by SIGINT (Ctrl-C) while starting")


def peer_tls(pki: Path | None, runtime: Path, agency: str) -> TlsFiles:
    """The node's TLS files for etcd and its peers: the unlocked pair and CA from ``runtime``,
    and the revocation list where the operator puts a new one, the PKI folder's ``crl.pem``
    (not the copy ``unlock`` made, which never changes): the peers' client reads it again when
    it changes, and OpenSSL takes only a list the CA signed (ADR 50)."""
    from node.etcdlog import TlsFiles

    crl = (pki / "crl.pem") if pki is not None else (runtime / "crl.pem")
    return TlsFiles(str(runtime / "ca.crt"), str(runtime / f"{agency}.crt"),
                    str(runtime / f"{agency}.key"), str(crl))


GC_EVERY = 60.0
"""Seconds between the full collections a running node makes on its own (ADR 50)."""


def _tune_gc() -> threading.Event:
    """Freeze what start-up built (it lives as long as the process) out of every collection,
    and collect young objects less often. Cycles are still collected, only later: and so that
    "later" has a bound, a full collection runs every ``GC_EVERY`` seconds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    return _collect_every(GC_EVERY)


def _collect_every(interval: float) -> threading.Event:
    """A daemon thread that runs a full collection every ``interval`` seconds, until the event
    it returns is set. With the raised thresholds a full pass came only after ~8 million
    allocations: an idle node kept what clients' dropped TLS connections left in cycles (~100
    KB each, measured) for as long as that took, and nothing bounded how much."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval):
            gc.collect()

    threading.Thread(target=run, name="gc", daemon=True).start()
    return stop


@app.command()
def run(
    config: Annotated[Path, typer.Option(help="Node config file (TOML), from `ledger-node init`.")
                      ] = Path("node.toml"),
    host: Annotated[str | None, typer.Option(help="Bind address (default: the config's, "
                                                  "127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: the config's, 8000).")] = None,
) -> None:
    """Run the node's HTTP service (API and pages) with uvicorn.

    The key passphrase comes from $LEDGER_KEY_PASSPHRASE, the file $LEDGER_KEY_PASSPHRASE_FILE
    names (for a service: no secret in its environment), or a prompt. LEDGER_NODE_* variables
    override the config file's values.
    """
    # From the first step on, SIGTERM, SIGHUP or Ctrl-C stops it cleanly (exit 0): the ExitStack
    # in _run closes the node, then removes the clear TLS key (its callbacks run last-in,
    # first-out, each even if one fails).
    with _stop_on_sigterm("the node") as started:
        _run(config, host, port, started)


def _run(config: Path, host: str | None, port: int | None, started: _Started) -> None:
    import os

    import uvicorn

    from node.app import configure_logging, create_app
    from node.config import ConfigError, Settings
    from node.service import Node

    try:
        given = {"host": host, "port": port}
        settings = Settings.from_toml(config, os.environ,
                                      {k: v for k, v in given.items() if v is not None})
        if settings.port == 0:
            # the system would pick a port, unknown to the peers and public_url, which name
            # this node's; and the node would go on calling its own port 0 (health, log)
            raise ConfigError("port: 0 (a port the system picks) cannot be a node's: its peers "
                              "and public_url name the port it serves on; give one in 1..65535")
    except ConfigError as e:
        err.print(f"[red]bad config:[/] {_q(e)}")
        raise typer.Exit(2) from e
    with contextlib.ExitStack() as cleanup:
        try:
            passphrase = read_passphrase(f"Passphrase of {settings.agency}'s key files "
                                         f"(or set {PASSPHRASE_ENV} or {PASSPHRASE_ENV}_FILE): ")
            # Read once: the signature workers started later need no copy in their environment.
            os.environ.pop(PASSPHRASE_ENV, None)
            replication = None
            runtime: Path | None = None
            if settings.pki is not None and (settings.tls or settings.ordering == "etcd"):
                from node.pki import check_hosts, lock, unlock

                runtime = unlock(settings.pki, settings.agency, passphrase)
                cleanup.callback(lock, runtime)
                # a host its own etcd connection uses that the certificate does not name fails
                # every handshake there: refused here, naming the fix (ADR 54, Left). Its
                # public_url may be a proxy's that re-encrypts to the node by another name:
                # said, not refused (review, ADR 55)
                hosts = settings.tls_hosts()
                try:
                    check_hosts(settings.pki, settings.agency,
                                {k: v for k, v in hosts.items() if k == "public_url"})
                except LedgerError as e:
                    err.print(f"[yellow]warning:[/] {_q(e)} (unless a proxy that reaches this "
                              "node by another name serves public_url)")
                check_hosts(settings.pki, settings.agency,
                            {k: v for k, v in hosts.items() if k != "public_url"})
            if settings.ordering == "etcd":
                from node.service import Replication

                tls = None if runtime is None else peer_tls(settings.pki, runtime,
                                                            settings.agency)
                replication = Replication(settings.etcd_endpoints, settings.peers, tls,
                                          settings.retention, settings.max_batch)
            node = Node(settings.data, settings.agency, passphrase, replication=replication,
                        workers=settings.workers, zone=settings.zone)
            cleanup.callback(node.close)
            if runtime is not None and settings.pki is not None:
                node.watch_certificates(settings.pki, settings.agency, runtime)
        except LedgerError as e:
            err.print(f"[red]cannot open the node:[/] {_q(e)}")
            raise typer.Exit(1) from e
        configure_logging()
        try:
            app_ = create_app(settings, node=node)
        except LedgerError as e:  # the trust list (ADR 39)
            err.print(f"[red]bad config:[/] {_q(e)}")
            raise typer.Exit(2) from e
        err.print(f"node [bold]{_q(settings.agency)}[/] of {_q(node.network)} ({settings.ordering} "
                  f"ordering) on {settings.scheme}://{_q(settings.host)}:{settings.port}")
        _tune_gc()
        ssl: dict[str, str] = {}
        if settings.tls and runtime is not None:
            ssl = {"ssl_certfile": str(runtime / f"{settings.agency}.crt"),
                   "ssl_keyfile": str(runtime / f"{settings.agency}.key")}
        with _startup_failure(settings.host, settings.port):
            # proxy_headers=False: uvicorn would otherwise take X-Forwarded-For from any
            # local process as the client's address, and the rate limit keys on it (ADR 46).
            _serve(uvicorn.Config(app_, host=settings.host, port=settings.port,
                                  log_config=None, access_log=False, server_header=False,
                                  timeout_graceful_shutdown=5, proxy_headers=False,
                                  limit_concurrency=LIMIT_CONCURRENCY,
                                  **ssl), started)  # type: ignore[arg-type]


def _serve(config: uvicorn.Config, started: _Started) -> None:
    """``uvicorn.run`` of one server, with SIGHUP (a closed terminal or SSH session) taken as
    uvicorn takes SIGTERM: a graceful shutdown. uvicorn handles SIGINT and SIGTERM only, so a
    SIGHUP raised :class:`~ledger.files.Terminated` inside its event loop: the open requests
    were cut, and the log's last line was a traceback. Exits 3 when it could not start.

    A stop that came before uvicorn took the signals (Ctrl-C, or SIGTERM as
    :class:`~ledger.files.Terminated`) goes on to the caller: it was taken for a server that
    could not start ("could not serve on …", exit 1). One uvicorn raises again after its own
    graceful shutdown ends here."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            found = signal.getsignal(signal.SIGHUP)
            taken = found not in (signal.SIG_IGN, None)  # nohup's ignored SIGHUP stays so
            if taken:
                signal.signal(signal.SIGHUP, self.handle_exit)
            try:
                with super().capture_signals():
                    yield
            finally:
                if taken:
                    signal.signal(signal.SIGHUP, found)

    config.load_app()
    server = Server(config=config)
    try:
        server.run()
    except KeyboardInterrupt:
        if not server.started:
            raise
    started.serving = server.started
    if not server.started:
        raise SystemExit(3)  # as uvicorn.run: it could not listen


@contextlib.contextmanager
def _startup_failure(host: str, port: int) -> Iterator[None]:
    """uvicorn exits 3 when it cannot listen (its log line says why): exit 1, saying where."""
    try:
        yield
    except SystemExit as e:
        if e.code != 3:
            raise
        err.print(f"[red]could not serve on {_q(host)}:{port}[/] (in use by another process? the "
                  "line above says why)")
        raise typer.Exit(1) from e


@app.command()
def init(
    data: Annotated[Path, typer.Option(help="An existing node data folder (<data>/ledger, "
                                            "<data>/keys), e.g. the demo's; with "
                                            "--new-network, a new or empty folder.")],
    agency: Annotated[str | None, typer.Option(
        help="The agency this node acts for (needed unless --no-config).",
        show_default=False)] = None,
    config_out: Annotated[Path | None, typer.Option(
        help="Where to write the config (default: node.toml in the current folder).",
        show_default=False)] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing config file.")] = False,
    new_network: Annotated[str | None, typer.Option(
        help="Create a NEW network of this id in --data (keys for every --founder, encrypted, "
             "and a genesis they all sign) before writing the config.")] = None,
    no_config: Annotated[bool, typer.Option(
        "--no-config", help="With --new-network: make the keys and the genesis only, no config "
                            "and no operator token (the founders' ceremony: no node runs from "
                            "its folder; each founder writes its config once it has its part)."
    )] = False,
    founder: Annotated[list[str] | None, typer.Option(
        help="With --new-network: a founding agency as ID=Name (repeat for each).")] = None,
    quorum: Annotated[int, typer.Option(help="With --new-network: the governance quorum.")
                      ] = 1,
    etcd_endpoint: Annotated[list[str] | None, typer.Option(
        help="A network node (ordering = \"etcd\"): an etcd client URL of the network, this "
             "agency's own member first (repeat for each member).")] = None,
    peer: Annotated[list[str] | None, typer.Option(
        help="With --etcd-endpoint: another agency's node URL to catch up from (repeat).")
                    ] = None,
    pki: Annotated[Path | None, typer.Option(
        help="The agency's PKI folder (ca.crt, crl.pem, <agency>.crt/.key): mTLS to https "
             "etcd endpoints, and HTTPS with --tls.")] = None,
    tls: Annotated[bool, typer.Option(help="Serve HTTPS with the agency certificate (needs "
                                           "--pki).")] = False,
    host: Annotated[str, typer.Option(help="The bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="The port (1..65535).")] = 8000,
    public_url: Annotated[str | None, typer.Option(
        help="The URL peers and verifiers reach this node at.")] = None,
) -> None:
    """Write a node config (and, with --new-network, keys and a genesis) and print a new
    operator token once.

    With --etcd-endpoint (and --peer, --pki, --tls) the config is a network node's: it orders
    through the network's etcd and catches up from its peers (README: "A new agency joins a
    running network").

    Only the token's SHA-256 goes into the config; keep the token (it authorises issuing and
    status changes through the API). Key files are encrypted with $LEDGER_KEY_PASSPHRASE (or
    the file $LEDGER_KEY_PASSPHRASE_FILE names) or a prompted passphrase.
    """
    import hashlib
    import json
    import secrets

    from ledger.store import Store
    from node.config import ConfigError, Settings, network_lines

    endpoints, peers = tuple(etcd_endpoint or ()), tuple(peer or ())
    if no_config:
        given = [o for o, v in (("--new-network", new_network is None), ("--agency", agency),
                                ("--config-out", config_out), ("--etcd-endpoint", endpoints),
                                ("--peer", peers), ("--pki", pki), ("--tls", tls),
                                ("--public-url", public_url), ("--force", force),
                                # a config's own (their defaults not told from given ones)
                                ("--host", host != "127.0.0.1"), ("--port", port != 8000))
                 if v]
        if given:
            why = ("it is for --new-network" if given[0] == "--new-network" else
                   f"leave out {given[0]}")
            err.print(f"[red]--no-config:[/] {why}: it makes a new network's keys and genesis "
                      "only (--new-network, --founder, --quorum, --data); nothing was made")
            raise typer.Exit(2)
        assert new_network is not None
        _new_network(data, new_network, founder or [], quorum, None)
        err.print("no config written (--no-config): each founder writes its own with `ledger-node "
                  "init --data ITS-DATA --agency ID` once it has its part")
        return
    if agency is None:
        err.print("[red]missing option --agency:[/] the agency the config is for (only "
                  "--new-network --no-config writes no config)")
        raise typer.Exit(2)
    if config_out is None:
        config_out = Path("node.toml")
    try:
        if peers and not endpoints:
            raise ConfigError("--peer: peers are a network node's: give its --etcd-endpoint too")
        if port == 0:
            raise ConfigError("port: 0 (a port the system picks) cannot be a node's; give one "
                              "in 1..65535")
        if pki is not None and not all((pki / f).is_file() for f in
                                       ("ca.crt", f"{agency}.crt", f"{agency}.key")):
            raise ConfigError(f"pki: {pki} holds no ca.crt and {agency}.crt/.key (copy them "
                              f"from where the CA is kept: `ledger-node pki add --agency "
                              f"{agency}` made them)")
        Settings(data=data, agency=agency, host=host, port=port, public_url=public_url,
                 ordering="etcd" if endpoints else "solo", etcd_endpoints=endpoints,
                 peers=peers, pki=pki, tls=tls)
    except ConfigError as e:
        err.print(f"[red]bad option:[/] {_q(e)}")
        raise typer.Exit(2) from e
    if new_network is None and (founder or quorum != 1):
        err.print("[red]--founder and --quorum make a new network:[/] give --new-network ID "
                  "too (without it, init writes the config of an existing data folder)")
        raise typer.Exit(2)
    if str(config_out) == "-":  # standard output, which init does not write: not a file "-"
        err.print(f"[red]--config-out:[/] {NOT_STDOUT}")
        raise typer.Exit(2)
    if config_out.is_dir() or (config_out.parent.exists() and not config_out.parent.is_dir()):
        err.print(f"[red]cannot write {_q(config_out)}:[/] give a file path in a folder")
        raise typer.Exit(2)
    if new_network is not None:
        if config_out.exists() and not force:  # before anything is made: bad input changes nothing
            err.print(f"[red]{_q(config_out)} exists;[/] pass --force to replace it")
            raise typer.Exit(2)
        _new_network(data, new_network, founder or [], quorum, agency)
    missing = [str(p) for p in (data / "ledger", data / "keys" / f"{agency}.issuer.key",
                                data / "keys" / f"{agency}.node.key") if not p.exists()]
    if missing:
        err.print(f"[red]not a node data folder for {_q(repr(agency))}:[/] missing "
                  f"{_q(', '.join(missing))}")
        raise typer.Exit(2)
    try:
        with Store(data / "ledger", create=False) as store:
            registry = store.registry
            if registry is None:
                err.print(f"[red]the ledger in {_q(data)} has no genesis[/]")
                raise typer.Exit(2)
            if registry.agency(agency) is None:
                if not endpoints:
                    err.print(f"[red]agency {_q(repr(agency))} is not in this ledger's "
                              "registry[/] (a node joining a network: give --etcd-endpoint, "
                              "and it learns its admission by catching up)")
                    raise typer.Exit(2)
                err.print(f"note: agency {_q(repr(agency))} is not yet in this copy's registry; "
                          "the node learns governance admitted it by catching up from etcd and "
                          "its peers")
    except LedgerError as e:
        err.print(f"[red]cannot read the ledger in {_q(data)}:[/] {_q(e)}")
        raise typer.Exit(1) from e
    if config_out.exists() and not force:
        err.print(f"[red]{_q(config_out)} exists;[/] pass --force to replace it")
        raise typer.Exit(2)
    token = secrets.token_urlsafe(32)
    text = (f"# ledger-node config for {agency}; written by `ledger-node init`\n"
            f"data = {json.dumps(str(data.resolve()))}\n"
            f"agency = {json.dumps(agency)}\n"
            f"host = {json.dumps(host)}\n"
            f"port = {port}\n"
            f'operator_token_sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"\n'
            "max_body_bytes = 262144\n"
            "cors_origins = []\n"
            + (f"public_url = {json.dumps(public_url)}\n" if public_url is not None else
               '# public_url = "https://node.example"  # the audience of presentation requests\n')
            + network_lines(endpoints, peers, None if pki is None else str(pki.resolve()), tls) +
            '# trust_list = "trust.json"        # issuers outside the network (docs/foreign-'
            'issuers.md)\n'
            '# status_tokens = "status-tokens"  # their Status List Tokens (*.jwt)\n'
            '# time_zone = "Asia/Shanghai"      # the calendar of derived ages and decision '
            'days (UTC when not set)\n')
    try:  # whole or not at all, 0600 from the start
        make_folders(config_out.parent, 0o750)
        write_atomic(config_out, text.encode(), 0o600, overwrite=force)
    except FileExistsError:
        err.print(f"[red]{_q(config_out)} was written meanwhile by another process;[/] it is not "
                  "replaced (no operator token was made: pass --force to replace it)")
        raise typer.Exit(2) from None
    except OSError as e:
        err.print(f"[red]cannot write {_q(config_out)}:[/] {_q(e.strerror or e)} (no operator "
                  "token was made: run init again, without --new-network if it made the network)")
        raise typer.Exit(1) from e
    err.print(f"wrote {_q(config_out)}")
    print(f"operator token (shown once; only its SHA-256 is stored): {token}")


def _new_network(data: Path, network: str, founders: list[str], quorum: int,
                 agency: str | None) -> None:
    """Generate every founder's node and issuer keys and commit the genesis in ``data``;
    ``agency``, when given, must be a founder (the one the config is written for)."""
    from ledger.chain import build_genesis
    from ledger.errors import DecodeError
    from ledger.keys import PrivateKey, save_private_key
    from ledger.network import Agency, genesis_tx
    from ledger.store import Store
    from ledger.tx import MAX_SIGS

    if len(founders) > MAX_SIGS:
        err.print(f"[red]{len(founders)} founders:[/] every founder signs the genesis, and a "
                  f"transaction carries at most {MAX_SIGS} signatures; found the network with "
                  "at most that many and admit the others by governance (`agency propose "
                  "add_agency`)")
        raise typer.Exit(2)
    agencies = []
    for item in founders:
        aid, sep, name = (part.strip() for part in item.partition("="))
        if not sep or not aid or not name:  # after strip: "edu= " named it "" on the ledger
            err.print(f"[red]bad --founder {_q(repr(item))}:[/] write ID=Name, e.g. "
                      "edu=Education Bureau")
            raise typer.Exit(2)
        agencies.append(Agency(aid, name, PrivateKey.generate(),
                               PrivateKey.generate()))
    if not agencies:
        err.print("[red]a new network needs its founders:[/] give each with --founder ID=Name")
        raise typer.Exit(2)
    if agency is not None and agency not in {a.id for a in agencies}:
        err.print(f"[red]--agency {_q(repr(agency))} must be one of the --founder ids[/]")
        raise typer.Exit(2)
    if data.exists() and any(data.iterdir()):
        err.print(f"[red]{_q(data)} is not empty:[/] a new network needs a new data folder")
        raise typer.Exit(2)
    try:
        genesis = genesis_tx(network, agencies, quorum, int(time.time()))
    except (DecodeError, ValueError) as e:  # ValueError: a --quorum past 64 bits (the codec's)
        err.print(f"[red]cannot make that genesis:[/] {_q(e)}")
        raise typer.Exit(2) from e
    passphrase = _ask_passphrase("for the new key files", confirm=True)
    try:
        held, made = hold_empty_folder(data)
    except OSError as e:
        err.print(f"[red]cannot create the network in {_q(data)}:[/] {_q(e.strerror or e)}; "
                  "nothing was written")
        raise typer.Exit(1) from e
    if held is None:  # filled while the passphrase was asked (another init, say)
        err.print(f"[red]{_q(data)} is not empty:[/] a new network needs a new data folder "
                  "(another process wrote into it meanwhile); nothing was written")
        raise typer.Exit(2)
    try:
        (data / "keys").mkdir(mode=0o700)
        for a in agencies:
            save_private_key(data / "keys" / f"{a.id}.node.key", a.node_key, passphrase)
            save_private_key(data / "keys" / f"{a.id}.issuer.key", a.issuer_key, passphrase)
        block0 = build_genesis(genesis)
        assert block0.header is not None  # block 0 holds the genesis
        genesis_hash = block0.header.hash
        with Store(data / "ledger") as store:
            store.write_block(block0)
    except BaseException as e:  # a full disk, Ctrl-C, SIGTERM: no half-made folder is left
        import shutil

        # only what this run made: the folder was empty, and held, when it began
        for part in (data / "keys", data / "ledger"):
            shutil.rmtree(part, ignore_errors=True)
        if made:
            with contextlib.suppress(OSError):
                data.rmdir()
        if not isinstance(e, (OSError, LedgerError)):
            raise
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        err.print(f"[red]cannot create the network in {_q(data)}:[/] {_q(why)}; nothing was kept")
        raise typer.Exit(1) from e
    finally:
        os.close(held)
    err.print(f"new network [bold]{_q(network)}[/]: {len(agencies)} founders, quorum {quorum}; "
              f"genesis {genesis_hash.hex()}, keys in {_q(data / 'keys')}")
    # block 0's hash in full: what `ledger audit --genesis` and `ledger import --genesis` pin


pki_app = typer.Typer(help="The network's PKI: a CA, one certificate per agency (etcd peer and "
                       "client mTLS, node HTTPS) and the CA's revocation list (crl.pem). Private "
                       "keys are encrypted with $LEDGER_KEY_PASSPHRASE (or the file "
                       "$LEDGER_KEY_PASSPHRASE_FILE names) or a prompted passphrase. Run where "
                       "the CA key is kept; copy each agency its .crt/.key, ca.crt and crl.pem.",
                       no_args_is_help=True,
                       pretty_exceptions_show_locals=False)
app.add_typer(pki_app, name="pki")

_PKI_FOLDER = Annotated[Path, typer.Option("--pki", help="The PKI folder (with ca.key).")]
_PKI_AGENCY = Annotated[str, typer.Option(help="The agency id.")]
_PKI_HOSTS = Annotated[list[str] | None, typer.Option(
    "--host", help="A host name or IP address the agency's node and etcd member are reached "
                   "at, for its certificate (repeat). 127.0.0.1, localhost and the agency id "
                   "are always in it.")]


def _capped(cert: x509.Certificate, now: dt.datetime) -> str:
    """A note when the CA's end, not VALID_DAYS, set a new certificate's end."""
    from node.pki import VALID_DAYS

    if cert.not_valid_after_utc - now < dt.timedelta(days=VALID_DAYS - 1):
        return ("\n[yellow]note:[/] it ends with the network CA, not "
                f"{VALID_DAYS} days from now: renew the CA (`ledger-node pki renew-ca`, same "
                "key), copy ca.crt to every agency, then renew this certificate again")
    return ""


def _check_pki_input(*, network: str | None = None, agencies: list[str] | None = None,
                     hosts: list[str] | None = None) -> None:
    """Bad ids or hosts given to a PKI command: said and exit 2, before any passphrase is
    asked or file written."""
    from node.pki import PkiError, check_names

    try:
        check_names(network=network, agencies=agencies or [], hosts=hosts or [])
    except PkiError as e:
        err.print(f"[red]bad option:[/] {_q(e)}")
        raise typer.Exit(2) from e


def _pki_step(what: str, step: Callable[[bytes, dt.datetime], str], *,
              confirm: bool = False, changes: Path | None = None) -> None:
    """Ask the passphrase, run ``step`` and say its result; a PKI error, or a file that cannot
    be read, is one line, exit 1. ``changes``: the PKI folder ``step`` writes, held for it
    (another command changing it is waited for)."""
    from node.pki import changing

    passphrase = _ask_passphrase("for the PKI keys", confirm=confirm)
    try:
        with contextlib.ExitStack() as held:
            if changes is not None:
                held.enter_context(changing(changes, lambda: err.print(
                    f"waiting: another command is changing {_q(changes)}")))
            said = step(passphrase, dt.datetime.now(dt.UTC))
    except (LedgerError, OSError) as e:
        why = str(e)
        if isinstance(e, OSError) and e.strerror:  # a write's own error names no file
            why = (f"{e.filename}: {e.strerror}" if e.filename else
                   e.strerror if changes is None else f"{e.strerror} (in {changes})")
        err.print(f"[red]cannot {_q(what)}:[/] {_q(why)}")
        raise typer.Exit(1) from e
    err.print(said)


@pki_app.command("create")
def pki_create(
    out: Annotated[Path, typer.Option(help="New folder for the CA and certificates, in a "
                                           "folder that exists.")],
    network: Annotated[str, typer.Option(help="The network id (in the CA's name).")],
    agency: Annotated[list[str] | None, typer.Option(
        help="An agency id to certify, its key made here (repeat; or none, and each agency "
             "certified later with `pki add`, --csr for a key it made and keeps).",
        show_default=False)] = None,
    host: Annotated[list[str] | None, typer.Option(
        "--host", metavar="AGENCY=HOST", help="A host name or IP address an agency's node and "
                                              "etcd member are reached at, for its "
                                              "certificate (repeat; e.g. "
                                              "civil=ledger.civil.example).")] = None,
) -> None:
    """Create the network CA (ten years), an empty revocation list and one certificate per
    agency (825 days)."""
    from node.pki import create_pki

    agency = agency or []
    if str(out) == "-":  # standard output: a PKI is a folder, never a folder named "-"
        err.print(f"[red]--out:[/] {NOT_STDOUT}")
        raise typer.Exit(2)
    if not out.parent.is_dir():  # as every other command's output: a mistyped path is not made
        err.print(f"[red]error:[/] --out {_q(out)}: no folder {_q(out.parent)} (make it first, "
                  "or give a new folder in one that exists)")
        raise typer.Exit(2)
    hosts: dict[str, list[str]] = {}
    for given in host or []:
        name, sep, where = given.partition("=")
        if not sep or not where:
            err.print(f"[red]--host {_q(repr(given))}:[/] give AGENCY=HOST, e.g. "
                      "civil=ledger.civil.example")
            raise typer.Exit(2)
        hosts.setdefault(name, []).append(where)
    _check_pki_input(network=network, agencies=agency,
                     hosts=[h for given in hosts.values() for h in given])

    def step(passphrase: bytes, now: dt.datetime) -> str:
        create_pki(out, network, agency, passphrase, now=now, hosts=hosts)
        return f"CA and {len(agency)} agency certificate(s) in {_q(out)} (keys encrypted)"

    _pki_step(f"create the PKI in {out}", step, confirm=True)


@pki_app.command("add")
def pki_add(pki: _PKI_FOLDER, agency: _PKI_AGENCY, host: _PKI_HOSTS = None,
            csr: _PKI_CSR = None) -> None:
    """Certify an agency governance admitted (or one whose certificate was revoked): a new
    key made here (copied to the agency with `pki copy-key`), or, with --csr, the key the
    agency made itself and keeps."""
    from node.pki import ensure_crl, ensure_operator_cert, issue_agency_cert

    _check_pki_input(agencies=[agency], hosts=host)
    request = _read_request(csr, agency)

    def step(passphrase: bytes, now: dt.datetime) -> str:
        ensure_crl(pki, passphrase, now=now)
        ensure_operator_cert(pki, passphrase, now=now)  # a PKI from before ADR 48
        cert = issue_agency_cert(pki, agency, passphrase, now=now, hosts=host or [],
                                 csr=request)
        where = ("its key stays with the agency" if request is not None else
                 f"key encrypted in {_q(pki / (agency + '.key'))}")
        return (f"certificate for {agency} in {_q(pki / (agency + '.crt'))} ({where}), valid "
                f"until {cert.not_valid_after_utc:%Y-%m-%d}" + _capped(cert, now))

    _pki_step(f"certify {agency}", step, changes=pki)


_PKI_CSR = Annotated[Path | None, typer.Option(
    "--csr", metavar="FILE",
    help="The agency's certificate signing request (`ledger-node pki request` made it where "
         "the agency keeps its key): the certificate is for that key, and no key of the "
         "agency is made or kept here.", dir_okay=False)]


def _read_request(csr: Path | None, agency: str) -> bytes | None:
    """The signing request ``--csr`` names, checked for ``agency`` (None without one); bad
    input is said, exit 2, before the keeper's passphrase is asked."""
    from node.pki import CSR_MAX, PkiError, check_request

    if csr is None:
        return None
    try:
        request = read_capped(csr, CSR_MAX)
        check_request(request, agency)
    except OSError as e:
        err.print(f"[red]error:[/] --csr {_q(csr)}: {_q(e.strerror or e)}")
        raise typer.Exit(2) from e
    except PkiError as e:
        err.print(f"[red]error:[/] --csr {_q(csr)}: {_q(e)}; nothing was made")
        raise typer.Exit(2) from e
    return request


@pki_app.command("request")
def pki_request(
    agency: _PKI_AGENCY,
    out: Annotated[Path, typer.Option(
        help="The agency's own PKI folder (made 0700 if missing, in a folder that exists): "
             "AGENCY.key and AGENCY.csr go there.", file_okay=False)],
) -> None:
    """Make this agency's TLS key and a certificate signing request for the PKI's keeper.

    Run by the agency, where its node and etcd member run: the key is sealed under the
    agency's passphrase ($LEDGER_KEY_PASSPHRASE, the file $LEDGER_KEY_PASSPHRASE_FILE names,
    or asked twice) in AGENCY.key (0600) and never leaves; give AGENCY.csr (public) to the
    keeper, who signs it with `ledger-node pki add --agency AGENCY --csr AGENCY.csr` and gives
    back AGENCY.crt, with ca.crt and crl.pem. Nothing is written over."""
    from node.pki import PkiError, make_request

    _check_pki_input(agencies=[agency])
    bad = (f"--out: {NOT_STDOUT}" if str(out) == "-" else
           f"--out {out}: no folder {out.parent}" if not out.parent.is_dir() else
           next((f"{out / n} exists (nothing was written)" for n in
                 (f"{agency}.key", f"{agency}.csr") if (out / n).exists()), None))
    if bad is not None:
        err.print(f"[red]error:[/] {_q(bad)}")
        raise typer.Exit(2)
    passphrase = _ask_passphrase(f"for {agency}'s keys", confirm=True)
    try:
        out.mkdir(mode=0o700, exist_ok=True)
        made = make_request(out, agency, passphrase)
    except (PkiError, OSError) as e:
        why = f"{e.filename}: {e.strerror}" if isinstance(e, OSError) and e.strerror else str(e)
        err.print(f"[red]cannot make {_q(agency)}'s request:[/] {_q(why)}")
        raise typer.Exit(1) from e
    err.print(f"{agency}'s TLS key sealed in {_q(out / (agency + '.key'))} (0600; it stays "
              f"here); give {_q(made)} to the PKI's keeper (`ledger-node pki add --pki PKI "
              f"--agency {agency} --csr {made.name}`)")


def _another_passphrase(new: bytes, old: bytes, same: str, who: str) -> None:
    """Exit 2, saying ``same``, when the ``new`` passphrase is the ``old`` one: a key sealed
    again under it would open for whoever knew the old (``who`` should be the only one)."""
    if hmac.compare_digest(new, old):
        err.print(f"[red]error:[/] {same}: give one only {who} knows in {PASSPHRASE_ENV}; "
                  "nothing was written")
        raise typer.Exit(2)


@pki_app.command("copy-key")
def pki_copy_key(
    pki: _PKI_FOLDER, agency: _PKI_AGENCY,
    out_file: Annotated[Path, typer.Option(
        "--out", help="Where to write the copy: the agency's own PKI folder, as "
                      "AGENCY.key.")],
) -> None:
    """Copy an agency's TLS key for the agency, sealed again under the agency's own passphrase.

    The PKI's keys are sealed under the keeper's passphrase ($LEDGER_FROM_PASSPHRASE, the file
    $LEDGER_FROM_PASSPHRASE_FILE names, or asked); the agency's `ledger-node run` and
    `ledger-node etcd run` open its key with the agency's passphrase ($LEDGER_KEY_PASSPHRASE,
    its _FILE, or asked twice), as its other keys. Written 0600; never printed."""
    from ledger.keys import read_passphrase
    from node.pki import PkiError, resealed_key

    _check_pki_input(agencies=[agency])
    source = pki / f"{agency}.key"
    bad = (f"--out {out_file}: {NOT_STDOUT}" if str(out_file) == "-" else
           f"no key of {agency} in {pki} (`ledger-node pki add` makes one)"
           if not source.is_file() else
           f"--out {out_file}: no folder {out_file.parent}" if not out_file.parent.is_dir() else
           f"--out {out_file} exists (nothing was written; remove it first)"
           if out_file.exists() else None)
    if bad is not None:
        err.print(f"[red]error:[/] {_q(bad)}")
        raise typer.Exit(2)
    try:
        old = read_passphrase(f"Passphrase of the PKI keys in {pki} (or set "
                              "LEDGER_FROM_PASSPHRASE): ", env="LEDGER_FROM_PASSPHRASE")
    except KeyFileError as e:
        err.print(f"[red]error:[/] {_q(e)}")
        raise typer.Exit(2) from e
    new = _ask_passphrase(f"for {agency}'s keys", confirm=True)
    _another_passphrase(new, old, f"{agency}'s passphrase is the keeper's",
                        agency)  # the keeper would open the agency's copy
    try:
        sealed = resealed_key(source, old, new, certificate=pki / f"{agency}.crt")
        write_atomic(out_file, sealed, 0o600, overwrite=False)
    except PkiError as e:
        err.print(f"[red]cannot copy {_q(agency)}'s key:[/] {_q(e)}")
        raise typer.Exit(1) from e
    except OSError as e:
        err.print(f"[red]error:[/] cannot write {_q(out_file)}: {_q(e.strerror or e)}")
        raise typer.Exit(1) from e
    err.print(f"{agency}'s TLS key sealed again → {_q(out_file)} (0600), under {agency}'s "
              "passphrase")


@pki_app.command("renew")
def pki_renew(pki: _PKI_FOLDER, agency: _PKI_AGENCY, host: _PKI_HOSTS = None,
              csr: _PKI_CSR = None) -> None:
    """Give an agency a new key and certificate before its certificate expires (or after).
    The old one stays valid until it expires (kept in superseded/; `revoke` revokes it too),
    so the agency's running node and etcd member keep working; they take the new pair when
    restarted with it. The new certificate names the hosts the old one did, and --host. It
    never outlives the CA: renew the CA first when it ends sooner (`renew-ca`). For a stolen
    key use `revoke` and `add` instead. With --csr, for an agency that keeps its own key: a
    new certificate for the request's key (the request it made before serves), no key made
    here, and a key made here before removed (it is the old certificate's); without --csr
    such an agency (no AGENCY.key here) is refused, as a key made here is not the one its node
    opens."""
    from node.pki import renew_agency_cert

    _check_pki_input(agencies=[agency], hosts=host)
    request = _read_request(csr, agency)

    def step(passphrase: bytes, now: dt.datetime) -> str:
        cert = renew_agency_cert(pki, agency, passphrase, now=now, hosts=host or [],
                                 csr=request)
        give = (f"{agency}.crt (its key stays with the agency)" if request is not None else
                f"{agency}.crt and {agency}.key")
        return (f"new certificate for {agency}, valid until "
                f"{cert.not_valid_after_utc:%Y-%m-%d}: copy {give} to the agency and restart "
                "its etcd member and node" + _capped(cert, now))

    _pki_step(f"renew {agency}'s certificate", step, changes=pki)


@pki_app.command("renew-ca")
def pki_renew_ca(pki: _PKI_FOLDER) -> None:
    """Move the network CA's end ten years on: a new ca.crt for the same CA (same name, same
    key), so every certificate it signed verifies under the old and the new alike. Copy the
    new ca.crt and crl.pem (its revocation list, re-signed to the new end) to every agency's
    PKI folder; each takes it at its next restart (etcd members
    and nodes), one at a time, before the old one ends. Then renew agency certificates the
    old CA's end had cut short. (A stolen CA key needs a new PKI instead.)"""
    from node.pki import renew_ca

    def step(passphrase: bytes, now: dt.datetime) -> str:
        cert = renew_ca(pki, passphrase, now=now)
        return (f"the network CA is valid until {cert.not_valid_after_utc:%Y-%m-%d} "
                f"({_q(pki / 'ca.crt')}; the old one kept in {_q(pki / 'superseded')}): copy "
                "ca.crt and crl.pem (valid as long now) to every agency's PKI folder and "
                "restart their etcd members and nodes one at a time")

    _pki_step("renew the network CA", step, changes=pki)


@pki_app.command("revoke")
def pki_revoke(pki: _PKI_FOLDER, agency: _PKI_AGENCY) -> None:
    """Revoke an agency's certificates (an agency governance removed, a lost key): they go on
    crl.pem, which etcd members read on every new connection; the agency's key is deleted here
    and its certificate moved to revoked/. Copy crl.pem into every agency's PKI folder; a
    running node reads it again when it changes. Then `ledger-node etcd take-out`: its etcd
    user goes, which refuses even the connections it already holds, and its member leaves."""
    from node.pki import ensure_crl, ensure_operator_cert, revoke_agency_cert

    def step(passphrase: bytes, now: dt.datetime) -> str:
        ensure_crl(pki, passphrase, now=now)
        ensure_operator_cert(pki, passphrase, now=now)  # a PKI from before ADR 48
        cert = revoke_agency_cert(pki, agency, passphrase, now=now)
        return (f"{agency}'s certificate {cert.serial_number:040x} is revoked in "
                f"{_q(pki / 'crl.pem')}"
                "; copy that file to every agency's PKI folder")

    _pki_step(f"revoke {agency}'s certificate", step, changes=pki)


@pki_app.command("list")
def pki_list(pki: Annotated[Path, typer.Option("--pki", help="The PKI folder.")]) -> None:
    """The CA's certificate, the operator's, and every agency certificate in the folder: its
    serial, when it expires, whether revoked. No agency certificate outlives the CA's."""
    from node.pki import list_certificates

    try:
        certs = list_certificates(pki)
    except LedgerError as e:
        err.print(f"[red]cannot read the PKI:[/] {_q(e)}")
        raise typer.Exit(1) from e
    now = dt.datetime.now(dt.UTC)
    for c in certs:
        state = "revoked" if c.revoked else (
            "expired" if c.not_after <= now else f"{(c.not_after - now).days} days left") + (
            " (superseded)" if c.superseded and not c.revoked else "")
        print(f"{c.agency:20} {c.serial:040x}  until {c.not_after:%Y-%m-%d}  {state}")


etcd_app = typer.Typer(help="Administer the network's etcd as its operator, with the PKI's "
                        "operator certificate (etcd's root once its auth is on; ADR 48). The "
                        "operator key is unlocked with $LEDGER_KEY_PASSPHRASE (or the file "
                        "$LEDGER_KEY_PASSPHRASE_FILE names) or a prompted passphrase and stays "
                        "in memory. `ledger-node cluster` does all of this itself.",
                        no_args_is_help=True,
                        pretty_exceptions_show_locals=False)
app.add_typer(etcd_app, name="etcd")
_ETCD_URL = Annotated[str, typer.Option("--endpoint", help="A member's client URL, "
                                                          "https://host:port.")]


def _etcd_step(what: str, pki: Path, endpoint: str,
               step: Callable[[EtcdAdmin], str]) -> None:
    from node.etcdadmin import EtcdAdmin
    from node.pki import operator_credentials

    scheme, _, target = endpoint.partition("://")
    if scheme != "https" or not target:
        err.print(f"[red]bad --endpoint {_q(repr(endpoint))}:[/] give a member's client URL, "
                  "https://host:port")
        raise typer.Exit(2)
    if not pki.is_dir():  # a mistyped path: not "a PKI from before ADR 48" (its operator key)
        err.print(f"[red]bad --pki:[/] no folder {_q(pki)} (the PKI folder, where the CA key "
                  "is kept); nothing was asked of etcd")
        raise typer.Exit(2)
    _pki_step(what, lambda passphrase, _: step(
        EtcdAdmin(endpoint, operator_credentials(pki, passphrase))))


@etcd_app.command("secure")
def etcd_secure(
    pki: _PKI_FOLDER, endpoint: _ETCD_URL,
    network: Annotated[str, typer.Option(help="The network id (its keys' prefix in etcd).")],
    agency: Annotated[list[str], typer.Option(help="A current agency (repeat).")],
) -> None:
    """Turn etcd's auth on, once: each agency an etcd user (its certificate's CN) that reads
    and writes the network's keys and nothing else; the operator's certificate root."""
    def step(admin: EtcdAdmin) -> str:
        admin.secure(network, agency)
        return f"etcd's access control is on: {len(agency)} agency user(s), root = operator"

    _etcd_step("turn on etcd's access control", pki, endpoint, step)


@etcd_app.command("admit")
def etcd_admit(pki: _PKI_FOLDER, endpoint: _ETCD_URL, agency: _PKI_AGENCY,
               peer_url: Annotated[str | None, typer.Option(
                   "--peer-url", help="Also add its etcd member, which the other members "
                                      "will reach at this URL, https://host:port (2380), "
                                      "and print the --initial-cluster its `ledger-node etcd "
                                      "run` takes. Start that member soon: one added and not "
                                      "running counts against etcd's quorum.")] = None,
               ) -> None:
    """Make an agency governance admitted an etcd user (before its member is added), and with
    --peer-url add its member too. Refused for an agency whose certificate the PKI folder does
    not hold, or holds revoked (a misspelt name, an agency taken out): its member could not
    connect with it."""
    if peer_url is not None:
        _https_url("--peer-url", peer_url, "the new member's peer URL")

    def step(admin: EtcdAdmin) -> str:
        from node.etcdadmin import EtcdAdminError
        from node.pki import list_certificates, revoked_only

        certs = list_certificates(pki)
        revoked = agency in revoked_only(certs)
        if revoked or not any(c.agency == agency for c in certs):
            raise EtcdAdminError(
                f"the PKI folder {pki} holds " + (
                    f"{agency}'s certificate revoked only (taken out; an agency governance "
                    "removed is not admitted again, one taken out by mistake gets a new "
                    "certificate from `ledger-node pki add`)" if revoked else
                    f"no certificate of {agency!r} (another name? `ledger-node pki list`; a "
                    "new agency's comes from `ledger-node pki add`)")
                + ": nothing was changed")
        admin.admit(agency)
        said = f"{agency} may read and write the network's keys in etcd"
        if peer_url is None:
            return said
        added = admin.add_member(peer_url, wait=30.0)
        _print_initial_cluster(admin, agency, added)
        return (f"{said}; its etcd member {added:016x} is added at {peer_url}: start it with "
                f"`ledger-node etcd run` and the --initial-cluster above")

    _etcd_step(f"admit {agency}", pki, endpoint, step)


@etcd_app.command("take-out")
def etcd_take_out(pki: _PKI_FOLDER, endpoint: _ETCD_URL, agency: _PKI_AGENCY) -> None:
    """Shut an agency governance removed out of etcd: its user goes (refused at once, even
    on connections it holds) and its member leaves the Raft cluster. Revoke its certificate
    first (`ledger-node pki revoke`): refused while the PKI folder holds a valid one (a slip
    of one agency's name for another's would shut a running agency out)."""
    def step(admin: EtcdAdmin) -> str:
        from node.etcdadmin import EtcdAdminError
        from node.pki import list_certificates, revoked_only

        certs = list_certificates(pki)
        if any(c.agency == agency for c in certs) and agency not in revoked_only(certs):
            raise EtcdAdminError(
                f"the PKI folder {pki} holds a valid certificate of {agency!r}: take-out is "
                "for an agency governance removed (another name? `ledger-node pki list`); "
                f"revoke it first, `ledger-node pki revoke --pki {pki} --agency {agency}`: "
                "nothing was changed")
        if not admin.take_out(agency):
            raise EtcdAdminError(
                f"etcd has no user and no member {agency!r} (taken out before, or another "
                "name? `ledger-node etcd members` lists them): nothing was changed")
        return f"{agency} is out of etcd: no user, no member"

    _etcd_step(f"take {agency} out of etcd", pki, endpoint, step)


@etcd_app.command("rejoin")
def etcd_rejoin(pki: _PKI_FOLDER, endpoint: _ETCD_URL, agency: _PKI_AGENCY,
                peer_url: Annotated[str, typer.Option(
                    "--peer-url", help="The member's peer URL, https://host:port (2380).")],
                ) -> None:
    """Let an agency's etcd member whose data folder is lost (a disk replaced) join again:
    the member etcd still counts for it is removed and added anew at --peer-url (ask another
    member's --endpoint). Then start it with `ledger-node etcd run`, an empty --data and the
    --initial-cluster this prints: it joins and copies the others' data; its node catches
    up."""
    scheme, _, target = peer_url.partition("://")
    if scheme != "https" or not target:
        err.print(f"[red]bad --peer-url {_q(repr(peer_url))}:[/] give the member's peer URL, "
                  "https://host:port")
        raise typer.Exit(2)

    def step(admin: EtcdAdmin) -> str:
        member_id = admin.rejoin(agency, peer_url)
        _print_initial_cluster(admin, agency, member_id)
        return (f"{agency}'s member is {member_id:016x} now: start it with `ledger-node etcd "
                "run`, an empty --data and the --initial-cluster above")

    _etcd_step(f"let {agency}'s etcd member rejoin", pki, endpoint, step)


def _print_initial_cluster(admin: EtcdAdmin, agency: str, added: int) -> None:
    """Print the --initial-cluster of a member just added: as etcdctl's member add says it,
    every member's peer URL, the new one (nameless until it starts) by its agency."""
    initial = ",".join(f"{agency if member_id == added else name}={url}"
                       for name, member_id, urls in admin.listing() for url in urls)
    print(f"--initial-cluster {shlex.quote(initial)}")


def _https_url(option: str, url: str, what: str) -> str:
    """``url``'s host when it is https://host:port; else said and exit 2."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme != "https" or not parts.hostname or port is None or \
            parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        err.print(f"[red]bad {option} {_q(repr(url))}:[/] give {what}, https://host:port")
        raise typer.Exit(2)
    return parts.hostname


@etcd_app.command("run")
def etcd_run(
    pki: Annotated[Path, typer.Option(
        "--pki", help="The agency's PKI folder: ca.crt, crl.pem and its own AGENCY.crt and "
                      "AGENCY.key (sealed under the agency's passphrase: its own from `ledger-node "
                      "pki request`, or the keeper's copy from `ledger-node pki copy-key`), "
                      "the certificates as the PKI's keeper gave them.")],
    agency: _PKI_AGENCY,
    data: Annotated[Path, typer.Option(help="The member's etcd data folder (made if missing; "
                                            "kept between runs).")],
    client_url: Annotated[str, typer.Option(
        "--client-url", help="The URL nodes reach this member at, https://host:port (2379); "
                             "its host must be in the agency's certificate.")],
    peer_url: Annotated[str, typer.Option(
        "--peer-url", help="The URL the other members reach it at, https://host:port "
                           "(2380), as it was added (`ledger-node etcd admit --peer-url`).")],
    initial_cluster: Annotated[str | None, typer.Option(
        help="NAME=PEER-URL of every member, this one included, comma-separated, as "
             "`ledger-node etcd admit --peer-url` prints it. Needed at the first run only "
             "(etcd reads its members from its data folder after).")] = None,
    listen_client: Annotated[str | None, typer.Option(
        help="Where to listen for clients if not at --client-url (e.g. "
             "https://0.0.0.0:2379).")] = None,
    listen_peer: Annotated[str | None, typer.Option(
        help="Where to listen for peers if not at --peer-url.")] = None,
    new_cluster: Annotated[str | None, typer.Option(
        "--new-cluster", metavar="NETWORK",
        help="A founder's member of a NEW network's etcd (etcd's --initial-cluster-state new, "
             "with the network id and the genesis hash of --ledger, needed with it, as its "
             "cluster token): every founder gives the same --initial-cluster, naming each "
             "founder's member, and the same network id. At "
             "the first run only, with an empty --data (README: \"Founding agencies start a "
             "network\").")] = None,
    ledger: Annotated[Path | None, typer.Option(
        "--ledger", metavar="DATA",
        help="With --new-cluster: this founder's data folder (or its ledger/), holding the "
             "genesis the ceremony made: a NETWORK that is not its network id, or an "
             "--initial-cluster name that is none of its founders (a misspelt one), is "
             "refused before etcd starts, and the genesis hash joins the cluster token, so "
             "members started from another ceremony's genesis are refused by etcd (\"cluster "
             "ID mismatch\"). Needed with --new-cluster.", file_okay=False)] = None,
) -> None:
    """Run this agency's etcd member in the foreground, with mTLS (clients and peers) from its
    PKI folder and the CA's revocation list crl.pem (a new one copied there counts at once).

    A member joining a running network: add it first, on the network's side, with
    `ledger-node etcd admit --peer-url` (it prints the --initial-cluster to give here). The
    first run joins the others (etcd's --initial-cluster-state existing) and copies their
    data. The founders of a new network each start theirs with --new-cluster NETWORK, the
    same --initial-cluster and --ledger (their copy of the ceremony's genesis) instead: the
    cluster forms once a majority of them run. Later runs of either restart the member from
    --data (no --initial-cluster, --new-cluster or --ledger needed).

    etcd needs the agency's key unencrypted: it is decrypted (passphrase from
    $LEDGER_KEY_PASSPHRASE, the file $LEDGER_KEY_PASSPHRASE_FILE names, or a prompt) only into
    a 0600 file of a private 0700 folder (in memory under /dev/shm where there is one),
    removed when this command ends: Ctrl-C or SIGTERM (etcd is stopped first), or etcd
    exiting (then exit 1). etcd gets no passphrase. Bad options exit 2 before the passphrase
    is asked."""
    from node.cluster import check_etcd_installed, etcd_command, run_etcd_member
    from node.pki import PkiError, check_hosts, check_names

    _check_pki_input(agencies=[agency])
    hosts = {"--client-url": _https_url("--client-url", client_url, "this member's client URL"),
             "--peer-url": _https_url("--peer-url", peer_url, "this member's peer URL")}
    for option, given in (("--listen-client", listen_client), ("--listen-peer", listen_peer)):
        if given is not None:
            _https_url(option, given, "where to listen")

    def refuse(why: str) -> NoReturn:
        err.print(f"[red]etcd member refused:[/] {_q(why)}; nothing was started")
        raise typer.Exit(2)

    joined = (data / "member" / "wal").exists()  # it ran: etcd knows its members
    genesis: str | None = None  # the genesis hash --ledger holds
    if data.exists() and not data.is_dir():
        refuse(f"--data {data} is not a folder")
    if new_cluster is not None:
        try:
            check_names(network=new_cluster)
        except PkiError as e:
            refuse(f"--new-cluster {e}")
        # a member that ran belongs to a cluster already (etcd would ignore "new" and the
        # founders named); one cut short at its first start (member/ without a WAL) starts
        # as new again, as `ledger-node cluster` starts it
        if joined:
            refuse(f"--data {data} already holds an etcd member: restart it without "
                   "--new-cluster and --initial-cluster (a new cluster's member starts from "
                   "an empty data folder)")
        if initial_cluster is None:
            refuse("--new-cluster needs --initial-cluster: every founder's NAME=PEER-URL, "
                   "this member's among them, the same for every founder")
    if ledger is not None and new_cluster is None:
        refuse("--ledger is read with --new-cluster only (a new network's founders)")
    if initial_cluster is None:
        if not joined:
            refuse("--initial-cluster is needed at the first run (`ledger-node etcd admit "
                   "--peer-url` prints it)")
        initial_cluster = f"{agency}={peer_url}"  # not read: etcd has its members
    else:
        pairs = [x.partition("=") for x in initial_cluster.split(",")]
        for _name, eq, url in pairs:
            if not eq:
                refuse(f"--initial-cluster: {_name!r} is no NAME=PEER-URL")
            if not url:
                refuse(f"--initial-cluster: {_name!r} has no peer URL (NAME=https://host:port)")
            try:  # a member's name is its agency's id (its etcd user, its certificate's CN)
                check_names(agencies=[_name])
            except PkiError as e:
                refuse(f"--initial-cluster: {e}")
            _https_url("--initial-cluster", url, "each member's peer URL")
        # a name may repeat (etcd's way to give a member several peer URLs), a URL may not
        urls = [u for _, _, u in pairs]
        twice = sorted({u for u in urls if urls.count(u) > 1})
        if twice:
            refuse(f"--initial-cluster gives the peer URL {twice[0]!r} to two members")
        if (agency, "=", peer_url) not in pairs:
            refuse(f"--initial-cluster names no {agency}={peer_url} (this member, as added)")
        if new_cluster is not None:
            if ledger is None:  # one founder without it would form no cluster with the rest
                refuse("--new-cluster needs --ledger DATA: this founder's data folder from the "
                       "ceremony, whose genesis names the founders (checked) and whose hash "
                       "joins the cluster token, so another ceremony's members are refused")
            genesis = _check_founders(ledger, new_cluster, sorted({n for n, _, _ in pairs}),
                                      refuse)
    for name in ("ca.crt", "crl.pem", f"{agency}.crt", f"{agency}.key"):
        if not (pki / name).is_file():
            refuse(f"the PKI folder {pki} has no {name} (the PKI's keeper gives ca.crt, "
                   f"crl.pem and {agency}.crt; {agency}.key is the one `ledger-node pki "
                   f"request` made there, or the keeper's `pki copy-key`)")
    try:
        check_hosts(pki, agency, hosts)
        check_etcd_installed("etcd")
    except LedgerError as e:
        refuse(str(e))
    except (OSError, ValueError) as e:
        refuse(f"cannot read {pki / (agency + '.crt')}: {e}")
    # a new cluster's token: the network id and the genesis hash from --ledger. etcd derives
    # its member and cluster ids from it: founders started from different ceremonies' genesis
    # refuse each other ("cluster ID mismatch"), even under one network id and the same names.
    # Read at a new member's first run only (one that joins or ran has etcd's cluster id).
    token = agency if new_cluster is None else f"{new_cluster}-{genesis}"
    if genesis is not None:  # said, for founders to compare
        err.print(f"etcd cluster token of the genesis {genesis} in {_q(ledger)}"
                  ": every founder's member must be started from the same genesis; another "
                  "ceremony's members are refused (etcd says \"cluster ID mismatch\")",
                  soft_wrap=True)
    passphrase = _ask_passphrase(f"for {agency}'s key", confirm=False)

    def cmd_of(runtime: Path, crl: Path) -> list[str]:
        assert initial_cluster is not None
        return etcd_command("etcd", agency, data, runtime=runtime, crl=crl,
                            client_url=client_url, peer_url=peer_url,
                            initial_cluster=initial_cluster,
                            token=token,
                            state="existing" if new_cluster is None else "new",
                            listen_client=listen_client, listen_peer=listen_peer)

    code = 0
    with _stop_on_sigterm("the etcd member") as started:
        started.serving = True  # a stop now is the ordinary way out: quiet, exit 0
        try:
            data.mkdir(parents=True, exist_ok=True, mode=0o700)
            code = run_etcd_member(pki, agency, passphrase, cmd_of)
        except (PkiError, OSError) as e:
            err.print(f"[red]etcd member not started:[/] {_q(e)}")
            raise typer.Exit(1) from e
    if code:
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        err.print(f"[red]etcd stopped ({how});[/] its clear key is removed")
        raise typer.Exit(1)


def _check_founders(data: Path, network: str, names: list[str],
                    refuse: Callable[[str], NoReturn]) -> str:
    """Refuse (``refuse``) a ``network`` other than the genesis' in ``data`` (a node's data
    folder or its store), and member ``names`` that are none of the founders it names; the
    genesis hash (hex)."""
    from ledger.store import Store

    store_path = data if (data / "CURRENT").exists() else data / "ledger"
    try:
        with Store(store_path, create=False) as store:
            if store.head is None:
                refuse(f"--ledger: the ledger in {data} has no genesis")
            genesis = store.registry_at(0)
            genesis_hash = store.block(0).hash.hex()
    except LedgerError as e:
        refuse(f"--ledger: {e}")
    if genesis.network != network:
        refuse(f"--new-cluster {network!r} is not the network of the genesis in {data} "
               f"({genesis.network!r})")
    founders = sorted(genesis.agencies())
    strangers = [n for n in names if n not in founders]
    if strangers:
        refuse(f"--initial-cluster names {strangers[0]!r}, none of the founders the genesis in "
               f"{data} names ({', '.join(founders)}): misspelt?")
    return genesis_hash


@etcd_app.command("members")
def etcd_members(pki: _PKI_FOLDER, endpoint: _ETCD_URL) -> None:
    """List etcd's members (name and id) and say which one leads."""
    def step(admin: EtcdAdmin) -> str:
        leader = admin.leader()
        for name, member_id, urls in sorted(admin.listing()):
            # one added and never started has no name yet: said, with its peer URL
            print(f"{name or '(not started)':20} {member_id:016x}  {','.join(urls)}"
                  f"{'  leader' if name and name == leader else ''}")
        return f"{leader} leads"

    _etcd_step("list etcd's members", pki, endpoint, step)


def _write_sealed(out_file: Path, secret: bytes, passphrase: bytes, label: str,
                  force: bool) -> None:
    """``secret`` sealed as key files are, labelled ``label``, written whole to ``out_file``
    (0600); exits 1 if it cannot be written."""
    from ledger.keys import seal_secret

    try:
        write_atomic(out_file, seal_secret(secret, passphrase, label), 0o600, overwrite=force)
    except OSError as e:
        err.print(f"[red]error:[/] cannot write {_q(out_file)}: {_q(e.strerror or e)}")
        raise typer.Exit(1) from e


@app.command("credit-secret")
def credit_secret(
    out_file: Annotated[Path, typer.Option(
        "--out", help="Where to write it: the node's keys folder, as credit.secret.")],
    from_file: Annotated[Path | None, typer.Option(
        "--from", help="Seal again the secret in this file (another agency's copy; its "
                       "passphrase from $LEDGER_FROM_PASSPHRASE, the file "
                       "$LEDGER_FROM_PASSPHRASE_FILE names, or asked) instead of making a "
                       "new one.", exists=True, dir_okay=False)] = None,
    force: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
) -> None:
    """Make the network's credit secret, or seal again another agency's copy (--from).

    Credit subjects are kept on the ledger under keyed pseudonyms, so every node that records
    credit events or decides rules on credit needs the same secret (credit.secret in its keys
    folder; restart the node after). One agency makes it once; each other agency seals its
    copy with its own key passphrase: the file travels sealed, and the first agency gives its
    passphrase for it alone (or makes a copy under a one-time passphrase). Written 0600, sealed
    as key files are; the secret is never printed. `ledger-node cluster` makes one for its
    agencies.
    """
    from node.service import CREDIT_SECRET, read_credit_secret

    if str(out_file) == "-":  # the secret is never printed: not a file named "-" either
        err.print(f"[red]error:[/] --out: {NOT_STDOUT}")
        raise typer.Exit(2)
    if not out_file.parent.is_dir():
        err.print(f"[red]error:[/] --out {_q(out_file)}: no folder {_q(out_file.parent)} (give "
                  "the node's keys folder)")
        raise typer.Exit(2)
    if out_file.exists() and not force:
        err.print(f"[red]error:[/] {_q(out_file)} exists: a network keeps one credit secret (a "
                  "new one would give every credit subject a new pseudonym); add --force to "
                  "replace it")
        raise typer.Exit(2)
    if from_file is not None:
        try:
            old = read_passphrase(f"Passphrase of {from_file} (or set LEDGER_FROM_PASSPHRASE): ",
                                  env="LEDGER_FROM_PASSPHRASE")
            secret = read_credit_secret(from_file, old)
        except KeyFileError as e:
            err.print(f"[red]error:[/] {_q(e)}")
            raise typer.Exit(1) from e
        if secret is None:
            err.print(f"[red]error:[/] cannot read {_q(from_file)}")
            raise typer.Exit(2)
    else:
        secret = secrets.token_bytes(32)
    passphrase = _ask_passphrase("for this agency's keys", confirm=from_file is None)
    _write_sealed(out_file, secret, passphrase, CREDIT_SECRET, force)
    err.print(f"credit secret {'sealed again' if from_file else 'made'} → {_q(out_file)} (0600); "
              "a node running on this keys folder takes it at its next start")


def _open_to_seal_again(path: Path, given: Path, old: bytes
                        ) -> tuple[str, Callable[[bytes], bytes]]:
    """The key file ``path`` (``given`` on the command line) opened for ``seal-again``: its
    kind's words and the function sealing it under a new passphrase (``ledger.keys.seal_again``),
    also for the two key files from before ADR 46 a node still reads, sealed now as key files
    are: an agency TLS key in PEM (opened with ``old``) and a clear ``credit.secret``. Either
    was refused as no key file ("not canonical msgpack"), so a folder kept since then could not
    change its passphrase (helper round 37U). :class:`KeyFileError` as ``seal_again``'s."""
    from ledger.keys import seal_again as seal_file
    from ledger.keys import seal_secret
    from node.pki import PkiError, seal_key_again
    from node.service import CREDIT_SECRET, CREDIT_SECRET_FILE, read_credit_secret

    try:
        return seal_file(path, old)
    except KeyFileError as refused:
        try:
            pem = read_capped(path).startswith(b"-----BEGIN")
        except OSError:
            raise refused from None
        if pem:
            try:
                return "a TLS key in PEM from before ADR 46", seal_key_again(path, old)
            except PkiError as e:
                raise KeyFileError(str(e)) from e
        if CREDIT_SECRET_FILE not in (path.name, given.name):
            raise
        try:
            secret = read_credit_secret(path, old)  # a clear one opens without a passphrase
        except KeyFileError:
            raise refused from None
        if secret is None:
            raise
        return ("a clear credit-secret from before ADR 46",
                lambda new: seal_secret(secret, new, CREDIT_SECRET))


def _file_state(info: os.stat_result) -> tuple[int, ...]:
    """What tells a file apart from one put in its place or written since (``seal-again``)."""
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns,
            info.st_mode, info.st_uid, info.st_gid)


@app.command("seal-again")
def seal_again(
    keys: Annotated[list[Path], typer.Option(
        "--key", metavar="FILE",
        help="A key file to seal again (repeat): a node or issuer key, the credit "
                      "secret, the evidence key, a TLS key `pki copy-key` wrote (a clear "
                      "credit.secret or a PEM TLS key from before ADR 46 is sealed now as key "
                      "files are).",
        show_default=False)],
) -> None:
    """Seal this agency's key files again under a passphrase of its own.

    `init --new-network` seals every founder's keys under the ceremony's one passphrase: each
    founder runs this on its part (its .node.key and .issuer.key) before it does anything
    else with them. It also changes an agency's key passphrase: give every key file its node
    opens (node, issuer, credit.secret, evidence.key, and the PKI folder's key), as they all
    open with one passphrase.

    The current passphrase comes from $LEDGER_FROM_PASSPHRASE (the file
    $LEDGER_FROM_PASSPHRASE_FILE names, or asked) and must open every file before anything is
    written; the new one from $LEDGER_KEY_PASSPHRASE (the file $LEDGER_KEY_PASSPHRASE_FILE
    names, or asked twice), and must differ. Each file keeps its place, kind, mode, owner and
    group and is replaced whole; no key is printed. Bad input (a missing file, a file with a
    second name (hard link), no passphrase, the same one again) exits 2; a file that is no
    key file or does not open with the current passphrase exits 1; nothing is written in
    either case. Every file's new content is written beside it first; a file that cannot be
    written, or one changed meanwhile, exits 1 with nothing replaced. Only then does each new
    file take its file's place (one rename each, said as it is done). Stopped (SIGINT,
    SIGTERM) while it writes, it replaces nothing, or, stopped while it renames, finishes;
    either way it names the files sealed again and those still under the current
    passphrase, and exits 128 + the signal's number. A new file a run killed outright left
    beside a key (.NAME.<hex>.tmp, under that run's new passphrase) is named, never taken.
    """
    import stat as stat_

    files: dict[Path, Path] = {}  # the file (a link's target: the link stays) → as given
    for given in keys:
        if str(given) == "-":
            err.print("[red]error:[/] --key: - (standard input) is not taken here: give the key "
                      "file's path")
            raise typer.Exit(2)
        try:
            info = given.stat()
        except OSError as e:
            err.print(f"[red]error:[/] --key {_q(given)}: {_q(e.strerror or e)}; nothing was "
                      "written")
            raise typer.Exit(2) from e
        if not stat_.S_ISREG(info.st_mode):
            err.print(f"[red]error:[/] --key {_q(given)} is not a file; nothing was written")
            raise typer.Exit(2)
        if info.st_nlink > 1:  # the other name would keep the copy the current one opens
            err.print(f"[red]error:[/] --key {_q(given)} has {info.st_nlink - 1} other name(s) "
                      "(a hard link), which would keep a copy the current passphrase opens: "
                      "remove them (or copy the file) first; nothing was written")
            raise typer.Exit(2)
        files.setdefault(given.resolve(), given)
    for path, given in files.items():
        for leftover in _left_beside(path):
            err.print(f"[yellow]left by an interrupted `ledger-node seal-again`:[/] "
                      f"{_q(leftover)} (a copy of {_q(given)}, under the passphrase that run "
                      "was given, or cut short): not taken here; remove it once the key "
                      "opens")
    try:
        old = read_passphrase("Current passphrase of the key files (or set "
                              "LEDGER_FROM_PASSPHRASE): ", env="LEDGER_FROM_PASSPHRASE")
    except KeyFileError as e:
        err.print(f"[red]error:[/] {_q(e)}")
        raise typer.Exit(2) from e
    opened = []
    for path, given in files.items():  # every file opens before anything is written
        try:
            info = path.stat()  # before it is read: a change after shows at the write
            opened.append((path, given, info, *_open_to_seal_again(path, given, old)))
        except (KeyFileError, OSError) as e:
            why = e if isinstance(e, KeyFileError) else f"{given}: {e.strerror or e}"
            err.print(f"[red]error:[/] {_q(why)}; nothing was written")
            raise typer.Exit(1) from e
    new = _ask_passphrase("for the key files from now on", confirm=True)
    _another_passphrase(new, old, "the new passphrase is the current one", "this agency")
    # a stop (SIGINT, SIGTERM) while files are written is taken where every file is whole:
    # the operator then learns which files open with which passphrase
    stops = {signal.SIGINT, signal.SIGTERM}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    try:
        _seal_each_again(opened, new, stops)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    err.print(f"{len(opened)} key file(s) now open with the new passphrase only")


_Opened = tuple[Path, Path, os.stat_result, str, Callable[[bytes], bytes]]
"""A file ``seal-again`` opened: its path, as given, its state before it was read, its kind's
words and the function sealing it under the new passphrase."""


def _seal_each_again(opened: list[_Opened], new: bytes, stops: set[signal.Signals]) -> None:
    """``seal-again``'s writes (``stops`` blocked), all or nothing where the file system allows.
    Every file's new content is first written beside it (a name of its own in the file's
    folder, with its owner, group and mode, made durable); only once all are written, and no
    file changed since it was opened, does each take its file's place, one rename each, so a
    file is whole at every moment, under one passphrase or the other (said file by file).
    A write that fails, a file changed meanwhile or a stop before the first rename removes
    what was written: nothing changed. A rename that fails names the files under each
    passphrase; a stop during the renames is taken once they are done: both lists, exit
    128 + its number. (Helper round 40S: files were replaced one by one as they were written,
    so a folder it could not write left the files before it under the new passphrase.)"""
    import stat as stat_

    folders: list[int] = []  # each file's folder, held open: the rename goes where the check was
    beside: list[str] = []  # the new contents' names, in ``opened``'s order
    renamed = 0

    def listed(part: list[_Opened]) -> str:
        return ", ".join(_q(g) for _, g, _, _, _ in part) or "none"

    def stopped() -> int | None:
        pending = signal.sigpending() & stops
        if not pending:
            return None
        signo = signal.sigtimedwait(pending, 0)  # taken: not delivered once unblocked
        return signo.si_signo if signo is not None else min(pending)

    try:
        for path, given, info, _, seal in opened:
            try:
                folders.append(os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY))
                beside.append(_write_beside(folders[-1], path.name, info, seal(new)))
            except OSError as e:
                err.print(f"[red]error:[/] cannot write {_q(given)}: {_q(e.strerror or e)}; "
                          "nothing was written: every file still opens with the current "
                          "passphrase only")
                raise typer.Exit(1) from e
            number = stopped()
            if number is not None:
                break
        else:
            number = None
        if number is not None:
            err.print(f"[red]stopped by {signal.Signals(number).name}:[/] nothing was written: "
                      f"sealed again under the new passphrase: none; still under the current "
                      f"passphrase: {listed(opened)}")
            raise typer.Exit(128 + number)
        # a file replaced or written since it was read (a new key put in its place while the
        # passphrase was asked) would be replaced by the key it held before, sealed again
        for (path, given, info, _, _), folder in zip(opened, folders, strict=True):
            try:
                now: os.stat_result | None = os.stat(path.name, dir_fd=folder,
                                                     follow_symlinks=False)
            except OSError:
                now = None
            if now is None or _file_state(now) != _file_state(info):
                err.print(f"[red]error:[/] --key {_q(given)} changed while seal-again ran "
                          "(replaced or written since it was opened): nothing was written; run "
                          "it again")
                raise typer.Exit(1)
        for (path, given, info, kind, _), folder, name in zip(opened, folders, beside,
                                                               strict=True):
            try:
                os.replace(name, path.name, src_dir_fd=folder, dst_dir_fd=folder)
            except OSError as e:
                err.print(f"[red]error:[/] cannot replace {_q(given)}: {_q(e.strerror or e)}; "
                          "sealed again under the new passphrase: "
                          f"{listed(opened[:renamed])}; still under the current passphrase: "
                          f"{listed(opened[renamed:])}")
                raise typer.Exit(1) from e
            renamed += 1
            with contextlib.suppress(OSError):  # some file systems refuse fsync on a folder
                os.fsync(folder)
            err.print(f"sealed again: {_q(given)} ({_q(kind)}, mode "
                      f"{stat_.S_IMODE(info.st_mode):o})")
        number = stopped()
        if number is not None:
            err.print(f"[red]stopped by {signal.Signals(number).name}:[/] once every file was "
                      f"sealed again: sealed again under the new passphrase: {listed(opened)}; "
                      "still under the current passphrase: none")
            raise typer.Exit(128 + number)
    finally:
        for folder, name in list(zip(folders, beside, strict=False))[renamed:]:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=folder)
        for folder in folders:
            os.close(folder)


def _beside_stem(name: str) -> str:
    """The part of a key file's name its new content's name holds (bytes count)."""
    return os.fsdecode(os.fsencode(name)[:200])


def _left_beside(path: Path) -> list[Path]:
    """The files :func:`_write_beside` made beside ``path`` that no rename took (a
    `seal-again` killed outright between its writes and its renames), by name."""
    import re

    made = re.compile(rf"\.{re.escape(_beside_stem(path.name))}\.[0-9a-f]{{12}}\.tmp")
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    return [path.parent / n for n in sorted(names) if made.fullmatch(n)]


def _write_beside(folder: int, name: str, info: os.stat_result, content: bytes) -> str:
    """``content`` written, durable, in a new file beside ``name`` in ``folder`` (open) with
    the owner, group and mode ``info`` gives (a node's key sealed again by root stays the
    node's, whatever the umask); its name. Nothing is left on :class:`OSError`."""
    import stat as stat_

    made = f".{_beside_stem(name)}.{secrets.token_hex(6)}.tmp"  # as _left_beside finds it
    fd = os.open(made, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600,
                 dir_fd=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
            out.flush()
            if (info.st_uid, info.st_gid) != (os.geteuid(), os.getegid()):
                os.fchown(out.fileno(), info.st_uid, info.st_gid)
            os.fchmod(out.fileno(), stat_.S_IMODE(info.st_mode))
            os.fsync(out.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(made, dir_fd=folder)
        raise
    return made


@app.command("evidence-key")
def evidence_key(
    data: Annotated[Path, typer.Option(help="The node's data folder (its key is "
                                            "<data>/keys/evidence.key).", file_okay=False)],
    out_file: Annotated[Path, typer.Option(
        "--out", help="Where to write the auditor's copy.", dir_okay=False)],
    force: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
) -> None:
    """Write a copy of this node's evidence key for an auditor, under a passphrase of its own.

    The node seals the records of its approval decisions (the claims presented, which
    `ledger audit --evidence` evaluates again) with its evidence key. The key is unlocked with
    the agency's key passphrase ($LEDGER_KEY_PASSPHRASE, the file $LEDGER_KEY_PASSPHRASE_FILE
    names, or a prompt); the copy with $LEDGER_EVIDENCE_PASSPHRASE, the file
    $LEDGER_EVIDENCE_PASSPHRASE_FILE names, or a prompt (twice): give the auditor the copy
    and that passphrase, never the agency's (refused as the copy's). Written 0600; the key is
    never printed. The auditor runs `ledger audit DATA --evidence DIR --evidence-key COPY`.
    """
    from ledger.keys import read_passphrase
    from ledger.sealed import (
        EVIDENCE_KEY,
        EVIDENCE_KEY_FILE,
        EVIDENCE_PASSPHRASE_ENV,
        read_evidence_key,
    )

    if str(out_file) == "-":  # the key is never printed: not a file named "-" either
        err.print(f"[red]error:[/] --out: {NOT_STDOUT}")
        raise typer.Exit(2)
    source = data / "keys" / EVIDENCE_KEY_FILE
    if not source.exists():
        err.print(f"[red]error:[/] {_q(source)} does not exist: a node makes its evidence key at "
                  "its first start (give the node's data folder)")
        raise typer.Exit(2)
    if out_file.exists() and out_file.samefile(source):  # even with --force (a link too)
        err.print(f"[red]error:[/] {_q(out_file)} is the node's own evidence key: the auditor's "
                  "copy goes elsewhere (sealed under the auditor's passphrase, the node could "
                  "no longer open it)")
        raise typer.Exit(2)
    if out_file.exists() and not force:
        err.print(f"[red]error:[/] {_q(out_file)} exists; add --force to replace it")
        raise typer.Exit(2)
    agency_passphrase = _ask_passphrase("of the agency's keys", confirm=False)
    try:
        key = read_evidence_key(source, agency_passphrase)
    except KeyFileError as e:
        err.print(f"[red]error:[/] {_q(e)}")
        raise typer.Exit(1) from e
    try:
        passphrase = read_passphrase("Passphrase for the auditor's copy (or set "
                                     f"{EVIDENCE_PASSPHRASE_ENV}): ", confirm=True,
                                     env=EVIDENCE_PASSPHRASE_ENV)
    except KeyFileError as e:
        err.print(f"[red]error:[/] {_q(e)}")
        raise typer.Exit(2) from e
    if hmac.compare_digest(passphrase, agency_passphrase):
        err.print("[red]error:[/] the auditor's copy needs a passphrase of its own, not the "
                  "agency's key passphrase: the auditor would hold the passphrase of every key "
                  "file of this agency; nothing was written")
        raise typer.Exit(2)
    _write_sealed(out_file, key, passphrase, EVIDENCE_KEY, force)
    err.print(f"evidence key copied → {_q(out_file)} (0600), under the auditor's passphrase")


cluster_app = typer.Typer(no_args_is_help=False)
app.add_typer(cluster_app, name="cluster")


@cluster_app.callback(invoke_without_command=True, help=(
    "Start a local N-agency network on 127.0.0.1 (etcd members + nodes) and stop it cleanly "
    "on Ctrl-C or SIGTERM. Says when one of its processes ends on its own, and `ledger-node "
    "cluster restart` asks it to start that agency's etcd member and node again; exits 1 once "
    "no node is left. Needs etcd (Debian package etcd-server)."))
def cluster(
    ctx: typer.Context,
    agencies: Annotated[int, typer.Option(help="How many agencies (each: one etcd member and "
                                               "one node).")] = 3,
    data: Annotated[Path, typer.Option(help="The cluster's folder (created on first use, "
                                            "reused after).")] = Path("cluster-data"),
    base_port: Annotated[int | None, typer.Option(
        help="Node i listens on base+i, its etcd member on base+100+i (clients) and "
             "base+200+i (peers); 8100 for a new folder. A folder made before keeps the "
             "ports it was made with.", show_default=False)] = None,
    once: Annotated[bool, typer.Option(help="Start, print the status, stop (a smoke test).")
                    ] = False,
) -> None:
    """`ledger-node cluster` (its help above); with a subcommand, only that runs."""
    import signal
    import threading

    from node.cluster import (
        LocalCluster,
        RestartDesk,
        check_new_cluster,
        create_cluster,
        new_cluster_ports_free,
        restart_socket_problem,
    )

    if ctx.invoked_subcommand is not None:
        def given_here(name: str) -> bool:  # (typer's own click: its enum, not click's)
            return getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"

        given = [n for n in ("agencies", "base_port", "once") if given_here(n)]
        if given:  # they start a cluster; ignored by a subcommand, they were silently unused
            named = ", ".join("--" + n.replace("_", "-") for n in given)
            err.print(f"[red]error:[/] {named} start a cluster: not for `ledger-node cluster "
                      f"{ctx.invoked_subcommand}`")
            raise typer.Exit(2)
        # the group's --data, given, is the subcommand's (it was ignored: ./cluster-data)
        if given_here("data"):
            ctx.obj = {"data": data}
        return

    problem = None if once else restart_socket_problem(data)  # before the passphrase
    if problem is not None:
        err.print(f"[red]cluster refused:[/] {_q(problem)}; nothing was started")
        raise typer.Exit(2)
    new = not (data / "cluster.toml").exists()
    if new:  # bad input is said before the passphrase is asked for (twice at a terminal)
        try:
            check_new_cluster(agencies, 8100 if base_port is None else base_port)
        except LedgerError as e:
            err.print(f"[red]cluster refused:[/] {_q(e)}; nothing was made")
            raise typer.Exit(2) from e
    passphrase = _ask_passphrase("for the cluster's keys",
                                 confirm=new)
    # A stop (Ctrl-C, SIGTERM, SIGHUP) while it starts: what started is stopped (create_cluster
    # and LocalCluster.start undo their own), and it ends in one line, as `ledger-node run`. A
    # Ctrl-C was a traceback, and a SIGTERM ended it with no word and its clear keys left.
    started: LocalCluster | None = None
    with _stop_on_sigterm("the cluster") as starting:
        try:
            if not (data / "cluster.toml").exists():
                base = 8100 if base_port is None else base_port  # 0 is a port asked, not none
                new_cluster_ports_free(agencies, base)  # before anything is written
                create_cluster(data, agencies, passphrase, base_port=base)
            net = LocalCluster(data, passphrase)
            live = len(net.members) - len(net.removed)
            if live != agencies:
                err.print(f"[yellow]{_q(data)} holds a {live}-agency cluster;[/] starting that "
                          "one")
            # its certificates and configs name them: said when another was asked for
            if base_port is not None and int(net.meta["base_port"]) != base_port:
                err.print(f"[yellow]{_q(data)} holds a cluster on base port "
                          f"{net.meta['base_port']};[/] "
                          "starting it there (--base-port is for a new folder)")
            started = net
            net.start()
        except LedgerError as e:
            err.print(f"[red]cluster failed:[/] {_q(e)}")
            raise typer.Exit(1) from e
        starting.serving = True
    if not starting.serving:  # stopped while starting, said
        if started is not None:
            started.stop()  # (what a stop right after its start left running)
        return
    assert started is not None
    stop = threading.Event()
    lost = False
    restarting = False

    def on_sigterm(*_: object) -> None:
        stop.set()
        if restarting:  # a restart waits up to a minute per process: the stop comes first
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    desk: RestartDesk | None = None
    try:
        for agency in net.rejoined:
            err.print(f"[yellow]{_q(agency)}'s etcd data folder was gone:[/] its member rejoined "
                      "the others as a new member and copied their data")
        for m in net.members:
            if m.agency in net.removed:
                err.print(f"  {m.agency:10} taken out (certificate revoked)")
                continue
            h = net.health(m.agency) or {}
            err.print(f"  {m.agency:10} node {_q(m.url)}  etcd {_q(m.client_url)}  height "
                      f"{h.get('height')}")
        err.print(f"CA certificate: {_q(net.ca)}   logs: {_q(data / 'logs')}   operator token: "
                  f"{_q(data / 'operator.token')} (0600)")
        if not once:
            desk = RestartDesk(data)
            err.print("running; Ctrl-C stops every process")
            while not stop.wait(0.5):
                if not _report_exits(net, data):
                    lost = True
                    break
                for ask in desk.asks():
                    restarting = True
                    try:
                        _restart_asked(net, ask)
                    finally:
                        restarting = False
    except KeyboardInterrupt:
        pass
    except LedgerError as e:  # the restart desk's socket could not be made
        err.print(f"[red]cluster failed:[/] {_q(e)}")
        lost = True
    finally:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        if desk is not None:
            desk.close()
        net.stop()
        err.print("stopped")
    if lost:
        raise typer.Exit(1)


def _report_exits(net: LocalCluster, data: Path) -> bool:
    """Say which of the cluster's processes ended on their own (a crash, an OOM kill, a signal
    from outside), and how to start it again; False once no node is left running."""
    for agency, what, code, log in net.exited():
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        err.print(f"[yellow]{_q(agency)}'s {_q(what)} stopped ({how}); the others keep running; "
                  f"see {_q(log)}[/]; start it again with: ledger-node cluster restart --data "
                  f"{_q(shlex.quote(str(data)))} --agency {_q(agency)}")
    if any(net.running(m.agency) for m in net.members):
        return True
    err.print("[red]no node is running any more; stopping the cluster[/]")
    return False


def _restart_asked(net: LocalCluster, ask: RestartAsk) -> None:
    """Start again what of the asked agency's processes stopped, and say so both here and to
    the asker (:class:`node.cluster.RestartDesk`); the connection is closed however it ends:
    ``refused`` when nothing was started (an unknown agency, both its processes running),
    ``failed`` when one did not come up (its log's end is said)."""
    from node.cluster import ClusterError

    steps: list[str] = []

    def step(what: str) -> None:
        steps.append(what)
        err.print(f"restarting {_q(ask.agency)}'s {what} (asked by `ledger-node cluster "
                  "restart`)")
        ask.say(f"starting {ask.agency}'s {what}")

    last = "failed: the cluster stopped while it restarted them"
    try:
        started = net.restart_stopped(ask.agency, said=step)
        last = f"ok: {ask.agency}'s {' and '.join(started)} running again"
        err.print(f"{_q(ask.agency)}'s {' and '.join(started)} running again")
    except ClusterError as e:
        kind = "failed" if steps else "refused"
        last = f"{kind}: {e}"
        err.print(f"[yellow]restart of {_q(ask.agency)} {kind}:[/] {_q(e)}")
    finally:
        ask.close(last)


@cluster_app.command("restart")
def cluster_restart(
    ctx: typer.Context,
    data: Annotated[Path | None, typer.Option(
        help="The folder of the running cluster, cluster-data if none is given (or give it "
             "before `restart`: `ledger-node cluster --data F restart`).", file_okay=False,
        show_default=False)] = None,
    agency: Annotated[str, typer.Option(help="The agency whose stopped etcd member and/or "
                                             "node to start again (its id, e.g. edu).")] = "",
) -> None:
    """Ask the `ledger-node cluster` running on --data to start one agency's etcd member and/or
    node again, after it stopped or was killed (a fault-tolerance demo). The running cluster
    starts them (it owns the processes; no passphrase is asked here): the etcd member rejoins
    from its data folder and the node catches up with the others. Refused for one whose both
    processes run, an agency not in the cluster, or one taken out; exits 0 once they are up
    again, 2 if refused, 1 if they could not start (their logs say why) or no cluster runs."""
    from node.cluster import ClusterError, ask_restart

    group = (ctx.obj or {}).get("data")
    if group is not None and data is not None and group.absolute() != data.absolute():
        err.print(f"[red]error:[/] two cluster folders given: --data {_q(group)} before "
                  f"`restart` and --data {_q(data)} after it; give one")
        raise typer.Exit(2)
    data = data or group or Path("cluster-data")
    if not agency:
        err.print("[red]error:[/] --agency is needed: the agency to restart (e.g. edu)")
        raise typer.Exit(2)
    if not (data / "cluster.toml").exists():
        err.print(f"[red]error:[/] {_q(data)} is not a cluster folder (no cluster.toml)")
        raise typer.Exit(2)
    try:
        kind, why = ask_restart(data, agency, lambda line: err.print(_q(line)))
    except ClusterError as e:
        err.print(f"[red]error:[/] {_q(e)}")
        raise typer.Exit(1) from e
    if kind == "ok":
        err.print(_q(why))
        return
    err.print(f"[red]{kind}:[/] {_q(why)}")
    raise typer.Exit(2 if kind == "refused" else 1)


def main() -> None:
    run_cli(app)


if __name__ == "__main__":
    main()
