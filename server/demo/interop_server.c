/* interop_server: grpc.testing.TestService as gRPC's interop suite
 * (doc/interop-test-descriptions.md) describes it.
 *   interop_server --listen ADDR [--listen ADDR ...] [--threads N]
 * Prints a line per listener (with the port for TCP), then "ready"; stops
 * cleanly on SIGINT or SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grpc/testing/test.prpc.h"

/* Echoes x-grpc-test-echo-initial into the headers and
 * x-grpc-test-echo-trailing-bin into the trailers. */
static void echo_metadata(prpc_ctx *ctx) {
  const prpc_metadata *md = prpc_ctx_metadata(ctx);
  const prpc_md *e = prpc_metadata_get(md, "x-grpc-test-echo-initial");
  if (e)
    prpc_ctx_add_header(ctx, e->key, e->value, e->value_len);
  e = prpc_metadata_get(md, "x-grpc-test-echo-trailing-bin");
  if (e)
    prpc_ctx_add_trailer(ctx, e->key, e->value, e->value_len);
}

/* A request that says whether it was sent compressed must have been. */
static grpc_status_code check_compression(prpc_ctx *ctx,
                                          const Grpc__Testing__BoolValue *exp) {
  if (!exp)
    return GRPC_STATUS_OK;
  int got = prpc_ctx_request_compressed(ctx);
  if (got < 0)
    return GRPC_STATUS_OK; /* this libgrpc does not tell: cannot check */
  if (exp->value && !got) {
    prpc_ctx_set_message(ctx, "expected a compressed request, got it plain");
    return GRPC_STATUS_INVALID_ARGUMENT;
  }
  if (!exp->value && got) {
    prpc_ctx_set_message(ctx, "expected a plain request, got it compressed");
    return GRPC_STATUS_INVALID_ARGUMENT;
  }
  return GRPC_STATUS_OK;
}

static grpc_status_code echo_status(prpc_ctx *ctx,
                                    const Grpc__Testing__EchoStatus *st) {
  if (!st || st->code == 0)
    return GRPC_STATUS_OK;
  prpc_ctx_set_message(ctx, st->message);
  return (grpc_status_code)st->code;
}

/* A payload of size zero bytes, in call memory. */
static Grpc__Testing__Payload *payload(prpc_ctx *ctx, int32_t size) {
  Grpc__Testing__Payload *p = prpc_ctx_alloc(ctx, sizeof(*p));
  if (!p || size < 0)
    return NULL;
  grpc__testing__payload__init(p);
  p->body.len = (size_t)size;
  p->body.data = prpc_ctx_alloc(ctx, (size_t)size + 1);
  if (!p->body.data)
    return NULL;
  memset(p->body.data, 0, (size_t)size);
  return p;
}

static grpc_status_code empty_call(prpc_ctx *ctx,
                                   const Grpc__Testing__Empty *req,
                                   Grpc__Testing__Empty *reply, void *ud) {
  (void)req;
  (void)reply;
  (void)ud;
  echo_metadata(ctx);
  return GRPC_STATUS_OK;
}

static grpc_status_code unary_call(prpc_ctx *ctx,
                                   const Grpc__Testing__SimpleRequest *req,
                                   Grpc__Testing__SimpleResponse *reply,
                                   void *ud) {
  grpc_status_code code;
  (void)ud;
  echo_metadata(ctx);
  if ((code = check_compression(ctx, req->expect_compressed)) != 0)
    return code;
  prpc_ctx_set_compression(ctx, req->response_compressed &&
                                        req->response_compressed->value
                                    ? "gzip"
                                    : "identity");
  if ((code = echo_status(ctx, req->response_status)) != 0)
    return code;
  if (req->response_size > 0 &&
      !(reply->payload = payload(ctx, req->response_size)))
    return GRPC_STATUS_RESOURCE_EXHAUSTED;
  return GRPC_STATUS_OK;
}

/* Sends the responses one request asks for. */
static grpc_status_code send_responses(
    prpc_ctx *ctx, const Grpc__Testing__StreamingOutputCallRequest *req,
    int *first) {
  for (size_t i = 0; i < req->n_response_parameters; i++) {
    const Grpc__Testing__ResponseParameters *p = req->response_parameters[i];
    int compress = p->compressed && p->compressed->value;
    Grpc__Testing__StreamingOutputCallResponse out =
        GRPC__TESTING__STREAMING_OUTPUT_CALL_RESPONSE__INIT;
    if (*first) {
      /* The call's algorithm is set once; plain messages opt out. */
      prpc_ctx_set_compression(ctx, "gzip");
      *first = 0;
    }
    if (p->interval_us > 0) {
      struct timespec ts = {p->interval_us / 1000000,
                            (p->interval_us % 1000000) * 1000L};
      nanosleep(&ts, NULL);
    }
    out.payload = payload(ctx, p->size);
    if (!out.payload)
      return GRPC_STATUS_RESOURCE_EXHAUSTED;
    if (prpc_ctx_write_ex(ctx, &out, compress ? 0 : PRPC_WRITE_NO_COMPRESS))
      return GRPC_STATUS_CANCELLED;
  }
  return GRPC_STATUS_OK;
}

static grpc_status_code streaming_output_call(
    prpc_ctx *ctx, const Grpc__Testing__StreamingOutputCallRequest *req,
    void *ud) {
  grpc_status_code code;
  int first = 1;
  (void)ud;
  echo_metadata(ctx);
  if ((code = send_responses(ctx, req, &first)) != 0)
    return code;
  return echo_status(ctx, req->response_status);
}

static grpc_status_code streaming_input_call(
    prpc_ctx *ctx, Grpc__Testing__StreamingInputCallResponse *reply,
    void *ud) {
  Grpc__Testing__StreamingInputCallRequest *req;
  int rc;
  (void)ud;
  echo_metadata(ctx);
  while ((rc = grpc__testing__test_service_server__streaming_input_call_read(
              ctx, &req)) == 1) {
    grpc_status_code code = check_compression(ctx, req->expect_compressed);
    if (req->payload)
      reply->aggregated_payload_size += (int32_t)req->payload->body.len;
    protobuf_c_message_free_unpacked(&req->base, NULL);
    if (code != GRPC_STATUS_OK)
      return code;
  }
  return rc == 0 ? GRPC_STATUS_OK : GRPC_STATUS_CANCELLED;
}

static grpc_status_code full_duplex_call(prpc_ctx *ctx, void *ud) {
  Grpc__Testing__StreamingOutputCallRequest *req;
  int rc, first = 1;
  (void)ud;
  echo_metadata(ctx);
  while ((rc = grpc__testing__test_service_server__full_duplex_call_read(
              ctx, &req)) == 1) {
    grpc_status_code code = echo_status(ctx, req->response_status);
    if (code == GRPC_STATUS_OK)
      code = send_responses(ctx, req, &first);
    protobuf_c_message_free_unpacked(&req->base, NULL);
    if (code != GRPC_STATUS_OK)
      return code;
  }
  return rc == 0 ? GRPC_STATUS_OK : GRPC_STATUS_CANCELLED;
}

/* Answers every request once the client has half-closed. */
static grpc_status_code half_duplex_call(prpc_ctx *ctx, void *ud) {
  Grpc__Testing__StreamingOutputCallRequest **reqs = NULL;
  size_t n = 0;
  int rc, first = 1;
  grpc_status_code code = GRPC_STATUS_OK;
  Grpc__Testing__StreamingOutputCallRequest *req;
  (void)ud;
  echo_metadata(ctx);
  while ((rc = grpc__testing__test_service_server__half_duplex_call_read(
              ctx, &req)) == 1) {
    void *more = realloc(reqs, (n + 1) * sizeof(*reqs));
    if (!more) {
      protobuf_c_message_free_unpacked(&req->base, NULL);
      code = GRPC_STATUS_RESOURCE_EXHAUSTED;
      break;
    }
    reqs = more;
    reqs[n++] = req;
  }
  if (rc < 0 && code == GRPC_STATUS_OK)
    code = GRPC_STATUS_CANCELLED;
  for (size_t i = 0; i < n; i++) {
    if (code == GRPC_STATUS_OK)
      code = send_responses(ctx, reqs[i], &first);
    protobuf_c_message_free_unpacked(&reqs[i]->base, NULL);
  }
  free(reqs);
  return code;
}

/* ---- the same streaming methods as asynchronous handlers (--async):
 * they run on the thread that polled the call, hold none, queue what they
 * send and read with callbacks. ---- */

/* Queues the responses one request asks for (intervals are slept: no case
 * of the suite asks for one from this server). */
static grpc_status_code queue_responses(
    prpc_ctx *ctx, const Grpc__Testing__StreamingOutputCallRequest *req,
    int *first) {
  for (size_t i = 0; i < req->n_response_parameters; i++) {
    const Grpc__Testing__ResponseParameters *p = req->response_parameters[i];
    int compress = p->compressed && p->compressed->value;
    Grpc__Testing__StreamingOutputCallResponse out =
        GRPC__TESTING__STREAMING_OUTPUT_CALL_RESPONSE__INIT;
    if (*first) {
      prpc_ctx_set_compression(ctx, "gzip");
      *first = 0;
    }
    if (p->interval_us > 0) {
      struct timespec ts = {p->interval_us / 1000000,
                            (p->interval_us % 1000000) * 1000L};
      nanosleep(&ts, NULL);
    }
    out.payload = payload(ctx, p->size);
    if (!out.payload)
      return GRPC_STATUS_RESOURCE_EXHAUSTED;
    if (prpc_ctx_send(ctx, &out, compress ? 0 : PRPC_WRITE_NO_COMPRESS))
      return GRPC_STATUS_CANCELLED;
  }
  return GRPC_STATUS_OK;
}

static grpc_status_code a_streaming_output_call(
    prpc_ctx *ctx, const Grpc__Testing__StreamingOutputCallRequest *req,
    void *ud) {
  grpc_status_code code;
  int first = 1;
  (void)ud;
  echo_metadata(ctx);
  if ((code = queue_responses(ctx, req, &first)) != 0)
    return code;
  return echo_status(ctx, req->response_status); /* after what is queued */
}

/* What one asynchronous streaming call keeps between callbacks. */
typedef struct a_state {
  Grpc__Testing__StreamingInputCallResponse *reply; /* input call */
  int first;                                        /* duplex calls */
  int32_t *sizes, *compressed;                      /* half duplex */
  size_t n;
} a_state;

static void a_done(prpc_ctx *ctx, int cancelled, void *ud) {
  a_state *st = ud;
  (void)ctx;
  (void)cancelled;
  free(st->sizes);
  free(st->compressed);
  free(st);
}

static void a_input_read(prpc_ctx *ctx, void *msg, void *ud) {
  a_state *st = ud;
  Grpc__Testing__StreamingInputCallRequest *req = msg;
  grpc_status_code code;
  if (!req) {
    prpc_ctx_finish(ctx, GRPC_STATUS_OK);
    return;
  }
  if ((code = check_compression(ctx, req->expect_compressed)) != 0) {
    prpc_ctx_finish(ctx, code);
    return;
  }
  if (req->payload)
    st->reply->aggregated_payload_size += (int32_t)req->payload->body.len;
  prpc_ctx_read_async(ctx);
}

static void a_duplex_read(prpc_ctx *ctx, void *msg, void *ud) {
  a_state *st = ud;
  Grpc__Testing__StreamingOutputCallRequest *req = msg;
  grpc_status_code code;
  if (!req) {
    prpc_ctx_finish(ctx, GRPC_STATUS_OK);
    return;
  }
  code = echo_status(ctx, req->response_status);
  if (code == GRPC_STATUS_OK)
    code = queue_responses(ctx, req, &st->first);
  if (code != GRPC_STATUS_OK)
    prpc_ctx_finish(ctx, code);
  else
    prpc_ctx_read_async(ctx);
}

/* Half duplex: keeps what each request asks for; answers at the end. */
static void a_half_read(prpc_ctx *ctx, void *msg, void *ud) {
  a_state *st = ud;
  Grpc__Testing__StreamingOutputCallRequest *req = msg;
  grpc_status_code code = GRPC_STATUS_OK;
  if (req) {
    for (size_t i = 0; i < req->n_response_parameters; i++) {
      const Grpc__Testing__ResponseParameters *p = req->response_parameters[i];
      int32_t *s = realloc(st->sizes, (st->n + 1) * sizeof(*s));
      int32_t *c = s ? realloc(st->compressed, (st->n + 1) * sizeof(*c))
                     : NULL;
      if (s)
        st->sizes = s;
      if (!s || !c) {
        prpc_ctx_finish(ctx, GRPC_STATUS_RESOURCE_EXHAUSTED);
        return;
      }
      st->compressed = c;
      st->sizes[st->n] = p->size;
      st->compressed[st->n++] = p->compressed && p->compressed->value;
    }
    prpc_ctx_read_async(ctx);
    return;
  }
  for (size_t i = 0; i < st->n && code == GRPC_STATUS_OK; i++) {
    Grpc__Testing__StreamingOutputCallResponse out =
        GRPC__TESTING__STREAMING_OUTPUT_CALL_RESPONSE__INIT;
    if (st->first) {
      prpc_ctx_set_compression(ctx, "gzip");
      st->first = 0;
    }
    if (!(out.payload = payload(ctx, st->sizes[i])))
      code = GRPC_STATUS_RESOURCE_EXHAUSTED;
    else if (prpc_ctx_send(ctx, &out,
                           st->compressed[i] ? 0 : PRPC_WRITE_NO_COMPRESS))
      code = GRPC_STATUS_CANCELLED;
  }
  prpc_ctx_finish(ctx, code);
}

static const prpc_ctx_callbacks a_input = {.on_read = a_input_read,
                                           .on_done = a_done};
static const prpc_ctx_callbacks a_duplex = {.on_read = a_duplex_read,
                                            .on_done = a_done};
static const prpc_ctx_callbacks a_half = {.on_read = a_half_read,
                                          .on_done = a_done};

/* Sets up an asynchronous reading call with its state. */
static grpc_status_code a_stream(prpc_ctx *ctx, const prpc_ctx_callbacks *cb,
                                 Grpc__Testing__StreamingInputCallResponse
                                     *reply) {
  a_state *st = calloc(1, sizeof(*st));
  if (!st)
    return GRPC_STATUS_RESOURCE_EXHAUSTED;
  st->reply = reply;
  st->first = 1;
  echo_metadata(ctx);
  if (prpc_ctx_set_callbacks(ctx, cb, st) != 0) {
    free(st);
    return GRPC_STATUS_INTERNAL;
  }
  if (prpc_ctx_read_async(ctx) != 0)
    return GRPC_STATUS_CANCELLED; /* on_done frees st */
  return prpc_ctx_defer(ctx);
}

static grpc_status_code a_streaming_input_call(
    prpc_ctx *ctx, Grpc__Testing__StreamingInputCallResponse *reply,
    void *ud) {
  (void)ud;
  return a_stream(ctx, &a_input, reply);
}

static grpc_status_code a_full_duplex_call(prpc_ctx *ctx, void *ud) {
  (void)ud;
  return a_stream(ctx, &a_duplex, NULL);
}

static grpc_status_code a_half_duplex_call(prpc_ctx *ctx, void *ud) {
  (void)ud;
  return a_stream(ctx, &a_half, NULL);
}

static void usage(void) {
  fprintf(stderr, "usage: interop_server --listen ADDR [--listen ADDR ...] "
                  "[--threads N] [--async]\n");
  exit(2);
}

int main(int argc, char **argv) {
  static const Grpc__Testing__TestServiceServer impl = {
      .empty_call = empty_call,
      .unary_call = unary_call,
      .cacheable_unary_call = unary_call,
      .streaming_output_call = streaming_output_call,
      .streaming_input_call = streaming_input_call,
      .full_duplex_call = full_duplex_call,
      .half_duplex_call = half_duplex_call,
      .unimplemented_call = NULL, /* answers UNIMPLEMENTED */
  };
  static const Grpc__Testing__TestServiceServer async_impl = {
      .empty_call = empty_call,
      .unary_call = unary_call,
      .cacheable_unary_call = unary_call,
      .streaming_output_call = a_streaming_output_call,
      .streaming_input_call = a_streaming_input_call,
      .full_duplex_call = a_full_duplex_call,
      .half_duplex_call = a_half_duplex_call,
      .unimplemented_call = NULL,
  };
  prpc_server_opts opts = PRPC_SERVER_OPTS_INIT;
  prpc_server *server;
  int rc, n_listen = 0, async = 0;
  sigset_t sigs;

  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigprocmask(SIG_BLOCK, &sigs, NULL); /* until prpc_server_run() */
  opts.http_json = 1; /* curl --unix-socket too (docs/http.md) */
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
      opts.threads = atoi(argv[++i]);
    else if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc)
      n_listen++, i++;
    else if (strcmp(argv[i], "--async") == 0)
      async = 1;
    else
      usage();
  }
  if (n_listen == 0)
    usage();
  if (prpc_server_create(&opts, &server) != 0) {
    fprintf(stderr, "interop_server: %s\n", prpc_last_error());
    return 1;
  }
  for (int i = 1; i < argc; i++) {
    int port = 0;
    if (strcmp(argv[i], "--listen") != 0) {
      i += strcmp(argv[i], "--threads") == 0;
      continue;
    }
    if (prpc_server_add_listener(server, argv[++i], &port) != 0) {
      fprintf(stderr, "interop_server: %s\n", prpc_last_error());
      prpc_server_destroy(server);
      return 1;
    }
    if (port)
      printf("interop_server: listening on %s (port %d)\n", argv[i], port);
    else
      printf("interop_server: listening on %s\n", argv[i]);
  }
  if ((async ? grpc__testing__test_service_server__register_async(
                   server, &async_impl, NULL)
             : grpc__testing__test_service_server__register(server, &impl,
                                                            NULL)) != 0 ||
      prpc_server_enable_health(server) != 0 ||
      prpc_server_enable_reflection(server) != 0 ||
      prpc_server_start(server) != 0) {
    fprintf(stderr, "interop_server: %s\n", prpc_last_error());
    prpc_server_destroy(server);
    return 1;
  }
  printf("interop_server: ready\n");
  fflush(stdout);
  rc = prpc_server_run(server);
  prpc_server_destroy(server);
  return rc == 0 ? 0 : 1;
}
