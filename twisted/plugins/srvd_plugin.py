"""``twistd srvd``: the same service as ``srvd serve``."""

from twisted.application.service import ServiceMaker

srvd = ServiceMaker(
    "srvd",
    "srvd.service",
    "Authoritative DNS for mail and calendar service discovery subzones",
    "srvd",
)
