/* Library logging: quiet unless something goes wrong. */
#include "internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int threshold = PRPC__LOG_WARN;

static void read_env(void) {
  const char *env = getenv("PRPC_LOG");
  if (env && strcmp(env, "debug") == 0)
    threshold = PRPC__LOG_DEBUG;
  else if (env && strcmp(env, "info") == 0)
    threshold = PRPC__LOG_INFO;
}

static int min_level(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, read_env);
  return threshold;
}

void prpc__log(int level, const char *fmt, ...) {
  static const char *const names[] = {"debug", "info", "warning", "error"};
  char line[1024];
  va_list ap;
  if (level < min_level())
    return;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  /* One fprintf per line so that lines from threads do not interleave. */
  fprintf(stderr, "piperpc %s: %s\n", names[level], line);
}
