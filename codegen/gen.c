/* The code generator: CodeGeneratorRequest in, CodeGeneratorResponse out.
 * All it knows of protobuf-c is its naming rules, written again here from
 * protobuf-c's documentation of generated names:
 *   type      Foo__Bar__BazQux      each dotted piece in CamelCase
 *   function  foo__bar__baz_qux     each piece lower case, '_' before a
 *                                   capital that follows a non-capital
 *   macro     FOO__BAR__BAZ_QUX     the same in upper case
 * With backend=nanopb the messages are nanopb's (its default long names:
 * the full name with '.' turned into '_', "foo_bar_BazQux", descriptors
 * <type>_msg); the stubs and handler tables keep the names above. */
#include "gen.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/compiler/plugin.pb-c.h"
#include "google/protobuf/descriptor.pb-c.h"

typedef Google__Protobuf__Compiler__CodeGeneratorRequest Request;
typedef Google__Protobuf__Compiler__CodeGeneratorResponse Response;
typedef Google__Protobuf__Compiler__CodeGeneratorResponse__File OutFile;
typedef Google__Protobuf__FileDescriptorProto FileProto;
typedef Google__Protobuf__ServiceDescriptorProto ServiceProto;
typedef Google__Protobuf__MethodDescriptorProto MethodProto;

/* ---- strings ---- */

typedef struct sb {
  char *p;
  size_t len, cap;
  int oom;
} sb;

static void sb_vprintf(sb *b, const char *fmt, va_list ap) {
  va_list ap2;
  int n;
  if (b->oom)
    return;
  va_copy(ap2, ap);
  n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt,
                ap2);
  va_end(ap2);
  if (n < 0) {
    b->oom = 1;
    return;
  }
  if (!b->p || b->len + (size_t)n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + (size_t)n + 1)
      cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
    vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
  }
  b->len += (size_t)n;
}

static void sb_printf(sb *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sb_printf(sb *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sb_vprintf(b, fmt, ap);
  va_end(ap);
}

/* Every name the generator makes lives until the run ends. */
typedef struct gen {
  int nanopb; /* backend=nanopb */
  char **names;
  size_t n_names, cap_names;
  int oom;
  char error[512];
} gen;

static char *keep(gen *g, sb *b) {
  if (b->oom || !b->p) {
    free(b->p);
    g->oom = 1;
    return "";
  }
  if (g->n_names == g->cap_names) {
    size_t cap = g->cap_names ? g->cap_names * 2 : 64;
    char **n = realloc(g->names, cap * sizeof(*n));
    if (!n) {
      free(b->p);
      g->oom = 1;
      return "";
    }
    g->names = n;
    g->cap_names = cap;
  }
  g->names[g->n_names++] = b->p;
  return b->p;
}

static void fail(gen *g, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void fail(gen *g, const char *fmt, ...) {
  va_list ap;
  if (g->error[0])
    return; /* keep the first error */
  va_start(ap, fmt);
  vsnprintf(g->error, sizeof(g->error), fmt, ap);
  va_end(ap);
}

/* ---- protobuf-c's naming rules ---- */

enum { CASE_CAMEL, CASE_LOWER, CASE_UPPER };

static void piece(sb *b, const char *s, size_t n, int style) {
  int was_upper = 1, next_upper = 1;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    int up = isupper((unsigned char)c) != 0;
    switch (style) {
    case CASE_CAMEL:
      if (c == '_') {
        next_upper = 1;
      } else {
        sb_printf(b, "%c", next_upper ? toupper((unsigned char)c) : c);
        next_upper = 0;
      }
      break;
    case CASE_LOWER:
    case CASE_UPPER:
      if (up && !was_upper)
        sb_printf(b, "_");
      sb_printf(b, "%c", style == CASE_LOWER ? tolower((unsigned char)c)
                                             : toupper((unsigned char)c));
      was_upper = up;
      break;
    }
  }
}

/* A dotted full name ("pkg.sub.Msg", leading '.' allowed) in one style,
 * pieces joined with "__". */
static char *full_name(gen *g, const char *name, int style) {
  sb b = {0};
  const char *p = name;
  int first = 1;
  while (*p) {
    const char *dot = strchr(p, '.');
    size_t n = dot ? (size_t)(dot - p) : strlen(p);
    if (n > 0) {
      if (!first)
        sb_printf(&b, "__");
      piece(&b, p, n, style);
      first = 0;
    }
    p += n + (dot ? 1 : 0);
    if (!dot)
      break;
  }
  if (!b.p)
    sb_printf(&b, "%s", "");
  return keep(g, &b);
}

static char *join(gen *g, const char *a, const char *sep, const char *c) {
  sb b = {0};
  sb_printf(&b, "%s%s%s", a, *a ? sep : "", c);
  return keep(g, &b);
}

/* nanopb's C name of a message: ".pkg.Outer.Inner" -> "pkg_Outer_Inner". */
static char *nanopb_name(gen *g, const char *type) {
  sb b = {0};
  for (const char *p = type[0] == '.' ? type + 1 : type; *p; p++)
    sb_printf(&b, "%c", *p == '.' ? '_' : *p);
  if (!b.p)
    sb_printf(&b, "%s", "");
  return keep(g, &b);
}

static int is_ident(const char *s) {
  if (!s || !(isalpha((unsigned char)*s) || *s == '_'))
    return 0;
  for (; *s; s++)
    if (!(isalnum((unsigned char)*s) || *s == '_'))
      return 0;
  return 1;
}

static int is_dotted_ident(const char *s) {
  if (!s || !*s)
    return 0;
  for (;;) {
    const char *dot = strchr(s, '.');
    size_t n = dot ? (size_t)(dot - s) : strlen(s);
    if (n == 0 || !(isalpha((unsigned char)*s) || *s == '_'))
      return 0;
    for (size_t i = 0; i < n; i++)
      if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
        return 0;
    if (!dot)
      return 1;
    s = dot + 1;
  }
}

/* ---- the model of one method ---- */

typedef struct method {
  const char *name;      /* SayHello */
  const char *lower;     /* say_hello */
  const char *path;      /* /helloworld.Greeter/SayHello */
  const char *in_type;   /* Helloworld__HelloRequest */
  const char *out_type;  /* Helloworld__HelloReply */
  const char *in_desc;   /* helloworld__hello_request__descriptor; nanopb:
                            helloworld_HelloRequest__prpc_type */
  const char *out_desc;
  const char *kind;      /* PRPC_UNARY ... */
  int client_streaming, server_streaming;
} method;

typedef struct service {
  int nanopb;         /* messages are nanopb structs */
  const char *full;   /* helloworld.Greeter */
  const char *lower;  /* helloworld__greeter */
  const char *camel;  /* Helloworld__Greeter */
  const char *upper;  /* HELLOWORLD__GREETER */
  method *methods;
  size_t n;
  const char *file_desc; /* the static prpc_file_desc of its .proto */
} service;

/* Finds the file that defines a fully qualified message name, so that the
 * c_package option of protobuf-c can be refused where it applies. */
static const FileProto *file_of_type(const Request *req, const char *type) {
  for (size_t i = 0; i < req->n_proto_file; i++) {
    const FileProto *f = req->proto_file[i];
    const char *pkg = f->package ? f->package : "";
    size_t pl = strlen(pkg);
    const char *rest = type + 1;
    if (pl) {
      if (strncmp(rest, pkg, pl) != 0 || rest[pl] != '.')
        continue;
      rest += pl + 1;
    }
    for (size_t m = 0; m < f->n_message_type; m++) {
      const char *mn = f->message_type[m]->name;
      size_t ml = mn ? strlen(mn) : 0;
      if (ml && strncmp(rest, mn, ml) == 0 &&
          (rest[ml] == '\0' || rest[ml] == '.'))
        return f;
    }
  }
  return NULL;
}

/* Reads a varint; returns the bytes used, or 0 if malformed. */
static size_t read_varint(const uint8_t *p, size_t len, uint64_t *v) {
  *v = 0;
  for (size_t i = 0; i < len && i < 10; i++) {
    *v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
    if (!(p[i] & 0x80))
      return i + 1;
  }
  return 0;
}

/* Returns the c_package set through protobuf-c's file option
 * (google.protobuf.FileOptions extension 1019, ProtobufCFileOptions field 6),
 * or NULL. protobuf-c.proto is marked no_generate, so the few bytes are read
 * here by hand. */
static char *c_package_of(const FileProto *f) {
  const Google__Protobuf__FileOptions *o = f ? f->options : NULL;
  if (!o)
    return NULL;
  for (size_t i = 0; i < o->base.n_unknown_fields; i++) {
    const ProtobufCMessageUnknownField *u = &o->base.unknown_fields[i];
    const uint8_t *p = u->data;
    size_t left = u->len;
    uint64_t inner;
    size_t used;
    if (u->tag != 1019 || u->wire_type != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED)
      continue;
    /* protobuf-c keeps the length prefix in an unknown field's data. */
    if ((used = read_varint(p, left, &inner)) == 0 || inner != left - used)
      return NULL;
    p += used;
    left -= used;
    while (left > 0) {
      uint64_t key, val;
      size_t n = read_varint(p, left, &key);
      if (n == 0)
        return NULL;
      p += n;
      left -= n;
      switch (key & 7) {
      case 0:
        if ((n = read_varint(p, left, &val)) == 0)
          return NULL;
        break;
      case 1:
        n = 8;
        break;
      case 5:
        n = 4;
        break;
      case 2:
        if ((n = read_varint(p, left, &val)) == 0 || val > left - n)
          return NULL;
        if ((key >> 3) == 6)
          return strndup((const char *)p + n, (size_t)val);
        n += (size_t)val;
        break;
      default:
        return NULL;
      }
      if (n > left)
        return NULL;
      p += n;
      left -= n;
    }
  }
  return NULL;
}

static int check_type(gen *g, const Request *req, const char *type,
                      const char *where) {
  const FileProto *f;
  char *cpkg;
  if (!type || type[0] != '.' || !is_dotted_ident(type + 1)) {
    fail(g, "%s: message type '%s' is not a fully qualified name", where,
         type ? type : "(none)");
    return -1;
  }
  f = file_of_type(req, type);
  if (!f) {
    fail(g, "%s: message type '%s' is not defined in any file of the request",
         where, type);
    return -1;
  }
  cpkg = g->nanopb ? NULL : c_package_of(f);
  if (cpkg) {
    fail(g,
         "%s: %s sets protobuf-c's c_package option ('%s'), which "
         "protoc-gen-prpc does not support",
         where, f->name ? f->name : "a file", cpkg);
    free(cpkg);
    return -1;
  }
  return 0;
}

/* C keywords: a method whose C name is one cannot be a field of the
 * handler table (nor of protobuf-c's own service struct). */
static int is_c_keyword(const char *s) {
  static const char *const kw[] = {
      "auto",   "break",    "case",     "char",   "const",    "continue",
      "default", "do",      "double",   "else",   "enum",     "extern",
      "float",  "for",      "goto",     "if",     "inline",   "int",
      "long",   "register", "restrict", "return", "short",    "signed",
      "sizeof", "static",   "struct",   "switch", "typedef",  "union",
      "unsigned", "void",   "volatile", "while"};
  for (size_t i = 0; i < sizeof(kw) / sizeof(kw[0]); i++)
    if (strcmp(s, kw[i]) == 0)
      return 1;
  return 0;
}

/* The functions a method adds after "<service>_client__" (side 0) or
 * "<service>_server__" (side 1): its C name and a suffix per kind. Fills
 * out[] (at most 3) and returns how many. */
static size_t method_suffixes(const method *m, int side, const char *out[8]) {
  size_t n = 0;
  if (side == 0) {
    if (!m->client_streaming && !m->server_streaming) {
      out[n++] = "";
      out[n++] = "_async";
      return n;
    }
    out[n++] = "_start";
    out[n++] = "_start_async";
    if (m->client_streaming) {
      out[n++] = "_write";
      out[n++] = "_send";
    }
    if (m->server_streaming)
      out[n++] = "_read";
    if (m->client_streaming && !m->server_streaming)
      out[n++] = "_finish";
  } else {
    if (m->server_streaming) {
      out[n++] = "_write";
      out[n++] = "_send";
    }
    if (m->client_streaming)
      out[n++] = "_read";
  }
  return n;
}

/* Is a1a2 the same string as b1b2? */
static int concat_eq(const char *a1, const char *a2, const char *b1,
                     const char *b2) {
  size_t la = strlen(a1), lb = strlen(b1), n = la + strlen(a2);
  if (n != lb + strlen(b2))
    return 0;
  for (size_t i = 0; i < n; i++)
    if ((i < la ? a1[i] : a2[i - la]) != (i < lb ? b1[i] : b2[i - lb]))
      return 0;
  return 1;
}

/* Two methods of a service whose generated functions have the same name
 * (Talk streaming makes talk_write; a method TalkWrite makes it too): the
 * C would not compile, so refuse them. */
static int check_function_names(gen *g, const FileProto *f, const service *s) {
  for (int side = 0; side < 2; side++)
    for (size_t i = 0; i < s->n; i++) {
      const method *mi = &s->methods[i];
      const char *si[8], *sj[8];
      size_t ni = method_suffixes(mi, side, si);
      for (size_t j = 0; j < i; j++) {
        const method *mj = &s->methods[j];
        size_t nj = method_suffixes(mj, side, sj);
        for (size_t a = 0; a < ni; a++)
          for (size_t b = 0; b < nj; b++)
            if (concat_eq(mi->lower, si[a], mj->lower, sj[b])) {
              fail(g,
                   "%s: methods %s and %s of %s both generate the C "
                   "function '%s_%s__%s%s'",
                   f->name, mj->name, mi->name, s->full, s->lower,
                   side ? "server" : "client", mi->lower, si[a]);
              return -1;
            }
      }
    }
  return 0;
}

/* A message or enum of the service's package named <Service>Server has
 * protobuf-c's C type <Package>__<Service>Server: the handler table's
 * name. */
static int check_type_names(gen *g, const Request *req, const FileProto *f,
                            const ServiceProto *sp) {
  const char *pkg = f->package ? f->package : "";
  size_t n = strlen(sp->name);
  for (size_t i = 0; i < req->n_proto_file; i++) {
    const FileProto *o = req->proto_file[i];
    if (strcmp(o->package ? o->package : "", pkg) != 0)
      continue;
    for (size_t k = 0; k < o->n_message_type + o->n_enum_type; k++) {
      const char *t = k < o->n_message_type
                          ? o->message_type[k]->name
                          : o->enum_type[k - o->n_message_type]->name;
      if (t && strncmp(t, sp->name, n) == 0 && strcmp(t + n, "Server") == 0) {
        fail(g,
             "%s: service %s's handler table would be named like %s %s in "
             "%s; rename one of them",
             f->name, sp->name, k < o->n_message_type ? "message" : "enum", t,
             o->name ? o->name : "the request");
        return -1;
      }
    }
  }
  return 0;
}

static int build_service(gen *g, const Request *req, const FileProto *f,
                         const ServiceProto *sp, service *s) {
  const char *pkg = f->package ? f->package : "";
  if (!is_ident(sp->name)) {
    fail(g, "%s: service name '%s' is not an identifier", f->name,
         sp->name ? sp->name : "");
    return -1;
  }
  s->nanopb = g->nanopb;
  s->full = join(g, pkg, ".", sp->name);
  s->lower = full_name(g, s->full, CASE_LOWER);
  s->camel = full_name(g, s->full, CASE_CAMEL);
  s->upper = full_name(g, s->full, CASE_UPPER);
  s->n = sp->n_method;
  s->methods = calloc(s->n ? s->n : 1, sizeof(*s->methods));
  if (!s->methods) {
    g->oom = 1;
    return -1;
  }
  for (size_t i = 0; i < sp->n_method; i++) {
    const MethodProto *mp = sp->method[i];
    method *m = &s->methods[i];
    char where[300];
    snprintf(where, sizeof(where), "%s: %s.%s", f->name, s->full,
             mp->name ? mp->name : "?");
    if (!is_ident(mp->name)) {
      fail(g, "%s: method name is not an identifier", where);
      return -1;
    }
    if (check_type(g, req, mp->input_type, where) != 0 ||
        check_type(g, req, mp->output_type, where) != 0)
      return -1;
    m->name = mp->name;
    m->lower = full_name(g, mp->name, CASE_LOWER);
    for (size_t j = 0; j < i; j++)
      if (strcmp(s->methods[j].lower, m->lower) == 0) {
        fail(g, "%s: methods %s and %s both map to the C name '%s'", f->name,
             s->methods[j].name, m->name, m->lower);
        return -1;
      }
    /* A C keyword cannot be a field of the handler table; prpc_service and
     * methods would clash with the service's tables. */
    if (is_c_keyword(m->lower) || strcmp(m->lower, "prpc_service") == 0 ||
        strcmp(m->lower, "methods") == 0) {
      fail(g, "%s: method %s maps to the C name '%s', which %s", where,
           m->name, m->lower,
           is_c_keyword(m->lower) ? "is a C keyword"
                                  : "piperpc uses for the service's tables");
      return -1;
    }
    {
      sb b = {0};
      sb_printf(&b, "/%s/%s", s->full, mp->name);
      m->path = keep(g, &b);
    }
    if (g->nanopb) {
      m->in_type = nanopb_name(g, mp->input_type);
      m->out_type = nanopb_name(g, mp->output_type);
      m->in_desc = join(g, m->in_type, "", "__prpc_type");
      m->out_desc = join(g, m->out_type, "", "__prpc_type");
    } else {
      m->in_type = full_name(g, mp->input_type, CASE_CAMEL);
      m->out_type = full_name(g, mp->output_type, CASE_CAMEL);
      m->in_desc = join(g, full_name(g, mp->input_type, CASE_LOWER), "",
                        "__descriptor");
      m->out_desc = join(g, full_name(g, mp->output_type, CASE_LOWER), "",
                         "__descriptor");
    }
    m->client_streaming = mp->has_client_streaming && mp->client_streaming;
    m->server_streaming = mp->has_server_streaming && mp->server_streaming;
    m->kind = m->client_streaming
                  ? (m->server_streaming ? "PRPC_BIDI_STREAMING"
                                         : "PRPC_CLIENT_STREAMING")
                  : (m->server_streaming ? "PRPC_SERVER_STREAMING"
                                         : "PRPC_UNARY");
  }
  if (check_function_names(g, f, s) != 0 ||
      check_type_names(g, req, f, sp) != 0)
    return -1;
  return 0;
}

/* ---- output ---- */

static void emit_header_service(sb *h, const service *s) {
  sb_printf(h,
            "\n/* ---- %s ---- */\n\n"
            "/* The method table, for prpc_server_register() and tools. */\n"
            "extern const prpc_service_desc %s__prpc_service;\n",
            s->full, s->lower);

  sb_printf(h, "\n/* Client. Ownership and return values as documented for "
               "prpc_unary_call()\n * and prpc_call_*() in "
               "<piperpc/piperpc.h>. */\n");
  for (size_t i = 0; i < s->n; i++) {
    const method *m = &s->methods[i];
    const char *fn = s->lower;
    if (!m->client_streaming && !m->server_streaming && s->nanopb) {
      sb_printf(h,
                "\n/* Calls %s and blocks until it ends. reply is the "
                "caller's struct\n * (%s_init_zero, plus any decode "
                "callbacks), filled on GRPC_STATUS_OK;\n * NULL drops the "
                "reply. See prpc_unary_call_into(). */\n"
                "grpc_status_code %s_client__%s(prpc_channel *channel,\n"
                "    const %s *request, const prpc_call_opts *opts,\n"
                "    %s *reply, prpc_status *status);\n",
                m->path, m->out_type, fn, m->lower, m->in_type, m->out_type);
      sb_printf(h,
                "/* Calls %s and returns at once; done gets the reply (in "
                "*reply, which\n * must stay valid until then) and the "
                "status. call may be NULL; else it is\n * set to the call, "
                "for prpc_call_cancel(), valid until done returns. See\n * "
                "prpc_unary_call_async_into(). */\n"
                "int %s_client__%s_async(prpc_channel *channel,\n"
                "    const %s *request, const prpc_call_opts *opts, %s "
                "*reply,\n"
                "    void (*done)(%s *reply, const prpc_status *status, "
                "void *user_data),\n"
                "    void *user_data, prpc_call **call);\n",
                m->path, fn, m->lower, m->in_type, m->out_type, m->out_type);
      continue;
    }
    if (!m->client_streaming && !m->server_streaming) {
      sb_printf(h,
                "\n/* Calls %s and blocks until it ends. On GRPC_STATUS_OK "
                "*reply is a new\n * message the caller owns: free it with "
                "protobuf_c_message_free_unpacked().\n * NULL for reply "
                "drops the reply (a google.protobuf.Empty, say). */\n"
                "grpc_status_code %s_client__%s(prpc_channel *channel,\n"
                "    const %s *request, const prpc_call_opts *opts,\n"
                "    %s **reply, prpc_status *status);\n",
                m->path, fn, m->lower, m->in_type, m->out_type);
      sb_printf(h,
                "/* Calls %s and returns at once; done gets the reply "
                "(borrowed until it\n * returns; NULL unless "
                "GRPC_STATUS_OK) and the status. call may be NULL;\n * "
                "else it is set to the call, for prpc_call_cancel(), valid "
                "until done\n * returns. See prpc_unary_call_async(). */\n"
                "int %s_client__%s_async(prpc_channel *channel,\n"
                "    const %s *request, const prpc_call_opts *opts,\n"
                "    void (*done)(%s *reply, const prpc_status *status, "
                "void *user_data),\n"
                "    void *user_data, prpc_call **call);\n",
                m->path, fn, m->lower, m->in_type, m->out_type);
      continue;
    }
    sb_printf(h, "\n/* %s (%s). End the call with ", m->path,
              m->client_streaming && m->server_streaming ? "bidi-streaming"
              : m->client_streaming ? "client-streaming"
                                    : "server-streaming");
    if (m->client_streaming && !m->server_streaming)
      sb_printf(h, "%s_client__%s_finish(). */\n", fn, m->lower);
    else
      sb_printf(h, "prpc_call_finish(call, NULL, status). */\n");
    if (m->server_streaming && !m->client_streaming)
      sb_printf(h,
                "int %s_client__%s_start(prpc_channel *channel,\n"
                "    const %s *request, const prpc_call_opts *opts,\n"
                "    prpc_call **call);\n",
                fn, m->lower, m->in_type);
    else
      sb_printf(h,
                "int %s_client__%s_start(prpc_channel *channel,\n"
                "    const prpc_call_opts *opts, prpc_call **call);\n",
                fn, m->lower);
    if (m->client_streaming)
      sb_printf(h, "int %s_client__%s_write(prpc_call *call, const %s *msg);\n",
                fn, m->lower, m->in_type);
    if (m->server_streaming)
      sb_printf(h, "int %s_client__%s_read(prpc_call *call, %s %s);\n", fn,
                m->lower, m->out_type, s->nanopb ? "*msg" : "**msg");
    if (m->client_streaming && !m->server_streaming)
      sb_printf(h,
                "grpc_status_code %s_client__%s_finish(prpc_call *call,\n"
                "    %s %s, prpc_status *status);\n",
                fn, m->lower, m->out_type, s->nanopb ? "*reply" : "**reply");
    sb_printf(h,
              "/* Asynchronously: callbacks get the %ss and the end; see "
              "prpc_call_start_async(). */\n",
              m->out_type);
    if (m->server_streaming && !m->client_streaming)
      sb_printf(h,
                "int %s_client__%s_start_async(prpc_channel *channel,\n"
                "    const %s *request, const prpc_call_opts *opts,\n"
                "    const prpc_call_callbacks *callbacks, void *user_data,\n"
                "    prpc_call **call);\n",
                fn, m->lower, m->in_type);
    else
      sb_printf(h,
                "int %s_client__%s_start_async(prpc_channel *channel,\n"
                "    const prpc_call_opts *opts, const prpc_call_callbacks "
                "*callbacks,\n"
                "    void *user_data, prpc_call **call);\n",
                fn, m->lower);
    if (m->client_streaming)
      sb_printf(h,
                "/* Queues one %s; see prpc_call_send(). */\n"
                "int %s_client__%s_send(prpc_call *call, const %s *msg);\n",
                m->in_type, fn, m->lower, m->in_type);
  }

  if (s->nanopb)
    sb_printf(h,
              "\n/* Server. One handler per rpc; a NULL handler answers "
              "UNIMPLEMENTED.\n"
              " * request is borrowed until the handler returns. reply "
              "starts at its\n"
              " * default value (init_zero; proto2 defaults) and is filled "
              "in place; what\n"
              " * its callbacks' arguments "
              "point to must last until the call ends: use\n"
              " * prpc_ctx_alloc(). Return GRPC_STATUS_OK to send the reply, "
              "or another\n"
              " * code to send that status (prpc_ctx_set_message() adds "
              "details). */\n"
              "typedef struct %sServer {\n",
              s->camel);
  else
    sb_printf(h,
              "\n/* Server. One handler per rpc; a NULL handler answers "
              "UNIMPLEMENTED.\n"
              " * request is borrowed until the handler returns. reply starts "
              "at its INIT\n"
              " * value; what it points to must last until the call ends: use "
              "prpc_ctx_alloc()\n"
              " * or prpc_ctx_strdup(). Return GRPC_STATUS_OK to send the "
              "reply, or another\n"
              " * code to send that status (prpc_ctx_set_message() adds "
              "details). */\n"
              "typedef struct %sServer {\n",
              s->camel);
  for (size_t i = 0; i < s->n; i++) {
    const method *m = &s->methods[i];
    if (!m->client_streaming && !m->server_streaming)
      sb_printf(h,
                "  grpc_status_code (*%s)(prpc_ctx *ctx, const %s *request,\n"
                "      %s *reply, void *user_data);\n",
                m->lower, m->in_type, m->out_type);
    else if (!m->client_streaming)
      sb_printf(h,
                "  grpc_status_code (*%s)(prpc_ctx *ctx, const %s *request,\n"
                "      void *user_data);\n",
                m->lower, m->in_type);
    else if (!m->server_streaming)
      sb_printf(h,
                "  grpc_status_code (*%s)(prpc_ctx *ctx, %s *reply,\n"
                "      void *user_data);\n",
                m->lower, m->out_type);
    else
      sb_printf(h, "  grpc_status_code (*%s)(prpc_ctx *ctx, void *user_data);\n",
                m->lower);
  }
  if (s->nanopb) {
    int any = 0;
    for (size_t i = 0; i < s->n; i++) {
      const method *m = &s->methods[i];
      if (m->client_streaming)
        continue;
      if (!any++)
        sb_printf(h, "  /* Optional: called with the request (at its "
                     "default value) before it\n"
                     "   * is decoded, to set decode callbacks; memory "
                     "from prpc_ctx_alloc(). */\n");
      sb_printf(h,
                "  void (*%s_prepare)(prpc_ctx *ctx, %s *request,\n"
                "      void *user_data);\n",
                m->lower, m->in_type);
    }
  }
  if (s->n == 0)
    sb_printf(h, "  int unused_; /* the service has no methods */\n");
  sb_printf(h, "} %sServer;\n", s->camel);
  sb_printf(h, "#define %s_SERVER__INIT(prefix_) {", s->upper);
  for (size_t i = 0; i < s->n; i++) {
    if (s->nanopb) /* designated: the prepare members may stay out */
      sb_printf(h, "%s .%s = prefix_##%s", i ? "," : "", s->methods[i].lower,
                s->methods[i].lower);
    else
      sb_printf(h, "%s prefix_##%s", i ? "," : "", s->methods[i].lower);
  }
  sb_printf(h, "%s }\n", s->n ? "" : " 0");
  sb_printf(h,
            "\n/* Registers the handlers; before prpc_server_start() only. "
            "impl and\n * user_data are borrowed and must outlive the "
            "server. Returns 0 or a\n * negative PRPC_E* or -errno code. */\n"
            "int %s_server__register(prpc_server *server,\n"
            "    const %sServer *impl, void *user_data);\n"
            "/* The same with handlers that never block (PRPC_ASYNC_HANDLERS): "
            "streaming ones\n * run inline and use _send(), "
            "prpc_ctx_read_async() and prpc_ctx_finish(). */\n"
            "int %s_server__register_async(prpc_server *server,\n"
            "    const %sServer *impl, void *user_data);\n",
            s->lower, s->camel, s->lower, s->camel);
  for (size_t i = 0; i < s->n; i++) {
    const method *m = &s->methods[i];
    if (m->server_streaming)
      sb_printf(h,
                "/* Sends one %s to the client; see prpc_ctx_write(). */\n"
                "int %s_server__%s_write(prpc_ctx *ctx, const %s *msg);\n"
                "/* Queues one %s, from any thread; see prpc_ctx_send(). */\n"
                "int %s_server__%s_send(prpc_ctx *ctx, const %s *msg);\n",
                m->out_type, s->lower, m->lower, m->out_type, m->out_type,
                s->lower, m->lower, m->out_type);
    if (m->client_streaming && s->nanopb)
      sb_printf(h,
                "/* Receives one %s into the handler's *msg; see "
                "prpc_ctx_read_into(). */\n"
                "int %s_server__%s_read(prpc_ctx *ctx, %s *msg);\n",
                m->in_type, s->lower, m->lower, m->in_type);
    else if (m->client_streaming)
      sb_printf(h,
                "/* Receives one %s; see prpc_ctx_read(). The handler owns "
                "*msg. */\n"
                "int %s_server__%s_read(prpc_ctx *ctx, %s **msg);\n",
                m->in_type, s->lower, m->lower, m->in_type);
  }
}

/* The asynchronous form of a unary method: a trampoline casts the
 * caller's typed callback back to its own type (kept with the call by
 * prpc_unary_call_async_fn()) and calls it. */
static void emit_unary_async(sb *c, const service *s, const method *m,
                             size_t i) {
  const char *fn = s->lower, *md = m->lower;
  sb_printf(c,
            "\nstatic void %s__%s__done(prpc_call *call, void *reply,\n"
            "    const prpc_status *status, void *user_data) {\n"
            "  ((void (*)(%s *, const prpc_status *, void *))"
            "prpc_call_fn(call))(\n"
            "      reply, status, user_data);\n"
            "}\n",
            fn, md, m->out_type);
  if (s->nanopb)
    sb_printf(c,
              "\nint %s_client__%s_async(prpc_channel *channel,\n"
              "    const %s *request, const prpc_call_opts *opts, %s "
              "*reply,\n"
              "    void (*done)(%s *reply, const prpc_status *status, "
              "void *user_data),\n"
              "    void *user_data, prpc_call **call) {\n"
              "  if (!reply)\n"
              "    return -22; /* -EINVAL */\n"
              "  return prpc_unary_call_async_fn(channel, &%s__methods[%zu], "
              "request, opts,\n"
              "      reply, %s__%s__done, (prpc_fn)done, user_data, call);\n"
              "}\n",
              fn, md, m->in_type, m->out_type, m->out_type, fn, i, fn, md);
  else
    sb_printf(c,
              "\nint %s_client__%s_async(prpc_channel *channel,\n"
              "    const %s *request, const prpc_call_opts *opts,\n"
              "    void (*done)(%s *reply, const prpc_status *status, "
              "void *user_data),\n"
              "    void *user_data, prpc_call **call) {\n"
              "  return prpc_unary_call_async_fn(channel, &%s__methods[%zu], "
              "request, opts,\n"
              "      NULL, %s__%s__done, (prpc_fn)done, user_data, call);\n"
              "}\n",
              fn, md, m->in_type, m->out_type, fn, i, fn, md);
}

static void emit_source_service(sb *c, const service *s) {
  const char *fn = s->lower;
  sb_printf(c, "\n/* ---- %s ---- */\n\n", s->full);
  if (s->n) {
    sb_printf(c, "static const prpc_method_desc %s__methods[%zu] = {\n", fn,
              s->n);
    for (size_t i = 0; i < s->n; i++) {
      const method *m = &s->methods[i];
      sb_printf(c,
                "  {\"%s\", %s, &prpc_codec_%s,\n"
                "   &%s, &%s},\n",
                m->path, m->kind, s->nanopb ? "nanopb" : "protobuf_c",
                m->in_desc, m->out_desc);
    }
    sb_printf(c, "};\n\n");
  }
  sb_printf(c,
            "const prpc_service_desc %s__prpc_service = {\n"
            "  \"%s\", %zu, %s%s, &%s\n};\n",
            fn, s->full, s->n, s->n ? fn : "NULL", s->n ? "__methods" : "",
            s->file_desc);

  for (size_t i = 0; i < s->n; i++) {
    const method *m = &s->methods[i];
    const char *md = m->lower;
    if (!m->client_streaming && !m->server_streaming && s->nanopb) {
      sb_printf(c,
                "\ngrpc_status_code %s_client__%s(prpc_channel *channel,\n"
                "    const %s *request, const prpc_call_opts *opts,\n"
                "    %s *reply, prpc_status *status) {\n"
                "  return prpc_unary_call_into(channel, &%s__methods[%zu], "
                "request, opts,\n"
                "                              reply, status);\n"
                "}\n",
                fn, md, m->in_type, m->out_type, fn, i);
      emit_unary_async(c, s, m, i);
      continue;
    }
    if (!m->client_streaming && !m->server_streaming) {
      sb_printf(c,
                "\ngrpc_status_code %s_client__%s(prpc_channel *channel,\n"
                "    const %s *request, const prpc_call_opts *opts,\n"
                "    %s **reply, prpc_status *status) {\n"
                "  void *r = NULL;\n"
                "  grpc_status_code code = prpc_unary_call(channel, "
                "&%s__methods[%zu],\n"
                "      request, opts, reply ? &r : NULL, status);\n"
                "  if (reply)\n"
                "    *reply = r;\n"
                "  return code;\n"
                "}\n",
                fn, md, m->in_type, m->out_type, fn, i);
      emit_unary_async(c, s, m, i);
      continue;
    }
    if (m->server_streaming && !m->client_streaming)
      sb_printf(c,
                "\nint %s_client__%s_start(prpc_channel *channel,\n"
                "    const %s *request, const prpc_call_opts *opts,\n"
                "    prpc_call **call) {\n"
                "  return prpc_call_start(channel, &%s__methods[%zu], "
                "request, opts, call);\n"
                "}\n",
                fn, md, m->in_type, fn, i);
    else
      sb_printf(c,
                "\nint %s_client__%s_start(prpc_channel *channel,\n"
                "    const prpc_call_opts *opts, prpc_call **call) {\n"
                "  return prpc_call_start(channel, &%s__methods[%zu], NULL, "
                "opts, call);\n"
                "}\n",
                fn, md, fn, i);
    if (m->server_streaming && !m->client_streaming)
      sb_printf(c,
                "\nint %s_client__%s_start_async(prpc_channel *channel,\n"
                "    const %s *request, const prpc_call_opts *opts,\n"
                "    const prpc_call_callbacks *callbacks, void *user_data,\n"
                "    prpc_call **call) {\n"
                "  return prpc_call_start_async(channel, &%s__methods[%zu], "
                "request, opts,\n"
                "                               callbacks, user_data, "
                "call);\n"
                "}\n",
                fn, md, m->in_type, fn, i);
    else
      sb_printf(c,
                "\nint %s_client__%s_start_async(prpc_channel *channel,\n"
                "    const prpc_call_opts *opts, const prpc_call_callbacks "
                "*callbacks,\n"
                "    void *user_data, prpc_call **call) {\n"
                "  return prpc_call_start_async(channel, &%s__methods[%zu], "
                "NULL, opts,\n"
                "                               callbacks, user_data, "
                "call);\n"
                "}\n",
                fn, md, fn, i);
    if (m->client_streaming)
      sb_printf(c,
                "\nint %s_client__%s_write(prpc_call *call, const %s *msg) {\n"
                "  return prpc_call_write(call, msg);\n"
                "}\n"
                "\nint %s_client__%s_send(prpc_call *call, const %s *msg) {\n"
                "  return prpc_call_send(call, msg, 0);\n"
                "}\n",
                fn, md, m->in_type, fn, md, m->in_type);
    if (m->server_streaming && s->nanopb)
      sb_printf(c,
                "\nint %s_client__%s_read(prpc_call *call, %s *msg) {\n"
                "  return prpc_call_read_into(call, msg);\n"
                "}\n",
                fn, md, m->out_type);
    else if (m->server_streaming)
      sb_printf(c,
                "\nint %s_client__%s_read(prpc_call *call, %s **msg) {\n"
                "  void *r = NULL;\n"
                "  int rc = prpc_call_read(call, &r);\n"
                "  *msg = r;\n"
                "  return rc;\n"
                "}\n",
                fn, md, m->out_type);
    if (m->client_streaming && !m->server_streaming && s->nanopb)
      sb_printf(c,
                "\ngrpc_status_code %s_client__%s_finish(prpc_call *call,\n"
                "    %s *reply, prpc_status *status) {\n"
                "  return prpc_call_finish_into(call, reply, status);\n"
                "}\n",
                fn, md, m->out_type);
    else if (m->client_streaming && !m->server_streaming)
      sb_printf(c,
                "\ngrpc_status_code %s_client__%s_finish(prpc_call *call,\n"
                "    %s **reply, prpc_status *status) {\n"
                "  void *r = NULL;\n"
                "  grpc_status_code code = prpc_call_finish(call, reply ? &r "
                ": NULL, status);\n"
                "  if (reply)\n"
                "    *reply = r;\n"
                "  return code;\n"
                "}\n",
                fn, md, m->out_type);
  }

  /* Server: one trampoline per method casts back to the typed handler. */
  for (size_t i = 0; i < s->n; i++) {
    const method *m = &s->methods[i];
    const char *args;
    if (!m->client_streaming && !m->server_streaming)
      args = "ctx, request, reply, user_data";
    else if (!m->client_streaming)
      args = "ctx, request, user_data";
    else if (!m->server_streaming)
      args = "ctx, reply, user_data";
    else
      args = "ctx, user_data";
    sb_printf(c,
              "\nstatic grpc_status_code %s__%s__invoke(const void *impl, "
              "prpc_ctx *ctx,\n"
              "    const void *request, void *reply, void *user_data) {\n"
              "  (void)request;\n"
              "  (void)reply;\n"
              "  return ((const %sServer *)impl)->%s(%s);\n"
              "}\n",
              fn, m->lower, s->camel, m->lower, args);
    if (s->nanopb && !m->client_streaming)
      sb_printf(c,
                "\nstatic void %s__%s__prepare(const void *impl, prpc_ctx "
                "*ctx,\n"
                "    void *request, void *user_data) {\n"
                "  const %sServer *s = impl;\n"
                "  if (s->%s_prepare)\n"
                "    s->%s_prepare(ctx, request, user_data);\n"
                "}\n",
                fn, m->lower, s->camel, m->lower, m->lower);
  }
  sb_printf(c,
            "\nstatic int %s__register(prpc_server *server,\n"
            "    const %sServer *impl, void *user_data, unsigned flags) {\n",
            fn, s->camel);
  if (s->n) {
    sb_printf(c, "  prpc_invoke_fn invokers[%zu];\n", s->n);
    sb_printf(c, "  if (!impl)\n    return -22; /* -EINVAL */\n");
    for (size_t i = 0; i < s->n; i++)
      sb_printf(c, "  invokers[%zu] = impl->%s ? %s__%s__invoke : NULL;\n", i,
                s->methods[i].lower, fn, s->methods[i].lower);
  }
  if (s->n && s->nanopb) {
    sb_printf(c, "  const prpc_prepare_fn preparers[%zu] = {\n", s->n);
    for (size_t i = 0; i < s->n; i++) {
      const method *m = &s->methods[i];
      if (m->client_streaming)
        sb_printf(c, "      NULL,\n");
      else
        sb_printf(c, "      %s__%s__prepare,\n", fn, m->lower);
    }
    sb_printf(c,
              "  };\n"
              "  return prpc_server_register_flags(server, "
              "&%s__prpc_service, invokers,\n"
              "                                    preparers, impl, "
              "user_data, flags);\n}\n",
              fn);
  } else if (s->n) {
    sb_printf(c,
              "  return prpc_server_register_flags(server, "
              "&%s__prpc_service, invokers,\n"
              "                                    NULL, impl, user_data, "
              "flags);\n}\n",
              fn);
  } else {
    sb_printf(c,
              "  (void)impl;\n"
              "  return prpc_server_register_flags(server, "
              "&%s__prpc_service, NULL,\n"
              "                                    NULL, NULL, user_data, "
              "flags);\n}\n",
              fn);
  }
  sb_printf(c,
            "\nint %s_server__register(prpc_server *server,\n"
            "    const %sServer *impl, void *user_data) {\n"
            "  return %s__register(server, impl, user_data, 0);\n"
            "}\n"
            "\nint %s_server__register_async(prpc_server *server,\n"
            "    const %sServer *impl, void *user_data) {\n"
            "  return %s__register(server, impl, user_data, "
            "PRPC_ASYNC_HANDLERS);\n"
            "}\n",
            fn, s->camel, fn, fn, s->camel, fn);
  for (size_t i = 0; i < s->n; i++) {
    const method *m = &s->methods[i];
    if (m->server_streaming)
      sb_printf(c,
                "\nint %s_server__%s_write(prpc_ctx *ctx, const %s *msg) {\n"
                "  return prpc_ctx_write(ctx, msg);\n"
                "}\n"
                "\nint %s_server__%s_send(prpc_ctx *ctx, const %s *msg) {\n"
                "  return prpc_ctx_send(ctx, msg, 0);\n"
                "}\n",
                fn, m->lower, m->out_type, fn, m->lower, m->out_type);
    if (m->client_streaming && s->nanopb)
      sb_printf(c,
                "\nint %s_server__%s_read(prpc_ctx *ctx, %s *msg) {\n"
                "  return prpc_ctx_read_into(ctx, msg);\n"
                "}\n",
                fn, m->lower, m->in_type);
    else if (m->client_streaming)
      sb_printf(c,
                "\nint %s_server__%s_read(prpc_ctx *ctx, %s **msg) {\n"
                "  void *r = NULL;\n"
                "  int rc = prpc_ctx_read(ctx, &r);\n"
                "  *msg = r;\n"
                "  return rc;\n"
                "}\n",
                fn, m->lower, m->in_type);
  }
}

/* ---- descriptors for server reflection ---- */

static const FileProto *find_file(const Request *req, const char *name);

/* Marks in 'in' the index (in req->proto_file) of f and of every file it
 * imports, directly or not. Returns -1 on an import missing from the
 * request. */
static int mark_closure(gen *g, const Request *req, const FileProto *f,
                        unsigned char *in, unsigned depth) {
  size_t idx = 0;
  if (depth > 1000) {
    fail(g, "%s: imports nest more than 1000 deep", f->name);
    return -1;
  }
  while (idx < req->n_proto_file && req->proto_file[idx] != f)
    idx++;
  if (idx == req->n_proto_file || in[idx])
    return 0;
  in[idx] = 1;
  for (size_t i = 0; i < f->n_dependency; i++) {
    const FileProto *d = find_file(req, f->dependency[i]);
    if (!d) {
      fail(g, "%s: imports %s, which is not among the request's proto files",
           f->name, f->dependency[i]);
      return -1;
    }
    if (mark_closure(g, req, d, in, depth + 1) != 0)
      return -1;
  }
  return 0;
}

/* Writes a C string literal's contents: file names are plain text, but
 * quote what C would not take. */
static void emit_c_string(sb *c, const char *s) {
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      sb_printf(c, "\\%c", ch);
    else if (ch < 0x20 || ch >= 0x7f)
      sb_printf(c, "\\%03o", ch);
    else
      sb_printf(c, "%c", ch);
  }
}

/* Writes a file name inside a C comment: nothing that would end it. */
static void emit_comment_text(sb *c, const char *s) {
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch < 0x20 || ch >= 0x7f)
      sb_printf(c, "?");
    else if (ch == '*' && s[1] == '/')
      sb_printf(c, "* ");
    else
      sb_printf(c, "%c", ch);
  }
}

/* Emits, as static tables, the serialized FileDescriptorProto of f and of
 * all its imports (transitively), each without source_code_info, in the
 * request's order (imports before their importers), and sets *sym to the C
 * name of f's prpc_file_desc. The runtime's reflection service reads them
 * through prpc_service_desc.file. */
static int emit_file_descs(gen *g, const Request *req, const FileProto *f,
                           sb *c, const char **sym) {
  unsigned char *in = calloc(req->n_proto_file ? req->n_proto_file : 1, 1);
  int rc = 0;
  if (!in) {
    g->oom = 1;
    return -1;
  }
  if (mark_closure(g, req, f, in, 0) != 0) {
    free(in);
    return -1;
  }
  sb_printf(c, "\n/* ---- descriptors, for server reflection ---- */\n");
  for (size_t i = 0; i < req->n_proto_file && rc == 0; i++) {
    const FileProto *d = req->proto_file[i];
    FileProto copy;
    uint8_t *bytes;
    size_t len;
    if (!in[i])
      continue;
    if (!d->name) {
      fail(g, "a proto file of the request has no name");
      rc = -1;
      break;
    }
    copy = *d;
    copy.source_code_info = NULL; /* comments and positions: not needed */
    len = google__protobuf__file_descriptor_proto__get_packed_size(&copy);
    bytes = malloc(len ? len : 1);
    if (!bytes) {
      g->oom = 1;
      rc = -1;
      break;
    }
    google__protobuf__file_descriptor_proto__pack(&copy, bytes);
    sb_printf(c, "\n/* ");
    emit_comment_text(c, d->name);
    sb_printf(c, " */\nstatic const uint8_t prpc_file__%zu_data[%zu] = {", i,
              len);
    for (size_t k = 0; k < len; k++)
      sb_printf(c, "%s0x%02x,", k % 12 ? " " : "\n  ", bytes[k]);
    sb_printf(c, "\n};\n");
    free(bytes);
    if (d->n_dependency > 0) {
      sb_printf(c, "static const prpc_file_desc *const prpc_file__%zu_deps[%zu] = {\n",
                i, d->n_dependency);
      for (size_t k = 0; k < d->n_dependency; k++) {
        size_t j = 0;
        while (j < req->n_proto_file &&
               (!req->proto_file[j]->name ||
                strcmp(req->proto_file[j]->name, d->dependency[k]) != 0))
          j++;
        if (j >= i) { /* protoc lists imports first; anything else is a bug */
          fail(g, "%s: import %s does not come before it in the request",
               d->name, d->dependency[k]);
          rc = -1;
          break;
        }
        sb_printf(c, "  &prpc_file__%zu,\n", j);
      }
      sb_printf(c, "};\n");
    }
    sb_printf(c, "static const prpc_file_desc prpc_file__%zu = {\n  \"", i);
    emit_c_string(c, d->name);
    sb_printf(c, "\", prpc_file__%zu_data, %zu, %zu, ", i, len,
              d->n_dependency);
    if (d->n_dependency > 0)
      sb_printf(c, "prpc_file__%zu_deps\n};\n", i);
    else
      sb_printf(c, "NULL\n};\n");
    if (d == f) {
      sb b = {0};
      sb_printf(&b, "prpc_file__%zu", i);
      *sym = keep(g, &b);
    }
  }
  free(in);
  return rc;
}

/* nanopb: the type records the method tables point to, one per message
 * type the file's methods use, in order of first use. */
static int emitted(const char **done, size_t n, const char *type) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(done[i], type) == 0)
      return 1;
  return 0;
}

static void emit_nanopb_types(sb *c, const service *svcs, size_t n) {
  const char **done;
  size_t total = 0, n_done = 0;
  for (size_t i = 0; i < n; i++)
    total += 2 * svcs[i].n;
  if (!total || !(done = malloc(total * sizeof(*done)))) {
    if (total)
      c->oom = 1;
    return;
  }
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < svcs[i].n; j++)
      for (int k = 0; k < 2; k++) {
        const char *type =
            k ? svcs[i].methods[j].out_type : svcs[i].methods[j].in_type;
        if (emitted(done, n_done, type))
          continue;
        if (!n_done)
          sb_printf(c, "\n/* nanopb messages: field descriptors and struct "
                       "sizes. */\n");
        done[n_done++] = type;
        sb_printf(c,
                  "static const prpc_nanopb_type %s__prpc_type = {\n"
                  "  %s_fields, sizeof(%s)};\n",
                  type, type, type);
      }
  free(done);
}

/* "dir/foo.proto" -> "dir/foo" */
static char *strip_proto(gen *g, const char *name) {
  sb b = {0};
  size_t n = strlen(name);
  if (n > 6 && strcmp(name + n - 6, ".proto") == 0)
    n -= 6;
  sb_printf(&b, "%.*s", (int)n, name);
  return keep(g, &b);
}

static char *guard_of(gen *g, const char *base) {
  sb b = {0};
  sb_printf(&b, "PRPC_GEN_");
  for (const char *p = base; *p; p++)
    sb_printf(&b, "%c",
              isalnum((unsigned char)*p) ? toupper((unsigned char)*p) : '_');
  sb_printf(&b, "_PRPC_H");
  return keep(g, &b);
}

static int generate_file(gen *g, const Request *req, const FileProto *f,
                         sb *h, sb *c) {
  const char *base = strip_proto(g, f->name);
  const char *guard = guard_of(g, base);
  const char *slash = strrchr(base, '/');
  service *svcs = calloc(f->n_service ? f->n_service : 1, sizeof(*svcs));
  int rc = 0;
  if (!svcs) {
    g->oom = 1;
    return -1;
  }
  if (f->package && *f->package && !is_dotted_ident(f->package)) {
    fail(g, "%s: package '%s' is not a dotted identifier", f->name,
         f->package);
    rc = -1;
  }
  for (size_t i = 0; rc == 0 && i < f->n_service; i++) {
    rc = build_service(g, req, f, f->service[i], &svcs[i]);
    /* Services whose C names collide ("FooBar" and "Foo_bar"). */
    for (size_t j = 0; rc == 0 && j < i; j++)
      if (strcmp(svcs[j].lower, svcs[i].lower) == 0) {
        fail(g, "%s: services %s and %s both map to the C name '%s'",
             f->name, svcs[j].full, svcs[i].full, svcs[i].lower);
        rc = -1;
      }
  }
  if (rc == 0 && !g->oom) {
    sb_printf(h,
              "/* Generated by protoc-gen-prpc. DO NOT EDIT. */\n"
              "/* source: %s */\n"
              "#ifndef %s\n#define %s\n\n"
              "#include <piperpc/%s.h>\n"
              "#include \"%s.%s.h\"\n\n"
              "#if PRPC_GEN_ABI != 2\n"
              "#error \"Regenerate with the protoc-gen-prpc that matches this "
              "runtime.\"\n"
              "#endif\n\n"
              "#ifdef __cplusplus\nextern \"C\" {\n#endif\n",
              f->name, guard, guard, g->nanopb ? "nanopb" : "piperpc", base,
              g->nanopb ? "pb" : "pb-c");
    for (size_t i = 0; i < f->n_service; i++)
      emit_header_service(h, &svcs[i]);
    sb_printf(h, "\n#ifdef __cplusplus\n}\n#endif\n\n#endif /* %s */\n",
              guard);
    sb_printf(c,
              "/* Generated by protoc-gen-prpc. DO NOT EDIT. */\n"
              "/* source: %s */\n"
              "#include \"%s.prpc.h\"\n",
              f->name, slash ? slash + 1 : base);
    /* Only a file with services links its descriptors anywhere: the
     * message-only files it imports travel with it. */
    const char *file_desc = NULL;
    if (f->n_service > 0 && emit_file_descs(g, req, f, c, &file_desc) != 0)
      rc = -1;
    if (rc == 0 && g->nanopb)
      emit_nanopb_types(c, svcs, f->n_service);
    for (size_t i = 0; rc == 0 && i < f->n_service; i++) {
      svcs[i].file_desc = file_desc;
      emit_source_service(c, &svcs[i]);
    }
  }
  for (size_t i = 0; i < f->n_service; i++)
    free(svcs[i].methods);
  free(svcs);
  return rc;
}

static const FileProto *find_file(const Request *req, const char *name) {
  for (size_t i = 0; i < req->n_proto_file; i++)
    if (req->proto_file[i]->name && strcmp(req->proto_file[i]->name, name) == 0)
      return req->proto_file[i];
  return NULL;
}

static int check_parameter(gen *g, const char *param) {
  /* Comma-separated key=value pairs. */
  const char *p = param ? param : "";
  while (*p) {
    const char *end = strchr(p, ',');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n == strlen("backend=protobuf-c") &&
        strncmp(p, "backend=protobuf-c", n) == 0) {
      g->nanopb = 0; /* the default */
    } else if (n == strlen("backend=nanopb") &&
               strncmp(p, "backend=nanopb", n) == 0) {
      g->nanopb = 1;
    } else if (n > 0) {
      fail(g,
           "unknown option '%.*s' (supported: backend=protobuf-c, "
           "backend=nanopb)",
           (int)(n > 100 ? 100 : n), p);
      return -1;
    }
    p += n + (end ? 1 : 0);
  }
  return 0;
}

int prpc_gen_run(const uint8_t *data, size_t len, uint8_t **resp_out,
                 size_t *resp_len) {
  gen g;
  Request *req;
  Response resp = GOOGLE__PROTOBUF__COMPILER__CODE_GENERATOR_RESPONSE__INIT;
  OutFile *files = NULL;
  OutFile **file_ptrs = NULL;
  size_t n_out = 0;
  int rc = 0;

  memset(&g, 0, sizeof(g));
  req = google__protobuf__compiler__code_generator_request__unpack(NULL, len,
                                                                   data);
  if (!req) {
    fail(&g, "the CodeGeneratorRequest does not decode (is protoc-gen-prpc "
             "being run by protoc?)");
  } else if (check_parameter(&g, req->parameter) == 0) {
    size_t n = req->n_file_to_generate;
    files = calloc(n ? 2 * n : 1, sizeof(*files));
    file_ptrs = calloc(n ? 2 * n : 1, sizeof(*file_ptrs));
    if (!files || !file_ptrs)
      g.oom = 1;
    for (size_t i = 0; i < n && !g.oom && !g.error[0]; i++) {
      const char *name = req->file_to_generate[i];
      const FileProto *f = find_file(req, name);
      sb h = {0}, c = {0};
      if (!f || !f->name) {
        fail(&g, "%s: not among the request's proto files", name);
        break;
      }
      if (generate_file(&g, req, f, &h, &c) != 0 || h.oom || c.oom) {
        if (h.oom || c.oom)
          g.oom = 1;
        free(h.p);
        free(c.p);
        break;
      }
      const char *base = strip_proto(&g, f->name);
      sb hn = {0}, cn = {0};
      sb_printf(&hn, "%s.prpc.h", base);
      sb_printf(&cn, "%s.prpc.c", base);
      google__protobuf__compiler__code_generator_response__file__init(
          &files[n_out]);
      files[n_out].name = keep(&g, &hn);
      files[n_out].content = keep(&g, &h);
      file_ptrs[n_out] = &files[n_out];
      n_out++;
      google__protobuf__compiler__code_generator_response__file__init(
          &files[n_out]);
      files[n_out].name = keep(&g, &cn);
      files[n_out].content = keep(&g, &c);
      file_ptrs[n_out] = &files[n_out];
      n_out++;
    }
  }

  resp.has_supported_features = 1;
  resp.supported_features =
      GOOGLE__PROTOBUF__COMPILER__CODE_GENERATOR_RESPONSE__FEATURE__FEATURE_PROTO3_OPTIONAL;
  if (g.oom) {
    rc = -1;
  } else if (g.error[0]) {
    resp.error = g.error;
  } else {
    resp.n_file = n_out;
    resp.file = file_ptrs;
  }
  if (rc == 0) {
    size_t size =
        google__protobuf__compiler__code_generator_response__get_packed_size(
            &resp);
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) {
      rc = -1;
    } else {
      google__protobuf__compiler__code_generator_response__pack(&resp, buf);
      *resp_out = buf;
      *resp_len = size;
    }
  }

  google__protobuf__compiler__code_generator_request__free_unpacked(req, NULL);
  for (size_t i = 0; i < g.n_names; i++)
    free(g.names[i]);
  free(g.names);
  free(files);
  free(file_ptrs);
  return rc;
}
