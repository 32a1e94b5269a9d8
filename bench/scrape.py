#!/usr/bin/env python3
"""Times scrapes of `vmnetprobe serve` and reads its memory (issue 14).

Starts SERVE... on 127.0.0.1:PORT, waits for it, does RUNS scrapes of
/metrics one after the other (each timed from connect to the last byte),
checks that every scrape reports N VMs with vmnetprobe_up 1, then reads
VmRSS and VmHWM from /proc and stops the server with SIGTERM (it must exit 0).

usage: scrape.py --port PORT --vms N [--runs R] -- SERVE_CMD...
prints one JSON object (times in ms, memory in KiB)
"""
import argparse, json, re, signal, socket, statistics, subprocess, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--vms", type=int, required=True)
ap.add_argument("--runs", type=int, default=20)
ap.add_argument("cmd", nargs=argparse.REMAINDER)
a = ap.parse_args()
cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd


def scrape():
    t = time.monotonic()
    with socket.create_connection(("127.0.0.1", a.port), timeout=60) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return (time.monotonic() - t) * 1000.0, data.decode("utf-8", "replace")


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as fh:
        m = re.search(rf"^{key}:\s+(\d+) kB", fh.read(), re.M)
    return int(m.group(1)) if m else None


server = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
try:
    until = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", a.port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > until or server.poll() is not None:
                sys.exit("bench: serve did not start")
            time.sleep(0.05)
    times = []
    for _ in range(a.runs):
        ms, reply = scrape()
        body = reply.split("\r\n\r\n", 1)[-1]
        vms = len(re.findall(r"^vmnetprobe_vm_state\{", body, re.M))
        if not reply.startswith("HTTP/1.1 200") or "\nvmnetprobe_up 1\n" not in body or vms != a.vms:
            sys.exit(f"bench: bad scrape ({vms} VMs): {reply[:300]}")
        times.append(ms)
    rss, hwm = status_kib(server.pid, "VmRSS"), status_kib(server.pid, "VmHWM")
    server.send_signal(signal.SIGTERM)
    code = server.wait(timeout=30)
    if code != 0:
        sys.exit(f"bench: serve exited {code} on SIGTERM")
    first = times[0]
    times.sort()
    print(json.dumps({
        "runs": a.runs,
        "first_ms": round(first, 2),
        "median_ms": round(statistics.median(times), 2),
        "max_ms": round(times[-1], 2),
        "rss_kib": rss,
        "peak_rss_kib": hwm,
        "bytes": len(body.encode()),
    }))
finally:
    if server.poll() is None:
        server.kill()
        server.wait()
