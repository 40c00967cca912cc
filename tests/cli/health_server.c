/* health_server TARGET: the Greeter with the health service, and
 * helloworld.Greeter marked NOT_SERVING, for prpc's health exit codes.
 * Prints "ready" once it listens; stops on SIGINT or SIGTERM. */
#include <stdio.h>

#include "helloworld.prpc.h"

int main(int argc, char **argv) {
  static const Helloworld__GreeterServer impl = {NULL};
  prpc_server *server;
  if (argc != 2 || prpc_server_create(NULL, &server) != 0) {
    fprintf(stderr, "usage: health_server TARGET\n");
    return 1;
  }
  if (prpc_server_add_listener(server, argv[1], NULL) != 0 ||
      helloworld__greeter_server__register(server, &impl, NULL) != 0 ||
      prpc_server_enable_health(server) != 0 ||
      prpc_server_set_serving(server, "helloworld.Greeter", 0) != 0) {
    fprintf(stderr, "health_server: %s\n", prpc_last_error());
    prpc_server_destroy(server);
    return 1;
  }
  printf("health_server: ready\n");
  fflush(stdout);
  int rc = prpc_server_run(server);
  prpc_server_destroy(server);
  return rc == 0 ? 0 : 1;
}
