"""The wire format: names, TSIG, RFC 2782 ordering and the discovery services.

The lowest layer: it imports nothing of srvd.
"""
