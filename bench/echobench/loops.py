"""--loops: the scaling ladder — echoloop --loops L against the stress
client with --threads L, server and client on disjoint CPUs when the
machine has L + L of them (else both unpinned, sharing every core) — and
how the loops share the work: each loop's connections and bytes, read from
its `loop="i"` series in /metrics at the end of the rung."""

import os
import re
import time
import urllib.request

from echobench.procs import ANY_PORT, REL, Server, read_text, start_server, stop_server
from echobench.stress import measured, stress_argv, summarize, tcp_line
from echobench.tables import fmt, fmt_num, md_table

# The server steers by a hash of the source address: the client spreads its
# connections over 16 loopback sources (with one, every client would be
# served by one loop).
SOURCES = "127.0.0.1-127.0.0.16"

METRICS_RE = re.compile(r"metrics on http://(\S+)/metrics")


def ladder_cases(quick):
    c3 = 200 if quick else 1000
    return [
        {"id": "2", "label": "50 conns, 512 B, pipeline 1", "conns": 50, "size": 512, "pipeline": 1},
        {"id": "3", "label": f"{c3:,} conns, 128 B, pipeline 4", "conns": c3, "size": 128, "pipeline": 4},
    ]


def placement(ctx, loops, threads):
    """(server CPUs, client CPUs, how): disjoint when there are enough CPUs
    and pinning is on, else None, None (unpinned: they share every core)."""
    ncpu = len(os.sched_getaffinity(0))
    pinned = ctx.pin["how"] in ("taskset", "sched_setaffinity")
    if pinned and loops + threads <= ncpu:
        return list(range(loops)), list(range(loops, loops + threads)), f"disjoint ({ncpu} CPUs)"
    return None, None, f"shared ({ncpu} CPUs, unpinned)"


def per_loop(metrics_addr):
    """Each loop's accepted connections and received bytes, from /metrics."""
    text = urllib.request.urlopen(f"http://{metrics_addr}/metrics", timeout=10).read().decode()

    def series(name):
        got = {int(m.group(1)): float(m.group(2))
               for m in re.finditer(rf'^echoloop_{name}{{loop="(\d+)"}} (\S+)$', text, re.M)}
        return [got[i] for i in sorted(got)]
    return {"connections": series("connections_accepted_total"), "bytes": series("received_bytes_total")}


def share(values):
    """Each loop's share in %, and the largest over the smallest."""
    total = sum(values)
    if not total:
        return None
    return {"pct": [round(100 * v / total, 1) for v in values],
            "max_over_min": round(max(values) / min(values), 2) if min(values) else None}


def wait_metrics(srv, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        m = METRICS_RE.search(read_text(srv.proc.err_path))
        if m:
            return m.group(1)
        time.sleep(0.02)
    raise RuntimeError("echoloop did not report its metrics address")


def run_rung(ctx, loops, c):
    """One rung: a fresh echoloop --loops L, the case run ctx.reps times by
    a client with --threads L."""
    threads = loops
    scpu, ccpu, how = placement(ctx, loops, threads)
    spec = Server(f"echoloop --loops {loops}",
                  [REL / "echoloop", "--listen", ANY_PORT, "--loops", loops, "--metrics", ANY_PORT])
    srv = start_server(ctx, spec, cpu=scpu)
    runs = []
    try:
        metrics = wait_metrics(srv)
        for i in range(ctx.reps):
            argv = stress_argv(srv.addr, c["conns"], c["size"], c["pipeline"], threads,
                               duration=ctx.duration, source=SOURCES)
            r = measured(ctx, srv, argv, ctx.duration + 30, cpu=ccpu)
            runs.append(r)
            ctx.log(f"    loops {loops}, client threads {threads}, case {c['id']} run {i + 1}/{ctx.reps}: "
                    f"{tcp_line(r)}" + ("" if r["ok"] else f"  FAILED exit {r['exit']}"))
        dist = per_loop(metrics)
    finally:
        stop_server(ctx, srv)
    return summarize(runs) | {
        "loops": loops, "threads": threads, "placement": how, "server_cpus": scpu, "client_cpus": ccpu,
        "id": c["id"], "label": c["label"], "per_loop": dist,
        "share": {k: share(v) for k, v in dist.items()},
        "argv": " ".join(str(a) for a in stress_argv("ADDR", c["conns"], c["size"], c["pipeline"], threads,
                                                     duration=ctx.duration, source=SOURCES)),
        "raw": runs}


def run_ladder(ctx, ladder):
    out = []
    for loops in ladder:
        for c in ladder_cases(ctx.quick):
            r = ctx.guarded(f"loops {loops} case {c['id']}", run_rung, ctx, loops, c)
            if r:
                out.append(r)
    return out


def ladder_table(items):
    def spread(s, k):
        sh = (s["share"] or {}).get(k)
        if not sh:
            return "–"
        return f"{min(sh['pct']):.1f}–{max(sh['pct']):.1f} % (max/min {fmt(sh['max_over_min'], 2)})"
    rows = [[s["loops"], s["threads"], s["placement"], s["label"], fmt_num(s["msgs_per_sec"]),
             fmt(s["server_cpu_us_per_msg"], 2), fmt(s["server_core_pct"], 0), fmt(s["client_core_pct"], 0),
             spread(s, "connections"), spread(s, "bytes"), "yes" if s["all_ok"] else "NO"]
            for s in items]
    return md_table(["loops", "client threads", "CPUs", "case", "msgs/s", "server CPU µs/msg",
                     "server core %", "client core %", "per-loop share of connections",
                     "per-loop share of bytes", "all verified"], rows)
