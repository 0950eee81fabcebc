"""Shared helper for the credit and approval tests: the catalogue installed on a real store."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import DAY, T0, LedgerHarness

import contracts
from contracts.catalogue import setup_actions
from ledger.network import Agency, demo_agency
from ledger.tx import Tx, make_tx

SECRET = b"network-credit-secret-for-tests"
ENGINE = contracts.install()  # the state machine's rule engine, as node and CLIs install it
ROLES = ("civil", "edu", "market", "justice")


def catalogue_agencies() -> dict[str, Agency]:
    return {r: demo_agency(r, r.title()) for r in ROLES}


def install_catalogue(lg: LedgerHarness, agencies: dict[str, Agency],
                      services: list[str] | None = None, time: int = T0 + 1) -> None:
    signers = [agencies["civil"], agencies["edu"]]
    for action, args in setup_actions(lg.registry.data["types"], T0, T0 + 4000 * DAY,
                                      services=services):
        lg.govern(action, args, signers, time)


def credit_tx(agency: Agency, subject: bytes, category: str, points: int, date: int,
              expiry: int, reason: str = "late_filing", withdraws: bytes | None = None,
              ts: int | None = None) -> Tx:
    """A credit event signed at ``ts``, by default at its ``date`` (an event is signed within
    ``MAX_BACKDATE`` of the block that records it: ADR 69)."""
    body: dict[str, Any] = {"subject": subject, "category": category, "points": points,
                            "reason": reason, "date": date, "expiry": expiry,
                            "ts": date if ts is None else ts}
    if withdraws is not None:
        body["withdraws"] = withdraws
    return make_tx(lg_net(), "credit", body, [agency.issuer_key])


def lg_net() -> str:
    return "demo"


def test_catalogue_installs(make_ledger: Any) -> None:
    ag = catalogue_agencies()
    lg = make_ledger(list(ag.values()), 2, T0)
    install_catalogue(lg, ag)
    assert lg.registry.services() == ["business-licence", "certified-copy",
                                      "elderly-allowance", "qualification-recognition"]


def test_a_full_registry_passes_the_shape_check_and_broken_ones_are_named(
        make_ledger: Any) -> None:
    """Registry.from_unverified (snapshots, a wallet's --registry) takes every registry the
    chain builds (catalogue rules, credit policy and grants, types, grants), and names the
    member of a malformed one instead of failing later."""
    from ledger import codec
    from ledger.errors import DecodeError
    from ledger.state import Registry

    ag = catalogue_agencies()
    lg = make_ledger(list(ag.values()), 2, T0)
    install_catalogue(lg, ag)
    raw = lg.registry.to_bytes()
    assert Registry.from_unverified(raw).data == lg.registry.data
    plain = codec.decode(raw, max_size=1 << 24)
    kid = next(iter(plain["keys"]))
    for change, where in (
            (lambda d: d.pop("quorum"), "registry.quorum"),
            (lambda d: d.update(agencies=[]), "registry.agencies"),
            (lambda d: d["keys"][kid].update(pub=b"\x01" * 32), f"registry.keys['{kid}']"),
            (lambda d: d["keys"][kid].update(agency="nobody"), f"registry.keys['{kid}']"),
            (lambda d: d["keys"][kid].update(agency=["civil"]), f"registry.keys['{kid}']"),
            (lambda d: d["grants"].update(civil={"degree": [[1]]}), "registry.grants['civil']"),
            (lambda d: d.update(rules=[]), "registry.rules")):
        broken = codec.decode(raw, max_size=1 << 24)
        change(broken)
        with pytest.raises(DecodeError) as e:
            Registry.from_unverified(codec.encode(broken))
        assert e.value.where == where, e.value
