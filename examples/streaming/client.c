/* chat_client TARGET: reads a countdown, then talks. */
#include <stdio.h>

#include "chat.prpc.h"

int main(int argc, char **argv) {
  prpc_channel *channel;
  prpc_call *call;
  Chat__Line *line;
  if (argc != 2 || prpc_channel_create(argv[1], NULL, &channel) != 0) {
    fprintf(stderr, "usage: chat_client TARGET (%s)\n", prpc_last_error());
    return 1;
  }
  /* Server streaming: one request, then read until the end (0). */
  Chat__Start start = CHAT__START__INIT;
  start.from = 3;
  if (chat__chat_client__countdown_start(channel, &start, NULL, &call) != 0)
    return 1;
  while (chat__chat_client__countdown_read(call, &line) == 1) {
    printf("countdown: %s\n", line->text);
    protobuf_c_message_free_unpacked(&line->base, NULL); /* caller owns */
  }
  grpc_status_code code = prpc_call_finish(call, NULL, NULL);

  /* Bidi: write a line, read the answer; half-close; finish. */
  const char *lines[] = {"hello", "bye"};
  if (code == GRPC_STATUS_OK &&
      chat__chat_client__talk_start(channel, NULL, &call) == 0) {
    for (int i = 0; i < 2; i++) {
      Chat__Line out = CHAT__LINE__INIT;
      out.text = (char *)lines[i];
      if (chat__chat_client__talk_write(call, &out) != 0 ||
          chat__chat_client__talk_read(call, &line) != 1)
        break; /* the call ended: finish tells why */
      printf("%s\n", line->text);
      protobuf_c_message_free_unpacked(&line->base, NULL);
    }
    prpc_call_writes_done(call);
    code = prpc_call_finish(call, NULL, NULL);
  }
  printf("status: %s\n", prpc_status_name(code));
  prpc_channel_destroy(channel);
  return code == GRPC_STATUS_OK ? 0 : 1;
}
