/* The standard health service, grpc.health.v1.Health, built into the
 * server: Check answers at once, Watch streams every change. */
#include "../runtime/internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grpc/health/v1/health.prpc.h"

typedef struct entry {
  char *service;
  int serving;
} entry;

struct prpc__health {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  entry *entries; /* statuses the application set */
  size_t n;
  unsigned version; /* bumped on every change, for Watch */
  int all_down;     /* a graceful shutdown has begun */
  const char *const *known; /* services registered with the server */
  size_t n_known;
};

enum {
  ST_SERVING = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING,
  ST_NOT_SERVING =
      GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING,
  ST_UNKNOWN_SERVICE =
      GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN
};

/* Status of a service; the caller holds mu. */
static int status_of(prpc__health *h, const char *service) {
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
  prpc__health *h = user_data;
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

static grpc_status_code watch(prpc_ctx *ctx,
                              const Grpc__Health__V1__HealthCheckRequest *req,
                              void *user_data) {
  prpc__health *h = user_data;
  const char *service = req->service ? req->service : "";
  int last = -1;
  pthread_mutex_lock(&h->mu);
  for (;;) {
    int st = status_of(h, service);
    unsigned seen = h->version;
    if (st != last) {
      Grpc__Health__V1__HealthCheckResponse out =
          GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
      out.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)st;
      pthread_mutex_unlock(&h->mu);
      if (grpc__health__v1__health_server__watch_write(ctx, &out) != 0)
        return GRPC_STATUS_CANCELLED;
      last = st;
      pthread_mutex_lock(&h->mu);
      continue;
    }
    /* Wait for a change; look at the call now and then, since a client
     * that goes away does not signal this condition. */
    while (h->version == seen) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += 100000000;
      if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
      }
      pthread_cond_timedwait(&h->cv, &h->mu, &ts);
      if (h->version == seen && prpc_ctx_is_cancelled(ctx)) {
        pthread_mutex_unlock(&h->mu);
        return GRPC_STATUS_CANCELLED;
      }
    }
  }
}

int prpc__health_create(prpc_server *srv, prpc__health **out) {
  static const Grpc__Health__V1__HealthServer impl = {check, watch};
  prpc__health *h = calloc(1, sizeof(*h));
  int rc;
  if (!h)
    return prpc__fail(-ENOMEM, "out of memory");
  pthread_mutex_init(&h->mu, NULL);
  pthread_cond_init(&h->cv, NULL);
  if ((rc = grpc__health__v1__health_server__register(srv, &impl, h)) != 0) {
    prpc__health_destroy(h);
    return rc;
  }
  *out = h;
  return 0;
}

void prpc__health_known(prpc__health *h, const char *const *services,
                        size_t n) {
  pthread_mutex_lock(&h->mu);
  h->known = services;
  h->n_known = n;
  pthread_mutex_unlock(&h->mu);
}

int prpc__health_set(prpc__health *h, const char *service, int serving) {
  int rc = 0;
  pthread_mutex_lock(&h->mu);
  size_t i;
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
      rc = -ENOMEM;
      goto done;
    }
    h->entries = e;
    h->entries[h->n].service = name;
    h->n++;
  }
  h->entries[i].serving = serving != 0;
  h->version++;
  pthread_cond_broadcast(&h->cv);
done:
  pthread_mutex_unlock(&h->mu);
  return rc;
}

void prpc__health_all_down(prpc__health *h) {
  pthread_mutex_lock(&h->mu);
  h->all_down = 1;
  h->version++;
  pthread_cond_broadcast(&h->cv);
  pthread_mutex_unlock(&h->mu);
}

void prpc__health_destroy(prpc__health *h) {
  if (!h)
    return;
  for (size_t i = 0; i < h->n; i++)
    free(h->entries[i].service);
  free(h->entries);
  pthread_mutex_destroy(&h->mu);
  pthread_cond_destroy(&h->cv);
  free(h);
}
