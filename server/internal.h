/* This file is private to piperpc's server: what server.c (life cycle),
 * call.c (one call), dispatch.c (new calls to handlers) and deny.c
 * (denied peers) share. Nothing here is part of the API. */
#ifndef PRPC_SERVER_INTERNAL_H
#define PRPC_SERVER_INTERNAL_H

#include "../runtime/internal.h"
#include "../runtime/loop.h"
#include "hooks.h"

#include <pthread.h>
#include <stdalign.h>
#include <stddef.h>

/* Calls requested from gRPC core and not matched yet, per method and per
 * core server: new calls are matched at once, the rest wait in gRPC. */
#define PRPC__REQUESTS_PER_METHOD 4
#define PRPC__INLINE_ARENA 2048
/* Arena chunks a recycled call keeps for its next use, at most this many
 * bytes in all. */
#define PRPC__ARENA_KEEP (4u << 20)
/* Bytes an asynchronous call may queue to send before prpc_ctx_send()
 * says PRPC_EFULL. */
#define PRPC__SEND_QUEUE_MAX (4u << 20)

/* ---- the server ---- */

typedef struct method_entry {
  const prpc_method_desc *m;
  prpc_invoke_fn invoke;   /* NULL: UNIMPLEMENTED */
  prpc_prepare_fn prepare; /* NULL: none */
  const void *impl;
  void *user_data;
  int async; /* registered with PRPC_ASYNC_HANDLERS */
} method_entry;

enum { CORE_MAIN, CORE_DENY };

/* One gRPC core server whose calls piperpc serves: the main one (every
 * method), or the one that answers denied peers. */
typedef struct prpc__core_srv {
  struct prpc_server *srv;
  grpc_server *core;
  int kind;
  void **handles; /* registered methods, by index into srv->methods */
  int started;
  int shutdown_tag; /* its address: the shutdown notification */
  prpc__op shutdown_op;
  int shutdown_done;
} prpc__core_srv;

typedef struct listener {
  prpc__target t;
  int fds[4]; /* listening sockets for the acceptor (TCP: one per
                 address); given to it at start */
  size_t n_fds;
  char name[PRPC__NAME_MAX]; /* for logs and peers */
  prpc__sockfile file; /* the socket file we created, removed at shutdown */
} listener;

typedef enum { SRV_CREATED, SRV_STARTED, SRV_STOPPING, SRV_STOPPED } srv_state;

typedef struct prpc__pool prpc__pool;

struct prpc_server {
  prpc_server_opts opts;
  prpc_loop *loop; /* the server's own, or the application's */
  prpc__core_srv main, deny;
  method_entry *methods;
  size_t n_methods, cap_methods;
  listener *listeners;
  size_t n_listeners;
  int *adopted_fds; /* fd:N connected sockets, added at start */
  size_t n_adopted;
  prpc__acceptor *acceptor; /* unix and TCP connections; from start */
  int stop[2]; /* readable once shutdown has begun: wakes prpc_server_run() */

  gid_t socket_gid; /* (gid_t)-1: leave */
  prpc__rule *rules;
  size_t n_rules;
  /* Access control is in force: rules, or an abstract listener (which
   * admits only the server's own user and root without them). */
  int guarded;
  const prpc_service_desc **service_descs; /* registered, in order */
  char **service_names;
  size_t n_services;
  struct {
    const prpc__hook *hook;
    void *data;
  } hooks[4];
  size_t n_hooks;

  prpc__pool *pool; /* threads of blocking streaming handlers */

  /* Calls matched and not yet over, for shutdown; and the free list of
   * call contexts. */
  pthread_mutex_t calls_mu;
  pthread_cond_t calls_cv; /* a call ended */
  prpc_ctx *live;
  size_t n_live;
  size_t n_local; /* of them, calls of the HTTP front end (prpc__local_run) */
  prpc_ctx *free_ctx;
  size_t n_free;
  atomic_int busy; /* calls whose handler runs (stats) */

  pthread_mutex_t mu;
  pthread_cond_t cv;
  srv_state state;
  int drain_started;
  gpr_timespec stop_deadline;
  atomic_int stopping;
  prpc__rate stream_limit_log, unknown_peer_log;
};

/* ---- one call (call.c) ---- */

/* Takes a context from the free list (or makes one). NULL: no memory. */
prpc_ctx *prpc__ctx_get(prpc_server *srv);
/* Back to the free list: a context that was never matched. */
void prpc__ctx_put(prpc_ctx *ctx);
/* The fields dispatch.c sets when it requests and matches a call. */
typedef struct prpc__ctx_slot {
  prpc_server *srv; /* read by prpc__ctx_slot_get() */
  prpc__core_srv *cs;
  const method_entry *me; /* NULL: unregistered (or the deny server) */
  grpc_call **call;
  gpr_timespec *deadline;
  grpc_metadata_array *md;
  grpc_byte_buffer **payload;
  grpc_call_details *details;
  prpc__op *match_op;
} prpc__ctx_slot;
void prpc__ctx_set_slot(prpc_ctx *ctx, prpc__ctx_slot *out);
/* srv, cs and me of a requested call. */
void prpc__ctx_slot_get(const prpc_ctx *ctx, prpc__ctx_slot *out);

/* A matched call: sets up its context and serves it: decodes the request
 * and runs the handler inline, or refuses it. Returns 1 when the handler
 * is a blocking streaming one, which the caller hands to a pool thread
 * (prpc__ctx_run_blocking) or refuses; else 0. */
int prpc__ctx_serve(prpc_ctx *ctx);
/* Runs a blocking streaming handler (on a pool thread). */
void prpc__ctx_run_blocking(prpc_ctx *ctx);
/* Ends a call that has not reached a handler with code and message. */
void prpc__ctx_refuse(prpc_ctx *ctx, grpc_status_code code,
                      const char *message);
/* Tells calls with an on_shutdown callback that shutdown has begun. */
void prpc__calls_tell_shutdown(prpc_server *srv);
/* Ends every call still running with UNAVAILABLE and message. */
void prpc__calls_end(prpc_server *srv, const char *message);
/* Frees the free list (after the last call). */
void prpc__calls_free(prpc_server *srv);

/* A unary call of the HTTP front end, run on the calling thread with no
 * gRPC call behind it: the handler, its context, deadline, metadata,
 * peer, callbacks and the server's shutdown work as for a gRPC call. */
typedef struct prpc__local_call {
  /* in */
  const method_entry *me;
  prpc__conn *conn;      /* the HTTP connection (a reference is taken) */
  int fd;                /* its socket: a hang-up cancels the call */
  grpc_byte_buffer *request; /* the encoded request: taken */
  prpc_metadata *md;     /* request metadata: taken */
  int64_t timeout_ms;    /* 0: no deadline */
  /* out: valid until prpc__local_done() */
  grpc_status_code code;
  const char *message;   /* NULL: none */
  const uint8_t *reply;  /* the encoded reply on GRPC_STATUS_OK */
  size_t reply_len;
  const prpc_metadata *headers, *trailers; /* NULL: none */
  prpc_ctx *ctx;
} prpc__local_call;
/* Runs the call and waits for its status, its deadline, the client's
 * hang-up or the server's end. Returns 0 (then prpc__local_done(lc->ctx)
 * once the answer is written), or without running it: PRPC_ESTATE (the
 * server is shutting down), -EAGAIN (handlers must run on the server's
 * own threads: threads N or an application's loop; or max_threads calls
 * run this way already) or -ENOMEM; request and md are left to the
 * caller. */
int prpc__local_run(prpc_server *srv, prpc__local_call *lc);
/* The waiter's end: waits until a cancelled deferred call is finished
 * (on_done runs here). */
void prpc__local_done(prpc_ctx *ctx);

/* ---- new calls (dispatch.c) ---- */

/* Registers the methods with a core server (before its start). */
int prpc__dispatch_register(prpc_server *srv, prpc__core_srv *cs);
/* Requests the first calls of every method of cs. */
int prpc__dispatch_start(prpc_server *srv, prpc__core_srv *cs);
/* Asks for the next call of the method ctx was requested for. */
void prpc__dispatch_request_again(prpc_server *srv, prpc__core_srv *cs,
                                  const method_entry *me);
/* The pool of blocking streaming handlers: at most max threads. */
int prpc__pool_create(int max, prpc__pool **out);
/* Runs the handler of ctx on a pool thread; -1 when every thread is busy
 * and there are max of them. */
int prpc__pool_run(prpc__pool *p, prpc_ctx *ctx);
void prpc__pool_destroy(prpc__pool *p); /* waits for the running ones */

#endif /* PRPC_SERVER_INTERNAL_H */
