/* fault_server: the fault, load and soak tests' server (tests/fault/fault.proto).
 *   fault_server --listen ADDR [--listen ADDR ...] [--threads N]
 *                [--grace-ms N] [--idle-timeout-ms N] [--max-connections N]
 * Prints "port N" for each TCP listener, then "ready" once it serves; stops (draining) on SIGINT or SIGTERM and
 * exits 0, so that a leak checker wrapped around it reports at exit. */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fault.prpc.h"

static prpc_server *server;
static atomic_int running;
static atomic_llong started, cancelled, succeeded;

static void enter(void) {
  atomic_fetch_add(&running, 1);
  atomic_fetch_add(&started, 1);
}

static grpc_status_code leave(grpc_status_code code) {
  if (code == GRPC_STATUS_OK)
    atomic_fetch_add(&succeeded, 1);
  else if (code == GRPC_STATUS_CANCELLED)
    atomic_fetch_add(&cancelled, 1);
  atomic_fetch_sub(&running, 1);
  return code;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Waits ms, polling for cancellation. Returns 0, or -1 when cancelled. */
static int wait_ms(prpc_ctx *ctx, int ms) {
  double end = now_ms() + ms;
  for (;;) {
    if (prpc_ctx_is_cancelled(ctx))
      return -1;
    double left = end - now_ms();
    if (left <= 0)
      return 0;
    struct timespec ts = {0, (long)((left < 10 ? left : 10) * 1e6)};
    nanosleep(&ts, NULL);
  }
}

static grpc_status_code unary(prpc_ctx *ctx, const Fault__Req *req,
                              Fault__Rep *rep, void *ud) {
  (void)ud;
  enter();
  if (wait_ms(ctx, req->sleep_ms) != 0)
    return leave(GRPC_STATUS_CANCELLED);
  rep->text = prpc_ctx_strdup(ctx, req->text);
  rep->n = req->sleep_ms;
  return leave(GRPC_STATUS_OK);
}

static grpc_status_code down(prpc_ctx *ctx, const Fault__Req *req,
                             void *ud) {
  (void)ud;
  enter();
  for (int32_t i = 0; req->count < 0 || i < req->count; i++) {
    Fault__Rep rep = FAULT__REP__INIT;
    if (wait_ms(ctx, req->sleep_ms) != 0)
      return leave(GRPC_STATUS_CANCELLED);
    rep.text = req->text;
    rep.n = i;
    if (fault__fault_server__down_write(ctx, &rep) != 0)
      return leave(GRPC_STATUS_CANCELLED);
  }
  return leave(GRPC_STATUS_OK);
}

static grpc_status_code up(prpc_ctx *ctx, Fault__Rep *rep, void *ud) {
  Fault__Req *in;
  char *joined = NULL;
  size_t len = 0;
  int rc, n = 0, sleep = 0;
  (void)ud;
  enter();
  while ((rc = fault__fault_server__up_read(ctx, &in)) == 1) {
    size_t add = strlen(in->text);
    char *j = realloc(joined, len + add + 1);
    if (!j) {
      protobuf_c_message_free_unpacked(&in->base, NULL);
      free(joined);
      return leave(GRPC_STATUS_RESOURCE_EXHAUSTED);
    }
    joined = j;
    memcpy(joined + len, in->text, add + 1);
    len += add;
    if (n++ == 0)
      sleep = in->sleep_ms;
    protobuf_c_message_free_unpacked(&in->base, NULL);
  }
  if (rc != 0 || wait_ms(ctx, sleep) != 0) {
    free(joined);
    return leave(GRPC_STATUS_CANCELLED);
  }
  rep->text = prpc_ctx_strdup(ctx, joined ? joined : "");
  rep->n = n;
  free(joined);
  return leave(GRPC_STATUS_OK);
}

static grpc_status_code both(prpc_ctx *ctx, void *ud) {
  Fault__Req *in;
  int rc, n = 0;
  (void)ud;
  enter();
  while ((rc = fault__fault_server__both_read(ctx, &in)) == 1) {
    Fault__Rep rep = FAULT__REP__INIT;
    int w = wait_ms(ctx, in->sleep_ms);
    rep.text = in->text;
    rep.n = n++;
    if (w == 0)
      w = fault__fault_server__both_write(ctx, &rep);
    protobuf_c_message_free_unpacked(&in->base, NULL);
    if (w != 0)
      return leave(GRPC_STATUS_CANCELLED);
  }
  return leave(rc == 0 ? GRPC_STATUS_OK : GRPC_STATUS_CANCELLED);
}

static grpc_status_code stats(prpc_ctx *ctx, const Fault__StatsReq *req,
                              Fault__StatsRep *rep, void *ud) {
  prpc_server_stats st;
  (void)ctx;
  (void)req;
  (void)ud;
  if (prpc_server_get_stats(server, &st) != 0)
    return GRPC_STATUS_INTERNAL;
  rep->calls_active = st.calls_active - 1; /* not this Stats call */
  rep->connections = st.connections;
  rep->connections_refused = (int64_t)st.connections_refused;
  rep->handlers_running = atomic_load(&running);
  rep->handlers_started = atomic_load(&started);
  rep->cancelled_seen = atomic_load(&cancelled);
  rep->handlers_ok = atomic_load(&succeeded);
  return GRPC_STATUS_OK;
}

static void usage(void) {
  fprintf(stderr, "usage: fault_server --listen ADDR [--threads N] "
                  "[--grace-ms N] [--idle-timeout-ms N] "
                  "[--max-connections N]\n");
  exit(2);
}

int main(int argc, char **argv) {
  static const Fault__FaultServer impl = {unary, down, up, both, stats};
  prpc_server_opts opts = PRPC_SERVER_OPTS_INIT;
  const char *targets[8];
  int n_targets = 0;
  sigset_t sigs;
  int rc;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigprocmask(SIG_BLOCK, &sigs, NULL); /* until prpc_server_run() */
  for (int i = 1; i < argc; i += 2) {
    if (i + 1 >= argc)
      usage();
    if (strcmp(argv[i], "--listen") == 0 && n_targets < 8)
      targets[n_targets++] = argv[i + 1];
    else if (strcmp(argv[i], "--threads") == 0)
      opts.threads = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--grace-ms") == 0)
      opts.grace_ms = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--idle-timeout-ms") == 0)
      opts.idle_timeout_ms = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--max-connections") == 0)
      opts.max_connections = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--max-connections-per-uid") == 0)
      opts.max_connections_per_uid = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--max-stream-threads") == 0)
      opts.max_stream_threads = atoi(argv[i + 1]);
    else
      usage();
  }
  if (n_targets == 0)
    usage();
  rc = prpc_server_create(&opts, &server);
  for (int i = 0; rc == 0 && i < n_targets; i++) {
    int port = 0;
    if ((rc = prpc_server_add_listener(server, targets[i], &port)) == 0 &&
        port > 0)
      printf("port %d\n", port);
  }
  if (rc != 0 ||
      (rc = fault__fault_server__register(server, &impl, NULL)) != 0 ||
      (rc = prpc_server_start(server)) != 0) {
    fprintf(stderr, "fault_server: %s (%d: %s)\n", prpc_last_error(), rc,
            prpc_strerror(rc));
    prpc_server_destroy(server);
    return 1;
  }
  printf("ready\n");
  fflush(stdout);
  rc = prpc_server_run(server);
  prpc_server_destroy(server);
  return rc == 0 ? 0 : 1;
}
