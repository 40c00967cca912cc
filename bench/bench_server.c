/* bench_server: the benchmark's Echo service on piperpc.
 *   bench_server --listen ADDR [--listen ADDR ...] [--threads N]
 * Prints a line per listener, then "ready"; stops on SIGINT or SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.prpc.h"

static grpc_status_code unary(prpc_ctx *ctx, const Bench__Payload *request,
                              Bench__Payload *reply, void *user_data) {
  (void)ctx;
  (void)user_data;
  reply->data = request->data; /* the request lives until the call ends */
  return GRPC_STATUS_OK;
}

static grpc_status_code server_stream(prpc_ctx *ctx,
                                      const Bench__StreamRequest *request,
                                      void *user_data) {
  Bench__Payload out = BENCH__PAYLOAD__INIT;
  (void)user_data;
  if (request->size < 0 || request->count < 0) {
    prpc_ctx_set_message(ctx, "count and size must not be negative");
    return GRPC_STATUS_INVALID_ARGUMENT;
  }
  out.data.len = (size_t)request->size;
  out.data.data = prpc_ctx_alloc(ctx, out.data.len + 1);
  if (!out.data.data)
    return GRPC_STATUS_RESOURCE_EXHAUSTED;
  memset(out.data.data, 'x', out.data.len);
  for (int32_t i = 0; i < request->count; i++)
    if (bench__echo_server__server_stream_write(ctx, &out) != 0)
      return GRPC_STATUS_CANCELLED; /* the client cancelled: stop now */
  return GRPC_STATUS_OK;
}

static grpc_status_code client_stream(prpc_ctx *ctx, Bench__Payload *reply,
                                      void *user_data) {
  Bench__Payload *in;
  unsigned long long total = 0;
  int rc;
  char *text;
  (void)user_data;
  while ((rc = bench__echo_server__client_stream_read(ctx, &in)) == 1) {
    total += in->data.len;
    protobuf_c_message_free_unpacked(&in->base, NULL);
  }
  if (rc != 0)
    return GRPC_STATUS_CANCELLED;
  text = prpc_ctx_alloc(ctx, 32);
  if (!text)
    return GRPC_STATUS_RESOURCE_EXHAUSTED;
  reply->data.len = (size_t)snprintf(text, 32, "%llu", total);
  reply->data.data = (uint8_t *)text;
  return GRPC_STATUS_OK;
}

static grpc_status_code bidi(prpc_ctx *ctx, void *user_data) {
  Bench__Payload *in;
  int rc;
  (void)user_data;
  while ((rc = bench__echo_server__bidi_read(ctx, &in)) == 1) {
    int w = bench__echo_server__bidi_write(ctx, in);
    protobuf_c_message_free_unpacked(&in->base, NULL);
    if (w != 0)
      return GRPC_STATUS_CANCELLED;
  }
  return rc == 0 ? GRPC_STATUS_OK : GRPC_STATUS_CANCELLED;
}

static void usage(void) {
  fprintf(stderr, "usage: bench_server --listen ADDR [--listen ADDR ...] "
                  "[--threads N]\n");
  exit(2);
}

int main(int argc, char **argv) {
  static const Bench__EchoServer impl = {unary, server_stream, client_stream,
                                         bidi};
  prpc_server_opts opts = PRPC_SERVER_OPTS_INIT;
  prpc_server *server;
  sigset_t sigs;
  int rc, n = 0;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigprocmask(SIG_BLOCK, &sigs, NULL); /* until prpc_server_run() */
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--threads") == 0)
      opts.threads = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--listen") == 0)
      n++;
    else
      usage();
  }
  if (n == 0 || argc % 2 == 0)
    usage();
  opts.shutdown_on_hangup = 1; /* fd:N: stop when the client goes */
  opts.max_recv_bytes = 64 << 20;
  if (prpc_server_create(&opts, &server) != 0) {
    fprintf(stderr, "bench_server: %s\n", prpc_last_error());
    return 1;
  }
  for (int i = 1; i + 1 < argc; i += 2) {
    int port = 0;
    if (strcmp(argv[i], "--listen") != 0)
      continue;
    if (prpc_server_add_listener(server, argv[i + 1], &port) != 0) {
      fprintf(stderr, "bench_server: %s\n", prpc_last_error());
      prpc_server_destroy(server);
      return 1;
    }
    if (port)
      printf("bench_server: listening on %s (port %d)\n", argv[i + 1], port);
    else
      printf("bench_server: listening on %s\n", argv[i + 1]);
  }
  if (bench__echo_server__register(server, &impl, NULL) != 0 ||
      prpc_server_enable_health(server) != 0 ||
      prpc_server_enable_reflection(server) != 0 ||
      prpc_server_start(server) != 0) {
    fprintf(stderr, "bench_server: %s\n", prpc_last_error());
    prpc_server_destroy(server);
    return 1;
  }
  printf("bench_server: ready\n");
  fflush(stdout);
  rc = prpc_server_run(server);
  prpc_server_destroy(server);
  return rc == 0 ? 0 : 1;
}
