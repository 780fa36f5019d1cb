"""Twisted's own framing receivers -- LineReceiver, NetstringReceiver and
Int32StringReceiver -- as peers for twirl's interop tests
(tests/interop/test_framing_twisted.c).

Usage:
  twisted_framing.py server KIND MAX
  twisted_framing.py client KIND PORT MAX COUNT MESSAGE...

KIND is line, netstring or int32. MAX is the receiver's MAX_LENGTH (0 keeps
Twisted's default). A MESSAGE is its own text, or "#N" for N bytes of
"abc...z" repeated, or "~N" for the N bytes 0, 1, 2, ... 255, 0, 1, ...

Every unit is reported as "UNIT <length> <fnv>" (FNV-1a, 32 bits, in hex);
"EXCEEDED" when Twisted refuses an over-long unit (lineLengthExceeded,
lengthLimitExceeded), "BROKEN" when a NetstringReceiver marks its peer
broken, and "LOST clean" or "LOST lost" when the connection ends.

server: listens on 127.0.0.1, port 0, prints "PORT <n>", prints "CONN" for
each connection and echoes every unit back with sendLine / sendString. It
stops on SIGTERM (exit status 0).

client: connects to 127.0.0.1:PORT, frames the messages with Twisted's own
sendLine / sendString into one byte string, and writes it in pieces of 1, 2,
3, 5, 7, 11, 13, 17, 64 and 250 bytes, in turn, 1 ms apart, so units
straddle reads. Once COUNT units came back it prints "DONE" and closes
(without half-closing first: Twisted would drop a reply); it exits 0 when the
connection ends, whoever ended it.

Both give up after 30 seconds (exit status 2)."""

import sys

from twisted.internet import protocol, reactor
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.protocols import basic

PIECES = (1, 2, 3, 5, 7, 11, 13, 17, 64, 250)


def say(*words):
    print(*words, flush=True)


def fnv(data):
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return "%08x" % h


def message(arg):
    if arg.startswith("#") and arg[1:].isdigit():
        return bytes(ord("a") + i % 26 for i in range(int(arg[1:])))
    if arg.startswith("~") and arg[1:].isdigit():
        return bytes(i % 256 for i in range(int(arg[1:])))
    return arg.encode("latin-1")


class Reporting:
    """What both sides share: reports units and the end."""

    def unit(self, data):
        say("UNIT", len(data), fnv(data))

    def connectionLost(self, reason):
        if getattr(self, "brokenPeer", 0):
            say("BROKEN")
        say("LOST", "clean" if reason.check(ConnectionDone) else "lost")
        self.ended()

    def ended(self):
        pass


def make(kind, base):
    """A protocol class of KIND whose units go to self.got(data)."""
    if kind == "line":

        class P(Reporting, basic.LineReceiver):
            def lineReceived(self, line):
                self.got(line)

            def lineLengthExceeded(self, line):
                say("EXCEEDED")
                return basic.LineReceiver.lineLengthExceeded(self, line)

            def send(self, data):
                self.sendLine(data)

    elif kind == "netstring":

        class P(Reporting, basic.NetstringReceiver):
            def stringReceived(self, string):
                self.got(string)

            def send(self, data):
                self.sendString(data)

    elif kind == "int32":

        class P(Reporting, basic.Int32StringReceiver):
            def stringReceived(self, string):
                self.got(string)

            def lengthLimitExceeded(self, length):
                say("EXCEEDED")
                return basic.Int32StringReceiver.lengthLimitExceeded(self, length)

            def send(self, data):
                self.sendString(data)

    else:
        raise SystemExit("unknown kind %r" % kind)

    class Peer(base, P):
        def connectionLost(self, reason):
            P.connectionLost(self, reason)

    return Peer


class ServerSide:
    def connectionMade(self):
        if self.factory.max_length:
            self.MAX_LENGTH = self.factory.max_length
        say("CONN")

    def got(self, data):
        self.unit(data)
        self.send(data)


class ClientSide:
    def connectionMade(self):
        if self.factory.max_length:
            self.MAX_LENGTH = self.factory.max_length
        self.received = 0
        # Framed by Twisted's own senders, captured.
        real, self.transport = self.transport, StringTransport()
        for m in self.factory.messages:
            self.send(m)
        self.wire = self.transport.value()
        self.transport = real
        self.at = 0
        self.piece = 0
        self.write_some()

    def write_some(self):
        if self.at >= len(self.wire) or not self.transport.connected:
            return
        if getattr(self.transport, "disconnecting", False):
            return
        n = PIECES[self.piece % len(PIECES)]
        self.piece += 1
        self.transport.write(self.wire[self.at : self.at + n])
        self.at += n
        reactor.callLater(0.001, self.write_some)

    def got(self, data):
        self.unit(data)
        self.received += 1
        if self.received == self.factory.count:
            say("DONE")
            self.transport.loseConnection()

    def ended(self):
        reactor.stop()


def main():
    status = [0]

    def give_up():
        status[0] = 2
        reactor.stop()

    mode, kind = sys.argv[1], sys.argv[2]
    if mode == "server":
        factory = protocol.ServerFactory()
        factory.protocol = make(kind, ServerSide)
        factory.max_length = int(sys.argv[3])
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        say("PORT", port.getHost().port)
    elif mode == "client":
        factory = protocol.ClientFactory()
        factory.protocol = make(kind, ClientSide)
        factory.max_length = int(sys.argv[4])
        factory.count = int(sys.argv[5])
        factory.messages = [message(a) for a in sys.argv[6:]]

        def failed(connector, reason):
            say("FAILED", reason.getErrorMessage())
            status[0] = 1
            reactor.stop()

        factory.clientConnectionFailed = failed
        reactor.connectTCP("127.0.0.1", int(sys.argv[3]), factory)
    else:
        raise SystemExit("usage: twisted_framing.py server|client ...")
    reactor.callLater(30, give_up)
    reactor.run()
    sys.exit(status[0])


if __name__ == "__main__":
    main()
