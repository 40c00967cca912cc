/* The hook registry: how the built-in services (health.c, reflection.c)
 * and the HTTP front end (http.c) join a server's life. Apart from
 * server.c, so that they depend on it only through this and the public
 * API, and server.c on none of them but http.c. */
#include "hooks.h"
#include "internal.h"

#include <errno.h>

int prpc__server_add_hook(prpc_server *srv, const prpc__hook *hook,
                          void *data) {
  if (srv->state != SRV_CREATED)
    return prpc__fail(PRPC_ESTATE, "%s must be enabled before start",
                      hook->name);
  if (srv->n_hooks == sizeof(srv->hooks) / sizeof(srv->hooks[0]))
    return prpc__fail(-ENOMEM, "too many built-in services");
  srv->hooks[srv->n_hooks].hook = hook;
  srv->hooks[srv->n_hooks].data = data;
  srv->n_hooks++;
  return 0;
}

int prpc__server_started(const prpc_server *srv) {
  return srv->state != SRV_CREATED || srv->main.started;
}

void prpc__server_drop_hook(prpc_server *srv, const prpc__hook *hook) {
  if (srv->n_hooks > 0 && srv->hooks[srv->n_hooks - 1].hook == hook)
    srv->n_hooks--;
}

void *prpc__server_hook_data(const prpc_server *srv, const prpc__hook *hook) {
  for (size_t i = 0; srv && i < srv->n_hooks; i++)
    if (srv->hooks[i].hook == hook)
      return srv->hooks[i].data;
  return NULL;
}
