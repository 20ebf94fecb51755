"""An unprivileged user, for real, with /proc as it comes and mounted hidepid=1 and hidepid=2.

Each case runs in its own mount and pid namespace (`unshare --mount --pid --fork`, private
mount propagation), where a fresh /proc is mounted with the hidepid option: the host's /proc is
never touched. Inside, root starts a listener, and the installed console script runs as
`nobody` (setpriv). Listing hides the owner but never the port; `who` says whose it is and
exits 4; every form of `kill` exits 4 and touches nothing; root inside still sees everything.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from typing import Any

import pytest

from .support import SCRIPT, is_root, run_in_namespace

pytestmark = [
    pytest.mark.unprivileged,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="hidepid is Linux's"),
    pytest.mark.skipif(not is_root(), reason="needs root for namespaces and to drop to nobody"),
    pytest.mark.skipif(
        not all(shutil.which(tool) for tool in ("unshare", "setpriv", "mount")),
        reason="needs unshare, setpriv and mount (util-linux)",
    ),
]

# What `nobody` runs against root's port P. The kill forms must all exit 4.
AS_NOBODY = {
    "list linux": (["list", "--port", "P", "--json"], "linux"),
    "list psutil": (["list", "--port", "P", "--json"], "psutil"),
    "who linux": (["who", "P", "--json"], "linux"),
    "who psutil": (["who", "P", "--json"], "psutil"),
    "kill": (["kill", "P", "--yes", "--json", "--timeout", "1"], "linux"),
    "kill --force": (["kill", "P", "--yes", "--json", "--force"], "linux"),
    "kill --signal KILL": (["kill", "P", "--yes", "--json", "--signal", "KILL"], "linux"),
    "kill --dry-run": (["kill", "P", "--dry-run", "--json"], "linux"),
}
HIDEPID = ["0", "1", "2"]  # 0: /proc as it comes; 1: no access to others' dirs; 2: invisible

INSIDE = textwrap.dedent(
    """
    import json, os, pwd, subprocess, sys
    hidepid, script, cases = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    # A new /proc for this pid namespace, in this mount namespace only.
    subprocess.run(["mount", "-t", "proc", "-o", f"hidepid={hidepid}", "proc", "/proc"],
                   check=True)
    with open("/proc/self/mountinfo") as f:
        mounted = [line for line in f if " /proc " in line]
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import socket, time\\ns = socket.socket()\\ns.bind(('127.0.0.1', 0))\\n"
         "s.listen()\\nprint(s.getsockname()[1], flush=True)\\ntime.sleep(120)"],
        stdout=subprocess.PIPE, text=True)
    port = holder.stdout.readline().strip()
    nobody = pwd.getpwnam("nobody")
    drop = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
            "--clear-groups", "--"]
    runs = {}
    for name, (args, backend) in cases.items():
        env = dict(os.environ, PORTINSPECT_BACKEND=backend, HOME="/")
        argv = drop + [script] + [port if a == "P" else a for a in args]
        runs[name] = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=env)
    as_root = subprocess.run([script, "list", "--port", port, "--json"],
                             capture_output=True, text=True)
    results = {}
    for name, proc in runs.items():
        out, err = proc.communicate(timeout=60)
        results[name] = {"code": proc.returncode, "out": out, "err": err}
    alive = holder.poll() is None
    holder.kill()
    holder.wait()
    print(json.dumps({"port": int(port), "holder": holder.pid, "alive": alive,
                      "mounted": mounted, "results": results,
                      "root": {"code": as_root.returncode, "out": as_root.stdout}}))
    """
)


def _inside(hidepid: str) -> dict[str, Any]:
    unshare = ["--mount", "--pid", "--fork", "--propagation", "private"]
    return dict(run_in_namespace(unshare, INSIDE, hidepid, str(SCRIPT), json.dumps(AS_NOBODY)))


@pytest.mark.parametrize("hidepid", HIDEPID, ids=[f"hidepid={h}" for h in HIDEPID])
def test_unprivileged_user_sees_ports_not_owners_and_kills_nothing(hidepid: str) -> None:
    seen = _inside(hidepid)
    port, results = seen["port"], seen["results"]
    [mount] = seen["mounted"][-1:]
    if hidepid != "0":
        assert "hidepid=" in mount, mount  # the option took, in there
    # Root, inside, sees the holder.
    assert seen["root"]["code"] == 0
    [row] = json.loads(seen["root"]["out"])["listeners"]
    assert row["pid"] == seen["holder"]

    # The Linux backend names the owner from the socket's uid; psutil's net_connections()
    # gives no uid for a socket whose process it cannot see, so the portable one cannot.
    for backend, user in (("linux", "root"), ("psutil", None)):
        listed = results[f"list {backend}"]
        assert listed["code"] == 0, (backend, listed["err"])
        [row] = json.loads(listed["out"])["listeners"]
        assert (row["port"], row["pid"], row["user"]) == (port, None, user), backend
        assert listed["err"].count("\n") == 1 and "run with sudo" in listed["err"], backend

        who = results[f"who {backend}"]
        assert who["code"] == 4, (backend, who["err"])
        doc = json.loads(who["out"])
        assert [(r["pid"], r["user"]) for r in doc["listeners"]] == [(None, user)]
        assert who["err"] == (
            f"portinspect: port {port} belongs to {user or 'another user'}; "
            "run with sudo to see its process\n"
        ), backend

    for name in ("kill", "kill --force", "kill --signal KILL", "kill --dry-run"):
        result = results[name]
        assert result["code"] == 4, (name, result["err"])
        [outcome] = json.loads(result["out"])["ports"]
        assert outcome["status"] == "permission-denied" and outcome["signalled"] == [], name
        assert outcome["steps"] == [], name
        assert result["err"] == (
            f"portinspect: port {port} belongs to root; run with sudo (nothing was signalled)\n"
        ), name
    assert seen["alive"], "the root holder was touched"
