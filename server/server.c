/* The server: its life cycle, listeners, access rules and services.
 *
 * A server is a gRPC core server (two, when access rules are in force:
 * denied peers get one of their own that answers every call with
 * PERMISSION_DENIED), a loop that runs its calls (its own threads, or the
 * application's loop), the acceptor that takes its unix and TCP
 * connections (transport/accept.c), and the services registered on it.
 * dispatch.c brings new calls to their handlers, call.c carries each call
 * to its end; the built-in services (health, reflection) and the HTTP
 * front end (http.c) hook into start and shutdown through hooks.c.
 */
#include "internal.h"
#include "http.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* What a call still running when the grace period ends is told. */
#define SHUTDOWN_MESSAGE "the server is shutting down"

/* ---- creation ---- */

static int core_server_new(prpc_server *srv, prpc__core_srv *cs, int kind) {
  grpc_arg args[10];
  grpc_channel_args cargs;
  cs->kind = kind;
  if (kind == CORE_DENY) {
    /* A denied peer is answered and then sent away: its connection is
     * closed about a second after it was made, and sooner when idle. */
    cargs.num_args = prpc__core_deny_args(args);
  } else {
    cargs.num_args = prpc__core_size_args(args, srv->opts.max_send_bytes,
                                          srv->opts.max_recv_bytes, NULL, -1,
                                          NULL);
    cargs.num_args += prpc__core_idle_args(args + cargs.num_args,
                                           srv->opts.idle_timeout_ms);
    cargs.num_args += prpc__core_streams_arg(
        args + cargs.num_args, srv->opts.max_concurrent_streams);
  }
  cargs.args = args;
  cs->core = prpc__core_server_create(&cargs);
  return cs->core ? 0 : prpc__fail(PRPC_ECORE, "gRPC core could not create "
                                               "a server");
}

int prpc_server_create(const prpc_server_opts *opts, prpc_server **out) {
  prpc_server *srv;
  gid_t group = (gid_t)-1;
  if (!out)
    return prpc__fail(-EINVAL, "prpc_server_create: out is NULL");
  if (opts && (opts->threads < 0 || opts->grace_ms < 0 ||
               opts->max_connections < 0 || opts->idle_timeout_ms < 0 ||
               opts->max_connections_per_uid < -1 ||
               opts->handshake_timeout_ms < -1 ||
               opts->max_concurrent_streams < 0 ||
               opts->max_stream_threads < 0 || opts->max_threads < 0 ||
               (opts->socket_mode & ~0777u)))
    return prpc__fail(-EINVAL, "prpc_server_create: a negative count or "
                               "time (only max_connections_per_uid and "
                               "handshake_timeout_ms take -1, for none), or "
                               "socket_mode beyond 0777");
  if (opts && opts->socket_group) {
    int rc = prpc__group_parse(opts->socket_group, &group);
    if (rc != 0)
      return prpc__fail(rc, "socket_group: no group '%s'", opts->socket_group);
  }
  srv = calloc(1, sizeof(*srv));
  if (!srv)
    return prpc__fail(-ENOMEM, "out of memory");
  if (opts)
    srv->opts = *opts;
  srv->opts.socket_group = NULL; /* borrowed: resolved now */
  srv->socket_gid = group;
  if (srv->opts.max_threads == 0) {
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    srv->opts.max_threads = ncpu > 0 && ncpu < 8 ? 64 : (int)(8 * ncpu);
  }
  if (srv->opts.grace_ms == 0)
    srv->opts.grace_ms = 5000;
  if (srv->opts.socket_mode == 0)
    srv->opts.socket_mode = 0600;
  if (srv->opts.handshake_timeout_ms == 0)
    srv->opts.handshake_timeout_ms = PRPC__HANDSHAKE_TIMEOUT_MS;
  if (srv->opts.max_concurrent_streams == 0)
    srv->opts.max_concurrent_streams = PRPC__MAX_CONCURRENT_STREAMS;
  if (srv->opts.max_stream_threads == 0)
    srv->opts.max_stream_threads = PRPC__MAX_STREAM_THREADS;
  if (pipe2(srv->stop, O_CLOEXEC | O_NONBLOCK) != 0) {
    int err = -errno;
    free(srv);
    return prpc__fail(err, "pipe2: %s", strerror(-err));
  }
  prpc__core_ref();
  if (core_server_new(srv, &srv->main, CORE_MAIN) != 0) {
    prpc__core_unref();
    close(srv->stop[0]);
    close(srv->stop[1]);
    free(srv);
    return PRPC_ECORE;
  }
  srv->main.srv = srv;
  srv->deny.srv = srv;
  pthread_mutex_init(&srv->mu, NULL);
  pthread_cond_init(&srv->cv, NULL);
  pthread_mutex_init(&srv->calls_mu, NULL);
  pthread_cond_init(&srv->calls_cv, NULL);
  srv->state = SRV_CREATED;
  *out = srv;
  return 0;
}

/* ---- listeners ---- */

/* Appends a listener for t; NULL when out of memory. */
static listener *listener_push(prpc_server *srv, const prpc__target *t) {
  listener *l = realloc(srv->listeners, (srv->n_listeners + 1) * sizeof(*l));
  if (!l)
    return NULL;
  srv->listeners = l;
  l = &srv->listeners[srv->n_listeners];
  memset(l, 0, sizeof(*l));
  l->t = *t;
  l->file = (prpc__sockfile)PRPC__SOCKFILE_INIT;
  snprintf(l->name, sizeof(l->name), "%s", t->core);
  return l;
}

/* The kind and name of a listening socket passed as fd:N, from its own
 * address: a unix path, an abstract name, or TCP. */
static void name_adopted(int fd, listener *l) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  memset(&ss, 0, sizeof(ss));
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
    return; /* stays FD, "fd:N" */
  if (ss.ss_family == AF_UNIX) {
    const struct sockaddr_un *un = (const struct sockaddr_un *)&ss;
    size_t n = len > offsetof(struct sockaddr_un, sun_path)
                   ? len - offsetof(struct sockaddr_un, sun_path)
                   : 0;
    if (n > 1 && un->sun_path[0] == '\0') {
      l->t.kind = PRPC__TARGET_ABSTRACT;
      snprintf(l->name, sizeof(l->name), "unix-abstract:%.*s", (int)(n - 1),
               un->sun_path + 1);
    } else if (n > 0 && un->sun_path[0]) {
      l->t.kind = PRPC__TARGET_UNIX;
      snprintf(l->name, sizeof(l->name), "unix:%.*s", (int)n, un->sun_path);
    } else {
      l->t.kind = PRPC__TARGET_UNIX;
    }
  } else if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
    l->t.kind = PRPC__TARGET_TCP;
  }
}

int prpc_server_add_listener(prpc_server *srv, const char *target,
                             int *port) {
  prpc__target t;
  listener *l;
  int rc;
  if (!srv)
    return prpc__fail(-EINVAL, "prpc_server_add_listener: server is NULL");
  if (srv->state != SRV_CREATED)
    return prpc__fail(PRPC_ESTATE, "listeners must be added before start");
  rc = prpc__target_parse(target, 1, &t);
  if (rc != 0)
    return rc;
  if (!(l = listener_push(srv, &t)))
    return prpc__fail(-ENOMEM, "out of memory");
  switch (t.kind) {
  case PRPC__TARGET_UNIX:
  case PRPC__TARGET_ABSTRACT:
    rc = prpc__unix_listen(&t, srv->opts.socket_mode, srv->socket_gid,
                           &l->file, &l->fds[0]);
    if (rc != 0)
      return rc;
    l->n_fds = 1;
    if (t.kind == PRPC__TARGET_ABSTRACT)
      srv->guarded = 1;
    break;
  case PRPC__TARGET_TCP: {
    int bound = 0;
    rc = prpc__tcp_listen(&t, l->fds, sizeof(l->fds) / sizeof(l->fds[0]),
                          &l->n_fds, &bound);
    if (rc != 0)
      return rc;
    l->t.port = bound;
    snprintf(l->name, sizeof(l->name),
             strchr(t.host, ':') ? "[%s]:%d" : "%s:%d", t.host, bound);
    if (port)
      *port = bound;
    break;
  }
  case PRPC__TARGET_FD: {
    int listening = 0;
    socklen_t len = sizeof(listening);
    if (getsockopt(t.fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0)
      return prpc__fail(-errno, "fd:%d is not a socket: %s", t.fd,
                        strerror(errno));
    fcntl(t.fd, F_SETFD, FD_CLOEXEC);
    fcntl(t.fd, F_SETFL, fcntl(t.fd, F_GETFL) | O_NONBLOCK);
    if (listening) {
      name_adopted(t.fd, l);
      if (l->t.kind == PRPC__TARGET_ABSTRACT)
        srv->guarded = 1;
      l->fds[0] = t.fd;
      l->n_fds = 1;
    } else {
      int *a = realloc(srv->adopted_fds, (srv->n_adopted + 1) * sizeof(*a));
      if (!a)
        return prpc__fail(-ENOMEM, "out of memory");
      srv->adopted_fds = a;
      a[srv->n_adopted++] = t.fd;
    }
    break;
  }
  }
  srv->n_listeners++;
  return 0;
}

int prpc_server_add_tls_listener(prpc_server *srv, const char *target,
                                 const prpc_tls_opts *tls, int *port) {
  prpc__target t;
  int rc;
  if (!srv || !tls)
    return prpc__fail(-EINVAL, "prpc_server_add_tls_listener: NULL argument");
  if (srv->state != SRV_CREATED)
    return prpc__fail(PRPC_ESTATE, "listeners must be added before start");
  if ((rc = prpc__target_parse(target, 1, &t)) != 0)
    return rc;
  if (t.kind != PRPC__TARGET_TCP)
    return prpc__fail(-EINVAL, "TLS is for TCP targets; %s is local", target);
  /* gRPC core listens for TLS itself and says only that it failed: bind
   * here first to learn why (in use, no permission, no such address). */
  if (t.port != 0) {
    int fds[4], bound;
    size_t n;
    if ((rc = prpc__tcp_listen(&t, fds, 4, &n, &bound)) != 0)
      return rc;
    for (size_t i = 0; i < n; i++)
      close(fds[i]);
  }
  rc = prpc__core_server_add_tls(srv->main.core, t.core, tls);
  if (rc < 0)
    return rc;
  if (!listener_push(srv, &t))
    return prpc__fail(-ENOMEM, "out of memory");
  srv->n_listeners++;
  if (port)
    *port = rc;
  return 0;
}

int prpc_server_add_systemd_listeners(prpc_server *srv, int *count) {
  const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
  char *end;
  long n;
  if (count)
    *count = 0;
  if (!srv)
    return prpc__fail(-EINVAL, "prpc_server_add_systemd_listeners: NULL");
  if (!pid || !fds || strtol(pid, &end, 10) != (long)getpid() || *end)
    return prpc__fail(-ENOENT, "no sockets were passed to this process "
                               "(LISTEN_PID/LISTEN_FDS)");
  n = strtol(fds, &end, 10);
  if (*end || n <= 0 || n > 1024)
    return prpc__fail(-ENOENT, "LISTEN_FDS is not a count: '%s'", fds);
  for (long i = 0; i < n; i++) {
    int fd = 3 + (int)i, listening = 0, rc;
    socklen_t len = sizeof(listening);
    char target[32];
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 ||
        !listening)
      return prpc__fail(-ENOTSOCK, "systemd passed fd %d, which is not a "
                                   "listening socket",
                        fd);
    snprintf(target, sizeof(target), "fd:%d", fd);
    if ((rc = prpc_server_add_listener(srv, target, NULL)) != 0)
      return rc;
    if (count)
      (*count)++;
  }
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  return 0;
}

int prpc_server_add_rule(prpc_server *srv, int allow, const char *who) {
  prpc__rule r;
  prpc__rule *rules;
  int rc;
  if (!srv)
    return prpc__fail(-EINVAL, "prpc_server_add_rule: server is NULL");
  if (srv->state != SRV_CREATED)
    return prpc__fail(PRPC_ESTATE, "access rules must be added before start");
  if ((rc = prpc__rule_parse(allow, who, &r)) != 0)
    return rc;
  rules = realloc(srv->rules, (srv->n_rules + 1) * sizeof(*rules));
  if (!rules)
    return prpc__fail(-ENOMEM, "out of memory");
  rules[srv->n_rules++] = r;
  srv->rules = rules;
  return 0;
}

/* ---- services ---- */

int prpc_server_register(prpc_server *srv, const prpc_service_desc *svc,
                         const prpc_invoke_fn *invokers, const void *impl,
                         void *user_data) {
  return prpc_server_register_flags(srv, svc, invokers, NULL, impl, user_data,
                                    0);
}

int prpc_server_register_ex(prpc_server *srv, const prpc_service_desc *svc,
                            const prpc_invoke_fn *invokers,
                            const prpc_prepare_fn *preparers,
                            const void *impl, void *user_data) {
  return prpc_server_register_flags(srv, svc, invokers, preparers, impl,
                                    user_data, 0);
}

/* Is m a method table entry the runtime can serve? */
static int method_ok(const prpc_method_desc *m) {
  return m->path && m->path[0] == '/' && strchr(m->path + 1, '/') &&
         (unsigned)m->kind <= PRPC_BIDI_STREAMING && m->codec &&
         m->codec->encoded_size && m->codec->encode &&
         m->codec->struct_size && m->codec->init &&
         (m->codec->decode || m->codec->decode_into);
}

int prpc_server_register_flags(prpc_server *srv,
                               const prpc_service_desc *svc,
                               const prpc_invoke_fn *invokers,
                               const prpc_prepare_fn *preparers,
                               const void *impl, void *user_data,
                               unsigned flags) {
  char *name;
  if (!srv || !svc || !svc->name || (!svc->methods && svc->n_methods) ||
      (!invokers && svc->n_methods))
    return prpc__fail(-EINVAL, "prpc_server_register: NULL argument");
  if (flags & ~PRPC_ASYNC_HANDLERS)
    return prpc__fail(-EINVAL, "prpc_server_register: unknown flags %#x",
                      flags);
  if (srv->state != SRV_CREATED)
    return prpc__fail(PRPC_ESTATE, "services must be registered before start");
  /* Everything is checked and allocated before anything is recorded, so
   * that a refused service leaves the server as it was. The methods reach
   * gRPC core at start. */
  for (size_t i = 0; i < svc->n_methods; i++) {
    const prpc_method_desc *m = &svc->methods[i];
    if (!method_ok(m))
      return prpc__fail(-EINVAL, "%s: method %zu of %s has no path of the "
                                 "form /package.Service/Method, or a bad "
                                 "kind or codec",
                        svc->name, i, svc->name);
    for (size_t j = 0; j < srv->n_methods; j++)
      if (strcmp(srv->methods[j].m->path, m->path) == 0)
        return prpc__fail(PRPC_EEXIST, "%s is already registered", m->path);
    for (size_t j = 0; j < i; j++)
      if (strcmp(svc->methods[j].path, m->path) == 0)
        return prpc__fail(PRPC_EEXIST, "%s appears twice in %s", m->path,
                          svc->name);
  }
  if (srv->n_methods + svc->n_methods > srv->cap_methods) {
    size_t cap = srv->cap_methods ? srv->cap_methods : 8;
    while (cap < srv->n_methods + svc->n_methods)
      cap *= 2;
    method_entry *me = realloc(srv->methods, cap * sizeof(*me));
    if (!me)
      return prpc__fail(-ENOMEM, "out of memory");
    srv->methods = me;
    srv->cap_methods = cap;
  }
  const prpc_service_desc **descs = realloc(
      srv->service_descs, (srv->n_services + 1) * sizeof(*descs));
  if (!descs)
    return prpc__fail(-ENOMEM, "out of memory");
  srv->service_descs = descs;
  char **names = realloc(srv->service_names,
                         (srv->n_services + 1) * sizeof(*names));
  if (!names)
    return prpc__fail(-ENOMEM, "out of memory");
  srv->service_names = names;
  if (!(name = strdup(svc->name)))
    return prpc__fail(-ENOMEM, "out of memory");
  /* Nothing fails from here on. */
  names[srv->n_services] = name;
  descs[srv->n_services] = svc;
  srv->n_services++;
  for (size_t i = 0; i < svc->n_methods; i++) {
    method_entry *me = &srv->methods[srv->n_methods++];
    me->m = &svc->methods[i];
    me->invoke = invokers[i];
    me->prepare = preparers ? preparers[i] : NULL;
    me->impl = impl;
    me->user_data = user_data;
    me->async = (flags & PRPC_ASYNC_HANDLERS) != 0;
  }
  return 0;
}

/* ---- start ---- */

/* The acceptor's hand-offs, on its thread. */
static void hand_to_core(void *data, prpc__conn *c) {
  prpc_server *srv = data;
  prpc__core_server_add_fd(srv->main.core, c->fd);
}

static void hand_to_deny(void *data, prpc__conn *c) {
  prpc_server *srv = data;
  if (srv->deny.core)
    prpc__core_server_add_fd(srv->deny.core, c->fd);
  else
    close(c->fd); /* no deny server: cannot answer, so just close */
}

static void all_hung_up(void *data) { prpc_server_shutdown(data); }

static void hand_to_http(void *data, prpc__conn *c) {
  prpc__http_serve(data, c);
}

/* Gives the listening sockets and adopted connections to a new acceptor. */
static int acceptor_setup(prpc_server *srv) {
  prpc__accept_opts o;
  memset(&o, 0, sizeof(o));
  o.max_connections = srv->opts.max_connections;
  o.max_connections_per_uid = srv->opts.max_connections_per_uid;
  o.handshake_timeout_ms = srv->opts.handshake_timeout_ms;
  o.idle_timeout_ms = srv->opts.idle_timeout_ms;
  o.rules = srv->rules;
  o.n_rules = srv->n_rules;
  o.grpc = hand_to_core;
  o.deny = hand_to_deny;
  o.hangup = all_hung_up;
  o.http = srv->opts.http_json ? hand_to_http : NULL;
  o.data = srv;
  int rc = prpc__acceptor_create(&o, &srv->acceptor);
  if (rc != 0)
    return rc;
  for (size_t i = 0; i < srv->n_listeners; i++) {
    listener *l = &srv->listeners[i];
    for (size_t k = 0; k < l->n_fds; k++) {
      if ((rc = prpc__acceptor_add_listener(srv->acceptor, l->fds[k],
                                            (int)l->t.kind, l->name)) != 0)
        return rc;
      l->fds[k] = -1; /* the acceptor's now */
    }
  }
  for (size_t i = 0; i < srv->n_adopted; i++) {
    if ((rc = prpc__acceptor_adopt(srv->acceptor, srv->adopted_fds[i],
                                   srv->opts.shutdown_on_hangup)) != 0)
      return rc;
    srv->adopted_fds[i] = -1;
  }
  srv->n_adopted = 0;
  return 0;
}

static void on_core_shutdown(prpc__op *op, int ok) {
  prpc__core_srv *cs =
      (prpc__core_srv *)((char *)op - offsetof(prpc__core_srv, shutdown_op));
  PRPC__UNUSED(ok);
  pthread_mutex_lock(&cs->srv->mu);
  cs->shutdown_done = 1;
  pthread_cond_broadcast(&cs->srv->cv);
  pthread_mutex_unlock(&cs->srv->mu);
}

/* Starts a core server on the server's loop. */
static int core_start(prpc_server *srv, prpc__core_srv *cs) {
  int rc;
  if ((rc = prpc__dispatch_register(srv, cs)) != 0)
    return rc;
  grpc_server_register_completion_queue(cs->core, prpc__loop_cq(srv->loop),
                                        NULL);
  grpc_server_start(cs->core);
  cs->started = 1;
  cs->shutdown_op.fn = on_core_shutdown;
  return prpc__dispatch_start(srv, cs);
}

int prpc_server_start(prpc_server *srv) {
  int rc;
  if (!srv)
    return prpc__fail(-EINVAL, "prpc_server_start: server is NULL");
  if (srv->state != SRV_CREATED)
    return prpc__fail(PRPC_ESTATE, "the server was already started");
  if (srv->n_listeners == 0)
    return prpc__fail(PRPC_ESTATE, "the server has no listener");
  if (srv->main.started)
    return prpc__fail(PRPC_ESTATE, "a start of this server failed before: "
                                   "destroy it");
  srv->guarded |= srv->n_rules > 0;
  if (!srv->pool &&
      (rc = prpc__pool_create(srv->opts.max_stream_threads, &srv->pool)) != 0)
    return rc;
  if (srv->opts.http_json && (rc = prpc__http_enable(srv)) != 0)
    return rc;
  if (!srv->acceptor && (rc = acceptor_setup(srv)) != 0)
    return rc;
  if (!srv->loop) {
    if (srv->opts.loop) {
      srv->loop = srv->opts.loop;
      prpc__loop_ref(srv->loop);
    } else if ((rc = prpc__loop_create_threads(srv->opts.threads,
                                               srv->opts.max_threads,
                                               &srv->loop)) != 0) {
      return rc;
    }
  }
  for (size_t i = 0; i < srv->n_hooks; i++)
    if (srv->hooks[i].hook->start &&
        (rc = srv->hooks[i].hook->start(
             srv->hooks[i].data, srv->service_descs,
             (const char *const *)srv->service_names, srv->n_services)) != 0)
      prpc__log(PRPC__LOG_ERROR, "%s: %s", srv->hooks[i].hook->name,
                prpc_last_error());
  /* Denied peers get an answer from a server of their own; with access
   * control in force and no such server, nothing would keep them out. */
  if (srv->guarded && !srv->deny.core &&
      core_server_new(srv, &srv->deny, CORE_DENY) != 0)
    return prpc__fail(PRPC_ECORE, "cannot start the server that answers "
                                  "denied peers");
  if ((rc = core_start(srv, &srv->main)) != 0 ||
      (srv->deny.core && (rc = core_start(srv, &srv->deny)) != 0))
    goto undo;
  pthread_mutex_lock(&srv->mu);
  srv->state = SRV_STARTED;
  pthread_mutex_unlock(&srv->mu);
  /* The acceptor last: a hang-up it sees may shut the server down, which
   * must find everything in place. */
  if ((rc = prpc__acceptor_start(srv->acceptor)) != 0)
    goto undo;
  return 0;

undo:
  /* Started far enough that only a shutdown can take it back; the server
   * is then stopped (prpc_server_destroy() frees it), and the error that
   * stopped it is the one prpc_last_error() tells. */
  {
    char why[256];
    snprintf(why, sizeof(why), "%s", prpc_last_error());
    pthread_mutex_lock(&srv->mu);
    srv->state = SRV_STARTED;
    pthread_mutex_unlock(&srv->mu);
    prpc_server_shutdown(srv);
    prpc_server_wait(srv);
    prpc__fail(rc, "%s", why);
  }
  return rc;
}

/* ---- shutdown ---- */

/* Closes listening sockets the acceptor never took and removes the socket
 * files this server made. */
static void close_listeners(prpc_server *srv) {
  for (size_t i = 0; i < srv->n_listeners; i++) {
    listener *l = &srv->listeners[i];
    for (size_t k = 0; k < l->n_fds; k++)
      if (l->fds[k] >= 0) {
        close(l->fds[k]);
        l->fds[k] = -1;
      }
    prpc__sockfile_remove(&l->file);
  }
}

static void core_shutdown(prpc_server *srv, prpc__core_srv *cs) {
  if (!cs->core)
    return;
  if (!cs->started) {
    cs->shutdown_done = 1;
    return;
  }
  PRPC__TSAN_RELEASE(&cs->shutdown_op);
  grpc_server_shutdown_and_notify(cs->core, prpc__loop_cq(srv->loop),
                                  &cs->shutdown_op);
}

static void shutdown_server(prpc_server *srv) {
  pthread_mutex_lock(&srv->mu);
  if (srv->state != SRV_STARTED) {
    pthread_mutex_unlock(&srv->mu);
    return;
  }
  srv->state = SRV_STOPPING;
  atomic_store(&srv->stopping, 1);
  srv->stop_deadline =
      gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                   gpr_time_from_millis(srv->opts.grace_ms, GPR_TIMESPAN));
  pthread_mutex_unlock(&srv->mu);

  for (size_t i = 0; i < srv->n_hooks; i++)
    if (srv->hooks[i].hook->shutdown)
      srv->hooks[i].hook->shutdown(srv->hooks[i].data);
  /* No new connections: stop accepting and close the listening sockets, so
   * that a client is refused at once instead of waiting in the backlog.
   * The accept thread itself may be the caller (shutdown_on_hangup): then
   * prpc_server_wait() finishes the stop. */
  prpc__acceptor_stop(srv->acceptor);
  close_listeners(srv);
  /* No new calls on existing connections (GOAWAY); calls in flight go on,
   * and those that asked are told. */
  core_shutdown(srv, &srv->main);
  core_shutdown(srv, &srv->deny);
  prpc__calls_tell_shutdown(srv);
  prpc__log(PRPC__LOG_INFO, "shutting down: draining calls for up to %d ms",
            srv->opts.grace_ms);
  if (write(srv->stop[1], "x", 1) < 0 && errno != EAGAIN)
    prpc__log(PRPC__LOG_ERROR, "cannot wake prpc_server_run()");
  pthread_mutex_lock(&srv->mu);
  srv->drain_started = 1;
  pthread_cond_broadcast(&srv->cv);
  pthread_mutex_unlock(&srv->mu);
}

void prpc_server_shutdown(prpc_server *srv) {
  if (!srv)
    return;
  prpc__error_freeze();
  shutdown_server(srv);
  prpc__error_thaw();
}

/* One wait on cv (mu held) until woken or deadline (NULL: none); the
 * caller checks its condition again. On an application's loop what is
 * waited for (the calls' ends, gRPC core's shutdown notice) comes through
 * that loop, and the waiting thread is the one that runs it: so the wait
 * runs the loop, 50 ms at a time at most (a change made by another thread
 * is seen within that). Returns ETIMEDOUT once deadline has passed. */
static int wait_step(prpc_server *srv, pthread_cond_t *cv,
                     pthread_mutex_t *mu, const struct timespec *deadline) {
  int fd = prpc_loop_fd(srv->loop), ms = 50;
  if (fd < 0)
    return deadline ? pthread_cond_timedwait(cv, mu, deadline)
                    : pthread_cond_wait(cv, mu);
  if (deadline) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t left = (int64_t)(deadline->tv_sec - now.tv_sec) * 1000 +
                   (deadline->tv_nsec - now.tv_nsec) / 1000000;
    if (left <= 0)
      return ETIMEDOUT;
    if (left < ms)
      ms = (int)left;
  }
  pthread_mutex_unlock(mu);
  struct pollfd p = {fd, POLLIN, 0};
  if (poll(&p, 1, ms) >= 0)
    prpc_loop_process(srv->loop);
  pthread_mutex_lock(mu);
  return 0;
}

/* Waits for both core servers' shutdown, until deadline (NULL: for ever).
 * mu held. Returns 1 when both are done. */
static int wait_cores(prpc_server *srv, const struct timespec *deadline) {
  while (!(srv->main.shutdown_done && (!srv->deny.core ||
                                       srv->deny.shutdown_done))) {
    if (wait_step(srv, &srv->cv, &srv->mu, deadline) == ETIMEDOUT)
      return 0;
  }
  return 1;
}

int prpc_server_wait(prpc_server *srv) {
  struct timespec deadline;
  if (!srv)
    return prpc__fail(-EINVAL, "prpc_server_wait: server is NULL");
  if (prpc__loop_in_callback(srv->loop))
    return prpc__fail(PRPC_ESTATE, "prpc_server_wait() from one of the "
                                   "server's own callbacks would wait for "
                                   "itself");
  pthread_mutex_lock(&srv->mu);
  if (srv->state == SRV_CREATED) {
    pthread_mutex_unlock(&srv->mu);
    return prpc__fail(PRPC_ESTATE, "the server was never started");
  }
  while (srv->state == SRV_STARTED ||
         (srv->state == SRV_STOPPING && !srv->drain_started))
    wait_step(srv, &srv->cv, &srv->mu, NULL);
  if (srv->state == SRV_STOPPED) {
    pthread_mutex_unlock(&srv->mu);
    return 0;
  }
  pthread_mutex_unlock(&srv->mu);
  prpc__acceptor_stop(srv->acceptor);

  /* gRPC core notifies once every call has ended; after the grace period
   * the calls still running end with UNAVAILABLE. On an application's loop
   * this thread runs the loop meanwhile (wait_step). */
  gpr_timespec left = gpr_time_sub(srv->stop_deadline,
                                   gpr_now(GPR_CLOCK_MONOTONIC));
  clock_gettime(CLOCK_REALTIME, &deadline);
  if (left.tv_sec >= 0) {
    deadline.tv_sec += left.tv_sec;
    deadline.tv_nsec += left.tv_nsec;
    if (deadline.tv_nsec >= 1000000000) {
      deadline.tv_sec++;
      deadline.tv_nsec -= 1000000000;
    }
  }
  pthread_mutex_lock(&srv->mu);
  int drained = wait_cores(srv, &deadline);
  pthread_mutex_unlock(&srv->mu);
  /* The HTTP front end's calls have no gRPC call: they drain here. */
  pthread_mutex_lock(&srv->calls_mu);
  while (drained && srv->n_local > 0)
    drained = wait_step(srv, &srv->calls_cv, &srv->calls_mu, &deadline) !=
              ETIMEDOUT;
  pthread_mutex_unlock(&srv->calls_mu);
  pthread_mutex_lock(&srv->mu);
  if (!drained) {
    pthread_mutex_unlock(&srv->mu);
    prpc__log(PRPC__LOG_WARN,
              "calls still running after the %d ms grace period: ending them",
              srv->opts.grace_ms);
    prpc__calls_end(srv, SHUTDOWN_MESSAGE);
    if (srv->main.started)
      grpc_server_cancel_all_calls(srv->main.core);
    if (srv->deny.started)
      grpc_server_cancel_all_calls(srv->deny.core);
    pthread_mutex_lock(&srv->mu);
    wait_cores(srv, NULL);
  }
  pthread_mutex_unlock(&srv->mu);
  /* Every call has ended; the blocking handlers return (their reads and
   * writes fail), and their threads go. */
  pthread_mutex_lock(&srv->calls_mu);
  while (srv->n_live > 0)
    wait_step(srv, &srv->calls_cv, &srv->calls_mu, NULL);
  pthread_mutex_unlock(&srv->calls_mu);
  prpc__pool_destroy(srv->pool);
  srv->pool = NULL;

  pthread_mutex_lock(&srv->mu);
  srv->state = SRV_STOPPED;
  pthread_cond_broadcast(&srv->cv);
  pthread_mutex_unlock(&srv->mu);
  return 0;
}

/* ---- prpc_server_run(): signals through a self-pipe ---- */

static int signal_pipe = -1;

static void on_signal(int sig) {
  int saved = errno;
  unsigned char b = (unsigned char)sig;
  if (signal_pipe >= 0 && write(signal_pipe, &b, 1) < 0) {
    /* nothing to do: a wake-up is already pending */
  }
  errno = saved;
}

int prpc_server_run(prpc_server *srv) {
  struct sigaction sa, old_int, old_term;
  sigset_t stop_sigs, old_mask;
  int sp[2];
  int rc;
  if (!srv)
    return prpc__fail(-EINVAL, "prpc_server_run: server is NULL");
  if (pipe2(sp, O_CLOEXEC | O_NONBLOCK) != 0)
    return prpc__fail(-errno, "pipe2: %s", strerror(errno));
  /* Handlers first: once a client is served, a signal stops the server. */
  signal_pipe = sp[1];
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  /* A program may block the signals early so that none is lost before this
   * point; they are delivered to this thread from now on. */
  sigemptyset(&stop_sigs);
  sigaddset(&stop_sigs, SIGINT);
  sigaddset(&stop_sigs, SIGTERM);
  pthread_sigmask(SIG_UNBLOCK, &stop_sigs, &old_mask);
  /* The state under the lock: the accept thread may be shutting the
   * server down already (shutdown_on_hangup). */
  pthread_mutex_lock(&srv->mu);
  int created = srv->state == SRV_CREATED;
  pthread_mutex_unlock(&srv->mu);
  rc = created ? prpc_server_start(srv) : 0;

  /* Wait for a signal, or for prpc_server_shutdown() from elsewhere. */
  while (rc == 0) {
    struct pollfd pfd[2] = {{sp[0], POLLIN, 0}, {srv->stop[0], POLLIN, 0}};
    unsigned char b;
    if (poll(pfd, 2, -1) < 0 && errno != EINTR)
      break;
    if (read(sp[0], &b, 1) == 1) {
      prpc__log(PRPC__LOG_INFO, "signal %d: shutting down", (int)b);
      prpc_server_shutdown(srv);
      break;
    }
    if (pfd[1].revents)
      break;
  }

  pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  signal_pipe = -1;
  close(sp[0]);
  close(sp[1]);
  return rc != 0 ? rc : prpc_server_wait(srv);
}

int prpc_server_get_stats(prpc_server *srv, prpc_server_stats *out) {
  if (!srv || !out)
    return prpc__fail(-EINVAL, "prpc_server_get_stats: NULL argument");
  memset(out, 0, sizeof(*out));
  pthread_mutex_lock(&srv->calls_mu);
  out->calls_active = (int)srv->n_live;
  pthread_mutex_unlock(&srv->calls_mu);
  if (srv->acceptor)
    prpc__acceptor_stats(srv->acceptor, &out->connections,
                         &out->connections_refused);
  return 0;
}

void prpc_server_destroy(prpc_server *srv) {
  if (!srv)
    return;
  prpc__error_freeze();
  if (srv->state != SRV_CREATED) {
    prpc_server_shutdown(srv);
    prpc_server_wait(srv);
  }
  /* HTTP connections make their calls through the acceptor: they go
   * first. */
  prpc__http_stop(srv);
  prpc__acceptor_destroy(srv->acceptor);
  srv->acceptor = NULL;
  close_listeners(srv);
  for (size_t i = 0; i < srv->n_adopted; i++)
    if (srv->adopted_fds[i] >= 0)
      close(srv->adopted_fds[i]);
  /* A server never started (or whose start failed early) still needs a
   * shutdown before gRPC core destroys it. */
  prpc__core_srv *cores[2] = {&srv->main, &srv->deny};
  for (int i = 0; i < 2; i++) {
    prpc__core_srv *cs = cores[i];
    if (!cs->core)
      continue;
    if (!cs->shutdown_done) {
      grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
      grpc_server_shutdown_and_notify(cs->core, cq, &cs->shutdown_tag);
      grpc_completion_queue_pluck(cq, &cs->shutdown_tag,
                                  gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
      prpc__cq_destroy(cq, 1);
    }
    grpc_server_destroy(cs->core);
    free(cs->handles);
  }
  /* The loop after the servers, whose queue it is; then nothing runs. */
  prpc__loop_unref(srv->loop);
  prpc__pool_destroy(srv->pool);
  prpc__calls_free(srv);
  for (size_t i = 0; i < srv->n_hooks; i++)
    if (srv->hooks[i].hook->destroy)
      srv->hooks[i].hook->destroy(srv->hooks[i].data);
  for (size_t i = 0; i < srv->n_services; i++)
    free(srv->service_names[i]);
  free(srv->service_names);
  free(srv->service_descs);
  free(srv->rules);
  close(srv->stop[0]);
  close(srv->stop[1]);
  free(srv->methods);
  free(srv->listeners);
  free(srv->adopted_fds);
  pthread_mutex_destroy(&srv->mu);
  pthread_cond_destroy(&srv->cv);
  pthread_mutex_destroy(&srv->calls_mu);
  pthread_cond_destroy(&srv->calls_cv);
  free(srv);
  prpc__core_unref();
  prpc__error_thaw();
}
