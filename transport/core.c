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
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

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

void prpc__core_ref(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, absl_fast_mutexes);
  grpc_init();
}

void prpc__core_unref(void) { grpc_shutdown(); }

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
