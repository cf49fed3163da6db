"""The cases: what each part of the benchmark runs against which servers —
throughput, churn, UDP, idle connections, syscall counts, the technique
comparison and the epoll-vs-poll(2) points."""

import os
import re
import shlex
import signal
import time

from echobench.procs import (
    ANY_PORT, REL, SOURCE_ADDRS, STATUS_RE, Server, meminfo_kb, read_text, start_server, status_kb,
    stop_server
)
from echobench.tables import fmt, fmt_num
from echobench.stress import (
    Job, TcpReport, UdpReport, measured, measured_retry, med, run_in_turn, run_stress, stress_argv,
    summarize, summarize_udp, tcp_line
)


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


def udp_cases():
    return [
        {"id": "u1", "label": "1 socket, 64 B, ping-pong", "sockets": 1, "size": 64, "pipeline": 1},
        {"id": "u2", "label": "50 sockets, 512 B, pipeline 1", "sockets": 50, "size": 512, "pipeline": 1},
        {"id": "u3", "label": "50 sockets, 1,400 B, pipeline 8", "sockets": 50, "size": 1400, "pipeline": 8},
    ]


def case_argv(addr, c, duration, source=None):
    return stress_argv(addr, c["conns"], c["size"], c.get("pipeline", 1), c.get("threads", 1),
                       duration=duration, busy=c.get("busy", False), source=source)


def run_throughput(ctx, specs, c):
    """One of cases 1-4 against one or more servers, in turn."""
    d = ctx.duration
    return run_in_turn(ctx, specs, Job(
        f"case {c['id']}", lambda addr: case_argv(addr, c, d), d + 30,
        summarise=lambda runs: summarize(runs) | {"id": c["id"], "label": c["label"]}, line=tcp_line))


def run_churn(ctx, specs):
    """Case 6 (connect, echo 64 B, close; 50 at a time), servers in turn."""
    d = ctx.duration

    def per_conn(r):
        cycles = (r["report"] or {}).get("churn_cycles") or 0
        r["server_cpu_us_per_conn"] = r["server_cpu_secs"] / cycles * 1e6 if cycles else None

    def summarise(rs):
        return summarize(rs) | {
            "server_cpu_us_per_conn": med([r["server_cpu_us_per_conn"] for r in rs]),
            "connect_p99_us": med([((r["report"] or {}).get("connect_latency_us") or {}).get("p99") for r in rs])}

    def line(r):
        return (f"{fmt_num((r['report'] or {}).get('connections_per_sec'))} conn/s, "
                f"other load {r['other_cores']:.2f} cores")

    return run_in_turn(ctx, specs, Job(
        "churn", lambda addr: stress_argv(addr, 50, 64, mode="churn", duration=d, source=SOURCE_ADDRS),
        d + 30, summarise, line, annotate=per_conn, name="churn"))


def run_udp(ctx, specs, c, extra):
    """One UDP case against echoloop --udp and the C reference, in turn."""
    d = ctx.duration

    def line(r):
        u = r["udp"]
        return (f"{fmt_num(u['datagrams_per_sec'])} datagrams/s, lost {fmt_num(u['lost'])} of "
                f"{fmt_num(u['sent'])}, server {fmt(r['server_cpu_us_per_msg'], 2)} us/datagram, "
                f"other load {r['other_cores']:.2f} cores")

    return run_in_turn(ctx, specs, Job(
        f"UDP case {c['id']}", lambda addr: UdpReport.argv(addr, c["sockets"], c["size"], c["pipeline"], d, extra),
        d + 30, summarise=lambda runs: summarize_udp(runs) | {"id": c["id"], "label": c["label"]},
        line=line, report=UdpReport, name="udp"))


def run_idle(ctx, spec, count, hold):
    """Case 5: hold `count` idle connections, sample the server's RSS while
    they are open, then let the client verify every one still echoes."""
    srv = start_server(ctx, spec)
    argv = lambda addr: stress_argv(addr, count, 64, mode="idle", duration=hold,  # noqa: E731
                                    source=SOURCE_ADDRS, connect_timeout=10)
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

        r = measured(ctx, srv, argv(srv.addr), hold + 90, "idle", during)
        hwm = status_kb(srv.pid, "VmHWM")
    finally:
        stop_server(ctx, srv)
    return idle_summary(spec, count, shlex.join(argv("ADDR")), r, rss0, slab0, sample, hwm)


def idle_summary(spec, count, argv, r, rss0, slab0, sample, hwm):
    rep = r["report"] or {}
    held = rep.get("idle_held") or sample.get("up") or 0
    out = {
        "server": spec.name, "count": count, "argv": argv,
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


def strace_run(ctx, spec, argv_fn, report=TcpReport):
    slug = re.sub(r"\W+", "_", spec.name)
    out = os.path.join(ctx.logdir, f"strace-{slug}-{time.monotonic_ns()}.txt")
    srv = start_server(ctx, spec, strace_out=out)
    r = None
    try:
        if argv_fn:
            r = run_stress(ctx, argv_fn(srv.addr), 300, "stress-strace", report=report)
        os.kill(srv.pid, signal.SIGTERM)  # the server exits; strace writes its summary
        if ctx.procs.reap(srv.proc, 20) is None:
            ctx.procs.kill_and_reap(srv.proc, signal.SIGINT)
    finally:
        if srv.proc in ctx.procs.live:
            stop_server(ctx, srv)
    calls, errors, total = parse_strace(out)
    return calls, errors, r


def syscall_case(label, argv, report=TcpReport, key=None):
    """One case of a syscall count: argv(addr) runs a bounded client."""
    return {"label": label, "argv": argv, "report": report, "key": key}


def run_syscalls(ctx, spec, cases):
    """Counts the server's syscalls per echoed message (per datagram for UDP
    cases), minus what an idle start + shutdown costs (counted the same way
    with no client)."""
    base, _, _ = strace_run(ctx, spec, None)
    results = []
    for c in cases:
        calls, errors, r = strace_run(ctx, spec, c["argv"], c["report"])
        rep = (r or {}).get("report") or {}
        msgs = c["report"].count(rep)
        net = {k: calls.get(k, 0) - base.get(k, 0) for k in calls}
        net = {k: v for k, v in net.items() if v > 0}
        total = sum(net.values())
        res = {
            "server": spec.name, "case": c["label"], "messages": msgs, "ok": bool(r and r["ok"]),
            "msgs_per_sec_under_strace": c["report"].rate(rep),
            "syscalls": total, "per_msg": total / msgs if msgs else None,
            "breakdown": {k: {"calls": v, "per_msg": v / msgs if msgs else None, "errors": errors.get(k, 0)}
                          for k, v in sorted(net.items(), key=lambda kv: -kv[1])},
            "baseline": base, "argv": shlex.join(c["argv"]("ADDR")),
        }
        if c["report"] is UdpReport:
            res["unit"] = "datagram"
        if c["key"]:
            res["key"] = c["key"]
        if net.get("io_uring_enter"):  # each call submits and reaps a batch
            res["msgs_per_io_uring_enter"] = msgs / net["io_uring_enter"]
        results.append(res)
        ctx.log(f"    {spec.name} {c['label']}: {fmt(res['per_msg'], 3)} syscalls/{c['report'].unit} "
                f"over {msgs:,} {c['report'].unit}s")
    return results


def tcp_syscall_cases(quick):
    q = lambda full, short: short if quick else full  # noqa: E731
    return [
        syscall_case("1 conn × 64 B ping-pong", lambda a: stress_argv(a, 1, 64, messages=q(10000, 2000))),
        syscall_case("50 conns × 512 B", lambda a: stress_argv(a, 50, 512, messages=q(100000, 10000))),
        syscall_case("churn: connect, echo 64 B, close (per connection)",
                     lambda a: stress_argv(a, 10, 64, mode="churn", messages=q(5000, 1000), source=SOURCE_ADDRS)),
    ]


def udp_syscall_cases(quick, extra):
    d = 1 if quick else 2
    return [syscall_case(f"UDP {c['label']}",
                         lambda a, c=c: UdpReport.argv(a, c["sockets"], c["size"], c["pipeline"], d, extra),
                         UdpReport)
            for c in udp_cases()]


def compare_syscall_cases(quick):
    """The comparison's three cases, bounded by message count for strace."""
    n = 200 if quick else 1000
    q = lambda full, short: short if quick else full  # noqa: E731
    ramp = ["--connect-rate", "5000", "--echo-timeout", "30"]
    return [
        syscall_case("1 conn × 64 B ping-pong", lambda a: stress_argv(a, 1, 64, messages=q(10000, 2000)), key="c1"),
        syscall_case("50 conns × 512 B", lambda a: stress_argv(a, 50, 512, messages=q(100000, 10000)), key="c50"),
        syscall_case(f"{n:,} conns × 128 B, pipeline 4",
                     lambda a: stress_argv(a, n, 128, 4, messages=q(200000, 20000), source=SOURCE_ADDRS,
                                           connect_timeout=10, extra=ramp), key="c1000"),
    ]


def largest_argv(addr, n, duration):
    """The 'largest count' case: n connections × 64 B ping-pong, ramped up at
    5,000 connects/s (the ramp is not what is measured), and an echo may take
    up to 30 s before the connection counts as stalled: a slow server shows
    in p99, only a server that stops answering fails."""
    return stress_argv(addr, n, 64, duration=duration, source=SOURCE_ADDRS, connect_timeout=10) + [
        "--connect-rate", "5000", "--echo-timeout", "30"]


def run_largest(ctx, spec, ladder, duration):
    """Largest connection count (from ladder, descending) that the server
    serves with every connection established and every byte verified."""
    tried = []
    for n in ladder:
        srv = start_server(ctx, spec)
        mem = {}
        try:
            def during(el, p):
                if not mem and el >= 0.6 * duration:
                    mem.update(srv.memory())
            r = measured(ctx, srv, largest_argv(srv.addr, n, duration), duration + 90, "largest", during)
            end_mem = srv.memory()
        finally:
            stop_server(ctx, srv)
        entry = largest_entry(n, r, mem, end_mem, duration)
        tried.append(entry)
        ctx.log(f"    {spec.name} {n:,} conns: {'ok' if entry['ok'] else 'FAILED'} {fmt_num(entry['msgs_per_sec'])} msg/s"
                + ("" if entry["ok"] else f" (established {entry['established']}, failed {entry['failed_by_reason']}, "
                                          f"unexpected closes {entry['unexpected_closes']}, stalled {entry['stalled']}, "
                                          f"first: {entry['first_problem']})"))
        if entry["ok"]:
            return entry, tried
    return None, tried


def largest_entry(n, r, mem, end_mem, duration):
    rep = r["report"] or {}
    ok = r["ok"] and rep.get("connections_established") == n and rep.get("failures") == 0
    return {"conns": n, "ok": ok, "msgs_per_sec": rep.get("msgs_per_sec"),
            "p99_us": (rep.get("latency_us") or {}).get("p99"),
            "server_cpu_us_per_msg": r["server_cpu_us_per_msg"], "mid_run_memory": mem,
            "other_cores": r["other_cores"],
            "end_memory": end_mem, "established": rep.get("connections_established"),
            "failures": rep.get("failures"), "verdict": rep.get("verdict"),
            "failed_by_reason": rep.get("failed_by_reason"), "unexpected_closes": rep.get("unexpected_closes"),
            "stalled": rep.get("stalled"), "aborted": rep.get("connections_aborted"),
            "first_problem": rep.get("first_unexpected_close") or rep.get("first_stall"),
            "argv": shlex.join(largest_argv("ADDR", n, duration))}


def run_technique(ctx, spec, syscalls):
    """Every figure of one technique: 1, 50 and 1,000 connections, the
    largest count it survives and, when `syscalls` is a list of cases, its
    syscalls per message."""
    cases = main_cases(ctx.quick)
    pick = {"c1": cases[0], "c50": cases[2], "c1000": cases[3]}
    full_ladder = [2000, 1000] if ctx.quick else [19000, 10000, 5000, 2000, 1000, 500]
    ladder = [n for n in full_ladder if n <= min(spec.top, ctx.fd_cap - 100)]
    entry = {"server": spec.name, "kind": spec.kind, "cap": spec.top, "ladder": ladder}
    if spec.mark:
        entry["mark"] = spec.mark
    if spec.note:
        entry["note"] = spec.note
    for k, c in pick.items():
        entry[k] = (ctx.guarded(f"{spec.name} {c['id']}", run_throughput, ctx, [spec], c) or [None])[0]
    entry["largest"], entry["largest_tried"] = ctx.guarded(
        f"{spec.name} largest", run_largest, ctx, spec, ladder, 4.0 if ctx.quick else 15.0) or (None, [])
    if syscalls and spec.strace:
        entry["syscalls"] = ctx.guarded(f"{spec.name} syscalls", run_syscalls, ctx, spec, syscalls) or []
    return entry


def techniques(ctx, echoloop, ref, wine):
    """Every example server, as the comparison starts it; `wine` is the
    iocp_loop spec (or None)."""
    ex = REL / "examples"
    cap = ctx.args.compare_cap
    specs = [
        echoloop,
        Server("minimal_loop", [ex / "minimal_loop", ANY_PORT]),
        Server("select_loop", [ex / "select_loop", ANY_PORT], top=1000,
               note="select_loop holds about 1,020 clients at once by construction (descriptors below "
                    "FD_SETSIZE, 1,024) and refuses later ones by design, so its ladder starts at 1,000."),
        Server("poll_loop", [ex / "poll_loop", ANY_PORT]),
        Server("thread_per_connection", [ex / "thread_per_connection", ANY_PORT, str(cap + 16)], "threads",
               top=cap),
        Server("conditional_accept", [ex / "conditional_accept", ANY_PORT, "--max-clients", "20000"],
               "threads", top=cap),
        Server("fork_per_connection", [ex / "fork_per_connection", ANY_PORT], "fork", top=cap),
        Server("io_uring_loop", [ex / "io_uring_loop", ANY_PORT, "--buffers", "4096", "--buffer-size", "4096"]),
    ]
    specs += ([wine] if wine else []) + ([ref] if ref else [])
    only = ctx.args.only.split(",") if ctx.args.only else None
    return [s for s in specs if only is None or s.name in only]


def hold_idle(ctx, srv, idle_n):
    """Starts a second client holding idle_n idle connections; returns it
    and how many it holds once its count has stopped moving."""
    holder = ctx.procs.spawn(stress_argv(srv.addr, idle_n, 64, mode="idle", duration=3600,
                                         source="127.0.0.2-127.0.0.8", connect_timeout=10), "idle-holder", cpu=1)
    held = 0
    end = time.monotonic() + 120
    while time.monotonic() < end:
        lines = STATUS_RE.findall(read_text(holder.err_path))
        if lines:
            up, tried = (int(x.replace(",", "")) for x in lines[-1])
            if up >= idle_n or (tried >= idle_n and len(lines) >= 3 and lines[-1] == lines[-3]):
                held = up
                break
        if ctx.procs.reap(holder, 0) is not None:
            break
        time.sleep(0.2)
    time.sleep(1.0)
    return holder, held


def run_backend_point(ctx, spec, idle_n):
    srv = start_server(ctx, spec)
    holder, held = None, 0
    d = ctx.duration
    try:
        if idle_n:
            holder, held = hold_idle(ctx, srv, idle_n)
        runs = []
        for i in range(ctx.reps):
            r = measured_retry(ctx, srv, stress_argv(srv.addr, 50, 512, duration=d), d + 60)
            runs.append(r)
            ctx.log(f"    {spec.name} idle {idle_n:,} run {i + 1}/{ctx.reps}: {tcp_line(r)}"
                    + ("" if r["ok"] else f"  FAILED exit {r['exit']}: {r['stderr_tail'][-200:]}"))
        still = None
        if holder is not None:
            lines = STATUS_RE.findall(read_text(holder.err_path))
            still = len(lines) and int(lines[-1][0].replace(",", ""))
        hwm = status_kb(srv.pid, "VmHWM")
    finally:
        if holder is not None:
            ctx.procs.kill_and_reap(holder, signal.SIGINT, grace=10)
        stop_server(ctx, srv)
    s = summarize(runs)
    s.update({"server": spec.name, "idle_requested": idle_n, "idle_held": held, "idle_still_up": still,
              "peak_rss_kb": hwm, "raw": runs})
    return s
