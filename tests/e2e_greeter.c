/* End-to-end Greeter: a real server and client in one process, over unix
 * sockets in a fresh temporary directory, abstract sockets and TCP on
 * 127.0.0.1 port 0. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "helloworld.prpc.h"
#include "test.h"
#include "testutil.h"
#include "../runtime/raw_codec.h"

/* ---- the server under test ---- */

/* What the handler saw, for the test thread to check. Atomic or under a
 * lock: the handler runs on a server thread, and the reply that tells the
 * test it ran travels through gRPC core, which ThreadSanitizer cannot see
 * into. */
static _Atomic int64_t seen_time_left = -2;
static atomic_int saw_late; /* a handler ran for the name "late" */
static pthread_mutex_t seen_mu = PTHREAD_MUTEX_INITIALIZER;
static char seen_peer_buf[256];
static _Atomic int64_t seen_pid = -1, seen_uid = -1;

/* A copy of the last peer a handler saw. */
static const char *seen_peer(void) {
  static char copy[256];
  pthread_mutex_lock(&seen_mu);
  memcpy(copy, seen_peer_buf, sizeof(copy));
  pthread_mutex_unlock(&seen_mu);
  return copy;
}

static grpc_status_code say_hello(prpc_ctx *ctx,
                                  const Helloworld__HelloRequest *req,
                                  Helloworld__HelloReply *reply, void *ud) {
  const char *name = req->name ? req->name : "";
  (void)ud;
  if (strcmp(name, "late") == 0)
    saw_late = 1;
  pthread_mutex_lock(&seen_mu);
  snprintf(seen_peer_buf, sizeof(seen_peer_buf), "%s", prpc_ctx_peer(ctx));
  pthread_mutex_unlock(&seen_mu);
  int64_t pid = -1, uid = -1;
  prpc_ctx_peer_cred(ctx, &pid, &uid, NULL);
  seen_pid = pid;
  seen_uid = uid;
  seen_time_left = prpc_ctx_time_left_ms(ctx);
  if (strncmp(name, "sleep:", 6) == 0) {
    long ms = atol(name + 6);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
  if (strcmp(name, "fail") == 0) {
    prpc_ctx_set_message(ctx, "no such person: Zoë 100% ✓");
    return GRPC_STATUS_NOT_FOUND;
  }
  if (strcmp(name, "echo-metadata") == 0) {
    const prpc_metadata *md = prpc_ctx_metadata(ctx);
    for (size_t i = 0; i < md->count; i++) {
      char key[128];
      if (strncmp(md->items[i].key, "x-", 2) != 0)
        continue;
      snprintf(key, sizeof(key), "echo-%s", md->items[i].key);
      ASSERT_EQ(prpc_ctx_add_trailer(ctx, key, md->items[i].value,
                                     md->items[i].value_len),
                0);
    }
    ASSERT_EQ(prpc_ctx_add_header(ctx, "h-initial", "first", 5), 0);
  }
  reply->message = prpc_ctx_alloc(ctx, strlen(name) + 7);
  sprintf(reply->message, "Hello %s", name);
  return GRPC_STATUS_OK;
}

static const Helloworld__GreeterServer impl = {say_hello};

static prpc_server *start_server(const char *target, int *port) {
  prpc_server_opts opts = PRPC_SERVER_OPTS_INIT;
  prpc_server *srv;
  opts.threads = 2;
  opts.grace_ms = 2000;
  ASSERT_EQ(prpc_server_create(&opts, &srv), 0);
  if (prpc_server_add_listener(srv, target, port) != 0)
    FAIL_AT(__FILE__, __LINE__, "listen %s: %s", target, prpc_last_error());
  ASSERT_EQ(helloworld__greeter_server__register(srv, &impl, NULL), 0);
  ASSERT_EQ(prpc_server_start(srv), 0);
  return srv;
}

/* Calls SayHello(name); returns the code, fills *msg with the reply. */
static grpc_status_code hello(prpc_channel *ch, const char *name,
                              int64_t timeout_ms, prpc_status *st,
                              char *msg, size_t msg_size) {
  Helloworld__HelloRequest req = HELLOWORLD__HELLO_REQUEST__INIT;
  Helloworld__HelloReply *reply = NULL;
  prpc_call_opts opts = PRPC_CALL_OPTS_INIT;
  opts.timeout_ms = timeout_ms;
  req.name = (char *)name;
  grpc_status_code code =
      helloworld__greeter_client__say_hello(ch, &req, &opts, &reply, st);
  if (code == GRPC_STATUS_OK) {
    ASSERT(reply != NULL);
    if (msg)
      snprintf(msg, msg_size, "%s", reply->message);
    protobuf_c_message_free_unpacked(&reply->base, NULL);
  } else {
    ASSERT(reply == NULL);
  }
  return code;
}

static void expect_hello(const char *target) {
  prpc_channel *ch;
  char msg[64];
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  ASSERT_EQ(hello(ch, "world", 5000, NULL, msg, sizeof(msg)), GRPC_STATUS_OK);
  ASSERT_STREQ(msg, "Hello world");
  /* A handler sees the client's deadline, not a local default. */
  /* gRPC rounds the timeout up when it encodes it: allow a little. */
  if (!(seen_time_left > 4000 && seen_time_left <= 5100))
    FAIL_AT(__FILE__, __LINE__, "handler saw %lld ms left",
            (long long)atomic_load(&seen_time_left));
  prpc_channel_destroy(ch);
}

/* ---- cases ---- */

static void unix_socket(void) {
  char *dir = test_tmpdir();
  char target[320], path[300];
  struct stat st;
  snprintf(path, sizeof(path), "%s/greeter.sock", dir);
  snprintf(target, sizeof(target), "unix:%s", path);
  prpc_server *srv = start_server(target, NULL);
  ASSERT_EQ(stat(path, &st), 0);
  ASSERT(S_ISSOCK(st.st_mode));
  ASSERT_EQ(st.st_mode & 0777, 0600); /* the default socket mode */
  expect_hello(target);
  ASSERT_STREQ(seen_peer(), target);
  ASSERT_EQ(seen_pid, getpid()); /* SO_PEERCRED: this very process */
  ASSERT_EQ(seen_uid, getuid());
  prpc_server_destroy(srv);
  ASSERT(stat(path, &st) != 0 && errno == ENOENT); /* removed at shutdown */
  test_rmdir(dir);
}

static void unix_socket_mode(void) {
  char *dir = test_tmpdir();
  char target[320], path[300];
  struct stat st;
  prpc_server_opts opts = PRPC_SERVER_OPTS_INIT;
  prpc_server *srv;
  snprintf(path, sizeof(path), "%s/g.sock", dir);
  snprintf(target, sizeof(target), "unix:%s", path);
  opts.socket_mode = 0660;
  ASSERT_EQ(prpc_server_create(&opts, &srv), 0);
  ASSERT_EQ(prpc_server_add_listener(srv, target, NULL), 0);
  ASSERT_EQ(stat(path, &st), 0);
  ASSERT_EQ(st.st_mode & 0777, 0660);
  prpc_server_destroy(srv); /* never started: still removes the file */
  ASSERT(stat(path, &st) != 0);
  test_rmdir(dir);
}

static void abstract_socket(void) {
  char target[128];
  snprintf(target, sizeof(target), "unix-abstract:piperpc-test-%d-%ld",
           (int)getpid(), (long)time(NULL));
  prpc_server *srv = start_server(target, NULL);
  expect_hello(target);
  ASSERT_STREQ(seen_peer(), target);
  prpc_server_destroy(srv);
}

static void tcp(void) {
  int port = 0;
  char target[64];
  prpc_server *srv = start_server("127.0.0.1:0", &port);
  ASSERT(port > 0);
  snprintf(target, sizeof(target), "127.0.0.1:%d", port);
  expect_hello(target);
  ASSERT_CONTAINS(seen_peer(), "ipv4:127.0.0.1:");
  ASSERT_EQ(seen_pid, -1); /* no kernel credentials over TCP */
  snprintf(target, sizeof(target), "ipv4:127.0.0.1:%d", port);
  expect_hello(target);
  prpc_server_destroy(srv);
}

static void many_listeners(void) {
  char *dir = test_tmpdir();
  char t1[300], t2[300];
  int port = 0;
  prpc_server_opts opts = PRPC_SERVER_OPTS_INIT;
  prpc_server *srv;
  snprintf(t1, sizeof(t1), "unix:%s/a.sock", dir);
  ASSERT_EQ(prpc_server_create(&opts, &srv), 0);
  ASSERT_EQ(prpc_server_add_listener(srv, t1, NULL), 0);
  ASSERT_EQ(prpc_server_add_listener(srv, "127.0.0.1:0", &port), 0);
  ASSERT_EQ(helloworld__greeter_server__register(srv, &impl, NULL), 0);
  ASSERT_EQ(helloworld__greeter_server__register(srv, &impl, NULL),
            PRPC_EEXIST);
  ASSERT_EQ(prpc_server_start(srv), 0);
  ASSERT_EQ(prpc_server_start(srv), PRPC_ESTATE);
  ASSERT_EQ(prpc_server_add_listener(srv, "127.0.0.1:0", NULL), PRPC_ESTATE);
  snprintf(t2, sizeof(t2), "127.0.0.1:%d", port);
  expect_hello(t1);
  expect_hello(t2);
  prpc_server_destroy(srv);
  test_rmdir(dir);
}

static void deadline(void) {
  char *dir = test_tmpdir();
  char target[300];
  prpc_status st = PRPC_STATUS_INIT;
  snprintf(target, sizeof(target), "unix:%s/g.sock", dir);
  prpc_server *srv = start_server(target, NULL);
  prpc_channel *ch;
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  seen_time_left = -2;
  double t0 = test_now_ms();
  /* 1.5 s: long enough that the request reaches the handler before the
   * deadline even under valgrind on a loaded machine (gRPC core drops a
   * unary call whose deadline passes before its message arrives). */
  ASSERT_EQ(hello(ch, "sleep:4000", 1500, &st, NULL, 0),
            GRPC_STATUS_DEADLINE_EXCEEDED);
  double took = test_now_ms() - t0;
  ASSERT(took >= 1490 && took < 3900); /* not held until the handler ends */
  /* The deadline travelled to the server: the handler saw at most 1500 ms
   * (0 if, on a slow machine, it started after the deadline). */
  while (seen_time_left == -2 && test_now_ms() - t0 < 10000)
    test_sleep_ms(5);
  if (!(seen_time_left >= 0 && seen_time_left <= 1550))
    FAIL_AT(__FILE__, __LINE__, "handler saw %lld ms left",
            (long long)atomic_load(&seen_time_left));
  prpc_status_clear(&st);
  /* No deadline: the handler sees -1. */
  ASSERT_EQ(hello(ch, "x", 0, NULL, NULL, 0), GRPC_STATUS_OK);
  ASSERT_EQ(seen_time_left, -1);
  prpc_channel_destroy(ch);
  prpc_server_destroy(srv);
  test_rmdir(dir);
}

static void metadata(void) {
  char *dir = test_tmpdir();
  char target[300];
  static const unsigned char bin[] = {0, 1, 2, 0xfe, 0xff, '\n'};
  prpc_metadata md = PRPC_METADATA_INIT;
  prpc_status st = PRPC_STATUS_INIT;
  prpc_call_opts opts = PRPC_CALL_OPTS_INIT;
  Helloworld__HelloRequest req = HELLOWORLD__HELLO_REQUEST__INIT;
  Helloworld__HelloReply *reply = NULL;
  snprintf(target, sizeof(target), "unix:%s/g.sock", dir);
  prpc_server *srv = start_server(target, NULL);
  prpc_channel *ch;
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  ASSERT_EQ(prpc_metadata_add_str(&md, "x-user", "alice"), 0);
  ASSERT_EQ(prpc_metadata_add(&md, "x-blob-bin", bin, sizeof(bin)), 0);
  opts.metadata = &md;
  opts.timeout_ms = 5000;
  req.name = "echo-metadata";
  ASSERT_EQ(helloworld__greeter_client__say_hello(ch, &req, &opts, &reply, &st),
            GRPC_STATUS_OK);
  ASSERT_STREQ(reply->message, "Hello echo-metadata");
  const prpc_md *e = prpc_metadata_get(&st.trailers, "echo-x-user");
  ASSERT(e && e->value_len == 5 && memcmp(e->value, "alice", 5) == 0);
  e = prpc_metadata_get(&st.trailers, "echo-x-blob-bin");
  ASSERT(e && e->value_len == sizeof(bin) &&
         memcmp(e->value, bin, sizeof(bin)) == 0);
  e = prpc_metadata_get(&st.headers, "h-initial");
  ASSERT(e && strcmp(e->value, "first") == 0);
  protobuf_c_message_free_unpacked(&reply->base, NULL);
  prpc_status_clear(&st);
  prpc_metadata_clear(&md);
  prpc_channel_destroy(ch);
  prpc_server_destroy(srv);
  test_rmdir(dir);
}

static void status_message(void) {
  int port = 0;
  char target[64];
  prpc_status st = PRPC_STATUS_INIT;
  prpc_server *srv = start_server("127.0.0.1:0", &port);
  prpc_channel *ch;
  snprintf(target, sizeof(target), "127.0.0.1:%d", port);
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  ASSERT_EQ(hello(ch, "fail", 5000, &st, NULL, 0), GRPC_STATUS_NOT_FOUND);
  ASSERT_EQ(st.code, GRPC_STATUS_NOT_FOUND);
  /* UTF-8 and '%' survive gRPC's percent-encoding on the wire. */
  ASSERT_STREQ(st.message, "no such person: Zoë 100% ✓");
  prpc_status_clear(&st);
  prpc_channel_destroy(ch);
  prpc_server_destroy(srv);
}

static void missing_socket(void) {
  char *dir = test_tmpdir();
  char target[300];
  prpc_status st = PRPC_STATUS_INIT;
  prpc_channel *ch;
  snprintf(target, sizeof(target), "unix:%s/nobody-here.sock", dir);
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  double t0 = test_now_ms();
  ASSERT_EQ(hello(ch, "x", 10000, &st, NULL, 0), GRPC_STATUS_UNAVAILABLE);
  ASSERT(test_now_ms() - t0 < 5000); /* fails fast, not at the deadline */
  ASSERT_CONTAINS(st.message, "nobody-here.sock");
  prpc_status_clear(&st);

  /* With wait-for-ready the call waits, and ends at its deadline. */
  Helloworld__HelloRequest req = HELLOWORLD__HELLO_REQUEST__INIT;
  Helloworld__HelloReply *reply = NULL;
  prpc_call_opts opts = PRPC_CALL_OPTS_INIT;
  opts.timeout_ms = 300;
  opts.wait_for_ready = 1;
  req.name = "x";
  t0 = test_now_ms();
  ASSERT_EQ(helloworld__greeter_client__say_hello(ch, &req, &opts, &reply, NULL),
            GRPC_STATUS_DEADLINE_EXCEEDED);
  double took = test_now_ms() - t0;
  ASSERT(took >= 290 && took < 3000);
  prpc_channel_destroy(ch);
  test_rmdir(dir);
}

static void live_path_refused(void) {
  char *dir = test_tmpdir();
  char target[320], path[300];
  struct stat st1, st2;
  snprintf(path, sizeof(path), "%s/g.sock", dir);
  snprintf(target, sizeof(target), "unix:%s", path);
  prpc_server *srv = start_server(target, NULL);
  ASSERT_EQ(stat(path, &st1), 0);
  prpc_server *second;
  ASSERT_EQ(prpc_server_create(NULL, &second), 0);
  ASSERT_EQ(prpc_server_add_listener(second, target, NULL), PRPC_EINUSE);
  ASSERT_CONTAINS(prpc_last_error(), path);
  ASSERT_CONTAINS(prpc_last_error(), "another server is accepting");
  prpc_server_destroy(second);
  /* The live server's socket was not unlinked or replaced. */
  ASSERT_EQ(stat(path, &st2), 0);
  ASSERT_EQ(st1.st_ino, st2.st_ino);
  expect_hello(target);
  prpc_server_destroy(srv);
  test_rmdir(dir);
}

static void stale_path_replaced(void) {
  char *dir = test_tmpdir();
  char target[300];
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/g.sock", dir);
  snprintf(target, sizeof(target), "unix:%s", sa.sun_path);
  /* A server that died: the socket file stays, nothing accepts. */
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_EQ(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  close(fd);
  ASSERT_EQ(access(sa.sun_path, F_OK), 0);
  prpc_server *srv = start_server(target, NULL);
  expect_hello(target);
  prpc_server_destroy(srv);
  test_rmdir(dir);
}

static void bad_paths(void) {
  char *dir = test_tmpdir();
  char target[320], path[300];
  prpc_server *srv;
  ASSERT_EQ(prpc_server_create(NULL, &srv), 0);
  /* A regular file is never replaced. */
  snprintf(path, sizeof(path), "%s/file", dir);
  FILE *f = fopen(path, "w");
  fputs("keep me", f);
  fclose(f);
  snprintf(target, sizeof(target), "unix:%s", path);
  ASSERT_EQ(prpc_server_add_listener(srv, target, NULL), -ENOTSOCK);
  ASSERT_CONTAINS(prpc_last_error(), "is not a socket");
  ASSERT_EQ(access(path, F_OK), 0);
  /* A missing directory is named as such. */
  snprintf(target, sizeof(target), "unix:%s/no/such/dir/g.sock", dir);
  ASSERT_EQ(prpc_server_add_listener(srv, target, NULL), -ENOENT);
  ASSERT_CONTAINS(prpc_last_error(), "parent directory does not exist");
  prpc_server_destroy(srv);
  test_rmdir(dir);
}


static void malformed_request(void) {
  int port = 0;
  char target[64];
  prpc_status st = PRPC_STATUS_INIT;
  static const uint8_t garbage[] = {0x0a, 0x7f, 'x'}; /* length past end */
  raw_msg m = {garbage, sizeof(garbage)};
  prpc_method_desc desc = {"/helloworld.Greeter/SayHello", PRPC_UNARY,
                           &raw_codec, NULL, NULL};
  void *reply = (void *)1;
  prpc_server *srv = start_server("127.0.0.1:0", &port);
  prpc_channel *ch;
  snprintf(target, sizeof(target), "127.0.0.1:%d", port);
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  ASSERT_EQ(prpc_unary_call(ch, &desc, &m, NULL, &reply, &st),
            GRPC_STATUS_INVALID_ARGUMENT);
  ASSERT(reply == NULL);
  ASSERT_STREQ(st.message, "the request message does not decode: not a valid "
                           "message of its type");
  prpc_status_clear(&st);
  /* The server keeps serving, on the same connection. */
  char msg[64];
  ASSERT_EQ(hello(ch, "again", 5000, NULL, msg, sizeof(msg)), GRPC_STATUS_OK);
  ASSERT_STREQ(msg, "Hello again");
  prpc_channel_destroy(ch);
  prpc_server_destroy(srv);
}

static void unknown_method(void) {
  char *dir = test_tmpdir();
  char target[300];
  prpc_status st = PRPC_STATUS_INIT;
  raw_msg m = {(const uint8_t *)"", 0};
  prpc_method_desc nope = {"/helloworld.Greeter/Nope", PRPC_UNARY, &raw_codec,
                           NULL, NULL};
  prpc_method_desc nosvc = {"/no.Such/Service", PRPC_UNARY, &raw_codec, NULL,
                            NULL};
  void *reply = NULL;
  snprintf(target, sizeof(target), "unix:%s/g.sock", dir);
  prpc_server *srv = start_server(target, NULL);
  prpc_channel *ch;
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  ASSERT_EQ(prpc_unary_call(ch, &nope, &m, NULL, &reply, &st),
            GRPC_STATUS_UNIMPLEMENTED);
  ASSERT_CONTAINS(st.message, "/helloworld.Greeter/Nope");
  prpc_status_clear(&st);
  ASSERT_EQ(prpc_unary_call(ch, &nosvc, &m, NULL, &reply, &st),
            GRPC_STATUS_UNIMPLEMENTED);
  prpc_status_clear(&st);
  expect_hello(target);
  prpc_channel_destroy(ch);
  prpc_server_destroy(srv);
  test_rmdir(dir);
}

/* One method table reused for another method (as a tool building tables
 * at run time does): the call goes to the path it names now, not to the
 * method first called through that address. */
static void reused_method_desc(void) {
  char *dir = test_tmpdir();
  char target[320];
  raw_msg m = {(const uint8_t *)"", 0};
  prpc_method_desc desc = {"/helloworld.Greeter/SayHello", PRPC_UNARY,
                           &raw_codec, NULL, NULL};
  prpc_status st = PRPC_STATUS_INIT;
  void *reply = NULL;
  prpc_channel *ch;
  snprintf(target, sizeof(target), "unix:%s/g.sock", dir);
  prpc_server *srv = start_server(target, NULL);
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  ASSERT_EQ(prpc_unary_call(ch, &desc, &m, NULL, &reply, NULL),
            GRPC_STATUS_OK);
  raw_free(NULL, reply, NULL);
  desc.path = "/helloworld.Greeter/Nope";
  ASSERT_EQ(prpc_unary_call(ch, &desc, &m, NULL, &reply, &st),
            GRPC_STATUS_UNIMPLEMENTED);
  ASSERT_CONTAINS(st.message, "/helloworld.Greeter/Nope");
  prpc_status_clear(&st);
  desc.path = "/helloworld.Greeter/SayHello";
  ASSERT_EQ(prpc_unary_call(ch, &desc, &m, NULL, &reply, NULL),
            GRPC_STATUS_OK);
  raw_free(NULL, reply, NULL);
  prpc_channel_destroy(ch);
  prpc_server_destroy(srv);
  test_rmdir(dir);
}

static void missing_handler(void) {
  int port = 0;
  char target[64];
  static const Helloworld__GreeterServer empty = {NULL};
  prpc_status st = PRPC_STATUS_INIT;
  prpc_server *srv;
  prpc_channel *ch;
  ASSERT_EQ(prpc_server_create(NULL, &srv), 0);
  ASSERT_EQ(prpc_server_add_listener(srv, "127.0.0.1:0", &port), 0);
  ASSERT_EQ(helloworld__greeter_server__register(srv, &empty, NULL), 0);
  ASSERT_EQ(prpc_server_start(srv), 0);
  snprintf(target, sizeof(target), "127.0.0.1:%d", port);
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  ASSERT_EQ(hello(ch, "x", 5000, &st, NULL, 0), GRPC_STATUS_UNIMPLEMENTED);
  prpc_status_clear(&st);
  prpc_channel_destroy(ch);
  prpc_server_destroy(srv);
}

static void oversize_message(void) {
  int port = 0;
  char target[64];
  prpc_status st = PRPC_STATUS_INIT;
  size_t big = 5u << 20; /* over gRPC's 4 MiB receive default */
  char *name = malloc(big + 1);
  memset(name, 'n', big);
  name[big] = '\0';
  prpc_server *srv = start_server("127.0.0.1:0", &port);
  prpc_channel *ch;
  snprintf(target, sizeof(target), "127.0.0.1:%d", port);
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  ASSERT_EQ(hello(ch, name, 10000, &st, NULL, 0),
            GRPC_STATUS_RESOURCE_EXHAUSTED);
  prpc_status_clear(&st);
  char msg[64];
  ASSERT_EQ(hello(ch, "small", 5000, NULL, msg, sizeof(msg)), GRPC_STATUS_OK);
  free(name);
  prpc_channel_destroy(ch);
  prpc_server_destroy(srv);
}

/* ---- graceful shutdown ---- */

typedef struct slow_call {
  const char *target;
  grpc_status_code code;
  char msg[64];
} slow_call;

static void *run_slow(void *arg) {
  slow_call *c = arg;
  prpc_channel *ch;
  ASSERT_EQ(prpc_channel_create(c->target, NULL, &ch), 0);
  c->code = hello(ch, "sleep:400", 10000, NULL, c->msg, sizeof(c->msg));
  prpc_channel_destroy(ch);
  return NULL;
}

static void graceful_shutdown(void) {
  char *dir = test_tmpdir();
  char target[300];
  slow_call c = {target, GRPC_STATUS_UNKNOWN, ""};
  pthread_t th;
  snprintf(target, sizeof(target), "unix:%s/g.sock", dir);
  prpc_server *srv = start_server(target, NULL);
  /* Make sure the connection is up before the slow call starts. */
  expect_hello(target);
  seen_time_left = -2;
  ASSERT_EQ(pthread_create(&th, NULL, run_slow, &c), 0);
  while (seen_time_left == -2) /* the handler has started */
    test_sleep_ms(5);
  prpc_server_shutdown(srv);
  /* New calls are refused while the old one drains: UNAVAILABLE, or
   * CANCELLED when gRPC core reuses the open connection and the call races
   * the server's GOAWAY. Either way no handler runs. */
  prpc_channel *ch;
  prpc_status st = PRPC_STATUS_INIT;
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  grpc_status_code late = hello(ch, "late", 2000, &st, NULL, 0);
  ASSERT(late == GRPC_STATUS_UNAVAILABLE || late == GRPC_STATUS_CANCELLED);
  ASSERT(!saw_late);
  prpc_status_clear(&st);
  prpc_channel_destroy(ch);
  ASSERT_EQ(prpc_server_wait(srv), 0);
  pthread_join(th, NULL);
  ASSERT_EQ(c.code, GRPC_STATUS_OK); /* the in-flight call completed */
  ASSERT_STREQ(c.msg, "Hello sleep:400");
  prpc_server_destroy(srv);
  test_rmdir(dir);
}

/* The anonymous pipe: a connected socketpair, one end per side. */
static void socketpair_fds(void) {
  int sv[2];
  char server_target[32], client_target[32], msg[64];
  prpc_server *srv;
  prpc_channel *ch;
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  snprintf(server_target, sizeof(server_target), "fd:%d", sv[0]);
  snprintf(client_target, sizeof(client_target), "fd:%d", sv[1]);
  ASSERT_EQ(prpc_server_create(NULL, &srv), 0);
  ASSERT_EQ(prpc_server_add_listener(srv, server_target, NULL), 0);
  ASSERT_EQ(helloworld__greeter_server__register(srv, &impl, NULL), 0);
  ASSERT_EQ(prpc_server_start(srv), 0);
  ASSERT_EQ(prpc_channel_create(client_target, NULL, &ch), 0);
  ASSERT_EQ(hello(ch, "pair", 5000, NULL, msg, sizeof(msg)), GRPC_STATUS_OK);
  ASSERT_STREQ(msg, "Hello pair");
  ASSERT_EQ(seen_pid, getpid()); /* credentials of the other end */
  ASSERT_EQ(hello(ch, "again", 5000, NULL, msg, sizeof(msg)), GRPC_STATUS_OK);
  prpc_channel_destroy(ch);
  prpc_server_destroy(srv);
}

/* A server that never started still frees its listeners. */
static void destroy_unstarted(void) {
  prpc_server *srv;
  int port = 0;
  ASSERT_EQ(prpc_server_create(NULL, &srv), 0);
  ASSERT_EQ(prpc_server_add_listener(srv, "127.0.0.1:0", &port), 0);
  ASSERT(port > 0);
  prpc_server_destroy(srv);
  ASSERT_EQ(prpc_server_wait(NULL), -EINVAL);
}

static void *run_server(void *arg) {
  static int rc;
  rc = prpc_server_run(arg);
  return &rc;
}

/* prpc_server_run() stops on SIGTERM, drains, and restores the signal's
 * previous disposition. */
static void run_until_sigterm(void) {
  char *dir = test_tmpdir();
  char target[320], path[300];
  pthread_t th;
  void *ret;
  struct sigaction old;
  prpc_server *srv;
  snprintf(path, sizeof(path), "%s/g.sock", dir);
  snprintf(target, sizeof(target), "unix:%s", path);
  ASSERT_EQ(prpc_server_create(NULL, &srv), 0);
  ASSERT_EQ(prpc_server_add_listener(srv, target, NULL), 0);
  ASSERT_EQ(helloworld__greeter_server__register(srv, &impl, NULL), 0);
  ASSERT_EQ(pthread_create(&th, NULL, run_server, srv), 0);
  expect_hello(target); /* the listener was bound before run: no race */
  sigaction(SIGTERM, NULL, &old);
  ASSERT(old.sa_handler != SIG_DFL); /* run's handler is in place */
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);
  pthread_join(th, &ret);
  ASSERT_EQ(*(int *)ret, 0);
  sigaction(SIGTERM, NULL, &old);
  ASSERT(old.sa_handler == SIG_DFL);
  ASSERT(access(path, F_OK) != 0); /* socket removed */
  prpc_server_destroy(srv);
  test_rmdir(dir);
}

typedef struct log_capture {
  pthread_mutex_t mu;
  int lines;
  char method[128], peer[300], message[256];
  int level;
} log_capture;

static void capture_log(prpc_log_level level, const char *method,
                        const char *peer, const char *message, void *ud) {
  log_capture *c = ud;
  pthread_mutex_lock(&c->mu);
  if (method) {
    c->lines++;
    c->level = (int)level;
    snprintf(c->method, sizeof(c->method), "%s", method);
    snprintf(c->peer, sizeof(c->peer), "%s", peer ? peer : "");
    snprintf(c->message, sizeof(c->message), "%s", message);
  }
  pthread_mutex_unlock(&c->mu);
}

/* The application's log sink gets per-call lines at debug level, with the
 * method and the peer apart from the message. */
static void log_sink(void) {
  char *dir = test_tmpdir();
  char target[320];
  log_capture c = {PTHREAD_MUTEX_INITIALIZER, 0, "", "", "", -1};
  prpc_status st = PRPC_STATUS_INIT;
  snprintf(target, sizeof(target), "unix:%s/g.sock", dir);
  prpc_set_log(capture_log, &c, PRPC_LOG_DEBUG);
  prpc_server *srv = start_server(target, NULL);
  prpc_channel *ch;
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  ASSERT_EQ(hello(ch, "fail", 5000, &st, NULL, 0), GRPC_STATUS_NOT_FOUND);
  prpc_status_clear(&st);
  prpc_channel_destroy(ch);
  prpc_server_destroy(srv);
  prpc_set_log(NULL, NULL, PRPC_LOG_WARN);
  ASSERT_EQ(c.lines, 1);
  ASSERT_EQ(c.level, PRPC_LOG_DEBUG);
  ASSERT_STREQ(c.method, "/helloworld.Greeter/SayHello");
  ASSERT_STREQ(c.peer, target);
  ASSERT_STREQ(c.message, "NOT_FOUND: no such person: Zoë 100% ✓");
  test_rmdir(dir);
}

TEST_MAIN(CASE(log_sink), CASE(socketpair_fds), CASE(destroy_unstarted),
          CASE(run_until_sigterm), CASE(unix_socket), CASE(unix_socket_mode), CASE(abstract_socket),
          CASE(tcp), CASE(many_listeners), CASE(deadline), CASE(metadata),
          CASE(status_message), CASE(missing_socket), CASE(live_path_refused),
          CASE(stale_path_replaced), CASE(bad_paths), CASE(malformed_request),
          CASE(unknown_method), CASE(reused_method_desc),
          CASE(missing_handler), CASE(oversize_message),
          CASE(graceful_shutdown))
