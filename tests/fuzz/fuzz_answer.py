"""atheris (libFuzzer) harness over srvd's real query path: bytes → Responder.respond → reply.

Each input is a selector octet and a query (see harness.py); every reply is checked against the
answer contract by ``harness.check`` (no exception, no SERVFAIL, ID, QR, RA, opcode, size limits,
question echo, dnspython reads it, the lean path equals the full parser). Run from the repository
root:

    python3 tests/fuzz/seeds.py /tmp/srvd-corpus
    nice python3 tests/fuzz/fuzz_answer.py /tmp/srvd-corpus -atheris_runs=1000000

See tests/fuzz/README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this checkout's srvd, and the fuzz package

with atheris.instrument_imports(include=["srvd"]):
    import srvd.answer.full
    import srvd.index.model
    import srvd.server.responder

from fuzz import harness, seeds  # noqa: E402  (after srvd, which must be imported instrumented)

assert (
    srvd.answer.full and srvd.index.model and srvd.server.responder
)  # imported for their instrumentation


def test_one_input(data: bytes) -> None:
    harness.check(data)


def main() -> None:
    paths = [Path(arg) for arg in sys.argv[1:] if not arg.startswith("-")]
    corpus = paths[0] if paths and not paths[0].is_file() else None  # a file: replay it
    if corpus is not None and not any(corpus.glob("*")):
        print(f"seeding {corpus}: {seeds.write(corpus)} files", flush=True)
    harness.targets()  # load both configurations before the clock starts
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
