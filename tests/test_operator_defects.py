"""The smaller defects of issue 15, each as an operator met it: a metrics port in use, the README's
YAML, ``imap: "off"``, ``srvd zone --all | head``, the dashboard's sums and units, ``--listen X
--listen X``, "1 domains"."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import yaml

from srvd.config import load_config

from conftest import ROOT, free_port, start_srvd

README = ROOT / "README.md"
DASHBOARD = ROOT / "config" / "grafana" / "srvd.json"
ONE = """\
zone: {nameservers: [ns1.example.net, ns2.example.net]}
profiles: {p: {axigen: webmail.example.net}}
domains: {a.example: p}
"""


def srvd(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "srvd", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )


def test_a_metrics_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    config = tmp_path / "srvd.yaml"
    config.write_text(ONE)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = srvd(
            "serve", "-c", str(config), "--listen", "127.0.0.1:0", "--control", "off",
            "--metrics", f"127.0.0.1:{port}",
        )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"srvd: cannot serve /metrics on 127.0.0.1:{port}: Address already in use"
    )


def _yaml_blocks(text: str) -> list[tuple[int, str]]:
    blocks = []
    for match in re.finditer(r"^```yaml\n(.*?)^```", text, re.M | re.S):
        blocks.append((text[: match.start()].count("\n") + 1, match.group(1)))
    return blocks


def test_every_yaml_block_of_the_readme_parses(tmp_path: Path) -> None:
    blocks = _yaml_blocks(README.read_text())
    assert len(blocks) >= 3
    for line, block in blocks:
        try:
            yaml.safe_load(block)
        except yaml.YAMLError as exc:
            raise AssertionError(f"README.md:{line}: {exc}") from None
    # the configuration example is a configuration srvd accepts, whole
    (example,) = [block for _, block in blocks if block.startswith("listen:")]
    config = tmp_path / "srvd.yaml"
    config.write_text(example)
    result = srvd("check", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert load_config(config).rrl.exempt == ("127.0.0.0/8", "::1/128")


def test_off_is_off_quoted_or_not(tmp_path: Path) -> None:
    """`imap: "off"` was refused with a message telling the user to write 'off'."""

    def served(profile: str) -> Any:
        path = tmp_path / "srvd.yaml"
        path.write_text(
            "zone: {nameservers: [ns1.example.net, ns2.example.net]}\n"
            f"profiles: {{p: {profile}}}\ndomains: {{a.example: p}}\n"
        )
        return load_config(path).profiles["p"].entries

    plain = served("{imap: off, axigen: off, txt: {_x._tcp: off}}")
    assert served('{imap: "off", axigen: "off", txt: {_x._tcp: "off"}}') == plain
    assert served("{imap: 'OFF', axigen: 'Off', txt: {_x._tcp: 'off'}}") == plain
    # and in JSON, where off can only be a string
    main = tmp_path / "main.yaml"
    main.write_text(
        "zone: {nameservers: [ns1.example.net, ns2.example.net]}\ninclude: [more.json]\n"
    )
    (tmp_path / "more.json").write_text(
        json.dumps({"profiles": {"q": {"imap": "off"}}, "domains": {"b.example": "q"}})
    )
    assert load_config(main).profiles["q"].entries == {"imap": plain["imap"]}


def test_zone_all_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    config = tmp_path / "srvd.yaml"
    domains = "".join(f"  d{i}.example: p\n" for i in range(3000))
    config.write_text(
        "zone: {nameservers: [ns1.example.net, ns2.example.net]}\n"
        "profiles: {p: {imaps: {target: imap.example.net, port: 993}}}\ndomains:\n" + domains
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "srvd", "zone", "--all", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline().startswith(b"$ORIGIN")  # as `| head -1` reads
    process.stdout.close()
    error = process.stderr.read().decode()
    process.wait(timeout=60)
    assert "Traceback" not in error and "BrokenPipe" not in error, error
    assert process.returncode == 1


def _panels(panels: list[Any]) -> list[Any]:
    out = []
    for panel in panels:
        out.append(panel)
        out += _panels(panel.get("panels", []))
    return out


def test_dashboard_does_not_add_up_instances_and_gives_units() -> None:
    panels = _panels(json.loads(DASHBOARD.read_text())["panels"])
    for panel in panels:
        for target in panel.get("targets", []):
            expr = target["expr"]
            if re.search(r"srvd_(domains|zones|records)\b", expr):
                # ns1 + ns2 serve the same domains: a sum shows twice the count
                assert not expr.startswith("sum("), (panel["title"], expr)
    (process,) = [p for p in panels if p["title"] == "Process"]
    units = {
        override["matcher"]["options"]: {
            prop["id"]: prop["value"] for prop in override["properties"]
        }["unit"]
        for override in process["fieldConfig"]["overrides"]
    }
    refs = {t["refId"]: t["expr"] for t in process["targets"]}
    for ref, expr in refs.items():
        expected = "bytes" if "memory_bytes" in expr else "percentunit"
        assert units[ref] == expected, (ref, expr)
    assert any("srvd_worker_cpu_seconds_total" in e for e in refs.values())


def test_listen_twice_is_one_socket_and_counts_are_singular(tmp_path: Path) -> None:
    config = tmp_path / "srvd.yaml"
    config.write_text(ONE)
    port = free_port()
    server = start_srvd(config, "--listen", f"127.0.0.1:{port}", port=port)
    try:
        query = dns.message.make_query("_axigen.a.example", "TXT")
        reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=3)
        assert reply.answer
        log = server.log()
        assert log.count(f"listening on 127.0.0.1:{port}") == 1
        assert "1 domain, 1 zone, 4 records from" in log
    finally:
        assert server.stop() == 0
