"""Twisted's own broadcast server (the "Spreader" of twirl's
examples/broadcast) for twirl's interop tests
(tests/interop/test_seeds_twisted.c).

Usage: twisted_spreader.py HOST

Listens on HOST, port 0, and prints "PORT <n>" on stdout. Each client is
welcomed with its number ("Welcome to Twisted world, you are client number
N!"); what a client sends is relayed to every other client; "close"
disconnects the sender. SIGTERM stops it (exit status 0); it gives up after
30 seconds (exit status 2)."""

import sys

from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol


class Spreader(Protocol):
    def __init__(self, factory):
        self.factory = factory

    def connectionMade(self):
        self.factory.num_protocols += 1
        self.transport.write(
            ("Welcome to Twisted world, you are client number %d!\n"
             % self.factory.num_protocols).encode())
        self.factory.clients.append(self)

    def connectionLost(self, reason):
        self.factory.clients.remove(self)

    def dataReceived(self, data):
        if data.rstrip(b"\r\n") == b"close":
            self.transport.loseConnection()
            return
        for client in self.factory.clients:
            if client is not self:
                client.transport.write(data)


class SpreadFactory(Factory):
    def __init__(self):
        self.num_protocols = 0
        self.clients = []

    def buildProtocol(self, addr):
        return Spreader(self)


def main():
    status = [0]

    def give_up():
        status[0] = 2
        reactor.stop()

    port = reactor.listenTCP(0, SpreadFactory(), interface=sys.argv[1])
    print("PORT %d" % port.getHost().port, flush=True)
    reactor.callLater(30, give_up)
    reactor.run()
    sys.exit(status[0])


if __name__ == "__main__":
    main()
