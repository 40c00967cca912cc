/* Fuzzes the protobuf-c codec (runtime/codec_protobuf_c.c) on a message
 * type that contains itself, test.tree.Node (tests/proto/tree.proto), as
 * the runtime drives it: decode arbitrary bytes, and for what decodes,
 * encode, decode again and encode to the same bytes.
 *
 * protobuf_c_message_unpack() recurses once per level of nesting; the
 * codec refuses a message nested deeper than PRPC_MAX_DEPTH before it
 * recurses. Asserted: such a message never decodes (the seeds hold one
 * nested 100,000 deep, which overflowed the stack before the check), one
 * that decodes re-encodes identically, and nothing leaks (ASan). */
#include <string.h>

#include <piperpc/piperpc.h>

#include "fuzz.h"
#include "tree.pb-c.h"
#include "wire_depth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const prpc_codec *c = &prpc_codec_protobuf_c;
  const void *t = &test__tree__node__descriptor;
  int deep = prpc__wire_depth_check(t, c->submessage, data, size) ==
             PRPC__WIRE_TOO_DEEP;
  void *m = c->decode(t, data, size, NULL);
  if (deep)
    FUZZ_ASSERT(m == NULL);
  if (!m)
    return 0;
  size_t n1 = c->encoded_size(t, m);
  uint8_t *b1 = malloc(n1 + 1);
  FUZZ_ASSERT(b1 && c->encode(t, m, b1) == n1);
  void *m2 = c->decode(t, b1, n1, NULL);
  FUZZ_ASSERT(m2);
  size_t n2 = c->encoded_size(t, m2);
  uint8_t *b2 = malloc(n2 + 1);
  FUZZ_ASSERT(b2 && c->encode(t, m2, b2) == n2);
  FUZZ_ASSERT(n1 == n2 && memcmp(b1, b2, n1) == 0);
  free(b1);
  free(b2);
  c->free(t, m, NULL);
  c->free(t, m2, NULL);
  return 0;
}
