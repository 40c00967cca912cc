/* The standard health service, grpc.health.v1.Health, built into the
 * server on its public API: Check answers at once; Watch is an
 * asynchronous stream (no thread per watcher) that is sent every change,
 * and that ends when the server's shutdown begins, after NOT_SERVING. */
#include "../runtime/internal.h"
#include "hooks.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.prpc.h"

typedef struct entry {
  char *service;
  int serving;
} entry;

typedef struct health health;

typedef struct watcher {
  struct watcher *next;
  health *h;
  prpc_ctx *ctx;
  char *service;
  int last; /* the status it was sent last */
} watcher;

struct health {
  pthread_mutex_t mu;
  entry *entries; /* statuses the application set */
  size_t n;
  int all_down;    /* a graceful shutdown has begun */
  const char *const *known; /* services registered with the server */
  size_t n_known;
  watcher *watchers;
};

enum {
  ST_SERVING = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING,
  ST_NOT_SERVING =
      GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING,
  ST_UNKNOWN_SERVICE =
      GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN
};

/* Status of a service; mu held. */
static int status_of(health *h, const char *service) {
  for (size_t i = 0; i < h->n; i++)
    if (strcmp(h->entries[i].service, service) == 0)
      return h->all_down || !h->entries[i].serving ? ST_NOT_SERVING
                                                    : ST_SERVING;
  if (*service == '\0')
    return h->all_down ? ST_NOT_SERVING : ST_SERVING;
  for (size_t i = 0; i < h->n_known; i++)
    if (strcmp(h->known[i], service) == 0)
      return h->all_down ? ST_NOT_SERVING : ST_SERVING;
  return ST_UNKNOWN_SERVICE;
}

static grpc_status_code check(prpc_ctx *ctx,
                              const Grpc__Health__V1__HealthCheckRequest *req,
                              Grpc__Health__V1__HealthCheckResponse *reply,
                              void *user_data) {
  health *h = user_data;
  pthread_mutex_lock(&h->mu);
  int st = status_of(h, req->service ? req->service : "");
  pthread_mutex_unlock(&h->mu);
  if (st == ST_UNKNOWN_SERVICE) {
    prpc_ctx_set_message(ctx, "unknown service");
    return GRPC_STATUS_NOT_FOUND;
  }
  reply->status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)st;
  return GRPC_STATUS_OK;
}

/* Sends a watcher its service's status if it changed; mu held (sending
 * only queues: it calls nothing back). */
static void tell(health *h, watcher *w) {
  int st = status_of(h, w->service);
  if (st == w->last)
    return;
  Grpc__Health__V1__HealthCheckResponse out =
      GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  out.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)st;
  if (grpc__health__v1__health_server__watch_send(w->ctx, &out) == 0)
    w->last = st;
}

/* The watcher's call is over: forget it. */
static void watch_done(prpc_ctx *ctx, int cancelled, void *user_data) {
  watcher *w = user_data;
  health *h = w->h;
  (void)ctx;
  (void)cancelled;
  pthread_mutex_lock(&h->mu);
  for (watcher **p = &h->watchers; *p; p = &(*p)->next)
    if (*p == w) {
      *p = w->next;
      break;
    }
  pthread_mutex_unlock(&h->mu);
  free(w->service);
  free(w);
}

/* Shutdown has begun: the NOT_SERVING is queued (health_shutdown); the
 * stream ends now, or it would hold the drain for the whole grace period.
 * Runs with the call held by the server, and no lock of ours. */
static void watch_shutdown(prpc_ctx *ctx, void *user_data) {
  watcher *w = user_data;
  health *h = w->h;
  pthread_mutex_lock(&h->mu);
  h->all_down = 1;
  tell(h, w);
  pthread_mutex_unlock(&h->mu);
  prpc_ctx_set_message(ctx, "the server is shutting down");
  prpc_ctx_finish(ctx, GRPC_STATUS_UNAVAILABLE);
}

static const prpc_ctx_callbacks watch_callbacks = {
    .on_shutdown = watch_shutdown, .on_done = watch_done};

static grpc_status_code watch(prpc_ctx *ctx,
                              const Grpc__Health__V1__HealthCheckRequest *req,
                              void *user_data) {
  health *h = user_data;
  watcher *w = calloc(1, sizeof(*w));
  if (!w || !(w->service = strdup(req->service ? req->service : ""))) {
    free(w);
    prpc_ctx_set_message(ctx, "out of memory");
    return GRPC_STATUS_RESOURCE_EXHAUSTED;
  }
  w->h = h;
  w->ctx = ctx;
  w->last = -1;
  pthread_mutex_lock(&h->mu);
  if (h->all_down) {
    /* Shutting down already: the status, and the end. */
    int st = status_of(h, w->service);
    pthread_mutex_unlock(&h->mu);
    Grpc__Health__V1__HealthCheckResponse out =
        GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    out.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)st;
    grpc__health__v1__health_server__watch_send(ctx, &out);
    free(w->service);
    free(w);
    prpc_ctx_set_message(ctx, "the server is shutting down");
    return GRPC_STATUS_UNAVAILABLE;
  }
  w->next = h->watchers;
  h->watchers = w;
  tell(h, w);
  if (prpc_ctx_set_callbacks(ctx, &watch_callbacks, w) != 0) {
    h->watchers = w->next;
    pthread_mutex_unlock(&h->mu);
    free(w->service);
    free(w);
    return GRPC_STATUS_INTERNAL;
  }
  pthread_mutex_unlock(&h->mu);
  return prpc_ctx_defer(ctx);
}

/* ---- its hooks into the server's life ---- */

static int health_start(void *data, const prpc_service_desc *const *services,
                        const char *const *names, size_t n) {
  health *h = data;
  (void)services;
  pthread_mutex_lock(&h->mu);
  h->known = names;
  h->n_known = n;
  pthread_mutex_unlock(&h->mu);
  return 0;
}

/* Everything goes NOT_SERVING and watchers are told; their streams end
 * in watch_shutdown, which the server calls next. */
static void health_shutdown(void *data) {
  health *h = data;
  pthread_mutex_lock(&h->mu);
  h->all_down = 1;
  for (watcher *w = h->watchers; w; w = w->next)
    tell(h, w);
  pthread_mutex_unlock(&h->mu);
}

static void health_destroy(void *data) {
  health *h = data;
  for (size_t i = 0; i < h->n; i++)
    free(h->entries[i].service);
  free(h->entries);
  pthread_mutex_destroy(&h->mu);
  free(h);
}

static const prpc__hook health_hook = {"health", health_start,
                                       health_shutdown, health_destroy};

int prpc_server_enable_health(prpc_server *srv) {
  static const Grpc__Health__V1__HealthServer impl = {check, watch};
  health *h;
  int rc;
  if (!srv)
    return prpc__fail(-EINVAL, "prpc_server_enable_health: server is NULL");
  if (prpc__server_started(srv))
    return prpc__fail(PRPC_ESTATE, "health must be enabled before start");
  if (prpc__server_hook_data(srv, &health_hook))
    return prpc__fail(PRPC_EEXIST, "health is already enabled");
  if (!(h = calloc(1, sizeof(*h))))
    return prpc__fail(-ENOMEM, "out of memory");
  pthread_mutex_init(&h->mu, NULL);
  if ((rc = prpc__server_add_hook(srv, &health_hook, h)) != 0) {
    health_destroy(h);
    return rc;
  }
  /* Registered whole or not at all: on failure nothing refers to h. */
  if ((rc = grpc__health__v1__health_server__register_async(srv, &impl, h)) !=
      0) {
    prpc__server_drop_hook(srv, &health_hook);
    health_destroy(h);
    return rc;
  }
  return 0;
}

int prpc_server_set_serving(prpc_server *srv, const char *service,
                            int serving) {
  health *h = prpc__server_hook_data(srv, &health_hook);
  int rc = 0;
  size_t i;
  if (!h)
    return prpc__fail(PRPC_ESTATE, "the health service is not enabled");
  if (!service)
    service = "";
  pthread_mutex_lock(&h->mu);
  for (i = 0; i < h->n; i++)
    if (strcmp(h->entries[i].service, service) == 0)
      break;
  if (i == h->n) {
    entry *e = realloc(h->entries, (h->n + 1) * sizeof(*e));
    char *name = strdup(service);
    if (!e || !name) {
      if (e)
        h->entries = e;
      free(name);
      rc = prpc__fail(-ENOMEM, "out of memory");
      goto done;
    }
    h->entries = e;
    h->entries[h->n].service = name;
    h->n++;
  }
  h->entries[i].serving = serving != 0;
  for (watcher *w = h->watchers; w; w = w->next)
    tell(h, w);
done:
  pthread_mutex_unlock(&h->mu);
  return rc;
}
