/* Protobuf wire format <-> JSON, following the proto3 JSON mapping
 * (https://protobuf.dev/programming-guides/proto3/#json), driven by
 * FileDescriptorProtos at run time. The wire side is written and read here
 * directly from the descriptors; jansson parses and holds the JSON. */
#include "transcode.h"

_Thread_local int prpc__wbuf_oom;

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Field types and labels, by their descriptor.proto numbers. */
enum {
  T_DOUBLE = 1, T_FLOAT = 2, T_INT64 = 3, T_UINT64 = 4, T_INT32 = 5,
  T_FIXED64 = 6, T_FIXED32 = 7, T_BOOL = 8, T_STRING = 9, T_GROUP = 10,
  T_MESSAGE = 11, T_BYTES = 12, T_UINT32 = 13, T_ENUM = 14, T_SFIXED32 = 15,
  T_SFIXED64 = 16, T_SINT32 = 17, T_SINT64 = 18
};
#define L_REPEATED PRPC_PB__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REPEATED

/* Transcoding state: the pool, the error buffer and the path of the field
 * being worked on ("response_parameters[1].size"), for error messages. */
typedef struct tc {
  pool *p;
  char *err;
  size_t errlen;
  char path[512];
  size_t plen;
  int depth; /* messages being decoded, nested */
} tc;

/* Protobuf's own default recursion limit: a peer cannot exhaust the stack
 * with a deeply nested message. */
#define TC_MAX_DEPTH 100

static int fail(tc *c, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (c->plen)
    snprintf(c->err, c->errlen, "field \"%s\": %s", c->path, msg);
  else
    snprintf(c->err, c->errlen, "%s", msg);
  return -1;
}

static size_t push(tc *c, const char *fmt, const char *name, size_t index) {
  size_t old = c->plen;
  int n;
  if (fmt[0] == '[')
    n = name ? snprintf(c->path + old, sizeof(c->path) - old, "[\"%s\"]", name)
             : snprintf(c->path + old, sizeof(c->path) - old, "[%zu]", index);
  else
    n = snprintf(c->path + old, sizeof(c->path) - old, "%s%s",
                 old ? "." : "", name);
  if (n > 0) c->plen = old + (size_t)n < sizeof(c->path)
                           ? old + (size_t)n : sizeof(c->path) - 1;
  return old;
}
static void pop(tc *c, size_t old) {
  c->plen = old;
  c->path[old] = '\0';
}

static const char *json_kind(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT: return "an object";
  case JSON_ARRAY: return "an array";
  case JSON_STRING: return "a string";
  case JSON_INTEGER: case JSON_REAL: return "a number";
  case JSON_TRUE: case JSON_FALSE: return "a boolean";
  default: return "null";
  }
}

static int packable(int type) {
  return type != T_STRING && type != T_BYTES && type != T_MESSAGE &&
         type != T_GROUP;
}

static int is_packed(const pb_file *f, const pb_field *fd) {
  if (fd->label != L_REPEATED || !packable(fd->type)) return 0;
  if (fd->options && fd->options->has_packed) return fd->options->packed;
  return prpc__pool_is_proto3(f);
}

static const pool_sym *type_of(tc *c, const pb_field *fd, sym_kind kind) {
  const pool_sym *s = fd->type_name ? prpc__pool_find(c->p, fd->type_name) : NULL;
  if (!s || s->kind != kind) {
    fail(c, "type %s is not in the descriptors",
         fd->type_name ? fd->type_name : "?");
    return NULL;
  }
  return s;
}

/* The well-known types with a JSON form of their own (below). */
enum { WKT_NONE, WKT_WRAPPER, WKT_TIMESTAMP, WKT_DURATION, WKT_FIELDMASK,
       WKT_STRUCT, WKT_VALUE, WKT_LISTVALUE, WKT_ANY };
static int wkt_of(const char *type_name, int *wtype);
static int enc_wkt(tc *c, int kind, int wtype, const json_t *v, wbuf *out);
static json_t *dec_wkt(tc *c, int kind, int wtype, const uint8_t *data,
                       size_t len);

/* ---------------------------------------------------------------------- */
/* base64                                                                  */
/* ---------------------------------------------------------------------- */

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *prpc__tc_b64_encode(const uint8_t *d, size_t n) {
  char *s = malloc((n + 2) / 3 * 4 + 1), *o = s;
  if (!s) return NULL;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)d[i] << 16;
    if (i + 1 < n) v |= (uint32_t)d[i + 1] << 8;
    if (i + 2 < n) v |= d[i + 2];
    *o++ = b64[v >> 18];
    *o++ = b64[(v >> 12) & 63];
    *o++ = i + 1 < n ? b64[(v >> 6) & 63] : '=';
    *o++ = i + 2 < n ? b64[v & 63] : '=';
  }
  *o = '\0';
  return s;
}

static int b64_value(char ch) {
  if (ch >= 'A' && ch <= 'Z') return ch - 'A';
  if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
  if (ch >= '0' && ch <= '9') return ch - '0' + 52;
  if (ch == '+' || ch == '-') return 62;
  if (ch == '/' || ch == '_') return 63;
  return -1;
}

int prpc__tc_b64_decode(const char *s, size_t n, wbuf *out) {
  while (n > 0 && s[n - 1] == '=') n--;
  if (n % 4 == 1) return -1;
  /* Room for every byte first (out of memory: failed is set). */
  if (wbuf_reserve(out, n / 4 * 3 + 2) != 0) return 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    int v = b64_value(s[i]);
    if (v < 0) return -1;
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->data[out->len++] = (uint8_t)(acc >> bits);
    }
  }
  return 0;
}

int prpc__tc_md_is_bin(const char *key) {
  size_t n = strlen(key);
  return n > 4 && strcmp(key + n - 4, "-bin") == 0;
}

char *prpc__tc_md_text(const prpc_md *e) {
  char *t;
  if (prpc__tc_md_is_bin(e->key))
    return prpc__tc_b64_encode((const uint8_t *)e->value, e->value_len);
  if ((t = malloc(e->value_len + 1)) != NULL) {
    memcpy(t, e->value, e->value_len);
    t[e->value_len] = '\0';
  }
  return t;
}

int prpc__tc_md_add_text(prpc_metadata *md, const char *key,
                         const char *text) {
  wbuf b = {0};
  int rc;
  if (!prpc__tc_md_is_bin(key)) return prpc_metadata_add_str(md, key, text);
  if (prpc__tc_b64_decode(text, strlen(text), &b) != 0) {
    wbuf_free(&b);
    return -EILSEQ;
  }
  rc = b.failed ? -ENOMEM
                : prpc_metadata_add(md, key, b.data ? (void *)b.data : "",
                                    b.len);
  wbuf_free(&b);
  return rc;
}

/* ---------------------------------------------------------------------- */
/* JSON -> wire                                                            */
/* ---------------------------------------------------------------------- */

/* An integer from a JSON number or a decimal string, in [min, max]. */
static int get_int(tc *c, const json_t *v, int64_t min, int64_t max,
                   const char *tname, int64_t *out) {
  int64_t x;
  if (json_is_integer(v)) {
    x = json_integer_value(v);
  } else if (json_is_real(v)) {
    double d = json_real_value(v);
    if (d != floor(d) || d < -9.2233720368547758e18 || d >= 9.2233720368547758e18)
      return fail(c, "%g is not an integer of type %s", d, tname);
    x = (int64_t)d;
  } else if (json_is_string(v)) {
    const char *s = json_string_value(v);
    char *end;
    errno = 0;
    long long ll = strtoll(s, &end, 10);
    if (!*s || *end || errno)
      return fail(c, "\"%s\" is not an integer of type %s", s, tname);
    x = ll;
  } else {
    return fail(c, "expected an integer (%s), got %s", tname, json_kind(v));
  }
  if (x < min || x > max)
    return fail(c, "%" PRId64 " is out of range for %s", x, tname);
  *out = x;
  return 0;
}

static int get_uint(tc *c, const json_t *v, uint64_t max, const char *tname,
                    uint64_t *out) {
  uint64_t x;
  if (json_is_integer(v)) {
    if (json_integer_value(v) < 0)
      return fail(c, "%lld is out of range for %s",
                  (long long)json_integer_value(v), tname);
    x = (uint64_t)json_integer_value(v);
  } else if (json_is_real(v)) {
    double d = json_real_value(v);
    if (d != floor(d) || d < 0 || d >= 1.8446744073709552e19)
      return fail(c, "%g is not an integer of type %s", d, tname);
    x = (uint64_t)d;
  } else if (json_is_string(v)) {
    const char *s = json_string_value(v);
    char *end;
    errno = 0;
    unsigned long long ull = strtoull(s, &end, 10);
    if (!*s || *s == '-' || *s == ' ' || *end || errno)
      return fail(c, "\"%s\" is not an integer of type %s", s, tname);
    x = ull;
  } else {
    return fail(c, "expected an integer (%s), got %s", tname, json_kind(v));
  }
  if (x > max) return fail(c, "%" PRIu64 " is out of range for %s", x, tname);
  *out = x;
  return 0;
}

static int get_double(tc *c, const json_t *v, int is_float, double *out) {
  double d;
  const char *tname = is_float ? "float" : "double";
  if (json_is_number(v)) {
    d = json_number_value(v);
  } else if (json_is_string(v)) {
    const char *s = json_string_value(v);
    char *end;
    if (strcmp(s, "NaN") == 0) d = NAN;
    else if (strcmp(s, "Infinity") == 0) d = INFINITY;
    else if (strcmp(s, "-Infinity") == 0) d = -INFINITY;
    else {
      errno = 0;
      d = strtod(s, &end);
      if (!*s || *end || errno || !isfinite(d))
        return fail(c, "\"%s\" is not a %s", s, tname);
    }
  } else {
    return fail(c, "expected a number (%s), got %s", tname, json_kind(v));
  }
  if (is_float && isfinite(d) && isinf((float)d)) /* rounds past FLT_MAX */
    return fail(c, "%g is out of range for float", d);
  *out = d;
  return 0;
}

static int get_enum(tc *c, const pb_field *fd, const json_t *v,
                    int32_t *out) {
  const pool_sym *s = type_of(c, fd, SYM_ENUM);
  if (!s) return -1;
  const pb_enum *e = s->desc;
  if (json_is_string(v)) {
    const char *name = json_string_value(v);
    for (size_t i = 0; i < e->n_value; i++)
      if (e->value[i]->name && strcmp(e->value[i]->name, name) == 0) {
        *out = e->value[i]->number;
        return 0;
      }
    return fail(c, "\"%s\" is not a value of enum %s", name, s->name);
  }
  if (json_is_integer(v) || json_is_real(v)) {
    int64_t x;
    if (get_int(c, v, INT32_MIN, INT32_MAX, s->name, &x) != 0) return -1;
    *out = (int32_t)x;
    return 0;
  }
  return fail(c, "expected an enum name of %s, got %s", s->name,
              json_kind(v));
}

static int enc_msg(tc *c, const pool_sym *ms, const json_t *obj, wbuf *out);

/* One value of a scalar or message field, with its tag. */
static int enc_value(tc *c, const pb_field *fd, const json_t *v, wbuf *out,
                     int with_tag) {
  int64_t i;
  uint64_t u;
  double d;
  int32_t e = 0;
  uint32_t num = (uint32_t)fd->number;
  switch ((int)fd->type) {
  case T_STRING:
    if (!json_is_string(v))
      return fail(c, "expected a string, got %s", json_kind(v));
    wbuf_bytes(out, num, json_string_value(v), json_string_length(v));
    return 0;
  case T_BYTES: {
    if (!json_is_string(v))
      return fail(c, "expected base64 bytes in a string, got %s",
                  json_kind(v));
    wbuf b = {0};
    if (prpc__tc_b64_decode(json_string_value(v), json_string_length(v), &b)) {
      wbuf_free(&b);
      return fail(c, "not valid base64");
    }
    wbuf_bytes(out, num, b.data, b.len);
    wbuf_free(&b);
    return 0;
  }
  case T_MESSAGE: {
    int wtype, kind = wkt_of(fd->type_name, &wtype);
    const pool_sym *s = kind ? NULL : type_of(c, fd, SYM_MESSAGE);
    wbuf b = {0};
    if (kind ? enc_wkt(c, kind, wtype, v, &b) != 0
             : (!s || enc_msg(c, s, v, &b) != 0)) {
      wbuf_free(&b);
      return -1;
    }
    wbuf_bytes(out, num, b.data, b.len);
    wbuf_free(&b);
    return 0;
  }
  case T_GROUP:
    return fail(c, "groups are not supported");
  default: break;
  }
  /* Numeric: varint, 32 or 64 bits. */
  int wt = WT_VARINT;
  uint64_t bits = 0;
  switch ((int)fd->type) {
  case T_INT32:
    if (get_int(c, v, INT32_MIN, INT32_MAX, "int32", &i)) return -1;
    bits = (uint64_t)i;
    break;
  case T_SINT32:
    if (get_int(c, v, INT32_MIN, INT32_MAX, "sint32", &i)) return -1;
    bits = (uint32_t)(((uint32_t)i << 1) ^ (uint32_t)((int32_t)i >> 31));
    break;
  case T_SFIXED32:
    if (get_int(c, v, INT32_MIN, INT32_MAX, "sfixed32", &i)) return -1;
    bits = (uint32_t)(int32_t)i, wt = WT_I32;
    break;
  case T_INT64:
    if (get_int(c, v, INT64_MIN, INT64_MAX, "int64", &i)) return -1;
    bits = (uint64_t)i;
    break;
  case T_SINT64:
    if (get_int(c, v, INT64_MIN, INT64_MAX, "sint64", &i)) return -1;
    bits = ((uint64_t)i << 1) ^ (uint64_t)(i >> 63);
    break;
  case T_SFIXED64:
    if (get_int(c, v, INT64_MIN, INT64_MAX, "sfixed64", &i)) return -1;
    bits = (uint64_t)i, wt = WT_I64;
    break;
  case T_UINT32:
    if (get_uint(c, v, UINT32_MAX, "uint32", &u)) return -1;
    bits = u;
    break;
  case T_FIXED32:
    if (get_uint(c, v, UINT32_MAX, "fixed32", &u)) return -1;
    bits = u, wt = WT_I32;
    break;
  case T_UINT64:
    if (get_uint(c, v, UINT64_MAX, "uint64", &u)) return -1;
    bits = u;
    break;
  case T_FIXED64:
    if (get_uint(c, v, UINT64_MAX, "fixed64", &u)) return -1;
    bits = u, wt = WT_I64;
    break;
  case T_BOOL:
    if (!json_is_boolean(v))
      return fail(c, "expected true or false, got %s", json_kind(v));
    bits = json_is_true(v);
    break;
  case T_ENUM:
    if (get_enum(c, fd, v, &e)) return -1;
    bits = (uint64_t)(int64_t)e;
    break;
  case T_FLOAT: {
    if (get_double(c, v, 1, &d)) return -1;
    float f = (float)d;
    uint32_t b32;
    memcpy(&b32, &f, 4);
    bits = b32, wt = WT_I32;
    break;
  }
  case T_DOUBLE:
    if (get_double(c, v, 0, &d)) return -1;
    memcpy(&bits, &d, 8);
    wt = WT_I64;
    break;
  default:
    return fail(c, "unknown field type %d", (int)fd->type);
  }
  if (with_tag) wbuf_tag(out, num, wt);
  if (wt == WT_VARINT) wbuf_varint(out, bits);
  else if (wt == WT_I32) wbuf_fixed32(out, (uint32_t)bits);
  else wbuf_fixed64(out, bits);
  return 0;
}

static int enc_map(tc *c, const pb_msg *entry, const pb_field *fd,
                   const json_t *obj, wbuf *out) {
  const pb_field *kf = entry->field[0], *vf = entry->field[1];
  if (kf->number != 1) kf = entry->field[1], vf = entry->field[0];
  if (!json_is_object(obj))
    return fail(c, "expected an object (a map), got %s", json_kind(obj));
  const char *key;
  json_t *val;
  json_object_foreach((json_t *)obj, key, val) {
    size_t old = push(c, "[", key, 0);
    wbuf b = {0};
    int rc;
    if ((int)kf->type == T_BOOL) {
      if (strcmp(key, "true") != 0 && strcmp(key, "false") != 0)
        rc = fail(c, "map key must be \"true\" or \"false\"");
      else
        rc = enc_value(c, kf, json_boolean(strcmp(key, "true") == 0), &b, 1);
    } else {
      json_t *k = json_string(key);
      rc = k ? enc_value(c, kf, k, &b, 1) : fail(c, "key is not UTF-8");
      json_decref(k);
    }
    int wt_;
    if (rc == 0 && json_is_null(val) &&
        wkt_of(vf->type_name, &wt_) != WKT_VALUE)
      rc = fail(c, "null is not a map value");
    if (rc == 0) rc = enc_value(c, vf, val, &b, 1);
    if (rc == 0) wbuf_bytes(out, (uint32_t)fd->number, b.data, b.len);
    wbuf_free(&b);
    if (rc) return -1;
    pop(c, old);
  }
  return 0;
}

static int enc_field(tc *c, const pb_file *f, const pb_field *fd,
                     const json_t *v, wbuf *out) {
  const pb_msg *entry = prpc__pool_map_entry(c->p, fd);
  if (entry) return enc_map(c, entry, fd, v, out);
  if (fd->label != L_REPEATED) return enc_value(c, fd, v, out, 1);
  if (!json_is_array(v))
    return fail(c, "expected an array, got %s", json_kind(v));
  int packed = is_packed(f, fd);
  wbuf pk = {0};
  for (size_t i = 0; i < json_array_size(v); i++) {
    size_t old = push(c, "[", NULL, i);
    json_t *e = json_array_get(v, i);
    int wt_;
    if (json_is_null(e) && wkt_of(fd->type_name, &wt_) != WKT_VALUE) {
      wbuf_free(&pk);
      return fail(c, "null is not an element of a repeated field");
    }
    if (enc_value(c, fd, e, packed ? &pk : out, !packed) != 0) {
      wbuf_free(&pk);
      return -1;
    }
    pop(c, old);
  }
  if (packed && pk.len) wbuf_bytes(out, (uint32_t)fd->number, pk.data, pk.len);
  wbuf_free(&pk);
  return 0;
}

static int enc_msg(tc *c, const pool_sym *ms, const json_t *obj, wbuf *out) {
  const pb_msg *m = ms->desc;
  char jbuf[256];
  if (!json_is_object(obj))
    return fail(c, "expected an object (%s), got %s", ms->name,
                json_kind(obj));
  /* Every key must name a field, once. */
  const char *key;
  json_t *val;
  json_object_foreach((json_t *)obj, key, val) {
    size_t i;
    for (i = 0; i < m->n_field; i++) {
      const pb_field *fd = m->field[i];
      const char *jn = prpc__pool_json_name(fd, jbuf, sizeof(jbuf));
      if (strcmp(key, fd->name) == 0 || strcmp(key, jn) == 0) {
        if (strcmp(fd->name, jn) != 0 && json_object_get(obj, fd->name) &&
            json_object_get(obj, jn)) {
          size_t old = push(c, "", key, 0);
          fail(c, "set twice (as \"%s\" and \"%s\")", fd->name, jn);
          pop(c, old);
          return -1;
        }
        break;
      }
    }
    if (i == m->n_field) {
      size_t old = push(c, "", key, 0);
      fail(c, "no such field in %s", ms->name);
      (void)old;
      return -1;
    }
  }
  /* At most one member of a oneof. */
  for (size_t i = 0; i < m->n_field; i++) {
    const pb_field *a = m->field[i];
    const json_t *va = json_object_get(obj, a->name);
    if (!va) va = json_object_get(obj, prpc__pool_json_name(a, jbuf, sizeof(jbuf)));
    if (!a->has_oneof_index || !va || json_is_null(va)) continue;
    for (size_t j = i + 1; j < m->n_field; j++) {
      const pb_field *b = m->field[j];
      if (!b->has_oneof_index || b->oneof_index != a->oneof_index) continue;
      const json_t *vb = json_object_get(obj, b->name);
      if (!vb) vb = json_object_get(obj, prpc__pool_json_name(b, jbuf, sizeof(jbuf)));
      if (vb && !json_is_null(vb)) {
        size_t old = push(c, "", b->name, 0);
        fail(c, "only one of \"%s\" and \"%s\" may be set (a oneof)",
             a->name, b->name);
        (void)old;
        return -1;
      }
    }
  }
  for (size_t i = 0; i < m->n_field; i++) {
    const pb_field *fd = m->field[i];
    const json_t *v = json_object_get(obj, fd->name);
    if (!v) v = json_object_get(obj, prpc__pool_json_name(fd, jbuf, sizeof(jbuf)));
    int wt_;
    if (!v || (json_is_null(v) && (fd->label == L_REPEATED ||
                                   wkt_of(fd->type_name, &wt_) != WKT_VALUE)))
      continue; /* null: not set; but a Value field holds the null */
    size_t old = push(c, "", fd->name, 0);
    if (enc_field(c, ms->file, fd, v, out) != 0) return -1;
    pop(c, old);
  }
  return 0;
}

int prpc__tc_encode(pool *p, const pool_sym *msg, json_t *in, wbuf *out,
              char *err, size_t errlen) {
  tc c = {p, err, errlen, {0}, 0, 0};
  int wtype, kind = wkt_of(msg->name, &wtype), rc;
  prpc__wbuf_oom = 0;
  rc = kind ? enc_wkt(&c, kind, wtype, in, out) : enc_msg(&c, msg, in, out);
  if (rc == 0 && (prpc__wbuf_oom || out->failed)) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  return rc;
}

/* ---------------------------------------------------------------------- */
/* wire -> JSON                                                            */
/* ---------------------------------------------------------------------- */

static int wire_type_of(int type) {
  switch (type) {
  case T_DOUBLE: case T_FIXED64: case T_SFIXED64: return WT_I64;
  case T_FLOAT: case T_FIXED32: case T_SFIXED32: return WT_I32;
  case T_STRING: case T_BYTES: case T_MESSAGE: return WT_LEN;
  case T_GROUP: return WT_SGROUP;
  default: return WT_VARINT;
  }
}

/* The shortest decimal that reads back to d (as a float when is_float). */
static double shortest(double d, int is_float) {
  char buf[40];
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(buf, sizeof(buf), "%.*g", prec, d);
    double back = strtod(buf, NULL);
    if (is_float ? (float)back == (float)d : back == d) return back;
  }
  return d;
}

static json_t *num_str(const char *fmt, ...) {
  char buf[32];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  return json_string(buf);
}

static json_t *float_json(double d, int is_float) {
  if (isnan(d)) return json_string("NaN");
  if (isinf(d)) return json_string(d > 0 ? "Infinity" : "-Infinity");
  return json_real(shortest(d, is_float));
}

static json_t *dec_msg(tc *c, const pool_sym *ms, const uint8_t *data,
                       size_t len);

static json_t *enum_json(tc *c, const pb_field *fd, int32_t v) {
  const pool_sym *s = type_of(c, fd, SYM_ENUM);
  if (!s) return NULL;
  const pb_enum *e = s->desc;
  for (size_t i = 0; i < e->n_value; i++)
    if (e->value[i]->number == v && e->value[i]->name)
      return json_string(e->value[i]->name);
  return json_integer(v); /* a value this side does not know */
}

static json_t *dec_value(tc *c, const pb_field *fd, const wfield *w) {
  if (w->wt != wire_type_of(fd->type)) {
    fail(c, "wire type %d does not fit type %s", w->wt, prpc__pool_type_name(fd));
    return NULL;
  }
  uint64_t v = w->v;
  switch ((int)fd->type) {
  case T_INT32: case T_SFIXED32: return json_integer((int32_t)(uint32_t)v);
  case T_UINT32: case T_FIXED32: return json_integer((uint32_t)v);
  case T_SINT32: {
    uint32_t u = (uint32_t)v;
    return json_integer((int32_t)(u >> 1) ^ -(int32_t)(u & 1));
  }
  case T_INT64: case T_SFIXED64: return num_str("%" PRId64, (int64_t)v);
  case T_UINT64: case T_FIXED64: return num_str("%" PRIu64, v);
  case T_SINT64:
    return num_str("%" PRId64, (int64_t)(v >> 1) ^ -(int64_t)(v & 1));
  case T_BOOL: return json_boolean(v != 0);
  case T_ENUM: return enum_json(c, fd, (int32_t)(uint32_t)v);
  case T_FLOAT: {
    uint32_t b = (uint32_t)v;
    float f;
    memcpy(&f, &b, 4);
    return float_json(f, 1);
  }
  case T_DOUBLE: {
    double d;
    memcpy(&d, &v, 8);
    return float_json(d, 0);
  }
  case T_STRING: {
    json_t *s = json_stringn((const char *)w->data, w->len);
    if (!s) fail(c, "the string is not valid UTF-8");
    return s;
  }
  case T_BYTES: {
    char *s = prpc__tc_b64_encode(w->data, w->len);
    json_t *j = s ? json_string(s) : NULL;
    free(s);
    if (!j) fail(c, "out of memory");
    return j;
  }
  case T_MESSAGE: {
    int wtype, kind = wkt_of(fd->type_name, &wtype);
    if (kind) return dec_wkt(c, kind, wtype, w->data, w->len);
    const pool_sym *s = type_of(c, fd, SYM_MESSAGE);
    return s ? dec_msg(c, s, w->data, w->len) : NULL;
  }
  default:
    fail(c, "type %s is not supported", prpc__pool_type_name(fd));
    return NULL;
  }
}

/* The elements of a packed repeated field, appended to arr. */
static int dec_packed(tc *c, const pb_field *fd, const wfield *w,
                      json_t *arr) {
  wreader r = {w->data, w->data + w->len};
  int wt = wire_type_of(fd->type);
  while (r.p < r.end) {
    wfield e = {(uint32_t)fd->number, wt, 0, NULL, 0};
    int rc = wt == WT_VARINT ? wr_varint(&r, &e.v)
                             : wr_fixed(&r, wt == WT_I32 ? 4 : 8, &e.v);
    if (rc != 0) return fail(c, "truncated packed field");
    json_t *j = dec_value(c, fd, &e);
    if (!j) return -1;
    json_array_append_new(arr, j);
  }
  return 0;
}

static int dec_map_entry(tc *c, const pb_msg *entry, const wfield *w,
                         json_t *obj) {
  const pb_field *kf = entry->field[0], *vf = entry->field[1];
  if (kf->number != 1) kf = entry->field[1], vf = entry->field[0];
  if (w->wt != WT_LEN) return fail(c, "a map entry is not length-delimited");
  wreader r = {w->data, w->data + w->len};
  wfield f, kw = {1, wire_type_of(kf->type), 0, (const uint8_t *)"", 0};
  wfield vw = {2, wire_type_of(vf->type), 0, (const uint8_t *)"", 0};
  int rc;
  while ((rc = wr_field(&r, &f)) == 1) {
    if (f.number == 1) kw = f;
    else if (f.number == 2) vw = f;
  }
  if (rc < 0) return fail(c, "malformed map entry");
  json_t *k = dec_value(c, kf, &kw);
  if (!k) return -1;
  char key[32];
  const char *ks = key;
  if (json_is_string(k)) ks = json_string_value(k);
  else if (json_is_boolean(k)) ks = json_is_true(k) ? "true" : "false";
  else snprintf(key, sizeof(key), "%lld", (long long)json_integer_value(k));
  size_t old = push(c, "[", ks, 0);
  json_t *v = dec_value(c, vf, &vw);
  if (!v) {
    json_decref(k);
    return -1;
  }
  pop(c, old);
  json_object_set_new(obj, ks, v);
  json_decref(k);
  return 0;
}

/* True when a scalar on the wire holds its type's default: a 32-bit
 * integer or enum is the low 32 bits of its varint (a longer varint that
 * truncates to 0 is still 0); an empty string or bytes has length 0. */
static int is_zero(const pb_field *fd, const wfield *w) {
  switch ((int)fd->type) {
  case T_INT32: case T_UINT32: case T_SINT32: case T_ENUM:
    return (uint32_t)w->v == 0 && w->len == 0;
  default:
    return w->v == 0 && w->len == 0;
  }
}

static json_t *dec_msg_in(tc *c, const pool_sym *ms, const uint8_t *data,
                          size_t len);

static json_t *dec_msg(tc *c, const pool_sym *ms, const uint8_t *data,
                       size_t len) {
  if (c->depth >= TC_MAX_DEPTH) {
    fail(c, "nested more than %d messages deep", TC_MAX_DEPTH);
    return NULL;
  }
  c->depth++;
  json_t *j = dec_msg_in(c, ms, data, len);
  c->depth--;
  return j;
}

static json_t *dec_msg_in(tc *c, const pool_sym *ms, const uint8_t *data,
                          size_t len) {
  const pb_msg *m = ms->desc;
  size_t n = m->n_field;
  json_t **vals = calloc(n + 1, sizeof(*vals));
  wbuf *subs = calloc(n + 1, sizeof(*subs));
  char *seen = calloc(n + 1, 1), *dflt = calloc(n + 1, 1);
  json_t *obj = NULL;
  char jbuf[256];
  if (!vals || !subs || !seen || !dflt) {
    free(vals);
    free(subs);
    free(seen);
    free(dflt);
    fail(c, "out of memory");
    return NULL;
  }
  wreader r = {data, data + len};
  wfield w;
  int rc;
  while ((rc = wr_field(&r, &w)) == 1) {
    size_t i;
    for (i = 0; i < n && (uint32_t)m->field[i]->number != w.number; i++) {
    }
    if (i == n) continue; /* unknown fields are skipped */
    const pb_field *fd = m->field[i];
    size_t old = push(c, "", fd->name, 0);
    const pb_msg *entry = prpc__pool_map_entry(c->p, fd);
    if (entry) {
      if (!vals[i]) vals[i] = json_object();
      if (dec_map_entry(c, entry, &w, vals[i]) != 0) goto out;
    } else if (fd->label == L_REPEATED) {
      if (!vals[i]) vals[i] = json_array();
      if (w.wt == WT_LEN && packable(fd->type)) {
        if (dec_packed(c, fd, &w, vals[i]) != 0) goto out;
      } else {
        json_t *j = dec_value(c, fd, &w);
        if (!j) goto out;
        json_array_append_new(vals[i], j);
      }
    } else if ((int)fd->type == T_MESSAGE) {
      if (w.wt != WT_LEN) {
        fail(c, "wire type %d does not fit a message", w.wt);
        goto out;
      }
      /* Repeated occurrences merge: decode them as one. */
      wbuf_put(&subs[i], w.data, w.len);
      seen[i] = 1;
    } else {
      json_t *j = dec_value(c, fd, &w);
      if (!j) goto out;
      json_decref(vals[i]);
      vals[i] = j;
      seen[i] = 1;
      dflt[i] = is_zero(fd, &w);
    }
    pop(c, old);
  }
  if (rc < 0) {
    fail(c, "malformed %s message", ms->name);
    goto out;
  }
  obj = json_object();
  for (size_t i = 0; i < n; i++) {
    const pb_field *fd = m->field[i];
    const char *jn = prpc__pool_json_name(fd, jbuf, sizeof(jbuf));
    if (fd->label == L_REPEATED) {
      if (vals[i] && (json_array_size(vals[i]) || json_object_size(vals[i])))
        json_object_set(obj, jn, vals[i]);
    } else if ((int)fd->type == T_MESSAGE) {
      if (!seen[i]) continue;
      size_t old = push(c, "", fd->name, 0);
      wfield whole = {(uint32_t)fd->number, WT_LEN, 0,
                      subs[i].data ? subs[i].data : (const uint8_t *)"",
                      subs[i].len};
      json_t *j = dec_value(c, fd, &whole);
      if (!j) {
        json_decref(obj);
        obj = NULL;
        goto out;
      }
      pop(c, old);
      json_object_set_new(obj, jn, j);
    } else if (seen[i] &&
               (prpc__pool_field_has_presence(ms->file, fd) || !dflt[i])) {
      json_object_set(obj, jn, vals[i]);
    }
  }
out:
  for (size_t i = 0; i < n; i++) {
    json_decref(vals[i]);
    wbuf_free(&subs[i]);
  }
  free(vals);
  free(subs);
  free(seen);
  free(dflt);
  return obj;
}

json_t *prpc__tc_decode(pool *p, const pool_sym *msg, const uint8_t *data,
                  size_t len, char *err, size_t errlen) {
  tc c = {p, err, errlen, {0}, 0, 0};
  int wtype, kind = wkt_of(msg->name, &wtype);
  json_t *j;
  if (!data) data = (const uint8_t *)"";
  prpc__wbuf_oom = 0;
  j = kind ? dec_wkt(&c, kind, wtype, data, len) : dec_msg(&c, msg, data, len);
  if (j && prpc__wbuf_oom) {
    json_decref(j);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  return j;
}

/* ---------------------------------------------------------------------- */
/* well-known types: their own JSON forms                                  */
/* ---------------------------------------------------------------------- */

static const struct {
  const char *name;
  int kind, wtype;
} wkts[] = {
    {"google.protobuf.DoubleValue", WKT_WRAPPER, T_DOUBLE},
    {"google.protobuf.FloatValue", WKT_WRAPPER, T_FLOAT},
    {"google.protobuf.Int64Value", WKT_WRAPPER, T_INT64},
    {"google.protobuf.UInt64Value", WKT_WRAPPER, T_UINT64},
    {"google.protobuf.Int32Value", WKT_WRAPPER, T_INT32},
    {"google.protobuf.UInt32Value", WKT_WRAPPER, T_UINT32},
    {"google.protobuf.BoolValue", WKT_WRAPPER, T_BOOL},
    {"google.protobuf.StringValue", WKT_WRAPPER, T_STRING},
    {"google.protobuf.BytesValue", WKT_WRAPPER, T_BYTES},
    {"google.protobuf.Timestamp", WKT_TIMESTAMP, 0},
    {"google.protobuf.Duration", WKT_DURATION, 0},
    {"google.protobuf.FieldMask", WKT_FIELDMASK, 0},
    {"google.protobuf.Struct", WKT_STRUCT, 0},
    {"google.protobuf.Value", WKT_VALUE, 0},
    {"google.protobuf.ListValue", WKT_LISTVALUE, 0},
    {"google.protobuf.Any", WKT_ANY, 0},
};

static int wkt_of(const char *type_name, int *wtype) {
  if (!type_name) return WKT_NONE;
  if (*type_name == '.') type_name++;
  if (strncmp(type_name, "google.protobuf.", 16) != 0) return WKT_NONE;
  for (size_t i = 0; i < sizeof(wkts) / sizeof(wkts[0]); i++)
    if (strcmp(type_name, wkts[i].name) == 0) {
      *wtype = wkts[i].wtype;
      return wkts[i].kind;
    }
  return WKT_NONE;
}

static pb_field fake_field(int type, int number, const char *name) {
  pb_field f = PRPC_PB__FIELD_DESCRIPTOR_PROTO__INIT;
  f.name = (char *)name;
  f.has_number = 1;
  f.number = number;
  f.has_type = 1;
  f.type = (PrpcPb__FieldDescriptorProto__Type)type;
  return f;
}

/* Days since 1970-01-01 of a proleptic Gregorian date, and back. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  unsigned yoe = (unsigned)(y - era * 400);
  unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  unsigned doe = (unsigned)(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

#define TS_MIN (-62135596800LL) /* 0001-01-01T00:00:00Z */
#define TS_MAX 253402300799LL   /* 9999-12-31T23:59:59Z */
#define DUR_MAX 315576000000LL  /* 10000 years */

/* n decimal digits at p, or -1. */
static int64_t digits(const char *p, int n) {
  int64_t v = 0;
  for (int i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9') return -1;
    v = v * 10 + (p[i] - '0');
  }
  return v;
}

/* ".123" (1 to 9 digits) at *p into nanoseconds; advances *p. */
static int fraction(const char **p, int32_t *nanos) {
  *nanos = 0;
  if (**p != '.') return 0;
  (*p)++;
  int n = 0;
  int64_t v = 0;
  while ((*p)[n] >= '0' && (*p)[n] <= '9') {
    if (n == 9) return -1;
    v = v * 10 + ((*p)[n] - '0');
    n++;
  }
  if (n == 0) return -1;
  for (int i = n; i < 9; i++) v *= 10;
  *p += n;
  *nanos = (int32_t)v;
  return 0;
}

static void put_fraction(char *buf, size_t size, int32_t nanos) {
  if (nanos == 0) buf[0] = '\0';
  else if (nanos % 1000000 == 0) snprintf(buf, size, ".%03d", nanos / 1000000);
  else if (nanos % 1000 == 0) snprintf(buf, size, ".%06d", nanos / 1000);
  else snprintf(buf, size, ".%09d", nanos);
}

static int parse_timestamp(tc *c, const char *s, int64_t *secs,
                           int32_t *nanos) {
  /* "YYYY-MM-DDThh:mm:ss" and at least a "Z": read nothing past the end. */
  if (strlen(s) < 20) goto bad;
  int64_t Y = digits(s, 4), M = digits(s + 5, 2), D = digits(s + 8, 2);
  int64_t h = digits(s + 11, 2), mi = digits(s + 14, 2);
  int64_t sec = digits(s + 17, 2);
  if (Y < 1 || M < 1 || M > 12 || D < 1 || D > 31 || h < 0 || h > 23 ||
      mi < 0 || mi > 59 || sec < 0 || sec > 59 || s[4] != '-' ||
      s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' ||
      s[16] != ':')
    goto bad;
  const char *p = s + 19;
  if (fraction(&p, nanos) != 0) goto bad;
  int64_t offset = 0;
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if ((*p == '+' || *p == '-') && strlen(p) == 6) {
    int64_t oh = digits(p + 1, 2), om = p[3] == ':' ? digits(p + 4, 2) : -1;
    if (oh < 0 || oh > 23 || om < 0 || om > 59) goto bad;
    offset = (oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
    p += 6;
  } else {
    goto bad;
  }
  if (*p) goto bad;
  *secs = days_from_civil(Y, (unsigned)M, (unsigned)D) * 86400 + h * 3600 +
          mi * 60 + sec - offset;
  if (*secs < TS_MIN || *secs > TS_MAX)
    return fail(c, "timestamp \"%s\" is out of range", s);
  return 0;
bad:
  return fail(c, "\"%s\" is not an RFC 3339 timestamp "
                 "(1972-01-01T10:00:20.021Z)", s);
}

static int parse_duration(tc *c, const char *s, int64_t *secs,
                          int32_t *nanos) {
  const char *p = s;
  int neg = *p == '-';
  if (neg) p++;
  int n = 0;
  int64_t v = 0;
  while (p[n] >= '0' && p[n] <= '9' && n < 13) v = v * 10 + (p[n++] - '0');
  p += n;
  if (n == 0 || fraction(&p, nanos) != 0 || p[0] != 's' || p[1])
    return fail(c, "\"%s\" is not a duration (\"1.5s\")", s);
  if (v > DUR_MAX) return fail(c, "duration \"%s\" is out of range", s);
  *secs = neg ? -v : v;
  if (neg) *nanos = -*nanos;
  return 0;
}

/* Value, Struct and ListValue bodies from any JSON. */
static int enc_struct_value(tc *c, const json_t *v, wbuf *out);

static int enc_struct(tc *c, const json_t *v, wbuf *out) {
  const char *key;
  json_t *val;
  if (!json_is_object(v))
    return fail(c, "expected an object (google.protobuf.Struct), got %s",
                json_kind(v));
  json_object_foreach((json_t *)v, key, val) {
    size_t old = push(c, "[", key, 0);
    wbuf e = {0}, b = {0};
    wbuf_bytes(&e, 1, key, strlen(key));
    if (enc_struct_value(c, val, &b) != 0) {
      wbuf_free(&e);
      wbuf_free(&b);
      return -1;
    }
    wbuf_bytes(&e, 2, b.data, b.len);
    wbuf_bytes(out, 1, e.data, e.len);
    wbuf_free(&e);
    wbuf_free(&b);
    pop(c, old);
  }
  return 0;
}

static int enc_list(tc *c, const json_t *v, wbuf *out) {
  if (!json_is_array(v))
    return fail(c, "expected an array (google.protobuf.ListValue), got %s",
                json_kind(v));
  for (size_t i = 0; i < json_array_size(v); i++) {
    size_t old = push(c, "[", NULL, i);
    wbuf b = {0};
    if (enc_struct_value(c, json_array_get(v, i), &b) != 0) {
      wbuf_free(&b);
      return -1;
    }
    wbuf_bytes(out, 1, b.data, b.len);
    wbuf_free(&b);
    pop(c, old);
  }
  return 0;
}

static int enc_struct_value(tc *c, const json_t *v, wbuf *out) {
  wbuf b = {0};
  int rc = 0;
  switch (json_typeof(v)) {
  case JSON_NULL:
    wbuf_tag(out, 1, WT_VARINT);
    wbuf_varint(out, 0);
    return 0;
  case JSON_INTEGER: case JSON_REAL: {
    double d = json_number_value(v);
    uint64_t bits;
    memcpy(&bits, &d, 8);
    wbuf_tag(out, 2, WT_I64);
    wbuf_fixed64(out, bits);
    return 0;
  }
  case JSON_STRING:
    wbuf_bytes(out, 3, json_string_value(v), json_string_length(v));
    return 0;
  case JSON_TRUE: case JSON_FALSE:
    wbuf_tag(out, 4, WT_VARINT);
    wbuf_varint(out, json_is_true(v));
    return 0;
  case JSON_OBJECT:
    if ((rc = enc_struct(c, v, &b)) == 0) wbuf_bytes(out, 5, b.data, b.len);
    break;
  case JSON_ARRAY:
    if ((rc = enc_list(c, v, &b)) == 0) wbuf_bytes(out, 6, b.data, b.len);
    break;
  }
  wbuf_free(&b);
  return rc;
}

/* google.protobuf.Any: {"@type": URL, fields of the type...}, or for a
 * well-known type {"@type": URL, "value": its JSON}. */
static const pool_sym *any_type(tc *c, const char *url) {
  const char *slash = strrchr(url, '/');
  const char *name = slash ? slash + 1 : url;
  const pool_sym *s = *name ? prpc__pool_resolve(c->p, name) : NULL;
  if (!s || s->kind != SYM_MESSAGE) {
    fail(c, "the Any's type \"%s\" is not in the descriptors", url);
    return NULL;
  }
  return s;
}

static int enc_any(tc *c, const json_t *v, wbuf *out) {
  if (!json_is_object(v))
    return fail(c, "expected an object (google.protobuf.Any), got %s",
                json_kind(v));
  if (json_object_size(v) == 0) return 0;
  const json_t *t = json_object_get(v, "@type");
  if (!json_is_string(t)) return fail(c, "an Any needs a string \"@type\"");
  const char *url = json_string_value(t);
  const pool_sym *s = any_type(c, url);
  if (!s) return -1;
  json_t *rest = json_copy((json_t *)v);
  json_object_del(rest, "@type");
  wbuf b = {0};
  int wtype, kind = wkt_of(s->name, &wtype), rc;
  if (kind) {
    const json_t *val = json_object_get(rest, "value");
    rc = val && json_object_size(rest) == 1
             ? enc_wkt(c, kind, wtype, val, &b)
             : fail(c, "an Any of %s takes \"value\" and nothing else",
                    s->name);
  } else {
    rc = enc_msg(c, s, rest, &b);
  }
  json_decref(rest);
  if (rc == 0) {
    wbuf_bytes(out, 1, url, strlen(url));
    wbuf_bytes(out, 2, b.data, b.len);
  }
  wbuf_free(&b);
  return rc;
}

static json_t *dec_any(tc *c, const uint8_t *data, size_t len) {
  wreader r = {data, data + len};
  wfield f, url = {0, -1, 0, NULL, 0}, val = {0, -1, 0, NULL, 0};
  int rc;
  while ((rc = wr_field(&r, &f)) == 1) {
    if (f.number == 1 && f.wt == WT_LEN) url = f;
    if (f.number == 2 && f.wt == WT_LEN) val = f;
  }
  if (rc < 0) {
    fail(c, "malformed google.protobuf.Any");
    return NULL;
  }
  if (url.wt < 0 && val.wt < 0) return json_object();
  char *u = url.wt < 0 ? strdup("") : strndup((const char *)url.data, url.len);
  if (!u) {
    fail(c, "out of memory");
    return NULL;
  }
  const pool_sym *s = any_type(c, u);
  json_t *type = json_string(u);
  free(u);
  if (!s || !type) {
    if (s) fail(c, "the Any's type URL is not valid UTF-8");
    json_decref(type);
    return NULL;
  }
  const uint8_t *vd = val.wt < 0 ? (const uint8_t *)"" : val.data;
  int wtype, kind = wkt_of(s->name, &wtype);
  json_t *inner = kind ? dec_wkt(c, kind, wtype, vd, val.len)
                       : dec_msg(c, s, vd, val.len);
  if (!inner) {
    json_decref(type);
    return NULL;
  }
  json_t *obj = json_object();
  json_object_set_new(obj, "@type", type);
  if (kind) json_object_set_new(obj, "value", inner);
  else {
    json_object_update(obj, inner);
    json_decref(inner);
  }
  return obj;
}

static int enc_wkt(tc *c, int kind, int wtype, const json_t *v, wbuf *out) {
  int64_t secs;
  int32_t nanos;
  switch (kind) {
  case WKT_WRAPPER: {
    pb_field f = fake_field(wtype, 1, "value");
    return enc_value(c, &f, v, out, 1);
  }
  case WKT_TIMESTAMP: case WKT_DURATION:
    if (!json_is_string(v))
      return fail(c, "expected a %s string, got %s",
                  kind == WKT_TIMESTAMP ? "timestamp" : "duration",
                  json_kind(v));
    if (strlen(json_string_value(v)) != json_string_length(v))
      return fail(c, "a NUL character in a %s",
                  kind == WKT_TIMESTAMP ? "timestamp" : "duration");
    if ((kind == WKT_TIMESTAMP ? parse_timestamp : parse_duration)(
            c, json_string_value(v), &secs, &nanos) != 0)
      return -1;
    if (secs) {
      wbuf_tag(out, 1, WT_VARINT);
      wbuf_varint(out, (uint64_t)secs);
    }
    if (nanos) {
      wbuf_tag(out, 2, WT_VARINT);
      wbuf_varint(out, (uint64_t)(int64_t)nanos);
    }
    return 0;
  case WKT_FIELDMASK: {
    if (!json_is_string(v))
      return fail(c, "expected a field mask string (\"a.b,c\"), got %s",
                  json_kind(v));
    /* Paths split at commas, by length: a NUL inside a path is kept, not
     * an end. "" is no path; an empty path ("a,,b", "a,") is refused. */
    const char *p = json_string_value(v);
    const char *end = p + json_string_length(v);
    while (p < end) {
      wbuf path = {0};
      for (; p < end && *p != ','; p++) {
        char ch = *p;
        if (ch >= 'A' && ch <= 'Z') {
          wbuf_put(&path, "_", 1);
          ch = (char)(ch - 'A' + 'a');
        }
        wbuf_put(&path, &ch, 1);
      }
      if (path.len == 0 || (p < end && p + 1 == end)) {
        wbuf_free(&path);
        return fail(c, "an empty path in field mask \"%s\"",
                    json_string_value(v));
      }
      wbuf_bytes(out, 1, path.data, path.len);
      wbuf_free(&path);
      if (p < end) p++; /* the comma */
    }
    return 0;
  }
  case WKT_STRUCT: return enc_struct(c, v, out);
  case WKT_LISTVALUE: return enc_list(c, v, out);
  case WKT_VALUE: return enc_struct_value(c, v, out);
  case WKT_ANY: return enc_any(c, v, out);
  }
  return fail(c, "unknown well-known type");
}

static json_t *dec_struct_value(tc *c, const uint8_t *data, size_t len);

static json_t *dec_struct(tc *c, const uint8_t *data, size_t len) {
  json_t *obj = json_object();
  wreader r = {data, data + len};
  wfield f;
  int rc;
  while ((rc = wr_field(&r, &f)) == 1) {
    if (f.number != 1 || f.wt != WT_LEN) continue;
    wreader er = {f.data, f.data + f.len};
    wfield g;
    char *key = NULL;
    const uint8_t *vd = (const uint8_t *)"";
    size_t vl = 0;
    while ((rc = wr_field(&er, &g)) == 1) {
      if (g.number == 1 && g.wt == WT_LEN) {
        free(key);
        key = strndup((const char *)g.data, g.len);
      } else if (g.number == 2 && g.wt == WT_LEN) {
        vd = g.data, vl = g.len;
      }
    }
    json_t *v = rc == 0 ? dec_struct_value(c, vd, vl) : NULL;
    if (!v || !key) {
      free(key);
      json_decref(v);
      json_decref(obj);
      if (rc != 0 || !key) fail(c, "malformed google.protobuf.Struct");
      return NULL;
    }
    if (json_object_set_new(obj, key, v) != 0) {
      free(key);
      json_decref(obj);
      fail(c, "a google.protobuf.Struct key is not valid UTF-8");
      return NULL;
    }
    free(key);
  }
  if (rc < 0) {
    json_decref(obj);
    fail(c, "malformed google.protobuf.Struct");
    return NULL;
  }
  return obj;
}

static json_t *dec_list(tc *c, const uint8_t *data, size_t len) {
  json_t *arr = json_array();
  wreader r = {data, data + len};
  wfield f;
  int rc;
  while ((rc = wr_field(&r, &f)) == 1) {
    if (f.number != 1 || f.wt != WT_LEN) continue;
    json_t *v = dec_struct_value(c, f.data, f.len);
    if (!v) {
      json_decref(arr);
      return NULL;
    }
    json_array_append_new(arr, v);
  }
  if (rc < 0) {
    json_decref(arr);
    fail(c, "malformed google.protobuf.ListValue");
    return NULL;
  }
  return arr;
}

static json_t *dec_struct_value_in(tc *c, const uint8_t *data, size_t len);

static json_t *dec_struct_value(tc *c, const uint8_t *data, size_t len) {
  if (c->depth >= TC_MAX_DEPTH) {
    fail(c, "nested more than %d values deep", TC_MAX_DEPTH);
    return NULL;
  }
  c->depth++;
  json_t *j = dec_struct_value_in(c, data, len);
  c->depth--;
  return j;
}

static json_t *dec_struct_value_in(tc *c, const uint8_t *data, size_t len) {
  wreader r = {data, data + len};
  wfield f, last = {0, -1, 0, NULL, 0};
  int rc;
  while ((rc = wr_field(&r, &f)) == 1)
    if (f.number >= 1 && f.number <= 6) last = f; /* a oneof: last wins */
  if (rc < 0) {
    fail(c, "malformed google.protobuf.Value");
    return NULL;
  }
  switch (last.wt < 0 ? 0 : last.number) {
  case 1: return json_null();
  case 2: {
    double d;
    if (last.wt != WT_I64) break;
    memcpy(&d, &last.v, 8);
    return float_json(d, 0);
  }
  case 3: {
    json_t *s;
    if (last.wt != WT_LEN) break;
    s = json_stringn((const char *)last.data, last.len);
    if (!s) fail(c, "the string is not valid UTF-8");
    return s;
  }
  case 4: return json_boolean(last.v != 0);
  case 5:
    if (last.wt != WT_LEN) break;
    return dec_struct(c, last.data, last.len);
  case 6:
    if (last.wt != WT_LEN) break;
    return dec_list(c, last.data, last.len);
  default: return json_null(); /* no kind set */
  }
  fail(c, "malformed google.protobuf.Value");
  return NULL;
}

static json_t *dec_wkt(tc *c, int kind, int wtype, const uint8_t *data,
                       size_t len) {
  wreader r = {data, data + len};
  wfield f;
  int rc;
  int64_t secs = 0;
  int32_t nanos = 0;
  char buf[64], frac[16];
  switch (kind) {
  case WKT_WRAPPER: {
    pb_field fd = fake_field(wtype, 1, "value");
    wfield val = {1, wire_type_of(wtype), 0, (const uint8_t *)"", 0};
    while ((rc = wr_field(&r, &f)) == 1)
      if (f.number == 1) val = f;
    if (rc < 0) break;
    return dec_value(c, &fd, &val);
  }
  case WKT_TIMESTAMP: case WKT_DURATION:
    while ((rc = wr_field(&r, &f)) == 1) {
      if (f.number == 1 && f.wt == WT_VARINT) secs = (int64_t)f.v;
      if (f.number == 2 && f.wt == WT_VARINT) nanos = (int32_t)(uint32_t)f.v;
    }
    if (rc < 0) break;
    if (kind == WKT_TIMESTAMP) {
      if (secs < TS_MIN || secs > TS_MAX || nanos < 0 || nanos > 999999999) {
        fail(c, "timestamp %lld.%09d s is out of range", (long long)secs,
             nanos);
        return NULL;
      }
      int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
      int64_t rem = secs - days * 86400, y;
      unsigned m, d;
      civil_from_days(days, &y, &m, &d);
      put_fraction(frac, sizeof(frac), nanos);
      snprintf(buf, sizeof(buf), "%04lld-%02u-%02uT%02d:%02d:%02d%sZ",
               (long long)y, m, d, (int)(rem / 3600), (int)(rem / 60 % 60),
               (int)(rem % 60), frac);
    } else {
      if (secs > DUR_MAX || secs < -DUR_MAX || nanos > 999999999 ||
          nanos < -999999999 || (secs > 0 && nanos < 0) ||
          (secs < 0 && nanos > 0)) {
        fail(c, "duration %lld s %d ns is out of range", (long long)secs,
             nanos);
        return NULL;
      }
      int neg = secs < 0 || nanos < 0;
      put_fraction(frac, sizeof(frac), nanos < 0 ? -nanos : nanos);
      snprintf(buf, sizeof(buf), "%s%lld%ss", neg ? "-" : "",
               (long long)(secs < 0 ? -secs : secs), frac);
    }
    return json_string(buf);
  case WKT_FIELDMASK: {
    wbuf out = {0};
    while ((rc = wr_field(&r, &f)) == 1) {
      if (f.number != 1 || f.wt != WT_LEN) continue;
      if (f.len == 0 || memchr(f.data, ',', f.len)) {
        wbuf_free(&out);
        fail(c, "a google.protobuf.FieldMask path is empty or has a comma");
        return NULL;
      }
      if (out.len) wbuf_put(&out, ",", 1);
      for (size_t i = 0; i < f.len; i++) {
        char ch = (char)f.data[i];
        if (ch == '_' && i + 1 < f.len && f.data[i + 1] >= 'a' &&
            f.data[i + 1] <= 'z') {
          ch = (char)(f.data[++i] - 'a' + 'A');
        }
        wbuf_put(&out, &ch, 1);
      }
    }
    json_t *j = rc == 0 ? json_stringn(out.data ? (const char *)out.data : "",
                                       out.len)
                        : NULL;
    wbuf_free(&out);
    if (rc < 0) break;
    if (!j) fail(c, "a google.protobuf.FieldMask path is not valid UTF-8");
    return j;
  }
  case WKT_STRUCT: return dec_struct(c, data, len);
  case WKT_LISTVALUE: return dec_list(c, data, len);
  case WKT_VALUE: return dec_struct_value(c, data, len);
  case WKT_ANY: return dec_any(c, data, len);
  }
  fail(c, "malformed well-known type message");
  return NULL;
}

/* ---------------------------------------------------------------------- */
/* printing                                                                */
/* ---------------------------------------------------------------------- */

/* s (valid UTF-8: a jansson string or key) as a JSON string, escaped as
 * jansson escapes it; runs that need no escape are written at once. */
static int print_string(FILE *out, const char *s, size_t n) {
  size_t run = 0;
  fputc('"', out);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[8];
    if (c >= 0x20 && c != '"' && c != '\\')
      continue;
    fwrite(s + run, 1, i - run, out);
    run = i + 1;
    switch (c) {
    case '"': fputs("\\\"", out); break;
    case '\\': fputs("\\\\", out); break;
    case '\b': fputs("\\b", out); break;
    case '\f': fputs("\\f", out); break;
    case '\n': fputs("\\n", out); break;
    case '\r': fputs("\\r", out); break;
    case '\t': fputs("\\t", out); break;
    default:
      snprintf(esc, sizeof(esc), "\\u%04X", c);
      fputs(esc, out);
    }
  }
  fwrite(s + run, 1, n - run, out);
  fputc('"', out);
  return ferror(out) ? -1 : 0;
}

static void indent(FILE *out, int pretty, int depth) {
  if (!pretty) return;
  fputc('\n', out);
  for (int i = 0; i < depth; i++) fputs("  ", out);
}

static int print_value(FILE *out, const json_t *v, int pretty, int depth) {
  char buf[40];
  switch (json_typeof(v)) {
  case JSON_OBJECT: {
    const char *key;
    json_t *val;
    int first = 1;
    fputc('{', out);
    json_object_foreach((json_t *)v, key, val) {
      if (!first) fputc(',', out);
      first = 0;
      indent(out, pretty, depth + 1);
      if (print_string(out, key, strlen(key)) != 0) return -1;
      fputs(pretty ? ": " : ":", out);
      if (print_value(out, val, pretty, depth + 1) != 0) return -1;
    }
    if (!first) indent(out, pretty, depth);
    fputc('}', out);
    return 0;
  }
  case JSON_ARRAY:
    fputc('[', out);
    for (size_t i = 0; i < json_array_size(v); i++) {
      if (i) fputc(',', out);
      indent(out, pretty, depth + 1);
      if (print_value(out, json_array_get(v, i), pretty, depth + 1) != 0)
        return -1;
    }
    if (json_array_size(v)) indent(out, pretty, depth);
    fputc(']', out);
    return 0;
  case JSON_STRING:
    return print_string(out, json_string_value(v), json_string_length(v));
  case JSON_INTEGER:
    fprintf(out, "%lld", (long long)json_integer_value(v));
    return 0;
  case JSON_REAL: {
    double d = json_real_value(v);
    if (!isfinite(d)) return -1;
    if (d == 0 && signbit(d)) { /* "-0" would read back as the integer 0 */
      fputs("-0.0", out);
      return 0;
    }
    for (int prec = 1; prec <= 17; prec++) {
      snprintf(buf, sizeof(buf), "%.*g", prec, d);
      if (strtod(buf, NULL) == d) break;
    }
    fputs(buf, out);
    return 0;
  }
  case JSON_TRUE: fputs("true", out); return 0;
  case JSON_FALSE: fputs("false", out); return 0;
  case JSON_NULL: fputs("null", out); return 0;
  }
  return -1;
}

int prpc__tc_print(FILE *out, const json_t *v, int pretty) {
  if (print_value(out, v, pretty, 0) != 0) return -1;
  fputc('\n', out);
  return 0;
}

int prpc__tc_encode_next(pool *p, const pool_sym *msg, const char *text,
                         size_t len, size_t *off, int eof, wbuf *out,
                         char *err, size_t errlen) {
  size_t at = *off;
  json_error_t je;
  while (at < len && isspace((unsigned char)text[at])) at++;
  *off = at;
  if (at == len) return 0;
  json_t *j = json_loadb(text + at, len - at,
                         JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY |
                             JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES,
                         &je);
  if (!j) {
    if (!eof && json_error_code(&je) == json_error_premature_end_of_input)
      return 0; /* the rest is on its way */
    snprintf(err, errlen, "bad JSON: %s", je.text);
    return -1;
  }
  *off = at + (je.position ? (size_t)je.position : 1);
  int rc = prpc__tc_encode(p, msg, j, out, err, errlen);
  json_decref(j);
  return rc == 0 ? 1 : -1;
}
