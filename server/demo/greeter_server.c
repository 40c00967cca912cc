/* greeter_server: the Greeter of gRPC's helloworld example, over unix
 * sockets and TCP.
 *   greeter_server --listen ADDR [--listen ADDR ...] [--threads N]
 * ADDR is any piperpc target: unix:/path, unix-abstract:name, host:port.
 * Prints one line per listener, then "ready"; stops on SIGINT or SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helloworld.prpc.h"

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

static void usage(void) {
  fprintf(stderr, "usage: greeter_server --listen ADDR [--listen ADDR ...] "
                  "[--threads N]\n");
  exit(2);
}

int main(int argc, char **argv) {
  prpc_server_opts opts = PRPC_SERVER_OPTS_INIT;
  static const Helloworld__GreeterServer impl = {say_hello};
  prpc_server *server;
  const char **listen = calloc((size_t)argc, sizeof(*listen));
  int n_listen = 0, rc;

  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc)
      listen[n_listen++] = argv[++i];
    else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
      opts.threads = atoi(argv[++i]);
    else
      usage();
  }
  if (n_listen == 0)
    usage();
  /* Hold SIGINT/SIGTERM until prpc_server_run() waits for them: a signal
   * sent right after "ready" must stop the server cleanly, not kill it. */
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigprocmask(SIG_BLOCK, &sigs, NULL);
  if (prpc_server_create(&opts, &server) != 0) {
    fprintf(stderr, "greeter_server: %s\n", prpc_last_error());
    return 1;
  }
  for (int i = 0; i < n_listen; i++) {
    int port = 0;
    if ((rc = prpc_server_add_listener(server, listen[i], &port)) != 0) {
      fprintf(stderr, "greeter_server: %s\n", prpc_last_error());
      prpc_server_destroy(server);
      free(listen);
      return 1;
    }
    if (port)
      printf("greeter_server: listening on %s (port %d)\n", listen[i], port);
    else
      printf("greeter_server: listening on %s\n", listen[i]);
  }
  if (helloworld__greeter_server__register(server, &impl, NULL) != 0 ||
      prpc_server_start(server) != 0) {
    fprintf(stderr, "greeter_server: %s\n", prpc_last_error());
    prpc_server_destroy(server);
    free(listen);
    return 1;
  }
  printf("greeter_server: ready\n");
  fflush(stdout);
  rc = prpc_server_run(server);
  prpc_server_destroy(server);
  free(listen);
  printf("greeter_server: stopped\n");
  return rc == 0 ? 0 : 1;
}
