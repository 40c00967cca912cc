#!/usr/bin/env python3
"""The HTTP/1.1 front end end to end (prpc_server_opts.http_json).

    http_e2e.py CASE --bin-dir BUILD --curl CURL [--valgrind VALGRIND]

Each case starts its servers itself on unix sockets in a fresh temporary
directory, waits for their "ready" line, and talks to them with the real
curl binary (curl --unix-socket) and with Python's http.client over
AF_UNIX. Exit 0: passed; 77: skipped (no curl, or not root for the cases
that need another uid); anything else: failed.
"""
import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

NOBODY = 65534
ARGS = None


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


def eq(got, want, what):
    if got != want:
        raise Fail("%s: got %r, want %r" % (what, got, want))


class Server:
    """A server program on a unix socket in a temporary directory."""

    def __init__(self, prog, *args, sock="s.sock", ready="ready",
                 mode=None):
        self.dir = tempfile.mkdtemp(prefix="prpc-http-")
        if mode is not None:
            os.chmod(self.dir, mode)
        self.path = os.path.join(self.dir, sock)
        cmd = [os.path.join(ARGS.bin_dir, prog), "--listen",
               "unix:" + self.path] + list(args)
        if ARGS.valgrind:
            cmd = [ARGS.valgrind, "-q", "--leak-check=full",
                   "--show-leak-kinds=definite",
                   "--errors-for-leak-kinds=definite",
                   "--error-exitcode=99"] + cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        deadline = time.time() + (60 if ARGS.valgrind else 10)
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise Fail("%s exited: %s" % (prog, self.proc.stderr.read()))
            if line.strip().endswith(ready):
                break
            if time.time() > deadline:
                raise Fail("%s is not ready" % prog)

    def stop(self):
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.proc.returncode == 99:
            raise Fail("valgrind: %s" % err)
        # A sanitizer build (ASan, UBSan, TSan) reports on stderr.
        for mark in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "runtime error:", "WARNING: ThreadSanitizer"):
            if mark in err:
                raise Fail("sanitizer: %s" % err)
        return err

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        err = self.stop()
        if exc[0] is not None and err:
            sys.stderr.write(err)


def as_user(uid):
    def become():
        os.setgid(uid)
        os.setuid(uid)
    return become


def curl(path, url, data=None, headers=(), uid=None, extra=()):
    """curl --unix-socket: (status, headers dict, body bytes)."""
    cmd = [ARGS.curl, "-sS", "--unix-socket", path, "-D", "-",
           "--max-time", "20"]
    for h in headers:
        cmd += ["-H", h]
    if data is not None:
        cmd += ["--data-binary", "@-"]
    cmd += list(extra) + ["http://localhost" + url]
    p = subprocess.run(cmd, input=data, capture_output=True, timeout=30,
                       preexec_fn=as_user(uid) if uid is not None else None)
    check(p.returncode == 0, "curl failed: %s" % p.stderr.decode())
    head, _, body = p.stdout.partition(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 100"):
        head, _, body = body.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, body


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over AF_UNIX; counts its connects."""

    def __init__(self, path, timeout=20):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path
        self.connects = 0

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s
        self.connects += 1


def post(conn, url, body, headers=None):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    conn.request("POST", url, body=body, headers=h)
    r = conn.getresponse()
    return r.status, r.read()


def status_body(code, name, message):
    return (json.dumps({"code": code, "status": name, "message": message},
                       separators=(",", ":")) + "\n").encode()


# ---- cases ----

def case_curl_greeter():
    with Server("greeter_server") as s:
        st, h, body = curl(s.path, "/helloworld.Greeter/SayHello",
                           b'{"name":"x"}')
        eq(st, 200, "status")
        eq(h.get("content-type"), "application/json", "content type")
        eq(body, b'{"message":"Hello x"}\n', "body")
        # An empty body is the empty message.
        st, _, body = curl(s.path, "/helloworld.Greeter/SayHello", b"")
        eq((st, body), (200, b'{"message":"Hello "}\n'), "empty body")
        # Unicode and escapes survive both ways.
        st, _, body = curl(s.path, "/helloworld.Greeter/SayHello",
                           '{"name":"é\\n\\"q"}'.encode())
        eq(body, '{"message":"Hello é\\n\\"q"}\n'.encode(), "escapes")
        # The health service, a well-known enum in the reply.
        st, _, body = curl(s.path, "/grpc.health.v1.Health/Check", b"{}")
        eq((st, body), (200, b'{"status":"SERVING"}\n'), "health")


def case_curl_interop():
    with Server("interop_server") as s:
        p = "/grpc.testing.TestService/"
        st, _, body = curl(s.path, p + "EmptyCall", b"{}")
        eq((st, body), (200, b"{}\n"), "EmptyCall")
        st, _, body = curl(s.path, p + "UnaryCall",
                           b'{"responseSize":3,"payload":{"body":"AQID"}}')
        eq((st, body), (200, b'{"payload":{"body":"AAAA"}}\n'), "UnaryCall")
        st, h, body = curl(s.path, p + "StreamingOutputCall",
                           b'{"responseParameters":[{"size":1},{"size":2},'
                           b'{"size":4,"intervalUs":20000}]}')
        eq(st, 200, "streaming status")
        eq(h.get("content-type"), "application/x-ndjson", "ndjson")
        eq(h.get("transfer-encoding"), "chunked", "chunked")
        eq(body, b'{"payload":{"body":"AA=="}}\n{"payload":{"body":"AAA="}}\n'
           b'{"payload":{"body":"AAAAAA=="}}\n', "streaming body")
        # Metadata the handler sends back: a unary call's trailers and a
        # stream's headers become response headers, -bin values in base64
        # both ways (the interop server echoes these two keys).
        st, h, body = curl(s.path, p + "UnaryCall", b"{}",
                           headers=["x-grpc-test-echo-initial: one",
                                    "x-grpc-test-echo-trailing-bin: AAEC/w=="])
        eq(st, 200, "unary with metadata")
        eq(h.get("x-grpc-test-echo-initial"), "one", "unary header")
        eq(h.get("x-grpc-test-echo-trailing-bin"), "AAEC/w==",
           "unary -bin trailer")
        st, h, body = curl(s.path, p + "StreamingOutputCall",
                           b'{"responseParameters":[{"size":1}]}',
                           headers=["x-grpc-test-echo-initial: two"])
        eq((st, h.get("x-grpc-test-echo-initial")), (200, "two"),
           "stream header")
        # Client streaming: newline-delimited JSON, sent chunked.
        st, _, body = curl(s.path, p + "StreamingInputCall",
                           b'{"payload":{"body":"AAAA"}}\n'
                           b'{"payload":{"body":"AAAAAA=="}}\n\n'
                           b'{"payload":{}}\n',
                           headers=["Transfer-Encoding: chunked"])
        eq((st, body), (200, b'{"aggregatedPayloadSize":7}\n'),
           "client streaming")
        # ... and with a length.
        st, _, body = curl(s.path, p + "StreamingInputCall",
                           b'{"payload":{"body":"AAAA"}}')
        eq((st, body), (200, b'{"aggregatedPayloadSize":3}\n'),
           "client streaming, one message")
        # A stream that fails before its first message gets its status.
        st, _, body = curl(s.path, p + "StreamingOutputCall",
                           b'{"responseStatus":{"code":9,"message":"x"}}')
        eq((st, body), (400, status_body(9, "FAILED_PRECONDITION", "x")),
           "streaming error")
        # After its first message: the last line says how it ended.
        st, _, body = curl(s.path, p + "StreamingOutputCall",
                           b'{"responseParameters":[{"size":1}],'
                           b'"responseStatus":{"code":10,"message":"y"}}')
        eq(st, 200, "late error status")
        eq(body, b'{"payload":{"body":"AA=="}}\n{"error":{"code":10,'
           b'"status":"ABORTED","message":"y"}}\n', "late error body")
        # Bidi cannot be carried.
        st, _, body = curl(s.path, p + "FullDuplexCall", b"{}")
        eq(st, 501, "bidi")
        check(b"bidirectional" in body, "bidi message: %r" % body)


def case_curl_bench():
    with Server("bench/bench_server") as s:
        st, _, body = curl(s.path, "/bench.Echo/Unary", b'{"data":"aGVsbG8="}')
        eq((st, body), (200, b'{"data":"aGVsbG8="}\n'), "Unary")
        st, _, body = curl(s.path, "/bench.Echo/ServerStream",
                           b'{"count":3,"size":2}')
        eq((st, body), (200, b'{"data":"eHg="}\n' * 3), "ServerStream")
        st, _, body = curl(s.path, "/bench.Echo/ServerStream",
                           b'{"count":0}')
        eq((st, body), (200, b""), "empty stream")
        lines = b"".join(b'{"data":"AAAA"}\n' for _ in range(100))
        st, _, body = curl(s.path, "/bench.Echo/ClientStream", lines,
                           headers=["Transfer-Encoding: chunked"])
        eq((st, body), (200, b'{"data":"MzAw"}\n'), "ClientStream")  # "300"
        # A big stream, read as it comes.
        st, _, body = curl(s.path, "/bench.Echo/ServerStream",
                           b'{"count":2000,"size":100}')
        eq(st, 200, "big stream")
        eq(len(body.splitlines()), 2000, "big stream lines")


def case_error_mapping():
    want = {1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429,
            9: 400, 10: 409, 11: 400, 12: 501, 13: 500, 14: 503, 15: 500,
            16: 401}
    names = ["OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT",
             "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
             "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
             "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
             "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"]
    with Server("interop_server") as s:
        conn = UnixHTTPConnection(s.path)
        for code, http_st in sorted(want.items()):
            req = json.dumps({"responseStatus": {"code": code,
                                                 "message": "m%d" % code}})
            st, body = post(conn, "/grpc.testing.TestService/UnaryCall", req)
            eq(st, http_st, "HTTP status of %s" % names[code])
            eq(body, status_body(code, names[code], "m%d" % code),
               "body of %s" % names[code])
        # The same over curl, for one.
        st, _, body = curl(s.path, "/grpc.testing.TestService/UnaryCall",
                           b'{"responseStatus":{"code":16,"message":"who"}}')
        eq((st, body), (401, status_body(16, "UNAUTHENTICATED", "who")),
           "curl 401")
        eq(conn.connects, 1, "connections")


def case_bad_requests():
    with Server("interop_server") as s:
        p = "/grpc.testing.TestService/UnaryCall"
        st, _, body = curl(s.path, p, b'{"responseSize":')
        eq(st, 400, "truncated JSON")
        check(json.loads(body)["message"].startswith("bad JSON: "),
              "truncated JSON message: %r" % body)
        st, _, body = curl(s.path, p, b'{"responseSize":"x"}')
        eq((st, body), (400, status_body(3, "INVALID_ARGUMENT",
                                         'field "response_size": "x" is not '
                                         'an integer of type int32')),
           "wrong type names the field")
        st, _, body = curl(s.path, p, b'{"payload":{"body":5}}')
        eq(st, 400, "nested wrong type")
        check(b'field \\"payload.body\\"' in body, "nested path: %r" % body)
        st, _, body = curl(s.path, p, b'{"noSuchField":1}')
        eq(st, 400, "unknown field")
        check(b"noSuchField" in body, "unknown field named: %r" % body)
        st, _, body = curl(s.path, "/grpc.testing.StreamingInputCall", b"{}")
        eq(st, 404, "not a method path")
        st, _, body = curl(s.path, "/grpc.testing.TestService/NoSuch", b"{}")
        eq((st, body), (501, status_body(12, "UNIMPLEMENTED",
                                         "unknown method")), "unknown method")
        st, h, body = curl(s.path, p)
        eq((st, h.get("allow")), (405, "POST"), "GET on a method")
        # A bad message in a client stream names the message and field.
        st, _, body = curl(s.path, "/grpc.testing.TestService/"
                           "StreamingInputCall",
                           b'{"payload":{}}\n{"payload":{"body":1}}\n',
                           headers=["Transfer-Encoding: chunked"])
        eq(st, 400, "bad stream message")
        check(json.loads(body)["message"].startswith(
            'request 2: field "payload.body"'), "stream message: %r" % body)


def case_listing():
    with Server("greeter_server") as s:
        st, h, body = curl(s.path, "/")
        eq((st, h.get("content-type")), (200, "application/json"), "GET /")
        doc = json.loads(body)
        svcs = {x["name"]: x for x in doc["services"]}
        check("helloworld.Greeter" in svcs, "services: %r" % list(svcs))
        eq(svcs["helloworld.Greeter"]["methods"],
           [{"name": "SayHello", "path": "/helloworld.Greeter/SayHello",
             "kind": "unary", "input": "helloworld.HelloRequest",
             "output": "helloworld.HelloReply", "json": True}], "Greeter")
        refl = svcs["grpc.reflection.v1.ServerReflection"]["methods"][0]
        eq((refl["kind"], refl["json"]), ("bidi_streaming", False),
           "reflection")


def case_metadata_deadline():
    with Server("tests/http/http_server") as s:
        p = "/helloworld.Greeter/SayHello"
        st, h, body = curl(s.path, p, b'{"name":"meta"}',
                           headers=["X-Echo: hi there"])
        eq((st, body), (200, b'{"message":"x-echo=hi there"}\n'), "meta")
        eq(h.get("x-echo"), "hi there", "header from metadata")
        eq(h.get("x-echo-trailer"), "hi there", "header from trailer")
        st, _, body = curl(s.path, p, b'{"name":"deadline"}')
        eq(body, b'{"message":"deadline none"}\n', "no deadline")
        st, _, body = curl(s.path, p, b'{"name":"deadline"}',
                           headers=["x-deadline-ms: 5000"])
        eq(body, b'{"message":"deadline set"}\n', "x-deadline-ms")
        st, _, body = curl(s.path, p, b'{"name":"deadline"}',
                           headers=["grpc-timeout: 5S"])
        eq(body, b'{"message":"deadline set"}\n', "grpc-timeout")
        t = time.time()
        st, _, body = curl(s.path, p, b'{"name":"sleep"}',
                           headers=["x-deadline-ms: 300"])
        eq((st, body[:40]), (504, body[:40]), "deadline passed")
        eq(json.loads(body)["status"], "DEADLINE_EXCEEDED", "504 body")
        check(time.time() - t < 5, "the deadline was kept")
        st, _, body = curl(s.path, p, b'{"name":"sleep"}',
                           headers=["grpc-timeout: 200m"])
        eq(st, 504, "grpc-timeout passed")
        st, _, body = curl(s.path, p, b'{"name":"x"}',
                           headers=["x-deadline-ms: soon"])
        eq(st, 400, "malformed deadline")
        st, _, body = curl(s.path, p, b'{"name":"fail"}')
        eq((st, body), (409, status_body(6, "ALREADY_EXISTS", "exists")),
           "handler's status")


def case_python_keepalive():
    with Server("greeter_server") as s:
        conn = UnixHTTPConnection(s.path)
        n = 50 if ARGS.valgrind else 1000
        for i in range(n):
            st, body = post(conn, "/helloworld.Greeter/SayHello",
                            '{"name":"n%d"}' % i)
            eq((st, body), (200, ('{"message":"Hello n%d"}\n' % i).encode()),
               "request %d" % i)
        eq(conn.connects, 1, "one connection for all")
        # Answers known from the headers alone keep the connection too.
        for _ in range(3):
            conn.request("GET", "/")
            r = conn.getresponse()
            eq(r.status, 200, "GET / on the same connection")
            r.read()
            st, _ = post(conn, "/helloworld.Greeter/NoSuch", "{}")
            eq(st, 501, "unknown method")
            st, _ = post(conn, "/nowhere", "{}")
            eq(st, 404, "unknown path")
            conn.request("GET", "/helloworld.Greeter/SayHello")
            r = conn.getresponse()
            eq(r.status, 405, "GET on a method")
            r.read()
            st, body = post(conn, "/helloworld.Greeter/SayHello", "{}")
            eq((st, body), (200, b'{"message":"Hello "}\n'), "and again")
        eq(conn.connects, 1, "still one connection")
        conn.close()


def read_response(f):
    line = f.readline()
    status = int(line.split()[1])
    length = None
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        k, _, v = line.decode().partition(":")
        if k.strip().lower() == "content-length":
            length = int(v)
    return status, f.read(length)


def case_pipelining():
    with Server("greeter_server") as s:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(20)
        sock.connect(s.path)
        reqs = b""
        for i in range(20):
            body = ('{"name":"p%d"}' % i).encode()
            reqs += (b"POST /helloworld.Greeter/SayHello HTTP/1.1\r\n"
                     b"Host: x\r\nContent-Length: %d\r\n\r\n" % len(body) +
                     body)
        sock.sendall(reqs)
        f = sock.makefile("rb")
        for i in range(20):
            st, body = read_response(f)
            eq((st, body), (200, ('{"message":"Hello p%d"}\n' % i).encode()),
               "pipelined %d" % i)
        sock.close()


def need_root():
    if os.geteuid() != 0:
        print("skipped: needs root to run a peer as another uid")
        sys.exit(77)


def case_denied_uid():
    need_root()
    with Server("tests/http/http_server", "--allow", "root",
                "--socket-mode", "0666", mode=0o755) as s:
        p = "/helloworld.Greeter/SayHello"
        for _ in range(3):
            st, h, body = curl(s.path, p, b'{"name":"x"}', uid=NOBODY)
            eq(st, 403, "denied status")
            eq(body, status_body(7, "PERMISSION_DENIED",
                                 "permission denied: the server's access "
                                 "rules do not admit this user"),
               "denied body")
            eq(h.get("connection"), "close", "closed after")
        st, _, body = curl(s.path, "/", uid=NOBODY)
        eq(st, 403, "denied listing")
        # No handler ran for the denied peer.
        st, _, body = curl(s.path, p, b'{"name":"count"}')
        eq((st, body), (200, b'{"message":"calls 0"}\n'), "no call ran")
        # gRPC from the same uid is denied as well.
        p2 = subprocess.run([os.path.join(ARGS.bin_dir, "greeter_client"),
                             "--target", "unix:" + s.path],
                            capture_output=True, text=True, timeout=30,
                            preexec_fn=as_user(NOBODY))
        check(p2.returncode != 0, "gRPC as nobody was served")


def case_peer_cred():
    need_root()
    with Server("tests/http/http_server", "--allow", "any",
                "--socket-mode", "0666", mode=0o755) as s:
        p = "/helloworld.Greeter/SayHello"
        st, _, body = curl(s.path, p, b'{"name":"uid"}', uid=NOBODY)
        eq((st, body), (200, b'{"message":"uid %d"}\n' % NOBODY), "nobody")
        st, _, body = curl(s.path, p, b'{"name":"uid"}')
        eq((st, body), (200, b'{"message":"uid 0"}\n'), "root")


def case_oversize():
    with Server("tests/http/http_server", "--max-recv-bytes", "1000") as s:
        p = "/helloworld.Greeter/SayHello"
        ok = ('{"name":"%s"}' % ("a" * 900)).encode()
        st, _, body = curl(s.path, p, ok)
        eq(st, 200, "under the limit")
        big = ('{"name":"%s"}' % ("a" * 5000)).encode()
        want = status_body(8, "RESOURCE_EXHAUSTED",
                           "the request body is larger than 1000 bytes")
        st, h, body = curl(s.path, p, big)
        eq((st, body), (413, want), "with a length")
        st, _, body = curl(s.path, p, big,
                           headers=["Transfer-Encoding: chunked"])
        eq((st, body), (413, want), "chunked")
        # A body over the limit is read and dropped: the connection goes on.
        conn = UnixHTTPConnection(s.path)
        for _ in range(3):
            st, body = post(conn, p, big)
            eq((st, body), (413, want), "http.client 413")
            st, body = post(conn, p, ok)
            eq(st, 200, "after a 413")
        eq(conn.connects, 1, "one connection")
        # Far over it (more than the 16 MiB dropped at most): answered
        # without reading, and closed; curl waits for 100 Continue.
        huge = b'{"name":"' + b"a" * (17 << 20) + b'"}'
        st, h, body = curl(s.path, p, huge)
        eq((st, body, h.get("connection")), (413, want, "close"),
           "far too large")


def wait_closed(sock, limit):
    """Seconds until the server closes sock (reading what it sends)."""
    t = time.time()
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except socket.timeout:
        raise Fail("not closed within %.1f s" % limit)
    except ConnectionResetError:
        pass
    return time.time() - t


def case_silent_client():
    with Server("tests/http/http_server", "--handshake-timeout-ms",
                "1000") as s:
        # Says nothing: closed at the preface's bound.
        a = socket.socket(socket.AF_UNIX)
        a.connect(s.path)
        check(wait_closed(a, 5) < 4, "silent")
        # Half a request line: closed by the HTTP timeout.
        b = socket.socket(socket.AF_UNIX)
        b.connect(s.path)
        b.sendall(b"POST /helloworld.Greeter/SayHello HTTP/1.1\r\nHo")
        check(wait_closed(b, 6) < 5, "half a request")
        # Headers and part of a body.
        c = socket.socket(socket.AF_UNIX)
        c.connect(s.path)
        c.sendall(b"POST /helloworld.Greeter/SayHello HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: 100\r\n\r\n{\"na")
        check(wait_closed(c, 6) < 5, "half a body")
        # Idle after a request (keep-alive): closed too.
        conn = UnixHTTPConnection(s.path)
        eq(post(conn, "/helloworld.Greeter/SayHello", "{}")[0], 200, "call")
        check(wait_closed(conn.sock, 6) < 5, "idle keep-alive")


def case_slow_client():
    with Server("tests/http/http_server", "--handshake-timeout-ms",
                "1000") as s:
        # One byte every 200 ms: each is activity, but the request as a
        # whole must come within the bound.
        a = socket.socket(socket.AF_UNIX)
        a.connect(s.path)
        req = (b"POST /helloworld.Greeter/SayHello HTTP/1.1\r\nHost: x\r\n"
               b"X-Padding: " + b"p" * 200 + b"\r\n\r\n")
        t = time.time()
        closed = False
        for i in range(len(req)):
            try:
                a.sendall(req[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.2)
            if time.time() - t > 10:
                break
        check(closed or wait_closed(a, 1) >= 0, "the slow client was closed")
        check(time.time() - t < 8, "closed after %.1f s" % (time.time() - t))


def case_grpc_alongside():
    with Server("greeter_server") as s:
        errors = []

        def http_loop():
            try:
                conn = UnixHTTPConnection(s.path)
                for i in range(300):
                    st, body = post(conn, "/helloworld.Greeter/SayHello",
                                    '{"name":"h%d"}' % i)
                    if (st, body) != (200, ('{"message":"Hello h%d"}\n' %
                                            i).encode()):
                        errors.append((st, body))
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=http_loop) for _ in range(4)]
        for t in threads:
            t.start()
        for i in range(5):
            p = subprocess.run([os.path.join(ARGS.bin_dir, "greeter_client"),
                                "--target", "unix:" + s.path, "--name",
                                "g%d" % i, "--count", "100"],
                               capture_output=True, text=True, timeout=60)
            eq(p.returncode, 0, "gRPC client: %s" % p.stderr)
            check("Hello g%d" % i in p.stdout, "gRPC reply: %r" % p.stdout)
        for t in threads:
            t.join()
        eq(errors, [], "HTTP calls meanwhile")


def case_stats_connections():
    """prpc_server_get_stats() counts an HTTP connection once, not with
    the inner connection its calls go through."""
    with Server("tests/http/http_server") as s:
        p = "/helloworld.Greeter/SayHello"
        a = UnixHTTPConnection(s.path)
        for _ in range(2):
            st, body = post(a, p, b'{"name":"conns"}')
            eq((st, body), (200, b'{"message":"connections 1"}\n'), "one")
        b = UnixHTTPConnection(s.path)
        st, body = post(b, p, b'{"name":"conns"}')
        eq((st, body), (200, b'{"message":"connections 2"}\n'), "two")
        a.close()
        b.close()


GREET = "/helloworld.Greeter/SayHello"


def wait_active(s, n):
    """Waits until n calls run in the server besides the one that asks."""
    want = b'{"message":"active %d"}\n' % (n + 1)
    deadline = time.time() + 10
    while time.time() < deadline:
        if curl(s.path, GREET, b'{"name":"active"}')[2] == want:
            return
        time.sleep(0.02)
    raise Fail("%d calls never ran at once" % n)


def sigterm_during(s, name, conn=None):
    """Calls name in a thread; once the server runs it, SIGTERM. Returns
    (status, body) of that call, and when SIGTERM was sent."""
    out = {}

    def call():
        if conn:
            out["r"] = post(conn, GREET, b'{"name":"%s"}' % name)
        else:
            st, _, body = curl(s.path, GREET, b'{"name":"%s"}' % name)
            out["r"] = (st, body)
    t = threading.Thread(target=call)
    t.start()
    wait_active(s, 1)
    t0 = time.time()
    s.proc.terminate()
    t.join(30)
    return out.get("r"), t0


def send_request(s, name):
    """A socket on which SayHello(name) has been sent, with no answer read."""
    c = socket.socket(socket.AF_UNIX)
    c.connect(s.path)
    req = b'{"name":"%s"}' % name
    c.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
              b"%s" % (GREET.encode(), len(req), req))
    return c


def case_shutdown_drains():
    """SIGTERM while an HTTP call is in flight: the call completes within
    the grace period, as a gRPC one does, and the server exits 0."""
    s = Server("tests/http/http_server")
    try:
        r, t0 = sigterm_during(s, b"slow")
        eq(r, (200, b'{"message":"slow done"}\n'),
           "the call in flight at SIGTERM")
        rc = s.proc.wait(30)
        eq(rc, 0, "exit status")
        check(time.time() - t0 < 4.5, "exited within the grace period")
    finally:
        s.stop()


# Where a unary handler runs: on the HTTP connection's thread by default,
# on the server's own threads with --threads N (through the inner
# connection). Both must behave the same.
PATHS = (("connection thread", ()), ("server threads", ("--threads", "2")))


def case_deferred():
    """A deferred handler finished from another thread; the reply size
    limit; the gzip request left out of the headers."""
    p = "/helloworld.Greeter/SayHello"
    for where, extra in PATHS:
        with Server("tests/http/http_server", "--max-send-bytes", "3000",
                    *extra) as s:
            st, _, body = curl(s.path, p, b'{"name":"later"}')
            eq((st, body), (200, b'{"message":"later done"}\n'),
               "deferred, " + where)
            st, _, body = curl(s.path, p, b'{"name":"big"}')
            eq((st, json.loads(body)["status"]), (429, "RESOURCE_EXHAUSTED"),
               "reply over max_send_bytes, " + where)
            st, h, body = curl(s.path, p, b'{"name":"gzip"}')
            eq((st, body), (200, b'{"message":"Hello gzip"}\n'),
               "gzip, " + where)
            check(not any(k.startswith("grpc-") for k in h),
                  "no grpc- header (%s): %s" % (where, h))
            st, _, body = curl(s.path, p, b'{"name":"x"}')
            eq((st, body), (200, b'{"message":"Hello x"}\n'),
               "served on, " + where)


def case_deferred_cancel():
    """A deferred call is told of its end: its deadline (504, on_cancel,
    on_done with cancelled 1), and the client's hang-up."""
    p = "/helloworld.Greeter/SayHello"
    for where, extra in PATHS:
        with Server("tests/http/http_server", *extra) as s:
            t = time.time()
            st, _, body = curl(s.path, p, b'{"name":"hold"}',
                               headers=["x-deadline-ms: 300"])
            eq((st, body),
               (504, status_body(4, "DEADLINE_EXCEEDED", "Deadline Exceeded")),
               "deadline, " + where)
            check(time.time() - t < 3, "answered at the deadline")
            st, _, body = curl(s.path, p, b'{"name":"events 1"}')
            eq(body, b'{"message":"cancel 1 done 1 cancelled 1"}\n',
               "callbacks after the deadline, " + where)
            c = send_request(s, b"hold")
            wait_active(s, 1)
            t = time.time()
            c.close()
            st, _, body = curl(s.path, p, b'{"name":"events 2"}')
            eq(body, b'{"message":"cancel 2 done 2 cancelled 2"}\n',
               "callbacks after the hang-up, " + where)
            check(time.time() - t < 2, "told of the hang-up at once")
            # Callbacks set only once the client has gone: on_cancel is
            # told, and the call ends by itself (on_done, cancelled).
            c = send_request(s, b"late")
            wait_active(s, 1)
            c.close()
            st, _, body = curl(s.path, p, b'{"name":"events 3"}')
            eq(body, b'{"message":"cancel 3 done 3 cancelled 3"}\n',
               "callbacks set after the hang-up, " + where)
            # A client that only shuts down its sending side still reads
            # its answer: the call is not cancelled.
            c = send_request(s, b"slow")
            c.shutdown(socket.SHUT_WR)
            c.settimeout(20)
            f = c.makefile("rb")
            st, body = read_response(f)
            eq((st, body), (200, b'{"message":"slow done"}\n'),
               "half-closed client, " + where)
            c.close()


def case_local_limit():
    """With max_threads calls running on connection threads, the next one
    is served (by the server's threads) instead of waiting or failing."""
    with Server("tests/http/http_server", "--max-threads", "1") as s:
        held = send_request(s, b"hold")
        wait_active(s, 1)
        st, _, body = curl(s.path, GREET, b'{"name":"x"}',
                           headers=["x-deadline-ms: 5000"])
        eq((st, body), (200, b'{"message":"Hello x"}\n'), "beside a held call")
        held.close()
        st, _, body = curl(s.path, GREET, b'{"name":"events 1"}')
        eq(body, b'{"message":"cancel 1 done 1 cancelled 1"}\n',
           "the held call ended with its client")


def case_shutdown_held():
    """SIGTERM with a deferred call held: on_shutdown ends it with its own
    status; a handler that ignores the shutdown is ended after the grace
    period with 503; the server exits 0 either way."""
    p = "/helloworld.Greeter/SayHello"
    for where, extra in PATHS:
        for name, want in (
                (b"hold", status_body(14, "UNAVAILABLE",
                                      "held: shutting down")),
                (b"sleep", status_body(14, "UNAVAILABLE",
                                       "the server is shutting down"))):
            s = Server("tests/http/http_server", "--grace-ms", "300", *extra)
            try:
                r, t0 = sigterm_during(s, name, UnixHTTPConnection(s.path))
                if extra and name == b"sleep":
                    # The inner connection closes with the server: the
                    # status is UNAVAILABLE, its message gRPC core's.
                    r = (r[0], json.loads(r[1])["code"]) if r else r
                    want = 14
                eq(r, (503, want), "%s at SIGTERM, %s" %
                   (name.decode(), where))
                eq(s.proc.wait(30), 0, "exit status")
                check(time.time() - t0 < 4, "exited soon after the grace")
            finally:
                s.stop()


def case_connection_limit():
    with Server("tests/http/http_server", "--max-connections", "2") as s:
        conns = [UnixHTTPConnection(s.path) for _ in range(2)]
        for c in conns:
            eq(post(c, "/helloworld.Greeter/SayHello", "{}")[0], 200, "held")
        extra = socket.socket(socket.AF_UNIX)
        extra.connect(s.path)
        check(wait_closed(extra, 5) < 2, "the third was refused")
        conns[0].close()
        time.sleep(0.1)  # let the server see the close (found lazily)
        c = UnixHTTPConnection(s.path)
        eq(post(c, "/helloworld.Greeter/SayHello", "{}")[0], 200,
           "a slot again")


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--curl", default="curl")
    ap.add_argument("--valgrind")
    ARGS = ap.parse_args()
    if not ARGS.curl or not shutil.which(ARGS.curl):
        print("skipped: no curl")
        return 77
    fn = globals().get("case_" + ARGS.case)
    if not fn:
        print("no such case: " + ARGS.case)
        return 2
    try:
        fn()
    except Fail as e:
        print("FAIL %s: %s" % (ARGS.case, e))
        return 1
    print("ok " + ARGS.case)
    return 0


if __name__ == "__main__":
    sys.exit(main())
