"""Operations: per-client rate limits, request size caps on every route, refusing a store whose
head does not match its Merkle root, and backups (``ledger export``) that restore (``ledger
import``) to an identical head. Real HTTP (uvicorn on 127.0.0.1), real LevelDB, the real CLI."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import plyvel
import pytest
from clusterkit import free_base
from test_api import NOW, PASS, make_demo, serve, settings_for

from ledger.chain import Head, head_key
from ledger.errors import KeyFileError, StoreError
from ledger.store import Store
from node.app import _BodyLimit, create_app
from node.cluster import create_cluster
from node.config import ConfigError, Settings
from node.pages import MAX_UPLOAD
from node.ratelimit import TokenBuckets
from node.service import Node

LEDGER_CLI = str(Path(sys.executable).with_name("ledger"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo(tmp_path_factory.mktemp("ops") / "demo-data")


@pytest.fixture(scope="module")
def node(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    data = tmp_path_factory.mktemp("ops-node") / "demo-data"
    shutil.copytree(demo, data)
    n = Node(data, "edu", PASS, clock=lambda: NOW)
    yield n
    n.close()


# -- rate limits ---------------------------------------------------------------------------------

def test_rate_limit_answers_429_with_retry_after(demo: Path, node: Node,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="node")
    now = [1000.0]
    settings = replace(settings_for(demo), rate_limit_per_minute=60, rate_limit_burst=3)
    app = create_app(settings, node=node, clock=lambda: NOW, rate_clock=lambda: now[0])
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        assert [c.get("/v1/head").status_code for _ in range(3)] == [200, 200, 200]
        r = c.get("/v1/head")
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1"
        assert r.headers["content-type"] == "application/json"
        assert r.json()["error"] == "RateLimited"
        assert "60 requests a minute" in r.json()["detail"]
        # a refused POST is refused before its (oversize) body is read
        assert c.post("/v1/tx", content=b"\x00" * 10).status_code == 429
        # monitoring draws on buckets of its own: a client (or a proxy) refused everything
        # else does not make the node look down to its probes and scrapes (ADR 50)
        assert c.get("/v1/health").status_code == 200
        assert c.get("/metrics").status_code == 200
        now[0] += 1.0  # one token back after 1 s at 60 a minute
        assert c.get("/v1/head").status_code == 200
        assert c.get("/v1/head").status_code == 429
        now[0] += 60.0  # a full minute refills the burst, not more
        assert [c.get("/v1/head").status_code for _ in range(4)] == [200, 200, 200, 429]
        assert [c.get("/v1/health").status_code for _ in range(4)] == [200, 200, 200, 429]
        # refusals are counted apart from unknown paths, and not logged one line each
        now[0] += 60.0
        assert 'route="rate-limited",status="429"' in c.get("/metrics").text
    logged = [r for r in caplog.records if r.name == "node.http"]
    assert logged and not [r for r in logged if getattr(r, "status", None) == 429
                           and r.getMessage() == "request"]
    counted = [r for r in logged if r.getMessage() == "rate-limited"]
    assert counted and getattr(counted[0], "count", 0) >= 1  # the first said at once


def test_a_batch_pays_for_its_signature_checks_before_they_are_made(demo: Path,
                                                                    node: Node) -> None:
    """A batch takes a token for every 64 transactions beyond its request's own, before any is
    parsed or checked: a client's batches cannot make the node check 4096 signatures a token
    (ADR 47). Refused, it submits nothing, and Retry-After is when the retry passes."""
    from ledger import codec

    now = [1000.0]
    settings = replace(settings_for(demo), rate_limit_per_minute=60, rate_limit_burst=10)
    app = create_app(settings, node=node, clock=lambda: NOW, rate_clock=lambda: now[0])
    batch = codec.encode([b"x"] * 320)  # 1 + 5 tokens; each item malformed (no signature work)
    small = codec.encode([b"x"] * 63)  # 1 token
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        r = c.post("/v1/tx/batch", content=batch)
        assert r.status_code == 200 and len(r.json()) == 320  # 10 - 6: 4 left
        r = c.post("/v1/tx/batch", content=batch)  # 1 taken, 3 left: the 5 are not there
        assert r.status_code == 429, r.text
        assert r.json()["error"] == "RateLimited"
        assert "a batch of 320 transactions costs 5 more" in r.json()["detail"]
        assert r.headers["retry-after"] == "3"  # 5 - 3 tokens, plus the retry's own
        now[0] += 3.0  # 6 tokens
        assert c.post("/v1/tx/batch", content=batch).status_code == 200  # 0 left
        now[0] += 1.0
        assert c.post("/v1/tx/batch", content=small).status_code == 200  # no more than 1
        now[0] += 60.0  # full again; a batch costing more than the burst waits for a full one
        assert c.post("/v1/tx/batch", content=codec.encode([b"x"] * 4096)).status_code == 200
        r = c.get("/v1/head")  # ... and leaves the bucket in debt: 10 - 1 - 64 = -55
        assert r.status_code == 429 and r.headers["retry-after"] == "56", r.headers
    # with a burst of 1 a batch still pays: the whole cost, as debt
    one = TokenBuckets(per_minute=60, burst=1, clock=lambda: now[0])
    assert one.take("x") == 0.0 and one.take("x", 64, need=0) == 0.0
    assert one.take("x") == pytest.approx(65.0)


def test_an_ipv6_client_shares_one_bucket_per_64() -> None:
    from node.ratelimit import client_key

    assert client_key("203.0.113.7") == "203.0.113.7"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:ffff::9") == \
        "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:203.0.113.7") == "203.0.113.7"
    assert client_key("fe80::1%eth0") == "fe80::/64"


def test_the_middleware_takes_an_ipv6_client_s_token_from_its_64_s_bucket() -> None:
    """The /64 is the bucket the requests draw on, not only what `client_key` says: a second
    address of the same /64 finds the first's bucket empty; another /64 has its own."""
    from node.ratelimit import Message, RateLimit, Receive, Scope, Send

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    limit = RateLimit(app, per_minute=60, burst=1, clock=lambda: 0.0)
    retry_after: list[bytes] = []

    async def status(host: str) -> int:
        said: list[Message] = []

        async def send(message: Message) -> None:
            said.append(message)

        async def receive() -> Message:
            return {"type": "http.request", "body": b""}

        await limit({"type": "http", "path": "/v1/head", "client": (host, 5000)}, receive, send)
        retry_after[:] = [v for k, v in said[0]["headers"] if k == b"retry-after"]
        return int(said[0]["status"])

    async def run() -> list[int]:
        return [await status(h) for h in ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9",
                                          "2001:db8:1:3::1", "::ffff:203.0.113.7",
                                          "203.0.113.7")]

    assert asyncio.run(run()) == [200, 429, 200, 200, 429]
    # Retry-After is rounded up: at 30 a minute, half a second after the last token 1.5 s
    # are left, said as 2 (a client retrying after 1 s would be refused again)
    now = [0.0]
    limit = RateLimit(app, per_minute=30, burst=1, clock=lambda: now[0])
    assert asyncio.run(status("192.0.2.1")) == 200
    now[0] = 0.5
    assert asyncio.run(status("192.0.2.1")) == 429
    assert retry_after == [b"2"]


def test_a_charge_short_of_less_than_a_second_of_tokens_is_refused() -> None:
    """`charge` refuses whenever the tokens are not there, even when they are back within the
    second (Retry-After 2: the missing half token, then the retry's own)."""
    from node.ratelimit import Message, RateLimit, RateLimited, Receive, Scope, Send, charge

    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)  # as the middleware passes it on: charge finds its bucket there

    async def nothing() -> Message:
        return {"type": "http.request", "body": b""}

    async def ignore(message: Message) -> None:
        return None

    now = [0.0]
    limit = RateLimit(app, per_minute=60, burst=3, clock=lambda: now[0])
    asyncio.run(limit({"type": "http", "path": "/v1/tx/batch", "client": ("192.0.2.1", 5000)},
                      nothing, ignore))  # 2 left
    [scope] = seen
    charge(scope, 2, "a batch", "per 64")  # 0 left
    now[0] = 0.5
    with pytest.raises(RateLimited) as refused:
        charge(scope, 1, "a batch", "per 64")  # half a token short
    assert refused.value.retry_after == 2
    now[0] = 1.0
    charge(scope, 1, "a batch", "per 64")


def test_a_presentation_request_pays_for_its_qr_code(demo: Path, node: Node) -> None:
    """Drawing a request's QR code costs ~10 plain requests' CPU: it takes that many tokens,
    on the API and on the verifier's page (ADR 47)."""
    now = [1000.0]
    settings = replace(settings_for(demo), rate_limit_per_minute=60, rate_limit_burst=25)
    app = create_app(settings, node=node, clock=lambda: NOW, rate_clock=lambda: now[0])
    body = {"type": "degree", "claims": ["field"]}
    with serve(app) as url, httpx.Client(base_url=url, timeout=60, follow_redirects=True) as c:
        assert [c.post("/v1/presentation-requests", json=body).status_code
                for _ in range(3)] == [200, 200, 429]  # 25 - 10 - 10: 5 left
        r = c.post("/v1/presentation-requests", json=body)
        assert r.status_code == 429 and "QR code costs as much CPU as 10" in r.json()["detail"]
        now[0] += 60.0
        page = c.post("/verify/request", data={"type": "degree", "claims": ["field"]})
        assert page.status_code == 200 and "<svg" in page.text
        page = c.post("/verify/request", data={"type": "degree", "claims": ["field"]})
        assert page.status_code == 200
        page = c.post("/verify/request", data={"type": "degree", "claims": ["field"]})
        assert page.status_code == 429 and page.headers["retry-after"]
        assert "QR code costs as much CPU" in page.text
        # a check that gives no verdict shows the request's page, and its QR, again: paid too
        now[0] += 60.0
        page = c.post("/verify/request", data={"type": "degree", "claims": ["field"]})
        nonce = page.text.split('name="nonce" value="', 1)[1].split('"', 1)[0]
        bad = c.post("/verify/check", data={"nonce": nonce, "presentation": "not base64!"})
        assert bad.status_code == 400 and "<svg" in bad.text  # 25 - 10 - 10: 5 left
        bad = c.post("/verify/check", data={"nonce": nonce, "presentation": "not base64!"})
        assert bad.status_code == 429 and "QR code again" in bad.text


def test_a_desk_refused_by_the_rate_limit_gets_a_page_not_json(demo: Path, node: Node) -> None:
    """The limiter refuses before any route runs. A desk's page (the form, a request's page,
    the explorer) then got the API's JSON, shown raw in the official's browser, where a
    request with a token or two left got the desk's own 429 page: the same form answered two
    ways by how empty the bucket was. A person's page gets a page now, with the pages' CSP
    and Retry-After; the API keeps its JSON."""
    now = [1000.0]
    settings = replace(settings_for(demo), rate_limit_per_minute=60, rate_limit_burst=2)
    app = create_app(settings, node=node, clock=lambda: NOW, rate_clock=lambda: now[0])
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        assert [c.get("/verify").status_code for _ in range(2)] == [200, 200]
        for page in (c.get("/verify"), c.get("/"), c.head("/verify"),
                     c.post("/verify/request", data={"type": "degree", "claims": ["field"]})):
            assert page.status_code == 429, page.text
            assert page.headers["content-type"].startswith("text/html"), page.text
            assert page.headers["retry-after"] == "1"
            assert "default-src 'none'" in page.headers["content-security-policy"]
            assert page.headers["cache-control"] == "no-store"
            if page.request.method != "HEAD":
                assert "Too many requests" in page.text and "retry in 1 s" in page.text
                assert 'href="/verify"' in page.text and '"detail"' not in page.text
        api = c.get("/v1/head")
        assert api.status_code == 429 and api.json()["error"] == "RateLimited"
        now[0] += 1.0
        assert c.get("/verify").status_code == 200  # nothing was held against the page


def test_a_desk_form_refused_for_its_qr_codes_tokens_keeps_the_claims_ticked(
        demo: Path, node: Node) -> None:
    """A request the desk's form sends is refused 429 when the client's bucket holds its own
    token but not its QR code's; the form came back with every claim unticked, so the official
    had to tick them again (the outside issuer's form kept what was typed). The ticked claims
    of the type sent are ticked again, and no other type's."""
    now = [1000.0]
    settings = replace(settings_for(demo), rate_limit_per_minute=60, rate_limit_burst=12)
    app = create_app(settings, node=node, clock=lambda: NOW, rate_clock=lambda: now[0])
    form = {"type": "degree", "claims": ["field", "degree_level"]}
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        assert c.post("/verify/request", data=form).status_code == 303  # 12 - 10: 2 left
        page = c.post("/verify/request", data=form)  # its own token, not the QR code's 9
        assert page.status_code == 429 and "QR code costs as much CPU" in page.text
        ticked = re.findall(r'<input type="checkbox" name="claims" value="([^"]*)" checked>',
                            page.text.split('id="form-degree"', 1)[1].split("</form>", 1)[0])
        assert sorted(ticked) == ["degree_level", "field"], page.text
        assert page.text.count(" checked>") == 2  # not the same names in another type's form
        now[0] += 60.0
        assert " checked>" not in c.get("/verify").text  # a fresh form has none


def test_rate_limit_off_when_zero(demo: Path, node: Node) -> None:
    settings = replace(settings_for(demo), rate_limit_per_minute=0, rate_limit_burst=1)
    app = create_app(settings, node=node, clock=lambda: NOW, rate_clock=lambda: 0.0)
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        assert {c.get("/v1/health").status_code for _ in range(5)} == {200}


def test_token_buckets_are_per_client_and_bounded() -> None:
    t = [0.0]
    buckets = TokenBuckets(per_minute=6, burst=2, clock=lambda: t[0], max_clients=3)
    assert [buckets.take("10.0.0.1") for _ in range(2)] == [0.0, 0.0]
    assert buckets.take("10.0.0.1") == pytest.approx(10.0)  # 6 a minute: one per 10 s
    assert buckets.take("10.0.0.2") == 0.0  # another client has its own bucket
    t[0] = 5.0
    assert buckets.take("10.0.0.1") == pytest.approx(5.0)
    for i in range(10):
        buckets.take(f"192.0.2.{i}")
    assert len(buckets) <= 3  # bounded: a flood of addresses cannot grow the table
    assert buckets.take("10.0.0.1") == 0.0  # evicted: starts again with a full bucket
    # past the bound the table is swept down to 90% at once: the scan is paid once per tenth
    # of the table's new clients, not on every new client's request
    many = TokenBuckets(per_minute=6, burst=2, clock=lambda: t[0], max_clients=100)
    for i in range(101):
        many.take(f"198.51.100.{i}")
    assert len(many) == 90
    for i in range(10):
        many.take(f"203.0.113.{i}")
    assert len(many) == 100


def test_a_sweep_forgets_a_bucket_full_again_to_the_token_before_an_older_one() -> None:
    """A bucket refilled exactly to its burst carries no state: the sweep forgets it first,
    and keeps an older client's bucket that still owes tokens."""
    t = [0.0]
    buckets = TokenBuckets(per_minute=6, burst=2, clock=lambda: t[0], max_clients=3)
    assert [buckets.take(c, n) for c, n in (("b", 2), ("c", 2), ("a", 1))] == [0.0] * 3
    t[0] = 10.0  # a: 1 + 10 s at 0.1 a second = 2, full; b and c: 1 of 2
    assert buckets.take("d") == 0.0  # 4 over 3: swept to 2, a (full) then b (oldest)
    assert len(buckets) == 2
    assert [buckets.take("c"), buckets.take("c")] == [0.0, pytest.approx(10.0)]  # kept


def test_a_cost_over_the_burst_takes_a_full_bucket_into_debt() -> None:
    """A request costing more than a full bucket holds is never refused for good: it needs a
    full bucket and leaves it in debt (nothing asks it for more than the burst)."""
    t = [0.0]
    buckets = TokenBuckets(per_minute=60, burst=2, clock=lambda: t[0])
    assert buckets.take("a", 5) == 0.0  # full: 2 - 5 = -3
    assert buckets.take("a") == pytest.approx(4.0)  # one a second, from -3 to 1
    assert buckets.take("b") == 0.0 and buckets.take("b", 5) == pytest.approx(1.0)
    t[0] = 1.0
    assert buckets.take("b", 5) == 0.0
    for bad in ({"per_minute": -1}, {"burst": 0}, {"max_clients": 0}):
        with pytest.raises(ValueError, match="burst >= 1"):
            TokenBuckets(**{"per_minute": 60, "burst": 2, "max_clients": 10, **bad},
                         clock=lambda: 0.0)


def test_rate_limit_settings_are_checked() -> None:
    base = {"data": "d", "agency": "edu"}
    got = Settings.from_mapping(base, {"LEDGER_NODE_RATE_LIMIT_PER_MINUTE": "30",
                                       "LEDGER_NODE_RATE_LIMIT_BURST": "5"})
    assert (got.rate_limit_per_minute, got.rate_limit_burst) == (30, 5)
    for bad in ({"rate_limit_per_minute": -1}, {"rate_limit_burst": 0},
                {"rate_limit_per_minute": "many"}):
        with pytest.raises(ConfigError, match="rate_limit"):
            Settings.from_mapping({**base, **bad}, {})


def test_worker_setting_is_checked_and_split_in_a_local_cluster(tmp_path: Path) -> None:
    base = {"data": "d", "agency": "edu"}
    assert Settings.from_mapping(base, {}).workers is None  # one per core
    assert Settings.from_mapping(base, {"LEDGER_NODE_WORKERS": "0"}).workers == 0
    assert Settings.from_mapping({**base, "workers": 3}, {}).workers == 3
    for bad in ({"workers": -1}, {"workers": 1000}, {"workers": "two"}, {"workers": True}):
        with pytest.raises(ConfigError, match="workers"):
            Settings.from_mapping({**base, **bad}, {})
    with pytest.raises(ConfigError, match="WORKERS"):
        Settings.from_mapping(base, {"LEDGER_NODE_WORKERS": "many"})
    # the agencies of a local cluster share this machine's cores
    create_cluster(tmp_path / "net", 3, b"pw", base_port=29700)
    got = {Settings.from_toml(tmp_path / "net" / a / "node.toml").workers
           for a in ("civil", "edu", "health")}
    assert got == {max(1, (os.cpu_count() or 1) // 3)}


def test_max_batch_setting_is_checked() -> None:
    base = {"data": "d", "agency": "edu"}
    assert Settings.from_mapping(base, {}).max_batch == 2000
    assert Settings.from_mapping(base, {"LEDGER_NODE_MAX_BATCH": "250"}).max_batch == 250
    assert Settings.from_mapping({**base, "max_batch": 1}, {}).max_batch == 1
    for bad in ({"max_batch": 0}, {"max_batch": 100_001}, {"max_batch": "many"},
                {"max_batch": True}):
        with pytest.raises(ConfigError, match="max_batch"):
            Settings.from_mapping({**base, **bad}, {})
    with pytest.raises(ConfigError, match="MAX_BATCH"):
        Settings.from_mapping(base, {"LEDGER_NODE_MAX_BATCH": "lots"})


def test_the_time_zone_setting_is_an_iana_name() -> None:
    base = {"data": "d", "agency": "civil"}
    assert Settings.from_mapping(base, {}).time_zone == "UTC"
    got = Settings.from_mapping({**base, "time_zone": "Asia/Shanghai"}, {})
    assert str(got.zone) == "Asia/Shanghai"
    env = Settings.from_mapping(base, {"LEDGER_NODE_TIME_ZONE": "Europe/Paris"})
    assert str(env.zone) == "Europe/Paris"
    for bad in ("Asia/Shangai", "CST", "", "../../etc/passwd", 8, None, ["UTC"]):
        with pytest.raises(ConfigError, match="time_zone"):
            Settings.from_mapping({**base, "time_zone": bad}, {})


def test_config_layers_typos_and_wrong_types_are_named() -> None:
    base = {"data": "d", "agency": "edu"}
    with pytest.raises(ConfigError, match=r"unknown environment variables \['LEDGER_NODE_PROT'\]"):
        Settings.from_mapping(base, {"LEDGER_NODE_PROT": "9000"})
    assert Settings.from_mapping(base, {"OTHER_VAR": "x"}).port == 8000
    # command-line options beat the environment, which beats the file
    env = {"LEDGER_NODE_PORT": "99999", "LEDGER_NODE_HOST": "0.0.0.0"}
    got = Settings.from_mapping({**base, "port": 7000}, env, overrides={"port": 8100})
    assert (got.host, got.port) == ("0.0.0.0", 8100)
    with pytest.raises(ConfigError, match="port"):
        Settings.from_mapping(base, env)
    with pytest.raises(ConfigError, match="tls: must be true or false"):
        Settings.from_mapping({**base, "tls": "yes"}, {})



@pytest.mark.parametrize(("bad", "said"), [
    ({"agency": "Edu"}, "agency: 'Edu' is not an agency id"),
    ({"agency": 7}, "agency: 7 is not an agency id"),
    ({"host": ""}, "host: must be a non-empty string"),
    ({"host": 127}, "host: must be a non-empty string"),
    ({"port": -1}, "port: -1 is not in 0..65535"),
    ({"port": 65536}, "port: 65536 is not in 0..65535"),
    ({"port": True}, "port: True is not in 0..65535"),
    ({"operator_token_sha256": "ab" * 31}, "operator_token_sha256: must be 64 lower-case hex"),
    ({"operator_token_sha256": "AB" * 32}, "operator_token_sha256: must be 64 lower-case hex"),
    ({"operator_token_sha256": 5}, "operator_token_sha256: must be 64 lower-case hex"),
    ({"max_body_bytes": 1023}, "max_body_bytes: 1023 is not in 1024..67108864"),
    ({"max_body_bytes": 64 * 2**20 + 1}, "max_body_bytes: 67108865 is not in"),
    ({"max_body_bytes": "1k"}, "max_body_bytes: '1k' is not in"),
    ({"rate_limit_per_minute": 10**7 + 1}, "rate_limit_per_minute (0..10000000"),
    ({"rate_limit_burst": 10**6 + 1}, "rate_limit_burst (1..1000000)"),
    ({"rate_limit_burst": True}, "rate_limit_burst (1..1000000)"),
    ({"cors_origins": ["desk.example"]}, "cors_origins: must be a list of http(s)://"),
    ({"cors_origins": [7]}, "cors_origins: must be a list of http(s)://"),
    ({"public_url": "desk.example"}, "public_url: must be an http(s):// URL"),
    ({"public_url": 7}, "public_url: must be an http(s):// URL"),
    ({"ordering": "raft"}, "ordering: 'raft' is not 'solo' or 'etcd'"),
    ({"ordering": "etcd"}, "etcd_endpoints: ordering 'etcd' needs at least one endpoint"),
    ({"etcd_endpoints": ["127.0.0.1:2379"]}, "etcd_endpoints: must be a list of http(s)://"),
    ({"peers": ["ftp://peer"]}, "peers: must be a list of http(s):// URLs"),
    ({"tls": True}, "pki: TLS (tls = true or https etcd endpoints) needs the PKI folder"),
    ({"etcd_endpoints": ["http://127.0.0.1:2379", "https://127.0.0.1:2380"]},
     "needs the PKI folder"),
    ({"etcd_endpoints": ["https://127.0.0.1:2379"]}, "needs the PKI folder"),
    ({"retention": 0}, "retention: 0 is not a positive integer"),
    ({"retention": "1000"}, "retention: '1000' is not a positive integer"),
    ({"pki": ""}, "pki: must be a non-empty path string"),
    ({"trust_list": 3}, "trust_list: must be a non-empty path string"),
    ({"data": ""}, "data: must be a non-empty path string"),
    ({"colour": "blue"}, "unknown config keys ['colour']"),
])
def test_each_setting_is_checked_and_named(bad: dict[str, object], said: str) -> None:
    """A node refuses a config that would misbehave later (a port out of range, a TLS network
    without its PKI, a token that is not a hash), naming the setting and what it allows."""
    base = {"data": "d", "agency": "edu", **bad}
    with pytest.raises(ConfigError) as e:
        Settings.from_mapping(base, {})
    assert said in str(e.value), str(e.value)


def test_the_settings_bounds_are_accepted_and_read_from_every_layer(tmp_path: Path) -> None:
    """The edges each check allows are allowed; a file, the environment and the command line
    each set them, paths relative to the config file's folder."""
    base = {"data": "d", "agency": "edu-2"}
    for edge in ({"port": 0}, {"port": 65535}, {"max_body_bytes": 1024},
                 {"max_body_bytes": 64 * 2**20}, {"rate_limit_per_minute": 0},
                 {"rate_limit_per_minute": 10**7}, {"rate_limit_burst": 1},
                 {"rate_limit_burst": 10**6}, {"retention": 1}, {"workers": 256},
                 {"max_batch": 100_000}, {"operator_token_sha256": "0f" * 32},
                 {"cors_origins": ["https://desk.example", "http://127.0.0.1:9"]},
                 {"public_url": "https://civil.example"}, {"ordering": "etcd",
                                                           "etcd_endpoints": ["http://e:1"]},
                 {"tls": True, "pki": "pki"}):
        got = Settings.from_mapping({**base, **edge}, {})
        for key, value in edge.items():
            want = tuple(value) if isinstance(value, list) else value
            assert getattr(got, key) == (Path("pki") if key == "pki" else want), key
    (tmp_path / "node.toml").write_text('data = "store"\nagency = "civil"\npki = "../pki"\n'
                                        'tls = true\nport = 8100\n')
    env = {"LEDGER_NODE_PEERS": "http://a:1, ,https://b:2", "LEDGER_NODE_TLS": "0",
           "LEDGER_NODE_OPERATOR_TOKEN_SHA256": "", "LEDGER_NODE_RETENTION": "7"}
    got = Settings.from_toml(tmp_path / "node.toml", env, overrides={"port": 8200})
    assert (got.data, got.pki) == (tmp_path / "store", tmp_path / "../pki")
    assert (got.tls, got.port, got.retention) == (False, 8200, 7)
    assert got.peers == ("http://a:1", "https://b:2") and got.operator_token_sha256 is None
    assert got.audience == "http://127.0.0.1:8200"
    got = Settings.from_toml(tmp_path / "node.toml", {"LEDGER_NODE_TLS": "1",
                                                      "LEDGER_NODE_PORT": "many"},
                             overrides={"port": 8300, "public_url": "https://civil.example"})
    assert (got.tls, got.port, got.audience) == (True, 8300, "https://civil.example")
    with pytest.raises(ConfigError, match=r"^peers: must be a list$"):
        Settings.from_mapping({**base, "peers": "http://a:1"}, {})
    with pytest.raises(ConfigError, match="data: must be a path"):
        Settings(data="d", agency="edu")  # type: ignore[arg-type]
    for text, said in (("data = ", "is not valid TOML"), ('agency = "civil"', "data: missing")):
        (tmp_path / "bad.toml").write_text(text)
        with pytest.raises(ConfigError, match=said):
            Settings.from_toml(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="no config file at"):
        Settings.from_toml(tmp_path / "none.toml")
    with pytest.raises(ConfigError, match="LEDGER_NODE_TLS: 'yes' is not true or false"):
        Settings.from_toml(tmp_path / "node.toml", {"LEDGER_NODE_TLS": "yes"})
    with pytest.raises(ConfigError, match="LEDGER_NODE_RETENTION: 'x' is not an integer"):
        Settings.from_toml(tmp_path / "node.toml", {"LEDGER_NODE_RETENTION": "x"})

# -- request size caps ---------------------------------------------------------------------------

def _chunks(total: int) -> Iterator[bytes]:
    for _ in range(total // 1024 + 1):
        yield b"\x00" * 1024


def test_body_cap_covers_every_route_and_chunked_bodies(demo: Path, node: Node) -> None:
    """Every route, API or page, POST or GET, documented or not: a body over the cap is 413,
    with or without a Content-Length (chunked transfer encoding is counted as it streams)."""
    settings = replace(settings_for(demo), max_body_bytes=4096, rate_limit_per_minute=0)
    app = create_app(settings, node=node, clock=lambda: NOW)
    with serve(app) as url, httpx.Client(base_url=url, timeout=60, follow_redirects=True) as c:
        doc = c.get("/openapi.json").json()
        routes = [(m.upper(), p.replace("{credential_id}", "ab" * 32).replace("{height}", "0")
                   .replace("{txid}", "ab" * 32).replace("{index}", "0")
                   .replace("{issuer}", "edu").replace("{kind}", "degree"))
                  for p, ops in doc["paths"].items() for m in ops]
        routes += [("POST", "/verify/request"), ("GET", "/"), ("POST", "/no-such-route")]
        assert len(routes) >= 20
        for method, path in routes:
            sized = c.request(method, path, content=b"\x00" * 5000)
            assert sized.status_code == 413, (method, path, sized.status_code)
            chunked = c.request(method, path, content=_chunks(5000))
            assert chunked.status_code == 413, (method, path, chunked.status_code)
            assert chunked.json()["error"] == "PayloadTooLarge"
        # the verifier page's photo upload has its own, larger cap, refused as a page
        assert c.post("/verify/check", content=b"\x00" * 5000).status_code == 400
        assert MAX_UPLOAD < _BodyLimit.UPLOAD_LIMIT  # the page's own check can be reached
        over = _BodyLimit.UPLOAD_LIMIT + 1
        for body in (b"\x00" * over, _chunks(over)):
            r = c.post("/verify/check", content=body)
            assert r.status_code == 413
            assert r.headers["content-type"].startswith("text/html")
        # under the cap the same routes answer normally (the cap is not refusing everything)
        assert c.post("/v1/tx", content=_chunks(3000)).status_code == 400
        assert c.get("/v1/health").status_code == 200


# -- a store whose head does not match its Merkle root ------------------------------------------

def test_node_refuses_to_start_on_a_store_whose_head_does_not_match(demo: Path,
                                                                    tmp_path: Path) -> None:
    """The node (not just the store: see tests/test_store.py::test_tampered_head_root) refuses
    to start when the head's root is not the root of the stored Merkle log."""
    data = tmp_path / "demo-data"
    shutil.copytree(demo, data)
    db = plyvel.DB(str(data / "ledger"))
    try:
        h = Head.from_bytes(db.get(head_key))
        db.put(head_key, Head(h.height, h.hash, h.log_size, b"\x5a" * 32, h.time).to_bytes())
    finally:
        db.close()
    with pytest.raises(StoreError, match="does not match its Merkle log"):
        Node(data, "edu", PASS, clock=lambda: NOW)
    app = create_app(settings_for(data), clock=lambda: NOW, passphrase=PASS)

    async def start() -> None:  # what uvicorn runs first: the app's lifespan
        async with app.router.lifespan_context(app):
            pass

    with pytest.raises(StoreError, match="Merkle"):
        asyncio.run(start())


def test_node_that_cannot_start_releases_its_store(demo: Path, tmp_path: Path) -> None:
    """Each start-up step that fails after the store opened (a wrong passphrase, a damaged key
    file) closes the store again: its LevelDB lock was held by the process, so the next open
    in it (a retry with the right passphrase) failed with "lock ... already held"."""
    data = tmp_path / "demo-data"
    shutil.copytree(demo, data)
    # the error kept (as `ledger-node run` keeps it, chained to its exit): its traceback holds
    # the half-built node, so no garbage collection closes the store for it
    with pytest.raises(KeyFileError) as wrong:
        Node(data, "edu", b"not-the-passphrase", clock=lambda: NOW)
    Store(data / "ledger", create=False).close()  # the lock is free again
    (data / "keys" / "civil.node.key").write_bytes(b"not a key file")
    with pytest.raises(KeyFileError) as damaged:
        Node(data, "edu", PASS, clock=lambda: NOW)
    Store(data / "ledger", create=False).close()
    assert "passphrase" in str(wrong.value) and damaged.value is not wrong.value


# -- backups -------------------------------------------------------------------------------------

def test_export_then_import_restores_an_identical_head(demo: Path, tmp_path: Path) -> None:
    """``ledger export`` then ``ledger import`` (the CLI an operator runs) gives the same head,
    root and checkpoint, and the restored store serves the same proofs."""
    archive = tmp_path / "backup.cla"
    restored = tmp_path / "restored"
    out = subprocess.run([LEDGER_CLI, "export", str(demo), "--out", str(archive), "--json"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    got = subprocess.run([LEDGER_CLI, "import", str(archive), "--data", str(restored),
                          "--json"], capture_output=True, text=True, check=False)
    assert got.returncode == 0, got.stderr
    summary = json.loads(got.stdout)
    with Store(demo / "ledger", create=False) as a, Store(restored, create=False) as b:
        assert a.head is not None
        assert a.head == b.head
        assert summary["hash"] == a.head.hash.hex()
        assert a.checkpoint() == b.checkpoint()
        assert a.registry is not None and b.registry is not None
        assert a.registry.to_bytes() == b.registry.to_bytes()
        size = a.head.log_size
        assert a.inclusion_proof(size // 2, size) == b.inclusion_proof(size // 2, size)
    # a damaged backup does not restore
    blob = bytearray(archive.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    archive.write_bytes(bytes(blob))
    bad = subprocess.run([LEDGER_CLI, "import", str(archive), "--data", str(tmp_path / "bad"),
                          "--json"], capture_output=True, text=True, check=False)
    assert bad.returncode == 1
    assert not (tmp_path / "bad").exists()


def test_a_logged_error_says_where_it_was_raised_and_not_what_it_held() -> None:
    """An unexpected error's JSON line names its class and its frames (file, line, function),
    so an operator can tell one bug from another; never its message or the frames' values,
    which could quote a claim (ADR 50)."""
    from node.app import _JsonFormatter

    def deep(claim: str) -> None:
        raise KeyError(f"no such claim {claim}")

    try:
        deep("Chen Mei 1950-01-01")
    except KeyError:
        record = logging.LogRecord("node.replication", logging.ERROR, __file__, 1,
                                   "replication step failed unexpectedly", None, sys.exc_info())
    line = json.loads(_JsonFormatter().format(record))
    assert line["exc"] == "KeyError"
    assert line["exc_frames"][-1].startswith("test_ops.py:") and \
        line["exc_frames"][-1].endswith(":deep")
    assert "Chen Mei" not in json.dumps(line)


def test_a_cluster_folder_from_before_credit_gets_one_secret_for_all(tmp_path: Path) -> None:
    """A `ledger-node cluster` folder made before ADR 51 has no credit secret, and the README
    says the command makes one: its first start since makes the network's one for every
    agency (the same secret, sealed for each); one already there is never replaced."""
    from node.cluster import LocalCluster
    from node.service import CREDIT_SECRET_FILE, read_credit_secret

    create_cluster(tmp_path / "net", 3, b"pw", base_port=29750)
    files = [tmp_path / "net" / a / "data" / "keys" / CREDIT_SECRET_FILE
             for a in ("civil", "edu", "health")]
    made = read_credit_secret(files[0], b"pw")
    for f in files:
        f.unlink()  # as a folder of that version was
    cluster = LocalCluster(tmp_path / "net", b"pw")
    cluster._ensure_credit_secret()
    secrets_now = {read_credit_secret(f, b"pw") for f in files}
    assert len(secrets_now) == 1 and None not in secrets_now and made not in secrets_now
    kept = files[0].read_bytes()
    cluster._ensure_credit_secret()
    assert files[0].read_bytes() == kept


def test_a_second_cluster_on_taken_ports_starts_nothing(tmp_path: Path) -> None:
    """A second `ledger-node cluster` on a folder whose cluster runs: the first one's nodes
    answered its health checks, so it said "running" and failed afterwards. Ports another
    process listens on are refused before anything starts."""
    import socket

    from node.cluster import ClusterError, LocalCluster

    base = free_base(3)
    create_cluster(tmp_path / "net", 3, b"pw", base_port=base)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", base + 1))  # edu's node port
        listener.listen()
        cluster = LocalCluster(tmp_path / "net", b"pw")
        with pytest.raises(ClusterError, match=rf"port {base + 1} on 127\.0\.0\.1 is in use"):
            cluster.start()
    assert not list((tmp_path / "net").glob("*/etcd/member"))  # no etcd member was made
