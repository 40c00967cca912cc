/* Fuzzes a live server's unix socket with arbitrary bytes: each input is
 * written on a new connection, which is then half-closed and read until
 * the server closes it (the server must not hang on it, nor crash). After
 * every input a real call on the long-lived channel must succeed, and every
 * 64 inputs a call on a brand-new connection too: the server stays up and
 * keeps serving other clients. The seeds are HTTP/2 as gRPC speaks it (the
 * client preface, SETTINGS, HEADERS, DATA) so that mutations reach the
 * frame and HPACK parsers and the request path behind them. */
#include "live_server.h"

static prpc_channel *channel;
static const char *target;
static unsigned long iterations;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  target = live_start();
  FUZZ_ASSERT(prpc_channel_create(target, NULL, &channel) == 0);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* The server answers what it understood and closes once it sees our
   * end. */
  live_session(target, data, size, NULL, 0, 10000);
  live_call_ok(channel);
  if (++iterations % 64 == 0) {
    prpc_channel *fresh;
    FUZZ_ASSERT(prpc_channel_create(target, NULL, &fresh) == 0);
    live_call_ok(fresh);
    prpc_channel_destroy(fresh);
  }
  return 0;
}
