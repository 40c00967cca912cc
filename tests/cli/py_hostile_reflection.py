#!/usr/bin/python3
"""A hostile grpc.reflection.v1 server for prpc's tests (Python grpcio,
raw bytes, generic handlers).

    py_hostile_reflection.py TARGET MODE
MODE:
  imports  every file it sends imports another one it has not sent yet,
           without end (and answers file_by_filename for any name)
  deep     the file for any symbol defines a message whose nested types
           nest 100,000 deep (a FileDescriptorProto of about 0.5 MB)
  stall    never answers
Prints "ready" once it serves; on SIGTERM prints "requests N" (the
reflection requests it got) and exits.
"""
import signal
import sys
import threading
import time
from concurrent import futures

import grpc


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def ld(num, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(num << 3 | 2) + varint(len(data)) + data


def file_proto(name, deps=(), messages=b""):
    # FileDescriptorProto: name 1, package 2, dependency 3, message_type 4,
    # syntax 12.
    out = ld(1, name) + ld(2, "hostile")
    for d in deps:
        out += ld(3, d)
    return out + messages + ld(12, "proto3")


def deep_message(levels):
    # DescriptorProto: name 1, nested_type 3. Built as one join of the
    # levels' prefixes (outermost first), not by copying at every level.
    inner = ld(1, "Bottom")
    size, prefixes = len(inner), []
    for _ in range(levels):
        p = ld(1, "N") + varint(3 << 3 | 2) + varint(size)
        prefixes.append(p)
        size += len(p)
    msg = b"".join(reversed(prefixes)) + inner
    return ld(4, ld(1, "Top") + ld(3, msg))


def file_response(*files):
    return ld(4, b"".join(ld(1, f) for f in files))


def main():
    target, mode = sys.argv[1], sys.argv[2]
    count = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def reflect(requests, context):
        for req in requests:
            with lock:
                count[0] += 1
                n = count[0]
            if mode == "stall":
                stop.wait()
                return
            if mode == "deep":
                yield file_response(file_proto("deep.proto",
                                               messages=deep_message(100000)))
            else:
                yield file_response(file_proto("f%d.proto" % n,
                                               ["f%d.proto" % (n + 1)],
                                               ld(4, ld(1, "M%d" % n))))

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                         options=[("grpc.max_send_message_length", 8 << 20)])
    server.add_generic_rpc_handlers((
        grpc.method_handlers_generic_handler(
            "grpc.reflection.v1.ServerReflection",
            {"ServerReflectionInfo":
             grpc.stream_stream_rpc_method_handler(reflect)}),))
    if server.add_insecure_port(target) == 0:
        sys.exit("cannot listen on " + target)
    server.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print("py_hostile_reflection: ready", flush=True)
    done.wait()
    stop.set()
    print("requests %d" % count[0], flush=True)
    server.stop(None)


if __name__ == "__main__":
    main()
