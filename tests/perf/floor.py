#!/usr/bin/env python3
"""The floor of any Python UDP server on this machine: a recvfrom/sendto loop doing no DNS work.

    python3 tests/perf/floor.py PORT

Each datagram goes back with its first flag octet set to QR, AA and RD (the question echoed, no
records): the two socket calls every Python server makes per query, and nothing else. bench.py
runs it beside NSD and srvd; srvd's qps over this loop's shows how much of the gap to NSD is the
answering itself, and how much is Python's per-datagram system calls. Same socket buffers as srvd.
"""

from __future__ import annotations

import socket
import sys

BUFFER = 4 << 20  # srvd's default udp.receive_buffer and udp.send_buffer (the kernel doubles it)


def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER)
    sock.bind(("127.0.0.1", int(sys.argv[1])))
    recvfrom, sendto = sock.recvfrom, sock.sendto
    while True:
        query, address = recvfrom(65535)
        sendto(query[:2] + b"\x85\x00" + query[4:], address)


if __name__ == "__main__":
    main()
