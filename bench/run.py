#!/usr/bin/env python3
"""One-command benchmark for echoloop, with the C reference servers, every
example technique side by side and the epoll-vs-poll(2) backend measurement.

    python3 bench/run.py                     # cases 1-6 and UDP u1-u3, echoloop and the C reference
    python3 bench/run.py --quick             # smoke run with short cases (< 1 minute)
    python3 bench/run.py --syscalls          # + syscalls per echoed message (strace -f -c)
    python3 bench/run.py --compare           # + every example server side by side (--wine: + iocp_loop)
    python3 bench/run.py --backends          # + epoll vs poll(2) with idle connections held
    python3 bench/run.py --reference ./cecho # another echo server as the reference column
    python3 bench/run.py --loops 1,2,4       # + the scaling ladder: --loops L against client --threads L

What it does: builds the release binaries and the C reference servers of
bench/reference/ (into target/bench/, with cc or gcc), starts the server
pinned to CPU 0 (`taskset -c 0`) and `echoloop-stress --json` pinned to
CPU 1, runs each case, reads the server's CPU time (utime+stime,
/proc/PID/stat, as a delta per run) and peak RSS (VmHWM, /proc/PID/status; a
fresh server per case), prints Markdown tables, writes everything to
bench/results.json and, when the stress client has a `chart` command, draws
the charts from it.

Python 3 standard library only; Linux only (it reads /proc). All traffic stays
on 127.0.0.0/8. Every process it starts runs in its own process group and is
killed on exit, exception, Ctrl-C or SIGTERM.

A server given with --reference (or any server the script starts other than
echoloop) must take its listen address (`127.0.0.1:0`) as first argument and
print `listening on ADDR` as a line on stdout or stderr, as the examples do.

This file is the command (its flags and the parts of a run); the work is in
bench/echobench/, one file per job.
"""

import argparse
import atexit
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from echobench.procs import ANY_PORT, Context, REL, ROOT, STRESS, Server, loadavg, meminfo_kb, read_text
from echobench.tables import (
    backends_table, churn_table, compare_notes, compare_table, idle_table, main_table, reference_table,
    syscalls_table, udp_table
)
from echobench.stress import UdpReport
from echobench.cases import (
    compare_syscall_cases, main_cases, run_backend_point, run_churn, run_idle, run_syscalls,
    run_technique, run_throughput, run_udp, tcp_syscall_cases, techniques, udp_cases, udp_syscall_cases
)
from echobench.build import build_rust, prepare_wine, reference_spec, stress_help, udp_support
from echobench.loops import ladder_table, run_ladder


class Servers:
    """The servers of a run: echoloop and its reference, over TCP and UDP."""

    def __init__(self, ctx, results):
        args = ctx.args
        self.echoloop = Server("echoloop", [REL / "echoloop", "--listen", ANY_PORT])
        self.ref = None if args.no_reference else reference_spec(ctx, results, "tcp", args.reference, "epoll_echo")
        self.tcp = [self.echoloop] + ([self.ref] if self.ref else [])
        self.udp_missing, self.udp_extra = udp_support()
        self.udp = []
        if not self.udp_missing:
            udp_ref = None if args.no_reference else reference_spec(ctx, results, "udp", args.udp_reference, "udp_echo")
            # --udp-rate 0: the load comes from one host, and the default
            # per-source limit (1,000/s) would drop most of it.
            echoloop_udp = [REL / "echoloop", "--udp", "--udp-rate", "0", "--listen", ANY_PORT]
            # The C loop twice: with the system's socket buffers, and with
            # echoloop's (4 MiB, UDP_BUFFER in src/server.rs), so the page
            # compares the technique, not the buffer size.
            equal = [Server(f"{udp_ref.name} --buffers 4 MiB", [udp_ref.argv[0], "--buffers", str(4 << 20), ANY_PORT])
                     ] if udp_ref and not args.udp_reference else []
            self.udp = [Server("echoloop", echoloop_udp)] + ([udp_ref] if udp_ref else []) + equal
        if results["settings"]["references"]:
            ctx.say()  # after the reference lines


def wanted(args, case_id):
    return not args.cases or case_id in args.cases


def part_main(ctx, results, servers):
    """Cases 1-6 against echoloop and the reference."""
    args, specs = ctx.args, servers.tcp
    if not any(wanted(args, c["id"]) for c in main_cases(ctx.quick)) and not any(wanted(args, i) for i in "56"):
        return
    results["main"] = {spec.name: {"throughput": []} for spec in specs}
    ctx.log("== main table: " + ", ".join(spec.name for spec in specs) + " (in turn)")
    for c in main_cases(ctx.quick):
        if wanted(args, c["id"]):
            for s in ctx.guarded(f"case {c['id']}", run_throughput, ctx, specs, c) or []:
                results["main"][s["server"]]["throughput"].append(s)
    for spec in specs if wanted(args, "5") else []:
        ctx.log(f"    {spec.name} idle: {ctx.idle_n:,} connections")
        idle = ctx.guarded(f"{spec.name} idle", run_idle, ctx, spec, ctx.idle_n, 2.0 if ctx.quick else 5.0)
        if idle:
            results["main"][spec.name]["idle"] = idle
    if wanted(args, "6"):
        for s in ctx.guarded("churn", run_churn, ctx, specs) or []:
            results["main"][s["server"]]["churn"] = s
    print_main(ctx, results["main"], servers.ref)


def print_main(ctx, main, ref):
    ours = main["echoloop"]
    ctx.say("## Throughput and latency (cases 1–4)\n")
    ctx.say(main_table([s for v in main.values() for s in v["throughput"]]))
    ctx.say("\nstress command per case (ADDR = the server's address): " + "; ".join(
        f"{s['id']}: `{s['argv'].replace(str(STRESS), 'echoloop-stress')}`" for s in ours["throughput"]))
    ctx.say("\n## Idle connections (case 5)\n")
    ctx.say(idle_table([v["idle"] for v in main.values() if "idle" in v]))
    ctx.say("\n## Churn (case 6)\n")
    ctx.say(churn_table([v["churn"] for v in main.values() if "churn" in v]))
    if ref:
        ctx.say("\n## echoloop against the reference server\n")
        ctx.say(reference_table(ours["throughput"], main[ref.name]["throughput"]))


def part_udp(ctx, results, servers):
    """UDP cases u1-u3 against echoloop --udp and the UDP reference."""
    cases = [c for c in udp_cases() if wanted(ctx.args, c["id"])]
    if not cases:
        return
    ctx.say("\n## UDP (cases u1–u3)\n")
    if servers.udp_missing:
        ctx.say(f"skipped: {servers.udp_missing}")
        results["udp_skipped"] = servers.udp_missing
        return
    ctx.log("== UDP: " + ", ".join(spec.name for spec in servers.udp) + " (in turn)")
    results["udp"] = []
    for c in cases:
        results["udp"] += ctx.guarded(f"UDP case {c['id']}", run_udp, ctx, servers.udp, c, servers.udp_extra) or []
    ctx.say(udp_table(results["udp"]))
    ctx.say("\nstress command per case: " + "; ".join(
        f"{c['id']}: `{shlex.join(UdpReport.argv('ADDR', c['sockets'], c['size'], c['pipeline'], ctx.duration, servers.udp_extra))}`"
        .replace(str(STRESS), "echoloop-stress") for c in cases))


def part_syscalls(ctx, results, servers):
    """Syscalls per echoed message (and per datagram) under strace -f -c."""
    ctx.log("== syscalls")
    ctx.say("\n## Syscalls per echoed message (server under `strace -f -c`)\n")
    if not shutil.which("strace"):
        ctx.say("skipped: strace not found")
        return
    results["syscalls"] = []
    for spec in servers.tcp:
        results["syscalls"] += ctx.guarded(f"{spec.name} syscalls", run_syscalls, ctx, spec,
                                           tcp_syscall_cases(ctx.quick)) or []
    ctx.say(syscalls_table(results["syscalls"]))
    if servers.udp_missing:
        ctx.say(f"\nUDP syscalls skipped: {servers.udp_missing}")
        return
    results["udp_syscalls"] = []
    for spec in servers.udp:
        results["udp_syscalls"] += ctx.guarded(f"{spec.name} UDP syscalls", run_syscalls, ctx, spec,
                                               udp_syscall_cases(ctx.quick, servers.udp_extra)) or []
    ctx.say("\n## Syscalls per echoed datagram (server under `strace -f -c`)\n")
    ctx.say(syscalls_table(results["udp_syscalls"]))


def part_compare(ctx, results, servers):
    """Every technique side by side."""
    ctx.log("== compare")
    wine = prepare_wine(ctx) if ctx.args.wine else None
    syscalls = compare_syscall_cases(ctx.quick) if shutil.which("strace") else None
    if syscalls is None:
        ctx.say("syscalls per message in the comparison skipped: strace not found")
    results["compare"] = [run_technique(ctx, spec, syscalls) for spec in techniques(ctx, servers.echoloop,
                                                                                     servers.ref, wine)]
    ctx.say(f"\n## Techniques side by side (largest count: first of the ladder that passes; thread/fork capped "
            f"at {ctx.args.compare_cap:,})\n")
    ctx.say(compare_table(results["compare"]))
    notes = compare_notes(results["compare"])
    if notes:
        ctx.say("\n" + "\n".join(notes))
    counted = [s for c in results["compare"] for s in c.get("syscalls") or []]
    if counted:
        ctx.say("\n## Syscalls per echoed message, each technique (server under `strace -f -c`)\n")
        ctx.say(syscalls_table(counted))


def part_backends(ctx, results):
    """epoll vs poll(2): 50 active connections while idle ones are held."""
    ctx.log("== backends")
    poll_bin = ROOT / "target" / "pollbuild" / "release" / "echoloop"
    bspecs = [Server("epoll", [REL / "echoloop", "--listen", ANY_PORT]),
              Server("poll(2)", [poll_bin, "--listen", ANY_PORT])]
    counts = [0, 1000, 2000] if ctx.quick else [0, 1000, 10000, min(19000, ctx.fd_cap - 1000)]
    results["backends"] = []
    for spec in bspecs:
        for n in counts:
            point = ctx.guarded(f"{spec.name} with {n} idle", run_backend_point, ctx, spec, n)
            if point:
                results["backends"].append(point)
    ctx.say("\n## epoll vs poll(2): 50 active connections while idle ones are held\n")
    ctx.say(backends_table(results["backends"]))


def chartable(results):
    """Whether the run made anything `echoloop-stress chart` draws: a
    `backends` point or a `compare` case with a msgs/s figure."""
    points = results.get("backends") or []
    entries = results.get("compare") or []
    return any(isinstance(p, dict) and p.get("msgs_per_sec") is not None for p in points) or any(
        isinstance(c, dict) and c.get("msgs_per_sec") is not None
        for e in entries if isinstance(e, dict) for c in e.values())


def part_loops(ctx, results):
    """The scaling ladder: echoloop --loops L, client --threads L."""
    ladder = ctx.args.loops
    ctx.log("== loops: " + ", ".join(str(n) for n in ladder))
    results["loops"] = run_ladder(ctx, ladder)
    ctx.say("\n## Loops: echoloop --loops L against echoloop-stress --threads L (16 source addresses)\n")
    ctx.say(ladder_table(results["loops"]))
    ctx.say("\nCPUs: disjoint = server on CPUs 0..L-1, client on the next L; shared = both unpinned on every "
            "core (the machine has fewer than 2L CPUs). Shares: each loop's part of the connections accepted "
            "and bytes received, from its loop=\"i\" series in /metrics.")


def draw_charts(ctx, results):
    """Draws the charts from the results file when the stress client can."""
    default = ctx.out_path.resolve() == (ROOT / "bench" / "results.json").resolve()
    out_dir = Path(ctx.args.charts) if ctx.args.charts else (
        ROOT / "docs" / "img" if default else ROOT / "target" / "bench" / "charts")
    if not chartable(results):
        ctx.say("\ncharts: skipped (this run made nothing to chart: the charts are of the `--backends` "
                "and `--compare` results)")
        return
    if stress_help(STRESS, "chart") is None:
        ctx.say("\ncharts: skipped (`echoloop-stress chart --help` fails: the stress client has no chart command)")
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(STRESS), "chart", str(ctx.out_path), "--out", str(out_dir) + "/"]
    ctx.log("$ " + shlex.join(cmd))
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if p.returncode == 0:
        ctx.say(f"\ncharts drawn into {os.path.relpath(out_dir, os.getcwd())}")
    else:
        ctx.say(f"\ncharts: `echoloop-stress chart` failed (exit {p.returncode}): {p.stderr.strip()[-400:]}")


def machine_info():
    model = "unknown"
    for line in read_text("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
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


def on_sigterm(signum, frame):
    raise KeyboardInterrupt  # same clean-up path as Ctrl-C


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add = ap.add_argument
    add("--repeat", type=int, default=None, help="runs per throughput case; medians are reported (default 3; 1 with --quick)")
    add("--duration", type=float, default=None, help="seconds per run (default 5; 1.5 with --quick)")
    add("--quick", action="store_true", help="smoke run: short runs, fewer connections, one repeat")
    add("--cases", type=lambda v: v.split(","), default=None,
        help="comma-separated cases to run (1,1s,2,3,3t2,4,5,6 and UDP u1,u2,u3; default all); idle and churn "
             "are cases 5 and 6")
    add("--idle", type=int, default=None, help="idle connections for case 5 (default: open-file hard limit minus 100, "
                                               "e.g. 19,900, at most 100,000; 2,000 with --quick)")
    add("--syscalls", action="store_true", help="also count syscalls per echoed message with strace -f -c")
    add("--compare", action="store_true", help="also measure every example server (minimal_loop, select_loop, poll_loop, "
                                               "thread/fork per connection, conditional_accept, io_uring_loop) and "
                                               "echoloop, with syscalls per message when strace exists")
    add("--only", metavar="NAMES", help="with --compare: only these techniques (comma-separated, e.g. "
        "io_uring_loop,echoloop), to measure one again")
    add("--wine", action="store_true", help="with --compare: also iocp_loop.exe under Wine (correctness, not speed)")
    add("--compare-cap", type=int, default=10000, help="most connections tried against the thread- and "
                                                       "process-per-client servers (default 10,000)")
    add("--backends", action="store_true", help="also measure epoll vs poll(2) (a second build) with "
                                                "0/1,000/10,000/~19,000 idle connections held")
    add("--reference", metavar="SERVER", help="the TCP reference server (address as first argument, prints "
                                              "'listening on ADDR'); default: bench/reference/epoll_echo.c, built here")
    add("--udp-reference", metavar="SERVER", help="the UDP reference server; default: bench/reference/udp_echo.c")
    add("--no-reference", action="store_true", help="measure echoloop alone (no reference columns)")
    add("--loops", type=lambda v: [int(n) for n in v.split(",")], default=None, metavar="L,L,...",
        help="also run the scaling ladder: echoloop --loops L against echoloop-stress --threads L over 16 "
             "source addresses, cases 2 and 3, server and client on disjoint CPUs where there are 2L")
    add("--skip-main", action="store_true", help="skip the main and UDP tables (run only the extras asked for)")
    add("--quiet-wait", type=float, default=10.0, metavar="SECS",
        help="before each run, wait up to SECS for other processes to use < 0.3 cores (default 10; 0: never wait)")
    add("--retries", type=int, default=2,
        help="run a case again (at most this many times) when other processes took > 0.3 cores during it (default 2)")
    add("--no-build", action="store_true", help="use the Rust binaries already in target/ (the C references are "
                                                "still built when their source is newer)")
    add("--no-pin", action="store_true", help="do not pin server and client to CPUs 0 and 1")
    add("--out", default=None, help="JSON results file (default bench/results.json; bench/results-quick.json with --quick)")
    add("--charts", metavar="DIR", default=None, help="where `echoloop-stress chart` draws (default docs/img/ for "
                                                      "bench/results.json, else target/bench/charts/)")
    add("--keep-logs", action="store_true", help="keep the processes' logs (their directory is printed)")
    return ap.parse_args()


def new_results(ctx):
    command = "python3 " + shlex.join(["bench/run.py"] + sys.argv[1:])
    return {"command": command, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info(),
            "settings": {"repeat": ctx.reps, "duration_secs": ctx.duration, "quick": ctx.quick,
                         "pinning": dict(ctx.pin), "server_cpu": 0, "client_cpu": 1,
                         "quiet_wait": dict(ctx.quiet), "references": {}},
            "errors": ctx.errors}


def print_header(ctx, results):
    m = results["machine"]
    ctx.say(f"# echoloop benchmark\n\ncommand: `{results['command']}`\n")
    ctx.say(f"machine: {m['nproc']} CPUs ({m['cpu_model']}), kernel {m['kernel']}, {m['mem_total_kb'] // 1024:,} MiB RAM, "
            f"open-file limit {m['nofile_soft']}/{m['nofile_hard']}, {m['rustc']}; load average at start "
            f"{' '.join(m['loadavg_at_start'])}")
    ctx.say(f"tree: git {m['git_head'] or '?'}" + (f" with {m['git_dirty_files']} modified tracked file(s)"
                                                   if m["git_dirty_files"] else ""))
    pin = ctx.pin
    ctx.say(f"pinning: server on CPU 0, client on CPU 1 via {pin['how']}{(' (' + pin['note'] + ')') if pin.get('note') else ''}; "
            f"{ctx.reps} run(s) of {ctx.duration:g} s per case, medians shown\n")


def write_results(ctx, results, t_start):
    results["elapsed_secs"] = round(time.monotonic() - t_start, 1)
    results["loadavg_at_end"] = loadavg()
    results["markdown"] = "\n".join(ctx.printed)
    ctx.out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(ctx.out_path, "w") as f:
        json.dump(results, f, indent=1, default=str)
    if ctx.args.keep_logs:
        ctx.log(f"logs kept in {ctx.logdir}")
    else:
        shutil.rmtree(ctx.logdir, ignore_errors=True)


def main():
    ctx = Context(parse_args())
    signal.signal(signal.SIGTERM, on_sigterm)
    atexit.register(ctx.procs.kill_all)
    t_start = time.monotonic()
    results = new_results(ctx)
    print_header(ctx, results)
    try:
        if not ctx.args.no_build:
            build_rust(ctx, ctx.args.backends)
        servers = Servers(ctx, results)
        if not ctx.args.skip_main:
            part_main(ctx, results, servers)
            part_udp(ctx, results, servers)
        if ctx.args.syscalls:
            part_syscalls(ctx, results, servers)
        if ctx.args.compare:
            part_compare(ctx, results, servers)
        if ctx.args.backends:
            part_backends(ctx, results)
        if ctx.args.loops:
            part_loops(ctx, results)
        if ctx.errors:
            ctx.say("\n## Errors (the run went on without these)\n\n" + "\n".join(f"- {e}" for e in ctx.errors))
    except KeyboardInterrupt:
        ctx.log("interrupted: stopping everything")
        results["interrupted"] = True
        raise
    finally:
        ctx.procs.kill_all()
        write_results(ctx, results, t_start)
    draw_charts(ctx, results)
    ctx.say(f"\ntotal time {results['elapsed_secs']:.0f} s; load average at end {' '.join(results['loadavg_at_end'])}; "
            f"results written to {os.path.relpath(ctx.out_path, os.getcwd())}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
