/* The nanopb message codec (library piperpc_nanopb). Messages are decoded
 * into storage the caller provides; nothing here allocates. */
#include <piperpc/nanopb.h>

#include "wire_depth.h"

#include <pb_common.h>
#include <pb_decode.h>
#include <pb_encode.h>
#include <stdint.h>
#include <string.h>

static const pb_msgdesc_t *fields_of(const void *type) {
  return ((const prpc_nanopb_type *)type)->fields;
}

/* The runtime calls encoded_size() and then encode() for the same message
 * on the same thread, with a buffer of exactly that size: encode() takes
 * the size from here instead of running the encode callbacks once more. */
static _Thread_local struct {
  const void *msg;
  size_t size;
} last;

static size_t npb_encoded_size(const void *type, const void *msg) {
  size_t size;
  last.msg = NULL;
  if (!pb_get_encoded_size(&size, fields_of(type), msg))
    return (size_t)-1;
  last.msg = msg;
  last.size = size;
  return size;
}

static size_t npb_encode(const void *type, const void *msg, uint8_t *out) {
  /* out has exactly encoded_size() bytes: a callback that writes more the
   * second time fails here instead of overrunning. */
  size_t size = last.size;
  pb_ostream_t os;
  if (last.msg != msg && !pb_get_encoded_size(&size, fields_of(type), msg))
    return (size_t)-1;
  last.msg = NULL;
  os = pb_ostream_from_buffer(out, size);
  if (!pb_encode(&os, fields_of(type), msg))
    return (size_t)-1;
  return os.bytes_written;
}

static size_t npb_struct_size(const void *type) {
  return ((const prpc_nanopb_type *)type)->size;
}

static void npb_init(const void *type, void *msg) {
  /* All zero is <Msg>_init_zero; decoding nothing then applies proto2
   * defaults. A missing required field fails that decode: ignored here. */
  pb_istream_t is = pb_istream_from_buffer(NULL, 0);
  memset(msg, 0, npb_struct_size(type));
  (void)pb_decode(&is, fields_of(type), msg);
}

/* nanopb's messages for data that does not fit the static sizes. */
static int is_overflow(const char *err) {
  static const char *const overflow[] = {
      "string overflow", "bytes overflow", "array overflow",
      "too many array entries", "array max size exceeded",
      "bytes size exceeded"};
  for (size_t i = 0; i < sizeof(overflow) / sizeof(overflow[0]); i++)
    if (strcmp(err, overflow[i]) == 0)
      return 1;
  return 0;
}

static const void *npb_submessage(const void *type, uint32_t number);

static const char *npb_decode_into(const void *type, const uint8_t *data,
                                   size_t len, void *msg) {
  pb_istream_t is = pb_istream_from_buffer(data, len);
  const char *err;
  /* pb_decode() recurses into sub-messages (pointer fields can make a type
   * recursive): refuse a message nested deeper than PRPC_MAX_DEPTH. */
  if (prpc__wire_depth_check(type, npb_submessage, data, len) ==
      PRPC__WIRE_TOO_DEEP)
    return "it nests more than 100 messages deep";
  if (pb_decode(&is, fields_of(type), msg))
    return NULL;
  /* pb_decode() has released what it allocated (FT_POINTER fields). */
  err = PB_GET_ERROR(&is);
  if (is_overflow(err))
    return "a field is larger than its fixed size (nanopb max_size or "
           "max_count)";
  return err; /* a static string of nanopb's */
}

static void npb_release(const void *type, void *msg) {
  pb_release(fields_of(type), msg);
}

/* A sub-message field's type, for the runtime's depth check: nanopb keeps
 * a pb_msgdesc_t for message fields that it decodes itself (static and
 * pointer ones); callback fields are the application's to decode. The
 * runtime's types are prpc_nanopb_type, nanopb's are pb_msgdesc_t, so the
 * walk below the top level runs on nanopb's own descriptors, told apart by
 * a tag the top level never has. */
static const void *npb_sub_desc(const pb_msgdesc_t *desc, uint32_t number) {
  pb_field_iter_t it;
  if (!pb_field_iter_begin_const(&it, desc, NULL) ||
      !pb_field_iter_find(&it, number))
    return NULL;
  if ((PB_LTYPE(it.type) == PB_LTYPE_SUBMESSAGE ||
       PB_LTYPE(it.type) == PB_LTYPE_SUBMSG_W_CB) &&
      PB_ATYPE(it.type) != PB_ATYPE_CALLBACK)
    return it.submsg_desc;
  return NULL;
}

static const void *npb_submessage(const void *type, uint32_t number) {
  const prpc_nanopb_type *t = type;
  /* Only the top level is a prpc_nanopb_type: wrap nothing, return
   * nanopb's descriptor marked with the low bit (descriptors are
   * aligned), and unmark it below. */
  const pb_msgdesc_t *desc =
      ((uintptr_t)type & 1u)
          ? (const pb_msgdesc_t *)((uintptr_t)type & ~(uintptr_t)1u)
          : t->fields;
  const void *sub = npb_sub_desc(desc, number);
  return sub ? (const void *)((uintptr_t)sub | 1u) : NULL;
}

const prpc_codec prpc_codec_nanopb = {
    "nanopb",        npb_encoded_size, npb_encode,      NULL, NULL,
    npb_struct_size, npb_init,         npb_decode_into, npb_release,
    npb_submessage,
};
