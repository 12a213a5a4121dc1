"""srvd: an authoritative DNS server for mail and calendar service discovery subzones."""

__version__ = "0.1.0"
