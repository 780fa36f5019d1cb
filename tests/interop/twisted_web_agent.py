"""Twisted's HTTP client (twisted.web.client.Agent) against twirl's server.

usage: /usr/bin/python3 twisted_web_agent.py PORT

The server is tests/support/tt_web.c's: "/" says hello, "/echo" streams a
POSTed body back, "/static/" serves a directory holding digits.txt
("0123456789") and big.bin (3 MiB, byte i = (i * 7) & 0xff). Requests go
over one persistent connection pool; each check prints "OK name" and the
script ends with "ALL OK" (exit 0), or prints the failure and exits 1.
"""
import io
import sys

from twisted.internet import defer, reactor, task
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

PORT = int(sys.argv[1])
BASE = b"http://127.0.0.1:%d" % PORT


def check(name, cond, detail=""):
    if not cond:
        raise AssertionError("%s failed %s" % (name, detail))
    print("OK", name, flush=True)


@defer.inlineCallbacks
def main(reactor):
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 1
    agent = Agent(reactor, pool=pool)

    resp = yield agent.request(b"GET", BASE + b"/")
    body = yield readBody(resp)
    check("hello", resp.code == 200 and body == b"Hello, World!", (resp.code, body))
    check("date and server", resp.headers.hasHeader(b"date")
          and resp.headers.getRawHeaders(b"server") == [b"twirl"])

    resp = yield agent.request(b"GET", BASE + b"/")
    body = yield readBody(resp)
    check("keep-alive reuse", body == b"Hello, World!" and len(pool._connections) <= 1)

    data = bytes((i * 13) & 0xFF for i in range(300000))
    resp = yield agent.request(b"POST", BASE + b"/echo",
                               Headers({b"content-type": [b"application/octet-stream"]}),
                               FileBodyProducer(io.BytesIO(data)))
    body = yield readBody(resp)
    check("post echo (streamed both ways)", body == data, (resp.code, len(body)))

    resp = yield agent.request(b"HEAD", BASE + b"/static/digits.txt")
    body = yield readBody(resp)
    check("head", resp.code == 200 and body == b""
          and resp.headers.getRawHeaders(b"content-length") == [b"10"])

    resp = yield agent.request(b"GET", BASE + b"/static/digits.txt",
                               Headers({b"range": [b"bytes=2-5"]}))
    body = yield readBody(resp)
    check("range", resp.code == 206 and body == b"2345", (resp.code, body))

    etag = resp.headers.getRawHeaders(b"etag")[0]
    resp = yield agent.request(b"GET", BASE + b"/static/digits.txt",
                               Headers({b"if-none-match": [etag]}))
    body = yield readBody(resp)
    check("not modified", resp.code == 304 and body == b"", resp.code)

    resp = yield agent.request(b"GET", BASE + b"/static/big.bin")
    body = yield readBody(resp)
    want = bytes((i * 7) & 0xFF for i in range(3 * 1024 * 1024))
    check("big file (sendfile)", body == want, len(body))

    resp = yield agent.request(b"GET", BASE + b"/nope")
    yield readBody(resp)
    check("not found", resp.code == 404)

    resp = yield agent.request(b"DELETE", BASE + b"/")
    yield readBody(resp)
    check("method not allowed", resp.code == 405
          and resp.headers.getRawHeaders(b"allow") == [b"GET, HEAD"])

    yield pool.closeCachedConnections()
    print("ALL OK", flush=True)


def run(reactor):
    d = main(reactor)

    def failed(f):
        print("FAILED:", f.getErrorMessage(), flush=True)
        f.printTraceback(file=sys.stdout)
        return f

    d.addErrback(failed)
    return d


if __name__ == "__main__":
    task.react(run)
