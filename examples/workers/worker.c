/* workers_worker --id N: one worker of workers_master. Spawned by the master
 * with its end of an anonymous pipe (a socketpair) at fd 3 and
 * PRPC_TARGET=fd:3; it serves workers.Worker on that one connection until
 * the master sends Stop or goes away. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "workers.prpc.h"

/* The largest n whose sum 1..n fits in an int64 (n * (n + 1) / 2). */
#define SUM_N_MAX INT64_C(3037000499)

typedef struct worker_state {
  prpc_server *server; /* for Stop */
  char name[64];       /* "worker 2 (pid 1234)": the TaskResult.worker */
  /* Handlers may run on several server threads: the configuration is
   * replaced under this lock. */
  pthread_mutex_t mu;
  int32_t generation; /* configurations loaded; 0: none yet */
  int64_t max_n;      /* from the configuration: the largest task */
} worker_state;

static grpc_status_code reload(prpc_ctx *ctx,
                               const Workers__ReloadRequest *request,
                               Workers__ReloadReply *reply, void *user_data) {
  worker_state *w = user_data;
  long long max_n;
  /* Parse before touching the state, so that a bad configuration leaves
   * the old one in force, as a server's reload should. */
  if (sscanf(request->config, "max_n=%lld", &max_n) != 1 || max_n < 0 ||
      max_n > SUM_N_MAX) {
    prpc_ctx_set_message(ctx, "config must be max_n=N with 0 <= N <= "
                              "3037000499");
    return GRPC_STATUS_INVALID_ARGUMENT;
  }
  pthread_mutex_lock(&w->mu);
  w->max_n = max_n;
  reply->generation = ++w->generation;
  pthread_mutex_unlock(&w->mu);
  fprintf(stderr, "%s: loaded \"%s\" (generation %" PRId32 ")\n", w->name,
          request->config, reply->generation);
  return GRPC_STATUS_OK;
}

static grpc_status_code run_task(prpc_ctx *ctx, const Workers__Task *request,
                                 Workers__TaskResult *reply, void *user_data) {
  worker_state *w = user_data;
  int32_t generation;
  int64_t max_n;
  pthread_mutex_lock(&w->mu);
  generation = w->generation;
  max_n = w->max_n;
  pthread_mutex_unlock(&w->mu);

  if (strcmp(request->name, "crash") == 0) {
    /* A simulated crash: the master sees UNAVAILABLE, as for a real one.
     * No core file for it, whatever the shell's ulimit says. */
    struct rlimit no_core = {0, 0};
    fprintf(stderr, "%s: crashing on purpose\n", w->name);
    if (setrlimit(RLIMIT_CORE, &no_core) != 0)
      perror("setrlimit"); /* a core file, then: harmless */
    abort();
  }
  if (generation == 0) {
    /* The master reloads every worker, a restarted one too, before giving
     * it work: a task before that is the master's bug. */
    prpc_ctx_set_message(ctx, "no configuration loaded yet");
    return GRPC_STATUS_FAILED_PRECONDITION;
  }
  if (strcmp(request->name, "sum") != 0) {
    prpc_ctx_set_message(ctx, "unknown task (known: sum, crash)");
    return GRPC_STATUS_INVALID_ARGUMENT;
  }
  if (request->n < 0 || request->n > max_n) {
    prpc_ctx_set_message(ctx, "n is outside 0..max_n of the configuration");
    return GRPC_STATUS_OUT_OF_RANGE;
  }
  /* Halve the even factor first: n * (n + 1) itself may overflow. */
  int64_t n = request->n;
  reply->value = n % 2 == 0 ? (n / 2) * (n + 1) : n * ((n + 1) / 2);
  reply->worker = w->name; /* lives as long as the server */
  return GRPC_STATUS_OK;
}

static grpc_status_code stop(prpc_ctx *ctx, const Workers__StopRequest *request,
                             Workers__StopReply *reply, void *user_data) {
  worker_state *w = user_data;
  (void)ctx;
  (void)request;
  (void)reply;
  fprintf(stderr, "%s: stopping\n", w->name);
  /* Returns at once: the graceful drain lets this reply go out first, then
   * prpc_server_run() in main() returns. */
  prpc_server_shutdown(w->server);
  return GRPC_STATUS_OK;
}

int main(int argc, char **argv) {
  static const Workers__WorkerServer impl = {reload, run_task, stop};
  static worker_state state = {.mu = PTHREAD_MUTEX_INITIALIZER};
  prpc_server_opts opts = PRPC_SERVER_OPTS_INIT;
  const char *target = prpc_inherited_target(NULL);
  int id, rc;

  if (argc != 3 || strcmp(argv[1], "--id") != 0 ||
      (id = atoi(argv[2])) <= 0) {
    fprintf(stderr, "usage: workers_worker --id N (started by "
                    "workers_master)\n");
    return 2;
  }
  if (!target) {
    fprintf(stderr, "workers_worker: no PRPC_TARGET: run workers_master, "
                    "which spawns the workers\n");
    return 2;
  }
  snprintf(state.name, sizeof(state.name), "worker %d (pid %ld)", id,
           (long)getpid());

  /* The master sends one command at a time: one thread is enough. Exit
   * when the master goes away (it crashed or was killed) instead of
   * lingering as an orphan with nobody to serve. */
  opts.threads = 1;
  opts.shutdown_on_hangup = 1;
  rc = prpc_server_create(&opts, &state.server);
  if (rc != 0) {
    fprintf(stderr, "%s: %s\n", state.name, prpc_last_error());
    return 1;
  }
  /* fd:3 is one connected socket: the server takes it over as its only
   * connection, the master's. */
  if ((rc = prpc_server_add_listener(state.server, target, NULL)) != 0 ||
      (rc = workers__worker_server__register(state.server, &impl,
                                             &state)) != 0) {
    fprintf(stderr, "%s: %s: %s\n", state.name, prpc_strerror(rc),
            prpc_last_error());
    prpc_server_destroy(state.server);
    return 1;
  }
  rc = prpc_server_run(state.server); /* until Stop, hang-up or SIGTERM */
  if (rc != 0)
    fprintf(stderr, "%s: %s: %s\n", state.name, prpc_strerror(rc),
            prpc_last_error());
  prpc_server_destroy(state.server);
  return rc == 0 ? 0 : 1;
}
