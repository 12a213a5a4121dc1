"""The signed catalog zone (srvd.index.catalog_dnssec, srvd.answer.catalog) on plain bytes, with
dnspython as the oracle: every RRSIG of its AXFR validates, its NSEC chain is whole and in
canonical order, an IXFR applied by dnspython's inbound transfer to the old AXFR gives the new
AXFR, signed answers validate and prove their denials, DO=0 answers are the unsigned ones."""

from __future__ import annotations

import dataclasses
import pickle
import random
import struct
from collections.abc import Callable, Iterable
from pathlib import Path

import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.xfr
import dns.zone
import pytest
from catalog_oracle import check_signed_zone, records_of
from dnssec_oracle import check_denial, validate_message
from xfr_helpers import CATALOG, primary_config

from srvd.answer.full import answer
from srvd.config import load_config
from srvd.index.build import build_index
from srvd.index.catalog import catalog_lines, next_catalog, served_serial
from srvd.index.catalog_dnssec import (
    STEP,
    MemberOrder,
    Record,
    SignedCatalog,
    compressed,
    member_digest,
)
from srvd.index.dnssec import STATS, ZoneSigner, attach
from srvd.index.model import Catalog, Index, ZoneDelta, member_label
from srvd.wire.dnssec import generate_key
from srvd.wire.names import to_wire

NOW = 1_800_000_000  # the signer's clock
OLD = NOW - 30 * 86400  # a configuration time older than any window near NOW
IN = dns.rdataclass.IN
APEX = to_wire(CATALOG)
ORIGIN = dns.name.from_text(CATALOG)
IXFR, AXFR = 251, 252


def domains(start: int, count: int) -> list[str]:
    return [f"m{i:04d}.example.com" for i in range(start, start + count)]


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("catalog-key") / "csk.pem"
    path.write_bytes(generate_key(13))
    return path


def make_index(tmp: Path, names: list[str], key: Path | None, clock: float = NOW) -> Index:
    extra = f"dnssec:\n  key: {key}" if key is not None else ""
    tmp.mkdir(parents=True, exist_ok=True)
    config = load_config(str(primary_config(tmp, names, extra=extra)))
    index = build_index(config, lambda apex, digest: OLD)
    return attach(index, config.dnssec, lambda: clock)


def signer_of(index: Index) -> ZoneSigner:
    assert isinstance(index.dnssec, ZoneSigner)
    return index.dnssec


def messages(records: Iterable[Record | None], qtype: int, per: int = 50) -> list[bytes]:
    """The records as transfer messages (owners compressed to the question, as srvd sends)."""
    body = [r for r in compressed(records, APEX) if r is not None]
    out = []
    for i in range(0, len(body), per):
        group = body[i : i + per]
        head = struct.pack("!HHHHHH", 7, 0x8400, 1, len(group), 0, 0)
        out.append(head + APEX + struct.pack("!HH", qtype, 1) + b"".join(group))
    return out


def transfer(zone: dns.zone.Zone, wires: list[bytes], qtype: int, serial: int | None) -> None:
    """Apply a transfer with dnspython's inbound machinery (deletions must match exactly)."""
    rdtype = dns.rdatatype.RdataType(qtype)
    with dns.xfr.Inbound(zone, rdtype, serial=serial) as inbound:
        done = False
        for wire in wires:
            message = dns.message.from_wire(wire, xfr=True, one_rr_per_rrset=True)
            done = inbound.process_message(message)
        assert done


def axfr_zone(signed: SignedCatalog) -> dns.zone.Zone:
    zone = dns.zone.Zone(ORIGIN, relativize=False)
    transfer(zone, messages(signed.axfr(), AXFR), AXFR, None)
    return zone


# ---------------------------------------------------------------------------------------------
# The member order


def test_the_member_order_is_canonical_and_made_in_bounded_steps() -> None:
    apexes = [to_wire(f"_tcp.d{i}.example") for i in range(3 * STEP // 2)]
    order = MemberOrder(apexes)
    steps = 0
    while not order.step():
        steps += 1
    assert steps >= 3  # two hashing steps, sorting in more than one
    names = [dns.name.from_text(f"{member_label(a)[1:].decode()}.zones.{CATALOG}") for a in apexes]
    expected = sorted(zip(names, apexes, strict=True))
    assert order.apexes == [apex for _, apex in expected]
    assert len(order.digests) == 10 * len(apexes)
    for i in (0, 1, len(apexes) // 2, len(apexes) - 1):
        digest = order.digest(i)
        assert member_label(order.apexes[i]) == b"\x14" + digest.hex().encode()
        assert order.position(digest) == i
        assert member_digest(order.apexes[i]) == digest
    assert order.position(b"\x00" * 10) == 0 and order.position(b"\xff" * 10) == len(apexes)
    empty = MemberOrder([])
    empty.finish()
    assert empty.ready and len(empty) == 0 and empty.digests == b""


# ---------------------------------------------------------------------------------------------
# AXFR


def test_the_signed_axfr_validates_and_chains_every_member(tmp_path: Path, key: Path) -> None:
    index = make_index(tmp_path, domains(0, 150), key)
    catalog = next_catalog(None, APEX, index, None, OLD)
    signer = signer_of(index)
    signed = SignedCatalog(catalog, signer)
    window = signer.window(APEX)
    assert signed.serial == window.start == served_serial(catalog, index) != catalog.serial
    before = len(signer.cache)
    made = STATS.signatures
    zone = axfr_zone(signed)
    check_signed_zone(zone, len(index.zones), NOW)
    soa = zone.find_rdataset(ORIGIN, dns.rdatatype.SOA)[0]
    assert soa.serial == window.start
    assert len(signer.cache) == before  # nothing in the answers' signature cache
    assert STATS.signatures - made == 2 * len(index.zones) + 8
    ptrs = {r.to_text() for _, _, r in zone.iterate_rdatas("PTR")}
    assert ptrs == {dns.name.from_wire(a, 0)[0].to_text() for a in index.zones}
    # a second transfer signs the members again, the apex's RRsets come from their cache
    made = STATS.signatures
    assert records_of(axfr_zone(signed)) == records_of(zone)
    assert STATS.signatures - made == 2 * len(index.zones) - 1  # the last NSEC: kept too


def test_the_axfr_stream_waits_while_the_order_is_made(tmp_path: Path, key: Path) -> None:
    index = make_index(tmp_path, domains(0, 20), key)
    catalog = next_catalog(None, APEX, index, None, OLD)
    stream = SignedCatalog(catalog, signer_of(index)).axfr()
    assert next(stream) is None  # hashing
    rest = list(stream)
    assert rest.count(None) >= 1 and all(r is not None for r in rest[rest.index(None) + 1 :])
    assert catalog.signing is not None and catalog.signing.members is not None
    # the same members: the next catalog version keeps the order
    again = next_catalog(catalog, APEX, index, ZoneDelta((), (), ()), OLD)
    assert again.signing is catalog.signing
    assert next(SignedCatalog(again, signer_of(index)).axfr()) is not None  # ready at once


def test_the_member_order_is_made_on_the_reactor_after_a_new_version(
    tmp_path: Path, key: Path
) -> None:
    """srvd.xfr.transfer.prepare_order: after a start or a reload the order is made in steps of
    its own, one reactor turn each, so that no answer has to make it at once; unsigned: nothing."""
    from srvd.xfr.transfer import prepare_order

    turns: list[Callable[[], None]] = []  # the reactor's turns to come

    def call_later(delay: float, step: Callable[[], None]) -> None:
        assert delay == 0
        turns.append(step)

    index = make_index(tmp_path, domains(0, 40_000), key)
    index.catalog = next_catalog(None, APEX, index, None, OLD)
    order = prepare_order(index, call_later)
    assert order is not None and not order.ready and len(turns) == 1
    steps = 0
    while turns:
        turns.pop(0)()
        steps += 1
    assert order.ready and steps > 2  # (hashing, then sorting, in bounded steps)
    assert SignedCatalog(index.catalog, signer_of(index)).order is order
    assert prepare_order(index, call_later) is order and not turns
    unsigned = make_index(tmp_path / "unsigned", domains(0, 5), None)
    unsigned.catalog = next_catalog(None, APEX, unsigned, None, OLD)
    assert prepare_order(unsigned, call_later) is None


def test_an_empty_signed_catalog(tmp_path: Path, key: Path) -> None:
    index = make_index(tmp_path, [], key)
    catalog = next_catalog(None, APEX, index, None, OLD)
    zone = axfr_zone(SignedCatalog(catalog, signer_of(index)))
    check_signed_zone(zone, 0, NOW)


def test_during_a_rollover_every_key_signs_the_key_set(tmp_path: Path, key: Path) -> None:
    published = tmp_path / "next.pem"
    published.write_bytes(generate_key(13))
    extra = f"dnssec:\n  key: {key}\n  publish: [{published}]"
    config = load_config(str(primary_config(tmp_path, domains(0, 20), extra=extra)))
    index = attach(build_index(config, lambda apex, digest: OLD), config.dnssec, lambda: NOW)
    catalog = next_catalog(None, APEX, index, None, OLD)
    zone = axfr_zone(SignedCatalog(catalog, signer_of(index)))
    check_signed_zone(zone, len(index.zones), NOW)
    node = zone.nodes[ORIGIN]
    for rdtype in (dns.rdatatype.DNSKEY, dns.rdatatype.CDS, dns.rdatatype.CDNSKEY):
        sigs = node.find_rdataset(IN, dns.rdatatype.RRSIG, rdtype)
        assert len(sigs) == 2 and len(node.find_rdataset(IN, rdtype)) == 2
    assert len(node.find_rdataset(IN, dns.rdatatype.RRSIG, dns.rdatatype.SOA)) == 1


# ---------------------------------------------------------------------------------------------
# IXFR


def _delta(old: Index, new: Index) -> ZoneDelta:
    return ZoneDelta(
        tuple(sorted(set(new.zones) - set(old.zones))),
        tuple(sorted(set(old.zones) - set(new.zones))),
        (),
    )


def test_signed_ixfr_applied_to_the_old_axfr_gives_the_new_axfr(tmp_path: Path, key: Path) -> None:
    sets = [
        domains(0, 200),
        domains(0, 200)[7:] + domains(500, 30),  # 7 removed (the first ones), 30 added
        domains(3, 150) + domains(500, 30) + domains(900, 2),  # more of both, and re-added
        domains(3, 150) + domains(500, 30) + domains(900, 3),  # one more
    ]
    catalogs: list[Catalog] = []
    indexes: list[Index] = []
    zones: list[dns.zone.Zone] = []
    for i, names in enumerate(sets):
        index = make_index(tmp_path / str(i), names, key, NOW + 60 * i)
        if not catalogs:
            catalog = next_catalog(None, APEX, index, None, OLD)
        else:
            before = catalogs[-1]
            served = served_serial(before, indexes[-1])
            catalog = next_catalog(before, APEX, index, _delta(indexes[-1], index), OLD, served)
            assert catalog.serial == served + 1  # newer than served, the file time is older
        catalogs.append(catalog)
        indexes.append(index)
        zones.append(axfr_zone(SignedCatalog(catalog, signer_of(index))))
    current = SignedCatalog(catalogs[-1], signer_of(indexes[-1]))
    for i in range(len(sets) - 1):
        client = served_serial(catalogs[i], indexes[i])
        old = current.client_version(client)
        assert old == catalogs[i].serial
        wires = messages(current.ixfr(old), IXFR)
        zone = zones[i]
        transfer(zone, wires, IXFR, client)
        assert records_of(zone) == records_of(zones[-1])
        check_signed_zone(zone, len(indexes[-1].zones), NOW)
    # one member more: its PTR and NSEC, its predecessor's NSEC, the SOAs, all signed
    ixfr = [r for r in current.ixfr(catalogs[-2].serial) if r is not None]
    types = [t for _, t, _, _ in ixfr]
    assert types.count(12) == 1 and types.count(47) == 3 and types.count(6) == 4  # PTR NSEC SOA
    assert len(ixfr) == 4 + 2 + 2 * 4


def test_a_client_of_an_earlier_window_gets_the_axfr_form(tmp_path: Path, key: Path) -> None:
    first = make_index(tmp_path / "a", domains(0, 30), key)
    one = next_catalog(None, APEX, first, None, OLD)
    client = served_serial(one, first)
    second = make_index(tmp_path / "b", domains(0, 31), key)
    two = next_catalog(one, APEX, second, _delta(first, second), OLD, client)
    assert SignedCatalog(two, signer_of(second)).client_version(client) == one.serial
    refresh = signer_of(second).refresh
    later = make_index(tmp_path / "b", domains(0, 31), key, NOW + refresh)
    moved = SignedCatalog(two, signer_of(later))
    assert moved.serial == signer_of(later).window(APEX).start > client
    assert moved.client_version(client) is None  # its signatures are all new
    assert moved.client_version(moved.serial) is None
    assert moved.client_version(12345) is None


def test_changed_signing_parameters_drop_the_history(tmp_path: Path, key: Path) -> None:
    first = make_index(tmp_path / "a", domains(0, 10), key)
    one = next_catalog(None, APEX, first, None, OLD)
    (tmp_path / "b").mkdir()
    extra = f"dnssec:\n  key: {key}\n  lifetime: 20d"
    config = load_config(str(primary_config(tmp_path / "b", domains(0, 11), extra=extra)))
    second = attach(build_index(config, lambda apex, digest: OLD), config.dnssec, lambda: NOW)
    two = next_catalog(one, APEX, second, _delta(first, second), OLD, served_serial(one, first))
    assert two.history == ()


# ---------------------------------------------------------------------------------------------
# Queries


def ask(index: Index, name: str, rtype: str, do: bool = True, **kw: object) -> dns.message.Message:
    query = dns.message.make_query(name, rtype, want_dnssec=do, **kw)  # type: ignore[arg-type]
    reply = answer(query.to_wire(), index, random.Random(1), True)
    assert reply is not None
    return dns.message.from_wire(reply)


QUESTIONS = [
    ("", "SOA"),
    ("", "NS"),
    ("", "DNSKEY"),
    ("", "CDS"),
    ("", "CDNSKEY"),
    ("", "NSEC"),
    ("", "ANY"),
    ("", "A"),
    ("", "TXT"),
    ("version.", "TXT"),
    ("version.", "A"),
    ("version.", "NSEC"),
    ("zones.", "A"),
    ("zones.", "PTR"),
    ("nothing.", "A"),
    ("a.", "SOA"),
    ("x.version.", "TXT"),
    ("zz.", "A"),
    ("zzz.yyy.", "A"),
    ("version2.", "A"),
]


@pytest.fixture(scope="module")
def signed_index(tmp_path_factory: pytest.TempPathFactory, key: Path) -> Index:
    index = make_index(tmp_path_factory.mktemp("q"), domains(0, 40), key)
    index.catalog = next_catalog(None, APEX, index, None, OLD)
    return index


@pytest.mark.parametrize(("prefix", "rtype"), QUESTIONS)
def test_signed_answers_validate_and_prove_denials(
    signed_index: Index, prefix: str, rtype: str
) -> None:
    keys = {ORIGIN: ask(signed_index, CATALOG, "DNSKEY").answer[0]}
    name = dns.name.from_text(prefix + CATALOG)
    reply = ask(signed_index, name.to_text(), rtype)
    assert reply.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)
    assert validate_message(reply, keys, NOW) >= 1
    if not reply.answer:
        check_denial(reply, name, dns.rdatatype.from_text(rtype))
    else:
        assert reply.answer[0].name == name
    if prefix in ("nothing.", "a.", "zz.", "zzz.yyy.", "x.version.", "version2."):
        assert reply.rcode() == dns.rcode.NXDOMAIN
    for rrset in reply.answer + reply.authority:
        if rrset.rdtype == dns.rdatatype.SOA:
            assert rrset[0].serial == signer_of(signed_index).window(APEX).start


def test_a_query_for_rrsig_gets_every_rrsig_at_the_name(signed_index: Index) -> None:
    reply = ask(signed_index, CATALOG, "RRSIG", do=False)
    covered = {rdata.type_covered for rrset in reply.answer for rdata in rrset}
    assert covered == {
        dns.rdatatype.SOA,
        dns.rdatatype.NS,
        dns.rdatatype.DNSKEY,
        dns.rdatatype.CDS,
        dns.rdatatype.CDNSKEY,
        dns.rdatatype.NSEC,
    }
    reply = ask(signed_index, f"version.{CATALOG}", "RRSIG")
    covered = {rdata.type_covered for rrset in reply.answer for rdata in rrset}
    assert covered == {dns.rdatatype.TXT, dns.rdatatype.NSEC}


def test_member_names_stay_refused(signed_index: Index) -> None:
    assert signed_index.catalog is not None
    member = next(iter(signed_index.zones))
    name = f"{member_label(member)[1:].decode()}.zones.{CATALOG}"
    for rtype in ("PTR", "NSEC", "RRSIG", "A"):
        for do in (True, False):
            reply = ask(signed_index, name, rtype, do=do)
            assert reply.rcode() == dns.rcode.REFUSED and not reply.answer
    reply = ask(signed_index, f"nothing.zones.{CATALOG}", "A")
    assert reply.rcode() == dns.rcode.REFUSED


def test_a_signed_answer_too_big_for_udp_is_truncated(signed_index: Index) -> None:
    query = dns.message.make_query(f"zz.{CATALOG}", "A", want_dnssec=True, payload=512)
    reply = answer(query.to_wire(), signed_index, random.Random(1), False)
    assert reply is not None and len(reply) <= 512
    message = dns.message.from_wire(reply)
    assert message.flags & 0x0200 and not message.authority


def test_do0_answers_are_the_unsigned_ones_with_the_moved_serial(
    tmp_path: Path, signed_index: Index
) -> None:
    unsigned = make_index(tmp_path, domains(0, 40), None)
    assert signed_index.catalog is not None
    served = served_serial(signed_index.catalog, signed_index)
    unsigned.catalog = Catalog(APEX, served, unsigned)
    names = [prefix + CATALOG for prefix, _ in QUESTIONS]
    member = next(iter(signed_index.zones))
    names.append(f"{member_label(member)[1:].decode()}.zones.{CATALOG}")
    compared = 0
    for name in names:
        for rtype in ("SOA", "NS", "TXT", "A", "PTR", "ANY"):
            for kw in ({}, {"use_edns": 0}, {"use_edns": 0, "payload": 4096}):
                for qclass in ("IN", "ANY"):
                    query = dns.message.make_query(name, rtype, qclass, **kw)  # type: ignore[arg-type]
                    query.id = 99
                    wire = query.to_wire()
                    signed = answer(wire, signed_index, random.Random(1), False)
                    plain = answer(wire, unsigned, random.Random(1), False)
                    assert signed == plain, (name, rtype, kw, qclass)
                    compared += 1
    assert compared > 300


def test_do0_dnssec_types_are_answered_without_rrsigs(signed_index: Index) -> None:
    reply = ask(signed_index, CATALOG, "DNSKEY", do=False)
    assert [r.rdtype for r in reply.answer] == [dns.rdatatype.DNSKEY]
    reply = ask(signed_index, f"version.{CATALOG}", "DNSKEY", do=False)
    assert not reply.answer and [r.rdtype for r in reply.authority] == [dns.rdatatype.SOA]


# ---------------------------------------------------------------------------------------------
# Export


def test_the_signed_export_reads_back_as_the_axfr(tmp_path: Path, key: Path) -> None:
    index = make_index(tmp_path, domains(0, 60), key)
    catalog = next_catalog(None, APEX, index, None, OLD)
    text = "".join(catalog_lines(catalog, index))
    exported = dns.zone.from_text(text, ORIGIN, relativize=False)
    signed = SignedCatalog(catalog, signer_of(index))
    assert records_of(exported) == records_of(axfr_zone(signed))
    check_signed_zone(exported, len(index.zones), NOW)


# ---------------------------------------------------------------------------------------------
# The served serial: reloads, NOTIFY, the workers' snapshot


def test_notify_and_the_next_serial_follow_the_served_serial(tmp_path: Path, key: Path) -> None:
    from srvd.server.loading import Built, Changes
    from srvd.server.responder import Responder
    from srvd.xfr.transfer import Transfers

    def built(names: list[str], clock: float, where: str) -> tuple[Built, Index]:
        index = make_index(tmp_path / where, names, key, clock)
        config = load_config(str(tmp_path / where / "srvd.yaml"))
        config = dataclasses.replace(config, mtime=OLD)  # files older than the window
        return Built(config, index, Changes((0, 0, 0), ([], [], [])), 0.0), index

    class Recorder:
        def __init__(self) -> None:
            self.first: list[list[bytes]] = []

        def configure(self, settings: object) -> None:
            pass

        def enqueue(self, apexes: list[bytes], first: list[bytes] | None = None) -> None:
            self.first.append(list(first or []))

    start, index = built(domains(0, 5), NOW, "a")
    role = Transfers(start.config, Responder(index))
    recorder = role.notify = Recorder()
    assert index.catalog is not None
    served = served_serial(index.catalog, index)
    assert served == signer_of(index).window(APEX).start  # moved: the files are older

    def reload(names: list[str], clock: float, where: str) -> Index:
        nonlocal index
        new, new_index = built(names, clock, where)
        changes = Changes((0, 0, 0), ([], [], []), _delta(index, new_index))
        role.before_publish(dataclasses.replace(new, changes=changes))
        role.responder.index = index = new_index
        return new_index

    reload(domains(0, 5), NOW + 60, "b")  # nothing changed, the same window: no NOTIFY
    assert recorder.first[-1:] in ([], [[]])
    grown = reload(domains(0, 6), NOW + 120, "c")  # a member more
    assert grown.catalog is not None
    assert grown.catalog.serial == served + 1  # newer than served, though the files are older
    assert recorder.first[-1] == [APEX] and served_serial(grown.catalog, grown) == served + 1
    refresh = signer_of(grown).refresh
    moved = reload(domains(0, 6), NOW + refresh, "c")  # the window moved: a new served serial
    assert moved.catalog is not None and moved.catalog.serial == served + 1
    assert recorder.first[-1] == [APEX]
    assert served_serial(moved.catalog, moved) == signer_of(moved).window(APEX).start


def test_the_workers_snapshot_leaves_the_order_behind(tmp_path: Path, key: Path) -> None:
    index = make_index(tmp_path, domains(0, 5), key)
    catalog = next_catalog(None, APEX, index, None, OLD)
    SignedCatalog(catalog, signer_of(index)).order.finish()
    assert catalog.signing is not None
    copy = pickle.loads(pickle.dumps(catalog))
    assert copy.signing is None and copy.serial == catalog.serial
    assert copy.history == catalog.history and set(copy.zones) == set(catalog.zones)
