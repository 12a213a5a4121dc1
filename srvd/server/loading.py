"""Loading in a build process: the configuration is read and its tables built in a fresh
interpreter, and the server receives only what its index is made of.

The build process (``python -m srvd.server.loading CONFIG``, started with the same interpreter)
reads the configuration with the streaming reader (srvd.config.load.read_config) and plans the
tables of each domain (srvd.index.build.TableCache). It never holds the domains: each one, as
it is read, goes out on its standard output in frames of pickles: the tables as they first
appear (but those the server has already: their digests come on its standard input), the table
sets (the tables one domain gets: a profile's, or an override's), and the domains' names with
the number of their table set, CHUNK at a time in the configuration's order. At the end it sends
the configuration without its domains and the index's figures; or the problems, which the
server reports as they are.

The server (``load_aside``, on a worker thread while the reactor answers from the running index)
assembles the new index frame by frame, and decides the serials and what changed against the
running index as it goes: a zone whose content is unchanged keeps its serial and its key object
(the new zones dict starts as a copy of the running one, so every unchanged zone costs it a dict
slot and nothing more), a new or changed zone gets the configuration's newest file time, known
when the last frame has come. The parse's peak (a million YAML entries) stays in the build
process, which starts small (it is not a fork of the server) and ends with the load; the server
grows by the new zones dict only, and its heap holds the index and little else.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import os
import pickle
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import IO, BinaryIO

import srvd
from srvd.config import Config, ConfigError, Profile, ZoneSettings
from srvd.config.load import DomainSink, Entry, read_config
from srvd.config.model import HttpSettings
from srvd.http.pacc import deriver
from srvd.index.build import Derive, TableCache, TablePlan
from srvd.index.dnssec import attach
from srvd.index.model import Index, IndexStats, Node, Table, Zone, ZoneDelta
from srvd.index.serials import SerialState, next_serial
from srvd.wire.names import label_wire, to_wire, wire_to_text

CHUNK = 10_000  # domains per frame
PIPE_SIZE = 1 << 20  # octets the build process may write ahead of the server (1 MiB: Linux's
# limit for a process without CAP_SYS_RESOURCE)
LIST_AT_MOST = 10  # name the domains in the log when no more than this many changed
DELTA_AT_MOST = 200_000  # zones: a larger change is not listed zone by zone (ZoneDelta)


@dataclass(frozen=True, slots=True)
class Changes:
    """How many domains a reload added, removed and changed, with their names when few."""

    counts: tuple[int, int, int]  # added, removed, changed
    names: tuple[list[bytes], list[bytes], list[bytes]]  # wire names, at most LIST_AT_MOST each
    # zone by zone (NOTIFY, catalog), or None when more than DELTA_AT_MOST zones changed
    zones: ZoneDelta | None = None

    def describe(self) -> str:
        parts = []
        labels = ("added", "removed", "changed")
        for what, count, names in zip(labels, self.counts, self.names, strict=True):
            if not count:
                continue
            text = f"{count} domain{'s' if count != 1 else ''} {what}"
            if count <= LIST_AT_MOST:
                text += " (" + ", ".join(wire_to_text(name) for name in sorted(names)) + ")"
            parts.append(text)
        return "; ".join(parts) if parts else "no domain changed"


@dataclass(frozen=True, slots=True)
class Built:
    """A loaded configuration (without its domains: the index has them) and its index."""

    config: Config
    index: Index
    changes: Changes
    seconds: float
    # what the next load compares with: every table by digest, and the zones' apex labels
    tables: Mapping[bytes, Table] = field(default_factory=dict)
    labels: frozenset[bytes] = frozenset()
    # the primary's numbering of its successful loads, when known (a worker's snapshot); 0: not
    generation: int = 0


# ---------------------------------------------------------------------------------------------
# The build process


# A table as the build process sends it: its digest, then its record count and names (each
# owner's node by number when it is a shared one, sent before, else the node itself), or None
# and None for a table the server has already.
TableFrame = tuple[bytes, int | None, list[tuple[bytes, int | Node]] | None]


class _Frames(DomainSink):
    """Plans the tables of each domain as it is read and sends the domains out in frames."""

    def __init__(self, out: BinaryIO, known: frozenset[bytes] = frozenset()) -> None:
        self.out = out
        self.known = known  # digests of the tables the server has already
        self.start()

    def start(self) -> None:
        self.cache: TableCache | None = None
        self.derive: Derive | None = None
        self.per_zone = 0
        self.sets: dict[tuple[bytes, ...], int] = {}  # digests of the tables → set number
        self.by_profile: dict[str, tuple[int, int, int]] = {}  # set number, zones, records
        self.set_sizes: list[tuple[int, int]] = []  # zones, records of each set
        self.table_numbers: dict[bytes, int] = {}  # by digest
        self.node_numbers: dict[int, int] = {}  # ids of the shared nodes sent
        self.new_nodes: list[Node] = []
        self.new_tables: list[TableFrame] = []
        self.new_sets: list[tuple[tuple[bytes, int], ...]] = []
        self.numbers: list[int] = []  # the table set of each domain of the next frame
        self.names: list[str] = []  # and its name
        self.domains = self.zones = self.records = 0

    def send(self, frame: object) -> None:
        pickle.dump(frame, self.out, pickle.HIGHEST_PROTOCOL)

    def http(self, settings: HttpSettings | None) -> None:
        self.derive = deriver(settings)  # PACC's TXT, when http.pacc is on
        if self.cache is not None:
            self.cache.derive = self.derive

    def begin(self, zone: ZoneSettings, profiles: Mapping[str, Profile]) -> None:
        self.cache = TableCache(zone, profiles, keep=False, derive=self.derive)
        self.per_zone = 1 + len(zone.nameservers)  # SOA and NS

    def domain(self, name: str, entry: Entry | None) -> None:
        if entry is None:  # its entry comes later
            return
        self.domains += 1
        known = self.by_profile.get(entry) if isinstance(entry, str) else None
        if known is None:
            assert self.cache is not None  # begin came first
            number = self.define(self.cache.plans(entry))
            known = (number, *self.set_sizes[number])
            if isinstance(entry, str):
                self.by_profile[entry] = known
        number, zones, records = known
        if not zones:  # its profile publishes nothing
            return
        self.zones += zones
        self.records += records
        self.numbers.append(number)
        self.names.append(name)
        if len(self.names) >= CHUNK:
            self.flush()

    def define(self, plans: tuple[TablePlan, ...]) -> int:
        """The number of a table set, sent with its new tables the first time."""
        key = tuple(plan.digest for plan in plans)
        number = self.sets.get(key)
        if number is not None:
            return number
        members = []
        records = 0
        for plan in plans:
            table_number = self.table_numbers.get(plan.digest)
            if table_number is None:
                table_number = self.table_numbers[plan.digest] = len(self.table_numbers)
                self.new_tables.append(self.table(plan))
            members.append((label_wire(plan.label.encode()), table_number))
            records += plan.records + self.per_zone
        number = self.sets[key] = len(self.set_sizes)
        self.set_sizes.append((len(members), records))
        self.new_sets.append(tuple(members))
        return number

    def table(self, plan: TablePlan) -> TableFrame:
        if plan.digest in self.known:
            return plan.digest, None, None
        assert self.cache is not None
        names: list[tuple[bytes, int | Node]] = []
        for key, node in self.cache.table(plan).names.items():
            if not self.cache.shares(node):
                names.append((key, node))
                continue
            number = self.node_numbers.get(id(node))
            if number is None:
                number = self.node_numbers[id(node)] = len(self.node_numbers)
                self.new_nodes.append(node)
            names.append((key, number))
        return plan.digest, plan.records, names

    def flush(self) -> None:
        if self.new_tables or self.new_sets:
            self.send(("tables", self.new_nodes, self.new_tables, self.new_sets))
            self.new_nodes, self.new_tables, self.new_sets = [], [], []
        if self.names:
            self.send(("domains", self.numbers, self.names))
            self.numbers, self.names = [], []

    def restart(self) -> None:
        self.send(("restart",))
        self.start()

    def finish(self, config: Config, seconds: float) -> None:
        self.flush()
        stats = IndexStats(self.domains, self.zones, self.records, len(config.profiles))
        # the server needs none of the configuration's domains and profiles: the index has them
        light = replace(config, domains={}, profiles={})
        profiles = self.cache.profile_of if self.cache is not None else {}
        self.send(("done", light, stats, seconds, profiles))


def main(argv: list[str] | None = None) -> int:
    """The build process: ``python -m srvd.server.loading CONFIG``; frames on standard output."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m srvd.server.loading CONFIG", file=sys.stderr)
        return 2
    started = time.monotonic()
    gc.disable()  # millions of objects, none in a cycle; the process ends with the load
    known = frozenset(pickle.load(sys.stdin.buffer))  # digests of the server's tables
    with os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=1 << 16) as out:
        sys.stdout = sys.stderr  # nothing else may write between the frames
        frames = _Frames(out, known)
        try:
            config = read_config(args[0], frames)
            frames.finish(config, time.monotonic() - started)
        except ConfigError as exc:
            frames.send(("error", exc.problems, exc.complete))
        except Exception:
            frames.send(("crash", traceback.format_exc()))
            return 1
    return 0


# ---------------------------------------------------------------------------------------------
# The server's side


Previous = Mapping[bytes, Zone]
# (apex, running Zone) -> the serial it is served with: a signed zone's moves with its
# signatures' window (Index.serial), and the next index starts from it, signed or not
Served = Callable[[bytes, Zone], int]


class _Assembler:
    """The new zones, from the build process's frames, against the running index's."""

    def __init__(
        self,
        previous: Previous,
        tables: Mapping[bytes, Table],
        labels: frozenset[bytes],
        served: Served | None = None,
    ) -> None:
        self.previous = previous
        self.served = served  # the serials the running zones are served with, when not theirs
        self.known = tables  # the running index's tables by digest: the same content, reused
        self.old_labels = labels
        self.start()

    def start(self) -> None:
        self.zones: dict[bytes, Zone] = dict(self.previous)  # unchanged zones keep their keys
        self.nodes: list[Node] = []
        self.tables: list[Table] = []
        self.sets: list[tuple[tuple[bytes, Table], ...]] = []
        self.new_sets: list[tuple[tuple[bytes, Zone], ...]] = []  # each as a new domain gets it
        self.labels: set[bytes] = set()
        # this load's Zone objects: kept ones by table and serial; new and changed ones by table
        # and old serial (None for new), their serial decided at the end
        self.kept: dict[tuple[int, int], Zone] = {}
        self.pending: dict[tuple[int, int | None], Zone] = {}
        self.ours: set[int] = set()  # ids of this load's Zone objects
        self.fresh: set[int] = set()  # ids of the new and changed ones among them
        self.seen = 0  # zones of the running index that the new one has too
        self.counts = [0, 0, 0]  # domains added, removed, changed
        self.names: tuple[list[bytes], list[bytes], list[bytes]] = ([], [], [])
        self.delta: tuple[list[bytes], list[bytes], list[bytes]] | None = ([], [], [])

    def define(
        self, nodes: list[Node], tables: list[TableFrame], sets: list[tuple[tuple[bytes, int], ...]]
    ) -> None:
        self.nodes.extend(nodes)
        for digest, records, names in tables:
            table = self.known.get(digest)
            if table is None:
                assert records is not None and names is not None  # the server had no such table
                shared = self.nodes
                table = Table(
                    {key: shared[node] if isinstance(node, int) else node for key, node in names},
                    digest,
                    records,
                )
            self.tables.append(table)
        for members in sets:
            labelled = tuple((label, self.tables[number]) for label, number in members)
            self.sets.append(labelled)
            self.new_sets.append(
                tuple((label, self._zone(table, None)) for label, table in labelled)
            )
            self.labels.update(label for label, _ in members)

    def domains(self, numbers: list[int], names: list[str]) -> None:
        """A frame of domains, each with the number of its table set."""
        domains = [to_wire(name) for name in names]
        if not self.previous:
            self._new(numbers, domains)
            return
        zones, previous, sets = self.zones, self.previous, self.sets
        for number, domain in zip(numbers, domains, strict=True):
            members = sets[number]
            added = changed = 0
            for label, table in members:
                apex = label + domain
                old = previous.get(apex)
                if old is None:
                    zones[apex] = self._zone(table, None)
                    added += 1
                    self._delta(0, apex)
                elif old.table.digest == table.digest:
                    serial = old.serial if self.served is None else self.served(apex, old)
                    zones[apex] = self._kept(old.table, serial)
                    self.seen += 1
                else:
                    serial = old.serial if self.served is None else self.served(apex, old)
                    zones[apex] = self._zone(table, serial)
                    changed += 1
                    self.seen += 1
                    self._delta(2, apex)
            if added == len(members) and not self._had(domain):
                self._count(0, domain)
            elif added or changed:
                self._count(2, domain)

    def _new(self, numbers: list[int], domains: list[bytes]) -> None:
        """A frame of domains when there were none before (a start): every zone is new."""
        zones, sets = self.zones, self.new_sets
        for number, domain in zip(numbers, domains, strict=True):
            for label, zone in sets[number]:
                zones[label + domain] = zone
        self.counts[0] += len(domains)
        names = self.names[0]
        if len(names) <= LIST_AT_MOST:
            names.extend(domains[: LIST_AT_MOST + 1 - len(names)])
        if self.delta is not None:
            for number, domain in zip(numbers, domains, strict=True):
                for label, _ in sets[number]:
                    self._delta(0, label + domain)

    def _kept(self, table: Table, serial: int) -> Zone:
        zone = self.kept.get((id(table), serial))
        if zone is None:
            zone = self.kept[(id(table), serial)] = Zone(table, serial)
            self.ours.add(id(zone))
        return zone

    def _zone(self, table: Table, serial: int | None) -> Zone:
        """A new (``serial`` None) or changed zone's Zone; its serial is set by ``finish``."""
        zone = self.pending.get((id(table), serial))
        if zone is None:
            zone = self.pending[(id(table), serial)] = Zone(table, 0)
            self.ours.add(id(zone))
            self.fresh.add(id(zone))
        return zone

    def _had(self, domain: bytes) -> bool:
        """Whether the running index serves a zone of this domain."""
        previous = self.previous
        return any(label + domain in previous for label in self.old_labels)

    def _count(self, what: int, domain: bytes) -> None:
        self.counts[what] += 1
        if len(self.names[what]) <= LIST_AT_MOST:
            self.names[what].append(domain)

    def _delta(self, what: int, apex: bytes) -> None:
        if self.delta is None:
            return
        self.delta[what].append(apex)
        if sum(len(group) for group in self.delta) > DELTA_AT_MOST:
            self.delta = None

    def finish(self, now: int) -> tuple[dict[bytes, Zone], Changes]:
        """The new zones, their serials decided (``now``: the configuration's newest file
        time), and what changed."""
        now &= 0xFFFFFFFF
        for (_, old), zone in self.pending.items():
            zone.serial = now if old is None else next_serial(old, now)
        zones, ours, fresh = self.zones, self.ours, self.fresh
        removed = []
        if self.seen < len(self.previous):  # some zones of the running index are not in this
            removed = [apex for apex, zone in zones.items() if id(zone) not in ours]
        labels = sorted(self.old_labels | self.labels)
        for apex in removed:
            self._delta(1, apex)
            label, domain = apex[: apex[0] + 1], apex[apex[0] + 1 :]
            around = [(other, zones.get(other + domain)) for other in labels]
            if any(other < label and z is not None and id(z) not in ours for other, z in around):
                continue  # the domain is counted with its first zone removed
            if not any(z is not None and id(z) in ours for _, z in around):
                self._count(1, domain)  # no zone left
            elif not any(z is not None and id(z) in fresh for _, z in around):
                self._count(2, domain)  # a zone less, and not counted as changed already
        for apex in removed:
            del zones[apex]
        names = tuple(
            sorted(group) if count <= LIST_AT_MOST else []
            for group, count in zip(self.names, self.counts, strict=True)
        )
        delta = None
        if self.delta is not None:
            added, gone, changed = self.delta
            delta = ZoneDelta(tuple(sorted(added)), tuple(sorted(gone)), tuple(changed))
        added_domains, removed_domains, changed_domains = self.counts
        return zones, Changes(
            (added_domains, removed_domains, changed_domains), (names[0], names[1], names[2]), delta
        )


def load_aside(
    path: str,
    previous: Previous | None = None,
    tables: Mapping[bytes, Table] | None = None,
    labels: frozenset[bytes] = frozenset(),
    served: Served | None = None,
) -> Built:
    """Load a configuration in a build process and assemble its index (on a worker thread, or
    before the server starts). ``previous``: the zones of the running index, with the tables and
    apex labels of its Built; without them (a start) the serials come from the state file, if
    the configuration has a ``state_dir``. Raises ConfigError."""
    started = time.monotonic()
    root = os.path.dirname(os.path.dirname(os.path.abspath(srvd.__file__)))
    code = (
        "import sys\n"
        f"sys.path.insert(0, {root!r})\n"
        "from srvd.server.loading import main\n"
        "sys.exit(main())\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        close_fds=True,
    )
    assert process.stdin is not None and process.stdout is not None
    with contextlib.suppress(OSError, AttributeError):  # room for a few frames: the build
        # process need not wait while a frame is assembled (Linux; 64 KiB otherwise)
        fcntl.fcntl(process.stdout.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    collect = gc.isenabled()
    gc.disable()  # the new index's objects all live on: no collection while they arrive
    try:
        with process.stdin as digests:  # the tables it need not send
            pickle.dump(list(tables or ()), digests, pickle.HIGHEST_PROTOCOL)
        with process.stdout as pipe:
            built = _receive(pipe, previous or {}, tables or {}, labels, served)
        if previous is None and built.config.state_dir is not None:
            known = SerialState(built.config.state_dir).read()
            _restate(built.index.zones, known, built.config.mtime)
        return replace(built, seconds=time.monotonic() - started)
    except BaseException:
        process.kill()  # (if it still runs)
        raise
    finally:
        if collect:
            gc.enable()
        process.wait()


def _receive(
    pipe: IO[bytes],
    previous: Previous,
    tables: Mapping[bytes, Table],
    labels: frozenset[bytes],
    served: Served | None = None,
) -> Built:
    assembler = _Assembler(previous, tables, labels, served)
    while True:
        try:
            frame = pickle.load(pipe)
        except EOFError:
            raise RuntimeError("the build process ended without a result") from None
        kind = frame[0]
        if kind == "domains":
            assembler.domains(frame[1], frame[2])
        elif kind == "tables":
            assembler.define(frame[1], frame[2], frame[3])
        elif kind == "restart":
            assembler.start()
        elif kind == "done":
            _, config, stats, seconds, profiles = frame
            zones, changes = assembler.finish(config.mtime)
            index = attach(Index(config.zone, zones, stats), config.dnssec)
            index.table_profiles = profiles
            known = {table.digest: table for table in assembler.tables}
            every = frozenset(assembler.labels)
            return Built(config, index, changes, seconds, known, every)
        elif kind == "error":
            raise ConfigError(frame[1], frame[2])
        elif kind == "crash":
            raise RuntimeError(f"building the index failed:\n{frame[1]}")
        else:  # pragma: no cover - the build process sends nothing else
            raise RuntimeError(f"unexpected frame {kind!r} from the build process")


def _restate(zones: dict[bytes, Zone], known: Mapping[bytes, tuple[int, bytes]], now: int) -> None:
    """The serials a start takes from the state file (srvd.index.serials): a zone whose content
    is the one recorded keeps its serial, a changed one gets a larger one."""
    now &= 0xFFFFFFFF
    shared: dict[tuple[int, int], Zone] = {}
    for apex, zone in zones.items():  # values only are replaced: the dict keeps its size
        before = known.get(apex)
        if before is None:
            continue
        serial, digest = before
        if digest != zone.table.digest:
            serial = next_serial(serial, now)
        if serial == zone.serial:
            continue
        key = (id(zone.table), serial)
        replacement = shared.get(key)
        if replacement is None:
            replacement = shared[key] = Zone(zone.table, serial)
        zones[apex] = replacement


if __name__ == "__main__":
    sys.exit(main())
