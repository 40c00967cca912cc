/* Fuzzes the nanopb codec (runtime/codec_nanopb.c) as the runtime drives
 * it: init, decode_into arbitrary bytes, release. The messages are the
 * nanopb build of the test protos (tests/codegen/proto, sizes in the
 * .options files): test.common.Text (a string of max_size 64 and bytes in
 * a pb_callback_t), test.multi.v1.RangeRequest (a submessage) and the
 * proto2 Ping (max_size 32, extension ranges), and test.tree.Node, which
 * contains itself through pointer fields (nanopb allocates them; a
 * message nested deeper than PRPC_MAX_DEPTH is refused before pb_decode()
 * recurses: the seeds hold one 100,000 deep). The first byte picks the
 * message and whether Text.blob gets decode/encode callbacks; the rest is
 * the wire message.
 *
 * A failed decode must say why. A successful one must re-encode
 * (encoded_size, then encode with exactly that many bytes), and that
 * encoding must decode again and re-encode to the same bytes. release()
 * is always called; ASan's leak check covers the callbacks' memory. */
#include <pb_decode.h>
#include <pb_encode.h>
#include <string.h>

#include <piperpc/nanopb.h>

#include "common/types.pb.h"
#include "fuzz.h"
#include "multi.pb.h"
#include "nopkg.pb.h"
#include "tree.pb.h"

static const prpc_nanopb_type TYPES[] = {
    {test_common_Text_fields, sizeof(test_common_Text)},
    {test_multi_v1_RangeRequest_fields, sizeof(test_multi_v1_RangeRequest)},
    {Ping_fields, sizeof(Ping)},
    {test_tree_Node_fields, sizeof(test_tree_Node)},
};
#define N_TYPES (sizeof(TYPES) / sizeof(TYPES[0]))

/* Text.blob's bytes, on the heap; the last occurrence wins. */
typedef struct blob {
  uint8_t *data;
  size_t len;
} blob;

static bool blob_decode(pb_istream_t *stream, const pb_field_t *field,
                        void **arg) {
  blob *b = *arg;
  size_t n = stream->bytes_left;
  uint8_t *p = malloc(n ? n : 1);
  (void)field;
  if (!p)
    return false;
  if (!pb_read(stream, p, n)) {
    free(p);
    return false;
  }
  free(b->data);
  b->data = p;
  b->len = n;
  return true;
}

static bool blob_encode(pb_ostream_t *stream, const pb_field_t *field,
                        void *const *arg) {
  const blob *b = *arg;
  if (b->len == 0)
    return true;
  return pb_encode_tag_for_field(stream, field) &&
         pb_encode_string(stream, b->data, b->len);
}

/* Decodes data into a fresh message of type t (with Text.blob callbacks
 * into *b when b is given); returns the re-encoding (malloc'd, length in
 * *out_len) or NULL when the decode failed. */
static uint8_t *decode_encode(const prpc_nanopb_type *t, blob *b,
                              const uint8_t *data, size_t len,
                              size_t *out_len) {
  const prpc_codec *c = &prpc_codec_nanopb;
  void *msg;
  const char *err;
  uint8_t *out = NULL;
  size_t size, n;

  FUZZ_ASSERT(c->struct_size(t) == t->size);
  msg = malloc(t->size);
  FUZZ_ASSERT(msg);
  c->init(t, msg);
  if (b) {
    test_common_Text *text = msg;
    text->blob.funcs.decode = blob_decode;
    text->blob.arg = b;
  }
  err = c->decode_into(t, data, len, msg);
  if (err) {
    FUZZ_ASSERT(err[0] != '\0');
  } else {
    if (b) {
      test_common_Text *text = msg;
      text->blob.funcs.encode = blob_encode;
      text->blob.arg = b;
    }
    size = c->encoded_size(t, msg);
    FUZZ_ASSERT(size != (size_t)-1);
    out = malloc(size + 1);
    FUZZ_ASSERT(out);
    n = c->encode(t, msg, out);
    FUZZ_ASSERT(n == size);
    *out_len = n;
  }
  c->release(t, msg);
  free(msg);
  return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const prpc_nanopb_type *t;
  int callbacks;
  blob b1 = {NULL, 0}, b2 = {NULL, 0};
  uint8_t *r1, *r2;
  size_t n1 = 0, n2 = 0;

  if (size < 1)
    return 0;
  t = &TYPES[(data[0] & 0x7f) % N_TYPES];
  callbacks = t == &TYPES[0] && (data[0] & 0x80);
  r1 = decode_encode(t, callbacks ? &b1 : NULL, data + 1, size - 1, &n1);
  if (r1) {
    r2 = decode_encode(t, callbacks ? &b2 : NULL, r1, n1, &n2);
    FUZZ_ASSERT(r2 != NULL);
    FUZZ_ASSERT(n2 == n1 && memcmp(r1, r2, n1) == 0);
    if (callbacks)
      FUZZ_ASSERT(b1.len == b2.len &&
                  (b1.len == 0 || memcmp(b1.data, b2.data, b1.len) == 0));
    free(r2);
  }
  free(r1);
  free(b1.data);
  free(b2.data);
  return 0;
}
