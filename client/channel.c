/* Channels and client calls.
 *
 * A unary call is one batch of six ops on a completion queue that the
 * calling thread plucks: no other thread is involved on our side. Completion
 * queues are pooled per channel, so a steady stream of calls allocates none.
 * Methods are registered with the channel once (grpc_channel_register_call)
 * so that gRPC core does not parse the path for every call. */
#include "../runtime/internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Registered-call handles, found by the method's path: a method table
 * need not be static (a tool may build one per call, at the same address
 * with another path), so its address alone does not name the method. */
typedef struct method_handle {
  void *handle;
  struct method_handle *next;
  char path[]; /* "/package.Service/Method" */
} method_handle;

/* A call in flight on a channel, so that prpc_channel_destroy() can end
 * it. Linked while the call runs (for a streaming call: until finish). */
typedef struct live_call {
  grpc_call *call;
  struct live_call *prev, *next;
} live_call;

/* The channel object lives until the application has destroyed it and
 * every call on it has finished: one reference for the application and
 * one per call in flight. */
struct prpc_channel {
  grpc_channel *core;
  char *target; /* as the user wrote it, for messages */
  pthread_mutex_t mu;
  atomic_int refs;
  int destroyed;                    /* under mu */
  live_call live;                   /* list head, under mu */
  _Atomic(method_handle *) handles; /* append-only until freed */
  grpc_completion_queue **cqs;      /* idle pluck queues */
  size_t n_cqs, cap_cqs;
};

#define DESTROYED_MESSAGE "the channel was destroyed"

int prpc_channel_create(const char *target, const prpc_channel_opts *opts,
                        prpc_channel **out) {
  prpc__target t;
  grpc_arg args[6];
  grpc_channel_args cargs;
  grpc_compression_algorithm alg = GRPC_COMPRESS_NONE;
  prpc_channel *ch = NULL;
  int rc = prpc__target_parse(target, 0, &t);
  if (rc != 0)
    return rc;
  prpc__clear_error();
  /* From here on an fd:N target is ours: close it on any failure, so that
   * its peer sees the end instead of waiting for a channel that never
   * came. */
  if (!out)
    rc = prpc__fail(-EINVAL, "prpc_channel_create: out is NULL");
  else if (opts && opts->compression &&
           prpc__core_compression(opts->compression, &alg) != 0)
    rc = prpc__fail(-EINVAL, "unknown compression algorithm '%s' (use "
                             "gzip, deflate or identity)",
                    opts->compression);
  else if (opts && opts->tls && t.kind != PRPC__TARGET_TCP)
    rc = prpc__fail(-EINVAL, "TLS is for TCP targets; %s is local", target);
  else if (!(ch = calloc(1, sizeof(*ch))) ||
           !(ch->target = strdup(target))) {
    free(ch);
    rc = prpc__fail(-ENOMEM, "out of memory");
  }
  if (rc != 0) {
    if (t.kind == PRPC__TARGET_FD)
      close(t.fd);
    return rc;
  }
  cargs.num_args =
      opts ? prpc__core_size_args(
                 args, opts->max_send_bytes, opts->max_recv_bytes,
                 opts->authority, opts->compression ? (int)alg : -1,
                 opts->tls ? opts->tls->server_name : NULL)
           : 0;
  cargs.args = args;
  prpc__core_ref();
  ch->core =
      prpc__core_channel_create(&t, &cargs, opts ? opts->tls : NULL, &rc);
  if (!ch->core) {
    int err = rc;
    prpc__core_unref();
    free(ch->target);
    free(ch);
    return err; /* the detail is set */
  }
  pthread_mutex_init(&ch->mu, NULL);
  atomic_init(&ch->handles, NULL);
  atomic_init(&ch->refs, 1);
  ch->live.next = ch->live.prev = &ch->live;
  *out = ch;
  return 0;
}

static void channel_ref(prpc_channel *ch) { atomic_fetch_add(&ch->refs, 1); }

static void channel_unref(prpc_channel *ch) {
  method_handle *h, *next;
  if (atomic_fetch_sub(&ch->refs, 1) != 1)
    return;
  for (size_t i = 0; i < ch->n_cqs; i++)
    prpc__cq_destroy(ch->cqs[i], 1);
  free(ch->cqs);
  for (h = atomic_load(&ch->handles); h; h = next) {
    next = h->next;
    free(h);
  }
  grpc_channel_destroy(ch->core);
  pthread_mutex_destroy(&ch->mu);
  free(ch->target);
  free(ch);
  prpc__core_unref();
}

/* Links a call that is starting; takes a reference on the channel. */
static void live_add(prpc_channel *ch, live_call *lc, grpc_call *call) {
  lc->call = call;
  channel_ref(ch);
  pthread_mutex_lock(&ch->mu);
  lc->next = ch->live.next;
  lc->prev = &ch->live;
  ch->live.next->prev = lc;
  ch->live.next = lc;
  if (ch->destroyed) /* a call started while the channel went away */
    grpc_call_cancel_with_status(call, GRPC_STATUS_CANCELLED,
                                 DESTROYED_MESSAGE, NULL);
  pthread_mutex_unlock(&ch->mu);
}

/* Unlinks a finished call and drops its reference. */
static void live_remove(prpc_channel *ch, live_call *lc) {
  pthread_mutex_lock(&ch->mu);
  lc->prev->next = lc->next;
  lc->next->prev = lc->prev;
  pthread_mutex_unlock(&ch->mu);
  channel_unref(ch);
}

void prpc_channel_destroy(prpc_channel *ch) {
  if (!ch)
    return;
  /* Calls still running end now, with CANCELLED; each keeps the channel
   * object until it is finished. */
  pthread_mutex_lock(&ch->mu);
  ch->destroyed = 1;
  for (live_call *lc = ch->live.next; lc != &ch->live; lc = lc->next)
    grpc_call_cancel_with_status(lc->call, GRPC_STATUS_CANCELLED,
                                 DESTROYED_MESSAGE, NULL);
  pthread_mutex_unlock(&ch->mu);
  channel_unref(ch);
}

static grpc_completion_queue *cq_get(prpc_channel *ch) {
  grpc_completion_queue *cq = NULL;
  pthread_mutex_lock(&ch->mu);
  if (ch->n_cqs > 0)
    cq = ch->cqs[--ch->n_cqs];
  pthread_mutex_unlock(&ch->mu);
  return cq ? cq : grpc_completion_queue_create_for_pluck(NULL);
}

static void cq_put(prpc_channel *ch, grpc_completion_queue *cq) {
  pthread_mutex_lock(&ch->mu);
  if (ch->destroyed) {
    pthread_mutex_unlock(&ch->mu);
    prpc__cq_destroy(cq, 1);
    return;
  }
  if (ch->n_cqs == ch->cap_cqs) {
    size_t cap = ch->cap_cqs ? ch->cap_cqs * 2 : 4;
    grpc_completion_queue **cqs = realloc(ch->cqs, cap * sizeof(*cqs));
    if (!cqs) {
      pthread_mutex_unlock(&ch->mu);
      prpc__cq_destroy(cq, 1);
      return;
    }
    ch->cqs = cqs;
    ch->cap_cqs = cap;
  }
  ch->cqs[ch->n_cqs++] = cq;
  pthread_mutex_unlock(&ch->mu);
}

/* The channel's registered-call handle for a method, created on first use. */
static void *method_get(prpc_channel *ch, const prpc_method_desc *m) {
  method_handle *h;
  if (!m->path)
    return NULL;
  for (h = atomic_load_explicit(&ch->handles, memory_order_acquire); h;
       h = h->next)
    if (strcmp(h->path, m->path) == 0)
      return h->handle;
  pthread_mutex_lock(&ch->mu);
  for (h = atomic_load(&ch->handles); h; h = h->next)
    if (strcmp(h->path, m->path) == 0)
      break;
  if (!h && (h = malloc(sizeof(*h) + strlen(m->path) + 1)) != NULL) {
    strcpy(h->path, m->path);
    h->handle = grpc_channel_register_call(ch->core, m->path, NULL, NULL);
    h->next = atomic_load(&ch->handles);
    atomic_store_explicit(&ch->handles, h, memory_order_release);
  }
  pthread_mutex_unlock(&ch->mu);
  return h ? h->handle : NULL;
}

static grpc_call *call_create(prpc_channel *ch, const prpc_method_desc *m,
                              grpc_completion_queue *cq,
                              const prpc_call_opts *opts) {
  void *handle = method_get(ch, m);
  if (!handle)
    return NULL;
  return grpc_channel_create_registered_call(
      ch->core, NULL, GRPC_PROPAGATE_DEFAULTS, cq, handle,
      prpc__deadline_from_ms(opts ? opts->timeout_ms : 0), NULL);
}

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

static grpc_event pluck(grpc_completion_queue *cq, void *tag) {
  return grpc_completion_queue_pluck(cq, tag,
                                     gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
}

/* Fills *st from what the call ended with. Takes the details slice. */
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

/* gRPC core names the address it failed to connect to only sometimes; make
 * sure an UNAVAILABLE message says which target it was. */
static char *unavailable_message(const prpc_channel *ch, grpc_slice details) {
  char *core_msg = prpc__slice_strdup(details);
  char *msg;
  size_t n;
  if (!core_msg)
    return NULL;
  if (strstr(core_msg, ch->target) ||
      (strncmp(ch->target, "unix:", 5) == 0 &&
       strstr(core_msg, ch->target + 5)))
    return core_msg;
  n = strlen(core_msg) + strlen(ch->target) + 16;
  msg = malloc(n);
  if (msg)
    snprintf(msg, n, "%s (target %s)", core_msg, ch->target);
  free(core_msg);
  return msg;
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

static grpc_status_code unary_call(prpc_channel *ch, const prpc_method_desc *m,
                                   const void *request,
                                   const prpc_call_opts *opts,
                                   const reply_dest *dest, prpc_status *st) {
  char errbuf[200];
  grpc_completion_queue *cq;
  grpc_call *call;
  grpc_op ops[6];
  grpc_metadata *md = NULL;
  size_t n_md = 0;
  grpc_byte_buffer *send_bb, *recv_bb = NULL;
  grpc_metadata_array headers, trailers;
  grpc_status_code code = GRPC_STATUS_UNKNOWN;
  grpc_slice details = grpc_empty_slice();
  const char *local_msg = NULL;
  grpc_event ev;
  live_call lc;

  if (!ch || !m || !request)
    return local_failure(st, GRPC_STATUS_INVALID_ARGUMENT, -EINVAL,
                         "prpc_unary_call: NULL channel, method or request");
  if (m->kind != PRPC_UNARY)
    return local_failure(st, GRPC_STATUS_INVALID_ARGUMENT, -EINVAL,
                         "prpc_unary_call: method is not unary");
  if (!dest_ok(m, dest))
    return local_failure(st, GRPC_STATUS_INVALID_ARGUMENT, -EINVAL,
                         dest_mismatch(dest));
  switch (request_md(opts, &md, &n_md)) {
  case 0:
    break;
  case -EINVAL:
    snprintf(errbuf, sizeof(errbuf), "%s", prpc_last_error());
    return local_failure(st, GRPC_STATUS_INVALID_ARGUMENT, -EINVAL, errbuf);
  default:
    return local_failure(st, GRPC_STATUS_RESOURCE_EXHAUSTED, -ENOMEM,
                         "out of memory");
  }
  send_bb = prpc__encode(m->codec, m->input, request);
  if (!send_bb) {
    free(md);
    return local_failure(st, GRPC_STATUS_INTERNAL, PRPC_EMSG,
                         "failed to encode the request");
  }
  cq = cq_get(ch);
  call = cq ? call_create(ch, m, cq, opts) : NULL;
  if (!call) {
    if (cq)
      cq_put(ch, cq);
    grpc_byte_buffer_destroy(send_bb);
    free(md);
    return local_failure(st, GRPC_STATUS_INTERNAL, PRPC_ECORE,
                         "gRPC core could not create the call");
  }
  grpc_metadata_array_init(&headers);
  grpc_metadata_array_init(&trailers);
  live_add(ch, &lc, call);

  memset(ops, 0, sizeof(ops));
  op_send_initial(&ops[0], opts, md, n_md);
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = send_bb;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &headers;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &recv_bb;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.status = &code;
  ops[5].data.recv_status_on_client.status_details = &details;
  ops[5].data.recv_status_on_client.trailing_metadata = &trailers;

  if (grpc_call_start_batch(call, ops, 6, ops, NULL) != GRPC_CALL_OK) {
    code = GRPC_STATUS_INTERNAL;
    local_msg = "gRPC core refused the call batch";
  } else {
    ev = pluck(cq, ops);
    (void)ev; /* a client batch with RECV_STATUS always completes */
  }

  if (code == GRPC_STATUS_OK) {
    if (!recv_bb) {
      code = GRPC_STATUS_INTERNAL;
      local_msg = "the server sent no reply message";
    } else if ((local_msg = reply_decode(m, recv_bb, dest, errbuf,
                                         sizeof(errbuf)))) {
      code = GRPC_STATUS_INTERNAL;
    }
  }
  if (st) {
    char *unavail = NULL;
    if (code == GRPC_STATUS_UNAVAILABLE && !local_msg)
      local_msg = unavail = unavailable_message(ch, details);
    status_fill(st, code, details, local_msg, &headers, &trailers);
    free(unavail);
  }

  grpc_slice_unref(details);
  grpc_metadata_array_destroy(&headers);
  grpc_metadata_array_destroy(&trailers);
  if (recv_bb)
    grpc_byte_buffer_destroy(recv_bb);
  grpc_byte_buffer_destroy(send_bb);
  grpc_call_unref(call);
  cq_put(ch, cq);
  live_remove(ch, &lc);
  free(md);
  return code;
}

/* ---- streaming calls ---- */

struct prpc_call {
  prpc_channel *ch;
  live_call lc; /* linked into the channel until finish */
  const prpc_method_desc *m;
  grpc_completion_queue *cq;
  grpc_call *call;
  grpc_metadata *md; /* request metadata, alive until the start batch ends */
  grpc_byte_buffer *start_bb;
  int start_tag, read_tag, write_tag, headers_tag, finish_tag;
  int headers_done; /* RECV_INITIAL_METADATA has completed */
  int write_closed; /* SEND_CLOSE_FROM_CLIENT was sent */
  int read_ended;   /* a read saw the end of the stream */
  grpc_metadata_array core_headers;
  prpc_metadata headers;
};

int prpc_call_start(prpc_channel *ch, const prpc_method_desc *m,
                    const void *request, const prpc_call_opts *opts,
                    prpc_call **out) {
  prpc_call *c;
  grpc_op ops[3];
  size_t n_md = 0, n_ops = 1;
  int rc;
  if (!ch || !m || !out)
    return prpc__fail(-EINVAL, "prpc_call_start: NULL argument");
  int one_request = m->kind == PRPC_UNARY || m->kind == PRPC_SERVER_STREAMING;
  if (one_request != (request != NULL))
    return prpc__fail(-EINVAL, "prpc_call_start: pass the request for unary "
                               "and server-streaming methods, and only for "
                               "them");
  c = calloc(1, sizeof(*c));
  if (!c)
    return prpc__fail(-ENOMEM, "out of memory");
  c->ch = ch;
  c->m = m;
  grpc_metadata_array_init(&c->core_headers);
  if ((rc = request_md(opts, &c->md, &n_md)) != 0) {
    free(c);
    return rc;
  }
  if (request) {
    c->start_bb = prpc__encode(m->codec, m->input, request);
    if (!c->start_bb) {
      free(c->md);
      free(c);
      return prpc__fail(PRPC_EMSG, "failed to encode the request");
    }
  }
  c->cq = cq_get(ch);
  c->call = c->cq ? call_create(ch, m, c->cq, opts) : NULL;
  if (!c->call)
    goto core_fail;
  memset(ops, 0, sizeof(ops));
  op_send_initial(&ops[0], opts, c->md, n_md);
  if (request) {
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = c->start_bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    n_ops = 3;
    c->write_closed = 1;
  }
  /* Not waited for here: with wait_for_ready it would block until the
   * server is reachable. finish() collects it. */
  if (grpc_call_start_batch(c->call, ops, n_ops, &c->start_tag, NULL) !=
      GRPC_CALL_OK) {
    grpc_call_unref(c->call);
    goto core_fail;
  }
  live_add(ch, &c->lc, c->call);
  *out = c;
  return 0;

core_fail:
  if (c->cq)
    cq_put(ch, c->cq);
  if (c->start_bb)
    grpc_byte_buffer_destroy(c->start_bb);
  free(c->md);
  free(c);
  return prpc__fail(PRPC_ECORE, "gRPC core could not start the call");
}

/* Runs one batch and waits for it. Returns 1 if it succeeded. */
static int run_batch(prpc_call *c, grpc_op *ops, size_t n, void *tag) {
  if (grpc_call_start_batch(c->call, ops, n, tag, NULL) != GRPC_CALL_OK)
    return 0;
  return pluck(c->cq, tag).success;
}

int prpc_call_write(prpc_call *c, const void *msg) {
  return prpc_call_write_ex(c, msg, 0);
}

int prpc_call_write_ex(prpc_call *c, const void *msg, unsigned flags) {
  grpc_op op;
  grpc_byte_buffer *bb;
  int ok;
  if (c->write_closed)
    return prpc__fail(PRPC_ECLOSED, "write after writes_done");
  bb = prpc__encode(c->m->codec, c->m->input, msg);
  if (!bb)
    return prpc__fail(PRPC_EMSG, "failed to encode the message");
  memset(&op, 0, sizeof(op));
  op.op = GRPC_OP_SEND_MESSAGE;
  op.flags = flags & GRPC_WRITE_NO_COMPRESS;
  op.data.send_message.send_message = bb;
  ok = run_batch(c, &op, 1, &c->write_tag);
  grpc_byte_buffer_destroy(bb);
  return ok ? 0 : prpc__fail(PRPC_ECLOSED, "the call has ended");
}

int prpc_call_writes_done(prpc_call *c) {
  grpc_op op;
  if (c->write_closed)
    return 0;
  memset(&op, 0, sizeof(op));
  op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  c->write_closed = 1;
  return run_batch(c, &op, 1, &c->write_tag)
             ? 0
             : prpc__fail(PRPC_ECLOSED, "the call has ended");
}

static void headers_convert(prpc_call *c) {
  c->headers_done = 1;
  prpc__md_from_core(&c->headers, &c->core_headers);
}

int prpc_call_headers(prpc_call *c, const prpc_metadata **headers) {
  grpc_op op;
  if (!c->headers_done) {
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_INITIAL_METADATA;
    op.data.recv_initial_metadata.recv_initial_metadata = &c->core_headers;
    if (!run_batch(c, &op, 1, &c->headers_tag))
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
  int had_headers = c->headers_done;
  char errbuf[200];
  const char *err;
  if (!dest_ok(c->m, dest))
    return prpc__fail(-EINVAL, "%s: %s", c->m->path, dest_mismatch(dest));
  if (c->read_ended)
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
  run_batch(c, ops, n, &c->read_tag);
  if (!had_headers)
    headers_convert(c);
  if (!bb) {
    c->read_ended = 1;
    return 0;
  }
  err = reply_decode(c->m, bb, dest, errbuf, sizeof(errbuf));
  grpc_byte_buffer_destroy(bb);
  if (err) {
    grpc_call_cancel_with_status(c->call, GRPC_STATUS_INTERNAL, err, NULL);
    c->read_ended = 1;
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
  grpc_status_code code = GRPC_STATUS_UNKNOWN;
  grpc_slice details = grpc_empty_slice();
  grpc_metadata_array trailers;
  grpc_byte_buffer *bb = NULL;
  const char *local_msg = NULL;
  char errbuf[200];
  int want_reply = (dest->into_mode ? dest->into != NULL : dest->out != NULL) &&
                   c->m->kind == PRPC_CLIENT_STREAMING;

  const char *mismatch = NULL;
  if (want_reply && !dest_ok(c->m, dest)) {
    want_reply = 0;
    mismatch = dest_mismatch(dest);
  }
  grpc_metadata_array_init(&trailers);
  memset(ops, 0, sizeof(ops));
  /* A client-streaming call's reply comes after the half-close, so finish
   * sends it. A bidi call is left as it is: its server may answer without
   * waiting for one, and a client that wants one calls writes_done. */
  if (!c->write_closed && c->m->kind == PRPC_CLIENT_STREAMING) {
    ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    c->write_closed = 1;
  }
  if (!c->headers_done) {
    ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[n].data.recv_initial_metadata.recv_initial_metadata = &c->core_headers;
    n++;
  }
  if (want_reply) {
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n].data.recv_message.recv_message = &bb;
    n++;
  }
  ops[n].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[n].data.recv_status_on_client.status = &code;
  ops[n].data.recv_status_on_client.status_details = &details;
  ops[n].data.recv_status_on_client.trailing_metadata = &trailers;
  n++;
  if (grpc_call_start_batch(c->call, ops, n, &c->finish_tag, NULL) !=
      GRPC_CALL_OK) {
    code = GRPC_STATUS_INTERNAL;
    local_msg = "gRPC core refused the finish batch";
  } else {
    pluck(c->cq, &c->finish_tag);
  }
  pluck(c->cq, &c->start_tag);
  if (!c->headers_done)
    headers_convert(c);

  if (want_reply && code == GRPC_STATUS_OK) {
    if (!bb) {
      code = GRPC_STATUS_INTERNAL;
      local_msg = "the server sent no reply message";
    } else if ((local_msg = reply_decode(c->m, bb, dest, errbuf,
                                         sizeof(errbuf)))) {
      code = GRPC_STATUS_INTERNAL;
    }
  } else if (mismatch && code == GRPC_STATUS_OK) {
    code = GRPC_STATUS_INVALID_ARGUMENT;
    local_msg = mismatch;
  }
  if (st) {
    char *unavail = NULL;
    if (code == GRPC_STATUS_UNAVAILABLE && !local_msg)
      local_msg = unavail = unavailable_message(c->ch, details);
    status_fill(st, code, details, local_msg, NULL, &trailers);
    if (mismatch && local_msg == mismatch)
      st->local_error = -EINVAL;
    free(unavail);
    /* Hand over the headers we already converted. */
    prpc_metadata_clear(&st->headers);
    st->headers = c->headers;
    memset(&c->headers, 0, sizeof(c->headers));
  }
  if (bb)
    grpc_byte_buffer_destroy(bb);
  grpc_slice_unref(details);
  grpc_metadata_array_destroy(&trailers);
  grpc_metadata_array_destroy(&c->core_headers);
  prpc_metadata_clear(&c->headers);
  if (c->start_bb)
    grpc_byte_buffer_destroy(c->start_bb);
  grpc_call_unref(c->call);
  cq_put(c->ch, c->cq);
  live_remove(c->ch, &c->lc);
  free(c->md);
  free(c);
  return code;
}
