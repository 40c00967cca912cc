/* The HTTP/1.1 front end: JSON over the same socket as gRPC
 * (prpc_server_opts.http_json; docs/http.md).
 *
 * The acceptor hands over a unix connection whose first bytes are not the
 * HTTP/2 preface (transport/accept.c), after it has checked the peer's
 * credentials, the access rules and the budgets, exactly as for gRPC; its
 * record stays in the connection table, counted, until the descriptor is
 * closed. libmicrohttpd parses HTTP/1.1 on it (MHD_add_connection on a
 * daemon without a listening socket, a thread per connection: handlers
 * may block, and so may the calls made here for them).
 *
 * A unary call runs its handler on the connection's thread, with a
 * context that has no gRPC call behind it (prpc__local_run, server/call.c)
 * but the same deadline, metadata, callbacks, peer and shutdown. Other
 * calls (and every call when the handlers must run on the server's own
 * threads) are carried to the handler as gRPC calls on a connection of the
 * server's own: a socketpair whose server end is given to gRPC core on
 * behalf of the HTTP connection (prpc__acceptor_inner), so that the call
 * runs through the same dispatch, deadlines, metadata, limits and
 * shutdown as any other, and prpc_ctx_peer_cred() tells the HTTP peer's
 * identity; the client end is a channel of this connection, made at its
 * first call. The bodies are transcoded between JSON and the protobuf wire
 * format by json/transcode.c (the transcoder prpc uses too) from the
 * descriptors that generated code embeds. A denied peer is answered 403 here
 * and reaches no handler. */
#include "http.h"

#include "hooks.h"
#include "internal.h"

#include <errno.h>
#include <unistd.h>

#ifndef PRPC__HAVE_HTTP

int prpc__http_enable(prpc_server *srv) {
  PRPC__UNUSED(srv);
  prpc__log(PRPC__LOG_WARN, "http_json: piperpc was built without "
                            "libmicrohttpd (Debian libmicrohttpd-dev): "
                            "HTTP/1.1 connections will be closed");
  return 0;
}

void prpc__http_serve(prpc_server *srv, prpc__conn *c) {
  PRPC__UNUSED(srv);
  close(c->fd);
}

void prpc__http_stop(prpc_server *srv) { PRPC__UNUSED(srv); }

#else

#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../runtime/raw_codec.h"
#include "pool.h"
#include "transcode.h"
#include "wire.h"

/* A request body of a unary or server-streaming call (and each message of
 * a client-streaming one) may be this long when the server sets no
 * max_recv_bytes: gRPC's own default. */
#define HTTP_BODY_MAX (4u << 20)
/* Request headers and the connection's read buffer, per connection. */
#define HTTP_MEMORY_LIMIT (64u << 10)
/* How much of an oversized chunked body is read (and dropped) to answer
 * 413 before the connection is closed instead. */
#define HTTP_DISCARD_MAX (16u << 20)
#define NDJSON "application/x-ndjson"
/* How often the watchdog looks for clients that are too slow. */
#define HTTP_WATCH_MS 100

/* ---- the front end ---- */

/* A method as HTTP serves it. */
typedef struct route {
  prpc_method_desc desc; /* path from the service table; codec raw */
  const pool_sym *in, *out; /* NULL: no descriptor (hand-written table) */
  const char *service;      /* borrowed from the server */
  const char *name;         /* the method's name, in path */
  const method_entry *me;   /* its handler, for calls run here */
} route;

struct hconn;

typedef struct http {
  prpc_server *srv;
  struct MHD_Daemon *d;
  pool pool;
  route *routes;
  size_t n_routes;
  const char *const *services; /* borrowed from the server */
  size_t n_services;
  char *listing; /* GET /'s answer, made at start (NULL: out of memory) */
  size_t listing_len;
  size_t body_max;
  atomic_int stopping;
  /* Connections handed over and not yet taken by libmicrohttpd's
   * notification (by descriptor number). */
  pthread_mutex_t mu;
  prpc__conn **handed;
  size_t n_handed;
  /* The connections libmicrohttpd serves (mu), for the watchdog: a client
   * must send each request's headers (and the body of a unary or
   * server-streaming call) within bound_ms of the connection being ready
   * for it, however it spreads the bytes; libmicrohttpd's own timeout
   * only bounds the silence between them. */
  struct hconn *conns;
  int64_t bound_ms; /* 0: none */
  pthread_t watchdog;
  int watching;
  pthread_cond_t cv; /* wakes the watchdog to stop */
  /* Requests begun and not yet completed (mu): at the stop, those whose
   * calls have ended still write their answers before the connections
   * close. */
  int busy;
  pthread_cond_t idle; /* busy fell to 0 */
} http;

/* How long the stop waits for answers to be written, once every call has
 * ended (a client that reads nothing cannot hold it longer). */
#define HTTP_ANSWER_WAIT_MS 1000

enum { P_WAITING, P_BODY, P_RUNNING };

/* One HTTP connection. */
typedef struct hconn {
  http *h;
  prpc__conn *rec; /* the acceptor's record (a reference) */
  prpc_channel *ch; /* the inner connection; made at the first call */
  int fd;
  atomic_int phase;     /* P_*: what the watchdog bounds */
  atomic_llong since;   /* when the phase began (ms, monotonic) */
  int cut;              /* the watchdog has shut it down */
  struct hconn *prev, *next; /* h->conns */
} hconn;

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_phase(hconn *hc, int phase) {
  if (!hc)
    return;
  atomic_store(&hc->since, mono_ms());
  atomic_store(&hc->phase, phase);
}

/* R_ANSWER: the answer is known from the headers, and is sent once the
 * request is in: libmicrohttpd closes a connection whose response was
 * queued before its request was complete. */
enum { R_CALL, R_ANSWER, R_DONE };
enum { A_LIST, A_ERROR, A_METHOD };

/* One request. */
typedef struct hreq {
  hconn *hc;
  int state;
  const route *rt;
  prpc_metadata md;
  prpc_call_opts opts;
  wbuf body;       /* unary and server streaming: the JSON text */
  size_t received; /* bytes of body seen (dropped ones too) */
  int too_big;
  /* R_ANSWER */
  int answer; /* A_* */
  grpc_status_code a_code;
  const char *a_msg; /* static */
  prpc_ctx *local; /* a call run here (call_local): let go once answered */
  /* client streaming */
  prpc_call *call;
  int ended;    /* the call ended early: the rest of the body is dropped */
  size_t drop_from; /* received when the dropping began (0: not yet) */
  size_t sent;  /* messages written */
  char err[640]; /* the first bad message: answered 400 */
} hreq;

static const prpc__hook http_hook;

/* ---- status and errors ---- */

static unsigned http_status(grpc_status_code code) {
  switch (code) {
  case GRPC_STATUS_OK: return 200;
  case GRPC_STATUS_CANCELLED: return 499;
  case GRPC_STATUS_INVALID_ARGUMENT: return 400;
  case GRPC_STATUS_DEADLINE_EXCEEDED: return 504;
  case GRPC_STATUS_NOT_FOUND: return 404;
  case GRPC_STATUS_ALREADY_EXISTS: return 409;
  case GRPC_STATUS_PERMISSION_DENIED: return 403;
  case GRPC_STATUS_RESOURCE_EXHAUSTED: return 429;
  case GRPC_STATUS_FAILED_PRECONDITION: return 400;
  case GRPC_STATUS_ABORTED: return 409;
  case GRPC_STATUS_OUT_OF_RANGE: return 400;
  case GRPC_STATUS_UNIMPLEMENTED: return 501;
  case GRPC_STATUS_UNAVAILABLE: return 503;
  case GRPC_STATUS_UNAUTHENTICATED: return 401;
  default: return 500; /* UNKNOWN, INTERNAL, DATA_LOSS, and the rest */
  }
}

/* The JSON text of v, compact, with a newline; NULL when out of memory.
 * Printed by the transcoder's printer, as prpc prints. */
static char *print_json(const json_t *v, size_t *len) {
  char *text = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&text, &n);
  if (!f)
    return NULL;
  int rc = prpc__tc_print(f, v, 0);
  if (fclose(f) != 0 || rc != 0) {
    free(text);
    return NULL;
  }
  *len = n;
  return text;
}

/* {"code":5,"status":"NOT_FOUND","message":"..."}: the gRPC status. */
static json_t *status_json(grpc_status_code code, const char *message) {
  json_t *o = json_object();
  json_t *m = json_string(message ? message : "");
  if (!m)
    m = json_string("(the status message is not UTF-8)");
  json_object_set_new(o, "code", json_integer((json_int_t)code));
  json_object_set_new(o, "status", json_string(prpc_status_name(code)));
  json_object_set_new(o, "message", m);
  return o;
}

/* Metadata as response headers; the values of -bin keys in base64, as
 * gRPC writes them. */
static void add_md_headers(struct MHD_Response *r, const prpc_metadata *md) {
  for (size_t i = 0; md && i < md->count; i++) {
    const prpc_md *e = &md->items[i];
    if (strcmp(e->key, PRPC__COMPRESSION_MD_KEY) == 0)
      continue; /* gRPC core's own: a JSON answer is not compressed */
    char *text = prpc__tc_md_text(e);
    if (text)
      MHD_add_response_header(r, e->key, text);
    free(text);
  }
}

/* Queues a response with body (taken; NULL: empty); returns MHD's result.
 * close_after: the connection is closed once it has gone (a denied peer,
 * a body left unread). */
static enum MHD_Result respond(struct MHD_Connection *mc, unsigned status,
                               const char *type, char *body, size_t len,
                               const prpc_metadata *const *mds, size_t n_mds,
                               int close_after) {
  struct MHD_Response *r = MHD_create_response_from_buffer(
      len, body ? body : (char *)"",
      body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
  enum MHD_Result rc;
  if (!r) {
    free(body);
    return MHD_NO;
  }
  if (type)
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  for (size_t k = 0; k < n_mds; k++)
    add_md_headers(r, mds[k]);
  if (close_after)
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
  rc = MHD_queue_response(mc, status, r);
  MHD_destroy_response(r);
  return rc;
}

static enum MHD_Result respond_json(struct MHD_Connection *mc,
                                    unsigned status, json_t *v,
                                    const prpc_metadata *const *mds,
                                    size_t n_mds, int close_after) {
  size_t len = 0;
  char *text = v ? print_json(v, &len) : NULL;
  json_decref(v);
  if (!text)
    return respond(mc, 500, NULL, NULL, 0, NULL, 0, 1);
  return respond(mc, status, "application/json", text, len, mds, n_mds,
                 close_after);
}

static enum MHD_Result respond_status(struct MHD_Connection *mc,
                                      unsigned status,
                                      grpc_status_code code,
                                      const char *message,
                                      const prpc_metadata *const *mds,
                                      size_t n_mds, int close_after) {
  return respond_json(mc, status, status_json(code, message), mds, n_mds,
                      close_after);
}

static enum MHD_Result respond_error(struct MHD_Connection *mc,
                                     grpc_status_code code,
                                     const char *message, int close_after) {
  return respond_status(mc, http_status(code), code, message, NULL, 0,
                        close_after);
}

/* ---- request metadata ---- */

/* HTTP's own headers, and those gRPC sets itself: not metadata. */
static int hop_header(const char *k) {
  static const char *const skip[] = {
      "host", "connection", "keep-alive", "content-length", "content-type",
      "transfer-encoding", "te", "trailer", "upgrade", "expect", "accept",
      "accept-encoding", "user-agent", "x-deadline-ms"};
  for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++)
    if (strcmp(k, skip[i]) == 0)
      return 1;
  return strncmp(k, "grpc-", 5) == 0 || strncmp(k, "proxy-", 6) == 0 ||
         strncmp(k, "content-", 8) == 0;
}

/* A gRPC timeout ("100m", "5S") or milliseconds; -1 when malformed. */
static int64_t parse_timeout(const char *v, int grpc_form) {
  char *end;
  errno = 0;
  unsigned long long n = strtoull(v, &end, 10);
  if (end == v || errno || n > (1ull << 40) || v[0] == '-')
    return -1;
  if (!grpc_form)
    return *end ? -1 : (int64_t)n;
  if (!end[0] || end[1])
    return -1;
  switch (end[0]) {
  case 'H': return (int64_t)n * 3600000;
  case 'M': return (int64_t)n * 60000;
  case 'S': return (int64_t)n * 1000;
  case 'm': return (int64_t)n;
  case 'u': return (int64_t)(n + 999) / 1000;
  case 'n': return (int64_t)(n + 999999) / 1000000;
  default: return -1;
  }
}

typedef struct md_walk {
  hreq *r;
  const char *bad; /* a malformed deadline header */
} md_walk;

static enum MHD_Result take_header(void *cls, enum MHD_ValueKind kind,
                                   const char *key, const char *value) {
  md_walk *w = cls;
  char k[128];
  size_t n = strlen(key);
  PRPC__UNUSED(kind);
  if (!value || n == 0 || n >= sizeof(k))
    return MHD_YES;
  for (size_t i = 0; i <= n; i++)
    k[i] = (char)tolower((unsigned char)key[i]);
  if (strcmp(k, "grpc-timeout") == 0 || strcmp(k, "x-deadline-ms") == 0) {
    int64_t ms = parse_timeout(value, k[0] == 'g');
    if (ms < 0)
      w->bad = key;
    else if (ms == 0)
      w->r->opts.timeout_ms = 1; /* passed already */
    else if (w->r->opts.timeout_ms == 0 || ms < w->r->opts.timeout_ms)
      w->r->opts.timeout_ms = ms;
    return MHD_YES;
  }
  if (hop_header(k))
    return MHD_YES;
  /* A key or value gRPC would refuse (or a -bin one not in base64) is
   * left out. */
  (void)prpc__tc_md_add_text(&w->r->md, k, value);
  return MHD_YES;
}

/* ---- the inner connection ---- */

static prpc_channel *channel_of(hconn *hc) {
  int sv[2];
  char target[32];
  if (hc->ch)
    return hc->ch;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0)
    return NULL;
  if (prpc__acceptor_inner(hc->h->srv->acceptor, hc->rec, sv[0]) != 0) {
    close(sv[1]);
    return NULL;
  }
  snprintf(target, sizeof(target), "fd:%d", sv[1]);
  /* Replies as large as the server may send: gRPC's 4 MiB default would
   * refuse what a gRPC client with a larger limit gets. */
  prpc_channel_opts o = PRPC_CHANNEL_OPTS_INIT;
  o.max_recv_bytes = hc->h->srv->opts.max_send_bytes > 0
                         ? hc->h->srv->opts.max_send_bytes
                         : INT_MAX;
  if (prpc_channel_create(target, &o, &hc->ch) != 0) /* takes sv[1] */
    hc->ch = NULL;
  return hc->ch;
}

/* ---- routes ---- */

static const route *route_find(const http *h, const char *path) {
  for (size_t i = 0; i < h->n_routes; i++)
    if (strcmp(h->routes[i].desc.path, path) == 0)
      return &h->routes[i];
  return NULL;
}

static const char *kind_name(prpc_method_kind k) {
  switch (k) {
  case PRPC_UNARY: return "unary";
  case PRPC_SERVER_STREAMING: return "server_streaming";
  case PRPC_CLIENT_STREAMING: return "client_streaming";
  default: return "bidi_streaming";
  }
}

/* GET /: {"services":[{"name":..,"methods":[{..}]}]}. */
static json_t *listing(const http *h) {
  json_t *svcs = json_array();
  for (size_t s = 0; s < h->n_services; s++) {
    json_t *svc = json_object(), *ms = json_array();
    json_object_set_new(svc, "name", json_string(h->services[s]));
    for (size_t i = 0; i < h->n_routes; i++) {
      const route *rt = &h->routes[i];
      if (rt->service != h->services[s])
        continue;
      json_t *m = json_object();
      json_object_set_new(m, "name", json_string(rt->name));
      json_object_set_new(m, "path", json_string(rt->desc.path));
      json_object_set_new(m, "kind", json_string(kind_name(rt->desc.kind)));
      if (rt->in && rt->out) {
        json_object_set_new(m, "input", json_string(rt->in->name));
        json_object_set_new(m, "output", json_string(rt->out->name));
      }
      json_object_set_new(m, "json",
                          json_boolean(rt->in && rt->out &&
                                       rt->desc.kind != PRPC_BIDI_STREAMING));
      json_array_append_new(ms, m);
    }
    json_object_set_new(svc, "methods", ms);
    json_array_append_new(svcs, svc);
  }
  json_t *o = json_object();
  json_object_set_new(o, "services", svcs);
  return o;
}

/* ---- calls ---- */

/* JSON text -> one encoded request of rt; 0, or -1 with err. An empty
 * body is the empty message. */
static int encode_one(http *h, const route *rt, const char *text, size_t len,
                      wbuf *out, char *err, size_t errlen) {
  json_error_t je;
  json_t *j;
  size_t off = 0;
  while (off < len && isspace((unsigned char)text[off]))
    off++;
  if (off == len)
    return 0;
  j = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL |
                                JSON_REJECT_DUPLICATES, &je);
  if (!j) {
    snprintf(err, errlen, "bad JSON: %s (line %d, column %d)", je.text,
             je.line, je.column);
    return -1;
  }
  int rc = prpc__tc_encode(&h->pool, rt->in, j, out, err, errlen);
  json_decref(j);
  return rc;
}

/* Encoded reply -> JSON text with a newline; NULL with err. */
static char *decode_one(http *h, const route *rt, const raw_msg *m,
                        size_t *len, char *err, size_t errlen) {
  json_t *j = prpc__tc_decode(&h->pool, rt->out, m->data, m->len, err,
                              errlen);
  char *text;
  if (!j)
    return NULL;
  text = print_json(j, len);
  json_decref(j);
  if (!text)
    snprintf(err, errlen, "out of memory");
  return text;
}

static enum MHD_Result finish_unary(struct MHD_Connection *mc, hreq *r,
                                    grpc_status_code code, raw_msg *reply,
                                    prpc_status *st) {
  http *h = r->hc->h;
  const prpc_metadata *mds[2] = {&st->headers, &st->trailers};
  enum MHD_Result rc;
  if (code == GRPC_STATUS_OK && reply) {
    char err[512];
    size_t len = 0;
    char *text = decode_one(h, r->rt, reply, &len, err, sizeof(err));
    if (text)
      rc = respond(mc, 200, "application/json", text, len, mds, 2, 0);
    else
      rc = respond_status(mc, 500, GRPC_STATUS_INTERNAL, err, mds, 2, 0);
  } else {
    if (code == GRPC_STATUS_OK)
      code = GRPC_STATUS_INTERNAL; /* no reply: cannot be */
    rc = respond_status(mc, http_status(code), code, st->message, mds, 2, 0);
  }
  free(reply);
  prpc_status_clear(st);
  return rc;
}

/* A unary call over the inner connection, waited for on the HTTP
 * connection's thread: a client that hangs up cancels it. */
typedef struct inner_call {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done;
  raw_msg *reply;
  prpc_status st;
} inner_call;

static void md_copy(prpc_metadata *to, const prpc_metadata *from) {
  for (size_t i = 0; i < from->count; i++)
    (void)prpc_metadata_add(to, from->items[i].key, from->items[i].value,
                            from->items[i].value_len);
}

/* On the channel's loop; reply and st are borrowed: copied. */
static void inner_done(prpc_call *call, void *reply, const prpc_status *st,
                       void *user_data) {
  inner_call *ic = user_data;
  const raw_msg *m = reply;
  PRPC__UNUSED(call);
  pthread_mutex_lock(&ic->mu);
  ic->st.code = st->code;
  ic->st.message = st->message ? strdup(st->message) : NULL;
  md_copy(&ic->st.headers, &st->headers);
  md_copy(&ic->st.trailers, &st->trailers);
  if (m && !(ic->reply = raw_decode(NULL, m->data, m->len, NULL)))
    ic->st.code = GRPC_STATUS_RESOURCE_EXHAUSTED;
  ic->done = 1;
  pthread_cond_signal(&ic->cv);
  pthread_mutex_unlock(&ic->mu);
}

static enum MHD_Result call_unary(struct MHD_Connection *mc, hreq *r,
                                  prpc_channel *ch) {
  char err[640];
  wbuf req = {0};
  raw_msg in;
  prpc_call *call = NULL;
  inner_call ic = {.st = PRPC_STATUS_INIT};
  int rc;
  if (encode_one(r->hc->h, r->rt, (const char *)r->body.data, r->body.len,
                 &req, err, sizeof(err)) != 0) {
    wbuf_free(&req);
    return respond_error(mc, GRPC_STATUS_INVALID_ARGUMENT, err, 0);
  }
  in = (raw_msg){req.data ? req.data : (const uint8_t *)"", req.len};
  pthread_mutex_init(&ic.mu, NULL);
  pthread_cond_init(&ic.cv, NULL);
  rc = prpc_unary_call_async(ch, &r->rt->desc, &in, &r->opts, inner_done,
                             &ic, &call);
  wbuf_free(&req);
  if (rc != 0) {
    pthread_cond_destroy(&ic.cv);
    pthread_mutex_destroy(&ic.mu);
    return respond_error(mc, GRPC_STATUS_INTERNAL, prpc_last_error(), 0);
  }
  pthread_mutex_lock(&ic.mu);
  while (!ic.done) {
    struct timespec ts;
    prpc__timespec_in(&ts, CLOCK_REALTIME, HTTP_WATCH_MS);
    if (pthread_cond_timedwait(&ic.cv, &ic.mu, &ts) == ETIMEDOUT &&
        !ic.done && call && prpc__fd_hung_up(r->hc->fd)) {
      prpc_call_cancel(call); /* valid until inner_done has run */
      call = NULL;
    }
  }
  pthread_mutex_unlock(&ic.mu);
  pthread_cond_destroy(&ic.cv);
  pthread_mutex_destroy(&ic.mu);
  return finish_unary(mc, r, ic.st.code, ic.reply, &ic.st);
}

/* A unary call run on this thread, with no gRPC call behind it
 * (prpc__local_run). Returns 0 with *res set, or -1 when it cannot run
 * here: the caller makes it over the inner connection instead. */
static int call_local(struct MHD_Connection *mc, hreq *r,
                      enum MHD_Result *res) {
  http *h = r->hc->h;
  prpc_server *srv = h->srv;
  char err[640];
  wbuf req = {0};
  prpc__local_call lc;
  grpc_slice sl;
  const prpc_metadata *mds[2];
  int rc;
  if (encode_one(h, r->rt, (const char *)r->body.data, r->body.len, &req,
                 err, sizeof(err)) != 0) {
    wbuf_free(&req);
    *res = respond_error(mc, GRPC_STATUS_INVALID_ARGUMENT, err, 0);
    return 0;
  }
  if (req.len > h->body_max) { /* as gRPC core refuses it */
    snprintf(err, sizeof(err), "the request message is larger than %zu "
                               "bytes", h->body_max);
    wbuf_free(&req);
    *res = respond_status(mc, 413, GRPC_STATUS_RESOURCE_EXHAUSTED, err,
                          NULL, 0, 0);
    return 0;
  }
  memset(&lc, 0, sizeof(lc));
  lc.me = r->rt->me;
  lc.conn = r->hc->rec;
  lc.fd = r->hc->fd;
  lc.md = &r->md;
  lc.timeout_ms = r->opts.timeout_ms;
  sl = req.len ? grpc_slice_new(req.data, req.len, free)
               : grpc_empty_slice();
  if (!req.len)
    wbuf_free(&req);
  lc.request = grpc_raw_byte_buffer_create(&sl, 1);
  grpc_slice_unref(sl);
  rc = prpc__local_run(srv, &lc);
  if (rc != 0) {
    grpc_byte_buffer_destroy(lc.request);
    if (rc != PRPC_ESTATE)
      return -1;
    *res = respond_error(mc, GRPC_STATUS_UNAVAILABLE,
                         "the server is shutting down", 1);
    return 0;
  }
  mds[0] = lc.headers;
  mds[1] = lc.trailers;
  if (lc.code == GRPC_STATUS_OK && srv->opts.max_send_bytes > 0 &&
      lc.reply_len > (size_t)srv->opts.max_send_bytes) {
    snprintf(err, sizeof(err), "the reply message is larger than "
                               "max_send_bytes (%zu > %d)",
             lc.reply_len, srv->opts.max_send_bytes);
    *res = respond_status(mc, 429, GRPC_STATUS_RESOURCE_EXHAUSTED, err, NULL,
                          0, 0);
  } else if (lc.code == GRPC_STATUS_OK) {
    raw_msg m = {lc.reply ? lc.reply : (const uint8_t *)"", lc.reply_len};
    size_t len = 0;
    char *text = decode_one(h, r->rt, &m, &len, err, sizeof(err));
    if (text)
      *res = respond(mc, 200, "application/json", text, len, mds, 2, 0);
    else
      *res = respond_status(mc, 500, GRPC_STATUS_INTERNAL, err, mds, 2, 0);
  } else {
    *res = respond_status(mc, http_status(lc.code), lc.code, lc.message,
                          lc.headers ? mds : NULL, lc.headers ? 2 : 0, 0);
  }
  r->local = lc.ctx; /* let go in on_completed, once the answer is out */
  return 0;
}

/* A server-streaming response: one JSON object per line, written as the
 * handler sends its messages. */
typedef struct stream {
  http *h;
  const route *rt;
  prpc_call *call; /* NULL once finished */
  char *line;      /* what is being written */
  size_t len, off;
  int ended;
} stream;

/* The next line: a message, or at the end an error line when the call
 * failed after its first message (the status is sent by then). */
static void stream_fill(stream *s) {
  raw_msg *m = NULL;
  char err[512];
  free(s->line);
  s->line = NULL;
  s->len = s->off = 0;
  int rc = prpc_call_read(s->call, (void **)&m);
  if (rc == 1) {
    s->line = decode_one(s->h, s->rt, m, &s->len, err, sizeof(err));
    free(m);
    if (s->line)
      return;
    prpc_call_cancel(s->call);
    prpc_call_finish(s->call, NULL, NULL);
    s->call = NULL;
    json_t *e = json_object();
    json_object_set_new(e, "error", status_json(GRPC_STATUS_INTERNAL, err));
    s->line = print_json(e, &s->len);
    json_decref(e);
    s->ended = 1;
    return;
  }
  prpc_status st = PRPC_STATUS_INIT;
  grpc_status_code code = prpc_call_finish(s->call, NULL, &st);
  s->call = NULL;
  s->ended = 1;
  if (code != GRPC_STATUS_OK) {
    json_t *e = json_object();
    json_object_set_new(e, "error", status_json(code, st.message));
    s->line = print_json(e, &s->len);
    json_decref(e);
  }
  prpc_status_clear(&st);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
  stream *s = cls;
  PRPC__UNUSED(pos);
  while (s->off == s->len) {
    if (s->ended)
      return MHD_CONTENT_READER_END_OF_STREAM;
    stream_fill(s);
  }
  size_t n = s->len - s->off < max ? s->len - s->off : max;
  memcpy(buf, s->line + s->off, n);
  s->off += n;
  return (ssize_t)n;
}

/* The response is done with (sent, or the client went away). */
static void stream_free(void *cls) {
  stream *s = cls;
  if (s->call) {
    prpc_call_cancel(s->call);
    prpc_call_finish(s->call, NULL, NULL);
  }
  free(s->line);
  free(s);
}

static enum MHD_Result call_server_streaming(struct MHD_Connection *mc,
                                             hreq *r, prpc_channel *ch) {
  char err[640];
  wbuf req = {0};
  raw_msg in, *first = NULL;
  prpc_call *call = NULL;
  const prpc_metadata *headers = NULL;
  if (encode_one(r->hc->h, r->rt, (const char *)r->body.data, r->body.len,
                 &req, err, sizeof(err)) != 0) {
    wbuf_free(&req);
    return respond_error(mc, GRPC_STATUS_INVALID_ARGUMENT, err, 0);
  }
  in = (raw_msg){req.data ? req.data : (const uint8_t *)"", req.len};
  int rc = prpc_call_start(ch, &r->rt->desc, &in, &r->opts, &call);
  wbuf_free(&req);
  if (rc != 0)
    return respond_error(mc, GRPC_STATUS_INTERNAL, prpc_last_error(), 0);
  /* The status line waits for the first message (or the end): a call
   * that fails at once gets its own HTTP status. */
  if (prpc_call_read(call, (void **)&first) != 1) {
    prpc_status st = PRPC_STATUS_INIT;
    grpc_status_code code = prpc_call_finish(call, NULL, &st);
    const prpc_metadata *mds[2] = {&st.headers, &st.trailers};
    enum MHD_Result res;
    if (code == GRPC_STATUS_OK)
      res = respond(mc, 200, NDJSON, NULL, 0, mds, 2, 0);
    else
      res = respond_status(mc, http_status(code), code, st.message, mds, 2, 0);
    prpc_status_clear(&st);
    return res;
  }
  stream *s = calloc(1, sizeof(*s));
  if (s) {
    s->h = r->hc->h;
    s->rt = r->rt;
    s->call = call;
    s->line = decode_one(s->h, s->rt, first, &s->len, err, sizeof(err));
  }
  free(first);
  if (!s || !s->line) {
    prpc_call_cancel(call);
    prpc_call_finish(call, NULL, NULL);
    free(s);
    return respond_error(mc, GRPC_STATUS_INTERNAL, s ? err : "out of memory",
                         0);
  }
  struct MHD_Response *resp = MHD_create_response_from_callback(
      MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, s, stream_free);
  if (!resp) {
    stream_free(s);
    return MHD_NO;
  }
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, NDJSON);
  if (prpc_call_headers(call, &headers) == 0)
    add_md_headers(resp, headers);
  enum MHD_Result res = MHD_queue_response(mc, 200, resp);
  MHD_destroy_response(resp);
  return res;
}

/* Client streaming: every complete JSON value in the body so far is a
 * message, written to the call as it comes (whitespace, usually a newline,
 * between them). Keeps what is left of a value cut short. */
static void take_messages(hreq *r, int eof) {
  http *h = r->hc->h;
  size_t off = 0;
  char err[600];
  while (!r->err[0] && r->call && !r->ended) {
    wbuf w = {0};
    int rc = prpc__tc_encode_next(&h->pool, r->rt->in,
                                  (const char *)r->body.data, r->body.len,
                                  &off, eof, &w, err, sizeof(err));
    if (rc <= 0) {
      if (rc < 0)
        snprintf(r->err, sizeof(r->err), "request %zu: %s", r->sent + 1,
                 err);
      wbuf_free(&w);
      break;
    }
    raw_msg m = {w.data ? w.data : (const uint8_t *)"", w.len};
    rc = prpc_call_write(r->call, &m);
    wbuf_free(&w);
    r->sent++;
    if (rc != 0) {
      r->ended = 1; /* the call has ended: finish tells why */
      break;
    }
  }
  if (off) {
    memmove(r->body.data, r->body.data + off, r->body.len - off);
    r->body.len -= off;
  }
  if (r->err[0] || r->ended)
    r->body.len = 0;
  if (r->err[0] && r->call)
    prpc_call_cancel(r->call);
}

static enum MHD_Result finish_client_streaming(struct MHD_Connection *mc,
                                               hreq *r) {
  raw_msg *reply = NULL;
  prpc_status st = PRPC_STATUS_INIT;
  take_messages(r, 1);
  grpc_status_code code = prpc_call_finish(r->call, (void **)&reply, &st);
  r->call = NULL;
  if (r->err[0]) {
    free(reply);
    prpc_status_clear(&st);
    return respond_error(mc, GRPC_STATUS_INVALID_ARGUMENT, r->err, 0);
  }
  return finish_unary(mc, r, code, reply, &st);
}

/* ---- libmicrohttpd's callbacks ---- */

static hconn *conn_of(struct MHD_Connection *mc) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  return ci ? ci->socket_context : NULL;
}

static enum MHD_Result defer(hreq *r, int answer, grpc_status_code code,
                             const char *msg) {
  r->state = R_ANSWER;
  r->answer = answer;
  r->a_code = code;
  r->a_msg = msg;
  return MHD_YES;
}

static enum MHD_Result answer(http *h, struct MHD_Connection *mc, hreq *r) {
  r->state = R_DONE;
  if (r->answer == A_LIST) {
    char *copy = h->listing ? malloc(h->listing_len) : NULL;
    if (!copy)
      return respond(mc, 500, NULL, NULL, 0, NULL, 0, 1);
    memcpy(copy, h->listing, h->listing_len);
    return respond(mc, 200, "application/json", copy, h->listing_len, NULL,
                   0, 0);
  }
  if (r->answer == A_ERROR)
    return respond_error(mc, r->a_code, r->a_msg, 0);
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
  if (!resp)
    return MHD_NO;
  MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "POST");
  enum MHD_Result rc = MHD_queue_response(mc, MHD_HTTP_METHOD_NOT_ALLOWED,
                                          resp);
  MHD_destroy_response(resp);
  return rc;
}

/* The first call for a request: its headers are in. An answer that closes
 * the connection is queued now (r->state R_DONE); another one is kept for
 * when the request is in (R_ANSWER). */
static enum MHD_Result begin(http *h, struct MHD_Connection *mc, hreq *r,
                             const char *url, const char *method) {
  hconn *hc = r->hc;
  int post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
  r->state = R_DONE;
  if (!hc)
    return respond_error(mc, GRPC_STATUS_INTERNAL, "unknown connection", 1);
  if (hc->rec->denied)
    return respond_error(mc, GRPC_STATUS_PERMISSION_DENIED,
                         "permission denied: the server's access rules do "
                         "not admit this user",
                         1);
  if (atomic_load(&h->stopping))
    return respond_error(mc, GRPC_STATUS_UNAVAILABLE,
                         "the server is shutting down", 1);
  if (strcmp(url, "/") == 0 &&
      (strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
       strcmp(method, MHD_HTTP_METHOD_HEAD) == 0))
    return defer(r, A_LIST, GRPC_STATUS_OK, NULL);
  const route *rt = route_find(h, url);
  if (!rt) {
    /* "/pkg.Service/Method" that is not served is what gRPC calls
     * UNIMPLEMENTED; any other path is not found. */
    const char *slash = url[0] == '/' ? strchr(url + 1, '/') : NULL;
    if (slash && slash[1] && !strchr(slash + 1, '/'))
      return defer(r, A_ERROR, GRPC_STATUS_UNIMPLEMENTED, "unknown method");
    return defer(r, A_ERROR, GRPC_STATUS_NOT_FOUND,
                 "no such path: POST /package.Service/Method calls a "
                 "method; GET / lists them");
  }
  if (!post)
    return defer(r, A_METHOD, GRPC_STATUS_OK, NULL);
  if (!rt->in || !rt->out)
    return defer(r, A_ERROR, GRPC_STATUS_UNIMPLEMENTED,
                 "the method's service was registered without its "
                 "descriptors (a hand-written table): no JSON mapping");
  if (rt->desc.kind == PRPC_BIDI_STREAMING)
    return defer(r, A_ERROR, GRPC_STATUS_UNIMPLEMENTED,
                 "a bidirectional streaming method cannot be carried over "
                 "HTTP/1.1: call it with gRPC");
  const char *cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND,
                                               MHD_HTTP_HEADER_CONTENT_LENGTH);
  unsigned long long len = cl ? strtoull(cl, NULL, 10) : 0;
  if (rt->desc.kind != PRPC_CLIENT_STREAMING && len > h->body_max) {
    const char *expect = MHD_lookup_connection_value(
        mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
    /* A client that waits for "100 Continue" gets the 413 instead, and a
     * body far too large is not read: answered now, and the connection
     * closed. Else the body is read and dropped first: a unix socket
     * closed with unread bytes resets its peer, which would then miss the
     * answer. */
    if (expect || len > h->body_max + HTTP_DISCARD_MAX) {
      char msg[128];
      snprintf(msg, sizeof(msg), "the request body is larger than %zu bytes",
               h->body_max);
      return respond_status(mc, 413, GRPC_STATUS_RESOURCE_EXHAUSTED, msg,
                            NULL, 0, 1);
    }
    r->too_big = 1;
  }
  md_walk w = {r, NULL};
  MHD_get_connection_values(mc, MHD_HEADER_KIND, take_header, &w);
  if (w.bad) {
    char msg[256];
    snprintf(msg, sizeof(msg), "header %.64s: not a timeout (grpc-timeout: "
                               "a number and H, M, S, m, u or n; "
                               "x-deadline-ms: milliseconds)",
             w.bad);
    return respond_error(mc, GRPC_STATUS_INVALID_ARGUMENT, msg, 1);
  }
  r->rt = rt;
  r->opts.metadata = &r->md;
  r->state = R_CALL;
  /* A body of known size in one buffer, not grown by copies (the rest of
   * a body under the limit comes anyway). */
  if (rt->desc.kind != PRPC_CLIENT_STREAMING && !r->too_big && len > 0)
    (void)wbuf_reserve(&r->body,
                       len < HTTP_BODY_MAX ? (size_t)len : HTTP_BODY_MAX);
  /* A client stream may take its time; a single request's body may not. */
  set_phase(hc, rt->desc.kind == PRPC_CLIENT_STREAMING ? P_RUNNING : P_BODY);
  if (rt->desc.kind == PRPC_CLIENT_STREAMING) {
    prpc_channel *ch = channel_of(hc);
    if (!ch || prpc_call_start(ch, &rt->desc, NULL, &r->opts, &r->call) != 0) {
      r->state = R_DONE;
      return respond_error(mc, GRPC_STATUS_UNAVAILABLE,
                           "cannot reach the server's handlers", 1);
    }
  }
  return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc,
                                  const char *url, const char *method,
                                  const char *version,
                                  const char *upload_data,
                                  size_t *upload_data_size, void **req_cls) {
  http *h = cls;
  hreq *r = *req_cls;
  PRPC__UNUSED(version);
  if (!r) {
    if (!(r = calloc(1, sizeof(*r))))
      return MHD_NO;
    pthread_mutex_lock(&h->mu);
    h->busy++;
    pthread_mutex_unlock(&h->mu);
    r->hc = conn_of(mc);
    r->opts = (prpc_call_opts)PRPC_CALL_OPTS_INIT;
    *req_cls = r;
    return begin(h, mc, r, url, method);
  }
  if (*upload_data_size) {
    size_t n = *upload_data_size;
    *upload_data_size = 0;
    r->received += n;
    if (r->state != R_CALL) /* answered: the rest is dropped, up to a point */
      return r->received > h->body_max + HTTP_DISCARD_MAX ? MHD_NO : MHD_YES;
    if (r->too_big) {
      /* Dropped up to a point: an oversized body from its start, a stream
       * from its oversized message. */
      size_t most = r->drop_from ? HTTP_DISCARD_MAX
                                 : h->body_max + HTTP_DISCARD_MAX;
      return r->received - r->drop_from > most ? MHD_NO : MHD_YES;
    }
    if (r->ended || r->err[0]) {
      /* The stream is over: its answer comes at the end of the body, which
       * is dropped up to a point (then the connection is closed). */
      if (!r->drop_from)
        r->drop_from = r->received;
      return r->received - r->drop_from > HTTP_DISCARD_MAX ? MHD_NO : MHD_YES;
    }
    wbuf_put(&r->body, upload_data, n);
    if (r->rt->desc.kind == PRPC_CLIENT_STREAMING) {
      /* The limit is on each message: a stream may be long. */
      take_messages(r, 0);
      if (r->body.len > h->body_max) {
        r->too_big = 1; /* the call is cancelled when the request ends */
        r->drop_from = r->received;
        prpc_call_cancel(r->call);
        wbuf_free(&r->body);
      } else if (r->err[0]) {
        r->body.len = 0;
      }
    } else if (r->body.len > h->body_max) {
      r->too_big = 1;
      wbuf_free(&r->body);
    }
    if (r->body.failed) {
      r->too_big = 1; /* out of memory: refused as too big for now */
      wbuf_free(&r->body);
    }
    return MHD_YES;
  }
  if (r->state == R_ANSWER)
    return answer(h, mc, r);
  if (r->state != R_CALL)
    return MHD_YES;
  r->state = R_DONE;
  set_phase(r->hc, P_RUNNING);
  if (r->too_big) { /* the body has been read: the connection goes on */
    char msg[128];
    snprintf(msg, sizeof(msg), "the request body is larger than %zu bytes",
             h->body_max);
    return respond_status(mc, 413, GRPC_STATUS_RESOURCE_EXHAUSTED, msg, NULL,
                          0, 0);
  }
  if (r->rt->desc.kind == PRPC_CLIENT_STREAMING)
    return finish_client_streaming(mc, r);
  enum MHD_Result res;
  if (r->rt->desc.kind == PRPC_UNARY && r->rt->me && call_local(mc, r, &res) == 0)
    return res;
  prpc_channel *ch = channel_of(r->hc);
  if (!ch)
    return respond_error(mc, GRPC_STATUS_UNAVAILABLE,
                         "cannot reach the server's handlers", 1);
  if (r->rt->desc.kind == PRPC_SERVER_STREAMING)
    return call_server_streaming(mc, r, ch);
  return call_unary(mc, r, ch);
}

static void on_completed(void *cls, struct MHD_Connection *mc,
                         void **req_cls, enum MHD_RequestTerminationCode toe) {
  http *h = cls;
  hreq *r = *req_cls;
  PRPC__UNUSED(mc);
  PRPC__UNUSED(toe);
  if (!r)
    return;
  set_phase(r->hc, P_WAITING); /* for the next request */
  prpc__local_done(r->local);
  if (r->call) { /* the client went away in the middle of its stream */
    prpc_call_cancel(r->call);
    prpc_call_finish(r->call, NULL, NULL);
  }
  prpc_metadata_clear(&r->md);
  wbuf_free(&r->body);
  free(r);
  *req_cls = NULL;
  pthread_mutex_lock(&h->mu);
  if (--h->busy == 0)
    pthread_cond_broadcast(&h->idle);
  pthread_mutex_unlock(&h->mu);
}

/* A connection starts (its record was left in h->handed by its
 * descriptor number) or ends. */
static void on_connection(void *cls, struct MHD_Connection *mc,
                          void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
  http *h = cls;
  if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    hconn *hc = calloc(1, sizeof(*hc));
    prpc__conn *rec = NULL;
    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; ci && i < h->n_handed; i++)
      if (h->handed[i]->fd == ci->connect_fd) {
        rec = h->handed[i];
        h->handed[i] = h->handed[--h->n_handed];
        break;
      }
    pthread_mutex_unlock(&h->mu);
    if (!hc || !rec) {
      /* Cannot happen but out of memory: requests get 500, then close. */
      free(hc);
      prpc__conn_unref(rec);
      *socket_context = NULL;
      return;
    }
    hc->h = h;
    hc->rec = rec;
    hc->fd = rec->fd;
    atomic_init(&hc->phase, P_WAITING);
    atomic_init(&hc->since, mono_ms());
    pthread_mutex_lock(&h->mu);
    hc->next = h->conns;
    if (h->conns)
      h->conns->prev = hc;
    h->conns = hc;
    pthread_mutex_unlock(&h->mu);
    *socket_context = hc;
  } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
    hconn *hc = *socket_context;
    if (!hc)
      return;
    /* Off the watchdog's list before libmicrohttpd closes the descriptor. */
    pthread_mutex_lock(&h->mu);
    if (hc->prev)
      hc->prev->next = hc->next;
    else
      h->conns = hc->next;
    if (hc->next)
      hc->next->prev = hc->prev;
    pthread_mutex_unlock(&h->mu);
    prpc_channel_destroy(hc->ch);
    prpc__conn_unref(hc->rec);
    free(hc);
    *socket_context = NULL;
  }
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
  char line[256];
  PRPC__UNUSED(cls);
  vsnprintf(line, sizeof(line), fmt, ap);
  size_t n = strlen(line);
  while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
    line[--n] = '\0';
  prpc__log(PRPC__LOG_DEBUG, "http: %s", line);
}

/* ---- the watchdog ---- */

static void *watch_main(void *arg) {
  http *h = arg;
  pthread_mutex_lock(&h->mu);
  while (h->watching) {
    struct timespec ts;
    int64_t now = mono_ms();
    for (hconn *hc = h->conns; hc; hc = hc->next) {
      int phase = atomic_load(&hc->phase);
      if (phase == P_RUNNING || hc->cut ||
          now - atomic_load(&hc->since) < h->bound_ms)
        continue;
      /* libmicrohttpd's thread sees the end and closes the connection. */
      hc->cut = 1;
      shutdown(hc->fd, SHUT_RDWR);
      prpc__log(PRPC__LOG_DEBUG, "http: closed a connection from %s: no "
                                 "complete request within %lld ms",
                hc->rec->peer, (long long)h->bound_ms);
    }
    prpc__timespec_in(&ts, CLOCK_REALTIME, HTTP_WATCH_MS);
    pthread_cond_timedwait(&h->cv, &h->mu, &ts);
  }
  pthread_mutex_unlock(&h->mu);
  return NULL;
}

/* ---- the hand-off ---- */

void prpc__http_serve(prpc_server *srv, prpc__conn *c) {
  http *h = prpc__server_hook_data(srv, &http_hook);
  struct sockaddr_un sa;
  socklen_t len = sizeof(sa);
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  if (!h || !h->d) {
    close(c->fd);
    return;
  }
  /* A reference for the connection's life in libmicrohttpd: its start
   * notification takes it from here. */
  pthread_mutex_lock(&h->mu);
  prpc__conn **p = realloc(h->handed, (h->n_handed + 1) * sizeof(*p));
  if (!p) {
    pthread_mutex_unlock(&h->mu);
    close(c->fd);
    return;
  }
  h->handed = p;
  prpc__conn_ref(c);
  h->handed[h->n_handed++] = c;
  pthread_mutex_unlock(&h->mu);
  if (getpeername(c->fd, (struct sockaddr *)&sa, &len) != 0 ||
      len < sizeof(sa.sun_family))
    len = sizeof(sa.sun_family);
  /* libmicrohttpd closes the descriptor, also when this fails. */
  if (MHD_add_connection(h->d, c->fd, (const struct sockaddr *)&sa, len) !=
      MHD_YES) {
    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; i < h->n_handed; i++)
      if (h->handed[i] == c) {
        h->handed[i] = h->handed[--h->n_handed];
        prpc__conn_unref(c);
        break;
      }
    pthread_mutex_unlock(&h->mu);
    prpc__log(PRPC__LOG_WARN, "http: cannot serve a connection on %s: %s",
              c->peer, strerror(errno));
  }
}

/* ---- life ---- */

/* Adds fd and what it imports to the pool, imports first. */
static void pool_add(pool *p, const prpc_file_desc *fd, int depth) {
  if (!fd || !fd->name || depth > 64 || prpc__pool_has_file(p, fd->name))
    return;
  for (size_t i = 0; i < fd->n_deps; i++)
    pool_add(p, fd->deps[i], depth + 1);
  if (prpc__pool_add_file(p, fd->data, fd->len) != 0)
    prpc__log(PRPC__LOG_WARN, "http: cannot read the descriptor of %s",
              fd->name);
}

static const pb_method *method_desc(const pool_sym *svc, const char *name) {
  const pb_service *s = svc->desc;
  for (size_t i = 0; i < s->n_method; i++)
    if (s->method[i]->name && strcmp(s->method[i]->name, name) == 0)
      return s->method[i];
  return NULL;
}

static int http_start(void *data, const prpc_service_desc *const *services,
                      const char *const *names, size_t n) {
  http *h = data;
  prpc_server *srv = h->srv;
  size_t total = 0;
  unsigned timeout_s = 0;
  int ms;
  for (size_t i = 0; i < n; i++) {
    total += services[i]->n_methods;
    pool_add(&h->pool, services[i]->file, 0);
  }
  if (total && !(h->routes = calloc(total, sizeof(*h->routes))))
    return prpc__fail(-ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    const pool_sym *svc = prpc__pool_find(&h->pool, names[i]);
    for (size_t k = 0; k < services[i]->n_methods; k++) {
      const prpc_method_desc *m = &services[i]->methods[k];
      const char *slash = m->path ? strrchr(m->path, '/') : NULL;
      route *rt = &h->routes[h->n_routes];
      if (!slash || route_find(h, m->path))
        continue;
      rt->desc = (prpc_method_desc){m->path, m->kind, &raw_codec, NULL, NULL};
      rt->service = names[i];
      rt->name = slash + 1;
      for (size_t j = 0; j < srv->n_methods; j++)
        if (strcmp(srv->methods[j].m->path, m->path) == 0)
          rt->me = &srv->methods[j];
      const pb_method *md =
          svc && svc->kind == SYM_SERVICE ? method_desc(svc, rt->name) : NULL;
      if (md && md->input_type && md->output_type) {
        rt->in = prpc__pool_find(&h->pool, md->input_type);
        rt->out = prpc__pool_find(&h->pool, md->output_type);
        if (rt->in && rt->in->kind != SYM_MESSAGE)
          rt->in = NULL;
        if (rt->out && rt->out->kind != SYM_MESSAGE)
          rt->out = NULL;
      }
      h->n_routes++;
    }
  }
  h->services = names;
  h->n_services = n;
  json_t *list = listing(h);
  h->listing = list ? print_json(list, &h->listing_len) : NULL;
  json_decref(list);
  h->body_max = srv->opts.max_recv_bytes > 0 ? (size_t)srv->opts.max_recv_bytes
                                             : HTTP_BODY_MAX;
  /* A connection with no request in progress, or whose client stops
   * sending in the middle of one, is closed after the idle timeout, else
   * after the handshake timeout (the bound on a gRPC client's first
   * bytes); libmicrohttpd counts whole seconds. */
  ms = srv->opts.idle_timeout_ms > 0 ? srv->opts.idle_timeout_ms
                                     : srv->opts.handshake_timeout_ms;
  if (ms > 0)
    timeout_s = (unsigned)((ms + 999) / 1000);
  h->d = MHD_start_daemon(
      MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
          MHD_USE_POLL | MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC |
          MHD_USE_ERROR_LOG,
      0, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log,
      h, MHD_OPTION_CONNECTION_TIMEOUT, timeout_s,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_MEMORY_LIMIT,
      MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
      MHD_OPTION_NOTIFY_CONNECTION, on_connection, h, MHD_OPTION_END);
  if (!h->d)
    return prpc__fail(PRPC_ECORE, "http: libmicrohttpd did not start");
  h->bound_ms = (int64_t)timeout_s * 1000;
  if (h->bound_ms > 0) {
    h->watching = 1;
    if (pthread_create(&h->watchdog, NULL, watch_main, h) != 0) {
      h->watching = 0;
      prpc__log(PRPC__LOG_WARN, "http: cannot start the watchdog thread: "
                                "slow clients are bounded by the idle "
                                "timeout only");
    }
  }
  return 0;
}

static void http_shutdown(void *data) {
  http *h = data;
  atomic_store(&h->stopping, 1);
}

void prpc__http_stop(prpc_server *srv) {
  http *h = prpc__server_hook_data(srv, &http_hook);
  /* Closes every connection and joins their threads; the calls they were
   * making have ended with the server. */
  if (!h)
    return;
  if (h->watching) {
    pthread_mutex_lock(&h->mu);
    h->watching = 0;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->watchdog, NULL);
  }
  if (h->d) {
    atomic_store(&h->stopping, 1);
    /* Every call has ended (the server has drained): let the requests
     * they answer write their responses, for a bounded time. */
    struct timespec until;
    prpc__timespec_in(&until, CLOCK_REALTIME, HTTP_ANSWER_WAIT_MS);
    pthread_mutex_lock(&h->mu);
    while (h->busy > 0 &&
           pthread_cond_timedwait(&h->idle, &h->mu, &until) != ETIMEDOUT)
      ;
    pthread_mutex_unlock(&h->mu);
    MHD_stop_daemon(h->d);
    h->d = NULL;
  }
}

static void http_destroy(void *data) {
  http *h = data;
  if (!h)
    return;
  if (h->d)
    MHD_stop_daemon(h->d); /* a server never started leaves none */
  for (size_t i = 0; i < h->n_handed; i++)
    prpc__conn_unref(h->handed[i]);
  free(h->handed);
  free(h->routes);
  free(h->listing);
  prpc__pool_free(&h->pool);
  pthread_cond_destroy(&h->idle);
  pthread_cond_destroy(&h->cv);
  pthread_mutex_destroy(&h->mu);
  free(h);
}

static const prpc__hook http_hook = {"http", http_start, http_shutdown,
                                     http_destroy};

int prpc__http_enable(prpc_server *srv) {
  http *h;
  int rc;
  if (prpc__server_hook_data(srv, &http_hook))
    return 0;
  if (!(h = calloc(1, sizeof(*h))))
    return prpc__fail(-ENOMEM, "out of memory");
  h->srv = srv;
  h->pool = (pool)POOL_INIT;
  pthread_mutex_init(&h->mu, NULL);
  pthread_cond_init(&h->cv, NULL);
  pthread_cond_init(&h->idle, NULL);
  if ((rc = prpc__server_add_hook(srv, &http_hook, h)) != 0) {
    pthread_cond_destroy(&h->idle);
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    free(h);
  }
  return rc;
}

#endif /* PRPC__HAVE_HTTP */
