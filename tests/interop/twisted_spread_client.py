"""Twisted's own client for the broadcast server, printing each factory and
protocol hook as it runs, in the format of twirl's
examples/broadcast/broadcast_client.c, so the two orders can be compared
(tests/interop/test_seeds_twisted.c).

Usage: twisted_spread_client.py INTERVAL COUNT NAME HOST PORT

Says "hello, I'm NAME <time>" every INTERVAL seconds; after COUNT hellos it
disconnects. The reactor stops when the connection is lost (exit status 0)
or fails (1); it gives up after 20 seconds (2)."""

import sys
import time

from twisted.internet import reactor, task
from twisted.internet.protocol import ClientFactory, Protocol


def hook(name, text):
    print("%s: %s" % (name, text), flush=True)


class HelloClient(Protocol):
    def connectionMade(self):
        hook("connection_made", "connected to the server")
        self.sent = 0
        self.hello = task.LoopingCall(self.say_hello)
        self.hello.start(self.factory.interval, now=False)

    def dataReceived(self, data):
        hook("data_received", data.decode().rstrip("\n"))

    def connectionLost(self, reason):
        if self.hello.running:
            self.hello.stop()
        hook("connection_lost", "disconnected from the server")

    def say_hello(self):
        now = time.strftime("%Y-%m-%d %H:%M:%S")
        self.transport.write(("hello, I'm %s %s\n" % (self.factory.name, now)).encode())
        self.sent += 1
        if self.sent >= self.factory.count:
            self.hello.stop()
            self.transport.loseConnection()


class HelloFactory(ClientFactory):
    def __init__(self, interval, count, name):
        self.interval, self.count, self.name = interval, count, name
        self.status = 1

    def startedConnecting(self, connector):
        dest = connector.getDestination()
        hook("started_connecting", "to %s:%d" % (dest.host, dest.port))

    def buildProtocol(self, addr):
        hook("build_protocol", "%s says hello" % self.name)
        p = HelloClient()
        p.factory = self
        return p

    def clientConnectionLost(self, connector, reason):
        hook("client_connection_lost", reason.getErrorMessage())
        self.status = 0
        reactor.stop()

    def clientConnectionFailed(self, connector, reason):
        hook("client_connection_failed", reason.getErrorMessage())
        reactor.stop()


def main():
    interval, count, name = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    host, port = sys.argv[4], int(sys.argv[5])
    factory = HelloFactory(interval, count, name)

    def give_up():
        factory.status = 2
        reactor.stop()

    reactor.connectTCP(host, port, factory)
    reactor.callLater(20, give_up)
    reactor.run()
    sys.exit(factory.status)


if __name__ == "__main__":
    main()
