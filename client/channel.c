/* Channels: a gRPC core channel, the calls in flight on it, and what its
 * calls share (see call.c for the calls themselves).
 *
 * Blocking calls wait on completion queues of their own, which the calling
 * thread plucks: pooled per channel, so a steady stream of calls allocates
 * none. Asynchronous calls complete on a loop: the application's
 * (prpc_channel_opts.loop) or the one piperpc shares among channels.
 * Methods are registered with the channel once (grpc_channel_register_call)
 * so that gRPC core does not parse the path for every call. */
#include "internal.h"

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

/* The channel object lives until the application has destroyed it and
 * every call on it has finished: one reference for the application and
 * one per call in flight. */
struct prpc_channel {
  grpc_channel *core;
  char *target; /* as the user wrote it, for messages */
  pthread_mutex_t mu;
  atomic_int refs;
  int destroyed;                    /* under mu */
  prpc__live_call live;             /* list head, under mu */
  _Atomic(method_handle *) handles; /* append-only until freed */
  grpc_completion_queue **cqs;      /* idle pluck queues */
  size_t n_cqs, cap_cqs;
  prpc_loop *loop; /* asynchronous calls' loop, from the first one */
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
  if (opts && opts->loop) {
    ch->loop = opts->loop;
    prpc__loop_ref(ch->loop);
  }
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
  prpc__loop_unref(ch->loop); /* after its last call */
  pthread_mutex_destroy(&ch->mu);
  free(ch->target);
  free(ch);
  prpc__core_unref();
}

/* Links a call that is starting; takes a reference on the channel. */
void prpc__channel_live_add(prpc_channel *ch, prpc__live_call *lc,
                            grpc_call *call) {
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

/* Unlinks a finished call, releases its gRPC call (only once it is off
 * the list that prpc_channel_destroy() cancels from), gives back its
 * completion queue if it has one to give, and drops its reference. */
void prpc__channel_live_remove(prpc_channel *ch, prpc__live_call *lc,
                               grpc_completion_queue *cq) {
  pthread_mutex_lock(&ch->mu);
  lc->prev->next = lc->next;
  lc->next->prev = lc->prev;
  pthread_mutex_unlock(&ch->mu);
  grpc_call_unref(lc->call);
  lc->call = NULL;
  if (cq)
    prpc__channel_cq_put(ch, cq);
  channel_unref(ch);
}

void prpc_channel_destroy(prpc_channel *ch) {
  if (!ch)
    return;
  prpc__error_freeze();
  /* Calls still running end now, with CANCELLED; each keeps the channel
   * object until it is finished. */
  pthread_mutex_lock(&ch->mu);
  ch->destroyed = 1;
  for (prpc__live_call *lc = ch->live.next; lc != &ch->live; lc = lc->next)
    grpc_call_cancel_with_status(lc->call, GRPC_STATUS_CANCELLED,
                                 DESTROYED_MESSAGE, NULL);
  pthread_mutex_unlock(&ch->mu);
  channel_unref(ch);
  prpc__error_thaw();
}

grpc_completion_queue *prpc__channel_cq_get(prpc_channel *ch) {
  grpc_completion_queue *cq = NULL;
  pthread_mutex_lock(&ch->mu);
  if (ch->n_cqs > 0)
    cq = ch->cqs[--ch->n_cqs];
  pthread_mutex_unlock(&ch->mu);
  return cq ? cq : grpc_completion_queue_create_for_pluck(NULL);
}

void prpc__channel_cq_put(prpc_channel *ch, grpc_completion_queue *cq) {
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

grpc_call *prpc__channel_call(prpc_channel *ch, const prpc_method_desc *m,
                              grpc_completion_queue *cq,
                              const prpc_call_opts *opts) {
  void *handle = method_get(ch, m);
  if (!handle)
    return NULL;
  return grpc_channel_create_registered_call(
      ch->core, NULL, GRPC_PROPAGATE_DEFAULTS, cq, handle,
      prpc__deadline_from_ms(opts ? opts->timeout_ms : 0), NULL);
}

prpc_loop *prpc__channel_loop(prpc_channel *ch) {
  prpc_loop *l;
  pthread_mutex_lock(&ch->mu);
  if (!ch->loop)
    ch->loop = prpc__loop_default();
  l = ch->loop;
  pthread_mutex_unlock(&ch->mu);
  return l;
}

const char *prpc__channel_target(const prpc_channel *ch) {
  return ch->target;
}
