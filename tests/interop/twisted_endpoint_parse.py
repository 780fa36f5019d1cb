"""Tokenizes endpoint descriptions with Twisted's own parser, for twirl's
grammar test (tests/net/test_endpoint.c).

Reads one description per line on stdin and prints, per line,
"type|positional...|key=value..." (keywords in Python dict order). Exits 3
when Twisted cannot be imported."""

import sys

try:
    from twisted.internet.endpoints import _parse
except ImportError:
    sys.exit(3)

for line in sys.stdin:
    args, kw = _parse(line.rstrip("\n"))
    fields = list(args) + ["%s=%s" % (k, v) for k, v in kw.items()]
    print("|".join(fields))
