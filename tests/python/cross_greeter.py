#!/usr/bin/python3
"""Cross-language Greeter tests against Python grpcio, a gRPC
implementation this project did not write.

    cross_greeter.py CASE --bin-dir DIR --proto-dir DIR

Cases:
  py_client_unix   Python client -> C greeter_server over a unix socket
  py_client_tcp    Python client -> C greeter_server over TCP 127.0.0.1
  c_client_unix    C greeter_client -> Python server over a unix socket
  c_client_tcp     C greeter_client -> Python server over TCP 127.0.0.1
  py_client_unix_nanopb  Python client -> greeter_server_nanopb (unix)
  c_client_unix_nanopb   greeter_client_nanopb -> Python server (unix)
  c_mixed_unix     greeter_client -> greeter_server_nanopb and
                   greeter_client_nanopb -> greeter_server (unix): the two
                   message backends on one wire

Stubs are generated at test time with protoc and grpc_python_plugin into a
fresh temporary directory; servers are started here and are ready when they
say so on stdout (no sleeping)."""
import argparse
import os
import subprocess
import sys
import tempfile
from concurrent import futures

import grpc


def gen_stubs(proto_dir, out_dir):
    subprocess.run(
        ["protoc", "-I" + proto_dir, "--python_out=" + out_dir,
         "--grpc_out=" + out_dir,
         "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin",
         os.path.join(proto_dir, "helloworld.proto")], check=True)
    sys.path.insert(0, out_dir)
    import helloworld_pb2  # noqa: E402
    import helloworld_pb2_grpc  # noqa: E402
    return helloworld_pb2, helloworld_pb2_grpc


def start_c_server(bin_dir, listen, prog="greeter_server"):
    p = subprocess.Popen([os.path.join(bin_dir, prog),
                          "--listen", listen, "--threads", "2"],
                         stdout=subprocess.PIPE, text=True)
    port = None
    for line in p.stdout:
        if "(port " in line:
            port = int(line.rsplit("(port ", 1)[1].rstrip(")\n"))
        if line.strip() == "greeter_server: ready":
            return p, port
    raise SystemExit("%s exited before it was ready" % prog)


def stop(p):
    p.terminate()
    rc = p.wait(timeout=20)
    assert rc == 0, "server exited with %d" % rc


def check_c_server(pb2, pb2_grpc, target, nanopb=False):
    with grpc.insecure_channel(target) as ch:
        stub = pb2_grpc.GreeterStub(ch)
        # nanopb: names up to 255 bytes (proto/helloworld.options).
        big = "x" * (255 if nanopb else 100000)
        for name in ["world", "Zoë ✓", "", big]:
            reply = stub.SayHello(pb2.HelloRequest(name=name), timeout=10)
            assert reply.message == "Hello " + name, reply.message[:80]
        if nanopb:
            # One byte over: refused whole, never cut short.
            try:
                stub.SayHello(pb2.HelloRequest(name="x" * 256), timeout=10)
                raise AssertionError("oversize name accepted")
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
                assert "larger than its fixed size" in e.details(), e
        # Bytes that are not a HelloRequest: INVALID_ARGUMENT, and the
        # server keeps serving on the same channel.
        raw = ch.unary_unary("/helloworld.Greeter/SayHello")
        try:
            raw(b"\x0a\x7f", timeout=10)
            raise AssertionError("malformed request accepted")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
        # An unknown method: UNIMPLEMENTED.
        nope = ch.unary_unary("/helloworld.Greeter/Nope")
        try:
            nope(b"", timeout=10)
            raise AssertionError("unknown method answered")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNIMPLEMENTED, e
        reply = stub.SayHello(pb2.HelloRequest(name="again"), timeout=10)
        assert reply.message == "Hello again"
        # Metadata and a deadline travel with the call.
        reply, call = stub.SayHello.with_call(
            pb2.HelloRequest(name="md"), timeout=10,
            metadata=[("x-trace", "abc"), ("x-blob-bin", b"\x00\x01")])
        assert reply.message == "Hello md"
        assert call.code() == grpc.StatusCode.OK
    print("python client -> C server %s: ok" % target)


def start_py_server(pb2, pb2_grpc, listen):
    class Greeter(pb2_grpc.GreeterServicer):
        def SayHello(self, request, context):
            if request.name == "fail":
                context.abort(grpc.StatusCode.NOT_FOUND, "no such person: Zoë")
            if request.name == "long":  # over a nanopb client's 261 bytes
                return pb2.HelloReply(message="y" * 1000)
            return pb2.HelloReply(message="Hello " + request.name)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
    port = server.add_insecure_port(listen)
    assert port != 0 or listen.startswith("unix:"), "cannot listen on " + listen
    server.start()
    return server, port


def run_c_client(bin_dir, target, name, count=1, expect_rc=0,
                 prog="greeter_client"):
    p = subprocess.run([os.path.join(bin_dir, prog), "--target",
                        target, "--name", name, "--count", str(count)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == expect_rc, (p.returncode, p.stdout, p.stderr)
    return p.stdout, p.stderr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--proto-dir", required=True)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="prpc-cross-") as tmp:
        pb2, pb2_grpc = gen_stubs(a.proto_dir, tmp)
        sock = os.path.join(tmp, "greeter.sock")
        nanopb = a.case.endswith("_nanopb")
        case = a.case[:-len("_nanopb")] if nanopb else a.case
        suffix = "_nanopb" if nanopb else ""
        if case in ("py_client_unix", "py_client_tcp"):
            listen = "unix:" + sock if case.endswith("unix") else "127.0.0.1:0"
            p, port = start_c_server(a.bin_dir, listen,
                                     "greeter_server" + suffix)
            try:
                target = listen if port is None else "127.0.0.1:%d" % port
                check_c_server(pb2, pb2_grpc, target, nanopb)
            finally:
                stop(p)
            if case.endswith("unix"):
                assert not os.path.exists(sock), "socket file left behind"
        elif case in ("c_client_unix", "c_client_tcp"):
            listen = "unix:" + sock if case.endswith("unix") else "127.0.0.1:0"
            server, port = start_py_server(pb2, pb2_grpc, listen)
            prog = "greeter_client" + suffix
            try:
                target = listen if case.endswith("unix") \
                    else "127.0.0.1:%d" % port
                out, _ = run_c_client(a.bin_dir, target, "from C", prog=prog)
                assert out.splitlines()[0] == "Hello from C", out
                out, _ = run_c_client(a.bin_dir, target, "n", count=200,
                                      prog=prog)
                assert "200 calls" in out and "p99" in out, out
                _, err = run_c_client(a.bin_dir, target, "fail", expect_rc=1,
                                      prog=prog)
                assert "NOT_FOUND: no such person: Zoë" in err, err
                if nanopb:  # a reply over the static size: refused
                    _, err = run_c_client(a.bin_dir, target, "long",
                                          expect_rc=1, prog=prog)
                    assert "INTERNAL: the reply message does not decode: " \
                        "a field is larger than its fixed size" in err, err
            finally:
                server.stop(grace=None).wait()
            print("C client -> python server %s: ok" % target)
        elif case == "c_mixed_unix":
            # Each message backend's client against the other's server.
            for server, client in (("greeter_server_nanopb", "greeter_client"),
                                   ("greeter_server", "greeter_client_nanopb")):
                listen = "unix:" + sock
                p, _ = start_c_server(a.bin_dir, listen, server)
                try:
                    out, _ = run_c_client(a.bin_dir, listen, "Zoë ✓",
                                          prog=client)
                    assert out.splitlines()[0] == "Hello Zoë ✓", out
                    out, _ = run_c_client(a.bin_dir, listen, "n", count=200,
                                          prog=client)
                    assert "200 calls" in out, out
                finally:
                    stop(p)
                print("%s -> %s: ok" % (client, server))
        else:
            raise SystemExit("unknown case " + a.case)


if __name__ == "__main__":
    main()
