/* A hostile local user against a server: races on the socket file, an
 * abstract socket with no rules, connections that stall or flood, streams
 * opened by the thousand. Each case reproduces an attack that worked
 * against piperpc before it was fixed (see README "Security"). Cases that
 * act as another user need root, as CI runs; without it they exit 77. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helloworld.prpc.h"
#include "multi.prpc.h"
#include "procutil.h"
#include "test.h"
#include "testutil.h"

#define NOBODY 65534

/* ---- a Greeter and a Streamer whose Echo waits for its client ---- */

static atomic_int echo_running;

static grpc_status_code say_hello(prpc_ctx *ctx,
                                  const Helloworld__HelloRequest *req,
                                  Helloworld__HelloReply *reply, void *ud) {
  int64_t uid = -1;
  char buf[96];
  (void)ud;
  prpc_ctx_peer_cred(ctx, NULL, &uid, NULL);
  snprintf(buf, sizeof(buf), "Hello %s (uid %lld)",
           req->name ? req->name : "", (long long)uid);
  reply->message = prpc_ctx_strdup(ctx, buf);
  return GRPC_STATUS_OK;
}
static const Helloworld__GreeterServer greeter = {say_hello};

static grpc_status_code echo(prpc_ctx *ctx, void *ud) {
  Test__Common__Text *in;
  (void)ud;
  atomic_fetch_add(&echo_running, 1);
  while (test__multi__v1__streamer_server__echo_read(ctx, &in) == 1)
    protobuf_c_message_free_unpacked(&in->base, NULL);
  atomic_fetch_sub(&echo_running, 1);
  return GRPC_STATUS_OK;
}
static const Test__Multi__V1__StreamerServer streamer = {.echo = echo};

static prpc_server *serve(const prpc_server_opts *opts, const char *target,
                          const char *const *rules) {
  prpc_server *srv;
  ASSERT_EQ(prpc_server_create(opts, &srv), 0);
  if (prpc_server_add_listener(srv, target, NULL) != 0)
    FAIL_AT(__FILE__, __LINE__, "%s", prpc_last_error());
  for (; rules && *rules; rules++) {
    int allow = strncmp(*rules, "allow ", 6) == 0;
    if (prpc_server_add_rule(srv, allow, *rules + (allow ? 6 : 5)) != 0)
      FAIL_AT(__FILE__, __LINE__, "rule %s: %s", *rules, prpc_last_error());
  }
  ASSERT_EQ(helloworld__greeter_server__register(srv, &greeter, NULL), 0);
  ASSERT_EQ(test__multi__v1__streamer_server__register(srv, &streamer, NULL),
            0);
  ASSERT_EQ(prpc_server_start(srv), 0);
  return srv;
}

/* One Greeter call on a fresh channel; the reply's text in out. */
static grpc_status_code hello(const char *target, char *out, size_t size) {
  prpc_channel *ch;
  prpc_call_opts o = PRPC_CALL_OPTS_INIT;
  Helloworld__HelloRequest req = HELLOWORLD__HELLO_REQUEST__INIT;
  Helloworld__HelloReply *rep = NULL;
  prpc_status st = PRPC_STATUS_INIT;
  o.timeout_ms = 5000;
  req.name = "root";
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  grpc_status_code c =
      helloworld__greeter_client__say_hello(ch, &req, &o, &rep, &st);
  if (out)
    snprintf(out, size, "%s", rep ? rep->message
                              : st.message ? st.message : "");
  if (rep)
    protobuf_c_message_free_unpacked(&rep->base, NULL);
  prpc_status_clear(&st);
  prpc_channel_destroy(ch);
  return c;
}

static int threads_now(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  int n = -1;
  while (f && fgets(line, sizeof(line), f))
    if (sscanf(line, "Threads: %d", &n) == 1)
      break;
  if (f)
    fclose(f);
  return n;
}

/* ---- 1. the socket file ---- */

/* Another user who may write the socket's directory swaps the fresh socket
 * for a symlink to a root-owned file while the server sets the socket's
 * mode: the mode must never land on the file the link points to. */
static void socket_symlink_race(void) {
  need_root();
  char *dir = test_tmpdir();
  char pub[256], victim[256], sock[300], target[320];
  struct stat st;
  snprintf(pub, sizeof(pub), "%s/pub", dir);
  snprintf(victim, sizeof(victim), "%s/victim", dir);
  snprintf(sock, sizeof(sock), "%s/s.sock", pub);
  snprintf(target, sizeof(target), "unix:%s", sock);
  ASSERT_EQ(chmod(dir, 0711), 0);
  ASSERT_EQ(mkdir(pub, 0755), 0);
  ASSERT_EQ(chown(pub, NOBODY, NOBODY), 0); /* the attacker's directory */
  int vfd = open(victim, O_CREAT | O_WRONLY, 0600);
  ASSERT(vfd >= 0);
  close(vfd);
  ASSERT_EQ(chown(victim, 0, 0), 0);

  /* The attacker: as nobody, over and over, remove whatever is at the
   * socket's path and rename a symlink to the victim onto it. */
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    char link[300];
    snprintf(link, sizeof(link), "%s/l", pub);
    if (setgid(NOBODY) != 0 || setuid(NOBODY) != 0)
      _exit(3);
    for (;;) {
      unlink(sock);
      if (symlink("../victim", link) == 0)
        rename(link, sock);
    }
  }
  prpc_server_opts o = PRPC_SERVER_OPTS_INIT;
  o.socket_mode = 0666;
  o.socket_group = "65534";
  int tries = 0, bound = 0;
  double t0 = test_now_ms();
  capture_stderr(dir);
  /* 3 s, and at least 100 tries (a sanitizer build binds slower). */
  while (test_now_ms() - t0 < 3000 ||
         (tries <= 100 && test_now_ms() - t0 < 20000)) {
    prpc_server *srv;
    ASSERT_EQ(prpc_server_create(&o, &srv), 0);
    bound += prpc_server_add_listener(srv, target, NULL) == 0;
    prpc_server_destroy(srv);
    tries++;
  }
  captured();
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  ASSERT_EQ(lstat(victim, &st), 0);
  fprintf(stderr, "%d binds (%d succeeded) against a swapping attacker: "
                  "victim mode %o, uid %u gid %u\n",
          tries, bound, (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid,
          (unsigned)st.st_gid);
  ASSERT_EQ(st.st_mode & 07777, 0600);
  ASSERT_EQ(st.st_uid, 0);
  ASSERT_EQ(st.st_gid, 0);
  ASSERT(tries > 100);
  unlink(sock);
  rmdir(pub);
  test_rmdir(dir);
}

/* A directory every user may write, without the sticky bit, is refused:
 * anyone could replace the socket. With the sticky bit (/tmp) it is fine,
 * and the mode and group reach the socket. */
static void socket_dir_checks(void) {
  char *dir = test_tmpdir();
  char open_dir[PATH_MAX], sticky[PATH_MAX], target[PATH_MAX + 16];
  struct stat st;
  prpc_server *srv;
  prpc_server_opts o = PRPC_SERVER_OPTS_INIT;
  snprintf(open_dir, sizeof(open_dir), "%s/open", dir);
  snprintf(sticky, sizeof(sticky), "%s/sticky", dir);
  ASSERT_EQ(mkdir(open_dir, 0777), 0);
  ASSERT_EQ(chmod(open_dir, 0777), 0);
  ASSERT_EQ(mkdir(sticky, 0777), 0);
  ASSERT_EQ(chmod(sticky, 01777), 0);
  o.socket_mode = 0640;
  ASSERT_EQ(prpc_server_create(&o, &srv), 0);
  snprintf(target, sizeof(target), "unix:%s/s.sock", open_dir);
  ASSERT_EQ(prpc_server_add_listener(srv, target, NULL), -EPERM);
  ASSERT_CONTAINS(prpc_last_error(), "every user may write that directory");
  snprintf(target, sizeof(target), "unix:%s/s.sock", sticky);
  ASSERT_EQ(prpc_server_add_listener(srv, target, NULL), 0);
  snprintf(target, sizeof(target), "%s/s.sock", sticky);
  ASSERT_EQ(lstat(target, &st), 0);
  ASSERT(S_ISSOCK(st.st_mode));
  ASSERT_EQ(st.st_mode & 0777, 0640);
  /* Nothing else was left in the directory (the private one is gone). */
  int entries = 0;
  DIR *d = opendir(sticky);
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    entries += e->d_name[0] != '.' || strncmp(e->d_name, ".prpc-", 6) == 0;
  closedir(d);
  ASSERT_EQ(entries, 1);
  prpc_server_destroy(srv);
  ASSERT(lstat(target, &st) != 0); /* removed at shutdown */
  rmdir(open_dir);
  rmdir(sticky);
  test_rmdir(dir);
}

/* At shutdown only the socket this server created is removed: a file put
 * in its place meanwhile (another server's, after a restart) stays. */
static void foreign_socket_kept(void) {
  char *dir = test_tmpdir();
  char path[100], other[100], target[120];
  struct stat st;
  snprintf(path, sizeof(path), "%s/s.sock", dir);
  snprintf(other, sizeof(other), "%s/other.sock", dir);
  snprintf(target, sizeof(target), "unix:%s", path);
  prpc_server *srv = serve(NULL, target, NULL);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", other);
  ASSERT_EQ(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  ASSERT_EQ(lstat(other, &st), 0);
  ASSERT_EQ(rename(other, path), 0);
  prpc_server_destroy(srv);
  struct stat now;
  ASSERT_EQ(lstat(path, &now), 0);
  ASSERT_EQ(now.st_ino, st.st_ino);
  close(fd);
  test_rmdir(dir);
}

/* ---- 2. abstract sockets fail closed ---- */

static void abstract_fails_closed(void) {
  need_root();
  char *dir = test_tmpdir();
  char target[128], err[4096], out[128];
  const char *any[] = {"allow any", NULL};
  snprintf(target, sizeof(target), "unix-abstract:prpc-sec-%d", (int)getpid());
  capture_stderr(dir);
  prpc_server *srv = serve(NULL, target, NULL);
  /* The server's own user (root here) is let in, with its identity. */
  ASSERT_EQ(hello(target, out, sizeof(out)), GRPC_STATUS_OK);
  ASSERT_STREQ(out, "Hello root (uid 0)");
  /* Another user is not, though nothing on the file system stops it. */
  int rc = client_as(NOBODY, NOBODY, target, "nobody", dir, err, sizeof(err));
  ASSERT(rc != 0);
  ASSERT_CONTAINS(err, "PERMISSION_DENIED");
  ASSERT_CONTAINS(err, "uid 65534 may not call this server");
  prpc_server_destroy(srv);
  const char *log = captured();
  ASSERT_CONTAINS(log, "denied pid");
  ASSERT_CONTAINS(log, "an abstract socket with no access rules admits only "
                       "the server's own user and root");
  /* Serving everyone takes an explicit rule. */
  srv = serve(NULL, target, any);
  rc = client_as(NOBODY, NOBODY, target, "nobody", dir, err, sizeof(err));
  ASSERT_EQ(rc, 0);
  prpc_server_destroy(srv);
  test_rmdir(dir);
}

/* ---- 3. denied and stalled peers cannot lock others out ---- */

static void world_dir(char *target, size_t size, char **dir) {
  *dir = test_tmpdir();
  ASSERT_EQ(chmod(*dir, 0755), 0);
  snprintf(target, size, "unix:%s/s.sock", *dir);
}

/* "--allow root --max-connections 8": eight idle connections from a denied
 * user used to fill the limit. Denied connections do not count, and they
 * are closed soon after they are answered. */
static void denied_do_not_count(void) {
  need_root();
  char *dir, target[PATH_MAX + 8], out[128];
  const char *rules[] = {"allow root", NULL};
  prpc_server_opts o = PRPC_SERVER_OPTS_INIT;
  world_dir(target, sizeof(target), &dir);
  o.max_connections = 8;
  o.socket_mode = 0666;
  capture_stderr(dir);
  prpc_server *srv = serve(&o, target, rules);
  hostile h;
  const char *args[] = {"--uid", "65534", "--target", target,
                        "--conns", "8", "--preface", NULL};
  hostile_start(&h, args);
  /* The four allowed to wait for an answer at once are taken; the rest is
   * closed at accept. */
  ASSERT_EQ(h.open + h.closed, 8);
  int held = hostile_open_at_most(&h, 4, 5000);
  ASSERT(held <= 4);
  for (int i = 0; i < 3; i++)
    ASSERT_EQ(hello(target, out, sizeof(out)), GRPC_STATUS_OK);
  /* The denied connections are answered, then closed within ~2 s. */
  double t0 = test_now_ms();
  ASSERT_EQ(hostile_open_at_most(&h, 0, 5000), 0);
  fprintf(stderr, "denied connections closed by the server after %.0f ms\n",
          test_now_ms() - t0);
  hostile_end(&h);
  prpc_server_destroy(srv);
  const char *log = captured();
  ASSERT_CONTAINS(log, "denied pid");
  test_rmdir(dir);
}

/* One uid may hold at most max_connections_per_uid connections: an allowed
 * but hostile user cannot take them all from another user. */
static void per_uid_budget(void) {
  need_root();
  char *dir, target[PATH_MAX + 8], err[4096];
  const char *rules[] = {"allow any", NULL};
  prpc_server_opts o = PRPC_SERVER_OPTS_INIT;
  world_dir(target, sizeof(target), &dir);
  o.max_connections = 8; /* per uid: 4 */
  o.socket_mode = 0666;
  capture_stderr(dir);
  prpc_server *srv = serve(&o, target, rules);
  hostile h;
  const char *args[] = {"--uid", "65534", "--target", target,
                        "--conns", "8", "--preface", NULL};
  hostile_start(&h, args);
  ASSERT_EQ(h.open + h.closed, 8);
  ASSERT_EQ(hostile_open_at_most(&h, 4, 5000), 4);
  /* Another (non-root) user still gets in, and root too. */
  int rc = client_as(65533, 65533, target, "other", dir, err, sizeof(err));
  ASSERT_EQ(rc, 0);
  ASSERT_EQ(hello(target, NULL, 0), GRPC_STATUS_OK);
  hostile_end(&h);
  prpc_server_destroy(srv);
  const char *log = captured();
  ASSERT_CONTAINS(log, "this uid holds 4 connections (max_connections_per_uid)");
  test_rmdir(dir);
}

/* The defaults, no limit set: 300 silent connections from one user under
 * RLIMIT_NOFILE 256 used to take every descriptor. Now a peer holds a
 * bounded number of connections that have not sent their preface, and
 * each is closed after handshake_timeout_ms. */
static void silent_peers_bounded(void) {
  need_root();
  char *dir, target[PATH_MAX + 8], out[128];
  struct rlimit rl = {256, 256};
  prpc_server_opts o = PRPC_SERVER_OPTS_INIT;
  world_dir(target, sizeof(target), &dir);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
  o.socket_mode = 0666;
  o.handshake_timeout_ms = 1500;
  capture_stderr(dir);
  prpc_server *srv = serve(&o, target, NULL); /* nobody is allowed */
  hostile h;
  const char *args[] = {"--uid", "65534", "--target", target,
                        "--conns", "300", NULL};
  hostile_start(&h, args);
  ASSERT_EQ(h.open + h.closed, 300);
  int held = hostile_open_at_most(&h, 32, 5000);
  fprintf(stderr, "300 silent connections: %d held\n", held);
  ASSERT(held <= 32);
  ASSERT_EQ(hello(target, out, sizeof(out)), GRPC_STATUS_OK);
  ASSERT_STREQ(out, "Hello root (uid 0)");
  double t0 = test_now_ms();
  ASSERT_EQ(hostile_open_at_most(&h, 0, 5000), 0);
  double took = test_now_ms() - t0;
  fprintf(stderr, "the silent ones were closed %.0f ms later\n", took);
  hostile_end(&h);
  prpc_server_destroy(srv);
  const char *log = captured();
  ASSERT_CONTAINS(log, "have not sent their first bytes yet");
  ASSERT_CONTAINS(log, "no HTTP/2 preface within 1500 ms");
  test_rmdir(dir);
}

/* ---- 4. streams by the thousand on one connection ---- */

static void stream_flood(void) {
  char *dir = test_tmpdir();
  char target[PATH_MAX + 8];
  prpc_server_opts o = PRPC_SERVER_OPTS_INIT;
  snprintf(target, sizeof(target), "unix:%s/s.sock", dir);
  o.threads = 2;
  o.max_stream_threads = 64;
  capture_stderr(dir);
  prpc_server *srv = serve(&o, target, NULL);
  int before = threads_now();
  hostile h;
  const char *args[] = {"--target", target, "--conns", "1", "--preface",
                        "--streams", "3000", "--path",
                        "/test.multi.v1.Streamer/Echo", NULL};
  hostile_start(&h, args);
  /* The bound is reached (the rest ends with RESOURCE_EXHAUSTED)... */
  double w0 = test_now_ms();
  while (atomic_load(&echo_running) < 64 && test_now_ms() - w0 < 10000)
    test_sleep_ms(10);
  ASSERT_EQ(atomic_load(&echo_running), 64);
  /* ...and meanwhile another client is served, quickly. */
  double worst = 0;
  for (int i = 0; i < 20; i++) {
    double t0 = test_now_ms();
    ASSERT_EQ(hello(target, NULL, 0), GRPC_STATUS_OK);
    if (test_now_ms() - t0 > worst)
      worst = test_now_ms() - t0;
  }
  int peak = threads_now();
  fprintf(stderr, "3000 streams opened: %d handlers running, threads %d -> "
                  "%d, slowest of 20 other calls %.1f ms\n",
          atomic_load(&echo_running), before, peak, worst);
  ASSERT(atomic_load(&echo_running) <= 64);
  ASSERT(peak <= before + 64 + 4);
  ASSERT(worst < 1000);
  hostile_end(&h);
  prpc_server_destroy(srv);
  const char *log = captured();
  ASSERT_CONTAINS(log, "its limit (max_stream_threads)");
  test_rmdir(dir);
}

TEST_MAIN(CASE(socket_symlink_race), CASE(socket_dir_checks),
          CASE(foreign_socket_kept), CASE(abstract_fails_closed),
          CASE(denied_do_not_count), CASE(per_uid_budget),
          CASE(silent_peers_bounded), CASE(stream_flood))
