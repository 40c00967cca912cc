/* This file is private to piperpc's server: the HTTP/1.1 front end with
 * JSON bodies (server/http.c) that prpc_server_opts.http_json turns on. */
#ifndef PRPC_SERVER_HTTP_H
#define PRPC_SERVER_HTTP_H

#include "../runtime/internal.h"

#include <piperpc/piperpc.h>

/* Adds the front end to a server about to start (idempotent). Returns 0
 * or -ENOMEM. Built without libmicrohttpd it logs a warning and returns 0
 * (such connections are then closed). */
int prpc__http_enable(prpc_server *srv);

/* The acceptor's hand-off of a connection that did not open with the
 * HTTP/2 preface (on the accept thread; takes c->fd). */
void prpc__http_serve(prpc_server *srv, prpc__conn *c);

/* Closes every HTTP connection and waits for their threads (after the
 * server's calls have ended, before the acceptor goes). */
void prpc__http_stop(prpc_server *srv);

#endif /* PRPC_SERVER_HTTP_H */
