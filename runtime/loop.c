/* Loops: who polls a gRPC completion queue, and on which thread the
 * callbacks of completed operations run.
 *
 * gRPC core's C API is asynchronous: an operation started on a call (a
 * batch) or a server (a call request) completes on a completion queue,
 * which some thread must poll; that polling also drives gRPC's I/O. Every
 * piperpc call, server or client, blocking or not, starts its operations
 * with a prpc__op as the tag, and whoever polls runs op->fn(op, ok).
 *
 * piperpc's own loops (a server's, and the one shared by asynchronous
 * client calls) poll with their own threads and run callbacks inline,
 * where the event was polled: no hand-off, no wake-up of another thread,
 * no crossing of CPUs. By default one thread polls; when every polling
 * thread has been in one callback since the watchdog last looked (a
 * handler that blocks or runs long), the watchdog brings in another, which
 * leaves once the others poll again. A callback that knows it will block
 * says so (prpc__loop_long) and another thread takes over at once.
 *
 * An application's loop (prpc_loop_create) runs callbacks on the
 * application's thread instead: a thread of piperpc's polls the queue and
 * moves what completes to a list, and an eventfd tells the application's
 * event loop (epoll, libuv, sd-event, GLib) to call prpc_loop_process(),
 * which runs the callbacks. This is the idiom of sd_bus_get_fd() and
 * sd_bus_process(). */
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* How often the watchdog looks while calls come (a callback in the same
 * place twice in a row has run for at least this long), and after a
 * second with none. */
#define WATCH_BUSY_MS 5
#define WATCH_IDLE_MS 50
#define WATCH_IDLE_TICKS 200
/* A spare thread with nothing to do for this long leaves if another
 * thread polls. */
#define SPARE_WAIT_MS 100

typedef struct poller {
  prpc_loop *loop;
  pthread_t th;
  int primary;      /* the first thread: it never parks */
  atomic_int busy;  /* inside a callback */
  atomic_uint seq;  /* callbacks started */
  unsigned seen;    /* seq at the watchdog's last look */
} poller;

struct prpc_loop {
  grpc_completion_queue *cq;
  atomic_int refs;
  int app;        /* the application's loop (prpc_loop_create) */
  int is_default; /* the shared loop of asynchronous client calls */
  atomic_int stopping;
  int torn_down;

  /* ---- the application's loop ---- */
  int efd;
  pthread_t waiter;
  int waiter_running;
  pthread_mutex_t qmu;
  grpc_event *q; /* a ring of completed events */
  size_t q_head, q_len, q_cap;
  int shutdown_seen; /* the waiter passed on GRPC_QUEUE_SHUTDOWN */
  int in_process;    /* prpc_loop_process() is running */
  int teardown_pending;

  /* ---- piperpc's threads ---- */
  int elastic, max_threads;
  pthread_mutex_t mu;
  pthread_cond_t cv;    /* parked spares wait here */
  pthread_cond_t wd_cv; /* the watchdog sleeps here */
  poller **pollers;
  int n_pollers, cap_pollers;
  atomic_int polling; /* threads inside grpc_completion_queue_next() */
  int parked, to_wake;
  int spawn_failed_logged;
  pthread_t watchdog;
  int watchdog_running;
  /* Events that prpc__loop_poll_for() took off the queue but that were
   * not the one it looked for: the next thread to poll runs them. */
  grpc_event *deferred;
  size_t n_deferred, cap_deferred;
  atomic_int has_deferred;
};

static _Thread_local prpc_loop *tl_loop; /* the loop this thread runs for */

grpc_call_error prpc__start_batch(grpc_call *call, const grpc_op *ops,
                                  size_t n, prpc__op *op) {
  PRPC__TSAN_RELEASE(op);
  return grpc_call_start_batch(call, ops, n, op, NULL);
}

static void run(grpc_event ev) {
  prpc__op *op = ev.tag;
  PRPC__TSAN_ACQUIRE(op);
  op->fn(op, ev.success);
}

static gpr_timespec after_ms(int ms) {
  return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                      gpr_time_from_millis(ms, GPR_TIMESPAN));
}

static void cond_init_monotonic(pthread_cond_t *cv) {
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(cv, &attr);
  pthread_condattr_destroy(&attr);
}

/* ---- deferred events (piperpc's threads) ---- */

static void defer_event(prpc_loop *l, grpc_event ev) {
  pthread_mutex_lock(&l->mu);
  if (l->n_deferred == l->cap_deferred) {
    size_t cap = l->cap_deferred ? 2 * l->cap_deferred : 8;
    grpc_event *d;
    /* Losing the event would lose a call: wait for memory instead. */
    while (!(d = realloc(l->deferred, cap * sizeof(*d)))) {
      struct timespec ts = {0, 10000000};
      pthread_mutex_unlock(&l->mu);
      prpc__log(PRPC__LOG_ERROR, "out of memory deferring an event: "
                                 "retrying in 10 ms");
      nanosleep(&ts, NULL);
      pthread_mutex_lock(&l->mu);
    }
    l->deferred = d;
    l->cap_deferred = cap;
  }
  l->deferred[l->n_deferred++] = ev;
  atomic_store(&l->has_deferred, 1);
  pthread_mutex_unlock(&l->mu);
}

static int take_deferred(prpc_loop *l, grpc_event *ev) {
  int got = 0;
  pthread_mutex_lock(&l->mu);
  if (l->n_deferred > 0) {
    *ev = l->deferred[0];
    memmove(l->deferred, l->deferred + 1,
            --l->n_deferred * sizeof(*l->deferred));
    got = 1;
  }
  atomic_store(&l->has_deferred, l->n_deferred > 0);
  pthread_mutex_unlock(&l->mu);
  return got;
}

/* ---- piperpc's threads ---- */

static void *poller_main(void *arg);

/* Brings in another polling thread: a parked one, or a new one while there
 * are fewer than max_threads. l->mu held. */
static void add_poller_locked(prpc_loop *l) {
  if (l->parked > l->to_wake) {
    l->to_wake++;
    pthread_cond_signal(&l->cv);
    return;
  }
  if (l->n_pollers >= l->max_threads)
    return;
  if (l->n_pollers == l->cap_pollers) {
    int cap = l->cap_pollers ? 2 * l->cap_pollers : 4;
    poller **p = realloc(l->pollers, (size_t)cap * sizeof(*p));
    if (!p)
      return;
    l->pollers = p;
    l->cap_pollers = cap;
  }
  poller *p = calloc(1, sizeof(*p));
  if (!p)
    return;
  p->loop = l;
  p->primary = l->n_pollers == 0 || !l->elastic;
  if (pthread_create(&p->th, NULL, poller_main, p) != 0) {
    if (!l->spawn_failed_logged++)
      prpc__log(PRPC__LOG_ERROR, "cannot start another thread to poll: "
                                 "calls wait for the busy ones");
    free(p);
    return;
  }
  l->pollers[l->n_pollers++] = p;
}

/* A spare thread waits here until it is needed again. Returns 0 to poll,
 * -1 to exit. */
static int park(prpc_loop *l) {
  int stop;
  pthread_mutex_lock(&l->mu);
  l->parked++;
  while (!l->to_wake && !atomic_load(&l->stopping))
    pthread_cond_wait(&l->cv, &l->mu);
  l->parked--;
  stop = atomic_load(&l->stopping);
  if (!stop)
    l->to_wake--;
  pthread_mutex_unlock(&l->mu);
  return stop ? -1 : 0;
}

static void *poller_main(void *arg) {
  poller *p = arg;
  prpc_loop *l = p->loop;
  tl_loop = l;
  for (;;) {
    grpc_event ev;
    if (atomic_load_explicit(&l->has_deferred, memory_order_relaxed) &&
        take_deferred(l, &ev)) {
      /* taken: run below */
    } else {
      /* A spare stays only while no other thread polls. */
      if (!p->primary && atomic_load(&l->polling) > 0 && park(l) != 0)
        break;
      atomic_fetch_add(&l->polling, 1);
      ev = grpc_completion_queue_next(
          l->cq,
          p->primary ? gpr_inf_future(GPR_CLOCK_MONOTONIC)
                     : after_ms(SPARE_WAIT_MS),
          NULL);
      atomic_fetch_sub(&l->polling, 1);
      if (ev.type == GRPC_QUEUE_SHUTDOWN) {
        while (take_deferred(l, &ev))
          run(ev);
        break;
      }
      if (ev.type != GRPC_OP_COMPLETE)
        continue;
    }
    atomic_store_explicit(&p->busy, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->seq, 1, memory_order_relaxed);
    run(ev);
    atomic_store_explicit(&p->busy, 0, memory_order_relaxed);
  }
  return NULL;
}

static void *watchdog_main(void *arg) {
  prpc_loop *l = arg;
  int idle = 0;
  pthread_mutex_lock(&l->mu);
  while (!atomic_load(&l->stopping)) {
    struct timespec ts;
    int stuck = 0, moved = 0;
    prpc__timespec_in(&ts, CLOCK_MONOTONIC,
                      idle > WATCH_IDLE_TICKS ? WATCH_IDLE_MS : WATCH_BUSY_MS);
    pthread_cond_timedwait(&l->wd_cv, &l->mu, &ts);
    if (atomic_load(&l->stopping))
      break;
    for (int i = 0; i < l->n_pollers; i++) {
      poller *p = l->pollers[i];
      unsigned s = atomic_load_explicit(&p->seq, memory_order_relaxed);
      if (s != p->seen)
        moved = 1;
      else if (atomic_load_explicit(&p->busy, memory_order_relaxed))
        stuck++; /* in the same callback as at the last look */
      p->seen = s;
    }
    idle = moved ? 0 : idle + 1;
    if (stuck > 0 && atomic_load(&l->polling) == 0 &&
        !atomic_load(&l->has_deferred))
      add_poller_locked(l);
  }
  pthread_mutex_unlock(&l->mu);
  return NULL;
}

static prpc_loop *loop_new(void) {
  prpc_loop *l = calloc(1, sizeof(*l));
  if (!l)
    return NULL;
  atomic_init(&l->refs, 1);
  l->efd = -1;
  pthread_mutex_init(&l->mu, NULL);
  pthread_mutex_init(&l->qmu, NULL);
  pthread_cond_init(&l->cv, NULL);
  cond_init_monotonic(&l->wd_cv);
  prpc__core_ref();
  l->cq = grpc_completion_queue_create_for_next(NULL);
  if (!l->cq) {
    prpc__core_unref();
    free(l);
    return NULL;
  }
  return l;
}

static void loop_free(prpc_loop *l) {
  grpc_completion_queue_destroy(l->cq);
  for (int i = 0; i < l->n_pollers; i++)
    free(l->pollers[i]);
  free(l->pollers);
  free(l->deferred);
  free(l->q);
  if (l->efd >= 0)
    close(l->efd);
  pthread_mutex_destroy(&l->mu);
  pthread_mutex_destroy(&l->qmu);
  pthread_cond_destroy(&l->cv);
  pthread_cond_destroy(&l->wd_cv);
  free(l);
  prpc__core_unref();
}

int prpc__loop_create_threads(int threads, int max_threads, prpc_loop **out) {
  prpc_loop *l = loop_new();
  if (!l)
    return prpc__fail(PRPC_ECORE, "gRPC core could not create a "
                                  "completion queue");
  l->elastic = threads == 0;
  l->max_threads = threads > 0 ? threads : max_threads > 0 ? max_threads : 1;
  pthread_mutex_lock(&l->mu);
  for (int i = 0; i < (threads > 0 ? threads : 1); i++)
    add_poller_locked(l);
  int started = l->n_pollers;
  pthread_mutex_unlock(&l->mu);
  if (started == 0) {
    loop_free(l);
    return prpc__fail(-EAGAIN, "cannot start a thread to poll");
  }
  if (l->elastic && l->max_threads > 1) {
    if (pthread_create(&l->watchdog, NULL, watchdog_main, l) == 0)
      l->watchdog_running = 1;
    else
      prpc__log(PRPC__LOG_WARN, "cannot start the loop's watchdog: one "
                                "thread will poll");
  }
  *out = l;
  return 0;
}

/* ---- the application's loop ---- */

static int q_push(prpc_loop *l, grpc_event ev) {
  if (l->q_len == l->q_cap) {
    size_t cap = l->q_cap ? 2 * l->q_cap : 64;
    grpc_event *q = malloc(cap * sizeof(*q));
    if (!q)
      return -1;
    for (size_t i = 0; i < l->q_len; i++)
      q[i] = l->q[(l->q_head + i) % l->q_cap];
    free(l->q);
    l->q = q;
    l->q_head = 0;
    l->q_cap = cap;
  }
  l->q[(l->q_head + l->q_len++) % l->q_cap] = ev;
  return 0;
}

static void *waiter_main(void *arg) {
  prpc_loop *l = arg;
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(
        l->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    if (ev.type != GRPC_OP_COMPLETE && ev.type != GRPC_QUEUE_SHUTDOWN)
      continue;
    pthread_mutex_lock(&l->qmu);
    int was_empty = l->q_len == 0;
    while (q_push(l, ev) != 0) {
      struct timespec ts = {0, 10000000};
      pthread_mutex_unlock(&l->qmu);
      prpc__log(PRPC__LOG_ERROR, "out of memory queueing an event: "
                                 "retrying in 10 ms");
      nanosleep(&ts, NULL);
      pthread_mutex_lock(&l->qmu);
    }
    pthread_mutex_unlock(&l->qmu);
    if (was_empty) {
      uint64_t one = 1;
      if (write(l->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        prpc__log(PRPC__LOG_ERROR, "cannot signal the loop's eventfd: %s",
                  strerror(errno));
    }
    if (ev.type == GRPC_QUEUE_SHUTDOWN)
      break;
  }
  return NULL;
}

int prpc_loop_create(prpc_loop **out) {
  prpc_loop *l;
  if (!out)
    return prpc__fail(-EINVAL, "prpc_loop_create: out is NULL");
  if (!(l = loop_new()))
    return prpc__fail(PRPC_ECORE, "gRPC core could not create a "
                                  "completion queue");
  l->app = 1;
  l->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (l->efd < 0) {
    int err = -errno;
    loop_free(l);
    return prpc__fail(err, "eventfd: %s", strerror(-err));
  }
  if (pthread_create(&l->waiter, NULL, waiter_main, l) != 0) {
    loop_free(l);
    return prpc__fail(-EAGAIN, "cannot start the loop's thread");
  }
  l->waiter_running = 1;
  *out = l;
  return 0;
}

int prpc_loop_fd(const prpc_loop *l) { return l && l->app ? l->efd : -1; }

static void teardown(prpc_loop *l);

int prpc_loop_process(prpc_loop *l) {
  uint64_t v;
  int n = 0;
  prpc_loop *outer = tl_loop;
  if (!l || !l->app)
    return prpc__fail(-EINVAL, "prpc_loop_process: not a loop from "
                               "prpc_loop_create()");
  if (read(l->efd, &v, sizeof(v)) < 0 && errno != EAGAIN) {
    /* nothing to do: the list below is what counts */
  }
  tl_loop = l;
  l->in_process++;
  for (;;) {
    grpc_event ev;
    pthread_mutex_lock(&l->qmu);
    if (l->q_len == 0) {
      pthread_mutex_unlock(&l->qmu);
      break;
    }
    ev = l->q[l->q_head];
    l->q_head = (l->q_head + 1) % l->q_cap;
    l->q_len--;
    pthread_mutex_unlock(&l->qmu);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) {
      l->shutdown_seen = 1;
      continue;
    }
    run(ev);
    n++;
  }
  l->in_process--;
  tl_loop = outer;
  if (l->teardown_pending && l->in_process == 0) {
    l->teardown_pending = 0;
    teardown(l);
  }
  return n;
}

void prpc_loop_destroy(prpc_loop *l) {
  prpc__error_freeze();
  if (l)
    prpc__loop_unref(l);
  prpc__error_thaw();
}

/* ---- both ---- */

/* Stops the loop once nothing uses it (its users have finished every
 * operation), runs what is left and frees it. */
static void teardown(prpc_loop *l) {
  atomic_store(&l->stopping, 1);
  grpc_completion_queue_shutdown(l->cq);
  if (l->app) {
    /* What is still on its way is run here, on this thread. */
    while (!l->shutdown_seen) {
      struct pollfd p = {l->efd, POLLIN, 0};
      poll(&p, 1, 100);
      prpc_loop_process(l);
    }
    if (l->waiter_running)
      pthread_join(l->waiter, NULL);
    loop_free(l);
    return;
  }
  pthread_mutex_lock(&l->mu);
  pthread_cond_broadcast(&l->cv);
  pthread_cond_broadcast(&l->wd_cv);
  pthread_mutex_unlock(&l->mu);
  if (l->watchdog_running)
    pthread_join(l->watchdog, NULL);
  /* The pollers run what is left, then see the shutdown. No thread starts
   * pollers any more (the watchdog has gone; prpc__loop_long() checks
   * stopping). */
  for (int i = 0; i < l->n_pollers; i++)
    pthread_join(l->pollers[i]->th, NULL);
  loop_free(l);
}

static void *teardown_detached(void *arg) {
  teardown(arg);
  return NULL;
}

static pthread_mutex_t default_mu = PTHREAD_MUTEX_INITIALIZER;
static prpc_loop *default_loop; /* under default_mu */

void prpc__loop_ref(prpc_loop *l) { atomic_fetch_add(&l->refs, 1); }

void prpc__loop_unref(prpc_loop *l) {
  if (!l)
    return;
  if (l->is_default) {
    /* Its references change under default_mu, so that
     * prpc__loop_default() never hands out a loop on its way down. */
    pthread_mutex_lock(&default_mu);
    int last = atomic_fetch_sub(&l->refs, 1) == 1;
    if (last)
      default_loop = NULL;
    pthread_mutex_unlock(&default_mu);
    if (!last)
      return;
  } else if (atomic_fetch_sub(&l->refs, 1) != 1) {
    return;
  }
  if (tl_loop == l) {
    /* The last reference went in one of the loop's own callbacks: the loop
     * cannot wait for itself. */
    if (l->app) {
      l->teardown_pending = 1; /* at the end of prpc_loop_process() */
      return;
    }
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &attr, teardown_detached, l) != 0)
      prpc__log(PRPC__LOG_ERROR, "cannot stop a loop from its own thread: "
                                 "it is left running");
    pthread_attr_destroy(&attr);
    return;
  }
  teardown(l);
}

grpc_completion_queue *prpc__loop_cq(prpc_loop *l) { return l->cq; }

int prpc__loop_in_callback(const prpc_loop *l) {
  return l ? tl_loop == l : tl_loop != NULL;
}

void prpc__loop_long(prpc_loop *l) {
  if (!l)
    l = tl_loop;
  if (!l || l->app || !l->elastic || tl_loop != l ||
      atomic_load(&l->polling) > 0 || atomic_load(&l->stopping))
    return;
  pthread_mutex_lock(&l->mu);
  add_poller_locked(l);
  pthread_mutex_unlock(&l->mu);
}

int prpc__loop_poll_for(prpc_loop *l, prpc__op *op) {
  if (l->app) {
    int found = 0;
    grpc_event ev;
    pthread_mutex_lock(&l->qmu);
    for (size_t i = 0; i < l->q_len; i++) {
      size_t at = (l->q_head + i) % l->q_cap;
      if (l->q[at].type == GRPC_OP_COMPLETE && l->q[at].tag == op) {
        ev = l->q[at];
        for (size_t j = i; j + 1 < l->q_len; j++)
          l->q[(l->q_head + j) % l->q_cap] =
              l->q[(l->q_head + j + 1) % l->q_cap];
        l->q_len--;
        found = 1;
        break;
      }
    }
    pthread_mutex_unlock(&l->qmu);
    if (found)
      run(ev);
    return found;
  }
  /* Another thread polls: it runs op when it comes. */
  if (atomic_load(&l->polling) > 0)
    return 0;
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(
        l->cq, gpr_time_0(GPR_CLOCK_MONOTONIC), NULL);
    if (ev.type != GRPC_OP_COMPLETE)
      return 0;
    if (ev.tag == op) {
      run(ev);
      return 1;
    }
    defer_event(l, ev);
  }
}

/* ---- the shared loop of asynchronous client calls ---- */

prpc_loop *prpc__loop_default(void) {
  prpc_loop *l = NULL;
  pthread_mutex_lock(&default_mu);
  if (default_loop) {
    l = default_loop;
    prpc__loop_ref(l);
  } else if (prpc__loop_create_threads(0, 64, &l) == 0) {
    l->is_default = 1;
    default_loop = l;
  }
  pthread_mutex_unlock(&default_mu);
  return l;
}
