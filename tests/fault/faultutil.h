/* Helpers for the fault, load and soak tests: a real fault_server process
 * (fork + exec, so that SIGKILL is real), its counters over the Stats call,
 * its log, and what /proc says about it. */
#ifndef PRPC_FAULTUTIL_H
#define PRPC_FAULTUTIL_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fault.prpc.h"
#include "test.h"
#include "testutil.h"

#ifndef FAULT_SERVER_PATH
#error "FAULT_SERVER_PATH must name the fault_server program"
#endif

extern char **environ;

typedef struct server_proc {
  pid_t pid;
  int ready;        /* it printed "ready" */
  int port;         /* the first "port N" it printed (a TCP listener) */
  char log[PATH_MAX]; /* its stderr */
} server_proc;

/* Starts fault_server with args (NULL-terminated) and waits until it prints
 * "ready" or exits. nofile > 0 sets its RLIMIT_NOFILE; as_nobody runs it as
 * uid/gid 65534 through setpriv. PRPC_FAULT_WRAPPER (words split on
 * spaces, e.g. "valgrind -q --leak-check=full ...") goes in front of it.
 * Its stderr goes to dir/server.log (appended), with PRPC_LOG=info. */
static inline void server_spawn(const char *dir, const char *const *args,
                                long nofile, int as_nobody,
                                server_proc *sp) {
  char *argv[64], *envp[512], wrap[1024];
  int n = 0, ne = 0, out[2];
  const char *w = getenv("PRPC_FAULT_WRAPPER");
  memset(sp, 0, sizeof(*sp));
  snprintf(sp->log, sizeof(sp->log), "%s/server.log", dir);
  if (as_nobody) {
    argv[n++] = "/usr/bin/setpriv";
    argv[n++] = "--reuid=65534";
    argv[n++] = "--regid=65534";
    argv[n++] = "--clear-groups";
  } else if (w && *w) {
    snprintf(wrap, sizeof(wrap), "%s", w);
    for (char *tok = strtok(wrap, " "); tok && n < 40;
         tok = strtok(NULL, " "))
      argv[n++] = tok;
  }
  argv[n++] = FAULT_SERVER_PATH;
  for (; *args && n < 62; args++)
    argv[n++] = (char *)*args;
  argv[n] = NULL;
  for (char **e = environ; *e && ne < 500; e++)
    if (strncmp(*e, "PRPC_LOG=", 9) != 0)
      envp[ne++] = *e;
  envp[ne++] = "PRPC_LOG=info";
  envp[ne] = NULL;
  ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
  int logfd = open(sp->log, O_CREAT | O_APPEND | O_WRONLY | O_CLOEXEC, 0666);
  ASSERT(logfd >= 0);
  fflush(NULL);
  sp->pid = fork();
  ASSERT(sp->pid >= 0);
  if (sp->pid == 0) {
    /* Only async-signal-safe calls until exec. */
    if (nofile > 0) {
      struct rlimit rl = {(rlim_t)nofile, (rlim_t)nofile};
      if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        _exit(126);
    }
    dup2(out[1], 1);
    dup2(logfd, 2);
    execvpe(argv[0], argv, envp);
    _exit(127);
  }
  close(out[1]);
  close(logfd);
  /* "ready\n", or EOF when it exits first. Under valgrind start-up is
   * slow: wait up to 120 s. */
  char buf[256];
  size_t got = 0;
  struct pollfd pfd = {out[0], POLLIN, 0};
  while (got < sizeof(buf) - 1 && poll(&pfd, 1, 120000) == 1) {
    ssize_t r = read(out[0], buf + got, sizeof(buf) - 1 - got);
    if (r <= 0)
      break;
    got += (size_t)r;
    buf[got] = '\0';
    if (strstr(buf, "ready\n")) {
      const char *p = strstr(buf, "port ");
      if (p)
        sp->port = atoi(p + 5);
      sp->ready = 1;
      break;
    }
  }
  close(out[0]);
}

/* Waits up to timeout_ms for the process to exit; returns its wait status,
 * or -1 on timeout. */
static inline int proc_wait(pid_t pid, int timeout_ms) {
  double end = test_now_ms() + timeout_ms;
  int st;
  for (;;) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid)
      return st;
    if (r < 0 || test_now_ms() > end)
      return -1;
    test_sleep_ms(5);
  }
}

/* SIGTERM, then the exit status it must have: 0 (a leak checker wrapped
 * around it fails it otherwise). */
static inline void server_stop_clean(server_proc *sp) {
  ASSERT_EQ(kill(sp->pid, SIGTERM), 0);
  int st = proc_wait(sp->pid, 120000);
  if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
    FAIL_AT(__FILE__, __LINE__,
            "fault_server did not exit 0 after SIGTERM (wait status %d); "
            "its log is %s",
            st, sp->log);
}

static inline void server_kill(server_proc *sp) {
  ASSERT_EQ(kill(sp->pid, SIGKILL), 0);
  int st = proc_wait(sp->pid, 10000);
  ASSERT(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
}

/* The whole server log (static buffer). */
static inline const char *server_log(const server_proc *sp) {
  static char buf[1 << 16];
  FILE *f = fopen(sp->log, "r");
  size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
  if (f)
    fclose(f);
  buf[n] = '\0';
  return buf;
}

static inline int count_lines_with(const char *text, const char *needle) {
  int n = 0;
  for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
    n++;
  return n;
}

/* The server's counters; fails the test when the Stats call fails. */
static inline Fault__StatsRep *stats(prpc_channel *ch) {
  Fault__StatsReq req = FAULT__STATS_REQ__INIT;
  Fault__StatsRep *rep = NULL;
  prpc_call_opts o = PRPC_CALL_OPTS_INIT;
  prpc_status st = PRPC_STATUS_INIT;
  o.timeout_ms = 10000;
  grpc_status_code c =
      fault__fault_client__stats(ch, &req, &o, &rep, &st);
  if (c != GRPC_STATUS_OK)
    FAIL_AT(__FILE__, __LINE__, "Stats: %s: %s", prpc_status_name(c),
            st.message ? st.message : "");
  prpc_status_clear(&st);
  return rep;
}

/* Polls Stats until cond(rep) holds or timeout_ms passes; returns the last
 * reply (caller frees) and whether cond held in *ok. */
typedef int (*stats_cond)(const Fault__StatsRep *r, long arg);
static inline Fault__StatsRep *stats_until(prpc_channel *ch, stats_cond cond,
                                           long arg, int timeout_ms,
                                           int *ok) {
  double end = test_now_ms() + timeout_ms;
  for (;;) {
    Fault__StatsRep *r = stats(ch);
    if (cond(r, arg)) {
      *ok = 1;
      return r;
    }
    if (test_now_ms() > end) {
      *ok = 0;
      return r;
    }
    protobuf_c_message_free_unpacked(&r->base, NULL);
    test_sleep_ms(10);
  }
}

/* A unary call; returns its status and, on OK, the reply (caller frees). */
static inline grpc_status_code unary(prpc_channel *ch, const char *text,
                                     int sleep_ms, int64_t timeout_ms,
                                     int wait_for_ready, Fault__Rep **out) {
  Fault__Req req = FAULT__REQ__INIT;
  Fault__Rep *rep = NULL;
  prpc_call_opts o = PRPC_CALL_OPTS_INIT;
  req.text = (char *)text;
  req.sleep_ms = sleep_ms;
  o.timeout_ms = timeout_ms;
  o.wait_for_ready = wait_for_ready;
  grpc_status_code c = fault__fault_client__unary(ch, &req, &o, &rep, NULL);
  if (out)
    *out = rep;
  else if (rep)
    protobuf_c_message_free_unpacked(&rep->base, NULL);
  return c;
}

/* A unix socket connected to path (blocking), or -1. */
static inline int unix_connect(const char *path) {
  struct sockaddr_un sa;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof(sa.sun_path)) {
    close(fd);
    return -1;
  }
  memcpy(sa.sun_path, path, strlen(path) + 1);
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* A process's CPU time (user + system) in seconds, from /proc/PID/stat. */
static inline double proc_cpu_s(pid_t pid) {
  char path[64], buf[2048];
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  ASSERT(f != NULL);
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  /* Fields after the command name (which may hold spaces): state is 3,
   * utime 14, stime 15. */
  char *p = strrchr(buf, ')');
  ASSERT(p != NULL);
  unsigned long long ut = 0, stt = 0;
  ASSERT_EQ(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu "
                          "%llu",
                   &ut, &stt),
            2);
  return (double)(ut + stt) / (double)sysconf(_SC_CLK_TCK);
}

/* A field of /proc/PID/status in kB (VmRSS) or as a count (Threads). */
static inline long proc_status_field(pid_t pid, const char *field) {
  char path[64], line[256];
  long v = -1;
  size_t fl = strlen(field);
  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  while (fgets(line, sizeof(line), f))
    if (strncmp(line, field, fl) == 0 && line[fl] == ':') {
      v = strtol(line + fl + 1, NULL, 10);
      break;
    }
  fclose(f);
  return v;
}

#endif /* PRPC_FAULTUTIL_H */
