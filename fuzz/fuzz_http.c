/* Fuzzes the HTTP/1.1 front end's request path (prpc_server_opts.http_json)
 * on a live server: each input is written on a new unix connection as the
 * client's bytes (request lines, headers, chunked or sized JSON bodies, one
 * request or several pipelined), which is then half-closed and read until
 * the server closes it: the server must neither crash nor hang. The
 * TestService handlers check that every request the JSON transcoder made
 * for them is a valid message. After every input a gRPC call on the
 * long-lived channel must succeed, and every 64 inputs an HTTP call on a
 * new connection must answer exactly. The seeds (fuzz/corpus/http/, from
 * make_seeds.py) are well-formed requests of every kind. */
#include "live_server.h"

static prpc_channel *channel;
static const char *target;
static unsigned long iterations;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  live_http_json = 1;
  target = live_start();
  FUZZ_ASSERT(prpc_channel_create(target, NULL, &channel) == 0);
  return 0;
}

static void http_ok(void) {
  static const char req[] =
      "POST /grpc.testing.TestService/UnaryCall HTTP/1.1\r\n"
      "Host: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}";
  static const char want[] = "{\"username\":\"fuzz\"}\n";
  char out[2048];
  size_t n = live_session(target, (const uint8_t *)req, sizeof(req) - 1, out,
                          sizeof(out) - 1, 20000);
  out[n] = '\0';
  if (strncmp(out, "HTTP/1.1 200 ", 13) != 0 ||
      n < sizeof(want) - 1 ||
      strcmp(out + n - (sizeof(want) - 1), want) != 0) {
    fprintf(stderr, "the server stopped serving HTTP: %s\n", out);
    FUZZ_ASSERT(0);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* A server that keeps a half-closed connection past 20 s is hanging
   * (the front end bounds a request at the 5 s handshake timeout). */
  live_session(target, data, size, NULL, 0, 20000);
  live_call_ok(channel);
  if (++iterations % 64 == 0)
    http_ok();
  return 0;
}
