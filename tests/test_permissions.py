"""An unprivileged user, for real, with /proc as it comes and mounted hidepid=1 and hidepid=2.

Each case runs in its own mount and pid namespace (`unshare --mount --pid --fork`, private
mount propagation), where a fresh /proc is mounted with the hidepid option: the host's /proc is
never touched. Inside, root starts a listener, and the installed console script runs as
`nobody` (setpriv). Listing hides the owner but never the port; `who` says whose it is and
exits 4; every form of `kill` exits 4 and touches nothing; root inside still sees everything.

`nobody` must be able to run the console script wherever the checkout is: under `mktemp -d` or
a private home, a directory on the way is closed to other users. In the private mount namespace
each such directory is shadowed by a tmpfs that holds only the next step of the path (a bind
mount of the original), so the very files of the checkout run, and nothing on the host changes.
Only files that are themselves unreadable to others (a umask of 077) make the test skip.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from typing import Any

import pytest

from .holders import HOLDER
from .support import SCRIPT, endpoint, is_root, lease_port, run_in_namespace, same_socket

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
    import ctypes, json, os, pwd, stat, subprocess, sys
    hidepid, script, cases, port, holder_code = sys.argv[1:6]
    cases = json.loads(cases)
    nobody = pwd.getpwnam("nobody")
    # A new /proc for this pid namespace, in this mount namespace only.
    subprocess.run(["mount", "-t", "proc", "-o", f"hidepid={hidepid}", "proc", "/proc"],
                   check=True)
    with open("/proc/self/mountinfo") as f:
        mounted = [line for line in f if " /proc " in line]

    libc = ctypes.CDLL(None, use_errno=True)

    def mount(source, target, fstype, flags, data):
        if libc.mount(source.encode(), target.encode(), fstype and fstype.encode(), flags,
                      data and data.encode()) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), target)

    def allowed(info, bits):
        # bits: the owner's (r=4, x=1); nobody is owner, group member or other.
        if info.st_uid == nobody.pw_uid:
            return info.st_mode >> 6 & bits == bits
        if info.st_gid == nobody.pw_gid:
            return info.st_mode >> 3 & bits == bits
        return info.st_mode & bits == bits

    # What nobody's run of the console script reads: the script, the interpreter its shebang
    # names, and every directory the interpreter imports from (the venv, the checkout for an
    # editable install, the base interpreter's stdlib).
    script_path = os.path.realpath(script)
    with open(script_path, "rb") as f:
        shebang = f.readline()[2:].split()[0].decode()
    targets = {script_path, os.path.realpath(shebang), os.path.realpath(sys.executable)}
    targets |= {os.path.realpath(p) for p in sys.path if os.path.isabs(p) and os.path.exists(p)}
    unreadable = [t for t in sorted(targets)
                  if not allowed(os.stat(t), 5 if os.path.isdir(t) else 4)]
    if unreadable:
        print(json.dumps({"skip": "not readable by other users, whatever the directories "
                          f"above (a umask of 077?): {unreadable[0]}"}))
        sys.exit(0)
    # A directory on the way that nobody may not enter (a checkout under `mktemp -d` or a
    # private home, the interpreter under /root) is shadowed, in this mount namespace only:
    # a tmpfs over it (mode 0755) holding just the next step, bind-mounted from the original.
    # Shallowest first, so a deeper one is reached through the shadow above it.
    needs = {}
    for target in targets:
        parts = target.split("/")
        for depth in range(2, len(parts)):
            above = "/".join(parts[:depth]) or "/"
            if not allowed(os.stat(above), 1):
                needs.setdefault(above, set()).add(parts[depth])
    for above in sorted(needs, key=lambda d: d.count("/")):
        keep = {name: os.open(f"{above}/{name}", os.O_PATH) for name in sorted(needs[above])}
        mount("tmpfs", above, "tmpfs", 0, "mode=0755")
        for name, fd in keep.items():
            where = f"{above}/{name}"
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                os.mkdir(where)
            else:
                open(where, "x").close()
            mount(f"/proc/self/fd/{fd}", where, None, 4096, None)  # MS_BIND
            os.close(fd)

    holder = subprocess.Popen(
        [sys.executable, "-c", holder_code], stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, HOST="127.0.0.1", PORT=port, LIFETIME="120"))
    assert holder.stdout.readline().split()[0] == "ready"
    drop = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
            "--clear-groups", "--"]
    runs = {}
    for name, (args, backend) in cases.items():
        env = dict(os.environ, PORTINSPECT_BACKEND=backend, HOME="/")
        argv = drop + [script] + [port if a == "P" else a for a in args]
        runs[name] = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=env, cwd="/")
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
                      "mounted": mounted, "results": results, "shadowed": sorted(needs),
                      "root": {"code": as_root.returncode, "out": as_root.stdout}}))
    """
)


def _inside(hidepid: str) -> dict[str, Any]:
    unshare = ["--mount", "--pid", "--fork", "--propagation", "private"]
    args = [hidepid, str(SCRIPT), json.dumps(AS_NOBODY), str(lease_port()), HOLDER]
    seen = dict(run_in_namespace(unshare, INSIDE, *args))
    if "skip" in seen:
        pytest.skip(f"nobody cannot read the installed portinspect: {seen['skip']}")
    return seen


@pytest.mark.parametrize("hidepid", HIDEPID, ids=[f"hidepid={h}" for h in HIDEPID])
def test_unprivileged_user_sees_ports_not_owners_and_kills_nothing(hidepid: str) -> None:
    seen = _inside(hidepid)
    port, results = seen["port"], seen["results"]
    [mount] = seen["mounted"][-1:]
    if hidepid != "0":
        assert "hidepid=" in mount, mount  # the option took, in there
    mine = endpoint(port)
    # Root, inside, sees the holder.
    assert seen["root"]["code"] == 0
    [row] = same_socket(json.loads(seen["root"]["out"])["listeners"], mine)
    assert row["pid"] == seen["holder"]

    # The Linux backend names the owner from the socket's uid; psutil's net_connections()
    # gives no uid for a socket whose process it cannot see, so the portable one cannot.
    for backend, user in (("linux", "root"), ("psutil", None)):
        listed = results[f"list {backend}"]
        assert listed["code"] == 0, (backend, listed["err"])
        [row] = same_socket(json.loads(listed["out"])["listeners"], mine)
        assert (row["pid"], row["user"]) == (None, user), backend
        assert listed["err"].count("\n") == 1 and "run with sudo" in listed["err"], backend

        who = results[f"who {backend}"]
        assert who["code"] == 4, (backend, who["err"])
        doc = json.loads(who["out"])
        assert [(r["pid"], r["user"]) for r in same_socket(doc["listeners"], mine)] == [
            (None, user)
        ]
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
