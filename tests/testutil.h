/* Helpers shared by the tests. */
#ifndef PRPC_TESTUTIL_H
#define PRPC_TESTUTIL_H

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A fresh private directory under $TMPDIR (or /tmp). Leaked on purpose if
 * a test fails, so that what it left can be inspected. */
static inline char *test_tmpdir(void) {
  static char dirs[8][PATH_MAX];
  static int next;
  const char *base = getenv("TMPDIR");
  char *d = dirs[next++ % 8];
  snprintf(d, PATH_MAX, "%s/prpc-test-XXXXXX", base && *base ? base : "/tmp");
  if (!mkdtemp(d)) {
    perror("mkdtemp");
    exit(1);
  }
  return d;
}

/* Removes a directory made by test_tmpdir() and the files in it. */
static inline void test_rmdir(const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *e;
  char path[PATH_MAX];
  if (!d)
    return;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    unlink(path);
  }
  closedir(d);
  rmdir(dir);
}

static inline double test_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* For polling a condition another thread sets; never to wait for
 * readiness of a server. */
static inline void test_sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

#endif /* PRPC_TESTUTIL_H */
