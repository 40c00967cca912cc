#!/usr/bin/python3
"""prpc's JSON mapping against the reference: Python protobuf's json_format
(Debian python3-protobuf). For each JSON text, `prpc encode` must give the
message json_format.Parse gives, and `prpc decode` of the bytes Python
serializes must give the JSON json_format.MessageToJson gives (compared as
parsed JSON). Texts Python rejects, prpc must reject with exit code 2.

    json_oracle.py --prpc PATH --src-dir DIR
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

from google.protobuf import json_format

GOOD = {
    "clitest.AllTypes": [
        '{}',
        '{"fDouble":1.5,"fFloat":0.1,"fInt64":"-9223372036854775808",'
        '"fUint64":"18446744073709551615","fInt32":-7,"fFixed64":"123",'
        '"fFixed32":4294967295,"fBool":true,"fString":"h\\u00e9 \\"q\\"",'
        '"fBytes":"AAEC/w==","fUint32":42,"fColor":"GREEN","fSfixed32":-3,'
        '"fSfixed64":"-4","fSint32":-5,"fSint64":"-6"}',
        '{"f_int64":12,"f_uint64":"7","fDouble":"NaN","fFloat":"-Infinity"}',
        '{"fDouble":1e300,"fFloat":3.4028234663852886e38,"fInt32":"12"}',
        '{"rInt32":[1,-2,3],"rString":["a",""],"rInner":[{"text":"x"},'
        '{"n":2}],"rColor":["RED","GREEN"],"rDouble":[0.5,-0.25],'
        '"rSint64":["-1","2"]}',
        '{"mStrInt":{"a":"5","b":"-6"},"mIntInner":{"-1":{"text":"neg"},'
        '"7":{}},"mBoolStr":{"true":"yes","false":""}}',
        '{"cInner":{"n":3}}', '{"cText":""}',
        '{"nested":{"level":"HIGH","children":[{"children":[{"level":1}]}]}}',
        '{"fInner":{}}', '{"fBytes":"_-8"}', '{"fColor":2}',
        '{"fString":"a\\u0000b","rString":["\\u0000"]}',
    ],
    "clitest.Wkt": [
        '{}',
        '{"ts":"1972-01-01T10:00:20.021Z","dur":"1.000340012s"}',
        '{"ts":"0001-01-01T00:00:00Z","dur":"-315576000000s"}',
        '{"ts":"9999-12-31T23:59:59.999999999Z","dur":"315576000000.999999999s"}',
        '{"ts":"1969-12-31T23:59:59.5Z","dur":"-0.5s"}',
        '{"ts":"2024-02-29T12:00:00+01:30","dur":"0s"}',
        '{"ts":"2000-01-01T00:00:00.000001Z","dur":"0.001s"}',
        '{"i64":"-5","str":"","flag":false,"raw":"AA==","dbl":2.5,"u32":7,'
        '"flt":0.1}',
        '{"i64":0,"str":"x","flag":true,"dbl":"Infinity"}',
        '{"obj":{"a":1,"b":[true,null,"s",{"c":{}}],"d":{"e":-0.5}}}',
        '{"obj":{}}', '{"list":[]}', '{"list":[1,"two",[3],{"f":null}]}',
        '{"anyValue":"text"}', '{"anyValue":{"k":[1,2]}}',
        '{"anyValue":false}', '{"anyValue":12.5}',
        '{"mask":"a.bC,dEf.g"}', '{"mask":""}', '{"empty":{}}',
        '{"times":["1970-01-01T00:00:00Z","2038-01-19T03:14:08Z"]}',
        '{"values":{"x":1,"y":"s","z":null,"w":[{}]}}',
        '{"any":{"@type":"type.googleapis.com/google.protobuf.Duration",'
        '"value":"1.5s"}}',
        '{"any":{"@type":"type.googleapis.com/clitest.Wkt","i64":"5",'
        '"dur":"2s","any":{"@type":"type.googleapis.com/google.protobuf.'
        'Int32Value","value":-3}}}',
        '{"anys":[{"@type":"type.googleapis.com/google.protobuf.Struct",'
        '"value":{"a":[1]}},{"@type":"type.googleapis.com/google.protobuf.'
        'Empty"},{"@type":"example.com/clitest.Wkt"}]}',
    ],
}

BAD = {
    "clitest.AllTypes": [
        '{"nope":1}', '{"fString":5}', '{"fInt32":2147483648}',
        '{"fInt32":1.5}', '{"fUint64":"-1"}', '{"fColor":"BLUE"}',
        '{"rInner":[{},{"n":"x"}]}', '{"cText":"a","cInner":{}}',
        '{"mIntInner":{"x":{}}}', '{"fBool":"true"}',
        '[1]', '{"fFloat":1e40}', '{"rInt32":[1,null]}', '{"fBytes":"a*b"}',
    ],
    "clitest.Wkt": [
        '{"ts":"2020-13-01T00:00:00Z"}', '{"ts":"2020-01-01 00:00:00Z"}',
        '{"ts":"2020-01-01T00:00:00"}', '{"ts":1}', '{"dur":"1.5"}',
        '{"dur":"s"}', '{"i64":"x"}',
        '{"flag":"yes"}', '{"obj":[]}', '{"list":{}}', '{"mask":3}',
        '{"ts":"10000-01-01T00:00:00Z"}', '{"ts":"Z"}',
        '{"ts":"2020-01-01T00:00:00+01"}',
        '{"ts":"2020-01-01T00:00:00Z\\u0000"}',
        '{"any":{"@type":"type.googleapis.com/no.Such"}}',
        '{"any":{"value":"1s"}}',
        '{"any":{"@type":"type.googleapis.com/google.protobuf.Duration",'
        '"seconds":1}}',
    ],
}


def same(a, b):
    """Equal messages (NaN included: compared as deterministic bytes)."""
    return a == b or (a.SerializeToString(deterministic=True) ==
                      b.SerializeToString(deterministic=True))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prpc", required=True)
    ap.add_argument("--src-dir", required=True)
    a = ap.parse_args()
    here = os.path.abspath(os.path.join(a.src_dir, "tests", "cli"))
    with tempfile.TemporaryDirectory(prefix="prpc-oracle-") as tmp:
        pb = os.path.join(tmp, "set.pb")
        protos = ["types.proto", "wkt.proto"]
        subprocess.run(["protoc", "-I" + here, "--include_imports", "-o", pb,
                        "--python_out=" + tmp] + protos, check=True, cwd=here)
        sys.path.insert(0, tmp)
        import types_pb2
        import wkt_pb2
        classes = {"clitest.AllTypes": types_pb2.AllTypes,
                   "clitest.Wkt": wkt_pb2.Wkt}
        checked = 0
        for name, texts in GOOD.items():
            cls = classes[name]
            for text in texts:
                want = json_format.Parse(text, cls())
                r = subprocess.run([a.prpc, "--proto-set", pb, "encode", name,
                                    text], capture_output=True)
                if r.returncode != 0:
                    sys.exit("encode %s: exit %d: %s" %
                             (text, r.returncode, r.stderr.decode()))
                got = cls.FromString(r.stdout)
                if not same(got, want):
                    sys.exit("encode %s:\n got %s\nwant %s" % (text, got, want))
                r = subprocess.run([a.prpc, "--proto-set", pb, "decode", name],
                                   input=want.SerializeToString(),
                                   capture_output=True)
                if r.returncode != 0:
                    sys.exit("decode %s: exit %d: %s" %
                             (text, r.returncode, r.stderr.decode()))
                out = r.stdout.decode()
                if out.count("\n") != 1 or not out.endswith("\n"):
                    sys.exit("decode %s: not one line: %r" % (text, out))
                ref = json_format.MessageToJson(want)
                if json.loads(out) != json.loads(ref):
                    sys.exit("decode %s:\n prpc   %s\n python %s" %
                             (text, out.strip(), ref.replace("\n", "")))
                # And what prpc printed reads back as the same message.
                r = subprocess.run([a.prpc, "--proto-set", pb, "encode", name,
                                    out], capture_output=True)
                if r.returncode != 0 or not same(cls.FromString(r.stdout),
                                                 want):
                    sys.exit("decode %s: %s does not read back: %s" %
                             (text, out, r.stderr.decode()))
                checked += 1
        for name, texts in BAD.items():
            for text in texts:
                try:
                    json_format.Parse(text, classes[name]())
                    sys.exit("python accepts %s" % text)
                except (json_format.ParseError, KeyError, TypeError,
                        ValueError):
                    pass  # (an Any of a well-known type without "value":
                    # KeyError in python3-protobuf 3.21)
                r = subprocess.run([a.prpc, "--proto-set", pb, "encode", name,
                                    text], capture_output=True)
                err = r.stderr.decode()
                if r.returncode != 2 or not err.startswith("prpc: ") or r.stdout:
                    sys.exit("%s: exit %d, stderr %r" % (text, r.returncode, err))
                checked += 1
    print("json oracle: %d texts agree with python's json_format" % checked)


if __name__ == "__main__":
    main()
