/* hello_server [TARGET]: helloworld.Greeter over nanopb messages. */
#include <stdio.h>

#include "hello.prpc.h"

static grpc_status_code say_hello(prpc_ctx *ctx,
                                  const helloworld_HelloRequest *request,
                                  helloworld_HelloReply *reply,
                                  void *user_data) {
  (void)ctx;
  (void)user_data;
  /* Fixed-size fields (hello.options): nothing to allocate. A request whose
   * name is over 63 bytes never gets here: it fails INVALID_ARGUMENT. */
  snprintf(reply->message, sizeof(reply->message), "Hello %s", request->name);
  return GRPC_STATUS_OK;
}

int main(int argc, char **argv) {
  static const Helloworld__GreeterServer impl = {.say_hello = say_hello};
  const char *target = argc > 1 ? argv[1] : "unix:/tmp/hello.sock";
  prpc_server *server;
  if (prpc_server_create(NULL, &server) != 0 ||
      prpc_server_add_listener(server, target, NULL) != 0 ||
      helloworld__greeter_server__register(server, &impl, NULL) != 0) {
    fprintf(stderr, "hello_server: %s\n", prpc_last_error());
    return 1;
  }
  printf("serving on %s\n", target);
  fflush(stdout);
  int rc = prpc_server_run(server); /* until SIGINT or SIGTERM */
  prpc_server_destroy(server);
  return rc == 0 ? 0 : 1;
}
