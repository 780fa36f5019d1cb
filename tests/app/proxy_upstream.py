"""A deliberately misbehaving HTTP upstream for test_twirl_web_proxy.c.

Usage: proxy_upstream.py
Listens on 127.0.0.1, port 0, prints "PORT <n>" and answers each request
by its path until killed (or until its parent's stdin-less life ends):

  /clte      200 with both Content-Length and Transfer-Encoding
  /bighead   200 with a 100 KiB header field
  /close     closes the connection without answering
  /slow      reads the request and never answers
  /trickle   200, chunked, one piece now and the next after 0.5 s
  anything else: 200 "ok <path>" with the request's header section echoed
"""
import socket
import sys
import threading
import time


def read_head(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
        if len(data) > 1 << 20:
            return None
    return data.split(b"\r\n\r\n", 1)[0]


def serve(conn):
    try:
        conn.settimeout(30)
        head = read_head(conn)
        if head is None:
            return
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        path = line.split(" ")[1] if line.count(" ") >= 2 else "/"
        if path.endswith("/clte"):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        elif path.endswith("/bighead"):
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (100 * 1024) +
                         b"\r\nContent-Length: 0\r\n\r\n")
        elif path.endswith("/close"):
            pass
        elif path.endswith("/slow"):
            while conn.recv(65536):
                pass
        elif path.endswith("/trickle"):
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"6\r\nfirst \r\n")
            time.sleep(0.5)
            conn.sendall(b"6\r\nsecond\r\n0\r\n\r\n")
        else:
            body = b"ok " + path.encode() + b"\n" + head + b"\n"
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n"
                         b"Connection: close\r\n\r\n" % len(body) + body)
    except OSError:
        pass
    finally:
        conn.close()


def main():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    print("PORT %d" % srv.getsockname()[1], flush=True)
    deadline = time.time() + 300  # never outlive a test run
    srv.settimeout(1)
    while time.time() < deadline:
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            continue
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
