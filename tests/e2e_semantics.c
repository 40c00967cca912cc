/* Call semantics: compression both ways, message size limits, cancellation
 * and deadlines seen by a long unary handler. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "common/types.prpc.h"
#include "multi.prpc.h"
#include "test.h"
#include "testutil.h"

static atomic_int long_started, long_saw_cancel;

/* Text handler, driven by the request text:
 *   "compressed?"   replies "yes" or "no": did the request come compressed
 *   "gzip-reply"    compresses the reply
 *   "big:N"         replies N bytes of blob
 *   "long"          polls prpc_ctx_is_cancelled() for up to 10 s
 *   other           echoes */
static grpc_status_code s_unary(prpc_ctx *ctx, const Test__Common__Text *req,
                                Test__Common__Text *reply, void *ud) {
  const char *t = req->text ? req->text : "";
  (void)ud;
  if (strcmp(t, "compressed?") == 0) {
    int c = prpc_ctx_request_compressed(ctx);
    reply->text = c < 0 ? "unknown" : c ? "yes" : "no";
  } else if (strcmp(t, "gzip-reply") == 0) {
    ASSERT_EQ(prpc_ctx_set_compression(ctx, "gzip"), 0);
    ASSERT_EQ(prpc_ctx_set_compression(ctx, "lz77"), -EINVAL);
    reply->blob.len = 100000;
    reply->blob.data = prpc_ctx_alloc(ctx, reply->blob.len);
    memset(reply->blob.data, 'z', reply->blob.len);
  } else if (strncmp(t, "big:", 4) == 0) {
    reply->blob.len = (size_t)atol(t + 4);
    reply->blob.data = prpc_ctx_alloc(ctx, reply->blob.len);
    memset(reply->blob.data, 'b', reply->blob.len);
  } else if (strcmp(t, "long") == 0) {
    atomic_store(&long_started, 1);
    double t0 = test_now_ms();
    while (test_now_ms() - t0 < 10000) {
      if (prpc_ctx_is_cancelled(ctx)) {
        atomic_store(&long_saw_cancel, 1);
        return GRPC_STATUS_CANCELLED;
      }
      test_sleep_ms(2);
    }
    reply->text = "finished";
  } else {
    reply->text = prpc_ctx_strdup(ctx, t);
  }
  return GRPC_STATUS_OK;
}

/* Echo with per-message compression, and tells whether each request came
 * compressed. */
static grpc_status_code s_echo(prpc_ctx *ctx, void *ud) {
  Test__Common__Text *t;
  (void)ud;
  ASSERT_EQ(prpc_ctx_set_compression(ctx, "deflate"), 0);
  while (test__multi__v1__streamer_server__echo_read(ctx, &t) == 1) {
    Test__Common__Text out = TEST__COMMON__TEXT__INIT;
    out.text = prpc_ctx_request_compressed(ctx) ? "compressed" : "plain";
    out.blob = t->blob;
    int rc = prpc_ctx_write_ex(ctx, &out,
                               t->text && strcmp(t->text, "no-compress") == 0
                                   ? PRPC_WRITE_NO_COMPRESS
                                   : 0);
    protobuf_c_message_free_unpacked(&t->base, NULL);
    if (rc != 0)
      return GRPC_STATUS_CANCELLED;
  }
  return GRPC_STATUS_OK;
}

static const Test__Multi__V1__StreamerServer impl = {s_unary, NULL, NULL,
                                                     s_echo, NULL};

static char *dir;
static char target[300];
static prpc_server *srv;

static void start(int max_recv, int max_send) {
  prpc_server_opts opts = PRPC_SERVER_OPTS_INIT;
  opts.threads = 1; /* one worker: a long handler holds it */
  opts.max_recv_bytes = max_recv;
  opts.max_send_bytes = max_send;
  dir = test_tmpdir();
  snprintf(target, sizeof(target), "unix:%s/s.sock", dir);
  ASSERT_EQ(prpc_server_create(&opts, &srv), 0);
  ASSERT_EQ(prpc_server_add_listener(srv, target, NULL), 0);
  ASSERT_EQ(test__multi__v1__streamer_server__register(srv, &impl, NULL), 0);
  ASSERT_EQ(prpc_server_start(srv), 0);
}

static void stop(void) {
  prpc_server_destroy(srv);
  test_rmdir(dir);
}

static grpc_status_code text_call(prpc_channel *ch, const char *text,
                                  const prpc_call_opts *opts, char *out,
                                  size_t out_size, prpc_status *st) {
  Test__Common__Text req = TEST__COMMON__TEXT__INIT, *rep = NULL;
  static uint8_t pad[50000]; /* compressible */
  req.text = (char *)text;
  req.blob.data = pad;
  req.blob.len = sizeof(pad);
  grpc_status_code code =
      test__multi__v1__streamer_client__unary(ch, &req, opts, &rep, st);
  if (code == GRPC_STATUS_OK) {
    if (out)
      snprintf(out, out_size, "%s", rep->text ? rep->text : "");
    protobuf_c_message_free_unpacked(&rep->base, NULL);
  }
  return code;
}

static void client_compression(void) {
  prpc_channel *plain, *gz;
  prpc_channel_opts copts = PRPC_CHANNEL_OPTS_INIT;
  prpc_call_opts opts = PRPC_CALL_OPTS_INIT;
  char out[32];
  start(0, 0);
  ASSERT_EQ(prpc_channel_create(target, NULL, &plain), 0);
  ASSERT_EQ(text_call(plain, "compressed?", NULL, out, sizeof(out), NULL),
            GRPC_STATUS_OK);
  ASSERT_STREQ(out, "no");
  /* Per call. */
  opts.compression = "gzip";
  ASSERT_EQ(text_call(plain, "compressed?", &opts, out, sizeof(out), NULL),
            GRPC_STATUS_OK);
  ASSERT_STREQ(out, "yes");
  opts.compression = "deflate";
  ASSERT_EQ(text_call(plain, "compressed?", &opts, out, sizeof(out), NULL),
            GRPC_STATUS_OK);
  ASSERT_STREQ(out, "yes");
  prpc_status st = PRPC_STATUS_INIT;
  opts.compression = "brotli";
  ASSERT_EQ(text_call(plain, "compressed?", &opts, out, sizeof(out), &st),
            GRPC_STATUS_INVALID_ARGUMENT);
  ASSERT_CONTAINS(st.message, "unknown compression algorithm 'brotli'");
  prpc_status_clear(&st);
  /* Per channel, and "identity" turns it off for one call. */
  copts.compression = "gzip";
  ASSERT_EQ(prpc_channel_create(target, &copts, &gz), 0);
  ASSERT_EQ(text_call(gz, "compressed?", NULL, out, sizeof(out), NULL),
            GRPC_STATUS_OK);
  ASSERT_STREQ(out, "yes");
  opts.compression = "identity";
  ASSERT_EQ(text_call(gz, "compressed?", &opts, out, sizeof(out), NULL),
            GRPC_STATUS_OK);
  ASSERT_STREQ(out, "no");
  copts.compression = "zstd";
  prpc_channel *bad = NULL;
  ASSERT_EQ(prpc_channel_create(target, &copts, &bad), -EINVAL);
  prpc_channel_destroy(gz);
  prpc_channel_destroy(plain);
  stop();
}

static void server_compression(void) {
  prpc_channel *ch;
  prpc_call *call;
  Test__Common__Text req = TEST__COMMON__TEXT__INIT, *rep;
  start(0, 0);
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  /* Unary through a call object, so the reply's compression is visible. */
  req.text = "gzip-reply";
  ASSERT_EQ(prpc_call_start(ch, &test__multi__v1__streamer__prpc_service
                                     .methods[0],
                            &req, NULL, &call),
            0);
  ASSERT_EQ(prpc_call_read(call, (void **)&rep), 1);
  ASSERT_EQ(rep->blob.len, 100000);
  ASSERT_EQ(prpc_call_read_compressed(call), 1);
  protobuf_c_message_free_unpacked(&rep->base, NULL);
  ASSERT_EQ(prpc_call_read(call, (void **)&rep), 0);
  ASSERT_EQ(prpc_call_finish(call, NULL, NULL), GRPC_STATUS_OK);

  req.text = "plain";
  ASSERT_EQ(prpc_call_start(ch, &test__multi__v1__streamer__prpc_service
                                     .methods[0],
                            &req, NULL, &call),
            0);
  ASSERT_EQ(prpc_call_read(call, (void **)&rep), 1);
  ASSERT_EQ(prpc_call_read_compressed(call), 0);
  protobuf_c_message_free_unpacked(&rep->base, NULL);
  ASSERT_EQ(prpc_call_finish(call, NULL, NULL), GRPC_STATUS_OK);
  prpc_channel_destroy(ch);
  stop();
}

/* Per-message compression on a stream, both ways. */
static void stream_compression(void) {
  prpc_channel *ch;
  prpc_call *call;
  prpc_call_opts opts = PRPC_CALL_OPTS_INIT;
  static uint8_t pad[20000];
  const char *texts[] = {"a", "no-compress", "b"};
  start(0, 0);
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  opts.compression = "gzip";
  ASSERT_EQ(test__multi__v1__streamer_client__echo_start(ch, &opts, &call), 0);
  for (int i = 0; i < 3; i++) {
    Test__Common__Text t = TEST__COMMON__TEXT__INIT, *r;
    t.text = (char *)texts[i];
    t.blob.data = pad;
    t.blob.len = sizeof(pad);
    ASSERT_EQ(prpc_call_write_ex(call, &t, i == 1 ? PRPC_WRITE_NO_COMPRESS : 0),
              0);
    ASSERT_EQ(test__multi__v1__streamer_client__echo_read(call, &r), 1);
    /* The server saw the request compressed except the one sent plain... */
    ASSERT_STREQ(r->text, i == 1 ? "plain" : "compressed");
    /* ...and compressed its replies except the one it sent plain. */
    ASSERT_EQ(prpc_call_read_compressed(call), i == 1 ? 0 : 1);
    protobuf_c_message_free_unpacked(&r->base, NULL);
  }
  ASSERT_EQ(prpc_call_writes_done(call), 0);
  ASSERT_EQ(prpc_call_finish(call, NULL, NULL), GRPC_STATUS_OK);
  prpc_channel_destroy(ch);
  stop();
}

static void size_limits(void) {
  prpc_channel *ch, *small;
  prpc_channel_opts copts = PRPC_CHANNEL_OPTS_INIT;
  prpc_status st = PRPC_STATUS_INIT;
  char out[32];
  /* The server takes requests up to 64 KiB and sends replies up to 80 KiB. */
  start(64 * 1024, 80 * 1024);
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  ASSERT_EQ(text_call(ch, "ok", NULL, out, sizeof(out), NULL), GRPC_STATUS_OK);
  Test__Common__Text req = TEST__COMMON__TEXT__INIT, *rep = NULL;
  static uint8_t big[100000];
  req.blob.data = big;
  req.blob.len = sizeof(big);
  ASSERT_EQ(test__multi__v1__streamer_client__unary(ch, &req, NULL, &rep, &st),
            GRPC_STATUS_RESOURCE_EXHAUSTED);
  prpc_status_clear(&st);
  /* A reply over the server's send limit. */
  ASSERT_EQ(text_call(ch, "big:90000", NULL, NULL, 0, &st),
            GRPC_STATUS_RESOURCE_EXHAUSTED);
  prpc_status_clear(&st);
  /* The client's own limits. */
  copts.max_send_bytes = 1000;
  copts.max_recv_bytes = 60000;
  ASSERT_EQ(prpc_channel_create(target, &copts, &small), 0);
  ASSERT_EQ(text_call(small, "x", NULL, NULL, 0, &st),
            GRPC_STATUS_RESOURCE_EXHAUSTED); /* the 50 KB request */
  prpc_status_clear(&st);
  req.blob.len = 10;
  req.text = "big:70000";
  ASSERT_EQ(test__multi__v1__streamer_client__unary(small, &req, NULL, &rep,
                                                    &st),
            GRPC_STATUS_RESOURCE_EXHAUSTED); /* the 70 KB reply */
  prpc_status_clear(&st);
  /* The server goes on serving. */
  ASSERT_EQ(text_call(ch, "still", NULL, out, sizeof(out), NULL),
            GRPC_STATUS_OK);
  ASSERT_STREQ(out, "still");
  prpc_channel_destroy(small);
  prpc_channel_destroy(ch);
  stop();
}

typedef struct {
  prpc_call *call;
} canceller;

static void *cancel_soon(void *arg) {
  canceller *c = arg;
  while (!atomic_load(&long_started))
    test_sleep_ms(2);
  prpc_call_cancel(c->call); /* from another thread */
  return NULL;
}

/* A unary handler polling prpc_ctx_is_cancelled() sees the client's cancel,
 * and the worker it held goes on serving. */
static void unary_cancel(void) {
  prpc_channel *ch;
  canceller c;
  pthread_t th;
  Test__Common__Text req = TEST__COMMON__TEXT__INIT;
  char out[32];
  start(0, 0);
  atomic_store(&long_started, 0);
  atomic_store(&long_saw_cancel, 0);
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  req.text = "long";
  ASSERT_EQ(prpc_call_start(ch, &test__multi__v1__streamer__prpc_service
                                     .methods[0],
                            &req, NULL, &c.call),
            0);
  ASSERT_EQ(pthread_create(&th, NULL, cancel_soon, &c), 0);
  double t0 = test_now_ms();
  ASSERT_EQ(prpc_call_finish(c.call, NULL, NULL), GRPC_STATUS_CANCELLED);
  pthread_join(th, NULL);
  /* The handler noticed well before its 10 s were up. */
  while (!atomic_load(&long_saw_cancel) && test_now_ms() - t0 < 8000)
    test_sleep_ms(5);
  ASSERT(atomic_load(&long_saw_cancel));
  ASSERT_EQ(text_call(ch, "next", NULL, out, sizeof(out), NULL),
            GRPC_STATUS_OK);
  ASSERT_STREQ(out, "next");
  prpc_channel_destroy(ch);
  stop();
}

static void unary_deadline_polled(void) {
  prpc_channel *ch;
  prpc_call_opts opts = PRPC_CALL_OPTS_INIT;
  char out[32];
  start(0, 0);
  atomic_store(&long_saw_cancel, 0);
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  opts.timeout_ms = 300;
  double t0 = test_now_ms();
  ASSERT_EQ(text_call(ch, "long", &opts, NULL, 0, NULL),
            GRPC_STATUS_DEADLINE_EXCEEDED);
  while (!atomic_load(&long_saw_cancel) && test_now_ms() - t0 < 8000)
    test_sleep_ms(5);
  ASSERT(atomic_load(&long_saw_cancel));
  ASSERT_EQ(text_call(ch, "next", NULL, out, sizeof(out), NULL),
            GRPC_STATUS_OK);
  prpc_channel_destroy(ch);
  stop();
}

/* Without the shortcuts into gRPC core's internals (as with a libgrpc that
 * lacks them): compression works both ways, and whether a message came
 * compressed is -ENOTSUP, not a guess. */
static void compression_without_internals(void) {
  prpc_channel *ch;
  prpc_call *call;
  prpc_call_opts opts = PRPC_CALL_OPTS_INIT;
  Test__Common__Text req = TEST__COMMON__TEXT__INIT, *rep;
  char out[32];
  setenv("PRPC_NO_GRPC_INTERNALS", "1", 1);
  start(0, 0);
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  opts.compression = "gzip";
  ASSERT_EQ(text_call(ch, "compressed?", &opts, out, sizeof(out), NULL),
            GRPC_STATUS_OK);
  ASSERT_STREQ(out, "unknown");
  req.text = "gzip-reply";
  ASSERT_EQ(prpc_call_start(ch, &test__multi__v1__streamer__prpc_service
                                     .methods[0],
                            &req, NULL, &call),
            0);
  ASSERT_EQ(prpc_call_read(call, (void **)&rep), 1);
  ASSERT_EQ(rep->blob.len, 100000);
  ASSERT_EQ(prpc_call_read_compressed(call), -ENOTSUP);
  protobuf_c_message_free_unpacked(&rep->base, NULL);
  ASSERT_EQ(prpc_call_finish(call, NULL, NULL), GRPC_STATUS_OK);
  prpc_channel_destroy(ch);
  stop();
}

TEST_MAIN(CASE(client_compression), CASE(server_compression),
          CASE(stream_compression), CASE(size_limits), CASE(unary_cancel),
          CASE(unary_deadline_polled), CASE(compression_without_internals))
