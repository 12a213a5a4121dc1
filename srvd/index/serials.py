"""SOA serials: unchanged zones keep theirs, changed zones get a larger one (RFC 1982).

A zone's content is summed up by its table's digest (records and zone settings). A zone whose
digest is the one it had keeps its serial; a new or changed zone gets the configuration's newest
file time (the same in every worker process), or the old serial + 1 when that does not move it
forward (serial arithmetic, RFC 1982 §3.1).

What a zone had comes from the running index (across reloads) and, across restarts, from a state
file ``<state_dir>/serials``: one line per zone, ``<apex> <serial> <digest>``, written atomically
after every successful load. Without ``state_dir`` a restart gives every zone the files' newest
time, which is never smaller than what it had.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Mapping

from srvd.index.build import SerialSource
from srvd.index.model import Index
from srvd.wire.names import to_wire, wire_to_text

STATE_NAME = "serials"
Known = Mapping[bytes, tuple[int, bytes]]


def next_serial(old: int, now: int) -> int:
    """The smallest serial larger than ``old`` in RFC 1982 arithmetic, preferring ``now``."""
    if 0 < ((now - old) & 0xFFFFFFFF) < 0x80000000:
        return now & 0xFFFFFFFF
    return (old + 1) & 0xFFFFFFFF


def serial_source(previous: Callable[[bytes], tuple[int, bytes] | None], now: int) -> SerialSource:
    """Serials for a new index, given what each zone had before."""
    now &= 0xFFFFFFFF

    def serial_of(apex: bytes, digest: bytes) -> int:
        before = previous(apex)
        if before is None:
            return now
        serial, old_digest = before
        return serial if old_digest == digest else next_serial(serial, now)

    return serial_of


def from_index(index: Index) -> Callable[[bytes], tuple[int, bytes] | None]:
    zones = index.zones

    def previous(apex: bytes) -> tuple[int, bytes] | None:
        zone = zones.get(apex)
        # the serial served: a signed zone's moves with its signatures' window (srvd.index.dnssec),
        # and never goes back, not even when signing is turned off
        return None if zone is None else (index.serial(apex, zone), zone.table.digest)

    return previous


class SerialState:
    """The serials file in ``state_dir`` (or nothing, without one)."""

    def __init__(self, state_dir: str | None, clock: Callable[[], float] = time.time) -> None:
        self.path = os.path.join(state_dir, STATE_NAME) if state_dir else None
        self.clock = clock

    def read(self) -> dict[bytes, tuple[int, bytes]]:
        known: dict[bytes, tuple[int, bytes]] = {}
        if self.path is None or not os.path.exists(self.path):
            return known
        shared: dict[tuple[int, bytes], tuple[int, bytes]] = {}
        with open(self.path, encoding="ascii", errors="replace") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) != 3 or not parts[1].isdigit():
                    continue
                try:
                    value = (int(parts[1]) & 0xFFFFFFFF, bytes.fromhex(parts[2]))
                    apex = to_wire(parts[0])
                except ValueError:
                    continue
                known[apex] = shared.setdefault(value, value)
        return known

    def source(self, previous: Index | None, now: int | None = None) -> SerialSource:
        """Serials for the next index: from the running one, else from the state file.

        ``now`` is the serial a new or changed zone prefers; srvd passes the configuration's
        newest file time, so that every worker process computes the same serials."""
        now = int(self.clock()) if now is None else now
        if previous is not None:
            return serial_source(from_index(previous), now)
        return serial_source(self.read().get, now)

    def write(self, index: Index) -> None:
        """Record every zone's serial and digest, atomically (temporary file, then rename)."""
        if self.path is None:
            return
        directory = os.path.dirname(self.path)
        os.makedirs(directory, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".serials.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                for apex, zone in index.zones.items():
                    serial = index.serial(apex, zone)  # as served (signed: moved by the window)
                    handle.write(f"{wire_to_text(apex)} {serial} {zone.table.digest.hex()}\n")
            os.replace(temporary, self.path)
        except BaseException:
            os.unlink(temporary)
            raise
