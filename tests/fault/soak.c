/* soak: many unary calls and streams from many threads against one
 * fault_server process, with zero errors allowed, sampling the server's
 * resident memory to check that it stops growing after warm-up.
 *   soak [--calls N] [--streams N] [--threads N] [--channels N]
 *        [--samples N] [--max-growth-kb N]
 * Defaults: 1000000 calls, 10000 streams, 64 threads, 8 channels (each its
 * own connection), 20 samples, 4096 kB. Every reply is checked. The
 * server's VmRSS is sampled at every 1/samples of the calls; the check is
 * on the second half: RSS at the end minus RSS at half-way must stay
 * within --max-growth-kb (-1: report it, do not check it). Exits 0 when
 * all passed. */
#include <pthread.h>
#include <stdatomic.h>

#include "faultutil.h"

static long n_calls = 1000000, n_streams = 10000, growth_kb = 4096;
static int n_threads = 64, n_channels = 8, n_samples = 20;
static prpc_channel **channels;
static atomic_long calls_done, streams_done, errors;

static void error(const char *what, int t, long i, grpc_status_code c) {
  if (atomic_fetch_add(&errors, 1) < 10)
    fprintf(stderr, "soak: thread %d, #%ld: %s: %s\n", t, i, what,
            prpc_status_name(c));
}

/* One stream of the given kind (0 Down, 1 Up, 2 Both), 4 messages. */
static int one_stream(prpc_channel *ch, int kind, const char *text) {
  Fault__Req req = FAULT__REQ__INIT;
  Fault__Rep *rep = NULL;
  prpc_call *call;
  int good = 0, n = 0;
  req.text = (char *)text;
  if (kind == 0) {
    req.count = 4;
    if (fault__fault_client__down_start(ch, &req, NULL, &call) != 0)
      return 0;
    while (fault__fault_client__down_read(call, &rep) == 1) {
      good += rep->n == n++ && strcmp(rep->text, text) == 0;
      protobuf_c_message_free_unpacked(&rep->base, NULL);
    }
    return prpc_call_finish(call, NULL, NULL) == GRPC_STATUS_OK &&
           good == 4 && n == 4;
  }
  if (kind == 1) {
    char want[256];
    if (fault__fault_client__up_start(ch, NULL, &call) != 0)
      return 0;
    for (int k = 0; k < 4; k++)
      fault__fault_client__up_write(call, &req);
    snprintf(want, sizeof(want), "%s%s%s%s", text, text, text, text);
    good = fault__fault_client__up_finish(call, &rep, NULL) ==
               GRPC_STATUS_OK &&
           rep->n == 4 && strcmp(rep->text, want) == 0;
    if (rep)
      protobuf_c_message_free_unpacked(&rep->base, NULL);
    return good;
  }
  if (fault__fault_client__both_start(ch, NULL, &call) != 0)
    return 0;
  for (int k = 0; k < 4; k++) {
    if (fault__fault_client__both_write(call, &req) != 0 ||
        fault__fault_client__both_read(call, &rep) != 1)
      break;
    good += rep->n == k && strcmp(rep->text, text) == 0;
    protobuf_c_message_free_unpacked(&rep->base, NULL);
  }
  prpc_call_writes_done(call);
  return prpc_call_finish(call, NULL, NULL) == GRPC_STATUS_OK && good == 4;
}

static void *client_thread(void *arg) {
  int t = (int)(intptr_t)arg;
  long calls = n_calls / n_threads + (t < n_calls % n_threads);
  long streams = n_streams / n_threads + (t < n_streams % n_threads);
  long every = streams ? calls / streams + 1 : 0, s = 0;
  prpc_channel *ch = channels[t % n_channels];
  char text[64];
  for (long i = 0; i < calls; i++) {
    Fault__Rep *rep = NULL;
    snprintf(text, sizeof(text), "t%d-%ld", t, i);
    grpc_status_code c = unary(ch, text, 0, 30000, 0, &rep);
    if (c != GRPC_STATUS_OK || strcmp(rep->text, text) != 0 || rep->n != 0)
      error("unary", t, i, c);
    if (rep)
      protobuf_c_message_free_unpacked(&rep->base, NULL);
    atomic_fetch_add(&calls_done, 1);
    if (every && s < streams && (i + 1) % every == 0) {
      if (!one_stream(ch, (int)(s % 3), text))
        error("stream", t, s, GRPC_STATUS_UNKNOWN);
      s++;
      atomic_fetch_add(&streams_done, 1);
    }
  }
  for (; s < streams; s++) { /* what is left when calls ran out */
    snprintf(text, sizeof(text), "t%d-s%ld", t, s);
    if (!one_stream(ch, (int)(s % 3), text))
      error("stream", t, s, GRPC_STATUS_UNKNOWN);
    atomic_fetch_add(&streams_done, 1);
  }
  return NULL;
}

static void usage(void) {
  fprintf(stderr, "usage: soak [--calls N] [--streams N] [--threads N] "
                  "[--channels N] [--samples N] [--max-growth-kb N]\n");
  exit(2);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i += 2) {
    if (i + 1 >= argc)
      usage();
    long v = atol(argv[i + 1]);
    if (strcmp(argv[i], "--calls") == 0)
      n_calls = v;
    else if (strcmp(argv[i], "--streams") == 0)
      n_streams = v;
    else if (strcmp(argv[i], "--threads") == 0)
      n_threads = (int)v;
    else if (strcmp(argv[i], "--channels") == 0)
      n_channels = (int)v;
    else if (strcmp(argv[i], "--samples") == 0)
      n_samples = (int)v;
    else if (strcmp(argv[i], "--max-growth-kb") == 0)
      growth_kb = v;
    else
      usage();
  }
  if (n_calls < 1 || n_streams < 0 || n_threads < 1 || n_channels < 1 ||
      n_samples < 2)
    usage();
  signal(SIGPIPE, SIG_IGN);
  char *dir = test_tmpdir();
  char path[PATH_MAX], target[PATH_MAX + 8];
  snprintf(path, sizeof(path), "%s/soak.sock", dir);
  snprintf(target, sizeof(target), "unix:%s", path);
  const char *args[] = {"--listen", target, NULL};
  server_proc sp;
  server_spawn(dir, args, 0, 0, &sp);
  if (!sp.ready) {
    fprintf(stderr, "soak: fault_server did not start: %s\n",
            server_log(&sp));
    return 1;
  }
  /* Each channel its own connection (fd:N). */
  channels = calloc((size_t)n_channels, sizeof(*channels));
  for (int i = 0; i < n_channels; i++) {
    char fdt[32];
    int fd = unix_connect(path);
    snprintf(fdt, sizeof(fdt), "fd:%d", fd);
    if (fd < 0 || prpc_channel_create(fdt, NULL, &channels[i]) != 0) {
      fprintf(stderr, "soak: cannot connect: %s\n", prpc_last_error());
      return 1;
    }
  }
  printf("soak: %ld unary calls and %ld streams (4 messages each: "
         "server-, client-, bidi-streaming in turn) from %d threads over "
         "%d connections to fault_server pid %d\n",
         n_calls, n_streams, n_threads, n_channels, (int)sp.pid);
  printf("%10s %10s %8s %10s %8s\n", "calls", "streams", "seconds",
         "VmRSS_kB", "threads");
  fflush(stdout);
  pthread_t *th = calloc((size_t)n_threads, sizeof(*th));
  double t0 = test_now_ms();
  long rss0 = proc_status_field(sp.pid, "VmRSS");
  printf("%10d %10d %8.1f %10ld %8ld\n", 0, 0, 0.0, rss0,
         proc_status_field(sp.pid, "Threads"));
  for (int i = 0; i < n_threads; i++)
    if (pthread_create(&th[i], NULL, client_thread, (void *)(intptr_t)i)) {
      fprintf(stderr, "soak: cannot start thread %d\n", i);
      return 1;
    }
  long *rss = calloc((size_t)n_samples + 1, sizeof(*rss));
  int k = 1;
  rss[0] = rss0;
  while (k < n_samples) {
    long done = atomic_load(&calls_done);
    if (done >= n_calls * k / n_samples) {
      rss[k] = proc_status_field(sp.pid, "VmRSS");
      printf("%10ld %10ld %8.1f %10ld %8ld\n", done,
             atomic_load(&streams_done), (test_now_ms() - t0) / 1e3, rss[k],
             proc_status_field(sp.pid, "Threads"));
      fflush(stdout);
      k++;
    } else {
      test_sleep_ms(5);
    }
  }
  for (int i = 0; i < n_threads; i++)
    pthread_join(th[i], NULL);
  double secs = (test_now_ms() - t0) / 1e3;
  rss[n_samples] = proc_status_field(sp.pid, "VmRSS");
  printf("%10ld %10ld %8.1f %10ld %8ld\n", atomic_load(&calls_done),
         atomic_load(&streams_done), secs, rss[n_samples],
         proc_status_field(sp.pid, "Threads"));
  long peak = 0;
  for (int i = 0; i <= n_samples; i++)
    peak = rss[i] > peak ? rss[i] : peak;
  long half = rss[n_samples / 2], growth = rss[n_samples] - half;
  printf("soak: %ld calls, %ld streams, %ld errors in %.1f s (%.0f calls/s)\n",
         atomic_load(&calls_done), atomic_load(&streams_done),
         atomic_load(&errors), secs, (double)n_calls / secs);
  printf("soak: server VmRSS %ld kB at start, %ld kB half-way, %ld kB at the "
         "end (peak %ld kB): second-half growth %+ld kB ",
         rss0, half, rss[n_samples], peak, growth);
  if (growth_kb >= 0)
    printf("(limit %ld kB)\n", growth_kb);
  else
    printf("(not checked: --max-growth-kb -1)\n");
  for (int i = 0; i < n_channels; i++)
    prpc_channel_destroy(channels[i]);
  /* A clean exit after SIGTERM (a leak checker around the server fails
   * it otherwise). */
  kill(sp.pid, SIGTERM);
  int st = proc_wait(sp.pid, 60000);
  int clean = st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
  if (!clean)
    fprintf(stderr, "soak: fault_server did not exit cleanly (%d): %s\n", st,
            server_log(&sp));
  int pass = clean && atomic_load(&errors) == 0 &&
             atomic_load(&calls_done) == n_calls &&
             atomic_load(&streams_done) == n_streams &&
             (growth_kb < 0 || growth <= growth_kb);
  printf("soak: %s\n", pass ? "PASS" : "FAIL");
  if (pass)
    test_rmdir(dir);
  free(rss);
  free(th);
  free(channels);
  return pass ? 0 : 1;
}
