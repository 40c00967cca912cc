/* End-to-end streaming and generated-code shapes, with the services of
 * tests/codegen/proto (all four method kinds, imported and nested types, a
 * file without a package). */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "common/types.prpc.h"
#include "multi.prpc.h"
#include "nopkg.prpc.h"
#include "test.h"
#include "testutil.h"

static atomic_int handlers_running;
static atomic_int range_ended; /* Range handlers that have returned */

static grpc_status_code s_unary(prpc_ctx *ctx, const Test__Common__Text *req,
                                Test__Common__Text *reply, void *ud) {
  (void)ud;
  reply->text = prpc_ctx_strdup(ctx, req->text ? req->text : "");
  reply->blob = req->blob; /* borrowed from the request: lives as long */
  return GRPC_STATUS_OK;
}

static grpc_status_code s_range(prpc_ctx *ctx,
                                const Test__Multi__V1__RangeRequest *req,
                                void *ud) {
  grpc_status_code code = GRPC_STATUS_OK;
  (void)ud;
  atomic_fetch_add(&handlers_running, 1);
  prpc_ctx_add_header(ctx, "x-range-count", "yes", 3);
  for (int i = 0; i < req->count; i++) {
    Test__Common__Number n = TEST__COMMON__NUMBER__INIT;
    n.value = i;
    if (test__multi__v1__streamer_server__range_write(ctx, &n) != 0) {
      code = GRPC_STATUS_CANCELLED; /* the client went away */
      break;
    }
  }
  if (code == GRPC_STATUS_OK && req->opts && req->opts->fail_at_end) {
    prpc_ctx_set_message(ctx, "failed at the end");
    prpc_ctx_add_trailer(ctx, "x-where", "end", 3);
    code = GRPC_STATUS_FAILED_PRECONDITION;
  }
  atomic_fetch_sub(&handlers_running, 1);
  atomic_fetch_add(&range_ended, 1);
  return code;
}

static grpc_status_code s_sum(prpc_ctx *ctx, Test__Common__Number *reply,
                              void *ud) {
  Test__Common__Number *n;
  int rc;
  (void)ud;
  while ((rc = test__multi__v1__streamer_server__sum_read(ctx, &n)) == 1) {
    reply->value += n->value;
    protobuf_c_message_free_unpacked(&n->base, NULL);
  }
  return rc == 0 ? GRPC_STATUS_OK : GRPC_STATUS_CANCELLED;
}

static grpc_status_code s_echo(prpc_ctx *ctx, void *ud) {
  Test__Common__Text *t;
  int rc;
  (void)ud;
  while ((rc = test__multi__v1__streamer_server__echo_read(ctx, &t)) == 1) {
    int w = test__multi__v1__streamer_server__echo_write(ctx, t);
    protobuf_c_message_free_unpacked(&t->base, NULL);
    if (w != 0)
      return GRPC_STATUS_CANCELLED;
  }
  return rc == 0 ? GRPC_STATUS_OK : GRPC_STATUS_CANCELLED;
}

static grpc_status_code s_nested(prpc_ctx *ctx,
                                 const Test__Multi__V1__RangeRequest__Options *r,
                                 Test__Multi__V1__RangeRequest__Options *reply,
                                 void *ud) {
  (void)ctx;
  (void)ud;
  reply->fail_at_end = !r->fail_at_end;
  return GRPC_STATUS_OK;
}

static grpc_status_code p_send(prpc_ctx *ctx, const Ping *req, Pong *reply,
                               void *ud) {
  (void)ctx;
  (void)ud;
  reply->seq = req->note ? (int32_t)strlen(req->note) : -1;
  return GRPC_STATUS_OK;
}

static const Test__Multi__V1__StreamerServer streamer = {
    s_unary, s_range, s_sum, s_echo, s_nested};
static const Test__Multi__V1__HTTPAdminServer admin = {NULL, NULL};
static const PlainServer plain = PLAIN_SERVER__INIT(p_);

static char *dir;
static char target[300];
static prpc_server *srv;
static prpc_channel *ch;

static void setup(void) {
  prpc_server_opts opts = PRPC_SERVER_OPTS_INIT;
  opts.threads = 2;
  dir = test_tmpdir();
  snprintf(target, sizeof(target), "unix:%s/s.sock", dir);
  ASSERT_EQ(prpc_server_create(&opts, &srv), 0);
  ASSERT_EQ(prpc_server_add_listener(srv, target, NULL), 0);
  ASSERT_EQ(test__multi__v1__streamer_server__register(srv, &streamer, NULL),
            0);
  ASSERT_EQ(test__multi__v1__httpadmin_server__register(srv, &admin, NULL), 0);
  ASSERT_EQ(plain_server__register(srv, &plain, NULL), 0);
  ASSERT_EQ(empty_server__register(srv, NULL, NULL), 0);
  ASSERT_EQ(prpc_server_start(srv), 0);
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
}

static void teardown(void) {
  prpc_channel_destroy(ch);
  prpc_server_destroy(srv);
  ASSERT_EQ(atomic_load(&handlers_running), 0); /* every handler returned */
  test_rmdir(dir);
}

/* The server still answers after a call ended badly. */
static void expect_serving(void) {
  Test__Common__Text req = TEST__COMMON__TEXT__INIT, *rep = NULL;
  req.text = "still here";
  ASSERT_EQ(test__multi__v1__streamer_client__unary(ch, &req, NULL, &rep, NULL),
            GRPC_STATUS_OK);
  ASSERT_STREQ(rep->text, "still here");
  protobuf_c_message_free_unpacked(&rep->base, NULL);
}

static void unary_shapes(void) {
  setup();
  Test__Common__Text req = TEST__COMMON__TEXT__INIT, *rep = NULL;
  static uint8_t blob[] = {0, 1, 2, 3, 255};
  req.text = "hi";
  req.blob.data = blob;
  req.blob.len = sizeof(blob);
  ASSERT_EQ(test__multi__v1__streamer_client__unary(ch, &req, NULL, &rep, NULL),
            GRPC_STATUS_OK);
  ASSERT_STREQ(rep->text, "hi");
  ASSERT(rep->blob.len == 5 && memcmp(rep->blob.data, blob, 5) == 0);
  protobuf_c_message_free_unpacked(&rep->base, NULL);

  Test__Multi__V1__RangeRequest__Options o =
      TEST__MULTI__V1__RANGE_REQUEST__OPTIONS__INIT, *orep;
  ASSERT_EQ(test__multi__v1__streamer_client__nested_type(ch, &o, NULL, &orep,
                                                          NULL),
            GRPC_STATUS_OK);
  ASSERT_EQ(orep->fail_at_end, 1);
  protobuf_c_message_free_unpacked(&orep->base, NULL);

  Ping ping = PING__INIT;
  Pong *pong;
  ping.note = "four";
  ASSERT_EQ(plain_client__send(ch, &ping, NULL, &pong, NULL), GRPC_STATUS_OK);
  ASSERT_EQ(pong->seq, 4);
  protobuf_c_message_free_unpacked(&pong->base, NULL);
  ASSERT_STREQ(plain__prpc_service.methods[0].path, "/Plain/Send");
  ASSERT_STREQ(test__multi__v1__httpadmin__prpc_service.methods[0].path,
               "/test.multi.v1.HTTPAdmin/GetURLStatus");

  /* NULL handlers answer UNIMPLEMENTED. */
  prpc_status st = PRPC_STATUS_INIT;
  ASSERT_EQ(test__multi__v1__httpadmin_client__get_urlstatus(ch, &req, NULL,
                                                             &rep, &st),
            GRPC_STATUS_UNIMPLEMENTED);
  prpc_status_clear(&st);
  teardown();
}

static void server_streaming(void) {
  setup();
  Test__Multi__V1__RangeRequest req = TEST__MULTI__V1__RANGE_REQUEST__INIT;
  prpc_call *call;
  Test__Common__Number *n;
  prpc_status st = PRPC_STATUS_INIT;
  const prpc_metadata *hdr;
  req.count = 50;
  ASSERT_EQ(test__multi__v1__streamer_client__range_start(ch, &req, NULL,
                                                          &call),
            0);
  ASSERT_EQ(prpc_call_headers(call, &hdr), 0);
  ASSERT(prpc_metadata_get(hdr, "x-range-count") != NULL);
  for (int i = 0; i < 50; i++) {
    ASSERT_EQ(test__multi__v1__streamer_client__range_read(call, &n), 1);
    ASSERT_EQ(n->value, i);
    protobuf_c_message_free_unpacked(&n->base, NULL);
  }
  ASSERT_EQ(test__multi__v1__streamer_client__range_read(call, &n), 0);
  ASSERT(n == NULL);
  ASSERT_EQ(prpc_call_finish(call, NULL, &st), GRPC_STATUS_OK);
  ASSERT(prpc_metadata_get(&st.headers, "x-range-count") != NULL);
  prpc_status_clear(&st);

  /* A status other than OK after the messages, with trailers. */
  Test__Multi__V1__RangeRequest__Options o =
      TEST__MULTI__V1__RANGE_REQUEST__OPTIONS__INIT;
  o.fail_at_end = 1;
  req.count = 2;
  req.opts = &o;
  ASSERT_EQ(test__multi__v1__streamer_client__range_start(ch, &req, NULL,
                                                          &call),
            0);
  int got = 0;
  while (test__multi__v1__streamer_client__range_read(call, &n) == 1) {
    protobuf_c_message_free_unpacked(&n->base, NULL);
    got++;
  }
  ASSERT_EQ(got, 2);
  ASSERT_EQ(prpc_call_finish(call, NULL, &st), GRPC_STATUS_FAILED_PRECONDITION);
  ASSERT_STREQ(st.message, "failed at the end");
  ASSERT(prpc_metadata_get(&st.trailers, "x-where") != NULL);
  prpc_status_clear(&st);
  teardown();
}

static void client_streaming(void) {
  setup();
  prpc_call *call;
  Test__Common__Number *sum = NULL;
  ASSERT_EQ(test__multi__v1__streamer_client__sum_start(ch, NULL, &call), 0);
  for (int i = 1; i <= 100; i++) {
    Test__Common__Number n = TEST__COMMON__NUMBER__INIT;
    n.value = i;
    ASSERT_EQ(test__multi__v1__streamer_client__sum_write(call, &n), 0);
  }
  ASSERT_EQ(test__multi__v1__streamer_client__sum_finish(call, &sum, NULL),
            GRPC_STATUS_OK);
  ASSERT_EQ(sum->value, 5050);
  protobuf_c_message_free_unpacked(&sum->base, NULL);

  /* No messages at all: the handler sees the half-close at once. */
  ASSERT_EQ(test__multi__v1__streamer_client__sum_start(ch, NULL, &call), 0);
  ASSERT_EQ(prpc_call_writes_done(call), 0);
  ASSERT_EQ(test__multi__v1__streamer_client__sum_finish(call, &sum, NULL),
            GRPC_STATUS_OK);
  ASSERT_EQ(sum->value, 0);
  protobuf_c_message_free_unpacked(&sum->base, NULL);
  teardown();
}

static void bidi_ping_pong(void) {
  setup();
  prpc_call *call;
  char buf[32];
  ASSERT_EQ(test__multi__v1__streamer_client__echo_start(ch, NULL, &call), 0);
  for (int i = 0; i < 20; i++) {
    Test__Common__Text t = TEST__COMMON__TEXT__INIT, *r;
    snprintf(buf, sizeof(buf), "msg-%d", i);
    t.text = buf;
    ASSERT_EQ(test__multi__v1__streamer_client__echo_write(call, &t), 0);
    ASSERT_EQ(test__multi__v1__streamer_client__echo_read(call, &r), 1);
    ASSERT_STREQ(r->text, buf);
    protobuf_c_message_free_unpacked(&r->base, NULL);
  }
  ASSERT_EQ(prpc_call_writes_done(call), 0);
  Test__Common__Text *r;
  ASSERT_EQ(test__multi__v1__streamer_client__echo_read(call, &r), 0);
  ASSERT_EQ(prpc_call_finish(call, NULL, NULL), GRPC_STATUS_OK);
  teardown();
}

static void *bidi_writer(void *arg) {
  prpc_call *call = arg;
  char buf[32];
  for (int i = 0; i < 500; i++) {
    Test__Common__Text t = TEST__COMMON__TEXT__INIT;
    snprintf(buf, sizeof(buf), "%d", i);
    t.text = buf;
    ASSERT_EQ(test__multi__v1__streamer_client__echo_write(call, &t), 0);
  }
  ASSERT_EQ(prpc_call_writes_done(call), 0);
  return NULL;
}

/* One thread writes while another reads the same call. */
static void bidi_two_threads(void) {
  setup();
  prpc_call *call;
  pthread_t th;
  Test__Common__Text *r;
  int i = 0;
  ASSERT_EQ(test__multi__v1__streamer_client__echo_start(ch, NULL, &call), 0);
  ASSERT_EQ(pthread_create(&th, NULL, bidi_writer, call), 0);
  while (test__multi__v1__streamer_client__echo_read(call, &r) == 1) {
    ASSERT_EQ(atoi(r->text), i);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    i++;
  }
  pthread_join(th, NULL);
  ASSERT_EQ(i, 500);
  ASSERT_EQ(prpc_call_finish(call, NULL, NULL), GRPC_STATUS_OK);
  teardown();
}

/* The client cancels mid-stream: it sees CANCELLED, and the server's
 * handler learns it (its write fails) and returns. */
static void cancel_mid_stream(void) {
  setup();
  Test__Multi__V1__RangeRequest req = TEST__MULTI__V1__RANGE_REQUEST__INIT;
  prpc_call *call;
  Test__Common__Number *n;
  int before = atomic_load(&range_ended);
  req.count = 100000000;
  ASSERT_EQ(test__multi__v1__streamer_client__range_start(ch, &req, NULL,
                                                          &call),
            0);
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ(test__multi__v1__streamer_client__range_read(call, &n), 1);
    protobuf_c_message_free_unpacked(&n->base, NULL);
  }
  prpc_call_cancel(call);
  ASSERT_EQ(prpc_call_finish(call, NULL, NULL), GRPC_STATUS_CANCELLED);
  double t0 = test_now_ms();
  while (atomic_load(&range_ended) == before && test_now_ms() - t0 < 10000)
    test_sleep_ms(5);
  ASSERT_EQ(atomic_load(&range_ended), before + 1);
  expect_serving();
  teardown();
}

static void stream_deadline(void) {
  setup();
  Test__Multi__V1__RangeRequest req = TEST__MULTI__V1__RANGE_REQUEST__INIT;
  prpc_call_opts opts = PRPC_CALL_OPTS_INIT;
  prpc_call *call;
  Test__Common__Number *n;
  req.count = 100000000;
  opts.timeout_ms = 200;
  ASSERT_EQ(test__multi__v1__streamer_client__range_start(ch, &req, &opts,
                                                          &call),
            0);
  while (test__multi__v1__streamer_client__range_read(call, &n) == 1)
    protobuf_c_message_free_unpacked(&n->base, NULL);
  ASSERT_EQ(prpc_call_finish(call, NULL, NULL), GRPC_STATUS_DEADLINE_EXCEEDED);
  expect_serving();
  teardown(); /* waits for the handler to end */
}

/* The channel is destroyed while calls on it run: each call ends with
 * CANCELLED (a blocked read returns), finish still works and frees it, and
 * nothing touches freed memory (AddressSanitizer, valgrind). */
static void call_outlives_channel(void) {
  setup();
  Test__Multi__V1__RangeRequest req = TEST__MULTI__V1__RANGE_REQUEST__INIT;
  prpc_call *range, *sum;
  Test__Common__Number *n;
  Test__Common__Number one = TEST__COMMON__NUMBER__INIT, *total = NULL;
  prpc_status st = PRPC_STATUS_INIT;
  req.count = 100000000;
  ASSERT_EQ(test__multi__v1__streamer_client__range_start(ch, &req, NULL,
                                                          &range),
            0);
  ASSERT_EQ(test__multi__v1__streamer_client__range_read(range, &n), 1);
  protobuf_c_message_free_unpacked(&n->base, NULL);
  ASSERT_EQ(test__multi__v1__streamer_client__sum_start(ch, NULL, &sum), 0);
  one.value = 1;
  ASSERT_EQ(test__multi__v1__streamer_client__sum_write(sum, &one), 0);
  prpc_channel_destroy(ch);
  ch = NULL;
  /* Reads drain what was on its way, then end. */
  int rc;
  while ((rc = test__multi__v1__streamer_client__range_read(range, &n)) == 1)
    protobuf_c_message_free_unpacked(&n->base, NULL);
  ASSERT_EQ(rc, 0);
  ASSERT(test__multi__v1__streamer_client__sum_write(sum, &one) != 0);
  ASSERT_EQ(prpc_call_finish(range, NULL, &st), GRPC_STATUS_CANCELLED);
  ASSERT_CONTAINS(st.message, "the channel was destroyed");
  prpc_status_clear(&st);
  ASSERT_EQ(test__multi__v1__streamer_client__sum_finish(sum, &total, &st),
            GRPC_STATUS_CANCELLED);
  ASSERT(total == NULL);
  prpc_status_clear(&st);
  /* New calls need a new channel; the server is unharmed. */
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  expect_serving();
  teardown();
}

TEST_MAIN(CASE(unary_shapes), CASE(server_streaming), CASE(client_streaming),
          CASE(bidi_ping_pong), CASE(bidi_two_threads),
          CASE(cancel_mid_stream), CASE(stream_deadline),
          CASE(call_outlives_channel))
