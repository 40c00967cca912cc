#!/usr/bin/python3
"""Runs the command blocks of README.md and docs/*.md marked <!-- run -->
(see readme_check.py), each as written, with bash, in a copy of the
source tree made of symlinks whose build/ is the build directory under
test. "/tmp/" in a block is moved into a fresh directory, and TCP port
8443 to a free one, so that runs do not meet. Programs a block starts in the background (&) are stopped at its
end. A block fails on a non-zero exit (bash -e), after 60 s, or when the
block after it is marked <!-- output --> and its lines do not all appear,
in that order, in the block's standard output.

usage: docs_commands.py SOURCE_DIR BUILD_DIR"""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from readme_check import MARK, blocks, pages  # noqa: E402

PROLOGUE = """set -eo pipefail
trap 'rc=$?; set +e; kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; exit $rc' EXIT
"""


def sandbox(src, build, tmp):
    root = os.path.join(tmp, "src")
    os.makedirs(root)
    for name in os.listdir(src):
        if name != "build" and not name.startswith("build-"):
            os.symlink(os.path.join(src, name), os.path.join(root, name))
    os.symlink(os.path.abspath(build), os.path.join(root, "build"))
    return root


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def in_order(want, got):
    """Every line of want appears in got, in that order."""
    it = iter(got)
    missing = [w for w in want if not any(g == w for g in it)]
    return missing


def main():
    src, build = sys.argv[1], sys.argv[2]
    failed = ran = 0
    for page in pages(src):
        rel = os.path.relpath(page, src)
        found = list(blocks(open(page, encoding="utf-8").read()))
        for i, (line, lang, body, before) in enumerate(found):
            m = MARK.fullmatch(before.strip())
            if not m or m.group(3) != "run":
                continue
            expect = None
            if i + 1 < len(found):
                nm = MARK.fullmatch(found[i + 1][3].strip())
                if nm and nm.group(3) == "output":
                    expect = found[i + 1][2].splitlines()
            tmp = tempfile.mkdtemp(prefix="prpc-docs-")
            try:
                root = sandbox(src, build, tmp)
                os.makedirs(os.path.join(tmp, "tmp"))
                script = PROLOGUE + body.replace("/tmp/", tmp + "/tmp/") \
                    .replace(":8443", ":%d" % free_port())
                where = "%s:%d" % (rel, line)
                try:
                    r = subprocess.run(["bash", "-c", script], cwd=root,
                                       capture_output=True, text=True,
                                       timeout=60, start_new_session=True)
                    out, err, rc = r.stdout, r.stderr, r.returncode
                except subprocess.TimeoutExpired as e:
                    out = e.stdout.decode() if e.stdout else ""
                    err = (e.stderr.decode() if e.stderr else "") + "\n(timed out)"
                    rc = -1
                ran += 1
                problem = None
                if rc != 0:
                    problem = "exit status %d" % rc
                elif expect is not None:
                    missing = in_order(expect, out.splitlines())
                    if missing:
                        problem = "output lacks (in order): %r" % missing
                if problem:
                    failed += 1
                    print("FAIL %s: %s\n--- block:\n%s--- stdout:\n%s--- stderr:\n%s"
                          % (where, problem, body, out, err))
                else:
                    print("ok   %s%s" % (where, " (output checked)"
                                          if expect is not None else ""))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    print("%d blocks run, %d failed" % (ran, failed))
    if failed or not ran:
        sys.exit(1)


if __name__ == "__main__":
    main()
