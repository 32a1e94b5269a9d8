#!/usr/bin/env python3
"""A/B of vmnetprobe builds on the same agents, runs interleaved so that
background load hits every build alike (this machine is shared).

usage: compare.py --glob 'DIR/*.sock' --external ADDR [--agents PIDFILE]
                  [--rounds N] [--args '-j 16'] NAME=BIN ...
prints per build: median wall ms, median vmnetprobe CPU ms, median agents' CPU ms,
median per-VM duration_ms (from the report), peak RSS (GNU time, when installed), all-OK count.
"""
import argparse, json, os, shlex, statistics, subprocess, time

ap = argparse.ArgumentParser()
ap.add_argument("--glob", required=True)
ap.add_argument("--external", required=True)
ap.add_argument("--agents")
ap.add_argument("--rounds", type=int, default=10)
ap.add_argument("--args", default="")
ap.add_argument("bins", nargs="+")
a = ap.parse_args()
tick = os.sysconf("SC_CLK_TCK")
pids = [int(x) for x in open(a.agents).read().split()] if a.agents else []


def agent_cpu():
    t = 0
    for p in pids:
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            t += sum(int(x) for x in f[11:15])
        except OSError:
            pass
    return t * 1000.0 / tick


GNU_TIME = "/usr/bin/time"
use_time = os.access(GNU_TIME, os.X_OK)
rss_file = f"/tmp/vmnp-compare-{os.getpid()}.rss"
builds = [b.split("=", 1) for b in a.bins]
res = {n: {"wall": [], "cpu": [], "agent": [], "vm": [], "rss": [], "ok": 0} for n, _ in builds}
for r in range(a.rounds + 1):
    for name, binary in builds:
        cmd = [binary, "zabbix", "--socket-glob", a.glob, "--external", a.external] + shlex.split(a.args)
        if use_time:
            cmd = [GNU_TIME, "-f", "%M", "-o", rss_file] + cmd
        c0 = agent_cpu()
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        out = p.stdout.read()
        _, _, ru = os.wait4(p.pid, 0)
        wall = (time.perf_counter() - t0) * 1000
        c1 = agent_cpu()
        if r == 0:
            continue  # warm-up round
        doc = json.loads(out)
        x = res[name]
        x["wall"].append(wall)
        x["cpu"].append((ru.ru_utime + ru.ru_stime) * 1000)
        x["agent"].append(c1 - c0)
        x["vm"].append(statistics.median(v["duration_ms"] for v in doc["vms"]))
        x["ok"] += all(v["state"] == "OK" for v in doc["vms"])
        if use_time:
            with open(rss_file) as fh:
                x["rss"].append(int(fh.read().split()[-1]))
for name, _ in builds:
    x = res[name]
    print(json.dumps({"build": name, "wall_ms": round(statistics.median(x["wall"]), 1),
                      "wall_min_ms": round(min(x["wall"]), 1),
                      "cpu_ms": round(statistics.median(x["cpu"]), 1),
                      "agent_cpu_ms": round(statistics.median(x["agent"]), 1),
                      "vm_duration_ms": round(statistics.median(x["vm"]), 2),
                      "maxrss_kib": max(x["rss"]) if x["rss"] else None,
                      "all_ok_runs": f'{x["ok"]}/{a.rounds}'}))
