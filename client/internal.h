/* This file is private to piperpc's client: what channel.c (channels) and
 * call.c (one call) share. Nothing here is part of the API. */
#ifndef PRPC_CLIENT_INTERNAL_H
#define PRPC_CLIENT_INTERNAL_H

#include "../runtime/internal.h"
#include "../runtime/loop.h"

#include <pthread.h>

/* A call in flight on a channel, so that prpc_channel_destroy() can end
 * it. Linked while the call runs. */
typedef struct prpc__live_call {
  grpc_call *call;
  struct prpc__live_call *prev, *next;
} prpc__live_call;

/* Links a call that is starting; takes a reference on the channel. A call
 * that starts while the channel is being destroyed is cancelled. */
void prpc__channel_live_add(prpc_channel *ch, prpc__live_call *lc,
                            grpc_call *call);
/* Unlinks a finished call, then unrefs its gRPC call, puts back CQ (if not
 * NULL) and drops its reference (the channel may go). */
void prpc__channel_live_remove(prpc_channel *ch, prpc__live_call *lc,
                               grpc_completion_queue *cq);

/* A pluck queue for a blocking call, from the channel's pool; back with
 * prpc__channel_cq_put(). NULL when gRPC core has none. */
grpc_completion_queue *prpc__channel_cq_get(prpc_channel *ch);
void prpc__channel_cq_put(prpc_channel *ch, grpc_completion_queue *cq);

/* The loop of the channel's asynchronous calls (its own or the shared
 * one, taken on first use). NULL when none could be had. */
prpc_loop *prpc__channel_loop(prpc_channel *ch);

/* A new grpc_call of method m on queue cq, with the call's deadline; NULL
 * when gRPC core refuses. */
grpc_call *prpc__channel_call(prpc_channel *ch, const prpc_method_desc *m,
                              grpc_completion_queue *cq,
                              const prpc_call_opts *opts);

/* The target as the application wrote it, for messages. */
const char *prpc__channel_target(const prpc_channel *ch);

#endif /* PRPC_CLIENT_INTERNAL_H */
