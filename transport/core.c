/* The one place that calls the parts of the gRPC core API that change
 * between releases: initialisation, channel and server construction,
 * credentials and listeners. Written against gRPC core 1.51 (Debian 12);
 * the build refuses other versions unless PRPC_ALLOW_UNTESTED_GRPC is set.
 * Call and completion-queue functions, stable since 1.0, are used directly
 * by the client and server runtimes. */
#include "../runtime/internal.h"

#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* gRPC core locks with absl::Mutex. Debian's abseil is built with its
 * deadlock detector on, which keeps a graph of every lock order: a good
 * part of the CPU of a small call. It is a debugging aid, so switch it
 * off, once, through the C++ entry point if this abseil has it
 * (PRPC_ABSL_DEADLOCK_DETECTION=1 keeps it). */
static void absl_fast_mutexes(void) {
  typedef void (*set_mode_fn)(int);
  const char *keep = getenv("PRPC_ABSL_DEADLOCK_DETECTION");
  if (keep && strcmp(keep, "1") == 0)
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

/* Why the last unref rings a doorbell before grpc_shutdown()
 *
 * When a TCP/unix write of gRPC core 1.51 would block (EAGAIN: a large
 * message or a fast stream fills the socket buffer), the endpoint starts
 * a "backup poller" (iomgr/tcp_posix.cc) so that the pending write makes
 * progress even if the application polls no completion queue. It is a
 * closure on gRPC's default executor thread that loops on
 * grpc_pollset_work() over a private pollset, each round with a 10 s
 * deadline, and stops after the round in which the last pending write
 * finished. With the epoll1 engine all pollsets share one epoll set and
 * one thread at a time is the "designated poller" in epoll_wait(); when
 * that thread leaves, it hands the role to another waiting worker. So at
 * teardown, once our own threads stop polling, the backup poller is handed
 * the role and sits in epoll_wait() with up to 10 s left and no event to
 * come: every connection is already closed. grpc_shutdown() then joins the
 * executor threads (grpc_iomgr_shutdown -> Executor::ShutdownAll) and
 * waits those 10 s. Nothing in gRPC 1.51 kicks that poller; the C API
 * cannot reach its pollset, and grpc_shutdown_blocking() is the same join.
 *
 * What ends the round is any event in the shared epoll set. So before the
 * last grpc_shutdown() piperpc makes one: a socketpair whose one end
 * becomes a gRPC channel (grpc_channel_create_from_fd(), registered in
 * that epoll set), a call on it, then shutdown() of our end. gRPC sees EOF
 * only when some poller harvests that event: the backup poller if it is
 * in epoll_wait() (its round ends; no write is pending any more, so it
 * exits), else our own pluck below. The call completes (UNAVAILABLE) once
 * the transport has seen the EOF, so by then the event has been consumed.
 * The call's deadline (2 s) bounds the wait whatever happens. Cost: one
 * channel and one call over a socketpair, once per last unref; a whole
 * teardown in tests/e2e_exit.c takes 2-3 ms on average.
 *
 * Left open: a backup poller that starts its round while our pluck holds
 * the poller role (a write blocked at the very moment of the last unref)
 * is handed the role after us and can still wait out its 10 s. Only
 * closing connections with writes still pending gets there.
 *
 * tests/e2e_exit.c (teardown_is_quick) checks it: without this, 16 of 40
 * teardowns after a stream of large messages took 10 s; with it, none of
 * 300. */
static void wake_pollers(void) {
  int sv[2];
  grpc_channel_credentials *creds;
  grpc_channel *ch;
  grpc_completion_queue *cq;
  grpc_call *call;
  grpc_op ops[4];
  grpc_metadata_array headers, trailers;
  grpc_status_code status;
  grpc_slice details = grpc_empty_slice();
  grpc_slice method = grpc_slice_from_static_string("/prpc.Shutdown/Wake");
  gpr_timespec deadline = prpc__deadline_from_ms(2000);
  int tag;

  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return;
  creds = grpc_insecure_credentials_create();
  /* Takes sv[0]: gRPC core closes it with the channel. */
  ch = grpc_channel_create_from_fd("prpc-shutdown-wake", sv[0], creds, NULL);
  grpc_channel_credentials_release(creds);
  if (!ch) {
    close(sv[1]);
    return;
  }
  cq = grpc_completion_queue_create_for_pluck(NULL);
  call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                  method, NULL, deadline, NULL);
  grpc_metadata_array_init(&headers);
  grpc_metadata_array_init(&trailers);
  memset(ops, 0, sizeof(ops));
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[2].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[2].data.recv_initial_metadata.recv_initial_metadata = &headers;
  ops[3].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[3].data.recv_status_on_client.trailing_metadata = &trailers;
  ops[3].data.recv_status_on_client.status = &status;
  ops[3].data.recv_status_on_client.status_details = &details;
  if (call && grpc_call_start_batch(call, ops, 4, &tag, NULL) == GRPC_CALL_OK) {
    shutdown(sv[1], SHUT_RDWR); /* the doorbell */
    grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME),
                                NULL);
  }
  if (call)
    grpc_call_unref(call);
  grpc_metadata_array_destroy(&headers);
  grpc_metadata_array_destroy(&trailers);
  grpc_slice_unref(details);
  grpc_channel_destroy(ch);
  prpc__cq_destroy(cq, 1);
  close(sv[1]);
}

void prpc__core_unref(void) {
  if (atomic_fetch_sub(&core_refs, 1) == 1)
    wake_pollers();
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
 * libgrpc 1.51 but declared only in an internal C++ header, so it is bound
 * here by its C++ symbol name. gRPC C++ reads it the same way for its
 * interop server's expect_compressed checks. */
extern uint32_t prpc__grpc_message_flags(grpc_call *call) __asm__(
    "_Z37grpc_call_test_only_get_message_flagsP9grpc_call");

int prpc__core_last_message_compressed(grpc_call *call) {
  return (prpc__grpc_message_flags(call) & 0xc0000000u) != 0;
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

int64_t prpc__ms_until(gpr_timespec deadline) {
  if (gpr_time_cmp(deadline, gpr_inf_future(deadline.clock_type)) == 0)
    return -1;
  gpr_timespec now = gpr_now(deadline.clock_type);
  if (gpr_time_cmp(deadline, now) <= 0)
    return 0;
  gpr_timespec left = gpr_time_sub(deadline, now);
  return (int64_t)left.tv_sec * 1000 + left.tv_nsec / 1000000;
}
