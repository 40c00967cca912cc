/* The protobuf-c message codec. */
#include "internal.h"

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

static void *pbc_decode(const void *type, const uint8_t *data, size_t len,
                        const prpc_allocator *alloc) {
  return protobuf_c_message_unpack((const ProtobufCMessageDescriptor *)type,
                                   (ProtobufCAllocator *)alloc, len, data);
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
};
