/* chat_server TARGET: streams a countdown, answers each line of a talk. */
#include <stdio.h>

#include "chat.prpc.h"

static grpc_status_code countdown(prpc_ctx *ctx, const Chat__Start *request,
                                  void *user_data) {
  char text[32];
  (void)user_data;
  for (int i = request->from; i >= 0; i--) {
    Chat__Line line = CHAT__LINE__INIT;
    snprintf(text, sizeof(text), "%d", i);
    line.text = text;
    if (chat__chat_server__countdown_write(ctx, &line) != 0)
      return GRPC_STATUS_CANCELLED; /* the client went away */
  }
  return GRPC_STATUS_OK;
}

static grpc_status_code talk(prpc_ctx *ctx, void *user_data) {
  Chat__Line *in;
  char text[300];
  int rc;
  (void)user_data;
  while ((rc = chat__chat_server__talk_read(ctx, &in)) == 1) {
    Chat__Line out = CHAT__LINE__INIT;
    snprintf(text, sizeof(text), "you said: %s", in->text);
    out.text = text;
    protobuf_c_message_free_unpacked(&in->base, NULL); /* the handler's */
    if (chat__chat_server__talk_write(ctx, &out) != 0)
      return GRPC_STATUS_CANCELLED;
  }
  return rc == 0 ? GRPC_STATUS_OK : GRPC_STATUS_CANCELLED; /* 0: half-close */
}

int main(int argc, char **argv) {
  static const Chat__ChatServer impl = {countdown, talk};
  prpc_server *server;
  if (argc != 2 || prpc_server_create(NULL, &server) != 0 ||
      prpc_server_add_listener(server, argv[1], NULL) != 0 ||
      chat__chat_server__register(server, &impl, NULL) != 0) {
    fprintf(stderr, "usage: chat_server TARGET (%s)\n", prpc_last_error());
    return 1;
  }
  printf("serving on %s\n", argv[1]);
  fflush(stdout);
  int rc = prpc_server_run(server);
  prpc_server_destroy(server);
  return rc == 0 ? 0 : 1;
}
