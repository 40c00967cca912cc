/* A hostile local peer for the security tests: no gRPC, only sockets.
 *
 *   hostile_peer [--uid N] --target T --conns N [--preface]
 *                [--streams N --path /pkg.Svc/Method]
 *
 * Becomes uid N (and gid N; run as root), opens N connections to T
 * (unix:/path, unix-abstract:name or tcp:PORT on 127.0.0.1), and with
 * --preface sends each the HTTP/2 client preface and an empty SETTINGS
 * frame, as a client that then says nothing more. With --streams it then
 * opens that many streams on the first connection: one HEADERS frame each
 * for the method, never acknowledging the server's SETTINGS (gRPC core 1.51
 * enforces MAX_CONCURRENT_STREAMS only once they are acknowledged).
 *
 * It prints "ready O C" (O connections opened and still open, C that the
 * server closed at once or refused), then holds everything open until its
 * standard input closes, and prints "closed K" with the number of its
 * connections the server had closed by then. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <grp.h>
#include <sys/resource.h>

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static int dial(const char *target) {
  int fd;
  if (strncmp(target, "tcp:", 4) == 0) {
    struct sockaddr_in in = {.sin_family = AF_INET};
    in.sin_port = htons((uint16_t)atoi(target + 4));
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&in, sizeof(in)) != 0) {
      close(fd);
      return -1;
    }
    return fd;
  }
  struct sockaddr_un un = {.sun_family = AF_UNIX};
  socklen_t len;
  if (strncmp(target, "unix-abstract:", 14) == 0) {
    size_t n = strlen(target + 14);
    memcpy(un.sun_path + 1, target + 14, n);
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
  } else if (strncmp(target, "unix:", 5) == 0) {
    snprintf(un.sun_path, sizeof(un.sun_path), "%s", target + 5);
    len = sizeof(un);
  } else {
    return -1;
  }
  fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd >= 0 && connect(fd, (struct sockaddr *)&un, len) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* 1 if the server has closed fd (EOF or reset), without blocking. */
static int closed_by_peer(int fd) {
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0)
      continue; /* SETTINGS and such: drain */
    if (n == 0)
      return 1;
    return errno != EAGAIN && errno != EWOULDBLOCK;
  }
}

static void put_frame(unsigned char *f, size_t len, int type, int flags,
                      unsigned stream) {
  f[0] = (unsigned char)(len >> 16);
  f[1] = (unsigned char)(len >> 8);
  f[2] = (unsigned char)len;
  f[3] = (unsigned char)type;
  f[4] = (unsigned char)flags;
  f[5] = (unsigned char)(stream >> 24);
  f[6] = (unsigned char)(stream >> 16);
  f[7] = (unsigned char)(stream >> 8);
  f[8] = (unsigned char)stream;
}

/* An HPACK "literal header field without indexing, new name", no Huffman
 * coding (lengths under 127). */
static size_t hpack(unsigned char *out, const char *name, const char *value) {
  size_t n = strlen(name), v = strlen(value), o = 0;
  out[o++] = 0x00;
  out[o++] = (unsigned char)n;
  memcpy(out + o, name, n);
  o += n;
  out[o++] = (unsigned char)v;
  memcpy(out + o, value, v);
  return o + v;
}

static int write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN) {
        struct pollfd pf = {fd, POLLOUT, 0};
        poll(&pf, 1, 1000);
        continue;
      }
      return -1;
    }
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

int main(int argc, char **argv) {
  const char *target = NULL, *path = "/x/y";
  int uid = -1, conns = 1, streams = 0, do_preface = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--uid") && i + 1 < argc)
      uid = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--target") && i + 1 < argc)
      target = argv[++i];
    else if (!strcmp(argv[i], "--conns") && i + 1 < argc)
      conns = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--streams") && i + 1 < argc)
      streams = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--path") && i + 1 < argc)
      path = argv[++i];
    else if (!strcmp(argv[i], "--preface"))
      do_preface = 1;
    else {
      fprintf(stderr, "hostile_peer: bad argument %s\n", argv[i]);
      return 2;
    }
  }
  if (!target || conns < 1 || conns > 100000) {
    fprintf(stderr, "hostile_peer: --target and --conns 1..100000\n");
    return 2;
  }
  /* Room for every connection, as root before dropping privileges. */
  struct rlimit rl = {(rlim_t)conns + 64, (rlim_t)conns + 64};
  struct rlimit cur;
  if (getrlimit(RLIMIT_NOFILE, &cur) == 0 && cur.rlim_cur < rl.rlim_cur)
    setrlimit(RLIMIT_NOFILE, &rl);
  if (uid >= 0 && (setgroups(0, NULL) != 0 || setgid((gid_t)uid) != 0 ||
                   setuid((uid_t)uid) != 0)) {
    perror("hostile_peer: cannot change user");
    return 2;
  }
  int *fds = calloc((size_t)conns, sizeof(int));
  int open_n = 0, refused = 0;
  if (!fds)
    return 2;
  for (int i = 0; i < conns; i++) {
    fds[i] = dial(target);
    if (fds[i] < 0) {
      refused++;
      continue;
    }
    if (do_preface) {
      unsigned char settings[9];
      put_frame(settings, 0, 0x4, 0, 0);
      if (write_all(fds[i], preface, sizeof(preface) - 1) != 0 ||
          write_all(fds[i], settings, sizeof(settings)) != 0) {
        close(fds[i]);
        fds[i] = -1;
        refused++;
        continue;
      }
    }
    open_n++;
  }
  if (streams > 0 && fds[0] >= 0) {
    unsigned char block[512], frame[9 + 512];
    size_t n = 0;
    n += hpack(block + n, ":method", "POST");
    n += hpack(block + n, ":scheme", "http");
    n += hpack(block + n, ":path", path);
    n += hpack(block + n, ":authority", "localhost");
    n += hpack(block + n, "content-type", "application/grpc");
    n += hpack(block + n, "te", "trailers");
    for (int s = 0; s < streams; s++) {
      put_frame(frame, n, 0x1, 0x4 /* END_HEADERS */, (unsigned)(2 * s + 1));
      memcpy(frame + 9, block, n);
      if (write_all(fds[0], frame, 9 + n) != 0)
        break;
    }
  }
  /* Give the server a moment to close what it refuses, then count: a
   * refused connection is closed at accept, so its EOF is already here or
   * comes within the poll below. */
  struct pollfd *p = calloc((size_t)conns, sizeof(*p));
  if (p) {
    for (int i = 0; i < conns; i++)
      p[i] = (struct pollfd){fds[i], POLLIN | POLLRDHUP, 0};
    poll(p, (nfds_t)conns, 200);
    free(p);
  }
  for (int i = 0; i < conns; i++)
    if (fds[i] >= 0 && closed_by_peer(fds[i])) {
      close(fds[i]);
      fds[i] = -1;
      open_n--;
      refused++;
    }
  printf("ready %d %d\n", open_n, refused);
  fflush(stdout);
  char buf[64];
  while (fgets(buf, sizeof(buf), stdin)) {
    int k = 0;
    for (int i = 0; i < conns; i++)
      k += fds[i] >= 0 && closed_by_peer(fds[i]);
    printf("closed %d\n", k);
    fflush(stdout);
  }
  /* Closed before exit: LeakSanitizer (ASan builds) cannot check a
   * process at exit that still holds descriptors above the limit it
   * started with ("Can't open /proc/PID/task"). */
  for (int i = 0; i < conns; i++)
    if (fds[i] >= 0)
      close(fds[i]);
  free(fds);
  return 0;
}
