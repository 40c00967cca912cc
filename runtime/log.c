/* Library logging: quiet unless something goes wrong. One sink, which the
 * application may replace; PRPC_LOG=debug|info|warning|error sets the
 * threshold (default: warning). */
#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Read by every thread that logs; prpc_set_log() may change them while
 * others log: the threshold is atomic, the sink and its data change
 * together under sink_mu. */
static atomic_int threshold = PRPC_LOG_WARN;
static pthread_mutex_t sink_mu = PTHREAD_MUTEX_INITIALIZER;
static prpc_log_fn sink;
static void *sink_data;

static void read_env(void) {
  static const char *const names[] = {"debug", "info", "warning", "error"};
  const char *env = getenv("PRPC_LOG");
  for (int i = 0; env && i < 4; i++)
    if (strcmp(env, names[i]) == 0)
      atomic_store(&threshold, i);
}

static int min_level(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, read_env);
  return atomic_load_explicit(&threshold, memory_order_relaxed);
}

void prpc_set_log(prpc_log_fn fn, void *user_data, int level) {
  min_level(); /* the environment is read once, before this takes over */
  pthread_mutex_lock(&sink_mu);
  sink = fn;
  sink_data = user_data;
  pthread_mutex_unlock(&sink_mu);
  if (level >= PRPC_LOG_DEBUG && level <= PRPC_LOG_ERROR)
    atomic_store(&threshold, level);
}

int prpc__log_enabled(int level) { return level >= min_level(); }

static void emit(int level, const char *method, const char *peer,
                 const char *fmt, va_list ap) {
  static const char *const names[] = {"debug", "info", "warning", "error"};
  char line[1024];
  prpc_log_fn fn;
  void *data;
  vsnprintf(line, sizeof(line), fmt, ap);
  pthread_mutex_lock(&sink_mu);
  fn = sink;
  data = sink_data;
  pthread_mutex_unlock(&sink_mu);
  if (fn) {
    fn((prpc_log_level)level, method, peer, line, data);
    return;
  }
  /* One fprintf per line so that lines from threads do not interleave. */
  if (method)
    fprintf(stderr, "piperpc %s: %s from %s: %s\n", names[level], method,
            peer ? peer : "?", line);
  else
    fprintf(stderr, "piperpc %s: %s\n", names[level], line);
}

void prpc__log(int level, const char *fmt, ...) {
  va_list ap;
  if (level < min_level())
    return;
  va_start(ap, fmt);
  emit(level, NULL, NULL, fmt, ap);
  va_end(ap);
}

void prpc__log_call(int level, const char *method, const char *peer,
                    const char *fmt, ...) {
  va_list ap;
  if (level < min_level())
    return;
  va_start(ap, fmt);
  emit(level, method, peer, fmt, ap);
  va_end(ap);
}

int prpc__rate_ok(prpc__rate *r) {
  struct timespec now;
  unsigned long long held = 0;
  int ok = 0;
  clock_gettime(CLOCK_MONOTONIC, &now);
  pthread_mutex_lock(&sink_mu);
  if (!r->logged || now.tv_sec - r->last_s >= PRPC__RATE_INTERVAL_S) {
    held = r->suppressed;
    r->suppressed = 0;
    r->logged = 1;
    r->last_s = now.tv_sec;
    ok = 1;
  } else {
    r->suppressed++;
  }
  pthread_mutex_unlock(&sink_mu);
  if (held > 0)
    prpc__log(PRPC__LOG_WARN, "(%llu more like the next line in the last "
                              "%d s)",
              held, PRPC__RATE_INTERVAL_S);
  return ok;
}
