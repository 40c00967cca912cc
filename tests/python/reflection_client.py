#!/usr/bin/python3
"""An external reflection client (Python grpcio and protobuf, stubs made from
the standard reflection protos at test time) against a piperpc server over a
unix socket. It does what grpcurl or grpc_cli do without the .proto files:
lists the services, fetches their files (and the imports, by name when the
server left them out), rebuilds them in a protobuf DescriptorPool, reads the
methods' input and output types from it, and makes one call with messages
built from those descriptors alone.

    reflection_client.py --server PATH --kind greeter|echo|interop
                         --proto-dir DIR
"""
import argparse
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

# What each server must describe: its own service, a method, that method's
# input and output types, and one call to make: request fields, and the
# expected reply fields.
KINDS = {
    "greeter": {
        "service": "helloworld.Greeter",
        "files": ["helloworld.proto"],
        "method": ("SayHello", "helloworld.HelloRequest",
                   "helloworld.HelloReply"),
        "call": ({"name": "reflection"}, {"message": "Hello reflection"}),
    },
    "echo": {
        "service": "bench.Echo",
        "files": ["bench.proto"],
        "method": ("Unary", "bench.Payload", "bench.Payload"),
        "call": ({"data": b"\x00echo\xff"}, {"data": b"\x00echo\xff"}),
    },
    "interop": {
        # test.proto imports empty.proto and messages.proto.
        "service": "grpc.testing.TestService",
        "files": ["grpc/testing/test.proto", "grpc/testing/empty.proto",
                  "grpc/testing/messages.proto"],
        "method": ("EmptyCall", "grpc.testing.Empty", "grpc.testing.Empty"),
        "call": ({}, {}),
    },
}

BUILTIN = ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
           "grpc.reflection.v1alpha.ServerReflection"]


def fail(msg):
    raise AssertionError(msg)


class Stream:
    """One ServerReflectionInfo stream: a request in, a response out."""

    def __init__(self, channel, pb, pbg):
        self.pb = pb
        self.q = queue.Queue()
        stub = pbg.ServerReflectionStub(channel)
        self.responses = stub.ServerReflectionInfo(iter(self.q.get, None),
                                                   timeout=30)
        self.files = {}  # every FileDescriptorProto received, by name

    def ask(self, **kw):
        req = self.pb.ServerReflectionRequest(**kw)
        self.q.put(req)
        resp = next(self.responses)
        if resp.original_request != req:
            fail("original_request %r is not the request %r" %
                 (resp.original_request, req))
        if resp.WhichOneof("message_response") == "file_descriptor_response":
            for b in resp.file_descriptor_response.file_descriptor_proto:
                fdp = descriptor_pb2.FileDescriptorProto.FromString(b)
                if fdp.HasField("source_code_info"):
                    fail("%s carries source_code_info" % fdp.name)
                self.files[fdp.name] = fdp
        return resp

    def close(self):
        self.q.put(None)
        for extra in self.responses:
            fail("a response after half-close: %r" % extra)
        if self.responses.code() != grpc.StatusCode.OK:
            fail("the stream ended with %s" % self.responses.code())

    def files_of(self, resp):
        if resp.WhichOneof("message_response") != "file_descriptor_response":
            fail("no file in %r" % resp)
        return [descriptor_pb2.FileDescriptorProto.FromString(b).name
                for b in resp.file_descriptor_response.file_descriptor_proto]

    def add_to_pool(self, pool, name, added):
        """Adds a file after its imports, fetching the ones not yet seen."""
        if name in added:
            return
        if name not in self.files:
            resp = self.ask(file_by_filename=name)
            if name not in self.files_of(resp):
                fail("file_by_filename %s answered %s" %
                     (name, self.files_of(resp)))
        fdp = self.files[name]
        for dep in fdp.dependency:
            self.add_to_pool(pool, dep, added)
        pool.Add(fdp)
        added.add(name)


def message_class(pool, desc):
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)


def run(a, tmp):
    sys.path.insert(0, tmp)
    import prpc_refl_v1_pb2 as pb
    import prpc_refl_v1_pb2_grpc as pbg
    import prpc_refl_v1alpha_pb2 as apb
    import prpc_refl_v1alpha_pb2_grpc as apbg
    kind = KINDS[a.kind]
    sock = "unix:" + os.path.join(tmp, "r.sock")
    p = subprocess.Popen([a.server, "--listen", sock], stdout=subprocess.PIPE,
                         text=True)
    for line in p.stdout:
        if line.strip().endswith("ready"):
            break
    try:
        with grpc.insecure_channel(sock) as ch:
            s = Stream(ch, pb, pbg)
            # 1. The services.
            resp = s.ask(list_services="")
            names = [x.name for x in resp.list_services_response.service]
            want = [kind["service"]] + BUILTIN
            if sorted(names) != sorted(want):
                fail("list_services: %s, want %s" % (names, want))
            # 2. Each service's file, with its imports, into a pool.
            pool = descriptor_pool.DescriptorPool()
            added = set()
            for name in names:
                resp = s.ask(file_containing_symbol=name)
                first = s.files_of(resp)[0]
                s.add_to_pool(pool, first, added)
                svc = pool.FindServiceByName(name)
                if svc.full_name != name:
                    fail("pool has %s for %s" % (svc.full_name, name))
            for f in kind["files"]:
                if f not in added:
                    fail("%s was not among the files (%s)" % (f, added))
            # 3. The method and its types, from the pool alone.
            svc = pool.FindServiceByName(kind["service"])
            mname, in_type, out_type = kind["method"]
            m = svc.methods_by_name.get(mname)
            if m is None:
                fail("%s has no method %s (%s)" %
                     (svc.full_name, mname, list(svc.methods_by_name)))
            if m.input_type.full_name != in_type:
                fail("input %s, want %s" % (m.input_type.full_name, in_type))
            if m.output_type.full_name != out_type:
                fail("output %s, want %s" % (m.output_type.full_name,
                                             out_type))
            # Symbols by their own names: the method, a message type.
            for sym in ("%s.%s" % (kind["service"], mname), in_type):
                resp = s.ask(file_containing_symbol=sym)
                if pool.FindFileContainingSymbol(sym).name != \
                        s.files_of(resp)[0]:
                    fail("file_containing_symbol %s: %s" %
                         (sym, s.files_of(resp)))
            # 4. Unknown names: NOT_FOUND error responses; the stream lives.
            for req in ({"file_containing_symbol": kind["service"] + "X"},
                        {"file_by_filename": "no/such.proto"},
                        {"file_containing_extension": pb.ExtensionRequest(
                            containing_type=in_type, extension_number=99)}):
                resp = s.ask(**req)
                if resp.WhichOneof("message_response") != "error_response" \
                        or resp.error_response.error_code != 5:
                    fail("%r: %r, want a NOT_FOUND error_response" %
                         (req, resp))
            resp = s.ask(all_extension_numbers_of_type=in_type)
            if resp.all_extension_numbers_response.base_type_name != in_type:
                fail("all_extension_numbers_of_type: %r" % resp)
            s.close()
            # 5. A call made with the rebuilt message classes only.
            req_cls = message_class(pool, m.input_type)
            rep_cls = message_class(pool, m.output_type)
            call = ch.unary_unary("/%s/%s" % (kind["service"], mname),
                                  request_serializer=req_cls.SerializeToString,
                                  response_deserializer=rep_cls.FromString)
            fields, expect = kind["call"]
            reply = call(req_cls(**fields), timeout=10)
            for k, v in expect.items():
                if getattr(reply, k) != v:
                    fail("reply %s = %r, want %r" % (k, getattr(reply, k), v))
            # 6. The older package answers the same.
            q = queue.Queue()
            q.put(apb.ServerReflectionRequest(list_services=""))
            q.put(apb.ServerReflectionRequest(
                file_containing_symbol=kind["service"]))
            q.put(None)
            got = list(apbg.ServerReflectionStub(ch).ServerReflectionInfo(
                iter(q.get, None), timeout=30))
            if len(got) != 2:
                fail("v1alpha: %d responses" % len(got))
            if sorted(x.name for x in got[0].list_services_response.service) \
                    != sorted(want):
                fail("v1alpha list_services: %r" % got[0])
            fdp = descriptor_pb2.FileDescriptorProto.FromString(
                got[1].file_descriptor_response.file_descriptor_proto[0])
            if fdp.name != kind["files"][0]:
                fail("v1alpha file_containing_symbol: %s" % fdp.name)
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=20)
    if rc != 0:
        fail("%s exited with %d" % (a.server, rc))
    print("reflection (%s): %d services, %d files, %s.%s(%s) -> %s, "
          "called: ok" % (a.kind, len(names), len(added), kind["service"],
                          mname, in_type, out_type))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--kind", required=True, choices=sorted(KINDS))
    ap.add_argument("--proto-dir", required=True)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="prpc-reflection-") as tmp:
        # Generated under other names: a grpc/ package would shadow grpcio.
        src = os.path.join(tmp, "protos")
        os.makedirs(src)
        for v in ("v1", "v1alpha"):
            shutil.copy(os.path.join(a.proto_dir, "grpc/reflection", v,
                                     "reflection.proto"),
                        os.path.join(src, "prpc_refl_%s.proto" % v))
            subprocess.run(["protoc", "-I" + src, "--python_out=" + tmp,
                            "--grpc_out=" + tmp,
                            "--plugin=protoc-gen-grpc="
                            "/usr/bin/grpc_python_plugin",
                            os.path.join(src, "prpc_refl_%s.proto" % v)],
                           check=True)
        run(a, tmp)


if __name__ == "__main__":
    main()
