"""Twisted's Deferred doing what bench_deferred.c does, for comparison.

Run with the system interpreter that has Twisted:
    /usr/bin/python3 bench/twisted_deferred.py [--quick] [--raw]
Prints a markdown table of nanoseconds per operation (best of several
rounds), or with --raw one "shape nanoseconds" line per shape, which
bench_deferred reads to print both side by side.
"""
import sys
import time

from twisted.internet import defer


def plus_one(value):
    return value + 1


def store(value, box):
    box[0] = value


def shape_chain10(n):
    for _ in range(n):
        d = defer.Deferred()
        for _ in range(10):
            d.addCallback(plus_one)
        d.callback(0)


def shape_create_fire(n):
    for i in range(n):
        d = defer.Deferred()
        d.callback(i)


def shape_late_callback(n):
    for i in range(n):
        defer.succeed(i).addCallback(plus_one)


def shape_chained_inner(n):
    box = [None]
    for i in range(n):
        outer = defer.Deferred()
        inner = defer.Deferred()
        outer.addCallback(lambda _ignored, inner=inner: inner)
        outer.addCallback(store, box)
        outer.callback(0)
        inner.callback(i)


def shape_gather10(n):
    for _ in range(n):
        defer.gatherResults([defer.succeed(k) for k in range(10)])


SHAPES = [
    ("chain10", "chain of 10 callbacks (per chain)", shape_chain10, 1),
    ("create_fire", "create+fire", shape_create_fire, 1),
    ("late_callback", "late callback on a fired deferred", shape_late_callback, 1),
    ("chained_inner", "callback returns unfired inner", shape_chained_inner, 1),
    ("gather10", "gather of 10 fired", shape_gather10, 10),
]


def best_ns(fn, n, rounds):
    fn(max(1, n // 10))
    best = None
    for _ in range(rounds):
        start = time.perf_counter()
        fn(n)
        per = (time.perf_counter() - start) * 1e9 / n
        best = per if best is None or per < best else best
    return best


def main(argv):
    quick = "--quick" in argv
    raw = "--raw" in argv
    n = 20000 if quick else 100000
    rounds = 3 if quick else 5
    results = [(key, label, best_ns(fn, n // div, rounds)) for key, label, fn, div in SHAPES]
    if raw:
        for key, _label, ns in results:
            print(f"{key} {ns:.1f}")
        return
    print("| shape (Twisted %s) | ns |" % getattr(__import__("twisted"), "__version__", "?"))
    print("|---|---:|")
    for _key, label, ns in results:
        print(f"| {label} | {ns:.0f} |")
    chain = results[0][2]
    print(f"\nchain of 10: {chain / 10:.0f} ns per callback, {10e3 / chain:.2f} M callbacks/s")


if __name__ == "__main__":
    main(sys.argv[1:])
