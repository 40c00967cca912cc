/* The server runtime.
 *
 * Threading: each worker thread owns one completion queue and keeps calls
 * requested on it for every registered method. When a unary call arrives,
 * the worker that polled it decodes the request, runs the handler and sends
 * the reply, status and trailers in one batch, all on the same thread: no
 * hand-off. A streaming call gets a thread of its own (its handler blocks in
 * read and write) and a completion queue of its own, bound to the call when
 * it is requested.
 *
 * Unix sockets are bound and accepted here, not by gRPC core, so that the
 * socket file is handled safely and each connection's peer credentials are
 * known; accepted sockets are handed to gRPC with
 * grpc_server_add_channel_from_fd(). */
#include "../runtime/internal.h"

#include <grpc/support/alloc.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define REQUESTS_PER_METHOD 2
#define INLINE_ARENA 2048
/* Arena chunks a recycled slot keeps for its next call, at most this many
 * bytes in all: a call whose request and reply structs are larger than the
 * inline arena (nanopb messages with big static fields) then allocates only
 * on the slot's first use. */
#define ARENA_KEEP (4u << 20)

/* ---- per-call memory ---- */

typedef struct arena_chunk {
  struct arena_chunk *next;
  size_t size, used;
  alignas(max_align_t) unsigned char data[];
} arena_chunk;

typedef struct method_entry {
  const prpc_method_desc *m;
  prpc_invoke_fn invoke; /* NULL: UNIMPLEMENTED */
  prpc_prepare_fn prepare; /* NULL: none */
  const void *impl;
  void *user_data;
  void *core_handle;
} method_entry;

struct prpc_ctx {
  prpc_server *srv;
  grpc_call *call;
  const char *method;
  gpr_timespec deadline;
  grpc_metadata_array core_md; /* request metadata as gRPC gave it */
  prpc_metadata md;
  int md_converted;
  char *message;
  prpc_metadata headers, trailers;
  int headers_sent;
  char *peer; /* arena: gRPC's name for peers it accepted itself (TLS) */
  prpc__conn *conn; /* the connection, when piperpc accepted it: bound
                       when the call is matched, released when it ends */
  /* Streaming only: the call's own queue, and its close-on-server op. */
  grpc_completion_queue *cq;
  pthread_mutex_t close_mu;
  atomic_int close_done;
  int cancelled_flag; /* from RECV_CLOSE_ON_SERVER */
  int read_tag, write_tag, close_tag, status_tag;
  /* Memory for the request, reply and handler; reset after each call. */
  arena_chunk *chunks;
  size_t inline_used;
  alignas(max_align_t) unsigned char inline_buf[INLINE_ARENA];
};

typedef enum { SLOT_REQUESTED, SLOT_FINISHING } slot_phase;

typedef struct worker worker;

typedef struct slot {
  slot_phase phase;
  worker *w;
  method_entry *me; /* NULL: a call to an unregistered method */
  grpc_byte_buffer *payload;
  grpc_byte_buffer *send_bb;
  grpc_call_details details; /* unregistered calls only */
  grpc_metadata *send_md[2];  /* headers, trailers in core form */
  grpc_slice status_details;
  int close_cancelled;
  /* Unary calls whose handler asked prpc_ctx_is_cancelled(): the
   * RECV_CLOSE_ON_SERVER op then runs on its own, tagged slot|1. The slot
   * is recycled once both it and the reply batch are done. */
  int close_started;
  atomic_int refs; /* the call's own phase, plus the close op if started */
  struct slot *next_free;
  prpc_ctx ctx;
} slot;

#define CLOSE_TAG(s) ((void *)((uintptr_t)(s) | 1u))

struct worker {
  prpc_server *srv;
  grpc_completion_queue *cq;
  pthread_t thread;
  slot *free_slots;
  /* Events that prpc_ctx_is_cancelled() pulled off the queue while a unary
   * handler ran; the worker handles them when the handler returns. */
  pthread_mutex_t poll_mu;
  grpc_event *deferred;
  size_t n_deferred, cap_deferred;
  atomic_int has_deferred;
};

static void defer_event(worker *w, grpc_event ev) {
  if (w->n_deferred == w->cap_deferred) {
    size_t cap = w->cap_deferred ? w->cap_deferred * 2 : 8;
    grpc_event *d;
    /* Losing the event would leak a call: wait for memory instead (this
     * thread is a worker inside a handler's is_cancelled poll). */
    while (!(d = realloc(w->deferred, cap * sizeof(*d)))) {
      struct timespec ts = {0, 10000000};
      prpc__log(PRPC__LOG_ERROR, "out of memory deferring an event: "
                                 "retrying in 10 ms");
      nanosleep(&ts, NULL);
    }
    w->deferred = d;
    w->cap_deferred = cap;
  }
  w->deferred[w->n_deferred++] = ev;
  atomic_store(&w->has_deferred, 1);
}

/* Takes the oldest deferred event. Returns 1 if there was one. */
static int take_deferred(worker *w, grpc_event *ev) {
  int got = 0;
  pthread_mutex_lock(&w->poll_mu);
  if (w->n_deferred > 0) {
    *ev = w->deferred[0];
    memmove(w->deferred, w->deferred + 1,
            --w->n_deferred * sizeof(*w->deferred));
    got = 1;
  }
  atomic_store(&w->has_deferred, w->n_deferred > 0);
  pthread_mutex_unlock(&w->poll_mu);
  return got;
}

typedef struct listener {
  prpc__target t;
  int fds[4];  /* listening sockets for the acceptor (TCP: one per
                  address); given to it at start */
  size_t n_fds;
  char name[PRPC__NAME_MAX]; /* for logs and peers */
  prpc__sockfile file; /* the socket file we created, removed at shutdown */
} listener;

typedef enum { SRV_CREATED, SRV_STARTED, SRV_STOPPING, SRV_STOPPED } srv_state;

struct prpc_server {
  prpc_server_opts opts;
  grpc_server *core;
  method_entry *methods;
  size_t n_methods, cap_methods;
  listener *listeners;
  size_t n_listeners;
  int *adopted_fds; /* fd:N connected sockets, added at start */
  size_t n_adopted;
  worker *workers;
  int n_workers;
  /* One completion queue for all workers: the thread that polls a
   * connection finds the call's events in the queue it waits on and
   * handles them itself, instead of waking the queue's owner. */
  grpc_completion_queue *cq;

  prpc__acceptor *acceptor; /* unix and TCP connections; from start */
  int stop[2]; /* readable once shutdown has begun: wakes prpc_server_run() */

  gid_t socket_gid; /* (gid_t)-1: leave */
  prpc__rule *rules;
  size_t n_rules;
  /* Access control is in force: rules, or an abstract listener (which
   * admits only the server's own user and root without them). */
  int guarded;
  /* Denied peers are handed to a second gRPC core server with no methods,
   * whose one thread answers every call with PERMISSION_DENIED: they never
   * share a server, a queue or a thread with the handlers. */
  grpc_server *deny_core;
  grpc_completion_queue *deny_cq;
  pthread_t deny_thread;
  int deny_running;
  int deny_stopped;
  int deny_shutdown_tag;
  prpc__health *health;
  char **service_names; /* the registered services, for health */
  size_t n_service_names;
  const prpc_service_desc **service_descs; /* the same, for reflection */
  prpc__reflection *reflection;

  pthread_mutex_t mu;
  pthread_cond_t cv;
  srv_state state;
  int drain_started; /* prpc_server_shutdown() has done its part */
  gpr_timespec stop_deadline;
  /* Handlers running (unary until its reply batch is started, streaming
   * until it ends): the queue may only be shut down when none is. */
  atomic_int busy;
  atomic_int stream_threads; /* streaming handlers running */
  prpc__rate stream_limit_log, unknown_peer_log;
  atomic_int stopping; /* set when shutdown begins; read by workers */
  grpc_completion_queue *shutdown_cq;
  int shutdown_tag;
};

/* ---- arena ---- */

static void *arena_alloc(prpc_ctx *ctx, size_t size) {
  size_t need = (size + alignof(max_align_t) - 1) &
                ~(size_t)(alignof(max_align_t) - 1);
  arena_chunk *c;
  if (need < size)
    return NULL;
  if (INLINE_ARENA - ctx->inline_used >= need) {
    void *p = ctx->inline_buf + ctx->inline_used;
    ctx->inline_used += need;
    return p;
  }
  for (c = ctx->chunks; c; c = c->next)
    if (c->size - c->used >= need) {
      void *p = c->data + c->used;
      c->used += need;
      return p;
    }
  size_t chunk = need > 8192 ? need : 8192;
  c = malloc(sizeof(*c) + chunk);
  if (!c)
    return NULL;
  c->size = chunk;
  c->used = need;
  c->next = ctx->chunks;
  ctx->chunks = c;
  return c->data;
}

/* Frees the chunks, keeping up to 'keep' bytes of them for the next call. */
static void arena_reset(prpc_ctx *ctx, size_t keep) {
  arena_chunk *c, *next, **tail = &ctx->chunks;
  size_t kept = 0;
  for (c = ctx->chunks; c; c = next) {
    next = c->next;
    if (c->size <= keep - kept) {
      kept += c->size;
      c->used = 0;
      *tail = c;
      tail = &c->next;
    } else {
      free(c);
    }
  }
  *tail = NULL;
  ctx->inline_used = 0;
}

static void *arena_cb_alloc(void *data, size_t size) {
  return arena_alloc(data, size);
}
static void arena_cb_free(void *data, void *ptr) {
  PRPC__UNUSED(data);
  PRPC__UNUSED(ptr); /* freed with the call */
}

/* ---- context API ---- */

const char *prpc_ctx_method(const prpc_ctx *ctx) { return ctx->method; }

/* The descriptor number in gRPC core's name for a connection piperpc
 * handed it ("fd:N"), else -1. */
static int parse_fd_peer(const char *peer) {
  long fd = -1;
  if (peer && strncmp(peer, "fd:", 3) == 0) {
    char *end;
    fd = strtol(peer + 3, &end, 10);
    if (*end != '\0' || end == peer + 3)
      fd = -1;
  }
  return (int)fd;
}

const char *prpc_ctx_peer(const prpc_ctx *cctx) {
  prpc_ctx *ctx = (prpc_ctx *)cctx; /* the peer string is cached */
  if (ctx->conn)
    return ctx->conn->peer;
  if (!ctx->peer) {
    char *core_peer = grpc_call_get_peer(ctx->call);
    if (core_peer) {
      ctx->peer = arena_alloc(ctx, strlen(core_peer) + 1);
      if (ctx->peer)
        strcpy(ctx->peer, core_peer);
    }
    gpr_free(core_peer);
  }
  return ctx->peer ? ctx->peer : "";
}

int prpc_ctx_peer_cred(const prpc_ctx *ctx, int64_t *pid, int64_t *uid,
                       int64_t *gid) {
  if (!ctx->conn || !ctx->conn->have_cred)
    return -ENOTSOCK;
  if (pid)
    *pid = ctx->conn->pid;
  if (uid)
    *uid = ctx->conn->uid;
  if (gid)
    *gid = ctx->conn->gid;
  return 0;
}

int64_t prpc_ctx_time_left_ms(const prpc_ctx *ctx) {
  return prpc__ms_until(ctx->deadline);
}

/* A unary handler runs on its worker's thread, so nobody polls the
 * worker's queue while it runs: start the call's RECV_CLOSE_ON_SERVER op
 * (once) and look for its completion without blocking, putting aside any
 * other event for the worker to handle after the handler. */
static int unary_is_cancelled(prpc_ctx *ctx) {
  slot *s = (slot *)((char *)ctx - offsetof(slot, ctx));
  worker *w = s->w;
  int cancelled;
  pthread_mutex_lock(&w->poll_mu);
  if (!s->close_started) {
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &ctx->cancelled_flag;
    atomic_fetch_add(&s->refs, 1);
    grpc_call *call = ctx->call;
    PRPC__TSAN_RELEASE(s);
    if (grpc_call_start_batch(call, &op, 1, CLOSE_TAG(s), NULL) ==
        GRPC_CALL_OK)
      s->close_started = 1;
    else
      atomic_fetch_sub(&s->refs, 1);
  }
  /* With other workers, one of them picks the close event up (dispatch()
   * sets close_done). A lone worker looks for it itself. */
  while (w->srv->opts.threads == 1 && s->close_started &&
         !atomic_load(&ctx->close_done)) {
    grpc_event ev = grpc_completion_queue_next(
        w->cq, gpr_time_0(GPR_CLOCK_MONOTONIC), NULL);
    if (ev.type == GRPC_QUEUE_TIMEOUT)
      break;
    if (ev.type == GRPC_OP_COMPLETE && ev.tag == CLOSE_TAG(s)) {
      atomic_store(&ctx->close_done, 1);
      atomic_fetch_sub(&s->refs, 1); /* the handler still holds one */
    } else {
      defer_event(w, ev);
    }
  }
  cancelled = atomic_load(&ctx->close_done) && ctx->cancelled_flag;
  pthread_mutex_unlock(&w->poll_mu);
  return cancelled;
}

int prpc_ctx_is_cancelled(const prpc_ctx *cctx) {
  prpc_ctx *ctx = (prpc_ctx *)cctx;
  int cancelled;
  if (prpc__ms_until(ctx->deadline) == 0)
    return 1;
  if (!ctx->cq)
    return unary_is_cancelled(ctx);
  pthread_mutex_lock(&ctx->close_mu);
  if (!ctx->close_done) {
    grpc_event ev = grpc_completion_queue_pluck(
        ctx->cq, &ctx->close_tag, gpr_time_0(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_OP_COMPLETE)
      ctx->close_done = 1;
  }
  cancelled = ctx->close_done && ctx->cancelled_flag;
  pthread_mutex_unlock(&ctx->close_mu);
  return cancelled;
}

const prpc_metadata *prpc_ctx_metadata(prpc_ctx *ctx) {
  if (!ctx->md_converted) {
    prpc__md_from_core(&ctx->md, &ctx->core_md);
    ctx->md_converted = 1;
  }
  return &ctx->md;
}

void prpc_ctx_set_message(prpc_ctx *ctx, const char *message) {
  free(ctx->message);
  ctx->message = message ? strdup(message) : NULL;
}

int prpc_ctx_add_header(prpc_ctx *ctx, const char *key, const void *value,
                        size_t value_len) {
  if (ctx->headers_sent)
    return -EINVAL;
  return prpc_metadata_add(&ctx->headers, key, value, value_len);
}

int prpc_ctx_add_trailer(prpc_ctx *ctx, const char *key, const void *value,
                         size_t value_len) {
  return prpc_metadata_add(&ctx->trailers, key, value, value_len);
}

int prpc_ctx_set_compression(prpc_ctx *ctx, const char *algorithm) {
  grpc_compression_algorithm alg;
  if (prpc__core_compression(algorithm, &alg) != 0)
    return prpc__fail(-EINVAL, "unknown compression algorithm '%s'",
                      algorithm ? algorithm : "(null)");
  if (ctx->headers_sent)
    return prpc__fail(PRPC_ESTATE, "compression must be set before the "
                                   "first response message");
  /* The same request to gRPC core as a client's: compress what this side
   * sends on the call. */
  return prpc_metadata_add_str(&ctx->headers, PRPC__COMPRESSION_MD_KEY,
                               algorithm);
}

int prpc_ctx_request_compressed(const prpc_ctx *ctx) {
  return prpc__core_last_message_compressed(ctx->call);
}

void *prpc_ctx_alloc(prpc_ctx *ctx, size_t size) {
  return arena_alloc(ctx, size);
}

char *prpc_ctx_strdup(prpc_ctx *ctx, const char *s) {
  size_t n = strlen(s) + 1;
  char *p = arena_alloc(ctx, n);
  if (p)
    memcpy(p, s, n);
  return p;
}

/* ---- slots: one requested or running call ---- */

static void ctx_reset(prpc_ctx *ctx, size_t arena_keep) {
  grpc_metadata_array_destroy(&ctx->core_md);
  grpc_metadata_array_init(&ctx->core_md);
  prpc_metadata_clear(&ctx->md);
  prpc_metadata_clear(&ctx->headers);
  prpc_metadata_clear(&ctx->trailers);
  free(ctx->message);
  ctx->message = NULL;
  ctx->md_converted = 0;
  ctx->headers_sent = 0;
  ctx->peer = NULL;
  prpc__conn_unref(ctx->conn);
  ctx->conn = NULL;
  ctx->close_done = 0;
  ctx->cancelled_flag = 0;
  if (ctx->call) {
    grpc_call_unref(ctx->call);
    ctx->call = NULL;
  }
  arena_reset(ctx, arena_keep);
}

static slot *slot_new(worker *w, method_entry *me) {
  slot *s = w->free_slots;
  int streaming = me && me->m->kind != PRPC_UNARY;
  if (s && !streaming) {
    w->free_slots = s->next_free;
  } else {
    s = calloc(1, sizeof(*s));
    if (!s)
      return NULL;
    s->w = w;
    s->ctx.srv = w->srv;
    s->status_details = grpc_empty_slice();
    grpc_metadata_array_init(&s->ctx.core_md);
    pthread_mutex_init(&s->ctx.close_mu, NULL);
    if (streaming) {
      s->ctx.cq = grpc_completion_queue_create_for_pluck(NULL);
      if (!s->ctx.cq) {
        free(s);
        return NULL;
      }
    }
  }
  s->me = me;
  s->phase = SLOT_REQUESTED;
  return s;
}

static void slot_destroy(slot *s) {
  ctx_reset(&s->ctx, 0);
  grpc_metadata_array_destroy(&s->ctx.core_md);
  if (s->ctx.cq)
    prpc__cq_destroy(s->ctx.cq, 1);
  pthread_mutex_destroy(&s->ctx.close_mu);
  grpc_call_details_destroy(&s->details);
  free(s);
}

/* Back to the worker's free list (unary and unregistered slots). */
/* Back to the free list of worker w (the thread running this). */
static void slot_recycle_to(worker *w, slot *s) {
  s->w = w;
  ctx_reset(&s->ctx, ARENA_KEEP);
  if (s->payload) {
    grpc_byte_buffer_destroy(s->payload);
    s->payload = NULL;
  }
  if (s->send_bb) {
    grpc_byte_buffer_destroy(s->send_bb);
    s->send_bb = NULL;
  }
  free(s->send_md[0]);
  free(s->send_md[1]);
  s->send_md[0] = s->send_md[1] = NULL;
  grpc_slice_unref(s->status_details);
  s->status_details = grpc_empty_slice();
  if (!s->me) {
    grpc_call_details_destroy(&s->details);
    memset(&s->details, 0, sizeof(s->details));
  }
  s->close_started = 0;
  s->next_free = w->free_slots;
  w->free_slots = s;
}

/* Drops one reference to a unary or unregistered call; the last recycles
 * the slot onto w's free list. */
static void slot_unref(worker *w, slot *s) {
  if (atomic_fetch_sub(&s->refs, 1) == 1)
    slot_recycle_to(w, s);
}

static void slot_free(worker *w, slot *s) {
  if (s->me && s->me->m->kind != PRPC_UNARY) {
    if (s->payload)
      grpc_byte_buffer_destroy(s->payload);
    if (s->send_bb)
      grpc_byte_buffer_destroy(s->send_bb);
    free(s->send_md[0]);
    free(s->send_md[1]);
    grpc_slice_unref(s->status_details);
    slot_destroy(s);
  } else {
    slot_recycle_to(w, s);
  }
}

/* Asks gRPC core for the next call of this method on the worker's queue.
 * Returns 0, or -1 when the request could not be made. */
static int request_call(worker *w, method_entry *me) {
  slot *s = slot_new(w, me);
  grpc_call_error err;
  if (!s)
    return -1;
  if (me) {
    grpc_completion_queue *bound = s->ctx.cq ? s->ctx.cq : w->cq;
    PRPC__TSAN_RELEASE(s);
    err = grpc_server_request_registered_call(
        w->srv->core, me->core_handle, &s->ctx.call, &s->ctx.deadline,
        &s->ctx.core_md, me->m->kind == PRPC_UNARY ||
                                 me->m->kind == PRPC_SERVER_STREAMING
                             ? &s->payload
                             : NULL,
        bound, w->cq, s);
  } else {
    grpc_call_details_init(&s->details);
    PRPC__TSAN_RELEASE(s);
    err = grpc_server_request_call(w->srv->core, &s->ctx.call, &s->details,
                                   &s->ctx.core_md, w->cq, w->cq, s);
  }
  if (err != GRPC_CALL_OK) {
    prpc__log(PRPC__LOG_ERROR, "cannot request calls from gRPC core (%d)",
              (int)err);
    slot_free(w, s);
    return -1;
  }
  return 0;
}

/* Sets the call up for its handler and binds it to its connection's
 * record (who is calling, fixed now, while the connection is known to be
 * open). Returns 0, or -1 when the call came on a connection piperpc
 * handed to gRPC core that is no longer the one it accepted, on a server
 * with access control: who is calling cannot be known, so it is refused. */
static int begin_call(slot *s) {
  prpc_server *srv = s->w->srv;
  s->ctx.method = s->me ? s->me->m->path : NULL;
  if (!s->me) {
    /* details.method is a slice; keep a C string in the arena. */
    size_t n = GRPC_SLICE_LENGTH(s->details.method);
    char *p = arena_alloc(&s->ctx, n + 1);
    if (p) {
      memcpy(p, GRPC_SLICE_START_PTR(s->details.method), n);
      p[n] = '\0';
    }
    s->ctx.method = p ? p : "";
    s->ctx.deadline = s->details.deadline;
  }
  if (srv->acceptor) {
    char *peer = grpc_call_get_peer(s->ctx.call);
    int fd = parse_fd_peer(peer);
    gpr_free(peer);
    if (fd >= 0 && !(s->ctx.conn = prpc__acceptor_bind(srv->acceptor, fd)) &&
        srv->guarded)
      return -1;
  }
  return 0;
}

/* Fills the SEND_INITIAL_METADATA op (once per call). */
static int add_headers_op(slot *s, grpc_op *op) {
  size_t n = 0;
  memset(op, 0, sizeof(*op));
  op->op = GRPC_OP_SEND_INITIAL_METADATA;
  if (prpc__md_to_core(&s->ctx.headers, NULL, NULL, &s->send_md[0], &n) != 0)
    return -1;
  op->data.send_initial_metadata.metadata = s->send_md[0];
  op->data.send_initial_metadata.count = n;
  s->ctx.headers_sent = 1;
  return 0;
}

/* Fills the SEND_STATUS_FROM_SERVER op. */
static void add_status_op(slot *s, grpc_op *op, grpc_status_code code) {
  size_t n = 0;
  /* A handler that gives up because its time ran out reports the deadline,
   * as the client's own timer would. */
  if (code == GRPC_STATUS_CANCELLED && prpc__ms_until(s->ctx.deadline) == 0)
    code = GRPC_STATUS_DEADLINE_EXCEEDED;
  if (prpc__log_enabled(PRPC_LOG_DEBUG))
    prpc__log_call(PRPC_LOG_DEBUG, s->ctx.method, prpc_ctx_peer(&s->ctx),
                   "%s%s%s", prpc_status_name(code),
                   s->ctx.message ? ": " : "",
                   s->ctx.message ? s->ctx.message : "");
  memset(op, 0, sizeof(*op));
  op->op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  if (prpc__md_to_core(&s->ctx.trailers, NULL, NULL, &s->send_md[1], &n) !=
      0)
    n = 0;
  op->data.send_status_from_server.trailing_metadata = s->send_md[1];
  op->data.send_status_from_server.trailing_metadata_count = n;
  op->data.send_status_from_server.status = code;
  if (s->ctx.message && code != GRPC_STATUS_OK) {
    s->status_details = grpc_slice_from_copied_string(s->ctx.message);
    op->data.send_status_from_server.status_details = &s->status_details;
  }
}

/* Sends what is left of a unary (or unregistered) call in one batch; the
 * worker recycles the slot when the batch completes. */
static void finish_unary(slot *s, grpc_status_code code) {
  grpc_op ops[4];
  size_t n = 0;
  if (add_headers_op(s, &ops[n]) == 0)
    n++;
  if (code == GRPC_STATUS_OK && s->send_bb) {
    memset(&ops[n], 0, sizeof(ops[n]));
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n].data.send_message.send_message = s->send_bb;
    n++;
  }
  add_status_op(s, &ops[n++], code);
  if (!s->close_started) {
    memset(&ops[n], 0, sizeof(ops[n]));
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n].data.recv_close_on_server.cancelled = &s->close_cancelled;
    n++;
  }
  s->phase = SLOT_FINISHING;
  grpc_call *call = s->ctx.call; /* s is not ours once the batch starts */
  PRPC__TSAN_RELEASE(s);
  if (grpc_call_start_batch(call, ops, n, s, NULL) != GRPC_CALL_OK) {
    prpc__log(PRPC__LOG_ERROR, "%s: gRPC core refused the reply batch",
              s->ctx.method);
    slot_unref(s->w, s); /* the close op, if any, holds the other */
  }
}

static grpc_status_code fail_with(prpc_ctx *ctx, grpc_status_code code,
                                  const char *msg) {
  prpc_ctx_set_message(ctx, msg);
  return code;
}

/* Decodes the request of a unary or server-streaming call into *req. A
 * codec with decode_into (nanopb) decodes into call memory, after init() and
 * the method's prepare hook; another codec allocates from alloc (NULL: its
 * own allocator; the caller frees). Returns GRPC_STATUS_OK, or the status
 * to end the call with (its message set). */
static grpc_status_code decode_request(slot *s, const prpc_allocator *alloc,
                                       void **req) {
  const prpc_method_desc *m = s->me->m;
  const prpc_codec *codec = m->codec;
  const char *err = NULL;
  *req = NULL;
  if (!s->payload)
    return fail_with(&s->ctx, GRPC_STATUS_INVALID_ARGUMENT,
                     "the request message is missing");
  if (!codec->decode_into) {
    if ((*req = prpc__decode(codec, m->input, s->payload, alloc, &err)))
      return GRPC_STATUS_OK;
    char text[200];
    snprintf(text, sizeof(text), "the request message does not decode: %s",
             err);
    prpc_ctx_set_message(&s->ctx, text);
  } else {
    void *msg = arena_alloc(&s->ctx, codec->struct_size(m->input));
    if (!msg)
      return fail_with(&s->ctx, GRPC_STATUS_RESOURCE_EXHAUSTED,
                       "out of memory");
    codec->init(m->input, msg);
    if (s->me->prepare && s->me->invoke)
      s->me->prepare(s->me->impl, &s->ctx, msg, s->me->user_data);
    prpc_allocator scratch = {arena_cb_alloc, arena_cb_free, &s->ctx};
    if (!(err = prpc__decode_into(codec, m->input, s->payload, msg,
                                  &scratch))) {
      *req = msg;
      return GRPC_STATUS_OK;
    }
    char text[200];
    snprintf(text, sizeof(text), "the request message does not decode: %s",
             err);
    prpc_ctx_set_message(&s->ctx, text);
  }
  prpc__log_call(PRPC_LOG_INFO, m->path, prpc_ctx_peer(&s->ctx),
                 "the request does not decode%s%s", err ? ": " : "",
                 err ? err : "");
  return GRPC_STATUS_INVALID_ARGUMENT;
}

/* Releases a request from decode_request(). */
static void release_request(slot *s, void *req) {
  const prpc_method_desc *m = s->me->m;
  if (!req)
    return;
  if (m->codec->decode_into) {
    if (m->codec->release)
      m->codec->release(m->input, req); /* the struct is call memory */
  } else if (m->kind != PRPC_UNARY) {
    m->codec->free(m->input, req, NULL); /* unary: arena memory */
  }
}

static void run_unary(slot *s) {
  method_entry *me = s->me;
  const prpc_method_desc *m = me->m;
  prpc_allocator alloc = {arena_cb_alloc, arena_cb_free, &s->ctx};
  grpc_status_code code;
  void *req = NULL;

  if ((code = decode_request(s, &alloc, &req)) != GRPC_STATUS_OK) {
    /* the status message is set */
  } else if (!me->invoke) {
    code = fail_with(&s->ctx, GRPC_STATUS_UNIMPLEMENTED,
                     "the server has no handler for this method");
  } else {
    void *reply = arena_alloc(&s->ctx, m->codec->struct_size(m->output));
    if (!reply) {
      code = fail_with(&s->ctx, GRPC_STATUS_RESOURCE_EXHAUSTED,
                       "out of memory");
    } else {
      m->codec->init(m->output, reply);
      code = me->invoke(me->impl, &s->ctx, req, reply, me->user_data);
      if ((int)code < 0 || (int)code > 16) {
        prpc__log(PRPC__LOG_ERROR, "%s: handler returned status %d",
                  m->path, (int)code);
        code = fail_with(&s->ctx, GRPC_STATUS_UNKNOWN,
                         "the handler returned an invalid status");
      }
      if (code == GRPC_STATUS_OK &&
          !(s->send_bb = prpc__encode(m->codec, m->output, reply)))
        code = fail_with(&s->ctx, GRPC_STATUS_INTERNAL,
                         "the reply message does not encode");
    }
  }
  release_request(s, req);
  finish_unary(s, code);
}

static void run_unregistered(slot *s) {
  char msg[300];
  snprintf(msg, sizeof(msg), "unknown method %s", s->ctx.method);
  prpc_ctx_set_message(&s->ctx, msg);
  finish_unary(s, GRPC_STATUS_UNIMPLEMENTED);
}

/* ---- streaming calls, each on a thread of its own ---- */

static int stream_batch(slot *s, grpc_op *ops, size_t n, int *tag) {
  if (grpc_call_start_batch(s->ctx.call, ops, n, tag, NULL) != GRPC_CALL_OK)
    return 0;
  return grpc_completion_queue_pluck(s->ctx.cq, tag,
                                     gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
      .success;
}

int prpc_ctx_write(prpc_ctx *ctx, const void *msg) {
  return prpc_ctx_write_ex(ctx, msg, 0);
}

int prpc_ctx_write_ex(prpc_ctx *ctx, const void *msg, unsigned flags) {
  slot *s = (slot *)((char *)ctx - offsetof(slot, ctx));
  grpc_op ops[2];
  size_t n = 0;
  grpc_byte_buffer *bb;
  int ok;
  if (!ctx->cq || !s->me || (s->me->m->kind != PRPC_SERVER_STREAMING &&
                             s->me->m->kind != PRPC_BIDI_STREAMING))
    return prpc__fail(-EINVAL, "prpc_ctx_write: not a server-streaming or "
                               "bidi call");
  bb = prpc__encode(s->me->m->codec, s->me->m->output, msg);
  if (!bb)
    return prpc__fail(PRPC_EMSG, "failed to encode the message");
  if (!ctx->headers_sent && add_headers_op(s, &ops[n]) == 0)
    n++;
  memset(&ops[n], 0, sizeof(ops[n]));
  ops[n].op = GRPC_OP_SEND_MESSAGE;
  ops[n].flags = flags & GRPC_WRITE_NO_COMPRESS;
  ops[n].data.send_message.send_message = bb;
  n++;
  ok = stream_batch(s, ops, n, &ctx->write_tag);
  grpc_byte_buffer_destroy(bb);
  return ok ? 0 : prpc__fail(PRPC_ECLOSED, "the call has ended");
}

/* Reads one request message: a new one into *msg, or into the caller's
 * storage 'into' (codecs with decode_into). */
static int ctx_read(prpc_ctx *ctx, void **msg, void *into) {
  slot *s = (slot *)((char *)ctx - offsetof(slot, ctx));
  grpc_op op;
  grpc_byte_buffer *bb = NULL;
  const prpc_codec *codec;
  const char *err = NULL;
  int ok;
  if (msg)
    *msg = NULL;
  if (!ctx->cq || !s->me || (s->me->m->kind != PRPC_CLIENT_STREAMING &&
                             s->me->m->kind != PRPC_BIDI_STREAMING))
    return prpc__fail(-EINVAL, "prpc_ctx_read: not a client-streaming or "
                               "bidi call");
  codec = s->me->m->codec;
  if (into ? !codec->decode_into : !codec->decode)
    return prpc__fail(-EINVAL, "%s: the %s codec needs %s", s->me->m->path,
                      codec->name,
                      into ? "prpc_ctx_read()" : "prpc_ctx_read_into()");
  memset(&op, 0, sizeof(op));
  op.op = GRPC_OP_RECV_MESSAGE;
  op.data.recv_message.recv_message = &bb;
  if (!stream_batch(s, &op, 1, &ctx->read_tag))
    return prpc__fail(PRPC_ECLOSED, "the call has ended");
  if (!bb) {
    /* gRPC core ends a read without a message both at the client's
     * half-close and when the call dies (the client cancelled, or its
     * connection closed): tell them apart by the call's close op, which
     * completes with the same transport event when the call dies, at
     * most a thread switch later (measured: found at once or after one
     * yield). A real half-close costs these few non-blocking looks. */
    for (int i = 0; i < 4; i++) {
      if (prpc_ctx_is_cancelled(ctx))
        return prpc__fail(PRPC_ECLOSED, "the call has ended");
      sched_yield(); /* the close op may be a few instructions behind */
    }
    return 0; /* the client half-closed */
  }
  if (into) {
    /* No scratch: call memory would grow with every message. */
    err = prpc__decode_into(codec, s->me->m->input, bb, into, NULL);
    ok = !err;
  } else {
    *msg = prpc__decode(codec, s->me->m->input, bb, NULL, &err);
    ok = *msg != NULL;
  }
  grpc_byte_buffer_destroy(bb);
  if (!ok) {
    char text[200];
    snprintf(text, sizeof(text), "a request message does not decode%s%s",
             err ? ": " : "", err ? err : "");
    prpc_ctx_set_message(ctx, text);
    grpc_call_cancel_with_status(ctx->call, GRPC_STATUS_INVALID_ARGUMENT,
                                 text, NULL);
    return prpc__fail(PRPC_EMSG, "%s", text);
  }
  return 1;
}

int prpc_ctx_read(prpc_ctx *ctx, void **msg) {
  return ctx_read(ctx, msg, NULL);
}

int prpc_ctx_read_into(prpc_ctx *ctx, void *msg) {
  if (!msg)
    return prpc__fail(-EINVAL, "prpc_ctx_read_into: NULL message");
  return ctx_read(ctx, NULL, msg);
}

static void handler_done(prpc_server *srv) {
  /* Only a shutdown waits for this: take the lock only then. */
  if (atomic_fetch_sub(&srv->busy, 1) == 1 && atomic_load(&srv->stopping)) {
    pthread_mutex_lock(&srv->mu);
    pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
  }
}

static void *run_stream(void *arg) {
  slot *s = arg;
  method_entry *me = s->me;
  const prpc_method_desc *m = me->m;
  prpc_server *srv = s->w->srv;
  grpc_status_code code;
  grpc_op ops[3];
  size_t n = 0;
  void *req = NULL, *reply = NULL;

  memset(ops, 0, sizeof(ops));
  ops[0].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  ops[0].data.recv_close_on_server.cancelled = &s->ctx.cancelled_flag;
  if (grpc_call_start_batch(s->ctx.call, ops, 1, &s->ctx.close_tag, NULL) !=
      GRPC_CALL_OK)
    s->ctx.close_done = 1; /* nothing to wait for */

  if (m->kind == PRPC_SERVER_STREAMING &&
      (code = decode_request(s, NULL, &req)) != GRPC_STATUS_OK) {
    /* the status message is set */
  } else if (!me->invoke) {
    code = fail_with(&s->ctx, GRPC_STATUS_UNIMPLEMENTED,
                     "the server has no handler for this method");
  } else {
    if (m->kind == PRPC_CLIENT_STREAMING) {
      reply = arena_alloc(&s->ctx, m->codec->struct_size(m->output));
      if (reply)
        m->codec->init(m->output, reply);
    }
    if (m->kind == PRPC_CLIENT_STREAMING && !reply)
      code = fail_with(&s->ctx, GRPC_STATUS_RESOURCE_EXHAUSTED,
                       "out of memory");
    else
      code = me->invoke(me->impl, &s->ctx, req, reply, me->user_data);
    if ((int)code < 0 || (int)code > 16)
      code = fail_with(&s->ctx, GRPC_STATUS_UNKNOWN,
                       "the handler returned an invalid status");
  }
  release_request(s, req);

  memset(ops, 0, sizeof(ops));
  if (!s->ctx.headers_sent && add_headers_op(s, &ops[n]) == 0)
    n++;
  if (code == GRPC_STATUS_OK && reply) {
    s->send_bb = prpc__encode(m->codec, m->output, reply);
    if (s->send_bb) {
      ops[n].op = GRPC_OP_SEND_MESSAGE;
      ops[n].data.send_message.send_message = s->send_bb;
      n++;
    } else {
      code = fail_with(&s->ctx, GRPC_STATUS_INTERNAL,
                       "the reply message does not encode");
    }
  }
  add_status_op(s, &ops[n++], code);
  stream_batch(s, ops, n, &s->ctx.status_tag);
  pthread_mutex_lock(&s->ctx.close_mu);
  if (!s->ctx.close_done)
    grpc_completion_queue_pluck(s->ctx.cq, &s->ctx.close_tag,
                                gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  s->ctx.close_done = 1;
  pthread_mutex_unlock(&s->ctx.close_mu);
  slot_free(NULL, s); /* a streaming slot is destroyed, not recycled */
  atomic_fetch_sub(&srv->stream_threads, 1);
  handler_done(srv);
  return NULL;
}

static void start_stream(slot *s) {
  prpc_server *srv = s->w->srv;
  pthread_t th;
  pthread_attr_t attr;
  /* Each streaming handler holds a thread: a bounded number of them, so
   * that peers opening streams cannot make the server start threads
   * without end. */
  if (atomic_fetch_add(&srv->stream_threads, 1) >=
      srv->opts.max_stream_threads) {
    char text[160];
    atomic_fetch_sub(&srv->stream_threads, 1);
    snprintf(text, sizeof(text), "the server is running %d streaming calls, "
                                 "its limit (max_stream_threads)",
             srv->opts.max_stream_threads);
    if (prpc__rate_ok(&srv->stream_limit_log))
      prpc__log_call(PRPC__LOG_WARN, s->me->m->path, prpc_ctx_peer(&s->ctx),
                     "%s", text);
    grpc_call_cancel_with_status(s->ctx.call, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                 text, NULL);
    slot_free(NULL, s);
    handler_done(srv);
    return;
  }
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  if (pthread_create(&th, &attr, run_stream, s) != 0) {
    prpc__log(PRPC__LOG_ERROR, "%s: cannot start a thread for the stream",
              s->me->m->path);
    grpc_call_cancel_with_status(s->ctx.call, GRPC_STATUS_RESOURCE_EXHAUSTED,
                                 "the server cannot start a thread", NULL);
    atomic_fetch_sub(&srv->stream_threads, 1);
    slot_free(NULL, s);
    handler_done(srv);
  }
  pthread_attr_destroy(&attr);
}

/* ---- workers ---- */

static void dispatch(worker *w, grpc_event ev) {
  uintptr_t tag = (uintptr_t)ev.tag;
  slot *s = (slot *)(tag & ~(uintptr_t)1u);
  PRPC__TSAN_ACQUIRE(s);
  if (tag & 1u) { /* a unary call's separate close op */
    atomic_store(&s->ctx.close_done, 1);
    slot_unref(w, s);
    return;
  }
  if (s->phase == SLOT_FINISHING) {
    slot_unref(w, s);
    return;
  }
  if (!ev.success) {
    /* The server is shutting down: this request will never match. */
    slot_free(w, s);
    return;
  }
  /* This thread runs the call: its handler, and is_cancelled() polling. */
  s->w = w;
  atomic_store(&s->refs, 1);
  atomic_fetch_add(&w->srv->busy, 1);
  /* Keep a request outstanding while this call runs. */
  request_call(w, s->me);
  if (begin_call(s) != 0) {
    if (prpc__rate_ok(&w->srv->unknown_peer_log))
      prpc__log_call(PRPC__LOG_WARN, s->ctx.method, "fd:?",
                     "refused a call whose connection is no longer the one "
                     "that was accepted: its peer cannot be known");
    grpc_call_cancel_with_status(s->ctx.call, GRPC_STATUS_PERMISSION_DENIED,
                                 "access denied: the connection's peer "
                                 "cannot be verified",
                                 NULL);
    slot_free(w, s);
    handler_done(w->srv);
    return;
  }
  if (!s->me || s->me->m->kind == PRPC_UNARY) {
    if (!s->me)
      run_unregistered(s);
    else
      run_unary(s);
    handler_done(w->srv); /* its reply batch has been started */
  } else {
    start_stream(s); /* its thread calls handler_done() */
  }
}

static void *worker_main(void *arg) {
  worker *w = arg;
  for (;;) {
    grpc_event ev;
    if (!atomic_load_explicit(&w->has_deferred, memory_order_relaxed) ||
        !take_deferred(w, &ev))
      ev = grpc_completion_queue_next(w->cq,
                                      gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN)
      break;
    if (ev.type == GRPC_OP_COMPLETE)
      dispatch(w, ev);
  }
  while (w->free_slots) {
    slot *s = w->free_slots;
    w->free_slots = s->next_free;
    slot_destroy(s);
  }
  return NULL;
}

/* ---- the deny server ---- */

typedef struct deny_call {
  int answering;
  grpc_call *call;
  grpc_call_details details;
  grpc_metadata_array md;
  grpc_slice msg;
  int cancelled;
} deny_call;

static void deny_request(prpc_server *srv) {
  deny_call *d = calloc(1, sizeof(*d));
  if (!d)
    return;
  grpc_call_details_init(&d->details);
  grpc_metadata_array_init(&d->md);
  d->msg = grpc_empty_slice();
  if (grpc_server_request_call(srv->deny_core, &d->call, &d->details, &d->md,
                               srv->deny_cq, srv->deny_cq, d) != GRPC_CALL_OK) {
    grpc_call_details_destroy(&d->details);
    grpc_metadata_array_destroy(&d->md);
    free(d);
  }
}

static void deny_free(deny_call *d) {
  if (d->call)
    grpc_call_unref(d->call);
  grpc_call_details_destroy(&d->details);
  grpc_metadata_array_destroy(&d->md);
  grpc_slice_unref(d->msg);
  free(d);
}

static void *deny_main(void *arg) {
  prpc_server *srv = arg;
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(
        srv->deny_cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN)
      break;
    if (ev.type != GRPC_OP_COMPLETE)
      continue;
    if (ev.tag == &srv->deny_shutdown_tag) {
      grpc_completion_queue_shutdown(srv->deny_cq);
      continue;
    }
    deny_call *d = ev.tag;
    if (d->answering || !ev.success) {
      deny_free(d);
      continue;
    }
    deny_request(srv);
    /* Say who was refused: the peer's uid as the kernel gave it. */
    char *peer = grpc_call_get_peer(d->call);
    prpc__conn *c = prpc__acceptor_bind(srv->acceptor, parse_fd_peer(peer));
    char text[160];
    if (c && c->have_cred)
      snprintf(text, sizeof(text),
               "access denied: uid %u may not call this server",
               (unsigned)c->uid);
    else
      snprintf(text, sizeof(text), "access denied");
    prpc__conn_unref(c);
    gpr_free(peer);
    d->msg = grpc_slice_from_copied_string(text);
    grpc_op ops[3];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[1].data.send_status_from_server.status = GRPC_STATUS_PERMISSION_DENIED;
    ops[1].data.send_status_from_server.status_details = &d->msg;
    ops[2].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[2].data.recv_close_on_server.cancelled = &d->cancelled;
    d->answering = 1;
    if (grpc_call_start_batch(d->call, ops, 3, d, NULL) != GRPC_CALL_OK)
      deny_free(d);
  }
  return NULL;
}

static int deny_start(prpc_server *srv) {
  grpc_arg args[3];
  grpc_channel_args cargs = {0, args};
  /* A denied peer is answered and then sent away: its connection is closed
   * about a second after it was made, and sooner when idle. */
  cargs.num_args = prpc__core_deny_args(args);
  srv->deny_core = prpc__core_server_create(&cargs);
  srv->deny_cq = grpc_completion_queue_create_for_next(NULL);
  if (!srv->deny_core || !srv->deny_cq)
    return -1;
  grpc_server_register_completion_queue(srv->deny_core, srv->deny_cq, NULL);
  grpc_server_start(srv->deny_core);
  deny_request(srv);
  if (pthread_create(&srv->deny_thread, NULL, deny_main, srv) != 0)
    return -1;
  srv->deny_running = 1;
  return 0;
}

static void deny_stop(prpc_server *srv) {
  if (!srv->deny_core || srv->deny_stopped)
    return;
  srv->deny_stopped = 1;
  grpc_server_shutdown_and_notify(srv->deny_core, srv->deny_cq,
                                  &srv->deny_shutdown_tag);
  grpc_server_cancel_all_calls(srv->deny_core);
  if (srv->deny_running) {
    pthread_join(srv->deny_thread, NULL);
    srv->deny_running = 0;
  } else if (srv->deny_cq) {
    grpc_completion_queue_shutdown(srv->deny_cq);
    while (grpc_completion_queue_next(srv->deny_cq,
                                      gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
               .type != GRPC_QUEUE_SHUTDOWN)
      ;
  }
}

/* ---- server lifecycle ---- */

int prpc_server_create(const prpc_server_opts *opts, prpc_server **out) {
  prpc_server *srv;
  grpc_arg args[10];
  grpc_channel_args cargs;
  if (!out)
    return prpc__fail(-EINVAL, "prpc_server_create: out is NULL");
  gid_t group = (gid_t)-1;
  if (opts && (opts->threads < 0 || opts->grace_ms < 0 ||
               opts->max_connections < 0 || opts->idle_timeout_ms < 0 ||
               opts->max_connections_per_uid < -1 ||
               opts->handshake_timeout_ms < -1 ||
               opts->max_concurrent_streams < 0 ||
               opts->max_stream_threads < 0 ||
               (opts->socket_mode & ~0777u)))
    return prpc__fail(-EINVAL, "prpc_server_create: a negative count or "
                               "time (only max_connections_per_uid and "
                               "handshake_timeout_ms take -1, for none), or "
                               "socket_mode beyond 0777");
  if (opts && opts->socket_group) {
    int rc = prpc__group_parse(opts->socket_group, &group);
    if (rc != 0)
      return prpc__fail(rc, "socket_group: no group '%s'", opts->socket_group);
  }
  srv = calloc(1, sizeof(*srv));
  if (!srv)
    return prpc__fail(-ENOMEM, "out of memory");
  if (opts)
    srv->opts = *opts;
  srv->opts.socket_group = NULL; /* borrowed: resolved now */
  srv->socket_gid = group;
  if (srv->opts.threads == 0) {
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    srv->opts.threads = ncpu > 0 ? (int)ncpu : 1;
  }
  if (srv->opts.grace_ms == 0)
    srv->opts.grace_ms = 5000;
  if (srv->opts.socket_mode == 0)
    srv->opts.socket_mode = 0600;
  if (srv->opts.handshake_timeout_ms == 0)
    srv->opts.handshake_timeout_ms = PRPC__HANDSHAKE_TIMEOUT_MS;
  if (srv->opts.max_concurrent_streams == 0)
    srv->opts.max_concurrent_streams = PRPC__MAX_CONCURRENT_STREAMS;
  if (srv->opts.max_stream_threads == 0)
    srv->opts.max_stream_threads = PRPC__MAX_STREAM_THREADS;
  if (pipe2(srv->stop, O_CLOEXEC | O_NONBLOCK) != 0) {
    int err = -errno;
    free(srv);
    return prpc__fail(err, "pipe2: %s", strerror(-err));
  }
  cargs.num_args = prpc__core_size_args(args, srv->opts.max_send_bytes,
                                        srv->opts.max_recv_bytes, NULL, -1,
                                        NULL);
  cargs.num_args +=
      prpc__core_idle_args(args + cargs.num_args, srv->opts.idle_timeout_ms);
  cargs.num_args += prpc__core_streams_arg(args + cargs.num_args,
                                           srv->opts.max_concurrent_streams);
  cargs.args = args;
  prpc__core_ref();
  srv->core = prpc__core_server_create(&cargs);
  if (!srv->core) {
    prpc__core_unref();
    close(srv->stop[0]);
    close(srv->stop[1]);
    free(srv);
    return prpc__fail(PRPC_ECORE, "gRPC core could not create a server");
  }
  pthread_mutex_init(&srv->mu, NULL);
  pthread_cond_init(&srv->cv, NULL);
  srv->state = SRV_CREATED;
  *out = srv;
  return 0;
}

/* Appends a listener for t; NULL when out of memory. */
static listener *listener_push(prpc_server *srv, const prpc__target *t) {
  listener *l = realloc(srv->listeners, (srv->n_listeners + 1) * sizeof(*l));
  if (!l)
    return NULL;
  srv->listeners = l;
  l = &srv->listeners[srv->n_listeners];
  memset(l, 0, sizeof(*l));
  l->t = *t;
  l->file = (prpc__sockfile)PRPC__SOCKFILE_INIT;
  snprintf(l->name, sizeof(l->name), "%s", t->core);
  return l;
}

/* The kind and name of a listening socket passed as fd:N, from its own
 * address: a unix path, an abstract name, or TCP. */
static void name_adopted(int fd, listener *l) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  memset(&ss, 0, sizeof(ss));
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
    return; /* stays FD, "fd:N" */
  if (ss.ss_family == AF_UNIX) {
    const struct sockaddr_un *un = (const struct sockaddr_un *)&ss;
    size_t n = len > offsetof(struct sockaddr_un, sun_path)
                   ? len - offsetof(struct sockaddr_un, sun_path)
                   : 0;
    if (n > 1 && un->sun_path[0] == '\0') {
      l->t.kind = PRPC__TARGET_ABSTRACT;
      snprintf(l->name, sizeof(l->name), "unix-abstract:%.*s", (int)(n - 1),
               un->sun_path + 1);
    } else if (n > 0 && un->sun_path[0]) {
      l->t.kind = PRPC__TARGET_UNIX;
      snprintf(l->name, sizeof(l->name), "unix:%.*s", (int)n, un->sun_path);
    } else {
      l->t.kind = PRPC__TARGET_UNIX;
    }
  } else if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
    l->t.kind = PRPC__TARGET_TCP;
  }
}

int prpc_server_add_listener(prpc_server *srv, const char *target,
                             int *port) {
  prpc__target t;
  listener *l;
  int rc;
  if (!srv)
    return prpc__fail(-EINVAL, "prpc_server_add_listener: server is NULL");
  if (srv->state != SRV_CREATED)
    return prpc__fail(PRPC_ESTATE, "listeners must be added before start");
  rc = prpc__target_parse(target, 1, &t);
  if (rc != 0)
    return rc;
  if (!(l = listener_push(srv, &t)))
    return prpc__fail(-ENOMEM, "out of memory");
  switch (t.kind) {
  case PRPC__TARGET_UNIX:
  case PRPC__TARGET_ABSTRACT:
    rc = prpc__unix_listen(&t, srv->opts.socket_mode, srv->socket_gid,
                           &l->file, &l->fds[0]);
    if (rc != 0)
      return rc;
    l->n_fds = 1;
    if (t.kind == PRPC__TARGET_ABSTRACT)
      srv->guarded = 1;
    break;
  case PRPC__TARGET_TCP: {
    int bound = 0;
    rc = prpc__tcp_listen(&t, l->fds, sizeof(l->fds) / sizeof(l->fds[0]),
                          &l->n_fds, &bound);
    if (rc != 0)
      return rc;
    l->t.port = bound;
    snprintf(l->name, sizeof(l->name),
             strchr(t.host, ':') ? "[%s]:%d" : "%s:%d", t.host, bound);
    if (port)
      *port = bound;
    break;
  }
  case PRPC__TARGET_FD: {
    int listening = 0;
    socklen_t len = sizeof(listening);
    if (getsockopt(t.fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0)
      return prpc__fail(-errno, "fd:%d is not a socket: %s", t.fd,
                        strerror(errno));
    fcntl(t.fd, F_SETFD, FD_CLOEXEC);
    fcntl(t.fd, F_SETFL, fcntl(t.fd, F_GETFL) | O_NONBLOCK);
    if (listening) {
      name_adopted(t.fd, l);
      if (l->t.kind == PRPC__TARGET_ABSTRACT)
        srv->guarded = 1;
      l->fds[0] = t.fd;
      l->n_fds = 1;
    } else {
      int *a = realloc(srv->adopted_fds, (srv->n_adopted + 1) * sizeof(*a));
      if (!a)
        return prpc__fail(-ENOMEM, "out of memory");
      srv->adopted_fds = a;
      a[srv->n_adopted++] = t.fd;
    }
    break;
  }
  }
  srv->n_listeners++;
  return 0;
}

int prpc_server_add_tls_listener(prpc_server *srv, const char *target,
                                 const prpc_tls_opts *tls, int *port) {
  prpc__target t;
  int rc;
  if (!srv || !tls)
    return prpc__fail(-EINVAL, "prpc_server_add_tls_listener: NULL argument");
  if (srv->state != SRV_CREATED)
    return prpc__fail(PRPC_ESTATE, "listeners must be added before start");
  if ((rc = prpc__target_parse(target, 1, &t)) != 0)
    return rc;
  if (t.kind != PRPC__TARGET_TCP)
    return prpc__fail(-EINVAL, "TLS is for TCP targets; %s is local", target);
  rc = prpc__core_server_add_tls(srv->core, t.core, tls);
  if (rc < 0)
    return rc;
  if (!listener_push(srv, &t))
    return prpc__fail(-ENOMEM, "out of memory");
  srv->n_listeners++;
  if (port)
    *port = rc;
  return 0;
}

int prpc_server_add_systemd_listeners(prpc_server *srv, int *count) {
  const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
  char *end;
  long n;
  if (count)
    *count = 0;
  if (!srv)
    return prpc__fail(-EINVAL, "prpc_server_add_systemd_listeners: NULL");
  if (!pid || !fds || strtol(pid, &end, 10) != (long)getpid() || *end)
    return prpc__fail(-ENOENT, "no sockets were passed to this process "
                               "(LISTEN_PID/LISTEN_FDS)");
  n = strtol(fds, &end, 10);
  if (*end || n <= 0 || n > 1024)
    return prpc__fail(-ENOENT, "LISTEN_FDS is not a count: '%s'", fds);
  for (long i = 0; i < n; i++) {
    int fd = 3 + (int)i, listening = 0, rc;
    socklen_t len = sizeof(listening);
    char target[32];
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 ||
        !listening)
      return prpc__fail(-ENOTSOCK, "systemd passed fd %d, which is not a "
                                   "listening socket",
                        fd);
    snprintf(target, sizeof(target), "fd:%d", fd);
    if ((rc = prpc_server_add_listener(srv, target, NULL)) != 0)
      return rc;
    if (count)
      (*count)++;
  }
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  return 0;
}

int prpc_server_add_rule(prpc_server *srv, int allow, const char *who) {
  prpc__rule r;
  prpc__rule *rules;
  int rc;
  if (!srv)
    return prpc__fail(-EINVAL, "prpc_server_add_rule: server is NULL");
  if (srv->state != SRV_CREATED)
    return prpc__fail(PRPC_ESTATE, "access rules must be added before start");
  if ((rc = prpc__rule_parse(allow, who, &r)) != 0)
    return rc;
  rules = realloc(srv->rules, (srv->n_rules + 1) * sizeof(*rules));
  if (!rules)
    return prpc__fail(-ENOMEM, "out of memory");
  rules[srv->n_rules++] = r;
  srv->rules = rules;
  return 0;
}

int prpc_server_enable_health(prpc_server *srv) {
  if (!srv)
    return prpc__fail(-EINVAL, "prpc_server_enable_health: server is NULL");
  if (srv->state != SRV_CREATED)
    return prpc__fail(PRPC_ESTATE, "health must be enabled before start");
  if (srv->health)
    return prpc__fail(PRPC_EEXIST, "health is already enabled");
  return prpc__health_create(srv, &srv->health);
}

int prpc_server_enable_reflection(prpc_server *srv) {
  if (!srv)
    return prpc__fail(-EINVAL, "prpc_server_enable_reflection: server is NULL");
  if (srv->state != SRV_CREATED)
    return prpc__fail(PRPC_ESTATE, "reflection must be enabled before start");
  if (srv->reflection)
    return prpc__fail(PRPC_EEXIST, "reflection is already enabled");
  return prpc__reflection_create(srv, &srv->reflection);
}

int prpc_server_set_serving(prpc_server *srv, const char *service,
                            int serving) {
  if (!srv || !srv->health)
    return prpc__fail(PRPC_ESTATE, "the health service is not enabled");
  return prpc__health_set(srv->health, service ? service : "", serving);
}

int prpc_server_register(prpc_server *srv, const prpc_service_desc *svc,
                         const prpc_invoke_fn *invokers, const void *impl,
                         void *user_data) {
  return prpc_server_register_ex(srv, svc, invokers, NULL, impl, user_data);
}

/* Is m a method table entry the runtime can serve? */
static int method_ok(const prpc_method_desc *m) {
  return m->path && m->path[0] == '/' && strchr(m->path + 1, '/') &&
         (unsigned)m->kind <= PRPC_BIDI_STREAMING && m->codec &&
         m->codec->encoded_size && m->codec->encode &&
         m->codec->struct_size && m->codec->init &&
         (m->codec->decode || m->codec->decode_into);
}

int prpc_server_register_ex(prpc_server *srv, const prpc_service_desc *svc,
                            const prpc_invoke_fn *invokers,
                            const prpc_prepare_fn *preparers,
                            const void *impl, void *user_data) {
  char *name;
  if (!srv || !svc || !svc->name || (!svc->methods && svc->n_methods) ||
      (!invokers && svc->n_methods))
    return prpc__fail(-EINVAL, "prpc_server_register: NULL argument");
  if (srv->state != SRV_CREATED)
    return prpc__fail(PRPC_ESTATE, "services must be registered before start");
  /* Everything is checked and allocated before anything is recorded, so
   * that a refused service leaves the server as it was. The methods reach
   * gRPC core at start. */
  for (size_t i = 0; i < svc->n_methods; i++) {
    const prpc_method_desc *m = &svc->methods[i];
    if (!method_ok(m))
      return prpc__fail(-EINVAL, "%s: method %zu of %s has no path of the "
                                 "form /package.Service/Method, or a bad "
                                 "kind or codec",
                        svc->name, i, svc->name);
    for (size_t j = 0; j < srv->n_methods; j++)
      if (strcmp(srv->methods[j].m->path, m->path) == 0)
        return prpc__fail(PRPC_EEXIST, "%s is already registered", m->path);
    for (size_t j = 0; j < i; j++)
      if (strcmp(svc->methods[j].path, m->path) == 0)
        return prpc__fail(PRPC_EEXIST, "%s appears twice in %s", m->path,
                          svc->name);
  }
  if (srv->n_methods + svc->n_methods > srv->cap_methods) {
    size_t cap = srv->cap_methods ? srv->cap_methods : 8;
    while (cap < srv->n_methods + svc->n_methods)
      cap *= 2;
    method_entry *me = realloc(srv->methods, cap * sizeof(*me));
    if (!me)
      return prpc__fail(-ENOMEM, "out of memory");
    srv->methods = me;
    srv->cap_methods = cap;
  }
  const prpc_service_desc **descs = realloc(
      srv->service_descs, (srv->n_service_names + 1) * sizeof(*descs));
  if (!descs)
    return prpc__fail(-ENOMEM, "out of memory");
  srv->service_descs = descs;
  char **names = realloc(srv->service_names,
                         (srv->n_service_names + 1) * sizeof(*names));
  if (!names)
    return prpc__fail(-ENOMEM, "out of memory");
  srv->service_names = names;
  if (!(name = strdup(svc->name)))
    return prpc__fail(-ENOMEM, "out of memory");
  /* Nothing fails from here on. */
  names[srv->n_service_names] = name;
  descs[srv->n_service_names] = svc;
  srv->n_service_names++;
  for (size_t i = 0; i < svc->n_methods; i++) {
    method_entry *me = &srv->methods[srv->n_methods++];
    me->m = &svc->methods[i];
    me->invoke = invokers[i];
    me->prepare = preparers ? preparers[i] : NULL;
    me->impl = impl;
    me->user_data = user_data;
    me->core_handle = NULL;
  }
  return 0;
}

/* The acceptor's hand-offs, on its thread. */
static void hand_to_core(void *data, prpc__conn *c) {
  prpc_server *srv = data;
  prpc__core_server_add_fd(srv->core, c->fd);
}

static void hand_to_deny(void *data, prpc__conn *c) {
  prpc_server *srv = data;
  if (srv->deny_core)
    prpc__core_server_add_fd(srv->deny_core, c->fd);
  else
    close(c->fd); /* no deny server: cannot answer, so just close */
}

static void all_hung_up(void *data) { prpc_server_shutdown(data); }

/* Gives the listening sockets and adopted connections to a new acceptor. */
static int acceptor_setup(prpc_server *srv) {
  prpc__accept_opts o;
  memset(&o, 0, sizeof(o));
  o.max_connections = srv->opts.max_connections;
  o.max_connections_per_uid = srv->opts.max_connections_per_uid;
  o.handshake_timeout_ms = srv->opts.handshake_timeout_ms;
  o.idle_timeout_ms = srv->opts.idle_timeout_ms;
  o.rules = srv->rules;
  o.n_rules = srv->n_rules;
  o.grpc = hand_to_core;
  o.deny = hand_to_deny;
  o.hangup = all_hung_up;
  o.data = srv;
  int rc = prpc__acceptor_create(&o, &srv->acceptor);
  if (rc != 0)
    return rc;
  for (size_t i = 0; i < srv->n_listeners; i++) {
    listener *l = &srv->listeners[i];
    for (size_t k = 0; k < l->n_fds; k++) {
      if ((rc = prpc__acceptor_add_listener(srv->acceptor, l->fds[k],
                                            (int)l->t.kind, l->name)) != 0)
        return rc;
      l->fds[k] = -1; /* the acceptor's now */
    }
  }
  for (size_t i = 0; i < srv->n_adopted; i++) {
    if ((rc = prpc__acceptor_adopt(srv->acceptor, srv->adopted_fds[i],
                                   srv->opts.shutdown_on_hangup)) != 0)
      return rc;
    srv->adopted_fds[i] = -1;
  }
  srv->n_adopted = 0;
  return 0;
}

int prpc_server_start(prpc_server *srv) {
  int rc;
  if (!srv)
    return prpc__fail(-EINVAL, "prpc_server_start: server is NULL");
  if (srv->state != SRV_CREATED)
    return prpc__fail(PRPC_ESTATE, "the server was already started");
  if (srv->n_listeners == 0)
    return prpc__fail(PRPC_ESTATE, "the server has no listener");
  for (size_t i = 0; i < srv->n_methods; i++) {
    method_entry *me = &srv->methods[i];
    int payload = me->m->kind == PRPC_UNARY ||
                  me->m->kind == PRPC_SERVER_STREAMING;
    if (me->core_handle)
      continue; /* a start that failed later registered it already */
    me->core_handle = grpc_server_register_method(
        srv->core, me->m->path, NULL,
        payload ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER
                : GRPC_SRM_PAYLOAD_NONE,
        0);
    if (!me->core_handle)
      return prpc__fail(PRPC_ECORE, "gRPC core refused to register %s",
                        me->m->path);
  }
  srv->guarded |= srv->n_rules > 0;
  if (!srv->workers) {
    if (!(srv->workers = calloc((size_t)srv->opts.threads,
                                sizeof(*srv->workers))))
      return prpc__fail(-ENOMEM, "out of memory");
    for (int i = 0; i < srv->opts.threads; i++)
      pthread_mutex_init(&srv->workers[i].poll_mu, NULL);
  }
  if (!srv->acceptor && (rc = acceptor_setup(srv)) != 0)
    return rc;
  /* Denied peers get an answer from a server of their own; with access
   * control in force and no such server, nothing would keep them out. */
  if (srv->guarded && deny_start(srv) != 0)
    return prpc__fail(PRPC_ECORE, "cannot start the server that answers "
                                  "denied peers");
  srv->cq = grpc_completion_queue_create_for_next(NULL);
  grpc_server_register_completion_queue(srv->core, srv->cq, NULL);
  for (int i = 0; i < srv->opts.threads; i++) {
    srv->workers[i].srv = srv;
    srv->workers[i].cq = srv->cq;
  }
  srv->shutdown_cq = grpc_completion_queue_create_for_pluck(NULL);
  if (srv->health)
    prpc__health_known(srv->health, (const char *const *)srv->service_names,
                       srv->n_service_names);
  if (srv->reflection &&
      prpc__reflection_build(srv->reflection, srv->service_descs,
                             (const char *const *)srv->service_names,
                             srv->n_service_names) != 0)
    prpc__log(PRPC__LOG_ERROR, "reflection: cannot index the services' "
                               "descriptors: %s", prpc_last_error());
  grpc_server_start(srv->core);
  srv->state = SRV_STARTED;

  for (int i = 0; i < srv->opts.threads; i++) {
    worker *w = &srv->workers[i];
    for (size_t m = 0; m < srv->n_methods; m++)
      for (int k = 0; k < REQUESTS_PER_METHOD; k++)
        request_call(w, &srv->methods[m]);
    request_call(w, NULL);
  }
  /* Workers before the acceptor: a hang-up it sees may shut the server
   * down, which must find the workers in place. Calls that arrive
   * meanwhile wait in gRPC core's queue. */
  for (int i = 0; i < srv->opts.threads; i++) {
    if (pthread_create(&srv->workers[i].thread, NULL, worker_main,
                       &srv->workers[i]) != 0) {
      /* Threads already running drain through the normal shutdown. */
      srv->n_workers = i;
      rc = prpc__fail(-EAGAIN, "cannot start worker thread %d", i);
      goto undo;
    }
    srv->n_workers = i + 1;
  }
  if ((rc = prpc__acceptor_start(srv->acceptor)) != 0)
    goto undo;
  return 0;

undo:
  /* Started far enough that only a shutdown can take it back; the server
   * is then stopped (prpc_server_destroy() frees it), and the error that
   * stopped it is the one prpc_last_error() tells. */
  {
    char why[256];
    snprintf(why, sizeof(why), "%s", prpc_last_error());
    prpc_server_shutdown(srv);
    prpc_server_wait(srv);
    prpc__fail(rc, "%s", why);
  }
  return rc;
}

/* Closes listening sockets the acceptor never took and removes the socket
 * files this server made. */
static void close_listeners(prpc_server *srv) {
  for (size_t i = 0; i < srv->n_listeners; i++) {
    listener *l = &srv->listeners[i];
    for (size_t k = 0; k < l->n_fds; k++)
      if (l->fds[k] >= 0) {
        close(l->fds[k]);
        l->fds[k] = -1;
      }
    prpc__sockfile_remove(&l->file);
  }
}

void prpc_server_shutdown(prpc_server *srv) {
  if (!srv)
    return;
  pthread_mutex_lock(&srv->mu);
  if (srv->state != SRV_STARTED) {
    pthread_mutex_unlock(&srv->mu);
    return;
  }
  srv->state = SRV_STOPPING;
  atomic_store(&srv->stopping, 1);
  srv->stop_deadline =
      gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                   gpr_time_from_millis(srv->opts.grace_ms, GPR_TIMESPAN));
  pthread_mutex_unlock(&srv->mu);

  if (srv->health)
    prpc__health_all_down(srv->health);
  /* No new connections: stop accepting and close the listening sockets, so
   * that a client is refused at once instead of waiting in the backlog.
   * The accept thread itself may be the caller (shutdown_on_hangup): then
   * prpc_server_wait() finishes the stop. */
  prpc__acceptor_stop(srv->acceptor);
  close_listeners(srv);
  /* No new calls on existing connections (GOAWAY); in-flight calls go on. */
  grpc_server_shutdown_and_notify(srv->core, srv->shutdown_cq,
                                  &srv->shutdown_tag);
  prpc__log(PRPC__LOG_INFO, "shutting down: draining calls for up to %d ms",
            srv->opts.grace_ms);
  if (write(srv->stop[1], "x", 1) < 0 && errno != EAGAIN)
    prpc__log(PRPC__LOG_ERROR, "cannot wake prpc_server_run()");
  /* prpc_server_wait() goes on from here: the accept thread is joined (or
   * left to it) and gRPC core is shutting down. */
  pthread_mutex_lock(&srv->mu);
  srv->drain_started = 1;
  pthread_cond_broadcast(&srv->cv);
  pthread_mutex_unlock(&srv->mu);
}

int prpc_server_wait(prpc_server *srv) {
  grpc_event ev;
  if (!srv)
    return prpc__fail(-EINVAL, "prpc_server_wait: server is NULL");
  pthread_mutex_lock(&srv->mu);
  if (srv->state == SRV_CREATED) {
    pthread_mutex_unlock(&srv->mu);
    return prpc__fail(PRPC_ESTATE, "the server was never started");
  }
  /* A shutdown from another thread (a handler, the accept thread) may
   * still be joining the accept thread: wait until it is done. */
  while (srv->state == SRV_STARTED ||
         (srv->state == SRV_STOPPING && !srv->drain_started))
    pthread_cond_wait(&srv->cv, &srv->mu);
  if (srv->state == SRV_STOPPED) {
    pthread_mutex_unlock(&srv->mu);
    return 0;
  }
  pthread_mutex_unlock(&srv->mu);

  prpc__acceptor_stop(srv->acceptor);
  deny_stop(srv);
  ev = grpc_completion_queue_pluck(srv->shutdown_cq, &srv->shutdown_tag,
                                   srv->stop_deadline, NULL);
  if (ev.type == GRPC_QUEUE_TIMEOUT) {
    prpc__log(PRPC__LOG_WARN,
              "calls still running after the %d ms grace period: cancelling",
              srv->opts.grace_ms);
    grpc_server_cancel_all_calls(srv->core);
    grpc_completion_queue_pluck(srv->shutdown_cq, &srv->shutdown_tag,
                                gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  }
  /* Handlers of cancelled calls return promptly (a blocked read or write
   * fails; a long unary handler sees prpc_ctx_is_cancelled()). The queue
   * must outlive the batches they start. */
  pthread_mutex_lock(&srv->mu);
  while (atomic_load(&srv->busy) > 0) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 10000000; /* and look again, in case a wake-up raced */
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&srv->cv, &srv->mu, &ts);
  }
  pthread_mutex_unlock(&srv->mu);

  grpc_completion_queue_shutdown(srv->cq);
  for (int i = 0; i < srv->n_workers; i++)
    pthread_join(srv->workers[i].thread, NULL);
  /* Queues whose thread never started still hold failed requests. */
  for (int i = srv->n_workers; i < srv->opts.threads; i++)
    worker_main(&srv->workers[i]);

  pthread_mutex_lock(&srv->mu);
  srv->state = SRV_STOPPED;
  pthread_cond_broadcast(&srv->cv);
  pthread_mutex_unlock(&srv->mu);
  return 0;
}

/* ---- prpc_server_run(): signals through a self-pipe ---- */

static int signal_pipe = -1;

static void on_signal(int sig) {
  int saved = errno;
  unsigned char b = (unsigned char)sig;
  if (signal_pipe >= 0 && write(signal_pipe, &b, 1) < 0) {
    /* nothing to do: a wake-up is already pending */
  }
  errno = saved;
}

int prpc_server_run(prpc_server *srv) {
  struct sigaction sa, old_int, old_term;
  sigset_t stop_sigs, old_mask;
  int sp[2];
  int rc;
  if (!srv)
    return prpc__fail(-EINVAL, "prpc_server_run: server is NULL");
  if (pipe2(sp, O_CLOEXEC | O_NONBLOCK) != 0)
    return prpc__fail(-errno, "pipe2: %s", strerror(errno));
  /* Handlers first: once a client is served, a signal stops the server. */
  signal_pipe = sp[1];
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  /* A program may block the signals early so that none is lost before this
   * point; they are delivered to this thread from now on. */
  sigemptyset(&stop_sigs);
  sigaddset(&stop_sigs, SIGINT);
  sigaddset(&stop_sigs, SIGTERM);
  pthread_sigmask(SIG_UNBLOCK, &stop_sigs, &old_mask);
  /* The state under the lock: the accept thread may be shutting the
   * server down already (shutdown_on_hangup). */
  pthread_mutex_lock(&srv->mu);
  int created = srv->state == SRV_CREATED;
  pthread_mutex_unlock(&srv->mu);
  rc = created ? prpc_server_start(srv) : 0;

  /* Wait for a signal, or for prpc_server_shutdown() from elsewhere. */
  while (rc == 0) {
    struct pollfd pfd[2] = {{sp[0], POLLIN, 0}, {srv->stop[0], POLLIN, 0}};
    unsigned char b;
    if (poll(pfd, 2, -1) < 0 && errno != EINTR)
      break;
    if (read(sp[0], &b, 1) == 1) {
      prpc__log(PRPC__LOG_INFO, "signal %d: shutting down", (int)b);
      prpc_server_shutdown(srv);
      break;
    }
    if (pfd[1].revents)
      break;
  }

  pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  signal_pipe = -1;
  close(sp[0]);
  close(sp[1]);
  return rc != 0 ? rc : prpc_server_wait(srv);
}

int prpc_server_get_stats(prpc_server *srv, prpc_server_stats *out) {
  if (!srv || !out)
    return prpc__fail(-EINVAL, "prpc_server_get_stats: NULL argument");
  memset(out, 0, sizeof(*out));
  out->calls_active = atomic_load(&srv->busy);
  if (srv->acceptor)
    prpc__acceptor_stats(srv->acceptor, &out->connections,
                         &out->connections_refused);
  return 0;
}

void prpc_server_destroy(prpc_server *srv) {
  if (!srv)
    return;
  if (srv->state != SRV_CREATED) {
    prpc_server_shutdown(srv);
    prpc_server_wait(srv);
  }
  prpc__acceptor_destroy(srv->acceptor);
  srv->acceptor = NULL;
  close_listeners(srv);
  for (size_t i = 0; i < srv->n_adopted; i++)
    close(srv->adopted_fds[i]);
  if (srv->state == SRV_CREATED) {
    deny_stop(srv); /* a start that failed may have begun one */
    /* Never started: gRPC core still needs a shutdown before destroy. */
    srv->shutdown_cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_server_shutdown_and_notify(srv->core, srv->shutdown_cq,
                                    &srv->shutdown_tag);
    grpc_completion_queue_pluck(srv->shutdown_cq, &srv->shutdown_tag,
                                gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  }
  grpc_server_destroy(srv->core);
  if (srv->deny_core)
    grpc_server_destroy(srv->deny_core);
  if (srv->deny_cq)
    grpc_completion_queue_destroy(srv->deny_cq);
  free(srv->rules);
  prpc__health_destroy(srv->health);
  prpc__reflection_destroy(srv->reflection);
  for (size_t i = 0; i < srv->n_service_names; i++)
    free(srv->service_names[i]);
  free(srv->service_names);
  free(srv->service_descs);
  if (srv->cq)
    grpc_completion_queue_destroy(srv->cq);
  for (int i = 0; i < srv->opts.threads && srv->workers; i++) {
    pthread_mutex_destroy(&srv->workers[i].poll_mu);
    free(srv->workers[i].deferred);
  }
  if (srv->shutdown_cq)
    prpc__cq_destroy(srv->shutdown_cq, 1);
  close(srv->stop[0]);
  close(srv->stop[1]);
  free(srv->workers);
  free(srv->methods);
  free(srv->listeners);
  free(srv->adopted_fds);
  pthread_mutex_destroy(&srv->mu);
  pthread_cond_destroy(&srv->cv);
  free(srv);
  prpc__core_unref();
}
