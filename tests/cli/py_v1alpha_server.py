#!/usr/bin/python3
"""A Python grpcio server for prpc's tests: helloworld.Greeter and ONLY the
old grpc.reflection.v1alpha reflection service (so that a client must fall
back from v1), both written against raw bytes with generic handlers; the
descriptors come from a FileDescriptorSet made by protoc.

    py_v1alpha_server.py TARGET DESCRIPTOR_SET
Prints "ready" once it serves; stops on SIGTERM.
"""
import signal
import sys
import threading
from concurrent import futures

import grpc
from google.protobuf import descriptor_pb2


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
    """A length-delimited field."""
    return varint(num << 3 | 2) + varint(len(data)) + data


def parse(data):
    """Length-delimited and varint fields: {number: [values]}."""
    out, i = {}, 0
    while i < len(data):
        key, shift = 0, 0
        while True:
            b = data[i]
            i += 1
            key |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        num, wt = key >> 3, key & 7
        if wt == 2:
            n, shift = 0, 0
            while True:
                b = data[i]
                i += 1
                n |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            out.setdefault(num, []).append(data[i:i + n])
            i += n
        elif wt == 0:
            while data[i] & 0x80:
                i += 1
            i += 1
        else:
            raise ValueError("unexpected wire type %d" % wt)
    return out


def main():
    target, set_path = sys.argv[1], sys.argv[2]
    fds = descriptor_pb2.FileDescriptorSet()
    with open(set_path, "rb") as f:
        fds.ParseFromString(f.read())
    files = {f.name: f for f in fds.file}
    symbols, services = {}, []

    def add_messages(f, scope, msgs):
        for m in msgs:
            name = scope + "." + m.name if scope else m.name
            symbols[name] = f
            add_messages(f, name, m.nested_type)
            for e in m.enum_type:
                symbols[name + "." + e.name] = f

    for f in fds.file:
        add_messages(f, f.package, f.message_type)
        for e in f.enum_type:
            symbols[(f.package + "." if f.package else "") + e.name] = f
        for s in f.service:
            full = (f.package + "." if f.package else "") + s.name
            symbols[full] = f
            services.append(full)
            for m in s.method:
                symbols[full + "." + m.name] = f

    def with_deps(f, seen):
        if f.name in seen:
            return []
        seen.add(f.name)
        out = [f]
        for d in f.dependency:
            if d in files:
                out += with_deps(files[d], seen)
        return out

    def file_response(fs):
        body = b"".join(ld(1, x.SerializeToString()) for x in fs)
        return ld(4, body)

    def reflect(requests, context):
        for req in requests:
            fields = parse(req)
            if 7 in fields:
                body = b"".join(ld(1, ld(1, s.encode())) for s in services)
                yield ld(6, body)
            elif 4 in fields:
                sym = fields[4][0].decode()
                if sym in symbols:
                    yield file_response(with_deps(symbols[sym], set()))
                else:
                    yield ld(7, varint(1 << 3) + varint(5) +
                             ld(2, ("symbol not found: " + sym).encode()))
            elif 3 in fields:
                name = fields[3][0].decode()
                if name in files:
                    yield file_response([files[name]])
                else:
                    yield ld(7, varint(1 << 3) + varint(5) +
                             ld(2, ("file not found: " + name).encode()))
            else:
                yield ld(7, varint(1 << 3) + varint(12) + ld(2, b"unsupported"))

    def say_hello(req, context):
        names = parse(req).get(1, [b""])
        return ld(1, b"Hello from python, " + names[-1])

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((
        grpc.method_handlers_generic_handler(
            "grpc.reflection.v1alpha.ServerReflection",
            {"ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(reflect)}),
        grpc.method_handlers_generic_handler(
            "helloworld.Greeter",
            {"SayHello": grpc.unary_unary_rpc_method_handler(say_hello)}),
    ))
    if server.add_insecure_port(target) == 0:
        sys.exit("cannot listen on " + target)
    server.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print("py_v1alpha_server: ready", flush=True)
    done.wait()
    server.stop(None)


if __name__ == "__main__":
    main()
