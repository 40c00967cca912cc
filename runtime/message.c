/* Messages in and out of gRPC byte buffers, without extra copies where the
 * buffer is one slice. */
#include "internal.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>

grpc_byte_buffer *prpc__encode(const prpc_codec *codec, const void *type,
                               const void *msg) {
  size_t size = codec->encoded_size(type, msg);
  grpc_slice slice;
  grpc_byte_buffer *bb;
  if (size == (size_t)-1)
    return NULL; /* the message cannot be encoded */
  slice = grpc_slice_malloc(size);
  if (size > 0 &&
      codec->encode(type, msg, GRPC_SLICE_START_PTR(slice)) != size) {
    grpc_slice_unref(slice);
    return NULL;
  }
  bb = grpc_raw_byte_buffer_create(&slice, 1);
  grpc_slice_unref(slice); /* the buffer holds its own reference */
  return bb;
}

void *prpc__decode(const prpc_codec *codec, const void *type,
                   grpc_byte_buffer *bb, const prpc_allocator *alloc) {
  grpc_byte_buffer_reader reader;
  grpc_slice flat;
  void *msg;

  if (bb->type == GRPC_BB_RAW &&
      bb->data.raw.compression == GRPC_COMPRESS_NONE &&
      bb->data.raw.slice_buffer.count == 1) {
    grpc_slice s = bb->data.raw.slice_buffer.slices[0];
    return codec->decode(type, GRPC_SLICE_START_PTR(s),
                         GRPC_SLICE_LENGTH(s), alloc);
  }
  if (!grpc_byte_buffer_reader_init(&reader, bb))
    return NULL; /* could not decompress */
  flat = grpc_byte_buffer_reader_readall(&reader);
  grpc_byte_buffer_reader_destroy(&reader);
  msg = codec->decode(type, GRPC_SLICE_START_PTR(flat),
                      GRPC_SLICE_LENGTH(flat), alloc);
  grpc_slice_unref(flat);
  return msg;
}

const char *prpc__decode_into(const prpc_codec *codec, const void *type,
                              grpc_byte_buffer *bb, void *msg) {
  grpc_byte_buffer_reader reader;
  grpc_slice flat;
  const char *err;

  if (bb->type == GRPC_BB_RAW &&
      bb->data.raw.compression == GRPC_COMPRESS_NONE &&
      bb->data.raw.slice_buffer.count == 1) {
    grpc_slice s = bb->data.raw.slice_buffer.slices[0];
    return codec->decode_into(type, GRPC_SLICE_START_PTR(s),
                              GRPC_SLICE_LENGTH(s), msg);
  }
  if (!grpc_byte_buffer_reader_init(&reader, bb))
    return "the message does not decompress";
  flat = grpc_byte_buffer_reader_readall(&reader);
  grpc_byte_buffer_reader_destroy(&reader);
  err = codec->decode_into(type, GRPC_SLICE_START_PTR(flat),
                           GRPC_SLICE_LENGTH(flat), msg);
  grpc_slice_unref(flat);
  return err;
}
