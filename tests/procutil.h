/* Helpers for tests that run other processes: the server's log on stderr,
 * a client as another user (setpriv), the hostile peer (hostile_peer.c). */
#ifndef PRPC_PROCUTIL_H
#define PRPC_PROCUTIL_H

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

#ifndef PRPC_BIN_DIR
#error "PRPC_BIN_DIR must name the directory of greeter_client"
#endif

extern char **environ;

static inline void need_root(void) {
  if (geteuid() != 0) {
    fprintf(stderr, "skipped: needs root to run a client as another user\n");
    exit(77);
  }
}

/* ---- stderr capture, for the server's log lines ---- */

static int saved_stderr = -1;
static char log_path[PATH_MAX];

static inline const char *captured(void);

/* A failed assertion exits while stderr is captured: its message, and the
 * server's log up to it, go to the real stderr then. */
static inline void captured_at_exit(void) {
  if (saved_stderr >= 0)
    fprintf(stderr, "---- stderr while captured ----\n%s", captured());
}

static inline void capture_stderr(const char *dir) {
  static int hooked;
  if (!hooked++)
    atexit(captured_at_exit);
  snprintf(log_path, sizeof(log_path), "%s/stderr.log", dir);
  fflush(stderr);
  saved_stderr = dup(2);
  int fd = open(log_path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
  dup2(fd, 2);
  close(fd);
}

/* Restores stderr and returns what was written meanwhile (static). */
static inline const char *captured(void) {
  static char buf[65536];
  fflush(stderr);
  dup2(saved_stderr, 2);
  close(saved_stderr);
  saved_stderr = -1;
  FILE *f = fopen(log_path, "r");
  size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
  if (f)
    fclose(f);
  buf[n] = '\0';
  unlink(log_path);
  return buf;
}

/* Runs greeter_client as another user (setpriv, from util-linux); returns
 * its exit status and its stderr in out. */
static inline int client_as(int uid, int gid, const char *target,
                            const char *name, const char *dir, char *out,
                            size_t out_size) {
  char uid_s[32], gid_s[32], errfile[PATH_MAX];
  char *argv[] = {"setpriv", uid_s, gid_s, "--clear-groups",
                  PRPC_BIN_DIR "/greeter_client", "--target", (char *)target,
                  "--name", (char *)name, "--timeout-ms", "10000", NULL};
  posix_spawn_file_actions_t fa;
  pid_t pid;
  int st;
  snprintf(uid_s, sizeof(uid_s), "--reuid=%d", uid);
  snprintf(gid_s, sizeof(gid_s), "--regid=%d", gid);
  snprintf(errfile, sizeof(errfile), "%s/client.err", dir);
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 2, errfile,
                                   O_CREAT | O_TRUNC | O_WRONLY, 0644);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  ASSERT_EQ(posix_spawnp(&pid, "setpriv", &fa, NULL, argv, environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  FILE *f = fopen(errfile, "r");
  size_t n = f ? fread(out, 1, out_size - 1, f) : 0;
  if (f)
    fclose(f);
  out[n] = '\0';
  unlink(errfile);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- the hostile peer ---- */

typedef struct hostile {
  pid_t pid;
  FILE *to;   /* its stdin */
  FILE *from; /* its stdout */
  int open;   /* connections it holds open */
  int closed; /* connections the server closed at once or refused */
} hostile;

/* Starts hostile_peer with args (NULL-terminated) and waits for its
 * "ready" line. */
static inline void hostile_start(hostile *h, const char *const *args) {
  char *argv[32];
  int in[2], out[2], n = 0;
  posix_spawn_file_actions_t fa;
#ifdef PRPC_HOSTILE_PEER
  argv[n++] = PRPC_HOSTILE_PEER;
#else
  FAIL_AT(__FILE__, __LINE__, "built without PRPC_HOSTILE_PEER");
#endif
  for (; *args && n < 30; args++)
    argv[n++] = (char *)*args;
  argv[n] = NULL;
  ASSERT_EQ(pipe2(in, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  ASSERT_EQ(posix_spawn(&h->pid, argv[0], &fa, NULL, argv, environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  close(in[0]);
  close(out[1]);
  h->to = fdopen(in[1], "w");
  h->from = fdopen(out[0], "r");
  ASSERT(h->to && h->from);
  if (fscanf(h->from, "ready %d %d", &h->open, &h->closed) != 2)
    FAIL_AT(__FILE__, __LINE__, "hostile_peer did not start");
}

/* How many of its connections the server has closed by now. */
static inline int hostile_closed(hostile *h) {
  int k = -1;
  fputs("?\n", h->to);
  fflush(h->to);
  if (fscanf(h->from, " closed %d", &k) != 1)
    FAIL_AT(__FILE__, __LINE__, "hostile_peer went away");
  return k;
}

/* Waits up to ms for the server to have closed enough of the peer's
 * connections that at most `most` are still open; returns how many are. */
static inline int hostile_open_at_most(hostile *h, int most, double ms) {
  struct timespec t0, t;
  int open;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    open = h->open - hostile_closed(h);
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (open <= most || (t.tv_sec - t0.tv_sec) * 1e3 +
                                (t.tv_nsec - t0.tv_nsec) / 1e6 >= ms)
      return open;
    struct timespec nap = {0, 20000000};
    nanosleep(&nap, NULL);
  }
}

/* Closes its connections and reaps it. */
static inline void hostile_end(hostile *h) {
  int st;
  fclose(h->to);
  fclose(h->from);
  ASSERT_EQ(waitpid(h->pid, &st, 0), h->pid);
  ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

#endif /* PRPC_PROCUTIL_H */
