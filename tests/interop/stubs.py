"""Python stubs for the gRPC interop protos, generated at run time.

    import stubs
    empty_pb2, messages_pb2, test_pb2, test_pb2_grpc = stubs.load()

The protos live in PROJECT/proto/grpc/testing/ and import each other as
"grpc/testing/X.proto".  Generating from there would give a Python package
named grpc.testing, which shadows the real grpc module.  So the three files
are copied into a fresh temporary directory as prpc_interop/X.proto, their
imports are rewritten to "prpc_interop/X.proto", and protoc runs there with
Debian's grpc_python_plugin.  The proto package stays grpc.testing, which is
what travels on the wire (/grpc.testing.TestService/UnaryCall, ...).
"""
import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

PROTO_DIR = os.path.normpath(os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto", "grpc",
    "testing"))
PLUGIN = "/usr/bin/grpc_python_plugin"
PACKAGE = "prpc_interop"
NAMES = ("empty", "messages", "test")


def load():
    """Generate, import and return (empty_pb2, messages_pb2, test_pb2,
    test_pb2_grpc).  The temporary directory is gone when this returns."""
    protoc = shutil.which("protoc") or "/usr/bin/protoc"
    tmp = tempfile.mkdtemp(prefix="prpc-interop-stubs-")
    try:
        src = os.path.join(tmp, "protos")
        out = os.path.join(tmp, "out")
        os.makedirs(os.path.join(src, PACKAGE))
        os.makedirs(out)
        for name in NAMES:
            with open(os.path.join(PROTO_DIR, name + ".proto")) as f:
                text = f.read()
            text = re.sub(r'import\s+"grpc/testing/(\w+\.proto)"',
                          r'import "%s/\1"' % PACKAGE, text)
            with open(os.path.join(src, PACKAGE, name + ".proto"), "w") as f:
                f.write(text)
        subprocess.run(
            [protoc, "-I" + src, "--python_out=" + out, "--grpc_out=" + out,
             "--plugin=protoc-gen-grpc=" + PLUGIN]
            + [os.path.join(src, PACKAGE, n + ".proto") for n in NAMES],
            check=True)
        sys.path.insert(0, out)
        try:
            mods = [importlib.import_module("%s.%s_pb2" % (PACKAGE, n))
                    for n in NAMES]
            mods.append(importlib.import_module(PACKAGE + ".test_pb2_grpc"))
        finally:
            sys.path.remove(out)
        return tuple(mods)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
