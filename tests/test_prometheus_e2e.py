"""srvd scraped by a real Prometheus: every dashboard expression and every alert rule, evaluated.

One srvd (the example configuration, with a large TXT record for truncation and a low TCP
connection cap) and one Prometheus (scraping every second, evaluating config/prometheus/alerts.yml
every second) run on loopback for the whole module. A background thread sends a steady mix of
queries: SRV answers, NXDOMAIN, NODATA, REFUSED, TCP, truncated UDP answers and a few messages too
short to answer; once, it opens more TCP connections than the cap allows. After about 20 s, every
``expr`` of config/grafana/srvd.json (with ``$job``, ``$instance`` and ``$__rate_interval``
substituted) and every alert ``expr`` is evaluated through Prometheus's HTTP API and checked for
data and plausible values. The last test makes a reload fail and watches the alert go pending.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.message
import pytest
import yaml

from srvd.config import load_config
from srvd.http.pacc import deriver
from srvd.index.build import build_index
from srvd.index.model import IndexStats

from conftest import (
    EXAMPLE,
    ROOT,
    RunningServer,
    free_port,
    require_tool,
    start_srvd,
    stop_process,
)

DASHBOARD = ROOT / "config" / "grafana" / "srvd.json"
ALERTS = ROOT / "config" / "prometheus" / "alerts.yml"
JOB = "srvd"
RATE_INTERVAL = "15s"
TRICKLE_SECONDS = 20.0
ROUND_SECONDS = 0.05  # one round of queries every 50 ms
BIG_TEXT = "v=big " + "x" * 1500
TCP_CAP = 8

# One round of the trickle: 10 answered queries, 3 of them REFUSED (so the REFUSED ratio alert's
# expression is above its 0.2 threshold), 1 NXDOMAIN.
ROUND = [
    ("_imaps._tcp.example.com", "SRV", "udp"),
    ("_submissions._tcp.example.org", "SRV", "udp"),
    ("_imaps._tcp.shop.example", "SRV", "udp"),
    ("_caldav._tcp.example.com", "SRV", "udp"),  # NXDOMAIN
    ("_imaps._tcp.example.com", "A", "udp"),  # NODATA
    ("www.example.com", "A", "udp"),  # REFUSED: outside the served zones
    ("_imaps._tcp.unknown.example", "SRV", "udp"),  # REFUSED: no such customer domain
    ("example.com", "SOA", "udp"),  # REFUSED
    ("_jmap._tcp.example.com", "SRV", "tcp"),
    ("_big._tcp.example.com", "TXT", "udp"),  # truncated: TC=1
]
REFUSED_SHARE = 3 / len(ROUND)
NXDOMAIN_SHARE = 1 / len(ROUND)


# ---------------------------------------------------------------------------------------------
# The dashboard and the rules, as files


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in data["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


@dataclass(frozen=True)
class Target:
    panel: str
    ref: str
    expr: str
    legend: str

    @property
    def id(self) -> str:
        return f"{self.panel}/{self.ref}"

    def query(self) -> str:
        return (
            self.expr.replace("$__rate_interval", RATE_INTERVAL)
            .replace("$instance", ".*")
            .replace("$job", JOB)
        )


def targets() -> list[Target]:
    return [
        Target(panel["title"], target["refId"], target["expr"], target.get("legendFormat", ""))
        for panel in panels(dashboard())
        for target in panel.get("targets", [])
    ]


def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(ALERTS.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


# ---------------------------------------------------------------------------------------------
# The stack: srvd, Prometheus, and the trickle of queries


def wire(name: str, rdtype: str) -> bytes:
    return dns.message.make_query(name, rdtype, use_edns=False).to_wire()


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed by srvd")
        data += chunk
    return data


def tcp_ask(sock: socket.socket, query: bytes) -> bytes:
    sock.sendall(struct.pack("!H", len(query)) + query)
    return recv_exact(sock, struct.unpack("!H", recv_exact(sock, 2))[0])


@dataclass
class Trickle:
    """Sends ROUND every ROUND_SECONDS until stopped, from a thread."""

    port: int
    sent: int = 0
    answered: int = 0
    truncated: int = 0
    short: int = 0
    errors: list[str] = field(default_factory=list)
    rejected_burst_at: float | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self, burst_after: float) -> None:
        self.thread = threading.Thread(target=self.run, args=(burst_after,), daemon=True)
        self.thread.start()

    def run(self, burst_after: float) -> None:
        queries = [(wire(name, rdtype), transport) for name, rdtype, transport in ROUND]
        started = time.monotonic()
        rounds = 0
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
            socket.create_connection(("127.0.0.1", self.port), timeout=2.0) as tcp,
        ):
            udp.settimeout(2.0)
            while not self.stop.is_set():
                for query, transport in queries:
                    self.sent += 1
                    try:
                        if transport == "tcp":
                            reply = tcp_ask(tcp, query)
                        else:
                            udp.sendto(query, ("127.0.0.1", self.port))
                            reply = udp.recv(4096)
                    except OSError as exc:
                        self.errors.append(f"{transport}: {exc!r}")
                        continue
                    if reply[:2] != query[:2]:
                        self.errors.append("reply to another query")
                    self.answered += 1
                    self.truncated += bool(reply[2] & 0x02)
                rounds += 1
                if rounds % 10 == 0:
                    udp.sendto(b"\x00\x01\x00", ("127.0.0.1", self.port))  # dropped: short
                    self.short += 1
                if self.rejected_burst_at is None and time.monotonic() - started > burst_after:
                    self.burst()
                self.stop.wait(max(0.0, started + rounds * ROUND_SECONDS - time.monotonic()))

    def burst(self) -> None:
        """More connections at once than tcp.max_connections: srvd turns the extra ones away."""
        self.rejected_burst_at = time.time()
        extra: list[socket.socket] = []
        try:
            for _ in range(TCP_CAP + 2):
                try:
                    extra.append(socket.create_connection(("127.0.0.1", self.port), timeout=2.0))
                except ConnectionResetError:
                    # srvd aborts a connection over the cap as soon as it accepts it; when
                    # that beats our connect() to completion, connect() itself sees the RST.
                    continue
            time.sleep(0.3)
        finally:
            for sock in extra:
                sock.close()

    def finish(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=10)


class Prometheus:
    def __init__(self, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
        self.port = port
        self.process = process
        self.log_path = log

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, **params: str | list[str]) -> Any:
        query = urllib.parse.urlencode(params, doseq=True)
        url = f"http://127.0.0.1:{self.port}{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:  # 400 and 422 carry the PromQL error
            body = json.loads(exc.read())
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", f"{expr}: {data['resultType']}"
        result: list[dict[str, Any]] = data["result"]
        return result

    def values(self, expr: str) -> list[float]:
        return [float(sample["value"][1]) for sample in self.query(expr)]

    def value(self, expr: str) -> float:
        values = self.values(expr)
        assert len(values) == 1, f"{expr}: {self.query(expr)}"
        return values[0]

    def stop(self) -> None:
        stop_process(self.process)


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, AssertionError, KeyError, ValueError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


def start_prometheus(tmp: Path, metrics_port: int) -> Prometheus:
    binary = require_tool("prometheus")
    rules_file = tmp / "alerts.yml"
    rules_file.write_text(ALERTS.read_text())
    config = tmp / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {
                    "scrape_interval": "1s",
                    "scrape_timeout": "1s",
                    "evaluation_interval": "1s",
                },
                "rule_files": [str(rules_file)],
                "scrape_configs": [
                    {
                        "job_name": JOB,
                        "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}],
                    }
                ],
            }
        )
    )
    port = free_port()
    log = tmp / "prometheus.log"
    command = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=1h",
        "--log.level=warn",
        "--query.lookback-delta=1m",
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=tmp)
    prometheus = Prometheus(port, process, log)
    try:
        wait_until(lambda: _ready(prometheus), 30, "Prometheus ready")
    except AssertionError:
        prometheus.stop()
        raise AssertionError(f"Prometheus did not start:\n{prometheus.log()}") from None
    return prometheus


def _ready(prometheus: Prometheus) -> bool:
    assert prometheus.process.poll() is None, prometheus.log()
    with urllib.request.urlopen(f"http://127.0.0.1:{prometheus.port}/-/ready", timeout=2) as r:
        return bool(r.status == 200)


@dataclass
class Stack:
    srvd: RunningServer
    config: Path
    stats: IndexStats
    metrics_port: int
    prometheus: Prometheus
    trickle: Trickle
    reload_at: float

    @property
    def instance(self) -> str:
        return f"127.0.0.1:{self.metrics_port}"


def write_config(path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    data.pop("metrics", None)
    data["tcp"] = {"idle_timeout": 120, "max_connections": TCP_CAP}
    data["profiles"]["standard"]["txt"]["_big._tcp"] = [BIG_TEXT]
    path.write_text(yaml.safe_dump(data))


def http_requests(port: int) -> None:
    """Discovery documents asked for: found (200) and for an unknown domain (404)."""
    for host, count in (("autoconfig.example.com", 20), ("autoconfig.unknown.example", 5)):
        for _ in range(count):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/mail/config-v1.1.xml", headers={"Host": host})
            connection.getresponse().read()
            connection.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_tool("prometheus")
    tmp = tmp_path_factory.mktemp("prometheus-e2e")
    config = tmp / "srvd.yaml"
    write_config(config)
    loaded = load_config(config)
    stats = build_index(loaded, None, deriver(loaded.http)).stats
    metrics_port, http_port = free_port(), free_port()
    server = start_srvd(
        config,
        "--metrics",
        f"127.0.0.1:{metrics_port}",
        "--http",
        f"127.0.0.1:{http_port}",
        log_path=tmp / "srvd.log",
    )
    prometheus: Prometheus | None = None
    trickle = Trickle(server.port)
    try:
        prometheus = start_prometheus(tmp, metrics_port)
        # late in the trickle, so that both stay inside the dashboard's 15 s rate windows while
        # the tests run: a burst of TCP connections over the cap, and a successful reload of the
        # same file (the Reloads panel has something to show)
        trickle.start(burst_after=TRICKLE_SECONDS - 4)
        time.sleep(TRICKLE_SECONDS - 5)
        reload_at = time.time()
        server.process.send_signal(signal.SIGHUP)
        http_requests(http_port)  # the HTTP panels' traffic, inside their rate windows too
        time.sleep(5)
        assert trickle.rejected_burst_at is not None
        assert trickle.thread is not None and trickle.thread.is_alive(), trickle.errors
        yield Stack(server, config, stats, metrics_port, prometheus, trickle, reload_at)
    finally:
        trickle.finish()
        if prometheus is not None:
            prometheus.stop()
        code = server.stop()
        assert code == 0, server.log()


# ---------------------------------------------------------------------------------------------
# What Prometheus sees


def test_the_trickle_was_answered(stack: Stack) -> None:
    trickle = stack.trickle
    assert trickle.errors == []
    assert trickle.answered > 0.5 * TRICKLE_SECONDS / ROUND_SECONDS * len(ROUND)
    assert trickle.truncated > 0
    assert "reloaded in" in stack.srvd.log()


def test_prometheus_scrapes_srvd(stack: Stack) -> None:
    data = stack.prometheus.get("/api/v1/targets", state="active")
    active = data["activeTargets"]
    assert len(active) == 1
    target = active[0]
    assert target["labels"] == {"job": JOB, "instance": stack.instance}
    assert target["health"] == "up", target
    assert target["lastError"] == ""
    assert stack.prometheus.value(f'up{{job="{JOB}"}}') == 1
    assert stack.prometheus.value(f'scrape_samples_scraped{{job="{JOB}"}}') > 200


def test_prometheus_loaded_every_rule(stack: Stack) -> None:
    groups = stack.prometheus.get("/api/v1/rules")["groups"]
    loaded = [rule for group in groups for rule in group["rules"]]
    assert [r["name"] for r in loaded] == [r["alert"] for r in rules()]
    assert len(loaded) == len(rules())
    for rule in loaded:
        assert rule["type"] == "alerting"
        assert rule["health"] == "ok", rule
        assert not rule.get("lastError"), rule
    state = {r["name"]: r["state"] for r in loaded}
    # what the trickle provoked: pending, since both wait before firing
    assert state["SrvdRefusedRatioHigh"] == "pending"
    assert state["SrvdTcpConnectionsRejected"] == "pending"
    for quiet in QUIET:
        assert state[quiet] == "inactive", quiet


def test_grafana_variables_resolve(stack: Stack) -> None:
    variables = dashboard()["templating"]["list"]
    resolved: dict[str, list[str]] = {}
    for variable in variables:
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else ""
        query = query or variable["definition"]
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert match, query
        selector, label = match.groups()
        selector = selector.replace("$job", JOB).replace("$instance", ".*")
        values = stack.prometheus.get(f"/api/v1/label/{label}/values", **{"match[]": selector})
        resolved[variable["name"]] = values
    assert resolved == {"job": [JOB], "instance": [stack.instance]}


def test_dashboard_expressions_follow_the_conventions() -> None:
    found = targets()
    assert len(found) >= 20
    for target in found:
        assert 'job=~"$job"' in target.expr, target.id
        assert 'instance=~"$instance"' in target.expr, target.id
        ranges = re.findall(r"\[([^\]]+)\]", target.expr)
        assert all(r == "$__rate_interval" for r in ranges), (target.id, ranges)


def one(values: list[float]) -> float:
    assert len(values) == 1, values
    return values[0]


def by(result: list[dict[str, Any]], label: str) -> dict[str, float]:
    return {sample["metric"].get(label, ""): float(sample["value"][1]) for sample in result}


Check = Callable[[Stack, list[dict[str, Any]]], None]


def values_of(result: list[dict[str, Any]]) -> list[float]:
    return [float(sample["value"][1]) for sample in result]


def qps(stack: Stack, result: list[dict[str, Any]]) -> None:
    expected = len(ROUND) / ROUND_SECONDS
    assert 0.3 * expected < one(values_of(result)) < 2 * expected


def nxdomain_ratio(stack: Stack, result: list[dict[str, Any]]) -> None:
    assert 0.5 * NXDOMAIN_SHARE < one(values_of(result)) < 2 * NXDOMAIN_SHARE < 1


def domains(stack: Stack, result: list[dict[str, Any]]) -> None:
    assert one(values_of(result)) == stack.stats.domains == 3


def zones(stack: Stack, result: list[dict[str, Any]]) -> None:
    # _tcp, _axigen and (http.pacc is on in the example) _ua-auto-config of each domain
    assert one(values_of(result)) == stack.stats.zones == 9


def records(stack: Stack, result: list[dict[str, Any]]) -> None:
    assert one(values_of(result)) == stack.stats.records


def reload_ok(stack: Stack, result: list[dict[str, Any]]) -> None:
    assert one(values_of(result)) == 1


def since_reload(stack: Stack, result: list[dict[str, Any]]) -> None:
    age = one(values_of(result))
    assert 0 <= age <= time.time() - stack.reload_at + 2


def by_qtype(stack: Stack, result: list[dict[str, Any]]) -> None:
    rates = by(result, "qtype")
    assert {"SRV", "TXT", "A", "SOA", "other"} <= set(rates)
    assert rates["SRV"] > rates["A"] > 0 and rates["TXT"] > 0 and rates["SOA"] > 0
    assert rates["other"] == 0


def by_service(stack: Stack, result: list[dict[str, Any]]) -> None:
    rates = by(result, "service")
    assert rates["imaps"] > rates["submissions"] > 0
    assert rates["caldav"] > 0 and rates["jmap"] > 0 and rates["other"] > 0  # _big._tcp
    assert rates["pop3"] == 0


def by_rcode(stack: Stack, result: list[dict[str, Any]]) -> None:
    rates = by(result, "rcode")
    assert rates["NOERROR"] > rates["REFUSED"] > rates["NXDOMAIN"] > 0
    assert rates["REFUSED"] / sum(rates.values()) == pytest.approx(REFUSED_SHARE, abs=0.05)
    assert rates["SERVFAIL"] == rates["FORMERR"] == rates["NOTIMP"] == 0


def positive(stack: Stack, result: list[dict[str, Any]]) -> None:
    assert one(values_of(result)) > 0


def zero(stack: Stack, result: list[dict[str, Any]]) -> None:
    assert one(values_of(result)) == 0


def misses(stack: Stack, result: list[dict[str, Any]]) -> None:
    rates = {(s["metric"]["service"], s["metric"]["result"]): float(s["value"][1]) for s in result}
    assert rates[("caldav", "nxdomain")] > 0
    assert rates[("imaps", "nodata")] > 0
    assert all(kind != "answer" for _, kind in rates)
    # the truncated TXT answer is no miss
    assert rates[("other", "nodata")] == 0


def tcp_connections(stack: Stack, result: list[dict[str, Any]]) -> None:
    assert one(values_of(result)) >= 1  # the trickle's connection stays open


def quantile_seconds(stack: Stack, result: list[dict[str, Any]]) -> None:
    assert 0 < one(values_of(result)) < 0.1


def quantile_bytes(stack: Stack, result: list[dict[str, Any]]) -> None:
    assert 12 < one(values_of(result)) <= 65536


def dropped(stack: Stack, result: list[dict[str, Any]]) -> None:
    rates = by(result, "reason")
    assert rates["short"] > 0
    assert rates["response"] == 0


def held_back(stack: Stack, result: list[dict[str, Any]]) -> None:
    # loopback is exempt from rate limiting, and no connection is reaped or too slow: every
    # series is there, at zero
    assert set(by(result, "action")) == {"slip", "drop"}
    assert set(by(result, "action").values()) == {0.0}


def tcp_closed(stack: Stack, result: list[dict[str, Any]]) -> None:
    assert set(by(result, "reason")) == {"reaped", "incomplete"}
    assert set(by(result, "reason").values()) == {0.0}


def rss(stack: Stack, result: list[dict[str, Any]]) -> None:
    assert 1e6 < one(values_of(result)) < 4e9


def cpu(stack: Stack, result: list[dict[str, Any]]) -> None:
    assert 0 < one(values_of(result)) < 4


def reloads(stack: Stack, result: list[dict[str, Any]]) -> None:
    increase = by(result, "result")
    assert increase["success"] > 0  # the reload late in the trickle
    assert increase["failure"] == 0


def reload_duration(stack: Stack, result: list[dict[str, Any]]) -> None:
    assert 0 < one(values_of(result)) < 10


def http_by_route(stack: Stack, result: list[dict[str, Any]]) -> None:
    rates = {(s["metric"]["route"], s["metric"]["status"]): float(s["value"][1]) for s in result}
    assert rates[("autoconfig", "200")] > rates[("autoconfig", "404")] > 0
    assert set(rates) == {("autoconfig", "200"), ("autoconfig", "404")}


def not_negative(stack: Stack, result: list[dict[str, Any]]) -> None:
    assert one(values_of(result)) >= 0


def one_process(stack: Stack, result: list[dict[str, Any]]) -> None:
    figures = by(result, "worker")  # one process here: the primary, worker 0
    assert list(figures) == ["0"] and figures["0"] > 0


CHECKS: dict[str, Check] = {
    "Queries per second/A": qps,
    "NXDOMAIN ratio/A": nxdomain_ratio,
    "Domains/A": domains,
    "Records/A": records,
    "Last reload/A": reload_ok,
    "Since last successful reload/A": since_reload,
    "Queries by type/A": by_qtype,
    "Queries by service/A": by_service,
    "Response codes/A": by_rcode,
    "REFUSED rate/A": positive,
    "REFUSED rate/B": zero,
    "Misses by service/A": misses,
    "Truncation and TCP/A": positive,
    "Truncation and TCP/B": positive,
    "Truncation and TCP/C": tcp_connections,
    "Truncation and TCP/D": positive,
    "Processing time/A": quantile_seconds,
    "Processing time/B": quantile_seconds,
    "Processing time/C": quantile_seconds,
    "Response size/A": quantile_bytes,
    "Response size/B": quantile_bytes,
    "Dropped and failed/A": dropped,
    "Dropped and failed/B": zero,
    "Dropped and failed/C": zero,
    "Process/A": rss,
    "Process/B": cpu,
    "Process/C": one_process,
    "Process/D": one_process,
    "Rate limiting and TCP closes/A": held_back,
    "Rate limiting and TCP closes/B": tcp_closed,
    "Reloads/A": reloads,
    "Reload duration/A": reload_duration,
    "Domains, zones, records/A": domains,
    "Domains, zones, records/B": zones,
    "Domains, zones, records/C": records,
    "HTTP requests by route and status/A": http_by_route,
    "HTTP connections/A": not_negative,
    "HTTP connections/B": zero,
    "DNSSEC signing/A": zero,  # the stack's zones are unsigned (tests/test_dnssec.py signs)
    "DNSSEC signing/B": zero,
    "Earliest signature expiry/A": zero,
    "Signing ahead/A": zero,
}


def test_every_dashboard_target_has_a_check() -> None:
    assert sorted(t.id for t in targets()) == sorted(CHECKS)


@pytest.mark.parametrize("target", targets(), ids=lambda t: t.id)
def test_dashboard_expression(stack: Stack, target: Target) -> None:
    result = stack.prometheus.query(target.query())
    assert result, f"{target.id}: no data for {target.query()}"
    for sample in result:
        assert sample["metric"].get("job", JOB) == JOB
        # every {{label}} of the legend is a label of the series
        for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", target.legend):
            assert label in sample["metric"], (target.id, label, sample["metric"])
    CHECKS[target.id](stack, result)


QUIET = (
    "SrvdDown",
    "SrvdAbsent",
    "SrvdReloadFailing",
    "SrvdNoQueries",
    "SrvdServfail",
    "SrvdDnssecSignaturesExpiring",
)
PROVOKED = ("SrvdRefusedRatioHigh", "SrvdTcpConnectionsRejected")


def test_every_alert_is_covered() -> None:
    assert sorted(r["alert"] for r in rules()) == sorted(QUIET + PROVOKED)


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_alert_expression(stack: Stack, rule: dict[str, Any]) -> None:
    result = stack.prometheus.query(rule["expr"])
    if rule["alert"] in QUIET:
        assert result == [], rule["alert"]
        return
    assert len(result) == 1, (rule["alert"], result)
    labels = result[0]["metric"]
    # the annotations name the instance
    assert labels["job"] == JOB and labels["instance"] == stack.instance
    value = float(result[0]["value"][1])
    if rule["alert"] == "SrvdRefusedRatioHigh":
        assert value == pytest.approx(REFUSED_SHARE, abs=0.05)
    else:
        assert value > 0


def test_the_quiet_alerts_would_fire(stack: Stack) -> None:
    """The alerts that must stay quiet above are not quiet because they cannot match at all: the
    same expressions with the comparison flipped return srvd's series."""
    prometheus = stack.prometheus
    assert prometheus.value(f'up{{job="{JOB}"}} == 1') == 1
    assert prometheus.value("sum by (job, instance) (rate(srvd_queries_total[15m])) > 0") > 0
    servfail = 'sum by (job, instance) (rate(srvd_queries_total{rcode="SERVFAIL"}[5m]))'
    assert prometheus.values(f"{servfail} == 0") == [0]
    assert prometheus.value("srvd_config_last_reload_successful == 1") == 1
    # unsigned: the expiry gauge is there, at 0 (the rule's "> 0" keeps it quiet)
    assert prometheus.values("srvd_dnssec_signature_expiry_earliest_seconds == 0") == [0]


def test_a_failed_reload_shows_and_the_alert_goes_pending(stack: Stack) -> None:
    """Last in this module: it leaves srvd on a failed reload."""
    prometheus = stack.prometheus
    rule = next(r for r in rules() if r["alert"] == "SrvdReloadFailing")
    assert prometheus.query(rule["expr"]) == []

    good = stack.config.read_text()
    stack.config.write_text(good + "  broken: [\n")
    stack.srvd.process.send_signal(signal.SIGHUP)
    wait_until(lambda: bool(prometheus.query(rule["expr"])), 15, "reload failure scraped")

    result = prometheus.query(rule["expr"])
    assert len(result) == 1 and result[0]["metric"]["instance"] == stack.instance
    assert float(result[0]["value"][1]) == 0
    panel = next(t for t in targets() if t.id == "Last reload/A")
    assert prometheus.value(panel.query()) == 0
    reloads = next(t for t in targets() if t.id == "Reloads/A")
    wait_until(
        lambda: by(prometheus.query(reloads.query()), "result")["failure"] > 0,
        5,
        "failure in the Reloads panel",
    )
    # the rest still shows the configuration being served
    assert prometheus.value("srvd_domains") == 3

    def pending() -> bool:
        alerts = prometheus.get("/api/v1/alerts")["alerts"]
        return any(
            a["labels"]["alertname"] == "SrvdReloadFailing" and a["state"] == "pending"
            for a in alerts
        )

    wait_until(pending, 10, "SrvdReloadFailing pending")
    alert = next(
        a for a in prometheus.get("/api/v1/alerts")["alerts"]
        if a["labels"]["alertname"] == "SrvdReloadFailing"
    )  # fmt: skip
    assert alert["labels"]["severity"] == "warning"
    assert stack.instance in alert["annotations"]["summary"]
