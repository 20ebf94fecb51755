"""The test holders (tests/holders.py) are what they claim: the kill tests rely on each shape."""

from __future__ import annotations

import os
import signal

import pytest

from portinspect import scan

from .holders import holding, session_members, wait_gone
from .support import LOOPBACK6, has_ipv6, same_socket, wait_until


def _holder_pids(port: int, where: object) -> set[int]:
    """The pids holding this exact socket, as portinspect lists them."""
    rows = same_socket(scan(port), where)  # type: ignore[arg-type]
    return {h.process.pid for row in rows for h in row.holders}


def _ignored(pid: int) -> set[int]:
    with open(f"/proc/{pid}/status") as f:
        [mask] = [int(line.split()[1], 16) for line in f if line.startswith("SigIgn:")]
    return {n for n in range(1, 65) if mask >> (n - 1) & 1}


def test_a_plain_holder_holds_its_leased_port_alone() -> None:
    with holding() as h:
        assert _holder_pids(h.port, h.endpoint) == {h.pid}
        assert [p.pid for p in h.session()] == [h.pid]
        assert signal.SIGTERM not in _ignored(h.pid)
    h.assert_freed_for_good()  # stop() ended its session


@pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback here")
def test_a_udp_holder_on_ipv6() -> None:
    with holding(udp=True, host=LOOPBACK6) as h:
        assert (h.endpoint.proto, h.endpoint.family, h.endpoint.address) == ("udp", "ipv6", "::1")
        assert _holder_pids(h.port, h.endpoint) == {h.pid}


def test_a_stubborn_holder_ignores_sigterm_and_its_child_does_not() -> None:
    with holding(ignore_term=True, child=True) as h:
        [child] = h.root.children()
        assert signal.SIGTERM in _ignored(h.pid)  # the kernel discards it: it can never act
        assert signal.SIGTERM not in _ignored(child.pid)


def test_a_reloader_pair_shares_the_socket_and_a_launcher_leaves_it_to_its_child() -> None:
    with holding(child=True) as pair, holding(child=True, keep=False) as launcher:
        [pair_child] = pair.root.children()
        [launched] = launcher.root.children()
        assert _holder_pids(pair.port, pair.endpoint) == {pair.pid, pair_child.pid}
        assert _holder_pids(launcher.port, launcher.endpoint) == {launched.pid}


def test_a_respawner_restarts_the_worker_that_holds_the_port() -> None:
    with holding(respawn=True) as h:
        [worker] = h.root.children()
        assert _holder_pids(h.port, h.endpoint) == {worker.pid}  # the supervisor holds nothing
        os.kill(worker.pid, signal.SIGKILL)
        assert wait_gone({(worker.pid, worker.create_time())}) == []
        again = h.next_ready()
        assert again != worker.pid
        wait_until(lambda: _holder_pids(h.port, h.endpoint) == {again}, what="the new worker")
        assert {p.pid for p in session_members(h.pid)} == {h.pid, again}
