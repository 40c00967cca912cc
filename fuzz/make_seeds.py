#!/usr/bin/python3
"""Writes the fuzzers' seed corpora into fuzz/corpus/<fuzzer>/.

    fuzz/make_seeds.py            (from the top of the source tree)

Small and meaningful inputs: valid and nearly valid targets and access
rules, the CodeGeneratorRequests protoc really sends for the project's
protos (recorded with fuzz/dump_plugin.sh), valid requests of the
TestService methods fuzz_request calls, gRPC's HTTP/2 as a client
speaks it for fuzz_socket, wire messages and JSON with every field kind
and well-known type for fuzz_json, and nanopb messages that fit or just
overflow their static sizes for fuzz_nanopb, HTTP/1.1 requests with JSON bodies of
every kind for fuzz_http, and messages of a type
that contains itself, nested up to the depth limit and 100,000 deep, for
fuzz_tree and fuzz_nanopb (the regress_* files next to them are inputs
the fuzzers found, kept by hand). Deterministic: running it again gives the same
files. Needs protoc (protobuf-compiler) for the codegen seeds."""
import os
import struct
import subprocess
import sys
import tempfile

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(SRC, "fuzz", "corpus")


def put(fuzzer, name, data):
    d = os.path.join(OUT, fuzzer)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- protobuf wire format, by hand ----

def varint(v):
    out = b""
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field_varint(num, v):
    return varint(num << 3) + varint(v)


def field_bytes(num, b):
    if isinstance(b, str):
        b = b.encode()
    return varint((num << 3) | 2) + varint(len(b)) + b


# ---- targets ----

TARGETS = [
    "unix:/run/app.sock", "unix:rel/path.sock", "unix:///abs/path",
    "unix-abstract:piperpc-test", "fd:3", "localhost:50051",
    "127.0.0.1:0", "[::1]:443", "ipv4:10.0.0.1:80", "ipv6:[fe80::1]:8080",
    "dns:///example.org:443", "dns:example.org:443", "unix:", "unix://host/x",
    "host:port", "::1:80", "http://x", "unix:/" + "a" * 110,
]


def targets():
    for i, t in enumerate(TARGETS):
        put("target", "%02d" % i, t)


# ---- access rules: 1 byte allow flag, 4 bytes uid, 4 bytes gid, rule ----

RULES = ["any", "root", "same-user", "uid:0", "uid:65534", "gid:100",
         "user:root", "user:nobody", "user:0", "group:root", "group:nogroup",
         "group:12", "uid:4294967295", "user:", "who:x", ""]


def access():
    for i, r in enumerate(RULES):
        put("access", "%02d" % i,
            struct.pack("<BII", i & 1, 65534 if i & 2 else 0, 0) + r.encode())


# ---- CodeGeneratorRequests, as protoc sends them ----

CODEGEN = [
    # (seed name, include dirs, proto, parameter)
    ("helloworld", ["proto"], "helloworld.proto", None),
    ("health", ["proto"], "grpc/health/v1/health.proto", None),
    ("interop", ["proto"], "grpc/testing/test.proto", None),
    ("chat", ["examples/streaming"], "chat.proto", "backend=protobuf-c"),
    ("multi", ["tests/codegen/proto"], "multi.proto", None),
    ("nopkg", ["tests/codegen/proto"], "nopkg.proto", None),
    ("types", ["tests/codegen/proto"], "common/types.proto", None),
    # Requests the generator must refuse, with an error.
    ("bad_collide", ["tests/codegen/bad"], "collide.proto", None),
    ("bad_cpackage", ["tests/codegen/bad", "/usr/include"], "cpackage.proto",
     None),
    ("bad_option", ["tests/codegen/proto"], "nopkg.proto", "backend=protobuf-d"),
    # Valid protos whose C would not compile: refused (found by the
    # seeds_compile test's review, kept as regression seeds).
    ("bad_keyword", ["tests/codegen/bad"], "keyword.proto", None),
    ("bad_suffix", ["tests/codegen/bad"], "suffix.proto", None),
    ("bad_server_type", ["tests/codegen/bad"], "server_type.proto", None),
    ("bad_services", ["tests/codegen/bad"], "services.proto", None),
]


def codegen():
    dump = os.path.join(SRC, "fuzz", "dump_plugin.sh")
    with tempfile.TemporaryDirectory() as tmp:
        for name, incs, proto, param in CODEGEN:
            target = os.path.join(OUT, "codegen", name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            out = tmp if param is None else param + ":" + tmp
            args = ["protoc", "--plugin=protoc-gen-dump=" + dump,
                    "--dump_out=" + out]
            args += ["-I" + (i if i.startswith("/") else os.path.join(SRC, i))
                     for i in incs]
            args.append(proto)
            env = dict(os.environ, PRPC_DUMP_TO=target)
            subprocess.run(args, check=True, env=env,
                           cwd=os.path.join(SRC, incs[0]))
    # Not a request at all.
    put("codegen", "garbage", b"\xff\xff\xff")


# ---- fuzz_request: first byte picks the method (0 unary, 1 server
# streaming, 2 client streaming), then the message bytes ----

def payload(body):
    return field_varint(1, 0) + field_bytes(2, body)


def request():
    simple = [
        b"",
        field_varint(2, 10),
        field_varint(2, 1) + field_bytes(3, payload(b"hello")),
        field_bytes(7, field_varint(1, 3) + field_bytes(2, "status msg")),
        field_bytes(6, field_varint(1, 1)) + field_varint(4, 1) +
        field_varint(9, 1),
        field_bytes(3, payload(b"\x00" * 64)) + field_varint(50, 7),  # unknown
    ]
    for i, m in enumerate(simple):
        put("request", "unary_%d" % i, b"\x00" + m)
    put("request", "unary_bad", b"\x00" + b"\x0a\x7fx")
    out_req = [
        b"",
        field_bytes(2, field_varint(1, 5)) + field_bytes(2, field_varint(1, 7)),
        field_bytes(3, payload(b"abc")) + field_bytes(
            7, field_varint(1, 0) + field_bytes(2, "ok")),
    ]
    for i, m in enumerate(out_req):
        put("request", "server_stream_%d" % i, b"\x01" + m)
    # Client streaming: messages as a length byte and the bytes.
    msgs = [field_bytes(1, payload(b"x" * 10)), b"",
            field_bytes(2, field_varint(1, 1))]
    put("request", "client_stream_0",
        b"\x02" + b"".join(bytes([len(m)]) + m for m in msgs))
    put("request", "client_stream_bad",
        b"\x02" + bytes([len(msgs[0])]) + msgs[0] + b"\x03\x0a\x7fx")
    # Regressions: field number 0 with its tag in two bytes (0x80 0x00),
    # which protobuf-c 1.4 accepts but cannot re-encode (found by
    # fuzz_request in a client stream); and the same nested in a payload.
    put("request", "regress_tag0_client_stream",
        b"\x20" + b"\x00" * 7 + b"\x03\x80\x00\x00" + b"\x00" * 18)
    put("request", "regress_tag0_nested",
        b"\x00" + field_bytes(3, b"\x80\x00\x00"))


# ---- fuzz_socket: HTTP/2 as a gRPC client speaks it ----

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(ftype, flags, stream, payload_):
    return (struct.pack(">I", len(payload_))[1:] +
            bytes([ftype, flags]) + struct.pack(">I", stream) + payload_)


def settings(pairs=()):
    return frame(4, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def hpack_literal(name, value):
    # Literal header field without indexing, new name, no Huffman.
    name, value = name.encode(), value.encode()
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def grpc_headers(path):
    block = b"".join(hpack_literal(k, v) for k, v in [
        (":method", "POST"), (":scheme", "http"), (":path", path),
        (":authority", "localhost"), ("content-type", "application/grpc"),
        ("te", "trailers"), ("grpc-timeout", "5S")])
    return block


def grpc_message(msg, compressed=0):
    return bytes([compressed]) + struct.pack(">I", len(msg)) + msg


def socket_seeds():
    svc = "/grpc.testing.TestService/"
    put("socket", "preface_only", PREFACE)
    put("socket", "preface_settings", PREFACE + settings([(4, 65535)]))
    empty_call = (PREFACE + settings() +
                  frame(1, 4, 1, grpc_headers(svc + "EmptyCall")) +
                  frame(0, 1, 1, grpc_message(b"")))
    put("socket", "empty_call", empty_call)
    unary = (PREFACE + settings([(2, 0), (4, 4194304)]) + frame(4, 1, 0, b"") +
             frame(1, 4, 1, grpc_headers(svc + "UnaryCall")) +
             frame(0, 1, 1, grpc_message(field_varint(2, 10) + field_bytes(
                 3, payload(b"abc")))))
    put("socket", "unary_call", unary)
    put("socket", "two_streams",
        unary + frame(1, 4, 3, grpc_headers(svc + "EmptyCall")) +
        frame(0, 1, 3, grpc_message(b"")))
    put("socket", "bad_message",
        PREFACE + settings() +
        frame(1, 4, 1, grpc_headers(svc + "UnaryCall")) +
        frame(0, 1, 1, grpc_message(b"\x0a\x7fx")))
    put("socket", "unknown_method",
        PREFACE + settings() +
        frame(1, 4, 1, grpc_headers("/no.Such/Method")) +
        frame(0, 1, 1, grpc_message(b"")))
    put("socket", "ping_window_rst",
        PREFACE + settings() + frame(6, 0, 0, b"12345678") +
        frame(8, 0, 0, struct.pack(">I", 1 << 20)) +
        frame(1, 4, 1, grpc_headers(svc + "StreamingInputCall")) +
        frame(0, 0, 1, grpc_message(field_bytes(1, payload(b"zz")))) +
        frame(3, 0, 1, struct.pack(">I", 8)) +
        frame(7, 0, 0, struct.pack(">II", 0, 0)))
    put("socket", "http1", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


# ---- fuzz_json: 1 byte message (bit 0: clitest.AllTypes or clitest.Wkt),
# 2 bytes wire length (little endian), the wire message, then JSON text ----

def field_fixed64(num, v):
    return varint((num << 3) | 1) + struct.pack("<Q", v)


def json_seed(name, wkt, wire, text):
    put("json", name, bytes([wkt]) + struct.pack("<H", len(wire)) + wire +
        text.encode())


def json_seeds():
    inner = field_bytes(1, "x") + field_varint(2, 2)
    all_wire = (field_fixed64(1, struct.unpack("<Q", struct.pack("<d", 1.5))[0]) +
                field_varint(3, (1 << 64) - 1) + field_varint(5, (1 << 64) - 7) +
                field_varint(8, 1) + field_bytes(9, "h\u00e9llo") +
                field_bytes(10, inner) + field_bytes(11, b"\x00\x01\xff") +
                field_varint(13, 2) + field_varint(16, 9) +
                field_bytes(20, varint(1) + varint(2) + varint(300)) +
                field_bytes(21, "a") + field_bytes(22, inner) +
                field_bytes(30, field_bytes(1, "k") + field_varint(2, 5)) +
                field_bytes(31, field_varint(1, 7) + field_bytes(2, inner)) +
                field_bytes(32, field_varint(1, 1) + field_bytes(2, "yes")) +
                field_bytes(40, "choice") +
                field_bytes(43, field_varint(1, 1) + field_bytes(
                    2, field_bytes(2, field_varint(1, 1)))))
    json_seed("all_types", 0, all_wire,
              '{"fDouble":1.5,"fFloat":"-Infinity","fInt64":"-1",'
              '"fUint64":"18446744073709551615","fInt32":-7,'
              '"fFixed32":4294967295,"fBool":true,"fString":"h\\u00e9llo",'
              '"fBytes":"AAH/","fColor":"GREEN","fSint64":-6,'
              '"rInt32":[1,-2],"rColor":["RED",2,7],"rDouble":["NaN",0.25],'
              '"mStrInt":{"a":"5"},"mIntInner":{"-1":{"text":"n"}},'
              '"mBoolStr":{"true":"yes"},"cInner":{"n":3},'
              '"nested":{"level":"HIGH","children":[{"level":1}]}}')
    json_seed("all_types_errors", 0, field_bytes(12, "x") + field_varint(9, 1),
              '{"fInt32":1e10,"fBool":"yes","nope":1}')
    json_seed("all_types_bad_json", 0, b"\x0a\x05ab",
              '{"fString":"unterminated')
    ts = field_varint(1, 1700000000) + field_varint(2, 500000000)
    struct_msg = field_bytes(1, field_bytes(1, "a") + field_bytes(
        2, field_bytes(6, field_bytes(1, field_fixed64(2, 0)) +
                       field_bytes(1, field_bytes(3, "s")) +
                       field_bytes(1, field_varint(4, 1)) +
                       field_bytes(1, field_varint(1, 0)))))
    any_msg = (field_bytes(1, "type.googleapis.com/clitest.Inner") +
               field_bytes(2, inner))
    wkt_wire = (field_bytes(1, ts) +
                field_bytes(2, field_varint(1, (1 << 64) - 1) +
                            field_varint(2, (1 << 64) - 5)) +
                field_bytes(3, field_varint(1, 9)) + field_bytes(4, b"") +
                field_bytes(9, struct_msg) + field_bytes(11, b"") +
                field_bytes(12, field_bytes(1, "f_int32") +
                            field_bytes(1, "nested.level")) +
                field_bytes(13, b"") + field_bytes(14, ts) +
                field_bytes(17, any_msg) +
                field_bytes(18, field_bytes(1, "type.googleapis.com/"
                                               "google.protobuf.Duration") +
                            field_bytes(2, field_varint(1, 3))))
    json_seed("wkt", 1, wkt_wire,
              '{"ts":"2023-11-14T22:13:20.5Z","dur":"-1.000000005s",'
              '"i64":"9","str":"","flag":false,"raw":"AA==","dbl":"NaN",'
              '"u32":7,"obj":{"a":[0,"s",true,null,{"b":{}}]},'
              '"anyValue":1.5,"list":[],"mask":"fInt32,nested.level",'
              '"empty":{},"times":["1970-01-01T00:00:00Z"],'
              '"values":{"k":"v"},"flt":0.1,'
              '"any":{"@type":"type.googleapis.com/clitest.Inner","text":"x"},'
              '"anys":[{"@type":"type.googleapis.com/google.protobuf.Duration",'
              '"value":"3s"}]}')
    json_seed("wkt_errors", 1, field_bytes(1, field_varint(1, 1 << 40)),
              '{"ts":"2023-13-01T00:00:00Z","any":{"@type":"x/no.Such"}}')


# ---- fuzz_nanopb: 1 byte message (0: test.common.Text, with bit 7 for
# Text.blob callbacks; 1: test.multi.v1.RangeRequest; 2: Ping), then the
# wire message ----

def nanopb_seeds():
    text = field_bytes(1, "hello") + field_bytes(2, b"\x00blob\xff")
    put("nanopb", "text", b"\x00" + text)
    put("nanopb", "text_callbacks", b"\x80" + text + field_bytes(2, "last"))
    put("nanopb", "text_max", b"\x00" + field_bytes(1, "t" * 63))
    put("nanopb", "text_too_long", b"\x80" + field_bytes(1, "t" * 64))
    put("nanopb", "range", b"\x01" + field_varint(1, (1 << 64) - 3) +
        field_varint(2, 10) + field_bytes(3, field_varint(1, 1)) +
        field_varint(99, 1))
    put("nanopb", "range_truncated", b"\x01" + field_bytes(3, b"\x08")[:-1])
    put("nanopb", "ping", b"\x02" + field_bytes(1, "note") +
        field_varint(100, 5) + field_bytes(101, "tag"))
    put("nanopb", "ping_too_long", b"\x02" + field_bytes(1, "n" * 40))


# ---- recursive messages (tests/proto/tree.proto: Node.child is field 2,
# Node.children field 3): at the depth limit, one past it, and 100,000
# deep, which overflowed the decoders' stacks before they were bounded.

def deep_node(levels, num=2, name=b""):
    msg = field_bytes(1, name) if name else b""
    for _ in range(levels):
        msg = field_bytes(num, msg)
    return msg


def tree_seeds():
    put("tree", "leaf", field_bytes(1, "leaf"))
    put("tree", "small", field_bytes(1, "root") +
        field_bytes(2, field_bytes(1, "a")) +
        field_bytes(3, field_bytes(1, "b")) + field_bytes(3, b""))
    put("tree", "depth_100", deep_node(100, 2, b"bottom"))
    put("tree", "depth_101", deep_node(101, 2))
    put("tree", "children_101", deep_node(101, 3))
    put("tree", "deep_100000", deep_node(100000))
    put("nanopb", "tree_depth_100", b"\x03" + deep_node(100, 2, b"bottom"))
    put("nanopb", "tree_children_101", b"\x03" + deep_node(101, 3))
    put("nanopb", "tree_deep_100000", b"\x03" + deep_node(100000))
    # fuzz_json: a google.protobuf.Value (clitest.Wkt.any_value, field 10)
    # whose list_value (6) holds a Value in its values (1), as deep as the
    # seed format's 64 KiB wire part allows, and JSON nested 100,000 deep.
    value = b""
    while True:
        deeper = field_bytes(6, field_bytes(1, value))
        if len(field_bytes(10, deeper)) > 65535:
            break
        value = deeper
    json_seed("wkt_deep_value", 1, field_bytes(10, value),
              '{"anyValue":' + "[" * 100000 + "]" * 100000 + "}")


# ---- fuzz_http: HTTP/1.1 with JSON, as curl and http.client send it ----

def http_request(path, body, method="POST", headers=(), chunked=False):
    head = "%s %s HTTP/1.1\r\nHost: localhost\r\n" % (method, path)
    for h in headers:
        head += h + "\r\n"
    if body is None:
        return (head + "\r\n").encode()
    body = body.encode() if isinstance(body, str) else body
    if chunked:
        head += "Transfer-Encoding: chunked\r\n\r\n"
        out = b""
        for line in body.split(b"\n"):
            if line:
                out += b"%x\r\n%s\n\r\n" % (len(line) + 1, line)
        return head.encode() + out + b"0\r\n\r\n"
    head += "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (
        len(body))
    return head.encode() + body


def http_seeds():
    svc = "/grpc.testing.TestService/"
    put("http", "get_listing", http_request("/", None, "GET"))
    put("http", "empty_call", http_request(svc + "EmptyCall", "{}"))
    put("http", "unary_call", http_request(
        svc + "UnaryCall",
        '{"responseType":"COMPRESSABLE","responseSize":3,'
        '"payload":{"body":"AAEC"},"fillUsername":true,'
        '"responseStatus":{"code":0,"message":""}}'))
    put("http", "unary_metadata", http_request(
        svc + "UnaryCall", '{"responseSize":1}',
        headers=["x-deadline-ms: 5000", "grpc-timeout: 10S",
                 "x-user: a", "x-data-bin: AAEC"]))
    put("http", "server_streaming", http_request(
        svc + "StreamingOutputCall",
        '{"responseParameters":[{"size":1},{"size":2,"intervalUs":10}]}'))
    put("http", "client_streaming_chunked", http_request(
        svc + "StreamingInputCall",
        '{"payload":{"body":"AAAA"}}\n{"payload":{}}\n', chunked=True))
    put("http", "client_streaming_sized", http_request(
        svc + "StreamingInputCall",
        '{"payload":{"body":"AA=="}} {"payload":{"body":"AAA="}}'))
    put("http", "bidi_refused", http_request(svc + "FullDuplexCall", "{}"))
    put("http", "bad_json", http_request(svc + "UnaryCall", '{"responseSize":'))
    put("http", "wrong_type", http_request(svc + "UnaryCall",
                                           '{"payload":{"body":5}}'))
    put("http", "unknown_method", http_request(svc + "Nope", "{}"))
    put("http", "pipelined",
        http_request(svc + "EmptyCall", "{}") +
        http_request(svc + "UnaryCall", '{"responseSize":2}') +
        http_request("/", None, "GET"))
    put("http", "expect_continue", http_request(
        svc + "UnaryCall", "{}", headers=["Expect: 100-continue"]))
    put("http", "http10", b"GET / HTTP/1.0\r\n\r\n")


def main():
    targets()
    access()
    codegen()
    request()
    socket_seeds()
    json_seeds()
    nanopb_seeds()
    tree_seeds()
    http_seeds()
    for d in sorted(os.listdir(OUT)):
        print("%-8s %d seeds" % (d, len(os.listdir(os.path.join(OUT, d)))))


if __name__ == "__main__":
    sys.exit(main())
