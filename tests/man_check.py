#!/usr/bin/python3
"""Renders the man pages of docs/man/ as man(1) would, with every groff
warning on (-ww), and fails on any warning or error; checks that each page
is named after its file, and that prpc.1 names every long option of
cli/prpc.c.

usage: man_check.py GROFF SOURCE_DIR"""
import glob
import os
import re
import subprocess
import sys


def main():
    groff, src = sys.argv[1], sys.argv[2]
    pages = sorted(glob.glob(os.path.join(src, "docs", "man", "*.[1-8]")))
    names = {os.path.basename(p) for p in pages}
    errors = []
    for want in ("prpc.1", "protoc-gen-prpc.1"):
        if want not in names:
            errors.append("docs/man/%s is missing" % want)
    for page in pages:
        base = os.path.basename(page)
        before = len(errors)
        r = subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z", page],
                           capture_output=True, text=True)
        if r.returncode != 0 or r.stderr.strip():
            errors.append("%s: groff -ww: exit %d\n%s"
                          % (base, r.returncode, r.stderr))
        th = re.search(r"^\.TH\s+(\S+)\s+(\d)", open(page).read(), re.M)
        name, section = base.rsplit(".", 1)
        if not th or th.group(1).lower() != name or th.group(2) != section:
            errors.append("%s: .TH does not name %s(%s)" % (base, name, section))
        # man(1) itself, when there is one: the same page, as a user sees it.
        if os.path.exists("/usr/bin/man"):
            r = subprocess.run(["man", "--warnings=w", "-l", page],
                               capture_output=True, text=True,
                               env=dict(os.environ, MANWIDTH="80"))
            if r.returncode != 0 or r.stderr.strip():
                errors.append("%s: man -l: exit %d\n%s"
                              % (base, r.returncode, r.stderr))
            elif "NAME" not in re.sub(".\b", "", r.stdout):
                errors.append("%s: man -l printed no NAME section" % base)
        if len(errors) == before:
            print("%s: rendered without warnings" % base)
    prpc_c = os.path.join(src, "cli", "prpc.c")
    if "prpc.1" in names and os.path.exists(prpc_c):
        page = open(os.path.join(src, "docs", "man", "prpc.1")).read()
        for opt in re.findall(r'\{"([a-z-]+)",\s*(?:no|required|optional)_argument',
                              open(prpc_c).read()):
            if "\\-\\-" + opt.replace("-", "\\-") not in page:
                errors.append("prpc.1 does not document --%s (cli/prpc.c)" % opt)
    if errors:
        sys.exit("\n".join(errors))


if __name__ == "__main__":
    main()
