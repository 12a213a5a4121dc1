#!/usr/bin/env python3
"""Black-box abuse of a running srvd on loopback: junk UDP datagrams and junk TCP streams.

    python3 tests/perf/blackbox.py                 # starts srvd (example config): 100k packets
    python3 tests/perf/blackbox.py --packets 5000 --tcp-streams 20
    python3 tests/perf/blackbox.py --port 5353 --pid 1234   # a srvd already on 127.0.0.1

UDP: mutated valid queries (bit flips, set octets, truncations, insertions, splices of two
queries, header fields set to odd values, compression pointers written in) and random packets.
TCP: random bytes, length prefixes of 0 and of a few octets, half frames then close, a 65535
length prefix then close, many small frames pipelined on one connection, a valid query then junk.
After every ``--check-every`` packets (and after the warm-up) a valid query, the example
config's ``_imaps._tcp.example.com SRV``, must be answered over UDP: dnspython reads it, NOERROR,
AA, the two SRV records; and srvd's resident memory (VmRSS) must stay under ``--rss-growth``
(10%) above its level after the warm-up. The warm-up (``--warmup``, 10,000 packets) sends junk
over UDP and over TCP (pipelined frames), so that the allocator's first growth is in the
baseline; srvd keeps nothing per query, so memory should not grow after it. The figures go to
stdout; the exit status is 1 on any failure.

Loopback only: the target is always 127.0.0.1.
"""

from __future__ import annotations

import argparse
import random
import socket
import struct
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype

TESTS = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(TESTS.parent), str(TESTS)]


from conftest import EXAMPLE, RunningServer, start_srvd  # noqa: E402
from fuzz.seeds import seed_queries  # noqa: E402

HOST = "127.0.0.1"
PROBE_NAME = "_imaps._tcp.example.com."
PROBE_TARGETS = {("imap1.example.net.", 993, 0, 10), ("imap2.example.net.", 993, 0, 5)}
RCODES = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
    9: "NOTAUTH",
}


@dataclass
class Figures:
    sent: int = 0
    answerable: int = 0  # of those sent: 12 octets or more and QR=0, so a reply is due
    received: int = 0
    warmup: int = 0
    rcodes: Counter[str] = field(default_factory=Counter)
    truncated: int = 0
    probes: int = 0
    tcp_streams: int = 0
    tcp_replies: int = 0
    rss_start: int = 0  # KiB after the warm-up
    rss_end: int = 0
    rss_max: int = 0
    rss_trace: list[tuple[int, int]] = field(default_factory=list)  # (packets sent, KiB)
    failures: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Packets


def mutated(rng: random.Random, pool: list[bytes]) -> bytes:
    """A valid query with one to four random edits, or (one time in eight) random octets."""
    if rng.random() < 0.125:
        return rng.randbytes(rng.choice((rng.randint(0, 11), rng.randint(12, 64), 512)))
    out = bytearray(rng.choice(pool))
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(8)
        at = rng.randrange(len(out)) if out else 0
        if kind == 0 and out:
            out[at] ^= 1 << rng.randrange(8)
        elif kind == 1 and out:
            out[at] = rng.randrange(256)
        elif kind == 2:
            del out[rng.randrange(len(out) + 1) :]
        elif kind == 3:
            out[at:at] = rng.randbytes(rng.randint(1, 16))
        elif kind == 4:
            other = rng.choice(pool)
            out[at:] = other[rng.randrange(len(other) + 1) :]
        elif kind == 5 and len(out) >= 12:
            offset = 2 * rng.randrange(6)  # ID, flags, QD, AN, NS, AR
            value = rng.choice((0, 1, 2, 0x7FFF, 0xFFFF, rng.randrange(65536)))
            out[offset : offset + 2] = value.to_bytes(2, "big")
        elif kind == 6 and len(out) > 13:
            at = rng.randrange(12, len(out) - 1)
            out[at : at + 2] = bytes((0xC0 | rng.randrange(64), rng.randrange(256)))
        elif kind == 7 and len(out) >= 4:
            out[2] &= 0x7F  # QR=0: most junk gets an answer (FORMERR and friends)
    if len(out) >= 3 and rng.random() < 0.9:
        out[2] &= 0x7F
    return bytes(out)


def probe_query(ident: int) -> bytes:
    message = dns.message.make_query(PROBE_NAME, "SRV")
    message.id = ident
    message.flags = 0x0100
    return message.to_wire()


def check_probe(reply: bytes, ident: int) -> str | None:
    """None when the reply is the right answer to the probe, else what is wrong."""
    try:
        message = dns.message.from_wire(reply)
    except Exception as exc:
        return f"probe reply does not parse: {exc}"
    if message.id != ident:
        return f"probe reply has ID {message.id}, not {ident}"
    if message.rcode() != dns.rcode.NOERROR or not message.flags & 0x0400:
        return f"probe reply {dns.rcode.to_text(message.rcode())}, flags {message.flags:#x}"
    got = {
        (str(rr.target), rr.port, rr.priority, rr.weight)
        for rrset in message.answer
        if rrset.rdtype == dns.rdatatype.SRV
        for rr in rrset
    }
    if got != PROBE_TARGETS:
        return f"probe answer {sorted(got)}"
    return None


# ---------------------------------------------------------------------------------------------
# The target


def rss_kib(pid: int | None) -> int:
    if pid is None:
        return 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Abuser:
    def __init__(self, port: int, pid: int | None, seed: int) -> None:
        self.port = port
        self.pid = pid
        self.rng = random.Random(seed)
        self.pool = seed_queries()
        self.figures = Figures()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.udp.setblocking(False)

    # UDP junk

    def drain(self, wait: float) -> None:
        """Count the replies that came (waiting up to ``wait`` s for the first missing one)."""
        deadline = time.monotonic() + wait
        while True:
            try:
                reply = self.udp.recv(65535)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return
                time.sleep(0.002)
                continue
            self.count(reply)
            deadline = time.monotonic() + wait  # more may follow

    def count(self, reply: bytes) -> None:
        f = self.figures
        f.received += 1
        if len(reply) < 12:
            f.failures.append(f"a {len(reply)}-octet UDP reply")
            return
        rcode = reply[3] & 0x0F
        f.rcodes[RCODES.get(rcode, str(rcode))] += 1
        if rcode == 2:
            f.failures.append(f"SERVFAIL: {reply.hex()}")
        if reply[2] & 0x02:
            f.truncated += 1

    def send_udp(self, count: int) -> None:
        for i in range(count):
            packet = mutated(self.rng, self.pool)
            try:
                self.udp.sendto(packet, (HOST, self.port))
            except OSError as exc:  # a full send buffer: wait for the server
                self.figures.failures.append(f"UDP send failed: {exc}")
                return
            self.figures.sent += 1
            if len(packet) >= 12 and not packet[2] & 0x80:
                self.figures.answerable += 1
            if i % 64 == 63:
                self.drain(0.0)
        self.drain(0.05)

    # TCP junk

    def tcp_stream(self, kind: int) -> None:
        """One abusive TCP connection; srvd must accept it (no refusal) and may close it."""
        rng = self.rng
        f = self.figures
        try:
            sock = socket.create_connection((HOST, self.port), timeout=3)
        except OSError as exc:
            f.failures.append(f"TCP connect failed: {exc}")
            return
        f.tcp_streams += 1
        expect = 0
        with sock:
            if kind == 0:  # random octets
                data = rng.randbytes(rng.randint(1, 3000))
            elif kind == 1:  # a length of 0, or of less than a header, then those octets
                size = rng.choice((0, 1, 5, 11))
                data = struct.pack("!H", size) + rng.randbytes(size)
            elif kind == 2:  # half a frame, then close
                query = rng.choice(self.pool)
                data = struct.pack("!H", len(query)) + query[: len(query) // 2]
            elif kind == 3:  # a huge length prefix and a little data, then close
                data = b"\xff\xff" + rng.randbytes(rng.randint(0, 200))
            elif kind == 4:  # many small frames, valid and junk, pipelined
                # each gets a reply: at least a header and QR=0 (else srvd closes, as it should)
                frames = [self.answerable() for _ in range(rng.randint(50, 300))]
                data = b"".join(struct.pack("!H", len(q)) + q for q in frames)
                expect = len(frames)
            else:  # a valid query, then junk
                query = self.answerable()
                data = struct.pack("!H", len(query)) + query + rng.randbytes(rng.randint(1, 99))
                expect = 1
            try:
                sock.sendall(data)
                if expect:
                    f.tcp_replies += self.read_frames(sock, expect)
            except OSError:
                pass  # srvd may close on junk: allowed

    def answerable(self) -> bytes:
        """A valid or mutated query that must get a reply: 12 octets or more, QR=0."""
        while True:
            query = mutated(self.rng, self.pool) if self.rng.random() < 0.5 else None
            query = query or self.rng.choice(self.pool)
            if len(query) >= 12 and not query[2] & 0x80:
                return query

    def warm_tcp(self, frames: int) -> None:
        """Warm the TCP path too: ``frames`` answerable queries, 500 per connection."""
        while frames > 0:
            count = min(500, frames)
            frames -= count
            with socket.create_connection((HOST, self.port), timeout=5) as sock:
                data = b"".join(
                    struct.pack("!H", len(q)) + q for q in (self.answerable() for _ in range(count))
                )
                sock.sendall(data)
                self.read_frames(sock, count)

    def read_frames(self, sock: socket.socket, expect: int) -> int:
        buffer = b""
        got = 0
        while got < expect:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                self.figures.failures.append(f"TCP: {got} of {expect} pipelined replies")
                return got
            if not chunk:
                break
            buffer += chunk
            while len(buffer) >= 2 and len(buffer) >= 2 + struct.unpack_from("!H", buffer)[0]:
                size = struct.unpack_from("!H", buffer)[0]
                reply, buffer = buffer[2 : 2 + size], buffer[2 + size :]
                got += 1
                if len(reply) >= 12 and reply[3] & 0x0F == 2:
                    self.figures.failures.append(f"SERVFAIL over TCP: {reply.hex()}")
        if got < expect:
            self.figures.failures.append(f"TCP closed after {got} of {expect} replies")
        return got

    # Health

    def probe(self, tcp: bool = False) -> None:
        """The probe query must get the right answer (three tries over UDP: loss is allowed)."""
        self.figures.probes += 1
        problem = "no reply"
        for _ in range(3):
            ident = self.rng.randrange(65536)
            query = probe_query(ident)
            reply = self.tcp_exchange(query) if tcp else self.udp_exchange(query)
            if reply is not None:
                problem = check_probe(reply, ident) or ""
                if not problem:
                    return
        self.figures.failures.append(f"probe after {self.figures.sent} packets: {problem}")

    def udp_exchange(self, query: bytes) -> bytes | None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            sock.sendto(query, (HOST, self.port))
            try:
                return sock.recv(65535)
            except TimeoutError:
                return None

    def tcp_exchange(self, query: bytes) -> bytes | None:
        try:
            with socket.create_connection((HOST, self.port), timeout=3) as sock:
                sock.sendall(struct.pack("!H", len(query)) + query)
                buffer = b""
                while len(buffer) < 2 or len(buffer) < 2 + struct.unpack_from("!H", buffer)[0]:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return None
                    buffer += chunk
                return buffer[2:]
        except OSError:
            return None

    def rss(self) -> int:
        value = rss_kib(self.pid)
        self.figures.rss_max = max(self.figures.rss_max, value)
        return value


def run(
    port: int,
    pid: int | None,
    packets: int,
    tcp_streams: int,
    warmup: int,
    check_every: int,
    rss_growth: float,
    seed: int,
) -> Figures:
    abuser = Abuser(port, pid, seed)
    f = abuser.figures
    abuser.probe()
    while f.sent < warmup:
        abuser.send_udp(min(check_every, warmup - f.sent))
    abuser.warm_tcp(warmup)
    abuser.probe()
    f.warmup, f.sent, f.received, f.answerable = f.sent, 0, 0, 0
    f.tcp_streams = f.tcp_replies = 0
    f.rcodes.clear()
    f.truncated = 0
    f.rss_start = abuser.rss()
    batches = max(1, -(-packets // check_every))
    for batch in range(batches):
        abuser.send_udp(min(check_every, packets - f.sent))
        for i in range(tcp_streams * (batch + 1) // batches - tcp_streams * batch // batches):
            abuser.tcp_stream((batch + i) % 6)
        abuser.probe()
        rss = abuser.rss()
        f.rss_trace.append((f.sent, rss))
        if pid is not None and rss > f.rss_start * (1 + rss_growth):
            f.failures.append(
                f"RSS {rss} KiB after {f.sent} packets: over {rss_growth:.0%} above {f.rss_start}"
            )
            break
        if len(f.failures) > 20:
            break
    abuser.probe(tcp=True)
    f.rss_end = abuser.rss()
    return f


def report(f: Figures, seconds: float, pid: int | None) -> str:
    lines = [
        f"warm-up packets (UDP)  {f.warmup}",
        f"packets sent (UDP)     {f.sent}",
        f"replies received       {f.received} ({f.received / max(f.sent, 1):.1%} of the packets,"
        f" {f.received / max(f.answerable, 1):.1%} of the {f.answerable} that are due one)",
        "rcode mix              "
        + ", ".join(f"{name} {n}" for name, n in f.rcodes.most_common())
        + f"; TC=1 {f.truncated}",
        f"TCP streams            {f.tcp_streams} ({f.tcp_replies} pipelined replies read)",
        f"probes answered right  {f.probes - sum('probe' in x for x in f.failures)} of {f.probes}",
    ]
    if pid is not None:
        growth = (f.rss_end - f.rss_start) / max(f.rss_start, 1)
        lines.append(
            f"RSS (KiB)              after warm-up {f.rss_start}, end {f.rss_end} "
            f"({growth:+.1%}), max {f.rss_max}"
        )
        step = max(1, len(f.rss_trace) // 10)
        trace = ", ".join(f"{sent // 1000}k:{rss}" for sent, rss in f.rss_trace[step - 1 :: step])
        lines.append(f"RSS trace (KiB)        {trace}")
    else:
        lines.append("RSS                    not measured (no --pid)")
    lines.append(f"time                   {seconds:.1f} s")
    lines.append(f"failures               {len(f.failures)}")
    lines += [f"  {failure}" for failure in f.failures[:20]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, help="a srvd already serving on 127.0.0.1:PORT")
    parser.add_argument("--pid", type=int, help="its process id (for VmRSS)")
    parser.add_argument("--config", type=Path, default=EXAMPLE, help="config of a started srvd")
    parser.add_argument("--packets", type=int, default=100_000)
    parser.add_argument("--tcp-streams", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=10_000, help="queries before RSS is read")
    parser.add_argument("--check-every", type=int, default=1000)
    parser.add_argument("--rss-growth", type=float, default=0.10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    warmup = args.warmup

    server: RunningServer | None = None
    port, pid = args.port, args.pid
    if port is None:
        server = start_srvd(args.config)
        port, pid = server.port, server.process.pid
        print(f"srvd started on {HOST}:{port}, pid {pid}", flush=True)
    started = time.monotonic()
    try:
        figures = run(
            port,
            pid,
            args.packets,
            args.tcp_streams,
            warmup,
            args.check_every,
            args.rss_growth,
            args.seed,
        )
    finally:
        if server is not None:
            status = server.stop()
            if status not in (0, -15):
                print(f"srvd exited {status}:\n{server.log()[-3000:]}")
    print(report(figures, time.monotonic() - started, pid))
    if server is not None and server.process.returncode not in (0, -15):
        return 1
    return 1 if figures.failures else 0


if __name__ == "__main__":
    sys.exit(main())
