#!/usr/bin/python3
"""Python grpcio against the bench Echo server over a unix socket, every
kind of call, payloads checked byte for byte. Run against bench_server and
bench_server_nanopb (whose payloads are nanopb pb_callback_t fields).

    cross_echo.py SERVER --bin-dir DIR --proto-dir DIR
"""
import argparse
import os
import subprocess
import sys
import tempfile

import grpc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("server")
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--proto-dir", required=True)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="prpc-echo-") as tmp:
        subprocess.run(["protoc", "-I" + a.proto_dir, "--python_out=" + tmp,
                        "--grpc_out=" + tmp,
                        "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin",
                        os.path.join(a.proto_dir, "bench.proto")], check=True)
        sys.path.insert(0, tmp)
        import bench_pb2 as pb
        import bench_pb2_grpc as pbg
        sock = "unix:" + os.path.join(tmp, "e.sock")
        p = subprocess.Popen([os.path.join(a.bin_dir, a.server), "--listen",
                              sock], stdout=subprocess.PIPE, text=True)
        for line in p.stdout:
            if line.strip().endswith("ready"):
                break
        else:
            raise SystemExit("%s exited before it was ready" % a.server)
        try:
            opts = [("grpc.max_receive_message_length", 8 << 20)]
            with grpc.insecure_channel(sock, options=opts) as ch:
                stub = pbg.EchoStub(ch)
                for n in (0, 1, 1000, 70000, 3 << 20):
                    data = bytes((i * 7 + n) & 0xff for i in range(n))
                    r = stub.Unary(pb.Payload(data=data), timeout=20)
                    assert r.data == data, (n, len(r.data))
                got = list(stub.ServerStream(
                    pb.StreamRequest(count=5, size=100000), timeout=20))
                assert len(got) == 5, len(got)
                assert all(m.data == b"x" * 100000 for m in got)
                sizes = [10, 0, 65536, 300000]
                r = stub.ClientStream(
                    iter([pb.Payload(data=b"y" * s) for s in sizes]),
                    timeout=20)
                assert r.data == str(sum(sizes)).encode(), r.data
                msgs = [bytes([i]) * (i * 5000) for i in range(6)]
                got = [m.data for m in stub.Bidi(
                    iter([pb.Payload(data=m) for m in msgs]), timeout=20)]
                assert got == msgs, [len(g) for g in got]
            print("python client -> %s: ok" % a.server)
        finally:
            p.terminate()
            rc = p.wait(timeout=20)
        assert rc == 0, "%s exited with %d" % (a.server, rc)


if __name__ == "__main__":
    main()
