"""The stress client: its command lines, how its TCP and UDP reports are
read, one measured run (server CPU, other load, a quiet machine first), the
summaries of a server's runs, and the skeleton every comparison shares
(run_in_turn)."""

import json
import shlex
import signal
import statistics
import time

from echobench.procs import STRESS, busy_seconds, killpg, read_text, start_server, status_kb, stop_server
from echobench.tables import fmt, fmt_num


def stress_argv(addr, conns, size=64, pipeline=1, threads=1, duration=None, messages=None,
                mode="load", busy=False, source=None, connect_timeout=None, extra=()):
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
    return [str(x) for x in list(a) + list(extra)]


class TcpReport:
    """Reads the stress client's TCP report (its --json output)."""

    unit = "msg"

    @staticmethod
    def count(rep):
        return rep.get("messages") or 0

    @staticmethod
    def rate(rep):
        return rep.get("msgs_per_sec")

    @staticmethod
    def ok(rep, code):
        return bool(rep) and code == 0 and rep.get("verification_errors", 1) == 0


class UdpReport:
    """The stress client's UDP side, in this one place: its flags and the
    report fields we read (our name: the client's name). Rates are derived
    from `echoed` and the run's `duration_secs` when the report has none of
    its own (`elapsed_secs` only for a run without a duration): a lost
    datagram holds the end of the run for --echo-timeout, so elapsed time
    would charge a lossy server for the client's wait."""

    FIELDS = {"sent": "sent", "echoed": "echoed", "lost": "lost", "duplicated": "duplicated",
              "reordered": "reordered", "corrupted": "corrupted", "latency_us": "latency_us",
              "elapsed_secs": "elapsed_secs", "duration_secs": "duration_secs",
              "datagrams_per_sec": "datagrams_per_sec"}
    unit = "datagram"

    @staticmethod
    def argv(addr, sockets, size, pipeline, duration, extra=()):
        a = [STRESS, "--udp", "--addr", addr, "-c", sockets, "-s", size, "-k", pipeline,
             "-d", duration, "--json", *extra]
        return [str(x) for x in a]

    @staticmethod
    def extra_flags(help_text):
        """Flags the client takes beyond the ones above: loss is measured
        and reported, not a failure of the run."""
        return ["--max-loss", "100"] if "--max-loss" in help_text else []

    @classmethod
    def fields(cls, rep):
        f = {ours: (rep or {}).get(theirs) for ours, theirs in cls.FIELDS.items()}
        secs = f["duration_secs"] or f["elapsed_secs"]
        if f["datagrams_per_sec"] is None and f["echoed"] is not None and secs:
            f["datagrams_per_sec"] = f["echoed"] / secs
        return f

    @classmethod
    def count(cls, rep):
        return cls.fields(rep)["echoed"] or 0

    @classmethod
    def rate(cls, rep):
        return cls.fields(rep)["datagrams_per_sec"]

    @classmethod
    def ok(cls, rep, code):
        f = cls.fields(rep)
        return bool(rep) and code == 0 and not f["corrupted"] and not f["duplicated"]


def run_stress(ctx, argv, timeout, name="stress", during=None, report=TcpReport, cpu=1):
    """Runs one stress client pinned to `cpu` (CPU 1 by default) and waits
    for it (bounded). `during(elapsed, client)` is called every 50 ms while
    it runs."""
    p = ctx.procs.spawn(argv, name, cpu=cpu)
    t0 = time.monotonic()
    interrupted = False
    res = None
    while res is None:
        res = ctx.procs.reap(p, 0.05)
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
        rep = json.loads(read_text(p.out_path))
    except ValueError:
        rep = None
    return {
        "argv": argv,
        "exit": code,
        "wall_secs": wall,
        "client_cpu_secs": (ru.ru_utime + ru.ru_stime) if ru else None,
        "timed_out": interrupted,
        "report": rep,
        "stderr_tail": read_text(p.err_path)[-600:] if code else "",
        "ok": report.ok(rep, code),
    }


def wait_quiet(ctx):
    """Waits (at most quiet['max_wait'] s) until the machine's CPUs are busy
    with less than quiet['threshold'] cores' worth of other work; returns the
    last background load measured (cores), or None when not asked to wait."""
    if ctx.quiet["max_wait"] <= 0:
        return None
    end = time.monotonic() + ctx.quiet["max_wait"]
    while True:
        b0 = busy_seconds()
        time.sleep(0.5)
        load = (busy_seconds() - b0) / 0.5
        if load <= ctx.quiet["threshold"] or time.monotonic() >= end:
            return load


def measured(ctx, srv, argv, timeout, name="stress", during=None, report=TcpReport, cpu=1):
    """One stress run (the client pinned to `cpu`) with the server's CPU
    delta and the machine's other load. For UDP runs a "message" is an
    echoed datagram."""
    background = wait_quiet(ctx)
    c0, b0 = srv.cpu(), busy_seconds()
    r = run_stress(ctx, argv, timeout, name, during, report, cpu)
    srv.settle_children()
    c1, b1 = srv.cpu(), busy_seconds()
    rep = r["report"] or {}
    cpu = (c1 - c0) if c0 is not None and c1 is not None else None
    wall = r["wall_secs"]
    msgs = report.count(rep)
    r["server_cpu_secs"] = cpu
    r["server_cpu_us_per_msg"] = cpu / msgs * 1e6 if msgs and cpu is not None else None
    r["server_core_pct"] = 100 * cpu / wall if cpu is not None else None
    r["client_core_pct"] = 100 * r["client_cpu_secs"] / wall if r["client_cpu_secs"] is not None else None
    ours = (cpu or 0) + (r["client_cpu_secs"] or 0)
    r["other_cores"] = max(0.0, (b1 - b0) - ours) / wall  # other processes (noise)
    r["background_before_cores"] = background
    if report is UdpReport:
        r["udp"] = UdpReport.fields(rep)
    return r


def measured_retry(ctx, srv, argv, timeout, name="stress", report=TcpReport):
    """measured(), run again (at most quiet['retries'] times) while other
    processes took more than quiet['threshold'] cores during the run; the
    discarded runs are kept in the result."""
    discarded = []
    while True:
        r = measured(ctx, srv, argv, timeout, name, report=report)
        if r["other_cores"] <= ctx.quiet["threshold"] or len(discarded) >= ctx.quiet["retries"] or not r["ok"]:
            break
        rate = report.rate(r["report"] or {})
        ctx.log(f"      (noisy: other processes took {r['other_cores']:.2f} cores; {fmt_num(rate)} "
                f"{report.unit}/s discarded, running again)")
        discarded.append({k: r[k] for k in ("other_cores", "server_cpu_us_per_msg")} | {"msgs_per_sec": rate})
    r["discarded_noisy_runs"] = discarded
    return r


def med(values):
    v = [x for x in values if x is not None]
    return statistics.median(v) if v else None


def spread(values):
    """(median, min, max, (max - min) / median in %) of the values given."""
    good = [x for x in values if x is not None]
    m = med(good)
    if not good:
        return m, None, None, None
    return m, min(good), max(good), (100 * (max(good) - min(good)) / m if m else None)


def summarize(runs):
    """The figures of a server's TCP runs of one case: medians, sums of problems."""
    reps = [r["report"] or {} for r in runs]
    lat = lambda k: med([(x.get("latency_us") or {}).get(k) for x in reps])  # noqa: E731
    m, lo, hi, sp = spread([x.get("msgs_per_sec") for x in reps])
    total = lambda k: sum(x.get(k, 0) or 0 for x in reps)  # noqa: E731
    return {
        "runs": len(runs), "msgs_per_sec": m, "msgs_per_sec_min": lo, "msgs_per_sec_max": hi,
        "spread_pct": sp, "mib_per_sec": med([x.get("mib_per_sec") for x in reps]),
        "p50_us": lat("p50"), "p99_us": lat("p99"), "p99_9_us": lat("p99_9"),
        "server_cpu_us_per_msg": med([r["server_cpu_us_per_msg"] for r in runs]),
        "server_core_pct": med([r["server_core_pct"] for r in runs]),
        "client_core_pct": med([r["client_core_pct"] for r in runs]),
        "other_cores": med([r["other_cores"] for r in runs]),
        "connections_per_sec": med([x.get("connections_per_sec") for x in reps]),
        "verification_errors": total("verification_errors"), "failures": total("failures"),
        "stalled": total("stalled"), "unexpected_closes": total("unexpected_closes"),
        "connections_failed": total("connections_failed"),
        "all_ok": all(r["ok"] for r in runs),
    }


def summarize_udp(runs):
    """The figures of a server's UDP runs of one case."""
    u = [r.get("udp") or {} for r in runs]
    lat = lambda k: med([(x.get("latency_us") or {}).get(k) for x in u])  # noqa: E731
    total = lambda k: sum(x.get(k) or 0 for x in u)  # noqa: E731
    m, lo, hi, sp = spread([x.get("datagrams_per_sec") for x in u])
    sent = total("sent")
    return {
        "runs": len(runs), "datagrams_per_sec": m, "datagrams_per_sec_min": lo,
        "datagrams_per_sec_max": hi, "spread_pct": sp,
        "p50_us": lat("p50"), "p99_us": lat("p99"), "p99_9_us": lat("p99_9"),
        "server_cpu_us_per_datagram": med([r["server_cpu_us_per_msg"] for r in runs]),
        "server_core_pct": med([r["server_core_pct"] for r in runs]),
        "client_core_pct": med([r["client_core_pct"] for r in runs]),
        "other_cores": med([r["other_cores"] for r in runs]),
        "sent": sent, "echoed": total("echoed"), "lost": total("lost"),
        "loss_pct": 100 * total("lost") / sent if sent else None,
        "duplicated": total("duplicated"), "reordered": total("reordered"), "corrupted": total("corrupted"),
        "all_ok": all(r["ok"] for r in runs),
    }


class Job:
    """One kind of stress run for run_in_turn.

    what: names it in the progress lines ("case 2", "churn"); argv(addr):
    the client's command line; summarise(runs): one server's figures;
    line(run): the progress line's figures; annotate(run): adds figures of
    its own to a run; report: how to read the client's report."""

    def __init__(self, what, argv, timeout, summarise, line, annotate=None, report=TcpReport,
                 name="stress"):
        self.what, self.argv, self.timeout, self.summarise = what, argv, timeout, summarise
        self.line, self.annotate, self.report, self.name = line, annotate, report, name


def run_in_turn(ctx, specs, job):
    """Runs `job` against one or more servers, all started at once and run
    in turn (A B A B ...), so that a change in the machine's background load
    hits every server alike. A fresh set of servers per job, so each peak
    RSS is that job's. Returns one summary per server."""
    running = []
    try:
        for spec in specs:
            running.append(start_server(ctx, spec))
        runs = {srv.spec.name: [] for srv in running}
        for i in range(ctx.reps):
            for srv in running:
                r = measured_retry(ctx, srv, job.argv(srv.addr), job.timeout, job.name, job.report)
                if job.annotate:
                    job.annotate(r)
                runs[srv.spec.name].append(r)
                ctx.log(f"    {srv.spec.name} {job.what} run {i + 1}/{ctx.reps}: {job.line(r)}"
                        + ("" if r["ok"] else f"  FAILED exit {r['exit']}: {r['stderr_tail'][-200:]}"))
        hwm = {srv.spec.name: status_kb(srv.pid, "VmHWM") for srv in running}
    finally:
        for srv in running:
            stop_server(ctx, srv)
    out = []
    for spec in specs:
        s = job.summarise(runs[spec.name])
        s.update({"server": spec.name, "peak_rss_kb": hwm[spec.name], "argv": shlex.join(job.argv("ADDR")),
                  "raw": runs[spec.name]})
        out.append(s)
    return out


def tcp_line(r):
    return (f"{fmt_num((r['report'] or {}).get('msgs_per_sec'))} msg/s, server {fmt(r['server_cpu_us_per_msg'], 2)} "
            f"us/msg, other load {r['other_cores']:.2f} cores")
