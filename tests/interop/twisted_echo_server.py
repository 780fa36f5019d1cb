"""Twisted's own echo server, as its tutorials write it, for twirl's interop
tests (tests/interop/test_seeds_twisted.c).

Usage: twisted_echo_server.py HOST

Listens on HOST, port 0, with a ServerFactory whose protocol writes back
every byte it receives; prints "PORT <n>" on stdout. SIGTERM stops it (exit
status 0). It gives up after 30 seconds (exit status 2)."""

import sys

from twisted.internet import protocol, reactor


class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


def main():
    status = [0]

    def give_up():
        status[0] = 2
        reactor.stop()

    factory = protocol.ServerFactory()
    factory.protocol = Echo
    port = reactor.listenTCP(0, factory, interface=sys.argv[1])
    print("PORT %d" % port.getHost().port, flush=True)
    reactor.callLater(30, give_up)
    reactor.run()
    sys.exit(status[0])


if __name__ == "__main__":
    main()
