/* Metadata lists and their conversion to and from gRPC core's arrays. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int prpc__md_key_ok(const char *key) {
  size_t n = key ? strlen(key) : 0;
  if (n == 0 || key[0] == ':')
    return 0;
  for (size_t i = 0; i < n; i++) {
    char c = key[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '_' || c == '.'))
      return 0;
  }
  return 1;
}

static int is_bin_key(const char *key) {
  size_t n = strlen(key);
  return n > 4 && strcmp(key + n - 4, "-bin") == 0;
}

static int value_ok(const char *key, const void *value, size_t len) {
  const unsigned char *v = value;
  if (is_bin_key(key))
    return 1;
  for (size_t i = 0; i < len; i++)
    if (v[i] < 0x20 || v[i] > 0x7e)
      return 0;
  return 1;
}

/* Makes room for one more entry; returns the free slot or NULL. */
static prpc_md *next_slot(prpc_metadata *md) {
  if (md->count == md->capacity) {
    size_t cap = md->capacity ? md->capacity * 2 : 4;
    prpc_md *items = realloc(md->items, cap * sizeof(*items));
    if (!items)
      return NULL;
    md->items = items;
    md->capacity = cap;
  }
  return &md->items[md->count];
}

int prpc_metadata_add(prpc_metadata *md, const char *key, const void *value,
                      size_t value_len) {
  prpc_md *e;
  if (!md || !prpc__md_key_ok(key) || (!value && value_len) ||
      !value_ok(key, value, value_len))
    return -EINVAL;
  e = next_slot(md);
  if (!e)
    return -ENOMEM;
  e->key = strdup(key);
  e->value = malloc(value_len + 1);
  if (!e->key || !e->value) {
    free(e->key);
    free(e->value);
    return -ENOMEM;
  }
  if (value_len)
    memcpy(e->value, value, value_len);
  e->value[value_len] = '\0';
  e->value_len = value_len;
  md->count++;
  return 0;
}

int prpc_metadata_add_str(prpc_metadata *md, const char *key,
                          const char *value) {
  return prpc_metadata_add(md, key, value, value ? strlen(value) : 0);
}

const prpc_md *prpc_metadata_get(const prpc_metadata *md, const char *key) {
  if (!md || !key)
    return NULL;
  for (size_t i = 0; i < md->count; i++)
    if (strcmp(md->items[i].key, key) == 0)
      return &md->items[i];
  return NULL;
}

void prpc_metadata_clear(prpc_metadata *md) {
  if (!md)
    return;
  for (size_t i = 0; i < md->count; i++) {
    free(md->items[i].key);
    free(md->items[i].value);
  }
  free(md->items);
  md->items = NULL;
  md->count = md->capacity = 0;
}

void prpc_status_clear(prpc_status *st) {
  if (!st)
    return;
  free(st->message);
  prpc_metadata_clear(&st->headers);
  prpc_metadata_clear(&st->trailers);
  st->code = GRPC_STATUS_OK;
  st->message = NULL;
}

int prpc__md_to_core(const prpc_metadata *md, const char *extra_key,
                     const char *extra_value, grpc_metadata **out,
                     size_t *count) {
  size_t n = (md ? md->count : 0) + (extra_key ? 1 : 0);
  grpc_metadata *arr;
  *out = NULL;
  *count = 0;
  if (n == 0)
    return 0;
  arr = calloc(n, sizeof(*arr));
  if (!arr)
    return -ENOMEM;
  for (size_t i = 0; md && i < md->count; i++) {
    arr[i].key = grpc_slice_from_static_string(md->items[i].key);
    arr[i].value = grpc_slice_from_static_buffer(md->items[i].value,
                                                 md->items[i].value_len);
  }
  if (extra_key) {
    arr[n - 1].key = grpc_slice_from_static_string(extra_key);
    arr[n - 1].value = grpc_slice_from_static_string(extra_value);
  }
  *out = arr;
  *count = n;
  return 0;
}

char *prpc__slice_strdup(grpc_slice s) {
  size_t n = GRPC_SLICE_LENGTH(s);
  char *p = malloc(n + 1);
  if (!p)
    return NULL;
  memcpy(p, GRPC_SLICE_START_PTR(s), n);
  p[n] = '\0';
  return p;
}

int prpc__md_from_core(prpc_metadata *md, const grpc_metadata_array *arr) {
  for (size_t i = 0; i < arr->count; i++) {
    char *key = prpc__slice_strdup(arr->metadata[i].key);
    const grpc_slice *v = &arr->metadata[i].value;
    prpc_md *e;
    if (!key)
      return -ENOMEM;
    e = next_slot(md);
    if (!e) {
      free(key);
      return -ENOMEM;
    }
    e->key = key;
    e->value = prpc__slice_strdup(*v);
    if (!e->value) {
      free(key);
      return -ENOMEM;
    }
    e->value_len = GRPC_SLICE_LENGTH(*v);
    md->count++;
  }
  return 0;
}
