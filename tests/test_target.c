/* Target strings: every accepted form and every rejected one. */
#include "../runtime/internal.h"
#include "test.h"

#include <errno.h>

static void ok(const char *s, int for_server, prpc__target_kind kind,
               const char *core) {
  prpc__target t;
  int rc = prpc__target_parse(s, for_server, &t);
  if (rc != 0)
    FAIL_AT(__FILE__, __LINE__, "'%s' rejected: %s", s, prpc_last_error());
  ASSERT_EQ(t.kind, kind);
  ASSERT_STREQ(t.core, core);
}

static void bad(const char *s, int for_server, const char *why) {
  prpc__target t;
  int rc = prpc__target_parse(s, for_server, &t);
  if (rc != PRPC_ETARGET)
    FAIL_AT(__FILE__, __LINE__, "'%s' accepted (core '%s')", s ? s : "NULL",
            t.core);
  ASSERT_CONTAINS(prpc_last_error(), why);
}

static void unix_forms(void) {
  ok("unix:/run/app.sock", 0, PRPC__TARGET_UNIX, "unix:/run/app.sock");
  ok("unix:rel/app.sock", 0, PRPC__TARGET_UNIX, "unix:rel/app.sock");
  ok("unix:///run/app.sock", 0, PRPC__TARGET_UNIX, "unix:/run/app.sock");
  ok("unix-abstract:my-app", 1, PRPC__TARGET_ABSTRACT,
     "unix-abstract:my-app");
  prpc__target t;
  ASSERT_EQ(prpc__target_parse("unix:/a/b", 1, &t), 0);
  ASSERT_STREQ(t.path, "/a/b");
  ASSERT_EQ(t.path_len, 4);
}

static void unix_limits(void) {
  char path[200] = "unix:/";
  memset(path + 6, 'a', 106); /* "/" + 106 = 107 bytes: the limit */
  path[6 + 106] = '\0';
  prpc__target t;
  ASSERT_EQ(prpc__target_parse(path, 1, &t), 0);
  ASSERT_EQ(t.path_len, 107);
  strcat(path, "a"); /* 108 */
  bad(path, 1, "108 bytes, over the 107-byte limit");
  bad("unix:", 0, "empty socket path");
  bad("unix-abstract:", 0, "empty abstract socket name");
  bad("unix://host/path", 0, "may not name a host");
}

static void tcp_forms(void) {
  ok("127.0.0.1:50051", 0, PRPC__TARGET_TCP, "ipv4:127.0.0.1:50051");
  ok("127.0.0.1:0", 1, PRPC__TARGET_TCP, "127.0.0.1:0");
  ok("localhost:80", 0, PRPC__TARGET_TCP, "dns:///localhost:80");
  ok("[::1]:443", 0, PRPC__TARGET_TCP, "ipv6:[::1]:443");
  ok("[::1]:0", 1, PRPC__TARGET_TCP, "[::1]:0");
  ok("ipv4:10.1.2.3:7", 0, PRPC__TARGET_TCP, "ipv4:10.1.2.3:7");
  ok("ipv6:[fe80::1]:7", 0, PRPC__TARGET_TCP, "ipv6:[fe80::1]:7");
  ok("dns:example.org:8443", 0, PRPC__TARGET_TCP,
     "dns:///example.org:8443");
  ok("dns:///example.org:8443", 1, PRPC__TARGET_TCP, "example.org:8443");
  prpc__target t;
  ASSERT_EQ(prpc__target_parse("[::1]:65535", 0, &t), 0);
  ASSERT_EQ(t.port, 65535);
  ASSERT_STREQ(t.host, "::1");
}

static void tcp_errors(void) {
  bad("127.0.0.1:65536", 1, "port '65536' is not a number in 0..65535");
  bad("127.0.0.1:-1", 1, "is not a number");
  bad("127.0.0.1:0", 0, "port 0 is only valid for a server");
  bad("localhost", 0, "missing ':port'");
  bad(":80", 0, "empty host");
  bad("::1:80", 0, "must be in brackets");
  bad("[::1]80", 0, "missing ':port' after ']'");
  bad("[::1:80", 0, "missing ']'");
  bad("[nothex]:80", 0, "not an IPv6 address");
  bad("ipv4:localhost:80", 0, "ipv4: needs a dotted IPv4 address");
  bad("ipv6:127.0.0.1:80", 0, "ipv6: needs an IPv6 address");
  bad("dns://8.8.8.8/example.org:80", 0, "authority is not supported");
  bad("exa mple:80", 0, "invalid character in host name");
}

static void other_errors(void) {
  bad("", 0, "empty target");
  bad(NULL, 0, "empty target");
  bad("http://example.org", 0, "unknown scheme 'http'");
  bad("tcp:foo", 0, "unknown scheme 'tcp'");
  bad("fd:", 0, "fd: needs a file descriptor number");
  bad("fd:x", 0, "fd: needs a file descriptor number");
  bad("fd:99999999999", 0, "fd: needs a file descriptor number");
  ok("fd:3", 0, PRPC__TARGET_FD, "fd:3");
  char long_target[1100];
  memset(long_target, 'a', sizeof(long_target) - 1);
  long_target[sizeof(long_target) - 1] = '\0';
  bad(long_target, 0, "longer than 1024 bytes");
}

/* The public entry points check targets before doing anything. */
static void public_api(void) {
  prpc_channel *ch = (prpc_channel *)0x1;
  ASSERT_EQ(prpc_channel_create("bogus://x", NULL, &ch), PRPC_ETARGET);
  ASSERT(ch == (prpc_channel *)0x1); /* out untouched on failure */
  ASSERT_CONTAINS(prpc_last_error(), "unknown scheme 'bogus'");
  prpc_server *srv;
  ASSERT_EQ(prpc_server_create(NULL, &srv), 0);
  ASSERT_EQ(prpc_server_add_listener(srv, "127.0.0.1:70000", NULL),
            PRPC_ETARGET);
  ASSERT_CONTAINS(prpc_last_error(), "70000");
  prpc_server_destroy(srv);
}

TEST_MAIN(CASE(unix_forms), CASE(unix_limits), CASE(tcp_forms),
          CASE(tcp_errors), CASE(other_errors), CASE(public_api))
