/* TCP listeners, bound here so that errors come back as they are
 * (address in use, no permission, no such address) and so that
 * connections are accepted by piperpc's own loop (transport/accept.c), as
 * unix ones are. */
#include "../runtime/internal.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int set_port(struct sockaddr *sa, int port) {
  if (sa->sa_family == AF_INET)
    ((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
  else if (sa->sa_family == AF_INET6)
    ((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
  else
    return -1;
  return 0;
}

static int get_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
    return -1;
  if (ss.ss_family == AF_INET)
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* One listening socket on ai with the port given. Returns the fd or
 * -errno. */
static int listen_one(const struct addrinfo *ai, int port) {
  struct sockaddr_storage ss;
  int one = 1, zero = 0, fd, err;
  if (ai->ai_addrlen > sizeof(ss))
    return -EINVAL;
  memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
  if (set_port((struct sockaddr *)&ss, port) != 0)
    return -EAFNOSUPPORT;
  fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return -errno;
  /* A restarted server binds at once over connections in TIME_WAIT. Not
   * SO_REUSEPORT: it would let another process of the same user take a
   * share of the connections. */
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  /* [::] also serves IPv4, as gRPC's own listener does. */
  if (ai->ai_family == AF_INET6)
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  if (bind(fd, (struct sockaddr *)&ss, ai->ai_addrlen) != 0 ||
      listen(fd, SOMAXCONN) != 0) {
    err = -errno;
    close(fd);
    return err;
  }
  return fd;
}

static int listen_error(const prpc__target *t, int err) {
  const char *why = err == -EADDRINUSE      ? "the address is in use"
                    : err == -EACCES        ? "permission denied (a port "
                                              "below 1024 needs privileges)"
                    : err == -EADDRNOTAVAIL ? "no such local address"
                                            : strerror(-err);
  return prpc__fail(err, "cannot listen on %s: %s", t->core, why);
}

static int tcp_listen(const prpc__target *t, int *fds, size_t max, size_t *n,
                      int *port) {
  struct addrinfo hints, *res = NULL, *ai;
  char service[16];
  int rc, p = t->port;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  snprintf(service, sizeof(service), "%d", t->port);
  *n = 0;
  rc = getaddrinfo(t->host, service, &hints, &res);
  if (rc != 0)
    return prpc__fail(-EADDRNOTAVAIL, "cannot listen on %s: the host does "
                                      "not resolve: %s",
                      t->core, gai_strerror(rc));
  /* "[::]" with IPV6_V6ONLY off covers 0.0.0.0 too: skip a second socket
   * on the IPv4 wildcard, which would find the port in use. */
  int any6 = 0;
  for (ai = res; ai; ai = ai->ai_next)
    if (ai->ai_family == AF_INET6 &&
        memcmp(&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr,
               &in6addr_any, sizeof(in6addr_any)) == 0)
      any6 = 1;
  rc = 0;
  for (ai = res; ai && *n < max; ai = ai->ai_next) {
    int fd;
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
      continue;
    if (any6 && ai->ai_family == AF_INET &&
        ((struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr ==
            htonl(INADDR_ANY))
      continue;
    fd = listen_one(ai, p);
    if (fd < 0) {
      /* An address family the host lacks (::1 without IPv6) is not an
       * error if another address works. */
      if ((fd == -EAFNOSUPPORT || fd == -EADDRNOTAVAIL) && ai->ai_next) {
        rc = rc ? rc : fd;
        continue;
      }
      rc = fd;
      break;
    }
    if (p == 0)
      p = get_port(fd); /* the others take the same port */
    fds[(*n)++] = fd;
  }
  freeaddrinfo(res);
  if (*n == 0 || (rc != 0 && rc != -EAFNOSUPPORT && rc != -EADDRNOTAVAIL)) {
    for (size_t i = 0; i < *n; i++)
      close(fds[i]);
    *n = 0;
    return listen_error(t, rc ? rc : -EADDRNOTAVAIL);
  }
  *port = p;
  return 0;
}

int prpc__tcp_listen(const prpc__target *t, int *fds, size_t max, size_t *n,
                     int *port) {
  int rc;
  /* Port 0 on several addresses: the port the first one got may be taken
   * on another; try a few times with fresh ports. */
  for (int attempt = 0;; attempt++) {
    rc = tcp_listen(t, fds, max, n, port);
    if (rc != -EADDRINUSE || t->port != 0 || attempt == 4)
      return rc;
  }
}
