"""Signing ahead while idle: what every DO=1 negative answer of a zone needs, before a flood asks.

A random-name flood over many signed zones is dear at first contact: a zone reached for the first
time needs its SOA's signature and the NSEC of its apex (srvd.answer.signed.presign), 25-45 µs
each, where an answer whose signatures are cached costs 11-20 µs. These are a handful per zone
and known in advance, so after every start and reload the Presigner makes them while the server
is idle: every ``INTERVAL`` it signs for ``BATCH`` zones, unless more than ``IDLE`` queries came
in since the last time (then it waits: answers first). It starts only when every zone's fit in
half the signature cache (the other half is for the answers: a part of the zones would be of
little use against a flood spread over them all), and stops when every zone is done, when the
cache is half full after all, or when another index is published (and starts over for that
one). With the metrics off (queries not counted) it runs unconditionally: about a tenth of a
core until done. Each worker process (``workers: N``) signs ahead for itself.
``srvd_dnssec_presign_pending_zones`` shows its progress.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from srvd.answer.signed import presign, signer_of
from srvd.index.dnssec import ZoneSigner
from srvd.index.model import Index
from srvd.server.responder import Responder

log = Logger()

INTERVAL = 0.05  # seconds between two batches
BATCH = 100  # zones a batch (two signatures each: 5-9 ms)
IDLE = 25  # at most this many queries since the last batch: idle (500 a second)


class Presigner:
    """Signs ahead for the index ``responder`` serves (see the module's doc)."""

    def __init__(self, responder: Responder, reactor: Any) -> None:
        self.responder = responder
        self.loop = LoopingCall(self.tick)
        self.loop.clock = reactor
        self.index: Index | None = None
        self.apexes: Iterator[bytes] = iter(())
        self.seen = responder.ticks

    def start(self, index: Index) -> None:
        """Sign ahead for ``index`` (just published), instead of the index before."""
        self.index = None
        signer = index.dnssec
        if not isinstance(signer, ZoneSigner):
            self.stop()
            return
        if len(index.zones) * (1 if signer.compact else 2) > signer.size // 2:
            # a part of the zones would be little use against a flood spread over them all,
            # and would crowd the answers' signatures out of the cache
            log.info(
                "not signing ahead: {zones} zones need more than half of dnssec.cache_size",
                zones=len(index.zones),
            )
            self.stop()
            return
        self.index = index
        self.apexes = iter(list(index.zones))
        signer.presign_pending = len(index.zones)
        if not self.loop.running:
            self.loop.start(INTERVAL, now=False)

    def stop(self) -> None:
        if self.loop.running:
            self.loop.stop()

    def tick(self) -> None:
        index = self.index
        if index is None or index is not self.responder.index:  # another index since
            self.stop()
            return
        ticks = self.responder.ticks
        busy = ticks - self.seen > IDLE
        self.seen = ticks
        if busy:
            return
        signer = signer_of(index)
        if len(signer.cache) >= signer.size // 2:  # the rest of the cache is the answers'
            signer.presign_pending = 0
        else:
            done = presign(index, signer, self.apexes, BATCH)
            signer.presign_pending = max(0, signer.presign_pending - done)
            if done == BATCH and signer.presign_pending:
                return
            signer.presign_pending = 0
        self.index = None
        self.stop()
