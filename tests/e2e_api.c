/* The API's contract: what a failing call leaves behind, and that every
 * documented result is the one returned. */
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helloworld.prpc.h"
#include "test.h"
#include "testutil.h"

static grpc_status_code say_hello(prpc_ctx *ctx,
                                  const Helloworld__HelloRequest *req,
                                  Helloworld__HelloReply *reply, void *ud) {
  (void)ud;
  if (!req->name || !*req->name) {
    prpc_ctx_set_message(ctx, "a name, please");
    return GRPC_STATUS_INVALID_ARGUMENT;
  }
  reply->message = prpc_ctx_strdup(ctx, req->name);
  return GRPC_STATUS_OK;
}
static const Helloworld__GreeterServer impl = {say_hello};

/* A service whose second method is already registered is refused as a
 * whole: its first method is not served either. */
static void register_all_or_nothing(void) {
  char *dir = test_tmpdir(), target[300];
  prpc_server *srv;
  prpc_channel *ch;
  prpc_status st = PRPC_STATUS_INIT;
  static const prpc_invoke_fn two[2] = {NULL, NULL};
  prpc_method_desc methods[2];
  methods[0] = helloworld__greeter__prpc_service.methods[0];
  methods[0].path = "/test.api.Extra/Fresh";
  methods[1] = helloworld__greeter__prpc_service.methods[0]; /* taken */
  prpc_service_desc extra = {"test.api.Extra", 2, methods, NULL};
  snprintf(target, sizeof(target), "unix:%s/s.sock", dir);
  ASSERT_EQ(prpc_server_create(NULL, &srv), 0);
  ASSERT_EQ(prpc_server_add_listener(srv, target, NULL), 0);
  ASSERT_EQ(helloworld__greeter_server__register(srv, &impl, NULL), 0);
  ASSERT_EQ(prpc_server_register(srv, &extra, two, NULL, NULL), PRPC_EEXIST);
  ASSERT_CONTAINS(prpc_last_error(), "/helloworld.Greeter/SayHello is "
                                     "already registered");
  /* A bad table is refused before anything is kept, too. */
  methods[1].path = "no-slash";
  ASSERT_EQ(prpc_server_register(srv, &extra, two, NULL, NULL), -EINVAL);
  methods[1].path = "/test.api.Extra/Fresh";
  ASSERT_EQ(prpc_server_register(srv, &extra, two, NULL, NULL), PRPC_EEXIST);
  ASSERT_CONTAINS(prpc_last_error(), "appears twice");
  ASSERT_EQ(prpc_server_start(srv), 0);
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  Helloworld__HelloRequest req = HELLOWORLD__HELLO_REQUEST__INIT;
  Helloworld__HelloReply *rep = NULL;
  req.name = "x";
  ASSERT_EQ(prpc_unary_call(ch, &methods[0], &req, NULL, (void **)&rep, &st),
            GRPC_STATUS_UNIMPLEMENTED);
  ASSERT_STREQ(st.message, "unknown method /test.api.Extra/Fresh");
  prpc_status_clear(&st);
  prpc_channel_destroy(ch);
  prpc_server_destroy(srv);
  test_rmdir(dir);
}

/* A client call refused before it is sent says so (local_error), apart
 * from the same status code sent by the server. */
static void local_errors_told_apart(void) {
  char *dir = test_tmpdir(), target[300];
  prpc_server *srv;
  prpc_channel *ch;
  prpc_status st = PRPC_STATUS_INIT;
  prpc_call_opts o = PRPC_CALL_OPTS_INIT;
  Helloworld__HelloRequest req = HELLOWORLD__HELLO_REQUEST__INIT;
  Helloworld__HelloReply *rep = NULL;
  snprintf(target, sizeof(target), "unix:%s/s.sock", dir);
  ASSERT_EQ(prpc_server_create(NULL, &srv), 0);
  ASSERT_EQ(prpc_server_add_listener(srv, target, NULL), 0);
  ASSERT_EQ(helloworld__greeter_server__register(srv, &impl, NULL), 0);
  ASSERT_EQ(prpc_server_start(srv), 0);
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  /* The server's INVALID_ARGUMENT. */
  req.name = "";
  ASSERT_EQ(helloworld__greeter_client__say_hello(ch, &req, NULL, &rep, &st),
            GRPC_STATUS_INVALID_ARGUMENT);
  ASSERT_EQ(st.local_error, 0);
  ASSERT_STREQ(st.message, "a name, please");
  /* A NULL request: ours. */
  ASSERT_EQ(helloworld__greeter_client__say_hello(ch, NULL, NULL, &rep, &st),
            GRPC_STATUS_INVALID_ARGUMENT);
  ASSERT_EQ(st.local_error, -EINVAL);
  ASSERT_CONTAINS(st.message, "NULL channel, method or request");
  ASSERT_CONTAINS(prpc_last_error(), "NULL channel, method or request");
  /* An unknown compression name: ours. */
  req.name = "x";
  o.compression = "zstd";
  ASSERT_EQ(helloworld__greeter_client__say_hello(ch, &req, &o, &rep, &st),
            GRPC_STATUS_INVALID_ARGUMENT);
  ASSERT_EQ(st.local_error, -EINVAL);
  ASSERT_CONTAINS(st.message, "unknown compression algorithm 'zstd'");
  /* And a good call clears it. */
  o.compression = NULL;
  ASSERT_EQ(helloworld__greeter_client__say_hello(ch, &req, &o, &rep, &st),
            GRPC_STATUS_OK);
  ASSERT_EQ(st.local_error, 0);
  protobuf_c_message_free_unpacked(&rep->base, NULL);
  prpc_status_clear(&st);
  prpc_channel_destroy(ch);
  prpc_server_destroy(srv);
  test_rmdir(dir);
}

/* TCP listeners say why they failed: in use, no such local address, a
 * host that does not resolve (and, for a user without privileges, a port
 * below 1024). */
static void tcp_listen_errors(void) {
  prpc_server *srv;
  int port = 0;
  ASSERT_EQ(prpc_server_create(NULL, &srv), 0);
  ASSERT_EQ(prpc_server_add_listener(srv, "127.0.0.1:0", &port), 0);
  ASSERT(port > 0);
  char taken[64];
  snprintf(taken, sizeof(taken), "127.0.0.1:%d", port);
  ASSERT_EQ(prpc_server_add_listener(srv, taken, NULL), -EADDRINUSE);
  ASSERT_CONTAINS(prpc_last_error(), "the address is in use");
  /* 192.0.2.1 is TEST-NET-1: never an address of this machine. */
  ASSERT_EQ(prpc_server_add_listener(srv, "192.0.2.1:0", NULL),
            -EADDRNOTAVAIL);
  ASSERT_CONTAINS(prpc_last_error(), "no such local address");
  ASSERT_EQ(prpc_server_add_listener(srv, "no-such-host.invalid:0", NULL),
            -EADDRNOTAVAIL);
  ASSERT_CONTAINS(prpc_last_error(), "does not resolve");
  if (geteuid() != 0) {
    ASSERT_EQ(prpc_server_add_listener(srv, "127.0.0.1:1", NULL), -EACCES);
    ASSERT_CONTAINS(prpc_last_error(), "permission denied");
  }
  prpc_server_destroy(srv);
}

/* An error path frees what it made before it prints the error: the
 * destroy functions leave prpc_last_error() as it was. */
static void last_error_survives_destroy(void) {
  char *dir = test_tmpdir(), target[300], want[512];
  prpc_server *srv, *srv2;
  prpc_channel *ch;
  prpc_call_opts o = PRPC_CALL_OPTS_INIT;
  Helloworld__HelloRequest req = HELLOWORLD__HELLO_REQUEST__INIT;
  snprintf(target, sizeof(target), "unix:%s/s.sock", dir);
  ASSERT_EQ(prpc_server_create(NULL, &srv), 0);
  ASSERT_EQ(prpc_server_add_listener(srv, target, NULL), 0);
  ASSERT_EQ(helloworld__greeter_server__register(srv, &impl, NULL), 0);
  ASSERT_EQ(prpc_server_start(srv), 0);
  /* A second server on the same path: refused; destroyed; the reason. */
  ASSERT_EQ(prpc_server_create(NULL, &srv2), 0);
  ASSERT_EQ(prpc_server_add_listener(srv2, target, NULL), PRPC_EINUSE);
  snprintf(want, sizeof(want), "%s", prpc_last_error());
  ASSERT(want[0] != '\0');
  prpc_server_destroy(srv2);
  ASSERT_STREQ(prpc_last_error(), want);
  /* A call refused locally, then its channel destroyed. */
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  o.compression = "zstd";
  ASSERT_EQ(helloworld__greeter_client__say_hello_async(ch, &req, &o, NULL,
                                                         NULL, NULL),
            -EINVAL);
  snprintf(want, sizeof(want), "%s", prpc_last_error());
  prpc_channel_destroy(ch);
  ASSERT_STREQ(prpc_last_error(), want);
  /* Registering after start: refused; the running server destroyed. */
  ASSERT_EQ(helloworld__greeter_server__register(srv, &impl, NULL),
            PRPC_ESTATE);
  snprintf(want, sizeof(want), "%s", prpc_last_error());
  prpc_server_shutdown(srv);
  prpc_server_destroy(srv);
  ASSERT_STREQ(prpc_last_error(), want);
  test_rmdir(dir);
}

TEST_MAIN(CASE(register_all_or_nothing), CASE(local_errors_told_apart),
          CASE(tcp_listen_errors),
          CASE(last_error_survives_destroy))
