"""twisted.web server for twirl's HTTP client tests (test_web_client_peers.c).

Usage: twisted_web_peer.py CERT KEY
Listens on 127.0.0.1, port 0, over TCP and TLS (CERT/KEY in PEM), prints
"PORTS <tcp> <tls>" and serves until killed:

  /hello     a small text body (HEAD works through render_GET)
  /echo      POST/PUT: the request body back, with X-Method, X-CL and X-TE
             saying how it was framed
  /headers   the request's header fields, one "name: value" per line
  /chunked   ten pieces written over time, no length (chunked)
  /gzip      a text body through Twisted's GzipEncoderFactory
  /redirect  302 to /hello
  /close     a body, then the server closes the connection
  /big       1 MiB of a repeating pattern
  /slow      never answers
"""
import sys

from twisted.internet import endpoints, reactor
from twisted.web import resource, server, util
from twisted.web.resource import EncodingResourceWrapper
from twisted.web.server import GzipEncoderFactory


class Text(resource.Resource):
    isLeaf = True

    def __init__(self, body):
        resource.Resource.__init__(self)
        self.body = body

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain")
        return self.body


class Echo(resource.Resource):
    isLeaf = True

    def render_POST(self, request):
        request.setHeader(b"x-method", request.method)
        request.setHeader(b"x-cl", request.getHeader(b"content-length") or b"-")
        request.setHeader(b"x-te", request.getHeader(b"transfer-encoding") or b"-")
        return request.content.read()

    render_PUT = render_POST


class Headers(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        lines = []
        for name, values in request.requestHeaders.getAllRawHeaders():
            for v in values:
                lines.append(name.lower() + b": " + v)
        return b"\n".join(sorted(lines)) + b"\n"


class Chunked(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        def more(i):
            if request.finished or request._disconnected:
                return
            if i == 10:
                request.finish()
                return
            request.write(b"piece %d\n" % i)
            reactor.callLater(0.002, more, i + 1)

        more(0)
        return server.NOT_DONE_YET


class Close(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"connection", b"close")
        return b"closing after this"


class Slow(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        return server.NOT_DONE_YET


def main():
    cert, key = sys.argv[1], sys.argv[2]
    root = resource.Resource()
    root.putChild(b"hello", Text(b"hello from twisted\n"))
    root.putChild(b"echo", Echo())
    root.putChild(b"headers", Headers())
    root.putChild(b"chunked", Chunked())
    root.putChild(b"gzip", EncodingResourceWrapper(
        Text(b"twisted gzip body " * 200), [GzipEncoderFactory()]))
    root.putChild(b"redirect", util.Redirect(b"/hello"))
    root.putChild(b"close", Close())
    root.putChild(b"big", Text(bytes(range(256)) * 4096))
    root.putChild(b"slow", Slow())
    site = server.Site(root)
    site.log = lambda request: None
    plain = endpoints.serverFromString(reactor, "tcp:0:interface=127.0.0.1")
    tls = endpoints.serverFromString(
        reactor, "ssl:0:interface=127.0.0.1:privateKey=%s:certKey=%s"
        % (key.replace(":", "\\:"), cert.replace(":", "\\:")))
    ports = []

    def listening(port):
        ports.append(port.getHost().port)
        if len(ports) == 2:
            print("PORTS %d %d" % tuple(ports), flush=True)

    def failed(f):
        print("FAILED %s" % f.getErrorMessage(), flush=True)
        reactor.stop()

    plain.listen(site).addCallbacks(listening, failed)
    tls.listen(site).addCallback(listening).addErrback(failed)
    reactor.run()


if __name__ == "__main__":
    main()
