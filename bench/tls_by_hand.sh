#!/bin/bash
# TLS vs plain echo, 50 x 16 KiB, and churn over TLS (full, resumed); server CPU 0, client CPU 1.
B=${TARGET:-target}/release
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
taskset -c 0 $B/echoloop --listen 127.0.0.1:17880 --tls-listen 127.0.0.1:17447 --tls-cert ${CERT:?a PEM certificate} --tls-key ${KEY:?its key} > /tmp/tlsbench-srv.log 2>&1 &
P=$!; sleep 0.5
run() { # name args...
  local name=$1; shift
  local c0=$(cpu $P)
  local out=$(taskset -c 1 $B/echoloop-stress "$@" 2>/dev/null)
  local c1=$(cpu $P)
  local line=$(echo "$out" | grep -E "^messages:|^churn:" | tail -1)
  local n=$(echo "$out" | grep -E "^messages:" | awk '{print $2}' | tr -d ,)
  echo "$name: $line | server cpu $(( (c1-c0)*10 )) ms, $(python3 -c "print(round(($c1-$c0)*1e4/max($n,1),2))") us/msg | $(echo "$out" | grep '^result')"
}
for i in 1 2; do
run plain --addr 127.0.0.1:17880 -c 50 -s 16384 --duration 5
run tls   --addr 127.0.0.1:17447 --tls --tls-insecure -c 50 -s 16384 --duration 5
done
run churn-plain --addr 127.0.0.1:17880 --mode churn -c 50 -s 64 --duration 5
run churn-tls-full --addr 127.0.0.1:17447 --tls --tls-insecure --mode churn -c 50 -s 64 --duration 5
run churn-tls-resumed --addr 127.0.0.1:17447 --tls --tls-insecure --tls-resume --mode churn -c 50 -s 64 --duration 5
kill -INT $P; sleep 1; tail -1 /tmp/tlsbench-srv.log | tr ' ' '\n' | grep -E "^tls_hand|^errored|^accepted"
cat /proc/loadavg
