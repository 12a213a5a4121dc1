"""srvd's own sockets: IPv6-only, shared ports for workers, large UDP buffers."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from srvd.config import ConfigError, Endpoint, UdpSettings, load_config
from srvd.service import bind_pair

from conftest import EXAMPLE


def test_udp_buffers_are_configurable(tmp_path: Path) -> None:
    path = tmp_path / "srvd.yaml"
    path.write_text(EXAMPLE.read_text() + "udp: {receive_buffer: 1048576, send_buffer: 524288}\n")
    assert load_config(path).udp == UdpSettings(1048576, 524288)
    assert load_config(EXAMPLE).udp == UdpSettings()  # 4 MiB each by default
    path.write_text(EXAMPLE.read_text() + "udp: {receive_buffer: 12, sendbuffer: 1}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    keys = {problem.key for problem in caught.value.problems}
    assert keys == {"udp.receive_buffer", "udp.sendbuffer"}


def test_the_udp_socket_gets_a_large_receive_buffer() -> None:
    udp, tcp = bind_pair(Endpoint("127.0.0.1", 0), buffers=UdpSettings(1 << 20, 1 << 20))
    try:
        # as root the FORCE variant passes net.core.rmem_max; otherwise the kernel's cap applies
        with open("/proc/sys/net/core/rmem_max") as handle:
            cap = int(handle.read())
        got = udp.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
        assert got >= min(1 << 20, cap)
        assert tcp.getsockname()[1] == udp.getsockname()[1]
    finally:
        udp.close()
        tcp.close()


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_ipv6_sockets_are_ipv6_only_so_both_wildcards_can_be_bound() -> None:
    try:
        v6 = bind_pair(Endpoint("::1", 0))
    except OSError:
        pytest.skip("no ::1 here")
    try:
        for sock in v6:
            assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    finally:
        for sock in v6:
            sock.close()


def test_workers_share_a_port_with_so_reuseport() -> None:
    first = bind_pair(Endpoint("127.0.0.1", 0), shared=True)
    port = first[0].getsockname()[1]
    try:
        second = bind_pair(Endpoint("127.0.0.1", port), shared=True)
        for sock in second:
            sock.close()
        with pytest.raises(OSError):
            bind_pair(Endpoint("127.0.0.1", port))  # without it, the port is taken
    finally:
        for sock in first:
            sock.close()
