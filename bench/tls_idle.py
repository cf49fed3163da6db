#!/usr/bin/env python3
"""Memory per idle TLS connection: the server's RSS delta over N idle TLS
connections, divided by N (and the same for plain TCP, for the ratio).

    python3 bench/tls_idle.py PID TLS_ADDR PLAIN_ADDR CAFILE [N]

PID is a running `echoloop --tls-listen TLS_ADDR --listen PLAIN_ADDR
--tls-cert … --tls-key …` whose certificate CAFILE verifies for localhost.
Opens N (default 10,000) connections to each address in turn, each TLS one
with a finished handshake and one 64-byte round trip (so rustls has made
every buffer it keeps), samples VmRSS (/proc/PID/status) before and with
all N open, prints the deltas, closes them. Standard library only; Linux.
Until the stress client speaks TLS (then bench/run.py takes this case),
this is how docs/benchmarks.md's idle-TLS figure is made.
"""

import resource
import socket
import ssl
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def hold(pid, addr, n, ctx):
    host, port = addr.rsplit(":", 1)
    before = rss_kib(pid)
    conns = []
    for _ in range(n):
        s = socket.create_connection((host, int(port)))
        if ctx:
            s = ctx.wrap_socket(s, server_hostname="localhost")
        s.sendall(b"x" * 64)
        got = b""
        while len(got) < 64:
            got += s.recv(64 - len(got))
        conns.append(s)
    time.sleep(1)
    during = rss_kib(pid)
    for s in conns:
        s.close()
    return before, during


def main():
    pid, tls_addr, plain_addr, cafile = sys.argv[1:5]
    n = int(sys.argv[5]) if len(sys.argv) > 5 else 10000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ctx = ssl.create_default_context(cafile=cafile)
    for name, addr, c in (("plain", plain_addr, None), ("tls", tls_addr, ctx)):
        before, during = hold(pid, addr, n, c)
        print(f"{name}: {n} idle connections, RSS {before} -> {during} KiB, "
              f"{(during - before) * 1024 / n:.0f} B per connection")
        time.sleep(2)


if __name__ == "__main__":
    main()
