/* bench_http_client: unary Echo calls as HTTP/1.1 with JSON bodies
 * (prpc_server_opts.http_json, docs/http.md) on one keep-alive connection
 * to a unix socket, as bench/PROTOCOL.md describes:
 *   bench_http_client --target unix:PATH --cell unary --size BYTES
 *                     [--inflight 1] [--warmup S] [--duration S]
 * Only the unary cell with one call in flight: HTTP/1.1 has one request at
 * a time on a connection. Plain sockets, no HTTP library: what it measures
 * is the server's HTTP and JSON path, not a client's. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static void die(const char *what) {
  fprintf(stderr, "bench_http_client: %s\n", what);
  exit(1);
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static char *b64(const uint8_t *d, size_t n) {
  static const char t[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char *s = malloc((n + 2) / 3 * 4 + 1), *o = s;
  if (!s)
    die("out of memory");
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)d[i] << 16;
    if (i + 1 < n)
      v |= (uint32_t)d[i + 1] << 8;
    if (i + 2 < n)
      v |= d[i + 2];
    *o++ = t[v >> 18];
    *o++ = t[(v >> 12) & 63];
    *o++ = i + 1 < n ? t[(v >> 6) & 63] : '=';
    *o++ = i + 2 < n ? t[v & 63] : '=';
  }
  *o = '\0';
  return s;
}

static char *rbuf;
static size_t rcap, rlen;

/* Reads one response (Content-Length framed) and checks it is a 200. */
static void read_response(int fd) {
  for (;;) {
    char *end = rlen ? memmem(rbuf, rlen, "\r\n\r\n", 4) : NULL;
    if (end) {
      size_t head = (size_t)(end - rbuf) + 4;
      char *cl = memmem(rbuf, head, "Content-Length:", 15);
      size_t body = cl ? strtoul(cl + 15, NULL, 10) : 0;
      if (strncmp(rbuf, "HTTP/1.1 200 ", 13) != 0)
        die("the server did not answer 200");
      if (rlen >= head + body) {
        memmove(rbuf, rbuf + head + body, rlen - head - body);
        rlen -= head + body;
        return;
      }
    }
    if (rlen == rcap) {
      rcap = rcap ? 2 * rcap : 65536;
      if (!(rbuf = realloc(rbuf, rcap)))
        die("out of memory");
    }
    ssize_t n = read(fd, rbuf + rlen, rcap - rlen);
    if (n <= 0)
      die("the server closed the connection");
    rlen += (size_t)n;
  }
}

int main(int argc, char **argv) {
  const char *target = NULL, *cell = "unary";
  size_t size = 0;
  int inflight = 1;
  double warmup_s = 1, duration_s = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--target") == 0)
      target = argv[i + 1];
    else if (strcmp(argv[i], "--cell") == 0)
      cell = argv[i + 1];
    else if (strcmp(argv[i], "--size") == 0)
      size = strtoul(argv[i + 1], NULL, 10);
    else if (strcmp(argv[i], "--inflight") == 0)
      inflight = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--warmup") == 0)
      warmup_s = atof(argv[i + 1]);
    else if (strcmp(argv[i], "--duration") == 0)
      duration_s = atof(argv[i + 1]);
  }
  if (!target || strncmp(target, "unix:", 5) != 0)
    die("--target unix:PATH is required");
  if (strcmp(cell, "unary") != 0 || inflight != 1)
    die("only the unary cell with one call in flight");

  uint8_t *data = malloc(size + 1);
  if (!data)
    die("out of memory");
  memset(data, 'x', size);
  char *enc = b64(data, size);
  size_t body_len = strlen(enc) + sizeof("{\"data\":\"\"}") - 1;
  size_t req_cap = body_len + 256;
  char *req = malloc(req_cap);
  if (!req)
    die("out of memory");
  int req_len = snprintf(req, req_cap,
                         "POST /bench.Echo/Unary HTTP/1.1\r\nHost: bench\r\n"
                         "Content-Type: application/json\r\n"
                         "Content-Length: %zu\r\n\r\n{\"data\":\"%s\"}",
                         body_len, enc);

  struct sockaddr_un sa;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", target + 5);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
    die("cannot connect");

  size_t cap = 1 << 20, n = 0, ops = 0;
  double *lat = malloc(cap * sizeof(*lat));
  if (!lat)
    die("out of memory");
  struct rusage r0, r1;
  double t0 = now_us(), start = 0, end = 0;
  int in_window = 0;
  for (;;) {
    double t = now_us();
    if (!in_window && t - t0 >= warmup_s * 1e6) {
      in_window = 1;
      start = t;
      getrusage(RUSAGE_SELF, &r0);
      printf("WINDOW_START\n");
      fflush(stdout);
    } else if (in_window && t - start >= duration_s * 1e6) {
      end = t;
      getrusage(RUSAGE_SELF, &r1);
      printf("WINDOW_END\n");
      fflush(stdout);
      break;
    }
    for (int off = 0; off < req_len;) {
      ssize_t w = write(fd, req + off, (size_t)(req_len - off));
      if (w <= 0)
        die("cannot write");
      off += (int)w;
    }
    read_response(fd);
    if (in_window) {
      if (n == cap && !(lat = realloc(lat, (cap *= 2) * sizeof(*lat))))
        die("out of memory");
      lat[n++] = now_us() - t;
      ops++;
    }
  }
  qsort(lat, n, sizeof(*lat), cmp);
  double p50 = n ? lat[n / 2] : 0, p99 = n ? lat[(size_t)(n * 0.99)] : 0;
  double cu = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) +
              (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1e6;
  double cs = (double)(r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
              (double)(r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
  printf("{\"ops\": %zu, \"seconds\": %.6f, \"p50_us\": %.2f, "
         "\"p99_us\": %.2f, \"cpu_user_s\": %.6f, \"cpu_sys_s\": %.6f}\n",
         ops, (end - start) / 1e6, p50, p99, cu, cs);
  close(fd);
  free(lat);
  free(req);
  free(enc);
  free(data);
  free(rbuf);
  return 0;
}
