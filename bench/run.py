#!/usr/bin/env python3
"""One-command benchmark for echoloop (issue 3), plus the technique comparison
and the epoll-vs-poll(2) backend measurement (issue 5).

    python3 bench/run.py                     # cases 1-6 (about 2 minutes)
    python3 bench/run.py --quick             # smoke run with short cases (< 1 minute)
    python3 bench/run.py --syscalls          # + syscalls per echoed message (strace -f -c)
    python3 bench/run.py --compare           # + every example server side by side
    python3 bench/run.py --backends          # + epoll vs poll(2) with idle connections held
    python3 bench/run.py --reference ./cecho # + any other echo server as a reference column

What it does: builds the release binaries, starts the server pinned to CPU 0
(`taskset -c 0`) and `echoloop-stress --json` pinned to CPU 1, runs each case,
reads the server's CPU time (utime+stime, /proc/PID/stat, as a delta per run)
and peak RSS (VmHWM, /proc/PID/status; a fresh server per case), prints
Markdown tables and writes everything to bench/results.json.

Python 3 standard library only; Linux only (it reads /proc). All traffic stays
on 127.0.0.0/8. Every process it starts runs in its own process group and is
killed on exit, exception, Ctrl-C or SIGTERM.

A server given with --reference (or any server the script starts other than
echoloop) must take its listen address (`127.0.0.1:0`) as first argument and
print `listening on ADDR` as a line on stdout or stderr, as the examples do.
"""

import argparse
import atexit
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
SOURCE_ADDRS = "127.0.0.1-127.0.0.8"
LISTEN_RE = re.compile(r"listening on (\S+)")
STATUS_RE = re.compile(r"conns up ([\d,]+) \(tried ([\d,]+)\)")

# --------------------------------------------------------------------------
# Processes: every child leads its own process group; all are killed at exit.
# --------------------------------------------------------------------------

LIVE = []  # Popen objects still to be reaped
PIN = {"how": "none"}  # filled by setup_pinning()
LOGDIR = None


def setup_pinning(enabled):
    ncpu = len(os.sched_getaffinity(0))
    if not enabled or ncpu < 2:
        PIN["how"] = "none" if enabled else "disabled"
        if enabled:
            PIN["note"] = f"only {ncpu} CPU available: server and client share it"
        return
    if shutil.which("taskset"):
        PIN["how"] = "taskset"
    else:
        PIN["how"] = "sched_setaffinity"  # same effect, set in the child before exec


def pin_prefix(cpu):
    if cpu is None or PIN["how"] != "taskset":
        return []
    return ["taskset", "-c", str(cpu)]


def spawn(cmd, name, cpu=None, env=None):
    """Starts cmd in a new process group, stdout/stderr to log files."""
    base = os.path.join(LOGDIR, f"{name}-{len(os.listdir(LOGDIR))}")
    out = open(base + ".out", "wb")
    err = open(base + ".err", "wb")
    preexec = None
    if cpu is not None and PIN["how"] == "sched_setaffinity":
        preexec = lambda: os.sched_setaffinity(0, {cpu})  # noqa: E731
    try:
        p = subprocess.Popen(
            pin_prefix(cpu) + [str(c) for c in cmd],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            preexec_fn=preexec,
            env=env,
        )
    finally:
        out.close()
        err.close()
    p.out_path, p.err_path = base + ".out", base + ".err"
    p.argv = [str(c) for c in cmd]
    LIVE.append(p)
    return p


def killpg(p, sig):
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def reap(p, timeout):
    """Waits for p up to timeout seconds; returns (exit code, rusage) or None."""
    end = time.monotonic() + timeout
    while True:
        try:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        except ChildProcessError:
            p.returncode = p.returncode if p.returncode is not None else -1
            if p in LIVE:
                LIVE.remove(p)
            return (p.returncode, None)
        if pid:
            p.returncode = os.waitstatus_to_exitcode(status)
            if p in LIVE:
                LIVE.remove(p)
            return (p.returncode, ru)
        if time.monotonic() >= end:
            return None
        time.sleep(0.02)


def kill_and_reap(p, first=signal.SIGTERM, grace=3.0):
    killpg(p, first)
    if reap(p, grace) is None:
        killpg(p, signal.SIGKILL)
        reap(p, 5)
    # children of a forking server share its process group
    killpg(p, signal.SIGKILL)


def kill_everything():
    for p in list(LIVE):
        killpg(p, signal.SIGKILL)
    for p in list(LIVE):
        reap(p, 5)


def read_text(path):
    try:
        with open(path, "r", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


# --------------------------------------------------------------------------
# /proc readers
# --------------------------------------------------------------------------


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


# --------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------


class Server:
    def __init__(self, name, argv, kind="loop", env=None):
        self.name, self.argv, self.kind, self.env = name, argv, kind, env


class Running:
    def __init__(self, spec, proc, pid, addr):
        self.spec, self.proc, self.pid, self.addr = spec, proc, pid, addr

    def cpu(self):
        """Server CPU seconds so far: for a forking server, the parent, its
        reaped children and the live ones."""
        if self.spec.kind != "fork":
            return cpu_seconds(self.pid)
        total = cpu_seconds(self.pid, with_children=True) or 0.0
        for pid in group_members(self.proc.pid):
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


def start_server(spec, strace_out=None):
    cmd = list(spec.argv)
    if strace_out:
        cmd = ["strace", "-f", "-c", "-o", strace_out] + cmd
    p = spawn(cmd, re.sub(r"\W+", "_", spec.name), cpu=0, env=spec.env)
    end = time.monotonic() + 30
    addr = None
    while time.monotonic() < end:
        m = LISTEN_RE.search(read_text(p.out_path)) or LISTEN_RE.search(read_text(p.err_path))
        if m:
            addr = m.group(1)
            break
        if reap(p, 0) is not None:
            break
        time.sleep(0.02)
    if not addr:
        kill_and_reap(p)
        raise RuntimeError(
            f"{spec.name} did not report 'listening on': {read_text(p.err_path)[-2000:]}"
        )
    pid = p.pid
    if strace_out:  # the traced server is strace's child
        while time.monotonic() < end and not children_of(p.pid):
            time.sleep(0.02)
        pid = children_of(p.pid)[0]
    return Running(spec, p, pid, addr)


def stop_server(srv):
    kill_and_reap(srv.proc, signal.SIGTERM, grace=3.0)


# --------------------------------------------------------------------------
# The stress client
# --------------------------------------------------------------------------

STRESS = ROOT / "target" / "release" / "echoloop-stress"


def stress_argv(addr, conns, size=64, pipeline=1, threads=1, duration=None, messages=None,
                mode="load", busy=False, source=None, connect_timeout=None):
    a = [STRESS, "--addr", addr, "--json", "--mode", mode, "--connections", conns,
         "--message-size", size, "--pipeline", pipeline, "--threads", threads]
    if duration is not None:
        a += ["--duration", duration]
    if messages is not None:
        a += ["--messages", messages]
    if busy:
        a.append("--busy-poll")
    if source:
        a += ["--source-addrs", source]
    if connect_timeout:
        a += ["--connect-timeout", connect_timeout]
    return [str(x) for x in a]


def run_stress(argv, timeout, name="stress", during=None):
    """Runs one stress client pinned to CPU 1 and waits for it (bounded).
    `during(elapsed, client)` is called every 50 ms while it runs."""
    p = spawn(argv, name, cpu=1)
    t0 = time.monotonic()
    interrupted = False
    res = None
    while res is None:
        res = reap(p, 0.05)
        if res is not None:
            break
        el = time.monotonic() - t0
        if during:
            during(el, p)
        if el > timeout and not interrupted:
            killpg(p, signal.SIGINT)  # prints the report so far
            interrupted = True
        elif el > timeout + 10:
            killpg(p, signal.SIGKILL)
    wall = time.monotonic() - t0
    code, ru = res
    try:
        report = json.loads(read_text(p.out_path))
    except ValueError:
        report = None
    return {
        "argv": argv,
        "exit": code,
        "wall_secs": wall,
        "client_cpu_secs": (ru.ru_utime + ru.ru_stime) if ru else None,
        "timed_out": interrupted,
        "report": report,
        "stderr_tail": read_text(p.err_path)[-600:] if code else "",
        "ok": bool(report) and code == 0 and report.get("verification_errors", 1) == 0,
    }


QUIET = {"max_wait": 10.0, "threshold": 0.3, "retries": 2}


def wait_quiet():
    """Waits (at most QUIET['max_wait'] s) until the machine's CPUs are busy
    with less than QUIET['threshold'] cores' worth of other work; returns the
    last background load measured (cores), or None when not asked to wait."""
    if QUIET["max_wait"] <= 0:
        return None
    end = time.monotonic() + QUIET["max_wait"]
    while True:
        b0 = busy_seconds()
        time.sleep(0.5)
        load = (busy_seconds() - b0) / 0.5
        if load <= QUIET["threshold"] or time.monotonic() >= end:
            return load


def measured(srv, argv, timeout, name="stress", during=None):
    """One stress run with the server's CPU delta and the machine's other load."""
    background = wait_quiet()
    c0, b0 = srv.cpu(), busy_seconds()
    r = run_stress(argv, timeout, name, during)
    srv.settle_children()
    c1, b1 = srv.cpu(), busy_seconds()
    rep = r["report"] or {}
    r["server_cpu_secs"] = (c1 - c0) if c0 is not None and c1 is not None else None
    wall = r["wall_secs"]
    msgs = rep.get("messages") or 0
    r["server_cpu_us_per_msg"] = r["server_cpu_secs"] / msgs * 1e6 if msgs and r["server_cpu_secs"] is not None else None
    r["server_core_pct"] = 100 * r["server_cpu_secs"] / wall if r["server_cpu_secs"] is not None else None
    r["client_core_pct"] = 100 * r["client_cpu_secs"] / wall if r["client_cpu_secs"] is not None else None
    ours = (r["server_cpu_secs"] or 0) + (r["client_cpu_secs"] or 0)
    r["other_cores"] = max(0.0, (b1 - b0) - ours) / wall  # other processes (noise)
    r["background_before_cores"] = background
    r["ok"] = bool(rep) and r["exit"] == 0 and rep.get("verification_errors", 1) == 0
    return r


def measured_retry(srv, argv, timeout, log, name="stress"):
    """measured(), run again (at most QUIET['retries'] times) while other
    processes took more than QUIET['threshold'] cores during the run; the
    discarded runs are kept in the result."""
    discarded = []
    while True:
        r = measured(srv, argv, timeout, name)
        if r["other_cores"] <= QUIET["threshold"] or len(discarded) >= QUIET["retries"] or not r["ok"]:
            break
        log(f"      (noisy: other processes took {r['other_cores']:.2f} cores; {fmt_num((r['report'] or {}).get('msgs_per_sec'))} msg/s discarded, running again)")
        discarded.append({k: r[k] for k in ("other_cores", "server_cpu_us_per_msg")} | {
            "msgs_per_sec": (r["report"] or {}).get("msgs_per_sec")})
    r["discarded_noisy_runs"] = discarded
    return r


def med(values):
    v = [x for x in values if x is not None]
    return statistics.median(v) if v else None


def summarize(runs):
    reps = [r["report"] or {} for r in runs]
    lat = lambda k: med([(x.get("latency_us") or {}).get(k) for x in reps])  # noqa: E731
    mps = [x.get("msgs_per_sec") for x in reps]
    m = med(mps)
    good = [x for x in mps if x is not None]
    return {
        "runs": len(runs),
        "msgs_per_sec": m,
        "msgs_per_sec_min": min(good) if good else None,
        "msgs_per_sec_max": max(good) if good else None,
        "spread_pct": 100 * (max(good) - min(good)) / m if good and m else None,
        "mib_per_sec": med([x.get("mib_per_sec") for x in reps]),
        "p50_us": lat("p50"),
        "p99_us": lat("p99"),
        "p99_9_us": lat("p99_9"),
        "server_cpu_us_per_msg": med([r["server_cpu_us_per_msg"] for r in runs]),
        "server_core_pct": med([r["server_core_pct"] for r in runs]),
        "client_core_pct": med([r["client_core_pct"] for r in runs]),
        "other_cores": med([r["other_cores"] for r in runs]),
        "connections_per_sec": med([x.get("connections_per_sec") for x in reps]),
        "verification_errors": sum(x.get("verification_errors", 0) or 0 for x in reps),
        "failures": sum(x.get("failures", 0) or 0 for x in reps),
        "stalled": sum(x.get("stalled", 0) or 0 for x in reps),
        "unexpected_closes": sum(x.get("unexpected_closes", 0) or 0 for x in reps),
        "connections_failed": sum(x.get("connections_failed", 0) or 0 for x in reps),
        "all_ok": all(r["ok"] for r in runs),
    }


# --------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------


def main_cases(quick):
    c3 = 200 if quick else 1000
    return [
        {"id": "1", "label": "1 conn, 64 B, pipeline 1 (client --busy-poll)", "conns": 1, "size": 64, "busy": True},
        {"id": "1s", "label": "1 conn, 64 B, pipeline 1 (client sleeps in poll)", "conns": 1, "size": 64},
        {"id": "2", "label": "50 conns, 512 B, pipeline 1", "conns": 50, "size": 512},
        {"id": "3", "label": f"{c3:,} conns, 128 B, pipeline 4, client --threads 1", "conns": c3, "size": 128, "pipeline": 4},
        {"id": "3t2", "label": f"{c3:,} conns, 128 B, pipeline 4, client --threads 2", "conns": c3, "size": 128, "pipeline": 4, "threads": 2},
        {"id": "4", "label": "50 conns, 16 KiB, pipeline 1", "conns": 50, "size": 16384},
    ]


def case_argv(addr, c, duration, source=None):
    return stress_argv(addr, c["conns"], c["size"], c.get("pipeline", 1), c.get("threads", 1),
                       duration=duration, busy=c.get("busy", False), source=source)


def run_throughput(specs, c, reps, duration, log):
    """One case against one or more servers, all started at once and run in
    turn (A B A B ...), so that a change in the machine's background load
    hits every server alike. A fresh set of servers per case, so each peak
    RSS is that case's."""
    running = []
    try:
        for spec in specs:
            running.append(start_server(spec))
        runs = {srv.spec.name: [] for srv in running}
        for i in range(reps):
            for srv in running:
                r = measured_retry(srv, case_argv(srv.addr, c, duration), duration + 30, log)
                runs[srv.spec.name].append(r)
                log(f"    {srv.spec.name} case {c['id']} run {i + 1}/{reps}: {fmt_num((r['report'] or {}).get('msgs_per_sec'))} msg/s, "
                    f"server {fmt(r['server_cpu_us_per_msg'], 2)} us/msg, other load {r['other_cores']:.2f} cores"
                    + ("" if r["ok"] else f"  FAILED exit {r['exit']}: {r['stderr_tail'][-200:]}"))
        hwm = {srv.spec.name: status_kb(srv.pid, "VmHWM") for srv in running}
    finally:
        for srv in running:
            stop_server(srv)
    out = []
    for spec in specs:
        s = summarize(runs[spec.name])
        s.update({"id": c["id"], "label": c["label"], "server": spec.name, "peak_rss_kb": hwm[spec.name],
                  "argv": shlex.join(case_argv("ADDR", c, duration)), "raw": runs[spec.name]})
        out.append(s)
    return out


def run_idle(spec, count, hold, log):
    """Case 5: hold `count` idle connections, sample the server's RSS while
    they are open, then let the client verify every one still echoes."""
    srv = start_server(spec)
    try:
        time.sleep(0.3)
        rss0, slab0 = status_kb(srv.pid, "VmRSS"), meminfo_kb("Slab")
        sample = {}

        def during(el, p):
            if sample:
                return
            lines = STATUS_RE.findall(read_text(p.err_path))
            if not lines:
                return
            up, tried = (int(x.replace(",", "")) for x in lines[-1])
            stable = len(lines) >= 2 and lines[-1] == lines[-2]
            if up >= count or (tried >= count and stable):
                time.sleep(0.5)
                sample.update(up=up, rss_kb=status_kb(srv.pid, "VmRSS"),
                              slab_kb=meminfo_kb("Slab"), at_secs=round(el, 1))

        argv = stress_argv(srv.addr, count, 64, mode="idle", duration=hold, source=SOURCE_ADDRS,
                           connect_timeout=10)
        r = measured(srv, argv, hold + 90, "idle", during)
        hwm = status_kb(srv.pid, "VmHWM")
    finally:
        stop_server(srv)
    rep = r["report"] or {}
    held = rep.get("idle_held") or sample.get("up") or 0
    out = {
        "server": spec.name, "count": count, "argv": shlex.join(stress_argv("ADDR", count, 64, mode="idle", duration=hold,
                                                                             source=SOURCE_ADDRS, connect_timeout=10)),
        "established": rep.get("connections_established"), "held": rep.get("idle_held"),
        "survived": rep.get("idle_survived"), "failed": rep.get("connections_failed"),
        "ok": r["ok"] and rep.get("idle_survived") == count,
        "rss_before_kb": rss0, "rss_with_kb": sample.get("rss_kb"), "peak_rss_kb": hwm,
        "sampled_at_secs": sample.get("at_secs"),
        "connect_p50_us": (rep.get("connect_latency_us") or {}).get("p50"),
        "connect_p99_us": (rep.get("connect_latency_us") or {}).get("p99"),
        "raw": r,
    }
    if sample.get("rss_kb") and held:
        out["rss_bytes_per_conn"] = (sample["rss_kb"] - rss0) * 1024 / held
        # both ends of every connection are on this machine: kernel slab per socket
        out["kernel_slab_bytes_per_socket"] = (sample["slab_kb"] - slab0) * 1024 / (2 * held)
    return out


def run_churn(specs, reps, duration, log):
    """Case 6, servers in turn as in run_throughput."""
    running = []
    try:
        for spec in specs:
            running.append(start_server(spec))
        runs = {srv.spec.name: [] for srv in running}
        for i in range(reps):
            for srv in running:
                argv = stress_argv(srv.addr, 50, 64, mode="churn", duration=duration, source=SOURCE_ADDRS)
                r = measured_retry(srv, argv, duration + 30, log, "churn")
                rep = r["report"] or {}
                cycles = rep.get("churn_cycles") or 0
                r["server_cpu_us_per_conn"] = r["server_cpu_secs"] / cycles * 1e6 if cycles else None
                runs[srv.spec.name].append(r)
                log(f"    {srv.spec.name} churn run {i + 1}/{reps}: {fmt_num(rep.get('connections_per_sec'))} conn/s, "
                    f"other load {r['other_cores']:.2f} cores"
                    + ("" if r["ok"] else f"  FAILED exit {r['exit']}: {r['stderr_tail'][-200:]}"))
        hwm = {srv.spec.name: status_kb(srv.pid, "VmHWM") for srv in running}
    finally:
        for srv in running:
            stop_server(srv)
    out = []
    for spec in specs:
        rs = runs[spec.name]
        s = summarize(rs)
        s.update({"server": spec.name, "peak_rss_kb": hwm[spec.name],
                  "server_cpu_us_per_conn": med([r["server_cpu_us_per_conn"] for r in rs]),
                  "connect_p99_us": med([((r["report"] or {}).get("connect_latency_us") or {}).get("p99") for r in rs]),
                  "argv": shlex.join(stress_argv("ADDR", 50, 64, mode="churn", duration=duration, source=SOURCE_ADDRS)),
                  "raw": rs})
        out.append(s)
    return out


# ---- --syscalls -----------------------------------------------------------


def parse_strace(path):
    calls, errors, total = {}, {}, None
    for line in read_text(path).splitlines():
        t = line.split()
        if len(t) < 5 or not re.match(r"^[\d.]+$", t[0]):
            continue
        name = t[-1]
        nums = t[3:-1]
        if name == "total":
            total = int(nums[0])
            continue
        calls[name] = int(nums[0])
        errors[name] = int(nums[1]) if len(nums) > 1 else 0
    return calls, errors, total


def strace_run(spec, argv_fn, log):
    slug = re.sub(r"\W+", "_", spec.name)
    out = os.path.join(LOGDIR, f"strace-{slug}-{time.monotonic_ns()}.txt")
    srv = start_server(spec, strace_out=out)
    r = None
    try:
        if argv_fn:
            r = run_stress(argv_fn(srv.addr), 300, "stress-strace")
        os.kill(srv.pid, signal.SIGTERM)  # the server exits; strace writes its summary
        if reap(srv.proc, 20) is None:
            kill_and_reap(srv.proc, signal.SIGINT)
    finally:
        if srv.proc in LIVE:
            kill_and_reap(srv.proc)
    calls, errors, total = parse_strace(out)
    return calls, errors, r


def run_syscalls(spec, cases, log):
    """Counts the server's syscalls per echoed message, minus what an idle
    start + shutdown costs (counted the same way with no client)."""
    base, _, _ = strace_run(spec, None, log)
    results = []
    for label, fn in cases:
        calls, errors, r = strace_run(spec, fn, log)
        rep = (r or {}).get("report") or {}
        msgs = rep.get("messages") or 0
        net = {k: calls.get(k, 0) - base.get(k, 0) for k in calls}
        net = {k: v for k, v in net.items() if v > 0}
        total = sum(net.values())
        results.append({
            "server": spec.name, "case": label, "messages": msgs, "ok": bool(r and r["ok"]),
            "msgs_per_sec_under_strace": rep.get("msgs_per_sec"),
            "syscalls": total, "per_msg": total / msgs if msgs else None,
            "breakdown": {k: {"calls": v, "per_msg": v / msgs if msgs else None, "errors": errors.get(k, 0)}
                          for k, v in sorted(net.items(), key=lambda kv: -kv[1])},
            "baseline": base, "argv": shlex.join(fn("ADDR")),
        })
        log(f"    {spec.name} {label}: {fmt(results[-1]['per_msg'], 3)} syscalls/msg over {msgs:,} msgs")
    return results


# ---- --compare ------------------------------------------------------------


def largest_argv(addr, n, duration):
    """The 'largest count' case: n connections × 64 B ping-pong, ramped up at
    5,000 connects/s (the ramp is not what is measured), and an echo may take
    up to 30 s before the connection counts as stalled: a slow server shows
    in p99, only a server that stops answering fails."""
    return stress_argv(addr, n, 64, duration=duration, source=SOURCE_ADDRS, connect_timeout=10) + [
        "--connect-rate", "5000", "--echo-timeout", "30"]


def run_largest(spec, ladder, duration, log):
    """Largest connection count (from ladder, descending) that the server
    serves with every connection established and every byte verified."""
    tried = []
    for n in ladder:
        srv = start_server(spec)
        mem = {}
        try:
            def during(el, p):
                if not mem and el >= 0.6 * duration:
                    mem.update(srv.memory())
            argv = largest_argv(srv.addr, n, duration)
            r = measured(srv, argv, duration + 90, "largest", during)
            end_mem = srv.memory()
        finally:
            stop_server(srv)
        rep = r["report"] or {}
        ok = r["ok"] and rep.get("connections_established") == n and rep.get("failures") == 0
        entry = {"conns": n, "ok": ok, "msgs_per_sec": rep.get("msgs_per_sec"),
                 "p99_us": (rep.get("latency_us") or {}).get("p99"),
                 "server_cpu_us_per_msg": r["server_cpu_us_per_msg"], "mid_run_memory": mem,
                 "other_cores": r["other_cores"],
                 "end_memory": end_mem, "established": rep.get("connections_established"),
                 "failures": rep.get("failures"), "verdict": rep.get("verdict"),
                 "failed_by_reason": rep.get("failed_by_reason"), "unexpected_closes": rep.get("unexpected_closes"),
                 "stalled": rep.get("stalled"), "aborted": rep.get("connections_aborted"),
                 "first_problem": rep.get("first_unexpected_close") or rep.get("first_stall"),
                 "argv": shlex.join(largest_argv("ADDR", n, duration))}
        tried.append(entry)
        log(f"    {spec.name} {n:,} conns: {'ok' if ok else 'FAILED'} {fmt_num(entry['msgs_per_sec'])} msg/s"
            + ("" if ok else f" (established {entry['established']}, failed {entry['failed_by_reason']}, "
                             f"unexpected closes {entry['unexpected_closes']}, stalled {entry['stalled']}, "
                             f"first: {entry['first_problem']})"))
        if ok:
            return entry, tried
    return None, tried


# ---- --backends -----------------------------------------------------------


def run_backend_point(spec, idle_n, reps, duration, log):
    srv = start_server(spec)
    holder = None
    try:
        held = 0
        if idle_n:
            holder = spawn(stress_argv(srv.addr, idle_n, 64, mode="idle", duration=3600,
                                       source="127.0.0.2-127.0.0.8", connect_timeout=10), "idle-holder", cpu=1)
            end = time.monotonic() + 120
            while time.monotonic() < end:
                lines = STATUS_RE.findall(read_text(holder.err_path))
                if lines:
                    up, tried = (int(x.replace(",", "")) for x in lines[-1])
                    if up >= idle_n or (tried >= idle_n and len(lines) >= 3 and lines[-1] == lines[-3]):
                        held = up
                        break
                if reap(holder, 0) is not None:
                    break
                time.sleep(0.2)
            time.sleep(1.0)
        runs = []
        for i in range(reps):
            r = measured_retry(srv, stress_argv(srv.addr, 50, 512, duration=duration), duration + 60, log)
            runs.append(r)
            log(f"    {spec.name} idle {idle_n:,} run {i + 1}/{reps}: {fmt_num((r['report'] or {}).get('msgs_per_sec'))} msg/s, "
                f"server {fmt(r['server_cpu_us_per_msg'], 2)} us/msg"
                + ("" if r["ok"] else f"  FAILED exit {r['exit']}: {r['stderr_tail'][-200:]}"))
        still = None
        if holder is not None:
            still = len(STATUS_RE.findall(read_text(holder.err_path))) and \
                int(STATUS_RE.findall(read_text(holder.err_path))[-1][0].replace(",", ""))
        hwm = status_kb(srv.pid, "VmHWM")
    finally:
        if holder is not None:
            kill_and_reap(holder, signal.SIGINT, grace=10)
        stop_server(srv)
    s = summarize(runs)
    s.update({"server": spec.name, "idle_requested": idle_n, "idle_held": held, "idle_still_up": still,
              "peak_rss_kb": hwm, "raw": runs})
    return s


# --------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------


def fmt(v, nd=1):
    return "–" if v is None else f"{v:,.{nd}f}"


def fmt_num(v):
    return "–" if v is None else f"{v:,.0f}"


def fmt_kib(kb):
    if kb is None:
        return "–"
    return f"{kb / 1024:,.1f} MiB" if kb >= 10240 else f"{kb:,} KiB"


def md_table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def main_table(results):
    rows = []
    for s in results:
        rows.append([
            s["id"], s["label"], s["server"], fmt_num(s["msgs_per_sec"]), fmt(s["mib_per_sec"]),
            fmt(s["p50_us"]), fmt(s["p99_us"]), fmt(s["p99_9_us"]), fmt(s["server_cpu_us_per_msg"], 2),
            fmt(s["server_core_pct"], 0), fmt(s["client_core_pct"], 0), fmt_kib(s["peak_rss_kb"]),
            fmt(s["spread_pct"], 1), fmt(s["other_cores"], 2),
            verdict(s),
        ])
    return md_table(["#", "case", "server", "msgs/s", "MiB/s", "p50 µs", "p99 µs", "p99.9 µs",
                     "server CPU µs/msg (= s per M msgs)", "server core %", "client core %",
                     "server peak RSS", "spread % (max−min)/median", "other load (cores)", "verified"], rows)


def idle_table(items):
    rows = []
    for i in items:
        rows.append([i["server"], f"{i['count']:,}", fmt_num(i["established"]), fmt_num(i["survived"]),
                     fmt_kib(i["rss_before_kb"]), fmt_kib(i["rss_with_kb"]), fmt(i.get("rss_bytes_per_conn"), 1),
                     fmt(i.get("kernel_slab_bytes_per_socket"), 0), fmt_kib(i["peak_rss_kb"]),
                     fmt(i["connect_p99_us"], 0), "yes" if i["ok"] else "NO"])
    return md_table(["server", "idle conns asked", "established", "verified after hold", "RSS before",
                     "RSS with them open", "user-space RSS bytes/conn", "kernel slab bytes/socket (informative)",
                     "peak RSS", "connect p99 µs", "all verified"], rows)


def churn_table(items):
    rows = [[c["server"], fmt_num(c["connections_per_sec"]), fmt(c["server_cpu_us_per_conn"], 1),
             fmt(c["connect_p99_us"], 0), fmt(c["server_core_pct"], 0), fmt(c["client_core_pct"], 0),
             fmt_kib(c["peak_rss_kb"]), fmt(c["spread_pct"], 1), fmt(c["other_cores"], 2),
             verdict(c)] for c in items]
    return md_table(["server", "connections/s (connect, echo 64 B, close)", "server CPU µs/conn",
                     "connect p99 µs", "server core %", "client core %", "server peak RSS",
                     "spread %", "other load (cores)", "verified"], rows)


def reference_table(main, ref):
    by = {s["id"]: s for s in ref}
    rows = []
    for s in main:
        r = by.get(s["id"])
        if not r:
            continue
        ratio = lambda a, b: f"{a / b:.2f}" if a and b else "–"  # noqa: E731
        rows.append([s["id"], s["label"], fmt_num(s["msgs_per_sec"]), fmt_num(r["msgs_per_sec"]),
                     ratio(s["msgs_per_sec"], r["msgs_per_sec"]), fmt(s["server_cpu_us_per_msg"], 2),
                     fmt(r["server_cpu_us_per_msg"], 2), ratio(s["server_cpu_us_per_msg"], r["server_cpu_us_per_msg"]),
                     fmt(s["p99_us"]), fmt(r["p99_us"])])
    return md_table(["#", "case", "echoloop msgs/s", "reference msgs/s", "ratio", "echoloop CPU µs/msg",
                     "reference CPU µs/msg", "ratio", "echoloop p99 µs", "reference p99 µs"], rows)


def syscalls_table(items):
    rows = []
    for s in items:
        top = ", ".join(f"{k} {v['per_msg']:.3f}" + (f" ({v['errors']:,} err)" if v["errors"] else "")
                        for k, v in list(s["breakdown"].items())[:8] if v["per_msg"] is not None)
        rows.append([s["server"], s["case"], f"{s['messages']:,}", fmt_num(s["msgs_per_sec_under_strace"]),
                     f"{s['syscalls']:,}", fmt(s["per_msg"], 3), top])
    return md_table(["server", "case", "messages", "msgs/s under strace", "syscalls (minus idle start/stop)",
                     "syscalls/msg", "per message, by syscall"], rows)


def verdict(s):
    if s["all_ok"] and not s["verification_errors"]:
        return "yes"
    return (f"NO: {s['verification_errors']} verification errors, {s['connections_failed']} failed connects, "
            f"{s['stalled']} stalled, {s['unexpected_closes']} unexpected closes (over {s['runs']} runs)")


def compare_table(items):
    rows = []
    for c in items:
        for k in ("c1", "c50", "c1000"):
            s = c.get(k)
            if s:
                rows.append([c["server"], s["label"], fmt_num(s["msgs_per_sec"]), fmt(s["p99_us"]),
                             fmt(s["server_cpu_us_per_msg"], 2),
                             fmt_kib(s["peak_rss_kb"]) + (" (parent only)" if c.get("kind") == "fork" else ""),
                             fmt(s["spread_pct"], 1),
                             fmt(s["other_cores"], 2), verdict(s)])
        L = c.get("largest")
        if L:
            mm = L["mid_run_memory"] or {}
            if "group_pss_kb" in mm:
                mem = (f"{fmt_kib(mm['group_pss_kb'])} PSS over {mm['processes']:,} processes "
                       f"(RSS sum {fmt_kib(mm['group_rss_kb'])})")
                per = mm["group_pss_kb"] * 1024 / L["conns"]
            else:
                mem = f"{fmt_kib(mm.get('rss_kb'))} RSS mid-run" + (
                    f", {mm['threads']:,} threads" if c["kind"] == "threads" and mm.get("threads") else "")
                per = (mm.get("rss_kb") or 0) * 1024 / L["conns"]
            rows.append([c["server"], f"largest: {L['conns']:,} conns, 64 B", fmt_num(L["msgs_per_sec"]),
                         fmt(L["p99_us"]), fmt(L["server_cpu_us_per_msg"], 2),
                         f"{mem}; {per / 1024:,.1f} KiB/conn (total ÷ conns)", "1 run", fmt(L.get("other_cores"), 2), "yes"])
        else:
            rows.append([c["server"], f"largest: none of {c['ladder']} passed", "–", "–", "–", "–", "–", "–", "NO"])
    return md_table(["server", "case", "msgs/s", "p99 µs", "server CPU µs/msg", "server memory", "spread %",
                     "other load (cores)", "verified"], rows)


def backends_table(items):
    rows = [[s["server"], f"{s['idle_requested']:,}", f"{s['idle_held']:,}", fmt_num(s["msgs_per_sec"]),
             fmt(s["p99_us"]), fmt(s["server_cpu_us_per_msg"], 2), fmt(s["server_core_pct"], 0),
             fmt(s["spread_pct"], 1), fmt(s["other_cores"], 2), verdict(s)] for s in items]
    return md_table(["backend", "idle conns asked", "idle conns held", "msgs/s (50 conns × 512 B)", "p99 µs",
                     "server CPU µs/msg", "server core %", "spread %", "other load (cores)", "verified"], rows)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def machine_info():
    model = "unknown"
    for line in read_text("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    soft, hard = __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE)
    return {
        "nproc": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)), "kernel": platform.release(),
        "cpu_model": model, "mem_total_kb": meminfo_kb("MemTotal"), "nofile_soft": soft, "nofile_hard": hard,
        "somaxconn": read_text("/proc/sys/net/core/somaxconn").strip(),
        "ip_local_port_range": read_text("/proc/sys/net/ipv4/ip_local_port_range").split(),
        "rustc": subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
        if shutil.which("rustc") else None,
        "python": platform.python_version(), "loadavg_at_start": loadavg(),
        "git_head": git("rev-parse", "--short", "HEAD"),
        "git_dirty_files": len(git("status", "--porcelain", "--untracked-files=no").splitlines()),
    }


def git(*a):
    """Read-only git queries, so the results say which tree was measured."""
    try:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def build(log, backends):
    cmd = ["cargo", "build", "--release", "--bins", "--examples"]
    log("$ " + shlex.join(cmd))
    subprocess.run(cmd, cwd=ROOT, check=True)
    if backends:
        env = dict(os.environ, RUSTFLAGS=(os.environ.get("RUSTFLAGS", "") + " --cfg mio_unsupported_force_poll_poll").strip())
        cmd = ["cargo", "build", "--release", "--bin", "echoloop", "--target-dir", "target/pollbuild"]
        log("$ RUSTFLAGS='--cfg mio_unsupported_force_poll_poll' " + shlex.join(cmd))
        subprocess.run(cmd, cwd=ROOT, check=True, env=env)


def on_sigterm(signum, frame):
    raise KeyboardInterrupt  # same clean-up path as Ctrl-C


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=None, help="runs per throughput case; medians are reported (default 3; 1 with --quick)")
    ap.add_argument("--duration", type=float, default=None, help="seconds per run (default 5; 1.5 with --quick)")
    ap.add_argument("--quick", action="store_true", help="smoke run: short runs, fewer connections, one repeat")
    ap.add_argument("--cases", type=lambda v: v.split(","), default=None,
                    help="comma-separated throughput cases to run (1,1s,2,3,3t2,4; default all); idle and churn "
                         "are cases 5 and 6")
    ap.add_argument("--idle", type=int, default=None, help="idle connections for case 5 (default: open-file hard limit minus 100, e.g. 19,900, "
                         "at most 100,000; 2,000 with --quick)")
    ap.add_argument("--syscalls", action="store_true", help="also count syscalls per echoed message with strace -f -c")
    ap.add_argument("--compare", action="store_true", help="also measure every example server (thread/fork per connection, minimal_loop) and echoloop")
    ap.add_argument("--compare-cap", type=int, default=10000, help="most connections tried against thread_per_connection and fork_per_connection (default 10,000)")
    ap.add_argument("--backends", action="store_true", help="also measure epoll vs poll(2) (a second build) with 0/1,000/10,000/~19,000 idle connections held")
    ap.add_argument("--reference", metavar="SERVER", help="another echo server binary (address as first argument, prints 'listening on ADDR') measured under the same cases")
    ap.add_argument("--skip-main", action="store_true", help="skip the main table (run only the extras asked for)")
    ap.add_argument("--quiet-wait", type=float, default=10.0, metavar="SECS",
                    help="before each run, wait up to SECS for other processes to use < 0.3 cores (default 10; 0: never wait)")
    ap.add_argument("--retries", type=int, default=2,
                    help="run a case again (at most this many times) when other processes took > 0.3 cores during it (default 2)")
    ap.add_argument("--no-build", action="store_true", help="use the binaries already in target/")
    ap.add_argument("--no-pin", action="store_true", help="do not pin server and client to CPUs 0 and 1")
    ap.add_argument("--out", default=None, help="JSON results file (default bench/results.json; bench/results-quick.json with --quick)")
    ap.add_argument("--keep-logs", action="store_true", help="keep the processes' logs (their directory is printed)")
    return ap.parse_args()


def main():
    global LOGDIR
    args = parse_args()
    quick = args.quick
    reps = args.repeat or (1 if quick else 3)
    dur = args.duration or (1.5 if quick else 5.0)
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    fd_cap = hard if hard != resource.RLIM_INFINITY else 1 << 20
    # As many as the open-file hard limit allows (less room for the server's own
    # descriptors), but at most 100,000: 8 loopback source addresses give the
    # client ~220,000 ports, and one burst of more is a test of the kernel.
    idle_n = args.idle or (2000 if quick else max(100, min(fd_cap - 100, 100_000)))
    out_path = Path(args.out) if args.out else ROOT / "bench" / ("results-quick.json" if quick else "results.json")
    LOGDIR = tempfile.mkdtemp(prefix="echoloop-bench-")
    signal.signal(signal.SIGTERM, on_sigterm)
    atexit.register(kill_everything)
    setup_pinning(not args.no_pin)
    QUIET["max_wait"] = args.quiet_wait
    QUIET["retries"] = args.retries
    t_start = time.monotonic()
    printed = []

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    def say(msg=""):
        printed.append(msg)
        print(msg, flush=True)

    command = "python3 " + shlex.join(["bench/run.py"] + sys.argv[1:])
    results = {"command": command, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info(),
               "settings": {"repeat": reps, "duration_secs": dur, "quick": quick, "pinning": dict(PIN),
                            "server_cpu": 0, "client_cpu": 1, "quiet_wait": dict(QUIET)}}
    m = results["machine"]
    results["errors"] = []

    def guarded(what, fn, *a):
        """Runs one part; an unexpected error is recorded and the run goes on."""
        try:
            return fn(*a)
        except Exception as e:  # noqa: BLE001 - reported, never hidden
            log(f"ERROR in {what}: {e!r}")
            results["errors"].append(f"{what}: {e}")
            kill_everything()
            return None
    say(f"# echoloop benchmark\n\ncommand: `{command}`\n")
    say(f"machine: {m['nproc']} CPUs ({m['cpu_model']}), kernel {m['kernel']}, {m['mem_total_kb'] // 1024:,} MiB RAM, "
        f"open-file limit {m['nofile_soft']}/{m['nofile_hard']}, {m['rustc']}; load average at start {' '.join(m['loadavg_at_start'])}")
    say(f"tree: git {m['git_head'] or '?'}" + (f" with {m['git_dirty_files']} modified tracked file(s)" if m["git_dirty_files"] else ""))
    say(f"pinning: server on CPU 0, client on CPU 1 via {PIN['how']}{(' (' + PIN['note'] + ')') if PIN.get('note') else ''}; "
        f"{reps} run(s) of {dur:g} s per case, medians shown\n")

    try:
        if not args.no_build:
            build(log, args.backends)
        rel = ROOT / "target" / "release"
        echoloop = Server("echoloop", [rel / "echoloop", "--listen", "127.0.0.1:0"])
        ref = Server(f"reference: {Path(args.reference).name}", [Path(args.reference).resolve(), "127.0.0.1:0"]) \
            if args.reference else None
        servers = [echoloop] + ([ref] if ref else [])

        if not args.skip_main:
            cases = [c for c in main_cases(quick) if not args.cases or c["id"] in args.cases]
            results["main"] = {spec.name: {"throughput": []} for spec in servers}
            log("== main table: " + ", ".join(spec.name for spec in servers) + " (in turn)")
            for c in cases:
                for s in guarded(f"case {c['id']}", run_throughput, servers, c, reps, dur, log) or []:
                    results["main"][s["server"]]["throughput"].append(s)
            for spec in servers if not args.cases or "5" in args.cases else []:
                log(f"    {spec.name} idle: {idle_n:,} connections")
                idle = guarded(f"{spec.name} idle", run_idle, spec, idle_n, 2.0 if quick else 5.0, log)
                if idle:
                    results["main"][spec.name]["idle"] = idle
            if not args.cases or "6" in args.cases:
                for s in guarded("churn", run_churn, servers, reps, dur, log) or []:
                    results["main"][s["server"]]["churn"] = s
            main_res = results["main"]["echoloop"]
            say("## Throughput and latency (cases 1–4)\n")
            say(main_table([s for v in results["main"].values() for s in v["throughput"]]))
            say("\nstress command per case (ADDR = the server's address): " + "; ".join(
                f"{s['id']}: `{s['argv'].replace(str(STRESS), 'echoloop-stress')}`" for s in main_res["throughput"]))
            say("\n## Idle connections (case 5)\n")
            say(idle_table([v["idle"] for v in results["main"].values() if "idle" in v]))
            say("\n## Churn (case 6)\n")
            say(churn_table([v["churn"] for v in results["main"].values() if "churn" in v]))
            if ref:
                say("\n## echoloop against the reference server\n")
                say(reference_table(main_res["throughput"], results["main"][ref.name]["throughput"]))

        if args.syscalls:
            log("== syscalls")
            sc_cases = [
                ("1 conn × 64 B ping-pong",
                 lambda a: stress_argv(a, 1, 64, messages=10000 if not quick else 2000)),
                ("50 conns × 512 B",
                 lambda a: stress_argv(a, 50, 512, messages=100000 if not quick else 10000)),
                ("churn: connect, echo 64 B, close (per connection)",
                 lambda a: stress_argv(a, 10, 64, mode="churn", messages=5000 if not quick else 1000,
                                       source=SOURCE_ADDRS)),
            ]
            results["syscalls"] = []
            for spec in servers:
                results["syscalls"] += guarded(f"{spec.name} syscalls", run_syscalls, spec, sc_cases, log) or []
            say("\n## Syscalls per echoed message (server under `strace -f -c`)\n")
            say(syscalls_table(results["syscalls"]))

        if args.compare:
            log("== compare")
            ex = ROOT / "target" / "release" / "examples"
            cap = args.compare_cap
            specs = [
                (echoloop, 19000),
                (Server("minimal_loop", [ex / "minimal_loop", "127.0.0.1:0"]), 19000),
                (Server("thread_per_connection", [ex / "thread_per_connection", "127.0.0.1:0", str(cap + 16)], "threads"), cap),
                (Server("fork_per_connection", [ex / "fork_per_connection", "127.0.0.1:0"], "fork"), cap),
            ] + ([(ref, 19000)] if ref else [])
            ccases = main_cases(quick)
            pick = {"c1": ccases[0], "c50": ccases[2], "c1000": ccases[3]}
            results["compare"] = []
            for spec, top in specs:
                full_ladder = [19000, 10000, 5000, 2000, 1000, 500] if not quick else [2000, 1000]
                ladder = [n for n in full_ladder if n <= min(top, fd_cap - 100)]
                entry = {"server": spec.name, "kind": spec.kind, "cap": top, "ladder": ladder}
                for k, c in pick.items():
                    entry[k] = (guarded(f"{spec.name} {c['id']}", run_throughput, [spec], c, reps, dur, log) or [None])[0]
                entry["largest"], entry["largest_tried"] = guarded(
                    f"{spec.name} largest", run_largest, spec, ladder, 4.0 if quick else 15.0, log) or (None, [])
                results["compare"].append(entry)
            say(f"\n## Techniques side by side (largest count: first of the ladder that passes; thread/fork capped at {cap:,})\n")
            say(compare_table(results["compare"]))
            notes = []
            for c in results["compare"]:
                for t in c["largest_tried"]:
                    if not t["ok"]:
                        notes.append(f"- {c['server']} at {t['conns']:,} connections did not pass: established "
                                     f"{t['established']}, failed connects {t['failed_by_reason']}, unexpected closes "
                                     f"{t['unexpected_closes']}, stalled {t['stalled']}; first: {t['first_problem']}")
            if notes:
                say("\n" + "\n".join(notes))

        if args.backends:
            log("== backends")
            poll_bin = ROOT / "target" / "pollbuild" / "release" / "echoloop"
            bspecs = [Server("epoll", [rel / "echoloop", "--listen", "127.0.0.1:0"]),
                      Server("poll(2)", [poll_bin, "--listen", "127.0.0.1:0"])]
            counts = [0, 1000, 2000] if quick else [0, 1000, 10000, min(19000, fd_cap - 1000)]
            results["backends"] = []
            for spec in bspecs:
                for n in counts:
                    point = guarded(f"{spec.name} with {n} idle", run_backend_point, spec, n, reps, dur, log)
                    if point:
                        results["backends"].append(point)
            say("\n## epoll vs poll(2): 50 active connections while idle ones are held\n")
            say(backends_table(results["backends"]))
        if results["errors"]:
            say("\n## Errors (the run went on without these)\n\n" + "\n".join(f"- {e}" for e in results["errors"]))
    except KeyboardInterrupt:
        log("interrupted: stopping everything")
        results["interrupted"] = True
        raise
    finally:
        kill_everything()
        results["elapsed_secs"] = round(time.monotonic() - t_start, 1)
        results["loadavg_at_end"] = loadavg()
        results["markdown"] = "\n".join(printed)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with open(out_path, "w") as f:
            json.dump(results, f, indent=1, default=str)
        if args.keep_logs:
            log(f"logs kept in {LOGDIR}")
        else:
            shutil.rmtree(LOGDIR, ignore_errors=True)
    say(f"\ntotal time {results['elapsed_secs']:.0f} s; load average at end {' '.join(results['loadavg_at_end'])}; "
        f"results written to {os.path.relpath(out_path, os.getcwd())}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
