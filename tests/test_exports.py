"""The public surface of each core module is exactly its __all__, and every name exists."""

from __future__ import annotations

import importlib

import pytest

MODULES = {
    "ledger.errors": {"CheckpointError", "DecodeError", "KeyFileError", "LedgerError",
                      "OrderingError", "ProofError", "SignatureError", "StoreError",
                      "TxRejected"},
    "ledger.merkle": {"leaf_hash", "node_hash", "root_hash", "inclusion_proof",
                      "consistency_proof", "verify_inclusion", "verify_consistency"},
    "ledger.codec": {"MAX_SIZE", "Fields", "decode", "encode"},
    "ledger.offline": {"MAX_LISTS", "MAX_SNAPSHOT", "Snapshot", "SnapshotError",
                       "export_snapshot", "left_out_lists", "list_ref", "list_refs",
                       "load_snapshot", "merge_snapshots", "store_status_list"},
}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_export_list(name: str) -> None:
    mod = importlib.import_module(name)
    assert set(mod.__all__) == MODULES[name]
    for attr in mod.__all__:
        assert hasattr(mod, attr), f"{name}.{attr} is exported but missing"


def test_every_error_is_a_ledger_error() -> None:
    from ledger import errors

    for attr in errors.__all__:
        assert issubclass(getattr(errors, attr), errors.LedgerError)


def test_core_imports_no_upper_layer() -> None:
    """`ledger` imports none of node/wallet/contracts, nor web or etcd clients."""
    import pathlib
    import re

    root = pathlib.Path(importlib.import_module("ledger").__file__ or "").parent
    banned = re.compile(r"^\s*(from|import)\s+(node|wallet|contracts|fastapi|uvicorn|aetcd|"
                        r"etcd3gw|grpc)\b", re.M)
    offenders = [p.name for p in root.glob("*.py") if banned.search(p.read_text())]
    assert offenders == []
