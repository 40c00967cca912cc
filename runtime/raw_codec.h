/* A message codec whose "message" is its encoded bytes, passed through
 * unchanged: for the HTTP front end and prpc, which transcode the bytes
 * to and from JSON themselves, and for tests and fuzzers that must put on
 * the wire what no real message encodes to (garbage, field number 0,
 * oversize fields) or read a reply as the bytes that came. Decoding copies
 * the bytes into memory from the allocator (the call's memory on the
 * server; malloc() without one, freed with free()). Header only: every
 * program that includes it has its own copy. */
#ifndef PRPC_RAW_CODEC_H
#define PRPC_RAW_CODEC_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <piperpc/method.h>

typedef struct raw_msg {
  const uint8_t *data;
  size_t len;
} raw_msg;

static size_t raw_size(const void *t, const void *m) {
  (void)t;
  return ((const raw_msg *)m)->len;
}
static size_t raw_encode(const void *t, const void *m, uint8_t *out) {
  const raw_msg *r = m;
  (void)t;
  if (r->len)
    memcpy(out, r->data, r->len);
  return r->len;
}
static void *raw_decode(const void *t, const uint8_t *d, size_t n,
                        const prpc_allocator *a) {
  raw_msg *m = a && a->alloc ? a->alloc(a->data, sizeof(*m) + n + 1)
                            : malloc(sizeof(*m) + n + 1);
  (void)t;
  if (!m)
    return NULL;
  if (n)
    memcpy((uint8_t *)(m + 1), d, n);
  m->data = (const uint8_t *)(m + 1);
  m->len = n;
  return m;
}
static void raw_free(const void *t, void *m, const prpc_allocator *a) {
  (void)t;
  if (!a || !a->alloc)
    free(m);
  else if (a->free)
    a->free(a->data, m);
}
static size_t raw_struct_size(const void *t) {
  (void)t;
  return sizeof(raw_msg);
}
static void raw_init(const void *t, void *m) {
  (void)t;
  memset(m, 0, sizeof(raw_msg));
}
static const prpc_codec raw_codec = {
    "raw", raw_size, raw_encode, raw_decode, raw_free, raw_struct_size,
    raw_init, NULL, NULL, NULL};

#endif /* PRPC_RAW_CODEC_H */
