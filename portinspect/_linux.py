"""The fast Linux backend: netlink sock_diag for the sockets, a lean /proc walk for their holders.

Measured on a 2-vCPU VM (research/perf.md): a LISTEN-only netlink dump costs 0.07 ms idle and
1.6 us per listener whatever the number of established connections, while /proc/net/tcp{,6}
costs a fixed ~6.6 ms (the kernel formats every socket, walking all ehash buckets) plus ~2 us per
socket. The kernel has no socket -> pid index, so the /proc/*/fd walk (~4 us per fd) is 80-93 %
of the work; it only looks for the inodes we want, runs on up to one thread per CPU (readlink
releases the GIL), and stops early when ports are given. The holders' details (ProcessReader)
are read from /proc as psutil reports them, at a fifth of psutil's cost per process.

Stdlib only, and `_socket` rather than `socket`: `import socket` costs ~7 ms of start-up
(enum, selectors) and netlink needs none of it. psutil is deliberately not imported here.
"""

from __future__ import annotations

import _socket
import errno
import functools
import os
import struct
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from portinspect import models
from portinspect.models import Family, Proto

if TYPE_CHECKING:
    from portinspect.models import InterfaceAddress, ProcessInfo, Socket

# Turns the marker variables read from a process's environment into what may be kept (a token
# becomes "set" or "empty"): applied as each environment is parsed, before anything else sees it.
EnvReducer = Callable[[dict[str, str]], dict[str, str]]

# (proto, family, address, port, uid, inode): a socket before we know its holders.
_Entry = tuple[Proto, Family, str, int, int, int | None]

_AF_INET = _socket.AF_INET
_AF_INET6 = _socket.AF_INET6
_FAMILIES = ((_AF_INET, Family.IPV4), (_AF_INET6, Family.IPV6))
_IPPROTO = {Proto.TCP: 6, Proto.UDP: 17}

# Kernel socket states (include/net/tcp_states.h). An unconnected bound UDP socket is in
# TCP_CLOSE; a connected one is TCP_ESTABLISHED.
_TCP_LISTEN = 10
_TCP_CLOSE = 7
_WANTED_STATE = {Proto.TCP: _TCP_LISTEN, Proto.UDP: _TCP_CLOSE}
# Linux 6.8 (commit 91051f003948) lets a TCP dump ask for sockets that are bound and neither
# listening nor connected: the pseudo-state TCP_BOUND_INACTIVE. The kernel then walks its bind
# hash, and reports such a socket with state TCP_CLOSE (6.8-6.18 measured: 7, never 13). Older
# kernels ignore the bit, but walk the established hash for it: it is only asked for from 6.8.
_TCP_BOUND_INACTIVE = 13
_BOUND_SINCE = (6, 8)

# --- netlink sock_diag (linux/netlink.h, linux/sock_diag.h, linux/inet_diag.h) ---------------
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 0x1
_NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_MSG_TRUNC = 0x20

_NLMSG_HDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
# nlmsghdr + inet_diag_req_v2: family, protocol, ext, pad, states, then a zeroed
# inet_diag_sockid (48 bytes): no address filter, we filter ports ourselves.
_REQUEST = struct.Struct("=IHHII BBBx I 48x")
# inet_diag_msg: family, state, timer, retrans, id{sport, dport (big-endian), src[16], dst[16],
# if, cookie[2]}, expires, rqueue, wqueue, uid, inode.
_DIAG_MSG = struct.Struct("=BB2x2s2s16s40xII")
_ERRNO = struct.Struct("=i")
_NO_PORT = b"\0\0"
_RTATTR = struct.Struct("=HH")  # len, type
_INET_DIAG_SKV6ONLY = 11

# --- netlink route (linux/rtnetlink.h, linux/if_addr.h): the interfaces' addresses ---------
_NETLINK_ROUTE = 0
_RTM_NEWADDR = 20
_RTM_GETADDR = 22
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
# nlmsghdr + an ifaddrmsg of family AF_UNSPEC: every address of every family.
_ADDR_REQUEST = struct.Struct("=IHHII B7x")
_IFA_ADDRESS = 1
_IFA_LOCAL = 2
_IFA_LABEL = 3

# A dump skb is capped at 32 KiB by the kernel (netlink_dump); twice that never truncates,
# and MSG_TRUNC would tell us if it did.
_RECV_BUFFER = 1 << 16
# A dump answers in milliseconds; a stuck one must not hang a CLI. procfs takes over.
_NETLINK_TIMEOUT = 5.0

# --- /proc --------------------------------------------------------------------------------
_PROC_NET_FILES = {
    (Proto.TCP, Family.IPV4): "/proc/net/tcp",
    (Proto.TCP, Family.IPV6): "/proc/net/tcp6",
    (Proto.UDP, Family.IPV4): "/proc/net/udp",
    (Proto.UDP, Family.IPV6): "/proc/net/udp6",
}
_PROC_STATE = {Proto.TCP: b"0A", Proto.UDP: b"07"}
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# What a /proc read may legitimately hit: the process exited (ENOENT, ESRCH), it is not ours
# (EACCES, EPERM), or its pid directory was replaced under us (ENOTDIR). Anything else (EMFILE,
# ENOMEM, EIO) is a real failure and propagates so the caller can fall back to psutil.
_GONE_OR_HIDDEN = (FileNotFoundError, ProcessLookupError, PermissionError, NotADirectoryError)


def list_sockets(
    protos: frozenset[Proto], ports: frozenset[int] | None = None
) -> tuple[list[Socket], bool]:
    """Every listening TCP socket and every unconnected bound UDP socket, IPv4 and IPv6.

    With `ports`, only sockets whose local port is in it. Each Socket carries its uid and
    inode as the kernel reports them, and the pids of EVERY process holding it, lowest first
    (a gunicorn master and its two workers give three pids).

    Returns (sockets, owners_hidden). owners_hidden is True when some socket has no pids: we
    are not root, /proc is mounted with hidepid, the holder is in another pid namespace, or
    the socket belongs to the kernel. Such a socket still has its uid.
    """
    return _with_holders(_sockets(protos), ports)


def listening_port_numbers(protos: frozenset[Proto]) -> set[int]:
    """The ports that have a listening socket, of any user: no /proc fd walk, no Socket objects.

    For callers that only need to know which ports are taken (`free`). At 5k listeners this
    takes 17 ms where building a Socket per entry and grouping them took 31 ms.
    """
    return {entry[3] for entry in _sockets(protos)}


def can_see_bound_sockets() -> bool:
    """Whether this kernel reports TCP sockets that are bound and not listening (6.8+)."""
    # "6.18.44-fc-v669", "6.8.0-rc1+": the first two numbers.
    major, _, rest = os.uname().release.partition(".")
    minor = rest.split(".", 1)[0].split("-", 1)[0].rstrip("+")
    return major.isdigit() and minor.isdigit() and (int(major), int(minor)) >= _BOUND_SINCE


def taken_port_numbers(protos: frozenset[Proto]) -> tuple[set[int], dict[int, int]]:
    """(ports with a listener, {port: uid} of TCP sockets bound but not listening), any user.

    What `free` must not hand out. A socket bound with SO_REUSEADDR and not listening passes
    a bind probe that sets SO_REUSEADDR too, and its owner may listen on it a moment later:
    only the kernel's table shows it, from Linux 6.8, with the LISTEN walk in the same dump
    (per family 0.03 ms idle without it, 0.25-1 ms with it: the kernel walks every bind-hash
    bucket, 64k here, and every bound socket, connected ones too). Netlink only:
    /proc/net/tcp does not list such sockets.
    """
    bound: dict[int, int] = {}
    if Proto.TCP not in protos or not can_see_bound_sockets():
        return listening_port_numbers(protos), bound
    try:
        sock = _netlink_socket()
    except OSError:
        return listening_port_numbers(protos), bound
    entries: list[_Entry] = []
    try:
        for proto in sorted(protos):
            for af, family in _FAMILIES:
                try:
                    if proto is Proto.TCP:
                        entries += _dump(sock, proto, af, family, bound_into=bound)
                    else:
                        entries += _dump(sock, proto, af, family)
                except OSError:
                    entries += _parse_proc_net(proto, family)
    finally:
        sock.close()
    return {entry[3] for entry in entries}, bound


# The kernel's TCP states (include/net/tcp_states.h), for the sockets `who` counts on a port
# nothing listens on.
_TCP_STATE_NAMES = {
    1: "established",
    2: "syn-sent",
    3: "syn-recv",
    4: "fin-wait-1",
    5: "fin-wait-2",
    6: "time-wait",
    7: "close",
    8: "close-wait",
    9: "last-ack",
    11: "closing",
    12: "new-syn-recv",
    13: "bound-inactive",
}
_ALL_BUT_LISTEN = sum(1 << state for state in _TCP_STATE_NAMES)


def local_port_states(port: int) -> dict[str, int]:
    """How many TCP sockets of every user have `port` as their local port, by state, apart
    from listeners: TIME_WAIT, connections, sockets bound without listening (the last only
    from Linux 6.8). One netlink dump per family of every non-listening state: the kernel
    walks its established hash, milliseconds at 30k connections; only `who` on a free port
    asks. Empty where netlink is not allowed."""
    found: dict[str, int] = {}
    try:
        sock = _netlink_socket()
    except OSError:
        return found
    wanted = port.to_bytes(2, "big")
    try:
        for af, _family in _FAMILIES:
            seq = _request_dump(sock, af, Proto.TCP, _ALL_BUT_LISTEN)
            for buf, body, _end in _netlink_messages(
                sock, seq, _SOCK_DIAG_BY_FAMILY, _DIAG_MSG.size
            ):
                msg_family, state, sport, *_ = _DIAG_MSG.unpack_from(buf, body)
                name = _TCP_STATE_NAMES.get(state)
                if msg_family == af and sport == wanted and name is not None:
                    found[name] = found.get(name, 0) + 1
    except OSError:
        return found
    finally:
        sock.close()
    return found


def listening_inodes(protos: frozenset[Proto]) -> list[tuple[int, int | None]]:
    """(port, inode) of every listening socket, of any user: no /proc fd walk."""
    return [(entry[3], entry[5]) for entry in _sockets(protos)]


def _sockets(protos: frozenset[Proto]) -> list[_Entry]:
    """Netlink where it works, /proc/net per (proto, family) where it does not."""
    try:
        sock = _netlink_socket()
    except OSError:  # EPROTONOSUPPORT without sock_diag, EPERM under seccomp...
        return _sockets_from_procfs(protos)
    entries: list[_Entry] = []
    try:
        for proto in sorted(protos):
            for af, family in _FAMILIES:
                try:
                    entries += _dump(sock, proto, af, family)
                except OSError:
                    # udp_diag is a separate module (CONFIG_INET_UDP_DIAG): TCP may work
                    # while UDP answers ENOENT, so fall back for this file only.
                    entries += _parse_proc_net(proto, family)
    finally:
        sock.close()
    return entries


def _sockets_from_netlink(protos: frozenset[Proto]) -> list[_Entry]:
    """Netlink only, raising OSError instead of falling back (tests compare the two paths)."""
    sock = _netlink_socket()
    try:
        return [
            entry
            for proto in sorted(protos)
            for af, family in _FAMILIES
            for entry in _dump(sock, proto, af, family)
        ]
    finally:
        sock.close()


def _sockets_from_procfs(protos: frozenset[Proto]) -> list[_Entry]:
    return [
        entry
        for proto in sorted(protos)
        for _, family in _FAMILIES
        for entry in _parse_proc_net(proto, family)
    ]


def _netlink_socket() -> _socket.socket:
    sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG)
    sock.settimeout(_NETLINK_TIMEOUT)
    return sock


def _dump(
    sock: _socket.socket,
    proto: Proto,
    af: int,
    family: Family,
    bound_into: dict[int, int] | None = None,
) -> list[_Entry]:
    """One SOCK_DIAG_BY_FAMILY dump, filtered by the kernel on the one state we want.

    Only the LISTEN bit for TCP: adding CLOSE (as `ss -l` does) makes the kernel walk the
    whole established hash for nothing (10 ms vs 22 ms at 30k connections, perf.md §7).
    With bound_into (TCP, Linux 6.8+), the bound-but-inactive sockets too: their
    port -> uid goes there, the listeners are returned as usual.
    """
    return [entry for entry, _, _, _ in _diag_messages(sock, proto, af, family, bound_into)]


def _request_dump(sock: _socket.socket, af: int, proto: Proto, states: int) -> int:
    """Ask sock_diag for every socket of one family and protocol in these states (a bit
    mask); the sequence number its answers carry."""
    seq = af << 8 | _IPPROTO[proto]
    sock.send(
        _REQUEST.pack(
            _REQUEST.size,
            _SOCK_DIAG_BY_FAMILY,
            _NLM_F_REQUEST | _NLM_F_DUMP,
            seq,
            0,
            af,
            _IPPROTO[proto],
            0,
            states,
        )
    )
    return seq


def _diag_messages(
    sock: _socket.socket,
    proto: Proto,
    af: int,
    family: Family,
    bound_into: dict[int, int] | None = None,
) -> Iterator[tuple[_Entry, bytearray, int, int]]:
    """Each socket of one dump: its entry, and where its attributes lie in the buffer (valid
    until the next item is taken). Bound-but-inactive sockets go to bound_into, if given."""
    state = _WANTED_STATE[proto]
    states = 1 << state
    if bound_into is not None:
        states |= 1 << _TCP_BOUND_INACTIVE
    seq = _request_dump(sock, af, proto, states)
    for buf, body, end in _netlink_messages(sock, seq, _SOCK_DIAG_BY_FAMILY, _DIAG_MSG.size):
        msg_family, msg_state, sport, dport, src, uid, inode = _DIAG_MSG.unpack_from(buf, body)
        if msg_family == af and msg_state == state and dport == _NO_PORT:
            address = _socket.inet_ntop(af, src if af == _AF_INET6 else src[:4])
            port = int.from_bytes(sport, "big")
            entry = (proto, family, address, port, uid, inode or None)
            yield entry, buf, body + _DIAG_MSG.size, end
        elif (
            bound_into is not None
            and msg_family == af
            and msg_state in (_TCP_CLOSE, _TCP_BOUND_INACTIVE)
            and sport != _NO_PORT
        ):
            bound_into.setdefault(int.from_bytes(sport, "big"), uid)


def _netlink_messages(
    sock: _socket.socket, seq: int, kind: int, minimum: int
) -> Iterator[tuple[bytearray, int, int]]:
    """The messages of type `kind` (at least `minimum` bytes of body) that answer the request
    numbered `seq`, as (buffer, body offset, end offset), until NLMSG_DONE; an error answer
    raises OSError. The buffer is reused: each item is valid until the next is taken."""
    buf = bytearray(_RECV_BUFFER)
    while True:
        size = sock.recv_into(buf, 0, _MSG_TRUNC)
        if size > len(buf):
            raise OSError(errno.EMSGSIZE, "netlink dump message truncated")
        if size == 0:
            raise OSError(errno.EPIPE, "netlink dump ended without NLMSG_DONE")
        offset = 0
        while offset + _NLMSG_HDR.size <= size:
            length, msg_kind, _flags, msg_seq, _pid = _NLMSG_HDR.unpack_from(buf, offset)
            if length < _NLMSG_HDR.size or offset + length > size:
                raise OSError(errno.EBADMSG, "malformed netlink message")
            body = offset + _NLMSG_HDR.size
            if msg_seq != seq:
                pass  # the tail of an earlier dump that timed out on this socket
            elif msg_kind == _NLMSG_DONE:
                # Since 4.x DONE carries the dump's return value; a negative one is an error.
                if length >= _NLMSG_HDR.size + _ERRNO.size:
                    _raise_if_error(_ERRNO.unpack_from(buf, body)[0])
                return
            elif msg_kind == _NLMSG_ERROR:
                _raise_if_error(_ERRNO.unpack_from(buf, body)[0])
            elif msg_kind == kind and length >= _NLMSG_HDR.size + minimum:
                yield buf, body, offset + length
            offset += (length + 3) & ~3  # NLMSG_ALIGN


def _attributes(buf: bytearray, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """The netlink attributes (struct rtattr) in buf[start:end]: (type, data start, data end)."""
    while start + _RTATTR.size <= end:
        length, kind = _RTATTR.unpack_from(buf, start)
        if length < _RTATTR.size or start + length > end:
            return
        yield kind, start + _RTATTR.size, start + length
        start += (length + 3) & ~3  # RTA_ALIGN


def listening_endpoints(
    protos: frozenset[Proto], ports: frozenset[int] | None = None
) -> list[Socket]:
    """Every listening TCP / unconnected UDP socket with its address, and for IPv6 whether it
    is IPv6-only; no holders looked for (`wait` needs where a socket accepts, not who holds it).

    The kernel adds INET_DIAG_SKV6ONLY to every IPv6 socket of a dump (since 4.x): an IPv6
    wildcard without it takes IPv4 connections too, which /proc/net/tcp6 does not show. So
    v6only is None where the dump fails and /proc/net answers instead. With `ports`, only
    sockets on those ports (a wait polls this: no object for the other listeners).
    """

    def mine(entries: Iterable[_Entry]) -> list[Socket]:
        return [_endpoint(e, None) for e in entries if ports is None or e[3] in ports]

    try:
        sock = _netlink_socket()
    except OSError:
        return mine(_sockets_from_procfs(protos))
    found: list[Socket] = []
    try:
        for proto in sorted(protos):
            for af, family in _FAMILIES:
                try:
                    found += [
                        _endpoint(entry, _v6only(buf, start, end) if af == _AF_INET6 else None)
                        for entry, buf, start, end in _diag_messages(sock, proto, af, family)
                        if ports is None or entry[3] in ports
                    ]
                except OSError:  # no udp_diag: this file from /proc/net
                    found += mine(_parse_proc_net(proto, family))
    finally:
        sock.close()
    return found


def _endpoint(entry: _Entry, v6only: bool | None) -> Socket:
    proto, family, address, port, uid, inode = entry
    return models.Socket(proto, family, address, port, uid=uid, inode=inode, v6only=v6only)


def _v6only(buf: bytearray, start: int, end: int) -> bool | None:
    for kind, data, data_end in _attributes(buf, start, end):
        if kind == _INET_DIAG_SKV6ONLY and data_end > data:
            return bool(buf[data])
    return None


def interface_addresses() -> list[InterfaceAddress]:
    """Every address of this machine's interfaces (RTM_GETADDR), loopback's included, with the
    interface it belongs to (IFA_LABEL for IPv4, the interface index's name for IPv6).

    IFA_LOCAL is the address of this end where it differs from IFA_ADDRESS (the peer of a
    point-to-point link), so it wins when both are there.
    """
    sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_DGRAM, _NETLINK_ROUTE)
    sock.settimeout(_NETLINK_TIMEOUT)
    seq = 1
    found: list[InterfaceAddress] = []
    try:
        sock.send(
            _ADDR_REQUEST.pack(
                _ADDR_REQUEST.size, _RTM_GETADDR, _NLM_F_REQUEST | _NLM_F_DUMP, seq, 0, 0
            )
        )
        for buf, body, end in _netlink_messages(sock, seq, _RTM_NEWADDR, _IFADDRMSG.size):
            af, _prefix, _flags, _scope, index = _IFADDRMSG.unpack_from(buf, body)
            size = {_AF_INET: 4, _AF_INET6: 16}.get(af)
            if size is None:
                continue
            attrs: dict[int, bytes] = {}
            for kind, data, data_end in _attributes(buf, body + _IFADDRMSG.size, end):
                if kind in (_IFA_ADDRESS, _IFA_LOCAL) and data_end - data == size:
                    attrs[kind] = bytes(buf[data:data_end])
                elif kind == _IFA_LABEL:
                    attrs[kind] = bytes(buf[data:data_end]).split(b"\0", 1)[0]
            raw = attrs.get(_IFA_LOCAL) or attrs.get(_IFA_ADDRESS)
            if raw is not None:
                address = _socket.inet_ntop(af, raw)
                family = Family.IPV4 if af == _AF_INET else Family.IPV6
                found.append(
                    models.InterfaceAddress(_interface_name(attrs, index), family, address)
                )
    finally:
        sock.close()
    return found


def _interface_name(attrs: dict[int, bytes], index: int) -> str:
    label = attrs.get(_IFA_LABEL, b"").decode(_FS_ENCODING, _FS_ERRORS)
    if label:
        return label
    try:
        return _socket.if_indextoname(index)
    except OSError:  # the interface went away since the dump
        return str(index)


def _raise_if_error(code: int) -> None:
    if code < 0:
        raise OSError(-code, os.strerror(-code))


def _parse_proc_net(proto: Proto, family: Family) -> list[_Entry]:
    """The LISTEN (TCP) or unconnected (UDP) lines of one /proc/net file.

    Only lines holding " 0A " / " 07 " are split, so the Python work is per match, not per
    socket; the fixed cost is the kernel formatting every line (perf.md §5).
    """
    try:
        data = _read(_PROC_NET_FILES[proto, family])
    except FileNotFoundError:  # booted with ipv6.disable=1: no tcp6/udp6
        return []
    return _parse_proc_net_text(data, proto, family)


def _parse_proc_net_text(data: bytes, proto: Proto, family: Family) -> list[_Entry]:
    state = _PROC_STATE[proto]
    needle = b" " + state + b" "
    entries: list[_Entry] = []
    pos = data.find(needle)
    while pos != -1:
        start = data.rfind(b"\n", 0, pos) + 1
        end = data.find(b"\n", pos)
        if end == -1:
            end = len(data)
        # The needle can also match another column, so check the state column itself.
        # sl, local, remote, st, tx:rx, tr:when, retrnsmt, uid, timeout, inode
        fields = data[start:end].split()
        if len(fields) > 9 and fields[3] == state and fields[2].endswith(b":0000"):
            address, _, port = fields[1].partition(b":")
            inode = int(fields[9])
            entries.append(
                (
                    proto,
                    family,
                    _proc_address(address, family),
                    int(port, 16),
                    int(fields[7]),
                    inode or None,
                )
            )
        pos = data.find(needle, end)
    return entries


def _proc_address(hexaddr: bytes, family: Family) -> str:
    # The kernel prints each 32-bit word of the network-order address as a host-order
    # integer (%08X), so every word must be packed back in host order.
    if family is Family.IPV4:
        return _socket.inet_ntop(_AF_INET, struct.pack("=I", int(hexaddr, 16)))
    words = [int(hexaddr[i : i + 8], 16) for i in range(0, 32, 8)]
    return _socket.inet_ntop(_AF_INET6, struct.pack("=4I", *words))


def _read(path: str) -> bytes:
    # os.open/os.read: open() adds an fstat, an isatty and a buffer per call (perf.md §9).
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 17):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


_SMALL = 1 << 14
# What one process may make us read and keep. The kernel lets argv and the environment reach
# 6 MiB each (3/4 of the 8 MiB stack limit), and a user may start a thousand such listeners:
# the command line is kept for every holder, so it is cut at 256 KiB (one argument alone may
# be 128 KiB); the environment is only searched for a few markers, then dropped.
ARGV_LIMIT = 256 * 1024
ENVIRON_LIMIT = 1024 * 1024
_PROC_FILE_LIMIT = 1024 * 1024  # stat, status, children: kilobytes in practice


def _read_small(path: str, limit: int = _PROC_FILE_LIMIT) -> bytes:
    """A per-process /proc file (stat, status, cmdline, environ, children), at most limit bytes.

    These answer a read with all they have, up to the size asked, so a short read is the end
    and the empty read _read() ends on is one syscall too many (4 per process listed).
    /proc/net files are different: they answer a page at a time.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, min(_SMALL, limit))
        if len(data) < _SMALL or len(data) >= limit:
            return data
        chunks = [data]
        left = limit - len(data)
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 17))):
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


# --- who holds which socket ---------------------------------------------------------------


def _with_holders(entries: list[_Entry], ports: frozenset[int] | None) -> tuple[list[Socket], bool]:
    if ports is not None:
        entries = [e for e in entries if e[3] in ports]
    wanted = {e[5] for e in entries if e[5] is not None}
    holders = _find_holders(wanted, early_exit=ports is not None) if wanted else {}
    sockets = [
        models.Socket(
            proto=proto,
            family=family,
            address=address,
            port=port,
            uid=uid,
            inode=inode,
            pids=tuple(sorted(holders.get(inode, ()))) if inode is not None else (),
        )
        for proto, family, address, port, uid, inode in entries
    ]
    sockets.sort(key=lambda s: (s.port, s.proto.value, s.family.value, s.address, s.inode or 0))
    return sockets, any(not s.pids for s in sockets)


class _Walk:
    """One pass over /proc/<pid>/fd looking for a known set of socket inodes."""

    def __init__(self, inodes: Iterable[int]) -> None:
        # Compare whole readlink() strings: a dict hit is cheaper than parsing every link.
        self.links = {f"socket:[{inode}]": inode for inode in inodes}
        self.holders: dict[int, set[int]] = {}
        self.scanned: set[int] = set()
        self.holding: set[int] = set()  # pids holding any wanted socket
        self.fd_names: set[str] = set()  # the fd numbers they hold them at
        # Processes whose fd directory was empty: a thread group whose leader has exited
        # shows its fds only under its live threads (/proc/PID/task/TID/fd).
        self.empty: list[int] = []

    def scan(self, pid: int) -> bool:
        """Record which wanted sockets pid holds; True if it holds any."""
        if pid in self.scanned:
            return False
        self.scanned.add(pid)
        try:
            dir_fd = os.open(f"/proc/{pid}/fd", _DIR_FLAGS)
        except _GONE_OR_HIDDEN:
            return False
        try:
            names = os.listdir(dir_fd)  # noqa: PTH208 (pathlib cannot list a dir fd)
            if not names:
                self.empty.append(pid)
            try:
                # One comprehension over the fds: the loop is 13 % of the walk in CPython.
                targets = [os.readlink(name, dir_fd=dir_fd) for name in names]
            except _GONE_OR_HIDDEN:
                names, targets = _readlinks(names, dir_fd)  # an fd closed under us, or not ours
        except _GONE_OR_HIDDEN:
            return False  # the process exited while we listed its fds
        finally:
            os.close(dir_fd)
        links = self.links
        found = [links[target] for target in targets if target in links]
        if not found:
            return False
        for inode in found:
            self.holders.setdefault(inode, set()).add(pid)
        self.holding.add(pid)
        pairs = zip(names, targets, strict=True)
        self.fd_names.update(name for name, target in pairs if target in links)
        return True

    def scan_threads(self, pid: int) -> bool:
        """The fds of a process whose leader thread exited while others still run (a
        zombie leader: mkdocs serve, gradio), read through one of its live threads."""
        try:
            tids = [t for t in os.listdir(f"/proc/{pid}/task") if t != str(pid)]  # noqa: PTH208
        except _GONE_OR_HIDDEN:
            return False
        for tid in tids:
            try:
                dir_fd = os.open(f"/proc/{pid}/task/{tid}/fd", _DIR_FLAGS)
            except _GONE_OR_HIDDEN:
                continue
            try:
                names, targets = _readlinks(os.listdir(dir_fd), dir_fd)  # noqa: PTH208
            except _GONE_OR_HIDDEN:
                continue
            finally:
                os.close(dir_fd)
            found = [self.links[t] for t in targets if t in self.links]
            for inode in found:
                self.holders.setdefault(inode, set()).add(pid)
            if found:
                self.holding.add(pid)
                return True
            if names:
                return False  # the threads share one fd table: one live thread tells all
        return False

    def probe(self, pid: int) -> bool:
        """Whether pid holds a wanted socket at an fd number a known holder uses for one.

        A socket inherited over fork keeps its fd number, so this finds the siblings that got
        it from a common parent with one readlink each instead of one per open fd.
        """
        for name in self.fd_names:
            try:
                if os.readlink(f"/proc/{pid}/fd/{name}") in self.links:  # noqa: PTH115
                    return True
            except _GONE_OR_HIDDEN:
                continue
        return False

    def complete(self) -> bool:
        return len(self.holders) == len(self.links)


def _pids() -> list[int]:
    # os.listdir, not pathlib, all through this walk: a Path per entry is measurable here.
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]  # noqa: PTH208


def _readlinks(names: list[str], dir_fd: int) -> tuple[list[str], list[str]]:
    """The fds we could read, and where they point, one by one."""
    read, targets = [], []
    for name in names:
        try:
            targets.append(os.readlink(name, dir_fd=dir_fd))
        except _GONE_OR_HIDDEN:
            continue
        read.append(name)
    return read, targets


# Walk threads: readlink releases the GIL, and the kernel side (~3 us per fd) is 85 % of the
# walk, so two threads on two idle CPUs take 400 ms where one takes 630 (171k fds, RESULTS.md).
# More threads than CPUs only add GIL hand-offs.
_MAX_THREADS = 4
_PIDS_PER_THREAD = 128  # below that, starting a thread costs more than it saves


def _thread_count(pids: int) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(_MAX_THREADS, cpus, pids // _PIDS_PER_THREAD))


def _find_holders(inodes: set[int], *, early_exit: bool) -> dict[int, set[int]]:
    """inode -> pids of every process holding it (among the ones we may look at).

    A full walk reports every holder of a shared socket, as `ss -ltnup` does. With
    early_exit the walk stops as soon as every inode has a holder and that holder's
    relatives have been checked (see _scan_relatives).
    """
    walk = _Walk(inodes)
    early_exit = early_exit and _can_list_children()
    pids = _pids()
    todo = iter(pids)  # shared by the threads: each takes the next pid, in pid order
    stopped = False
    errors: list[BaseException] = []

    def run() -> None:
        nonlocal stopped
        try:
            for pid in todo:
                if stopped:
                    return
                if walk.scan(pid) and early_exit and walk.complete():
                    stopped = True
                    return
        except BaseException as exc:  # EMFILE, ENOMEM...: the caller falls back to psutil
            errors.append(exc)
            stopped = True

    threads = _thread_count(len(pids))
    if threads == 1:
        run()
    else:
        import threading

        workers = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
        for worker in workers:
            worker.start()
        try:
            for worker in workers:
                worker.join()
        except BaseException:  # Ctrl-C: tell the threads to stop too
            stopped = True
            raise
    if errors:
        raise errors[0]
    if stopped and len(walk.scanned) < len(pids):  # at the last pid the walk is already full
        _scan_relatives(walk)
    if not walk.complete():
        for pid in walk.empty:
            walk.scan_threads(pid)
    return walk.holders


_WIDE = 32


def _scan_relatives(walk: _Walk) -> None:
    """Find the other holders of sockets we already found one holder for.

    Assumption: the processes sharing a listening socket inherited it over fork, so they are
    parent, child or sibling of each other: gunicorn master + workers, uvicorn --reload
    supervisor + server child, werkzeug reloader parent + child, multiprocess workers. So from
    each holder we climb the parent chain and check the children of every process on it, and
    keep going from every new holder found. A socket passed over SCM_RIGHTS to an unrelated
    process (systemd socket activation hands it over by exec, so that is still a child) is the
    known exception: only a full walk (no port filter) finds such a holder.

    The children of a holder are all walked. Those of an ancestor that does not hold the
    socket (it forked the holders and closed its copy, or it is a shell) are walked too, up
    to _WIDE of them; beyond that (a supervisor of a thousand processes) each child is first
    probed at the fd numbers the holders use, since a socket inherited over fork keeps its
    number. A sibling that moved the socket to another number after the fork is then missed.
    """
    todo = [pid for pids in walk.holders.values() for pid in pids]
    expanded: set[int] = set()

    def check_children(pid: int) -> None:
        if pid in expanded:
            return
        expanded.add(pid)
        children = _children(pid)
        probe = pid not in walk.holding and len(children) > _WIDE
        for child in children:
            if probe and child not in walk.scanned and not walk.probe(child):
                continue
            if walk.scan(child):
                todo.append(child)

    while todo:
        holder = todo.pop()
        # A holder's children always count, even init's in a container where the server is pid 1.
        check_children(holder)
        ancestor = _ppid(holder)
        # Not the children of a non-holding init: that is every daemon on the box.
        while ancestor is not None and ancestor > 1 and ancestor not in expanded:
            if walk.scan(ancestor):
                todo.append(ancestor)
            check_children(ancestor)
            ancestor = _ppid(ancestor)


def _can_list_children() -> bool:
    # /proc/<pid>/task/<tid>/children needs CONFIG_PROC_CHILDREN; without it, walk everything.
    return os.access("/proc/thread-self/children", os.R_OK)


def _ppid(pid: int) -> int | None:
    try:
        stat = _read_small(f"/proc/{pid}/stat")
    except _GONE_OR_HIDDEN:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so cut at the last ')'.
    return int(stat[stat.rindex(b")") + 2 :].split(None, 2)[1])


def _children(pid: int) -> list[int]:
    # Each thread lists only the children it forked itself (a multithreaded init or a server
    # that forks from a worker thread), so every task must be read.
    try:
        tids = os.listdir(f"/proc/{pid}/task")  # noqa: PTH208
    except _GONE_OR_HIDDEN:
        return []
    children: list[int] = []
    for tid in tids:
        try:
            children += map(int, _read_small(f"/proc/{pid}/task/{tid}/children").split())
        except _GONE_OR_HIDDEN:
            continue
    return children


# --- process details ----------------------------------------------------------------------
# What psutil reports for a process, read straight from /proc: five reads instead of psutil's
# ~190 us per process (1000 holders: 190 ms, perf notes in benchmarks/RESULTS.md), and no
# `import psutil` (~23 ms) on the listing path. Results must equal psutil's field for field
# (tests compare both on every process of the machine), so psutil's quirks are kept on purpose.

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_FS_ENCODING = sys.getfilesystemencoding()
_FS_ERRORS = sys.getfilesystemencodeerrors()
_GONE = (FileNotFoundError, ProcessLookupError)
_COMM_LIMIT = 15  # TASK_COMM_LEN - 1: longer names are cut, psutil then looks at argv[0]


def _text(data: bytes) -> str:
    # psutil reads cmdline and environ in text mode: universal newlines turn "\r" into "\n".
    text = data.decode(_FS_ENCODING, _FS_ERRORS)
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def _argv(data: bytes, *, cut: bool = False) -> tuple[str, ...]:
    """psutil's cmdline(): NUL-separated, or space-separated after a setproctitle().

    One departure: "\r" stays "\r". psutil's text-mode read turns it into "\n", and the
    JSON output must carry an argument as the process has it. cut: the read stopped at
    ARGV_LIMIT, so the data does not end where the command line does.
    """
    if not data:
        return ()
    text = data.decode(_FS_ENCODING, _FS_ERRORS)
    sep = "\0" if text.endswith("\0") or (cut and "\0" in text) else " "
    if text.endswith(sep):
        text = text[:-1]
    args = text.split(sep)
    if sep == "\0" and len(args) == 1 and " " in text:
        args = text.split(" ")
    return tuple(args)


def _environ(data: bytes, keys: Iterable[str]) -> dict[str, str]:
    """psutil's parse_environ_block(), keeping only `keys`: stops at an empty entry, ignores an
    unterminated last one, and the last of duplicate keys wins."""
    env: dict[str, str] = {}
    for item in _text(data).split("\0")[:-1]:
        if not item:
            break
        key, eq, value = item.partition("=")
        if eq and key:
            env[key] = value
    return {k: env[k] for k in keys if k in env}


def _cwd(pid: int) -> str | None:
    try:
        path = os.readlink(f"/proc/{pid}/cwd")  # noqa: PTH115 (a Path per process is measurable)
    except OSError:
        return None  # another user's process, a zombie, or gone
    path = path.split("\0")[0]
    if path.endswith(" (deleted)"):
        try:
            os.stat(path)  # noqa: PTH116
        except PermissionError:
            return None
        except OSError:
            path = path[:-10]
    return path or None


def reopen(handle: int, flags: int) -> int:
    """A new descriptor, opened with flags, for the file an O_PATH handle names."""
    return os.open(f"/proc/self/fd/{handle}", flags)


def ephemeral_range_text() -> str:
    """The kernel's range for outgoing connections' local ports, as it says it ("32768\t60999")."""
    return _read_small("/proc/sys/net/ipv4/ip_local_port_range").decode("ascii", "replace")


def boot_time() -> float:
    for line in _read("/proc/stat").splitlines():
        if line.startswith(b"btime"):
            return float(line.split()[1])
    raise OSError(errno.ENOENT, "no btime in /proc/stat")


class ProcessReader:
    """Reads ProcessInfo for pids as psutil would, caching user names and the boot time."""

    def __init__(
        self,
        env_keys: Iterable[str] = (),
        reduce_env: EnvReducer | None = None,
        *,
        cgroups: bool = False,
    ) -> None:
        self.env_keys = tuple(env_keys)
        self._reduce_env = reduce_env
        self.cgroups = cgroups
        self._env_needles = tuple(k.encode() + b"=" for k in self.env_keys)
        self.boot = boot_time()
        self.users: dict[int, str] = {}

    def _user(self, uid: int) -> str:
        name = self.users.get(uid)
        if name is None:
            import pwd

            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:
                name = str(uid)
            self.users[uid] = name
        return name

    def _environ(self, data: bytes) -> dict[str, str]:
        # Most processes carry none of the markers: a substring test skips the parse.
        if not any(needle in data for needle in self._env_needles):
            return {}
        env = _environ(data, self.env_keys)
        return self._reduce_env(env) if self._reduce_env is not None and env else env

    def read(self, pid: int) -> ProcessInfo | None:
        """One process; None if it has gone. Fields we may not read are None or empty."""
        base = f"/proc/{pid}/"
        try:
            stat = _read_small(base + "stat")
        except _GONE:
            return None
        except PermissionError:  # hidepid
            return models.ProcessInfo(pid=pid, ppid=None, name=None, user=None)
        close = stat.rindex(b")")
        fields = stat[close + 2 :].split()
        try:
            status = _read_small(base + "status")
            user: str | None = self._user(int(status.split(b"\nUid:", 1)[1].split(None, 1)[0]))
        except _GONE:
            return None
        except (PermissionError, IndexError):
            user = None
        try:
            raw = _read_small(base + "cmdline", ARGV_LIMIT)
            argv = _argv(raw, cut=len(raw) >= ARGV_LIMIT)
        except _GONE:
            return None
        except PermissionError:
            argv = ()
        name = stat[stat.find(b"(") + 1 : close].decode(_FS_ENCODING, _FS_ERRORS)
        if len(name) >= _COMM_LIMIT and argv:
            # Not PurePath.name: basename("dir/") is "" as in psutil, PurePath's name is "dir".
            full = os.path.basename(argv[0])  # noqa: PTH119
            if full.startswith(name):
                name = full
        try:
            env = (
                self._environ(_read_small(base + "environ", ENVIRON_LIMIT)) if self.env_keys else {}
            )
        except OSError:
            env = {}  # another user's environment needs root
        return models.ProcessInfo(
            pid=pid,
            ppid=int(fields[1]),
            name=name,
            user=user,
            cmdline=argv,
            cwd=_cwd(pid),
            create_time=float(fields[19]) / _CLOCK_TICKS + self.boot,
            env=env,
            cgroup=_cgroup(pid) if self.cgroups else None,
        )


def _cgroup(pid: int) -> str | None:
    """The process's cgroup path: the unified (v2) one, else the name=systemd v1 hierarchy's,
    which is where systemd puts units on a hybrid setup."""
    try:
        text = _read_small(f"/proc/{pid}/cgroup").decode(_FS_ENCODING, _FS_ERRORS)
    except OSError:
        return None
    paths = dict(line.split(":", 2)[1:] for line in text.splitlines() if line.count(":") >= 2)
    for key in ("", "name=systemd"):
        path = paths.get(key)
        if path and path != "/":
            return path
    return None


def lineage(pid: int) -> set[int]:
    """pid and its ancestors, as psutil's Process.parents() finds them: up the ppid chain, stopping
    where a parent started after its child (its pid was reused)."""
    found = {pid}
    current, started = pid, None
    while True:
        try:
            stat = _read_small(f"/proc/{current}/stat")
        except OSError:
            break
        fields = stat[stat.rindex(b")") + 2 :].split()
        start = int(fields[19])
        if started is not None and start > started:
            break
        found.add(current)
        ppid = int(fields[1])
        if ppid <= 0 or ppid in found:
            break
        current, started = ppid, start
    return found


def process_tree(
    root: int,
    env_keys: Iterable[str] = (),
    reduce_env: EnvReducer | None = None,
    *,
    cgroups: bool = False,
) -> dict[int, ProcessInfo]:
    """root and all its descendants, as psutil's children(recursive=True) finds them.

    Through /proc/<pid>/task/<tid>/children, so it costs the size of the tree; psutil reads the
    stat file of every process on the machine to build its ppid map first.
    """
    if not _can_list_children():
        raise OSError(errno.ENOSYS, "no /proc/<pid>/task/<tid>/children (CONFIG_PROC_CHILDREN)")
    reader = ProcessReader(env_keys, reduce_env, cgroups=cgroups)
    tree: dict[int, ProcessInfo] = {}
    todo = [root]
    while todo:
        pid = todo.pop(0)
        if pid in tree:
            continue
        info = reader.read(pid)
        if info is not None:  # a child that exited since its parent listed it is skipped
            tree[pid] = info
            todo += _children(pid)
    return tree


def command_lines() -> list[tuple[int, tuple[str, ...]]]:
    """(pid, argv) of every process we may see, kernel threads (no argv) left out.

    One small read per process: `audit` looks for tunnel clients (ssh -R, ngrok...), which hold
    no listening socket, so the socket walk never meets them.
    """
    found = []
    for pid in _pids():
        try:
            argv = _argv(_read_small(f"/proc/{pid}/cmdline"))
        except _GONE_OR_HIDDEN:
            continue
        if argv:
            found.append((pid, argv))
    return found


# --- run/serve: keeping a process tree (prctl, descendants, pidfds) -------------------------
# The supervisor of `portinspect run` (portinspect/_supervise.py) is a child subreaper: every
# process its server leaves behind (a double fork, a setsid daemon, npm's orphaned node) is
# reparented to it instead of init, so walking its children finds the whole tree, and it can
# signal and reap all of it. prctl is reached through ctypes; nothing is imported until used.

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36  # Linux 3.4


@functools.cache
def _libc() -> Any:
    # Opened once, in the parent: the keeper calls prctl again between fork and exec, where
    # dlopen() is best avoided.
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, value: int) -> None:
    import ctypes

    if _libc().prctl(option, ctypes.c_ulong(value), 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def set_child_subreaper() -> None:
    """Orphans among our descendants are reparented to us, not to init (PR_SET_CHILD_SUBREAPER)."""
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def set_parent_death_signal(signum: int) -> None:
    """The kernel sends us signum when the THREAD that forked us exits (PR_SET_PDEATHSIG).

    Not inherited by our children; kept across execve (except of a set-uid program).
    """
    _prctl(_PR_SET_PDEATHSIG, signum)


def _ppid_and_start(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks since boot) of pid; None if it has gone."""
    try:
        stat = _read_small(f"/proc/{pid}/stat")
    except _GONE_OR_HIDDEN:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[1]), int(fields[19])


def descendants(root: int) -> list[int]:
    """root's descendants (root excluded), parents before their children.

    Through /proc/<pid>/task/<tid>/children (CONFIG_PROC_CHILDREN), so it costs the size of
    the tree. A child that exits while we walk is simply not listed.
    """
    if not _can_list_children():
        raise OSError(errno.ENOSYS, "no /proc/<pid>/task/<tid>/children (CONFIG_PROC_CHILDREN)")
    found: list[int] = []
    seen = {root}
    todo = [root]
    while todo:
        for child in _children(todo.pop(0)):
            if child not in seen:
                seen.add(child)
                found.append(child)
                todo.append(child)
    return found


class Pidfd:
    """A process pinned by a pidfd (Linux 5.3): a signal sent through it reaches that process
    or nothing, never another one that was given its pid after it exited."""

    __slots__ = ("_fd", "pid")

    def __init__(self, pid: int, fd: int) -> None:
        self.pid = pid
        self._fd = fd

    def send(self, signum: int) -> bool:
        """Deliver signum; False if the process has exited and been reaped."""
        import signal

        try:
            signal.pidfd_send_signal(self._fd, signum)
        except ProcessLookupError:
            return False
        return True

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def pin_descendants(root: int) -> list[Pidfd]:
    """Pidfds for root's descendants, parents first.

    Each pid is pinned, then checked: the process now behind it started when the one listed
    did (read before and after pidfd_open), and its parent is root or a process pinned before
    it. So a pid freed and reused between the listing and the pinning is left alone.
    Raises OSError (ENOSYS, EPERM under seccomp) where pidfds cannot be had.
    """
    members = {root}
    pinned: list[Pidfd] = []
    for pid in descendants(root):
        before = _ppid_and_start(pid)
        if before is None:
            continue
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        after = _ppid_and_start(pid)
        if after is None or after[1] != before[1] or after[0] not in members:
            os.close(fd)
            continue
        members.add(pid)
        pinned.append(Pidfd(pid, fd))
    return pinned


def tree_sockets(root: int, ports: frozenset[int], protos: frozenset[Proto]) -> list[Socket]:
    """The listening sockets on `ports` held by root's descendants, with those holders' pids.

    One socket dump (netlink); the fd walk only when a port listens, and only over the tree:
    a handful of processes, where finding the holder among all processes would walk them all.
    """
    entries = [e for e in _sockets(protos) if e[3] in ports and e[5] is not None]
    if not entries:
        return []
    walk = _Walk(e[5] for e in entries if e[5] is not None)
    for pid in descendants(root):
        walk.scan(pid)
    return [
        models.Socket(
            proto, family, address, port, uid=uid, inode=inode, pids=tuple(sorted(holders))
        )
        for proto, family, address, port, uid, inode in entries
        if inode is not None and (holders := walk.holders.get(inode))
    ]
