#!/usr/bin/env python3
"""Runs a command several times and reports wall time, CPU time (user+sys of
the command and all its reaped children, from wait4) and peak RSS.
Peak RSS comes from GNU time (apt package `time`) when installed: wait4's
ru_maxrss of a child started from Python starts at Python's own RSS (~15 MiB,
kept across exec), so it cannot show anything smaller.
Optionally adds the CPU the agents spent meanwhile (qemu-ga + the pings it
reaped, from /proc/PID/stat).

usage: measure.py [--runs N] [--warmup N] [--agents PIDFILE] [--save-last FILE] -- CMD...
prints one JSON object (times in ms, RSS in KiB)
"""
import argparse, json, os, statistics, subprocess, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--runs", type=int, default=10)
ap.add_argument("--warmup", type=int, default=1)
ap.add_argument("--agents")
ap.add_argument("--save-last")
ap.add_argument("cmd", nargs=argparse.REMAINDER)
a = ap.parse_args()
cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
tick = os.sysconf("SC_CLK_TCK")
pids = []
if a.agents:
    with open(a.agents) as fh:
        pids = [int(x) for x in fh.read().split()]


def agent_cpu_ms():
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            # utime stime cutime cstime = fields 14..17 (1-based) -> 11..14 here
            total += sum(int(x) for x in fields[11:15])
        except OSError:
            pass
    return total * 1000.0 / tick


GNU_TIME = "/usr/bin/time"
use_time = os.access(GNU_TIME, os.X_OK)
rss_file = f"/tmp/vmnp-measure-{os.getpid()}.rss"
walls, cpus, rss, agent = [], [], [], []
for i in range(a.warmup + a.runs):
    last = i == a.warmup + a.runs - 1
    out = open(a.save_last, "wb") if (last and a.save_last) else subprocess.DEVNULL
    c0 = agent_cpu_ms()
    t0 = time.perf_counter()
    full = [GNU_TIME, "-f", "%M", "-o", rss_file] + cmd if use_time else cmd
    p = subprocess.Popen(full, stdout=out, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    wall = (time.perf_counter() - t0) * 1000
    c1 = agent_cpu_ms()
    if out is not subprocess.DEVNULL:
        out.close()
    if i < a.warmup:
        continue
    walls.append(wall)
    cpus.append((ru.ru_utime + ru.ru_stime) * 1000)
    if use_time:
        with open(rss_file) as fh:
            rss.append(int(fh.read().split()[-1]))
    else:
        rss.append(ru.ru_maxrss)
    agent.append(c1 - c0)
    code = os.waitstatus_to_exitcode(status)

if use_time:
    os.unlink(rss_file)
print(json.dumps({
    "runs": a.runs,
    "wall_ms": round(statistics.median(walls), 2),
    "wall_min_ms": round(min(walls), 2),
    "wall_max_ms": round(max(walls), 2),
    "cpu_ms": round(statistics.median(cpus), 2),
    "maxrss_kib": max(rss),
    "agent_cpu_ms": round(statistics.median(agent), 1) if pids else None,
    "exit": code,
}))
