/* greeter_client: calls Greeter.SayHello.
 *   greeter_client --target ADDR [--name N] [--count K] [--timeout-ms T]
 * With --count it makes K calls one after another and reports calls/s and
 * the p50/p99 latency, so that a unix socket and TCP can be compared.
 * Built with PRPC_DEMO_NANOPB as greeter_client_nanopb, over nanopb's
 * messages (names up to 255 bytes, proto/helloworld.options). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "helloworld.prpc.h"

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void usage(void) {
  fprintf(stderr, "usage: greeter_client --target ADDR [--name N] "
                  "[--count K] [--timeout-ms T]\n"
                  "       [--tls-ca FILE] [--tls-cert FILE --tls-key FILE] "
                  "[--tls-server-name NAME]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *target = NULL, *name = "world";
  long count = 1;
  prpc_call_opts opts = PRPC_CALL_OPTS_INIT;
  prpc_channel *channel;
  prpc_channel_opts copts = PRPC_CHANNEL_OPTS_INIT;
  prpc_tls_opts tls = PRPC_TLS_OPTS_INIT;
  int use_tls = 0;
  double *lat, t0;

  opts.timeout_ms = 5000;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--target") == 0 && i + 1 < argc)
      target = argv[++i];
    else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
      name = argv[++i];
    else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
      count = atol(argv[++i]);
    else if (strcmp(argv[i], "--timeout-ms") == 0 && i + 1 < argc)
      opts.timeout_ms = atol(argv[++i]);
    else if (strcmp(argv[i], "--tls-ca") == 0 && i + 1 < argc)
      tls.ca_file = argv[++i], use_tls = 1;
    else if (strcmp(argv[i], "--tls-cert") == 0 && i + 1 < argc)
      tls.cert_file = argv[++i], use_tls = 1;
    else if (strcmp(argv[i], "--tls-key") == 0 && i + 1 < argc)
      tls.key_file = argv[++i], use_tls = 1;
    else if (strcmp(argv[i], "--tls-server-name") == 0 && i + 1 < argc)
      tls.server_name = argv[++i], use_tls = 1;
    else
      usage();
  }
  if (!target || count < 1)
    usage();
  copts.tls = use_tls ? &tls : NULL;
  if (prpc_channel_create(target, &copts, &channel) != 0) {
    fprintf(stderr, "greeter_client: %s\n", prpc_last_error());
    return 1;
  }
  lat = malloc((size_t)count * sizeof(*lat));
  if (!lat)
    return 1;
#ifdef PRPC_DEMO_NANOPB
  helloworld_HelloRequest req = helloworld_HelloRequest_init_zero;
  if (strlen(name) >= sizeof(req.name)) {
    fprintf(stderr, "greeter_client: the name is over %zu bytes\n",
            sizeof(req.name) - 1);
    free(lat);
    prpc_channel_destroy(channel);
    return 1;
  }
  strcpy(req.name, name);
#else
  Helloworld__HelloRequest req = HELLOWORLD__HELLO_REQUEST__INIT;
  req.name = (char *)name;
#endif
  t0 = now_us();
  for (long i = 0; i < count; i++) {
#ifdef PRPC_DEMO_NANOPB
    helloworld_HelloReply reply_buf = helloworld_HelloReply_init_zero;
    helloworld_HelloReply *reply = &reply_buf; /* no allocation */
#else
    Helloworld__HelloReply *reply = NULL;
#endif
    prpc_status st = PRPC_STATUS_INIT;
    double t = now_us();
    grpc_status_code code = helloworld__greeter_client__say_hello(
        channel, &req, &opts,
#ifdef PRPC_DEMO_NANOPB
        reply,
#else
        &reply,
#endif
        &st);
    lat[i] = now_us() - t;
    if (code != GRPC_STATUS_OK) {
      fprintf(stderr, "greeter_client: call %ld failed: %s: %s\n", i + 1,
              prpc_status_name(code), st.message ? st.message : "");
      prpc_status_clear(&st);
      free(lat);
      prpc_channel_destroy(channel);
      return 1;
    }
    if (i == 0)
      printf("%s\n", reply->message);
#ifndef PRPC_DEMO_NANOPB
    protobuf_c_message_free_unpacked(&reply->base, NULL);
#endif
    prpc_status_clear(&st);
  }
  if (count > 1) {
    double total = now_us() - t0;
    qsort(lat, (size_t)count, sizeof(*lat), cmp_double);
    printf("%s: %ld calls in %.3f s: %.0f calls/s, p50 %.1f us, p99 %.1f us\n",
           target, count, total / 1e6, (double)count / (total / 1e6),
           lat[(count - 1) * 50 / 100], lat[(count - 1) * 99 / 100]);
  }
  free(lat);
  prpc_channel_destroy(channel);
  return 0;
}
