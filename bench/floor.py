#!/usr/bin/env python3
"""The floor: one bare guest-exec of the ping + guest-exec-status polled in a
tight loop (no sleep) until exited, on one already-connected agent. Also the
round trip of one cheap command (guest-info) for reference.

usage: floor.py SOCKET ADDRESS [REPEAT]   -> prints JSON with medians in ms
"""
import json, socket, statistics, sys, time

sock_path, addr = sys.argv[1], sys.argv[2]
repeat = int(sys.argv[3]) if len(sys.argv) > 3 else 30

s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sock_path)
f = s.makefile("rb")


def call(cmd, args=None):
    req = {"execute": cmd}
    if args is not None:
        req["arguments"] = args
    s.sendall(json.dumps(req).encode() + b"\n")
    line = f.readline()
    return json.loads(line)


# Handshake: 0xFF resets the parser; skip to the agent's 0xFF, expect our id.
s.sendall(b'\xff{"execute":"guest-sync-delimited","arguments":{"id":4242}}\n')
while True:
    b = f.read(1)
    if b == b"\xff":
        break
assert json.loads(f.readline())["return"] == 4242

info = []
for _ in range(repeat):
    t = time.perf_counter()
    call("guest-info")
    info.append((time.perf_counter() - t) * 1000)

ping_args = {"path": "/bin/ping", "arg": ["-n", "-c", "1", "-W", "1", addr],
             "env": ["LC_ALL=C", "LANG=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
             "capture-output": True}
total, polls = [], []
for _ in range(repeat):
    t = time.perf_counter()
    pid = call("guest-exec", ping_args)["return"]["pid"]
    n = 0
    while True:
        n += 1
        st = call("guest-exec-status", {"pid": pid})["return"]
        if st["exited"]:
            break
    total.append((time.perf_counter() - t) * 1000)
    polls.append(n)
    assert st.get("exitcode") == 0, st

print(json.dumps({
    "guest_info_ms": round(statistics.median(info), 3),
    "exec_roundtrip_ms": round(statistics.median(total), 3),
    "exec_roundtrip_min_ms": round(min(total), 3),
    "status_polls_median": statistics.median(polls),
}))
