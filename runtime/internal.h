/* This file is private to piperpc: nothing here is part of the API. */
#ifndef PRPC_INTERNAL_H
#define PRPC_INTERNAL_H

#include <piperpc/piperpc.h>

#include <grpc/grpc.h>
#include <grpc/byte_buffer.h>
#include <grpc/compression.h>
#include <grpc/support/time.h>
#include <stdarg.h>
#include <sys/types.h>

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

/* ---- targets (transport/target.c) ---- */

typedef enum prpc__target_kind {
  PRPC__TARGET_UNIX,
  PRPC__TARGET_ABSTRACT,
  PRPC__TARGET_TCP,
  PRPC__TARGET_FD
} prpc__target_kind;

#define PRPC__UNIX_PATH_MAX 107 /* sizeof(sun_path) - 1 */

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

/* Creates a listening unix socket for t (UNIX or ABSTRACT) with the file
 * mode and group (-1: leave) given. Handles stale and live socket files as
 * prpc_server_add_listener documents. Returns 0 and the fd, or a negative
 * code with a detail. */
int prpc__unix_listen(const prpc__target *t, unsigned mode, gid_t group,
                      int *fd_out);

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
/* Parses a compression algorithm name; returns 0 or -EINVAL. */
int prpc__core_compression(const char *name, grpc_compression_algorithm *out);
/* 1 if the last message received on call came compressed on the wire. */
int prpc__core_last_message_compressed(grpc_call *call);
/* The metadata key that asks gRPC core to compress a call's messages. */
#define PRPC__COMPRESSION_MD_KEY "grpc-internal-encoding-request"

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

/* ---- the health service (server/health.c) ---- */
typedef struct prpc__health prpc__health;
/* Registers grpc.health.v1.Health on srv. */
int prpc__health_create(prpc_server *srv, prpc__health **out);
/* The services registered on the server (borrowed, must outlive h): they
 * report SERVING unless set otherwise. */
void prpc__health_known(prpc__health *h, const char *const *services,
                        size_t n);
int prpc__health_set(prpc__health *h, const char *service, int serving);
void prpc__health_all_down(prpc__health *h);
void prpc__health_destroy(prpc__health *h);

/* ---- the reflection service (server/reflection.c) ---- */
typedef struct prpc__reflection prpc__reflection;
struct prpc_service_desc;
/* Registers grpc.reflection.v1 and v1alpha ServerReflection on srv. On an
 * error after the first registration *out is set all the same: the server
 * must destroy it. */
int prpc__reflection_create(prpc_server *srv, prpc__reflection **out);
/* Indexes the descriptors of the services registered on the server (names
 * borrowed, must outlive r), before the server starts. Returns 0 or
 * -ENOMEM (reflection then knows only the service names). */
int prpc__reflection_build(prpc__reflection *r,
                           const struct prpc_service_desc *const *services,
                           const char *const *names, size_t n);
void prpc__reflection_destroy(prpc__reflection *r);

/* ---- time ---- */
gpr_timespec prpc__deadline_from_ms(int64_t timeout_ms);
int64_t prpc__ms_until(gpr_timespec deadline); /* -1 for infinite */

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
