"""Twisted's own echo client (EchoClient and a ClientFactory that stops the
reactor when the connection is lost or fails) for twirl's interop tests
(tests/interop/test_seeds_twisted.c).

Usage: twisted_echo_client.py HOST PORT MESSAGE [REPEAT]

Sends MESSAGE repeated REPEAT times (default 1) and a newline, never
half-closing, and reads until as many bytes came back. Prints
"Server said: <line>" (or "Server said: <n> bytes" for lines over 80
bytes), then "Connection lost - goodbye!". Exit status 0 if the echo was
exact, 1 if not or if the connection failed, 2 after 20 seconds."""

import sys

from twisted.internet import protocol, reactor


class EchoClient(protocol.Protocol):
    def connectionMade(self):
        self.received = b""
        self.transport.write(self.factory.line)

    def dataReceived(self, data):
        self.received += data
        if len(self.received) >= len(self.factory.line):
            self.factory.echoed = self.received
            line = self.received.rstrip(b"\n")
            if len(line) <= 80:
                print("Server said:", line.decode())
            else:
                print("Server said: %d bytes" % len(line))
            self.transport.loseConnection()


class EchoFactory(protocol.ClientFactory):
    protocol = EchoClient

    def __init__(self, line):
        self.line = line
        self.echoed = None
        self.status = 1

    def clientConnectionFailed(self, connector, reason):
        print("Connection failed - goodbye!", reason.getErrorMessage())
        reactor.stop()

    def clientConnectionLost(self, connector, reason):
        print("Connection lost - goodbye!")
        if self.echoed == self.line:
            self.status = 0
        reactor.stop()


def main():
    host, port, message = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    repeat = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    factory = EchoFactory((message * repeat + "\n").encode())

    def give_up():
        factory.status = 2
        reactor.stop()

    reactor.connectTCP(host, port, factory)
    reactor.callLater(20, give_up)
    reactor.run()
    sys.exit(factory.status)


if __name__ == "__main__":
    main()
