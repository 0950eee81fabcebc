"""The Atheris codec target (tests/fuzz/codec_atheris.py): corpus replay always, libFuzzer when
asked. The replay runs in plain Python, so it needs no atheris; the libFuzzer session is marked
``slow`` (``scripts/test --slow``, which installs atheris, the ``fuzz`` extra)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

FUZZ = Path(__file__).with_name("fuzz")
CORPUS = FUZZ / "corpus" / "codec"


def _target() -> ModuleType:
    spec = importlib.util.spec_from_file_location("codec_atheris", FUZZ / "codec_atheris.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_corpus_replays_without_a_crash() -> None:
    target = _target()
    assert target.replay(CORPUS) >= 15


def test_target_catches_a_broken_round_trip() -> None:
    """The target is not vacuous: a decoder that does not round-trip is reported."""
    target = _target()

    class Lossy:
        @staticmethod
        def decode(data: bytes) -> object:
            return None

        @staticmethod
        def encode(value: object) -> bytes:
            return b"\xc0"

    target.codec = Lossy
    with pytest.raises(AssertionError, match="not the identity"):
        target.test_one_input(b"\x01")


@pytest.mark.slow
def test_libfuzzer_session(tmp_path: Path) -> None:
    try:
        import atheris  # noqa: F401
    except ImportError:
        pytest.fail("atheris is not installed: scripts/test --slow installs it (the fuzz extra)")
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    run = subprocess.run([sys.executable, str(FUZZ / "codec_atheris.py"), str(corpus),
                          "-runs=200000", f"-artifact_prefix={tmp_path}/"],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr[-4000:]
    assert "Done 200000 runs" in run.stderr
