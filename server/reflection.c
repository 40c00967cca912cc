/* The standard server reflection service, grpc.reflection.v1 and
 * grpc.reflection.v1alpha (ServerReflectionInfo), built into the server.
 *
 * It answers from the FileDescriptorProtos that protoc-gen-prpc embeds in
 * generated code (prpc_service_desc.file, with the files it imports). At
 * start the server hands over its services; the files reachable from them
 * are gathered once (deduplicated by name), parsed with protobuf-c, and
 * every symbol they define goes into a sorted table. Calls then only read
 * that table, so they need no lock. */
#include "../runtime/internal.h"
#include "hooks.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <piperpc/method.h>

#include "grpc/reflection/v1/reflection.prpc.h"
#include "grpc/reflection/v1alpha/reflection.prpc.h"
#include "prpc/descriptor.pb-c.h"

typedef Grpc__Reflection__V1__ServerReflectionRequest Request;
typedef Grpc__Reflection__V1__ServerReflectionResponse Response;
typedef PrpcPb__FileDescriptorProto FileProto;
typedef PrpcPb__DescriptorProto MessageProto;
typedef PrpcPb__EnumDescriptorProto EnumProto;
typedef PrpcPb__FieldDescriptorProto FieldProto;

enum { SYM_OTHER, SYM_MESSAGE };

typedef struct rfile {
  const prpc_file_desc *fd;
  size_t *deps; /* indices of its imports in prpc__reflection.files */
  size_t n_deps;
} rfile;

typedef struct rsym {
  char *name; /* "pkg.Msg.Nested" */
  size_t file;
  int kind;
} rsym;

typedef struct rext {
  char *extendee; /* "pkg.Msg", without the leading '.' */
  int32_t number;
  size_t file;
} rext;

typedef struct prpc__reflection prpc__reflection;

struct prpc__reflection {
  rfile *files;
  size_t n_files, cap_files;
  rsym *syms;
  size_t n_syms, cap_syms;
  rext *exts;
  size_t n_exts, cap_exts;
  const char *const *services; /* borrowed from the server */
  size_t n_services;
  int oom;
  prpc_service_desc v1alpha; /* registered: lives as long as the server */
};

/* ---- building the index ---- */

static size_t file_index(const prpc__reflection *r, const char *name) {
  for (size_t i = 0; i < r->n_files; i++)
    if (strcmp(r->files[i].fd->name, name) == 0)
      return i;
  return SIZE_MAX;
}

/* Adds fd and its imports (depth first, so imports come first); returns its
 * index, or SIZE_MAX when out of memory. The first file of a name wins:
 * the same .proto generated into two libraries is one file. */
static size_t add_file(prpc__reflection *r, const prpc_file_desc *fd,
                       unsigned depth) {
  size_t at = file_index(r, fd->name);
  if (at != SIZE_MAX)
    return at;
  if (depth > 64) { /* import cycles cannot come from protoc */
    prpc__log(PRPC__LOG_WARN, "reflection: imports of %s nest too deep",
              fd->name);
    return SIZE_MAX;
  }
  size_t *deps = NULL;
  size_t n_deps = 0;
  if (fd->n_deps > 0 && !(deps = calloc(fd->n_deps, sizeof(*deps)))) {
    r->oom = 1;
    return SIZE_MAX;
  }
  for (size_t i = 0; i < fd->n_deps; i++) {
    if (!fd->deps[i] || !fd->deps[i]->name)
      continue;
    size_t d = add_file(r, fd->deps[i], depth + 1);
    if (d != SIZE_MAX)
      deps[n_deps++] = d;
  }
  if (r->n_files == r->cap_files) {
    size_t cap = r->cap_files ? 2 * r->cap_files : 16;
    rfile *f = realloc(r->files, cap * sizeof(*f));
    if (!f) {
      free(deps);
      r->oom = 1;
      return SIZE_MAX;
    }
    r->files = f;
    r->cap_files = cap;
  }
  r->files[r->n_files].fd = fd;
  r->files[r->n_files].deps = deps;
  r->files[r->n_files].n_deps = n_deps;
  return r->n_files++;
}

static char *scoped(const char *scope, const char *name) {
  size_t a = strlen(scope), b = strlen(name);
  char *s = malloc(a + b + 2);
  if (!s)
    return NULL;
  memcpy(s, scope, a);
  if (a)
    s[a++] = '.';
  memcpy(s + a, name, b + 1);
  return s;
}

/* Adds scope.name as a symbol of file; returns the full name (owned by the
 * table) or NULL. */
static const char *add_sym(prpc__reflection *r, const char *scope,
                           const char *name, size_t file, int kind) {
  if (!name || !*name)
    return NULL;
  if (r->n_syms == r->cap_syms) {
    size_t cap = r->cap_syms ? 2 * r->cap_syms : 64;
    rsym *s = realloc(r->syms, cap * sizeof(*s));
    if (!s) {
      r->oom = 1;
      return NULL;
    }
    r->syms = s;
    r->cap_syms = cap;
  }
  char *full = scoped(scope, name);
  if (!full) {
    r->oom = 1;
    return NULL;
  }
  r->syms[r->n_syms].name = full;
  r->syms[r->n_syms].file = file;
  r->syms[r->n_syms].kind = kind;
  r->n_syms++;
  return full;
}

static void add_ext(prpc__reflection *r, const FieldProto *f, size_t file) {
  if (!f->extendee || !f->has_number)
    return;
  if (r->n_exts == r->cap_exts) {
    size_t cap = r->cap_exts ? 2 * r->cap_exts : 16;
    rext *e = realloc(r->exts, cap * sizeof(*e));
    if (!e) {
      r->oom = 1;
      return;
    }
    r->exts = e;
    r->cap_exts = cap;
  }
  const char *t = f->extendee[0] == '.' ? f->extendee + 1 : f->extendee;
  if (!(r->exts[r->n_exts].extendee = strdup(t))) {
    r->oom = 1;
    return;
  }
  r->exts[r->n_exts].number = f->number;
  r->exts[r->n_exts].file = file;
  r->n_exts++;
}

/* Enum values are scoped like their enum, not inside it (protobuf's C++
 * scoping rule): "pkg.RED" for "enum Color { RED = 0; }" in pkg. */
static void index_enum(prpc__reflection *r, const char *scope,
                       const EnumProto *e, size_t file) {
  add_sym(r, scope, e->name, file, SYM_OTHER);
  for (size_t i = 0; i < e->n_value; i++)
    add_sym(r, scope, e->value[i]->name, file, SYM_OTHER);
}

static void index_message(prpc__reflection *r, const char *scope,
                          const MessageProto *m, size_t file,
                          unsigned depth) {
  const char *full = add_sym(r, scope, m->name, file, SYM_MESSAGE);
  if (!full || depth > 100)
    return;
  for (size_t i = 0; i < m->n_field; i++)
    add_sym(r, full, m->field[i]->name, file, SYM_OTHER);
  for (size_t i = 0; i < m->n_oneof_decl; i++)
    add_sym(r, full, m->oneof_decl[i]->name, file, SYM_OTHER);
  for (size_t i = 0; i < m->n_extension; i++) {
    add_sym(r, full, m->extension[i]->name, file, SYM_OTHER);
    add_ext(r, m->extension[i], file);
  }
  for (size_t i = 0; i < m->n_nested_type; i++)
    index_message(r, full, m->nested_type[i], file, depth + 1);
  for (size_t i = 0; i < m->n_enum_type; i++)
    index_enum(r, full, m->enum_type[i], file);
}

static void index_file(prpc__reflection *r, size_t file) {
  const prpc_file_desc *fd = r->files[file].fd;
  FileProto *f = prpc_pb__file_descriptor_proto__unpack(NULL, fd->len,
                                                        fd->data);
  if (!f) {
    prpc__log(PRPC__LOG_WARN,
              "reflection: the descriptor of %s does not decode; its "
              "symbols are not served",
              fd->name);
    return;
  }
  const char *pkg = f->package ? f->package : "";
  for (size_t i = 0; i < f->n_message_type; i++)
    index_message(r, pkg, f->message_type[i], file, 0);
  for (size_t i = 0; i < f->n_enum_type; i++)
    index_enum(r, pkg, f->enum_type[i], file);
  for (size_t i = 0; i < f->n_service; i++) {
    const char *svc = add_sym(r, pkg, f->service[i]->name, file, SYM_OTHER);
    for (size_t j = 0; svc && j < f->service[i]->n_method; j++)
      add_sym(r, svc, f->service[i]->method[j]->name, file, SYM_OTHER);
  }
  for (size_t i = 0; i < f->n_extension; i++) {
    add_sym(r, pkg, f->extension[i]->name, file, SYM_OTHER);
    add_ext(r, f->extension[i], file);
  }
  prpc_pb__file_descriptor_proto__free_unpacked(f, NULL);
}

static int sym_cmp(const void *a, const void *b) {
  const rsym *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  if (c)
    return c;
  return x->file < y->file ? -1 : x->file > y->file; /* first file wins */
}

static void clear_index(prpc__reflection *r) {
  for (size_t i = 0; i < r->n_files; i++)
    free(r->files[i].deps);
  for (size_t i = 0; i < r->n_syms; i++)
    free(r->syms[i].name);
  for (size_t i = 0; i < r->n_exts; i++)
    free(r->exts[i].extendee);
  free(r->files);
  free(r->syms);
  free(r->exts);
  r->files = NULL;
  r->syms = NULL;
  r->exts = NULL;
  r->n_files = r->cap_files = r->n_syms = r->cap_syms = 0;
  r->n_exts = r->cap_exts = 0;
}

static int prpc__reflection_build(prpc__reflection *r,
                           const prpc_service_desc *const *services,
                           const char *const *names, size_t n) {
  clear_index(r);
  r->oom = 0;
  r->services = names;
  r->n_services = n;
  for (size_t i = 0; i < n; i++)
    if (services[i]->file && services[i]->file->name)
      add_file(r, services[i]->file, 0);
  for (size_t i = 0; i < r->n_files && !r->oom; i++)
    index_file(r, i);
  if (r->oom) {
    clear_index(r);
    return prpc__fail(-ENOMEM, "out of memory");
  }
  if (r->n_syms > 1)
    qsort(r->syms, r->n_syms, sizeof(*r->syms), sym_cmp);
  return 0;
}

/* ---- lookups ---- */

static const rsym *find_sym(const prpc__reflection *r, const char *name) {
  size_t lo = 0, hi = r->n_syms;
  if (name[0] == '.')
    name++; /* ".pkg.Msg", as type names appear in descriptors */
  while (lo < hi) { /* the first entry >= name */
    size_t mid = lo + (hi - lo) / 2;
    if (strcmp(r->syms[mid].name, name) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < r->n_syms && strcmp(r->syms[lo].name, name) == 0 ? &r->syms[lo]
                                                               : NULL;
}

/* ---- the stream ---- */

typedef struct stream {
  prpc__reflection *r;
  unsigned char *sent; /* files already sent on this stream */
  ProtobufCBinaryData *out; /* room for every file */
  size_t n_out;
} stream;

/* Adds file and, depth first, its imports that this stream has not sent
 * yet. The requested file itself always goes out. */
static void collect(stream *st, size_t file, int requested) {
  const rfile *f = &st->r->files[file];
  if (st->sent[file] && !requested)
    return;
  st->sent[file] = 1;
  st->out[st->n_out].len = f->fd->len;
  st->out[st->n_out].data = (uint8_t *)f->fd->data;
  st->n_out++;
  for (size_t i = 0; i < f->n_deps; i++)
    collect(st, f->deps[i], 0);
}

/* How much of a name to quote in an error message: at most 200 bytes, cut
 * at a UTF-8 character boundary, so that the message stays valid UTF-8. */
static int quote_len(const char *name) {
  size_t n = strlen(name);
  if (n <= 200)
    return (int)n;
  n = 200;
  while (n > 0 && ((unsigned char)name[n] & 0xc0) == 0x80)
    n--;
  return (int)n;
}

static void set_error(Response *resp, Grpc__Reflection__V1__ErrorResponse *e,
                      grpc_status_code code, const char *message) {
  e->error_code = (int32_t)code;
  e->error_message = (char *)message;
  resp->message_response_case =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
  resp->error_response = e;
}

/* Answers one request: queues the response. Returns 0 or a negative code
 * (the call has ended). */
static int answer(prpc_ctx *ctx, stream *st, const Request *req) {
  prpc__reflection *r = st->r;
  Response resp = GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT;
  Grpc__Reflection__V1__FileDescriptorResponse files =
      GRPC__REFLECTION__V1__FILE_DESCRIPTOR_RESPONSE__INIT;
  Grpc__Reflection__V1__ExtensionNumberResponse numbers =
      GRPC__REFLECTION__V1__EXTENSION_NUMBER_RESPONSE__INIT;
  Grpc__Reflection__V1__ListServiceResponse list =
      GRPC__REFLECTION__V1__LIST_SERVICE_RESPONSE__INIT;
  Grpc__Reflection__V1__ErrorResponse error =
      GRPC__REFLECTION__V1__ERROR_RESPONSE__INIT;
  Grpc__Reflection__V1__ServiceResponse *svcs = NULL;
  Grpc__Reflection__V1__ServiceResponse **svc_ptrs = NULL;
  int32_t *nums = NULL;
  char message[300];
  size_t file = SIZE_MAX;
  int rc;

  resp.valid_host = req->host ? req->host : (char *)"";
  resp.original_request = (Request *)req;
  st->n_out = 0;
  switch (req->message_request_case) {
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
    svcs = calloc(r->n_services ? r->n_services : 1, sizeof(*svcs));
    svc_ptrs = calloc(r->n_services ? r->n_services : 1, sizeof(*svc_ptrs));
    if (!svcs || !svc_ptrs) {
      set_error(&resp, &error, GRPC_STATUS_RESOURCE_EXHAUSTED,
                "out of memory");
      break;
    }
    for (size_t i = 0; i < r->n_services; i++) {
      grpc__reflection__v1__service_response__init(&svcs[i]);
      svcs[i].name = (char *)r->services[i];
      svc_ptrs[i] = &svcs[i];
    }
    list.n_service = r->n_services;
    list.service = svc_ptrs;
    resp.message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
    resp.list_services_response = &list;
    break;
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME: {
    const char *name = req->file_by_filename ? req->file_by_filename : "";
    file = file_index(r, name);
    if (file == SIZE_MAX) {
      snprintf(message, sizeof(message), "file not found: %.*s",
               quote_len(name), name);
      set_error(&resp, &error, GRPC_STATUS_NOT_FOUND, message);
    }
    break;
  }
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL: {
    const char *name =
        req->file_containing_symbol ? req->file_containing_symbol : "";
    const rsym *s = find_sym(r, name);
    if (s) {
      file = s->file;
    } else {
      snprintf(message, sizeof(message), "symbol not found: %.*s",
               quote_len(name), name);
      set_error(&resp, &error, GRPC_STATUS_NOT_FOUND, message);
    }
    break;
  }
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION: {
    const Grpc__Reflection__V1__ExtensionRequest *e =
        req->file_containing_extension;
    const char *type = e && e->containing_type ? e->containing_type : "";
    int32_t number = e ? e->extension_number : 0;
    if (type[0] == '.')
      type++;
    for (size_t i = 0; i < r->n_exts && file == SIZE_MAX; i++)
      if (r->exts[i].number == number && strcmp(r->exts[i].extendee, type) == 0)
        file = r->exts[i].file;
    if (file == SIZE_MAX) {
      snprintf(message, sizeof(message), "extension not found: %.*s(%d)",
               quote_len(type), type, (int)number);
      set_error(&resp, &error, GRPC_STATUS_NOT_FOUND, message);
    }
    break;
  }
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE: {
    const char *type = req->all_extension_numbers_of_type
                           ? req->all_extension_numbers_of_type
                           : "";
    const rsym *s = find_sym(r, type);
    if (type[0] == '.')
      type++;
    if (!s || s->kind != SYM_MESSAGE) {
      snprintf(message, sizeof(message), "type not found: %.*s",
               quote_len(type), type);
      set_error(&resp, &error, GRPC_STATUS_NOT_FOUND, message);
      break;
    }
    nums = calloc(r->n_exts ? r->n_exts : 1, sizeof(*nums));
    if (!nums) {
      set_error(&resp, &error, GRPC_STATUS_RESOURCE_EXHAUSTED,
                "out of memory");
      break;
    }
    for (size_t i = 0; i < r->n_exts; i++)
      if (strcmp(r->exts[i].extendee, type) == 0)
        nums[numbers.n_extension_number++] = r->exts[i].number;
    numbers.base_type_name = (char *)type;
    numbers.extension_number = nums;
    resp.message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
    resp.all_extension_numbers_response = &numbers;
    break;
  }
  default:
    set_error(&resp, &error, GRPC_STATUS_INVALID_ARGUMENT,
              "the request asks for nothing this server knows");
    break;
  }

  if (file != SIZE_MAX) {
    collect(st, file, 1);
    files.file_descriptor_proto = st->out;
    files.n_file_descriptor_proto = st->n_out;
    resp.message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
    resp.file_descriptor_response = &files;
  }
  rc = prpc_ctx_send(ctx, &resp, 0);
  free(svcs);
  free(svc_ptrs);
  free(nums);
  return rc;
}

/* The stream is asynchronous: each request read is answered at once (the
 * answer only queues), then the next is asked for; no thread waits. */
static void on_request(prpc_ctx *ctx, void *msg, void *user_data) {
  stream *st = user_data;
  if (!msg) {
    prpc_ctx_finish(ctx, GRPC_STATUS_OK); /* the client half-closed */
    return;
  }
  if (answer(ctx, st, msg) == 0)
    prpc_ctx_read_async(ctx);
}

static void on_stream_done(prpc_ctx *ctx, int cancelled, void *user_data) {
  stream *st = user_data;
  (void)ctx;
  (void)cancelled;
  free(st->sent);
  free(st->out);
  free(st);
}

static const prpc_ctx_callbacks stream_callbacks = {
    .on_read = on_request, .on_done = on_stream_done};

static grpc_status_code info(prpc_ctx *ctx, void *user_data) {
  prpc__reflection *r = user_data;
  stream *st = calloc(1, sizeof(*st));
  if (!st || !(st->sent = calloc(r->n_files ? r->n_files : 1, 1)) ||
      !(st->out = calloc(r->n_files ? r->n_files : 1, sizeof(*st->out)))) {
    if (st)
      free(st->sent);
    free(st);
    prpc_ctx_set_message(ctx, "out of memory");
    return GRPC_STATUS_RESOURCE_EXHAUSTED;
  }
  st->r = r;
  if (prpc_ctx_set_callbacks(ctx, &stream_callbacks, st) != 0) {
    on_stream_done(ctx, 1, st);
    return GRPC_STATUS_INTERNAL;
  }
  if (prpc_ctx_read_async(ctx) != 0)
    return GRPC_STATUS_CANCELLED; /* on_done frees st */
  return prpc_ctx_defer(ctx);
}

static grpc_status_code invoke(const void *impl, prpc_ctx *ctx,
                               const void *request, void *reply,
                               void *user_data) {
  (void)impl;
  (void)request;
  (void)reply;
  return info(ctx, user_data);
}

/* Both versions are the same protocol under two packages: identical fields
 * and numbers. So v1alpha's method decodes and encodes with v1's message
 * descriptors, and one handler serves both; the service keeps v1alpha's own
 * name and file. */
static const prpc_method_desc v1alpha_methods[1] = {
    {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
     PRPC_BIDI_STREAMING, &prpc_codec_protobuf_c,
     &grpc__reflection__v1__server_reflection_request__descriptor,
     &grpc__reflection__v1__server_reflection_response__descriptor}};

/* ---- its hooks into the server's life ---- */

static int reflection_start(void *data,
                            const prpc_service_desc *const *services,
                            const char *const *names, size_t n) {
  return prpc__reflection_build(data, services, names, n);
}

static void reflection_destroy(void *data) {
  prpc__reflection *r = data;
  clear_index(r);
  free(r);
}

static const prpc__hook reflection_hook = {"reflection", reflection_start,
                                           NULL, reflection_destroy};

int prpc_server_enable_reflection(prpc_server *srv) {
  static const prpc_invoke_fn invokers[1] = {invoke};
  const prpc_service_desc *alpha =
      &grpc__reflection__v1alpha__server_reflection__prpc_service;
  prpc__reflection *r;
  int rc;
  if (!srv)
    return prpc__fail(-EINVAL, "prpc_server_enable_reflection: server is "
                               "NULL");
  if (prpc__server_started(srv))
    return prpc__fail(PRPC_ESTATE, "reflection must be enabled before start");
  if (prpc__server_hook_data(srv, &reflection_hook))
    return prpc__fail(PRPC_EEXIST, "reflection is already enabled");
  if (!(r = calloc(1, sizeof(*r))))
    return prpc__fail(-ENOMEM, "out of memory");
  r->v1alpha.name = alpha->name;
  r->v1alpha.n_methods = 1;
  r->v1alpha.methods = v1alpha_methods;
  r->v1alpha.file = alpha->file;
  if ((rc = prpc__server_add_hook(srv, &reflection_hook, r)) != 0) {
    free(r);
    return rc;
  }
  rc = prpc_server_register_flags(
      srv, &grpc__reflection__v1__server_reflection__prpc_service, invokers,
      NULL, r, r, PRPC_ASYNC_HANDLERS);
  if (rc != 0) {
    prpc__server_drop_hook(srv, &reflection_hook);
    free(r);
    return rc;
  }
  /* From here the server holds r (through the hook): it destroys it. */
  return prpc_server_register_flags(srv, &r->v1alpha, invokers, NULL, r, r,
                                    PRPC_ASYNC_HANDLERS);
}
