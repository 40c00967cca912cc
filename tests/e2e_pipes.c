/* The pipe layer: socket files, access rules against real processes of
 * another user, the connection limit, anonymous pipes to child processes
 * and socket activation. Cases that change user need root (as CI runs);
 * without it they exit 77, which ctest reports as skipped. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helloworld.prpc.h"
#include "procutil.h"
#include "test.h"
#include "testutil.h"

static atomic_int calls;
/* What the handler saw (it runs on a server thread): under a lock. */
static pthread_mutex_t last_mu = PTHREAD_MUTEX_INITIALIZER;
static char last_name_buf[64];
static int64_t last_uid_v = -1, last_pid_v = -1;

static const char *last_name(void) {
  static char copy[64];
  pthread_mutex_lock(&last_mu);
  memcpy(copy, last_name_buf, sizeof(copy));
  pthread_mutex_unlock(&last_mu);
  return copy;
}
static int64_t last_id(const int64_t *v) {
  pthread_mutex_lock(&last_mu);
  int64_t id = *v;
  pthread_mutex_unlock(&last_mu);
  return id;
}
#define last_uid last_id(&last_uid_v)
#define last_pid last_id(&last_pid_v)

static grpc_status_code say_hello(prpc_ctx *ctx,
                                  const Helloworld__HelloRequest *req,
                                  Helloworld__HelloReply *reply, void *ud) {
  (void)ud;
  atomic_fetch_add(&calls, 1);
  pthread_mutex_lock(&last_mu);
  snprintf(last_name_buf, sizeof(last_name_buf), "%s", req->name);
  prpc_ctx_peer_cred(ctx, &last_pid_v, &last_uid_v, NULL);
  pthread_mutex_unlock(&last_mu);
  reply->message = prpc_ctx_strdup(ctx, "hi");
  return GRPC_STATUS_OK;
}
static const Helloworld__GreeterServer impl = {say_hello};

/* ---- helpers ---- */

static prpc_server *server_with(const prpc_server_opts *opts,
                                const char *target, const char *const *rules) {
  prpc_server *srv;
  ASSERT_EQ(prpc_server_create(opts, &srv), 0);
  if (target && prpc_server_add_listener(srv, target, NULL) != 0)
    FAIL_AT(__FILE__, __LINE__, "%s", prpc_last_error());
  for (; rules && *rules; rules++) {
    int allow = strncmp(*rules, "allow ", 6) == 0;
    if (prpc_server_add_rule(srv, allow, *rules + (allow ? 6 : 5)) != 0)
      FAIL_AT(__FILE__, __LINE__, "rule %s: %s", *rules, prpc_last_error());
  }
  ASSERT_EQ(helloworld__greeter_server__register(srv, &impl, NULL), 0);
  ASSERT_EQ(prpc_server_start(srv), 0);
  return srv;
}

static grpc_status_code hello(const char *target, const char *name,
                              int wait_for_ready, prpc_status *st) {
  prpc_channel *ch;
  prpc_call_opts o = PRPC_CALL_OPTS_INIT;
  Helloworld__HelloRequest req = HELLOWORLD__HELLO_REQUEST__INIT;
  Helloworld__HelloReply *rep = NULL;
  o.timeout_ms = 10000;
  o.wait_for_ready = wait_for_ready;
  req.name = (char *)name;
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  grpc_status_code c =
      helloworld__greeter_client__say_hello(ch, &req, &o, &rep, st);
  if (rep)
    protobuf_c_message_free_unpacked(&rep->base, NULL);
  prpc_channel_destroy(ch);
  return c;
}

/* A directory and socket that user nobody can reach. */
static char *open_dir(char *target, size_t size) {
  char *dir = test_tmpdir();
  ASSERT_EQ(chmod(dir, 0755), 0);
  snprintf(target, size, "unix:%s/g.sock", dir);
  return dir;
}

/* ---- cases ---- */

static void socket_group(void) {
  prpc_server_opts opts = PRPC_SERVER_OPTS_INIT;
  prpc_server *srv;
  char *dir = test_tmpdir();
  char target[PATH_MAX + 8], path[PATH_MAX];
  struct stat st;
  snprintf(path, sizeof(path), "%s/g.sock", dir);
  snprintf(target, sizeof(target), "unix:%s", path);
  opts.socket_mode = 0660;
  opts.socket_group = "nogroup";
  ASSERT_EQ(prpc_server_create(&opts, &srv), 0);
  ASSERT_EQ(prpc_server_add_listener(srv, target, NULL), 0);
  ASSERT_EQ(stat(path, &st), 0);
  ASSERT_EQ(st.st_mode & 0777, 0660);
  ASSERT_EQ(st.st_gid, 65534);
  prpc_server_destroy(srv);
  opts.socket_group = "65534";
  opts.socket_mode = 0640;
  ASSERT_EQ(prpc_server_create(&opts, &srv), 0);
  ASSERT_EQ(prpc_server_add_listener(srv, target, NULL), 0);
  ASSERT_EQ(stat(path, &st), 0);
  ASSERT_EQ(st.st_mode & 0777, 0640);
  ASSERT_EQ(st.st_gid, 65534);
  prpc_server_destroy(srv);
  opts.socket_group = "no-such-group-here";
  ASSERT_EQ(prpc_server_create(&opts, &srv), -ENOENT);
  ASSERT_CONTAINS(prpc_last_error(), "no-such-group-here");
  test_rmdir(dir);
}

static void rule_errors(void) {
  prpc_server *srv;
  ASSERT_EQ(prpc_server_create(NULL, &srv), 0);
  ASSERT_EQ(prpc_server_add_rule(srv, 1, "user:no-such-user-x"), -ENOENT);
  ASSERT_CONTAINS(prpc_last_error(), "no user named 'no-such-user-x'");
  ASSERT_EQ(prpc_server_add_rule(srv, 1, "uid:12a"), -EINVAL);
  ASSERT_EQ(prpc_server_add_rule(srv, 1, "uid:4294967295"), -EINVAL);
  ASSERT_EQ(prpc_server_add_rule(srv, 1, "nobody"), -EINVAL);
  ASSERT_CONTAINS(prpc_last_error(), "use user:, uid:, group:");
  ASSERT_EQ(prpc_server_add_rule(srv, 1, ""), -EINVAL);
  ASSERT_EQ(prpc_server_add_rule(srv, 1, "group:"), -EINVAL);
  ASSERT_EQ(prpc_server_add_rule(srv, 1, "user:nobody"), 0);
  ASSERT_EQ(prpc_server_add_rule(srv, 0, "group:nogroup"), 0);
  ASSERT_EQ(prpc_server_add_rule(srv, 1, "same-user"), 0);
  ASSERT_EQ(prpc_server_add_rule(srv, 1, "root"), 0);
  ASSERT_EQ(prpc_server_add_rule(srv, 0, "any"), 0);
  prpc_server_destroy(srv);
}

/* This very process, allowed and denied by rules naming its own uid. */
static void rules_own_uid(void) {
  char *dir = test_tmpdir();
  char target[PATH_MAX + 8], deny_me[64];
  prpc_status st = PRPC_STATUS_INIT;
  snprintf(target, sizeof(target), "unix:%s/g.sock", dir);
  snprintf(deny_me, sizeof(deny_me), "deny uid:%d", (int)getuid());
  const char *allow_rules[] = {"allow same-user", NULL};
  prpc_server *srv = server_with(NULL, target, allow_rules);
  ASSERT_EQ(hello(target, "me", 0, NULL), GRPC_STATUS_OK);
  prpc_server_destroy(srv);

  const char *deny_rules[] = {deny_me, "allow any", NULL};
  atomic_store(&calls, 0);
  capture_stderr(dir);
  srv = server_with(NULL, target, deny_rules);
  grpc_status_code c = hello(target, "me", 0, &st);
  prpc_server_destroy(srv);
  const char *log = captured();
  ASSERT_EQ(c, GRPC_STATUS_PERMISSION_DENIED);
  ASSERT_CONTAINS(st.message, "access denied: uid");
  ASSERT_EQ(atomic_load(&calls), 0); /* no handler ran */
  ASSERT_CONTAINS(log, "denied pid");
  ASSERT_CONTAINS(log, deny_me); /* the rule that matched */
  prpc_status_clear(&st);

  /* Rules set, none matches: denied by default. */
  const char *other_rules[] = {"allow uid:4242", NULL};
  capture_stderr(dir);
  srv = server_with(NULL, target, other_rules);
  c = hello(target, "me", 0, &st);
  prpc_server_destroy(srv);
  log = captured();
  ASSERT_EQ(c, GRPC_STATUS_PERMISSION_DENIED);
  ASSERT_CONTAINS(log, "no rule allows it");
  prpc_status_clear(&st);
  test_rmdir(dir);
}

/* A real process of another user (nobody, 65534) is kept out, let in, and
 * seen by the handler with its own uid. */
static void rules_other_user(void) {
  char target[PATH_MAX + 8], err[4096];
  prpc_server_opts opts = PRPC_SERVER_OPTS_INIT;
  need_root();
  char *dir = open_dir(target, sizeof(target));
  opts.socket_mode = 0666; /* the rules, not the file mode, decide here */

  const char *root_only[] = {"allow same-user", NULL};
  atomic_store(&calls, 0);
  capture_stderr(dir);
  prpc_server *srv = server_with(&opts, target, root_only);
  int rc = client_as(65534, 65534, target, "intruder", dir, err, sizeof(err));
  prpc_server_destroy(srv);
  const char *log = captured();
  ASSERT_EQ(rc, 1);
  ASSERT_CONTAINS(err, "PERMISSION_DENIED: access denied: uid 65534");
  ASSERT_EQ(atomic_load(&calls), 0);
  ASSERT_CONTAINS(log, "uid 65534");
  ASSERT_CONTAINS(log, "no rule allows it");

  /* Order matters: the first matching rule decides. */
  const char *deny_first[] = {"deny uid:65534", "allow any", NULL};
  capture_stderr(dir);
  srv = server_with(&opts, target, deny_first);
  rc = client_as(65534, 65534, target, "intruder", dir, err, sizeof(err));
  prpc_server_destroy(srv);
  log = captured();
  ASSERT_EQ(rc, 1);
  ASSERT_CONTAINS(log, "rule deny uid:65534");
  ASSERT_EQ(atomic_load(&calls), 0);

  /* Allowed by user name, and by group. */
  const char *by_user[] = {"allow user:nobody", NULL};
  srv = server_with(&opts, target, by_user);
  rc = client_as(65534, 65534, target, "nobody", dir, err, sizeof(err));
  ASSERT_EQ(rc, 0);
  ASSERT_STREQ(last_name(), "nobody");
  ASSERT_EQ(last_uid, 65534); /* the kernel's word, seen by the handler */
  prpc_server_destroy(srv);
  const char *by_group[] = {"deny root", "allow group:nogroup", NULL};
  srv = server_with(&opts, target, by_group);
  rc = client_as(65534, 65534, target, "grouped", dir, err, sizeof(err));
  ASSERT_EQ(rc, 0);
  ASSERT_STREQ(last_name(), "grouped");
  prpc_server_destroy(srv);
  test_rmdir(dir);
}

/* File permissions keep out what the rules would let in. */
static void file_mode_protects(void) {
  char target[PATH_MAX + 8], err[4096];
  need_root();
  char *dir = open_dir(target, sizeof(target));
  prpc_server *srv = server_with(NULL, target, NULL); /* mode 0600 */
  int rc = client_as(65534, 65534, target, "x", dir, err, sizeof(err));
  ASSERT_EQ(rc, 1);
  ASSERT_CONTAINS(err, "UNAVAILABLE");
  ASSERT_CONTAINS(err, "Permission denied");
  prpc_server_destroy(srv);
  test_rmdir(dir);
}

static int raw_connect(const char *path) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
  ASSERT_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  return fd;
}

static void connection_limit(void) {
  char *dir = test_tmpdir();
  char target[PATH_MAX + 8], path[PATH_MAX];
  prpc_server_opts opts = PRPC_SERVER_OPTS_INIT;
  prpc_status st = PRPC_STATUS_INIT;
  snprintf(path, sizeof(path), "%s/g.sock", dir);
  snprintf(target, sizeof(target), "unix:%s", path);
  opts.max_connections = 2;
  prpc_server *srv = server_with(&opts, target, NULL);
  /* One working gRPC connection and one idle raw one fill the limit. */
  prpc_channel *held;
  ASSERT_EQ(prpc_channel_create(target, NULL, &held), 0);
  Helloworld__HelloRequest req = HELLOWORLD__HELLO_REQUEST__INIT;
  Helloworld__HelloReply *rep;
  req.name = "held";
  ASSERT_EQ(helloworld__greeter_client__say_hello(held, &req, NULL, &rep, NULL),
            GRPC_STATUS_OK);
  protobuf_c_message_free_unpacked(&rep->base, NULL);
  int raw = raw_connect(path);
  capture_stderr(dir);
  /* A third connection is refused at once. The raw socket below is
   * accepted first: read what the server sends on it to be sure. */
  int third = raw_connect(path);
  char b;
  ASSERT_EQ(read(third, &b, 1), 0); /* closed by the server */
  close(third);
  const char *log = captured();
  ASSERT_CONTAINS(log, "refused a connection");
  ASSERT_CONTAINS(log, "max_connections");
  /* Existing connections keep working. */
  ASSERT_EQ(helloworld__greeter_client__say_hello(held, &req, NULL, &rep, &st),
            GRPC_STATUS_OK);
  protobuf_c_message_free_unpacked(&rep->base, NULL);
  prpc_status_clear(&st);
  /* Once one goes, a new one is let in. */
  close(raw);
  double t0 = test_now_ms();
  grpc_status_code c;
  while ((c = hello(target, "new", 1, NULL)) != GRPC_STATUS_OK &&
         test_now_ms() - t0 < 10000)
    ;
  ASSERT_EQ(c, GRPC_STATUS_OK);
  prpc_channel_destroy(held);
  prpc_server_destroy(srv);
  test_rmdir(dir);
}

static prpc_child *spawn_greeter_server(void) {
  char *argv[] = {"greeter_server", "--listen", "fd:3", NULL};
  prpc_child *child;
  if (prpc_spawn(PRPC_BIN_DIR "/greeter_server", argv, NULL, &child) != 0)
    FAIL_AT(__FILE__, __LINE__, "%s", prpc_last_error());
  return child;
}

/* The child is the server; it crashes; the parent's calls fail at once and
 * the parent learns how the child ended. */
static void spawn_child_server(void) {
  prpc_child *child = spawn_greeter_server();
  prpc_channel *ch;
  prpc_status st = PRPC_STATUS_INIT;
  Helloworld__HelloRequest req = HELLOWORLD__HELLO_REQUEST__INIT;
  Helloworld__HelloReply *rep;
  prpc_call_opts o = PRPC_CALL_OPTS_INIT;
  int wst;
  o.timeout_ms = 10000;
  req.name = "parent";
  const char *t = prpc_child_target(child);
  ASSERT(t != NULL && strncmp(t, "fd:", 3) == 0);
  ASSERT(prpc_child_target(child) == NULL); /* taken once */
  ASSERT_EQ(prpc_channel_create(t, NULL, &ch), 0);
  ASSERT_EQ(helloworld__greeter_client__say_hello(ch, &req, &o, &rep, NULL),
            GRPC_STATUS_OK);
  ASSERT_STREQ(rep->message, "Hello parent");
  protobuf_c_message_free_unpacked(&rep->base, NULL);
  ASSERT_EQ(prpc_child_wait(child, 0, &wst), -ETIMEDOUT);
  ASSERT_EQ(prpc_child_kill(child, SIGKILL), 0);
  ASSERT_EQ(prpc_child_wait(child, 10000, &wst), 0);
  ASSERT(WIFSIGNALED(wst) && WTERMSIG(wst) == SIGKILL);
  double t0 = test_now_ms();
  ASSERT_EQ(helloworld__greeter_client__say_hello(ch, &req, &o, &rep, &st),
            GRPC_STATUS_UNAVAILABLE);
  ASSERT(test_now_ms() - t0 < 3000); /* at once, not at the deadline */
  prpc_status_clear(&st);
  prpc_channel_destroy(ch);
  prpc_child_destroy(child);
}

/* The child is the client of a server in the parent. */
static void spawn_child_client(void) {
  char *argv[] = {"greeter_client", "--target", "fd:3", "--name", "child",
                  NULL};
  prpc_child *child;
  prpc_server *srv;
  int wst;
  ASSERT_EQ(prpc_spawn(PRPC_BIN_DIR "/greeter_client", argv, NULL, &child), 0);
  ASSERT_EQ(prpc_server_create(NULL, &srv), 0);
  ASSERT_EQ(prpc_server_add_listener(srv, prpc_child_target(child), NULL), 0);
  ASSERT_EQ(helloworld__greeter_server__register(srv, &impl, NULL), 0);
  pthread_mutex_lock(&last_mu);
  last_name_buf[0] = '\0';
  pthread_mutex_unlock(&last_mu);
  ASSERT_EQ(prpc_server_start(srv), 0);
  ASSERT_EQ(prpc_child_wait(child, 20000, &wst), 0);
  ASSERT(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
  ASSERT_STREQ(last_name(), "child");
  /* For a socketpair the kernel reports the process that created the
   * pair (this one), not the child that holds the other end. */
  ASSERT_EQ(last_pid, getpid());
  ASSERT_EQ(last_uid, getuid());
  prpc_server_destroy(srv);
  prpc_child_destroy(child);
}

/* The parent goes away (its end closes): the child server sees it and
 * exits cleanly. */
static void parent_goes_away(void) {
  prpc_child *child = spawn_greeter_server();
  int wst;
  const char *t = prpc_child_target(child);
  ASSERT_EQ(hello(t, "once", 0, NULL), GRPC_STATUS_OK); /* destroys the channel */
  ASSERT_EQ(prpc_child_wait(child, 10000, &wst), 0);
  ASSERT(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
  prpc_child_destroy(child);
}

static void bad_spawn(void) {
  char *argv[] = {"nope", NULL};
  prpc_child *child = NULL;
  ASSERT_EQ(prpc_spawn("/no/such/program", argv, NULL, &child), -ENOENT);
  ASSERT_CONTAINS(prpc_last_error(), "/no/such/program");
  ASSERT(child == NULL);
  ASSERT(prpc_inherited_target("PRPC_NOT_SET_ANYWHERE") == NULL);
}

/* systemd-style activation with a hand-made LISTEN_FDS. */
static void socket_activation(void) {
  char *dir = test_tmpdir();
  char target[PATH_MAX + 8];
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  posix_spawn_file_actions_t fa;
  pid_t pid;
  int st;
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/activated.sock", dir);
  snprintf(target, sizeof(target), "unix:%s", sa.sun_path);
  int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  ASSERT_EQ(listen(lfd, 16), 0);
  /* LISTEN_PID must be the server's own pid: let a shell set it, then
   * exec the server in its place. */
  char *argv[] = {"sh", "-c", "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" --systemd",
                  PRPC_BIN_DIR "/greeter_server", NULL};
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, lfd, 3);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  ASSERT_EQ(posix_spawnp(&pid, "sh", &fa, NULL, argv, environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  close(lfd);
  ASSERT_EQ(hello(target, "activated", 1, NULL), GRPC_STATUS_OK);
  kill(pid, SIGTERM);
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  test_rmdir(dir);
}

TEST_MAIN(CASE(socket_group), CASE(rule_errors), CASE(rules_own_uid),
          CASE(rules_other_user), CASE(file_mode_protects),
          CASE(connection_limit), CASE(spawn_child_server),
          CASE(spawn_child_client), CASE(parent_goes_away), CASE(bad_spawn),
          CASE(socket_activation))
