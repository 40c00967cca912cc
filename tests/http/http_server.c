/* http_server: a Greeter for the HTTP/JSON front end's tests, with
 * http_json on and the options the tests turn.
 *   http_server --listen ADDR [--allow WHO] [--socket-mode OCTAL]
 *               [--max-connections N] [--idle-timeout-ms N]
 *               [--handshake-timeout-ms N] [--max-recv-bytes N]
 * SayHello answers by the name it is given:
 *   "uid"       "uid U": the caller's uid (prpc_ctx_peer_cred)
 *   "count"     "calls N": the calls this server has run before this one
 *   "sleep"     waits until the call is cancelled (10 s at most)
 *   "slow"      "slow done" after 1 s, unless the call is cancelled
 *   "deadline"  "deadline N": milliseconds left (-1: none)
 *   "meta"      "x-echo=V": request metadata x-echo, also sent back as
 *               header x-echo and trailer x-echo-trailer
 *   "fail"      ALREADY_EXISTS with message "exists"
 *   "conns"     "connections N": prpc_server_stats()'s open connections
 *   "active"    "active N": prpc_server_stats()'s calls in flight (this
 *               one too)
 *   "big"       a message of 4000 bytes
 *   "gzip"      "Hello gzip", with gzip asked for the response
 *   "later"     deferred: "later done" from another thread after 50 ms
 *   "hold"      deferred and never answered: ends with its cancel
 *               (on_done), or at shutdown with UNAVAILABLE "held: shutting
 *               down" (on_shutdown)
 *   "late"      deferred with no callbacks; another thread waits until
 *               the call is cancelled, then sets the held calls'
 *               callbacks (the call ends by itself: on_done)
 *   "events N"  waits (5 s at most) until N held calls are over, then
 *               "cancel C done D cancelled K": the callbacks they had
 *   otherwise   "Hello NAME"
 * More options: [--threads N] [--max-threads N] [--grace-ms N]
 *               [--max-send-bytes N].
 * Prints "ready" once it serves; stops on SIGINT or SIGTERM. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "helloworld.prpc.h"

static atomic_int calls;
static prpc_server *_Atomic the_server;

/* What the held calls were told. */
static pthread_mutex_t held_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t held_cv = PTHREAD_COND_INITIALIZER;
static int held_cancel, held_done, held_cancelled;

static void held_on_cancel(prpc_ctx *ctx, void *user) {
  (void)ctx;
  (void)user;
  pthread_mutex_lock(&held_mu);
  held_cancel++;
  pthread_mutex_unlock(&held_mu);
}

static void held_on_shutdown(prpc_ctx *ctx, void *user) {
  (void)user;
  prpc_ctx_set_message(ctx, "held: shutting down");
  prpc_ctx_finish(ctx, GRPC_STATUS_UNAVAILABLE);
}

static void held_on_done(prpc_ctx *ctx, int cancelled, void *user) {
  (void)ctx;
  (void)user;
  pthread_mutex_lock(&held_mu);
  held_done++;
  held_cancelled += cancelled != 0;
  pthread_cond_broadcast(&held_cv);
  pthread_mutex_unlock(&held_mu);
}

static const prpc_ctx_callbacks held_callbacks = {
    .on_cancel = held_on_cancel,
    .on_shutdown = held_on_shutdown,
    .on_done = held_on_done};

/* "late": polls for the cancel under held_mu, which on_cancel takes (a
 * callback run inside prpc_ctx_is_cancelled() would deadlock here), then
 * sets the callbacks: the call is cancelled already, so on_cancel is told
 * and the call ends by itself (on_done). */
static void *callbacks_late(void *arg) {
  prpc_ctx *ctx = arg;
  for (;;) {
    pthread_mutex_lock(&held_mu);
    int cancelled = prpc_ctx_is_cancelled(ctx);
    pthread_mutex_unlock(&held_mu);
    if (cancelled)
      break;
    nanosleep(&(struct timespec){0, 10000000}, NULL);
  }
  prpc_ctx_set_callbacks(ctx, &held_callbacks, NULL);
  return NULL;
}

typedef struct later {
  prpc_ctx *ctx;
  Helloworld__HelloReply *reply;
} later;

static void *finish_later(void *arg) {
  later *l = arg;
  nanosleep(&(struct timespec){0, 50000000}, NULL);
  l->reply->message = prpc_ctx_strdup(l->ctx, "later done");
  prpc_ctx_finish(l->ctx, GRPC_STATUS_OK);
  free(l);
  return NULL;
}

static grpc_status_code say_hello(prpc_ctx *ctx,
                                  const Helloworld__HelloRequest *req,
                                  Helloworld__HelloReply *reply,
                                  void *user_data) {
  const char *name = req->name ? req->name : "";
  char buf[512];
  int before = atomic_fetch_add(&calls, 1);
  (void)user_data;
  if (strcmp(name, "uid") == 0) {
    int64_t uid = -1;
    prpc_ctx_peer_cred(ctx, NULL, &uid, NULL);
    snprintf(buf, sizeof(buf), "uid %lld", (long long)uid);
  } else if (strcmp(name, "count") == 0) {
    snprintf(buf, sizeof(buf), "calls %d", before);
  } else if (strcmp(name, "sleep") == 0) {
    for (int i = 0; i < 1000 && !prpc_ctx_is_cancelled(ctx); i++)
      nanosleep(&(struct timespec){0, 10000000}, NULL);
    /* The client's own timer may fire after this status reaches it. */
    if (prpc_ctx_time_left_ms(ctx) == 0)
      return GRPC_STATUS_DEADLINE_EXCEEDED;
    snprintf(buf, sizeof(buf), "slept");
  } else if (strcmp(name, "slow") == 0) {
    for (int i = 0; i < 100; i++) {
      if (prpc_ctx_is_cancelled(ctx)) {
        prpc_ctx_set_message(ctx, "slow: cancelled");
        return GRPC_STATUS_CANCELLED;
      }
      nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    snprintf(buf, sizeof(buf), "slow done");
  } else if (strcmp(name, "deadline") == 0) {
    snprintf(buf, sizeof(buf), "deadline %s",
             prpc_ctx_time_left_ms(ctx) < 0 ? "none" : "set");
  } else if (strcmp(name, "meta") == 0) {
    const prpc_md *e = prpc_metadata_get(prpc_ctx_metadata(ctx), "x-echo");
    const char *v = e ? e->value : "";
    prpc_ctx_add_header(ctx, "x-echo", v, strlen(v));
    prpc_ctx_add_trailer(ctx, "x-echo-trailer", v, strlen(v));
    snprintf(buf, sizeof(buf), "x-echo=%s", v);
  } else if (strcmp(name, "conns") == 0 || strcmp(name, "active") == 0) {
    prpc_server_stats st;
    if (prpc_server_get_stats(atomic_load(&the_server), &st) != 0)
      return GRPC_STATUS_INTERNAL;
    if (name[0] == 'c')
      snprintf(buf, sizeof(buf), "connections %d", st.connections);
    else
      snprintf(buf, sizeof(buf), "active %d", st.calls_active);
  } else if (strcmp(name, "big") == 0) {
    char *m = prpc_ctx_alloc(ctx, 4001);
    if (!m)
      return GRPC_STATUS_RESOURCE_EXHAUSTED;
    memset(m, 'b', 4000);
    m[4000] = '\0';
    reply->message = m;
    return GRPC_STATUS_OK;
  } else if (strcmp(name, "gzip") == 0) {
    if (prpc_ctx_set_compression(ctx, "gzip") != 0)
      return GRPC_STATUS_INTERNAL;
    snprintf(buf, sizeof(buf), "Hello gzip");
  } else if (strcmp(name, "later") == 0) {
    later *l = malloc(sizeof(*l));
    pthread_t t;
    if (!l)
      return GRPC_STATUS_RESOURCE_EXHAUSTED;
    l->ctx = ctx;
    l->reply = reply;
    if (pthread_create(&t, NULL, finish_later, l) != 0) {
      free(l);
      return GRPC_STATUS_RESOURCE_EXHAUSTED;
    }
    pthread_detach(t);
    return prpc_ctx_defer(ctx);
  } else if (strcmp(name, "late") == 0) {
    pthread_t t;
    if (pthread_create(&t, NULL, callbacks_late, ctx) != 0)
      return GRPC_STATUS_RESOURCE_EXHAUSTED;
    pthread_detach(t);
    return prpc_ctx_defer(ctx);
  } else if (strcmp(name, "hold") == 0) {
    if (prpc_ctx_set_callbacks(ctx, &held_callbacks, NULL) != 0)
      return GRPC_STATUS_INTERNAL;
    return prpc_ctx_defer(ctx);
  } else if (strncmp(name, "events ", 7) == 0) {
    int want = atoi(name + 7);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    pthread_mutex_lock(&held_mu);
    while (held_done < want &&
           pthread_cond_timedwait(&held_cv, &held_mu, &until) == 0)
      ;
    snprintf(buf, sizeof(buf), "cancel %d done %d cancelled %d", held_cancel,
             held_done, held_cancelled);
    pthread_mutex_unlock(&held_mu);
  } else if (strcmp(name, "fail") == 0) {
    prpc_ctx_set_message(ctx, "exists");
    return GRPC_STATUS_ALREADY_EXISTS;
  } else {
    snprintf(buf, sizeof(buf), "Hello %s", name);
  }
  reply->message = prpc_ctx_strdup(ctx, buf);
  return reply->message ? GRPC_STATUS_OK : GRPC_STATUS_RESOURCE_EXHAUSTED;
}

int main(int argc, char **argv) {
  static const Helloworld__GreeterServer impl = {.say_hello = say_hello};
  prpc_server_opts opts = PRPC_SERVER_OPTS_INIT;
  prpc_server *server;
  sigset_t sigs;
  int rc;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigprocmask(SIG_BLOCK, &sigs, NULL); /* until prpc_server_run() */
  opts.http_json = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *a = argv[i], *v = argv[i + 1];
    if (strcmp(a, "--socket-mode") == 0)
      opts.socket_mode = (unsigned)strtoul(v, NULL, 8);
    else if (strcmp(a, "--max-connections") == 0)
      opts.max_connections = atoi(v);
    else if (strcmp(a, "--idle-timeout-ms") == 0)
      opts.idle_timeout_ms = atoi(v);
    else if (strcmp(a, "--handshake-timeout-ms") == 0)
      opts.handshake_timeout_ms = atoi(v);
    else if (strcmp(a, "--max-recv-bytes") == 0)
      opts.max_recv_bytes = atoi(v);
    else if (strcmp(a, "--max-send-bytes") == 0)
      opts.max_send_bytes = atoi(v);
    else if (strcmp(a, "--threads") == 0)
      opts.threads = atoi(v);
    else if (strcmp(a, "--max-threads") == 0)
      opts.max_threads = atoi(v);
    else if (strcmp(a, "--grace-ms") == 0)
      opts.grace_ms = atoi(v);
  }
  if (prpc_server_create(&opts, &server) != 0) {
    fprintf(stderr, "http_server: %s\n", prpc_last_error());
    return 1;
  }
  atomic_store(&the_server, server);
  for (int i = 1; i + 1 < argc; i += 2) {
    rc = 0;
    if (strcmp(argv[i], "--listen") == 0)
      rc = prpc_server_add_listener(server, argv[i + 1], NULL);
    else if (strcmp(argv[i], "--allow") == 0)
      rc = prpc_server_add_rule(server, 1, argv[i + 1]);
    if (rc != 0) {
      fprintf(stderr, "http_server: %s\n", prpc_last_error());
      prpc_server_destroy(server);
      return 1;
    }
  }
  if (helloworld__greeter_server__register(server, &impl, NULL) != 0 ||
      prpc_server_enable_health(server) != 0 ||
      prpc_server_start(server) != 0) {
    fprintf(stderr, "http_server: %s\n", prpc_last_error());
    prpc_server_destroy(server);
    return 1;
  }
  printf("ready\n");
  fflush(stdout);
  rc = prpc_server_run(server);
  prpc_server_destroy(server);
  return rc == 0 ? 0 : 1;
}
