/* A pool of protobuf descriptors (FileDescriptorProtos decoded with
 * protobuf-c, through the library's own copy of descriptor.proto, package
 * prpc_pb), filled from the descriptors generated code embeds (the
 * server's HTTP front end), from server reflection or a FileDescriptorSet
 * file (prpc), and looked up by full name. Part of the library, hidden
 * from its ABI; prpc links it from the static library. */
#ifndef PRPC_JSON_POOL_H
#define PRPC_JSON_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "prpc/descriptor.pb-c.h"

typedef PrpcPb__FileDescriptorProto pb_file;
typedef PrpcPb__DescriptorProto pb_msg;
typedef PrpcPb__FieldDescriptorProto pb_field;
typedef PrpcPb__EnumDescriptorProto pb_enum;
typedef PrpcPb__EnumValueDescriptorProto pb_enum_value;
typedef PrpcPb__ServiceDescriptorProto pb_service;
typedef PrpcPb__MethodDescriptorProto pb_method;

typedef enum sym_kind { SYM_MESSAGE, SYM_ENUM, SYM_SERVICE } sym_kind;

/* A named type or service. */
typedef struct pool_sym {
  char *name; /* full name without a leading dot: "pkg.Outer.Inner" */
  sym_kind kind;
  const void *desc; /* pb_msg, pb_enum or pb_service */
  const pb_file *file;
} pool_sym;

typedef struct pool {
  pb_file **files; /* each decoded file; they stay put as the pool grows */
  size_t n_files;
  pool_sym **syms; /* likewise */
  size_t n_syms, cap_syms;
  /* Called for a name the pool lacks (may be NULL): adds its file (from
   * the server's reflection) and returns 0, or returns -1. */
  int (*resolve)(struct pool *p, const char *name, void *data);
  void *resolve_data;
  int oom; /* memory ran out while adding a file */
} pool;
#define POOL_INIT {NULL, 0, NULL, 0, 0, NULL, NULL, 0}

/* Adds one serialized FileDescriptorProto. A file already in the pool (by
 * name) is ignored. Returns 0, -1 when the bytes do not decode (or memory
 * ran out), or
 * POOL_TOO_DEEP when they nest more than PRPC_MAX_DEPTH messages deep
 * (refused before they are decoded). */
#define POOL_TOO_DEEP (-2)
int prpc__pool_add_file(pool *p, const uint8_t *data, size_t len);
/* Adds every file of a serialized FileDescriptorSet. Returns 0 or -1. */
int prpc__pool_add_set(pool *p, const uint8_t *data, size_t len);
/* Returns 1 if a file of that name is in the pool. */
int prpc__pool_has_file(const pool *p, const char *name);
/* Finds a symbol by full name (a leading dot is allowed), or NULL. */
const pool_sym *prpc__pool_find(const pool *p, const char *name);
/* prpc__pool_find(), and on a miss the resolver, then prpc__pool_find() again. For
 * names found only at run time (the type inside a google.protobuf.Any).
 * Symbols found before stay valid. */
const pool_sym *prpc__pool_resolve(pool *p, const char *name);
/* Frees everything. */
void prpc__pool_free(pool *p);

/* 1 if the message's fields follow proto3 rules (no presence for plain
 * scalars, packed repeated scalars by default). */
int prpc__pool_is_proto3(const pb_file *f);
/* 1 if a field of this message tracks presence (proto2 optional or
 * required, proto3 optional, a oneof member, a message). */
int prpc__pool_field_has_presence(const pb_file *f, const pb_field *fd);
/* The field's JSON name: json_name from the descriptor, or the
 * lowerCamelCase of its name written into buf. */
const char *prpc__pool_json_name(const pb_field *fd, char *buf, size_t size);
/* The message a map field's entries have, or NULL if fd is not a map. */
const pb_msg *prpc__pool_map_entry(const pool *p, const pb_field *fd);
/* The name of a field type as written in .proto ("int32", "string", or
 * the message or enum's full name). */
const char *prpc__pool_type_name(const pb_field *fd);

#endif /* PRPC_JSON_POOL_H */
