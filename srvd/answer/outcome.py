"""What a reply was, as the metrics count it: bounded label sets laid out as counter cells.

``answer_outcome`` returns, with each reply, the cell of ``Counters.queries`` it counts in (its
transport, folded qtype and rcode, truncated or not) and the cell of ``Counters.services`` (the
discovery service asked for and the result), both computed where they are known, so counting costs
the hot path two list increments and no lookups.
"""

from __future__ import annotations

from srvd.wire.discovery import SERVICE_KEYS
from srvd.wire.names import label_wire

TRANSPORTS = ("udp", "tcp")
QTYPES = ("SRV", "TXT", "A", "AAAA", "SOA", "NS", "ANY", "AXFR", "IXFR", "other")
QTYPE_INDEX = {33: 0, 16: 1, 1: 2, 28: 3, 6: 4, 2: 5, 255: 6, 252: 7, 251: 8}
RCODES = ("NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "NOTAUTH", "BADVERS")
# Columns: every rcode, then the truncated (TC=1) variants of the two that can be truncated.
COLUMNS = (*RCODES, "NOERROR", "NOTAUTH")
TRUNCATED_COLUMNS = frozenset({len(RCODES), len(RCODES) + 1})
(
    C_NOERROR,
    C_FORMERR,
    C_SERVFAIL,
    C_NXDOMAIN,
    C_NOTIMP,
    C_REFUSED,
    C_NOTAUTH,
    C_BADVERS,
    C_NOERROR_TC,
    C_NOTAUTH_TC,
) = range(len(COLUMNS))

ROW = len(COLUMNS)  # cells per (transport, qtype)
TCP_CELLS = len(QTYPES) * ROW  # where the TCP half of Counters.queries starts
QUERY_CELLS = len(TRANSPORTS) * TCP_CELLS

# qtype (-1: not parsed) → the first cell of its row, for UDP; TCP adds TCP_CELLS.
_OTHER_ROW = (len(QTYPES) - 1) * ROW
QTYPE_ROW = [_OTHER_ROW] * 65537
for _qtype, _index in QTYPE_INDEX.items():
    QTYPE_ROW[_qtype + 1] = _index * ROW
UNKNOWN_ROW = _OTHER_ROW  # for replies given before the question is read

SERVICES = (*SERVICE_KEYS, "axigen", "other")
RESULTS = ("answer", "nodata", "nxdomain")
ANSWER, NODATA, NXDOMAIN_RESULT = range(len(RESULTS))
AXIGEN_SERVICE = SERVICES.index("axigen") * len(RESULTS)
OTHER_SERVICE = SERVICES.index("other") * len(RESULTS)
SERVICE_CELLS = len(SERVICES) * len(RESULTS)
NO_SERVICE = -1  # not inside a served zone: not counted by service

# The service cell of a name's labels up to and with "_tcp" ("\x06_imaps\x04_tcp"), and the apex
# label of the Axigen TXT zone
TCP_LABEL = label_wire(b"_tcp")
SERVICE_OF = {
    label_wire(f"_{key}".encode()) + TCP_LABEL: i * 3 for i, key in enumerate(SERVICE_KEYS)
}
AXIGEN_LABEL = label_wire(b"_axigen")

DROP_REASONS = ("short", "response")
RRL_ACTIONS = ("slip", "drop")  # what response rate limiting did with a reply (srvd.server.rrl)
DROP_SHORT, DROP_RESPONSE = range(len(DROP_REASONS))


def query_cell(transport: str, qtype: str, column: int) -> int:
    """The cell of one (transport, qtype label, column), for tests and the collector."""
    return TRANSPORTS.index(transport) * TCP_CELLS + QTYPES.index(qtype) * ROW + column
