/* Protobuf wire format primitives (a growable buffer, varints, a reader).
 * Small and static inline: used by the JSON transcoder (the server's HTTP
 * front end and prpc), and by prpc's reflection client and health check. */
#ifndef PRPC_JSON_WIRE_H
#define PRPC_JSON_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_SGROUP = 3, WT_EGROUP = 4,
       WT_I32 = 5 };

/* An owned byte buffer. It lives in a library that must not end the
 * process: when memory runs out it stops growing, drops what is written
 * after, and sets failed, which the writer's caller checks once. */
typedef struct wbuf {
  uint8_t *data;
  size_t len, cap;
  int failed;
} wbuf;

/* Set by any wbuf that ran out of memory on this thread: a buffer nested
 * in another (a submessage) may fail unseen, so the transcoder clears it
 * before a message and looks at it after (transcode.c). */
extern _Thread_local int prpc__wbuf_oom;

/* Returns 0, or -1 (and sets failed) when out of memory. */
static inline int wbuf_reserve(wbuf *b, size_t more) {
  if (b->failed) return -1;
  if (b->len + more <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < b->len + more) cap *= 2;
  uint8_t *p = realloc(b->data, cap);
  if (!p) {
    b->failed = 1;
    prpc__wbuf_oom = 1;
    return -1;
  }
  b->data = p;
  b->cap = cap;
  return 0;
}
static inline void wbuf_put(wbuf *b, const void *p, size_t n) {
  if (!n || wbuf_reserve(b, n) != 0) return;
  memcpy(b->data + b->len, p, n);
  b->len += n;
}
static inline void wbuf_varint(wbuf *b, uint64_t v) {
  if (wbuf_reserve(b, 10) != 0) return;
  while (v >= 0x80) {
    b->data[b->len++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  b->data[b->len++] = (uint8_t)v;
}
static inline void wbuf_tag(wbuf *b, uint32_t field, int wt) {
  wbuf_varint(b, ((uint64_t)field << 3) | (unsigned)wt);
}
static inline void wbuf_fixed32(wbuf *b, uint32_t v) {
  uint8_t x[4];
  for (int i = 0; i < 4; i++) x[i] = (uint8_t)(v >> (8 * i));
  wbuf_put(b, x, 4);
}
static inline void wbuf_fixed64(wbuf *b, uint64_t v) {
  uint8_t x[8];
  for (int i = 0; i < 8; i++) x[i] = (uint8_t)(v >> (8 * i));
  wbuf_put(b, x, 8);
}
/* A length-delimited field: tag, length, bytes. */
static inline void wbuf_bytes(wbuf *b, uint32_t field, const void *p,
                              size_t n) {
  wbuf_tag(b, field, WT_LEN);
  wbuf_varint(b, n);
  wbuf_put(b, p, n);
}
static inline void wbuf_free(wbuf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
  b->failed = 0;
}

/* A reader over borrowed bytes. */
typedef struct wreader {
  const uint8_t *p, *end;
} wreader;

/* Returns 0, or -1 on a truncated or over-long varint. */
static inline int wr_varint(wreader *r, uint64_t *v) {
  uint64_t x = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    if (r->p >= r->end) return -1;
    uint8_t c = *r->p++;
    if (shift == 63 && c > 1) return -1;
    x |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) {
      *v = x;
      return 0;
    }
  }
  return -1;
}
static inline int wr_fixed(wreader *r, int n, uint64_t *v) {
  if (r->end - r->p < n) return -1;
  uint64_t x = 0;
  for (int i = 0; i < n; i++) x |= (uint64_t)r->p[i] << (8 * i);
  r->p += n;
  *v = x;
  return 0;
}

/* One field of a message: its number, wire type, and value (varint and
 * fixed values in v; length-delimited ones in data/len). */
typedef struct wfield {
  uint32_t number;
  int wt;
  uint64_t v;
  const uint8_t *data;
  size_t len;
} wfield;

/* Reads the next field. Returns 1, 0 at the end, -1 on malformed input
 * (groups are malformed here: proto3 and our descriptors have none). */
static inline int wr_field(wreader *r, wfield *f) {
  uint64_t key, n;
  if (r->p >= r->end) return 0;
  if (wr_varint(r, &key) != 0 || (key >> 3) == 0 || (key >> 3) > 0x1fffffff)
    return -1;
  f->number = (uint32_t)(key >> 3);
  f->wt = (int)(key & 7);
  f->data = NULL;
  f->len = 0;
  f->v = 0;
  switch (f->wt) {
  case WT_VARINT: return wr_varint(r, &f->v) == 0 ? 1 : -1;
  case WT_I64: return wr_fixed(r, 8, &f->v) == 0 ? 1 : -1;
  case WT_I32: return wr_fixed(r, 4, &f->v) == 0 ? 1 : -1;
  case WT_LEN:
    if (wr_varint(r, &n) != 0 || n > (uint64_t)(r->end - r->p)) return -1;
    f->data = r->p;
    f->len = (size_t)n;
    r->p += n;
    return 1;
  default: return -1;
  }
}

#endif /* PRPC_JSON_WIRE_H */
