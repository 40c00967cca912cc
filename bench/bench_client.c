/* bench_client: the piperpc side of the benchmark, as bench/PROTOCOL.md
 * describes: one cell against one server, with a warm-up, a measured
 * window and exact percentiles.
 *   bench_client --target T --cell unary|pingpong|server_stream|client_stream
 *                --size BYTES [--inflight N] [--warmup S] [--duration S]
 *                [--async]
 * With --inflight N > 1 (unary), N threads share one channel, each making
 * blocking calls; with --async, the N calls are asynchronous, started from
 * one thread and each restarted from its own callback: no thread waits. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench.prpc.h"

enum { WARMUP, WINDOW, DONE };

static prpc_channel *ch;
static const char *cell;
static size_t size;
static int inflight = 1;
static double warmup_s = 1, duration_s = 3;
static atomic_int phase;
static uint8_t *buf;

typedef struct samples {
  double *v;
  size_t n, cap;
} samples;

static void add(samples *s, double us) {
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 65536;
    s->v = realloc(s->v, s->cap * sizeof(*s->v));
    if (!s->v) {
      fprintf(stderr, "bench_client: out of memory\n");
      exit(1);
    }
  }
  s->v[s->n++] = us;
}

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void die(const char *what, grpc_status_code code, const prpc_status *st) {
  fprintf(stderr, "bench_client: %s: %s %s\n", what, prpc_status_name(code),
          st && st->message ? st->message : "");
  exit(1);
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* ---- unary: one thread's loop ---- */

static void *unary_loop(void *arg) {
  samples *s = arg;
  Bench__Payload req = BENCH__PAYLOAD__INIT, *rep;
  prpc_status st = PRPC_STATUS_INIT;
  req.data.data = buf;
  req.data.len = size;
  int ph;
  while ((ph = atomic_load(&phase)) != DONE) {
    double t = now_us();
    grpc_status_code c =
        bench__echo_client__unary(ch, &req, NULL, &rep, &st);
    if (c != GRPC_STATUS_OK)
      die("Unary", c, &st);
    if (rep->data.len != size)
      die("Unary: the echo has the wrong size", GRPC_STATUS_DATA_LOSS, NULL);
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    if (ph == WINDOW && atomic_load(&phase) == WINDOW)
      add(s, now_us() - t);
  }
  return NULL;
}

/* ---- unary, asynchronous: N calls in flight, no thread per call ---- */

typedef struct aslot {
  samples s; /* this slot's calls run one after another: no lock */
  double t;
} aslot;

static Bench__Payload areq = BENCH__PAYLOAD__INIT;
static atomic_int outstanding;

static void async_done(Bench__Payload *rep, const prpc_status *st, void *ud);

static void async_start(aslot *a) {
  a->t = now_us();
  if (bench__echo_client__unary_async(ch, &areq, NULL, async_done, a,
                                      NULL) != 0) {
    fprintf(stderr, "bench_client: %s\n", prpc_last_error());
    exit(1);
  }
}

static void async_done(Bench__Payload *rep, const prpc_status *st, void *ud) {
  aslot *a = ud;
  int ph = atomic_load(&phase);
  if (st->code != GRPC_STATUS_OK)
    die("Unary", st->code, st);
  if (rep->data.len != size)
    die("Unary: the echo has the wrong size", GRPC_STATUS_DATA_LOSS, NULL);
  if (ph == WINDOW)
    add(&a->s, now_us() - a->t);
  if (ph == DONE)
    atomic_fetch_sub(&outstanding, 1);
  else
    async_start(a);
}

/* ---- streaming cells run on the main thread ---- */

static prpc_call *call;
static unsigned long long sent_bytes;

static void stream_start(void) {
  int rc;
  if (strcmp(cell, "pingpong") == 0) {
    rc = bench__echo_client__bidi_start(ch, NULL, &call);
  } else if (strcmp(cell, "server_stream") == 0) {
    Bench__StreamRequest r = BENCH__STREAM_REQUEST__INIT;
    r.count = INT32_MAX;
    r.size = (int32_t)size;
    rc = bench__echo_client__server_stream_start(ch, &r, NULL, &call);
  } else {
    rc = bench__echo_client__client_stream_start(ch, NULL, &call);
  }
  if (rc != 0) {
    fprintf(stderr, "bench_client: %s\n", prpc_last_error());
    exit(1);
  }
}

/* One operation of a streaming cell. */
static void stream_op(void) {
  Bench__Payload p = BENCH__PAYLOAD__INIT, *in;
  p.data.data = buf;
  p.data.len = size;
  if (strcmp(cell, "pingpong") == 0) {
    if (bench__echo_client__bidi_write(call, &p) != 0 ||
        bench__echo_client__bidi_read(call, &in) != 1)
      die("Bidi", prpc_call_finish(call, NULL, NULL), NULL);
    protobuf_c_message_free_unpacked(&in->base, NULL);
  } else if (strcmp(cell, "server_stream") == 0) {
    if (bench__echo_client__server_stream_read(call, &in) != 1)
      die("ServerStream", prpc_call_finish(call, NULL, NULL), NULL);
    protobuf_c_message_free_unpacked(&in->base, NULL);
  } else {
    if (bench__echo_client__client_stream_write(call, &p) != 0)
      die("ClientStream", prpc_call_finish(call, NULL, NULL), NULL);
    sent_bytes += size;
  }
}

static void stream_end(void) {
  grpc_status_code c;
  if (strcmp(cell, "client_stream") == 0) {
    Bench__Payload *rep;
    c = bench__echo_client__client_stream_finish(call, &rep, NULL);
    if (c != GRPC_STATUS_OK)
      die("ClientStream", c, NULL);
    char want[32];
    snprintf(want, sizeof(want), "%llu", sent_bytes);
    if (rep->data.len != strlen(want) ||
        memcmp(rep->data.data, want, rep->data.len) != 0)
      die("ClientStream: wrong total", GRPC_STATUS_DATA_LOSS, NULL);
    protobuf_c_message_free_unpacked(&rep->base, NULL);
  } else if (strcmp(cell, "pingpong") == 0) {
    prpc_call_writes_done(call);
    c = prpc_call_finish(call, NULL, NULL);
    if (c != GRPC_STATUS_OK)
      die("Bidi", c, NULL);
  } else {
    prpc_call_cancel(call);
    c = prpc_call_finish(call, NULL, NULL);
    if (c != GRPC_STATUS_CANCELLED && c != GRPC_STATUS_OK)
      die("ServerStream", c, NULL);
  }
}

static void usage(void) {
  fprintf(stderr, "usage: bench_client --target T --cell "
                  "unary|pingpong|server_stream|client_stream --size BYTES\n"
                  "       [--inflight N] [--warmup S] [--duration S] "
                  "[--async]\n");
  exit(2);
}

static double cpu_s(const struct timeval *tv) {
  return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

int main(int argc, char **argv) {
  const char *target = NULL;
  prpc_channel_opts copts = PRPC_CHANNEL_OPTS_INIT;
  struct rusage ru0, ru1;
  samples all = {0};
  int async = 0;
  for (int i = 1; i < argc; i++) /* the one flag without a value */
    if (strcmp(argv[i], "--async") == 0) {
      async = 1;
      memmove(&argv[i], &argv[i + 1], (size_t)(argc - i) * sizeof(*argv));
      argc--;
      break;
    }
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *a = argv[i], *v = argv[i + 1];
    if (strcmp(a, "--target") == 0)
      target = v;
    else if (strcmp(a, "--cell") == 0)
      cell = v;
    else if (strcmp(a, "--size") == 0)
      size = (size_t)atol(v);
    else if (strcmp(a, "--inflight") == 0)
      inflight = atoi(v);
    else if (strcmp(a, "--warmup") == 0)
      warmup_s = atof(v);
    else if (strcmp(a, "--duration") == 0)
      duration_s = atof(v);
    else
      usage();
  }
  if (!target || !cell || inflight < 1 || argc % 2 == 0 ||
      (strcmp(cell, "unary") && strcmp(cell, "pingpong") &&
       strcmp(cell, "server_stream") && strcmp(cell, "client_stream")))
    usage();
  buf = calloc(1, size + 1);
  copts.max_recv_bytes = 64 << 20;
  if (!buf || prpc_channel_create(target, &copts, &ch) != 0) {
    fprintf(stderr, "bench_client: %s\n", prpc_last_error());
    return 1;
  }

  double t0 = now_us(), t_start, t_end;
  if (async && strcmp(cell, "unary") != 0)
    usage();
  if (async) {
    aslot *slots = calloc((size_t)inflight, sizeof(*slots));
    areq.data.data = buf;
    areq.data.len = size;
    atomic_store(&outstanding, inflight);
    for (int i = 0; i < inflight; i++)
      async_start(&slots[i]);
    while (now_us() - t0 < warmup_s * 1e6)
      nanosleep(&(struct timespec){0, 1000000}, NULL);
    getrusage(RUSAGE_SELF, &ru0);
    t_start = now_us();
    printf("WINDOW_START\n");
    fflush(stdout);
    atomic_store(&phase, WINDOW);
    while (now_us() - t_start < duration_s * 1e6)
      nanosleep(&(struct timespec){0, 1000000}, NULL);
    atomic_store(&phase, DONE);
    t_end = now_us();
    getrusage(RUSAGE_SELF, &ru1);
    printf("WINDOW_END\n");
    fflush(stdout);
    while (atomic_load(&outstanding) > 0)
      nanosleep(&(struct timespec){0, 1000000}, NULL);
    for (int i = 0; i < inflight; i++) {
      for (size_t k = 0; k < slots[i].s.n; k++)
        add(&all, slots[i].s.v[k]);
      free(slots[i].s.v);
    }
    free(slots);
  } else if (strcmp(cell, "unary") == 0) {
    pthread_t *th = calloc((size_t)inflight, sizeof(*th));
    samples *per = calloc((size_t)inflight, sizeof(*per));
    for (int i = 0; i < inflight; i++)
      pthread_create(&th[i], NULL, unary_loop, &per[i]);
    while (now_us() - t0 < warmup_s * 1e6)
      nanosleep(&(struct timespec){0, 1000000}, NULL);
    getrusage(RUSAGE_SELF, &ru0);
    t_start = now_us();
    printf("WINDOW_START\n");
    fflush(stdout);
    atomic_store(&phase, WINDOW);
    while (now_us() - t_start < duration_s * 1e6)
      nanosleep(&(struct timespec){0, 1000000}, NULL);
    atomic_store(&phase, DONE);
    t_end = now_us();
    getrusage(RUSAGE_SELF, &ru1);
    printf("WINDOW_END\n");
    fflush(stdout);
    for (int i = 0; i < inflight; i++) {
      pthread_join(th[i], NULL);
      for (size_t k = 0; k < per[i].n; k++)
        add(&all, per[i].v[k]);
      free(per[i].v);
    }
    free(th);
    free(per);
  } else {
    stream_start();
    while (now_us() - t0 < warmup_s * 1e6)
      stream_op();
    getrusage(RUSAGE_SELF, &ru0);
    t_start = now_us();
    printf("WINDOW_START\n");
    fflush(stdout);
    double last = t_start, t;
    while ((t = now_us()) - t_start < duration_s * 1e6) {
      stream_op();
      double done = now_us();
      add(&all, strcmp(cell, "server_stream") == 0 ? done - last : done - t);
      last = done;
    }
    t_end = now_us();
    getrusage(RUSAGE_SELF, &ru1);
    printf("WINDOW_END\n");
    fflush(stdout);
    stream_end();
  }

  qsort(all.v, all.n, sizeof(*all.v), cmp);
  double p50 = all.n ? all.v[(all.n - 1) * 50 / 100] : 0;
  double p99 = all.n ? all.v[(all.n - 1) * 99 / 100] : 0;
  printf("{\"ops\": %zu, \"seconds\": %.6f, \"p50_us\": %.2f, "
         "\"p99_us\": %.2f, \"cpu_user_s\": %.6f, \"cpu_sys_s\": %.6f}\n",
         all.n, (t_end - t_start) / 1e6, p50, p99,
         cpu_s(&ru1.ru_utime) - cpu_s(&ru0.ru_utime),
         cpu_s(&ru1.ru_stime) - cpu_s(&ru0.ru_stime));
  free(all.v);
  free(buf);
  prpc_channel_destroy(ch);
  return 0;
}
