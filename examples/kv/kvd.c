/* kvd TARGET: a key-value daemon, kv.Store, on the asynchronous server API.
 *
 * Get and Put are plain unary handlers. Watch keeps its stream open without
 * a thread: the handler registers the watcher and returns
 * prpc_ctx_defer(ctx); every Put (on whatever server thread it runs) sends
 * the new entry to each watcher of its key with kv__store_server__watch_send()
 * itself. There is no queue or thread per watcher: piperpc queues what is
 * sent and gRPC flow control paces it. A watcher leaves the list at once
 * when its client goes (on_cancel), and the daemon ends every open watch
 * with its own status when it stops (on_shutdown), so that SIGTERM does not
 * wait out the grace period. Load reads its stream with
 * prpc_ctx_read_async(): no thread is held per upload either.
 *
 * Serves only the daemon's own user (a same-user rule), with health and
 * reflection. Prints "kvd: ready" once it serves, and a line each time the
 * number of watchers changes; stops on SIGINT or SIGTERM. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv.prpc.h"

typedef struct watcher watcher;

/* A key: its value, if it has one, and its watchers. A key without either
 * is freed. */
typedef struct node {
  struct node *next; /* in its hash bucket */
  char *key;
  char *value; /* NULL: no value (a key that is only watched) */
  uint64_t version;
  watcher *watchers;
} node;

/* One open Watch call. */
struct watcher {
  prpc_ctx *ctx;
  node *n; /* the key watched; NULL once off the list (the call is ending) */
  watcher *prev, *next;
};

/* The store. One lock covers the entries and the watcher lists: a Put sends
 * to the watchers while it holds it, so that every watcher gets the changes
 * of a key in the order they were made, and no watcher can go (on_done
 * frees it) while a Put is sending to it. prpc_ctx_send() never blocks,
 * which is what makes sending under the lock fine. */
static struct {
  pthread_mutex_t mu;
  node **buckets;
  size_t n_buckets, n_nodes;
  uint64_t version; /* the last one given */
  int watchers;
} kv = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, 0, 0};

static size_t hash(const char *s) {
  size_t h = 14695981039346656037u; /* FNV-1a */
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211u;
  return h;
}

/* Doubles the table when it is full, so that chains stay short. mu held. */
static void grow(void) {
  size_t n = kv.n_buckets ? kv.n_buckets * 2 : 1024;
  node **b = calloc(n, sizeof(*b));
  if (!b)
    return; /* longer chains, still correct */
  for (size_t i = 0; i < kv.n_buckets; i++) {
    for (node *e = kv.buckets[i], *next; e; e = next) {
      next = e->next;
      e->next = b[hash(e->key) % n];
      b[hash(e->key) % n] = e;
    }
  }
  free(kv.buckets);
  kv.buckets = b;
  kv.n_buckets = n;
}

/* The key's node, or NULL; with create, a new one (NULL: out of memory).
 * mu held. */
static node *lookup(const char *key, int create) {
  if (kv.n_buckets) {
    for (node *e = kv.buckets[hash(key) % kv.n_buckets]; e; e = e->next)
      if (strcmp(e->key, key) == 0)
        return e;
  }
  if (!create)
    return NULL;
  if (kv.n_nodes >= kv.n_buckets)
    grow();
  node *e = calloc(1, sizeof(*e));
  if (!kv.n_buckets || !e || !(e->key = strdup(key))) {
    free(e);
    return NULL;
  }
  size_t i = hash(key) % kv.n_buckets;
  e->next = kv.buckets[i];
  kv.buckets[i] = e;
  kv.n_nodes++;
  return e;
}

/* Frees a node that has neither a value nor watchers. mu held. */
static void node_release(node *e) {
  if (e->value || e->watchers)
    return;
  node **p = &kv.buckets[hash(e->key) % kv.n_buckets];
  while (*p != e)
    p = &(*p)->next;
  *p = e->next;
  kv.n_nodes--;
  free(e->key);
  free(e);
}

/* Takes w off its key's list; Puts no longer see it. mu held. */
static void unlink_watcher(watcher *w, const char *why) {
  node *e = w->n;
  if (!e)
    return;
  if (w->prev)
    w->prev->next = w->next;
  else
    e->watchers = w->next;
  if (w->next)
    w->next->prev = w->prev;
  w->n = NULL;
  kv.watchers--;
  printf("kvd: watchers: %d (%s: %s)\n", kv.watchers, e->key, why);
  fflush(stdout);
  node_release(e);
}

/* Ends an open watch with the daemon's own status. mu held: finishing
 * under it is fine, on_done comes later, never from inside finish. */
static void end_watch(watcher *w, grpc_status_code code, const char *why,
                      const char *message) {
  unlink_watcher(w, why);
  prpc_ctx_set_message(w->ctx, message);
  prpc_ctx_finish(w->ctx, code);
}

/* Sets key to value and pushes the new entry to the key's watchers.
 * Returns 0 or -1 (out of memory). mu held. */
static int store_put(const char *key, const char *value) {
  node *e = lookup(key, 1);
  char *copy = strdup(value);
  if (!e || !copy) {
    free(copy);
    if (e)
      node_release(e);
    return -1;
  }
  free(e->value);
  e->value = copy;
  e->version = ++kv.version;

  Kv__Entry entry = KV__ENTRY__INIT;
  entry.key = e->key;
  entry.value = e->value;
  entry.version = e->version;
  for (watcher *w = e->watchers, *next; w; w = next) {
    next = w->next; /* w may leave the list below (and e with it) */
    int rc = kv__store_server__watch_send(w->ctx, &entry);
    if (rc == PRPC_EFULL) /* 4 MiB unsent: a client that does not read */
      end_watch(w, GRPC_STATUS_RESOURCE_EXHAUSTED, "fell behind",
                "kvd: this watcher fell behind (4 MiB of changes unread)");
    else if (rc != 0) /* ended: its on_done is on its way */
      unlink_watcher(w, "gone");
  }
  return 0;
}

/* ---- the Watch call's callbacks ---- */

/* The client cancelled or went away: off the list now, not at the next
 * Put that would fail to send to it. */
static void watch_cancel(prpc_ctx *ctx, void *user_data) {
  (void)ctx;
  pthread_mutex_lock(&kv.mu);
  unlink_watcher(user_data, "cancelled");
  pthread_mutex_unlock(&kv.mu);
}

/* The daemon stops: end the stream with our status, at once. Without this
 * the server would wait out its grace period for a stream that never
 * ends, then cancel it with a status of its own. */
static void watch_shutdown(prpc_ctx *ctx, void *user_data) {
  watcher *w = user_data;
  (void)ctx;
  pthread_mutex_lock(&kv.mu);
  if (w->n)
    end_watch(w, GRPC_STATUS_UNAVAILABLE, "shutdown", "kvd is shutting down");
  pthread_mutex_unlock(&kv.mu);
}

/* The call is over (always last): nothing else refers to w. */
static void watch_done(prpc_ctx *ctx, int cancelled, void *user_data) {
  (void)ctx, (void)cancelled;
  pthread_mutex_lock(&kv.mu);
  unlink_watcher(user_data, "ended");
  pthread_mutex_unlock(&kv.mu);
  free(user_data);
}

static const prpc_ctx_callbacks watch_callbacks = {
    .on_cancel = watch_cancel,
    .on_shutdown = watch_shutdown,
    .on_done = watch_done};

/* ---- handlers ---- */

static grpc_status_code get(prpc_ctx *ctx, const Kv__Key *request,
                            Kv__Entry *reply, void *user_data) {
  grpc_status_code code = GRPC_STATUS_OK;
  (void)user_data;
  pthread_mutex_lock(&kv.mu);
  node *e = lookup(request->key, 0);
  if (e && e->value) {
    reply->key = prpc_ctx_strdup(ctx, e->key);
    reply->value = prpc_ctx_strdup(ctx, e->value);
    reply->version = e->version;
  } else {
    code = GRPC_STATUS_NOT_FOUND;
  }
  pthread_mutex_unlock(&kv.mu);
  if (code == GRPC_STATUS_NOT_FOUND)
    prpc_ctx_set_message(ctx, "no such key");
  return code;
}

static grpc_status_code put(prpc_ctx *ctx, const Kv__Entry *request,
                            Google__Protobuf__Empty *reply, void *user_data) {
  int rc;
  (void)reply, (void)user_data;
  if (!request->key[0]) {
    prpc_ctx_set_message(ctx, "empty key");
    return GRPC_STATUS_INVALID_ARGUMENT;
  }
  pthread_mutex_lock(&kv.mu);
  rc = store_put(request->key, request->value);
  pthread_mutex_unlock(&kv.mu);
  return rc == 0 ? GRPC_STATUS_OK : GRPC_STATUS_RESOURCE_EXHAUSTED;
}

static grpc_status_code watch(prpc_ctx *ctx, const Kv__Key *request,
                              void *user_data) {
  watcher *w = calloc(1, sizeof(*w));
  node *e;
  (void)user_data;
  pthread_mutex_lock(&kv.mu);
  if (!w || !(e = lookup(request->key, 1))) {
    pthread_mutex_unlock(&kv.mu);
    free(w);
    return GRPC_STATUS_RESOURCE_EXHAUSTED;
  }
  /* The current entry first, and on the list in the same locked step: no
   * Put can fall between what the watcher is told and what it hears of. */
  Kv__Entry entry = KV__ENTRY__INIT;
  entry.key = e->key;
  entry.value = e->value ? e->value : "";
  entry.version = e->value ? e->version : 0;
  if (kv__store_server__watch_send(ctx, &entry) != 0) {
    node_release(e);
    pthread_mutex_unlock(&kv.mu);
    free(w);
    return GRPC_STATUS_CANCELLED; /* the client went away already */
  }
  w->ctx = ctx;
  w->n = e;
  w->next = e->watchers;
  if (e->watchers)
    e->watchers->prev = w;
  e->watchers = w;
  kv.watchers++;
  printf("kvd: watchers: %d (%s: started)\n", kv.watchers, e->key);
  fflush(stdout);
  pthread_mutex_unlock(&kv.mu);
  /* On the list before the callbacks are set: a cancel or shutdown that
   * came already is told inside prpc_ctx_set_callbacks(), and must find
   * the watcher to take it off. */
  if (prpc_ctx_set_callbacks(ctx, &watch_callbacks, w) != 0) {
    /* A Put finished it meanwhile (it fell behind): no callback will
     * come, so w is ours to free. */
    pthread_mutex_lock(&kv.mu);
    unlink_watcher(w, "ended");
    pthread_mutex_unlock(&kv.mu);
    free(w);
  }
  return prpc_ctx_defer(ctx); /* open until on_done */
}

/* Load: each entry as it comes, then the count at the client's
 * half-close. user_data: the reply, valid until the call ends. */
static void load_read(prpc_ctx *ctx, void *msg, void *user_data) {
  Kv__LoadReply *reply = user_data;
  const Kv__Entry *entry = msg;
  int rc;
  if (!entry) { /* all sent (or the call ended: then this goes nowhere) */
    prpc_ctx_finish(ctx, GRPC_STATUS_OK);
    return;
  }
  if (!entry->key[0]) {
    prpc_ctx_set_message(ctx, "empty key");
    prpc_ctx_finish(ctx, GRPC_STATUS_INVALID_ARGUMENT);
    return;
  }
  pthread_mutex_lock(&kv.mu);
  rc = store_put(entry->key, entry->value);
  pthread_mutex_unlock(&kv.mu);
  if (rc != 0) {
    prpc_ctx_finish(ctx, GRPC_STATUS_RESOURCE_EXHAUSTED);
    return;
  }
  reply->count++;
  if (prpc_ctx_read_async(ctx) != 0) /* the call has ended */
    prpc_ctx_finish(ctx, GRPC_STATUS_CANCELLED);
}

static const prpc_ctx_callbacks load_callbacks = {.on_read = load_read};

static grpc_status_code load(prpc_ctx *ctx, Kv__LoadReply *reply,
                             void *user_data) {
  (void)user_data;
  if (prpc_ctx_set_callbacks(ctx, &load_callbacks, reply) != 0 ||
      prpc_ctx_read_async(ctx) != 0)
    return GRPC_STATUS_INTERNAL;
  return prpc_ctx_defer(ctx);
}

/* ---- main ---- */

static void free_store(void) {
  for (size_t i = 0; i < kv.n_buckets; i++) {
    for (node *e = kv.buckets[i], *next; e; e = next) {
      next = e->next;
      free(e->key);
      free(e->value);
      free(e);
    }
  }
  free(kv.buckets);
}

int main(int argc, char **argv) {
  static const Kv__StoreServer impl = {get, put, watch, load};
  prpc_server *server;
  sigset_t sigs;
  if (argc != 2) {
    fprintf(stderr, "usage: kvd TARGET   (e.g. unix:/run/user/1000/kv.sock)\n");
    return 2;
  }
  /* Held until prpc_server_run() waits for them: a SIGTERM sent right
   * after "ready" must stop the daemon cleanly, not kill it. */
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigprocmask(SIG_BLOCK, &sigs, NULL);

  if (prpc_server_create(NULL, &server) != 0) {
    fprintf(stderr, "kvd: %s\n", prpc_last_error());
    return 1;
  }
  /* Every handler returns at once (Watch and Load defer): register_async
   * runs them on the thread that polled the call, no hand-off. */
  if (prpc_server_add_listener(server, argv[1], NULL) != 0 ||
      prpc_server_add_rule(server, 1, "same-user") != 0 ||
      kv__store_server__register_async(server, &impl, NULL) != 0 ||
      prpc_server_enable_health(server) != 0 ||
      prpc_server_enable_reflection(server) != 0 ||
      prpc_server_start(server) != 0) {
    fprintf(stderr, "kvd: %s\n", prpc_last_error());
    prpc_server_destroy(server);
    return 1;
  }
  printf("kvd: serving kv.Store on %s: ready\n", argv[1]);
  fflush(stdout);
  int rc = prpc_server_run(server); /* until SIGINT or SIGTERM */
  prpc_server_destroy(server);
  free_store();
  printf("kvd: stopped\n");
  return rc == 0 ? 0 : 1;
}
