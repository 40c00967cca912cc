/* The built-in health service, called through stubs generated from the
 * standard grpc.health.v1 proto (the test's own copy of the client). */
#include <pthread.h>
#include <signal.h>

#include "grpc/health/v1/health.prpc.h"
#include "helloworld.prpc.h"
#include "test.h"
#include "testutil.h"

typedef Grpc__Health__V1__HealthCheckResponse Resp;
enum {
  SERVING = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING,
  NOT_SERVING =
      GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING,
  UNKNOWN_SVC =
      GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN
};

static grpc_status_code say_hello(prpc_ctx *ctx,
                                  const Helloworld__HelloRequest *req,
                                  Helloworld__HelloReply *reply, void *ud) {
  (void)req;
  (void)ud;
  reply->message = prpc_ctx_strdup(ctx, "hi");
  return GRPC_STATUS_OK;
}
static const Helloworld__GreeterServer impl = {say_hello};

static char *dir;
static char target[300];

static prpc_server *start(void) {
  prpc_server *srv;
  prpc_server_opts opts = PRPC_SERVER_OPTS_INIT;
  opts.grace_ms = 3000;
  dir = test_tmpdir();
  snprintf(target, sizeof(target), "unix:%s/h.sock", dir);
  ASSERT_EQ(prpc_server_create(&opts, &srv), 0);
  ASSERT_EQ(prpc_server_set_serving(srv, "", 1), PRPC_ESTATE);
  ASSERT_EQ(prpc_server_add_listener(srv, target, NULL), 0);
  ASSERT_EQ(helloworld__greeter_server__register(srv, &impl, NULL), 0);
  ASSERT_EQ(prpc_server_enable_health(srv), 0);
  ASSERT_EQ(prpc_server_enable_health(srv), PRPC_EEXIST);
  ASSERT_EQ(prpc_server_start(srv), 0);
  return srv;
}

/* Check(service): returns the status, or -(gRPC code) when the call
 * failed. */
static int check(prpc_channel *ch, const char *service) {
  Grpc__Health__V1__HealthCheckRequest req =
      GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  Resp *rep = NULL;
  req.service = (char *)service;
  grpc_status_code c =
      grpc__health__v1__health_client__check(ch, &req, NULL, &rep, NULL);
  if (c != GRPC_STATUS_OK)
    return -(int)c;
  int st = rep->status;
  protobuf_c_message_free_unpacked(&rep->base, NULL);
  return st;
}

static void check_and_set(void) {
  prpc_server *srv = start();
  prpc_channel *ch;
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  ASSERT_EQ(check(ch, ""), SERVING);
  ASSERT_EQ(check(ch, "helloworld.Greeter"), SERVING);
  ASSERT_EQ(check(ch, "grpc.health.v1.Health"), SERVING);
  ASSERT_EQ(check(ch, "no.Such"), -(int)GRPC_STATUS_NOT_FOUND);
  ASSERT_EQ(prpc_server_set_serving(srv, "helloworld.Greeter", 0), 0);
  ASSERT_EQ(check(ch, "helloworld.Greeter"), NOT_SERVING);
  ASSERT_EQ(check(ch, ""), SERVING);
  ASSERT_EQ(prpc_server_set_serving(srv, "helloworld.Greeter", 1), 0);
  ASSERT_EQ(check(ch, "helloworld.Greeter"), SERVING);
  /* A service the application names itself becomes known. */
  ASSERT_EQ(prpc_server_set_serving(srv, "app.Cache", 0), 0);
  ASSERT_EQ(check(ch, "app.Cache"), NOT_SERVING);
  prpc_channel_destroy(ch);
  prpc_server_destroy(srv);
  test_rmdir(dir);
}

/* Watch sends the current status, then every change; a graceful shutdown
 * turns everything NOT_SERVING. */
static void watch(void) {
  prpc_server *srv = start();
  prpc_channel *ch;
  prpc_call *call;
  Resp *r;
  Grpc__Health__V1__HealthCheckRequest req =
      GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  req.service = "helloworld.Greeter";
  ASSERT_EQ(grpc__health__v1__health_client__watch_start(ch, &req, NULL, &call),
            0);
  ASSERT_EQ(grpc__health__v1__health_client__watch_read(call, &r), 1);
  ASSERT_EQ(r->status, SERVING);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  ASSERT_EQ(prpc_server_set_serving(srv, "helloworld.Greeter", 0), 0);
  ASSERT_EQ(grpc__health__v1__health_client__watch_read(call, &r), 1);
  ASSERT_EQ(r->status, NOT_SERVING);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  ASSERT_EQ(prpc_server_set_serving(srv, "helloworld.Greeter", 1), 0);
  ASSERT_EQ(grpc__health__v1__health_client__watch_read(call, &r), 1);
  ASSERT_EQ(r->status, SERVING);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  prpc_server_shutdown(srv); /* graceful: health goes down first */
  ASSERT_EQ(grpc__health__v1__health_client__watch_read(call, &r), 1);
  ASSERT_EQ(r->status, NOT_SERVING);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  prpc_call_cancel(call);
  ASSERT_EQ(prpc_call_finish(call, NULL, NULL), GRPC_STATUS_CANCELLED);
  prpc_channel_destroy(ch);
  ASSERT_EQ(prpc_server_wait(srv), 0);
  prpc_server_destroy(srv);
  test_rmdir(dir);
}

static void watch_unknown(void) {
  prpc_server *srv = start();
  prpc_channel *ch;
  prpc_call *call;
  Resp *r;
  Grpc__Health__V1__HealthCheckRequest req =
      GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  req.service = "later.Service";
  ASSERT_EQ(grpc__health__v1__health_client__watch_start(ch, &req, NULL, &call),
            0);
  ASSERT_EQ(grpc__health__v1__health_client__watch_read(call, &r), 1);
  ASSERT_EQ(r->status, UNKNOWN_SVC);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  ASSERT_EQ(prpc_server_set_serving(srv, "later.Service", 1), 0);
  ASSERT_EQ(grpc__health__v1__health_client__watch_read(call, &r), 1);
  ASSERT_EQ(r->status, SERVING);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  prpc_call_cancel(call);
  ASSERT_EQ(prpc_call_finish(call, NULL, NULL), GRPC_STATUS_CANCELLED);
  prpc_channel_destroy(ch);
  prpc_server_destroy(srv);
  test_rmdir(dir);
}

TEST_MAIN(CASE(check_and_set), CASE(watch), CASE(watch_unknown))
