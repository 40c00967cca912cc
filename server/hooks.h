/* This file is private to piperpc: the one internal interface the built-in
 * services (health.c, reflection.c) and the HTTP front end (http.c) use
 * beside the public API, to hook into the server's life (hooks.c). */
#ifndef PRPC_SERVER_HOOKS_H
#define PRPC_SERVER_HOOKS_H

#include <piperpc/piperpc.h>

typedef struct prpc__hook {
  const char *name;
  /* At start, with the services registered (names and tables borrowed
   * until destroy). Returns 0 or a negative code (logged). */
  int (*start)(void *data, const prpc_service_desc *const *services,
               const char *const *names, size_t n);
  void (*shutdown)(void *data); /* a graceful shutdown begins */
  void (*destroy)(void *data);  /* with the server */
} prpc__hook;

/* 1 once the server has been started. */
int prpc__server_started(const prpc_server *srv);
/* Adds a hook (before start). Returns 0, PRPC_ESTATE or -ENOMEM. */
int prpc__server_add_hook(prpc_server *srv, const prpc__hook *hook,
                          void *data);
/* Takes back the hook added last (a built-in service that then failed to
 * register). */
void prpc__server_drop_hook(prpc_server *srv, const prpc__hook *hook);
/* The data of the hook added with this table, or NULL. */
void *prpc__server_hook_data(const prpc_server *srv, const prpc__hook *hook);

#endif /* PRPC_SERVER_HOOKS_H */
