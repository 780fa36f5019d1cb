"""Twisted's deferToThread doing what bench_threads.c does, for comparison.

Run with the system interpreter that has Twisted:
    /usr/bin/python3 bench/twisted_threads.py [--quick] [--raw]
Prints jobs per second for each shape, or with --raw one "shape rate" line
per shape, which bench_threads reads to print both side by side.
"""
import sys
import time

from twisted.internet import reactor, threads


def job(i):
    return i + 1


def measure(total, window, nthreads):
    reactor.getThreadPool().adjustPoolsize(nthreads, nthreads)
    state = {"submitted": 0, "done": 0, "t0": 0.0, "rate": 0.0}
    finished = []

    def on_done(_value):
        state["done"] += 1
        if state["submitted"] < total:
            submit()
        elif state["done"] == total:
            state["rate"] = total / (time.perf_counter() - state["t0"])
            finished.append(True)

    def submit():
        d = threads.deferToThread(job, state["submitted"])
        state["submitted"] += 1
        d.addCallback(on_done)

    state["t0"] = time.perf_counter()
    for _ in range(min(window, total)):
        submit()
    while not finished:
        reactor.iterate(0.01)
    return state["rate"]


def main():
    quick = "--quick" in sys.argv
    raw = "--raw" in sys.argv
    n = 5000 if quick else 50000
    shapes = [
        ("one_at_a_time_1", lambda: measure(n // 4, 1, 1)),
        ("window256_1", lambda: measure(n, 256, 1)),
        ("window256_4", lambda: measure(n, 256, 4)),
    ]
    reactor.startRunning(installSignalHandlers=False)
    measure(100, 1, 1)  # warm up: start the pool
    for name, fn in shapes:
        rate = fn()
        print(f"{name} {rate:.0f}" if raw else f"{name}: {rate:.0f} jobs/s")
    reactor.getThreadPool().stop()


if __name__ == "__main__":
    main()
