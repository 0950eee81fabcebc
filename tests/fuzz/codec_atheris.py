"""Atheris (libFuzzer) target for the canonical codec and the decoders built on it.

Run a long fuzzing session (atheris is installed with ``pip install atheris``)::

    .venv/bin/python tests/fuzz/codec_atheris.py tests/fuzz/corpus/codec -max_total_time=600

Without atheris the same target replays a corpus in plain Python::

    .venv/bin/python tests/fuzz/codec_atheris.py --replay tests/fuzz/corpus/codec

``tests/test_fuzz_codec_corpus.py`` replays the corpus on every test run; its libFuzzer session
(200,000 inputs) is marked ``slow`` and runs with ``scripts/test --slow`` (which installs atheris).

The property: for any bytes, :func:`ledger.codec.decode` either returns a value that
:func:`ledger.codec.encode` maps back to the same bytes, or raises a ``LedgerError``; the same
holds for transactions, block headers, heads, bundles and envelopes. Anything else is a crash.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    import atheris
except ImportError:  # plain-Python replay only
    atheris = None


def _imports() -> tuple[Any, ...]:
    from ledger import codec
    from ledger.block import BlockHeader
    from ledger.chain import Head
    from ledger.errors import LedgerError
    from ledger.presentation import Bundle, Envelope
    from ledger.tx import Tx

    return codec, LedgerError, (Tx.from_bytes, BlockHeader.from_bytes, Head.from_bytes,
                                Bundle.from_bytes, Envelope.from_bytes)


if atheris is not None and __name__ == "__main__" and "--replay" not in sys.argv:
    with atheris.instrument_imports():
        codec, LedgerError, DECODERS = _imports()
else:
    codec, LedgerError, DECODERS = _imports()


def test_one_input(data: bytes) -> None:
    """The fuzz target: raise only for a real bug."""
    try:
        value = codec.decode(data)
    except LedgerError:
        pass
    else:
        again = codec.encode(value)
        if again != data:
            raise AssertionError(f"decode/encode is not the identity: {data!r} -> {again!r}")
    decoder: Callable[[bytes], Any]
    for decoder in DECODERS:
        with contextlib.suppress(LedgerError):
            decoder(data)


def replay(folder: Path) -> int:
    """Run every file of ``folder`` through the target; return how many ran."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    for p in files:
        test_one_input(p.read_bytes())
    return len(files)


def main(argv: list[str]) -> None:
    if "--replay" in argv:
        n = replay(Path(argv[argv.index("--replay") + 1]))
        print(f"replayed {n} inputs: no crash")
        return
    if atheris is None:
        raise SystemExit("atheris is not installed: use --replay <corpus folder>")
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
