"""A Twisted UDP peer for twirl's interop tests (tests/net/test_udp.c).

Usage: twisted_udp.py HOST PEER_PORT

Listens with Twisted's own DatagramProtocol on HOST, port 0, prints
"PORT <n>" on stdout, greets HOST:PEER_PORT with "hello from twisted", then
answers every datagram with "echo:" + the datagram. A datagram "quit" stops
it (exit status 0). It gives up after 20 seconds (exit status 2)."""

import sys

from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol


class Echo(DatagramProtocol):
    def __init__(self, peer):
        self.peer = peer
        self.status = 2

    def startProtocol(self):
        self.transport.write(b"hello from twisted", self.peer)

    def datagramReceived(self, data, addr):
        if data == b"quit":
            self.status = 0
            reactor.stop()
            return
        self.transport.write(b"echo:" + data, addr)


def main():
    host, peer_port = sys.argv[1], int(sys.argv[2])
    proto = Echo((host, peer_port))
    port = reactor.listenUDP(0, proto, interface=host, maxPacketSize=65535)
    print("PORT %d" % port.getHost().port, flush=True)
    reactor.callLater(20, reactor.stop)
    reactor.run()
    sys.exit(proto.status)


if __name__ == "__main__":
    main()
