/* bench_server: the benchmark's Echo service on piperpc.
 *   bench_server --listen ADDR [--listen ADDR ...] [--threads N]
 * Prints a line per listener, then "ready"; stops on SIGINT or SIGTERM.
 * Built with PRPC_DEMO_NANOPB as bench_server_nanopb: the same service over
 * nanopb messages, whose payload (up to the 64 MiB receive limit) is a
 * pb_callback_t field kept in per-call memory: no message on the heap. */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.prpc.h"

#ifdef PRPC_DEMO_NANOPB
#include <pb_decode.h>
#include <pb_encode.h>

/* A payload's bytes, in call memory (prpc_ctx_alloc), grown on demand. */
typedef struct blob {
  prpc_ctx *ctx;
  uint8_t *data;
  size_t len, cap;
} blob;

static bool blob_decode(pb_istream_t *stream, const pb_field_t *field,
                        void **arg) {
  blob *b = *arg;
  size_t n = stream->bytes_left;
  (void)field;
  if (n > b->cap) {
    uint8_t *p = prpc_ctx_alloc(b->ctx, n);
    if (!p)
      return false;
    b->data = p;
    b->cap = n;
  }
  if (!pb_read(stream, b->data, n))
    return false;
  b->len = n;
  return true;
}

static bool blob_encode(pb_ostream_t *stream, const pb_field_t *field,
                        void *const *arg) {
  const blob *b = *arg;
  if (b->len == 0)
    return true; /* proto3: an empty field is not sent */
  return pb_encode_tag_for_field(stream, field) &&
         pb_encode_string(stream, b->data, b->len);
}

static blob *blob_new(prpc_ctx *ctx) {
  blob *b = prpc_ctx_alloc(ctx, sizeof(*b));
  if (b)
    *b = (blob){ctx, NULL, 0, 0};
  return b;
}

/* Before a Unary request is decoded: its bytes go to a blob. */
static void unary_prepare(prpc_ctx *ctx, bench_Payload *request,
                          void *user_data) {
  (void)user_data;
  request->data.funcs.decode = blob_decode;
  request->data.arg = blob_new(ctx); /* NULL: the decode fails */
}

static grpc_status_code unary(prpc_ctx *ctx, const bench_Payload *request,
                              bench_Payload *reply, void *user_data) {
  (void)ctx;
  (void)user_data;
  reply->data.funcs.encode = blob_encode;
  reply->data.arg = request->data.arg; /* lives until the call ends */
  return GRPC_STATUS_OK;
}

static grpc_status_code server_stream(prpc_ctx *ctx,
                                      const bench_StreamRequest *request,
                                      void *user_data) {
  bench_Payload out = bench_Payload_init_zero;
  blob *b = blob_new(ctx);
  (void)user_data;
  if (request->size < 0 || request->count < 0) {
    prpc_ctx_set_message(ctx, "count and size must not be negative");
    return GRPC_STATUS_INVALID_ARGUMENT;
  }
  if (!b || !(b->data = prpc_ctx_alloc(ctx, (size_t)request->size + 1)))
    return GRPC_STATUS_RESOURCE_EXHAUSTED;
  b->len = (size_t)request->size;
  memset(b->data, 'x', b->len);
  out.data.funcs.encode = blob_encode;
  out.data.arg = b;
  for (int32_t i = 0; i < request->count; i++)
    if (bench__echo_server__server_stream_write(ctx, &out) != 0)
      return GRPC_STATUS_CANCELLED; /* the client cancelled: stop now */
  return GRPC_STATUS_OK;
}

/* Counts a payload's bytes without keeping them. */
static bool count_decode(pb_istream_t *stream, const pb_field_t *field,
                         void **arg) {
  unsigned long long *total = *arg;
  (void)field;
  *total += stream->bytes_left;
  return pb_read(stream, NULL, stream->bytes_left); /* NULL: skip */
}

static grpc_status_code client_stream(prpc_ctx *ctx, bench_Payload *reply,
                                      void *user_data) {
  bench_Payload in = bench_Payload_init_zero;
  unsigned long long total = 0;
  blob *b = blob_new(ctx);
  int rc;
  (void)user_data;
  if (!b || !(b->data = prpc_ctx_alloc(ctx, 32)))
    return GRPC_STATUS_RESOURCE_EXHAUSTED;
  in.data.funcs.decode = count_decode;
  in.data.arg = &total;
  while ((rc = bench__echo_server__client_stream_read(ctx, &in)) == 1)
    ;
  if (rc != 0)
    return GRPC_STATUS_CANCELLED;
  b->len = (size_t)snprintf((char *)b->data, 32, "%llu", total);
  reply->data.funcs.encode = blob_encode;
  reply->data.arg = b;
  return GRPC_STATUS_OK;
}

static grpc_status_code bidi(prpc_ctx *ctx, void *user_data) {
  bench_Payload in = bench_Payload_init_zero, out = bench_Payload_init_zero;
  blob *b = blob_new(ctx);
  int rc;
  (void)user_data;
  if (!b)
    return GRPC_STATUS_RESOURCE_EXHAUSTED;
  in.data.funcs.decode = blob_decode; /* kept by each read */
  in.data.arg = b;
  out.data.funcs.encode = blob_encode;
  out.data.arg = b;
  while ((rc = bench__echo_server__bidi_read(ctx, &in)) == 1) {
    if (bench__echo_server__bidi_write(ctx, &out) != 0)
      return GRPC_STATUS_CANCELLED;
    b->len = 0;
  }
  return rc == 0 ? GRPC_STATUS_OK : GRPC_STATUS_CANCELLED;
}
#else
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

/* ---- the same streams as reactors (--handlers async): no thread waits;
 * every read and write completes into a callback on the server's loop ---- */

typedef struct astream {
  Bench__Payload out; /* ServerStream: the message sent again and again */
  int32_t left;       /* ServerStream: messages still to queue */
  unsigned long long total; /* ClientStream: the bytes read */
  Bench__Payload *reply;    /* ClientStream: the handler's reply */
} astream;

/* ServerStream keeps two messages queued: each one sent queues the next. */
static void as_write_done(prpc_ctx *ctx, int ok, void *ud) {
  astream *s = ud;
  if (!ok)
    return; /* the call is over (on_done follows) */
  if (s->left > 0) {
    s->left--;
    if (bench__echo_server__server_stream_send(ctx, &s->out) != 0)
      prpc_ctx_finish(ctx, GRPC_STATUS_CANCELLED);
  } else if (s->left == 0) {
    s->left = -1; /* once: the last write done ends the call */
    prpc_ctx_finish(ctx, GRPC_STATUS_OK);
  }
}

static void as_done(prpc_ctx *ctx, int cancelled, void *ud) {
  (void)ctx, (void)cancelled, (void)ud; /* call memory: freed with it */
}

static const prpc_ctx_callbacks as_server_stream_cb = {
    .on_write_done = as_write_done, .on_done = as_done};

static grpc_status_code server_stream_async(prpc_ctx *ctx,
                                            const Bench__StreamRequest *request,
                                            void *user_data) {
  astream *s = prpc_ctx_alloc(ctx, sizeof(*s));
  (void)user_data;
  if (request->size < 0 || request->count < 0) {
    prpc_ctx_set_message(ctx, "count and size must not be negative");
    return GRPC_STATUS_INVALID_ARGUMENT;
  }
  if (!s)
    return GRPC_STATUS_RESOURCE_EXHAUSTED;
  memset(s, 0, sizeof(*s));
  bench__payload__init(&s->out);
  s->out.data.len = (size_t)request->size;
  s->out.data.data = prpc_ctx_alloc(ctx, s->out.data.len + 1);
  if (!s->out.data.data)
    return GRPC_STATUS_RESOURCE_EXHAUSTED;
  memset(s->out.data.data, 'x', s->out.data.len);
  if (request->count == 0)
    return GRPC_STATUS_OK;
  s->left = request->count;
  if (prpc_ctx_set_callbacks(ctx, &as_server_stream_cb, s) != 0)
    return GRPC_STATUS_INTERNAL;
  for (int i = 0; i < 2 && s->left > 0; i++) {
    s->left--;
    if (bench__echo_server__server_stream_send(ctx, &s->out) != 0)
      return GRPC_STATUS_CANCELLED;
  }
  return prpc_ctx_defer(ctx);
}

static void as_sum_read(prpc_ctx *ctx, void *msg, void *ud) {
  astream *s = ud;
  if (msg) {
    s->total += ((Bench__Payload *)msg)->data.len;
    if (prpc_ctx_read_async(ctx) != 0)
      prpc_ctx_finish(ctx, GRPC_STATUS_CANCELLED);
    return;
  }
  char *text = prpc_ctx_alloc(ctx, 32);
  if (!text) {
    prpc_ctx_finish(ctx, GRPC_STATUS_RESOURCE_EXHAUSTED);
    return;
  }
  s->reply->data.len = (size_t)snprintf(text, 32, "%llu", s->total);
  s->reply->data.data = (uint8_t *)text;
  prpc_ctx_finish(ctx, GRPC_STATUS_OK);
}

static const prpc_ctx_callbacks as_client_stream_cb = {.on_read = as_sum_read,
                                                       .on_done = as_done};

static grpc_status_code client_stream_async(prpc_ctx *ctx,
                                            Bench__Payload *reply,
                                            void *user_data) {
  astream *s = prpc_ctx_alloc(ctx, sizeof(*s));
  (void)user_data;
  if (!s)
    return GRPC_STATUS_RESOURCE_EXHAUSTED;
  memset(s, 0, sizeof(*s));
  s->reply = reply;
  if (prpc_ctx_set_callbacks(ctx, &as_client_stream_cb, s) != 0 ||
      prpc_ctx_read_async(ctx) != 0)
    return GRPC_STATUS_INTERNAL;
  return prpc_ctx_defer(ctx);
}

/* Bidi: each message read is sent back, then the next is read. */
static void as_echo_read(prpc_ctx *ctx, void *msg, void *ud) {
  (void)ud;
  if (!msg) {
    prpc_ctx_finish(ctx, GRPC_STATUS_OK);
    return;
  }
  if (bench__echo_server__bidi_send(ctx, msg) != 0 ||
      prpc_ctx_read_async(ctx) != 0)
    prpc_ctx_finish(ctx, GRPC_STATUS_CANCELLED);
}

static const prpc_ctx_callbacks as_bidi_cb = {.on_read = as_echo_read,
                                              .on_done = as_done};

static grpc_status_code bidi_async(prpc_ctx *ctx, void *user_data) {
  (void)user_data;
  if (prpc_ctx_set_callbacks(ctx, &as_bidi_cb, NULL) != 0 ||
      prpc_ctx_read_async(ctx) != 0)
    return GRPC_STATUS_INTERNAL;
  return prpc_ctx_defer(ctx);
}
#endif

static void usage(void) {
  fprintf(stderr, "usage: bench_server --listen ADDR [--listen ADDR ...] "
                  "[--threads N] [--handlers blocking|async]\n");
  exit(2);
}

int main(int argc, char **argv) {
#ifdef PRPC_DEMO_NANOPB
  static const Bench__EchoServer impl = {.unary = unary,
                                         .server_stream = server_stream,
                                         .client_stream = client_stream,
                                         .bidi = bidi,
                                         .unary_prepare = unary_prepare};
#else
  static const Bench__EchoServer impl = {unary, server_stream, client_stream,
                                         bidi};
  static const Bench__EchoServer impl_async = {
      unary, server_stream_async, client_stream_async, bidi_async};
#endif
  int async = 0;
  prpc_server_opts opts = PRPC_SERVER_OPTS_INIT;
  prpc_server *server;
  sigset_t sigs;
  int rc, n = 0;
  /* As bench_core_server: glibc would hand the heap back to the kernel
   * after each large message and fault it in again for the next (the
   * 64 KiB streams ran at a seventh of their speed); an application that
   * moves large messages tunes this the same way. */
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigprocmask(SIG_BLOCK, &sigs, NULL); /* until prpc_server_run() */
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--threads") == 0)
      opts.threads = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--handlers") == 0 &&
             (strcmp(argv[i + 1], "async") == 0 ||
              strcmp(argv[i + 1], "blocking") == 0))
      async = strcmp(argv[i + 1], "async") == 0;
    else if (strcmp(argv[i], "--listen") == 0)
      n++;
    else
      usage();
  }
  if (n == 0 || argc % 2 == 0)
    usage();
  opts.shutdown_on_hangup = 1; /* fd:N: stop when the client goes */
  opts.http_json = 1; /* curl --unix-socket too (docs/http.md) */
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
#ifdef PRPC_DEMO_NANOPB
  int registered = async ? (fprintf(stderr, "bench_server: --handlers async "
                                            "is for protobuf-c\n"),
                            -1)
                         : bench__echo_server__register(server, &impl, NULL);
#else
  int registered =
      async ? bench__echo_server__register_async(server, &impl_async, NULL)
            : bench__echo_server__register(server, &impl, NULL);
#endif
  if (registered != 0 ||
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
