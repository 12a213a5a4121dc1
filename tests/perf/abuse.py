#!/usr/bin/env python3
"""Abuse figures: a spoofed-style UDP flood against response rate limiting, and TCP exhaustion.

    python3 tests/perf/abuse.py                  # 10 s flood at 2,000 qps; cap + 1,000 idle TCP
    python3 tests/perf/abuse.py --seconds 3      # shorter

RRL: srvd runs its bundled example with the default rate limiting, except that loopback is not
exempt (``rrl: {exempt: []}``). One client on 127.0.1.1 (one /24) floods ``_imaps._tcp.example.com
SRV`` with EDNS at the given rate; another on 127.0.2.1 asks at 10 qps; then every truncated
reply the flooder got (up to 500) is retried over TCP. Printed: full answers against the limit,
bytes out / bytes in for the flooding prefix, the polite client's answers, the TCP retries.

TCP: srvd with ``tcp.max_connections`` (default 1,000) gets the cap + 1,000 connections that
stay idle; then fresh UDP and TCP queries are timed.

Figures only: the exit status is 0 whatever they are, non-zero only if the run itself fails.
"""

from __future__ import annotations

import argparse
import resource
import socket
import statistics
import struct
import sys
import threading
import time
from pathlib import Path

import dns.message
import dns.query

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import EXAMPLE, RunningServer, start_srvd

NAME = "_imaps._tcp.example.com"
RRL_RATE = 50  # the default responses_per_second
FULL_TARGET = 1.10  # full answers at most the limit + 10%
RATIO_TARGET = 0.7  # bytes out / bytes in for the flooding prefix at most this
FRESH_TARGET = 0.100  # seconds: a fresh query with the TCP cap + 1,000 idle connections


def query(ident: int) -> bytes:
    message = dns.message.make_query(NAME, "SRV", use_edns=0)
    message.id = ident
    return bytes(message.to_wire())


def server(directory: Path, extra: str) -> RunningServer:
    config = directory / "srvd.yaml"
    config.write_text(EXAMPLE.read_text() + extra)
    return start_srvd(config)


def rrl(directory: Path, seconds: float, rate: int) -> None:
    srvd = server(directory, "\nrrl: {exempt: []}\n")
    address = ("127.0.0.1", srvd.port)
    try:
        flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        flood.bind(("127.0.1.1", 0))
        flood.setblocking(False)
        polite_sent = polite_ok = 0
        done = threading.Event()

        def ask_politely() -> None:
            nonlocal polite_sent, polite_ok
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as polite:
                polite.bind(("127.0.2.1", 0))
                polite.settimeout(1.0)
                while not done.is_set():
                    polite_sent += 1
                    ident = polite_sent & 0xFFFF
                    polite.sendto(query(ident), address)
                    try:
                        reply = dns.message.from_wire(polite.recv(4096))
                        answered = reply.id == ident and bool(reply.answer)
                        polite_ok += answered and not reply.flags & dns.flags.TC
                    except OSError:
                        pass
                    time.sleep(0.1)

        thread = threading.Thread(target=ask_politely)
        thread.start()
        sent = full = truncated = bytes_in = bytes_out = 0
        truncated_ids: list[int] = []

        def drain() -> None:
            nonlocal full, truncated, bytes_out
            while True:
                try:
                    data = flood.recv(4096)
                except BlockingIOError:
                    return
                bytes_out += len(data)
                if data[2] & 0x02:
                    truncated += 1
                    truncated_ids.append(struct.unpack("!H", data[:2])[0])
                else:
                    full += 1

        started = time.monotonic()
        while (now := time.monotonic()) - started < seconds:
            ahead = started + sent / rate - now
            if ahead > 0:
                time.sleep(ahead)
            wire = query(sent & 0xFFFF)
            flood.sendto(wire, address)
            bytes_in += len(wire)
            sent += 1
            drain()
        elapsed = time.monotonic() - started
        time.sleep(0.5)
        drain()
        done.set()
        thread.join()

        retried = ok = 0
        for ident in truncated_ids[:500]:
            retried += 1
            try:
                reply = dns.query.tcp(
                    dns.message.from_wire(query(ident)), "127.0.0.1", port=srvd.port, timeout=2
                )
                ok += reply.id == ident and bool(reply.answer)
            except (OSError, dns.exception.DNSException):
                pass

        limit = RRL_RATE * elapsed
        print(f"RRL: one /24 flooding at {sent / elapsed:,.0f} qps for {elapsed:.1f} s")
        print(
            f"  full answers       {full:>8,}  ({full / limit:.2f}x the limit of {RRL_RATE}/s; "
            f"target <= {FULL_TARGET:.2f}x)"
        )
        print(f"  truncated (slip)   {truncated:>8,}")
        print(f"  dropped            {sent - full - truncated:>8,}")
        print(
            f"  bytes out / in     {bytes_out / bytes_in:>8.2f}  ({bytes_out:,} / {bytes_in:,}; "
            f"target <= {RATIO_TARGET})"
        )
        print(f"  other prefix, 10 qps: {polite_ok}/{polite_sent} answered in full")
        print(f"  TC then TCP retry:    {ok}/{retried} answered")
    finally:
        srvd.stop()


def tcp(directory: Path, idle: int) -> None:
    cap = 1000
    srvd = server(directory, f"\ntcp: {{max_connections: {cap}, idle_timeout: 60}}\n")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = cap + idle + 100
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    conns: list[socket.socket] = []
    try:
        for _ in range(cap + idle):
            try:
                conns.append(socket.create_connection(("127.0.0.1", srvd.port), timeout=2))
            except OSError as exc:
                print(f"  connection {len(conns) + 1} failed: {exc}")
                break
        time.sleep(1.5)  # idle: the oldest may now be reaped for newcomers
        open_now = 0
        for sock in conns:
            try:
                sock.setblocking(False)
                open_now += sock.recv(1, socket.MSG_PEEK) != b""
            except BlockingIOError:
                open_now += 1
            except OSError:
                pass
        udp_times, tcp_times = [], []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(2)
            for i in range(20):
                started = time.monotonic()
                udp.sendto(query(i), ("127.0.0.1", srvd.port))
                udp.recv(4096)
                udp_times.append(time.monotonic() - started)
                started = time.monotonic()
                reply = dns.query.tcp(
                    dns.message.from_wire(query(i)), "127.0.0.1", port=srvd.port, timeout=2
                )
                assert reply.answer
                tcp_times.append(time.monotonic() - started)
        print(f"TCP: {len(conns):,} connections opened against a cap of {cap:,}; {open_now:,} open")
        for name, times in (("UDP", udp_times), ("TCP", tcp_times)):
            print(
                f"  fresh {name} query: median {statistics.median(times) * 1000:.1f} ms, "
                f"max {max(times) * 1000:.1f} ms (target <= {FRESH_TARGET * 1000:.0f} ms)"
            )
    finally:
        for sock in conns:
            sock.close()
        srvd.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="flood duration")
    parser.add_argument("--rate", type=int, default=2000, help="flood rate (queries per second)")
    parser.add_argument("--idle", type=int, default=1000, help="idle connections over the cap")
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        rrl(Path(directory), args.seconds, args.rate)
        tcp(Path(directory), args.idle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
