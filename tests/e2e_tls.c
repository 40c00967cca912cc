/* TCP with TLS and mutual TLS, with certificates made at test time by
 * tests/tls/gen_certs.sh into $PRPC_TLS_DIR. */
#include <errno.h>

#include "helloworld.prpc.h"
#include "test.h"

static char dir[1024];

static const char *cert(const char *name) {
  static char paths[8][1100];
  static int next;
  char *p = paths[next++ % 8];
  snprintf(p, 1100, "%s/%s", dir, name);
  return p;
}

static void setup(void) {
  const char *d = getenv("PRPC_TLS_DIR");
  if (!d)
    FAIL_AT(__FILE__, __LINE__, "PRPC_TLS_DIR is not set");
  snprintf(dir, sizeof(dir), "%s", d);
}

static grpc_status_code say_hello(prpc_ctx *ctx,
                                  const Helloworld__HelloRequest *req,
                                  Helloworld__HelloReply *reply, void *ud) {
  (void)ud;
  (void)req;
  reply->message = prpc_ctx_strdup(ctx, "hello over TLS");
  return GRPC_STATUS_OK;
}
static const Helloworld__GreeterServer impl = {say_hello};

/* A TLS server with the given certificate; mutual TLS if require_client. */
static prpc_server *tls_server(const char *name, int require_client,
                               int *port) {
  prpc_server *srv;
  char c[64], k[64];
  prpc_tls_opts tls = PRPC_TLS_OPTS_INIT;
  snprintf(c, sizeof(c), "%s.pem", name);
  snprintf(k, sizeof(k), "%s.key", name);
  tls.cert_file = cert(c);
  tls.key_file = cert(k);
  if (require_client) {
    tls.ca_file = cert("ca.pem");
    tls.require_client_cert = 1;
  }
  ASSERT_EQ(prpc_server_create(NULL, &srv), 0);
  if (prpc_server_add_tls_listener(srv, "127.0.0.1:0", &tls, port) != 0)
    FAIL_AT(__FILE__, __LINE__, "%s", prpc_last_error());
  ASSERT_EQ(helloworld__greeter_server__register(srv, &impl, NULL), 0);
  ASSERT_EQ(prpc_server_start(srv), 0);
  return srv;
}

/* One call with the given client TLS settings (NULL: insecure). */
static grpc_status_code call(int port, const prpc_tls_opts *tls,
                             prpc_status *st) {
  prpc_channel_opts copts = PRPC_CHANNEL_OPTS_INIT;
  prpc_call_opts o = PRPC_CALL_OPTS_INIT;
  Helloworld__HelloRequest req = HELLOWORLD__HELLO_REQUEST__INIT;
  Helloworld__HelloReply *rep = NULL;
  prpc_channel *ch;
  char target[64];
  snprintf(target, sizeof(target), "127.0.0.1:%d", port);
  copts.tls = tls;
  o.timeout_ms = 10000;
  req.name = "tls";
  ASSERT_EQ(prpc_channel_create(target, &copts, &ch), 0);
  grpc_status_code c =
      helloworld__greeter_client__say_hello(ch, &req, &o, &rep, st);
  if (c == GRPC_STATUS_OK) {
    ASSERT_STREQ(rep->message, "hello over TLS");
    protobuf_c_message_free_unpacked(&rep->base, NULL);
  }
  prpc_channel_destroy(ch);
  return c;
}

static void tls(void) {
  int port;
  prpc_tls_opts t = PRPC_TLS_OPTS_INIT;
  prpc_status st = PRPC_STATUS_INIT;
  setup();
  prpc_server *srv = tls_server("server", 0, &port);
  t.ca_file = cert("ca.pem");
  ASSERT_EQ(call(port, &t, NULL), GRPC_STATUS_OK);
  t.server_name = "localhost"; /* also in the certificate */
  ASSERT_EQ(call(port, &t, NULL), GRPC_STATUS_OK);
  /* Not trusted: another CA, or the system's roots. */
  t.server_name = NULL;
  t.ca_file = cert("other-ca.pem");
  ASSERT_EQ(call(port, &t, &st), GRPC_STATUS_UNAVAILABLE);
  prpc_status_clear(&st);
  /* The wrong name. */
  t.ca_file = cert("ca.pem");
  t.server_name = "example.org";
  ASSERT_EQ(call(port, &t, &st), GRPC_STATUS_UNAVAILABLE);
  prpc_status_clear(&st);
  /* A plaintext client gets nowhere. */
  ASSERT_EQ(call(port, NULL, &st), GRPC_STATUS_UNAVAILABLE);
  prpc_status_clear(&st);
  prpc_server_destroy(srv);
}

static void mutual_tls(void) {
  int port;
  prpc_tls_opts t = PRPC_TLS_OPTS_INIT;
  prpc_status st = PRPC_STATUS_INIT;
  setup();
  prpc_server *srv = tls_server("server", 1, &port);
  t.ca_file = cert("ca.pem");
  /* No client certificate: refused. */
  ASSERT_EQ(call(port, &t, &st), GRPC_STATUS_UNAVAILABLE);
  prpc_status_clear(&st);
  /* A certificate from another CA: refused. */
  t.cert_file = cert("wrong.pem");
  t.key_file = cert("wrong.key");
  ASSERT_EQ(call(port, &t, &st), GRPC_STATUS_UNAVAILABLE);
  prpc_status_clear(&st);
  /* The right one. */
  t.cert_file = cert("client.pem");
  t.key_file = cert("client.key");
  ASSERT_EQ(call(port, &t, NULL), GRPC_STATUS_OK);
  prpc_server_destroy(srv);
}

static void expired(void) {
  int port;
  prpc_tls_opts t = PRPC_TLS_OPTS_INIT;
  prpc_status st = PRPC_STATUS_INIT;
  setup();
  prpc_server *srv = tls_server("expired", 0, &port);
  t.ca_file = cert("ca.pem");
  ASSERT_EQ(call(port, &t, &st), GRPC_STATUS_UNAVAILABLE);
  prpc_status_clear(&st);
  prpc_server_destroy(srv);
}

static void errors(void) {
  prpc_server *srv;
  prpc_channel *ch;
  prpc_tls_opts t = PRPC_TLS_OPTS_INIT;
  prpc_channel_opts copts = PRPC_CHANNEL_OPTS_INIT;
  setup();
  ASSERT_EQ(prpc_server_create(NULL, &srv), 0);
  t.cert_file = cert("server.pem");
  t.key_file = cert("server.key");
  ASSERT_EQ(prpc_server_add_tls_listener(srv, "unix:/tmp/x.sock", &t, NULL),
            -EINVAL);
  ASSERT_CONTAINS(prpc_last_error(), "TLS is for TCP targets");
  t.key_file = NULL;
  ASSERT_EQ(prpc_server_add_tls_listener(srv, "127.0.0.1:0", &t, NULL),
            -EINVAL);
  t.key_file = cert("no-such.key");
  ASSERT_EQ(prpc_server_add_tls_listener(srv, "127.0.0.1:0", &t, NULL),
            -ENOENT);
  ASSERT_CONTAINS(prpc_last_error(), "no-such.key");
  t.key_file = cert("server.key");
  t.require_client_cert = 1; /* without a CA to check clients with */
  ASSERT_EQ(prpc_server_add_tls_listener(srv, "127.0.0.1:0", &t, NULL),
            -EINVAL);
  prpc_server_destroy(srv);
  copts.tls = &t;
  ASSERT_EQ(prpc_channel_create("unix:/tmp/x.sock", &copts, &ch), -EINVAL);
  t.ca_file = cert("missing-ca.pem");
  t.cert_file = t.key_file = NULL;
  ASSERT(prpc_channel_create("127.0.0.1:1", &copts, &ch) < 0);
  ASSERT_CONTAINS(prpc_last_error(), "missing-ca.pem");
}

TEST_MAIN(CASE(tls), CASE(mutual_tls), CASE(expired), CASE(errors))
