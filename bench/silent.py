#!/usr/bin/env python3
"""Broken agent sockets for bench/run.sh, until SIGTERM.

usage: silent.py silent|never-accept SOCKET...

silent:        accepts every connection and reads it, never answers (a hung
               qemu-ga, or a QEMU whose chardev has no agent behind it).
never-accept:  listens with a backlog of 0 and holds the one connection that
               fills it, so every further connect() would block (a QEMU that
               never accepts).
Prints "ready" on stdout once every socket exists.
"""
import os, selectors, signal, socket, sys

mode, paths = sys.argv[1], sys.argv[2:]
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
sel = selectors.DefaultSelector()
held = []
for path in paths:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    if mode == "silent":
        s.listen(1024)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, "listener")
    elif mode == "never-accept":
        s.listen(0)
        filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        filler.connect(path)
        held.append(filler)
    else:
        sys.exit(f"unknown mode {mode}")
    held.append(s)
print("ready", flush=True)
try:
    while True:
        if mode != "silent":
            signal.pause()
            continue
        for key, _ in sel.select():
            if key.data == "listener":
                try:
                    conn, _ = key.fileobj.accept()
                except BlockingIOError:
                    continue
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ, "conn")
            else:
                try:
                    data = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                if not data:
                    sel.unregister(key.fileobj)
                    key.fileobj.close()
finally:
    for path in paths:
        try:
            os.unlink(path)
        except OSError:
            pass
