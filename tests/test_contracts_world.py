"""Shared helper for the credit and approval tests: the catalogue installed on a real store."""

from __future__ import annotations

from typing import Any

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
              ts: int = T0) -> Tx:
    body: dict[str, Any] = {"subject": subject, "category": category, "points": points,
                            "reason": reason, "date": date, "expiry": expiry, "ts": ts}
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
