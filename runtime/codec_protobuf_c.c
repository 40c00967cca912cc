/* The protobuf-c message codec. */
#include "internal.h"
#include "wire_depth.h"

#include <protobuf-c/protobuf-c.h>

/* prpc_allocator has ProtobufCAllocator's layout, so the pointer converts. */
_Static_assert(sizeof(prpc_allocator) == sizeof(ProtobufCAllocator),
               "allocator layouts differ");

static size_t pbc_encoded_size(const void *type, const void *msg) {
  PRPC__UNUSED(type);
  return protobuf_c_message_get_packed_size((const ProtobufCMessage *)msg);
}

static size_t pbc_encode(const void *type, const void *msg, uint8_t *out) {
  PRPC__UNUSED(type);
  return protobuf_c_message_pack((const ProtobufCMessage *)msg, out);
}

/* protobuf-c 1.4 accepts field number 0, which protobuf forbids, when its
 * tag is encoded in more than one byte (0x80 0x00): it keeps it as an
 * unknown field, and packing the message again gives bytes that no
 * protobuf library decodes. Found by fuzz_request. Such a message is
 * refused here, at any depth, so that handlers only ever see messages
 * that re-encode. */
static int pbc_field_numbers_ok(const ProtobufCMessage *m) {
  const ProtobufCMessageDescriptor *d = m->descriptor;
  for (unsigned i = 0; i < m->n_unknown_fields; i++)
    if (m->unknown_fields[i].tag == 0)
      return 0;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    const char *member = (const char *)m + f->offset;
    if (f->type != PROTOBUF_C_TYPE_MESSAGE)
      continue;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
      ProtobufCMessage *const *sub = *(ProtobufCMessage *const *const *)member;
      for (size_t k = 0; k < n; k++)
        if (sub[k] && !pbc_field_numbers_ok(sub[k]))
          return 0;
      continue;
    }
    if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
        *(const uint32_t *)((const char *)m + f->quantifier_offset) != f->id)
      continue; /* another member of the oneof is set */
    const ProtobufCMessage *sub = *(ProtobufCMessage *const *)member;
    if (sub && !pbc_field_numbers_ok(sub))
      return 0;
  }
  return 1;
}

const void *prpc__pbc_submessage(const void *type, uint32_t number) {
  const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(
      (const ProtobufCMessageDescriptor *)type, (unsigned)number);
  return f && f->type == PROTOBUF_C_TYPE_MESSAGE ? f->descriptor : NULL;
}

static void *pbc_decode(const void *type, const uint8_t *data, size_t len,
                        const prpc_allocator *alloc) {
  /* protobuf_c_message_unpack() recurses into sub-messages without a
   * limit: refuse a message that nests deeper than PRPC_MAX_DEPTH first. */
  if (prpc__wire_depth_check(type, prpc__pbc_submessage, data, len) ==
      PRPC__WIRE_TOO_DEEP)
    return NULL;
  ProtobufCMessage *m = protobuf_c_message_unpack(
      (const ProtobufCMessageDescriptor *)type, (ProtobufCAllocator *)alloc,
      len, data);
  if (m && !pbc_field_numbers_ok(m)) {
    protobuf_c_message_free_unpacked(m, (ProtobufCAllocator *)alloc);
    return NULL;
  }
  return m;
}

static void pbc_free(const void *type, void *msg,
                     const prpc_allocator *alloc) {
  PRPC__UNUSED(type);
  if (msg)
    protobuf_c_message_free_unpacked((ProtobufCMessage *)msg,
                                     (ProtobufCAllocator *)alloc);
}

static size_t pbc_struct_size(const void *type) {
  return ((const ProtobufCMessageDescriptor *)type)->sizeof_message;
}

static void pbc_init(const void *type, void *msg) {
  protobuf_c_message_init((const ProtobufCMessageDescriptor *)type, msg);
}

const prpc_codec prpc_codec_protobuf_c = {
    "protobuf-c", pbc_encoded_size, pbc_encode, pbc_decode,
    pbc_free,     pbc_struct_size,  pbc_init,
    NULL,         NULL, /* decodes into new messages only */
    prpc__pbc_submessage,
};
