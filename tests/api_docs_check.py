#!/usr/bin/env python3
"""Builds the API reference with Doxygen and checks it: no Doxygen warning,
and every public function and struct of include/piperpc/*.h appears in it
with its comment.

usage: api_docs_check.py DOXYGEN DOCS_DIR SOURCE_DIR
DOCS_DIR holds the Doxyfile that CMake configured."""
import glob
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET


def text(node):
    return "".join(node.itertext()).strip() if node is not None else ""


def main():
    doxygen, docs, src = sys.argv[1:4]
    subprocess.run([doxygen, os.path.join(docs, "Doxyfile")], cwd=src,
                   check=True)
    warnings = open(os.path.join(docs, "warnings.log")).read().strip()
    if warnings:
        sys.exit("doxygen warnings:\n" + warnings)

    functions, structs = set(), set()
    for h in glob.glob(os.path.join(src, "include/piperpc/*.h")):
        code = open(h).read()
        functions |= set(re.findall(r"PRPC_API[^;{}]*?\b(prpc_\w+)\s*\(", code))
        structs |= set(re.findall(r"typedef struct (prpc_\w+) \{", code))
    if len(functions) < 20:
        sys.exit("found only %d public functions: parser broken?" % len(functions))

    documented, compounds = {}, {}
    for f in glob.glob(os.path.join(docs, "xml", "*.xml")):
        root = ET.parse(f).getroot()
        for m in root.iter("memberdef"):
            if m.get("kind") == "function":
                name = m.findtext("name")
                documented[name] = text(m.find("briefdescription")) + \
                    text(m.find("detaileddescription"))
        for c in root.iter("compounddef"):
            if c.get("kind") == "struct":
                compounds[c.findtext("compoundname")] = \
                    text(c.find("briefdescription")) + \
                    text(c.find("detaileddescription"))

    bad = [f for f in sorted(functions) if not documented.get(f)]
    bad += ["struct " + s for s in sorted(structs) if not compounds.get(s)]
    if bad:
        sys.exit("missing or empty in the API reference:\n  " + "\n  ".join(bad))
    index = os.path.join(docs, "html", "index.html")
    if "piperpc API reference" not in open(index).read():
        sys.exit(index + ": no main page")
    print("API reference: %d functions, %d structs documented; %s" %
          (len(functions), len(structs), index))


if __name__ == "__main__":
    main()
