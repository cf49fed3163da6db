"""The Markdown tables the benchmark prints (and keeps in results.json)."""




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


def verdict(s):
    if s["all_ok"] and not s["verification_errors"]:
        return "yes"
    return (f"NO: {s['verification_errors']} verification errors, {s['connections_failed']} failed connects, "
            f"{s['stalled']} stalled, {s['unexpected_closes']} unexpected closes (over {s['runs']} runs)")


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
    ratio = lambda a, b: f"{a / b:.2f}" if a and b else "–"  # noqa: E731
    rows = []
    for s in main:
        r = by.get(s["id"])
        if not r:
            continue
        rows.append([s["id"], s["label"], fmt_num(s["msgs_per_sec"]), fmt_num(r["msgs_per_sec"]),
                     ratio(s["msgs_per_sec"], r["msgs_per_sec"]), fmt(s["server_cpu_us_per_msg"], 2),
                     fmt(r["server_cpu_us_per_msg"], 2), ratio(s["server_cpu_us_per_msg"], r["server_cpu_us_per_msg"]),
                     fmt(s["p99_us"]), fmt(r["p99_us"])])
    return md_table(["#", "case", "echoloop msgs/s", "reference msgs/s", "ratio", "echoloop CPU µs/msg",
                     "reference CPU µs/msg", "ratio", "echoloop p99 µs", "reference p99 µs"], rows)


def udp_table(items):
    rows = [[s["id"], s["label"], s["server"], fmt_num(s["datagrams_per_sec"]), fmt(s["p50_us"]),
             fmt(s["p99_us"]), fmt(s["server_cpu_us_per_datagram"], 2), fmt(s["server_core_pct"], 0),
             f"{fmt_num(s['lost'])} of {fmt_num(s['sent'])} ({fmt(s['loss_pct'], 2)} %)",
             f"{s['duplicated']:,} / {s['reordered']:,} / {s['corrupted']:,}", fmt_kib(s["peak_rss_kb"]),
             fmt(s["spread_pct"], 1), fmt(s["other_cores"], 2), "yes" if s["all_ok"] else "NO"]
            for s in items]
    return md_table(["#", "case", "server", "datagrams/s", "p50 µs", "p99 µs", "server CPU µs/datagram",
                     "server core %", "lost", "duplicated / reordered / corrupted", "server peak RSS",
                     "spread %", "other load (cores)", "verified"], rows)


def syscalls_table(items):
    uring = any("msgs_per_io_uring_enter" in s for s in items)
    rows = []
    for s in items:
        top = ", ".join(f"{k} {v['per_msg']:.3f}" + (f" ({v['errors']:,} err)" if v["errors"] else "")
                        for k, v in list(s["breakdown"].items())[:8] if v["per_msg"] is not None)
        row = [s["server"], s["case"], f"{s['messages']:,}", fmt_num(s["msgs_per_sec_under_strace"]),
               f"{s['syscalls']:,}", fmt(s["per_msg"], 3)]
        rows.append(row + ([fmt(s.get("msgs_per_io_uring_enter"), 1)] if uring else []) + [top])
    unit = "datagram" if items and all(s.get("unit") == "datagram" for s in items) else "msg"
    head = ["server", "case", f"{unit}s", f"{unit}s/s under strace", "syscalls (minus idle start/stop)",
            f"syscalls/{unit}"] + ([f"{unit}s per io_uring_enter"] if uring else []) + [f"per {unit}, by syscall"]
    if unit == "msg":
        head[2:4] = ["messages", "msgs/s under strace"]
        head[-1] = "per message, by syscall"
    return md_table(head, rows)


def compare_memory(c, L):
    """The memory cell of a technique's largest-count row."""
    mm = L["mid_run_memory"] or {}
    if "group_pss_kb" in mm:
        mem = (f"{fmt_kib(mm['group_pss_kb'])} PSS over {mm['processes']:,} processes "
               f"(RSS sum {fmt_kib(mm['group_rss_kb'])})")
        per = mm["group_pss_kb"] * 1024 / L["conns"]
    else:
        mem = f"{fmt_kib(mm.get('rss_kb'))} RSS mid-run" + (
            f", {mm['threads']:,} threads" if c["kind"] == "threads" and mm.get("threads") else "")
        per = (mm.get("rss_kb") or 0) * 1024 / L["conns"]
    return f"{mem}; {per / 1024:,.1f} KiB/conn (total ÷ conns)"


def syscall_cell(c, key):
    s = next((x for x in c.get("syscalls") or [] if x.get("key") == key), None)
    if not s:
        return "–"
    cell = fmt(s["per_msg"], 2)
    if s.get("msgs_per_io_uring_enter"):
        cell += f" ({fmt(s['msgs_per_io_uring_enter'], 1)} msgs per io_uring_enter)"
    return cell


def compare_table(items):
    rows = []
    for c in items:
        name = c["server"] + (f" ({c['mark']})" if c.get("mark") else "")
        for k in ("c1", "c50", "c1000"):
            s = c.get(k)
            if s:
                rows.append([name, s["label"], fmt_num(s["msgs_per_sec"]), fmt(s["p99_us"]),
                             fmt(s["server_cpu_us_per_msg"], 2), syscall_cell(c, k),
                             fmt_kib(s["peak_rss_kb"]) + (" (parent only)" if c.get("kind") == "fork" else ""),
                             fmt(s["spread_pct"], 1), fmt(s["other_cores"], 2), verdict(s)])
        L = c.get("largest")
        if L:
            rows.append([name, f"largest: {L['conns']:,} conns, 64 B", fmt_num(L["msgs_per_sec"]),
                         fmt(L["p99_us"]), fmt(L["server_cpu_us_per_msg"], 2), "–", compare_memory(c, L),
                         "1 run", fmt(L.get("other_cores"), 2), "yes"])
        else:
            rows.append([name, f"largest: none of {c['ladder']} passed", "–", "–", "–", "–", "–", "–", "–", "NO"])
    return md_table(["server", "case", "msgs/s", "p99 µs", "server CPU µs/msg", "syscalls/msg", "server memory",
                     "spread %", "other load (cores)", "verified"], rows)


def compare_notes(items):
    """What failed in the ladders, and each technique's own note."""
    notes = [f"- {c['note']}" for c in items if c.get("note")]
    for c in items:
        for t in c["largest_tried"]:
            if not t["ok"]:
                notes.append(f"- {c['server']} at {t['conns']:,} connections did not pass: established "
                             f"{t['established']}, failed connects {t['failed_by_reason']}, unexpected closes "
                             f"{t['unexpected_closes']}, stalled {t['stalled']}; first: {t['first_problem']}")
    return notes


def backends_table(items):
    rows = [[s["server"], f"{s['idle_requested']:,}", f"{s['idle_held']:,}", fmt_num(s["msgs_per_sec"]),
             fmt(s["p99_us"]), fmt(s["server_cpu_us_per_msg"], 2), fmt(s["server_core_pct"], 0),
             fmt(s["spread_pct"], 1), fmt(s["other_cores"], 2), verdict(s)] for s in items]
    return md_table(["backend", "idle conns asked", "idle conns held", "msgs/s (50 conns × 512 B)", "p99 µs",
                     "server CPU µs/msg", "server core %", "spread %", "other load (cores)", "verified"], rows)
