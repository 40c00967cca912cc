/* This file is private to piperpc: loops, which poll a gRPC completion
 * queue and run what completes (runtime/loop.c). */
#ifndef PRPC_LOOP_H
#define PRPC_LOOP_H

#include "internal.h"

/* Every tag piperpc gives gRPC core is a prpc__op: when the operation
 * completes, the loop that polls its queue calls fn(op, ok), ok being
 * gRPC's success flag. */
typedef struct prpc__op prpc__op;
typedef void (*prpc__op_fn)(prpc__op *op, int ok);
struct prpc__op {
  prpc__op_fn fn;
};

/* Starts a batch whose completion runs op (tells ThreadSanitizer about the
 * hand-over). Returns gRPC's result. */
grpc_call_error prpc__start_batch(grpc_call *call, const grpc_op *ops,
                                  size_t n, prpc__op *op);

/* A loop of piperpc's own threads.
 *   threads > 0  exactly that many threads poll the queue;
 *   threads = 0  one thread polls and runs callbacks inline; when all
 *                polling threads have been inside a callback for a while
 *                (a handler that blocks or runs long), another is brought
 *                in, up to max_threads, and leaves again once the others
 *                poll. */
int prpc__loop_create_threads(int threads, int max_threads, prpc_loop **out);

/* References: a loop is destroyed with its last one. The creator holds
 * one; prpc_loop_destroy() drops the application's. */
void prpc__loop_ref(prpc_loop *l);
void prpc__loop_unref(prpc_loop *l);

grpc_completion_queue *prpc__loop_cq(prpc_loop *l);

/* 1 if the calling thread is running a callback of loop l (or any loop
 * when l is NULL). */
int prpc__loop_in_callback(const prpc_loop *l);

/* Called from a callback that is about to block or run long (a blocking
 * call, a handler polling for its cancellation): another thread takes over
 * polling at once, if the loop may have one. NULL: the loop whose callback
 * this thread runs, if any. */
void prpc__loop_long(prpc_loop *l);

/* If op has completed but its callback has not run yet, runs it on this
 * thread (a callback that waits for one of its own operations on a loop
 * with no other thread to poll). Never blocks. Returns 1 if op ran. */
int prpc__loop_poll_for(prpc_loop *l, prpc__op *op);

/* The shared loop for asynchronous client calls on channels created
 * without one: one thread, brought in on first use. With a reference. */
prpc_loop *prpc__loop_default(void);

#endif /* PRPC_LOOP_H */
