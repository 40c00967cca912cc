#!/usr/bin/python3
"""prpc end to end: the command-line client against the real demo servers
(greeter_server, bench_server, interop_server, and health_server from
tests/cli) started over unix sockets in a fresh temporary directory (TLS on
127.0.0.1 port 0, and an inherited socketpair for fd:N). Checks stdout
byte for byte, stderr messages and exit codes.

    cli_e2e.py CASE --bin-dir DIR --src-dir DIR [--tls-dir DIR]
"""
import argparse
import base64
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time

A = None
TMP = None
WRAPPER = []  # e.g. valgrind and its options, before every prpc


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def binary(name):
    for sub in ("", "cli", "bench", "tests/cli"):
        p = os.path.join(A.bin_dir, sub, name)
        if os.path.exists(p):
            return p
    fail("no binary " + name)


class Server:
    """A server process; started() returns once it printed "ready"."""

    def __init__(self, name, args, pass_fds=(), ready="ready"):
        self.p = subprocess.Popen([binary(name)] + args, stdout=subprocess.PIPE,
                                  text=True, pass_fds=pass_fds)
        self.ports = []
        for line in self.p.stdout:
            m = re.search(r"\(port (\d+)\)", line)
            if m:
                self.ports.append(int(m.group(1)))
            if ready in line:
                break
        else:
            fail("%s exited before it was ready (%s)" % (name, self.p.wait()))

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        rc = self.p.wait(timeout=20)
        if rc != 0:
            fail("server exited with %d" % rc)


def unix_server(name, extra=()):
    sock = "unix:" + os.path.join(TMP, name + ".sock")
    return Server(name, ["--listen", sock] + list(extra)), sock


def prpc(*args, stdin=None, pass_fds=(), timeout=60):
    r = subprocess.run(WRAPPER + [binary("prpc")] + list(args), input=stdin,
                       capture_output=True, text=True, pass_fds=pass_fds,
                       timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def expect(res, rc, out=None, err=None, err_has=None):
    got_rc, got_out, got_err = res
    where = "rc=%d stdout=%r stderr=%r" % (got_rc, got_out, got_err)
    if got_rc != rc:
        fail("exit code %d, want %d: %s" % (got_rc, rc, where))
    if out is not None and got_out != out:
        fail("stdout %r, want %r" % (got_out, out))
    if err is not None and got_err != err:
        fail("stderr %r, want %r" % (got_err, err))
    for s in err_has or ():
        if s not in got_err:
            fail("stderr lacks %r: %s" % (s, where))


def proto_set(*protos):
    """A FileDescriptorSet made by protoc from the repository's protos."""
    out = os.path.join(TMP, "set-%d.pb" % len(os.listdir(TMP)))
    subprocess.run(["protoc", "-I" + os.path.join(A.src_dir, "proto"),
                    "--include_imports", "-o", out] +
                   [os.path.join(A.src_dir, "proto", p) for p in protos],
                   check=True)
    return out


def greeter_set():
    return proto_set("helloworld.proto", "grpc/health/v1/health.proto")


def interop_set():
    return proto_set("grpc/testing/test.proto")


# ---- cases ----

def case_greeter_call():
    s, t = unix_server("greeter_server")
    ps = greeter_set()
    try:
        expect(prpc("--proto-set", ps, "call", t, "helloworld.Greeter/SayHello",
                    '{"name":"world"}'), 0, '{"message":"Hello world"}\n', "")
        # From stdin, the method as a full path, the original field name.
        expect(prpc("call", "--proto-set", ps, t, "/helloworld.Greeter/SayHello",
                    stdin='  {"name": "st\\u00e9phane"}\n'),
               0, '{"message":"Hello st\u00e9phane"}\n', "")
        expect(prpc("--proto-set", ps, "call", t, "helloworld.Greeter.SayHello",
                    "-", stdin="{}"), 0, '{"message":"Hello "}\n', "")
        expect(prpc("-p", "--proto-set", ps, "call", t,
                    "helloworld.Greeter/SayHello", '{"name":"x"}'),
               0, '{\n  "message": "Hello x"\n}\n', "")
    finally:
        s.stop()


def case_greeter_describe():
    ps = greeter_set()
    t = "unix:" + os.path.join(TMP, "none.sock")  # descriptors only
    expect(prpc("--proto-set", ps, "list", t), 0,
           "helloworld.Greeter\ngrpc.health.v1.Health\n", "")
    expect(prpc("--proto-set", ps, "list", t, "grpc.health.v1.Health"), 0,
           "grpc.health.v1.Health.Check\ngrpc.health.v1.Health.Watch\n", "")
    expect(prpc("--proto-set", ps, "describe", t, "helloworld.Greeter"), 0,
           "service helloworld.Greeter {\n"
           "  rpc SayHello(helloworld.HelloRequest) returns "
           "(helloworld.HelloReply);\n}\n", "")
    expect(prpc("--proto-set", ps, "describe", t, "grpc.health.v1.Health.Watch"),
           0, "rpc Watch(grpc.health.v1.HealthCheckRequest) returns "
           "(stream grpc.health.v1.HealthCheckResponse);\n", "")
    expect(prpc("--proto-set", ps, "describe", t,
                "grpc.health.v1.HealthCheckResponse"), 0,
           "message grpc.health.v1.HealthCheckResponse {\n"
           "  grpc.health.v1.HealthCheckResponse.ServingStatus status = 1;\n"
           "  enum ServingStatus {\n"
           "    UNKNOWN = 0;\n    SERVING = 1;\n    NOT_SERVING = 2;\n"
           "    SERVICE_UNKNOWN = 3;\n  }\n}\n", "")
    ips = interop_set()
    expect(prpc("--proto-set", ips, "describe", t,
                "grpc.testing.StreamingOutputCallRequest"), 0,
           "message grpc.testing.StreamingOutputCallRequest {\n"
           "  grpc.testing.PayloadType response_type = 1;\n"
           "  repeated grpc.testing.ResponseParameters response_parameters = 2;\n"
           "  grpc.testing.Payload payload = 3;\n"
           "  grpc.testing.EchoStatus response_status = 7;\n}\n", "")
    expect(prpc("--proto-set", ps, "describe", t, "no.Such"), 3,
           err="prpc: 'no.Such' is not in the descriptors\n")
    # With --proto-set, no TARGET needed.
    expect(prpc("--proto-set", ps, "list"), 0,
           "helloworld.Greeter\ngrpc.health.v1.Health\n", "")
    expect(prpc("--proto-set", ps, "describe", "helloworld.HelloReply"), 0,
           "message helloworld.HelloReply {\n  string message = 1;\n}\n", "")
    expect(prpc("describe", "helloworld.HelloReply"), 1,
           err_has=["describe: wrong number of arguments"])


def case_interop_streaming():
    s, t = unix_server("interop_server")
    ps = interop_set()
    try:
        req = ('{"responseType":"COMPRESSABLE","response_parameters":'
               '[{"size":1},{"size":2},{"size":3}],"payload":{"body":"AAEC"}}')
        expect(prpc("--proto-set", ps, "call", t,
                    "grpc.testing.TestService/StreamingOutputCall", req), 0,
               '{"payload":{"body":"AA=="}}\n{"payload":{"body":"AAA="}}\n'
               '{"payload":{"body":"AAAA"}}\n', "")
        # Unary with nested messages, an enum and bytes both ways.
        expect(prpc("--proto-set", ps, "call", t, "grpc.testing.TestService/UnaryCall",
                    '{"responseSize":4,"payload":{"body":"/w=="}}'), 0,
               '{"payload":{"body":"AAAAAA=="}}\n', "")
        # Client streaming, one request per line on stdin.
        expect(prpc("--proto-set", ps, "call", t,
                    "grpc.testing.TestService/StreamingInputCall",
                    stdin='{"payload":{"body":"AAEC"}}\n'
                          '{"payload":{"body":"AAECAw=="}}\n'), 0,
               '{"aggregatedPayloadSize":7}\n', "")
        # Bidi: each request answered in order.
        expect(prpc("--proto-set", ps, "call", t,
                    "grpc.testing.TestService/FullDuplexCall",
                    stdin='{"responseParameters":[{"size":1}]}\n'
                          '{"responseParameters":[{"size":2}]}\n'), 0,
               '{"payload":{"body":"AA=="}}\n{"payload":{"body":"AAA="}}\n', "")
        # An empty message prints as {}.
        expect(prpc("--proto-set", ps, "call", t, "grpc.testing.TestService/EmptyCall",
                    "{}"), 0, "{}\n", "")
    finally:
        s.stop()


def case_echo():
    s, t = unix_server("bench_server")
    ps = proto_set("bench.proto")
    try:
        expect(prpc("--proto-set", ps, "call", t, "bench.Echo/Unary",
                    '{"data":"aGk="}'), 0, '{"data":"aGk="}\n', "")
        expect(prpc("--proto-set", ps, "call", t, "bench.Echo/ServerStream",
                    '{"count":2,"size":3}'), 0,
               '{"data":"eHh4"}\n{"data":"eHh4"}\n', "")
        # 2 + 5 bytes: the reply is "7" in ASCII.
        expect(prpc("--proto-set", ps, "call", t, "bench.Echo/ClientStream",
                    stdin='{"data":"aGk="}\n{"data":"aGVsbG8="}\n'), 0,
               '{"data":"%s"}\n' % base64.b64encode(b"7").decode(), "")
        expect(prpc("--proto-set", ps, "call", t, "bench.Echo/Bidi",
                    stdin='{"data":"YQ=="} {"data":"Yg=="}'), 0,
               '{"data":"YQ=="}\n{"data":"Yg=="}\n', "")
        # Interactive: each reply arrives before the next request is typed.
        p = subprocess.Popen([binary("prpc"), "--proto-set", ps, "call", t,
                              "bench.Echo/Bidi"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, bufsize=1)
        for word in ("b25l", "dHdv"):
            p.stdin.write('{"data":\n "%s"}\n' % word)  # split over lines
            p.stdin.flush()
            if not select.select([p.stdout], [], [], 10)[0]:
                p.kill()
                fail("no reply to %s while stdin stays open" % word)
            line = p.stdout.readline()
            if line != '{"data":"%s"}\n' % word:
                fail("bidi reply %r" % line)
        p.stdin.close()
        if p.wait(timeout=10) != 0 or p.stdout.read() or p.stderr.read():
            fail("interactive bidi ended with %d" % p.returncode)
        # Bad input midway: the call is cancelled (the first reply may or
        # may not have come back by then), exit 2 names the request.
        expect(prpc("--proto-set", ps, "call", t, "bench.Echo/Bidi",
                    stdin='{"data":"YQ=="}\n{"data":1}\n'), 2, None,
               'prpc: request 2: field "data": expected base64 bytes in a '
               'string, got a number\n')
        expect(prpc("--proto-set", ps, "call", t, "bench.Echo/ClientStream",
                    stdin='{"data":"YQ=="}\n{"data":'), 2, "",
               err_has=["prpc: request 2: bad JSON: "])
        # No request at all: a client stream of none.
        expect(prpc("--proto-set", ps, "call", t, "bench.Echo/ClientStream",
                    stdin=''), 0, '{"data":"MA=="}\n', "")
    finally:
        s.stop()


def case_errors():
    s, t = unix_server("interop_server")
    ps = interop_set()
    gps = greeter_set()
    try:
        # The server answers UNIMPLEMENTED: 10 + 12.
        expect(prpc("--proto-set", ps, "call", t,
                    "grpc.testing.TestService/UnimplementedCall", "{}"), 22,
               "", err_has=["prpc: UNIMPLEMENTED: "])
        expect(prpc("--proto-set", ps, "call", t,
                    "grpc.testing.UnimplementedService/UnimplementedCall", "{}"),
               22, "", err_has=["prpc: UNIMPLEMENTED: "])
        # A status the server was asked to send, with its message.
        expect(prpc("--proto-set", ps, "call", t, "grpc.testing.TestService/UnaryCall",
                    '{"responseStatus":{"code":3,"message":"no good"}}'), 13,
               "", "prpc: INVALID_ARGUMENT: no good\n")
        # Not in the descriptors: 3, before anything is sent.
        expect(prpc("--proto-set", ps, "call", t, "grpc.testing.TestService/Nope",
                    "{}"), 3, "",
               "prpc: service 'grpc.testing.TestService' has no method 'Nope'\n")
        # JSON that does not fit: 2, naming the field.
        expect(prpc("--proto-set", gps, "call", t, "helloworld.Greeter/SayHello",
                    '{"nme":"x"}'), 2, "",
               'prpc: field "nme": no such field in helloworld.HelloRequest\n')
        expect(prpc("--proto-set", gps, "call", t, "helloworld.Greeter/SayHello",
                    '{"name":5}'), 2, "",
               'prpc: field "name": expected a string, got a number\n')
        expect(prpc("--proto-set", ps, "call", t, "grpc.testing.TestService/UnaryCall",
                    '{"responseType":"FOO"}'), 2, "",
               'prpc: field "response_type": "FOO" is not a value of enum '
               'grpc.testing.PayloadType\n')
        expect(prpc("--proto-set", ps, "call", t,
                    "grpc.testing.TestService/StreamingOutputCall",
                    '{"responseParameters":[{"size":1},{"size":"big"}]}'), 2, "",
               'prpc: field "response_parameters[1].size": "big" is not an '
               'integer of type int32\n')
        expect(prpc("--proto-set", gps, "call", t, "helloworld.Greeter/SayHello",
                    '{"name":'), 2, "",
               err_has=["prpc: request 1: bad JSON: "])
        expect(prpc("--proto-set", gps, "call", t, "helloworld.Greeter/SayHello",
                    '{} {}'), 2, "", err_has=["more than one request"])
        # Usage errors: 1.
        expect(prpc(), 1, "", err_has=["prpc: no command", "usage:"])
        expect(prpc("call", t), 1, "", err_has=["wrong number of arguments"])
        expect(prpc("frob", t), 1, "", err_has=["unknown command 'frob'"])
        expect(prpc("health", "nope:x"), 1, "", err_has=["prpc: bad target"])
        expect(prpc("--deadline", "soon", "health", t), 1, "",
               err_has=["bad deadline 'soon'"])
        expect(prpc("-H", "nocolon", "health", t), 1, "",
               err_has=["bad header 'nocolon'"])
        expect(prpc("-H", "x-id-bin: !!", "health", t), 1, "",
               "prpc: bad header 'x-id-bin: !!': a -bin value must be "
               "base64\n")
        expect(prpc("-H", "x-id: caf\u00e9", "health", t), 1, "",
               "prpc: bad header 'x-id: caf\u00e9': keys are [0-9a-z_.-], "
               "values printable ASCII\n")
        expect(prpc("--proto-set", os.path.join(TMP, "missing.pb"), "list", t),
               1, "", err_has=["missing.pb: No such file or directory"])
    finally:
        s.stop()


def case_unreachable():
    t = "unix:" + os.path.join(TMP, "nobody-here.sock")
    ps = greeter_set()
    expect(prpc("--proto-set", ps, "call", t, "helloworld.Greeter/SayHello",
                "{}"), 24, "", err_has=["prpc: UNAVAILABLE: ", "nobody-here.sock"])
    expect(prpc("list", t), 24, "", err_has=["prpc: UNAVAILABLE: "])
    expect(prpc("health", t), 24, "", err_has=["prpc: UNAVAILABLE: "])


def case_metadata():
    s, t = unix_server("interop_server")
    ps = interop_set()
    try:
        expect(prpc("-v", "-H", "x-grpc-test-echo-initial: hello there",
                    "-H", "X-Grpc-Test-Echo-Trailing-Bin: AAEC/w==",
                    "--proto-set", ps, "call", t,
                    "grpc.testing.TestService/UnaryCall", "{}"), 0, "{}\n",
               err_has=["header x-grpc-test-echo-initial: hello there\n",
                        "trailer x-grpc-test-echo-trailing-bin: AAEC/w==\n"])
        # Without -v, nothing on stderr.
        expect(prpc("-H", "x-grpc-test-echo-initial: x", "--proto-set", ps,
                    "call", t, "grpc.testing.TestService/EmptyCall", "{}"), 0,
               "{}\n", "")
    finally:
        s.stop()


def case_deadline():
    s, t = unix_server("interop_server")
    ps = interop_set()
    try:
        slow = ('{"responseParameters":[{"size":1},'
                '{"size":1,"intervalUs":6000000}]}')
        start = time.monotonic()
        expect(prpc("--deadline", "300ms", "--proto-set", ps, "call", t,
                    "grpc.testing.TestService/StreamingOutputCall", slow), 14,
               '{"payload":{"body":"AA=="}}\n',
               err_has=["prpc: DEADLINE_EXCEEDED: "])
        took = time.monotonic() - start
        if took > 5:
            fail("the deadline took %.1f s" % took)
        expect(prpc("-d", "0.3", "--proto-set", ps, "call", t,
                    "grpc.testing.TestService/StreamingOutputCall", slow), 14,
               err_has=["prpc: DEADLINE_EXCEEDED: "])
        expect(prpc("--deadline", "10", "--proto-set", ps, "call", t,
                    "grpc.testing.TestService/EmptyCall", "{}"), 0, "{}\n", "")
    finally:
        s.stop()


def case_health():
    g, gt = unix_server("greeter_server")
    h = None
    try:
        expect(prpc("health", gt), 0, "SERVING\n", "")
        expect(prpc("health", gt, "helloworld.Greeter"), 0, "SERVING\n", "")
        expect(prpc("health", gt, "no.Such"), 15, "",
               "prpc: NOT_FOUND: unknown service\n")
        sock = "unix:" + os.path.join(TMP, "health.sock")
        h = Server("health_server", [sock])
        expect(prpc("health", sock, "helloworld.Greeter"), 4, "NOT_SERVING\n", "")
        expect(prpc("health", sock), 0, "SERVING\n", "")
    finally:
        g.stop()
        if h:
            h.stop()
    # --wait-for-ready: a probe started before its server waits for it.
    sock = "unix:" + os.path.join(TMP, "later.sock")
    probe = subprocess.Popen(WRAPPER + [binary("prpc"), "-w", "-d", "30",
                                        "health", sock],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    time.sleep(0.3)  # not a readiness wait: the probe must start first
    if probe.poll() is not None:
        fail("the probe did not wait: %s" % (probe.communicate(),))
    later = Server("greeter_server", ["--listen", sock])
    try:
        out, err = probe.communicate(timeout=30)
        if probe.returncode != 0 or out != "SERVING\n" or err:
            fail("waiting probe: %d %r %r" % (probe.returncode, out, err))
    finally:
        later.stop()
    # Without it, at once UNAVAILABLE.
    expect(prpc("health", sock), 24, "", err_has=["prpc: UNAVAILABLE: "])
    # A server without the health service.
    t = "unix:" + os.path.join(TMP, "chat.sock")
    s = Server("chat_server", [t], ready="serving on")
    try:
        expect(prpc("health", t), 22, "", err_has=["prpc: UNIMPLEMENTED: "])
    finally:
        s.stop()


def case_tls():
    d = A.tls_dir
    f = lambda n: os.path.join(d, n)
    s = Server("greeter_server", [
        "--tls-listen", "127.0.0.1:0", "--tls-cert", f("server.pem"),
        "--tls-key", f("server.key"), "--tls-ca", f("ca.pem"),
        "--tls-require-client-cert"])
    ps = greeter_set()
    t = "127.0.0.1:%d" % s.ports[0]
    try:
        mtls = ["--tls-ca", f("ca.pem"), "--tls-cert", f("client.pem"),
                "--tls-key", f("client.key")]
        expect(prpc(*mtls, "--proto-set", ps, "call", t,
                    "helloworld.Greeter/SayHello", '{"name":"tls"}'), 0,
               '{"message":"Hello tls"}\n', "")
        expect(prpc(*mtls, "--authority", "localhost", "health", t), 0,
               "SERVING\n", "")
        # No client certificate; a name the certificate does not carry;
        # an untrusted server: all UNAVAILABLE.
        expect(prpc("--tls-ca", f("ca.pem"), "health", t), 24,
               err_has=["prpc: UNAVAILABLE: "])
        expect(prpc(*mtls, "--authority", "example.org", "health", t), 24,
               err_has=["prpc: UNAVAILABLE: "])
        expect(prpc("--tls-ca", f("other-ca.pem"), "--tls-cert",
                    f("client.pem"), "--tls-key", f("client.key"), "health",
                    t), 24, err_has=["prpc: UNAVAILABLE: "])
    finally:
        s.stop()


def case_fd():
    """An inherited socketpair: the server gets one end as its listener
    (a connected socket), prpc the other as fd:N."""
    a, b = socket.socketpair()
    s = Server("greeter_server", ["--listen", "fd:%d" % b.fileno()],
               pass_fds=(b.fileno(),))
    b.close()
    ps = greeter_set()
    try:
        expect(prpc("--proto-set", ps, "call", "fd:%d" % a.fileno(),
                    "helloworld.Greeter/SayHello", '{"name":"pipe"}',
                    pass_fds=(a.fileno(),)), 0, '{"message":"Hello pipe"}\n', "")
    finally:
        a.close()
        s.stop()
    expect(prpc("health", "unix-abstract:prpc-cli-test-none-%d" % os.getpid()),
           24, err_has=["prpc: UNAVAILABLE: "])


def case_abstract():
    # Plain TCP first: 127.0.0.1, port 0.
    s = Server("greeter_server", ["--listen", "127.0.0.1:0"])
    try:
        t = "127.0.0.1:%d" % s.ports[0]
        expect(prpc("call", t, "helloworld.Greeter/SayHello",
                    '{"name":"tcp"}'), 0, '{"message":"Hello tcp"}\n', "")
        expect(prpc("health", "dns:///" + t), 0, "SERVING\n", "")
    finally:
        s.stop()
    name = "unix-abstract:prpc-cli-test-%d" % os.getpid()
    s = Server("greeter_server", ["--listen", name, "--allow", "same-user"])
    try:
        expect(prpc("--proto-set", greeter_set(), "call", name,
                    "helloworld.Greeter/SayHello", '{"name":"abstract"}'), 0,
               '{"message":"Hello abstract"}\n', "")
    finally:
        s.stop()


def case_reflection():
    """Descriptors from the servers' own reflection service: no --proto-set."""
    g, gt = unix_server("greeter_server")
    i, it = unix_server("interop_server")
    b, bt = unix_server("bench_server")
    try:
        res = prpc("list", gt)
        refl = ("grpc.health.v1.Health\ngrpc.reflection.v1.ServerReflection\n"
                "grpc.reflection.v1alpha.ServerReflection\n")
        expect(res, 0, refl + "helloworld.Greeter\n", "")
        expect(prpc("list", bt), 0, "bench.Echo\n" + refl, "")
        expect(prpc("list", it), 0, refl + "grpc.testing.TestService\n", "")
        expect(prpc("list", gt, "helloworld.Greeter"), 0,
               "helloworld.Greeter.SayHello\n", "")
        expect(prpc("list", bt, "bench.Echo"), 0,
               "bench.Echo.Unary\nbench.Echo.ServerStream\n"
               "bench.Echo.ClientStream\nbench.Echo.Bidi\n", "")
        expect(prpc("describe", bt, "bench.Echo"), 0,
               "service bench.Echo {\n"
               "  rpc Unary(bench.Payload) returns (bench.Payload);\n"
               "  rpc ServerStream(bench.StreamRequest) returns "
               "(stream bench.Payload);\n"
               "  rpc ClientStream(stream bench.Payload) returns "
               "(bench.Payload);\n"
               "  rpc Bidi(stream bench.Payload) returns "
               "(stream bench.Payload);\n}\n", "")
        expect(prpc("describe", gt, "helloworld.HelloRequest"), 0,
               "message helloworld.HelloRequest {\n  string name = 1;\n}\n", "")
        expect(prpc("describe", it, "grpc.testing.TestService/EmptyCall"), 0,
               "rpc EmptyCall(grpc.testing.Empty) returns "
               "(grpc.testing.Empty);\n", "")
        expect(prpc("describe", it, "grpc.testing.ResponseParameters"), 0,
               "message grpc.testing.ResponseParameters {\n"
               "  int32 size = 1;\n  int32 interval_us = 2;\n"
               "  grpc.testing.BoolValue compressed = 3;\n}\n", "")
        expect(prpc("call", gt, "helloworld.Greeter/SayHello",
                    '{"name":"reflection"}'), 0,
               '{"message":"Hello reflection"}\n', "")
        expect(prpc("call", it, "grpc.testing.TestService/StreamingOutputCall",
                    '{"responseParameters":[{"size":1},{"size":2}]}'), 0,
               '{"payload":{"body":"AA=="}}\n{"payload":{"body":"AAA="}}\n', "")
        expect(prpc("call", bt, "bench.Echo/ClientStream",
                    stdin='{"data":"aGk="}\n'), 0, '{"data":"Mg=="}\n', "")
        # Names the server does not know: 3, with the server's NOT_FOUND.
        expect(prpc("describe", gt, "no.Such"), 3, "",
               err_has=["prpc: NOT_FOUND: "])
        expect(prpc("call", gt, "no.Such/Method", "{}"), 3, "",
               err_has=["prpc: NOT_FOUND: "])
        expect(prpc("list", gt, "no.Such"), 3, "",
               err_has=["prpc: NOT_FOUND: "])
        expect(prpc("call", gt, "helloworld.Greeter/Nope", "{}"), 3, "",
               "prpc: service 'helloworld.Greeter' has no method 'Nope'\n")
    finally:
        for s in (g, i, b):
            s.stop()


def case_python_v1alpha():
    """A Python grpcio server with only grpc.reflection.v1alpha: prpc falls
    back from v1, and calls a server of another implementation."""
    t = "unix:" + os.path.join(TMP, "py.sock")
    script = os.path.join(A.src_dir, "tests", "cli", "py_v1alpha_server.py")
    p = subprocess.Popen([sys.executable, script, t, greeter_set()],
                         stdout=subprocess.PIPE, text=True)
    for line in p.stdout:
        if "ready" in line:
            break
    else:
        fail("the python server exited with %s" % p.wait())
    try:
        expect(prpc("list", t), 0,
               "grpc.health.v1.Health\nhelloworld.Greeter\n", "")
        expect(prpc("list", t, "helloworld.Greeter"), 0,
               "helloworld.Greeter.SayHello\n", "")
        expect(prpc("describe", t, "helloworld.HelloReply"), 0,
               "message helloworld.HelloReply {\n  string message = 1;\n}\n", "")
        expect(prpc("call", t, "helloworld.Greeter/SayHello", '{"name":"C"}'),
               0, '{"message":"Hello from python, C"}\n', "")
        expect(prpc("describe", t, "no.Such"), 3, "",
               "prpc: NOT_FOUND: symbol not found: no.Such\n")
        # Listed in the descriptors, but not served by this server.
        expect(prpc("health", t), 22, "", err_has=["prpc: UNIMPLEMENTED"])
    finally:
        p.send_signal(signal.SIGTERM)
        if p.wait(timeout=20) != 0:
            fail("the python server exited with %d" % p.returncode)


def case_hostile_reflection():
    """A reflection server that answers every file with one importing
    another, one whose descriptor nests 100,000 deep, and one that never
    answers: prpc stops at its limits with a clear error, never crashes,
    and puts a deadline on reflection even when the call has none."""
    script = os.path.join(A.src_dir, "tests", "cli",
                          "py_hostile_reflection.py")
    for mode, rc, err, most in (
            ("imports", 18, "prpc: RESOURCE_EXHAUSTED: the server's "
             "reflection took more than 1000 requests; giving up\n", 1001),
            ("deep", 23, "prpc: INTERNAL: the server sent a "
             "FileDescriptorProto that nests more than 100 messages deep\n",
             1),
            ("stall", 14, None, 1)):
        t = "unix:" + os.path.join(TMP, mode + ".sock")
        p = subprocess.Popen([sys.executable, script, t, mode],
                             stdout=subprocess.PIPE, text=True)
        for line in p.stdout:
            if "ready" in line:
                break
        else:
            fail("the python server exited with %s" % p.wait())
        try:
            t0 = time.time()
            got = prpc("call", t, "hostile.Svc/Method", "{}")
            took = time.time() - t0
            if mode == "stall":
                expect(got, rc, "", err_has=["prpc: DEADLINE_EXCEEDED"])
                if not 4.5 <= took <= 15:
                    fail("a stalled reflection took %.1f s, want ~5" % took)
            else:
                expect(got, rc, "", err)
        finally:
            p.send_signal(signal.SIGTERM)
            out = p.stdout.read()
            if p.wait(timeout=20) != 0:
                fail("the python server exited with %d" % p.returncode)
        n = int(re.search(r"requests (\d+)", out).group(1))
        print("%s: prpc exited %d after %.1f s and %d reflection requests"
              % (mode, got[0], took, n))
        if n > most:
            fail("%s: %d reflection requests, want at most %d"
                 % (mode, n, most))


def main():
    global A, TMP
    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--src-dir", required=True)
    ap.add_argument("--tls-dir")
    ap.add_argument("--prpc-wrapper", default="",
                    help="a command line to run prpc under (valgrind ...)")
    A = ap.parse_args()
    WRAPPER.extend(A.prpc_wrapper.split())
    fn = globals().get("case_" + A.case)
    if not fn:
        fail("no case " + A.case)
    with tempfile.TemporaryDirectory(prefix="prpc-cli-") as tmp:
        TMP = tmp
        fn()
    print("cli %s: ok" % A.case)


if __name__ == "__main__":
    main()
