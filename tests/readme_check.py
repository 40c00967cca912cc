#!/usr/bin/python3
"""Checks that every code block in README.md marked with
<!-- file: PATH --> is PATH verbatim, so that the README's examples are the
ones CI compiles (the install test builds examples/quickstart)."""
import re
import sys

root = sys.argv[1]
text = open(root + "/README.md", encoding="utf-8").read()
blocks = re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", text, re.S)
if not blocks:
    sys.exit("README.md has no <!-- file: --> blocks")
for path, body in blocks:
    want = open(root + "/" + path, encoding="utf-8").read()
    if body != want:
        sys.exit("README.md's copy of %s differs from the file" % path)
    print("README block matches %s" % path)
