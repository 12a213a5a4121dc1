"""``srvd zone --all``: every served zone as RFC 1035 master files, for a signer or another
primary. To stdout (zone after zone, each starting with ``$ORIGIN``), or with ``--output DIR``
one file per zone, ``DIR/<apex>.zone`` (the catalog too, when configured), written atomically."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator

from srvd.config import Config
from srvd.http.pacc import deriver
from srvd.index.build import build_index
from srvd.index.catalog import catalog_lines
from srvd.index.model import Catalog
from srvd.index.serials import SerialState
from srvd.index.zonefile import zone_text
from srvd.wire.names import to_wire, wire_to_text


def export_all(config: Config, output: str | None) -> int:
    serials = SerialState(config.state_dir).source(None, config.mtime)
    index = build_index(config, serials, deriver(config.http))  # with PACC's TXT, if on
    apexes = sorted(index.zones)

    def texts() -> Iterator[tuple[bytes, Iterable[str]]]:
        for apex in apexes:
            yield apex, [zone_text(index, apex, index.zones[apex])]
        if config.catalog:  # written as it is made (signed: some 600 octets a member)
            catalog = Catalog(to_wire(config.catalog), config.mtime & 0xFFFFFFFF, index)
            yield catalog.apex, catalog_lines(catalog, index)

    count = 0
    if output is None:
        for _apex, text in texts():
            sys.stdout.writelines(text)
            count += 1
        return 0
    os.makedirs(output, exist_ok=True)
    for apex, text in texts():
        name = os.path.join(output, f"{wire_to_text(apex)}.zone")
        temporary = f"{name}.tmp"
        with open(temporary, "w", encoding="ascii") as handle:
            handle.writelines(text)
        os.replace(temporary, name)
        count += 1
    print(f"srvd zone --all: {count} zone files written to {output}", file=sys.stderr)
    return 0
