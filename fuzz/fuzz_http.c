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
  live_http_json = 1;
  target = live_start();
  FUZZ_ASSERT(prpc_channel_create(target, NULL, &channel) == 0);
  return 0;
}

static void grpc_ok(void) {
  Grpc__Testing__Empty req = GRPC__TESTING__EMPTY__INIT, *reply = NULL;
  prpc_call_opts opts = PRPC_CALL_OPTS_INIT;
  prpc_status st = PRPC_STATUS_INIT;
  opts.timeout_ms = 10000;
  grpc_status_code code = grpc__testing__test_service_client__empty_call(
      channel, &req, &opts, &reply, &st);
  if (code != GRPC_STATUS_OK) {
    fprintf(stderr, "the server stopped serving gRPC: %s: %s\n",
            prpc_status_name(code), st.message ? st.message : "");
    FUZZ_ASSERT(code == GRPC_STATUS_OK);
  }
  protobuf_c_message_free_unpacked(&reply->base, NULL);
  prpc_status_clear(&st);
}

/* Writes data on a new connection, half-closes, and reads what comes back
 * (up to size bytes kept in out) until the server closes. */
static size_t session(const uint8_t *data, size_t size, char *out,
                      size_t out_size) {
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
  /* A server that keeps a half-closed connection past 20 s is hanging (the
   * front end bounds a request at the 5 s handshake timeout). */
  for (;;) {
    struct pollfd pfd = {fd, POLLIN, 0};
    int rc = poll(&pfd, 1, 20000);
    FUZZ_ASSERT(rc != 0);
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

static void http_ok(void) {
  static const char req[] =
      "POST /grpc.testing.TestService/UnaryCall HTTP/1.1\r\n"
      "Host: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}";
  static const char want[] = "{\"username\":\"fuzz\"}\n";
  char out[2048];
  size_t n = session((const uint8_t *)req, sizeof(req) - 1, out,
                     sizeof(out) - 1);
  out[n] = '\0';
  if (strncmp(out, "HTTP/1.1 200 ", 13) != 0 ||
      n < sizeof(want) - 1 ||
      strcmp(out + n - (sizeof(want) - 1), want) != 0) {
    fprintf(stderr, "the server stopped serving HTTP: %s\n", out);
    FUZZ_ASSERT(0);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  session(data, size, NULL, 0);
  grpc_ok();
  if (++iterations % 64 == 0)
    http_ok();
  return 0;
}
