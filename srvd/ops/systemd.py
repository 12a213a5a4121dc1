"""The systemd notify protocol (sd_notify(3)): one datagram per state change to $NOTIFY_SOCKET.

Written natively: it is a single ``sendto`` on an AF_UNIX datagram socket. Without NOTIFY_SOCKET
(not under systemd ``Type=notify``) every call does nothing.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

from twisted.logger import Logger

log = Logger()


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # abstract namespace
            address = "\0" + address[1:]
        self.address = address or None

    def send(self, **fields: object) -> bool:
        """Send ``KEY=value`` lines (``ready=1`` → ``READY=1``); True when delivered."""
        if self.address is None:
            return False
        message = "\n".join(f"{key.upper()}={value}" for key, value in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message.encode(), self.address)
        except OSError as exc:
            log.warn("systemd notify failed: {error}", error=exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(ready=1, status=status)

    def reloading(self, status: str = "reloading the configuration") -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send(reloading=1, monotonic_usec=usec, status=status)

    def stopping(self) -> bool:
        return self.send(stopping=1, status="stopping")
