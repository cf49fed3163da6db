"""The run's context and its processes: the child processes (each in its own
process group, killed at exit), CPU pinning, the /proc readers, and the
servers the benchmark starts and stops."""

import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent.parent
REL = ROOT / "target" / "release"
STRESS = REL / "echoloop-stress"
CLK_TCK = os.sysconf("SC_CLK_TCK")
ANY_PORT = "127.0.0.1:0"
SOURCE_ADDRS = "127.0.0.1-127.0.0.8"
LISTEN_RE = re.compile(r"listening on (\S+)")
STATUS_RE = re.compile(r"conns up ([\d,]+) \(tried ([\d,]+)\)")


class Processes:
    """The child processes: every child leads its own process group, its
    output goes to log files, and all are killed at exit."""

    def __init__(self, logdir, pin):
        self.logdir, self.pin, self.live = logdir, pin, []

    def spawn(self, cmd, name, cpu=None, env=None):
        """Starts cmd in a new process group, stdout/stderr to log files,
        pinned to `cpu` (one CPU, or a list of them; None: unpinned)."""
        base = os.path.join(self.logdir, f"{name}-{len(os.listdir(self.logdir))}")
        out = open(base + ".out", "wb")
        err = open(base + ".err", "wb")
        preexec = None
        cpus = None if cpu is None else ({cpu} if isinstance(cpu, int) else set(cpu))
        if cpus is not None and self.pin["how"] == "sched_setaffinity":
            preexec = lambda: os.sched_setaffinity(0, cpus)  # noqa: E731
        listed = ",".join(str(c) for c in sorted(cpus or []))
        prefix = ["taskset", "-c", listed] if cpus is not None and self.pin["how"] == "taskset" else []
        try:
            p = subprocess.Popen(prefix + [str(c) for c in cmd], stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=err, start_new_session=True, preexec_fn=preexec, env=env)
        finally:
            out.close()
            err.close()
        p.out_path, p.err_path = base + ".out", base + ".err"
        p.argv = [str(c) for c in cmd]
        self.live.append(p)
        return p

    def reap(self, p, timeout):
        """Waits for p up to timeout seconds; returns (exit code, rusage) or None."""
        end = time.monotonic() + timeout
        while True:
            try:
                pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            except ChildProcessError:
                p.returncode = p.returncode if p.returncode is not None else -1
                self.forget(p)
                return (p.returncode, None)
            if pid:
                p.returncode = os.waitstatus_to_exitcode(status)
                self.forget(p)
                return (p.returncode, ru)
            if time.monotonic() >= end:
                return None
            time.sleep(0.02)

    def forget(self, p):
        if p in self.live:
            self.live.remove(p)

    def kill_and_reap(self, p, first=signal.SIGTERM, grace=3.0):
        killpg(p, first)
        if self.reap(p, grace) is None:
            killpg(p, signal.SIGKILL)
            self.reap(p, 5)
        # children of a forking server share its process group
        killpg(p, signal.SIGKILL)

    def kill_all(self):
        for p in list(self.live):
            killpg(p, signal.SIGKILL)
        for p in list(self.live):
            self.reap(p, 5)


def killpg(p, sig):
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def pinning(enabled):
    """How server and client are kept on CPUs 0 and 1."""
    ncpu = len(os.sched_getaffinity(0))
    if not enabled:
        return {"how": "disabled"}
    if ncpu < 2:
        return {"how": "none", "note": f"only {ncpu} CPU available: server and client share it"}
    # without taskset: the same effect, set in the child before exec
    return {"how": "taskset" if shutil.which("taskset") else "sched_setaffinity"}


class Context:
    """What every part of a run shares: the settings, the child processes,
    the pinning, the quiet-machine policy, what was printed and the errors
    the run went on without."""

    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.reps = args.repeat or (1 if self.quick else 3)
        self.duration = args.duration or (1.5 if self.quick else 5.0)
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        self.fd_cap = hard if hard != resource.RLIM_INFINITY else 1 << 20
        # As many as the open-file hard limit allows (less room for the server's own
        # descriptors), but at most 100,000: 8 loopback source addresses give the
        # client ~220,000 ports, and one burst of more is a test of the kernel.
        self.idle_n = args.idle or (2000 if self.quick else max(100, min(self.fd_cap - 100, 100_000)))
        default_out = "results-quick.json" if self.quick else "results.json"
        self.out_path = Path(args.out) if args.out else ROOT / "bench" / default_out
        self.logdir = tempfile.mkdtemp(prefix="echoloop-bench-")
        self.pin = pinning(not args.no_pin)
        self.quiet = {"max_wait": args.quiet_wait, "threshold": 0.3, "retries": args.retries}
        self.procs = Processes(self.logdir, self.pin)
        self.printed = []
        self.errors = []

    def log(self, msg):
        """Progress, on stderr."""
        print(msg, file=sys.stderr, flush=True)

    def say(self, msg=""):
        """The report, on stdout (and kept for results.json)."""
        self.printed.append(msg)
        print(msg, flush=True)

    def guarded(self, what, fn, *a):
        """Runs one part; an unexpected error is recorded and the run goes on."""
        try:
            return fn(*a)
        except Exception as e:  # noqa: BLE001 - reported, never hidden
            self.log(f"ERROR in {what}: {e!r}")
            self.errors.append(f"{what}: {e}")
            self.procs.kill_all()
            return None


def read_text(path):
    try:
        with open(path, "r", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def stat_fields(pid):
    s = read_text(f"/proc/{pid}/stat")
    if not s:
        return None
    return s[s.rindex(")") + 2:].split()  # [0] is field 3 (state)


def cpu_seconds(pid, with_children=False):
    f = stat_fields(pid)
    if f is None:
        return None
    ticks = int(f[11]) + int(f[12])  # utime + stime
    if with_children:
        ticks += int(f[13]) + int(f[14])  # cutime + cstime (reaped children)
    return ticks / CLK_TCK


def status_kb(pid, key):
    for line in read_text(f"/proc/{pid}/status").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def smaps_kb(pid, key):
    for line in read_text(f"/proc/{pid}/smaps_rollup").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def group_members(pgid):
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            f = stat_fields(d)
            if f and f[2] == str(pgid):
                pids.append(int(d))
    return pids


def wineservers(prefix):
    """The wineserver of a Wine prefix: it leaves the process group of the
    program that started it, so it is found by the WINEPREFIX it inherited."""
    want = f"WINEPREFIX={prefix}".encode()
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit() and read_text(f"/proc/{d}/comm").startswith("wineserver"):
            try:
                with open(f"/proc/{d}/environ", "rb") as f:
                    if want in f.read().split(b"\0"):
                        pids.append(int(d))
            except OSError:
                pass
    return pids


def children_of(pid):
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        out += [int(x) for x in read_text(f"/proc/{pid}/task/{tid}/children").split()]
    return out


def busy_seconds():
    """CPU time all CPUs spent not idle since boot (from /proc/stat)."""
    f = [int(x) for x in read_text("/proc/stat").splitlines()[0].split()[1:]]
    idle = f[3] + (f[4] if len(f) > 4 else 0)
    return (sum(f[:8]) - idle) / CLK_TCK


def meminfo_kb(key):
    for line in read_text("/proc/meminfo").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def loadavg():
    return read_text("/proc/loadavg").split()[:3]


class Server:
    """How to start one echo server, and what the comparison knows of it.

    kind: "loop" (one process), "threads" (one process, a thread per
    client), "fork" (CPU and memory summed over its process group), "wine"
    (a Windows program under Wine: CPU summed over its process group).
    top: most connections the comparison's ladder tries. mark: shown next to
    its name in every row (e.g. "Wine, correctness only"). note: a sentence
    printed under the comparison. strace: whether its syscalls are counted.
    cleanup: called after each stop (e.g. to stop wineserver)."""

    def __init__(self, name, argv, kind="loop", env=None, top=19000, mark=None, note=None,
                 strace=True, cleanup=None, start_timeout=30.0):
        self.name, self.argv, self.kind, self.env = name, argv, kind, env
        self.top, self.mark, self.note, self.strace = top, mark, note, strace
        self.cleanup, self.start_timeout = cleanup, start_timeout


class Running:
    def __init__(self, spec, proc, pid, addr):
        self.spec, self.proc, self.pid, self.addr = spec, proc, pid, addr

    def cpu(self):
        """Server CPU seconds so far: for a forking server (or Wine), the
        parent, its reaped children and the live ones; for Wine also its
        prefix's wineserver."""
        if self.spec.kind not in ("fork", "wine"):
            return cpu_seconds(self.pid)
        total = cpu_seconds(self.pid, with_children=True) or 0.0
        others = group_members(self.proc.pid)
        if self.spec.kind == "wine":
            others += wineservers(self.spec.env["WINEPREFIX"])
        for pid in others:
            if pid != self.pid:
                total += cpu_seconds(pid) or 0.0
        return total

    def memory(self):
        m = {"rss_kb": status_kb(self.pid, "VmRSS"), "hwm_kb": status_kb(self.pid, "VmHWM")}
        if self.spec.kind == "fork":
            pids = group_members(self.proc.pid)
            m["processes"] = len(pids)
            m["group_rss_kb"] = sum(status_kb(p, "VmRSS") or 0 for p in pids)
            m["group_pss_kb"] = sum(smaps_kb(p, "Pss") or 0 for p in pids)
        else:
            m["threads"] = status_kb(self.pid, "Threads")  # a count, not kB
        return m

    def settle_children(self, timeout=5.0):
        """Forking server: waits until the children of finished clients are reaped."""
        if self.spec.kind != "fork":
            return
        end = time.monotonic() + timeout
        while time.monotonic() < end and len(group_members(self.proc.pid)) > 1:
            time.sleep(0.1)


def start_server(ctx, spec, strace_out=None, cpu=0):
    cmd = list(spec.argv)
    if strace_out:
        cmd = ["strace", "-f", "-c", "-o", strace_out] + cmd
    p = ctx.procs.spawn(cmd, re.sub(r"\W+", "_", spec.name), cpu=cpu, env=spec.env)
    end = time.monotonic() + spec.start_timeout
    addr = None
    while time.monotonic() < end:
        m = LISTEN_RE.search(read_text(p.out_path)) or LISTEN_RE.search(read_text(p.err_path))
        if m:
            addr = m.group(1)
            break
        if ctx.procs.reap(p, 0) is not None:
            break
        time.sleep(0.02)
    if not addr:
        stop_process(ctx, spec, p)
        raise RuntimeError(f"{spec.name} did not report 'listening on': {read_text(p.err_path)[-2000:]}")
    pid = p.pid
    if strace_out:  # the traced server is strace's child
        while time.monotonic() < end and not children_of(p.pid):
            time.sleep(0.02)
        pid = children_of(p.pid)[0]
    return Running(spec, p, pid, addr)


def stop_process(ctx, spec, p):
    ctx.procs.kill_and_reap(p, signal.SIGTERM, grace=3.0)
    if spec.cleanup:
        spec.cleanup()


def stop_server(ctx, srv):
    stop_process(ctx, srv.spec, srv.proc)
