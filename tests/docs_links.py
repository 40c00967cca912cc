#!/usr/bin/python3
"""Checks the links of README.md and docs/*.md, without the network: every
relative link ([text](path), ![alt](path), [ref]: path) names a file or
directory that exists, and every #anchor names a heading of the page it
points into, by GitHub's rules (lowercase; punctuation other than - and _
dropped; spaces to -; a repeated heading gets -1, -2, ...), or an
explicit <a name="..."> / id="...". Links to other sites are not followed.
Code blocks, code spans and HTML comments are not looked at.

usage: docs_links.py SOURCE_DIR"""
import glob
import os
import re
import sys

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
COMMENT = re.compile(r"<!--.*?-->", re.S)
CODE_SPAN = re.compile(r"(`+)(?:.+?)\1", re.S)
INLINE = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFDEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$", re.M)
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"|\sid=\"([^\"]+)\"")


def strip_code(text):
    text = FENCE.sub("", text)
    text = COMMENT.sub("", text)
    return text


def slug(heading):
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links
    text = re.sub(r"<[^>]+>", "", text)                          # HTML tags
    text = text.strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in "-_ ")
    return text.replace(" ", "-")


def anchors(path, cache={}):
    if path not in cache:
        text = COMMENT.sub("", FENCE.sub("", open(path, encoding="utf-8").read()))
        found, seen = set(), {}
        for m in HEADING.finditer(text):
            s = slug(m.group(2))
            n = seen.get(s, 0)
            seen[s] = n + 1
            found.add(s if n == 0 else "%s-%d" % (s, n))
        for m in HTML_ANCHOR.finditer(text):
            found.add(m.group(1) or m.group(2))
        cache[path] = found
    return cache[path]


def links(text):
    body = CODE_SPAN.sub("", strip_code(text))
    for m in INLINE.finditer(body):
        yield m.group(1)
    for m in REFDEF.finditer(body):
        yield m.group(1)


def main():
    root = os.path.abspath(sys.argv[1])
    pages = [os.path.join(root, "README.md")]
    pages += sorted(glob.glob(os.path.join(root, "docs", "*.md")))
    errors, checked = [], 0
    for page in pages:
        rel = os.path.relpath(page, root)
        for target in links(open(page, encoding="utf-8").read()):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
                continue  # https:, mailto:: not followed
            checked += 1
            path, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(page), path)) \
                if path else page
            if not os.path.exists(dest):
                errors.append("%s: link to %s: no such file" % (rel, target))
                continue
            if not os.path.realpath(dest).startswith(root + os.sep) and \
                    os.path.realpath(dest) != root:
                errors.append("%s: link to %s: outside the source tree"
                              % (rel, target))
                continue
            if anchor:
                if not dest.endswith(".md"):
                    errors.append("%s: link to %s: an anchor into a file that "
                                  "is not Markdown" % (rel, target))
                elif anchor not in anchors(dest):
                    errors.append("%s: link to %s: no heading #%s in %s"
                                  % (rel, target, anchor,
                                     os.path.relpath(dest, root)))
    for e in errors:
        print(e)
    print("%d relative links checked in %d pages, %d broken"
          % (checked, len(pages), len(errors)))
    if errors or not checked:
        sys.exit(1)


if __name__ == "__main__":
    main()
