"""The node's settings: one frozen value, read from a TOML file with ``LEDGER_NODE_*`` overrides.

::

    data = "/srv/ledger/demo-data"        # <data>/ledger and <data>/keys
    agency = "edu"
    host = "127.0.0.1"
    port = 8000
    operator_token_sha256 = "9f86d0…"     # hex SHA-256 of the operator token; absent = no writes
    max_body_bytes = 262144               # the verifier page's photo upload may be 4 MiB
    cors_origins = []                     # empty = CORS off
    public_url = "https://edu.example"    # the audience verifiers bind presentations to
    ordering = "solo"                     # or "etcd" (several agencies; see below)
    etcd_endpoints = ["https://127.0.0.1:2379"]   # this agency's member first
    peers = ["https://127.0.0.1:8101"]    # other nodes, for catch-up over HTTP
    pki = "pki"                           # CA + this agency's certificate (etcd mTLS, HTTPS)
    tls = false                           # serve HTTPS with the agency certificate
    retention = 1000                      # blocks a lagging member may fall behind etcd
    max_batch = 2000                      # transactions per etcd batch at most (ADR 31)
    workers = 2                           # signature-check processes; absent = one per core
    trust_list = "trust.json"             # issuers outside the network the verifier accepts
    status_tokens = "status-tokens"       # their Status List Tokens (*.jwt), read per check
    time_zone = "Asia/Shanghai"           # derived ages, decision days, times on pages (UTC)

Every key can be overridden by ``LEDGER_NODE_<KEY>`` (upper case); ``LEDGER_NODE_CORS_ORIGINS``
is comma separated; ``ledger-node run --host/--port`` override both. A relative ``data`` path is
taken relative to the config file. Unknown keys (in the file, or ``LEDGER_NODE_*`` variables not
named after one), wrong types and out-of-range values raise :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ledger.timetext import TimeZoneError, time_zone

__all__ = ["ENV_PREFIX", "ConfigError", "Settings", "network_lines"]

ENV_PREFIX = "LEDGER_NODE_"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_AGENCY = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_KEYS = ("data", "agency", "host", "port", "operator_token_sha256", "max_body_bytes",
         "cors_origins", "public_url", "ordering", "etcd_endpoints", "peers", "pki", "tls",
         "retention", "max_batch", "rate_limit_per_minute", "rate_limit_burst", "workers",
         "trust_list", "status_tokens", "time_zone")
_LISTS = ("cors_origins", "etcd_endpoints", "peers")


class ConfigError(ValueError):
    """A node config that is missing, unreadable, or has a bad value (the message names it)."""


@dataclass(frozen=True)
class Settings:
    """What a node needs to start. Valid on construction (``__post_init__`` checks it)."""

    data: Path
    agency: str
    host: str = "127.0.0.1"
    port: int = 8000
    operator_token_sha256: str | None = None
    max_body_bytes: int = 256 * 1024
    cors_origins: tuple[str, ...] = field(default=())
    public_url: str | None = None
    ordering: str = "solo"
    etcd_endpoints: tuple[str, ...] = field(default=())
    peers: tuple[str, ...] = field(default=())
    pki: Path | None = None
    tls: bool = False
    retention: int = 1000
    max_batch: int = 2000
    """Transactions per etcd batch at most (a batch is also cut at ~768 KB). etcd keeps its last
    5,000-7,000 Raft entries in memory, so under sustained bulk ingest a member's memory grows
    with the batch size (ADR 31)."""
    rate_limit_per_minute: int = 6000
    """Requests a minute per client IP (token bucket refill); 0 turns the limiter off."""
    rate_limit_burst: int = 600
    workers: int | None = None
    """Signature-check worker processes; None = one per core of this machine, 0 = the node's
    state machine checks them itself. Nodes sharing one machine (a local cluster) split its
    cores (ADR 28)."""
    trust_list: Path | None = None
    """The verifier's trust list for credentials from issuers outside the network (ADR 39);
    None = the verifier checks credentials of the network only."""
    status_tokens: Path | None = None
    """A folder of those issuers' Status List Tokens (``*.jwt``), read at each check."""
    time_zone: str = "UTC"
    """The IANA time zone whose calendar the agency counts days in: a birthday for derived
    ``age_over_*`` claims, an approval's ``decided_on`` (ADR 56)."""

    def __post_init__(self) -> None:
        if not isinstance(self.data, Path):
            raise ConfigError("data: must be a path")
        if not isinstance(self.agency, str) or not _AGENCY.fullmatch(self.agency):
            raise ConfigError(f"agency: {self.agency!r} is not an agency id "
                              "(lower-case letters, digits, '-')")
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError("host: must be a non-empty string")
        if not _is_int(self.port) or not 0 <= self.port <= 65535:
            raise ConfigError(f"port: {self.port!r} is not in 0..65535")
        token = self.operator_token_sha256
        if token is not None and (not isinstance(token, str) or not _HEX64.fullmatch(token)):
            raise ConfigError("operator_token_sha256: must be 64 lower-case hex digits "
                              "(the SHA-256 of the operator token, not the token)")
        if not _is_int(self.max_body_bytes) or not 1024 <= self.max_body_bytes <= 64 * 2**20:
            raise ConfigError(f"max_body_bytes: {self.max_body_bytes!r} is not in "
                              "1024..67108864")
        if not _is_int(self.rate_limit_per_minute) or not 0 <= self.rate_limit_per_minute \
                <= 10**7 or not _is_int(self.rate_limit_burst) or \
                not 1 <= self.rate_limit_burst <= 10**6:
            raise ConfigError("rate_limit_per_minute (0..10000000, 0 = off) and "
                              "rate_limit_burst (1..1000000) must be integers in range")
        if not isinstance(self.cors_origins, tuple) or not all(
                isinstance(o, str) and o.startswith(("http://", "https://"))
                for o in self.cors_origins):
            raise ConfigError("cors_origins: must be a list of http(s):// origins")
        if self.public_url is not None and (
                not isinstance(self.public_url, str)
                or not self.public_url.startswith(("http://", "https://"))):
            raise ConfigError("public_url: must be an http(s):// URL")

        if self.ordering not in ("solo", "etcd"):
            raise ConfigError(f"ordering: {self.ordering!r} is not 'solo' or 'etcd'")
        for name in ("etcd_endpoints", "peers"):
            urls = getattr(self, name)
            if not isinstance(urls, tuple) or not all(
                    isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls):
                raise ConfigError(f"{name}: must be a list of http(s):// URLs")
        if self.ordering == "etcd" and not self.etcd_endpoints:
            raise ConfigError("etcd_endpoints: ordering 'etcd' needs at least one endpoint")
        for name in ("pki", "trust_list", "status_tokens"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), Path):
                raise ConfigError(f"{name}: must be a path")
        if not isinstance(self.tls, bool):
            raise ConfigError("tls: must be true or false")
        if (self.tls or any(u.startswith("https://") for u in self.etcd_endpoints)) \
                and self.pki is None:
            raise ConfigError("pki: TLS (tls = true or https etcd endpoints) needs the PKI "
                              "folder")
        if not _is_int(self.retention) or self.retention < 1:
            raise ConfigError(f"retention: {self.retention!r} is not a positive integer")
        if not _is_int(self.max_batch) or not 1 <= self.max_batch <= 100_000:
            raise ConfigError(f"max_batch: {self.max_batch!r} is not in 1..100000")
        if self.workers is not None and (not _is_int(self.workers)
                                         or not 0 <= self.workers <= 256):
            raise ConfigError(f"workers: {self.workers!r} is not in 0..256 (leave it out for "
                              "one per core)")
        if not isinstance(self.time_zone, str):
            raise ConfigError("time_zone: must be a time zone name (e.g. \"Asia/Shanghai\")")
        try:
            time_zone(self.time_zone)
        except TimeZoneError as e:
            raise ConfigError(f"time_zone: {e}") from e

    @property
    def zone(self) -> _dt.tzinfo:
        """The :attr:`time_zone` (checked on construction)."""
        return time_zone(self.time_zone)

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def audience(self) -> str:
        """The URL presentations made for this node's verifier are bound to (``aud``)."""
        return self.public_url or f"{self.scheme}://{self.host}:{self.port}"

    def tls_hosts(self) -> dict[str, str]:
        """The hosts this node is reached at with its agency certificate, as its settings name
        them (setting → host): its ``public_url`` when it serves HTTPS itself, and the first
        https etcd endpoint, the agency's own member (which runs with the same certificate).
        Its bind address is left out: peers may reach it by a name that resolves to it."""
        out: dict[str, str] = {}
        if self.tls and self.public_url is not None and self.public_url.startswith("https://"):
            host = urlsplit(self.public_url).hostname
            if host:
                out["public_url"] = host
        if self.etcd_endpoints and self.etcd_endpoints[0].startswith("https://"):
            host = urlsplit(self.etcd_endpoints[0]).hostname
            if host:
                out["etcd_endpoints[0], this agency's own etcd member"] = host
        return out

    @property
    def operator_enabled(self) -> bool:
        return self.operator_token_sha256 is not None

    @classmethod
    def from_toml(cls, path: Path, env: Mapping[str, str] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Settings:
        """Read ``path`` and apply ``LEDGER_NODE_*`` overrides from ``env`` (pass os.environ),
        then ``overrides`` (command-line options) over both."""
        try:
            raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise ConfigError(f"no config file at {path} (make one with `ledger-node init`)") \
                from e
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read {path}: {e}") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path} is not valid TOML: {e}") from e
        return cls.from_mapping(raw, env or {}, base=path.parent, overrides=overrides)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], env: Mapping[str, str],
                     base: Path = Path(), overrides: Mapping[str, Any] | None = None
                     ) -> Settings:
        unknown = sorted(set(raw) - set(_KEYS))
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; known: {list(_KEYS)}")
        known_env = {ENV_PREFIX + key.upper() for key in _KEYS}
        typos = sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in known_env)
        if typos:
            raise ConfigError(f"unknown environment variables {typos}; known: "
                              f"{sorted(known_env)}")
        values = dict(raw)
        given = overrides or {}
        for key in _KEYS:
            text = env.get(ENV_PREFIX + key.upper())
            if text is not None and key not in given:
                values[key] = _from_env(key, text)
        values.update(given)
        for key in ("data", "agency"):
            if key not in values:
                raise ConfigError(f"{key}: missing (set it in the file or "
                                  f"{ENV_PREFIX}{key.upper()})")
        data = values.pop("data")
        if not isinstance(data, str) or not data:
            raise ConfigError("data: must be a non-empty path string")
        lists: dict[str, Any] = {}
        for key in _LISTS:
            got = values.pop(key, [])
            if not isinstance(got, list | tuple):
                raise ConfigError(f"{key}: must be a list")
            lists[key] = tuple(got)
        paths: dict[str, Any] = {}
        for key in ("pki", "trust_list", "status_tokens"):
            got = values.pop(key, None)
            if got is not None and (not isinstance(got, str) or not got):
                raise ConfigError(f"{key}: must be a non-empty path string")
            paths[key] = None if got is None else base / Path(got).expanduser()
        return cls(data=base / Path(data).expanduser(), **paths, **lists, **values)


def network_lines(etcd_endpoints: Sequence[str], peers: Sequence[str], pki: str | None,
                  tls: bool) -> str:
    """The TOML lines of a node that orders through etcd with other agencies (``ordering =
    "etcd"``, its etcd endpoints, own member first, and its peers for catch-up; none without
    endpoints), its PKI folder (when given) and whether it serves HTTPS: written by ``ledger-node
    init --etcd-endpoint`` and by ``ledger-node cluster`` alike."""
    lines = ""
    if etcd_endpoints:
        lines = (f'ordering = "etcd"\netcd_endpoints = {json.dumps(list(etcd_endpoints))}\n'
                 f"peers = {json.dumps(list(peers))}\n")
    if pki is not None:
        lines += f"pki = {json.dumps(pki)}\n"
    return lines + f"tls = {'true' if tls else 'false'}\n"


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _from_env(key: str, text: str) -> Any:
    if key in ("port", "max_body_bytes", "retention", "max_batch", "rate_limit_per_minute",
               "rate_limit_burst", "workers"):
        try:
            return int(text)
        except ValueError as e:
            raise ConfigError(f"{ENV_PREFIX}{key.upper()}: {text!r} is not an integer") from e
    if key == "tls":
        if text.lower() not in ("true", "false", "1", "0"):
            raise ConfigError(f"{ENV_PREFIX}TLS: {text!r} is not true or false")
        return text.lower() in ("true", "1")
    if key in _LISTS:
        return [o.strip() for o in text.split(",") if o.strip()]
    if key in ("operator_token_sha256", "public_url") and not text:
        return None
    return text
