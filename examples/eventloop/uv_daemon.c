/* uv_daemon: epoll_daemon.c with libuv: a single-threaded daemon whose
 * libuv loop serves helloworld.Greeter and answers each SayHello by calling
 * another Greeter (the backend) without blocking. The handler starts the
 * backend call and defers its own; the backend's reply finishes it. Every
 * handler and callback runs on the main thread, inside prpc_loop_process(),
 * called when libuv sees prpc_loop_fd() readable.
 *   uv_daemon --listen TARGET --backend TARGET
 * Prints "uv_daemon: ready" once it serves. SIGINT or SIGTERM stop it
 * gracefully: calls in flight are answered, then it exits 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "helloworld.prpc.h"

/* The backend call's deadline when the client set none: a backend that
 * hangs must not hold resources for ever. */
#define BACKEND_TIMEOUT_MS 10000

static prpc_channel *backend;
static pid_t main_tid;
static int wrong_thread;

static void check_thread(const char *where) {
  if (gettid() != main_tid) {
    fprintf(stderr, "uv_daemon: %s ran on thread %d, not on main (%d)\n",
            where, (int)gettid(), (int)main_tid);
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

static grpc_status_code say_hello(prpc_ctx *ctx,
                                  const Helloworld__HelloRequest *request,
                                  Helloworld__HelloReply *reply,
                                  void *user_data) {
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

static prpc_server *server;
static uv_poll_t loop_watch;
static uv_signal_t sigint_watch, sigterm_watch;

static void on_loop_fd(uv_poll_t *w, int status, int events) {
  (void)status;
  (void)events;
  prpc_loop_process(w->data); /* handlers and callbacks run here */
}

static void on_signal(uv_signal_t *w, int signum) {
  (void)w;
  (void)signum;
  /* Stop accepting, then drain: prpc_server_wait() runs piperpc's loop
   * until the calls in flight (and their backend calls) are over, for up
   * to the grace period. Then nothing is left to watch: uv_run() returns. */
  prpc_server_shutdown(server);
  prpc_server_wait(server);
  uv_close((uv_handle_t *)&loop_watch, NULL);
  uv_close((uv_handle_t *)&sigint_watch, NULL);
  uv_close((uv_handle_t *)&sigterm_watch, NULL);
}

int main(int argc, char **argv) {
  static const Helloworld__GreeterServer impl = {.say_hello = say_hello};
  const char *listen_at = NULL, *backend_at = NULL;
  prpc_server_opts opts = PRPC_SERVER_OPTS_INIT;
  prpc_channel_opts copts = PRPC_CHANNEL_OPTS_INIT;
  prpc_loop *loop = NULL;
  uv_loop_t *uv = uv_default_loop();
  int rc = 0;

  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--listen") == 0)
      listen_at = argv[i + 1];
    else if (strcmp(argv[i], "--backend") == 0)
      backend_at = argv[i + 1];
  }
  if (!listen_at || !backend_at || argc != 5) {
    fprintf(stderr, "usage: uv_daemon --listen TARGET --backend TARGET\n");
    return 2;
  }
  main_tid = gettid();

  /* One loop for the server and the channel: their handlers and callbacks
   * all run in prpc_loop_process(), on this thread. */
  if (prpc_loop_create(&loop) == 0) {
    copts.loop = loop;
    opts.loop = loop;
  }
  if (!loop || prpc_channel_create(backend_at, &copts, &backend) != 0 ||
      prpc_server_create(&opts, &server) != 0 ||
      prpc_server_add_listener(server, listen_at, NULL) != 0 ||
      helloworld__greeter_server__register_async(server, &impl, NULL) != 0 ||
      prpc_server_start(server) != 0) {
    fprintf(stderr, "uv_daemon: %s\n", prpc_last_error());
    rc = 1;
  } else {
    uv_poll_init(uv, &loop_watch, prpc_loop_fd(loop));
    loop_watch.data = loop;
    uv_poll_start(&loop_watch, UV_READABLE, on_loop_fd);
    uv_signal_init(uv, &sigint_watch);
    uv_signal_start(&sigint_watch, on_signal, SIGINT);
    uv_signal_init(uv, &sigterm_watch);
    uv_signal_start(&sigterm_watch, on_signal, SIGTERM);
    printf("uv_daemon: ready\n");
    fflush(stdout);
    uv_run(uv, UV_RUN_DEFAULT);
  }
  prpc_server_destroy(server);
  prpc_channel_destroy(backend);
  prpc_loop_destroy(loop);
  uv_loop_close(uv);
  if (wrong_thread)
    rc = 1;
  return rc;
}
