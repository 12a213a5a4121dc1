"""Prometheus metrics: plain integers on the hot path, metric families built at scrape time.

Answering a query costs a handful of list increments (no labels, no locks); the custom collector
turns the counts into metric families when Prometheus scrapes. Every label is bounded: qtype is
folded to a fixed set or ``other``, services come from a fixed list, and nothing is labelled per
domain or per client.
"""

from __future__ import annotations

import bisect
import platform
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import twisted
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.twisted import MetricsResource
from twisted.application.service import Service
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Site

from srvd import __version__
from srvd.answer.outcome import (
    COLUMNS,
    DROP_REASONS,
    QTYPES,
    QUERY_CELLS,
    RESULTS,
    RRL_ACTIONS,
    SERVICE_CELLS,
    SERVICES,
    TRANSPORTS,
    TRUNCATED_COLUMNS,
)
from srvd.config import Endpoint

log = Logger()

TIMING_SAMPLE = 16  # srvd's own processing time is measured on one query in this many

# Reply sizes: bucket bounds are multiples of 16, so a table indexed by (size - 1) >> 4 finds the
# bucket of any size in one step.
SIZE_BOUNDS = (64, 128, 256, 512, 768, 1024, 1232, 1536, 2048, 4096, 8192, 16384, 65536)
SIZE_BUCKET = bytes(
    next(i for i, bound in enumerate(SIZE_BOUNDS) if bound >= 16 * step + 16)
    for step in range(4096)
)
# srvd's own processing time per query, in nanoseconds (exposed in seconds).
DURATION_BOUNDS_NS = (
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    10_000_000,
    100_000_000,
)


class Counters:
    """What the hot path counts: flat lists of integers, indexed by the cells answer_outcome
    gives (srvd.answer.outcome). Responder.respond does the counting."""

    __slots__ = (
        "dropped",
        "duration_buckets",
        "duration_sum_ns",
        "queries",
        "rrl",
        "services",
        "size_buckets",
        "size_sum",
    )

    def __init__(self) -> None:
        self.queries = [0] * QUERY_CELLS
        self.services = [0] * SERVICE_CELLS
        self.dropped = [0] * len(DROP_REASONS)
        self.rrl = [0] * len(RRL_ACTIONS)  # limited replies by action (srvd.server.rrl)
        self.size_buckets = [0] * len(SIZE_BOUNDS)
        self.size_sum = 0
        self.duration_buckets = [0] * (len(DURATION_BOUNDS_NS) + 1)
        self.duration_sum_ns = 0

    @property
    def truncated(self) -> int:
        return sum(
            count for i, count in enumerate(self.queries) if i % len(COLUMNS) in TRUNCATED_COLUMNS
        )

    def time(self, nanoseconds: int) -> None:
        self.duration_buckets[bisect.bisect_left(DURATION_BOUNDS_NS, nanoseconds)] += 1
        self.duration_sum_ns += nanoseconds

    def add(self, other: Counters) -> None:
        """Add another process's counts (multi-worker scrapes)."""
        for name in ("queries", "services", "dropped", "rrl", "size_buckets", "duration_buckets"):
            mine, theirs = getattr(self, name), getattr(other, name)
            for i, value in enumerate(theirs):
                mine[i] += value
        self.size_sum += other.size_sum
        self.duration_sum_ns += other.duration_sum_ns


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the collector reads, gathered from the running server at scrape time."""

    counters: Counters
    domains: int
    zones: int
    records: int
    tcp_connections: int
    tcp_rejected: int
    tcp_reaped: int
    tcp_incomplete: int
    udp_send_errors: int
    internal_errors: int
    reloads_succeeded: int
    reloads_failed: int
    last_reload_successful: bool
    last_reload_success_time: float
    last_reload_duration: float
    config_sha256: str
    generation: int = 1  # of the index the primary serves
    workers: tuple[WorkerFigures, ...] = ()  # every process, the primary (slot 0) first
    worker_restarts: int = 0


@dataclass(frozen=True, slots=True)
class WorkerFigures:
    """One process of ``workers: N`` (slot 0: the primary), read at scrape time."""

    slot: int
    pid: int
    generation: int


def process_figures(pid: int) -> tuple[float, int, int] | None:
    """CPU seconds, resident bytes and open descriptors of a process (Linux /proc), or None."""
    import os

    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15)
        rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")  # field 24
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, IndexError, ValueError):
        return None
    return cpu, rss, fds


def counter_by_label(
    name: str, documentation: str, label: str, values: Iterable[tuple[str, float]]
) -> CounterMetricFamily:
    """A counter family with one label, from (label value, count) pairs."""
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, count in values:
        family.add_metric([value], count)
    return family


def _histogram(
    name: str, documentation: str, buckets: list[int], bounds: tuple[float, ...], total: float
) -> HistogramMetricFamily:
    cumulative = []
    running = 0
    for bound, count in zip((*bounds, float("inf")), buckets, strict=False):
        running += count
        cumulative.append(("+Inf" if bound == float("inf") else f"{bound:g}", running))
    if len(buckets) == len(bounds):  # the last bound is the largest possible value: +Inf too
        cumulative.append(("+Inf", running))
    return HistogramMetricFamily(name, documentation, buckets=cumulative, sum_value=total)


class SrvdCollector(Collector):
    """Builds srvd's metric families from a Snapshot taken at scrape time."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot()
        c = s.counters
        queries = CounterMetricFamily(
            "srvd_queries",
            "Queries answered, by transport, query type (folded) and response code.",
            labels=["transport", "qtype", "rcode"],
        )
        counts = iter(c.queries)
        for transport in TRANSPORTS:
            for qtype in QTYPES:
                by_rcode = dict.fromkeys(COLUMNS, 0)
                for column in COLUMNS:  # truncated replies count with their rcode
                    by_rcode[column] += next(counts)
                for rcode, value in by_rcode.items():
                    queries.add_metric([transport, qtype, rcode], value)
        yield queries

        services = CounterMetricFamily(
            "srvd_service_queries",
            "Queries inside served zones by the discovery service asked for, and their result.",
            labels=["service", "result"],
        )
        i = 0
        for service in SERVICES:
            for result in RESULTS:
                services.add_metric([service, result], c.services[i])
                i += 1
        yield services

        yield counter_by_label(
            "srvd_queries_dropped",
            "Messages that got no reply: shorter than a header, or a response (QR=1).",
            "reason",
            zip(DROP_REASONS, c.dropped, strict=True),
        )
        yield counter_by_label(
            "srvd_rrl_actions",
            "UDP replies held back by response rate limiting: sent truncated (slip) or dropped.",
            "action",
            zip(RRL_ACTIONS, c.rrl, strict=True),
        )

        yield CounterMetricFamily(
            "srvd_responses_truncated",
            "UDP replies sent with TC=1 because the answer did not fit.",
            value=c.truncated,
        )
        yield _histogram(
            "srvd_response_size_bytes",
            "Size of the replies sent.",
            c.size_buckets,
            tuple(float(b) for b in SIZE_BOUNDS),
            c.size_sum,
        )
        yield _histogram(
            "srvd_query_duration_seconds",
            "srvd's own time to answer one query (parse, look up, order, assemble), "
            f"measured on one query in {TIMING_SAMPLE}.",
            c.duration_buckets,
            tuple(b / 1e9 for b in DURATION_BOUNDS_NS),
            c.duration_sum_ns / 1e9,
        )
        yield CounterMetricFamily(
            "srvd_internal_errors",
            "Queries answered SERVFAIL because srvd's own code failed.",
            value=s.internal_errors,
        )
        yield CounterMetricFamily(
            "srvd_udp_send_errors",
            "UDP replies the kernel refused to send.",
            value=s.udp_send_errors,
        )
        yield GaugeMetricFamily(
            "srvd_tcp_connections", "TCP connections open now.", value=s.tcp_connections
        )
        yield CounterMetricFamily(
            "srvd_tcp_connections_rejected",
            "TCP connections closed at once because the connection cap was reached.",
            value=s.tcp_rejected,
        )
        yield counter_by_label(
            "srvd_tcp_connections_closed",
            "TCP connections srvd closed: the least recently active one, idle, to make room for "
            "a new one over the cap (reaped); a message begun but not completed in time "
            "(incomplete).",
            "reason",
            [("reaped", s.tcp_reaped), ("incomplete", s.tcp_incomplete)],
        )
        yield GaugeMetricFamily("srvd_domains", "Customer domains configured.", value=s.domains)
        yield GaugeMetricFamily("srvd_zones", "Zones served.", value=s.zones)
        yield GaugeMetricFamily(
            "srvd_records", "Records served, SOA and NS included.", value=s.records
        )

        yield counter_by_label(
            "srvd_config_reloads",
            "Configuration reloads, by result.",
            "result",
            [("success", s.reloads_succeeded), ("failure", s.reloads_failed)],
        )
        yield GaugeMetricFamily(
            "srvd_config_last_reload_successful",
            "1 if the last configuration load succeeded, 0 if srvd serves an older one.",
            value=1 if s.last_reload_successful else 0,
        )
        yield GaugeMetricFamily(
            "srvd_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load.",
            value=s.last_reload_success_time,
        )
        yield GaugeMetricFamily(
            "srvd_config_reload_duration_seconds",
            "How long the last configuration load took.",
            value=s.last_reload_duration,
        )
        yield GaugeMetricFamily(
            "srvd_index_generation",
            "Generation of the index the primary serves: 1 at start, one more per successful "
            "reload.",
            value=s.generation,
        )
        yield from _worker_families(s)
        info = GaugeMetricFamily(
            "srvd_config_info", "The configuration being served.", labels=["sha256"]
        )
        info.add_metric([s.config_sha256], 1)
        yield info
        build = GaugeMetricFamily(
            "srvd_build_info",
            "srvd's version and platform.",
            labels=["version", "python", "twisted"],
        )
        build.add_metric([__version__, platform.python_version(), twisted.__version__], 1)
        yield build


def _worker_families(s: Snapshot) -> Iterator[Metric]:
    """Per process of ``workers: N``: its generation (equal to srvd_index_generation once it
    has caught up), CPU, memory and descriptors (process_* cover the primary alone)."""
    if not s.workers:
        return
    generation = GaugeMetricFamily(
        "srvd_worker_generation",
        "Generation of the index each process serves (worker 0: the primary).",
        labels=["worker"],
    )
    cpu = CounterMetricFamily(
        "srvd_worker_cpu_seconds", "CPU time (user and system) of each process.", labels=["worker"]
    )
    memory = GaugeMetricFamily(
        "srvd_worker_resident_memory_bytes", "Resident memory of each process.", labels=["worker"]
    )
    fds = GaugeMetricFamily(
        "srvd_worker_open_fds", "Open file descriptors of each process.", labels=["worker"]
    )
    for worker in s.workers:
        label = [str(worker.slot)]
        generation.add_metric(label, worker.generation)
        figures = process_figures(worker.pid) if worker.pid > 0 else None
        if figures is not None:
            cpu.add_metric(label, figures[0])
            memory.add_metric(label, figures[1])
            fds.add_metric(label, figures[2])
    yield from (generation, cpu, memory, fds)
    yield CounterMetricFamily(
        "srvd_worker_restarts", "Workers started again after they died.", value=s.worker_restarts
    )


def registry_for(snapshot: Callable[[], Snapshot]) -> CollectorRegistry:
    """An explicit registry: srvd's collector and the process metrics, nothing global."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SrvdCollector(snapshot))
    ProcessCollector(registry=registry)
    return registry


class _QuietSite(Site):
    """No access-log line per scrape (one every 15 s, forever)."""

    noisy = False

    def log(self, request: Any) -> None:
        pass


class MetricsService(Service):
    """``/metrics`` over HTTP on its own address (loopback by default), on srvd's reactor."""

    def __init__(self, endpoint: Endpoint, registry: CollectorRegistry, reactor: Any) -> None:
        self.endpoint = endpoint
        self.reactor = reactor
        root = Resource()
        root.putChild(b"metrics", MetricsResource(registry=registry))
        self.site = _QuietSite(root)
        self.port: IListeningPort | None = None
        self.bound: Endpoint | None = None

    def privilegedStartService(self) -> None:
        try:
            self.port = self.reactor.listenTCP(
                self.endpoint.port, self.site, interface=self.endpoint.host
            )
        except CannotListenError as exc:  # a clear line, not a traceback (srvd serve prints it)
            reason = exc.socketError
            errno = getattr(reason, "errno", None) or 0
            why = getattr(reason, "strerror", None) or str(reason)
            raise OSError(errno, f"cannot serve /metrics on {self.endpoint}: {why}") from None
        address = self.port.getHost()
        assert isinstance(address, IPv4Address | IPv6Address)
        self.bound = Endpoint(self.endpoint.host, address.port)
        log.info("metrics on http://{endpoint}/metrics", endpoint=self.bound)
        super().privilegedStartService()

    def startService(self) -> None:
        if self.port is None:
            self.privilegedStartService()
        super().startService()

    def stopService(self) -> Any:
        super().stopService()
        port, self.port = self.port, None
        return port.stopListening() if port is not None else None
