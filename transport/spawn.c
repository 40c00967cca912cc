/* Anonymous pipes: a socketpair shared by a parent and the child it
 * spawns. posix_spawn() rather than fork(): gRPC core does not support a
 * fork() without exec, and glibc's posix_spawn() runs no fork handlers. */
#include "../runtime/internal.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

struct prpc_child {
  pid_t pid;
  int fd; /* the parent's end; -1 once taken */
  char target[32];
  int reaped;
  int status;
};

/* environ with NAME=VALUE set. The strings are borrowed except the new
 * entry (*added, to free). */
static char **env_with(const char *name, const char *value, char **added) {
  size_t n = 0, len = strlen(name);
  for (char **e = environ; *e; e++)
    n++;
  char **env = calloc(n + 2, sizeof(*env));
  size_t size = len + strlen(value) + 2;
  *added = malloc(size);
  if (!env || !*added) {
    free(env);
    free(*added);
    return NULL;
  }
  snprintf(*added, size, "%s=%s", name, value);
  size_t k = 0;
  for (char **e = environ; *e; e++)
    if (!(strncmp(*e, name, len) == 0 && (*e)[len] == '='))
      env[k++] = *e;
  env[k++] = *added;
  env[k] = NULL;
  return env;
}

int prpc_spawn(const char *path, char *const argv[],
               const prpc_spawn_opts *opts, prpc_child **out) {
  int sv[2], rc;
  int child_fd = opts && opts->child_fd > 0 ? opts->child_fd : 3;
  const char *env_name =
      opts && opts->env_name ? opts->env_name : "PRPC_TARGET";
  char value[32], *added = NULL;
  char **env;
  posix_spawn_file_actions_t fa;
  prpc_child *c;

  if (!path || !argv || !argv[0] || !out)
    return prpc__fail(-EINVAL, "prpc_spawn: NULL path, argv or out");
  c = calloc(1, sizeof(*c));
  if (!c)
    return prpc__fail(-ENOMEM, "out of memory");
  /* Both ends close-on-exec: the child gets its end only through the dup2
   * below, and no other child spawned meanwhile gets either. */
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    rc = -errno;
    free(c);
    return prpc__fail(rc, "socketpair: %s", strerror(-rc));
  }
  snprintf(value, sizeof(value), "fd:%d", child_fd);
  env = env_with(env_name, value, &added);
  if (!env) {
    close(sv[0]);
    close(sv[1]);
    free(c);
    return prpc__fail(-ENOMEM, "out of memory");
  }
  posix_spawn_file_actions_init(&fa);
  /* dup2 onto itself clears close-on-exec (POSIX 2017, glibc >= 2.29). */
  posix_spawn_file_actions_adddup2(&fa, sv[1], child_fd);
  /* The child starts with no blocked signals and default dispositions,
   * whatever the parent (a server that blocks SIGTERM until it waits for
   * it, say) had. */
  posix_spawnattr_t attr;
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_init(&attr);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
  rc = posix_spawn(&c->pid, path, &fa, &attr, argv, env);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  free(env);
  free(added);
  close(sv[1]); /* at once: else the child's death is never seen */
  if (rc != 0) {
    close(sv[0]);
    free(c);
    return prpc__fail(-rc, "cannot spawn %s: %s", path, strerror(rc));
  }
  c->fd = sv[0];
  snprintf(c->target, sizeof(c->target), "fd:%d", c->fd);
  *out = c;
  return 0;
}

int prpc_child_pid(const prpc_child *c) { return (int)c->pid; }

const char *prpc_child_target(prpc_child *c) {
  if (c->fd < 0)
    return NULL;
  c->fd = -1; /* the adopter owns it now */
  return c->target;
}

static int reap(prpc_child *c, int flags) {
  int st;
  pid_t r;
  if (c->reaped)
    return 1;
  do
    r = waitpid(c->pid, &st, flags);
  while (r < 0 && errno == EINTR);
  if (r == c->pid) {
    c->reaped = 1;
    c->status = st;
    return 1;
  }
  return r < 0 ? -errno : 0;
}

int prpc_child_wait(prpc_child *c, int timeout_ms, int *wstatus) {
  int rc = reap(c, WNOHANG);
  if (rc == 0 && timeout_ms != 0) {
    /* A pidfd becomes readable when the process exits. */
    int pfd = (int)syscall(SYS_pidfd_open, c->pid, 0);
    if (pfd >= 0) {
      struct pollfd p = {pfd, POLLIN, 0};
      while (poll(&p, 1, timeout_ms) < 0 && errno == EINTR)
        ;
      close(pfd);
      rc = reap(c, WNOHANG);
    } else {
      /* No pidfd (kernel < 5.3): poll for the exit. */
      for (int waited = 0; rc == 0 && (timeout_ms < 0 || waited < timeout_ms);
           waited += 5) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
        rc = reap(c, WNOHANG);
      }
    }
  }
  if (rc < 0)
    return prpc__fail(rc, "waitpid(%d): %s", (int)c->pid, strerror(-rc));
  if (rc == 0)
    return prpc__fail(-ETIMEDOUT, "child %d still running", (int)c->pid);
  if (wstatus)
    *wstatus = c->status;
  return 0;
}

int prpc_child_kill(prpc_child *c, int sig) {
  if (c->reaped)
    return prpc__fail(-ESRCH, "child %d has already been reaped",
                      (int)c->pid);
  if (kill(c->pid, sig) != 0)
    return prpc__fail(-errno, "kill(%d, %d): %s", (int)c->pid, sig,
                      strerror(errno));
  return 0;
}

void prpc_child_destroy(prpc_child *c) {
  if (!c)
    return;
  prpc__error_freeze();
  if (c->fd >= 0)
    close(c->fd);
  reap(c, WNOHANG);
  free(c);
  prpc__error_thaw();
}

const char *prpc_inherited_target(const char *env_name) {
  const char *v = getenv(env_name ? env_name : "PRPC_TARGET");
  return v && *v ? v : NULL;
}
