/* relay: what epoll_daemon and uv_daemon share. Each SayHello is answered
 * by calling another Greeter (the backend) without blocking: the handler
 * starts the backend call and defers its own, and the backend's reply (or
 * the client's cancel) finishes it. Every handler and callback must run on
 * the daemon's main thread; check_thread() says when one does not. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "relay.h"

/* The backend call's deadline when the client set none: a backend that
 * hangs must not hold resources for ever. */
#define BACKEND_TIMEOUT_MS 10000

prpc_channel *backend;
const char *relay_name = "relay";
pid_t main_tid;
int wrong_thread;

void check_thread(const char *where) {
  if (gettid() != main_tid) {
    fprintf(stderr, "%s: %s ran on thread %d, not on main (%d)\n",
            relay_name, where, (int)gettid(), (int)main_tid);
    wrong_thread = 1;
  }
}

/* a + b in the call's memory, which lives until the call ends. */
static char *concat(prpc_ctx *ctx, const char *a, const char *b) {
  size_t n = strlen(a) + strlen(b) + 1;
  char *s = prpc_ctx_alloc(ctx, n);
  if (s)
    snprintf(s, n, "%s%s", a, b);
  return s;
}

/* A front call waiting for the backend. Not in call memory: the backend
 * may answer after the front call is over (its client went away). */
typedef struct relay {
  prpc_ctx *ctx;                 /* NULL once the front call is over */
  Helloworld__HelloReply *reply; /* the front call's, valid while ctx is */
  prpc_call *backend_call;       /* NULL once the backend has answered */
} relay;

static void front_cancelled(prpc_ctx *ctx, void *user_data) {
  relay *r = user_data;
  /* The client went away, its deadline passed, or the shutdown's grace
   * period is over: end the call now, and the backend's with it (its
   * callback still comes, with CANCELLED). */
  check_thread("on_cancel");
  if (r->backend_call)
    prpc_call_cancel(r->backend_call);
  prpc_ctx_finish(ctx, GRPC_STATUS_CANCELLED);
}

static void front_done(prpc_ctx *ctx, int cancelled, void *user_data) {
  relay *r = user_data;
  (void)ctx;
  (void)cancelled;
  check_thread("on_done");
  if (!r->backend_call)
    free(r);
  else
    r->ctx = NULL; /* backend_done() frees it */
}

static const prpc_ctx_callbacks front_callbacks = {
    .on_cancel = front_cancelled, .on_done = front_done};

static void backend_done(Helloworld__HelloReply *breply,
                         const prpc_status *st, void *user_data) {
  relay *r = user_data;
  grpc_status_code code = st->code;
  check_thread("the backend's callback");
  r->backend_call = NULL;
  if (!r->ctx) { /* nobody waits for this answer any more */
    free(r);
    return;
  }
  if (code == GRPC_STATUS_OK) {
    /* breply is borrowed until we return: copy what the reply keeps. */
    r->reply->message = concat(r->ctx, "relayed: ", breply->message);
    if (!r->reply->message)
      code = GRPC_STATUS_RESOURCE_EXHAUSTED;
  } else {
    /* Pass the backend's failure on, saying where it came from. */
    char *m = concat(r->ctx, "backend: ", st->message ? st->message : "");
    prpc_ctx_set_message(r->ctx, m ? m : "backend failed");
  }
  prpc_ctx_finish(r->ctx, code); /* then front_done() frees r */
}

grpc_status_code say_hello(prpc_ctx *ctx,
                           const Helloworld__HelloRequest *request,
                           Helloworld__HelloReply *reply, void *user_data) {
  prpc_call_opts opts = PRPC_CALL_OPTS_INIT;
  int64_t left = prpc_ctx_time_left_ms(ctx);
  relay *r;
  (void)user_data;
  check_thread("the handler");
  if (left == 0)
    return GRPC_STATUS_DEADLINE_EXCEEDED;
  if (!(r = calloc(1, sizeof(*r))))
    return GRPC_STATUS_RESOURCE_EXHAUSTED;
  r->ctx = ctx;
  r->reply = reply;
  /* The backend gets what is left of the client's deadline. */
  opts.timeout_ms = left > 0 ? left : BACKEND_TIMEOUT_MS;
  if (helloworld__greeter_client__say_hello_async(
          backend, request, &opts, backend_done, r, &r->backend_call) != 0) {
    free(r);
    prpc_ctx_set_message(ctx, prpc_last_error());
    return GRPC_STATUS_INTERNAL;
  }
  prpc_ctx_set_callbacks(ctx, &front_callbacks, r);
  return prpc_ctx_defer(ctx); /* backend_done() finishes it */
}
