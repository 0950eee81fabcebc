"""One result on every node (ADR 63): the same ordered input gives the same blocks, state and
approval decisions whatever the process's environment.

The chain test builds a fixed chain (tests/determinism_child.py: governance with non-ASCII rule
text, big and string parameters and doubles, issues, status changes, credit events, approvals
and refusals) in child processes that differ in time zone, locale, hash seed, the int(str)
digits bound and the number of signature workers, and compares head, every stored record and a
re-execution from the stored bytes. The rule tests show the two ways an approval decision
depended on the process and not on its inputs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
ROOT = HERE.parent


def _env(**changes: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TZ", "LANG", "LC_ALL", "LC_CTYPE", "PYTHONHASHSEED",
                        "PYTHONINTMAXSTRDIGITS", "PYTHONUTF8")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE)])
    env.update(changes)
    return env


def _child(tmp: Path, name: str, workers: int, **env: str) -> dict[str, Any]:
    data = tmp / name
    data.mkdir()
    out = subprocess.run([sys.executable, str(HERE / "determinism_child.py"), str(data),
                          str(workers)], env=_env(**env), capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    got: dict[str, Any] = json.loads(out.stdout)
    return got


def test_the_same_chain_in_every_environment(tmp_path: Path) -> None:
    plain = _child(tmp_path, "plain", 0, TZ="UTC", LANG="C.UTF-8", PYTHONHASHSEED="0")
    odd = _child(tmp_path, "odd", 2, TZ="Pacific/Chatham", LANG="C", LC_ALL="C",
                 PYTHONHASHSEED="4242", PYTHONINTMAXSTRDIGITS="0", PYTHONUTF8="0")
    assert odd == plain
    # what the chain holds: refusals of each kind, and the re-execution from the stored bytes
    # (a node catching up) comes to the same records as building it live
    assert plain["height"] == 6
    assert plain["refusals"] == ["rule_invalid", "credential_exists", "illegal_transition",
                                 "not_authorized", "unknown_reason"]
    assert plain["again"] == plain["state"]
