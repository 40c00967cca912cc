/* The descriptor pool (see pool.h). */
#include "pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"
#include "wire_depth.h"

static char *join(const char *prefix, const char *name) {
  size_t a = prefix && *prefix ? strlen(prefix) + 1 : 0, b = strlen(name);
  char *s = malloc(a + b + 1);
  if (!s) return NULL;
  if (a) {
    memcpy(s, prefix, a - 1);
    s[a - 1] = '.';
  }
  memcpy(s + a, name, b + 1);
  return s;
}

/* Out of memory: the pool misses the symbol (and remembers it, so that
 * prpc__pool_add_file() fails); a library must not end the process. */
static void add_sym(pool *p, char *name, sym_kind kind, const void *desc,
                    const pb_file *file) {
  if (!name) {
    p->oom = 1;
    return;
  }
  if (prpc__pool_find(p, name)) { /* the first definition wins */
    free(name);
    return;
  }
  if (p->n_syms == p->cap_syms) {
    size_t cap = p->cap_syms ? 2 * p->cap_syms : 64;
    pool_sym **s = realloc(p->syms, cap * sizeof(*s));
    if (!s) {
      free(name);
      p->oom = 1;
      return;
    }
    p->syms = s;
    p->cap_syms = cap;
  }
  /* Each symbol on its own: pointers to it stay valid as the pool grows. */
  pool_sym *sym = malloc(sizeof(*sym));
  if (!sym) {
    free(name);
    p->oom = 1;
    return;
  }
  *sym = (pool_sym){name, kind, desc, file};
  p->syms[p->n_syms++] = sym;
}

static void add_enums(pool *p, const pb_file *f, const char *scope,
                      size_t n, pb_enum **enums) {
  for (size_t i = 0; i < n; i++)
    if (enums[i]->name)
      add_sym(p, join(scope, enums[i]->name), SYM_ENUM, enums[i], f);
}

static void add_messages(pool *p, const pb_file *f, const char *scope,
                         size_t n, pb_msg **msgs) {
  for (size_t i = 0; i < n; i++) {
    const pb_msg *m = msgs[i];
    if (!m->name) continue;
    char *full = join(scope, m->name);
    if (!full) {
      p->oom = 1;
      continue;
    }
    add_sym(p, full, SYM_MESSAGE, m, f);
    const pool_sym *s = prpc__pool_find(p, full);
    const char *sc = s ? s->name : NULL;
    if (!sc) continue;
    add_messages(p, f, sc, m->n_nested_type, m->nested_type);
    add_enums(p, f, sc, m->n_enum_type, m->enum_type);
  }
}

int prpc__pool_has_file(const pool *p, const char *name) {
  for (size_t i = 0; i < p->n_files; i++)
    if (p->files[i]->name && strcmp(p->files[i]->name, name) == 0) return 1;
  return 0;
}

int prpc__pool_add_file(pool *p, const uint8_t *data, size_t len) {
  /* protobuf-c's unpack recurses per nested message: a hostile server's
   * descriptor could be nested deep enough to overflow the stack. */
  if (prpc__wire_depth_check(
          &prpc_pb__file_descriptor_proto__descriptor,
          prpc__pbc_submessage, data, len) == PRPC__WIRE_TOO_DEEP)
    return POOL_TOO_DEEP;
  pb_file *f = prpc_pb__file_descriptor_proto__unpack(NULL, len,
                                                               data);
  if (!f) return -1;
  if (!f->name || prpc__pool_has_file(p, f->name)) {
    int rc = f->name ? 0 : -1;
    prpc_pb__file_descriptor_proto__free_unpacked(f, NULL);
    return rc;
  }
  pb_file **files = realloc(p->files, (p->n_files + 1) * sizeof(*files));
  if (!files) {
    prpc_pb__file_descriptor_proto__free_unpacked(f, NULL);
    return -1;
  }
  p->files = files;
  p->files[p->n_files++] = f;
  const char *pkg = f->package ? f->package : "";
  add_messages(p, f, pkg, f->n_message_type, f->message_type);
  add_enums(p, f, pkg, f->n_enum_type, f->enum_type);
  for (size_t i = 0; i < f->n_service; i++)
    if (f->service[i]->name)
      add_sym(p, join(pkg, f->service[i]->name), SYM_SERVICE, f->service[i],
              f);
  return p->oom ? -1 : 0;
}

int prpc__pool_add_set(pool *p, const uint8_t *data, size_t len) {
  wreader r = {data, data + len};
  wfield fl;
  int rc;
  while ((rc = wr_field(&r, &fl)) == 1) {
    if (fl.number != 1 || fl.wt != WT_LEN) continue;
    if (prpc__pool_add_file(p, fl.data, fl.len) != 0) return -1;
  }
  return rc;
}

const pool_sym *prpc__pool_find(const pool *p, const char *name) {
  if (name[0] == '.') name++;
  for (size_t i = 0; i < p->n_syms; i++)
    if (strcmp(p->syms[i]->name, name) == 0) return p->syms[i];
  return NULL;
}

void prpc__pool_free(pool *p) {
  for (size_t i = 0; i < p->n_syms; i++) {
    free(p->syms[i]->name);
    free(p->syms[i]);
  }
  for (size_t i = 0; i < p->n_files; i++)
    prpc_pb__file_descriptor_proto__free_unpacked(p->files[i], NULL);
  free(p->syms);
  free(p->files);
  *p = (pool)POOL_INIT;
}

const pool_sym *prpc__pool_resolve(pool *p, const char *name) {
  const pool_sym *s = prpc__pool_find(p, name);
  if (!s && p->resolve && p->resolve(p, name[0] == '.' ? name + 1 : name,
                                     p->resolve_data) == 0)
    s = prpc__pool_find(p, name);
  return s;
}

int prpc__pool_is_proto3(const pb_file *f) {
  return f->syntax && strcmp(f->syntax, "proto3") == 0;
}

int prpc__pool_field_has_presence(const pb_file *f, const pb_field *fd) {
  if (fd->label == PRPC_PB__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REPEATED)
    return 0;
  if (fd->type == PRPC_PB__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_MESSAGE)
    return 1;
  if (fd->has_oneof_index) return 1; /* proto3 optional is a oneof too */
  return !prpc__pool_is_proto3(f);
}

const char *prpc__pool_json_name(const pb_field *fd, char *buf, size_t size) {
  if (fd->json_name && *fd->json_name) return fd->json_name;
  size_t o = 0;
  int up = 0;
  for (const char *s = fd->name; *s && o + 1 < size; s++) {
    if (*s == '_') {
      up = 1;
      continue;
    }
    buf[o++] = up && *s >= 'a' && *s <= 'z' ? (char)(*s - 'a' + 'A') : *s;
    up = 0;
  }
  buf[o] = '\0';
  return buf;
}

const pb_msg *prpc__pool_map_entry(const pool *p, const pb_field *fd) {
  if (fd->label != PRPC_PB__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REPEATED ||
      fd->type != PRPC_PB__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_MESSAGE ||
      !fd->type_name)
    return NULL;
  const pool_sym *s = prpc__pool_find(p, fd->type_name);
  if (!s || s->kind != SYM_MESSAGE) return NULL;
  const pb_msg *m = s->desc;
  return m->options && m->options->has_map_entry && m->options->map_entry &&
                 m->n_field == 2
             ? m
             : NULL;
}

const char *prpc__pool_type_name(const pb_field *fd) {
  static const char *const names[] = {
      NULL,      "double",  "float",    "int64",    "uint64",
      "int32",   "fixed64", "fixed32",  "bool",     "string",
      "group",   NULL,      "bytes",    "uint32",   NULL,
      "sfixed32", "sfixed64", "sint32", "sint64"};
  if (fd->type_name) return fd->type_name[0] == '.' ? fd->type_name + 1
                                                     : fd->type_name;
  if ((unsigned)fd->type < sizeof(names) / sizeof(names[0]) &&
      names[fd->type])
    return names[fd->type];
  return "?";
}
