/* Messages in and out of gRPC byte buffers, without extra copies where the
 * buffer is one slice. */
#include "internal.h"
#include "wire_depth.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>
#include <string.h>

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

/* Why a message that did not decode failed: it nests too deep (see
 * runtime/wire_depth.c), or NULL for another reason. */
static const char *too_deep(const prpc_codec *codec, const void *type,
                            const uint8_t *data, size_t len) {
  if (codec->submessage &&
      prpc__wire_depth_check(type, codec->submessage, data, len) ==
          PRPC__WIRE_TOO_DEEP)
    return "it nests more than " PRPC__STR(PRPC_MAX_DEPTH)
           " messages deep";
  return NULL;
}

/* The codecs refuse a message that nests too deep themselves (so that no
 * caller of theirs can be made to overflow its stack); on a failure the
 * walk is repeated here only to say which it was. */
static void *decode_flat(const prpc_codec *codec, const void *type,
                         const uint8_t *data, size_t len,
                         const prpc_allocator *alloc, const char **why) {
  void *msg = codec->decode(type, data, len, alloc);
  if (!msg && !(*why = too_deep(codec, type, data, len)))
    *why = "not a valid message of its type";
  return msg;
}

void *prpc__decode(const prpc_codec *codec, const void *type,
                   grpc_byte_buffer *bb, const prpc_allocator *alloc,
                   const char **why) {
  grpc_byte_buffer_reader reader;
  grpc_slice flat;
  void *msg;

  if (bb->type == GRPC_BB_RAW &&
      bb->data.raw.compression == GRPC_COMPRESS_NONE &&
      bb->data.raw.slice_buffer.count == 1) {
    grpc_slice s = bb->data.raw.slice_buffer.slices[0];
    return decode_flat(codec, type, GRPC_SLICE_START_PTR(s),
                       GRPC_SLICE_LENGTH(s), alloc, why);
  }
  if (!grpc_byte_buffer_reader_init(&reader, bb)) {
    *why = "it does not decompress";
    return NULL;
  }
  flat = grpc_byte_buffer_reader_readall(&reader);
  grpc_byte_buffer_reader_destroy(&reader);
  msg = decode_flat(codec, type, GRPC_SLICE_START_PTR(flat),
                    GRPC_SLICE_LENGTH(flat), alloc, why);
  grpc_slice_unref(flat);
  return msg;
}

static const char *decode_into_flat(const prpc_codec *codec,
                                    const void *type, const uint8_t *data,
                                    size_t len, void *msg) {
  return codec->decode_into(type, data, len, msg);
}

const char *prpc__decode_into(const prpc_codec *codec, const void *type,
                              grpc_byte_buffer *bb, void *msg,
                              const prpc_allocator *scratch) {
  grpc_byte_buffer_reader reader;
  grpc_slice flat;
  const char *err;

  if (bb->type == GRPC_BB_RAW &&
      bb->data.raw.compression == GRPC_COMPRESS_NONE) {
    const grpc_slice_buffer *sb = &bb->data.raw.slice_buffer;
    uint8_t small[1024], *buf;
    if (sb->count == 1)
      return decode_into_flat(codec, type,
                              GRPC_SLICE_START_PTR(sb->slices[0]),
                              GRPC_SLICE_LENGTH(sb->slices[0]), msg);
    /* Several slices: join them in the call's memory (or on the stack)
     * rather than in a new slice. */
    buf = sb->length <= sizeof(small) ? small
          : scratch ? scratch->alloc(scratch->data, sb->length)
                    : NULL;
    if (buf || sb->length == 0) {
      size_t at = 0;
      for (size_t i = 0; i < sb->count; i++) {
        size_t n = GRPC_SLICE_LENGTH(sb->slices[i]);
        memcpy(buf + at, GRPC_SLICE_START_PTR(sb->slices[i]), n);
        at += n;
      }
      return decode_into_flat(codec, type, buf, at, msg);
    }
  }
  if (!grpc_byte_buffer_reader_init(&reader, bb))
    return "the message does not decompress";
  flat = grpc_byte_buffer_reader_readall(&reader);
  grpc_byte_buffer_reader_destroy(&reader);
  err = decode_into_flat(codec, type, GRPC_SLICE_START_PTR(flat),
                         GRPC_SLICE_LENGTH(flat), msg);
  grpc_slice_unref(flat);
  return err;
}
