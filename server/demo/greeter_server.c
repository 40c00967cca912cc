/* greeter_server: the Greeter of gRPC's helloworld example, over unix
 * sockets, inherited fds and TCP (with or without TLS).
 *   greeter_server --listen ADDR [--listen ADDR ...] [options]
 * ADDR is any piperpc target: unix:/path, unix-abstract:name, fd:N,
 * host:port (default to 127.0.0.1, never 0.0.0.0 unless asked). Prints one
 * line per listener, then "ready"; stops cleanly on SIGINT or SIGTERM.
 * Built twice: greeter_server over protobuf-c messages, and with
 * PRPC_DEMO_NANOPB greeter_server_nanopb over nanopb's (fixed sizes from
 * proto/helloworld.options; no message on the heap). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helloworld.prpc.h"

#ifdef PRPC_DEMO_NANOPB
static grpc_status_code say_hello(prpc_ctx *ctx,
                                  const helloworld_HelloRequest *request,
                                  helloworld_HelloReply *reply,
                                  void *user_data) {
  (void)ctx;
  (void)user_data;
  /* name holds at most 255 bytes, message 261: the greeting always fits. */
  snprintf(reply->message, sizeof(reply->message), "Hello %s", request->name);
  return GRPC_STATUS_OK;
}
#else
static grpc_status_code say_hello(prpc_ctx *ctx,
                                  const Helloworld__HelloRequest *request,
                                  Helloworld__HelloReply *reply,
                                  void *user_data) {
  const char *name = request->name ? request->name : "";
  size_t n = strlen(name) + sizeof("Hello ");
  (void)user_data;
  reply->message = prpc_ctx_alloc(ctx, n);
  if (!reply->message)
    return GRPC_STATUS_RESOURCE_EXHAUSTED;
  snprintf(reply->message, n, "Hello %s", name);
  return GRPC_STATUS_OK;
}
#endif

static void usage(void) {
  fprintf(stderr,
          "usage: greeter_server --listen ADDR [--listen ADDR ...] [options]\n"
          "  --threads N            worker threads (default: one per CPU)\n"
          "  --allow WHO            access rule for unix peers, in order:\n"
          "  --deny WHO               user:NAME|UID uid:N group:NAME|GID gid:N\n"
          "                           same-user root any\n"
          "  --socket-mode OCTAL    mode of socket files (default 0600)\n"
          "  --socket-group GROUP   group of socket files\n"
          "  --max-connections N    unix connections held at once\n"
          "  --systemd              adopt sockets passed by systemd\n"
          "  --tls-listen ADDR      a TCP listener with TLS; needs:\n"
          "  --tls-cert FILE --tls-key FILE [--tls-ca FILE "
          "--tls-require-client-cert]\n");
  exit(2);
}

int main(int argc, char **argv) {
  prpc_server_opts opts = PRPC_SERVER_OPTS_INIT;
  prpc_tls_opts tls = PRPC_TLS_OPTS_INIT;
  static const Helloworld__GreeterServer impl = {.say_hello = say_hello};
  prpc_server *server;
  int rc, n_listen = 0, systemd = 0;
  sigset_t sigs;

  /* Hold SIGINT/SIGTERM until prpc_server_run() waits for them: a signal
   * sent right after "ready" must stop the server cleanly, not kill it. */
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigprocmask(SIG_BLOCK, &sigs, NULL);

  /* First pass: the options that shape the server. */
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--systemd") == 0 || strcmp(a, "--tls-require-client-cert") == 0) {
      systemd |= a[2] == 's';
      tls.require_client_cert |= a[2] == 't';
      continue;
    }
    if (!v)
      usage();
    i++;
    if (strcmp(a, "--listen") == 0 || strcmp(a, "--tls-listen") == 0)
      n_listen++;
    else if (strcmp(a, "--threads") == 0)
      opts.threads = atoi(v);
    else if (strcmp(a, "--socket-mode") == 0)
      opts.socket_mode = (unsigned)strtoul(v, NULL, 8);
    else if (strcmp(a, "--socket-group") == 0)
      opts.socket_group = v;
    else if (strcmp(a, "--max-connections") == 0)
      opts.max_connections = atoi(v);
    else if (strcmp(a, "--tls-cert") == 0)
      tls.cert_file = v;
    else if (strcmp(a, "--tls-key") == 0)
      tls.key_file = v;
    else if (strcmp(a, "--tls-ca") == 0)
      tls.ca_file = v;
    else if (strcmp(a, "--allow") != 0 && strcmp(a, "--deny") != 0)
      usage();
  }
  if (n_listen == 0 && !systemd)
    usage();
  /* A child given an inherited fd stops when its parent goes away. */
  opts.shutdown_on_hangup = 1;
  opts.http_json = 1; /* curl --unix-socket too (docs/http.md) */
  if (prpc_server_create(&opts, &server) != 0) {
    fprintf(stderr, "greeter_server: %s\n", prpc_last_error());
    return 1;
  }
  /* Second pass: listeners and rules, in the order given. */
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = argv[i + 1];
    int port = 0;
    if (strcmp(a, "--systemd") == 0 || strcmp(a, "--tls-require-client-cert") == 0)
      continue;
    i++;
    if (strcmp(a, "--listen") == 0)
      rc = prpc_server_add_listener(server, v, &port);
    else if (strcmp(a, "--tls-listen") == 0)
      rc = prpc_server_add_tls_listener(server, v, &tls, &port);
    else if (strcmp(a, "--allow") == 0 || strcmp(a, "--deny") == 0)
      rc = prpc_server_add_rule(server, a[2] == 'a', v);
    else
      continue;
    if (rc != 0) {
      fprintf(stderr, "greeter_server: %s\n", prpc_last_error());
      prpc_server_destroy(server);
      return 1;
    }
    if (a[2] == 'a' || a[2] == 'd')
      continue;
    if (port)
      printf("greeter_server: listening on %s (port %d)\n", v, port);
    else
      printf("greeter_server: listening on %s\n", v);
  }
  if (systemd) {
    int n = 0;
    if (prpc_server_add_systemd_listeners(server, &n) != 0) {
      fprintf(stderr, "greeter_server: %s\n", prpc_last_error());
      prpc_server_destroy(server);
      return 1;
    }
    printf("greeter_server: listening on %d socket(s) from systemd\n", n);
  }
  if (helloworld__greeter_server__register(server, &impl, NULL) != 0 ||
      prpc_server_enable_health(server) != 0 ||
      prpc_server_enable_reflection(server) != 0 ||
      prpc_server_start(server) != 0) {
    fprintf(stderr, "greeter_server: %s\n", prpc_last_error());
    prpc_server_destroy(server);
    return 1;
  }
  printf("greeter_server: ready\n");
  fflush(stdout);
  rc = prpc_server_run(server);
  prpc_server_destroy(server);
  printf("greeter_server: stopped\n");
  return rc == 0 ? 0 : 1;
}
