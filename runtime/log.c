/* Library logging: quiet unless something goes wrong. One sink, which the
 * application may replace; PRPC_LOG=debug|info|warning|error sets the
 * threshold (default: warning). */
#include "internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int threshold = PRPC_LOG_WARN;
static prpc_log_fn sink;
static void *sink_data;

static void read_env(void) {
  static const char *const names[] = {"debug", "info", "warning", "error"};
  const char *env = getenv("PRPC_LOG");
  for (int i = 0; env && i < 4; i++)
    if (strcmp(env, names[i]) == 0)
      threshold = i;
}

static int min_level(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, read_env);
  return threshold;
}

void prpc_set_log(prpc_log_fn fn, void *user_data, int level) {
  min_level(); /* the environment is read once, before this takes over */
  sink = fn;
  sink_data = user_data;
  if (level >= PRPC_LOG_DEBUG && level <= PRPC_LOG_ERROR)
    threshold = level;
}

int prpc__log_enabled(int level) { return level >= min_level(); }

static void emit(int level, const char *method, const char *peer,
                 const char *fmt, va_list ap) {
  static const char *const names[] = {"debug", "info", "warning", "error"};
  char line[1024];
  vsnprintf(line, sizeof(line), fmt, ap);
  if (sink) {
    sink((prpc_log_level)level, method, peer, line, sink_data);
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
