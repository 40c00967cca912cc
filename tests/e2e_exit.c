/* Teardown time: destroying the last channel and server (the moment
 * piperpc shuts gRPC core down, as at the exit of a program) must not
 * stall. gRPC core 1.51 could keep it waiting 10 s for a poller thread;
 * see prpc__core_unref() in transport/core.c.
 *
 * Each cycle starts a server and a channel, runs a bidi stream of large
 * messages (enough to fill the socket buffers, which is what starts gRPC's
 * background poller), then destroys both and times it. Without the fix a
 * good share of cycles took 10 s; a healthy teardown takes milliseconds.
 * PRPC_TEST_CYCLES overrides the number of cycles; PRPC_TEST_KEEP_GOING=1
 * runs them all and reports how many stalled instead of stopping at the
 * first (to measure). */
#include <pthread.h>
#include <unistd.h>

#include "common/types.prpc.h"
#include "multi.prpc.h"
#include "test.h"
#include "testutil.h"

#define MSGS 16
#define BLOB (64 * 1024)
#define BOUND_MS 3000.0 /* far above a normal teardown, far below 10 s */

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

static const Test__Multi__V1__StreamerServer streamer = {NULL, NULL, NULL,
                                                         s_echo, NULL};
static uint8_t blob[BLOB];

static void *writer(void *arg) {
  prpc_call *call = arg;
  for (int i = 0; i < MSGS; i++) {
    Test__Common__Text t = TEST__COMMON__TEXT__INIT;
    char buf[16];
    snprintf(buf, sizeof(buf), "%d", i);
    t.text = buf;
    t.blob.data = blob;
    t.blob.len = sizeof(blob);
    ASSERT_EQ(test__multi__v1__streamer_client__echo_write(call, &t), 0);
  }
  ASSERT_EQ(prpc_call_writes_done(call), 0);
  return NULL;
}

/* One cycle; returns how long the teardown took, in ms. */
static double cycle(void) {
  prpc_server_opts opts = PRPC_SERVER_OPTS_INIT;
  prpc_server *srv;
  prpc_channel *ch;
  prpc_call *call;
  Test__Common__Text *r;
  pthread_t th;
  char target[300];
  char *dir = test_tmpdir();
  int n = 0;
  double t0;
  snprintf(target, sizeof(target), "unix:%s/s.sock", dir);
  opts.threads = 2;
  ASSERT_EQ(prpc_server_create(&opts, &srv), 0);
  ASSERT_EQ(prpc_server_add_listener(srv, target, NULL), 0);
  ASSERT_EQ(test__multi__v1__streamer_server__register(srv, &streamer, NULL),
            0);
  ASSERT_EQ(prpc_server_start(srv), 0);
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  ASSERT_EQ(test__multi__v1__streamer_client__echo_start(ch, NULL, &call), 0);
  ASSERT_EQ(pthread_create(&th, NULL, writer, call), 0);
  while (test__multi__v1__streamer_client__echo_read(call, &r) == 1) {
    ASSERT_EQ(atoi(r->text), n);
    ASSERT_EQ(r->blob.len, BLOB);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    n++;
  }
  pthread_join(th, NULL);
  ASSERT_EQ(n, MSGS);
  ASSERT_EQ(prpc_call_finish(call, NULL, NULL), GRPC_STATUS_OK);
  t0 = test_now_ms();
  prpc_channel_destroy(ch);
  prpc_server_destroy(srv); /* the last reference: gRPC core shuts down */
  t0 = test_now_ms() - t0;
  test_rmdir(dir);
  return t0;
}

static void teardown_is_quick(void) {
  const char *env = getenv("PRPC_TEST_CYCLES");
  const char *keep = getenv("PRPC_TEST_KEEP_GOING");
  int cycles = env ? atoi(env) : 60;
  int stalled = 0, ran = 0;
  double worst = 0, total = 0;
  for (size_t i = 0; i < sizeof(blob); i++)
    blob[i] = (uint8_t)(i * 7);
  for (int i = 0; i < cycles; i++) {
    double ms = cycle();
    ran++;
    total += ms;
    if (ms > worst)
      worst = ms;
    if (ms > BOUND_MS) {
      stalled++;
      fprintf(stderr, "cycle %d: teardown took %.0f ms\n", i, ms);
      if (!(keep && strcmp(keep, "1") == 0))
        break;
    }
  }
  fprintf(stderr,
          "%d of %d teardowns over %.0f ms; worst %.1f ms, mean %.1f ms\n",
          stalled, ran, BOUND_MS, worst, ran ? total / ran : 0.0);
  ASSERT_EQ(stalled, 0);
}

/* Without the poller kick (PRPC_NO_GRPC_INTERNALS=1, as with a libgrpc
 * whose internals differ): gRPC core's own shutdown, which may wait out a
 * 10 s poll round, but always ends. */
static void teardown_without_internals(void) {
  int stalled = 0;
  double worst = 0;
  setenv("PRPC_NO_GRPC_INTERNALS", "1", 1);
  for (size_t i = 0; i < sizeof(blob); i++)
    blob[i] = (uint8_t)(i * 7);
  for (int i = 0; i < 6; i++) {
    double ms = cycle();
    stalled += ms > BOUND_MS;
    if (ms > worst)
      worst = ms;
    ASSERT(ms < 15000);
  }
  fprintf(stderr, "without the kick: %d of 6 teardowns over %.0f ms, worst "
                  "%.0f ms\n",
          stalled, BOUND_MS, worst);
}

TEST_MAIN(CASE(teardown_is_quick), CASE(teardown_without_internals))
