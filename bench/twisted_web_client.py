"""Twisted's Agent with a persistent HTTPConnectionPool fetching one URL in a
loop with C concurrent requests for S seconds, after a short warm-up; prints
the requests per second. For bench_web_client's comparison.

Usage: twisted_web_client.py URL C S
"""
import sys
import time

from twisted.internet import defer, reactor
from twisted.web.client import Agent, HTTPConnectionPool, readBody


def main():
    url = sys.argv[1].encode()
    conc = int(sys.argv[2])
    secs = float(sys.argv[3])
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = conc
    agent = Agent(reactor, pool=pool)
    state = {"count": 0, "end": 0.0}

    @defer.inlineCallbacks
    def worker(until, counted):
        while time.monotonic() < until:
            response = yield agent.request(b"GET", url)
            yield readBody(response)
            if counted:
                state["count"] += 1

    @defer.inlineCallbacks
    def run():
        try:
            yield defer.gatherResults([worker(time.monotonic() + 0.3, False) for _ in range(conc)])
            t0 = time.monotonic()
            yield defer.gatherResults([worker(t0 + secs, True) for _ in range(conc)])
            print("%.0f" % (state["count"] / (time.monotonic() - t0)), flush=True)
        except Exception as e:  # report, never hang
            print("error %s" % e, flush=True)
        yield pool.closeCachedConnections()
        reactor.stop()

    reactor.callWhenRunning(run)
    reactor.run()


if __name__ == "__main__":
    main()
