/* Fault injection against a real fault_server process: clients and the
 * server killed with SIGKILL mid-call, a restart on the same socket path,
 * peers that connect and stall, running out of file descriptors, a
 * read-only socket directory, SIGTERM under load; and 1000 connections
 * held at once. The program is also its own killable client process:
 *   e2e_fault --client unary|down|up|both|ok TARGET */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>

#include "faultutil.h"

/* ---- the client process (killed by the tests) ---- */

static int client_main(const char *kind, const char *target) {
  prpc_channel *ch;
  prpc_call *call;
  Fault__Req req = FAULT__REQ__INIT;
  Fault__Rep *rep = NULL;
  if (prpc_channel_create(target, NULL, &ch) != 0)
    return 3;
  req.text = "held";
  if (strcmp(kind, "ok") == 0) {
    grpc_status_code c = unary(ch, "new client", 0, 10000, 0, &rep);
    int good = c == GRPC_STATUS_OK && strcmp(rep->text, "new client") == 0;
    if (rep)
      protobuf_c_message_free_unpacked(&rep->base, NULL);
    prpc_channel_destroy(ch);
    return good ? 0 : 1;
  }
  if (strcmp(kind, "unary") == 0) {
    unary(ch, "held", 600000, 0, 0, NULL); /* blocks in the handler */
  } else if (strcmp(kind, "down") == 0) {
    req.count = -1;
    req.sleep_ms = 20;
    if (fault__fault_client__down_start(ch, &req, NULL, &call) != 0)
      return 3;
    while (fault__fault_client__down_read(call, &rep) == 1)
      protobuf_c_message_free_unpacked(&rep->base, NULL);
  } else if (strcmp(kind, "up") == 0) {
    req.sleep_ms = 600000;
    if (fault__fault_client__up_start(ch, NULL, &call) != 0 ||
        fault__fault_client__up_write(call, &req) != 0)
      return 3;
    prpc_call_finish(call, NULL, NULL); /* the handler waits: so do we */
  } else if (strcmp(kind, "both") == 0) {
    if (fault__fault_client__both_start(ch, NULL, &call) != 0 ||
        fault__fault_client__both_write(call, &req) != 0 ||
        fault__fault_client__both_read(call, &rep) != 1)
      return 3;
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    fault__fault_client__both_read(call, &rep); /* blocks */
  }
  pause();
  return 0;
}

static pid_t client_spawn(const char *kind, const char *target,
                          const char *dir) {
  char log[PATH_MAX];
  char *argv[] = {"/proc/self/exe", "--client", (char *)kind, (char *)target,
                  NULL};
  snprintf(log, sizeof(log), "%s/client.log", dir);
  int fd = open(log, O_CREAT | O_APPEND | O_WRONLY | O_CLOEXEC, 0600);
  ASSERT(fd >= 0);
  fflush(NULL);
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    dup2(fd, 1);
    dup2(fd, 2);
    execv(argv[0], argv);
    _exit(127);
  }
  close(fd);
  return pid;
}

/* ---- conditions on the server's counters ---- */

static int running_eq(const Fault__StatsRep *r, long n) {
  return r->handlers_running == n;
}
/* Everything freed after a killed client: no handler, no call, and only
 * the test's own connection left. */
static int freed(const Fault__StatsRep *r, long cancelled) {
  return r->handlers_running == 0 && r->calls_active == 0 &&
         r->cancelled_seen == cancelled && r->connections == 1;
}
static int conns_eq(const Fault__StatsRep *r, long n) {
  return r->connections == n;
}

typedef struct fixture {
  char *dir;
  char path[PATH_MAX];
  char target[PATH_MAX + 8];
  server_proc sp;
  prpc_channel *ch;
} fixture;

static void fixture_start(fixture *f, const char *const *extra) {
  const char *args[32];
  int n = 0;
  f->dir = test_tmpdir();
  snprintf(f->path, sizeof(f->path), "%s/f.sock", f->dir);
  snprintf(f->target, sizeof(f->target), "unix:%s", f->path);
  args[n++] = "--listen";
  args[n++] = f->target;
  for (; extra && *extra; extra++)
    args[n++] = *extra;
  args[n] = NULL;
  server_spawn(f->dir, args, 0, 0, &f->sp);
  if (!f->sp.ready)
    FAIL_AT(__FILE__, __LINE__, "fault_server did not start: %s",
            server_log(&f->sp));
  ASSERT_EQ(prpc_channel_create(f->target, NULL, &f->ch), 0);
}

static void fixture_end(fixture *f) {
  prpc_channel_destroy(f->ch);
  server_stop_clean(&f->sp);
  test_rmdir(f->dir);
}

/* ---- a client killed with SIGKILL mid-call ---- */

static void client_killed(const char *kind) {
  fixture f;
  int ok;
  fixture_start(&f, NULL);
  pid_t client = client_spawn(kind, f.target, f.dir);
  Fault__StatsRep *r = stats_until(f.ch, running_eq, 1, 20000, &ok);
  if (!ok)
    FAIL_AT(__FILE__, __LINE__, "the %s call never reached its handler",
            kind);
  ASSERT_EQ(r->connections, 2); /* ours and the client's */
  protobuf_c_message_free_unpacked(&r->base, NULL);
  ASSERT_EQ(kill(client, SIGKILL), 0);
  ASSERT(proc_wait(client, 10000) != -1);
  double t0 = test_now_ms();
  r = stats_until(f.ch, freed, 1, 10000, &ok);
  if (!ok)
    FAIL_AT(__FILE__, __LINE__,
            "after the %s client died: handlers_running %d calls_active %d "
            "cancelled_seen %lld connections %d",
            kind, r->handlers_running, r->calls_active,
            (long long)r->cancelled_seen, r->connections);
  fprintf(stderr, "%s: the handler saw the cancellation and the call was "
                  "freed %.0f ms after SIGKILL\n",
          kind, test_now_ms() - t0);
  ASSERT_EQ(r->handlers_ok, 0);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  /* The server keeps serving: a new client process's call succeeds. */
  pid_t next = client_spawn("ok", f.target, f.dir);
  int st = proc_wait(next, 20000);
  ASSERT(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  fixture_end(&f); /* exit 0: no leak under a leak checker */
}

static void client_killed_unary(void) { client_killed("unary"); }
static void client_killed_server_stream(void) { client_killed("down"); }
static void client_killed_client_stream(void) { client_killed("up"); }
static void client_killed_bidi(void) { client_killed("both"); }

/* ---- the server killed mid-call ---- */

typedef struct held_call {
  prpc_channel *ch;
  const char *kind;
  grpc_status_code code;
  double ended_ms;
  atomic_int *done;
} held_call;

static void *hold_call(void *arg) {
  held_call *h = arg;
  Fault__Req req = FAULT__REQ__INIT;
  Fault__Rep *rep;
  prpc_call *call = NULL;
  req.text = "held";
  h->code = GRPC_STATUS_UNKNOWN;
  if (strcmp(h->kind, "unary") == 0) {
    h->code = unary(h->ch, "held", 600000, 0, 0, NULL);
  } else if (strcmp(h->kind, "down") == 0) {
    req.count = -1;
    req.sleep_ms = 20;
    if (fault__fault_client__down_start(h->ch, &req, NULL, &call) == 0) {
      while (fault__fault_client__down_read(call, &rep) == 1)
        protobuf_c_message_free_unpacked(&rep->base, NULL);
      h->code = prpc_call_finish(call, NULL, NULL);
    }
  } else if (strcmp(h->kind, "up") == 0) {
    req.sleep_ms = 600000;
    if (fault__fault_client__up_start(h->ch, NULL, &call) == 0) {
      fault__fault_client__up_write(call, &req);
      h->code = prpc_call_finish(call, NULL, NULL);
    }
  } else {
    if (fault__fault_client__both_start(h->ch, NULL, &call) == 0) {
      fault__fault_client__both_write(call, &req);
      while (fault__fault_client__both_read(call, &rep) == 1)
        protobuf_c_message_free_unpacked(&rep->base, NULL);
      h->code = prpc_call_finish(call, NULL, NULL);
    }
  }
  h->ended_ms = test_now_ms();
  atomic_fetch_add(h->done, 1);
  return NULL;
}

static void server_killed(void) {
  static const char *kinds[] = {"unary", "down", "up", "both"};
  fixture f;
  held_call h[4];
  pthread_t th[4];
  atomic_int done = 0;
  int ok;
  fixture_start(&f, NULL);
  for (int i = 0; i < 4; i++) {
    h[i] = (held_call){f.ch, kinds[i], GRPC_STATUS_OK, 0, &done};
    ASSERT_EQ(pthread_create(&th[i], NULL, hold_call, &h[i]), 0);
  }
  Fault__StatsRep *r = stats_until(f.ch, running_eq, 4, 20000, &ok);
  ASSERT(ok);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  double t0 = test_now_ms();
  server_kill(&f.sp);
  /* No deadline was set: the calls must end on their own, quickly. */
  while (atomic_load(&done) < 4 && test_now_ms() - t0 < 10000)
    test_sleep_ms(5);
  if (atomic_load(&done) < 4)
    FAIL_AT(__FILE__, __LINE__, "a call still hangs 10 s after the server "
                                "died");
  for (int i = 0; i < 4; i++) {
    pthread_join(th[i], NULL);
    fprintf(stderr, "%s: %s after %.0f ms\n", kinds[i],
            prpc_status_name(h[i].code), h[i].ended_ms - t0);
    ASSERT_EQ(h[i].code, GRPC_STATUS_UNAVAILABLE);
    ASSERT(h[i].ended_ms - t0 < 3000);
  }
  prpc_channel_destroy(f.ch);
  test_rmdir(f.dir);
}

/* ---- the server restarted on the same path ---- */

typedef struct waiting_call {
  prpc_channel *ch;
  char text[32];
  grpc_status_code code;
  int echoed;
  double ended_ms;
  atomic_int *done;
} waiting_call;

static void *wait_call(void *arg) {
  waiting_call *w = arg;
  Fault__Rep *rep = NULL;
  w->code = unary(w->ch, w->text, 0, 30000, 1, &rep);
  w->echoed = rep && strcmp(rep->text, w->text) == 0;
  if (rep)
    protobuf_c_message_free_unpacked(&rep->base, NULL);
  w->ended_ms = test_now_ms();
  atomic_fetch_add(w->done, 1);
  return NULL;
}

static void server_restart(void) {
  fixture f;
  waiting_call w[4];
  pthread_t th[4];
  atomic_int done = 0;
  struct stat st;
  fixture_start(&f, NULL);
  ASSERT_EQ(unary(f.ch, "before", 0, 10000, 1, NULL), GRPC_STATUS_OK);
  server_kill(&f.sp);
  /* SIGKILL leaves the socket file behind: stale. */
  ASSERT_EQ(lstat(f.path, &st), 0);
  ASSERT(S_ISSOCK(st.st_mode));
  double t0 = test_now_ms();
  ASSERT_EQ(unary(f.ch, "gap", 0, 10000, 0, NULL), GRPC_STATUS_UNAVAILABLE);
  ASSERT(test_now_ms() - t0 < 3000); /* without wait_for_ready: at once */
  for (int i = 0; i < 4; i++) {
    w[i] = (waiting_call){f.ch, "", GRPC_STATUS_UNKNOWN, 0, 0, &done};
    snprintf(w[i].text, sizeof(w[i].text), "waiting %d", i);
    ASSERT_EQ(pthread_create(&th[i], NULL, wait_call, &w[i]), 0);
  }
  test_sleep_ms(500); /* the gap: nothing listens */
  ASSERT_EQ(atomic_load(&done), 0);
  /* The new server replaces the stale file (it would fail otherwise). */
  const char *args[] = {"--listen", f.target, NULL};
  server_spawn(f.dir, args, 0, 0, &f.sp);
  if (!f.sp.ready)
    FAIL_AT(__FILE__, __LINE__, "the restart failed: %s", server_log(&f.sp));
  double t1 = test_now_ms();
  ASSERT_CONTAINS(server_log(&f.sp), "replaced stale socket file");
  for (int i = 0; i < 4; i++) {
    pthread_join(th[i], NULL);
    fprintf(stderr, "%s: %s %.0f ms after the restart\n", w[i].text,
            prpc_status_name(w[i].code), w[i].ended_ms - t1);
    ASSERT_EQ(w[i].code, GRPC_STATUS_OK);
    ASSERT(w[i].echoed);
    ASSERT(w[i].ended_ms >= t1);
  }
  ASSERT_EQ(unary(f.ch, "after", 0, 10000, 0, NULL), GRPC_STATUS_OK);
  fixture_end(&f);
}

/* ---- peers that connect and stall ---- */

typedef struct slow_call {
  prpc_channel *ch;
  grpc_status_code code;
} slow_call;

static void *run_slow(void *arg) {
  slow_call *s = arg;
  s->code = unary(s->ch, "slow", 2500, 20000, 0, NULL);
  return NULL;
}

/* Reads (and drops) what the server sends until it closes; returns the
 * time it closed, or -1 if it has not within timeout_ms of start. */
static double closed_at(int fd, double start, int timeout_ms) {
  char buf[512];
  for (;;) {
    int left = (int)(start + timeout_ms - test_now_ms());
    struct pollfd p = {fd, POLLIN, 0};
    if (left <= 0 || poll(&p, 1, left) != 1)
      return -1;
    ssize_t r = read(fd, buf, sizeof(buf));
    if (r == 0 || (r < 0 && errno == ECONNRESET))
      return test_now_ms();
    if (r < 0 && errno != EINTR && errno != EAGAIN)
      return -1;
  }
}

static int tcp_connect(int port) {
  struct sockaddr_in sa;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static void stalled_peers(void) {
  static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  const char *extra[] = {"--listen", "127.0.0.1:0", "--idle-timeout-ms",
                         "1000", NULL};
  fixture f;
  int fds[6];
  fixture_start(&f, extra);
  ASSERT(f.sp.port > 0);
  /* On the unix socket and on TCP: 1 sends nothing; 2 half the preface;
   * 3 the preface and half a frame header. */
  for (int i = 0; i < 3; i++) {
    ASSERT((fds[i] = unix_connect(f.path)) >= 0);
    ASSERT((fds[3 + i] = tcp_connect(f.sp.port)) >= 0);
  }
  double t0 = test_now_ms();
  for (int i = 1; i < 6; i += 3) {
    ASSERT_EQ(write(fds[i], preface, 12), 12);
    ASSERT_EQ(write(fds[i + 1], preface, sizeof(preface) - 1),
              (ssize_t)sizeof(preface) - 1);
    ASSERT_EQ(write(fds[i + 1], "\x00\x00\x00\x04", 4), 4);
  }
  /* Meanwhile the server serves others at once, and a call longer than the
   * idle time keeps its connection. */
  slow_call s = {f.ch, GRPC_STATUS_UNKNOWN};
  pthread_t th;
  double c0 = test_now_ms();
  ASSERT_EQ(unary(f.ch, "meanwhile", 0, 5000, 0, NULL), GRPC_STATUS_OK);
  ASSERT(test_now_ms() - c0 < 1000);
  ASSERT_EQ(pthread_create(&th, NULL, run_slow, &s), 0);
  for (int i = 0; i < 6; i++) {
    double t = closed_at(fds[i], t0, 6000);
    if (t < 0)
      FAIL_AT(__FILE__, __LINE__, "stalled peer %d was not closed", i + 1);
    fprintf(stderr, "stalled %s peer %d closed after %.0f ms (idle timeout "
                    "1000 ms)\n",
            i < 3 ? "unix" : "TCP", i % 3 + 1, t - t0);
    ASSERT(t - t0 >= 800);
    ASSERT(t - t0 <= 4000);
    close(fds[i]);
  }
  pthread_join(th, NULL);
  ASSERT_EQ(s.code, GRPC_STATUS_OK);
  /* The test's own channel, idle too, reconnects by itself. */
  ASSERT_EQ(unary(f.ch, "again", 0, 5000, 0, NULL), GRPC_STATUS_OK);
  fixture_end(&f);
}

/* By default (no idle timeout) a peer that never sends the HTTP/2 preface
 * is closed after handshake_timeout_ms (5 s), while one that did and then
 * says nothing (an idle client) is kept. */
static void stalled_peer_closed_by_default(void) {
  static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  fixture f;
  fixture_start(&f, NULL);
  int silent = unix_connect(f.path), idle = unix_connect(f.path);
  ASSERT(silent >= 0 && idle >= 0);
  ASSERT_EQ(write(idle, preface, sizeof(preface) - 1),
            (ssize_t)sizeof(preface) - 1);
  ASSERT_EQ(write(idle, "\0\0\0\4\0\0\0\0\0", 9), 9); /* SETTINGS */
  double t0 = test_now_ms();
  double t = closed_at(silent, t0, 9000);
  fprintf(stderr, "silent peer closed after %.0f ms (default handshake "
                  "timeout 5000 ms)\n",
          t - t0);
  ASSERT(t >= 0);
  ASSERT(t - t0 >= 4500 && t - t0 <= 8000);
  ASSERT(closed_at(idle, test_now_ms(), 1000) < 0); /* the idle one stays */
  close(silent);
  close(idle);
  ASSERT_CONTAINS(server_log(&f.sp), "no HTTP/2 preface within 5000 ms");
  fixture_end(&f);
}

/* gRPC core 1.51's own accept loop stops for good after one EMFILE
 * (CVE-2023-4785): a TCP listener answered nothing after a burst that
 * filled the descriptor table. piperpc accepts TCP connections itself, so
 * both listeners serve again as soon as descriptors are free. */
static void tcp_after_fd_exhaustion(void) {
  static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  char *dir = test_tmpdir();
  char path[PATH_MAX], target[PATH_MAX + 8], tcp[64];
  server_proc sp;
  int fds[120], n = 0;
  snprintf(path, sizeof(path), "%s/f.sock", dir);
  snprintf(target, sizeof(target), "unix:%s", path);
  /* No per-address budget, which would refuse the burst before the
   * descriptors run out: the point is what happens when they do. */
  const char *args[] = {"--listen", target, "--listen", "127.0.0.1:0",
                        "--max-connections-per-uid", "-1", NULL};
  server_spawn(dir, args, 64, 0, &sp);
  if (!sp.ready)
    FAIL_AT(__FILE__, __LINE__, "fault_server did not start: %s",
            server_log(&sp));
  snprintf(tcp, sizeof(tcp), "127.0.0.1:%d", sp.port);
  /* 120 TCP connections, as clients that send the preface, held for 2 s:
   * far more than the server's 64 descriptors. */
  for (int i = 0; i < 120; i++) {
    int fd = tcp_connect(sp.port);
    if (fd < 0)
      continue;
    send(fd, preface, sizeof(preface) - 1, MSG_NOSIGNAL);
    fds[n++] = fd;
  }
  test_sleep_ms(2000);
  for (int i = 0; i < n; i++)
    close(fds[i]);
  /* Both listeners serve again, each on a fresh connection. */
  const char *targets[] = {tcp, target};
  for (int t = 0; t < 2; t++) {
    double t0 = test_now_ms();
    int ok = 0;
    while (!ok && test_now_ms() - t0 < 10000) {
      prpc_channel *ch;
      ASSERT_EQ(prpc_channel_create(targets[t], NULL, &ch), 0);
      ok = unary(ch, "after the burst", 0, 2000, 0, NULL) == GRPC_STATUS_OK;
      prpc_channel_destroy(ch);
    }
    fprintf(stderr, "%s served again %.0f ms after the burst ended\n",
            targets[t], test_now_ms() - t0);
    ASSERT(ok);
  }
  const char *log = server_log(&sp);
  ASSERT_CONTAINS(log, "Too many open files (RLIMIT_NOFILE 64)");
  ASSERT_CONTAINS(log, "accepting connections on 127.0.0.1:");
  kill(sp.pid, SIGTERM);
  ASSERT(proc_wait(sp.pid, 10000) != -1);
  test_rmdir(dir);
}

/* ---- out of file descriptors ---- */

/* Connects as an HTTP/2 client does (the preface first) and tells whether
 * the server took the connection (1: gRPC sent its SETTINGS), refused it
 * (0: closed at once) or left it waiting (-1). */
static int try_connect(const char *path, int *fd_out) {
  static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  int fd = unix_connect(path);
  char b;
  *fd_out = fd;
  if (fd < 0)
    return -2;
  /* A refused connection may be closed before the write: not an error. */
  if (send(fd, preface, sizeof(preface) - 1, MSG_NOSIGNAL) < 0 &&
      errno != EPIPE && errno != ECONNRESET)
    return -2;
  struct pollfd p = {fd, POLLIN, 0};
  if (poll(&p, 1, 2000) != 1)
    return -1;
  ssize_t r = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  return r > 0 ? 1 : 0;
}

static void fd_exhaustion(void) {
  char *dir = test_tmpdir();
  char path[PATH_MAX], target[PATH_MAX + 8];
  server_proc sp;
  prpc_channel *ch;
  int fds[512], n = 0, accepted = 0, refused = 0, waiting = 0, streak = 0;
  snprintf(path, sizeof(path), "%s/f.sock", dir);
  snprintf(target, sizeof(target), "unix:%s", path);
  const char *args[] = {"--listen", target, NULL};
  server_spawn(dir, args, 64, 0, &sp);
  if (!sp.ready)
    FAIL_AT(__FILE__, __LINE__, "fault_server did not start: %s",
            server_log(&sp));
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  ASSERT_EQ(unary(ch, "first", 0, 5000, 0, NULL), GRPC_STATUS_OK);
  /* Fill the server's descriptor table. */
  while (n < 500 && streak < 5) {
    int r = try_connect(path, &fds[n]);
    ASSERT(r != -2);
    n++;
    if (r == 1) {
      accepted++;
      streak = 0;
    } else {
      refused += r == 0;
      waiting += r == -1;
      streak++;
    }
  }
  fprintf(stderr, "with RLIMIT_NOFILE 64: %d connections taken, then %d "
                  "refused, %d left waiting\n",
          accepted, refused, waiting);
  ASSERT(accepted > 10 && accepted < 64);
  ASSERT_EQ(waiting, 0); /* refused at once, not left in the backlog */
  /* Saturated: over a second of more attempts, the server neither spins
   * nor floods its log. */
  double cpu0 = proc_cpu_s(sp.pid), t0 = test_now_ms();
  for (int i = 0; i < 10 && n < 500; i++) {
    ASSERT_EQ(try_connect(path, &fds[n]), 0);
    n++;
    test_sleep_ms(100);
  }
  double cpu = proc_cpu_s(sp.pid) - cpu0, wall = test_now_ms() - t0;
  fprintf(stderr, "saturated for %.0f ms: server CPU %.3f s\n", wall, cpu);
  ASSERT(cpu < 0.2);
  /* A real client is refused at once too. */
  prpc_channel *late;
  int lfd = unix_connect(path);
  ASSERT(lfd >= 0);
  char fdt[32];
  snprintf(fdt, sizeof(fdt), "fd:%d", lfd);
  ASSERT_EQ(prpc_channel_create(fdt, NULL, &late), 0);
  double c0 = test_now_ms();
  ASSERT_EQ(unary(late, "late", 0, 10000, 0, NULL), GRPC_STATUS_UNAVAILABLE);
  ASSERT(test_now_ms() - c0 < 3000);
  prpc_channel_destroy(late);
  /* Calls on a connection it already holds still work, and it counts the
   * refusals. */
  Fault__StatsRep *r = stats(ch);
  fprintf(stderr, "connections %d, refused %lld\n", r->connections,
          (long long)r->connections_refused);
  ASSERT(r->connections_refused >= refused + 10);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  const char *log = server_log(&sp);
  ASSERT_EQ(count_lines_with(log, "cannot accept on"), 1);
  ASSERT_CONTAINS(log, "Too many open files (RLIMIT_NOFILE 64)");
  ASSERT_EQ(waitpid(sp.pid, NULL, WNOHANG), 0); /* alive */
  /* Free the descriptors: it serves new connections again. */
  for (int i = 0; i < n; i++)
    close(fds[i]);
  double d0 = test_now_ms();
  int served = 0;
  while (!served && test_now_ms() - d0 < 10000) {
    int fd = unix_connect(path);
    ASSERT(fd >= 0);
    snprintf(fdt, sizeof(fdt), "fd:%d", fd);
    ASSERT_EQ(prpc_channel_create(fdt, NULL, &late), 0);
    served = unary(late, "recovered", 0, 5000, 0, NULL) == GRPC_STATUS_OK;
    prpc_channel_destroy(late);
    if (!served)
      test_sleep_ms(50);
  }
  ASSERT(served);
  fprintf(stderr, "serving again %.0f ms after the connections closed\n",
          test_now_ms() - d0);
  ASSERT_CONTAINS(server_log(&sp), "accepting connections on");
  fprintf(stderr, "the server's log:\n%s", server_log(&sp));
  prpc_channel_destroy(ch);
  server_stop_clean(&sp);
  test_rmdir(dir);
}

/* ---- a socket path the server cannot create ---- */

static void readonly_dir(void) {
  char *dir = test_tmpdir();
  char ro[PATH_MAX], target[PATH_MAX + 16], want[PATH_MAX + 64];
  server_proc sp;
  prpc_server *srv;
  int as_root = geteuid() == 0;
  snprintf(ro, sizeof(ro), "%s/ro", dir);
  ASSERT_EQ(mkdir(ro, 0555), 0);
  ASSERT_EQ(chmod(ro, 0555), 0);
  ASSERT_EQ(chmod(dir, 0755), 0);
  snprintf(target, sizeof(target), "unix:%s/f.sock", ro);
  /* Root ignores permission bits: run the server as nobody then. */
  const char *args[] = {"--listen", target, NULL};
  server_spawn(dir, args, 0, as_root, &sp);
  ASSERT(!sp.ready);
  int st = proc_wait(sp.pid, 10000);
  ASSERT(st != -1 && WIFEXITED(st));
  ASSERT_EQ(WEXITSTATUS(st), 1);
  snprintf(want, sizeof(want), "cannot listen on %s/f.sock: Permission "
                               "denied",
           ro);
  ASSERT_CONTAINS(server_log(&sp), want);
  ASSERT_CONTAINS(server_log(&sp), "(-13: Permission denied)");
  fprintf(stderr, "%s: %s", as_root ? "as nobody" : "as ourselves",
          server_log(&sp));
  /* In process: a missing directory and a file in the way. */
  char missing[PATH_MAX + 32];
  snprintf(missing, sizeof(missing), "unix:%s/none/f.sock", dir);
  ASSERT_EQ(prpc_server_create(NULL, &srv), 0);
  ASSERT_EQ(prpc_server_add_listener(srv, missing, NULL), -ENOENT);
  ASSERT_CONTAINS(prpc_last_error(), "the parent directory does not exist");
  char file[PATH_MAX], under[PATH_MAX + 16];
  snprintf(file, sizeof(file), "%s/plain", dir);
  FILE *fp = fopen(file, "w");
  ASSERT(fp != NULL);
  fclose(fp);
  snprintf(under, sizeof(under), "unix:%s/f.sock", file);
  ASSERT_EQ(prpc_server_add_listener(srv, under, NULL), -ENOTDIR);
  ASSERT_CONTAINS(prpc_last_error(), "Not a directory");
  prpc_server_destroy(srv);
  unlink(file);
  rmdir(ro);
  test_rmdir(dir);
}

/* ---- SIGTERM under load: a graceful drain, counted ---- */

enum { N_UNARY = 24, N_DOWN = 8, N_UP = 4, N_BOTH = 4 };
/* and one straggler: a unary call of 5 s, still running when the others
 * have ended */
#define N_INFLIGHT (N_UNARY + N_DOWN + N_UP + N_BOTH + 1)
#define N_LATE 10
/* Every in-flight call lasts at least 1.2 s, and they all start together
 * (a barrier): all of them must be running at once before the SIGTERM,
 * also on a loaded machine under ThreadSanitizer. */
static pthread_barrier_t drain_gate;

typedef struct drain_call {
  prpc_channel *ch;
  int kind, i;
  int good; /* ended OK with exactly the expected answer */
  grpc_status_code code;
  char why[128];
  atomic_int ended;
} drain_call;

static void *drain_run(void *arg) {
  drain_call *d = arg;
  char text[32];
  Fault__Req req = FAULT__REQ__INIT;
  Fault__Rep *rep = NULL;
  prpc_call *call;
  snprintf(text, sizeof(text), "k%d-%d", d->kind, d->i);
  req.text = text;
  d->code = GRPC_STATUS_UNKNOWN;
  pthread_barrier_wait(&drain_gate);
  if (d->kind == 0 || d->kind == 4) { /* unary, 1.2 to 1.8 s; or 5 s */
    int ms = d->kind == 4 ? 5000 : 1200 + 25 * d->i;
    d->code = unary(d->ch, text, ms, 0, 0, &rep);
    d->good = d->code == GRPC_STATUS_OK && strcmp(rep->text, text) == 0 &&
              rep->n == ms;
  } else if (d->kind == 1) { /* 10 messages, 160 ms apart */
    int got = 0, in_order = 1;
    req.count = 10;
    req.sleep_ms = 160;
    if (fault__fault_client__down_start(d->ch, &req, NULL, &call) == 0) {
      while (fault__fault_client__down_read(call, &rep) == 1) {
        in_order &= rep->n == got && strcmp(rep->text, text) == 0;
        got++;
        protobuf_c_message_free_unpacked(&rep->base, NULL);
      }
      rep = NULL;
      d->code = prpc_call_finish(call, NULL, NULL);
      d->good = d->code == GRPC_STATUS_OK && got == 10 && in_order;
      snprintf(d->why, sizeof(d->why), "%d messages", got);
    }
  } else if (d->kind == 2) { /* 3 messages, then 1.4 s */
    if (fault__fault_client__up_start(d->ch, NULL, &call) == 0) {
      for (int k = 0; k < 3; k++) {
        req.sleep_ms = k == 0 ? 1400 : 0;
        fault__fault_client__up_write(call, &req);
      }
      d->code = fault__fault_client__up_finish(call, &rep, NULL);
      char want[100];
      snprintf(want, sizeof(want), "%s%s%s", text, text, text);
      d->good = d->code == GRPC_STATUS_OK && rep->n == 3 &&
                strcmp(rep->text, want) == 0;
    }
  } else { /* 5 round trips, 300 ms each */
    int got = 0;
    if (fault__fault_client__both_start(d->ch, NULL, &call) == 0) {
      req.sleep_ms = 300;
      for (int k = 0; k < 5; k++) {
        if (fault__fault_client__both_write(call, &req) != 0 ||
            fault__fault_client__both_read(call, &rep) != 1)
          break;
        got += rep->n == k && strcmp(rep->text, text) == 0;
        protobuf_c_message_free_unpacked(&rep->base, NULL);
      }
      rep = NULL;
      prpc_call_writes_done(call);
      d->code = prpc_call_finish(call, NULL, NULL);
      d->good = d->code == GRPC_STATUS_OK && got == 5;
      snprintf(d->why, sizeof(d->why), "%d echoes", got);
    }
  }
  if (rep)
    protobuf_c_message_free_unpacked(&rep->base, NULL);
  atomic_store(&d->ended, 1);
  return NULL;
}

typedef struct late_call {
  prpc_channel *ch;
  grpc_status_code code;
  double ms;
} late_call;

static void *late_run(void *arg) {
  late_call *l = arg;
  double t0 = test_now_ms();
  l->code = unary(l->ch, "late", 0, 20000, 0, NULL);
  l->ms = test_now_ms() - t0;
  return NULL;
}

/* Starts N_LATE calls on ch and counts those that ended UNAVAILABLE, and
 * CANCELLED, within 3 s; fails on any other end. */
static void late_calls(prpc_channel *ch, int *unavailable, int *cancelled) {
  late_call late[N_LATE];
  pthread_t th[N_LATE];
  *unavailable = *cancelled = 0;
  for (int i = 0; i < N_LATE; i++) {
    late[i] = (late_call){ch, GRPC_STATUS_UNKNOWN, 0};
    ASSERT_EQ(pthread_create(&th[i], NULL, late_run, &late[i]), 0);
  }
  for (int i = 0; i < N_LATE; i++) {
    pthread_join(th[i], NULL);
    if (late[i].ms > 3000 || (late[i].code != GRPC_STATUS_UNAVAILABLE &&
                              late[i].code != GRPC_STATUS_CANCELLED))
      FAIL_AT(__FILE__, __LINE__, "late call %d: %s after %.0f ms", i,
              prpc_status_name(late[i].code), late[i].ms);
    *unavailable += late[i].code == GRPC_STATUS_UNAVAILABLE;
    *cancelled += late[i].code == GRPC_STATUS_CANCELLED;
  }
}

static void sigterm_drain(void) {
  const char *extra[] = {"--threads", "48", "--grace-ms", "30000", NULL};
  fixture f;
  drain_call d[N_INFLIGHT];
  pthread_t th[N_INFLIGHT];
  int ok, n = 0, racing_unavailable, racing_cancelled, unavailable,
      cancelled;
  fixture_start(&f, extra);
  ASSERT_EQ(pthread_barrier_init(&drain_gate, NULL, N_INFLIGHT), 0);
  for (int k = 0; k < 5; k++) {
    int count = k == 0   ? N_UNARY
                : k == 1 ? N_DOWN
                : k == 2 ? N_UP
                : k == 3 ? N_BOTH
                         : 1;
    for (int i = 0; i < count; i++, n++) {
      memset(&d[n], 0, sizeof(d[n]));
      d[n].ch = f.ch;
      d[n].kind = k;
      d[n].i = i;
      ASSERT_EQ(pthread_create(&th[n], NULL, drain_run, &d[n]), 0);
    }
  }
  Fault__StatsRep *r =
      stats_until(f.ch, running_eq, N_INFLIGHT, 20000, &ok);
  if (!ok)
    FAIL_AT(__FILE__, __LINE__, "only %d of %d calls in flight",
            r->handlers_running, N_INFLIGHT);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  ASSERT_EQ(kill(f.sp.pid, SIGTERM), 0);
  /* The drain has begun once the server says so (after it has closed its
   * listener and sent GOAWAY on every connection). */
  double t0 = test_now_ms();
  while (!strstr(server_log(&f.sp), "shutting down: draining") &&
         test_now_ms() - t0 < 10000)
    test_sleep_ms(2);
  ASSERT_CONTAINS(server_log(&f.sp), "shutting down: draining");
  /* Calls racing the GOAWAY to the client: refused, one way or the other
   * (gRPC core cancels a call that reaches it after shutdown began). */
  late_calls(f.ch, &racing_unavailable, &racing_cancelled);
  int completed = 0;
  for (int i = 0; i < N_INFLIGHT - 1; i++) {
    pthread_join(th[i], NULL);
    if (!d[i].good)
      fprintf(stderr, "in-flight call kind %d #%d: %s %s\n", d[i].kind,
              d[i].i, prpc_status_name(d[i].code), d[i].why);
    completed += d[i].good;
  }
  /* Still draining (the straggler runs), and the client has seen the
   * GOAWAY (the answers above came after it on the same connection): new
   * calls are UNAVAILABLE, every one. */
  ASSERT_EQ(atomic_load(&d[N_INFLIGHT - 1].ended), 0);
  late_calls(f.ch, &unavailable, &cancelled);
  ASSERT_EQ(atomic_load(&d[N_INFLIGHT - 1].ended), 0);
  pthread_join(th[N_INFLIGHT - 1], NULL);
  pthread_barrier_destroy(&drain_gate);
  completed += d[N_INFLIGHT - 1].good;
  fprintf(stderr,
          "SIGTERM with %d calls in flight: %d completed OK with their full "
          "answers; %d calls racing the GOAWAY: %d UNAVAILABLE, %d "
          "CANCELLED; %d calls later in the drain: %d UNAVAILABLE\n",
          N_INFLIGHT, completed, N_LATE, racing_unavailable,
          racing_cancelled, N_LATE, unavailable);
  ASSERT_EQ(completed, N_INFLIGHT);
  ASSERT_EQ(unavailable, N_LATE);
  int st = proc_wait(f.sp.pid, 30000);
  ASSERT(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  ASSERT(!strstr(server_log(&f.sp), "grace period"));
  prpc_channel_destroy(f.ch);
  test_rmdir(f.dir);
}

/* ---- 1000 connections at once ---- */

#define N_CONNS 1000

typedef struct conn_batch {
  prpc_channel **chs;
  int from, to, ok;
} conn_batch;

static void *batch_calls(void *arg) {
  conn_batch *b = arg;
  for (int i = b->from; i < b->to; i++) {
    char text[32];
    Fault__Rep *rep = NULL;
    snprintf(text, sizeof(text), "conn %d", i);
    if (unary(b->chs[i], text, 0, 20000, 0, &rep) == GRPC_STATUS_OK &&
        strcmp(rep->text, text) == 0)
      b->ok++;
    if (rep)
      protobuf_c_message_free_unpacked(&rep->base, NULL);
  }
  return NULL;
}

static void thousand_connections(void) {
  struct rlimit rl;
  fixture f;
  static prpc_channel *chs[N_CONNS];
  static prpc_call *calls[N_CONNS];
  conn_batch b[8];
  pthread_t th[8];
  int ok;
  /* Both processes need a descriptor per connection, and more. */
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
  if (rl.rlim_cur < 4096) {
    rl.rlim_cur = 4096;
    if (rl.rlim_max < 4096)
      rl.rlim_max = 4096; /* root only */
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
      fprintf(stderr, "skipped: cannot raise RLIMIT_NOFILE to 4096\n");
      exit(77);
    }
  }
  /* A streaming handler holds a thread: let each connection have one. */
  const char *extra[] = {"--max-stream-threads", "2000", NULL};
  fixture_start(&f, extra);
  /* Each channel its own connection: fd:N of a socket connected here
   * (channels to the same target would share one). */
  double t0 = test_now_ms();
  for (int i = 0; i < N_CONNS; i++) {
    char fdt[32];
    int fd = unix_connect(f.path);
    ASSERT(fd >= 0);
    snprintf(fdt, sizeof(fdt), "fd:%d", fd);
    ASSERT_EQ(prpc_channel_create(fdt, NULL, &chs[i]), 0);
  }
  for (int t = 0; t < 8; t++) {
    b[t] = (conn_batch){chs, t * N_CONNS / 8, (t + 1) * N_CONNS / 8, 0};
    ASSERT_EQ(pthread_create(&th[t], NULL, batch_calls, &b[t]), 0);
  }
  int good = 0;
  for (int t = 0; t < 8; t++) {
    pthread_join(th[t], NULL);
    good += b[t].ok;
  }
  fprintf(stderr, "%d connections: %d calls OK in %.0f ms\n", N_CONNS, good,
          test_now_ms() - t0);
  ASSERT_EQ(good, N_CONNS);
  Fault__StatsRep *r = stats_until(f.ch, conns_eq, N_CONNS + 1, 10000, &ok);
  ASSERT_EQ(r->connections, N_CONNS + 1); /* and the test's own */
  protobuf_c_message_free_unpacked(&r->base, NULL);
  /* All at once: a call in flight on every connection, each held by its
   * handler until all have arrived. */
  t0 = test_now_ms();
  for (int i = 0; i < N_CONNS; i++) {
    Fault__Req req = FAULT__REQ__INIT;
    req.text = "together";
    req.count = 1;
    req.sleep_ms = 4000;
    ASSERT_EQ(fault__fault_client__down_start(chs[i], &req, NULL, &calls[i]),
              0);
  }
  r = stats_until(f.ch, running_eq, N_CONNS, 30000, &ok);
  fprintf(stderr, "%d calls in flight at once after %.0f ms (server: %ld "
                  "threads, VmRSS %ld kB; client: %ld threads)\n",
          r->handlers_running, test_now_ms() - t0,
          proc_status_field(f.sp.pid, "Threads"),
          proc_status_field(f.sp.pid, "VmRSS"),
          proc_status_field(getpid(), "Threads"));
  ASSERT(ok);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  good = 0;
  for (int i = 0; i < N_CONNS; i++) {
    Fault__Rep *rep;
    int got = 0;
    while (fault__fault_client__down_read(calls[i], &rep) == 1) {
      got += strcmp(rep->text, "together") == 0;
      protobuf_c_message_free_unpacked(&rep->base, NULL);
    }
    good += prpc_call_finish(calls[i], NULL, NULL) == GRPC_STATUS_OK &&
            got == 1;
  }
  fprintf(stderr, "%d of %d concurrent calls OK\n", good, N_CONNS);
  ASSERT_EQ(good, N_CONNS);
  for (int i = 0; i < N_CONNS; i++)
    prpc_channel_destroy(chs[i]);
  r = stats_until(f.ch, conns_eq, 1, 20000, &ok);
  ASSERT(ok); /* every connection closed on the server too */
  protobuf_c_message_free_unpacked(&r->base, NULL);
  fixture_end(&f);
}

static const test_case cases[] = {
    CASE(client_killed_unary),
    CASE(client_killed_server_stream),
    CASE(client_killed_client_stream),
    CASE(client_killed_bidi),
    CASE(server_killed),
    CASE(server_restart),
    CASE(stalled_peers),
    CASE(stalled_peer_closed_by_default), CASE(tcp_after_fd_exhaustion),
    CASE(fd_exhaustion),
    CASE(readonly_dir),
    CASE(sigterm_drain),
    CASE(thousand_connections),
};

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "--client") == 0)
    return client_main(argv[2], argv[3]);
  signal(SIGPIPE, SIG_IGN);
  int ran = 0;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    if (argc > 1 && strcmp(argv[1], cases[i].name) != 0)
      continue;
    fprintf(stderr, "-- %s\n", cases[i].name);
    cases[i].fn();
    ran++;
  }
  if (ran == 0) {
    fprintf(stderr, "no case named %s\n", argc > 1 ? argv[1] : "");
    return 2;
  }
  return 0;
}
