/* relay: the Greeter both event-loop daemons serve (relay.c). */
#ifndef RELAY_H
#define RELAY_H

#include <sys/types.h>

#include "helloworld.prpc.h"

extern prpc_channel *backend; /* the Greeter calls are relayed to */
extern const char *relay_name; /* the program's name, for messages */
extern pid_t main_tid;        /* the thread everything must run on */
extern int wrong_thread;      /* 1 once something ran on another */

/* Notes (on stderr, and in wrong_thread) a callback off the main thread. */
void check_thread(const char *where);

/* The handler: calls the backend and defers; a non-blocking handler. */
grpc_status_code say_hello(prpc_ctx *ctx,
                           const Helloworld__HelloRequest *request,
                           Helloworld__HelloReply *reply, void *user_data);

#endif /* RELAY_H */
