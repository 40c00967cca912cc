/* New calls, from gRPC core to their handlers.
 *
 * For every method of a core server (the main one, and the one that
 * answers denied peers, which has none) a few calls are requested from
 * gRPC core at all times, on the server's loop. When one is matched, the
 * thread that polled it asks for the next one and serves the call: a
 * unary handler, or an asynchronous streaming one, runs right there; a
 * blocking streaming handler, which holds a thread until it returns, goes
 * to the pool, whose threads are bounded (max_stream_threads). */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A pool thread with nothing to do for this long exits. */
#define POOL_IDLE_S 10

static void on_match(prpc__op *op, int ok);

/* Asks gRPC core for the next call of method me (NULL: any method it does
 * not know) on core server cs. Returns 0 or -1. */
static int request(prpc_server *srv, prpc__core_srv *cs,
                   const method_entry *me) {
  prpc_ctx *ctx = prpc__ctx_get(srv);
  prpc__ctx_slot slot;
  grpc_call_error err;
  grpc_completion_queue *cq = prpc__loop_cq(srv->loop);
  if (!ctx) {
    prpc__log(PRPC__LOG_ERROR, "out of memory requesting a call");
    return -1;
  }
  slot.cs = cs;
  slot.me = me;
  prpc__ctx_set_slot(ctx, &slot);
  slot.match_op->fn = on_match;
  PRPC__TSAN_RELEASE(slot.match_op);
  if (me) {
    int payload = me->m->kind == PRPC_UNARY ||
                  me->m->kind == PRPC_SERVER_STREAMING;
    err = grpc_server_request_registered_call(
        cs->core, cs->handles[me - srv->methods], slot.call, slot.deadline,
        slot.md, payload ? slot.payload : NULL, cq, cq, slot.match_op);
  } else {
    err = grpc_server_request_call(cs->core, slot.call, slot.details, slot.md,
                                   cq, cq, slot.match_op);
  }
  if (err != GRPC_CALL_OK) {
    if (!atomic_load(&srv->stopping))
      prpc__log(PRPC__LOG_ERROR, "cannot request calls from gRPC core (%d)",
                (int)err);
    prpc__ctx_put(ctx);
    return -1;
  }
  return 0;
}

/* The context's match_op is the first member of prpc_ctx: the tag gRPC
 * gives back is the context. */
static void on_match(prpc__op *op, int ok) {
  prpc_ctx *ctx = (prpc_ctx *)op;
  prpc__ctx_slot slot;
  if (!ok) {
    /* The server is shutting down: this request will never match. */
    prpc__ctx_put(ctx);
    return;
  }
  memset(&slot, 0, sizeof(slot));
  prpc__ctx_slot_get(ctx, &slot);
  if (!atomic_load(&slot.srv->stopping))
    request(slot.srv, slot.cs, slot.me);
  if (prpc__ctx_serve(ctx) && prpc__pool_run(slot.srv->pool, ctx) != 0) {
    char text[128];
    snprintf(text, sizeof(text), "the server is running %d streaming calls, "
                                 "its limit (max_stream_threads)",
             slot.srv->opts.max_stream_threads);
    if (prpc__rate_ok(&slot.srv->stream_limit_log))
      prpc__log_call(PRPC__LOG_WARN, prpc_ctx_method(ctx), prpc_ctx_peer(ctx),
                     "%s", text);
    prpc__ctx_refuse(ctx, GRPC_STATUS_RESOURCE_EXHAUSTED, text);
  }
}

void prpc__dispatch_request_again(prpc_server *srv, prpc__core_srv *cs,
                                  const method_entry *me) {
  request(srv, cs, me);
}

int prpc__dispatch_register(prpc_server *srv, prpc__core_srv *cs) {
  if (cs->kind == CORE_DENY || srv->n_methods == 0)
    return 0;
  if (!(cs->handles = calloc(srv->n_methods, sizeof(*cs->handles))))
    return prpc__fail(-ENOMEM, "out of memory");
  for (size_t i = 0; i < srv->n_methods; i++) {
    const prpc_method_desc *m = srv->methods[i].m;
    int payload = m->kind == PRPC_UNARY || m->kind == PRPC_SERVER_STREAMING;
    cs->handles[i] = grpc_server_register_method(
        cs->core, m->path, NULL,
        payload ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER
                : GRPC_SRM_PAYLOAD_NONE,
        0);
    if (!cs->handles[i])
      return prpc__fail(PRPC_ECORE, "gRPC core refused to register %s",
                        m->path);
  }
  return 0;
}

int prpc__dispatch_start(prpc_server *srv, prpc__core_srv *cs) {
  int ok = 0;
  if (cs->kind == CORE_MAIN)
    for (size_t m = 0; m < srv->n_methods; m++)
      for (int k = 0; k < PRPC__REQUESTS_PER_METHOD; k++)
        ok += request(srv, cs, &srv->methods[m]) == 0;
  for (int k = 0; k < PRPC__REQUESTS_PER_METHOD / 2; k++)
    ok += request(srv, cs, NULL) == 0;
  return ok > 0 ? 0 : prpc__fail(PRPC_ECORE, "cannot request calls from "
                                             "gRPC core");
}

/* ---- the pool of blocking streaming handlers ---- */

typedef struct job {
  struct job *next;
  prpc_ctx *ctx;
} job;

struct prpc__pool {
  pthread_mutex_t mu;
  pthread_cond_t cv;   /* work for idle threads */
  pthread_cond_t done; /* a thread exited */
  int max, threads, idle, stopping;
  job *head, *tail;
};

static void *pool_main(void *arg) {
  prpc__pool *p = arg;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->head && !p->stopping) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_sec += POOL_IDLE_S;
      p->idle++;
      int rc = pthread_cond_timedwait(&p->cv, &p->mu, &ts);
      p->idle--;
      if (rc == ETIMEDOUT && !p->head)
        goto out;
    }
    if (!p->head)
      break; /* stopping */
    job *j = p->head;
    p->head = j->next;
    if (!p->head)
      p->tail = NULL;
    pthread_mutex_unlock(&p->mu);
    prpc__ctx_run_blocking(j->ctx);
    free(j);
    pthread_mutex_lock(&p->mu);
  }
out:
  p->threads--;
  pthread_cond_broadcast(&p->done);
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

int prpc__pool_create(int max, prpc__pool **out) {
  prpc__pool *p = calloc(1, sizeof(*p));
  if (!p)
    return prpc__fail(-ENOMEM, "out of memory");
  p->max = max;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  pthread_cond_init(&p->done, NULL);
  *out = p;
  return 0;
}

int prpc__pool_run(prpc__pool *p, prpc_ctx *ctx) {
  job *j = malloc(sizeof(*j));
  int rc = 0;
  if (!j)
    return -1;
  j->next = NULL;
  j->ctx = ctx;
  pthread_mutex_lock(&p->mu);
  /* Each job holds a thread until it returns: an idle thread, or a new one
   * while there are fewer than max. */
  int queued = 0;
  for (job *q = p->head; q; q = q->next)
    queued++;
  if (p->idle > queued) {
    /* one of the idle threads takes it */
  } else if (p->threads < p->max) {
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &attr, pool_main, p) == 0)
      p->threads++;
    else
      rc = -1;
    pthread_attr_destroy(&attr);
  } else {
    rc = -1;
  }
  if (rc == 0) {
    if (p->tail)
      p->tail->next = j;
    else
      p->head = j;
    p->tail = j;
    pthread_cond_signal(&p->cv);
  }
  pthread_mutex_unlock(&p->mu);
  if (rc != 0)
    free(j);
  return rc;
}

void prpc__pool_destroy(prpc__pool *p) {
  if (!p)
    return;
  pthread_mutex_lock(&p->mu);
  p->stopping = 1;
  pthread_cond_broadcast(&p->cv);
  while (p->threads > 0)
    pthread_cond_wait(&p->done, &p->mu);
  pthread_mutex_unlock(&p->mu);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  pthread_cond_destroy(&p->done);
  free(p);
}
