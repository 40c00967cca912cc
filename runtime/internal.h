/* This file is private to piperpc: nothing here is part of the API. */
#ifndef PRPC_INTERNAL_H
#define PRPC_INTERNAL_H

#include <piperpc/piperpc.h>

#include <grpc/grpc.h>
#include <grpc/byte_buffer.h>
#include <grpc/compression.h>
#include <grpc/support/time.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/types.h>
#include <time.h>

#define PRPC__UNUSED(x) ((void)(x))
#define PRPC__STR2(x) #x
#define PRPC__STR(x) PRPC__STR2(x)

/* ThreadSanitizer does not see the synchronization inside gRPC core, which
 * is not instrumented: a tag handed to grpc_call_start_batch() or
 * grpc_server_request_*() on one thread and returned by the completion
 * queue on another looks unsynchronized to it, though gRPC orders the two.
 * PRPC__TSAN_RELEASE(tag) before handing a tag over and
 * PRPC__TSAN_ACQUIRE(tag) after the queue returns it tell TSan exactly that
 * happens-before edge and no other. Nothing in other builds. */
#if defined(__SANITIZE_THREAD__)
#define PRPC__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PRPC__TSAN 1
#endif
#endif
#ifdef PRPC__TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define PRPC__TSAN_RELEASE(p) __tsan_release((void *)(p))
#define PRPC__TSAN_ACQUIRE(p) __tsan_acquire((void *)(p))
#else
#define PRPC__TSAN_RELEASE(p) ((void)0)
#define PRPC__TSAN_ACQUIRE(p) ((void)0)
#endif

#if defined(__GNUC__)
#define PRPC__PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define PRPC__PRINTF(a, b)
#endif

/* ---- errors (runtime/error.c) ---- */

/* Records a detail message for prpc_last_error() and returns err. */
int prpc__fail(int err, const char *fmt, ...) PRPC__PRINTF(2, 3);
void prpc__clear_error(void);
/* Between freeze and thaw (nested: counted) prpc__fail() records nothing:
 * the public functions that return nothing (destroy, shutdown) keep
 * prpc_last_error() as it was, since error paths call them before they
 * print it. */
void prpc__error_freeze(void);
void prpc__error_thaw(void);

/* ---- logging (runtime/log.c) ---- */
#define PRPC__LOG_DEBUG PRPC_LOG_DEBUG
#define PRPC__LOG_INFO PRPC_LOG_INFO
#define PRPC__LOG_WARN PRPC_LOG_WARN
#define PRPC__LOG_ERROR PRPC_LOG_ERROR
void prpc__log(int level, const char *fmt, ...) PRPC__PRINTF(2, 3);
/* A line about one call: its method and peer go to the sink apart. */
void prpc__log_call(int level, const char *method, const char *peer,
                    const char *fmt, ...) PRPC__PRINTF(4, 5);
int prpc__log_enabled(int level);

/* For log lines a peer can cause at will (a refused connection, a denied
 * call): the first is written, then at most one every
 * PRPC__RATE_INTERVAL_S, preceded by the count of those held back.
 * Thread-safe. Zero-initialised. */
#define PRPC__RATE_INTERVAL_S 10
typedef struct prpc__rate {
  long long last_s;
  unsigned long long suppressed;
  int logged;
} prpc__rate;
/* 1 if a line of this kind may be written now. */
int prpc__rate_ok(prpc__rate *r);

/* ---- targets (transport/target.c) ---- */

typedef enum prpc__target_kind {
  PRPC__TARGET_UNIX,
  PRPC__TARGET_ABSTRACT,
  PRPC__TARGET_TCP,
  PRPC__TARGET_FD
} prpc__target_kind;

#define PRPC__UNIX_PATH_MAX 107 /* sizeof(sun_path) - 1 */
/* Room for a listener's or a peer's name: "unix-abstract:" and a name, a
 * TCP host and port, "ipv6:[...]:port". */
#define PRPC__NAME_MAX 320

typedef struct prpc__target {
  prpc__target_kind kind;
  char path[PRPC__UNIX_PATH_MAX + 1]; /* unix path or abstract name */
  size_t path_len;
  char host[256]; /* TCP host, without brackets */
  int port;       /* TCP port; 0 only for servers */
  int fd;         /* fd:N */
  /* The address in the form gRPC core takes: for a client a URI
   * ("unix:/p", "ipv4:127.0.0.1:80", "dns:///h:80"), for a server
   * "host:port". */
  char core[300];
} prpc__target;

/* Parses s. for_server allows port 0. Returns 0 or PRPC_ETARGET with a
 * detail message. */
int prpc__target_parse(const char *s, int for_server, prpc__target *t);

/* ---- unix sockets (transport/unix.c) ---- */

/* The socket file a server created, found again through its directory's
 * descriptor: removed at shutdown only while it is still that socket. */
typedef struct prpc__sockfile {
  int dirfd; /* O_PATH descriptor of the parent directory, or -1 */
  char name[PRPC__UNIX_PATH_MAX + 1];
  dev_t dev;
  ino_t ino;
} prpc__sockfile;
#define PRPC__SOCKFILE_INIT {-1, "", 0, 0}

/* Creates a listening unix socket for t (UNIX or ABSTRACT) with the file
 * mode and group (-1: leave) given, without following a link or touching a
 * file it did not create (see transport/unix.c). Handles stale and live
 * socket files as prpc_server_add_listener documents; refuses a directory
 * every user may write without the sticky bit (-EPERM). Fills *file for a
 * socket file (dirfd -1 for an abstract one). Returns 0 and the fd, or a
 * negative code with a detail. */
int prpc__unix_listen(const prpc__target *t, unsigned mode, gid_t group,
                      prpc__sockfile *file, int *fd_out);
/* 1 while the file at the path is still the socket *file describes. */
int prpc__sockfile_is_ours(const prpc__sockfile *file);
/* Removes the socket file if it is still ours; closes the directory. */
void prpc__sockfile_remove(prpc__sockfile *file);
/* 1 when the peer of connected unix socket fd has closed it (or it
 * failed), seen without reading any of its data; one that has only shut
 * down its sending side has not. */
int prpc__fd_hung_up(int fd);

/* ---- access rules (transport/access.c) ---- */

enum { PRPC__RULE_UID, PRPC__RULE_GID, PRPC__RULE_ANY };

typedef struct prpc__rule {
  int allow;
  int kind;
  uint32_t id;
  char text[96]; /* as written, for logs: "deny uid:65534" */
} prpc__rule;

/* Parses "user:alice", "gid:4", "same-user", ... (see
 * prpc_server_add_rule()). Returns 0, -EINVAL or -ENOENT with a detail. */
int prpc__rule_parse(int allow, const char *who, prpc__rule *rule);
/* First matching rule decides: returns 1 allow or 0 deny, and the index of
 * the rule in *matched (n when none matched: denied, unless n is 0). */
int prpc__rules_check(const prpc__rule *rules, size_t n, uid_t uid,
                      gid_t gid, size_t *matched);
/* A group name or number. Returns 0, -EINVAL or -ENOENT. */
int prpc__group_parse(const char *s, gid_t *gid);

/* Peer credentials of a connected unix socket. Returns 0 or -errno. */
int prpc__unix_peer_cred(int fd, pid_t *pid, uid_t *uid, gid_t *gid);

/* ---- defaults ---- */
#define PRPC__HANDSHAKE_TIMEOUT_MS 5000
#define PRPC__MAX_CONCURRENT_STREAMS 100
#define PRPC__MAX_STREAM_THREADS 128

/* ---- accepting connections (transport/accept.c) ---- */

enum {
  PRPC__CONN_PENDING, /* accepted, waiting for the HTTP/2 preface */
  PRPC__CONN_GRPC,    /* handed to the server */
  PRPC__CONN_DENIED,  /* handed to the deny server */
  PRPC__CONN_HTTP,    /* handed to the HTTP/1.1 front end (server/http.c) */
  PRPC__CONN_CLOSED
};

/* One connection the acceptor accepted or adopted. Reference-counted: the
 * table holds one reference while the connection is open, and each call
 * bound to it one more, so that what a handler reads stays valid. Fields
 * are set before the connection is handed over and never change after. */
typedef struct prpc__conn {
  uint64_t id; /* unique in the process's life */
  int fd;      /* the number gRPC core names it by ("fd:N") */
  int state;
  int kind;        /* prpc__target_kind of its listener (FD: adopted) */
  size_t listener; /* index, or SIZE_MAX when adopted */
  int adopted;
  int inner; /* the server's own, for an HTTP connection: not counted */
  int denied;
  int have_cred; /* a unix peer: pid, uid and gid from SO_PEERCRED */
  pid_t pid;
  uid_t uid;
  gid_t gid;
  int exempt;   /* root or the server's own user: no per-uid budget */
  uint64_t key; /* the budget it counts against: uid or TCP address */
  dev_t dev;    /* the socket's identity, to tell when gRPC closed it */
  ino_t ino;
  char peer[PRPC__NAME_MAX]; /* "unix:/p", "ipv4:1.2.3.4:5" */
  int64_t deadline_ms, recheck_ms;     /* while pending */
  atomic_int refs;
} prpc__conn;

void prpc__conn_ref(prpc__conn *c);
void prpc__conn_unref(prpc__conn *c); /* NULL is ok */

typedef struct prpc__accept_opts {
  int max_connections;         /* allowed connections at once; 0: none */
  int max_connections_per_uid; /* 0: default, < 0: none */
  int handshake_timeout_ms;    /* <= 0: none */
  int idle_timeout_ms;         /* > 0: also bounds the preface */
  const prpc__rule *rules;     /* borrowed; must outlive the acceptor */
  size_t n_rules;
  /* Called on the accept thread: hand c->fd to gRPC core (the server, or
   * the deny server), or shut the server down. */
  void (*grpc)(void *data, prpc__conn *c);
  void (*deny)(void *data, prpc__conn *c);
  void (*hangup)(void *data);
  /* NULL: a connection that does not open with the HTTP/2 preface is
   * closed. Else it is handed here (allowed or denied: c->denied tells),
   * on the accept thread; the callee owns c->fd, and c stays in the table
   * (counted against the budgets) until c->fd is closed. */
  void (*http)(void *data, prpc__conn *c);
  void *data;
} prpc__accept_opts;

typedef struct prpc__acceptor prpc__acceptor;
int prpc__acceptor_create(const prpc__accept_opts *o, prpc__acceptor **out);
/* Before start. Takes the listening fd; name is for logs and peers. */
int prpc__acceptor_add_listener(prpc__acceptor *a, int fd, int kind,
                                const char *name);
/* Before start. Takes a connected socket (fd:N); with watch_hangup the
 * hangup callback runs once every such socket's peer has gone. */
int prpc__acceptor_adopt(prpc__acceptor *a, int fd, int watch_hangup);
int prpc__acceptor_start(prpc__acceptor *a);
/* 1 if the calling thread is the accept thread. */
int prpc__acceptor_is_thread(const prpc__acceptor *a);
/* Stops accepting and closes the listening sockets. From the accept thread
 * itself it only asks; a later stop or destroy joins. */
void prpc__acceptor_stop(prpc__acceptor *a);
/* The record of the connection gRPC core calls "fd:N", with a reference
 * (release with prpc__conn_unref), or NULL when N is not, or no longer, a
 * connection accepted here. */
prpc__conn *prpc__acceptor_bind(prpc__acceptor *a, int fd);
/* Hands fd (one end of a socketpair the server made) to gRPC core as a
 * connection on behalf of parent: calls on it see parent's peer and
 * credentials, and it counts against no budget (parent does). Takes fd.
 * Returns 0 or -ENOMEM (fd closed). Any thread. */
int prpc__acceptor_inner(prpc__acceptor *a, const prpc__conn *parent, int fd);
void prpc__acceptor_stats(prpc__acceptor *a, int *open,
                          uint64_t *refused);
void prpc__acceptor_destroy(prpc__acceptor *a);

/* ---- TCP listeners (transport/tcp.c) ---- */

/* Binds and listens on t (TCP): every address the host resolves to, on
 * one port (port 0: a free one, the same for all). Fills fds (up to max)
 * and *n, and *port. Returns 0, or -EADDRINUSE, -EACCES, -EADDRNOTAVAIL
 * (no such local address, or the host does not resolve), or another
 * -errno, with a detail. */
int prpc__tcp_listen(const prpc__target *t, int *fds, size_t max, size_t *n,
                     int *port);

/* ---- gRPC core wrapper (transport/core.c) ---- */

/* Reference-counted grpc_init()/grpc_shutdown(). */
void prpc__core_ref(void);
void prpc__core_unref(void);

/* Channel args from sizes (0: default), an authority (NULL: default), a
 * default compression algorithm (-1: none) and a TLS name override (NULL:
 * none). Fills args[] (at least 5 slots) and returns how many were used. */
size_t prpc__core_size_args(grpc_arg *args, int max_send, int max_recv,
                            const char *authority, int compression,
                            const char *tls_name);
/* Server channel args that close connections idle for idle_ms (no call in
 * flight, or a handshake never completed); nothing for idle_ms <= 0. Fills
 * args[] (at least 2 slots) and returns how many were used. */
size_t prpc__core_idle_args(grpc_arg *args, int idle_ms);
/* Args of the server that answers denied peers: close their connections
 * a second or so after they were made. Fills args[] (3 slots). */
size_t prpc__core_deny_args(grpc_arg *args);
/* The server's SETTINGS_MAX_CONCURRENT_STREAMS. Fills args[0]. */
size_t prpc__core_streams_arg(grpc_arg *args, int max_streams);
/* Parses a compression algorithm name; returns 0 or -EINVAL. */
int prpc__core_compression(const char *name, grpc_compression_algorithm *out);
/* 1 if the last message received on call came compressed on the wire, 0
 * if not, -ENOTSUP when this libgrpc does not tell (transport/core.c). */
int prpc__core_last_message_compressed(grpc_call *call);
/* The metadata key that asks gRPC core to compress a call's messages
 * (public in <grpc/compression.h>). */
#define PRPC__COMPRESSION_MD_KEY GRPC_COMPRESSION_REQUEST_ALGORITHM_MD_KEY

/* With tls NULL an insecure channel. Returns NULL, with the code in *err and
 * a detail, on failure (unreadable file, ...). */
grpc_channel *prpc__core_channel_create(const prpc__target *t,
                                        const grpc_channel_args *args,
                                        const prpc_tls_opts *tls, int *err);
/* Listens on addr with TLS. Returns the port (> 0) or a negative code with
 * a detail. */
int prpc__core_server_add_tls(grpc_server *srv, const char *addr,
                              const prpc_tls_opts *tls);
grpc_server *prpc__core_server_create(const grpc_channel_args *args);
/* Returns the bound port (> 0) or 0 on failure. */
int prpc__core_server_add_tcp(grpc_server *srv, const char *addr);
/* Hands a connected socket to the server; the server owns fd afterwards. */
void prpc__core_server_add_fd(grpc_server *srv, int fd);

/* Shuts a completion queue down, drains it, destroys it. */
void prpc__cq_destroy(grpc_completion_queue *cq, int pluck);

/* ---- time ---- */
gpr_timespec prpc__deadline_from_ms(int64_t timeout_ms);
int64_t prpc__ms_until(gpr_timespec deadline); /* -1 for infinite */
/* *ts = now on clock + ms (ms >= 0), for pthread_cond_timedwait() on a
 * condition variable of that clock. */
void prpc__timespec_in(struct timespec *ts, clockid_t clock, int64_t ms);

/* ---- byte buffers and messages (runtime/message.c) ---- */

/* Encodes msg with the method's codec into a new byte buffer (caller owns;
 * grpc_byte_buffer_destroy). Returns NULL on failure. */
grpc_byte_buffer *prpc__encode(const prpc_codec *codec, const void *type,
                               const void *msg);
/* Decodes a received buffer; NULL if it is not a valid message, with a
 * static sentence in *why ("it nests more than 100 messages deep", ...).
 * A message nesting deeper than PRPC_MAX_DEPTH is never decoded. */
void *prpc__decode(const prpc_codec *codec, const void *type,
                   grpc_byte_buffer *bb, const prpc_allocator *alloc,
                   const char **why);
/* Decodes bb into msg (caller storage) with codec->decode_into (after the
 * depth check, as prpc__decode()). A message
 * that came in several slices is joined in memory from scratch (NULL: on the
 * stack up to 1 KiB, else gRPC's reader). Returns NULL, or a static sentence
 * saying why it did not decode. */
const char *prpc__decode_into(const prpc_codec *codec, const void *type,
                              grpc_byte_buffer *bb, void *msg,
                              const prpc_allocator *scratch);

/* ---- metadata (runtime/metadata.c) ---- */

/* Converts prpc metadata, plus one more entry when extra_key is not NULL,
 * to a grpc_metadata array that borrows the strings. *out is malloc'd
 * (caller frees) or NULL for none; slices are static references, nothing to
 * unref. Returns 0 or -ENOMEM. */
int prpc__md_to_core(const prpc_metadata *md, const char *extra_key,
                     const char *extra_value, grpc_metadata **out,
                     size_t *count);
/* Appends a copy of every entry in arr to md. Returns 0 or -ENOMEM. */
int prpc__md_from_core(prpc_metadata *md, const grpc_metadata_array *arr);
int prpc__md_key_ok(const char *key);

/* Copies a slice into a new NUL-terminated string (malloc'd), or NULL. */
char *prpc__slice_strdup(grpc_slice s);

#endif /* PRPC_INTERNAL_H */
