/* epoll_daemon: a single-threaded daemon built around its own epoll loop.
 * It serves helloworld.Greeter and answers each SayHello by calling another
 * Greeter (the backend) without blocking: the handler starts the backend
 * call and defers its own, and the backend's reply finishes it. Every
 * handler and callback runs on the main thread, inside prpc_loop_process(),
 * so the daemon needs no locks however many calls are in flight.
 *   epoll_daemon --listen TARGET --backend TARGET
 * Prints "epoll_daemon: ready" once it serves. SIGINT or SIGTERM stop it
 * gracefully: calls in flight are answered, then it exits 0. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "helloworld.prpc.h"

/* The backend call's deadline when the client set none: a backend that
 * hangs must not hold resources for ever. */
#define BACKEND_TIMEOUT_MS 10000

static prpc_channel *backend;
static pid_t main_tid;
static int wrong_thread;

static void check_thread(const char *where) {
  if (gettid() != main_tid) {
    fprintf(stderr, "epoll_daemon: %s ran on thread %d, not on main (%d)\n",
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

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void watch(int ep, int fd) {
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
  if (fd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
    die("epoll_daemon: epoll_ctl");
}

/* Runs the loop until SIGINT or SIGTERM, then stops the server. */
static void serve(prpc_loop *loop, int sfd) {
  int ep = epoll_create1(EPOLL_CLOEXEC), lfd = prpc_loop_fd(loop);
  if (ep < 0)
    die("epoll_daemon: epoll_create1");
  watch(ep, lfd);
  watch(ep, sfd);
  printf("epoll_daemon: ready\n");
  fflush(stdout);
  for (;;) {
    struct epoll_event evs[2];
    int n = epoll_wait(ep, evs, 2, -1);
    if (n < 0 && errno != EINTR)
      die("epoll_daemon: epoll_wait");
    for (int i = 0; i < n; i++) {
      struct signalfd_siginfo si;
      if (evs[i].data.fd == lfd) {
        prpc_loop_process(loop); /* handlers and callbacks run here */
      } else if (read(sfd, &si, sizeof(si)) > 0) {
        /* Stop accepting, then drain: prpc_server_wait() runs this loop
         * until the calls in flight (and their backend calls) are over,
         * for up to the grace period. */
        prpc_server_shutdown(server);
        prpc_server_wait(server);
        close(ep);
        return;
      }
    }
  }
}

int main(int argc, char **argv) {
  static const Helloworld__GreeterServer impl = {.say_hello = say_hello};
  const char *listen_at = NULL, *backend_at = NULL;
  prpc_server_opts opts = PRPC_SERVER_OPTS_INIT;
  prpc_channel_opts copts = PRPC_CHANNEL_OPTS_INIT;
  prpc_loop *loop = NULL;
  int sfd, rc = 0;
  sigset_t sigs;

  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--listen") == 0)
      listen_at = argv[i + 1];
    else if (strcmp(argv[i], "--backend") == 0)
      backend_at = argv[i + 1];
  }
  if (!listen_at || !backend_at || argc != 5) {
    fprintf(stderr, "usage: epoll_daemon --listen TARGET --backend TARGET\n");
    return 2;
  }
  /* Signals come through a signalfd: block them before any thread starts
   * (piperpc's, gRPC's), so that every thread inherits the mask. */
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigprocmask(SIG_BLOCK, &sigs, NULL);
  sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
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
    fprintf(stderr, "epoll_daemon: %s\n", prpc_last_error());
    rc = 1;
  } else {
    serve(loop, sfd);
  }
  prpc_server_destroy(server);
  prpc_channel_destroy(backend);
  prpc_loop_destroy(loop);
  if (wrong_thread)
    rc = 1;
  return rc;
}
