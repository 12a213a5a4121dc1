"""The client side of the control channel (srvd.server.control has the protocol): ``srvd status``,
``srvd reload``, ``srvd show DOMAIN``, ``srvd list [--profile P]``, ``srvd diff [-c FILE]``.

Each command connects to the running primary's control socket, sends one request line and prints
what comes back, as ``nsd-control`` and ``knotc`` do. The socket is found from ``--socket``, else
from the ``control:`` key of the configuration file (read alone, not the whole file), else the
default ``/run/srvd/srvd.sock``. Exit status: 0 when the command did what it was asked, 1 when it
failed (a reload that failed, a domain not served), 2 when srvd could not be reached.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

from srvd.config import DEFAULT_CONTROL, Config, ConfigError, DomainOverride, RRsetSpec
from srvd.config.load import DomainSink, Entry, read_config
from srvd.config.model import Profile, ZoneSettings
from srvd.config.ops import read_control, top_level
from srvd.config.reader import _Invalid, _Reader
from srvd.wire.discovery import SRV
from srvd.wire.text import plural

DEFAULT_TIMEOUT = 600.0  # seconds: a reload of a million domains takes a few


class Unreachable(Exception):
    """srvd's control socket cannot be reached."""


def socket_path(option: str | None, config: str | None) -> str:
    """``--socket``, else the configuration's ``control:`` key, else the default."""
    if option:
        return option
    if config is None:
        return DEFAULT_CONTROL
    try:
        raw = top_level(config, "control")
    except (OSError, ValueError) as exc:
        raise Unreachable(f"cannot read control: from {config}: {exc}") from None
    reader = _Reader()
    reader.file = config
    try:
        path = read_control(reader, raw, ("control",), os.path.dirname(os.path.abspath(config)))
    except _Invalid:
        raise Unreachable(reader.problems[0].render()) from None
    if path is None:
        raise Unreachable(f"{config} says control: off (give --socket, or srvd reload's pidfile)")
    return path


def request(path: str, message: dict[str, Any], timeout: float) -> Iterator[dict[str, Any]]:
    """Send one request; the answer's lines as they come (the last has "ok")."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as exc:
            raise Unreachable(f"cannot connect to {path}: {exc.strerror or exc}") from None
        sock.sendall(json.dumps(message).encode() + b"\n")
        buffer = b""
        while True:
            try:
                data = sock.recv(1 << 16)
            except TimeoutError:
                raise Unreachable(f"{path}: no answer within {timeout:g} s") from None
            if not data:
                break
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                yield json.loads(line)
    if buffer.strip():
        yield json.loads(buffer)


def ask(path: str, message: dict[str, Any], timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """One request whose answer is one line."""
    last: dict[str, Any] = {}
    for line in request(path, message, timeout):
        last = line
    if "ok" not in last:
        raise Unreachable(f"{path}: the connection ended without an answer")
    return last


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(stamp))


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m {seconds}s"
    return f"{minutes}m {seconds}s" if minutes else f"{seconds}s"


# -- the commands


def status(path: str, out: TextIO = sys.stdout) -> int:
    s = ask(path, {"command": "status"}, 30)
    if not s.get("ok"):
        print(f"srvd status: {s.get('error')}", file=sys.stderr)
        return 1
    lines = [
        f"srvd {s['version']}, pid {s['pid']}, up {_duration(s['uptime'])} "
        f"(since {_when(s['started'])})",
        f"configuration: {s['config']} (sha256 {s['config_sha256'][:16]}...)",
        f"serving: generation {s['generation']}: {plural(s['domains'], 'domain')}, "
        f"{plural(s['zones'], 'zone')}, {plural(s['records'], 'record')}",
    ]
    if s.get("catalog"):
        lines.append(f"catalog: {s['catalog']['name']} serial {s['catalog']['serial']}")
    reloads = s["reloads"]
    last = s.get("last_reload")
    counts = f"{reloads['succeeded']} succeeded, {reloads['failed']} failed"
    if last is None:
        lines.append(f"last reload: none since start ({counts})")
    else:
        outcome = "OK" if last["ok"] else "FAILED"
        detail = last["changes"] if last["ok"] else "still serving the previous configuration"
        lines.append(
            f"last reload: {outcome} at {_when(last['time'])}, {last['seconds']:.2f} s: "
            f"{detail} ({counts})"
        )
        lines.extend(f"  {problem}" for problem in last["problems"])
    if s.get("reload_in_progress"):
        lines.append("a reload is running now")
    for worker in s["workers"]:
        role = "primary" if worker["slot"] == 0 else f"worker {worker['slot']}"
        if worker["pid"]:
            behind = "" if worker["generation"] == s["generation"] else " (behind)"
            lines.append(f"{role}: pid {worker['pid']}, generation {worker['generation']}{behind}")
        else:
            lines.append(f"{role}: not running (restarting)")
    lines.append(f"listening: {', '.join(s['listening'])} (UDP and TCP)")
    if s.get("metrics"):
        lines.append(f"metrics: http://{s['metrics']}/metrics")
    lines.append(f"control: {s['control']}")
    print("\n".join(lines), file=out)
    return 0


def reload(path: str, force: bool, out: TextIO = sys.stdout) -> int:
    answer = ask(path, {"command": "reload", "force": force})
    last = answer.get("last_reload") or {}
    if "error" in answer:
        print(f"srvd reload: {answer['error']}", file=sys.stderr)
        return 1
    if answer["ok"]:
        print(
            f"srvd reload: {answer['config']}: OK in {last.get('seconds', 0):.2f} s: "
            f"{last.get('changes', '')}; now generation {answer['generation']}, "
            f"{plural(answer['domains'], 'domain')}, {plural(answer['zones'], 'zone')}",
            file=out,
        )
        return 0
    for problem in last.get("problems", []):
        print(problem, file=sys.stderr)
    print(
        f"srvd reload: {answer['config']}: the reload FAILED; still serving generation "
        f"{answer['generation']}",
        file=sys.stderr,
    )
    return 1


class _One(DomainSink):
    """Keeps one domain's entry (and where the profiles are)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.entry: Entry | None = None
        self.profiles: dict[str, Profile] = {}

    def begin(self, zone: ZoneSettings, profiles: Any) -> None:
        self.profiles = profiles

    def domain(self, name: str, entry: Entry | None) -> None:
        if name == self.name and entry is not None:
            self.entry = entry

    def restart(self) -> None:
        self.entry = None


def _line_of(files: tuple[str, ...], name: str) -> str | None:
    """``file:line`` where a domain is defined (its key, at the start of a line)."""
    pattern = re.compile(rb"^\s*[\"']?" + re.escape(name.encode()) + rb"[\"']?\s*:")
    for file in files:
        try:
            with open(file, "rb") as handle:
                for number, line in enumerate(handle, 1):
                    if pattern.match(line):
                        return f"{file}:{number}"
        except OSError:
            continue
    return None


def _rrsets(specs: tuple[RRsetSpec, ...] | None) -> str:
    if specs is None:
        return "removed (null)"
    parts = []
    for spec in specs:
        if spec.rtype == SRV:
            for r in spec.srv:
                target = "." if r.target == "." else f"{r.target}."
                parts.append(f"{spec.owner} SRV {r.priority} {r.weight} {r.port} {target}")
        else:
            parts.extend(f'{spec.owner} TXT "{text}"' for text in spec.txt)
    return "; ".join(parts)


def show(path: str, domain: str, config_file: str | None, out: TextIO = sys.stdout) -> int:
    answer = ask(path, {"command": "zones", "domain": domain}, 30)
    if not answer.get("ok"):
        print(f"srvd show: {answer.get('error')}", file=sys.stderr)
        return 1
    name = answer["domain"]
    served = ask(path, {"command": "status"}, 30)
    source = config_file or served["config"]
    print(f"; {name}", file=out)
    sink = _One(name)
    config: Config | None = None
    try:
        config = read_config(source, sink)
    except (ConfigError, OSError) as exc:
        print(f"; configuration {source}: cannot be read ({str(exc).splitlines()[0]})", file=out)
    if config is not None:
        if config.sha256 != served["config_sha256"]:
            print(
                f"; note: {source} differs from what srvd serves (changed since the last "
                "reload, or another file): the configuration below is the file's",
                file=out,
            )
        entry = sink.entry
        if entry is None:
            print(f"; configuration: not in {source} or its includes", file=out)
        else:
            where = _line_of(config.files, name) or source
            profile = entry if isinstance(entry, str) else entry.profile
            print(f"; defined at {where}", file=out)
            print(f"; profile: {profile or '(none)'}", file=out)
            if isinstance(entry, DomainOverride):
                for key, specs in entry.entries.items():
                    print(f"; override {key}: {_rrsets(specs)}", file=out)
            elif profile is not None and profile not in sink.profiles:
                print(f"; (profile {profile} is not defined)", file=out)
    zones = answer["zones"]
    if not zones:
        print(f"; served now (generation {answer['generation']}): no zone", file=out)
        return 1 if config is None or sink.entry is None else 0
    listed = ", ".join(f"{z['apex']} serial {z['serial']}" for z in zones)
    print(f"; served now (generation {answer['generation']}): {listed}", file=out)
    for zone in zones:
        print(file=out)
        print(zone["text"], end="", file=out)
    return 0


class _OnProfile(DomainSink):
    def __init__(self, profile: str) -> None:
        self.profile = profile
        self.names: set[str] = set()

    def domain(self, name: str, entry: Entry | None) -> None:
        if entry is None:
            return
        on = entry if isinstance(entry, str) else entry.profile
        if on == self.profile:
            self.names.add(name)

    def restart(self) -> None:
        self.names = set()


def list_domains(
    path: str, profile: str | None, config_file: str | None, out: TextIO = sys.stdout
) -> int:
    """The domains served now (one per line, in the index's order), or those on ``profile``
    in the configuration the server runs."""
    wanted: set[str] | None = None
    if profile is not None:
        status_answer = ask(path, {"command": "status"}, 30)
        source = config_file or status_answer["config"]
        sink = _OnProfile(profile)
        try:
            config = read_config(source, sink)
        except ConfigError as exc:
            print(f"srvd list: {source}: {exc.problems[0].render()}", file=sys.stderr)
            return 1
        if profile not in config.profiles:
            print(f"srvd list: {source} has no profile {profile!r}", file=sys.stderr)
            return 1
        if config.sha256 != status_answer["config_sha256"]:
            print(
                f"srvd list: note: {source} differs from what srvd serves; profiles are the file's",
                file=sys.stderr,
            )
        wanted = sink.names
    final: dict[str, Any] = {}
    try:
        for message in request(path, {"command": "domains"}, DEFAULT_TIMEOUT):
            if "domains" in message:
                names = message["domains"]
                if wanted is not None:
                    names = [name for name in names if name in wanted]
                if names:
                    out.write("\n".join(names) + "\n")
            else:
                final = message
    finally:
        out.flush()
    if not final.get("ok"):
        print(f"srvd list: {final.get('error', 'no answer')}", file=sys.stderr)
        return 1
    return 0


def diff(path: str, file: str | None, out: TextIO = sys.stdout) -> int:
    message: dict[str, Any] = {"command": "diff"}
    if file is not None:
        message["path"] = os.path.abspath(file)
    answer = ask(path, message)
    if "error" in answer:
        print(f"srvd diff: {answer['error']}", file=sys.stderr)
        return 1
    if not answer["ok"]:
        for problem in answer.get("problems", []):
            print(problem, file=sys.stderr)
        print(f"srvd diff: {answer['config']}: a reload would fail", file=sys.stderr)
        return 1
    for sign, key in (("+", "added"), ("-", "removed"), ("~", "changed")):
        for name in answer[key]:
            print(f"{sign} {name}", file=out)
    counts = ", ".join(f"{len(answer[key])} {key}" for key in ("added", "removed", "changed"))
    same = answer["sha256"] == answer["served_sha256"]
    print(
        f"; {answer['config']}: {counts} (domains); would serve "
        f"{plural(answer['domains'], 'domain')}, {plural(answer['zones'], 'zone')}"
        + ("; the files are the ones served" if same else ""),
        file=out,
    )
    if answer.get("refused"):
        print(f"; a reload would be {answer['refused']}", file=out)
    return 0


# -- the signal path (``srvd reload --pidfile``): for when there is no control channel


def srvd_process(pidfile: str) -> tuple[int, str | None]:
    """The pid in ``pidfile`` and the configuration file that process was given (``-c``; None:
    none given), once /proc/PID/cmdline shows it is a srvd server. Raises ValueError saying why
    the pid is not to be signalled."""
    try:
        with open(pidfile, encoding="ascii") as handle:
            pid = int(handle.read().strip())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read a process id from {pidfile}: {exc}") from None
    if pid <= 1:
        raise ValueError(f"{pidfile} names process {pid}: not srvd")
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = [arg.decode(errors="replace") for arg in handle.read().split(b"\0") if arg]
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except FileNotFoundError:
        raise ValueError(f"process {pid} (from {pidfile}) is not running: a stale pid file") from (
            None
        )
    except OSError as exc:
        raise ValueError(f"cannot inspect process {pid}: {exc.strerror or exc}") from None
    if not _is_srvd(argv):
        shown = " ".join(argv)[:120] or "?"
        raise ValueError(
            f"process {pid} (from {pidfile}) is not srvd ({shown}): a stale pid file; not signalled"
        )
    config = None
    for i, arg in enumerate(argv):
        if arg in ("-c", "--config") and i + 1 < len(argv):
            config = argv[i + 1]
        elif arg.startswith("--config="):
            config = arg.split("=", 1)[1]
    if config is not None and not os.path.isabs(config):
        config = os.path.join(cwd, config)
    return pid, config


def _is_srvd(argv: list[str]) -> bool:
    """``srvd serve ...``, ``python -m srvd serve ...`` or ``twistd ... srvd ...``."""
    names = [os.path.basename(arg) for arg in argv]
    if "--worker-slot" in argv:
        return False  # a worker: the primary is the one to signal
    if "serve" in argv:
        serve = argv.index("serve")
        before = names[:serve]
        return "srvd" in before or any(
            a == "-m" and b == "srvd" for a, b in itertools.pairwise(argv)
        )
    return any(name.startswith("twistd") for name in names[:2]) and "srvd" in argv
