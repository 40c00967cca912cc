#!/usr/bin/python3
"""An external health client (Python grpcio) against greeter_server over a
unix socket: Check, Watch, and NOT_SERVING once a graceful shutdown starts.

    health_check.py --bin-dir DIR --proto-dir DIR
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import grpc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--proto-dir", required=True)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="prpc-health-") as tmp:
        # Generated under another path: grpc/health/v1/ would shadow grpc.
        src = os.path.join(tmp, "protos")
        os.makedirs(src)
        shutil.copy(os.path.join(a.proto_dir, "grpc/health/v1/health.proto"),
                    os.path.join(src, "prpc_health.proto"))
        subprocess.run(["protoc", "-I" + src, "--python_out=" + tmp,
                        "--grpc_out=" + tmp,
                        "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin",
                        os.path.join(src, "prpc_health.proto")], check=True)
        sys.path.insert(0, tmp)
        import prpc_health_pb2 as pb
        import prpc_health_pb2_grpc as pbg
        sock = "unix:" + os.path.join(tmp, "g.sock")
        p = subprocess.Popen([os.path.join(a.bin_dir, "greeter_server"),
                              "--listen", sock], stdout=subprocess.PIPE,
                             text=True)
        for line in p.stdout:
            if line.strip().endswith("ready"):
                break
        try:
            with grpc.insecure_channel(sock) as ch:
                stub = pbg.HealthStub(ch)
                S = pb.HealthCheckResponse
                r = stub.Check(pb.HealthCheckRequest(service=""), timeout=5)
                assert r.status == S.SERVING, r
                r = stub.Check(pb.HealthCheckRequest(
                    service="helloworld.Greeter"), timeout=5)
                assert r.status == S.SERVING, r
                try:
                    stub.Check(pb.HealthCheckRequest(service="no.Such"),
                               timeout=5)
                    raise AssertionError("an unknown service answered")
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.NOT_FOUND, e
                w = stub.Watch(pb.HealthCheckRequest(service=""), timeout=20)
                first = next(w)
                assert first.status == S.SERVING, first
                p.send_signal(signal.SIGTERM)  # graceful: NOT_SERVING first
                second = next(w)
                assert second.status == S.NOT_SERVING, second
                w.cancel()
        finally:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            rc = p.wait(timeout=20)
        assert rc == 0, "greeter_server exited with %d" % rc
    print("health: Check and Watch from python grpcio: ok")


if __name__ == "__main__":
    main()
