"""The Linux backend against real sockets on 127.0.0.1 and ::1, on leased ports.

Tests run under xdist next to other workers that open and close sockets of their own, so every
assertion looks only at the sockets this test opened (by inode, or by the exact endpoint).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator

import pytest

if not sys.platform.startswith("linux"):
    pytest.skip("Linux-only backend", allow_module_level=True)

from portinspect import _linux
from portinspect._linux import list_sockets
from portinspect.models import Family, Proto, Socket

from .support import endpoint_of, forked_holders, has_ipv6, lease_port, same_socket

ALL = frozenset(Proto)
TCP = frozenset({Proto.TCP})


HOSTS = [("127.0.0.1", Family.IPV4)]
if has_ipv6():
    HOSTS.append(("::1", Family.IPV6))


@pytest.fixture
def opened() -> Iterator[list[socket.socket]]:
    """Sockets made by a test, closed afterwards whatever happens."""
    socks: list[socket.socket] = []
    yield socks
    for s in socks:
        s.close()


def _tcp_listener(socks: list[socket.socket], host: str = "127.0.0.1") -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    socks.append(s)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # see tests/support.py
    s.bind((host, lease_port()))
    s.listen()
    return s


def _udp_bound(socks: list[socket.socket], host: str = "127.0.0.1") -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    socks.append(s)
    s.bind((host, lease_port()))
    return s


def _port(s: socket.socket) -> int:
    port: int = s.getsockname()[1]
    return port


def _inode(s: socket.socket) -> int:
    return os.fstat(s.fileno()).st_ino


def _by_inode(sockets: list[Socket]) -> dict[int | None, Socket]:
    return {s.inode: s for s in sockets}


def _key(s: Socket) -> tuple[object, ...]:
    return (s.proto, s.family, s.address, s.port, s.uid, s.inode, s.pids)


# --- what is listed, what is not ---------------------------------------------------------


@pytest.mark.parametrize(("host", "family"), HOSTS, ids=[h[0] for h in HOSTS])
def test_tcp_listener_is_listed_with_its_facts(opened, host, family):
    srv = _tcp_listener(opened, host)
    sockets, _ = list_sockets(ALL)
    found = _by_inode(sockets)[_inode(srv)]
    assert found == Socket(
        proto=Proto.TCP,
        family=family,
        address=host,
        port=_port(srv),
        uid=os.geteuid(),
        inode=_inode(srv),
        pids=(os.getpid(),),
    )


def test_connected_established_and_bound_only_sockets_are_not_listed(opened):
    srv = _tcp_listener(opened)
    client = socket.create_connection(srv.getsockname())
    opened.append(client)
    accepted, _ = srv.accept()
    opened.append(accepted)
    bound_only = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    opened.append(bound_only)
    bound_only.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    bound_only.bind(("127.0.0.1", lease_port()))
    udp_peer = _udp_bound(opened)
    udp_connected = _udp_bound(opened)
    udp_connected.connect(udp_peer.getsockname())

    sockets, _ = list_sockets(ALL)

    inodes = _by_inode(sockets)
    assert _inode(srv) in inodes
    for s in (client, accepted, bound_only, udp_connected):
        assert _inode(s) not in inodes
    # The accepted socket has the listener's address, family, protocol and port: only the
    # listener may be listed with them.
    assert [s.inode for s in same_socket(sockets, endpoint_of(srv))] == [_inode(srv)]
    assert same_socket(sockets, endpoint_of(bound_only)) == []


@pytest.mark.parametrize(("host", "family"), HOSTS, ids=[h[0] for h in HOSTS])
def test_bound_udp_socket_is_listed_as_udp(opened, host, family):
    udp = _udp_bound(opened, host)
    sockets, _ = list_sockets(ALL)
    found = _by_inode(sockets)[_inode(udp)]
    assert (found.proto, found.family, found.address, found.port, found.pids) == (
        Proto.UDP,
        family,
        host,
        _port(udp),
        (os.getpid(),),
    )
    assert _inode(udp) not in _by_inode(list_sockets(TCP)[0])


def test_socket_shared_with_a_forked_child_lists_both_pids(opened):
    srv = _tcp_listener(opened)
    with forked_holders() as [child]:
        sockets, _ = list_sockets(ALL)
        assert _by_inode(sockets)[_inode(srv)].pids == tuple(sorted((os.getpid(), child)))


# --- netlink and /proc/net agree ----------------------------------------------------------


def _mixed_sockets(socks: list[socket.socket]) -> list[socket.socket]:
    """A TCP listener and a bound UDP socket on each loopback address."""
    for host, _ in HOSTS:
        _tcp_listener(socks, host)
        _udp_bound(socks, host)
    return socks


def _mine(sockets: list[Socket], socks: list[socket.socket]) -> list[Socket]:
    return [s for sock in socks for s in same_socket(sockets, endpoint_of(sock))]


def test_netlink_and_procfs_paths_agree(opened):
    socks = _mixed_sockets(opened)
    with forked_holders():
        via_netlink = _linux._with_holders(_linux._sockets_from_netlink(ALL), None)[0]
        via_procfs = _linux._with_holders(_linux._sockets_from_procfs(ALL), None)[0]

    mine_nl = {_key(s) for s in _mine(via_netlink, socks)}
    mine_proc = {_key(s) for s in _mine(via_procfs, socks)}
    assert len(mine_nl) == 2 * len(HOSTS)
    assert mine_nl == mine_proc
    assert all(len(s.pids) == 2 for s in _mine(via_netlink, socks))


def test_netlink_failure_falls_back_to_procfs(opened, monkeypatch):
    srv = _tcp_listener(opened)
    udp = _udp_bound(opened)
    expected = list_sockets(ALL, frozenset({_port(srv), _port(udp)}))

    def refuse() -> socket.socket:
        raise OSError(errno.EPROTONOSUPPORT, "no sock_diag")

    monkeypatch.setattr(_linux, "_netlink_socket", refuse)
    assert list_sockets(ALL, frozenset({_port(srv), _port(udp)})) == expected


def test_one_failing_dump_falls_back_for_that_file_only(opened, monkeypatch):
    udp = _udp_bound(opened)
    srv = _tcp_listener(opened)
    real_dump = _linux._dump
    calls = []

    def dump_without_udp_diag(sock, proto, af, family):
        calls.append(proto)
        if proto is Proto.UDP:  # what a kernel without udp_diag answers
            raise OSError(errno.ENOENT, "no udp_diag")
        return real_dump(sock, proto, af, family)

    monkeypatch.setattr(_linux, "_dump", dump_without_udp_diag)
    sockets, _ = list_sockets(ALL)
    assert {_inode(srv), _inode(udp)} <= set(_by_inode(sockets))
    assert Proto.TCP in calls


# --- the port-filtered walk ----------------------------------------------------------------


def test_port_filter_returns_only_those_ports_and_every_holder(opened):
    shared = _tcp_listener(opened)
    other = _tcp_listener(opened)
    udp = _udp_bound(opened)
    with forked_holders() as [child]:
        sockets, hidden = list_sockets(ALL, frozenset({_port(shared), _port(udp)}))
    assert {s.port for s in sockets} <= {_port(shared), _port(udp)}
    assert _inode(other) not in _by_inode(sockets)
    both = tuple(sorted((os.getpid(), child)))
    assert _by_inode(sockets)[_inode(shared)].pids == both
    assert _by_inode(sockets)[_inode(udp)].pids == both
    assert hidden is False


def test_early_exit_finds_the_parent_when_the_child_is_found_first(opened, monkeypatch):
    """Walk the child first: the walk stops early, yet the relatives check finds the parent."""
    srv = _tcp_listener(opened)
    real_pids = _linux._pids
    real_scan = _linux._Walk.scan
    scanned: list[int] = []

    def scan(walk, pid):
        scanned.append(pid)
        return real_scan(walk, pid)

    with forked_holders() as [child]:
        monkeypatch.setattr(
            _linux, "_pids", lambda: [child] + [p for p in real_pids() if p != child]
        )
        monkeypatch.setattr(_linux._Walk, "scan", scan)
        sockets, _ = list_sockets(TCP, frozenset({_port(srv)}))
        everyone = real_pids()
    assert [s.pids for s in same_socket(sockets, endpoint_of(srv))] == [
        tuple(sorted((os.getpid(), child)))
    ]
    # Kernel threads (children of kthreadd) and unrelated daemons are never looked at.
    assert len(set(scanned)) < len(everyone)


def test_early_exit_finds_siblings_through_a_parent_that_closed_the_socket(opened):
    """Holders related only through a non-holding parent (it forked them, then closed it)."""
    srv = _tcp_listener(opened)
    port, inode, where = _port(srv), _inode(srv), endpoint_of(srv)
    with forked_holders() as [first], forked_holders() as [second]:
        srv.close()
        sockets, hidden = list_sockets(TCP, frozenset({port}))
    found = [(s.inode, s.pids) for s in same_socket(sockets, where)]
    assert found == [(inode, tuple(sorted((first, second))))]
    assert hidden is False


# --- agreement with ss ---------------------------------------------------------------------


def _ss_sockets(ports: set[int]) -> set[tuple[object, ...]]:
    """(proto, address, port, pids) of what ss lists on these ports."""
    out = subprocess.run(
        ["/usr/bin/ss", "-Hltunp"], capture_output=True, text=True, check=True
    ).stdout
    found: set[tuple[object, ...]] = set()
    for line in out.splitlines():
        fields = line.split(None, 6)
        netid, state, local = fields[0], fields[1], fields[4]
        if (netid, state) not in (("tcp", "LISTEN"), ("udp", "UNCONN")):
            continue  # newer kernels dump bound-only TCP sockets too when asked for CLOSE
        host, _, port = local.rpartition(":")
        if int(port) not in ports:
            continue
        host = host.split("%")[0].strip("[]")
        users = fields[6] if len(fields) > 6 else ""
        pids = tuple(sorted({int(p) for p in _pid_fields(users)}))
        found.add((Proto(netid), host, int(port), pids))
    return found


def _pid_fields(users: str) -> list[str]:
    return [part.split(",")[0] for part in users.split("pid=")[1:]]


@pytest.mark.skipif(not shutil.which("ss", path="/usr/bin"), reason="needs /usr/bin/ss")
def test_agrees_with_ss(opened):
    socks = _mixed_sockets(opened)
    wanted = {(Proto(e.proto), e.address, e.port) for e in map(endpoint_of, socks)}
    with forked_holders():
        ours = {(s.proto, s.address, s.port, s.pids) for s in _mine(list_sockets(ALL)[0], socks)}
        theirs = {s for s in _ss_sockets({e[2] for e in wanted}) if s[:3] in wanted}
    assert len(ours) == 2 * len(HOSTS)
    assert ours == theirs


# --- an unprivileged caller ----------------------------------------------------------------


@pytest.mark.unprivileged
@pytest.mark.skipif(os.geteuid() != 0, reason="drops to nobody in a child: needs root")
def test_unprivileged_caller_sees_the_socket_but_not_its_owner(opened):
    srv = _tcp_listener(opened)
    port, where = _port(srv), endpoint_of(srv)
    nobody = pwd.getpwnam("nobody")
    r, w = os.pipe()
    # Everything the child runs is imported already: after setuid it may not be allowed to
    # read the venv (a root-only home directory).
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            srv.close()  # the child would otherwise be a holder it can see: itself
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            found = []
            for source in (_linux._sockets, _linux._sockets_from_procfs):
                sockets, hidden = _linux._with_holders(source(TCP), frozenset({port}))
                mine = same_socket(sockets, where)
                found.append(
                    {"hidden": hidden, "sockets": [[s.uid, s.inode, list(s.pids)] for s in mine]}
                )
            payload = json.dumps({"uid": os.getuid(), "found": found}).encode()
        except BaseException as exc:  # report, never return into pytest from a forked child
            payload = json.dumps({"error": repr(exc)}).encode()
        finally:
            try:
                os.write(w, payload)
            finally:
                os._exit(0)
    os.close(w)
    try:
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
    finally:
        os.close(r)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    result = json.loads(b"".join(chunks))
    assert "error" not in result, result
    assert result["uid"] == nobody.pw_uid
    expected = {"hidden": True, "sockets": [[0, _inode(srv), []]]}
    assert result["found"] == [expected, expected]


# --- parsing, without the kernel ------------------------------------------------------------


def _hex_v4(addr: str) -> str:
    return f"{struct.unpack('=I', socket.inet_pton(socket.AF_INET, addr))[0]:08X}"


def _hex_v6(addr: str) -> str:
    words = struct.unpack("=4I", socket.inet_pton(socket.AF_INET6, addr))
    return "".join(f"{w:08X}" for w in words)


def _proc_line(n: int, local: str, remote: str, state: str, uid: int, inode: int) -> str:
    return (
        f"{n:4d}: {local} {remote} {state} 00000000:00000000 00:00000000 00000000 "
        f"{uid:5d}        0 {inode} 1 0000000000000000 100 0 0 10 0"
    )


def test_procfs_text_decodes_v6_wildcard_and_mapped_addresses():
    header = "  sl  local_address                         remote_address  st ..."
    zero = "0" * 32 + ":0000"
    lines = [
        header,
        _proc_line(0, _hex_v6("::") + ":1F90", zero, "0A", 0, 101),
        _proc_line(1, _hex_v6("::ffff:127.0.0.1") + ":0050", zero, "0A", 1000, 102),
        _proc_line(2, _hex_v6("::1") + ":1F90", _hex_v6("::1") + ":D431", "01", 0, 103),
        # Not LISTEN, though " 0A " appears in a later column: the state column decides.
        _proc_line(3, _hex_v6("::1") + ":0016", zero, "07", 0, 104).replace(" 100 ", " 0A "),
    ]
    parsed = _linux._parse_proc_net_text("\n".join(lines).encode(), Proto.TCP, Family.IPV6)
    assert parsed == [
        (Proto.TCP, Family.IPV6, "::", 8080, 0, 101),
        (Proto.TCP, Family.IPV6, "::ffff:127.0.0.1", 80, 1000, 102),
    ]


def test_procfs_text_keeps_only_unconnected_udp():
    zero = "00000000:0000"
    lines = [
        _proc_line(0, _hex_v4("127.0.0.1") + ":0035", zero, "07", 0, 201),
        _proc_line(1, _hex_v4("127.0.0.1") + ":0036", _hex_v4("127.0.0.1") + ":0035", "01", 0, 202),
        _proc_line(2, _hex_v4("0.0.0.0") + ":0044", zero, "07", 0, 0),
    ]
    parsed = _linux._parse_proc_net_text("\n".join(lines).encode(), Proto.UDP, Family.IPV4)
    assert parsed == [
        (Proto.UDP, Family.IPV4, "127.0.0.1", 53, 0, 201),
        (Proto.UDP, Family.IPV4, "0.0.0.0", 68, 0, None),
    ]


class _FakeNetlink:
    """Answers a dump with canned datagrams."""

    def __init__(self, datagrams: list[bytes]) -> None:
        self.datagrams = datagrams
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)

    def recv_into(self, buf: bytearray, nbytes: int = 0, flags: int = 0) -> int:
        data = self.datagrams.pop(0)
        buf[: len(data)] = data
        return len(data)


def _nlmsg(kind: int, seq: int, payload: bytes) -> bytes:
    msg = struct.pack("=IHHII", 16 + len(payload), kind, 2, seq, 0) + payload
    return msg + b"\0" * (-len(msg) % 4)


def _diag(port: int, addr: str, uid: int, inode: int, *, dport: int = 0, state: int = 10) -> bytes:
    src = socket.inet_pton(socket.AF_INET, addr).ljust(16, b"\0")
    sockid = struct.pack("!HH", port, dport) + src + b"\0" * 16 + b"\0" * 12
    return (
        struct.pack("=BBBB", socket.AF_INET, state, 0, 0)
        + sockid
        + struct.pack("=IIIII", 0, 0, 0, uid, inode)
    )


def test_netlink_dump_reads_multipart_answers_until_done():
    seq = socket.AF_INET << 8 | 6
    fake = _FakeNetlink(
        [
            _nlmsg(20, seq, _diag(8000, "127.0.0.1", 0, 11))
            + _nlmsg(20, seq, _diag(8001, "127.0.0.1", 1000, 12, dport=443)),
            _nlmsg(20, seq, _diag(8002, "0.0.0.0", 33, 13)) + _nlmsg(3, seq, struct.pack("=i", 0)),
        ]
    )
    entries = _linux._dump(fake, Proto.TCP, socket.AF_INET, Family.IPV4)  # type: ignore[arg-type]
    assert entries == [
        (Proto.TCP, Family.IPV4, "127.0.0.1", 8000, 0, 11),
        (Proto.TCP, Family.IPV4, "0.0.0.0", 8002, 33, 13),
    ]
    # inet_diag_req_v2 asks for TCP LISTEN only.
    (request,) = fake.sent
    assert struct.unpack_from("=BBBxI", request, 16) == (socket.AF_INET, 6, 0, 1 << 10)


@pytest.mark.parametrize("kind", [2, 3], ids=["NLMSG_ERROR", "NLMSG_DONE"])
def test_netlink_errors_become_oserror(kind):
    seq = socket.AF_INET << 8 | 17
    fake = _FakeNetlink([_nlmsg(kind, seq, struct.pack("=i", -errno.ENOENT))])
    with pytest.raises(OSError) as info:
        _linux._dump(fake, Proto.UDP, socket.AF_INET, Family.IPV4)  # type: ignore[arg-type]
    assert info.value.errno == errno.ENOENT
