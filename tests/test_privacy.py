"""Privacy: no personal data in the store or the archive; random status indexes; batch copies
that two verifiers cannot link.

The scan issues every scenario's credential (tests/scenarios/*.json: honest, revoked, suspended,
presented, replayed, stolen-holder, …) plus an identity credential with a national identifier and
batch copies, all through a real LevelDB store; verifies presentations; revokes and suspends;
exports an archive; closes the store; then reads every byte of every file in the store folder
(tables, write-ahead log, manifest) and of the archive and looks for each claim value, each
identifier, each holder key (raw, base64url, hex), each disclosure and each issuer-signed JWT
payload. The ledger only ever holds hashes, indexes, status bits and registry entries.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import DAY, T0, LedgerHarness, served_demo
from credworld import CLAIMS, HOLDER, REQ, World, present

from ledger import sdjwt
from ledger.archive import export_archive
from ledger.credentials import (
    STATUS_LIST_SIZE,
    draw_status_index,
    issue_batch,
    issue_credential,
)
from ledger.keys import PrivateKey
from ledger.network import Agency, status_tx
from ledger.presentation import Bundle, Envelope, Request

SCENARIOS = sorted(Path(__file__).with_name("scenarios").glob("*.json"))
IDENTITY = {"id": "identity", "title": "Identity card",
            "claims": {"national_id": "string", "full_name": "string", "born": "date",
                       "address": "string"},
            "derived": {"age_over_18": {"claim": "born", "age_over": 18}}}


def _holder(i: int) -> PrivateKey:
    return PrivateKey(hashlib.sha256(f"privacy-holder-{i}".encode()).digest())


def _citizen(i: int) -> dict[str, Any]:
    return {"national_id": f"440604{19700101 + i:08d}{i % 10}X", "full_name": f"Chen Mei-{i:04x}q",
            "born": f"19{70 + i % 30:02d}-0{1 + i % 9}-1{i % 10}",
            "address": f"{17 + i} Lingnan Road, Chancheng"}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _needles(values: list[Any], holders: list[PrivateKey], sd_jwts: list[str]) -> list[bytes]:
    out: list[bytes] = []
    for v in values:
        if isinstance(v, str) and len(v) >= 6:
            out += [v.encode(), json.dumps(v).encode()]
    for h in holders:
        out += [h.public.raw, h.public.raw.hex().encode(), _b64(h.public.raw).encode(),
                h.public.kid]
    for s in sd_jwts:
        jwt, *ds = s.split("~")[:-1]
        out += [d.encode() for d in ds]
        out += [jwt.split(".")[1].encode(), jwt.split(".")[2].encode()]
    return out


def _files(path: Path) -> bytes:
    blob = b"".join(p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file())
    assert len(blob) > 10_000, "the scan must read a real store"
    return blob


def test_store_and_archive_hold_no_personal_data(ledger: LedgerHarness,
                                                 agencies: dict[str, Agency]) -> None:
    world = World(ledger, agencies)
    reg, edu = agencies["reg"], agencies["edu"]
    ledger.govern("register_type", {"type": IDENTITY}, [reg, edu], T0 + 3)
    ledger.govern("grant", {"agency": "reg", "type": "identity", "from": T0,
                            "until": T0 + 365 * DAY}, [reg, edu], T0 + 4)
    values: list[Any] = list(CLAIMS.values())
    holders, sd_jwts = [HOLDER], []

    # every scenario's issuance and presentation, on one store
    for n, case in enumerate(SCENARIOS):
        given = json.loads(case.read_text())["given"]
        bundle, cid = world.issue(now=T0 + 10 + n)
        sd_jwts.append(bundle.sd_jwt)
        holder = PrivateKey(b"\x55" * 32) if given.get("holder") == "stranger" else HOLDER
        holders.append(holder)
        env = present(bundle, iat=T0 + 40, holder=holder)
        world.verify(env, now=T0 + 40)
        for status, at in given.get("status_changes", []):
            ledger.commit([status_tx("demo", edu, cid, status, "scenario", T0 + 40 + at)],
                          T0 + 40 + at)

    # identity credentials with national identifiers, one of them in a batch of copies
    for i in range(4):
        citizen = _citizen(i)
        values += list(citizen.values())
        keys = [_holder(10 * i + c) for c in range(3 if i == 0 else 1)]
        holders += keys
        creds = issue_batch(registry=ledger.registry, agency="reg", issuer_key=reg.issuer_key,
                            kind="identity", claims=citizen,
                            holder_jwks=[sdjwt.jwk_from_ed25519(k.public.raw) for k in keys],
                            now=T0 + 100 + i, valid_for=30 * DAY)
        r = ledger.commit([c.anchor for c in creds], T0 + 100 + i)
        assert not r.rejected
        sd_jwts += [c.sd_jwt.serialize() for c in creds]
        ledger.commit([status_tx("demo", reg, creds[0].credential_id, "suspended", "check",
                                 T0 + 200 + i)], T0 + 200 + i)

    archive = io.BytesIO()
    export_archive(ledger.store, archive)
    ledger.close()
    haystacks = {"store": _files(ledger.path), "archive": archive.getvalue()}
    needles = _needles(values, holders, sd_jwts)
    assert len(needles) > 100
    for where, blob in haystacks.items():
        found = [n for n in needles if n in blob]
        assert not found, f"personal data in the {where}: {len(found)} needle(s)"
    # the scan can find things: the anchored credential ids (hashes) *are* in both
    cid = hashlib.sha256(sd_jwts[0].split("~")[0].encode()).digest()
    assert all(cid in blob for blob in haystacks.values())


# -- status indexes ------------------------------------------------------------------------------

def _looks_uniform(indexes: list[int]) -> bool:
    """True for uniform draws from [0, 2^20); false for any sequential or clustered allocation.

    Two tests, each passed by 64 uniform draws except with probability below 1e-7: the indexes
    span more than a quarter of the list (all 64 inside one quarter-wide window: about 1e-36),
    and every quarter of the list holds at least one (an empty quarter: about 4e-8).
    """
    q = STATUS_LIST_SIZE // 4
    quarters = {i // q for i in indexes}
    return max(indexes) - min(indexes) > q and quarters == {0, 1, 2, 3}


def test_status_indexes_are_random(ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    World(ledger, agencies)
    jwk = sdjwt.jwk_from_ed25519(HOLDER.public.raw)
    indexes = [issue_credential(registry=ledger.registry, agency="edu",
                                issuer_key=agencies["edu"].issuer_key, kind="degree",
                                claims=CLAIMS, holder_jwk=jwk, now=T0 + 10,
                                valid_for=DAY).status_index for _ in range(64)]
    assert _looks_uniform(indexes), sorted(indexes)
    # a node and `agency issue` give issue_credential an index of draw_status_index's (ADR 55),
    # each draw seeing the ones taken before it: those are uniform too
    drawn: list[int] = []
    for _ in range(64):
        drawn.append(draw_status_index(drawn.__contains__))
    assert len(set(drawn)) == 64 and _looks_uniform(drawn), sorted(drawn)
    # the test cannot pass by accident for a sequential (or nearly sequential) allocator
    for start in (0, 5000, STATUS_LIST_SIZE - 64):
        assert not _looks_uniform(list(range(start, start + 64)))
    assert not _looks_uniform([start * 97 for start in range(64)])


# -- batch issuance: two verifiers cannot link one citizen's two presentations -------------------

def _artifacts(env_bytes: bytes) -> dict[str, set[Any]]:
    """Everything in an envelope that could serve as a correlation handle, by kind."""
    env = Envelope.from_bytes(env_bytes)
    jwt, *rest = env.sd_jwt_kb.split("~")
    disclosures, kb = rest[:-1], rest[-1]
    payload = json.loads(base64.urlsafe_b64decode(jwt.split(".")[1] + "=="))
    salts = {json.loads(base64.urlsafe_b64decode(d + "=="))[0] for d in disclosures}
    from ledger.tx import Tx

    anchor = Tx.from_bytes(env.anchor)
    return {"salt": salts, "digest": set(payload["_sd"]),
            "holder_key": {json.dumps(payload["cnf"]["jwk"], sort_keys=True)},
            "credential_id": {anchor.body["credential_id"],
                              hashlib.sha256(jwt.encode()).digest()},
            "status_index": {payload["status"]["status_list"]["idx"]},
            "signature": {jwt.split(".")[2], kb.split(".")[2], *(s.sig for s in anchor.sigs)},
            "anchor": {env.anchor}}


def test_batch_copies_cannot_be_linked_by_two_verifiers(ledger: LedgerHarness,
                                                        agencies: dict[str, Agency]) -> None:
    world = World(ledger, agencies)
    keys = [_holder(900), _holder(901)]
    copies = issue_batch(registry=ledger.registry, agency="edu",
                         issuer_key=agencies["edu"].issuer_key, kind="degree", claims=CLAIMS,
                         holder_jwks=[sdjwt.jwk_from_ed25519(k.public.raw) for k in keys],
                         now=T0 + 10, valid_for=30 * DAY)
    r = ledger.commit([c.anchor for c in copies], T0 + 10)
    assert not r.rejected
    bundles = [world.bundle(c.sd_jwt.serialize(), idx) for c, (_, idx) in zip(copies, r.accepted,
                                                                             strict=True)]
    at_a = Request("nonce-a-1", "https://clinic.example", "degree", REQ.claims)
    at_b = Request("nonce-b-1", "https://bank.example", "degree", REQ.claims)
    env_a = present(bundles[0], at_a, holder=keys[0])
    env_b = present(bundles[1], at_b, holder=keys[1])
    report_a, report_b = world.verify(env_a, at_a), world.verify(env_b, at_b)
    assert report_a.verified and report_b.verified
    assert report_a.claims == report_b.claims  # the same facts, disclosed to each
    a, b = _artifacts(env_a), _artifacts(env_b)
    for kind in a:
        assert a[kind] and b[kind]
        assert not a[kind] & b[kind], f"the two presentations share a {kind}"
    # the same copy shown twice *is* linkable (so the comparison above can fail)
    again = _artifacts(present(bundles[0], at_b, holder=keys[0]))
    assert all(a[k] & again[k] for k in ("salt", "digest", "holder_key", "credential_id"))


def test_batch_refuses_a_shared_holder_key(ledger: LedgerHarness,
                                           agencies: dict[str, Agency]) -> None:
    World(ledger, agencies)
    jwk = sdjwt.jwk_from_ed25519(HOLDER.public.raw)
    with pytest.raises(ValueError, match="own holder key"):
        issue_batch(registry=ledger.registry, agency="edu", issuer_key=agencies["edu"]
                    .issuer_key, kind="degree", claims=CLAIMS, holder_jwks=[jwk, dict(jwk)],
                    now=T0 + 10, valid_for=DAY)


# -- the running system: a served node, its processes, its logs, its answers ---------------------

NODE_CANARIES = {"holder_name": "CANARYnameQ7x Wang", "district": "CANARYdistrictD4m",
                 "birth_date": "1931-11-27", "resident_since": "1999-12-31"}
NODE_SECRETS = {"LEDGER_KEY_PASSPHRASE": "CANARYkeypassK3q",
                "WALLET_PASSPHRASE": "CANARYwalletW9z"}
NATIONAL_ID = "CANARYnid440604X19"  # a credit event's subject: the ledger keeps a pseudonym


def _children(pid: int) -> list[int]:
    """Every process below ``pid`` (its signature workers, multiprocessing's tracker)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            text = Path(f"/proc/{p}/task/{p}/children").read_text()
        except OSError:
            continue
        kids = [int(k) for k in text.split()]
        out += kids
        todo += kids
    return out


#: claim values a node refuses (a list for a string; an invisible character; not NFC; too
#: long), each starting with its needle: an error that quoted the value would show it
BAD_CANARY_NEEDLES = ("CANARYbadZ1", "CANARYbadZ2", "CANARYbadZ3", "CANARYbadZ4")
BAD_CANARIES: tuple[Any, ...] = ([BAD_CANARY_NEEDLES[0]], BAD_CANARY_NEEDLES[1] + "x\u200b",
                                 BAD_CANARY_NEEDLES[2] + "Cha\u0301ng",
                                 BAD_CANARY_NEEDLES[3] + "x" * 1000)


def _forms(value: str) -> list[bytes]:
    """The value as it could be written: raw, JSON, hex, UTF-16, and base64url at the three
    alignments a value inside a longer encoded text can have (the stable middle of each)."""
    raw = value.encode()
    out = [raw, json.dumps(value).encode(), raw.hex().encode(), value.encode("utf-16-le")]
    for pad in range(3):
        enc = _b64(b"\0" * pad + raw).encode()
        out.append(enc[(pad * 4 + 2) // 3 + 1:-2])
    return out


def test_a_served_node_keeps_and_shows_no_canary(tmp_path: Path) -> None:
    """The demo node run as users run it (`ledger-node demo --serve`, real HTTP, real LevelDB):
    canary claim values, passphrases, a national identifier and a holder key go through
    issuance, refused issuance (bad claims, no token), a verification, a replay, a tampered
    presentation and a credit event. Then no process below the node holds a passphrase in its
    environment, and none of the canaries is in any byte of the store, the archive, the node's
    captured stdout and stderr (its log), the temporary folder it was given, or an answer to a
    client that had no right to the value (refusals, health, metrics, pages)."""
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, **NODE_SECRETS, "TMPDIR": str(tmp_path / "tmp"), "COLUMNS": "200"}
    answers: list[bytes] = []  # what clients without a right to the values were told
    with (tmp_path / "node.out").open("wb") as out, (tmp_path / "node.err").open("wb") as err, \
            served_demo(tmp_path, env, out, err) as (url, proc):
        said = re.search(r"LEDGER_OPERATOR_TOKEN=(\S+)", (tmp_path / "node.err").read_text())
        assert said is not None
        auth = {"authorization": f"Bearer {said.group(1)}"}

        # no process the node started holds a passphrase (its own start-up environment is the
        # user's: README says to give a file instead)
        kids = _children(proc.pid)
        assert kids, "the node starts signature workers"
        for kid in kids:
            environ = Path(f"/proc/{kid}/environ").read_bytes()
            for secret in NODE_SECRETS.values():
                assert secret.encode() not in environ, f"a passphrase in process {kid}'s env"

        holder = _holder(4242)
        jwk = sdjwt.jwk_from_ed25519(holder.public.raw)
        got = httpx.post(f"{url}/v1/credentials", headers=auth, json={
            "type": "residence", "claims": NODE_CANARIES, "holder_jwk": jwk})
        assert got.status_code == 200, got.text
        bundle = Bundle.from_bytes(base64.urlsafe_b64decode(got.json()["bundle"] + "=="))
        for bad in ({**NODE_CANARIES, "birth_date": "CANARYnotadate"},
                    {**NODE_CANARIES, "extra": "CANARYextraE3"},
                    {**NODE_CANARIES, "holder_name": ["CANARYnameQ7x Wang"]},
                    *({**NODE_CANARIES, "holder_name": value} for value in BAD_CANARIES)):
            refused = httpx.post(f"{url}/v1/credentials", headers=auth,
                                 json={"type": "residence", "claims": bad, "holder_jwk": jwk})
            assert refused.status_code in (400, 422), refused.text
            answers.append(refused.content)  # a refusal quotes no value it was sent
        anyone = httpx.post(f"{url}/v1/credentials", json={
            "type": "residence", "claims": NODE_CANARIES, "holder_jwk": jwk})
        assert anyone.status_code == 401
        answers.append(anyone.content)
        credit = httpx.post(f"{url}/v1/credit/events", headers=auth, json={
            "subject": NATIONAL_ID, "category": "tax", "points": -40, "reason": "late-filing",
            "valid_days": 365})
        assert credit.status_code == 200, credit.text

        asked = httpx.post(f"{url}/v1/presentation-requests", json={
            "type": "residence", "claims": ["holder_name", "district", "age_over_65"]}).json()
        request = Request(asked["nonce"], asked["audience"], "residence", asked["claims"])
        env_bytes = present(bundle, request, iat=int(time.time()), holder=holder)
        envelope = _b64(env_bytes)
        report = httpx.post(f"{url}/v1/verify", json={"nonce": request.nonce,
                                                      "envelope": envelope}).json()
        assert report["verified"], report  # the official who asked sees the values
        assert report["claims"]["district"] == NODE_CANARIES["district"]
        for nonce, text in ((request.nonce, envelope), ("no-such-request-nonce", envelope)):
            answers.append(httpx.post(f"{url}/v1/verify", json={"nonce": nonce,
                                                                "envelope": text}).content)
        asked = httpx.post(f"{url}/v1/presentation-requests", json={
            "type": "residence", "claims": ["district"]}).json()
        tampered = bytearray(env_bytes)
        tampered[len(tampered) // 2] ^= 1
        answers.append(httpx.post(f"{url}/v1/verify", json={
            "nonce": asked["nonce"], "envelope": _b64(bytes(tampered))}).content)
        for path in ("/metrics", "/v1/health", "/v1/head", "/v1/blocks", "/", "/verify",
                     "/v1/approvals"):
            answers.append(httpx.get(f"{url}{path}").content)
        archive = httpx.get(f"{url}/v1/archive", timeout=60)
        assert archive.status_code == 200
    assert proc.returncode == 0

    logs = (tmp_path / "node.out").read_bytes() + (tmp_path / "node.err").read_bytes()
    haystacks = {"store": _files(tmp_path / "demo-data" / "ledger"), "archive": archive.content,
                 "log": logs, "answers": b"\n".join(answers),
                 "tmp": b"".join(p.read_bytes() for p in (tmp_path / "tmp").rglob("*")
                                 if p.is_file())}
    needles = {f"{name} ({i})": form for name, value in
               [*NODE_CANARIES.items(), *NODE_SECRETS.items(), ("national id", NATIONAL_ID)]
               for i, form in enumerate(_forms(value))}
    needles |= {f"refused claim {i}": v.encode() for i, v in enumerate(BAD_CANARY_NEEDLES)}
    needles |= {f"holder key ({i})": n for i, n in
                enumerate(_needles([], [holder], [bundle.sd_jwt]))}
    for where, blob in haystacks.items():
        found = sorted(name for name, n in needles.items() if n in blob)
        assert not found, f"in the {where}: {found}"
    # the scan reads real data: the credential's id is in the store and the archive, the
    # node's log has its requests, and a canary *is* found where it belongs (the bundle)
    cid = bytes.fromhex(got.json()["credential_id"])
    assert cid in haystacks["store"] and cid in haystacks["archive"]
    assert b'"route":"/v1/credentials"' in logs
    assert any(form in bundle.to_bytes() for form in _forms(NODE_CANARIES["district"]))


def _core_file_limit(limits: str) -> str:
    """The (soft) limit on core files in a /proc/<pid>/limits text: the one the kernel reads."""
    line = next(ln for ln in limits.splitlines() if ln.startswith("Max core file size"))
    return line.split()[4]


def _cores_allowed() -> None:
    """In a child before it runs: core files as large as this machine allows, as under an
    operator's ``ulimit -c unlimited`` or a service's ``LimitCORE=infinity``."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))


@pytest.mark.parametrize("main", ["node.cli:main", "ledger.cli:ledger_main",
                                  "ledger.cli:agency_main", "wallet.cli:main"])
def test_the_tools_write_no_core_file(tmp_path: Path, main: str) -> None:
    """A node holds its agency's decrypted keys, the credit secret, the evidence key and the
    claims of the applications it decides; the wallet its passphrase's key and every claim;
    `agency issue` the issuing key and claims. A crash (a fault in LevelDB's C code, an
    abort) of a process allowed core files wrote all of that, unencrypted, into a core file
    in its working folder (or the system's crash store). Every command-line tool, the node
    included, allows itself none: its limit is 0 whatever it was started with (read from
    /proc as it exits)."""
    import resource

    if resource.getrlimit(resource.RLIMIT_CORE)[1] == 0:
        pytest.skip("this machine allows no process a core file: nothing to lower")
    module, func = main.split(":")
    code = ("import atexit, sys\n"
            "atexit.register(lambda: sys.stderr.write('LIMITS\\n' + "
            "open('/proc/self/limits').read()))\n"
            "sys.argv = ['tool', '--help']\n"
            f"from {module} import {func}\n"
            f"{func}()\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120, check=False, preexec_fn=_cores_allowed)
    assert r.returncode == 0 and "Usage" in r.stdout, r.stderr  # its main ran, to the end
    assert _core_file_limit(r.stderr.split("LIMITS\n", 1)[1]) == "0", r.stderr
