/* The asynchronous API: client calls that return at once and call back,
 * handlers that defer their reply or stream without holding a thread,
 * callbacks on an application's loop, cancel and shutdown told at once. */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "multi.prpc.h"
#include "test.h"
#include "testutil.h"

static char *dir;
static char target[300];
static prpc_server *srv;
static prpc_channel *ch;

static pid_t tid(void) { return (pid_t)syscall(SYS_gettid); }

/* ---- the server: Streamer, asynchronous ---- */

static atomic_int deferred_finished;

static void *finish_later(void *arg) {
  prpc_ctx *ctx = arg;
  test_sleep_ms(20);
  atomic_fetch_add(&deferred_finished, 1);
  prpc_ctx_finish(ctx, GRPC_STATUS_OK);
  return NULL;
}

static const prpc_ctx_callbacks watchful;

/* "locked": finished from another thread that holds a lock on_done takes,
 * as an application finishing under its own lock would. on_done must come
 * from the server's loop, never from inside prpc_ctx_finish(). */
static pthread_mutex_t app_mu = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local int in_finish;
static atomic_int locked_done, done_inside_finish;

static void locked_on_done(prpc_ctx *ctx, int cancelled, void *ud) {
  (void)ctx, (void)cancelled, (void)ud;
  if (in_finish)
    atomic_fetch_add(&done_inside_finish, 1);
  else {
    pthread_mutex_lock(&app_mu);
    pthread_mutex_unlock(&app_mu);
  }
  atomic_fetch_add(&locked_done, 1);
}

static const prpc_ctx_callbacks locked_callbacks = {.on_done = locked_on_done};

static void *finish_locked(void *arg) {
  prpc_ctx *ctx = arg;
  pthread_mutex_lock(&app_mu);
  in_finish = 1;
  prpc_ctx_finish(ctx, GRPC_STATUS_OK);
  in_finish = 0;
  pthread_mutex_unlock(&app_mu);
  return NULL;
}

/* Unary: "fail" answers FAILED_PRECONDITION; "later" defers and another
 * thread finishes 20 ms on; "early" defers after another thread has
 * finished already; anything else echoes at once. */
static grpc_status_code s_unary(prpc_ctx *ctx, const Test__Common__Text *req,
                                Test__Common__Text *reply, void *ud) {
  const char *t = req->text ? req->text : "";
  pthread_t th;
  (void)ud;
  reply->text = prpc_ctx_strdup(ctx, t);
  if (strcmp(t, "fail") == 0) {
    prpc_ctx_set_message(ctx, "not today");
    return GRPC_STATUS_FAILED_PRECONDITION;
  }
  if (strcmp(t, "never") == 0) { /* ends by cancel or shutdown only */
    ASSERT_EQ(prpc_ctx_set_callbacks(ctx, &watchful, NULL), 0);
    return prpc_ctx_defer(ctx);
  }
  if (strcmp(t, "locked") == 0) {
    ASSERT_EQ(prpc_ctx_set_callbacks(ctx, &locked_callbacks, NULL), 0);
    ASSERT_EQ(pthread_create(&th, NULL, finish_locked, ctx), 0);
    pthread_detach(th);
    return prpc_ctx_defer(ctx);
  }
  if (strcmp(t, "later") == 0 || strcmp(t, "early") == 0) {
    ASSERT_EQ(pthread_create(&th, NULL, finish_later, ctx), 0);
    if (strcmp(t, "early") == 0) {
      pthread_join(th, NULL); /* finished before the handler returns */
    } else {
      pthread_detach(th);
    }
    return prpc_ctx_defer(ctx);
  }
  return GRPC_STATUS_OK;
}

/* Range: the handler keeps the call; a pusher thread sends count numbers
 * from outside the handler, then finishes. */
typedef struct push {
  prpc_ctx *ctx;
  int count;
} push;

static void *pusher(void *arg) {
  push *p = arg;
  for (int i = 0; i < p->count; i++) {
    Test__Common__Number n = TEST__COMMON__NUMBER__INIT;
    n.value = i;
    int rc;
    while ((rc = test__multi__v1__streamer_server__range_send(p->ctx, &n)) ==
           PRPC_EFULL)
      test_sleep_ms(1); /* the client reads slower than this pushes */
    if (rc != 0)
      break;
  }
  prpc_ctx_finish(p->ctx, GRPC_STATUS_OK);
  free(p);
  return NULL;
}

static atomic_int cancels_told, shutdowns_told, dones, dones_cancelled;

static void on_cancel(prpc_ctx *ctx, void *ud) {
  (void)ctx, (void)ud;
  atomic_fetch_add(&cancels_told, 1);
}

static void on_shutdown(prpc_ctx *ctx, void *ud) {
  (void)ud;
  atomic_fetch_add(&shutdowns_told, 1);
  prpc_ctx_set_message(ctx, "closing the stream for the shutdown");
  prpc_ctx_finish(ctx, GRPC_STATUS_UNAVAILABLE);
}

static void on_done(prpc_ctx *ctx, int cancelled, void *ud) {
  (void)ctx, (void)ud;
  atomic_fetch_add(&dones, 1);
  if (cancelled)
    atomic_fetch_add(&dones_cancelled, 1);
}

static const prpc_ctx_callbacks watchful = {.on_cancel = on_cancel,
                                            .on_shutdown = on_shutdown,
                                            .on_done = on_done};

/* count < 0: a stream that only ends by cancel or shutdown. */
static grpc_status_code s_range(prpc_ctx *ctx,
                                const Test__Multi__V1__RangeRequest *req,
                                void *ud) {
  pthread_t th;
  (void)ud;
  ASSERT_EQ(prpc_ctx_set_callbacks(ctx, &watchful, NULL), 0);
  if (req->count < 0)
    return prpc_ctx_defer(ctx);
  push *p = malloc(sizeof(*p));
  ASSERT(p);
  p->ctx = ctx;
  p->count = req->count;
  ASSERT_EQ(pthread_create(&th, NULL, pusher, p), 0);
  pthread_detach(th);
  return prpc_ctx_defer(ctx);
}

/* Sum: reads with read_async, adds, answers at the client's half-close. */
typedef struct sum {
  Test__Common__Number *reply;
} sum;

static void sum_read(prpc_ctx *ctx, void *msg, void *ud) {
  sum *s = ud;
  if (!msg) {
    prpc_ctx_finish(ctx, GRPC_STATUS_OK);
    return;
  }
  s->reply->value += ((Test__Common__Number *)msg)->value;
  prpc_ctx_read_async(ctx);
}

static void sum_done(prpc_ctx *ctx, int cancelled, void *ud) {
  (void)ctx, (void)cancelled;
  free(ud);
}

static const prpc_ctx_callbacks sum_callbacks = {.on_read = sum_read,
                                                 .on_done = sum_done};

static grpc_status_code s_sum(prpc_ctx *ctx, Test__Common__Number *reply,
                              void *ud) {
  sum *s = malloc(sizeof(*s));
  (void)ud;
  ASSERT(s);
  s->reply = reply;
  ASSERT_EQ(prpc_ctx_set_callbacks(ctx, &sum_callbacks, s), 0);
  ASSERT_EQ(prpc_ctx_read_async(ctx), 0);
  ASSERT_EQ(prpc_ctx_read_async(ctx), -EBUSY); /* one at a time */
  return prpc_ctx_defer(ctx);
}

/* Echo: every message read is sent back; OK at the half-close. */
static void echo_read(prpc_ctx *ctx, void *msg, void *ud) {
  (void)ud;
  if (!msg) {
    prpc_ctx_finish(ctx, GRPC_STATUS_OK);
    return;
  }
  test__multi__v1__streamer_server__echo_send(ctx, msg);
  prpc_ctx_read_async(ctx);
}

static const prpc_ctx_callbacks echo_callbacks = {.on_read = echo_read};

static grpc_status_code s_echo(prpc_ctx *ctx, void *ud) {
  (void)ud;
  prpc_ctx_set_callbacks(ctx, &echo_callbacks, NULL);
  prpc_ctx_read_async(ctx);
  return prpc_ctx_defer(ctx);
}

static const Test__Multi__V1__StreamerServer streamer = {s_unary, s_range,
                                                         s_sum, s_echo, NULL};

static void start_with(prpc_loop *server_loop, prpc_loop *channel_loop) {
  prpc_server_opts opts = PRPC_SERVER_OPTS_INIT;
  prpc_channel_opts copts = PRPC_CHANNEL_OPTS_INIT;
  opts.loop = server_loop;
  opts.grace_ms = 10000;
  copts.loop = channel_loop;
  dir = test_tmpdir();
  snprintf(target, sizeof(target), "unix:%s/a.sock", dir);
  ASSERT_EQ(prpc_server_create(&opts, &srv), 0);
  ASSERT_EQ(prpc_server_add_listener(srv, target, NULL), 0);
  ASSERT_EQ(test__multi__v1__streamer_server__register_async(srv, &streamer,
                                                             NULL),
            0);
  ASSERT_EQ(prpc_server_start(srv), 0);
  ASSERT_EQ(prpc_channel_create(target, &copts, &ch), 0);
}

static void stop(void) {
  prpc_channel_destroy(ch);
  prpc_server_destroy(srv);
  test_rmdir(dir);
}

/* ---- the client side ---- */

typedef struct tally {
  atomic_int done, ok, bad;
  pid_t on_thread; /* 0, or the thread callbacks must run on */
  atomic_int wrong_thread;
} tally;

static void unary_done(Test__Common__Text *reply, const prpc_status *st,
                       void *ud) {
  tally *t = ud;
  if (t->on_thread && tid() != t->on_thread)
    atomic_fetch_add(&t->wrong_thread, 1);
  if (st->code == GRPC_STATUS_OK && reply && reply->text &&
      strncmp(reply->text, "n", 1) == 0)
    atomic_fetch_add(&t->ok, 1);
  else if (st->code == GRPC_STATUS_FAILED_PRECONDITION && !reply &&
           st->message && strcmp(st->message, "not today") == 0)
    atomic_fetch_add(&t->bad, 1);
  atomic_fetch_add(&t->done, 1);
}

static void wait_for(atomic_int *v, int n, prpc_loop *loop) {
  double t0 = test_now_ms();
  while (atomic_load(v) < n && test_now_ms() - t0 < 20000) {
    if (loop) {
      struct pollfd p = {prpc_loop_fd(loop), POLLIN, 0};
      poll(&p, 1, 100);
      prpc_loop_process(loop);
    } else {
      test_sleep_ms(1);
    }
  }
  ASSERT_EQ(atomic_load(v), n);
}

/* 2000 unary calls in flight from one thread, some failing, answered on
 * piperpc's thread; then local refusals, which never call back. */
static void unary_many_in_flight(void) {
  enum { N = 2000 };
  static tally t;
  start_with(NULL, NULL);
  for (int i = 0; i < N; i++) {
    Test__Common__Text req = TEST__COMMON__TEXT__INIT;
    req.text = i % 10 == 0 ? "fail" : "n";
    ASSERT_EQ(test__multi__v1__streamer_client__unary_async(ch, &req, NULL,
                                                            unary_done, &t, NULL),
              0);
  }
  wait_for(&t.done, N, NULL);
  ASSERT_EQ(atomic_load(&t.ok), N - N / 10);
  ASSERT_EQ(atomic_load(&t.bad), N / 10);
  ASSERT_EQ(test__multi__v1__streamer_client__unary_async(ch, NULL, NULL,
                                                          unary_done, &t, NULL),
            -EINVAL);
  prpc_call_opts o = PRPC_CALL_OPTS_INIT;
  Test__Common__Text req = TEST__COMMON__TEXT__INIT;
  o.compression = "zstd";
  ASSERT_EQ(test__multi__v1__streamer_client__unary_async(ch, &req, &o,
                                                          unary_done, &t, NULL),
            -EINVAL);
  ASSERT_CONTAINS(prpc_last_error(), "unknown compression algorithm");
  test_sleep_ms(50);
  ASSERT_EQ(atomic_load(&t.done), N); /* refused calls never call back */
  stop();
}

/* The same with the server and the channel on the application's loop:
 * every handler and callback runs on this thread, inside
 * prpc_loop_process(). */
static void application_loop(void) {
  enum { N = 500 };
  static tally t;
  prpc_loop *loop;
  ASSERT_EQ(prpc_loop_create(&loop), 0);
  ASSERT(prpc_loop_fd(loop) >= 0);
  start_with(loop, loop);
  t.on_thread = tid();
  for (int i = 0; i < N; i++) {
    Test__Common__Text req = TEST__COMMON__TEXT__INIT;
    req.text = i % 10 == 0 ? "fail" : "n";
    ASSERT_EQ(test__multi__v1__streamer_client__unary_async(ch, &req, NULL,
                                                            unary_done, &t, NULL),
              0);
  }
  wait_for(&t.done, N, loop);
  ASSERT_EQ(atomic_load(&t.ok), N - N / 10);
  ASSERT_EQ(atomic_load(&t.wrong_thread), 0);
  prpc_channel_destroy(ch);
  ch = NULL;
  prpc_server_shutdown(srv);
  /* Drain the server on this thread: process until it has stopped. */
  double t0 = test_now_ms();
  prpc_server_stats st;
  do {
    struct pollfd p = {prpc_loop_fd(loop), POLLIN, 0};
    poll(&p, 1, 20);
    prpc_loop_process(loop);
    ASSERT_EQ(prpc_server_get_stats(srv, &st), 0);
  } while (st.calls_active > 0 && test_now_ms() - t0 < 10000);
  ASSERT_EQ(st.calls_active, 0);
  prpc_server_destroy(srv);
  prpc_loop_destroy(loop);
  test_rmdir(dir);
}

/* A deferred unary reply, finished from another thread after the handler
 * returned, and before it did. */
static void deferred_reply(void) {
  start_with(NULL, NULL);
  const char *texts[] = {"later", "early"};
  for (int i = 0; i < 2; i++) {
    Test__Common__Text req = TEST__COMMON__TEXT__INIT, *rep = NULL;
    prpc_status st = PRPC_STATUS_INIT;
    req.text = (char *)texts[i];
    ASSERT_EQ(test__multi__v1__streamer_client__unary(ch, &req, NULL, &rep,
                                                      &st),
              GRPC_STATUS_OK);
    ASSERT_STREQ(rep->text, texts[i]);
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    prpc_status_clear(&st);
  }
  ASSERT_EQ(atomic_load(&deferred_finished), 2);
  for (int i = 0; i < 500; i++) {
    Test__Common__Text req = TEST__COMMON__TEXT__INIT, *rep = NULL;
    req.text = "locked";
    ASSERT_EQ(test__multi__v1__streamer_client__unary(ch, &req, NULL, &rep,
                                                      NULL),
              GRPC_STATUS_OK);
    protobuf_c_message_free_unpacked(&rep->base, NULL);
  }
  wait_for(&locked_done, 500, NULL);
  ASSERT_EQ(atomic_load(&done_inside_finish), 0);
  stop();
}

/* A stream fed from a thread outside the handler: 10,000 numbers in order
 * (the queue fills: the pusher waits on PRPC_EFULL), then OK. */
static void push_from_another_thread(void) {
  Test__Multi__V1__RangeRequest req = TEST__MULTI__V1__RANGE_REQUEST__INIT;
  Test__Common__Number *n;
  prpc_call *call;
  int got = 0, rc;
  start_with(NULL, NULL);
  req.count = 10000;
  ASSERT_EQ(test__multi__v1__streamer_client__range_start(ch, &req, NULL,
                                                          &call),
            0);
  while ((rc = test__multi__v1__streamer_client__range_read(call, &n)) == 1) {
    ASSERT_EQ(n->value, got);
    got++;
    protobuf_c_message_free_unpacked(&n->base, NULL);
  }
  ASSERT_EQ(rc, 0);
  ASSERT_EQ(prpc_call_finish(call, NULL, NULL), GRPC_STATUS_OK);
  ASSERT_EQ(got, 10000);
  stop();
}

/* The client cancels an open stream: the server is told at once, and the
 * call ends (on_done, cancelled) without the application finishing it. */
static void cancel_told_at_once(void) {
  Test__Multi__V1__RangeRequest req = TEST__MULTI__V1__RANGE_REQUEST__INIT;
  prpc_call *call;
  prpc_server_stats st;
  start_with(NULL, NULL);
  req.count = -1;
  int c0 = atomic_load(&cancels_told), d0 = atomic_load(&dones_cancelled);
  ASSERT_EQ(test__multi__v1__streamer_client__range_start(ch, &req, NULL,
                                                          &call),
            0);
  double t0 = test_now_ms();
  do { /* not a bare spin: valgrind runs one thread at a time */
    ASSERT_EQ(prpc_server_get_stats(srv, &st), 0);
  } while (st.calls_active == 0 && test_now_ms() - t0 < 5000 &&
           (test_sleep_ms(1), 1));
  ASSERT_EQ(st.calls_active, 1);
  prpc_call_cancel(call);
  t0 = test_now_ms();
  while (atomic_load(&dones_cancelled) == d0 && test_now_ms() - t0 < 5000)
    test_sleep_ms(1);
  double took = test_now_ms() - t0;
  fprintf(stderr, "cancel told and the call over after %.1f ms\n", took);
  ASSERT_EQ(atomic_load(&cancels_told), c0 + 1);
  ASSERT_EQ(atomic_load(&dones_cancelled), d0 + 1);
  ASSERT(took < 1000);
  ASSERT_EQ(prpc_call_finish(call, NULL, NULL), GRPC_STATUS_CANCELLED);
  ASSERT_EQ(prpc_server_get_stats(srv, &st), 0);
  ASSERT_EQ(st.calls_active, 0);
  stop();
}

/* Shutdown with open streams: each is told at once and ends with the
 * application's own status; the server stops long before its grace. */
static void shutdown_told_at_once(void) {
  Test__Multi__V1__RangeRequest req = TEST__MULTI__V1__RANGE_REQUEST__INIT;
  prpc_call *calls[3];
  prpc_server_stats st;
  start_with(NULL, NULL);
  req.count = -1;
  for (int i = 0; i < 3; i++)
    ASSERT_EQ(test__multi__v1__streamer_client__range_start(ch, &req, NULL,
                                                            &calls[i]),
              0);
  double t0 = test_now_ms();
  do {
    ASSERT_EQ(prpc_server_get_stats(srv, &st), 0);
  } while (st.calls_active < 3 && test_now_ms() - t0 < 5000 &&
           (test_sleep_ms(1), 1));
  ASSERT_EQ(st.calls_active, 3);
  t0 = test_now_ms();
  prpc_server_shutdown(srv);
  ASSERT_EQ(prpc_server_wait(srv), 0);
  double took = test_now_ms() - t0;
  fprintf(stderr, "3 open streams ended and the server stopped after %.1f "
                  "ms (grace 10000 ms)\n",
          took);
  ASSERT(took < 2000);
  ASSERT_EQ(atomic_load(&shutdowns_told), 3);
  for (int i = 0; i < 3; i++) {
    prpc_status s = PRPC_STATUS_INIT;
    Test__Common__Number *n = NULL;
    /* A read says only that no more will come; finish says why. */
    ASSERT_EQ(test__multi__v1__streamer_client__range_read(calls[i], &n), 0);
    ASSERT(n == NULL);
    ASSERT_EQ(prpc_call_finish(calls[i], NULL, &s), GRPC_STATUS_UNAVAILABLE);
    ASSERT_STREQ(s.message, "closing the stream for the shutdown");
    prpc_status_clear(&s);
  }
  stop();
}

/* ---- asynchronous streaming clients ---- */

typedef struct bidi_state {
  prpc_call *call;
  int sent, got, writes_ok;
  atomic_int ended;
  grpc_status_code code;
  int order_ok;
} bidi_state;

static void b_read(prpc_call *call, void *msg, void *ud) {
  bidi_state *b = ud;
  if (!msg)
    return;
  char want[16];
  snprintf(want, sizeof(want), "m%d", b->got);
  if (strcmp(((Test__Common__Text *)msg)->text, want) != 0)
    b->order_ok = 0;
  b->got++;
  prpc_call_read_async(call);
}

static void b_write_done(prpc_call *call, int ok, void *ud) {
  bidi_state *b = ud;
  (void)call;
  b->writes_ok += ok;
}

static void b_done(prpc_call *call, void *reply, const prpc_status *st,
                   void *ud) {
  bidi_state *b = ud;
  (void)call;
  ASSERT(reply == NULL);
  b->code = st->code;
  atomic_store(&b->ended, 1);
}

static const prpc_call_callbacks bidi_callbacks = {
    .on_read = b_read, .on_write_done = b_write_done, .on_done = b_done};

/* An asynchronous bidi call against the asynchronous echo: 500 messages
 * queued at once, echoed in order, then the half-close and OK. */
static void bidi_both_async(void) {
  static bidi_state b = {.order_ok = 1};
  start_with(NULL, NULL);
  ASSERT_EQ(test__multi__v1__streamer_client__echo_start_async(
                ch, NULL, &bidi_callbacks, &b, &b.call),
            0);
  ASSERT_EQ(prpc_call_read_async(b.call), 0);
  for (int i = 0; i < 500; i++) {
    char text[16];
    Test__Common__Text m = TEST__COMMON__TEXT__INIT;
    snprintf(text, sizeof(text), "m%d", i);
    m.text = text;
    ASSERT_EQ(test__multi__v1__streamer_client__echo_send(b.call, &m), 0);
  }
  ASSERT_EQ(prpc_call_close_send(b.call), 0);
  ASSERT_EQ(prpc_call_close_send(b.call), PRPC_ECLOSED);
  wait_for(&b.ended, 1, NULL);
  ASSERT_EQ(b.code, GRPC_STATUS_OK);
  ASSERT_EQ(b.got, 500);
  ASSERT_EQ(b.writes_ok, 500);
  ASSERT(b.order_ok);
  stop();
}

typedef struct sum_state {
  atomic_int ended;
  grpc_status_code code;
  int64_t total;
} sum_state;

static void s_client_done(prpc_call *call, void *reply, const prpc_status *st,
                          void *ud) {
  sum_state *s = ud;
  (void)call;
  s->code = st->code;
  if (reply)
    s->total = ((Test__Common__Number *)reply)->value;
  atomic_store(&s->ended, 1);
}

static const prpc_call_callbacks sum_client = {.on_done = s_client_done};

/* An asynchronous client-streaming call: the reply comes to on_done. */
static void client_stream_async(void) {
  static sum_state s;
  prpc_call *call;
  start_with(NULL, NULL);
  ASSERT_EQ(test__multi__v1__streamer_client__sum_start_async(ch, NULL,
                                                              &sum_client, &s,
                                                              &call),
            0);
  for (int i = 1; i <= 100; i++) {
    Test__Common__Number n = TEST__COMMON__NUMBER__INIT;
    n.value = i;
    ASSERT_EQ(test__multi__v1__streamer_client__sum_send(call, &n), 0);
  }
  ASSERT_EQ(prpc_call_close_send(call), 0);
  wait_for(&s.ended, 1, NULL);
  ASSERT_EQ(s.code, GRPC_STATUS_OK);
  ASSERT_EQ(s.total, 5050);
  stop();
}

/* The channel goes while asynchronous calls run: each ends with CANCELLED
 * on its callback, and nothing is left (ASan, valgrind). */
static void channel_destroyed_in_flight(void) {
  static tally t;
  static sum_state s;
  Test__Multi__V1__RangeRequest req = TEST__MULTI__V1__RANGE_REQUEST__INIT;
  prpc_call *call;
  start_with(NULL, NULL);
  ASSERT_EQ(test__multi__v1__streamer_client__sum_start_async(ch, NULL,
                                                              &sum_client, &s,
                                                              &call),
            0);
  req.count = -1;
  static bidi_state b = {.order_ok = 1};
  ASSERT_EQ(test__multi__v1__streamer_client__range_start_async(
                ch, &req, NULL, &bidi_callbacks, &b, &b.call),
            0);
  prpc_channel_destroy(ch);
  ch = NULL;
  wait_for(&s.ended, 1, NULL);
  wait_for(&b.ended, 1, NULL);
  ASSERT_EQ(s.code, GRPC_STATUS_CANCELLED);
  ASSERT_EQ(b.code, GRPC_STATUS_CANCELLED);
  (void)t;
  prpc_server_destroy(srv);
  test_rmdir(dir);
}

/* The channel goes the moment a call's callback has run, while piperpc's
 * thread is still releasing that call: destroy must not cancel a call
 * gRPC has already let go (it asserted in gRPC core before). */
static void destroy_right_after_callback(void) {
  start_with(NULL, NULL);
  prpc_channel_destroy(ch);
  for (int i = 0; i < 300; i++) {
    static tally t;
    Test__Common__Text req = TEST__COMMON__TEXT__INIT;
    req.text = "n";
    atomic_store(&t.done, 0);
    ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
    ASSERT_EQ(test__multi__v1__streamer_client__unary_async(ch, &req, NULL,
                                                            unary_done, &t, NULL),
              0);
    while (atomic_load(&t.done) == 0)
      sched_yield();
    prpc_channel_destroy(ch);
  }
  ch = NULL;
  stop();
}

/* A deferred unary call is told of its client's cancel, and of its
 * deadline, at once (on_cancel), and ends by itself (on_done). */
static void deferred_unary_told_of_cancel(void) {
  static tally t;
  Test__Common__Text req = TEST__COMMON__TEXT__INIT;
  prpc_call_opts o = PRPC_CALL_OPTS_INIT;
  prpc_server_stats st;
  prpc_call *call = NULL;
  start_with(NULL, NULL);
  req.text = "never";
  int c0 = atomic_load(&cancels_told), d0 = atomic_load(&dones_cancelled);
  ASSERT_EQ(test__multi__v1__streamer_client__unary_async(
                ch, &req, NULL, unary_done, &t, &call),
            0);
  ASSERT(call != NULL);
  double t0 = test_now_ms();
  do {
    ASSERT_EQ(prpc_server_get_stats(srv, &st), 0);
  } while (st.calls_active == 0 && test_now_ms() - t0 < 5000 &&
           (test_sleep_ms(1), 1));
  ASSERT_EQ(st.calls_active, 1);
  prpc_call_cancel(call); /* valid: done has not run */
  wait_for(&t.done, 1, NULL);
  wait_for(&dones_cancelled, d0 + 1, NULL);
  ASSERT_EQ(atomic_load(&cancels_told), c0 + 1);
  /* The same for a deadline that passes (long enough for the call to reach
   * its handler under valgrind on a loaded machine). */
  o.timeout_ms = 1500;
  t0 = test_now_ms();
  ASSERT_EQ(test__multi__v1__streamer_client__unary_async(
                ch, &req, &o, unary_done, &t, NULL),
            0);
  wait_for(&dones_cancelled, d0 + 2, NULL);
  double took = test_now_ms() - t0;
  fprintf(stderr, "a deferred unary call ended %.0f ms after its start "
                  "(deadline 1500 ms)\n",
          took);
  ASSERT_EQ(atomic_load(&cancels_told), c0 + 2);
  ASSERT(took < 5000);
  wait_for(&t.done, 2, NULL);
  ASSERT_EQ(prpc_server_get_stats(srv, &st), 0);
  ASSERT_EQ(st.calls_active, 0);
  stop();
}

/* A server and a channel on the application's loop stop from the loop's
 * own thread: prpc_server_destroy() runs the loop while it waits, so the
 * open calls end (on_shutdown finishes them) and it returns at once. */
static void application_loop_stops_from_its_thread(void) {
  static tally t;
  prpc_loop *loop;
  prpc_server_stats st;
  Test__Common__Text req = TEST__COMMON__TEXT__INIT;
  ASSERT_EQ(prpc_loop_create(&loop), 0);
  start_with(loop, loop);
  req.text = "never";
  for (int i = 0; i < 3; i++)
    ASSERT_EQ(test__multi__v1__streamer_client__unary_async(
                  ch, &req, NULL, unary_done, &t, NULL),
              0);
  double t0 = test_now_ms();
  do {
    struct pollfd p = {prpc_loop_fd(loop), POLLIN, 0};
    poll(&p, 1, 10);
    prpc_loop_process(loop);
    ASSERT_EQ(prpc_server_get_stats(srv, &st), 0);
  } while (st.calls_active < 3 && test_now_ms() - t0 < 5000);
  ASSERT_EQ(st.calls_active, 3);
  alarm(30); /* a hang fails the test rather than the run */
  t0 = test_now_ms();
  prpc_server_shutdown(srv);
  prpc_server_destroy(srv); /* grace 10 s: must not take it */
  double took = test_now_ms() - t0;
  alarm(0);
  fprintf(stderr, "stopped from the loop's thread in %.1f ms\n", took);
  ASSERT(took < 3000);
  wait_for(&t.done, 3, loop); /* the client saw each call end */
  prpc_channel_destroy(ch);
  prpc_loop_destroy(loop);
  test_rmdir(dir);
}

TEST_MAIN(CASE(unary_many_in_flight), CASE(application_loop),
          CASE(deferred_reply), CASE(push_from_another_thread),
          CASE(cancel_told_at_once), CASE(shutdown_told_at_once),
          CASE(bidi_both_async), CASE(client_stream_async),
          CASE(channel_destroyed_in_flight),
          CASE(destroy_right_after_callback),
          CASE(deferred_unary_told_of_cancel),
          CASE(application_loop_stops_from_its_thread))
