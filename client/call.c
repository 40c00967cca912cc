/* Client calls: unary and streaming, blocking and asynchronous.
 *
 * One call object and one set of batches serve both forms: a blocking
 * call runs its batches on a completion queue of its own and plucks each
 * on the calling thread (a unary call is one batch of six operations: no
 * other thread is involved on our side); an asynchronous one runs the same
 * batches on a loop, whose thread calls back when they complete. The
 * results (headers, messages, the reply, the status) are read the same
 * way in both.
 *
 * An asynchronous call holds a reference per batch in flight; with the
 * last one (after its status) it ends: on_done (or the unary callback)
 * runs, and the call is freed. Messages it sends are queued and written
 * one at a time, in order; a half-close waits for the queue to drain. */
#include "internal.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bytes an asynchronous call may queue before prpc_call_send() says
 * PRPC_EFULL. */
#define SEND_QUEUE_MAX (4u << 20)

enum {
  C_HEADERS_DONE = 1u << 0, /* RECV_INITIAL_METADATA has completed */
  C_WRITE_CLOSED = 1u << 1, /* the half-close is sent or queued */
  C_READ_ENDED = 1u << 2,   /* a read saw the end of the stream */
  C_STATUS_DONE = 1u << 3,
  C_READING = 1u << 4,
  C_WRITING = 1u << 5,
  C_SEND_FAILED = 1u << 6,
  C_CLOSE_SENT = 1u << 7 /* the queued half-close went */
};

typedef struct sendq_item {
  struct sendq_item *next;
  grpc_byte_buffer *bb; /* NULL: the half-close */
  uint32_t flags;
} sendq_item;

struct prpc_call {
  prpc__op start_op, headers_op, read_op, write_op, status_op;
  prpc_channel *ch;
  prpc__live_call lc;
  const prpc_method_desc *m;
  grpc_call *call;
  grpc_completion_queue *cq; /* a blocking call's own; the loop's */
  int async;
  pthread_mutex_t mu;
  /* Held around the application's callbacks (but on_done, which comes
   * after all of them): completions of one call may come on different
   * pollers at once, and a call's callbacks run one at a time. */
  pthread_mutex_t cbmu;
  int refs; /* asynchronous: batches in flight, and the starter's */
  /* C_*: atomic, for a blocking stream's reader and writer threads set
   * their own bits of it at once (asynchronous calls also hold mu). */
  _Atomic unsigned flags;
  grpc_metadata *md; /* request metadata, alive until the start ends */
  grpc_byte_buffer *start_bb;
  grpc_metadata_array core_headers;
  prpc_metadata headers;
  grpc_byte_buffer *read_bb;
  grpc_byte_buffer *reply_bb; /* a unary or client-streaming reply */
  grpc_status_code code;
  grpc_slice details;
  grpc_metadata_array trailers;
  const char *local_msg; /* a status piperpc gave itself */
  char errbuf[200];

  /* asynchronous */
  prpc_status st; /* what the end is told */
  const prpc_call_callbacks *cb;
  prpc_unary_done_fn udone;
  prpc_fn fn;
  void *user;
  void *reply_into; /* decode_into: the caller's struct for the reply */
  void *read_into;  /* decode_into: storage for messages read */
  sendq_item *sq_head, *sq_tail, *writing;
  size_t sq_bytes;
};

/* ---- shared by both forms ---- */

/* The request metadata in core form: the caller's, plus the key that asks
 * gRPC core to compress this call. Returns 0, -EINVAL (unknown algorithm)
 * or -ENOMEM. */
static int request_md(const prpc_call_opts *opts, grpc_metadata **md,
                      size_t *n_md) {
  grpc_compression_algorithm alg;
  const char *comp = opts ? opts->compression : NULL;
  if (comp && prpc__core_compression(comp, &alg) != 0)
    return prpc__fail(-EINVAL, "unknown compression algorithm '%s'", comp);
  if (prpc__md_to_core(opts ? opts->metadata : NULL,
                       comp ? PRPC__COMPRESSION_MD_KEY : NULL, comp, md,
                       n_md) != 0)
    return prpc__fail(-ENOMEM, "out of memory");
  return 0;
}

static void op_send_initial(grpc_op *op, const prpc_call_opts *opts,
                            grpc_metadata *md, size_t n_md) {
  memset(op, 0, sizeof(*op));
  op->op = GRPC_OP_SEND_INITIAL_METADATA;
  op->data.send_initial_metadata.count = n_md;
  op->data.send_initial_metadata.metadata = md;
  if (opts && opts->wait_for_ready)
    op->flags = GRPC_INITIAL_METADATA_WAIT_FOR_READY |
                GRPC_INITIAL_METADATA_WAIT_FOR_READY_EXPLICITLY_SET;
}

static void op_recv_status(grpc_op *op, prpc_call *c) {
  memset(op, 0, sizeof(*op));
  op->op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  op->data.recv_status_on_client.status = &c->code;
  op->data.recv_status_on_client.status_details = &c->details;
  op->data.recv_status_on_client.trailing_metadata = &c->trailers;
}

/* A reply is decoded either into a new message (*out, codecs with decode)
 * or into the caller's struct (into, codecs with decode_into). */
typedef struct reply_dest {
  int into_mode;
  void **out;
  void *into;
} reply_dest;

/* Checks that the method's codec can deliver to dest. */
static int dest_ok(const prpc_method_desc *m, const reply_dest *d) {
  return d->into_mode ? m->codec->decode_into != NULL
                      : m->codec->decode != NULL;
}

static const char *dest_mismatch(const reply_dest *d) {
  return d->into_mode ? "this method's codec allocates its messages: use "
                        "the call functions without _into"
                      : "this method's codec decodes into caller storage: "
                        "use the _into call functions";
}

/* Decodes bb to dest. Returns NULL, or the status message (in buf). */
static const char *reply_decode(const prpc_method_desc *m,
                                grpc_byte_buffer *bb, const reply_dest *d,
                                char *buf, size_t n) {
  const char *err;
  if (!d->into_mode) {
    if (!d->out)
      return NULL;
    if ((*d->out = prpc__decode(m->codec, m->output, bb, NULL, &err)))
      return NULL;
  } else {
    if (!d->into)
      return NULL;
    if (!(err = prpc__decode_into(m->codec, m->output, bb, d->into, NULL)))
      return NULL;
  }
  snprintf(buf, n, "the reply message does not decode: %s", err);
  return buf;
}

/* Fills *st from what the call ended with: the server's message (or gRPC
 * core's) verbatim, or the one piperpc gave itself. */
static void status_fill(prpc_status *st, grpc_status_code code,
                        grpc_slice details, const char *local_msg,
                        const grpc_metadata_array *headers,
                        const grpc_metadata_array *trailers) {
  st->code = code;
  st->local_error = 0;
  free(st->message);
  st->message = NULL;
  if (local_msg)
    st->message = strdup(local_msg);
  else if (GRPC_SLICE_LENGTH(details) > 0)
    st->message = prpc__slice_strdup(details);
  if (headers)
    prpc__md_from_core(&st->headers, headers);
  if (trailers)
    prpc__md_from_core(&st->trailers, trailers);
}

/* A call that failed before it reached gRPC core: err is the piperpc
 * result (-EINVAL, PRPC_EMSG, ...) in st->local_error, and the detail for
 * prpc_last_error(). */
static grpc_status_code local_failure(prpc_status *st, grpc_status_code code,
                                      int err, const char *msg) {
  prpc__fail(err, "%s", msg);
  if (st) {
    status_fill(st, code, grpc_empty_slice(), msg, NULL, NULL);
    st->local_error = err;
  }
  return code;
}

/* After a call that did not end OK, prpc_last_error() names the target
 * with the status (the status message itself is the server's). */
static void note_failure(const prpc_call *c, grpc_status_code code,
                         const char *local_msg) {
  if (code == GRPC_STATUS_OK)
    return;
  if (local_msg)
    prpc__fail(0, "%s: %s: %s", prpc__channel_target(c->ch),
               prpc_status_name(code), local_msg);
  else
    prpc__fail(0, "%s: %s: %.*s", prpc__channel_target(c->ch),
               prpc_status_name(code), (int)GRPC_SLICE_LENGTH(c->details),
               (const char *)GRPC_SLICE_START_PTR(c->details));
}

static void headers_convert(prpc_call *c) {
  c->flags |= C_HEADERS_DONE;
  prpc__md_from_core(&c->headers, &c->core_headers);
}

static void call_init(prpc_call *c, prpc_channel *ch,
                      const prpc_method_desc *m, int async) {
  memset(c, 0, sizeof(*c));
  c->ch = ch;
  c->m = m;
  c->async = async;
  c->details = grpc_empty_slice();
  c->code = GRPC_STATUS_UNKNOWN;
  grpc_metadata_array_init(&c->core_headers);
  grpc_metadata_array_init(&c->trailers);
  pthread_mutex_init(&c->mu, NULL);
  pthread_mutex_init(&c->cbmu, NULL);
}

static prpc_call *call_new(prpc_channel *ch, const prpc_method_desc *m,
                           int async) {
  prpc_call *c = malloc(sizeof(*c));
  if (c)
    call_init(c, ch, m, async);
  return c;
}

/* Releases what the call holds; the grpc_call is released by the caller. */
static void call_clear(prpc_call *c) {
  grpc_slice_unref(c->details);
  grpc_metadata_array_destroy(&c->core_headers);
  grpc_metadata_array_destroy(&c->trailers);
  prpc_metadata_clear(&c->headers);
  if (c->start_bb)
    grpc_byte_buffer_destroy(c->start_bb);
  if (c->read_bb)
    grpc_byte_buffer_destroy(c->read_bb);
  if (c->reply_bb)
    grpc_byte_buffer_destroy(c->reply_bb);
  while (c->sq_head) {
    sendq_item *it = c->sq_head;
    c->sq_head = it->next;
    if (it->bb)
      grpc_byte_buffer_destroy(it->bb);
    free(it);
  }
  if (c->writing) {
    if (c->writing->bb)
      grpc_byte_buffer_destroy(c->writing->bb);
    free(c->writing);
  }
  prpc_status_clear(&c->st);
  free(c->read_into);
  free(c->md);
  pthread_mutex_destroy(&c->mu);
  pthread_mutex_destroy(&c->cbmu);
}

static void call_free(prpc_call *c) {
  call_clear(c);
  free(c);
}

/* ---- blocking unary calls ---- */

static grpc_status_code unary_call(prpc_channel *ch, const prpc_method_desc *m,
                                   const void *request,
                                   const prpc_call_opts *opts,
                                   const reply_dest *dest, prpc_status *st);

grpc_status_code prpc_unary_call(prpc_channel *ch, const prpc_method_desc *m,
                                 const void *request,
                                 const prpc_call_opts *opts, void **reply,
                                 prpc_status *st) {
  reply_dest d = {0, reply, NULL};
  if (reply)
    *reply = NULL;
  return unary_call(ch, m, request, opts, &d, st);
}

grpc_status_code prpc_unary_call_into(prpc_channel *ch,
                                      const prpc_method_desc *m,
                                      const void *request,
                                      const prpc_call_opts *opts, void *reply,
                                      prpc_status *st) {
  reply_dest d = {1, NULL, reply};
  return unary_call(ch, m, request, opts, &d, st);
}

/* Checks a unary call's arguments and encodes its request. Returns 0, or
 * the local failure (err, msg, code) with nothing left behind. */
static int unary_prepare(prpc_call *c, const void *request,
                         const prpc_call_opts *opts, const reply_dest *dest,
                         grpc_status_code *code, int *err, const char **msg,
                         size_t *n_md) {
  const prpc_method_desc *m = c->m;
  *code = GRPC_STATUS_INVALID_ARGUMENT;
  *err = -EINVAL;
  if (!request) {
    *msg = "prpc_unary_call: NULL channel, method or request";
    return -1;
  }
  if (m->kind != PRPC_UNARY) {
    *msg = "prpc_unary_call: method is not unary";
    return -1;
  }
  if (!dest_ok(m, dest)) {
    *msg = dest_mismatch(dest);
    return -1;
  }
  switch (request_md(opts, &c->md, n_md)) {
  case 0:
    break;
  case -EINVAL:
    snprintf(c->errbuf, sizeof(c->errbuf), "%s", prpc_last_error());
    *msg = c->errbuf;
    return -1;
  default:
    *code = GRPC_STATUS_RESOURCE_EXHAUSTED;
    *err = -ENOMEM;
    *msg = "out of memory";
    return -1;
  }
  if (!(c->start_bb = prpc__encode(m->codec, m->input, request))) {
    *code = GRPC_STATUS_INTERNAL;
    *err = PRPC_EMSG;
    *msg = "failed to encode the request";
    return -1;
  }
  return 0;
}

/* The six operations of a unary call. */
static void unary_ops(prpc_call *c, const prpc_call_opts *opts, size_t n_md,
                      grpc_op ops[6]) {
  op_send_initial(&ops[0], opts, c->md, n_md);
  memset(&ops[1], 0, 4 * sizeof(ops[1]));
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = c->start_bb;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->core_headers;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &c->reply_bb;
  op_recv_status(&ops[5], c);
}

/* The outcome of a call whose status has come: with want_reply (unary and
 * client-streaming), the reply decoded to dest. Returns the status code;
 * *local_msg is piperpc's own status message, or NULL for the server's. */
static grpc_status_code results(prpc_call *c, const reply_dest *dest,
                                int want_reply, const char **local_msg) {
  grpc_status_code code = c->code;
  *local_msg = c->local_msg;
  if (code == GRPC_STATUS_OK && want_reply) {
    if (!c->reply_bb) {
      code = GRPC_STATUS_INTERNAL;
      *local_msg = "the server sent no reply message";
    } else if ((*local_msg = reply_decode(c->m, c->reply_bb, dest, c->errbuf,
                                          sizeof(c->errbuf)))) {
      code = GRPC_STATUS_INTERNAL;
    }
  }
  note_failure(c, code, *local_msg);
  return code;
}

static grpc_status_code unary_call(prpc_channel *ch, const prpc_method_desc *m,
                                   const void *request,
                                   const prpc_call_opts *opts,
                                   const reply_dest *dest, prpc_status *st) {
  grpc_op ops[6];
  size_t n_md = 0;
  grpc_status_code code;
  const char *msg;
  int err;
  prpc_call call, *c = &call; /* a blocking call allocates nothing */
  if (!ch || !m)
    return local_failure(st, GRPC_STATUS_INVALID_ARGUMENT, -EINVAL,
                         "prpc_unary_call: NULL channel, method or request");
  call_init(c, ch, m, 0);
  if (unary_prepare(c, request, opts, dest, &code, &err, &msg, &n_md) != 0) {
    code = local_failure(st, code, err, msg);
    call_clear(c);
    return code;
  }
  /* This thread waits: if it polls a loop, another takes over. */
  prpc__loop_long(NULL);
  c->cq = prpc__channel_cq_get(ch);
  c->call = c->cq ? prpc__channel_call(ch, m, c->cq, opts) : NULL;
  if (!c->call) {
    if (c->cq)
      prpc__channel_cq_put(ch, c->cq);
    call_clear(c);
    return local_failure(st, GRPC_STATUS_INTERNAL, PRPC_ECORE,
                         "gRPC core could not create the call");
  }
  prpc__channel_live_add(ch, &c->lc, c->call);
  unary_ops(c, opts, n_md, ops);
  if (prpc__start_batch(c->call, ops, 6, &c->status_op) != GRPC_CALL_OK) {
    c->code = GRPC_STATUS_INTERNAL;
    c->local_msg = "gRPC core refused the call batch";
  } else {
    /* A client batch with RECV_STATUS always completes. */
    grpc_completion_queue_pluck(c->cq, &c->status_op,
                                gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  }
  code = results(c, dest, 1, &msg);
  if (st)
    status_fill(st, code, c->details, msg, &c->core_headers, &c->trailers);
  prpc__channel_live_remove(ch, &c->lc, c->cq);
  call_clear(c);
  return code;
}

/* ---- asynchronous calls: their end ---- */

/* The call is over: tell the application, then free it. */
static void async_end(prpc_call *c) {
  void *reply = NULL;
  const prpc_codec *codec = c->m->codec;
  /* A unary call's reply comes to its callback; one started as a stream
   * reads it with prpc_call_read_async(). A client-streaming reply comes
   * with the status. */
  int want_reply = c->udone ? c->m->kind == PRPC_UNARY
                            : c->m->kind == PRPC_CLIENT_STREAMING;
  reply_dest d = {codec->decode_into != NULL, &reply, c->reply_into};
  const char *msg;
  grpc_status_code code =
      results(c, &d, want_reply && (!d.into_mode || d.into), &msg);
  if (d.into_mode && want_reply && code == GRPC_STATUS_OK)
    reply = d.into;
  status_fill(&c->st, code, c->details, msg, NULL, &c->trailers);
  if (!(c->flags & C_HEADERS_DONE))
    headers_convert(c);
  c->st.headers = c->headers; /* handed over */
  memset(&c->headers, 0, sizeof(c->headers));
  if (c->udone)
    c->udone(c, c->st.code == GRPC_STATUS_OK ? reply : NULL, &c->st, c->user);
  else
    c->cb->on_done(c, c->st.code == GRPC_STATUS_OK ? reply : NULL, &c->st,
                   c->user);
  if (reply && !d.into_mode)
    codec->free(c->m->output, reply, NULL);
  prpc__channel_live_remove(c->ch, &c->lc, NULL);
  call_free(c);
}

static void async_drop(prpc_call *c) {
  int last;
  pthread_mutex_lock(&c->mu);
  last = --c->refs == 0;
  pthread_mutex_unlock(&c->mu);
  if (last)
    async_end(c);
}

static void on_status(prpc__op *op, int ok) {
  prpc_call *c = (prpc_call *)((char *)op - offsetof(prpc_call, status_op));
  PRPC__UNUSED(ok); /* a client batch with RECV_STATUS completes OK */
  pthread_mutex_lock(&c->mu);
  c->flags |= C_STATUS_DONE;
  pthread_mutex_unlock(&c->mu);
  async_drop(c);
}

/* ---- asynchronous unary calls ---- */

static int unary_async(prpc_channel *ch, const prpc_method_desc *m,
                       const void *request, const prpc_call_opts *opts,
                       void *reply, int into_mode, prpc_unary_done_fn done,
                       prpc_fn fn, void *user_data, prpc_call **out) {
  grpc_op ops[6];
  size_t n_md = 0;
  grpc_status_code code;
  const char *msg;
  int err;
  prpc_call *c;
  prpc_loop *loop;
  reply_dest d = {into_mode, NULL, reply};
  void *unused = NULL;
  if (!into_mode)
    d.out = &unused;
  if (out)
    *out = NULL;
  if (!ch || !m || !done)
    return prpc__fail(-EINVAL, "prpc_unary_call_async: NULL channel, method "
                               "or callback");
  if (!(c = call_new(ch, m, 1)))
    return prpc__fail(-ENOMEM, "out of memory");
  if (unary_prepare(c, request, opts, &d, &code, &err, &msg, &n_md) != 0) {
    prpc__fail(err, "%s", msg);
    call_free(c);
    return err;
  }
  if (!(loop = prpc__channel_loop(ch)) ||
      !(c->call = prpc__channel_call(ch, m, prpc__loop_cq(loop), opts))) {
    call_free(c);
    return prpc__fail(PRPC_ECORE, "gRPC core could not create the call");
  }
  c->cq = prpc__loop_cq(loop);
  c->udone = done;
  c->fn = fn;
  c->user = user_data;
  c->reply_into = into_mode ? reply : NULL;
  c->status_op.fn = on_status;
  c->refs = 1;
  prpc__channel_live_add(ch, &c->lc, c->call);
  unary_ops(c, opts, n_md, ops);
  if (out)
    *out = c;
  if (prpc__start_batch(c->call, ops, 6, &c->status_op) != GRPC_CALL_OK) {
    prpc__channel_live_remove(ch, &c->lc, NULL);
    call_free(c);
    if (out)
      *out = NULL;
    return prpc__fail(PRPC_ECORE, "gRPC core refused the call batch");
  }
  return 0;
}

int prpc_unary_call_async(prpc_channel *ch, const prpc_method_desc *m,
                          const void *request, const prpc_call_opts *opts,
                          prpc_unary_done_fn done, void *user_data,
                          prpc_call **out) {
  return unary_async(ch, m, request, opts, NULL, 0, done, NULL, user_data,
                     out);
}

int prpc_unary_call_async_into(prpc_channel *ch, const prpc_method_desc *m,
                               const void *request,
                               const prpc_call_opts *opts, void *reply,
                               prpc_unary_done_fn done, void *user_data,
                               prpc_call **out) {
  return unary_async(ch, m, request, opts, reply, 1, done, NULL, user_data,
                     out);
}

int prpc_unary_call_async_fn(prpc_channel *ch, const prpc_method_desc *m,
                             const void *request, const prpc_call_opts *opts,
                             void *reply, prpc_unary_done_fn done, prpc_fn fn,
                             void *user_data, prpc_call **out) {
  return unary_async(ch, m, request, opts, reply, reply != NULL, done, fn,
                     user_data, out);
}

prpc_fn prpc_call_fn(const prpc_call *c) { return c ? c->fn : NULL; }

/* ---- streaming calls: the start ---- */

static void on_start(prpc__op *op, int ok);
static void on_headers(prpc__op *op, int ok);
static void on_read(prpc__op *op, int ok);
static void on_write(prpc__op *op, int ok);

/* Creates the call and starts its first batch: the request metadata, and
 * for unary and server-streaming methods the request and the half-close.
 * Not waited for here: with wait_for_ready it would block until the server
 * is reachable. */
static int stream_start(prpc_channel *ch, const prpc_method_desc *m,
                        const void *request, const prpc_call_opts *opts,
                        int async, prpc_call **out) {
  prpc_call *c;
  grpc_op ops[3];
  size_t n_md = 0, n_ops = 1;
  int rc;
  if (!ch || !m || !out)
    return prpc__fail(-EINVAL, "prpc_call_start: NULL argument");
  *out = NULL;
  int one_request = m->kind == PRPC_UNARY || m->kind == PRPC_SERVER_STREAMING;
  if (one_request != (request != NULL))
    return prpc__fail(-EINVAL, "prpc_call_start: pass the request for unary "
                               "and server-streaming methods, and only for "
                               "them");
  if (!(c = call_new(ch, m, async)))
    return prpc__fail(-ENOMEM, "out of memory");
  if ((rc = request_md(opts, &c->md, &n_md)) != 0) {
    call_free(c);
    return rc;
  }
  if (request && !(c->start_bb = prpc__encode(m->codec, m->input, request))) {
    call_free(c);
    return prpc__fail(PRPC_EMSG, "failed to encode the request");
  }
  if (async) {
    prpc_loop *loop = prpc__channel_loop(ch);
    c->cq = loop ? prpc__loop_cq(loop) : NULL;
  } else {
    c->cq = prpc__channel_cq_get(ch);
  }
  c->call = c->cq ? prpc__channel_call(ch, m, c->cq, opts) : NULL;
  if (!c->call) {
    if (c->cq && !async)
      prpc__channel_cq_put(ch, c->cq);
    call_free(c);
    return prpc__fail(PRPC_ECORE, "gRPC core could not create the call");
  }
  c->start_op.fn = on_start;
  c->headers_op.fn = on_headers;
  c->read_op.fn = on_read;
  c->write_op.fn = on_write;
  c->status_op.fn = on_status;
  op_send_initial(&ops[0], opts, c->md, n_md);
  if (request) {
    memset(&ops[1], 0, 2 * sizeof(ops[1]));
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = c->start_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    n_ops = 3;
    c->flags |= C_WRITE_CLOSED;
  }
  c->refs = async ? 2 : 0; /* the start batch, and the starter */
  if (prpc__start_batch(c->call, ops, n_ops, &c->start_op) != GRPC_CALL_OK) {
    grpc_call_unref(c->call);
    if (!async)
      prpc__channel_cq_put(ch, c->cq);
    call_free(c);
    return prpc__fail(PRPC_ECORE, "gRPC core could not start the call");
  }
  prpc__channel_live_add(ch, &c->lc, c->call);
  *out = c;
  return 0;
}

int prpc_call_start(prpc_channel *ch, const prpc_method_desc *m,
                    const void *request, const prpc_call_opts *opts,
                    prpc_call **out) {
  return stream_start(ch, m, request, opts, 0, out);
}

int prpc_call_start_async(prpc_channel *ch, const prpc_method_desc *m,
                          const void *request, const prpc_call_opts *opts,
                          const prpc_call_callbacks *cb, void *user_data,
                          prpc_call **out) {
  prpc_call *c;
  grpc_op ops[2];
  size_t n = 0;
  int rc;
  if (!cb || !cb->on_done)
    return prpc__fail(-EINVAL, "prpc_call_start_async: on_done is required");
  if ((rc = stream_start(ch, m, request, opts, 1, &c)) != 0)
    return rc;
  c->cb = cb;
  c->user = user_data;
  if (m->codec->decode_into &&
      !(c->read_into = calloc(1, m->codec->struct_size(m->output)))) {
    prpc_call_cancel(c);
  } else if (c->read_into) {
    m->codec->init(m->output, c->read_into);
  }
  pthread_mutex_lock(&c->mu);
  /* The headers, and the status (with a client-streaming call's reply):
   * they end the call. */
  memset(ops, 0, sizeof(ops));
  ops[0].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[0].data.recv_initial_metadata.recv_initial_metadata = &c->core_headers;
  c->refs++;
  if (prpc__start_batch(c->call, ops, 1, &c->headers_op) != GRPC_CALL_OK)
    c->refs--;
  if (m->kind == PRPC_CLIENT_STREAMING) {
    memset(&ops[n], 0, sizeof(ops[n]));
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n].data.recv_message.recv_message = &c->reply_bb;
    n++;
    if (m->codec->decode_into)
      c->reply_into = c->read_into; /* the reply lands there */
  }
  op_recv_status(&ops[n++], c);
  c->refs++;
  if (prpc__start_batch(c->call, ops, n, &c->status_op) != GRPC_CALL_OK) {
    c->refs--;
    c->code = GRPC_STATUS_INTERNAL;
    c->local_msg = "gRPC core refused the status batch";
  }
  pthread_mutex_unlock(&c->mu);
  *out = c;
  async_drop(c); /* the starter's */
  return 0;
}

static void on_start(prpc__op *op, int ok) {
  prpc_call *c = (prpc_call *)((char *)op - offsetof(prpc_call, start_op));
  PRPC__UNUSED(ok); /* a failure shows in the status */
  async_drop(c);
}

static void on_headers(prpc__op *op, int ok) {
  prpc_call *c = (prpc_call *)((char *)op - offsetof(prpc_call, headers_op));
  pthread_mutex_lock(&c->mu);
  headers_convert(c);
  pthread_mutex_unlock(&c->mu);
  if (ok && c->cb->on_headers) {
    pthread_mutex_lock(&c->cbmu);
    c->cb->on_headers(c, &c->headers, c->user);
    pthread_mutex_unlock(&c->cbmu);
  }
  async_drop(c);
}

/* ---- streaming calls: reads ---- */

static void on_read(prpc__op *op, int ok) {
  prpc_call *c = (prpc_call *)((char *)op - offsetof(prpc_call, read_op));
  grpc_byte_buffer *bb;
  void *msg = NULL;
  char errbuf[200];
  const char *err = NULL;
  pthread_mutex_lock(&c->mu);
  c->flags &= ~C_READING;
  bb = c->read_bb;
  c->read_bb = NULL;
  if (!ok && bb) {
    grpc_byte_buffer_destroy(bb);
    bb = NULL;
  }
  if (!bb)
    c->flags |= C_READ_ENDED;
  pthread_mutex_unlock(&c->mu);
  if (bb) {
    reply_dest d = {c->read_into != NULL, &msg, c->read_into};
    err = reply_decode(c->m, bb, &d, errbuf, sizeof(errbuf));
    grpc_byte_buffer_destroy(bb);
    if (d.into_mode && !err)
      msg = c->read_into;
  }
  if (err) {
    grpc_call_cancel_with_status(c->call, GRPC_STATUS_INTERNAL, err, NULL);
  } else if (c->cb->on_read) {
    pthread_mutex_lock(&c->cbmu);
    c->cb->on_read(c, msg, c->user);
    pthread_mutex_unlock(&c->cbmu);
  }
  if (msg && !c->read_into) {
    c->m->codec->free(c->m->output, msg, NULL);
  } else if (msg) {
    if (c->m->codec->release)
      c->m->codec->release(c->m->output, c->read_into);
    c->m->codec->init(c->m->output, c->read_into);
  }
  async_drop(c);
}

int prpc_call_read_async(prpc_call *c) {
  grpc_op op;
  int rc = 0;
  if (!c || !c->async || !c->cb)
    return prpc__fail(-EINVAL, "prpc_call_read_async: not a call started "
                               "with prpc_call_start_async()");
  memset(&op, 0, sizeof(op));
  op.op = GRPC_OP_RECV_MESSAGE;
  op.data.recv_message.recv_message = &c->read_bb;
  pthread_mutex_lock(&c->mu);
  if (c->flags & C_READING)
    rc = prpc__fail(-EBUSY, "a read is already on its way");
  else if (c->flags & (C_READ_ENDED | C_STATUS_DONE))
    rc = prpc__fail(PRPC_ECLOSED, "the stream has ended");
  else {
    c->flags |= C_READING;
    c->refs++;
    if (prpc__start_batch(c->call, &op, 1, &c->read_op) != GRPC_CALL_OK) {
      c->flags &= ~C_READING;
      c->refs--;
      rc = prpc__fail(PRPC_ECLOSED, "the call has ended");
    }
  }
  pthread_mutex_unlock(&c->mu);
  return rc;
}

/* ---- streaming calls: asynchronous writes ---- */

/* Starts the first queued item: a message, or the half-close. mu held. */
static void start_write_locked(prpc_call *c) {
  grpc_op op;
  sendq_item *it = c->sq_head;
  c->sq_head = it->next;
  if (!c->sq_head)
    c->sq_tail = NULL;
  memset(&op, 0, sizeof(op));
  if (it->bb) {
    c->sq_bytes -= grpc_byte_buffer_length(it->bb);
    op.op = GRPC_OP_SEND_MESSAGE;
    op.flags = it->flags & GRPC_WRITE_NO_COMPRESS;
    op.data.send_message.send_message = it->bb;
  } else {
    op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  }
  c->writing = it;
  c->flags |= C_WRITING;
  c->refs++;
  if (prpc__start_batch(c->call, &op, 1, &c->write_op) != GRPC_CALL_OK) {
    c->refs--;
    c->flags = (c->flags & ~C_WRITING) | C_SEND_FAILED;
    c->writing = NULL;
    if (it->bb)
      grpc_byte_buffer_destroy(it->bb);
    free(it);
  }
}

static void on_write(prpc__op *op, int ok) {
  prpc_call *c = (prpc_call *)((char *)op - offsetof(prpc_call, write_op));
  sendq_item *done, *dropped = NULL;
  int was_message;
  pthread_mutex_lock(&c->mu);
  done = c->writing;
  c->writing = NULL;
  was_message = done && done->bb;
  /* C_WRITING stays set through the callbacks: what is sent meanwhile
   * queues, and the next write starts after them, so that each
   * on_write_done comes in the order of the writes. */
  if (!ok) {
    c->flags = (c->flags & ~C_WRITING) | C_SEND_FAILED;
    dropped = c->sq_head;
    c->sq_head = c->sq_tail = NULL;
    c->sq_bytes = 0;
  }
  pthread_mutex_unlock(&c->mu);
  if (done) {
    if (done->bb)
      grpc_byte_buffer_destroy(done->bb);
    free(done);
  }
  pthread_mutex_lock(&c->cbmu);
  /* The message that went first: writes complete in the order queued. */
  if (was_message && c->cb->on_write_done)
    c->cb->on_write_done(c, ok, c->user);
  while (dropped) {
    sendq_item *next = dropped->next;
    if (dropped->bb && c->cb->on_write_done)
      c->cb->on_write_done(c, 0, c->user);
    if (dropped->bb)
      grpc_byte_buffer_destroy(dropped->bb);
    free(dropped);
    dropped = next;
  }
  pthread_mutex_unlock(&c->cbmu);
  if (ok) {
    pthread_mutex_lock(&c->mu);
    c->flags &= ~C_WRITING;
    if (c->sq_head && !(c->flags & C_SEND_FAILED))
      start_write_locked(c);
    pthread_mutex_unlock(&c->mu);
  }
  async_drop(c);
}

/* Queues bb (NULL: the half-close). Returns 0 or a negative code. */
static int enqueue(prpc_call *c, grpc_byte_buffer *bb, unsigned flags) {
  sendq_item *it = malloc(sizeof(*it));
  size_t len = bb ? grpc_byte_buffer_length(bb) : 0;
  int rc = 0;
  if (!it) {
    if (bb)
      grpc_byte_buffer_destroy(bb);
    return prpc__fail(-ENOMEM, "out of memory");
  }
  it->next = NULL;
  it->bb = bb;
  it->flags = flags;
  pthread_mutex_lock(&c->mu);
  if (c->flags & (C_WRITE_CLOSED | C_SEND_FAILED | C_STATUS_DONE))
    rc = prpc__fail(PRPC_ECLOSED, c->flags & C_WRITE_CLOSED
                                      ? "the call is half-closed"
                                      : "the call has ended");
  else if (bb && c->sq_head && c->sq_bytes + len > SEND_QUEUE_MAX)
    rc = prpc__fail(PRPC_EFULL, "%zu bytes are waiting to be sent",
                    c->sq_bytes);
  if (rc == 0) {
    if (!bb)
      c->flags |= C_WRITE_CLOSED;
    if (c->sq_tail)
      c->sq_tail->next = it;
    else
      c->sq_head = it;
    c->sq_tail = it;
    c->sq_bytes += len;
    if (!(c->flags & C_WRITING))
      start_write_locked(c);
  }
  pthread_mutex_unlock(&c->mu);
  if (rc != 0) {
    if (bb)
      grpc_byte_buffer_destroy(bb);
    free(it);
  }
  return rc;
}

int prpc_call_send(prpc_call *c, const void *msg, unsigned flags) {
  grpc_byte_buffer *bb;
  if (!c || !c->async || !c->cb || !msg)
    return prpc__fail(-EINVAL, "prpc_call_send: NULL message, or not a call "
                               "started with prpc_call_start_async()");
  if (c->m->kind != PRPC_CLIENT_STREAMING && c->m->kind != PRPC_BIDI_STREAMING)
    return prpc__fail(-EINVAL, "%s: not a client-streaming or bidi call",
                      c->m->path);
  if (!(bb = prpc__encode(c->m->codec, c->m->input, msg)))
    return prpc__fail(PRPC_EMSG, "failed to encode the message");
  return enqueue(c, bb, flags);
}

int prpc_call_close_send(prpc_call *c) {
  if (!c || !c->async || !c->cb)
    return prpc__fail(-EINVAL, "prpc_call_close_send: not a call started "
                               "with prpc_call_start_async()");
  return enqueue(c, NULL, 0);
}

/* ---- streaming calls: blocking ---- */

/* Runs one batch on the call's own queue and waits for it. Returns 1 if it
 * succeeded. */
static int run_batch(prpc_call *c, grpc_op *ops, size_t n, prpc__op *op) {
  prpc__loop_long(NULL);
  if (prpc__start_batch(c->call, ops, n, op) != GRPC_CALL_OK)
    return 0;
  return grpc_completion_queue_pluck(c->cq, op,
                                     gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
      .success;
}

static int blocking_only(const prpc_call *c, const char *what) {
  if (c->async)
    return prpc__fail(-EINVAL, "%s: the call was started with "
                               "prpc_call_start_async(): use its "
                               "asynchronous functions",
                      what);
  return 0;
}

int prpc_call_write(prpc_call *c, const void *msg) {
  return prpc_call_write_ex(c, msg, 0);
}

int prpc_call_write_ex(prpc_call *c, const void *msg, unsigned flags) {
  grpc_op op;
  grpc_byte_buffer *bb;
  int ok, rc;
  if ((rc = blocking_only(c, "prpc_call_write")) != 0)
    return rc;
  if (c->flags & C_WRITE_CLOSED)
    return prpc__fail(PRPC_ECLOSED, "write after writes_done");
  bb = prpc__encode(c->m->codec, c->m->input, msg);
  if (!bb)
    return prpc__fail(PRPC_EMSG, "failed to encode the message");
  memset(&op, 0, sizeof(op));
  op.op = GRPC_OP_SEND_MESSAGE;
  op.flags = flags & GRPC_WRITE_NO_COMPRESS;
  op.data.send_message.send_message = bb;
  ok = run_batch(c, &op, 1, &c->write_op);
  grpc_byte_buffer_destroy(bb);
  return ok ? 0 : prpc__fail(PRPC_ECLOSED, "the call has ended");
}

int prpc_call_writes_done(prpc_call *c) {
  grpc_op op;
  int rc;
  if ((rc = blocking_only(c, "prpc_call_writes_done")) != 0)
    return rc;
  if (c->flags & C_WRITE_CLOSED)
    return 0;
  memset(&op, 0, sizeof(op));
  op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  c->flags |= C_WRITE_CLOSED;
  return run_batch(c, &op, 1, &c->write_op)
             ? 0
             : prpc__fail(PRPC_ECLOSED, "the call has ended");
}

int prpc_call_headers(prpc_call *c, const prpc_metadata **headers) {
  grpc_op op;
  int rc;
  if ((rc = blocking_only(c, "prpc_call_headers")) != 0)
    return rc;
  if (!(c->flags & C_HEADERS_DONE)) {
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_INITIAL_METADATA;
    op.data.recv_initial_metadata.recv_initial_metadata = &c->core_headers;
    if (!run_batch(c, &op, 1, &c->headers_op))
      return prpc__fail(PRPC_ECLOSED, "the call has ended");
    headers_convert(c);
  }
  *headers = &c->headers;
  return 0;
}

int prpc_call_read_compressed(const prpc_call *c) {
  return prpc__core_last_message_compressed(c->call);
}

static int call_read(prpc_call *c, const reply_dest *dest) {
  grpc_op ops[2];
  size_t n = 0;
  grpc_byte_buffer *bb = NULL;
  int had_headers = c->flags & C_HEADERS_DONE;
  char errbuf[200];
  const char *err;
  int rc;
  if ((rc = blocking_only(c, "prpc_call_read")) != 0)
    return rc;
  if (!dest_ok(c->m, dest))
    return prpc__fail(-EINVAL, "%s: %s", c->m->path, dest_mismatch(dest));
  if (c->flags & C_READ_ENDED)
    return 0;
  memset(ops, 0, sizeof(ops));
  if (!had_headers) {
    ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[n].data.recv_initial_metadata.recv_initial_metadata = &c->core_headers;
    n++;
  }
  ops[n].op = GRPC_OP_RECV_MESSAGE;
  ops[n].data.recv_message.recv_message = &bb;
  n++;
  run_batch(c, ops, n, &c->read_op);
  if (!had_headers)
    headers_convert(c);
  if (!bb) {
    c->flags |= C_READ_ENDED;
    return 0;
  }
  err = reply_decode(c->m, bb, dest, errbuf, sizeof(errbuf));
  grpc_byte_buffer_destroy(bb);
  if (err) {
    grpc_call_cancel_with_status(c->call, GRPC_STATUS_INTERNAL, err, NULL);
    c->flags |= C_READ_ENDED;
    return prpc__fail(PRPC_EMSG, "a message from the server does not decode%s",
                      errbuf + strlen("the reply message does not decode"));
  }
  return 1;
}

int prpc_call_read(prpc_call *c, void **msg) {
  reply_dest d = {0, msg, NULL};
  *msg = NULL;
  return call_read(c, &d);
}

int prpc_call_read_into(prpc_call *c, void *msg) {
  reply_dest d = {1, NULL, msg};
  if (!msg)
    return prpc__fail(-EINVAL, "prpc_call_read_into: NULL message");
  return call_read(c, &d);
}

void prpc_call_cancel(prpc_call *c) {
  if (c)
    grpc_call_cancel(c->call, NULL);
}

static grpc_status_code call_finish(prpc_call *c, const reply_dest *dest,
                                    prpc_status *st);

grpc_status_code prpc_call_finish(prpc_call *c, void **reply,
                                  prpc_status *st) {
  reply_dest d = {0, reply, NULL};
  if (reply)
    *reply = NULL;
  return call_finish(c, &d, st);
}

grpc_status_code prpc_call_finish_into(prpc_call *c, void *reply,
                                       prpc_status *st) {
  reply_dest d = {1, NULL, reply};
  return call_finish(c, &d, st);
}

static grpc_status_code call_finish(prpc_call *c, const reply_dest *dest,
                                    prpc_status *st) {
  grpc_op ops[4];
  size_t n = 0;
  grpc_status_code code;
  const char *msg;
  int want_reply = (dest->into_mode ? dest->into != NULL : dest->out != NULL) &&
                   c->m->kind == PRPC_CLIENT_STREAMING;
  const char *mismatch = NULL;
  if (c->async)
    return local_failure(st, GRPC_STATUS_INVALID_ARGUMENT, -EINVAL,
                         "prpc_call_finish: the call was started with "
                         "prpc_call_start_async(): it ends in on_done");
  if (want_reply && !dest_ok(c->m, dest)) {
    want_reply = 0;
    mismatch = dest_mismatch(dest);
  }
  memset(ops, 0, sizeof(ops));
  /* A client-streaming call's reply comes after the half-close, so finish
   * sends it. A bidi call is left as it is: its server may answer without
   * waiting for one, and a client that wants one calls writes_done. */
  if (!(c->flags & C_WRITE_CLOSED) && c->m->kind == PRPC_CLIENT_STREAMING) {
    ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    c->flags |= C_WRITE_CLOSED;
  }
  if (!(c->flags & C_HEADERS_DONE)) {
    ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[n].data.recv_initial_metadata.recv_initial_metadata = &c->core_headers;
    n++;
  }
  if (want_reply) {
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n].data.recv_message.recv_message = &c->reply_bb;
    n++;
  }
  op_recv_status(&ops[n++], c);
  if (!run_batch(c, ops, n, &c->status_op) && c->code == GRPC_STATUS_UNKNOWN &&
      GRPC_SLICE_LENGTH(c->details) == 0) {
    c->code = GRPC_STATUS_INTERNAL;
    c->local_msg = "gRPC core refused the finish batch";
  }
  grpc_completion_queue_pluck(c->cq, &c->start_op,
                              gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  if (!(c->flags & C_HEADERS_DONE))
    headers_convert(c);
  code = results(c, dest, want_reply, &msg);
  if (mismatch && code == GRPC_STATUS_OK) {
    code = GRPC_STATUS_INVALID_ARGUMENT;
    msg = mismatch;
    prpc__fail(-EINVAL, "%s", mismatch);
  }
  if (st) {
    status_fill(st, code, c->details, msg, NULL, &c->trailers);
    if (msg == mismatch)
      st->local_error = -EINVAL;
    /* Hand over the headers already converted. */
    prpc_metadata_clear(&st->headers);
    st->headers = c->headers;
    memset(&c->headers, 0, sizeof(c->headers));
  }
  prpc__channel_live_remove(c->ch, &c->lc, c->cq);
  call_free(c);
  return code;
}
