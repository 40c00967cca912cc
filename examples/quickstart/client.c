/* hello_client [TARGET [NAME]]: one SayHello call with a 5 s deadline. */
#include <stdio.h>

#include "hello.prpc.h"

int main(int argc, char **argv) {
  const char *target = argc > 1 ? argv[1] : "unix:/tmp/hello.sock";
  prpc_channel *channel;
  prpc_call_opts opts = PRPC_CALL_OPTS_INIT;
  prpc_status status = PRPC_STATUS_INIT;
  Helloworld__HelloRequest request = HELLOWORLD__HELLO_REQUEST__INIT;
  Helloworld__HelloReply *reply;
  if (prpc_channel_create(target, NULL, &channel) != 0) {
    fprintf(stderr, "hello_client: %s\n", prpc_last_error());
    return 1;
  }
  request.name = argc > 2 ? argv[2] : "world";
  opts.timeout_ms = 5000; /* sent to the server as the gRPC deadline */
  opts.wait_for_ready = 1; /* a server still starting: wait, up to 5 s */
  grpc_status_code code = helloworld__greeter_client__say_hello(
      channel, &request, &opts, &reply, &status);
  if (code == GRPC_STATUS_OK) {
    printf("%s\n", reply->message);
    protobuf_c_message_free_unpacked(&reply->base, NULL); /* caller owns */
  } else {
    fprintf(stderr, "hello_client: %s: %s\n", prpc_status_name(code),
            status.message ? status.message : "");
  }
  prpc_status_clear(&status);
  prpc_channel_destroy(channel);
  return code == GRPC_STATUS_OK ? 0 : 1;
}
