/* Target strings: one syntax for clients and servers, checked before
 * anything connects or listens. */
#include "../runtime/internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

static int starts_with(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Parses a decimal number in [lo, hi] that fills all of s. */
static int parse_num(const char *s, long lo, long hi, long *out) {
  long v = 0;
  if (*s == '\0')
    return -1;
  for (; *s; s++) {
    if (!isdigit((unsigned char)*s))
      return -1;
    v = v * 10 + (*s - '0');
    if (v > hi)
      return -1;
  }
  if (v < lo)
    return -1;
  *out = v;
  return 0;
}

static int bad(const char *target, const char *why) {
  return prpc__fail(PRPC_ETARGET, "bad target '%s': %s", target, why);
}

static int parse_unix(const char *target, const char *path, int abstract,
                      prpc__target *t) {
  size_t len = strlen(path);
  if (!abstract && starts_with(path, "//")) {
    /* unix:///abs/path is the URI form; unix://host/... is not supported. */
    if (path[2] != '/')
      return bad(target, "a unix: URI may not name a host; use "
                         "unix:/path or unix:///path");
    path += 2;
    len -= 2;
  }
  if (len == 0)
    return bad(target, abstract ? "empty abstract socket name"
                                : "empty socket path");
  if (len > PRPC__UNIX_PATH_MAX) {
    char why[128];
    snprintf(why, sizeof(why),
             "socket path is %zu bytes, over the %d-byte limit of sun_path",
             len, PRPC__UNIX_PATH_MAX);
    return bad(target, why);
  }
  t->kind = abstract ? PRPC__TARGET_ABSTRACT : PRPC__TARGET_UNIX;
  memcpy(t->path, path, len + 1);
  t->path_len = len;
  snprintf(t->core, sizeof(t->core), "%s%s",
           abstract ? "unix-abstract:" : "unix:", t->path);
  return 0;
}

static int host_char_ok(char c) {
  return isalnum((unsigned char)c) || c == '.' || c == '-' || c == '_';
}

/* "host:port" or "[v6]:port". family: 0 any, 4 or 6 when the scheme says. */
static int parse_hostport(const char *target, const char *hp, int family,
                          int for_server, prpc__target *t) {
  const char *colon;
  const char *host = hp;
  size_t host_len;
  long port;
  unsigned char addr[16];
  char why[160];

  if (*hp == '[') {
    const char *close = strchr(hp, ']');
    if (!close)
      return bad(target, "missing ']' after IPv6 address");
    host = hp + 1;
    host_len = (size_t)(close - host);
    if (close[1] != ':')
      return bad(target, "missing ':port' after ']'");
    colon = close + 1;
  } else {
    colon = strrchr(hp, ':');
    if (!colon)
      return bad(target, "missing ':port' (TCP targets are host:port)");
    host_len = (size_t)(colon - hp);
    if (memchr(hp, ':', host_len))
      return bad(target, "an IPv6 address must be in brackets: [addr]:port");
  }
  if (host_len == 0)
    return bad(target, "empty host");
  if (host_len >= sizeof(t->host))
    return bad(target, "host name too long");
  memcpy(t->host, host, host_len);
  t->host[host_len] = '\0';

  if (parse_num(colon + 1, 0, 65535, &port) != 0) {
    snprintf(why, sizeof(why), "port '%.20s' is not a number in 0..65535",
             colon + 1);
    return bad(target, why);
  }
  if (port == 0 && !for_server)
    return bad(target, "port 0 is only valid for a server");

  int is4 = inet_pton(AF_INET, t->host, addr) == 1;
  int is6 = inet_pton(AF_INET6, t->host, addr) == 1;
  if (*hp == '[' && !is6)
    return bad(target, "not an IPv6 address inside [ ]");
  if (family == 4 && !is4)
    return bad(target, "ipv4: needs a dotted IPv4 address");
  if (family == 6 && !is6)
    return bad(target, "ipv6: needs an IPv6 address in brackets");
  if (!is6) {
    for (size_t i = 0; i < host_len; i++)
      if (!host_char_ok(t->host[i]))
        return bad(target, "invalid character in host name");
  }
  t->kind = PRPC__TARGET_TCP;
  t->port = (int)port;
  if (for_server) {
    snprintf(t->core, sizeof(t->core), is6 ? "[%s]:%d" : "%s:%d", t->host,
             t->port);
  } else if (is4) {
    snprintf(t->core, sizeof(t->core), "ipv4:%s:%d", t->host, t->port);
  } else if (is6) {
    snprintf(t->core, sizeof(t->core), "ipv6:[%s]:%d", t->host, t->port);
  } else {
    snprintf(t->core, sizeof(t->core), "dns:///%s:%d", t->host, t->port);
  }
  return 0;
}

int prpc__target_parse(const char *s, int for_server, prpc__target *t) {
  memset(t, 0, sizeof(*t));
  t->fd = -1;
  if (s == NULL || *s == '\0')
    return prpc__fail(PRPC_ETARGET, "bad target '': empty target");
  if (strlen(s) > 1024)
    return prpc__fail(PRPC_ETARGET, "bad target: longer than 1024 bytes");

  if (starts_with(s, "unix:"))
    return parse_unix(s, s + 5, 0, t);
  if (starts_with(s, "unix-abstract:"))
    return parse_unix(s, s + 14, 1, t);
  if (starts_with(s, "fd:")) {
    long fd;
    if (parse_num(s + 3, 0, INT_MAX, &fd) != 0)
      return bad(s, "fd: needs a file descriptor number");
    t->kind = PRPC__TARGET_FD;
    t->fd = (int)fd;
    snprintf(t->core, sizeof(t->core), "fd:%ld", fd);
    return 0;
  }
  if (starts_with(s, "ipv4:"))
    return parse_hostport(s, s + 5, 4, for_server, t);
  if (starts_with(s, "ipv6:"))
    return parse_hostport(s, s + 5, 6, for_server, t);
  if (starts_with(s, "dns:")) {
    const char *rest = s + 4;
    if (starts_with(rest, "//")) {
      if (rest[2] != '/')
        return bad(s, "dns: with a DNS server authority is not supported");
      rest += 3;
    }
    return parse_hostport(s, rest, 0, for_server, t);
  }
  /* "scheme:..." where scheme is not a host name followed by a port. */
  const char *colon = strchr(s, ':');
  if (colon && isalpha((unsigned char)*s)) {
    const char *after = colon + 1;
    if (starts_with(after, "//") ||
        (*after != '\0' && !isdigit((unsigned char)*after) &&
         strchr(after, ':') == NULL)) {
      char why[128];
      snprintf(why, sizeof(why),
               "unknown scheme '%.*s' (use unix:, unix-abstract:, fd:, "
               "dns:, ipv4:, ipv6: or host:port)",
               (int)(colon - s < 32 ? colon - s : 32), s);
      return bad(s, why);
    }
  }
  return parse_hostport(s, s, 0, for_server, t);
}
