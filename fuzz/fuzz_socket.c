/* Fuzzes a live server's unix socket with arbitrary bytes: each input is
 * written on a new connection, which is then half-closed and read until
 * the server closes it (the server must not hang on it, nor crash). After
 * every input a real call on the long-lived channel must succeed, and every
 * 64 inputs a call on a brand-new connection too: the server stays up and
 * keeps serving other clients. The seeds are HTTP/2 as gRPC speaks it (the
 * client preface, SETTINGS, HEADERS, DATA) so that mutations reach the
 * frame and HPACK parsers and the request path behind them. */
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

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

static void call_ok(prpc_channel *ch) {
  Grpc__Testing__Empty req = GRPC__TESTING__EMPTY__INIT, *reply = NULL;
  prpc_call_opts opts = PRPC_CALL_OPTS_INIT;
  prpc_status st = PRPC_STATUS_INIT;
  opts.timeout_ms = 10000;
  grpc_status_code code = grpc__testing__test_service_client__empty_call(
      ch, &req, &opts, &reply, &st);
  if (code != GRPC_STATUS_OK) {
    fprintf(stderr, "the server stopped serving: %s: %s\n",
            prpc_status_name(code), st.message ? st.message : "");
    FUZZ_ASSERT(code == GRPC_STATUS_OK);
  }
  protobuf_c_message_free_unpacked(&reply->base, NULL);
  prpc_status_clear(&st);
}

static void raw_session(const uint8_t *data, size_t size) {
  struct sockaddr_un sa;
  struct timeval tv = {5, 0};
  char buf[4096];
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
  /* The server answers what it understood and closes once it sees our end;
   * a server that keeps the connection open past 10 s is hanging. */
  for (;;) {
    struct pollfd pfd = {fd, POLLIN, 0};
    int rc = poll(&pfd, 1, 10000);
    FUZZ_ASSERT(rc != 0); /* the server did not close a dead connection */
    if (rc < 0 && errno == EINTR)
      continue;
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0)
      break;
  }
  close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  raw_session(data, size);
  call_ok(channel);
  if (++iterations % 64 == 0) {
    prpc_channel *fresh;
    FUZZ_ASSERT(prpc_channel_create(target, NULL, &fresh) == 0);
    call_ok(fresh);
    prpc_channel_destroy(fresh);
  }
  return 0;
}
