/* One server call, from the moment gRPC core matches it to its end: its
 * memory, the context its handler sees, its operations, and its end.
 *
 * Every operation on the call is asynchronous and completes on the
 * server's loop: the close (RECV_CLOSE_ON_SERVER, which tells a cancel at
 * once), each read, each write, and the status. A call holds a reference
 * for its owner (the handler until it returns its status, or the
 * application until prpc_ctx_finish() for a deferred call) and one per
 * operation in flight; with the last one it ends: on_done runs and the
 * context goes back to the server's free list.
 *
 * A unary call the handler answers at once is one batch: headers, reply,
 * status and the close, on the thread that polled the request. Messages an
 * asynchronous handler sends are queued and written one at a time, in
 * order; a finish waits for the queue to drain. A blocking streaming
 * handler (on a pool thread) reads and writes through the same operations
 * and waits for their completion on the call's condition variable.
 *
 * A unary call of the HTTP front end may have no gRPC call behind it
 * (local): its handler runs on the HTTP connection's thread, which then
 * waits for the status and takes it from the context (prpc__local_run, at
 * the end); its cancel is its deadline, its client's hang-up or the
 * server's end. */
#include "internal.h"

#include <grpc/support/alloc.h>

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- memory ---- */

typedef struct arena_chunk {
  struct arena_chunk *next;
  size_t size, used;
  alignas(max_align_t) unsigned char data[];
} arena_chunk;

typedef struct sendq_item {
  struct sendq_item *next;
  grpc_byte_buffer *bb;
  uint32_t flags;
  uint64_t seq;
} sendq_item;

enum {
  F_RUNNING = 1u << 0,       /* the handler has not returned */
  F_FINISHED = 1u << 1,      /* its status is decided */
  F_STATUS = 1u << 2,        /* the status batch was started */
  F_CLOSE_STARTED = 1u << 3, /* RECV_CLOSE_ON_SERVER is on its way */
  F_CLOSE_DONE = 1u << 4,    /* ... and done: cancelled tells how */
  F_READING = 1u << 5,
  F_WRITING = 1u << 6,
  F_SEND_FAILED = 1u << 7, /* a write failed: the call is over */
  F_READ_DONE = 1u << 8,   /* a blocking read's result is in read_bb */
  F_READ_BLOCKING = 1u << 9,
  F_HALF_CLOSED = 1u << 10, /* the client sent all it will */
  F_SHUTDOWN_TOLD = 1u << 11,
  F_CANCEL_TOLD = 1u << 12,
  F_LIVE = 1u << 13,          /* on the server's list of live calls */
  F_HEADERS = 1u << 14,       /* the initial metadata went out */
  F_CLOSE_IN_STATUS = 1u << 15 /* the close rides with the status */
};

struct prpc_ctx {
  prpc__op match_op, status_op, close_op, read_op, write_op;
  prpc_server *srv;
  prpc__core_srv *cs;
  const method_entry *me;
  grpc_call *call;
  const char *method;
  gpr_timespec deadline;
  grpc_metadata_array core_md;
  grpc_call_details details;
  grpc_byte_buffer *payload;  /* the request, with the match */
  grpc_byte_buffer *reply_bb; /* the encoded reply, in the status batch */
  grpc_byte_buffer *read_bb;
  grpc_slice status_details;
  grpc_metadata *send_md[2]; /* headers, trailers in core form */
  prpc__conn *conn;          /* when piperpc accepted the connection */
  char *peer;                /* arena: gRPC's name otherwise */
  void *request, *reply;     /* decoded request; the reply struct */
  void *read_msg;            /* decode_into storage for async reads */
  atomic_int request_compressed;
  /* A call of the HTTP front end's with no gRPC call behind it
   * (prpc__local_run): its status is handed to the waiting front end, and
   * a cancel is the deadline, the client's hang-up (local_fd) or the
   * server's end (local_ended). */
  int local;
  int local_fd;
  int local_ended;

  pthread_mutex_t mu;
  pthread_cond_t cv; /* blocking reads and writes wait here */
  int refs;
  unsigned flags;
  int cancelled; /* gRPC's flag of the close */
  grpc_status_code finish_code;
  prpc_metadata md, headers, trailers;
  int md_converted;
  char *message;
  const prpc_ctx_callbacks *cb;
  void *cb_user;
  sendq_item *sq_head, *sq_tail, *writing;
  size_t sq_bytes;
  uint64_t sq_seq, sq_done;

  prpc_ctx *live_prev, *live_next, *next_free;
  arena_chunk *chunks;
  size_t inline_used;
  alignas(max_align_t) unsigned char inline_buf[PRPC__INLINE_ARENA];
};

static void *arena_alloc(prpc_ctx *ctx, size_t size) {
  size_t need = (size + alignof(max_align_t) - 1) &
                ~(size_t)(alignof(max_align_t) - 1);
  arena_chunk *c;
  if (need < size)
    return NULL;
  if (PRPC__INLINE_ARENA - ctx->inline_used >= need) {
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
  if (!(c = malloc(sizeof(*c) + chunk)))
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

/* ---- contexts and their free list ---- */

static void on_status(prpc__op *op, int ok);
static void on_close(prpc__op *op, int ok);
static void on_read(prpc__op *op, int ok);
static void on_write(prpc__op *op, int ok);
static int local_cancelled(prpc_ctx *ctx);

prpc_ctx *prpc__ctx_get(prpc_server *srv) {
  prpc_ctx *ctx;
  pthread_mutex_lock(&srv->calls_mu);
  if ((ctx = srv->free_ctx) != NULL) {
    srv->free_ctx = ctx->next_free;
    srv->n_free--;
  }
  pthread_mutex_unlock(&srv->calls_mu);
  if (ctx)
    return ctx;
  if (!(ctx = calloc(1, sizeof(*ctx))))
    return NULL;
  ctx->srv = srv;
  ctx->status_op.fn = on_status;
  ctx->close_op.fn = on_close;
  ctx->read_op.fn = on_read;
  ctx->write_op.fn = on_write;
  ctx->status_details = grpc_empty_slice();
  grpc_metadata_array_init(&ctx->core_md);
  grpc_call_details_init(&ctx->details);
  pthread_mutex_init(&ctx->mu, NULL);
  pthread_cond_init(&ctx->cv, NULL);
  return ctx;
}

void prpc__ctx_set_slot(prpc_ctx *ctx, prpc__ctx_slot *out) {
  out->call = &ctx->call;
  out->deadline = &ctx->deadline;
  out->md = &ctx->core_md;
  out->payload = &ctx->payload;
  out->details = &ctx->details;
  out->match_op = &ctx->match_op;
  ctx->cs = out->cs;
  ctx->me = out->me;
}

void prpc__ctx_slot_get(const prpc_ctx *ctx, prpc__ctx_slot *out) {
  out->srv = ctx->srv;
  out->cs = ctx->cs;
  out->me = ctx->me;
}

/* Clears what one call left, for the next. */
static void ctx_clear(prpc_ctx *ctx) {
  grpc_metadata_array_destroy(&ctx->core_md);
  grpc_metadata_array_init(&ctx->core_md);
  grpc_call_details_destroy(&ctx->details);
  grpc_call_details_init(&ctx->details);
  prpc_metadata_clear(&ctx->md);
  prpc_metadata_clear(&ctx->headers);
  prpc_metadata_clear(&ctx->trailers);
  free(ctx->message);
  ctx->message = NULL;
  ctx->md_converted = 0;
  ctx->peer = NULL;
  prpc__conn_unref(ctx->conn);
  ctx->conn = NULL;
  if (ctx->call) {
    grpc_call_unref(ctx->call);
    ctx->call = NULL;
  }
  if (ctx->payload) {
    grpc_byte_buffer_destroy(ctx->payload);
    ctx->payload = NULL;
  }
  if (ctx->reply_bb) {
    grpc_byte_buffer_destroy(ctx->reply_bb);
    ctx->reply_bb = NULL;
  }
  if (ctx->read_bb) {
    grpc_byte_buffer_destroy(ctx->read_bb);
    ctx->read_bb = NULL;
  }
  while (ctx->sq_head) {
    sendq_item *it = ctx->sq_head;
    ctx->sq_head = it->next;
    grpc_byte_buffer_destroy(it->bb);
    free(it);
  }
  if (ctx->writing) {
    grpc_byte_buffer_destroy(ctx->writing->bb);
    free(ctx->writing);
    ctx->writing = NULL;
  }
  ctx->sq_tail = NULL;
  ctx->sq_bytes = 0;
  ctx->sq_seq = ctx->sq_done = 0;
  free(ctx->send_md[0]);
  free(ctx->send_md[1]);
  ctx->send_md[0] = ctx->send_md[1] = NULL;
  grpc_slice_unref(ctx->status_details);
  ctx->status_details = grpc_empty_slice();
  ctx->request = ctx->reply = ctx->read_msg = NULL;
  atomic_store(&ctx->request_compressed, 0);
  ctx->refs = 0;
  ctx->flags = 0;
  ctx->cancelled = 0;
  ctx->cb = NULL;
  ctx->cb_user = NULL;
  ctx->method = NULL;
  ctx->local = ctx->local_ended = 0;
  ctx->local_fd = -1;
  arena_reset(ctx, PRPC__ARENA_KEEP);
}

void prpc__ctx_put(prpc_ctx *ctx) {
  prpc_server *srv = ctx->srv;
  ctx_clear(ctx);
  pthread_mutex_lock(&srv->calls_mu);
  ctx->next_free = srv->free_ctx;
  srv->free_ctx = ctx;
  srv->n_free++;
  pthread_cond_broadcast(&srv->calls_cv); /* the drain may wait */
  pthread_mutex_unlock(&srv->calls_mu);
}

void prpc__calls_free(prpc_server *srv) {
  pthread_mutex_lock(&srv->calls_mu);
  while (srv->free_ctx) {
    prpc_ctx *ctx = srv->free_ctx;
    srv->free_ctx = ctx->next_free;
    ctx_clear(ctx);
    arena_reset(ctx, 0);
    grpc_metadata_array_destroy(&ctx->core_md);
    grpc_call_details_destroy(&ctx->details);
    pthread_mutex_destroy(&ctx->mu);
    pthread_cond_destroy(&ctx->cv);
    free(ctx);
  }
  srv->n_free = 0;
  pthread_mutex_unlock(&srv->calls_mu);
}

/* ---- the end of a call ---- */

/* calls_mu held. */
static void live_add_locked(prpc_ctx *ctx) {
  prpc_server *srv = ctx->srv;
  ctx->live_prev = NULL;
  ctx->live_next = srv->live;
  if (srv->live)
    srv->live->live_prev = ctx;
  srv->live = ctx;
  srv->n_live++;
  ctx->flags |= F_LIVE;
}

static void live_add(prpc_ctx *ctx) {
  pthread_mutex_lock(&ctx->srv->calls_mu);
  live_add_locked(ctx);
  pthread_mutex_unlock(&ctx->srv->calls_mu);
}

static void live_remove(prpc_ctx *ctx) {
  prpc_server *srv = ctx->srv;
  pthread_mutex_lock(&srv->calls_mu);
  if (ctx->live_prev)
    ctx->live_prev->live_next = ctx->live_next;
  else
    srv->live = ctx->live_next;
  if (ctx->live_next)
    ctx->live_next->live_prev = ctx->live_prev;
  srv->n_live--;
  if (ctx->local)
    srv->n_local--;
  pthread_mutex_unlock(&srv->calls_mu);
}

/* The last reference went: tell the application, then recycle. */
static void finalize(prpc_ctx *ctx) {
  if (ctx->cb && ctx->cb->on_done)
    ctx->cb->on_done(ctx, ctx->cancelled || (ctx->flags & F_SEND_FAILED),
                     ctx->cb_user);
  if (ctx->me && ctx->request && ctx->me->m->codec->decode_into &&
      ctx->me->m->codec->release)
    ctx->me->m->codec->release(ctx->me->m->input, ctx->request);
  if (ctx->flags & F_LIVE)
    live_remove(ctx);
  prpc__ctx_put(ctx);
}

/* Drops one reference (mu not held). */
static void drop(prpc_ctx *ctx) {
  int last;
  pthread_mutex_lock(&ctx->mu);
  last = --ctx->refs == 0;
  pthread_mutex_unlock(&ctx->mu);
  if (last)
    finalize(ctx);
}

/* ---- the status ---- */

static int headers_op(prpc_ctx *ctx, grpc_op *op) {
  size_t n = 0;
  memset(op, 0, sizeof(*op));
  op->op = GRPC_OP_SEND_INITIAL_METADATA;
  free(ctx->send_md[0]);
  ctx->send_md[0] = NULL;
  if (prpc__md_to_core(&ctx->headers, NULL, NULL, &ctx->send_md[0], &n) != 0)
    return -1;
  op->data.send_initial_metadata.metadata = ctx->send_md[0];
  op->data.send_initial_metadata.count = n;
  ctx->flags |= F_HEADERS;
  return 0;
}

/* Starts the status batch: the headers if they have not gone, the reply
 * (OK only), the status with the trailers, and the close when it was not
 * started on its own. mu held. */
static void start_status_locked(prpc_ctx *ctx) {
  grpc_op ops[4];
  size_t n = 0, n_md = 0;
  grpc_status_code code = ctx->finish_code;
  /* A handler that gives up because its time ran out reports the
   * deadline, as the client's own timer would. */
  if (code == GRPC_STATUS_CANCELLED && prpc__ms_until(ctx->deadline) == 0)
    code = GRPC_STATUS_DEADLINE_EXCEEDED;
  if (prpc__log_enabled(PRPC_LOG_DEBUG))
    prpc__log_call(PRPC_LOG_DEBUG, ctx->method,
                   ctx->conn ? ctx->conn->peer : "", "%s%s%s",
                   prpc_status_name(code), ctx->message ? ": " : "",
                   ctx->message ? ctx->message : "");
  if (ctx->local) {
    /* The front end waits for it (prpc__local_run); a status decided
     * after the deadline does not reach the client, as over gRPC. */
    if (prpc__ms_until(ctx->deadline) == 0)
      ctx->cancelled = 1;
    ctx->finish_code = code;
    ctx->flags |= F_STATUS | F_HEADERS | F_CLOSE_STARTED;
    pthread_cond_broadcast(&ctx->cv);
    return;
  }
  if (!(ctx->flags & F_HEADERS) && headers_op(ctx, &ops[n]) == 0)
    n++;
  if (code == GRPC_STATUS_OK && ctx->reply_bb) {
    memset(&ops[n], 0, sizeof(ops[n]));
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n].data.send_message.send_message = ctx->reply_bb;
    n++;
  }
  memset(&ops[n], 0, sizeof(ops[n]));
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  if (prpc__md_to_core(&ctx->trailers, NULL, NULL, &ctx->send_md[1],
                       &n_md) != 0)
    n_md = 0;
  ops[n].data.send_status_from_server.trailing_metadata = ctx->send_md[1];
  ops[n].data.send_status_from_server.trailing_metadata_count = n_md;
  ops[n].data.send_status_from_server.status = code;
  if (ctx->message && code != GRPC_STATUS_OK) {
    ctx->status_details = grpc_slice_from_copied_string(ctx->message);
    ops[n].data.send_status_from_server.status_details =
        &ctx->status_details;
  }
  n++;
  if (!(ctx->flags & F_CLOSE_STARTED)) {
    memset(&ops[n], 0, sizeof(ops[n]));
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n].data.recv_close_on_server.cancelled = &ctx->cancelled;
    n++;
    ctx->flags |= F_CLOSE_STARTED | F_CLOSE_IN_STATUS;
  }
  ctx->flags |= F_STATUS;
  ctx->refs++;
  if (prpc__start_batch(ctx->call, ops, n, &ctx->status_op) != GRPC_CALL_OK) {
    prpc__log_call(PRPC__LOG_ERROR, ctx->method, "",
                   "gRPC core refused the status batch");
    ctx->refs--;
    if (ctx->flags & F_CLOSE_IN_STATUS)
      ctx->flags |= F_CLOSE_DONE;
  }
}

static void on_status(prpc__op *op, int ok) {
  prpc_ctx *ctx = (prpc_ctx *)((char *)op - offsetof(prpc_ctx, status_op));
  PRPC__UNUSED(ok);
  pthread_mutex_lock(&ctx->mu);
  if (ctx->flags & F_CLOSE_IN_STATUS)
    ctx->flags |= F_CLOSE_DONE;
  pthread_cond_broadcast(&ctx->cv);
  pthread_mutex_unlock(&ctx->mu);
  drop(ctx);
}

/* Decides the call's status (the owner's last act). Returns 0, or
 * PRPC_ESTATE when it was decided already. */
static int finish(prpc_ctx *ctx, grpc_status_code code) {
  grpc_byte_buffer *bb = NULL;
  int last;
  const prpc_method_desc *m = ctx->me ? ctx->me->m : NULL;
  if ((int)code < 0 || (int)code > 16) {
    prpc__log_call(PRPC__LOG_ERROR, ctx->method, "",
                   "the handler returned status %d", (int)code);
    code = GRPC_STATUS_UNKNOWN;
    prpc_ctx_set_message(ctx, "the handler returned an invalid status");
  }
  /* The reply belongs to the owner until now: encode it on this thread. */
  if (code == GRPC_STATUS_OK && ctx->reply &&
      !(bb = prpc__encode(m->codec, m->output, ctx->reply))) {
    code = GRPC_STATUS_INTERNAL;
    prpc_ctx_set_message(ctx, "the reply message does not encode");
  }
  pthread_mutex_lock(&ctx->mu);
  if (ctx->flags & F_FINISHED) {
    pthread_mutex_unlock(&ctx->mu);
    if (bb)
      grpc_byte_buffer_destroy(bb);
    return prpc__fail(PRPC_ESTATE, "the call has been finished already");
  }
  ctx->flags = (ctx->flags | F_FINISHED) & ~F_RUNNING;
  ctx->finish_code = code;
  ctx->reply_bb = bb;
  /* The owner's reference goes before the status batch takes its own, so
   * that the end (on_done) comes from that batch, on the server's loop,
   * never from inside this call: the caller may hold a lock on_done
   * takes. */
  ctx->refs--;
  if (!(ctx->flags & F_WRITING) && !ctx->sq_head)
    start_status_locked(ctx);
  last = ctx->refs == 0;
  pthread_mutex_unlock(&ctx->mu);
  if (last) /* gRPC core refused the status batch: nothing else will */
    finalize(ctx);
  return 0;
}

void prpc__ctx_refuse(prpc_ctx *ctx, grpc_status_code code,
                      const char *message) {
  prpc_ctx_set_message(ctx, message);
  finish(ctx, code);
}

/* ---- the close: a cancel, told at once ---- */

static void start_close_locked(prpc_ctx *ctx) {
  grpc_op op;
  if (ctx->local) { /* the front end's waiter watches for a cancel */
    ctx->flags |= F_CLOSE_STARTED;
    return;
  }
  memset(&op, 0, sizeof(op));
  op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  op.data.recv_close_on_server.cancelled = &ctx->cancelled;
  ctx->flags |= F_CLOSE_STARTED;
  ctx->refs++;
  if (prpc__start_batch(ctx->call, &op, 1, &ctx->close_op) != GRPC_CALL_OK) {
    ctx->refs--;
    ctx->flags |= F_CLOSE_DONE; /* nothing to wait for */
  }
}

/* The close is known (F_CLOSE_DONE set; cancelled tells how): tells
 * on_cancel, and ends a cancelled call whose owner waits for on_done. */
/* A cancelled call whose owner will hear of its end (on_done) and has
 * not finished it ends now, so that none is left waiting for a finish
 * that would not come: when its close comes (closed()), when its handler
 * returns PRPC_DEFERRED, or when on_done is set after the cancel. */
static void end_if_cancelled(prpc_ctx *ctx) {
  pthread_mutex_lock(&ctx->mu);
  int end = (ctx->flags & F_CLOSE_DONE) && ctx->cancelled && ctx->cb &&
            ctx->cb->on_done && !(ctx->flags & (F_FINISHED | F_RUNNING));
  pthread_mutex_unlock(&ctx->mu);
  if (end)
    finish(ctx, GRPC_STATUS_CANCELLED);
}

static void closed(prpc_ctx *ctx) {
  const prpc_ctx_callbacks *cb;
  void *user;
  int tell;
  pthread_mutex_lock(&ctx->mu);
  cb = ctx->cb;
  user = ctx->cb_user;
  tell = ctx->cancelled && cb && cb->on_cancel &&
         !(ctx->flags & F_CANCEL_TOLD);
  if (tell)
    ctx->flags |= F_CANCEL_TOLD;
  pthread_cond_broadcast(&ctx->cv);
  pthread_mutex_unlock(&ctx->mu);
  if (tell)
    cb->on_cancel(ctx, user);
  end_if_cancelled(ctx);
}

static void on_close(prpc__op *op, int ok) {
  prpc_ctx *ctx = (prpc_ctx *)((char *)op - offsetof(prpc_ctx, close_op));
  PRPC__UNUSED(ok);
  pthread_mutex_lock(&ctx->mu);
  ctx->flags |= F_CLOSE_DONE;
  pthread_mutex_unlock(&ctx->mu);
  closed(ctx);
  drop(ctx);
}

/* ---- writes ---- */

/* Starts writing the first queued message. mu held. */
static void start_write_locked(prpc_ctx *ctx) {
  grpc_op ops[2];
  size_t n = 0;
  sendq_item *it = ctx->sq_head;
  ctx->sq_head = it->next;
  if (!ctx->sq_head)
    ctx->sq_tail = NULL;
  ctx->sq_bytes -= grpc_byte_buffer_length(it->bb);
  ctx->writing = it;
  if (!(ctx->flags & F_HEADERS) && headers_op(ctx, &ops[n]) == 0)
    n++;
  memset(&ops[n], 0, sizeof(ops[n]));
  ops[n].op = GRPC_OP_SEND_MESSAGE;
  ops[n].flags = it->flags & GRPC_WRITE_NO_COMPRESS;
  ops[n].data.send_message.send_message = it->bb;
  n++;
  ctx->flags |= F_WRITING;
  ctx->refs++;
  if (prpc__start_batch(ctx->call, ops, n, &ctx->write_op) != GRPC_CALL_OK) {
    ctx->refs--;
    ctx->flags = (ctx->flags & ~F_WRITING) | F_SEND_FAILED;
    ctx->writing = NULL;
    grpc_byte_buffer_destroy(it->bb);
    free(it);
    pthread_cond_broadcast(&ctx->cv);
  }
}

static void on_write(prpc__op *op, int ok) {
  prpc_ctx *ctx = (prpc_ctx *)((char *)op - offsetof(prpc_ctx, write_op));
  sendq_item *done, *dropped = NULL;
  const prpc_ctx_callbacks *cb;
  void *user;
  pthread_mutex_lock(&ctx->mu);
  done = ctx->writing;
  ctx->writing = NULL;
  ctx->flags &= ~F_WRITING;
  if (ok && done) {
    ctx->sq_done = done->seq;
    if (ctx->sq_head)
      start_write_locked(ctx);
  } else {
    /* The call is over: nothing queued will go. */
    ctx->flags |= F_SEND_FAILED;
    dropped = ctx->sq_head;
    ctx->sq_head = ctx->sq_tail = NULL;
    ctx->sq_bytes = 0;
  }
  if (!(ctx->flags & (F_WRITING | F_STATUS)) && !ctx->sq_head &&
      (ctx->flags & F_FINISHED))
    start_status_locked(ctx);
  pthread_cond_broadcast(&ctx->cv);
  cb = ctx->cb;
  user = ctx->cb_user;
  pthread_mutex_unlock(&ctx->mu);
  if (done) {
    grpc_byte_buffer_destroy(done->bb);
    free(done);
  }
  while (dropped) {
    sendq_item *next = dropped->next;
    grpc_byte_buffer_destroy(dropped->bb);
    free(dropped);
    dropped = next;
  }
  if (cb && cb->on_write_done)
    cb->on_write_done(ctx, ok, user);
  drop(ctx);
}

static int writes_kind(const prpc_ctx *ctx) {
  return ctx->me && (ctx->me->m->kind == PRPC_SERVER_STREAMING ||
                     ctx->me->m->kind == PRPC_BIDI_STREAMING);
}

/* Queues msg; *seq is its place in the order. */
static int ctx_send(prpc_ctx *ctx, const void *msg, unsigned flags,
                    uint64_t *seq) {
  grpc_byte_buffer *bb;
  sendq_item *it;
  size_t len;
  if (!writes_kind(ctx))
    return prpc__fail(-EINVAL, "%s: not a server-streaming or bidi call",
                      ctx->method ? ctx->method : "prpc_ctx_send");
  if (!msg)
    return prpc__fail(-EINVAL, "%s: NULL message", ctx->method);
  if (!(bb = prpc__encode(ctx->me->m->codec, ctx->me->m->output, msg)))
    return prpc__fail(PRPC_EMSG, "failed to encode the message");
  if (!(it = malloc(sizeof(*it)))) {
    grpc_byte_buffer_destroy(bb);
    return prpc__fail(-ENOMEM, "out of memory");
  }
  len = grpc_byte_buffer_length(bb);
  it->next = NULL;
  it->bb = bb;
  it->flags = flags;
  pthread_mutex_lock(&ctx->mu);
  if ((ctx->flags & (F_FINISHED | F_SEND_FAILED)) ||
      ((ctx->flags & F_CLOSE_DONE) && ctx->cancelled)) {
    pthread_mutex_unlock(&ctx->mu);
    grpc_byte_buffer_destroy(bb);
    free(it);
    return prpc__fail(PRPC_ECLOSED, "the call has ended");
  }
  if (ctx->sq_head && ctx->sq_bytes + len > PRPC__SEND_QUEUE_MAX) {
    pthread_mutex_unlock(&ctx->mu);
    grpc_byte_buffer_destroy(bb);
    free(it);
    return prpc__fail(PRPC_EFULL, "%zu bytes are waiting to be sent to this "
                                  "client",
                      ctx->sq_bytes);
  }
  it->seq = *seq = ++ctx->sq_seq;
  if (ctx->sq_tail)
    ctx->sq_tail->next = it;
  else
    ctx->sq_head = it;
  ctx->sq_tail = it;
  ctx->sq_bytes += len;
  if (!(ctx->flags & F_WRITING))
    start_write_locked(ctx);
  pthread_mutex_unlock(&ctx->mu);
  return 0;
}

int prpc_ctx_send(prpc_ctx *ctx, const void *msg, unsigned flags) {
  uint64_t seq;
  if (!ctx)
    return prpc__fail(-EINVAL, "prpc_ctx_send: NULL call");
  return ctx_send(ctx, msg, flags, &seq);
}

/* A blocking read or write may wait on this thread: fine on a pool thread,
 * or on a loop thread when another can take over polling; else it would
 * wait for itself. Returns 0 or -EDEADLK. */
static int may_wait(prpc_ctx *ctx, const char *what) {
  prpc_loop *l = ctx->srv->loop;
  if (!prpc__loop_in_callback(l))
    return 0;
  if (ctx->srv->opts.threads == 0 && !ctx->srv->opts.loop) {
    prpc__loop_long(l);
    return 0;
  }
  return prpc__fail(-EDEADLK, "%s: a blocking %s on the thread that runs the "
                              "server's callbacks would wait for itself: use "
                              "prpc_ctx_send()/prpc_ctx_read_async(), or "
                              "register the service without "
                              "PRPC_ASYNC_HANDLERS",
                    ctx->method, what);
}

int prpc_ctx_write_ex(prpc_ctx *ctx, const void *msg, unsigned flags) {
  uint64_t seq;
  int rc;
  if ((rc = may_wait(ctx, "write")) != 0 ||
      (rc = ctx_send(ctx, msg, flags, &seq)) != 0)
    return rc;
  pthread_mutex_lock(&ctx->mu);
  while (ctx->sq_done < seq && !(ctx->flags & F_SEND_FAILED))
    pthread_cond_wait(&ctx->cv, &ctx->mu);
  rc = ctx->sq_done >= seq ? 0 : PRPC_ECLOSED;
  pthread_mutex_unlock(&ctx->mu);
  return rc ? prpc__fail(rc, "the call has ended") : 0;
}

int prpc_ctx_write(prpc_ctx *ctx, const void *msg) {
  return prpc_ctx_write_ex(ctx, msg, 0);
}

/* ---- reads ---- */

static int reads_kind(const prpc_ctx *ctx) {
  return ctx->me && (ctx->me->m->kind == PRPC_CLIENT_STREAMING ||
                     ctx->me->m->kind == PRPC_BIDI_STREAMING);
}

/* Starts a read. mu held. Returns 0 or PRPC_ECLOSED. */
static int start_read_locked(prpc_ctx *ctx, int blocking) {
  grpc_op op;
  memset(&op, 0, sizeof(op));
  op.op = GRPC_OP_RECV_MESSAGE;
  op.data.recv_message.recv_message = &ctx->read_bb;
  ctx->flags |= F_READING | (blocking ? F_READ_BLOCKING : 0);
  ctx->refs++;
  if (prpc__start_batch(ctx->call, &op, 1, &ctx->read_op) != GRPC_CALL_OK) {
    ctx->refs--;
    ctx->flags &= ~(F_READING | F_READ_BLOCKING);
    return PRPC_ECLOSED;
  }
  return 0;
}

/* Decodes a received message: into a new one in *msg (the caller frees
 * it), or into the caller's storage `into`. Returns NULL or why not. */
static const char *decode_msg(const prpc_ctx *ctx, grpc_byte_buffer *bb,
                              void **msg, void *into) {
  const prpc_method_desc *m = ctx->me->m;
  const char *why = NULL;
  if (into)
    return prpc__decode_into(m->codec, m->input, bb, into, NULL);
  *msg = prpc__decode(m->codec, m->input, bb, NULL, &why);
  return *msg ? NULL : why;
}

/* Ends the call because a message from the client did not decode. */
static void bad_message(prpc_ctx *ctx, const char *why) {
  char text[200];
  snprintf(text, sizeof(text), "a request message does not decode: %s", why);
  prpc_ctx_set_message(ctx, text);
  grpc_call_cancel_with_status(ctx->call, GRPC_STATUS_INVALID_ARGUMENT, text,
                               NULL);
  prpc__fail(PRPC_EMSG, "%s", text);
}

static void on_read(prpc__op *op, int ok) {
  prpc_ctx *ctx = (prpc_ctx *)((char *)op - offsetof(prpc_ctx, read_op));
  const prpc_ctx_callbacks *cb;
  grpc_byte_buffer *bb;
  void *user;
  pthread_mutex_lock(&ctx->mu);
  ctx->flags &= ~F_READING;
  if (!ok && ctx->read_bb) {
    grpc_byte_buffer_destroy(ctx->read_bb);
    ctx->read_bb = NULL;
  }
  if (ctx->flags & F_READ_BLOCKING) {
    /* The handler's thread waits for it and takes the message. */
    ctx->flags = (ctx->flags & ~F_READ_BLOCKING) | F_READ_DONE;
    pthread_cond_broadcast(&ctx->cv);
    pthread_mutex_unlock(&ctx->mu);
    drop(ctx);
    return;
  }
  bb = ctx->read_bb;
  ctx->read_bb = NULL;
  if (!bb)
    ctx->flags |= F_HALF_CLOSED;
  cb = ctx->cb;
  user = ctx->cb_user;
  pthread_mutex_unlock(&ctx->mu);
  if (!bb) {
    if (cb && cb->on_read)
      cb->on_read(ctx, NULL, user);
  } else {
    const prpc_codec *codec = ctx->me->m->codec;
    void *msg = NULL;
    const char *why = decode_msg(ctx, bb, &msg, ctx->read_msg);
    grpc_byte_buffer_destroy(bb);
    if (why) {
      /* The call ends here, for its owner too (who hears of it in
       * on_done): a later prpc_ctx_finish() says PRPC_ESTATE. */
      bad_message(ctx, why);
      finish(ctx, GRPC_STATUS_INVALID_ARGUMENT);
    } else {
      if (ctx->read_msg)
        msg = ctx->read_msg;
      atomic_store(&ctx->request_compressed,
                   prpc__core_last_message_compressed(ctx->call));
      if (cb && cb->on_read)
        cb->on_read(ctx, msg, user);
      if (ctx->read_msg) {
        if (codec->release)
          codec->release(ctx->me->m->input, ctx->read_msg);
        codec->init(ctx->me->m->input, ctx->read_msg);
      } else {
        codec->free(ctx->me->m->input, msg, NULL);
      }
    }
  }
  drop(ctx);
}

int prpc_ctx_read_async(prpc_ctx *ctx) {
  int rc;
  if (!ctx || !reads_kind(ctx))
    return prpc__fail(-EINVAL, "prpc_ctx_read_async: not a client-streaming "
                               "or bidi call");
  pthread_mutex_lock(&ctx->mu);
  if (ctx->flags & F_READING)
    rc = prpc__fail(-EBUSY, "a read is already on its way");
  else if (ctx->flags & F_HALF_CLOSED)
    rc = prpc__fail(PRPC_ECLOSED, "the client has sent all its messages");
  else if ((rc = start_read_locked(ctx, 0)) != 0)
    prpc__fail(rc, "the call has ended");
  pthread_mutex_unlock(&ctx->mu);
  return rc;
}

/* A blocking read: a new message in *msg, or one in the caller's storage
 * `into` (codecs with decode_into). */
static int ctx_read(prpc_ctx *ctx, void **msg, void *into) {
  const prpc_codec *codec;
  grpc_byte_buffer *bb;
  const char *why;
  int rc;
  if (msg)
    *msg = NULL;
  if (!reads_kind(ctx))
    return prpc__fail(-EINVAL, "prpc_ctx_read: not a client-streaming or "
                               "bidi call");
  codec = ctx->me->m->codec;
  if (into ? !codec->decode_into : !codec->decode)
    return prpc__fail(-EINVAL, "%s: the %s codec needs %s", ctx->method,
                      codec->name,
                      into ? "prpc_ctx_read()" : "prpc_ctx_read_into()");
  if ((rc = may_wait(ctx, "read")) != 0)
    return rc;
  pthread_mutex_lock(&ctx->mu);
  if (ctx->flags & F_HALF_CLOSED) {
    pthread_mutex_unlock(&ctx->mu);
    return 0;
  }
  if (ctx->flags & F_READING) {
    pthread_mutex_unlock(&ctx->mu);
    return prpc__fail(-EBUSY, "a read is already on its way");
  }
  if (start_read_locked(ctx, 1) != 0) {
    pthread_mutex_unlock(&ctx->mu);
    return prpc__fail(PRPC_ECLOSED, "the call has ended");
  }
  while (!(ctx->flags & F_READ_DONE))
    pthread_cond_wait(&ctx->cv, &ctx->mu);
  ctx->flags &= ~F_READ_DONE;
  bb = ctx->read_bb;
  ctx->read_bb = NULL;
  if (!bb) {
    /* gRPC core ends a read without a message both at the client's
     * half-close and when the call dies: the close, which completes with
     * the same transport event when the call dies, tells them apart (it
     * may come a thread switch later). */
    for (int i = 0; i < 4 && !(ctx->flags & F_CLOSE_DONE); i++) {
      pthread_mutex_unlock(&ctx->mu);
      sched_yield();
      pthread_mutex_lock(&ctx->mu);
    }
    int dead = (ctx->flags & F_CLOSE_DONE) && ctx->cancelled;
    if (!dead)
      ctx->flags |= F_HALF_CLOSED;
    pthread_mutex_unlock(&ctx->mu);
    return dead ? prpc__fail(PRPC_ECLOSED, "the call has ended") : 0;
  }
  pthread_mutex_unlock(&ctx->mu);
  why = decode_msg(ctx, bb, msg, into);
  grpc_byte_buffer_destroy(bb);
  if (why) {
    bad_message(ctx, why);
    return PRPC_EMSG;
  }
  atomic_store(&ctx->request_compressed,
               prpc__core_last_message_compressed(ctx->call));
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

/* ---- asynchronous handlers ---- */

grpc_status_code prpc_ctx_defer(prpc_ctx *ctx) {
  PRPC__UNUSED(ctx);
  return PRPC_DEFERRED;
}

int prpc_ctx_finish(prpc_ctx *ctx, grpc_status_code code) {
  if (!ctx)
    return prpc__fail(-EINVAL, "prpc_ctx_finish: NULL call");
  if (code == PRPC_DEFERRED)
    return prpc__fail(-EINVAL, "prpc_ctx_finish: PRPC_DEFERRED is not a "
                               "status");
  return finish(ctx, code);
}

int prpc_ctx_set_callbacks(prpc_ctx *ctx, const prpc_ctx_callbacks *cb,
                           void *user_data) {
  int tell_cancel, tell_shutdown;
  if (!ctx)
    return prpc__fail(-EINVAL, "prpc_ctx_set_callbacks: NULL call");
  pthread_mutex_lock(&ctx->mu);
  if (ctx->flags & F_FINISHED) {
    pthread_mutex_unlock(&ctx->mu);
    return prpc__fail(PRPC_ESTATE, "the call has been finished already");
  }
  ctx->cb = cb;
  ctx->cb_user = user_data;
  /* A unary call asks for its close with the status; one that is to be
   * told of a cancel (or to end by itself on one) asks for it now. */
  if (cb && (cb->on_cancel || cb->on_done) &&
      !(ctx->flags & (F_CLOSE_STARTED | F_STATUS)))
    start_close_locked(ctx);
  /* What happened before the callbacks were set is told now. */
  tell_cancel = cb && cb->on_cancel && (ctx->flags & F_CLOSE_DONE) &&
                ctx->cancelled && !(ctx->flags & F_CANCEL_TOLD);
  if (tell_cancel)
    ctx->flags |= F_CANCEL_TOLD;
  tell_shutdown = cb && cb->on_shutdown && atomic_load(&ctx->srv->stopping) &&
                  !(ctx->flags & F_SHUTDOWN_TOLD);
  if (tell_shutdown)
    ctx->flags |= F_SHUTDOWN_TOLD;
  if (tell_cancel || tell_shutdown)
    ctx->refs++; /* alive through the callbacks */
  pthread_mutex_unlock(&ctx->mu);
  if (tell_cancel)
    cb->on_cancel(ctx, user_data);
  if (tell_shutdown)
    cb->on_shutdown(ctx, user_data);
  if (tell_cancel || tell_shutdown)
    drop(ctx);
  end_if_cancelled(ctx); /* cancelled before on_done was set */
  return 0;
}

int prpc_ctx_server_stopping(const prpc_ctx *ctx) {
  return ctx && atomic_load(&ctx->srv->stopping);
}

void prpc__calls_tell_shutdown(prpc_server *srv) {
  prpc_ctx **told = NULL;
  size_t n = 0;
  pthread_mutex_lock(&srv->calls_mu);
  if (srv->n_live > 0 &&
      (told = malloc(srv->n_live * sizeof(*told))) != NULL) {
    for (prpc_ctx *ctx = srv->live; ctx; ctx = ctx->live_next) {
      pthread_mutex_lock(&ctx->mu);
      if (ctx->cb && ctx->cb->on_shutdown &&
          !(ctx->flags & F_SHUTDOWN_TOLD) && ctx->refs > 0) {
        ctx->flags |= F_SHUTDOWN_TOLD;
        ctx->refs++;
        told[n++] = ctx;
      }
      pthread_mutex_unlock(&ctx->mu);
    }
  }
  pthread_mutex_unlock(&srv->calls_mu);
  for (size_t i = 0; i < n; i++) {
    told[i]->cb->on_shutdown(told[i], told[i]->cb_user);
    drop(told[i]);
  }
  free(told);
}

void prpc__calls_end(prpc_server *srv, const char *message) {
  pthread_mutex_lock(&srv->calls_mu);
  /* A call on the list has not been recycled: its grpc_call is valid. */
  for (prpc_ctx *ctx = srv->live; ctx; ctx = ctx->live_next) {
    if (!ctx->local) {
      grpc_call_cancel_with_status(ctx->call, GRPC_STATUS_UNAVAILABLE,
                                   message, NULL);
      continue;
    }
    pthread_mutex_lock(&ctx->mu); /* its waiter ends it */
    ctx->local_ended = 1;
    pthread_cond_broadcast(&ctx->cv);
    pthread_mutex_unlock(&ctx->mu);
  }
  pthread_mutex_unlock(&srv->calls_mu);
}

/* ---- the context a handler sees ---- */

const char *prpc_ctx_method(const prpc_ctx *ctx) { return ctx->method; }

const char *prpc_ctx_peer(const prpc_ctx *cctx) {
  prpc_ctx *ctx = (prpc_ctx *)cctx;
  if (ctx->conn)
    return ctx->conn->peer;
  pthread_mutex_lock(&ctx->mu);
  if (!ctx->peer) {
    char *core_peer = grpc_call_get_peer(ctx->call);
    if (core_peer && (ctx->peer = arena_alloc(ctx, strlen(core_peer) + 1)))
      strcpy(ctx->peer, core_peer);
    gpr_free(core_peer);
  }
  pthread_mutex_unlock(&ctx->mu);
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

int prpc_ctx_is_cancelled(const prpc_ctx *cctx) {
  prpc_ctx *ctx = (prpc_ctx *)cctx;
  int done, started = 0;
  if (prpc__ms_until(ctx->deadline) == 0)
    return 1;
  if (ctx->local)
    return local_cancelled(ctx);
  pthread_mutex_lock(&ctx->mu);
  if (!(ctx->flags & F_CLOSE_STARTED) && !(ctx->flags & F_STATUS)) {
    start_close_locked(ctx); /* a unary call: the close goes on its own */
    started = 1;
  }
  done = (ctx->flags & F_CLOSE_DONE) != 0;
  pthread_mutex_unlock(&ctx->mu);
  if (!done && prpc__loop_in_callback(ctx->srv->loop)) {
    /* The handler runs on the thread that polls: have another take over,
     * or (one thread only) look for the close on this one. */
    if (started)
      prpc__loop_long(ctx->srv->loop);
    prpc__loop_poll_for(ctx->srv->loop, &ctx->close_op);
  }
  pthread_mutex_lock(&ctx->mu);
  done = (ctx->flags & F_CLOSE_DONE) && ctx->cancelled;
  pthread_mutex_unlock(&ctx->mu);
  return done;
}

const prpc_metadata *prpc_ctx_metadata(prpc_ctx *ctx) {
  pthread_mutex_lock(&ctx->mu);
  if (!ctx->md_converted) {
    prpc__md_from_core(&ctx->md, &ctx->core_md);
    ctx->md_converted = 1;
  }
  pthread_mutex_unlock(&ctx->mu);
  return &ctx->md;
}

void prpc_ctx_set_message(prpc_ctx *ctx, const char *message) {
  char *copy = message ? strdup(message) : NULL;
  pthread_mutex_lock(&ctx->mu);
  free(ctx->message);
  ctx->message = copy;
  pthread_mutex_unlock(&ctx->mu);
}

int prpc_ctx_add_header(prpc_ctx *ctx, const char *key, const void *value,
                        size_t value_len) {
  int rc;
  pthread_mutex_lock(&ctx->mu);
  rc = ctx->flags & F_HEADERS
           ? prpc__fail(PRPC_ESTATE, "the headers have been sent")
           : prpc_metadata_add(&ctx->headers, key, value, value_len);
  pthread_mutex_unlock(&ctx->mu);
  return rc;
}

int prpc_ctx_add_trailer(prpc_ctx *ctx, const char *key, const void *value,
                         size_t value_len) {
  int rc;
  pthread_mutex_lock(&ctx->mu);
  rc = ctx->flags & F_STATUS
           ? prpc__fail(PRPC_ESTATE, "the status has been sent")
           : prpc_metadata_add(&ctx->trailers, key, value, value_len);
  pthread_mutex_unlock(&ctx->mu);
  return rc;
}

int prpc_ctx_set_compression(prpc_ctx *ctx, const char *algorithm) {
  grpc_compression_algorithm alg;
  int rc;
  if (prpc__core_compression(algorithm, &alg) != 0)
    return prpc__fail(-EINVAL, "unknown compression algorithm '%s'",
                      algorithm ? algorithm : "(null)");
  pthread_mutex_lock(&ctx->mu);
  /* The same request to gRPC core as a client's: compress what this side
   * sends on the call. */
  rc = ctx->flags & F_HEADERS
           ? prpc__fail(PRPC_ESTATE, "compression must be set before the "
                                     "first response message")
           : prpc_metadata_add_str(&ctx->headers, PRPC__COMPRESSION_MD_KEY,
                                   algorithm);
  pthread_mutex_unlock(&ctx->mu);
  return rc;
}

int prpc_ctx_request_compressed(const prpc_ctx *ctx) {
  return atomic_load(&((prpc_ctx *)ctx)->request_compressed);
}

void *prpc_ctx_alloc(prpc_ctx *ctx, size_t size) {
  void *p;
  pthread_mutex_lock(&ctx->mu);
  p = arena_alloc(ctx, size);
  pthread_mutex_unlock(&ctx->mu);
  return p;
}

char *prpc_ctx_strdup(prpc_ctx *ctx, const char *s) {
  size_t n = strlen(s) + 1;
  char *p = prpc_ctx_alloc(ctx, n);
  if (p)
    memcpy(p, s, n);
  return p;
}

/* ---- serving a matched call ---- */

static grpc_status_code fail_with(prpc_ctx *ctx, grpc_status_code code,
                                  const char *msg) {
  prpc_ctx_set_message(ctx, msg);
  return code;
}

/* Decodes the request of a unary or server-streaming call into call
 * memory: with codecs that allocate, from the call's arena; with
 * decode_into (nanopb), into a struct there, after init() and the
 * method's prepare hook. Returns GRPC_STATUS_OK or the status to end the
 * call with (its message set). */
static grpc_status_code decode_request(prpc_ctx *ctx) {
  const method_entry *me = ctx->me;
  const prpc_method_desc *m = me->m;
  const prpc_codec *codec = m->codec;
  const char *why = NULL;
  char text[200];
  if (!ctx->payload)
    return fail_with(ctx, GRPC_STATUS_INVALID_ARGUMENT,
                     "the request message is missing");
  if (ctx->call)
    atomic_store(&ctx->request_compressed,
                 prpc__core_last_message_compressed(ctx->call));
  if (!codec->decode_into) {
    prpc_allocator alloc = {arena_cb_alloc, arena_cb_free, ctx};
    if ((ctx->request = prpc__decode(codec, m->input, ctx->payload, &alloc,
                                     &why)))
      return GRPC_STATUS_OK;
  } else {
    void *msg = arena_alloc(ctx, codec->struct_size(m->input));
    if (!msg)
      return fail_with(ctx, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    codec->init(m->input, msg);
    if (me->prepare && me->invoke)
      me->prepare(me->impl, ctx, msg, me->user_data);
    prpc_allocator scratch = {arena_cb_alloc, arena_cb_free, ctx};
    if (!(why = prpc__decode_into(codec, m->input, ctx->payload, msg,
                                  &scratch))) {
      ctx->request = msg;
      return GRPC_STATUS_OK;
    }
  }
  snprintf(text, sizeof(text), "the request message does not decode: %s",
           why);
  prpc_ctx_set_message(ctx, text);
  prpc__log_call(PRPC_LOG_INFO, m->path, prpc_ctx_peer(ctx),
                 "the request does not decode: %s", why);
  return GRPC_STATUS_INVALID_ARGUMENT;
}

/* Runs the handler: inline on the thread that polled the call, or on a
 * pool thread for a blocking streaming one. */
static void run_handler(prpc_ctx *ctx) {
  const method_entry *me = ctx->me;
  const prpc_method_desc *m = me->m;
  const prpc_codec *codec = m->codec;
  grpc_status_code code = GRPC_STATUS_OK;
  int one_request = m->kind == PRPC_UNARY || m->kind == PRPC_SERVER_STREAMING;
  int one_reply = m->kind == PRPC_UNARY || m->kind == PRPC_CLIENT_STREAMING;
  if (one_request)
    code = decode_request(ctx);
  if (code == GRPC_STATUS_OK && one_reply) {
    if ((ctx->reply = arena_alloc(ctx, codec->struct_size(m->output))))
      codec->init(m->output, ctx->reply);
    else
      code = fail_with(ctx, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  }
  /* Asynchronous reads of decode_into codecs land in call memory. */
  if (code == GRPC_STATUS_OK && me->async && codec->decode_into &&
      (m->kind == PRPC_CLIENT_STREAMING || m->kind == PRPC_BIDI_STREAMING)) {
    if ((ctx->read_msg = arena_alloc(ctx, codec->struct_size(m->input))))
      codec->init(m->input, ctx->read_msg);
    else
      code = fail_with(ctx, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  }
  if (code != GRPC_STATUS_OK) {
    finish(ctx, code);
    return;
  }
  /* The handler holds a reference while it runs: a deferred call may be
   * finished from another thread before its handler has returned. */
  pthread_mutex_lock(&ctx->mu);
  ctx->flags |= F_RUNNING;
  ctx->refs++;
  pthread_mutex_unlock(&ctx->mu);
  atomic_fetch_add(&ctx->srv->busy, 1);
  code = me->invoke(me->impl, ctx, ctx->request, ctx->reply, me->user_data);
  atomic_fetch_sub(&ctx->srv->busy, 1);
  if (code == PRPC_DEFERRED) {
    pthread_mutex_lock(&ctx->mu);
    ctx->flags &= ~F_RUNNING; /* the application finishes it */
    pthread_mutex_unlock(&ctx->mu);
    end_if_cancelled(ctx); /* ...unless it was cancelled while it ran */
  } else if (finish(ctx, code) != 0) {
    prpc__log_call(PRPC__LOG_ERROR, ctx->method, "",
                   "the handler returned a status after the call was "
                   "finished; it is ignored");
  }
  drop(ctx);
}

void prpc__ctx_run_blocking(prpc_ctx *ctx) { run_handler(ctx); }

/* Binds the call to its connection's record: who is calling, fixed now,
 * while the connection is known to be open. Returns 0, or -1 when it came
 * on a connection piperpc handed to gRPC core that is no longer the one it
 * accepted, on a server with access control (who calls cannot be known). */
static int bind_peer(prpc_ctx *ctx) {
  prpc_server *srv = ctx->srv;
  char *peer;
  long fd = -1;
  if (!srv->acceptor)
    return 0;
  peer = grpc_call_get_peer(ctx->call);
  if (peer && strncmp(peer, "fd:", 3) == 0) {
    char *end;
    fd = strtol(peer + 3, &end, 10);
    if (*end != '\0' || end == peer + 3)
      fd = -1;
  }
  gpr_free(peer);
  if (fd >= 0 && !(ctx->conn = prpc__acceptor_bind(srv->acceptor, (int)fd)))
    return srv->guarded ? -1 : 0;
  return 0;
}

int prpc__ctx_serve(prpc_ctx *ctx) {
  prpc_server *srv = ctx->srv;
  const method_entry *me = ctx->me;
  char text[300];
  ctx->refs = 1; /* the owner's: the handler, or the server for a refusal */
  ctx->method = me ? me->m->path : NULL;
  if (!me) {
    /* details.method is a slice; keep a C string in the arena. */
    size_t n = GRPC_SLICE_LENGTH(ctx->details.method);
    char *p = arena_alloc(ctx, n + 1);
    if (p) {
      memcpy(p, GRPC_SLICE_START_PTR(ctx->details.method), n);
      p[n] = '\0';
    }
    ctx->method = p ? p : "";
    ctx->deadline = ctx->details.deadline;
  }
  live_add(ctx);
  if (bind_peer(ctx) != 0) {
    if (prpc__rate_ok(&srv->unknown_peer_log))
      prpc__log_call(PRPC__LOG_WARN, ctx->method, "fd:?",
                     "refused a call whose connection is no longer the one "
                     "that was accepted: its peer cannot be known");
    prpc__ctx_refuse(ctx, GRPC_STATUS_PERMISSION_DENIED,
                     "access denied: the connection's peer cannot be "
                     "verified");
    return 0;
  }
  if (ctx->cs->kind == CORE_DENY) {
    if (ctx->conn && ctx->conn->have_cred)
      snprintf(text, sizeof(text),
               "access denied: uid %u may not call this server",
               (unsigned)ctx->conn->uid);
    else
      snprintf(text, sizeof(text), "access denied");
    prpc__ctx_refuse(ctx, GRPC_STATUS_PERMISSION_DENIED, text);
    return 0;
  }
  if (!me) {
    snprintf(text, sizeof(text), "unknown method %s", ctx->method);
    prpc__ctx_refuse(ctx, GRPC_STATUS_UNIMPLEMENTED, text);
    return 0;
  }
  if (!me->invoke) {
    prpc__ctx_refuse(ctx, GRPC_STATUS_UNIMPLEMENTED,
                     "the server has no handler for this method");
    return 0;
  }
  if (me->m->kind == PRPC_UNARY) {
    run_handler(ctx);
    return 0;
  }
  /* A streaming call learns of a cancel at once. */
  pthread_mutex_lock(&ctx->mu);
  start_close_locked(ctx);
  pthread_mutex_unlock(&ctx->mu);
  if (me->async) {
    run_handler(ctx);
    return 0;
  }
  return 1; /* a blocking streaming handler: for a pool thread */
}

/* ---- calls of the HTTP front end, with no gRPC call behind them ---- */

/* How often a waiter looks for its client's hang-up. */
#define LOCAL_WATCH_MS 100

/* Every change of a local call's close, and every callback of its own
 * (on_cancel, and the end of a cancelled call whose owner set on_done),
 * happens on the waiter's thread (prpc__local_run, prpc__local_done),
 * which holds a reference meanwhile: never inside a function the
 * application calls. */

/* Cancels a local call whose close is not known yet (the waiter, mu not
 * held). */
static void local_cancel(prpc_ctx *ctx) {
  int first;
  pthread_mutex_lock(&ctx->mu);
  first = !(ctx->flags & F_CLOSE_DONE);
  if (first) {
    ctx->cancelled = 1;
    ctx->flags |= F_CLOSE_STARTED | F_CLOSE_DONE;
  }
  pthread_mutex_unlock(&ctx->mu);
  if (first)
    closed(ctx);
}

/* prpc_ctx_is_cancelled() of a local call: says so, and wakes the waiter,
 * which ends it. */
static int local_cancelled(prpc_ctx *ctx) {
  int gone;
  pthread_mutex_lock(&ctx->mu);
  gone = ((ctx->flags & F_CLOSE_DONE) && ctx->cancelled) || ctx->local_ended;
  if (!gone && !(ctx->flags & F_CLOSE_DONE) &&
      prpc__fd_hung_up(ctx->local_fd)) {
    gone = 1;
    pthread_cond_broadcast(&ctx->cv);
  }
  pthread_mutex_unlock(&ctx->mu);
  return gone;
}

int prpc__local_run(prpc_server *srv, prpc__local_call *lc) {
  prpc_ctx *ctx;
  int tell = 0;
  if (srv->opts.threads != 0 || srv->opts.loop)
    return -EAGAIN; /* handlers run on the server's threads only */
  if (!(ctx = prpc__ctx_get(srv)))
    return -ENOMEM;
  pthread_mutex_lock(&srv->calls_mu);
  if (atomic_load(&srv->stopping) ||
      srv->n_local >= (size_t)srv->opts.max_threads) {
    int stopping = atomic_load(&srv->stopping);
    pthread_mutex_unlock(&srv->calls_mu);
    prpc__ctx_put(ctx);
    return stopping ? PRPC_ESTATE : -EAGAIN;
  }
  ctx->local = 1; /* before it is on the list: prpc__calls_end reads it */
  srv->n_local++;
  live_add_locked(ctx);
  pthread_mutex_unlock(&srv->calls_mu);

  ctx->me = lc->me;
  ctx->cs = &srv->main;
  ctx->method = lc->me->m->path;
  ctx->local_fd = lc->fd;
  prpc__conn_ref(lc->conn);
  ctx->conn = lc->conn;
  ctx->deadline = prpc__deadline_from_ms(lc->timeout_ms);
  ctx->md = *lc->md; /* taken */
  *lc->md = (prpc_metadata)PRPC_METADATA_INIT;
  ctx->md_converted = 1;
  ctx->payload = lc->request;
  lc->request = NULL;
  ctx->refs = 2; /* the owner's, and this waiter's until prpc__local_done */
  lc->ctx = ctx;

  if (!ctx->me->invoke)
    prpc__ctx_refuse(ctx, GRPC_STATUS_UNIMPLEMENTED,
                     "the server has no handler for this method");
  else
    run_handler(ctx);

  /* A deferred call: its status, or a cancel. */
  pthread_mutex_lock(&ctx->mu);
  while (!(ctx->flags & (F_STATUS | F_CLOSE_DONE))) {
    struct timespec ts;
    int64_t left = prpc__ms_until(ctx->deadline);
    if (left == 0 || ctx->local_ended || prpc__fd_hung_up(ctx->local_fd)) {
      pthread_mutex_unlock(&ctx->mu);
      local_cancel(ctx);
      pthread_mutex_lock(&ctx->mu);
      continue;
    }
    prpc__timespec_in(&ts, CLOCK_REALTIME,
                      left > 0 && left < LOCAL_WATCH_MS ? left
                                                        : LOCAL_WATCH_MS);
    pthread_cond_timedwait(&ctx->cv, &ctx->mu, &ts);
  }
  if (!(ctx->flags & F_CLOSE_DONE)) {
    /* The status is decided: it reaches the client unless it came after
     * the deadline (start_status_locked), after the server ended the call
     * (prpc__calls_end), or the client has gone. */
    if (ctx->local_ended || prpc__fd_hung_up(ctx->local_fd))
      ctx->cancelled = 1;
    ctx->flags |= F_CLOSE_DONE;
    tell = ctx->cancelled;
  }
  lc->reply = NULL;
  lc->reply_len = 0;
  lc->headers = lc->trailers = NULL;
  lc->message = NULL;
  if (ctx->cancelled) {
    /* What the application still holds is not read: it may still use the
     * context (a deferred call without on_done). */
    if (ctx->local_ended) {
      lc->code = GRPC_STATUS_UNAVAILABLE;
      lc->message = "the server is shutting down";
    } else if (prpc__ms_until(ctx->deadline) == 0) {
      lc->code = GRPC_STATUS_DEADLINE_EXCEEDED;
      lc->message = "Deadline Exceeded";
    } else {
      lc->code = GRPC_STATUS_CANCELLED;
      lc->message = "the client went away";
    }
  } else {
    lc->code = ctx->finish_code;
    lc->message = ctx->message;
    lc->headers = &ctx->headers;
    lc->trailers = &ctx->trailers;
    if (ctx->finish_code == GRPC_STATUS_OK && ctx->reply_bb) {
      /* One slice: prpc__encode made it (a short one inline in it). */
      grpc_slice *sl = &ctx->reply_bb->data.raw.slice_buffer.slices[0];
      lc->reply = GRPC_SLICE_START_PTR(*sl);
      lc->reply_len = GRPC_SLICE_LENGTH(*sl);
    }
  }
  pthread_mutex_unlock(&ctx->mu);
  if (tell) /* finished already: on_cancel only */
    closed(ctx);
  return 0;
}

void prpc__local_done(prpc_ctx *ctx) {
  if (!ctx)
    return;
  /* A cancelled deferred call may not be finished yet: this reference
   * stays until it is, so that its end (on_done) comes here, never inside
   * prpc_ctx_finish() or prpc_ctx_set_callbacks(). */
  pthread_mutex_lock(&ctx->mu);
  while (!(ctx->flags & F_FINISHED))
    pthread_cond_wait(&ctx->cv, &ctx->mu);
  pthread_mutex_unlock(&ctx->mu);
  drop(ctx); /* may end it: on_done runs here */
}
