# Doxygen input filter for include/piperpc/*.h: the headers use plain C
# comments; this turns them into documentation comments on the way into
# Doxygen, so the headers stay as they are.
#   - the first comment of a file describes the file;
#   - a comment that starts a line documents what follows it;
#   - a comment after a member or enumerator documents that member;
#   - the "-----" rulers and numbered section titles stay plain comments.
1s,^/\* ,/** @file\n * ,
/^[[:space:]]*\/\* -\{4,\}/b
/^[[:space:]]*\/\* [0-9][0-9]*\. /b
s,^\([[:space:]]*\)/\* ,\1/** ,
s,\([;,]\)\([[:space:]]*\)/\* ,\1\2/**< ,
s,\([A-Za-z0-9_]\)\([[:space:]][[:space:]]*\)/\* \([^*]*\*/\)$,\1\2/**< \3,
