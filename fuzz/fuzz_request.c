/* Fuzzes the server's request path: arbitrary bytes sent as the request
 * message of real registered methods of a live server (unix socket, one
 * server and one channel for the whole run). The first byte picks the
 * method:
 *   0  UnaryCall(SimpleRequest), unary
 *   1  StreamingOutputCall(StreamingOutputCallRequest), server-streaming
 *   2  StreamingInputCall(stream StreamingInputCallRequest), client-
 *      streaming: the rest is split into messages, each a length byte and
 *      that many bytes
 * A request that decodes reaches the handler (which checks that it is a
 * valid message) and the call ends OK; one that does not never reaches a
 * handler and the call ends INVALID_ARGUMENT; a stream of messages is
 * handled up to its first bad message. Any other outcome aborts. */
#include <string.h>

#include "live_server.h"

/* How the server words a request that does not decode (server/call.c). */
#define NOT_DECODED "the request message does not decode: "

static prpc_channel *channel;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  FUZZ_ASSERT(prpc_channel_create(live_start(), NULL, &channel) == 0);
  return 0;
}

/* Whether the runtime's codec accepts the bytes: the server must deliver
 * exactly those requests (and the handler checks they are valid). */
static int decodes(const ProtobufCMessageDescriptor *d, const uint8_t *p,
                   size_t n) {
  void *m = prpc_codec_protobuf_c.decode(d, p, n, NULL);
  prpc_codec_protobuf_c.free(d, m, NULL); /* NULL is fine */
  return m != NULL;
}

static void expect(grpc_status_code code, const prpc_status *st, int valid) {
  if (valid ? code != GRPC_STATUS_OK : code != GRPC_STATUS_INVALID_ARGUMENT) {
    fprintf(stderr, "valid=%d: status %s: %s\n", valid, prpc_status_name(code),
            st->message ? st->message : "");
    FUZZ_ASSERT(!"unexpected status");
  }
}

static void unary(const uint8_t *p, size_t n) {
  prpc_method_desc m = raw_method(1);
  raw_msg req = {p, n};
  prpc_call_opts opts = PRPC_CALL_OPTS_INIT;
  prpc_status st = PRPC_STATUS_INIT;
  void *reply = NULL;
  long before = atomic_load(&live_handled);
  int valid = decodes(&grpc__testing__simple_request__descriptor, p, n);
  opts.timeout_ms = 10000;
  grpc_status_code code = prpc_unary_call(channel, &m, &req, &opts, &reply,
                                          &st);
  expect(code, &st, valid);
  FUZZ_ASSERT(atomic_load(&live_handled) - before == valid);
  if (!valid)
    FUZZ_ASSERT(st.message && strncmp(st.message, NOT_DECODED,
                                      sizeof(NOT_DECODED) - 1) == 0);
  raw_codec.free(NULL, reply, NULL);
  prpc_status_clear(&st);
}

static void server_streaming(const uint8_t *p, size_t n) {
  prpc_method_desc m = raw_method(3);
  raw_msg req = {p, n};
  prpc_call_opts opts = PRPC_CALL_OPTS_INIT;
  prpc_status st = PRPC_STATUS_INIT;
  prpc_call *call;
  void *msg;
  int got = 0;
  long before = atomic_load(&live_handled);
  int valid =
      decodes(&grpc__testing__streaming_output_call_request__descriptor, p, n);
  opts.timeout_ms = 10000;
  FUZZ_ASSERT(prpc_call_start(channel, &m, &req, &opts, &call) == 0);
  while (prpc_call_read(call, &msg) == 1) {
    raw_codec.free(NULL, msg, NULL);
    got++;
  }
  grpc_status_code code = prpc_call_finish(call, NULL, &st);
  expect(code, &st, valid);
  FUZZ_ASSERT(got == valid);
  FUZZ_ASSERT(atomic_load(&live_handled) - before == valid);
  prpc_status_clear(&st);
}

static void client_streaming(const uint8_t *p, size_t n) {
  prpc_method_desc m = raw_method(4);
  prpc_call_opts opts = PRPC_CALL_OPTS_INIT;
  prpc_status st = PRPC_STATUS_INIT;
  prpc_call *call;
  void *reply = NULL;
  long before = atomic_load(&live_stream_msgs);
  long good = 0;
  int all_valid = 1;
  opts.timeout_ms = 10000;
  FUZZ_ASSERT(prpc_call_start(channel, &m, NULL, &opts, &call) == 0);
  while (n > 0) {
    size_t len = p[0] < n - 1 ? p[0] : n - 1;
    raw_msg msg = {p + 1, len};
    if (all_valid) {
      if (decodes(&grpc__testing__streaming_input_call_request__descriptor,
                  p + 1, len))
        good++;
      else
        all_valid = 0;
    }
    if (prpc_call_write(call, &msg) != 0)
      break; /* the server ended the call: finish says how */
    p += 1 + len;
    n -= 1 + len;
  }
  grpc_status_code code = prpc_call_finish(call, &reply, &st);
  expect(code, &st, all_valid);
  /* The handler read exactly the messages before the first bad one. */
  FUZZ_ASSERT(atomic_load(&live_stream_msgs) - before == good);
  raw_codec.free(NULL, reply, NULL);
  prpc_status_clear(&st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  switch (data[0] % 3) {
  case 0:
    unary(data + 1, size - 1);
    break;
  case 1:
    server_streaming(data + 1, size - 1);
    break;
  default:
    client_streaming(data + 1, size - 1);
    break;
  }
  return 0;
}
