"""Twisted's LineReceiver doing what bench_line.c does, for comparison.

Run with the system interpreter that has Twisted:
    /usr/bin/python3 bench/twisted_line.py [--quick] [--raw]
Prints a markdown table of nanoseconds per line (best of several rounds),
or with --raw one "shape nanoseconds" line per shape, which bench_line reads
to print both side by side. The input is built the same way: 64 KiB reads
of lines of 8 to 40 bytes.
"""
import random
import sys
import time

from twisted.protocols import basic

READ = 64 * 1024


class Counter(basic.LineReceiver):
    def __init__(self):
        self.lines = 0
        self.raw_left = 0

    def lineReceived(self, line):
        self.lines += 1
        if line.startswith(b"len "):
            self.raw_left = int(line[4:])
        elif not line and self.raw_left:
            self.setRawMode()

    def rawDataReceived(self, data):
        take = min(self.raw_left, len(data))
        self.raw_left -= take
        if self.raw_left == 0:
            self.setLineMode(data[take:])


class LFCounter(Counter):
    delimiter = b"\n"


class OnlyCounter(basic.LineOnlyReceiver):
    def __init__(self):
        self.lines = 0

    def lineReceived(self, line):
        self.lines += 1


def make_lines(rng, delim, whole):
    out = bytearray()
    while True:
        n = 8 + rng.randrange(33)
        if len(out) + n + len(delim) > READ:
            if not whole:
                out += bytes(97 + rng.randrange(26) for _ in range(READ - len(out)))
            return bytes(out)
        out += bytes(33 + rng.randrange(94) for _ in range(n)) + delim


def make_messages(rng):
    out = bytearray()
    while True:
        body = 16 + rng.randrange(64)
        head = b"len %d\r\n\r\n" % body
        if len(out) + len(head) + body > READ:
            return bytes(out)
        out += head + b"b" * body


class FakeTransport:
    disconnecting = False

    def write(self, data):
        pass

    def writeSequence(self, data):
        pass

    def loseConnection(self):
        self.disconnecting = True


def measure(cls, bufs, reads, rounds):
    best = float("inf")
    for _ in range(rounds):
        p = cls()
        p.makeConnection(FakeTransport())
        for b in bufs:
            p.dataReceived(b)
        start = p.lines
        t = time.perf_counter()
        for i in range(reads):
            p.dataReceived(bufs[i % len(bufs)])
        dt = time.perf_counter() - t
        best = min(best, dt * 1e9 / (p.lines - start))
    return best


def main():
    quick = "--quick" in sys.argv
    raw = "--raw" in sys.argv
    reads = 30 if quick else 200
    rounds = 3 if quick else 5
    rng = random.Random(1)
    aligned = [make_lines(rng, b"\r\n", True) for _ in range(8)]
    stream = [make_lines(rng, b"\r\n", False) for _ in range(8)]
    lf = [make_lines(rng, b"\n", False) for _ in range(8)]
    msgs = [make_messages(rng) for _ in range(8)]
    shapes = [
        ("aligned", Counter, aligned),
        ("stream", Counter, stream),
        ("line_only", OnlyCounter, stream),
        ("lf", LFCounter, lf),
        ("raw_switch", Counter, msgs),
    ]
    results = [(name, measure(cls, bufs, reads, rounds)) for name, cls, bufs in shapes]
    if raw:
        for name, ns in results:
            print(name, "%.1f" % ns)
    else:
        print("| shape | Twisted ns/line |\n|---|---:|")
        for name, ns in results:
            print("| %s | %.0f |" % (name, ns))


if __name__ == "__main__":
    main()
