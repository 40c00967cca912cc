/* prpc: protobuf wire format <-> JSON, following the proto3 JSON mapping
 * (https://protobuf.dev/programming-guides/proto3/#json), driven by
 * FileDescriptorProtos at run time. The wire side is written and read here
 * directly from the descriptors; jansson parses and holds the JSON. */
#include "transcode.h"

#include <errno.h>
#include <float.h>
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
#define L_REPEATED GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REPEATED

/* Transcoding state: the pool, the error buffer and the path of the field
 * being worked on ("response_parameters[1].size"), for error messages. */
typedef struct tc {
  const pool *p;
  char *err;
  size_t errlen;
  char path[512];
  size_t plen;
} tc;

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
  return pool_is_proto3(f);
}

static const pool_sym *type_of(tc *c, const pb_field *fd, sym_kind kind) {
  const pool_sym *s = fd->type_name ? pool_find(c->p, fd->type_name) : NULL;
  if (!s || s->kind != kind) {
    fail(c, "type %s is not in the descriptors",
         fd->type_name ? fd->type_name : "?");
    return NULL;
  }
  return s;
}

/* ---------------------------------------------------------------------- */
/* base64                                                                  */
/* ---------------------------------------------------------------------- */

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *tc_b64_encode(const uint8_t *d, size_t n) {
  char *s = malloc((n + 2) / 3 * 4 + 1), *o = s;
  if (!s) abort();
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

int tc_b64_decode(const char *s, size_t n, wbuf *out) {
  while (n > 0 && s[n - 1] == '=') n--;
  if (n % 4 == 1) return -1;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    int v = b64_value(s[i]);
    if (v < 0) return -1;
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      uint8_t byte = (uint8_t)(acc >> bits);
      wbuf_put(out, &byte, 1);
    }
  }
  return 0;
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
  if (is_float && isfinite(d) && fabs(d) > FLT_MAX)
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
    if (tc_b64_decode(json_string_value(v), json_string_length(v), &b)) {
      wbuf_free(&b);
      return fail(c, "not valid base64");
    }
    wbuf_bytes(out, num, b.data, b.len);
    wbuf_free(&b);
    return 0;
  }
  case T_MESSAGE: {
    const pool_sym *s = type_of(c, fd, SYM_MESSAGE);
    wbuf b = {0};
    if (!s || enc_msg(c, s, v, &b) != 0) {
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
    if (rc == 0 && json_is_null(val))
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
  const pb_msg *entry = pool_map_entry(c->p, fd);
  if (entry) return enc_map(c, entry, fd, v, out);
  if (fd->label != L_REPEATED) return enc_value(c, fd, v, out, 1);
  if (!json_is_array(v))
    return fail(c, "expected an array, got %s", json_kind(v));
  int packed = is_packed(f, fd);
  wbuf pk = {0};
  for (size_t i = 0; i < json_array_size(v); i++) {
    size_t old = push(c, "[", NULL, i);
    json_t *e = json_array_get(v, i);
    if (json_is_null(e)) {
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
      const char *jn = pool_json_name(fd, jbuf, sizeof(jbuf));
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
    if (!va) va = json_object_get(obj, pool_json_name(a, jbuf, sizeof(jbuf)));
    if (!a->has_oneof_index || !va || json_is_null(va)) continue;
    for (size_t j = i + 1; j < m->n_field; j++) {
      const pb_field *b = m->field[j];
      if (!b->has_oneof_index || b->oneof_index != a->oneof_index) continue;
      const json_t *vb = json_object_get(obj, b->name);
      if (!vb) vb = json_object_get(obj, pool_json_name(b, jbuf, sizeof(jbuf)));
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
    if (!v) v = json_object_get(obj, pool_json_name(fd, jbuf, sizeof(jbuf)));
    if (!v || json_is_null(v)) continue;
    size_t old = push(c, "", fd->name, 0);
    if (enc_field(c, ms->file, fd, v, out) != 0) return -1;
    pop(c, old);
  }
  return 0;
}

int tc_encode(const pool *p, const pool_sym *msg, json_t *in, wbuf *out,
              char *err, size_t errlen) {
  tc c = {p, err, errlen, {0}, 0};
  return enc_msg(&c, msg, in, out);
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
    fail(c, "wire type %d does not fit type %s", w->wt, pool_type_name(fd));
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
    char *s = tc_b64_encode(w->data, w->len);
    json_t *j = json_string(s);
    free(s);
    return j;
  }
  case T_MESSAGE: {
    const pool_sym *s = type_of(c, fd, SYM_MESSAGE);
    return s ? dec_msg(c, s, w->data, w->len) : NULL;
  }
  default:
    fail(c, "type %s is not supported", pool_type_name(fd));
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

static json_t *dec_msg(tc *c, const pool_sym *ms, const uint8_t *data,
                       size_t len) {
  const pb_msg *m = ms->desc;
  size_t n = m->n_field;
  json_t **vals = calloc(n + 1, sizeof(*vals));
  wbuf *subs = calloc(n + 1, sizeof(*subs));
  char *seen = calloc(n + 1, 1), *dflt = calloc(n + 1, 1);
  json_t *obj = NULL;
  char jbuf[256];
  if (!vals || !subs || !seen || !dflt) abort();
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
    const pb_msg *entry = pool_map_entry(c->p, fd);
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
      dflt[i] = w.v == 0 && w.len == 0;
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
    const char *jn = pool_json_name(fd, jbuf, sizeof(jbuf));
    if (fd->label == L_REPEATED) {
      if (vals[i] && (json_array_size(vals[i]) || json_object_size(vals[i])))
        json_object_set(obj, jn, vals[i]);
    } else if ((int)fd->type == T_MESSAGE) {
      if (!seen[i]) continue;
      const pool_sym *s = type_of(c, fd, SYM_MESSAGE);
      size_t old = push(c, "", fd->name, 0);
      json_t *j = s ? dec_msg(c, s, subs[i].data ? subs[i].data
                                                 : (const uint8_t *)"",
                              subs[i].len)
                    : NULL;
      if (!j) {
        json_decref(obj);
        obj = NULL;
        goto out;
      }
      pop(c, old);
      json_object_set_new(obj, jn, j);
    } else if (seen[i] &&
               (pool_field_has_presence(ms->file, fd) || !dflt[i])) {
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

json_t *tc_decode(const pool *p, const pool_sym *msg, const uint8_t *data,
                  size_t len, char *err, size_t errlen) {
  tc c = {p, err, errlen, {0}, 0};
  return dec_msg(&c, msg, data ? data : (const uint8_t *)"", len);
}

/* ---------------------------------------------------------------------- */
/* printing                                                                */
/* ---------------------------------------------------------------------- */

static int print_string(FILE *out, const char *s, size_t n) {
  json_t *j = json_stringn(s, n);
  char *d = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
  json_decref(j);
  if (!d) return -1;
  fputs(d, out);
  free(d);
  return 0;
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

int tc_print(FILE *out, const json_t *v, int pretty) {
  if (print_value(out, v, pretty, 0) != 0) return -1;
  fputc('\n', out);
  return 0;
}
