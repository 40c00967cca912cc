/* A real piperpc server for the fuzzers that talk to one: grpc.testing's
 * TestService on a unix socket in a fresh temporary directory, started once
 * per process and kept across iterations. Its handlers check that every
 * request they are given is a valid message (it passes protobuf-c's check
 * and re-encodes to the same bytes after a round trip) and count what they
 * see, so that a fuzzer can tell exactly which requests reached them. */
#ifndef PRPC_FUZZ_LIVE_SERVER_H
#define PRPC_FUZZ_LIVE_SERVER_H

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "fuzz.h"
#include "grpc/testing/test.prpc.h"
#include "../runtime/raw_codec.h"

/* Requests that reached a handler, and stream messages a handler read. */
static atomic_long live_handled, live_stream_msgs;

static void live_check_valid(const ProtobufCMessage *m) {
  size_t n, n2;
  uint8_t *a, *b;
  ProtobufCMessage *again;
  FUZZ_ASSERT(m != NULL);
  FUZZ_ASSERT(protobuf_c_message_check(m));
  n = protobuf_c_message_get_packed_size(m);
  a = malloc(n + 1);
  FUZZ_ASSERT(a && protobuf_c_message_pack(m, a) == n);
  again = protobuf_c_message_unpack(m->descriptor, NULL, n, a);
  FUZZ_ASSERT(again != NULL);
  n2 = protobuf_c_message_get_packed_size(again);
  b = malloc(n2 + 1);
  FUZZ_ASSERT(b && n2 == n && protobuf_c_message_pack(again, b) == n);
  FUZZ_ASSERT(memcmp(a, b, n) == 0);
  protobuf_c_message_free_unpacked(again, NULL);
  free(a);
  free(b);
}

static grpc_status_code live_empty(prpc_ctx *ctx, const Grpc__Testing__Empty *req,
                                   Grpc__Testing__Empty *reply, void *ud) {
  (void)ctx, (void)reply, (void)ud;
  live_check_valid(&req->base);
  atomic_fetch_add(&live_handled, 1);
  return GRPC_STATUS_OK;
}

static grpc_status_code live_unary(prpc_ctx *ctx,
                                   const Grpc__Testing__SimpleRequest *req,
                                   Grpc__Testing__SimpleResponse *reply,
                                   void *ud) {
  (void)ud;
  live_check_valid(&req->base);
  atomic_fetch_add(&live_handled, 1);
  reply->username = prpc_ctx_strdup(ctx, "fuzz");
  return GRPC_STATUS_OK;
}

static grpc_status_code live_stream_out(
    prpc_ctx *ctx, const Grpc__Testing__StreamingOutputCallRequest *req,
    void *ud) {
  Grpc__Testing__StreamingOutputCallResponse out =
      GRPC__TESTING__STREAMING_OUTPUT_CALL_RESPONSE__INIT;
  (void)ud;
  live_check_valid(&req->base);
  atomic_fetch_add(&live_handled, 1);
  if (grpc__testing__test_service_server__streaming_output_call_write(ctx,
                                                                      &out))
    return GRPC_STATUS_CANCELLED;
  return GRPC_STATUS_OK;
}

static grpc_status_code live_stream_in(
    prpc_ctx *ctx, Grpc__Testing__StreamingInputCallResponse *reply,
    void *ud) {
  Grpc__Testing__StreamingInputCallRequest *in;
  int rc;
  (void)ud;
  atomic_fetch_add(&live_handled, 1);
  while ((rc = grpc__testing__test_service_server__streaming_input_call_read(
              ctx, &in)) == 1) {
    live_check_valid(&in->base);
    atomic_fetch_add(&live_stream_msgs, 1);
    reply->aggregated_payload_size +=
        in->payload ? (int32_t)in->payload->body.len : 0;
    protobuf_c_message_free_unpacked(&in->base, NULL);
  }
  if (rc == PRPC_EMSG)
    return GRPC_STATUS_INVALID_ARGUMENT; /* the call already says so */
  return rc == 0 ? GRPC_STATUS_OK : GRPC_STATUS_CANCELLED;
}

static prpc_server *live_srv;
/* Set before live_start() to serve HTTP/1.1 with JSON as well. */
static int live_http_json;
static char live_dir[PATH_MAX], live_target[PATH_MAX + 8];

static void live_stop(void) {
  char path[PATH_MAX + 16];
  prpc_server_destroy(live_srv);
  snprintf(path, sizeof(path), "%s/fuzz.sock", live_dir);
  unlink(path);
  rmdir(live_dir);
}

/* Starts the server; returns its target, "unix:DIR/fuzz.sock". */
static const char *live_start(void) {
  static const Grpc__Testing__TestServiceServer impl = {
      .empty_call = live_empty,
      .unary_call = live_unary,
      .streaming_output_call = live_stream_out,
      .streaming_input_call = live_stream_in,
  };
  prpc_server_opts opts = PRPC_SERVER_OPTS_INIT;
  const char *tmp = getenv("TMPDIR");
  opts.threads = 2;
  opts.grace_ms = 1000;
  opts.http_json = live_http_json;
  snprintf(live_dir, sizeof(live_dir), "%s/prpc-fuzz-XXXXXX",
           tmp && *tmp ? tmp : "/tmp");
  FUZZ_ASSERT(mkdtemp(live_dir) != NULL);
  snprintf(live_target, sizeof(live_target), "unix:%s/fuzz.sock", live_dir);
  FUZZ_ASSERT(prpc_server_create(&opts, &live_srv) == 0);
  FUZZ_ASSERT(prpc_server_add_listener(live_srv, live_target, NULL) == 0);
  FUZZ_ASSERT(grpc__testing__test_service_server__register(live_srv, &impl,
                                                           NULL) == 0);
  FUZZ_ASSERT(prpc_server_start(live_srv) == 0);
  atexit(live_stop);
  return live_target;
}


/* An EmptyCall on ch must succeed: the server still serves gRPC. */
static inline void live_call_ok(prpc_channel *ch) {
  Grpc__Testing__Empty req = GRPC__TESTING__EMPTY__INIT, *reply = NULL;
  prpc_call_opts opts = PRPC_CALL_OPTS_INIT;
  prpc_status st = PRPC_STATUS_INIT;
  opts.timeout_ms = 10000;
  grpc_status_code code = grpc__testing__test_service_client__empty_call(
      ch, &req, &opts, &reply, &st);
  if (code != GRPC_STATUS_OK) {
    fprintf(stderr, "the server stopped serving gRPC: %s: %s\n",
            prpc_status_name(code), st.message ? st.message : "");
    FUZZ_ASSERT(code == GRPC_STATUS_OK);
  }
  protobuf_c_message_free_unpacked(&reply->base, NULL);
  prpc_status_clear(&st);
}

/* Writes data on a new connection to target ("unix:PATH"), half-closes,
 * and reads what comes back (up to out_size bytes kept in out, which may
 * be NULL) until the server closes; returns the bytes kept. A server that
 * keeps the half-closed connection open past wait_ms is hanging. */
static inline size_t live_session(const char *target, const uint8_t *data,
                                  size_t size, char *out, size_t out_size,
                                  int wait_ms) {
  struct sockaddr_un sa;
  struct timeval tv = {5, 0};
  char buf[4096];
  size_t got = 0;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  FUZZ_ASSERT(fd >= 0);
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", target + 5);
  FUZZ_ASSERT(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  while (size > 0) {
    ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
    if (n <= 0)
      break; /* the server closed the connection: fine */
    data += n;
    size -= (size_t)n;
  }
  shutdown(fd, SHUT_WR);
  for (;;) {
    struct pollfd pfd = {fd, POLLIN, 0};
    int rc = poll(&pfd, 1, wait_ms);
    FUZZ_ASSERT(rc != 0); /* the server did not close a dead connection */
    if (rc < 0 && errno == EINTR)
      continue;
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0)
      break;
    if (out && got < out_size) {
      size_t k = (size_t)n < out_size - got ? (size_t)n : out_size - got;
      memcpy(out + got, buf, k);
      got += k;
    }
  }
  close(fd);
  return got;
}

/* The TestService method at index i (in .proto order), sent raw. */
static inline prpc_method_desc raw_method(size_t i) {
  const prpc_method_desc *m = &grpc__testing__test_service__prpc_service.methods[i];
  prpc_method_desc d = {m->path, m->kind, &raw_codec, NULL, NULL};
  return d;
}

#endif /* PRPC_FUZZ_LIVE_SERVER_H */
