/* hello_client [TARGET [NAME]]: one SayHello call over nanopb messages. */
#include <stdio.h>
#include <string.h>

#include "hello.prpc.h"

int main(int argc, char **argv) {
  const char *target = argc > 1 ? argv[1] : "unix:/tmp/hello.sock";
  const char *name = argc > 2 ? argv[2] : "world";
  prpc_channel *channel;
  prpc_call_opts opts = PRPC_CALL_OPTS_INIT;
  prpc_status status = PRPC_STATUS_INIT;
  helloworld_HelloRequest request = helloworld_HelloRequest_init_zero;
  helloworld_HelloReply reply = helloworld_HelloReply_init_zero;
  if (strlen(name) >= sizeof(request.name)) {
    fprintf(stderr, "hello_client: the name is over %zu bytes\n",
            sizeof(request.name) - 1);
    return 1;
  }
  strcpy(request.name, name);
  if (prpc_channel_create(target, NULL, &channel) != 0) {
    fprintf(stderr, "hello_client: %s\n", prpc_last_error());
    return 1;
  }
  opts.timeout_ms = 1000;
  grpc_status_code code = helloworld__greeter_client__say_hello(
      channel, &request, &opts, &reply, &status); /* decodes into reply */
  if (code == GRPC_STATUS_OK)
    printf("%s\n", reply.message); /* nothing to free */
  else
    fprintf(stderr, "hello_client: %s: %s\n", prpc_status_name(code),
            status.message ? status.message : "");
  prpc_status_clear(&status);
  prpc_channel_destroy(channel);
  return code == GRPC_STATUS_OK ? 0 : 1;
}
