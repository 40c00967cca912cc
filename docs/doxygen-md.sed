# Doxygen input filter for docs/*.md: the pages are written for GitHub
# (heading anchors by GitHub's rules, links into the source tree), which
# Doxygen 1.9 cannot resolve. On the way into Doxygen only:
#   - a link to another page's heading links to that page;
#   - a link to a heading of the same page, or to a file outside docs/
#     (../README.md, ../include/..., man/prpc.1), becomes its plain text.
s,\[\([^]]*\)\](\([a-z]*\.md\)#[^)]*),[\1](\2),g
s,\[\([^]]*\)\](#[^)]*),\1,g
s,\[\([^]]*\)\](\.\./[^)]*),\1,g
s,\[\([^]]*\)\](man/[^)]*),\1,g
