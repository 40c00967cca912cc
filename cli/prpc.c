/* prpc: a command-line gRPC client for every target piperpc takes.
 *
 *   prpc [OPTIONS] list     TARGET [SERVICE]
 *   prpc [OPTIONS] describe TARGET SYMBOL
 *   prpc [OPTIONS] call     TARGET package.Service/Method [JSON|-]
 *   prpc [OPTIONS] health   TARGET [SERVICE]
 *
 * Descriptors come from the server's reflection service, or from
 * FileDescriptorSet files (--proto-set). Requests and replies are JSON in the
 * proto3 mapping. Exit codes: see usage() and the README. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <piperpc/piperpc.h>

#include "pool.h"
#include "rpc.h"
#include "transcode.h"
#include "wire.h"

/* Exit codes. */
enum {
  EXIT_OK = 0,
  EXIT_USAGE = 1,      /* bad command line, target, option or file */
  EXIT_INPUT = 2,      /* the request JSON does not parse or fit */
  EXIT_DESCRIPTOR = 3, /* service, method or type unknown (to --proto-set
                          or the server's reflection); a reply that does
                          not fit its descriptor */
  EXIT_NOT_SERVING = 4, /* health: NOT_SERVING */
  EXIT_HEALTH_UNKNOWN = 5, /* health: UNKNOWN or SERVICE_UNKNOWN */
  EXIT_STATUS = 10     /* + the gRPC status code an RPC ended with */
};

typedef struct opts {
  prpc_tls_opts tls;
  int use_tls;
  const char *authority;
  int64_t deadline_ms; /* -1: not given */
  prpc_metadata md;
  const char **proto_sets;
  size_t n_proto_sets;
  int pretty, verbose, wait_for_ready;
} opts;

static int die(int code, const char *fmt, ...) {
  va_list ap;
  fputs("prpc: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  return code;
}

/* An RPC that ended with a status other than OK. */
static int die_status(grpc_status_code code, const char *message) {
  fprintf(stderr, "prpc: %s: %s\n", prpc_status_name(code),
          message && *message ? message : "(no message)");
  return EXIT_STATUS + (int)code;
}

static void usage(FILE *out) {
  fputs(
      "usage: prpc [OPTIONS] COMMAND ARGS...\n"
      "  list     TARGET [SERVICE]        services, or a service's methods\n"
      "  describe TARGET SYMBOL           a service, method, message or enum\n"
      "           (with --proto-set, list and describe need no TARGET)\n"
      "  call     TARGET pkg.Service/Method [JSON|-]\n"
      "                                   JSON request from the argument or\n"
      "                                   stdin; one JSON reply per line\n"
      "  health   TARGET [SERVICE]        grpc.health.v1 Check\n"
      "  encode   TYPE [JSON|-]           JSON to binary on stdout (with\n"
      "                                   --proto-set, no server)\n"
      "  decode   TYPE                    binary on stdin to JSON\n"
      "TARGET: unix:PATH, unix-abstract:NAME, fd:N, host:port, ...\n"
      "options:\n"
      "  -H, --header 'key: value'  request metadata (repeatable; a -bin\n"
      "                             key takes base64)\n"
      "  -d, --deadline T           deadline: seconds (1.5) or 250ms, 2s;\n"
      "                             default none for call, 10s otherwise\n"
      "  --proto-set FILE           descriptors from a FileDescriptorSet\n"
      "                             (protoc --include_imports -o FILE);\n"
      "                             repeatable; no reflection then\n"
      "  --tls                      TLS with the system's roots\n"
      "  --tls-ca FILE  --tls-cert FILE  --tls-key FILE\n"
      "                             TLS (and mutual TLS), PEM files\n"
      "  --authority NAME           the :authority, and the name the TLS\n"
      "                             certificate must carry\n"
      "  -p, --pretty               indented JSON\n"
      "  -v, --verbose              response headers and trailers on stderr\n"      "  -w, --wait-for-ready       wait for the server to come up (until\n"
      "                             the deadline) instead of UNAVAILABLE\n"
      "exit: 0 ok (health: SERVING), 1 usage, 2 bad request JSON,\n"
      "      3 unknown service, method or type, 4 NOT_SERVING,\n"
      "      5 health status UNKNOWN or SERVICE_UNKNOWN,\n"
      "      10 + gRPC status code when an RPC fails (14 DEADLINE_EXCEEDED,\n"
      "      15 NOT_FOUND, 22 UNIMPLEMENTED, 24 UNAVAILABLE, ...)\n",
      out);
}

/* "1.5" (seconds), "250ms", "2s". Returns milliseconds or -1. */
static int64_t parse_deadline(const char *s) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || errno || v <= 0) return -1;
  double ms;
  if (strcmp(end, "ms") == 0) ms = v;
  else if (*end == '\0' || strcmp(end, "s") == 0) ms = v * 1000.0;
  else return -1;
  if (ms > 1e12) return -1;
  return ms < 1 ? 1 : (int64_t)(ms + 0.5);
}

static int add_header(opts *o, const char *arg) {
  const char *colon = strchr(arg, ':');
  if (!colon || colon == arg)
    return die(EXIT_USAGE, "bad header '%s': expected 'key: value'", arg);
  char key[256];
  size_t kl = (size_t)(colon - arg);
  while (kl && isspace((unsigned char)arg[kl - 1])) kl--;
  if (kl == 0 || kl >= sizeof(key))
    return die(EXIT_USAGE, "bad header '%s': empty or long key", arg);
  for (size_t i = 0; i < kl; i++)
    key[i] = (char)tolower((unsigned char)arg[i]);
  key[kl] = '\0';
  const char *val = colon + 1;
  while (*val == ' ' || *val == '\t') val++;
  int rc = prpc__tc_md_add_text(&o->md, key, val);
  if (rc == -EILSEQ)
    return die(EXIT_USAGE, "bad header '%s': a -bin value must be base64",
               arg);
  if (rc != 0)
    return die(EXIT_USAGE,
               "bad header '%s': keys are [0-9a-z_.-], values printable "
               "ASCII",
               arg);
  return 0;
}

static int read_file(const char *path, wbuf *out) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  if (!f) return -errno;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) wbuf_put(out, buf, n);
  int bad = ferror(f);
  if (f != stdin) fclose(f);
  return bad ? -EIO : 0;
}

/* ---- the session: a channel, descriptors, reflection ---- */

typedef struct session {
  opts *o;
  prpc_channel *ch;
  prpc_call_opts call;
  pool pool;
  refl refl;
  int reflection; /* 0 when --proto-set gave the descriptors */
} session;

/* The pool's resolver: a type only met at run time (in an Any), from the
 * server's reflection. */
static int resolve_by_reflection(pool *p, const char *name, void *data) {
  session *s = data;
  rpc_error e;
  (void)p;
  return refl_load_symbol(&s->refl, &s->pool, name, &e);
}

static int session_open(session *s, opts *o, const char *target,
                        int64_t default_deadline_ms) {
  prpc_channel_opts copts = PRPC_CHANNEL_OPTS_INIT;
  memset(s, 0, sizeof(*s));
  s->o = o;
  s->pool = (pool)POOL_INIT;
  copts.authority = o->authority;
  if (o->use_tls) {
    o->tls.server_name = o->authority;
    copts.tls = &o->tls;
  }
  if (target && prpc_channel_create(target, &copts, &s->ch) != 0)
    return die(EXIT_USAGE, "%s", prpc_last_error());
  s->call = (prpc_call_opts)PRPC_CALL_OPTS_INIT;
  s->call.timeout_ms = o->deadline_ms >= 0 ? o->deadline_ms
                                           : default_deadline_ms;
  s->call.metadata = o->md.count ? &o->md : NULL;
  s->call.wait_for_ready = o->wait_for_ready;
  refl_init(&s->refl, s->ch, &s->call);
  s->reflection = o->n_proto_sets == 0;
  if (s->reflection && s->ch) {
    s->pool.resolve = resolve_by_reflection;
    s->pool.resolve_data = s;
  }
  for (size_t i = 0; i < o->n_proto_sets; i++) {
    wbuf b = {0};
    int rc = read_file(o->proto_sets[i], &b);
    if (rc != 0) {
      wbuf_free(&b);
      return die(EXIT_USAGE, "%s: %s", o->proto_sets[i], strerror(-rc));
    }
    rc = prpc__pool_add_set(&s->pool, b.data, b.len);
    wbuf_free(&b);
    if (rc != 0)
      return die(EXIT_USAGE, "%s: not a FileDescriptorSet (make one with "
                 "protoc --include_imports -o FILE)", o->proto_sets[i]);
  }
  return 0;
}

static void session_close(session *s) {
  refl_destroy(&s->refl);
  prpc__pool_free(&s->pool);
  prpc_channel_destroy(s->ch);
}

/* Makes sure symbol's file is in the pool (asking the server when
 * reflection is in use). Returns 0 or an exit code (message printed). */
static int load_symbol(session *s, const char *symbol) {
  if (!s->reflection || prpc__pool_find(&s->pool, symbol)) return 0;
  rpc_error e;
  if (refl_load_symbol(&s->refl, &s->pool, symbol, &e) == 0) return 0;
  if (e.code == GRPC_STATUS_NOT_FOUND) { /* an unknown name, not a failure */
    fprintf(stderr, "prpc: NOT_FOUND: %s\n", e.message);
    return EXIT_DESCRIPTOR;
  }
  return die_status(e.code, e.message);
}

/* load_symbol() that keeps quiet: for a name that may not exist. */
static void load_symbol_quiet(session *s, const char *symbol) {
  rpc_error e;
  if (!prpc__pool_find(&s->pool, symbol))
    (void)refl_load_symbol(&s->refl, &s->pool, symbol, &e);
}

/* Resolves "pkg.Service/Method", "pkg.Service.Method" or
 * "/pkg.Service/Method" to the service and its method. */
static int find_method(session *s, const char *name, const pool_sym **svc,
                       const pb_method **method) {
  while (*name == '/') name++;
  char *copy = strdup(name);
  if (!copy) abort();
  char *sep = strrchr(copy, '/');
  if (!sep) sep = strrchr(copy, '.');
  if (!sep || sep == copy || !sep[1]) {
    free(copy);
    return die(EXIT_USAGE, "'%s': expected package.Service/Method", name);
  }
  *sep = '\0';
  int rc = load_symbol(s, copy);
  if (rc) {
    free(copy);
    return rc;
  }
  const pool_sym *sym = prpc__pool_find(&s->pool, copy);
  if (!sym || sym->kind != SYM_SERVICE) {
    rc = die(EXIT_DESCRIPTOR, "service '%s' is not in the descriptors", copy);
    free(copy);
    return rc;
  }
  const pb_service *sd = sym->desc;
  for (size_t i = 0; i < sd->n_method; i++)
    if (sd->method[i]->name && strcmp(sd->method[i]->name, sep + 1) == 0) {
      *svc = sym;
      *method = sd->method[i];
      free(copy);
      return 0;
    }
  rc = die(EXIT_DESCRIPTOR, "service '%s' has no method '%s'", copy, sep + 1);
  free(copy);
  return rc;
}

static const pool_sym *message_sym(session *s, const char *type_name) {
  const pool_sym *m = type_name ? prpc__pool_find(&s->pool, type_name) : NULL;
  if (!m || m->kind != SYM_MESSAGE) {
    die(EXIT_DESCRIPTOR, "message type '%s' is not in the descriptors",
        type_name ? type_name : "?");
    return NULL;
  }
  return m;
}

/* ---- list ---- */

static int cmd_list(session *s, const char *service) {
  if (service) {
    const pool_sym *sym;
    int rc = load_symbol(s, service);
    if (rc) return rc;
    sym = prpc__pool_find(&s->pool, service);
    if (!sym || sym->kind != SYM_SERVICE)
      return die(EXIT_DESCRIPTOR, "'%s' is not a service", service);
    const pb_service *sd = sym->desc;
    for (size_t i = 0; i < sd->n_method; i++)
      printf("%s.%s\n", sym->name, sd->method[i]->name);
    return 0;
  }
  if (!s->reflection) {
    for (size_t i = 0; i < s->pool.n_syms; i++)
      if (s->pool.syms[i]->kind == SYM_SERVICE)
        printf("%s\n", s->pool.syms[i]->name);
    return 0;
  }
  char **names;
  size_t n;
  rpc_error e;
  if (refl_list(&s->refl, &names, &n, &e) != 0)
    return die_status(e.code, e.message);
  for (size_t i = 0; i < n; i++) {
    printf("%s\n", names[i]);
    free(names[i]);
  }
  free(names);
  return 0;
}

/* ---- describe ---- */

static const char *label_of(const pb_file *f, const pb_field *fd) {
  if (fd->label == PRPC_PB__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REPEATED)
    return "repeated ";
  if (fd->proto3_optional) return "optional ";
  if (prpc__pool_is_proto3(f) || fd->has_oneof_index) return "";
  return fd->label == PRPC_PB__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REQUIRED
             ? "required "
             : "optional ";
}

static void print_field(session *s, const pb_file *f, const pb_field *fd,
                        int depth) {
  const pb_msg *entry = prpc__pool_map_entry(&s->pool, fd);
  printf("%*s", 2 * depth, "");
  if (entry) {
    const pb_field *k = entry->field[0], *v = entry->field[1];
    if (k->number != 1) k = entry->field[1], v = entry->field[0];
    printf("map<%s, %s> %s = %d;\n", prpc__pool_type_name(k), prpc__pool_type_name(v),
           fd->name, fd->number);
    return;
  }
  printf("%s%s %s = %d;\n", label_of(f, fd), prpc__pool_type_name(fd), fd->name,
         fd->number);
}

static void print_enum(const char *name, const pb_enum *e, int depth) {
  printf("%*senum %s {\n", 2 * depth, "", name);
  for (size_t i = 0; i < e->n_value; i++)
    printf("%*s%s = %d;\n", 2 * depth + 2, "", e->value[i]->name,
           e->value[i]->number);
  printf("%*s}\n", 2 * depth, "");
}

static void print_message(session *s, const pb_file *f, const char *name,
                          const pb_msg *m, int depth) {
  printf("%*smessage %s {\n", 2 * depth, "", name);
  for (size_t i = 0; i < m->n_field; i++) {
    const pb_field *fd = m->field[i];
    if (!fd->has_oneof_index || fd->proto3_optional) {
      print_field(s, f, fd, depth + 1);
      continue;
    }
    /* A real oneof: its members together, where the first one is. */
    size_t j;
    for (j = 0; j < i; j++)
      if (m->field[j]->has_oneof_index &&
          m->field[j]->oneof_index == fd->oneof_index)
        break;
    if (j < i) continue;
    int o = fd->oneof_index;
    printf("%*soneof %s {\n", 2 * depth + 2, "",
           o >= 0 && (size_t)o < m->n_oneof_decl ? m->oneof_decl[o]->name
                                                  : "?");
    for (j = i; j < m->n_field; j++)
      if (m->field[j]->has_oneof_index && m->field[j]->oneof_index == o)
        print_field(s, f, m->field[j], depth + 2);
    printf("%*s}\n", 2 * depth + 2, "");
  }
  for (size_t i = 0; i < m->n_nested_type; i++) {
    const pb_msg *n = m->nested_type[i];
    if (n->options && n->options->map_entry) continue;
    print_message(s, f, n->name, n, depth + 1);
  }
  for (size_t i = 0; i < m->n_enum_type; i++)
    print_enum(m->enum_type[i]->name, m->enum_type[i], depth + 1);
  printf("%*s}\n", 2 * depth, "");
}

static void print_rpc(const pb_method *md, int depth) {
  printf("%*srpc %s(%s%s) returns (%s%s);\n", 2 * depth, "", md->name,
         md->client_streaming ? "stream " : "",
         md->input_type && md->input_type[0] == '.' ? md->input_type + 1
                                                    : md->input_type,
         md->server_streaming ? "stream " : "",
         md->output_type && md->output_type[0] == '.' ? md->output_type + 1
                                                      : md->output_type);
}

static int cmd_describe(session *s, const char *symbol) {
  while (*symbol == '.' || *symbol == '/') symbol++;
  rpc_error e = {GRPC_STATUS_OK, ""};
  if (s->reflection && !prpc__pool_find(&s->pool, symbol) &&
      refl_load_symbol(&s->refl, &s->pool, symbol, &e) != 0 &&
      e.code != GRPC_STATUS_NOT_FOUND)
    return die_status(e.code, e.message);
  const pool_sym *sym = prpc__pool_find(&s->pool, symbol);
  if (!sym) { /* a method: "pkg.Service.Method" or "pkg.Service/Method" */
    const pool_sym *svc;
    const pb_method *md;
    const char *sep = strrchr(symbol, '/');
    if (!sep) sep = strrchr(symbol, '.');
    char *prefix = sep ? strndup(symbol, (size_t)(sep - symbol)) : NULL;
    if (prefix && s->reflection) load_symbol_quiet(s, prefix);
    const pool_sym *ps = prefix ? prpc__pool_find(&s->pool, prefix) : NULL;
    free(prefix);
    if (!ps || ps->kind != SYM_SERVICE) {
      if (e.code == GRPC_STATUS_NOT_FOUND) /* the server's own words */
        return die(EXIT_DESCRIPTOR, "NOT_FOUND: %s", e.message);
      return die(EXIT_DESCRIPTOR, "'%s' is not in the descriptors", symbol);
    }
    int rc = find_method(s, symbol, &svc, &md);
    if (rc) return rc;
    print_rpc(md, 0);
    return 0;
  }
  switch (sym->kind) {
  case SYM_SERVICE: {
    const pb_service *sd = sym->desc;
    printf("service %s {\n", sym->name);
    for (size_t i = 0; i < sd->n_method; i++) print_rpc(sd->method[i], 1);
    printf("}\n");
    break;
  }
  case SYM_MESSAGE:
    print_message(s, sym->file, sym->name, sym->desc, 0);
    break;
  case SYM_ENUM:
    print_enum(sym->name, sym->desc, 0);
    break;
  }
  return 0;
}

/* ---- call ---- */

static void print_metadata(const char *what, const prpc_metadata *md) {
  for (size_t i = 0; i < md->count; i++) {
    const prpc_md *e = &md->items[i];
    char *text = prpc__tc_md_text(e);
    fprintf(stderr, "%s %s: %s\n", what, e->key, text ? text : "?");
    free(text);
  }
}

/* Parses the request text into encoded messages: one JSON value, or for a
 * client-streaming or bidi method any number of them (one per line is
 * usual). Returns 0 or an exit code. */
static int encode_requests(session *s, const pool_sym *in, const char *text,
                           size_t len, int many, wbuf **msgs, size_t *n) {
  size_t off = 0;
  char err[600];
  *msgs = NULL;
  *n = 0;
  for (;;) {
    while (off < len && isspace((unsigned char)text[off])) off++;
    if (off == len) break;
    json_error_t je;
    json_t *j = json_loadb(text + off, len - off,
                           JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY |
                               JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES,
                           &je);
    if (!j)
      return die(EXIT_INPUT, "request %zu: bad JSON: %s (line %d, column %d)",
                 *n + 1, je.text, je.line, je.column);
    size_t used = (size_t)je.position;
    if (!many) {
      size_t rest = off + used;
      while (rest < len && isspace((unsigned char)text[rest])) rest++;
      if (rest < len) {
        json_decref(j);
        return die(EXIT_INPUT,
                   "bad JSON: more than one request for a method that "
                   "takes one");
      }
    }
    wbuf *a = realloc(*msgs, (*n + 1) * sizeof(*a));
    if (!a) abort();
    *msgs = a;
    a[*n] = (wbuf){0};
    int rc = prpc__tc_encode(&s->pool, in, j, &a[*n], err, sizeof(err));
    (*n)++;
    json_decref(j);
    if (rc != 0)
      return many ? die(EXIT_INPUT, "request %zu: %s", *n, err)
                  : die(EXIT_INPUT, "%s", err);
    off += used ? used : 1;
  }
  if (*n == 0 && !many) return die(EXIT_INPUT, "bad JSON: no request");
  return 0;
}

/* Prints one reply as JSON. Returns 0 or an exit code. */
static int print_reply(session *s, const pool_sym *out, const raw_msg *m) {
  char err[600];
  json_t *j = prpc__tc_decode(&s->pool, out, m->data, m->len, err, sizeof(err));
  if (!j) return die(EXIT_DESCRIPTOR, "reply: %s", err);
  int rc = prpc__tc_print(stdout, j, s->o->pretty);
  json_decref(j);
  fflush(stdout);
  return rc == 0 ? 0 : die(EXIT_DESCRIPTOR, "reply: cannot print as JSON");
}

/* Finishes a call: prints the client-streaming reply, the metadata with
 * -v, and the status when it is not OK. rc is the exit code so far.
 * Returns the exit code. */
static int end_call(session *s, prpc_call *call, const pool_sym *out,
                    void **reply, int rc) {
  prpc_status st = PRPC_STATUS_INIT;
  grpc_status_code code = prpc_call_finish(call, reply, &st);
  if (rc == 0 && code == GRPC_STATUS_OK && reply && *reply)
    rc = print_reply(s, out, *reply);
  if (reply) free(*reply);
  if (s->o->verbose) {
    print_metadata("header", &st.headers);
    print_metadata("trailer", &st.trailers);
  }
  if (rc == 0 && code != GRPC_STATUS_OK) rc = die_status(code, st.message);
  prpc_status_clear(&st);
  return rc;
}

/* The sending side of a client-streaming or bidi call, on a thread of its
 * own: requests are sent as soon as each JSON value is complete (one per
 * line is usual), so that a bidi call can be used interactively. At the
 * end of the input it half-closes; on bad input it cancels the call. */
typedef struct feeder {
  session *s;
  const pool_sym *in;
  prpc_call *call;
  const char *arg; /* the requests from the command line, or NULL: stdin */
  int wake[2];     /* a byte here stops the wait for stdin */
  int rc;          /* EXIT_INPUT when the input was bad */
  char msg[700];
} feeder;

static void *feed(void *p) {
  feeder *f = p;
  wbuf text = {0};
  size_t off = 0, count = 0;
  int eof = 0;
  char err[600];
  if (f->arg) {
    wbuf_put(&text, f->arg, strlen(f->arg));
    eof = 1;
  }
  for (;;) {
    for (;;) { /* every complete value in the buffer */
      wbuf w = {0};
      int rc = prpc__tc_encode_next(&f->s->pool, f->in,
                                    (const char *)text.data, text.len, &off,
                                    eof, &w, err, sizeof(err));
      if (rc <= 0) {
        wbuf_free(&w);
        if (rc == 0) break; /* wait for the rest */
        snprintf(f->msg, sizeof(f->msg), "request %zu: %s", count + 1, err);
        goto bad;
      }
      raw_msg r = {w.data ? w.data : (const uint8_t *)"", w.len};
      rc = prpc_call_write(f->call, &r);
      wbuf_free(&w);
      count++;
      if (rc != 0) goto out; /* the call has ended; finish says why */
    }
    if (eof) break;
    if (off) {
      memmove(text.data, text.data + off, text.len - off);
      text.len -= off;
      off = 0;
    }
    struct pollfd fds[2] = {{0, POLLIN, 0}, {f->wake[0], POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      eof = 1;
      continue;
    }
    if (fds[1].revents) goto out; /* the call is over */
    char buf[4096];
    ssize_t n = read(0, buf, sizeof(buf));
    if (n > 0) wbuf_put(&text, buf, (size_t)n);
    else if (n == 0 || errno != EINTR) eof = 1;
  }
  prpc_call_writes_done(f->call);
  goto out;
bad:
  f->rc = EXIT_INPUT;
  prpc_call_cancel(f->call);
out:
  wbuf_free(&text);
  return NULL;
}

static int call_streaming(session *s, const pool_sym *in,
                          const pool_sym *out, const char *path,
                          prpc_method_kind kind, const char *arg) {
  feeder f;
  memset(&f, 0, sizeof(f));
  f.s = s;
  f.in = in;
  f.arg = arg;
  if (pipe2(f.wake, O_CLOEXEC) != 0)
    return die(EXIT_USAGE, "pipe: %s", strerror(errno));
  prpc_method_desc *m = raw_method(path, kind);
  int rc = 0;
  if (prpc_call_start(s->ch, m, NULL, &s->call, &f.call) != 0) {
    rc = die(EXIT_STATUS + GRPC_STATUS_INTERNAL, "%s", prpc_last_error());
    goto done;
  }
  pthread_t t;
  if (pthread_create(&t, NULL, feed, &f) != 0) {
    prpc_call_cancel(f.call);
    (void)prpc_call_finish(f.call, NULL, NULL);
    rc = die(EXIT_USAGE, "cannot start a thread");
    goto done;
  }
  void *reply = NULL;
  if (kind == PRPC_BIDI_STREAMING) {
    while (rc == 0 && prpc_call_read(f.call, &reply) == 1) {
      rc = print_reply(s, out, reply);
      free(reply);
      reply = NULL;
    }
    if (rc) prpc_call_cancel(f.call);
    /* The server has ended the stream: stop waiting for more input. */
    if (write(f.wake[1], "x", 1) < 0) prpc_call_cancel(f.call);
  }
  pthread_join(t, NULL);
  if (f.rc) { /* bad input: the call was cancelled because of it */
    (void)prpc_call_finish(f.call, NULL, NULL);
    rc = die(f.rc, "%s", f.msg);
  } else {
    rc = end_call(s, f.call, out,
                  kind == PRPC_CLIENT_STREAMING ? &reply : NULL, rc);
  }
done:
  free(m);
  close(f.wake[0]);
  close(f.wake[1]);
  return rc;
}

static int cmd_call(session *s, const char *method_name, const char *json) {
  const pool_sym *svc, *in, *out;
  const pb_method *md;
  int rc = find_method(s, method_name, &svc, &md);
  if (rc) return rc;
  if (!(in = message_sym(s, md->input_type)) ||
      !(out = message_sym(s, md->output_type)))
    return EXIT_DESCRIPTOR;

  prpc_method_kind kind = md->client_streaming
                              ? (md->server_streaming ? PRPC_BIDI_STREAMING
                                                      : PRPC_CLIENT_STREAMING)
                              : (md->server_streaming ? PRPC_SERVER_STREAMING
                                                      : PRPC_UNARY);
  int many = md->client_streaming;
  char path[1024];
  snprintf(path, sizeof(path), "/%s/%s", svc->name, md->name);
  const char *arg = json && strcmp(json, "-") != 0 ? json : NULL;
  if (many) return call_streaming(s, in, out, path, kind, arg);

  wbuf text = {0};
  if (!arg) {
    if (read_file("-", &text) != 0)
      return die(EXIT_USAGE, "cannot read the request from stdin");
  } else {
    wbuf_put(&text, arg, strlen(arg));
  }
  wbuf *msgs = NULL;
  size_t n = 0;
  rc = encode_requests(s, in, text.data ? (const char *)text.data : "",
                       text.len, 0, &msgs, &n);
  wbuf_free(&text);
  if (rc) goto out;

  prpc_method_desc *m = raw_method(path, kind);
  prpc_call *call;
  raw_msg first = {msgs[0].data, msgs[0].len};
  if (prpc_call_start(s->ch, m, &first, &s->call, &call) != 0) {
    rc = die(EXIT_STATUS + GRPC_STATUS_INTERNAL, "%s", prpc_last_error());
    free(m);
    goto out;
  }
  void *reply = NULL;
  while (rc == 0 && prpc_call_read(call, &reply) == 1) {
    rc = print_reply(s, out, reply);
    free(reply);
    reply = NULL;
  }
  if (rc) prpc_call_cancel(call);
  rc = end_call(s, call, NULL, NULL, rc);
  free(m);
out:
  for (size_t i = 0; i < n; i++) wbuf_free(&msgs[i]);
  free(msgs);
  return rc;
}

/* ---- encode, decode: JSON <-> binary, no server ---- */

static const pool_sym *type_sym(session *s, const char *name) {
  while (*name == '.') name++;
  const pool_sym *m = prpc__pool_find(&s->pool, name);
  if (!m || m->kind != SYM_MESSAGE) {
    die(EXIT_DESCRIPTOR, "'%s' is not a message type in the descriptors",
        name);
    return NULL;
  }
  return m;
}

static int cmd_encode(session *s, const char *type, const char *json) {
  const pool_sym *m = type_sym(s, type);
  if (!m) return EXIT_DESCRIPTOR;
  wbuf text = {0};
  if (!json || strcmp(json, "-") == 0) {
    if (read_file("-", &text) != 0)
      return die(EXIT_USAGE, "cannot read the message from stdin");
  } else {
    wbuf_put(&text, json, strlen(json));
  }
  wbuf *msgs = NULL;
  size_t n = 0;
  int rc = encode_requests(s, m, text.data ? (const char *)text.data : "",
                           text.len, 0, &msgs, &n);
  wbuf_free(&text);
  if (rc == 0 && msgs[0].len &&
      fwrite(msgs[0].data, 1, msgs[0].len, stdout) != msgs[0].len)
    rc = die(EXIT_USAGE, "cannot write to stdout");
  for (size_t i = 0; i < n; i++) wbuf_free(&msgs[i]);
  free(msgs);
  return rc;
}

static int cmd_decode(session *s, const char *type) {
  const pool_sym *m = type_sym(s, type);
  if (!m) return EXIT_DESCRIPTOR;
  wbuf bin = {0};
  if (read_file("-", &bin) != 0)
    return die(EXIT_USAGE, "cannot read the message from stdin");
  raw_msg r = {bin.data ? bin.data : (const uint8_t *)"", bin.len};
  int rc = print_reply(s, m, &r);
  wbuf_free(&bin);
  return rc;
}

/* ---- health ---- */

static int cmd_health(session *s, const char *service) {
  static const char *const names[] = {"UNKNOWN", "SERVING", "NOT_SERVING",
                                      "SERVICE_UNKNOWN"};
  prpc_method_desc *m = raw_method("/grpc.health.v1.Health/Check", PRPC_UNARY);
  wbuf req = {0};
  if (service && *service) wbuf_bytes(&req, 1, service, strlen(service));
  raw_msg in = {req.data ? req.data : (const uint8_t *)"", req.len};
  void *reply = NULL;
  prpc_status st = PRPC_STATUS_INIT;
  grpc_status_code code =
      prpc_unary_call(s->ch, m, &in, &s->call, &reply, &st);
  wbuf_free(&req);
  free(m);
  if (code != GRPC_STATUS_OK) {
    int rc = die_status(code, st.message);
    prpc_status_clear(&st);
    return rc;
  }
  prpc_status_clear(&st);
  const raw_msg *r = reply;
  wreader rd = {r->data, r->data + r->len};
  wfield f;
  uint64_t status = 0;
  int wrc;
  while ((wrc = wr_field(&rd, &f)) == 1)
    if (f.number == 1 && f.wt == WT_VARINT) status = f.v;
  free(reply);
  if (wrc < 0) return die(EXIT_DESCRIPTOR, "malformed HealthCheckResponse");
  if (status < 4) printf("%s\n", names[status]);
  else printf("%llu\n", (unsigned long long)status);
  return status == 1 ? EXIT_OK
                     : status == 2 ? EXIT_NOT_SERVING : EXIT_HEALTH_UNKNOWN;
}

/* ---- main ---- */

int main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"header", required_argument, NULL, 'H'},
      {"deadline", required_argument, NULL, 'd'},
      {"proto-set", required_argument, NULL, 'P'},
      {"tls", no_argument, NULL, 'T'},
      {"tls-ca", required_argument, NULL, 'A'},
      {"tls-cert", required_argument, NULL, 'C'},
      {"tls-key", required_argument, NULL, 'K'},
      {"authority", required_argument, NULL, 'a'},
      {"pretty", no_argument, NULL, 'p'},
      {"verbose", no_argument, NULL, 'v'},
      {"wait-for-ready", no_argument, NULL, 'w'},
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},
      {NULL, 0, NULL, 0}};
  opts o;
  memset(&o, 0, sizeof(o));
  o.tls = (prpc_tls_opts)PRPC_TLS_OPTS_INIT;
  o.deadline_ms = -1;
  o.md = (prpc_metadata)PRPC_METADATA_INIT;
  o.proto_sets = calloc((size_t)argc, sizeof(char *));
  if (!o.proto_sets) abort();
  int c, rc = 0;
  while (rc == 0 &&
         (c = getopt_long(argc, argv, "H:d:pvwh", longopts, NULL)) != -1) {
    switch (c) {
    case 'H': rc = add_header(&o, optarg); break;
    case 'd':
      if ((o.deadline_ms = parse_deadline(optarg)) < 0)
        rc = die(EXIT_USAGE, "bad deadline '%s': seconds (1.5) or 250ms",
                 optarg);
      break;
    case 'P': o.proto_sets[o.n_proto_sets++] = optarg; break;
    case 'T': o.use_tls = 1; break;
    case 'A': o.tls.ca_file = optarg, o.use_tls = 1; break;
    case 'C': o.tls.cert_file = optarg, o.use_tls = 1; break;
    case 'K': o.tls.key_file = optarg, o.use_tls = 1; break;
    case 'a': o.authority = optarg; break;
    case 'p': o.pretty = 1; break;
    case 'v': o.verbose = 1; break;
    case 'w': o.wait_for_ready = 1; break;
    case 'h': usage(stdout); goto done;
    case 'V': printf("prpc %s\n", prpc_version()); goto done;
    default: usage(stderr); rc = EXIT_USAGE; break;
    }
  }
  if (rc) goto done;
  int npos = argc - optind;
  char **pos = argv + optind;
  const char *cmd = npos > 0 ? pos[0] : "";
  int min = 2, max = 3;
  int offline = strcmp(cmd, "encode") == 0 || strcmp(cmd, "decode") == 0;
  /* With --proto-set, list and describe need no server: no TARGET. */
  const char *target = npos > 1 ? pos[1] : NULL;
  if (o.n_proto_sets &&
      ((strcmp(cmd, "describe") == 0 && npos == 2) ||
       (strcmp(cmd, "list") == 0 && npos == 1))) {
    pos--, npos++, target = NULL; /* as if the target were there */
  }
  if (strcmp(cmd, "describe") == 0) min = max = 3;
  else if (strcmp(cmd, "call") == 0) min = 3, max = 4;
  else if (strcmp(cmd, "encode") == 0) min = 2, max = 3;
  else if (strcmp(cmd, "decode") == 0) min = max = 2;
  else if (strcmp(cmd, "list") != 0 && strcmp(cmd, "health") != 0) min = -1;
  if (min < 0 || npos < min || npos > max) {
    if (npos == 0) fputs("prpc: no command\n", stderr);
    else if (min < 0) fprintf(stderr, "prpc: unknown command '%s'\n", cmd);
    else fprintf(stderr, "prpc: %s: wrong number of arguments\n", cmd);
    usage(stderr);
    rc = EXIT_USAGE;
    goto done;
  }
  if (offline && o.n_proto_sets == 0) {
    rc = die(EXIT_USAGE, "%s needs the descriptors: --proto-set FILE", cmd);
    goto done;
  }
  session s;
  int call_cmd = strcmp(cmd, "call") == 0;
  rc = session_open(&s, &o, offline ? NULL : target, call_cmd ? 0 : 10000);
  if (rc == 0 && offline) {
    if (cmd[0] == 'e') rc = cmd_encode(&s, pos[1], npos > 2 ? pos[2] : NULL);
    else rc = cmd_decode(&s, pos[1]);
  } else if (rc == 0) {
    if (strcmp(cmd, "list") == 0) rc = cmd_list(&s, npos > 2 ? pos[2] : NULL);
    else if (strcmp(cmd, "describe") == 0) rc = cmd_describe(&s, pos[2]);
    else if (call_cmd) rc = cmd_call(&s, pos[2], npos > 3 ? pos[3] : NULL);
    else rc = cmd_health(&s, npos > 2 ? pos[2] : NULL);
  }
  session_close(&s); /* also after a failed open: s was zeroed */
done:
  prpc_metadata_clear(&o.md);
  free(o.proto_sets);
  return rc;
}
