#!/usr/bin/python3
"""Checks the code blocks of README.md and docs/*.md, so that what the
documentation shows is what CI builds and runs.

Every fenced block with a language (```c, ```sh, ```cmake, ```proto, ...)
is a program or a command, and must be marked on the line just above it:

  <!-- file: PATH -->        the block is PATH verbatim (a file the build
                             compiles or a test runs: examples/quickstart,
                             examples/tutorial/tutorial.sh, ...)
  <!-- excerpt: PATH -->     the block is a verbatim piece of PATH (lines
                             of a program a test builds and runs)
  <!-- run -->               docs_commands.py runs it (docs.commands)
  <!-- not-run: REASON -->   it cannot run in ctest (it installs packages,
                             builds the tree, runs ctest itself); REASON
                             says so, and names the test that does the
                             same where there is one

A block without a language is output or a picture; it may be marked
<!-- file: PATH --> too (a data file), and <!-- output --> after a
<!-- run --> block (docs_commands.py checks it).

usage: readme_check.py SOURCE_DIR"""
import glob
import os
import re
import sys

FENCE = re.compile(r"^```(\S*)\n(.*?)^```\n", re.S | re.M)
MARK = re.compile(r"<!-- (file|excerpt): (\S+) -->|<!-- (run|output) -->|"
                  r"<!-- not-run: (.+?) -->")


def pages(root):
    out = [os.path.join(root, "README.md")]
    out += sorted(glob.glob(os.path.join(root, "docs", "*.md")))
    return out


def blocks(text):
    """(line number, language, body, marker line or '') of each block."""
    for m in FENCE.finditer(text):
        start = text.count("\n", 0, m.start()) + 1
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        yield start, m.group(1), m.group(2), before


def main():
    root = sys.argv[1]
    errors, counts, not_run = [], {}, []
    for page in pages(root):
        rel = os.path.relpath(page, root)
        text = open(page, encoding="utf-8").read()
        if text.count("\n```") % 2 and not text.startswith("```"):
            errors.append("%s: an odd number of ``` fences" % rel)
        for line, lang, body, before in blocks(text):
            where = "%s:%d" % (rel, line)
            m = MARK.fullmatch(before.strip())
            kind = (m.group(1) or m.group(3) or "not-run") if m else None
            if kind is None:
                if lang:
                    errors.append("%s: a ```%s block with no <!-- file: -->, "
                                  "<!-- excerpt: -->, <!-- run --> or "
                                  "<!-- not-run: why --> above it"
                                  % (where, lang))
                continue
            counts[kind] = counts.get(kind, 0) + 1
            if kind in ("file", "excerpt"):
                path = m.group(2)
                try:
                    want = open(os.path.join(root, path),
                                encoding="utf-8").read()
                except OSError as e:
                    errors.append("%s: %s" % (where, e))
                    continue
                if kind == "file" and body != want:
                    errors.append("%s: the copy of %s differs from the file"
                                  % (where, path))
                elif kind == "excerpt" and body not in want:
                    errors.append("%s: not a verbatim piece of %s"
                                  % (where, path))
                else:
                    print("%s: %s %s" % (where, kind, path))
            elif kind == "run" and lang not in ("sh", "bash"):
                errors.append("%s: <!-- run --> on a ```%s block" % (where, lang))
            elif kind == "not-run":
                not_run.append("%s: not run: %s" % (where, m.group(4)))
    print("\n".join(not_run))
    print("blocks: " + ", ".join("%d %s" % (n, k) for k, n in sorted(counts.items())))
    if not counts.get("file"):
        errors.append("README.md and docs/ have no <!-- file: --> blocks")
    if errors:
        sys.exit("\n".join(errors))


if __name__ == "__main__":
    main()
