/* The one place that calls the parts of the gRPC core API that change
 * between releases: initialisation, channel and server construction,
 * credentials and listeners. Written against gRPC core 1.51 (Debian 12);
 * the build refuses other versions unless PRPC_ALLOW_UNTESTED_GRPC is set.
 * Call and completion-queue functions, stable since 1.0, are used directly
 * by the client and server runtimes. */
#include "../runtime/internal.h"

#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Shortcuts into what gRPC core and abseil do not publish
 *
 * Three things piperpc does reach for outside gRPC core's public C API:
 * abseil's switch for its mutex deadlock detector (speed), the flags of the
 * last message a call received (whether it came compressed), and gRPC's
 * poller wakeup at shutdown (a prompt exit). Each is looked up at run time
 * (dlsym, /proc), used only when it is found and gRPC core is the version
 * piperpc was built against, and its absence costs only speed, a few
 * seconds at exit, or an answer of -ENOTSUP from the compressed() queries:
 * a libgrpc without them (a security update, another build) loads, calls
 * and shuts down the same. PRPC_NO_GRPC_INTERNALS=1 in the environment
 * switches all three off; the tests run the fallbacks that way. */
static int internals_ok(void) {
  static atomic_int ok = -1;
  int v = atomic_load(&ok);
  if (v < 0) {
    const char *off = getenv("PRPC_NO_GRPC_INTERNALS");
    v = !(off && strcmp(off, "1") == 0) &&
        strcmp(grpc_version_string(), PRPC__GRPC_CORE_VERSION) == 0;
    atomic_store(&ok, v);
  }
  return v;
}

/* gRPC core locks with absl::Mutex. Debian's abseil is built with its
 * deadlock detector on, which keeps a graph of every lock order: a good
 * part of the CPU of a small call. It is a debugging aid, so switch it
 * off, once, through the C++ entry point if this abseil has it
 * (PRPC_ABSL_DEADLOCK_DETECTION=1 keeps it). */
static void absl_fast_mutexes(void) {
  typedef void (*set_mode_fn)(int);
  const char *keep = getenv("PRPC_ABSL_DEADLOCK_DETECTION");
  if ((keep && strcmp(keep, "1") == 0) || !internals_ok())
    return;
  set_mode_fn set_mode = (set_mode_fn)(uintptr_t)dlsym(
      RTLD_DEFAULT,
      "_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE");
  if (!set_mode)
    set_mode = (set_mode_fn)(uintptr_t)dlsym(
        RTLD_DEFAULT,
        "_ZN4absl28SetMutexDeadlockDetectionModeENS_15OnDeadlockCycleE");
  if (set_mode)
    set_mode(0); /* absl::OnDeadlockCycle::kIgnore */
}

/* piperpc's own references to gRPC core: one per live channel or server. */
static atomic_int core_refs;

void prpc__core_ref(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, absl_fast_mutexes);
  atomic_fetch_add(&core_refs, 1);
  grpc_init();
}

/* Why the last unref kicks gRPC's poller while grpc_shutdown() runs
 *
 * When a TCP/unix write of gRPC core 1.51 would block (EAGAIN: a large
 * message or a fast stream fills the socket buffer), the endpoint starts
 * a "backup poller" (iomgr/tcp_posix.cc) so that the pending write makes
 * progress even if the application polls no completion queue. It is a
 * closure on gRPC's default executor that loops on grpc_pollset_work()
 * over a private pollset, each round with a 10 s deadline, and stops after
 * a round that ends with no write pending. Only an event in gRPC's epoll
 * set (epoll1 engine: one set, one "designated poller" thread at a time)
 * or a kick ends a round early; nothing kicks it at shutdown. Two ways it
 * stalls grpc_shutdown() for 10 s (both seen with gdb):
 *  - a round is in epoll_wait() on the executor thread once every
 *    connection is closed, and grpc_shutdown() joins that thread
 *    (grpc_iomgr_shutdown -> Executor::ShutdownAll);
 *  - a round was still queued on the executor (connection teardown that
 *    gRPC finishes asynchronously rescheduled it), and ShutdownAll runs
 *    the queued closures on the thread calling grpc_shutdown(): a fresh
 *    10 s epoll_wait() in our own thread, with no other thread left.
 * The C API cannot reach that pollset, grpc_shutdown_blocking() is the same
 * join, and a gRPC channel used as a doorbell just before grpc_shutdown()
 * fixed only the first case (measured).
 *
 * So the last unref kicks the designated poller the way gRPC itself does:
 * by writing to the global wakeup eventfd of its epoll set. piperpc finds
 * it in /proc/self/fdinfo of the epoll descriptors (the registration whose
 * data pointer lies inside libgrpc: &global_wakeup_fd, a static of
 * ev_epoll1_linux.cc; connections carry heap pointers), keeps a dup of it,
 * and while grpc_shutdown() runs a helper thread writes to it every
 * 20 ms: each write ends the round in progress, wherever it runs. A kick
 * when nobody polls only bumps a counter. The dup keeps the eventfd alive
 * after gRPC closes its own descriptor, so no write ever lands on a reused
 * descriptor number. If it is not found (another poll engine: the
 * GRPC_POLL_STRATEGY variable; no /proc), grpc_shutdown() runs alone.
 *
 * tests/e2e_exit.c (teardown_is_quick) checks it. */

/* A dup of gRPC's epoll wakeup eventfd, or -1. */
static int grpc_wakeup_fd_dup(void) {
  Dl_info lib, hit;
  DIR *dir;
  struct dirent *ent;
  int found = -1;
  if (!dladdr((void *)(uintptr_t)grpc_init, &lib) ||
      !(dir = opendir("/proc/self/fd")))
    return -1;
  while (found < 0 && (ent = readdir(dir)) != NULL) {
    char path[300], link[64], line[256];
    ssize_t n;
    FILE *f;
    if (ent->d_name[0] == '.')
      continue;
    snprintf(path, sizeof(path), "/proc/self/fd/%s", ent->d_name);
    if ((n = readlink(path, link, sizeof(link) - 1)) < 0)
      continue;
    link[n] = '\0';
    if (strcmp(link, "anon_inode:[eventpoll]") != 0)
      continue;
    snprintf(path, sizeof(path), "/proc/self/fdinfo/%s", ent->d_name);
    if (!(f = fopen(path, "re")))
      continue;
    while (found < 0 && fgets(line, sizeof(line), f)) {
      int tfd;
      unsigned events;
      unsigned long long data;
      if (sscanf(line, "tfd: %d events: %x data: %llx", &tfd, &events,
                 &data) != 3 ||
          !dladdr((void *)(uintptr_t)data, &hit) ||
          hit.dli_fbase != lib.dli_fbase)
        continue;
      snprintf(path, sizeof(path), "/proc/self/fd/%d", tfd);
      if ((n = readlink(path, link, sizeof(link) - 1)) < 0)
        continue;
      link[n] = '\0';
      if (strcmp(link, "anon_inode:[eventfd]") == 0)
        found = fcntl(tfd, F_DUPFD_CLOEXEC, 0);
    }
    fclose(f);
  }
  closedir(dir);
  return found;
}

typedef struct kicker {
  int fd;
  int stop;
  pthread_mutex_t mu;
  pthread_cond_t cv;
} kicker;

static void *kick_loop(void *arg) {
  kicker *k = arg;
  uint64_t one = 1;
  struct timespec at;
  pthread_mutex_lock(&k->mu);
  while (!k->stop) {
    if (write(k->fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
      break;
    prpc__timespec_in(&at, CLOCK_MONOTONIC, 20);
    pthread_cond_timedwait(&k->cv, &k->mu, &at);
  }
  pthread_mutex_unlock(&k->mu);
  return NULL;
}

/* grpc_shutdown() with gRPC's poller kicked every 20 ms meanwhile. */
static void shutdown_kicked(void) {
  kicker k;
  pthread_condattr_t attr;
  pthread_t th;
  int started = 0;
  k.fd = internals_ok() ? grpc_wakeup_fd_dup() : -1;
  k.stop = 0;
  if (k.fd >= 0) {
    pthread_mutex_init(&k.mu, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&k.cv, &attr);
    pthread_condattr_destroy(&attr);
    started = pthread_create(&th, NULL, kick_loop, &k) == 0;
  }
  grpc_shutdown();
  if (started) {
    pthread_mutex_lock(&k.mu);
    k.stop = 1;
    pthread_cond_signal(&k.cv);
    pthread_mutex_unlock(&k.mu);
    pthread_join(th, NULL);
  }
  if (k.fd >= 0) {
    pthread_cond_destroy(&k.cv);
    pthread_mutex_destroy(&k.mu);
    close(k.fd);
  }
}

void prpc__core_unref(void) {
  if (atomic_fetch_sub(&core_refs, 1) == 1)
    shutdown_kicked();
  else
    grpc_shutdown();
}

size_t prpc__core_size_args(grpc_arg *args, int max_send, int max_recv,
                            const char *authority, int compression,
                            const char *tls_name) {
  size_t n = 0;
  if (tls_name) {
    args[n].type = GRPC_ARG_STRING;
    args[n].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
    args[n].value.string = (char *)tls_name;
    n++;
  }
  if (compression >= 0) {
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)GRPC_COMPRESSION_CHANNEL_DEFAULT_ALGORITHM;
    args[n].value.integer = compression;
    n++;
  }
  if (max_send > 0) {
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[n].value.integer = max_send;
    n++;
  }
  if (max_recv > 0) {
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[n].value.integer = max_recv;
    n++;
  }
  if (authority) {
    args[n].type = GRPC_ARG_STRING;
    args[n].key = (char *)GRPC_ARG_DEFAULT_AUTHORITY;
    args[n].value.string = (char *)authority;
    n++;
  }
  return n;
}

size_t prpc__core_idle_args(grpc_arg *args, int idle_ms) {
  size_t n = 0;
  if (idle_ms <= 0)
    return 0;
  /* The max-age filter of a server channel sends GOAWAY to a connection
   * that has had no call for this long, and the transport then closes it.
   * gRPC core builds that filter into every server channel, the ones made
   * from our accepted fds (grpc_server_add_channel_from_fd) included, and
   * starts its timer when the channel is created, before any byte of the
   * HTTP/2 preface: a peer that connects and stalls is idle. */
  args[n].type = GRPC_ARG_INTEGER;
  args[n].key = (char *)GRPC_ARG_MAX_CONNECTION_IDLE_MS;
  args[n].value.integer = idle_ms;
  n++;
  /* gRPC core's own listeners (TCP) also time out the handshake (TLS). */
  args[n].type = GRPC_ARG_INTEGER;
  args[n].key = (char *)GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS;
  args[n].value.integer = idle_ms;
  n++;
  return n;
}

size_t prpc__core_deny_args(grpc_arg *args) {
  /* The max-age filter sends GOAWAY a second (less up to 10% jitter) after
   * the connection was made, and the transport closes it once the calls on
   * it have ended (at most a second later): a denied call is answered at
   * once. An idle one goes sooner. */
  args[0].type = GRPC_ARG_INTEGER;
  args[0].key = (char *)GRPC_ARG_MAX_CONNECTION_AGE_MS;
  args[0].value.integer = 1000;
  args[1].type = GRPC_ARG_INTEGER;
  args[1].key = (char *)GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS;
  args[1].value.integer = 1000;
  args[2].type = GRPC_ARG_INTEGER;
  args[2].key = (char *)GRPC_ARG_MAX_CONNECTION_IDLE_MS;
  args[2].value.integer = 500;
  return 3;
}

size_t prpc__core_streams_arg(grpc_arg *args, int max_streams) {
  /* Advertised in the server's HTTP/2 SETTINGS: a gRPC client queues calls
   * beyond it; a peer that opens more anyway loses its connection. */
  args[0].type = GRPC_ARG_INTEGER;
  args[0].key = (char *)GRPC_ARG_MAX_CONCURRENT_STREAMS;
  args[0].value.integer = max_streams;
  return 1;
}

int prpc__core_compression(const char *name, grpc_compression_algorithm *out) {
  if (!name || !grpc_compression_algorithm_parse(
                   grpc_slice_from_static_string(name), out))
    return -EINVAL;
  return 0;
}

/* gRPC core records the flags of the last received message, where
 * GRPC_WRITE_INTERNAL_COMPRESS (0x80000000) or, once the decompression
 * filter has inflated it, GRPC_WRITE_INTERNAL_TEST_ONLY_WAS_COMPRESSED
 * (0x40000000) says it came compressed. The accessor is exported by
 * libgrpc 1.51 but declared only in an internal C++ header: it is looked up
 * by its C++ symbol name at run time (gRPC C++ reads it the same way for
 * its interop server's expect_compressed checks), so that a libgrpc
 * without it still loads. */
typedef uint32_t (*message_flags_fn)(grpc_call *call);

static message_flags_fn message_flags;

static void find_message_flags(void) {
  if (internals_ok())
    message_flags = (message_flags_fn)(uintptr_t)dlsym(
        RTLD_DEFAULT, "_Z37grpc_call_test_only_get_message_flagsP9grpc_call");
}

int prpc__core_last_message_compressed(grpc_call *call) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, find_message_flags);
  if (!message_flags)
    return -ENOTSUP;
  return (message_flags(call) & 0xc0000000u) != 0;
}

/* Reads a whole (PEM) file into a NUL-terminated string, or NULL with a
 * detail. */
static char *read_file(const char *what, const char *path) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  long n;
  if (!f) {
    prpc__fail(-errno, "cannot read the %s %s: %s", what, path,
               strerror(errno));
    return NULL;
  }
  if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
      fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) != NULL) {
    if (fread(buf, 1, (size_t)n, f) == (size_t)n) {
      buf[n] = '\0';
    } else {
      free(buf);
      buf = NULL;
    }
  }
  fclose(f);
  if (!buf)
    prpc__fail(-EIO, "cannot read the %s %s", what, path);
  return buf;
}

/* The code read_file() failed with: -errno of the open, or -EIO. */
static int read_error(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return -errno;
  fclose(f);
  return -EIO;
}

typedef struct pem_set {
  char *cert, *key, *ca;
} pem_set;

static void pem_free(pem_set *p) {
  free(p->cert);
  free(p->key);
  free(p->ca);
}

/* Loads the files tls names. Returns 0 or a negative code. */
static int pem_load(const prpc_tls_opts *tls, pem_set *p) {
  memset(p, 0, sizeof(*p));
  if ((tls->cert_file != NULL) != (tls->key_file != NULL))
    return prpc__fail(-EINVAL, "TLS: give both a certificate and its key");
  if (tls->cert_file &&
      !(p->cert = read_file("certificate", tls->cert_file)))
    return read_error(tls->cert_file);
  if (tls->key_file && !(p->key = read_file("private key", tls->key_file))) {
    pem_free(p);
    return read_error(tls->key_file);
  }
  if (tls->ca_file && !(p->ca = read_file("CA file", tls->ca_file))) {
    pem_free(p);
    return read_error(tls->ca_file);
  }
  return 0;
}

grpc_channel *prpc__core_channel_create(const prpc__target *t,
                                        const grpc_channel_args *args,
                                        const prpc_tls_opts *tls, int *err) {
  grpc_channel_credentials *creds;
  grpc_channel *ch;
  pem_set pem;
  *err = PRPC_ECORE;
  if (tls) {
    grpc_ssl_pem_key_cert_pair pair;
    if ((*err = pem_load(tls, &pem)) != 0)
      return NULL;
    *err = PRPC_ECORE;
    pair.private_key = pem.key;
    pair.cert_chain = pem.cert;
    creds = grpc_ssl_credentials_create(pem.ca, pem.cert ? &pair : NULL, NULL,
                                        NULL);
    pem_free(&pem);
    if (!creds) {
      prpc__fail(PRPC_ECORE, "gRPC core rejected the TLS settings");
      return NULL;
    }
  } else {
    creds = grpc_insecure_credentials_create();
  }
  if (t->kind == PRPC__TARGET_FD)
    ch = grpc_channel_create_from_fd(t->core, t->fd, creds, args);
  else
    ch = grpc_channel_create(t->core, creds, args);
  grpc_channel_credentials_release(creds);
  if (!ch)
    prpc__fail(PRPC_ECORE, "gRPC core could not create a channel to %s",
               t->core);
  return ch;
}

int prpc__core_server_add_tls(grpc_server *srv, const char *addr,
                              const prpc_tls_opts *tls) {
  grpc_ssl_pem_key_cert_pair pair;
  grpc_server_credentials *creds;
  pem_set pem;
  int rc, port;
  if (!tls->cert_file || !tls->key_file)
    return prpc__fail(-EINVAL, "TLS listener %s: a certificate and a key "
                               "are required", addr);
  if (tls->require_client_cert && !tls->ca_file)
    return prpc__fail(-EINVAL, "TLS listener %s: verifying client "
                               "certificates needs a CA file", addr);
  if ((rc = pem_load(tls, &pem)) != 0)
    return rc;
  pair.private_key = pem.key;
  pair.cert_chain = pem.cert;
  creds = grpc_ssl_server_credentials_create_ex(
      pem.ca, &pair, 1,
      tls->require_client_cert
          ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
          : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
      NULL);
  pem_free(&pem);
  if (!creds)
    return prpc__fail(PRPC_ECORE, "gRPC core rejected the TLS settings");
  port = grpc_server_add_http2_port(srv, addr, creds);
  grpc_server_credentials_release(creds);
  if (port <= 0)
    return prpc__fail(-EADDRINUSE,
                      "cannot listen on %s: the address is in use, cannot be "
                      "resolved, or the certificate or key is not valid PEM",
                      addr);
  return port;
}

grpc_server *prpc__core_server_create(const grpc_channel_args *args) {
  return grpc_server_create(args, NULL);
}

int prpc__core_server_add_tcp(grpc_server *srv, const char *addr) {
  grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
  int port = grpc_server_add_http2_port(srv, addr, creds);
  grpc_server_credentials_release(creds);
  return port;
}

void prpc__core_server_add_fd(grpc_server *srv, int fd) {
  grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
  grpc_server_add_channel_from_fd(srv, fd, creds);
  grpc_server_credentials_release(creds);
}

void prpc__cq_destroy(grpc_completion_queue *cq, int pluck) {
  grpc_completion_queue_shutdown(cq);
  /* The queue reports GRPC_QUEUE_SHUTDOWN once it is empty. */
  for (;;) {
    gpr_timespec inf = gpr_inf_future(GPR_CLOCK_REALTIME);
    grpc_event ev = pluck ? grpc_completion_queue_pluck(cq, NULL, inf, NULL)
                          : grpc_completion_queue_next(cq, inf, NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN)
      break;
  }
  grpc_completion_queue_destroy(cq);
}

gpr_timespec prpc__deadline_from_ms(int64_t timeout_ms) {
  if (timeout_ms <= 0)
    return gpr_inf_future(GPR_CLOCK_MONOTONIC);
  return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                      gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
}

void prpc__timespec_in(struct timespec *ts, clockid_t clock, int64_t ms) {
  clock_gettime(clock, ts);
  ts->tv_sec += (time_t)(ms / 1000);
  ts->tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

int64_t prpc__ms_until(gpr_timespec deadline) {
  if (gpr_time_cmp(deadline, gpr_inf_future(deadline.clock_type)) == 0)
    return -1;
  gpr_timespec now = gpr_now(deadline.clock_type);
  if (gpr_time_cmp(deadline, now) <= 0)
    return 0;
  gpr_timespec left = gpr_time_sub(deadline, now);
  return (int64_t)left.tv_sec * 1000 + left.tv_nsec / 1000000;
}
