"""Drives mirakuru for benches/compare (fixtures-bin): the same servers, started and stopped
the way mirakuru's users do it, with figures printed one per line for the Rust side to read.

    python mirakuru_driver.py readiness N DELAY PROGRAM ARGS...  # `latency_ns=<ready - listen>`
                                                            # per sample; `{delay}` in ARGS is
                                                            # DELAY + (7 i mod 10) ms, as in Rust
    python mirakuru_driver.py cycle N PROGRAM ARGS...       # `wall_ns=` per cycle, then `cpu_ns=`
    python mirakuru_driver.py stop WANT PROGRAM ARGS...     # `stop_ns=` of one stop, timed once
                                                            # WANT processes are up
    python mirakuru_driver.py threads N T PROGRAM ARGS...   # N cycles over T threads:
                                                            # `elapsed_ns=` of them all
    python mirakuru_driver.py real FILE                     # a start and a stop per line of FILE
                                                            # (`PORT<TAB>ARGV...`, prepared by
                                                            # the Rust side): `start_ns=`, `stop_ns=`

`{port}` in ARGS stands for a free port. The server prints `listen_ns=<CLOCK_MONOTONIC ns>` on
stderr right after listen(); Python's time.monotonic_ns() reads the same clock on Linux.
"""

import os
import resource
import socket
import subprocess
import sys
import threading
import time

from mirakuru import TCPExecutor


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv, stderr=subprocess.DEVNULL, delay=0):
    port = free_port()
    cmd = [a.replace("{port}", str(port)).replace("{delay}", str(delay)) for a in argv]
    executor = TCPExecutor(cmd, host="127.0.0.1", port=port, timeout=30, stderr=stderr)
    executor.start()
    return executor


def listen_ns(executor):
    for line in executor.process.stderr:
        text = (line.decode(errors="replace") if isinstance(line, bytes) else line).strip()
        if text.startswith("listen_ns="):
            return int(text.split("=", 1)[1])
    return None


def tree_size(pid):
    """`pid` and its descendants, counted (from each thread's /proc children list)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    children = []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                children += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return 1 + sum(tree_size(c) for c in children)


def wait_for_workers(leader, want):
    """As the Rust side does: the stop is timed once the server's processes are all up."""
    deadline = time.monotonic() + 5
    while tree_size(leader) < want and time.monotonic() < deadline:
        time.sleep(0.001)


def cpu_ns():
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return int(total * 1e9)


def main():
    mode, rest = sys.argv[1], sys.argv[2:]
    if mode == "readiness":
        n, delay, argv = int(rest[0]), int(rest[1]), rest[2:]
        for i in range(n):
            executor = start(argv, stderr=subprocess.PIPE, delay=delay + (7 * i) % 10)
            ready = time.monotonic_ns()
            listened = listen_ns(executor)
            executor.stop()
            print(f"latency_ns={ready - listened}", flush=True)
    elif mode == "cycle":
        n, argv = int(rest[0]), rest[1:]
        before = cpu_ns()
        for _ in range(n):
            t = time.monotonic_ns()
            start(argv).stop()
            print(f"wall_ns={time.monotonic_ns() - t}", flush=True)
        print(f"cpu_ns={cpu_ns() - before}", flush=True)
    elif mode == "stop":
        want, argv = int(rest[0]), rest[1:]
        executor = start(argv)
        wait_for_workers(executor.process.pid, want)
        t = time.monotonic_ns()
        executor.stop()
        print(f"stop_ns={time.monotonic_ns() - t}", flush=True)
    elif mode == "threads":
        n, threads, argv = int(rest[0]), int(rest[1]), rest[2:]

        def cycles():
            for _ in range(n // threads):
                start(argv).stop()

        workers = [threading.Thread(target=cycles) for _ in range(threads)]
        t = time.monotonic_ns()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        print(f"elapsed_ns={time.monotonic_ns() - t}", flush=True)
    elif mode == "real":
        with open(rest[0]) as f:
            rounds = [line.rstrip("\n").split("\t") for line in f if line.strip()]
        for port, *argv in rounds:
            t = time.monotonic_ns()
            executor = TCPExecutor(
                argv,
                host="127.0.0.1",
                port=int(port),
                timeout=30,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            executor.start()
            started = time.monotonic_ns()
            executor.stop()
            print(f"start_ns={started - t}", flush=True)
            print(f"stop_ns={time.monotonic_ns() - started}", flush=True)
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
