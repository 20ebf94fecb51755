"""`free` and find_free_ports() against real sockets, real leases and real processes.

Tests hold ports only on 127.0.0.1 and ::1. The wildcard holders (0.0.0.0, ::) the issue asks
about are tested inside a private network namespace (`unshare --net`), where a wildcard bind
cannot reach beyond the test. Every test leases into its own directory (PORTINSPECT_LEASE_DIR
under tmp_path), and searches only a block of ports that the shared allocator leased to it
(tests/support.py), so no parallel worker or second suite binds there while the searches under
test probe and lease: each search is bounded by a range inside the block.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import multiprocessing
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from portinspect import find_free_ports, freeport, leases, scanner
from portinspect.errors import ExitStatus, NoFreePortError, PortInspectError, UsageError
from portinspect.freeport import (
    Lease,
    Policy,
    Prober,
    Skip,
    SkipReason,
    bind_error,
    candidates,
    explain_lines,
    parse_count,
    parse_seconds,
    spans,
    unsafe_ports,
)
from portinspect.models import Proto

from .support import (
    LOOPBACK4,
    LOOPBACK6,
    SCRIPT,
    has_ipv6,
    held_by_nobody,
    invoke,
    is_root,
    lease_block,
    lease_port,
    lease_ports,
    listening,
    port_of,
    run_as_nobody,
    run_cli,
    run_in_namespace,
    wait_until,
)

needs_ipv6 = pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback here")
needs_root = pytest.mark.skipif(not is_root(), reason="needs root to drop to another user")


@pytest.fixture(autouse=True)
def lease_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "leases"
    monkeypatch.setenv(freeport.LEASE_DIR_ENV, str(path))
    return path


def quiet_block(size: int = 8) -> int:
    """The first of `size` consecutive ports leased to this test: free, and no policy skips them.

    Leased in the shared directory (tests/support.py) and held until the test ends, bound or
    not, so nothing else binds them while this test's searches probe and lease them.
    """
    return lease_block(size)


def block_without_time_wait(size: int = 8) -> int:
    """A leased block (quiet_block) whose first port a bind without SO_REUSEADDR can take.

    Ports other tests give back are handed out again at once, and may still carry their
    connections' TIME_WAIT (the allocator counts that as free, as servers bind with
    SO_REUSEADDR); a test about binds without it needs a port with none.
    """
    for _ in range(20):
        base = quiet_block(size)
        with socket.socket() as plain:
            try:
                plain.bind((LOOPBACK4, base))
            except OSError:
                continue
        return base
    raise AssertionError("20 leased blocks in a row had a TIME_WAIT on their first port")


def kernel_port() -> int:
    """A port from inside the OS ephemeral range (not at its edges), leased to this test.

    The kernel does not read leases: it may still hand the port to an outgoing connection,
    one chance in some 28000 per connection made meanwhile.
    """
    low, high = scanner.ephemeral_range()
    return lease_port(near=(low + high) // 2, port_range=(low + 1, high - 1), allow_ephemeral=True)


def lease_exactly(low: int, high: int, **options: Any) -> None:
    """Lease every port of low-high to this test (the ones a test about fixed ports needs).

    Another suite's test may hold them for a moment: wait for it. Skip when a listener that
    takes no lease holds one (a real IRC server on 6667).
    """

    def taken() -> bool:
        with contextlib.suppress(NoFreePortError):
            lease_ports(high - low + 1, near=low, port_range=(low, high), **options)
            return True
        held = scanner.listening_ports() & set(range(low, high + 1))
        if held:
            pytest.skip(f"port(s) {sorted(held)} in use here, by something that takes no lease")
        return False

    wait_until(taken, timeout=120, what=f"ports {low}-{high} to be leased to this test")


def collect() -> tuple[list[Skip], Callable[[Skip], None]]:
    skips: list[Skip] = []
    return skips, skips.append


# -- candidate order and policy (pure) --------------------------------------------------------


def test_candidates_nearest_first_upward_on_ties() -> None:
    assert list(itertools.islice(candidates(8000, 1, 65535), 7)) == [
        8000,
        8001,
        7999,
        8002,
        7998,
        8003,
        7997,
    ]


@pytest.mark.parametrize(
    ("near", "low", "high", "expected"),
    [
        (3, 1, 5, [3, 4, 2, 5, 1]),
        (1, 1, 4, [1, 2, 3, 4]),
        (4, 1, 4, [4, 3, 2, 1]),
        (9000, 1, 3, [3, 2, 1]),  # near above the range: nearest bound first
        (1, 10, 12, [10, 11, 12]),  # near below the range
        (7, 7, 7, [7]),
    ],
)
def test_candidates_within_bounds(near: int, low: int, high: int, expected: list[int]) -> None:
    assert list(candidates(near, low, high)) == expected


def test_candidates_visit_every_port_once() -> None:
    order = list(candidates(40000, 1, 65535))
    assert sorted(order) == list(range(1, 65536))


def test_policy_skips_and_allows() -> None:
    strict = Policy.make(allow_ephemeral=False, allow_privileged=False, allow_unsafe=False)
    lax = Policy.make(allow_ephemeral=True, allow_privileged=True, allow_unsafe=True)
    e_low, e_high = scanner.ephemeral_range()

    def reasons(policy: Policy, *ports: int) -> list[SkipReason | None]:
        return [skip.reason if (skip := policy.skip(p)) else None for p in ports]

    assert reasons(strict, 80, 1023, 6000, e_low, e_high, 1024, 15000) == [
        SkipReason.PRIVILEGED,
        SkipReason.PRIVILEGED,
        SkipReason.UNSAFE,
        SkipReason.EPHEMERAL,
        SkipReason.EPHEMERAL,
        None,
        None,
    ]
    assert reasons(lax, 80, 6000, e_low) == [None, None, None]


def test_unsafe_list_is_chromiums() -> None:
    ports = unsafe_ports()
    # A few from each era of Chromium's kRestrictedPorts, and the Fetch-only additions.
    assert {1, 22, 25, 6000, 6665, 6669, 6697, 10080, 5060, 989, 4190, 6679} <= ports
    assert not {3000, 5000, 8000, 8080, 8888, 15000} & ports
    assert all(1 <= p <= 65535 for p in ports) and len(ports) == 82


def test_spans_and_explain_folding() -> None:
    assert spans([6669, 6000, 6665, 6666, 6667, 6668]) == "6000, 6665-6669"
    skips = [
        Skip(40000, SkipReason.EPHEMERAL, "in the OS ephemeral range"),
        Skip(8000, SkipReason.HELD, "held by pid 7 (django) on 127.0.0.1 tcp", 7),
        Skip(40001, SkipReason.EPHEMERAL, "in the OS ephemeral range"),
    ]
    assert explain_lines(skips) == [
        "skipped 8000: held by pid 7 (django) on 127.0.0.1 tcp",
        "skipped 40000-40001: in the OS ephemeral range; --allow-ephemeral allows them",
    ]


@pytest.mark.parametrize("text", ["0", "1001", "abc", "-1", "1.5", "", "１"])
def test_parse_count_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_count(text)


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "abc", "86401", ""])
def test_parse_seconds_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_seconds(text)


def test_parse_seconds_accepts_fractions() -> None:
    assert parse_seconds("0.5") == 0.5 and parse_count(" 7 ") == 7


@pytest.mark.parametrize(
    "kwargs",
    [
        {"near": 70000},
        {"near": 0},
        {"near": True},
        {"count": 0},
        {"count": 1001},
        {"port_range": (9000, 8000)},
        {"port_range": (0, 10)},
        {"tcp": False, "udp": False},
        {"lease_seconds": 0},
        {"lease_seconds": float("inf")},
    ],
)
def test_library_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        find_free_ports(**kwargs)


def test_lease_round_trip_and_end_rules() -> None:
    lease = Lease(9000, 1234, 1000.0, True, "abcd")
    assert Lease.decode(9000, lease.encode()) == lease
    kept = Lease(9000, 1234, 1000.0, True, "abcd", keep_while_bound=True)
    assert Lease.decode(9000, kept.encode()) == kept
    assert Lease.decode(9000, b"garbage") is None
    # What an older version wrote (no keep_while_bound line) reads as ending at the first bind.
    old = b"pid=1234\nexpires=1000.000\nrelease_on_exit=1\ntoken=abcd\n"
    assert Lease.decode(9000, old) == lease
    alive = Lease(9000, os.getpid(), 1000.0, True, "t")
    assert not alive.ended(999.0, bound=False)
    assert alive.ended(999.0, bound=True)  # "or until it is bound"
    assert alive.ended(1000.0, bound=False)
    held = Lease(9000, os.getpid(), 1000.0, True, "t", keep_while_bound=True)
    assert not held.ended(999.0, bound=True)
    assert held.ended(1000.0, bound=True)


# -- real sockets: what counts as held ---------------------------------------------------------


def test_nearest_free_port_is_near_itself() -> None:
    base = quiet_block()
    assert find_free_ports(base, port_range=(base, base + 7)) == [base]


def test_port_held_on_ipv4_loopback_is_skipped() -> None:
    base = quiet_block()
    with listening(LOOPBACK4, port=base):
        skips, explain = collect()
        assert find_free_ports(base, port_range=(base, base + 7), explain=explain) == [base + 1]
    assert [(s.port, s.reason, s.pid) for s in skips] == [(base, SkipReason.HELD, os.getpid())]
    assert f"held by pid {os.getpid()}" in skips[0].detail and "127.0.0.1 tcp" in skips[0].detail


@needs_ipv6
def test_port_held_on_ipv6_loopback_is_skipped() -> None:
    base = quiet_block()
    with listening(LOOPBACK6, port=base):
        skips, explain = collect()
        assert find_free_ports(base, port_range=(base, base + 7), explain=explain) == [base + 1]
    assert skips[0].reason is SkipReason.HELD and "::1 tcp" in skips[0].detail


def test_each_gate_alone_catches_a_loopback_holder(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scan and the bind probe are independent: either one alone skips a held port."""
    base = quiet_block()
    with listening(LOOPBACK4, port=base):
        with monkeypatch.context() as m:
            m.setattr(Prober, "failure", lambda self, port: None)
            assert find_free_ports(base, port_range=(base, base + 7), lease=False) == [base + 1]
        with monkeypatch.context() as m:
            m.setattr(scanner, "taken_ports", lambda protos: (frozenset(), {}))
            skips, explain = collect()
            found = find_free_ports(base, port_range=(base, base + 7), lease=False, explain=explain)
            assert found == [base + 1]
    assert skips[0].reason is SkipReason.UNBINDABLE and "EADDRINUSE" in skips[0].detail


@needs_ipv6
def test_wildcard_probes_conflict_with_loopback_holders() -> None:
    """0.0.0.0 and :: probes fail on a port held on one address of their family."""
    base = quiet_block()
    with listening(LOOPBACK4, port=base), listening(LOOPBACK6, port=base + 1):
        assert bind_error(socket.AF_INET, Proto.TCP, "0.0.0.0", base) == errno.EADDRINUSE
        assert bind_error(socket.AF_INET6, Proto.TCP, "::", base + 1) == errno.EADDRINUSE
        # V6ONLY keeps the families apart: the other family's wildcard is still free.
        assert bind_error(socket.AF_INET6, Proto.TCP, "::", base) is None
        assert bind_error(socket.AF_INET, Proto.TCP, "0.0.0.0", base + 1) is None


NETNS_SCRIPT = r"""
import json, socket, subprocess
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
from portinspect.errors import NoFreePortError
from portinspect.freeport import find_free_ports
# A fresh network namespace has no sockets at all, so these fixed ports are free.
holders = [("0.0.0.0", socket.AF_INET, 1), ("::", socket.AF_INET6, 1), ("::", socket.AF_INET6, 0)]
result = []
for i, (host, family, v6only) in enumerate(holders):
    port = 20000 + 10 * i
    s = socket.socket(family)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
    s.bind((host, port))
    s.listen()
    got = find_free_ports(port, port_range=(port, port + 5), lease=False)
    try:
        find_free_ports(port, port_range=(port, port), lease=False)
        why = "free"
    except NoFreePortError as exc:
        why = str(exc)
    result.append([port, got, why])
    s.close()
print(json.dumps(result))
"""


@pytest.mark.skipif(not shutil.which("unshare") or not shutil.which("ip"), reason="no unshare/ip")
@needs_root
def test_wildcard_holders_in_a_private_network_namespace() -> None:
    for port, got, why in run_in_namespace(["--net"], NETNS_SCRIPT):
        assert got == [port + 1]
        assert why == f"no free port in {port}: 1 held by a listener"


@needs_root
@pytest.mark.unprivileged
def test_port_held_by_another_user_is_skipped() -> None:
    with held_by_nobody() as port:
        skips, explain = collect()
        with pytest.raises(NoFreePortError, match="1 held by a listener"):
            find_free_ports(port, port_range=(port, port), explain=explain)
    [skip] = skips
    assert skip.reason is SkipReason.HELD and skip.pid is not None and skip.pid != os.getpid()


@needs_root
@pytest.mark.unprivileged
def test_other_users_socket_is_caught_by_the_scan_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without bind probes the scan still sees a socket another user holds."""
    monkeypatch.setattr(Prober, "failure", lambda self, port: None)
    with held_by_nobody() as port:
        with pytest.raises(NoFreePortError):
            find_free_ports(port, port_range=(port, port), lease=False)


@needs_root
@pytest.mark.unprivileged
def test_unprivileged_caller_is_told_whose_port_it_is() -> None:
    pytest.importorskip("portinspect._linux")
    with listening(LOOPBACK4) as sock:
        port = port_of(sock)

        def search() -> list[dict[str, Any]]:
            skips, explain = collect()
            with contextlib.suppress(NoFreePortError):
                find_free_ports(port, port_range=(port, port), lease=False, explain=explain)
            return [s.to_dict() for s in skips]

        search()  # import everything the child needs while we may still read the venv
        [skip] = run_as_nobody(search)
    assert skip["reason"] == "held" and skip["pid"] is None
    assert "held by user root (uid 0)" in skip["detail"] and "sudo" in skip["detail"]


def test_bound_but_not_listening_socket_is_caught_by_the_probe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The probe alone: Linux 6.8+ shows the bound socket in the table too (tests/test_leases.py).
    monkeypatch.setattr(
        scanner, "taken_ports", lambda protos: (scanner.listening_ports(protos), {})
    )
    base = block_without_time_wait()
    with socket.socket() as s:
        s.bind((LOOPBACK4, base))  # no SO_REUSEADDR, no listen: invisible to the scan
        skips, explain = collect()
        assert find_free_ports(base, port_range=(base, base + 7), explain=explain) == [base + 1]
    assert skips[0].reason is SkipReason.UNBINDABLE
    assert skips[0].detail.startswith("cannot bind 127.0.0.1 tcp: address already in use")


def _leave_time_wait(port: int, *, reuse: bool) -> None:
    """Close a served connection server side first, so (127.0.0.1, port) sits in TIME_WAIT."""
    with socket.socket() as server:
        if reuse:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((LOOPBACK4, port))
        server.listen(1)
        with socket.create_connection((LOOPBACK4, port)) as client:
            conn, _ = server.accept()
            conn.close()  # the active close: this end enters TIME_WAIT
            wait_until(lambda: client.recv(1) == b"", what="the close to reach the client")
    with socket.socket() as plain, pytest.raises(OSError) as held:
        plain.bind((LOOPBACK4, port))  # proof that TIME_WAIT is there: a plain bind fails
    assert held.value.errno == errno.EADDRINUSE


def test_time_wait_counts_as_free_when_a_server_could_bind_it() -> None:
    base = quiet_block()
    _leave_time_wait(base, reuse=True)  # what servers do (socketserver, uvicorn, gunicorn...)
    assert find_free_ports(base, port_range=(base, base + 7)) == [base]


def test_time_wait_of_a_server_without_reuseaddr_is_not_free() -> None:
    """Linux copies SO_REUSEADDR into the TIME_WAIT socket: without it, no server can bind."""
    base = block_without_time_wait()
    _leave_time_wait(base, reuse=False)
    skips, explain = collect()
    assert find_free_ports(base, port_range=(base, base + 7), explain=explain) == [base + 1]
    assert skips[0].reason is SkipReason.UNBINDABLE


def test_udp_is_checked_only_when_asked() -> None:
    base = quiet_block()
    with listening(LOOPBACK4, socket.SOCK_DGRAM, port=base):
        assert find_free_ports(base, port_range=(base, base + 7), lease=False) == [base]
        both = find_free_ports(base, port_range=(base, base + 7), udp=True, lease=False)
        only = find_free_ports(base, port_range=(base, base + 7), tcp=False, udp=True, lease=False)
    assert both == [base + 1] and only == [base + 1]


def test_udp_only_ignores_tcp_holders() -> None:
    base = quiet_block()
    with listening(LOOPBACK4, port=base):
        assert find_free_ports(base, port_range=(base, base + 7), tcp=False, udp=True) == [base]


# -- policy on real ports ----------------------------------------------------------------------


def test_ephemeral_range_is_skipped_unless_allowed() -> None:
    port = kernel_port()
    skips, explain = collect()
    with pytest.raises(NoFreePortError, match="1 in the ephemeral range"):
        find_free_ports(port, port_range=(port, port), explain=explain)
    assert [s.reason for s in skips] == [SkipReason.EPHEMERAL]
    assert find_free_ports(port, port_range=(port, port), allow_ephemeral=True) == [port]


def test_browser_unsafe_ports_are_skipped_unless_allowed() -> None:
    lease_exactly(6665, 6670, allow_unsafe=True)  # the IRC ports, unsafe but for 6670
    assert find_free_ports(6665, port_range=(6665, 6670), lease=False) == [6670]
    assert find_free_ports(6665, port_range=(6665, 6670), allow_unsafe=True, lease=False) == [6665]


@needs_root  # a user cannot bind below 1024: no free port there to lease
def test_privileged_ports_are_skipped_unless_allowed() -> None:
    try:
        port = lease_port(near=1000, port_range=(1000, 1023), allow_privileged=True)
    except NoFreePortError:
        pytest.skip("no free port in 1000-1023 here")
    skips, explain = collect()
    with pytest.raises(NoFreePortError, match="privileged"):
        find_free_ports(port, port_range=(port, port), explain=explain)
    assert skips[0].reason is SkipReason.PRIVILEGED
    assert find_free_ports(port, port_range=(port, port), allow_privileged=True) == [port]


# -- count, range, exit codes, JSON ------------------------------------------------------------


def test_count_gives_distinct_ports_nearest_first() -> None:
    base = quiet_block(12)
    with listening(LOOPBACK4, port=base + 6):
        found = find_free_ports(base + 6, 5, port_range=(base, base + 11))
    assert found == [base + 7, base + 5, base + 8, base + 4, base + 9]


def test_range_bounds_the_search_and_a_partial_result_keeps_no_lease(lease_dir: Path) -> None:
    base = quiet_block()
    with listening(LOOPBACK4, port=base):
        with pytest.raises(NoFreePortError) as failed:
            find_free_ports(base, 3, port_range=(base, base + 2))
        assert str(failed.value) == (
            f"only 2 of 3 free ports in {base}-{base + 2}: 1 held by a listener"
        )
        assert not list(lease_dir.glob("*.lease"))  # base+1 and base+2 were given back
        assert find_free_ports(base, 2, port_range=(base, base + 2)) == [base + 1, base + 2]


def test_cli_prints_one_bare_port() -> None:
    base = quiet_block()
    code, out, err = invoke("free", "--near", str(base), "--range", f"{base}-{base + 7}")
    assert (code, out, err) == (0, f"{base}\n", "")


def test_cli_count_one_port_per_line() -> None:
    base = quiet_block()
    code, out, _ = invoke("free", "--near", str(base), "-c", "3", "--range", f"{base}-{base + 7}")
    assert code == 0 and out == f"{base}\n{base + 1}\n{base + 2}\n"


def test_cli_json_shape() -> None:
    base = quiet_block()
    code, out, _ = invoke("free", "--range", f"{base}-{base + 7}", "--count", "2", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["ok"] is True and doc["command"] == "free"
    assert doc["ports"] == [base, base + 1] and doc["lease_seconds"] == 30.0
    assert "skipped" not in doc


def test_cli_held_one_port_range_exits_6_with_reason() -> None:
    base = quiet_block()
    with listening(LOOPBACK4, port=base):
        code, out, err = invoke("free", "--range", str(base), "--explain")
    assert code == ExitStatus.NO_FREE_PORT and out == ""
    explained, error = err.splitlines()
    held = rf"portinspect: skipped {base}: held by pid {os.getpid()} \(.+\) on 127\.0\.0\.1 tcp"
    assert re.fullmatch(held, explained), explained
    assert error == f"portinspect: no free port in {base}: 1 held by a listener"


def test_cli_exit_6_json_is_one_document() -> None:
    base = quiet_block()
    with listening(LOOPBACK4, port=base):
        code, out, err = invoke("free", "--range", f"{base}-{base}", "--json", "--explain")
    doc = json.loads(out)
    assert code == 6 and doc["exit_code"] == 6 and doc["ok"] is False
    assert doc["error"]["message"] == f"no free port in {base}: 1 held by a listener"
    assert err.count("\n") == 2  # the explain line and the error


def test_cli_explain_folds_policy_skips() -> None:
    port = kernel_port()
    code, _, err = invoke("free", "--range", f"{port - 1}-{port + 1}", "--explain", "--no-lease")
    assert code == 6
    lines = err.splitlines()
    assert lines[0].startswith(f"portinspect: skipped {port - 1}-{port + 1}: in the OS ephemeral")
    assert lines[0].endswith("--allow-ephemeral allows them") and len(lines) == 2


@pytest.mark.parametrize(
    "args",
    [
        ["--near", "70000"],
        ["--near", "abc"],
        ["--near", "0"],
        ["--count", "0"],
        ["--count", "abc"],
        ["--count", "100000"],
        ["--range", "9000-8000"],
        ["--range", "9000-"],
        ["--lease-seconds", "0"],
        ["--lease-seconds", "soon"],
        ["--bogus"],
        ["--near"],
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args: list[str]) -> None:
    code, out, err = invoke("free", *args)
    assert code == ExitStatus.USAGE, (out, err)
    assert err.count("\n") == 1 and "Traceback" not in err and out == ""


def test_console_script_bad_input_exit_2() -> None:
    proc = run_cli("free", "--near", "70000")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "portinspect: invalid --near '70000': ports run from 1 to 65535\n"


# -- leases ------------------------------------------------------------------------------------


def test_no_lease_gives_the_same_port_twice(lease_dir: Path) -> None:
    base = quiet_block()
    bounds = (base, base + 7)
    assert find_free_ports(base, port_range=bounds, lease=False) == [base]
    assert find_free_ports(base, port_range=bounds, lease=False) == [base]
    assert not list(lease_dir.glob("*.lease"))


def test_a_leased_port_is_not_handed_out_again(lease_dir: Path) -> None:
    base = quiet_block()
    bounds = (base, base + 7)
    assert find_free_ports(base, port_range=bounds) == [base]
    skips, explain = collect()
    assert find_free_ports(base, port_range=bounds, explain=explain) == [base + 1]
    assert skips[0].reason is SkipReason.LEASED and skips[0].pid == os.getpid()
    assert (lease_dir / f"{base}.lease").stat().st_mode & 0o777 == 0o600


def test_leases_expire_by_themselves() -> None:
    base = quiet_block()
    bounds = (base, base)
    assert find_free_ports(base, port_range=bounds, lease_seconds=0.3) == [base]
    with pytest.raises(NoFreePortError, match="1 leased"):
        find_free_ports(base, port_range=bounds)

    def handed_out_again() -> bool:
        with contextlib.suppress(NoFreePortError):
            return find_free_ports(base, port_range=bounds, lease_seconds=0.3) == [base]
        return False

    wait_until(handed_out_again, timeout=10, what="the lease to expire")


def test_a_lease_ends_when_its_port_is_bound(lease_dir: Path) -> None:
    base = quiet_block()
    bounds = (base, base + 7)
    assert find_free_ports(base, port_range=bounds) == [base]
    with listening(LOOPBACK4, port=base):  # "the server" binds its port
        assert find_free_ports(base + 7, port_range=bounds, lease=True) == [base + 7]
        assert not (lease_dir / f"{base}.lease").exists()
    # The server stopped: the port is free at once, not after the lease time.
    assert find_free_ports(base, port_range=bounds) == [base]


def test_a_lease_kept_while_bound_outlives_its_server(lease_dir: Path) -> None:
    base = quiet_block()
    bounds = (base, base + 7)
    kept = find_free_ports(base, port_range=bounds, release_on_exit=True, keep_while_bound=True)
    assert kept == [base]
    with listening(LOOPBACK4, port=base):
        assert find_free_ports(base + 7, port_range=bounds) == [base + 7]  # sweeps
        assert (lease_dir / f"{base}.lease").exists()
    # The server stopped: the port is still its caller's, until given back.
    skips, explain = collect()
    assert find_free_ports(base, port_range=bounds, explain=explain) == [base + 1]
    assert skips[0].reason is SkipReason.LEASED and skips[0].pid == os.getpid()
    freeport.release_leases([base])
    assert find_free_ports(base, port_range=bounds) == [base]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_lease_tied_to_a_dead_process_is_stale(lease_dir: Path) -> None:
    base = quiet_block()
    lease_dir.mkdir(parents=True, exist_ok=True)
    far = time.time() + 3600
    (lease_dir / f"{base}.lease").write_bytes(Lease(base, _dead_pid(), far, True, "x").encode())
    (lease_dir / f"{base + 1}.lease").write_bytes(
        Lease(base + 1, _dead_pid(), far, False, "y").encode()
    )
    # Tied to its process: gone with it. Not tied (the CLI's): it lasts its time.
    assert find_free_ports(base, 2, port_range=(base, base + 7)) == [base, base + 2]


def test_an_unreadable_lease_protects_for_the_default_time_then_expires(lease_dir: Path) -> None:
    base = quiet_block()
    lease_dir.mkdir(parents=True, exist_ok=True)
    junk = lease_dir / f"{base}.lease"
    junk.write_bytes(b"not a lease")
    with pytest.raises(NoFreePortError, match="1 leased"):
        find_free_ports(base, port_range=(base, base))
    old = time.time() - freeport.DEFAULT_LEASE_SECONDS - 1
    os.utime(junk, (old, old))
    assert find_free_ports(base, port_range=(base, base)) == [base]


def test_release_leases_gives_ports_back() -> None:
    base = quiet_block()
    bounds = (base, base + 7)
    ports = find_free_ports(base, 2, port_range=bounds)
    freeport.release_leases(ports)
    assert find_free_ports(base, 2, port_range=bounds) == ports


def test_interrupt_while_publishing_leaves_no_lease(
    lease_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = quiet_block()

    def interrupted(src: Any, dst: Any, **at: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "link", interrupted)
    with pytest.raises(KeyboardInterrupt):
        find_free_ports(base, port_range=(base, base + 7))
    assert [p.name for p in lease_dir.iterdir() if p.name != ".lock"] == []


def test_interrupt_mid_search_gives_back_leases_taken(
    lease_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = quiet_block()
    real = Prober.failure

    def second_port_interrupts(self: Prober, port: int) -> Any:
        if port != base:
            raise KeyboardInterrupt
        return real(self, port)

    monkeypatch.setattr(Prober, "failure", second_port_interrupts)
    with pytest.raises(KeyboardInterrupt):
        find_free_ports(base, 2, port_range=(base, base + 7))
    assert not list(lease_dir.glob("*.lease"))


def test_orphaned_temp_files_are_swept(lease_dir: Path) -> None:
    base = quiet_block()
    lease_dir.mkdir(parents=True, exist_ok=True)
    orphan, fresh = lease_dir / f".{base}.dead.tmp", lease_dir / f".{base}.live.tmp"
    orphan.write_bytes(b"")
    fresh.write_bytes(b"")
    old = time.time() - 120
    os.utime(orphan, (old, old))
    find_free_ports(base, port_range=(base, base + 7))
    assert not orphan.exists() and fresh.exists()


# -- the lease directory -----------------------------------------------------------------------


@pytest.fixture
def default_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No override and no XDG_RUNTIME_DIR: leases go to <tempdir>/portinspect-<uid>."""
    monkeypatch.delenv(freeport.LEASE_DIR_ENV)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path / f"portinspect-{os.geteuid()}"


def test_default_lease_dir_is_private(default_dirs: Path) -> None:
    assert freeport.lease_directory() == default_dirs
    assert default_dirs.stat().st_mode & 0o777 == 0o700


def test_xdg_runtime_dir_is_preferred(
    default_dirs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert freeport.lease_directory() == runtime / "portinspect"


def test_planted_symlink_is_refused(default_dirs: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    default_dirs.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PortInspectError, match="not a directory"):
        find_free_ports()


@needs_root
def test_directory_of_another_user_is_passed_over_with_a_warning(
    default_dirs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default_dirs.mkdir(mode=0o700)
    os.chown(default_dirs, 65534, 65534)
    # The fallback is ~/.cache/portinspect; a test must not write into the real home.
    monkeypatch.setattr(leases, "_home", lambda: str(tmp_path / "home"))
    (tmp_path / "home").mkdir(mode=0o700)
    with pytest.warns(freeport.LeaseDirWarning, match="of uid 65534"):
        assert find_free_ports()
    assert list((tmp_path / "home" / ".cache" / "portinspect").glob("*.lease"))
    assert list(default_dirs.iterdir()) == []


def test_world_writable_directory_is_refused(default_dirs: Path) -> None:
    default_dirs.mkdir()
    default_dirs.chmod(0o777)
    code, _, err = invoke("free")
    assert code == ExitStatus.ERROR
    assert err == (
        f"portinspect: lease directory {default_dirs} is writable by other users; "
        f"remove it, set PORTINSPECT_LEASE_DIR, or use --no-lease\n"
    )


def test_lease_directory_that_cannot_be_made_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv(freeport.LEASE_DIR_ENV, str(tmp_path / "a-file" / "leases"))
    code, _, err = invoke("free")
    assert code == ExitStatus.ERROR and err.count("\n") == 1
    assert "cannot create lease directory" in err and "--no-lease" in err
    base = quiet_block()  # what --no-lease searches and probes: ours
    assert invoke("free", "--no-lease", "--range", f"{base}-{base + 7}")[0] == 0


# -- parallel callers --------------------------------------------------------------------------


def test_16_concurrent_console_scripts_get_16_distinct_ports(lease_dir: Path) -> None:
    base = quiet_block(40)
    env = {**os.environ, freeport.LEASE_DIR_ENV: str(lease_dir)}
    args = [str(SCRIPT), "free", "--near", str(base + 20), "--range", f"{base}-{base + 39}"]
    procs = [
        subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(16)
    ]
    try:
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0] * 16, [err for _, err in results]
    ports = [int(out) for out, _ in results]
    assert len(set(ports)) == 16
    # Nearest first: together they took the 16 ports nearest to base+20.
    assert sorted(ports) == list(range(base + 13, base + 29))


def _race(barrier: Any, queue: Any, near: int, bounds: tuple[int, int]) -> None:
    barrier.wait(30)
    try:
        queue.put(find_free_ports(near, 2, port_range=bounds))
    except Exception as exc:  # reported to the parent, which fails the test
        queue.put(repr(exc))


@pytest.fixture
def fork_context() -> Iterator[Any]:
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs fork")
    yield multiprocessing.get_context("fork")


def test_processes_released_at_once_never_share_a_port(fork_context: Any, lease_dir: Path) -> None:
    """8 processes start their search at the same instant; stale leases make them race to
    break the same files too. Each gets 2 ports; all 16 differ."""
    base = quiet_block(40)
    lease_dir.mkdir(parents=True, exist_ok=True)
    for port in range(base, base + 40):  # expired leases: every caller will try to break them
        (lease_dir / f"{port}.lease").write_bytes(Lease(port, 1, 0.0, False, "old").encode())
    barrier, queue = fork_context.Barrier(8), fork_context.Queue()
    procs = [
        fork_context.Process(target=_race, args=(barrier, queue, base + 20, (base, base + 39)))
        for _ in range(8)
    ]
    for p in procs:
        p.start()
    try:
        results = [queue.get(timeout=60) for _ in procs]
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
    assert all(isinstance(r, list) for r in results), results
    ports = [port for r in results for port in r]
    assert len(ports) == len(set(ports)) == 16
