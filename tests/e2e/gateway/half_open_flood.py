#!/usr/bin/env python3
"""Opens COUNT TCP connections to HOST:PORT from SOURCE that never send a byte (the half-open
clients of issue #16), holds them until the server has closed them all or HOLD seconds passed,
then closes the rest. One worker process per 15 000 connections (a process's descriptor limit).

Prints one JSON line: {"opened": N, "closed_by_server": K, "seconds": S}.
Used by gateway_protection_e2e_test and by hand (docs/GATEWAY.md, "Connection admission").
"""
import argparse
import json
import multiprocessing
import os
import resource
import select
import socket
import time

PER_WORKER = 15000


def worker(args, count, out):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.bind((args.source, 0))
        try:
            s.connect((args.host, args.port))
        except BlockingIOError:
            pass
        except OSError:
            s.close()
            break
        socks.append(s)
    poller = select.epoll()
    by_fd = {}
    for s in socks:
        poller.register(s.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
        by_fd[s.fileno()] = s
    closed = set()
    deadline = time.monotonic() + args.hold
    while len(closed) < len(socks) and time.monotonic() < deadline:
        for fd, events in poller.poll(0.2):
            gone = events & (select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR)
            if not gone and events & select.EPOLLIN:
                # A gRPC server writes its SETTINGS frame at once: data is not a close. Read and
                # drop it (never answer); an empty read is the server's FIN.
                try:
                    gone = by_fd[fd].recv(65536) == b""
                except BlockingIOError:
                    gone = False
                except OSError:
                    gone = True
            if gone:
                closed.add(fd)
                poller.unregister(fd)
    for s in socks:
        s.close()
    out.put((len(socks), len(closed)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--source", default="127.0.0.2")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--hold", type=float, default=30.0)
    args = p.parse_args()
    start = time.monotonic()
    out = multiprocessing.Queue()
    procs = []
    left = args.count
    while left > 0:
        n = min(left, PER_WORKER)
        procs.append(multiprocessing.Process(target=worker, args=(args, n, out)))
        left -= n
    for proc in procs:
        proc.start()
    opened = closed = 0
    for _ in procs:
        o, c = out.get()
        opened += o
        closed += c
    for proc in procs:
        proc.join()
    print(json.dumps({"opened": opened, "closed_by_server": closed,
                      "seconds": round(time.monotonic() - start, 2)}), flush=True)


if __name__ == "__main__":
    main()
