/* How deep an encoded message nests, checked before it is decoded.
 *
 * protobuf-c and nanopb decode a sub-message by calling themselves, with
 * no limit: a message type that contains itself (a tree,
 * google.protobuf.Struct, DescriptorProto) can be sent as a couple of
 * megabytes nested hundreds of thousands of levels deep, and the decoder
 * then runs off the end of the thread's stack. This walk follows the
 * message's fields through its type description, without recursion (an
 * explicit stack of PRPC_MAX_DEPTH entries), and refuses a message whose
 * sub-messages nest deeper than PRPC_MAX_DEPTH, protobuf's own default
 * limit. It reads each byte at most once; a message that does not parse is
 * left to the decoder, which refuses it. The same file is built into
 * libpiperpc (protobuf-c) and into the nanopb codec's library. */
#include "wire_depth.h"

#define WT_VARINT 0
#define WT_I64 1
#define WT_LEN 2
#define WT_SGROUP 3
#define WT_EGROUP 4
#define WT_I32 5

/* Reads a varint; returns 0, or -1 at the end of the data or after ten
 * bytes. */
static int varint(const uint8_t **p, const uint8_t *end, uint64_t *out) {
  uint64_t v = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    if (*p >= end)
      return -1;
    uint8_t b = *(*p)++;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *out = v;
      return 0;
    }
  }
  return -1;
}

int prpc__wire_depth_check(const void *type, prpc__wire_sub_fn sub,
                           const uint8_t *data, size_t len) {
  struct level {
    const void *type;
    const uint8_t *end;
  } stack[PRPC_MAX_DEPTH + 1];
  int depth = 0;
  const uint8_t *p = data;
  stack[0].type = type;
  stack[0].end = data + len;
  for (;;) {
    uint64_t key, n;
    while (p == stack[depth].end) {
      if (depth == 0)
        return PRPC__WIRE_OK;
      depth--;
    }
    if (varint(&p, stack[depth].end, &key) != 0)
      return PRPC__WIRE_MALFORMED;
    switch (key & 7) {
    case WT_VARINT:
      if (varint(&p, stack[depth].end, &n) != 0)
        return PRPC__WIRE_MALFORMED;
      break;
    case WT_I64:
      if ((size_t)(stack[depth].end - p) < 8)
        return PRPC__WIRE_MALFORMED;
      p += 8;
      break;
    case WT_I32:
      if ((size_t)(stack[depth].end - p) < 4)
        return PRPC__WIRE_MALFORMED;
      p += 4;
      break;
    case WT_LEN: {
      const void *child;
      if (varint(&p, stack[depth].end, &n) != 0 ||
          n > (uint64_t)(stack[depth].end - p))
        return PRPC__WIRE_MALFORMED;
      child = key >> 3 <= 0x1fffffff
                  ? sub(stack[depth].type, (uint32_t)(key >> 3))
                  : NULL;
      if (!child) {
        p += n; /* bytes, a string, packed scalars, or unknown */
        break;
      }
      if (depth == PRPC_MAX_DEPTH)
        return PRPC__WIRE_TOO_DEEP;
      depth++;
      stack[depth].type = child;
      stack[depth].end = p + n;
      break;
    }
    default: /* groups (which neither decoder here takes) and the rest */
      return PRPC__WIRE_MALFORMED;
    }
  }
}
