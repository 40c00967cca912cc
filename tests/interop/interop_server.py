#!/usr/bin/python3
"""gRPC interop test server (grpc.testing.TestService) on Python grpcio.

    interop_server.py --listen ADDR [--listen ADDR ...]

ADDR is unix:/path or host:port (port 0 picks a free port).  Prints
"interop_server: listening on ADDR" (with " (port N)" for TCP) per address,
then "interop_server: ready", and stops gracefully, exit 0, on SIGTERM or
SIGINT.  Semantics follow gRPC's doc/interop-test-descriptions.md (server
part); run it with Debian's /usr/bin/python3, which has grpcio 1.51.

Limits imposed by grpcio (not by the interop doc):
  * CompressedRequest is not implemented: grpcio hides whether a request
    message arrived compressed (no message flags, and grpc-encoding is not in
    invocation_metadata()), so expect_compressed is ignored and a probe
    (uncompressed request with expect_compressed=true) is NOT rejected with
    INVALID_ARGUMENT.  The client_compressed_* cases therefore cannot pass
    against this server; run_interop.py skips them for it.
  * CompressedResponse works through ServicerContext.set_compression(Gzip),
    which must be chosen before the first response (it travels in the
    initial metadata), plus disable_next_message_compression() for each
    response that must go out uncompressed.  FullDuplexCall cannot know its
    future requests, so it always announces gzip and disables compression
    per message unless ResponseParameters.compressed asks for it.
  * fill_username / fill_oauth_scope / fill_server_id / fill_grpclb_route_type
    are ignored (no auth, no load balancer here).
"""
import argparse
import os
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stubs  # noqa: E402

empty_pb2, messages_pb2, test_pb2, test_pb2_grpc = stubs.load()

ECHO_INITIAL = "x-grpc-test-echo-initial"
ECHO_TRAILING = "x-grpc-test-echo-trailing-bin"
CODES = {c.value[0]: c for c in grpc.StatusCode}


def echo_metadata(context):
    """Echo Metadata: send back x-grpc-test-echo-initial in the initial
    metadata (now) and x-grpc-test-echo-trailing-bin in the trailers."""
    initial, trailing = [], []
    for key, value in context.invocation_metadata():
        if key == ECHO_INITIAL:
            initial.append((key, value))
        elif key == ECHO_TRAILING:
            trailing.append((key, value))
    if trailing:
        context.set_trailing_metadata(trailing)
    context.send_initial_metadata(initial)


def check_request(request, context):
    """Echo Status and response_type: end the call with the requested status
    (the handler does not continue), or INVALID_ARGUMENT for a payload type
    other than COMPRESSABLE."""
    if request.response_type != messages_pb2.COMPRESSABLE:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                      "unsupported response_type %d" % request.response_type)
    if request.HasField("response_status") and request.response_status.code:
        code = CODES.get(request.response_status.code, grpc.StatusCode.UNKNOWN)
        context.abort(code, request.response_status.message)


def payload(size):
    return messages_pb2.Payload(type=messages_pb2.COMPRESSABLE,
                                body=b"\0" * size)


def stream_responses(params, context):
    """One StreamingOutputCallResponse per ResponseParameters, sleeping
    interval_us before each; compression per message must already have been
    announced with set_compression(Gzip) if any message is to be compressed."""
    for p in params:
        if p.interval_us > 0:
            time.sleep(p.interval_us / 1e6)
        if not p.compressed.value:
            context.disable_next_message_compression()
        yield messages_pb2.StreamingOutputCallResponse(payload=payload(p.size))


class TestService(test_pb2_grpc.TestServiceServicer):
    def EmptyCall(self, request, context):
        echo_metadata(context)
        return empty_pb2.Empty()

    def UnaryCall(self, request, context):
        # expect_compressed is ignored: see the header of this file.
        if request.response_compressed.value:
            context.set_compression(grpc.Compression.Gzip)
        echo_metadata(context)
        check_request(request, context)
        if not request.response_compressed.value:
            context.disable_next_message_compression()
        return messages_pb2.SimpleResponse(
            payload=payload(request.response_size))

    def CacheableUnaryCall(self, request, context):
        echo_metadata(context)
        now = str(time.time_ns()).encode()
        return messages_pb2.SimpleResponse(payload=messages_pb2.Payload(
            type=messages_pb2.COMPRESSABLE, body=now))

    def StreamingOutputCall(self, request, context):
        if any(p.compressed.value for p in request.response_parameters):
            context.set_compression(grpc.Compression.Gzip)
        echo_metadata(context)
        check_request(request, context)
        yield from stream_responses(request.response_parameters, context)

    def StreamingInputCall(self, request_iterator, context):
        # expect_compressed is ignored: see the header of this file.
        echo_metadata(context)
        total = 0
        for request in request_iterator:
            total += len(request.payload.body)
        return messages_pb2.StreamingInputCallResponse(
            aggregated_payload_size=total)

    def FullDuplexCall(self, request_iterator, context):
        context.set_compression(grpc.Compression.Gzip)
        echo_metadata(context)
        for request in request_iterator:
            check_request(request, context)
            yield from stream_responses(request.response_parameters, context)

    def HalfDuplexCall(self, request_iterator, context):
        requests = list(request_iterator)  # answer after the half-close
        if any(p.compressed.value
               for r in requests for p in r.response_parameters):
            context.set_compression(grpc.Compression.Gzip)
        echo_metadata(context)
        for request in requests:
            check_request(request, context)
            yield from stream_responses(request.response_parameters, context)

    def UnimplementedCall(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED,
                      "UnimplementedCall is not implemented")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", action="append", required=True,
                    metavar="ADDR", help="unix:/path or host:port")
    args = ap.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    test_pb2_grpc.add_TestServiceServicer_to_server(TestService(), server)
    lines = []
    for addr in args.listen:
        try:
            port, why = server.add_insecure_port(addr), "bind failed"
        except RuntimeError as e:  # grpcio 1.51 raises, older ones return 0
            port, why = 0, str(e)
        if port == 0:  # a bound unix socket gives 1
            sys.exit("interop_server: cannot listen on %s: %s" % (addr, why))
        if addr.startswith("unix:"):
            lines.append("interop_server: listening on %s" % addr)
        else:
            lines.append("interop_server: listening on %s (port %d)"
                         % (addr, port))
    server.start()
    print("\n".join(lines))
    print("interop_server: ready", flush=True)
    # Wake up now and then so that the signal handler, which Python runs
    # in this thread, is never held up by a blocked wait.
    while not stop.wait(0.5):
        pass
    server.stop(grace=5).wait()
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
