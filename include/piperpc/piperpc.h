/* piperpc: typed gRPC services in C over local pipes.
 *
 * This is the one header an application includes. It declares:
 *   - API results and prpc_strerror()        (section 1)
 *   - RPC status and metadata                 (section 2)
 *   - channels and client calls               (section 3)
 *   - servers, handlers and the call context  (section 4)
 * Generated code (*.prpc.h) also includes <piperpc/method.h>, which holds the
 * method tables and the message codec interface.
 *
 * Ownership words used below: "borrowed" (read only during the call),
 * "copied", "must outlive X", "takes ownership", "caller owns; free with Y".
 *
 * Supported gRPC core: 1.51.x (Debian 12, pkg-config grpc 29.0.0). All calls
 * into gRPC core go through transport/core.c. */
#ifndef PRPC_PIPERPC_H
#define PRPC_PIPERPC_H

#include <stddef.h>
#include <stdint.h>
#include <grpc/status.h> /* grpc_status_code: what travels on the wire */

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define PRPC_API __attribute__((visibility("default")))
#define PRPC_MUST_CHECK __attribute__((warn_unused_result))
#else
#define PRPC_API
#define PRPC_MUST_CHECK
#endif

#define PRPC_VERSION_MAJOR 0
#define PRPC_VERSION_MINOR 1
#define PRPC_VERSION_PATCH 0
#define PRPC_VERSION_STRING "0.1.0"

/* Returns the library's version string with gRPC core's library version,
 * e.g. "0.1.0 (gRPC core library 29.0.0)" (core 29 is gRPC 1.51).
 * Static storage; never NULL. */
PRPC_API const char *prpc_version(void);

/* ---------------------------------------------------------------------- */
/* 1. API results                                                          */
/* ---------------------------------------------------------------------- */

/* Functions that create, bind, start or register return an int: 0 on
 * success, a negative errno value from the system (-ENOENT, -EADDRINUSE,
 * ...), or one of these codes. On failure prpc_last_error() holds a sentence
 * that names the problem (the bad part of the target, the path, ...). */
enum {
  PRPC_ETARGET = -500,  /* the target string is malformed */
  PRPC_ESTATE = -501,   /* wrong time: e.g. register after start */
  PRPC_ECORE = -502,    /* gRPC core refused the request */
  PRPC_EEXIST = -503,   /* a method path is already registered */
  PRPC_ECLOSED = -504,  /* the call or server has ended */
  PRPC_EMSG = -505,     /* a message could not be encoded or decoded */
  PRPC_EINUSE = -506,   /* a live server owns the socket path */
  PRPC_EFULL = -507     /* too much queued to send: wait for the peer */
};

/* Returns a static description of an API result (ours or -errno). Never
 * NULL. */
PRPC_API const char *prpc_strerror(int err);

/* Returns the detailed message of the last failed piperpc API call on this
 * thread, or "" if none. Thread-local storage, valid until the next piperpc
 * call on this thread that returns a result; the functions that return
 * nothing (the *_destroy(), prpc_server_shutdown(), prpc_call_cancel(),
 * the *_clear()) leave it as it is, so an error path may free what it
 * made before it prints the message. */
PRPC_API const char *prpc_last_error(void);

/* Logging. The library writes nothing to stdout and is quiet on stderr
 * unless something goes wrong (a denied peer, a refused connection, a
 * failed accept). PRPC_LOG=debug in the environment adds a line per call
 * (method, peer, status); PRPC_LOG=info adds start and shutdown lines.
 * gRPC core logs on its own: GRPC_VERBOSITY=DEBUG|INFO|ERROR and
 * GRPC_TRACE=api,http,... (see gRPC's doc/environment_variables.md). */
typedef enum prpc_log_level {
  PRPC_LOG_DEBUG = 0,
  PRPC_LOG_INFO = 1,
  PRPC_LOG_WARN = 2,
  PRPC_LOG_ERROR = 3
} prpc_log_level;

/* A log sink. method and peer are set for lines about one call, else NULL;
 * all strings are borrowed for the duration of the call. Called from any
 * thread, possibly at once from several. */
typedef void (*prpc_log_fn)(prpc_log_level level, const char *method,
                            const char *peer, const char *message,
                            void *user_data);

/* Sends the library's log lines at or above level to fn (NULL: back to
 * stderr); level -1 keeps the current threshold (PRPC_LOG or warning).
 * Thread-safe, at any time: a line being written meanwhile may still go to
 * the old sink, with its user_data (borrowed). */
PRPC_API void prpc_set_log(prpc_log_fn fn, void *user_data, int level);

/* ---------------------------------------------------------------------- */
/* 2. Status and metadata                                                  */
/* ---------------------------------------------------------------------- */

/* One metadata entry. Keys are lower case ASCII; keys ending in "-bin" carry
 * binary values (gRPC base64-encodes them on the wire), others printable
 * ASCII. value is NUL-terminated for convenience; value_len excludes it. */
typedef struct prpc_md {
  char *key;
  char *value;
  size_t value_len;
} prpc_md;

/* A list of metadata entries. Owns its entries. */
typedef struct prpc_metadata {
  prpc_md *items;
  size_t count;
  size_t capacity;
} prpc_metadata;
#define PRPC_METADATA_INIT {NULL, 0, 0}

/* Appends key/value (both copied). Returns 0, -ENOMEM, or -EINVAL for a key
 * gRPC would reject (empty, upper case, or characters outside [0-9a-z_.-]),
 * or a non-"-bin" value with bytes outside printable ASCII. */
PRPC_API int prpc_metadata_add(prpc_metadata *md, const char *key,
                               const void *value, size_t value_len);
/* prpc_metadata_add() with a NUL-terminated value. */
PRPC_API int prpc_metadata_add_str(prpc_metadata *md, const char *key,
                                   const char *value);
/* Returns the first entry with this key, or NULL. Borrowed from md. */
PRPC_API const prpc_md *prpc_metadata_get(const prpc_metadata *md,
                                          const char *key);
/* Frees every entry; md is back to PRPC_METADATA_INIT. NULL is ok. */
PRPC_API void prpc_metadata_clear(prpc_metadata *md);

/* How an RPC ended, with the details a caller may want. */
typedef struct prpc_status {
  grpc_status_code code; /* GRPC_STATUS_OK on success */
  char *message;         /* owned; NULL if the peer sent none */
  prpc_metadata headers; /* owned: the server's initial metadata */
  prpc_metadata trailers; /* owned: the server's trailing metadata */
  int local_error; /* 0 when the status came from the server or from gRPC
                      core (no connection, a passed deadline, ...); else
                      the piperpc result of a mistake or failure on this
                      side: -EINVAL (a NULL argument, the wrong method kind
                      or codec, an unknown compression name), PRPC_EMSG
                      (the request does not encode), -ENOMEM, PRPC_ECORE.
                      code and message then say the same
                      (INVALID_ARGUMENT, INTERNAL or RESOURCE_EXHAUSTED),
                      and prpc_last_error() too: a caller can tell its own
                      mistake from the server's answer. */
} prpc_status;
#define PRPC_STATUS_INIT \
  {GRPC_STATUS_OK, NULL, PRPC_METADATA_INIT, PRPC_METADATA_INIT, 0}

/* Frees message and metadata; st is back to PRPC_STATUS_INIT. NULL is ok. */
PRPC_API void prpc_status_clear(prpc_status *st);

/* Returns the canonical name of a status code ("OK", "UNAVAILABLE", ...), or
 * "UNKNOWN_CODE" for a value outside 0..16. Static storage. */
PRPC_API const char *prpc_status_name(grpc_status_code code);

/* ---------------------------------------------------------------------- */
/* 3. Channels and client calls                                            */
/* ---------------------------------------------------------------------- */

struct prpc_method_desc;

/* TLS settings for TCP, for a channel or a listener. Files are PEM and are
 * read when the channel or listener is created. */
typedef struct prpc_tls_opts {
  const char *cert_file; /* the server's certificate chain; for a client,
                            its certificate for mutual TLS (or NULL) */
  const char *key_file;  /* the private key of cert_file */
  const char *ca_file;   /* client: roots to verify the server (NULL: the
                            system's); server: roots to verify clients */
  int require_client_cert; /* server: 1 for mutual TLS: refuse clients
                              without a certificate signed by ca_file */
  const char *server_name; /* client: the name the server's certificate
                              must carry; NULL: the target's host */
} prpc_tls_opts;
#define PRPC_TLS_OPTS_INIT {NULL, NULL, NULL, 0, NULL}

/* An application's event loop, for asynchronous calls and handlers (see
 * section 6). Opaque. */
typedef struct prpc_loop prpc_loop;

/* Channel options; start from PRPC_CHANNEL_OPTS_INIT. */
typedef struct prpc_channel_opts {
  int max_send_bytes;    /* 0: gRPC default (no limit) */
  int max_recv_bytes;    /* 0: gRPC default (4 MiB) */
  const char *authority; /* borrowed; NULL: from the target */
  const char *compression; /* borrowed; default request compression:
                              "gzip", "deflate", or NULL for none */
  const prpc_tls_opts *tls; /* borrowed; TLS for a TCP target; NULL: none */
  prpc_loop *loop; /* where the callbacks of asynchronous calls run: NULL,
                      on piperpc's own thread (shared by such channels);
                      else the application's loop (see prpc_loop_create;
                      it must outlive the channel) */
} prpc_channel_opts;
#define PRPC_CHANNEL_OPTS_INIT {0, 0, NULL, NULL, NULL, NULL}

/* A channel carries calls to one server address and reconnects as needed.
 * Opaque. Thread-safe: any number of threads may call through one channel. */
typedef struct prpc_channel prpc_channel;

/* Creates a channel to target, which takes one of these forms:
 *   unix:/abs/path  unix:rel/path  unix:///abs/path   a unix socket file
 *   unix-abstract:name                                a Linux abstract socket
 *   host:port  [v6addr]:port  dns:host:port  dns:///host:port
 *   ipv4:a.b.c.d:port  ipv6:[addr]:port               TCP
 *   fd:N                                              a connected socket fd
 * The target is checked before anything connects: a malformed one returns
 * PRPC_ETARGET and prpc_last_error() says what is wrong. Connecting is lazy;
 * a missing server shows up as UNAVAILABLE on the first call.
 * For fd:N the channel takes ownership of the fd, also when it fails (the
 * fd is then closed, so that its peer sees the end).
 *   target  borrowed.  opts  borrowed; NULL means defaults.
 *   out     on success a new channel; free with prpc_channel_destroy().
 * Returns 0, PRPC_ETARGET, PRPC_ECORE or -ENOMEM. Thread-safe. */
PRPC_API PRPC_MUST_CHECK int prpc_channel_create(const char *target,
                                                 const prpc_channel_opts *opts,
                                                 prpc_channel **out);

/* Closes the channel. Calls still running on it end with CANCELLED or
 * UNAVAILABLE; the caller must not start new ones. NULL is ok. */
PRPC_API void prpc_channel_destroy(prpc_channel *channel);

/* Per-call options; start from PRPC_CALL_OPTS_INIT. */
typedef struct prpc_call_opts {
  int64_t timeout_ms; /* > 0: the call's deadline, sent to the server as the
                         gRPC deadline (grpc-timeout). 0: no deadline. */
  const prpc_metadata *metadata; /* borrowed; request metadata or NULL */
  int wait_for_ready; /* 1: wait for the server to be reachable (until the
                         deadline) instead of failing with UNAVAILABLE */
  const char *compression; /* borrowed; this call's request compression:
                              "gzip", "deflate", "identity" (none), or NULL
                              for the channel's default */
} prpc_call_opts;
#define PRPC_CALL_OPTS_INIT {0, NULL, 0, NULL}

/* Flags for prpc_call_write_ex() and prpc_ctx_write_ex(). */
#define PRPC_WRITE_NO_COMPRESS 0x2u /* send this message uncompressed */

/* Runs a unary call and blocks until it ends. Generated stubs wrap this.
 *   request  borrowed.  opts  borrowed; NULL: no deadline, no metadata.
 *   reply    on GRPC_STATUS_OK a new message the caller owns (free it with
 *            the codec's free, for protobuf-c: *__free_unpacked(m, NULL));
 *            otherwise set to NULL. May be NULL: the reply is dropped
 *            (e.g. a google.protobuf.Empty).
 *   status   may be NULL; otherwise filled in (code, message, headers,
 *            trailers); release with prpc_status_clear().
 * Returns the status code. Local failures map as in gRPC: no connection gives
 * UNAVAILABLE, a passed deadline DEADLINE_EXCEEDED, a reply that does not
 * decode INTERNAL. Thread-safe. */
PRPC_API grpc_status_code prpc_unary_call(prpc_channel *channel,
                                          const struct prpc_method_desc *method,
                                          const void *request,
                                          const prpc_call_opts *opts,
                                          void **reply, prpc_status *status);

/* prpc_unary_call() for codecs that decode into caller storage (nanopb):
 * reply is the caller's struct of the reply type (or NULL: the reply is
 * dropped), initialised (MSG_init_zero) with any decode callbacks set; on
 * GRPC_STATUS_OK it holds the reply. A reply that does not fit the struct's
 * static sizes ends the call with INTERNAL and a message saying so; a
 * request that cannot be encoded (a field over its static size) with
 * INTERNAL before anything is sent. No message is allocated. */
PRPC_API grpc_status_code prpc_unary_call_into(
    prpc_channel *channel, const struct prpc_method_desc *method,
    const void *request, const prpc_call_opts *opts, void *reply,
    prpc_status *status);

/* A streaming call from the client side. Opaque. At most one read and one
 * write may be outstanding at a time: one thread may read while another
 * writes, but two threads may not both read (or both write). */
typedef struct prpc_call prpc_call;

/* Starts a call as a stream object. For unary and server-streaming methods
 * request is the one request message (borrowed, sent at once); otherwise
 * pass NULL. A unary call started this way reads its reply with
 * prpc_call_read(), and can be cancelled from another thread.
 *   out  on success a new call; end it with prpc_call_finish(), which frees
 *        it.
 * Returns 0 or a negative code (PRPC_ECORE, -ENOMEM, -EINVAL). A connection
 * failure is reported by the first read or write and by finish. */
PRPC_API PRPC_MUST_CHECK int prpc_call_start(
    prpc_channel *channel, const struct prpc_method_desc *method,
    const void *request, const prpc_call_opts *opts, prpc_call **out);

/* Sends one message (borrowed; encoded before return). Blocks while gRPC
 * flow control holds the stream back. Returns 0, or PRPC_ECLOSED when the
 * call has ended (prpc_call_finish() then tells why). */
PRPC_API int prpc_call_write(prpc_call *call, const void *msg);

/* prpc_call_write() with flags (PRPC_WRITE_NO_COMPRESS). */
PRPC_API int prpc_call_write_ex(prpc_call *call, const void *msg,
                                unsigned flags);

/* Half-closes: tells the server no more messages will come. Returns 0 or
 * PRPC_ECLOSED. */
PRPC_API int prpc_call_writes_done(prpc_call *call);

/* Receives one message. Returns 1 and sets *msg to a new message the caller
 * owns (free with the codec's free); 0 when no more messages will come;
 * PRPC_EMSG if a message did not decode (the call is cancelled). 0 is both
 * "the server ended the stream" and "the call failed" (the connection
 * lost, the deadline passed, a cancel, an error status): only
 * prpc_call_finish(), which every call ends with, tells which. */
PRPC_API int prpc_call_read(prpc_call *call, void **msg);
/* prpc_call_read() into the caller's struct (codecs with decode_into, see
 * prpc_unary_call_into()). */
PRPC_API int prpc_call_read_into(prpc_call *call, void *msg);

/* Returns 1 if the message the last prpc_call_read() returned came
 * compressed on the wire, 0 if not, or -ENOTSUP when the gRPC core library
 * in use does not tell (the accessor is not part of its public API; see
 * docs/design.md). */
PRPC_API int prpc_call_read_compressed(const prpc_call *call);

/* Waits for the server's initial metadata. Returns 0 and points *headers at
 * metadata borrowed from the call (valid until finish), or PRPC_ECLOSED. */
PRPC_API int prpc_call_headers(prpc_call *call, const prpc_metadata **headers);

/* Cancels the call; the server sees CANCELLED. Thread-safe: may be called
 * while another thread is blocked in read or write, which then return. */
PRPC_API void prpc_call_cancel(prpc_call *call);

/* Ends the call: waits for the status, then frees the call (call is invalid
 * afterwards). For client-streaming methods it half-closes first if
 * prpc_call_writes_done() was not called, and reply receives the single
 * reply (as for prpc_unary_call); otherwise pass NULL. A bidi call is not
 * half-closed here: if its server waits for the half-close, call
 * prpc_call_writes_done() first (or prpc_call_cancel()). status may be
 * NULL. Returns the status code. */
PRPC_API grpc_status_code prpc_call_finish(prpc_call *call, void **reply,
                                           prpc_status *status);
/* prpc_call_finish() with the reply decoded into the caller's struct
 * (codecs with decode_into; reply may be NULL). */
PRPC_API grpc_status_code prpc_call_finish_into(prpc_call *call, void *reply,
                                                prpc_status *status);

/* ---------------------------------------------------------------------- */
/* 4. Servers                                                              */
/* ---------------------------------------------------------------------- */

/* Server options; start from PRPC_SERVER_OPTS_INIT. */
typedef struct prpc_server_opts {
  int threads;        /* threads that run calls. 0 (the default): one
                         thread polls the connections and runs each short
                         handler right where its call arrived (no hand-off,
                         no crossing of CPUs: the fastest); others, up to
                         max_threads, join only while handlers block or run
                         long (a few ms), and leave after. N > 0: exactly N
                         threads, always; with 1 a handler that blocks holds
                         up every other call, and one that calls its own
                         server waits for its deadline. */
  int grace_ms;       /* graceful drain time at shutdown; 0: 5000 ms */
  unsigned socket_mode; /* mode of created unix socket files; 0: 0600 */
  int max_send_bytes; /* 0: gRPC default (no limit) */
  int max_recv_bytes; /* 0: gRPC default (4 MiB) */
  const char *socket_group; /* borrowed; group (name or number) of created
                               socket files, e.g. with socket_mode 0660;
                               NULL: the process's group */
  int max_connections; /* allowed connections (unix and plain TCP) held at
                          once; beyond it new ones are refused (and
                          logged). Denied peers do not count. 0: no limit */
  int shutdown_on_hangup; /* 1: shut down once every connected fd:N socket
                             given to prpc_server_add_listener() has been
                             closed by its peer (a child whose parent has
                             gone away) */
  int idle_timeout_ms; /* > 0: close a connection that has had no call in
                          flight for this long, including one that never
                          sent a complete HTTP/2 preface or frame (a peer
                          that connects and stalls); a client's channel
                          reconnects by itself on its next call. Also bounds
                          the TLS handshake on TCP listeners. 0: never
                          (gRPC's default) */
  int max_connections_per_uid; /* connections one uid (unix) or one address
                          (TCP) may hold at once, so that no user can take
                          them all; root and the server's own user are
                          exempt. 0: half of max_connections, or without
                          one half of the descriptors the process may open;
                          -1: no limit */
  int handshake_timeout_ms; /* a connection that has not sent the HTTP/2
                          preface this long after it was accepted is closed.
                          0: 5000 ms; -1: never */
  int max_concurrent_streams; /* calls at once on one connection, sent to
                          clients in the HTTP/2 settings (a gRPC client
                          queues the rest; a peer that opens more loses its
                          connection). 0: 100 */
  int max_stream_threads; /* blocking streaming handlers (each holds a
                          thread) that run at once; beyond it a new
                          streaming call of a service registered without
                          PRPC_ASYNC_HANDLERS ends with RESOURCE_EXHAUSTED.
                          Asynchronous handlers hold no thread. 0: 128 */
  int max_threads;     /* with threads 0, the most threads that may run
                          calls at once. 0: 64 (8 per CPU beyond 8 CPUs) */
  prpc_loop *loop;     /* NULL: the server's own threads run its calls;
                          else the application's loop does (see
                          prpc_loop_create), threads is ignored, and
                          handlers must not block: register services with
                          PRPC_ASYNC_HANDLERS. The loop must outlive the
                          server. */
  int http_json;       /* 1: a connection to a unix or fd:N listener that
                          does not open with the HTTP/2 preface is served as
                          HTTP/1.1 with JSON bodies on the same socket:
                          POST /package.Service/Method calls the handler
                          (proto3 JSON mapping), GET / lists the methods;
                          access rules, budgets and timeouts apply as to
                          gRPC (see docs/http.md). A piperpc built
                          without libmicrohttpd logs a warning at start
                          and closes them. 0: such a connection is
                          closed */
} prpc_server_opts;
#define PRPC_SERVER_OPTS_INIT \
  {0, 0, 0, 0, 0, NULL, 0, 0, 0, 0, 0, 0, 0, 0, NULL, 0}

/* A server: listeners, registered services and worker threads. Opaque.
 * Lifecycle, in this order:
 *   1. prpc_server_create()
 *   2. prpc_server_add_listener() and the generated *_server__register()
 *   3. prpc_server_start(), or prpc_server_run() which starts and waits
 *   4. prpc_server_shutdown() from any thread, a handler, or a signal seen
 *      by prpc_server_run(): stops accepting, drains in-flight calls for up
 *      to grace_ms, then cancels what is left
 *   5. prpc_server_wait() (prpc_server_run() does it), prpc_server_destroy()
 */
typedef struct prpc_server prpc_server;

/* Creates a server. opts borrowed; NULL means defaults.
 *   out  on success a new server; free with prpc_server_destroy().
 * Returns 0, -EINVAL or -ENOMEM. */
PRPC_API PRPC_MUST_CHECK int prpc_server_create(const prpc_server_opts *opts,
                                                prpc_server **out);

/* Listens on target (the forms of prpc_channel_create(); port 0 picks a free
 * TCP port). Binds now, so errors come back here, before start:
 *   PRPC_ETARGET  malformed target          -ENOENT   no parent directory
 *   PRPC_EINUSE   a live server owns the socket path (left untouched)
 *   -ENOTSOCK     a file that is not a socket is at the path
 *   -EADDRINUSE   TCP address taken         -EACCES   no permission
 * A stale socket file (nothing accepts on it) is replaced. The socket file
 * is created with opts->socket_mode and removed at shutdown.
 * fd:N adopts a socket: a listening one is accepted from, a connected one
 * becomes one connection; the server takes ownership of the fd.
 *   target  borrowed.  port  may be NULL; set to the bound TCP port.
 * Before start only. */
PRPC_API PRPC_MUST_CHECK int prpc_server_add_listener(prpc_server *server,
                                                      const char *target,
                                                      int *port);

/* Listens on a TCP target with TLS (see prpc_tls_opts); otherwise as
 * prpc_server_add_listener(). Returns 0, -EINVAL (not a TCP target, or
 * no certificate or key), -errno when a file cannot be read, PRPC_ECORE
 * when gRPC core rejects the credentials, or -EADDRINUSE. */
PRPC_API PRPC_MUST_CHECK int prpc_server_add_tls_listener(
    prpc_server *server, const char *target, const prpc_tls_opts *tls,
    int *port);

/* Socket activation: adopts the listening sockets systemd passed
 * (LISTEN_FDS and LISTEN_PID, fds from 3 on), as prpc_server_add_listener()
 * does for "fd:N", and unsets the variables so that children do not take
 * them. Sets *count (may be NULL) to the number adopted. Returns 0,
 * -ENOENT when none were passed to this process, -ENOTSOCK when a passed
 * fd is not a listening socket. Before start only. */
PRPC_API PRPC_MUST_CHECK int prpc_server_add_systemd_listeners(
    prpc_server *server, int *count);

/* Adds an access rule for peers on unix sockets, like the access control
 * list of a named pipe. Rules are checked in the order added and the first
 * that matches decides; once any rule is set, a peer that matches none is
 * denied. The peer's identity comes from the kernel (SO_PEERCRED) when it
 * connects. who is one of:
 *   user:NAME  user:UID  uid:UID     the peer's user
 *   group:NAME group:GID gid:GID     the peer's primary group, or a
 *                                    supplementary group of its user
 *   same-user                        the user the server runs as
 *   root                             uid 0
 *   any                              everyone
 * A denied peer's calls end with PERMISSION_DENIED without reaching a
 * handler, and the server logs its uid, pid and the rule that matched.
 * TCP peers are not subject to the rules (use TLS with client certificates).
 *   who  borrowed.
 * Before start only. Returns 0, -EINVAL (malformed: prpc_last_error() says
 * why), -ENOENT (no such user or group) or PRPC_ESTATE. */
PRPC_API PRPC_MUST_CHECK int prpc_server_add_rule(prpc_server *server,
                                                  int allow, const char *who);

/* Adds the standard health service, grpc.health.v1.Health (Check and the
 * streaming Watch), which probes and supervisors understand. The server as
 * a whole (service "") and every service registered on it report SERVING
 * until prpc_server_set_serving() says otherwise; an unknown service gets
 * NOT_FOUND from Check and SERVICE_UNKNOWN from Watch; when a graceful
 * shutdown begins, everything reports NOT_SERVING. Before start only.
 * Returns 0, PRPC_ESTATE, PRPC_EEXIST (already enabled) or -ENOMEM. */
PRPC_API PRPC_MUST_CHECK int prpc_server_enable_health(prpc_server *server);

/* Sets the health status of service ("package.Service", or "" for the
 * whole server). Thread-safe, at any time; Watch streams see the change at
 * once. Returns 0, PRPC_ESTATE (health not enabled) or -ENOMEM. */
PRPC_API int prpc_server_set_serving(prpc_server *server,
                                     const char *service, int serving);

/* Adds the standard server reflection service, grpc.reflection.v1 and
 * grpc.reflection.v1alpha ServerReflection, which tools such as grpcurl,
 * grpc_cli and the gRPC reflection clients use to list the services and
 * fetch their .proto descriptors without the .proto files at hand. It lists
 * every service registered on the server (health and reflection included)
 * and answers file_by_filename, file_containing_symbol,
 * file_containing_extension and all_extension_numbers_of_type from the
 * descriptors protoc-gen-prpc embeds in generated code; an unknown name
 * gets a NOT_FOUND error response. The descriptors are indexed once, at
 * start. Before start only. Returns 0, PRPC_ESTATE, PRPC_EEXIST (already
 * enabled, or a reflection service already registered) or -ENOMEM. */
PRPC_API PRPC_MUST_CHECK int prpc_server_enable_reflection(
    prpc_server *server);

/* Starts the worker threads. Returns 0, PRPC_ESTATE (already started),
 * or PRPC_ECORE. On failure nothing listens and no handler will run. */
PRPC_API PRPC_MUST_CHECK int prpc_server_start(prpc_server *server);

/* Begins a graceful shutdown and returns at once. Thread-safe, and safe to
 * call from a handler or more than once. Not async-signal-safe: from a signal
 * handler use prpc_server_run(), which handles SIGINT and SIGTERM. */
PRPC_API void prpc_server_shutdown(prpc_server *server);

/* Blocks until the server has shut down and every worker has stopped.
 * Returns 0, or PRPC_ESTATE if the server was never started. Do not call
 * from a handler. A server on an application's loop (opts.loop): call it
 * (and prpc_server_destroy()) from the thread that runs that loop; it
 * runs the loop while it waits, so the calls in flight, and channels on
 * the same loop, go on to their end. */
PRPC_API int prpc_server_wait(prpc_server *server);

/* Starts the server if needed, then blocks until prpc_server_shutdown() or
 * SIGINT/SIGTERM, drains gracefully and returns 0 (or a start error). While
 * it waits, SIGINT and SIGTERM are caught and unblocked in the calling
 * thread; the previous dispositions and mask are restored before it returns.
 * A program that announces readiness before calling it should block both
 * signals first (sigprocmask) so that none sent early is lost. */
PRPC_API int prpc_server_run(prpc_server *server);

/* A snapshot of a server's load, for monitoring and tests. */
typedef struct prpc_server_stats {
  int calls_active;  /* calls in progress: matched and not yet over (a
                        handler running, a deferred call, a stream) */
  int connections;   /* unix-socket connections open (accepted here or
                        adopted as fd:N), denied peers included; an
                        HTTP/1.1 one counts once */
  uint64_t connections_refused; /* unix connections closed at accept:
                                   beyond max_connections, or while the
                                   process was out of file descriptors */
} prpc_server_stats;

/* Fills *out. Thread-safe, at any time after create; cheap enough to call
 * once a second (it checks each open connection's fd). Returns 0 or
 * -EINVAL. */
PRPC_API int prpc_server_get_stats(prpc_server *server,
                                   prpc_server_stats *out);

/* Shuts down (if running), waits, and frees the server and everything it
 * owns. NULL is ok. Not from a handler. */
PRPC_API void prpc_server_destroy(prpc_server *server);

/* ---- the per-call context that handlers receive ---- */

/* One server call as a handler sees it. Opaque; borrowed by the handler and
 * valid until the handler returns. Not thread-safe, except
 * prpc_ctx_is_cancelled(). */
typedef struct prpc_ctx prpc_ctx;

/* The full method path, e.g. "/helloworld.Greeter/SayHello". Borrowed. */
PRPC_API const char *prpc_ctx_method(const prpc_ctx *ctx);

/* The peer's address, e.g. "unix:/run/app.sock", "ipv4:127.0.0.1:50312".
 * Borrowed. */
PRPC_API const char *prpc_ctx_peer(const prpc_ctx *ctx);

/* The kernel-checked identity of a peer on a unix socket (SO_PEERCRED, read
 * when the connection was accepted). Returns 0 and fills the non-NULL
 * pointers, or -ENOTSOCK when the peer is not on a unix socket (TCP). */
PRPC_API int prpc_ctx_peer_cred(const prpc_ctx *ctx, int64_t *pid,
                                int64_t *uid, int64_t *gid);

/* Milliseconds until the call's deadline (0 when passed), or -1 when the
 * client set none. */
PRPC_API int64_t prpc_ctx_time_left_ms(const prpc_ctx *ctx);

/* Returns 1 once the client has cancelled the call (or gone away) or its
 * deadline has passed, else 0. A long handler polls it to stop early.
 * Thread-safe while the handler runs; cheap enough to poll in a loop. */
PRPC_API int prpc_ctx_is_cancelled(const prpc_ctx *ctx);

/* The request metadata. Borrowed from the context. */
PRPC_API const prpc_metadata *prpc_ctx_metadata(prpc_ctx *ctx);

/* Sets the status message sent with a non-OK status (copied). */
PRPC_API void prpc_ctx_set_message(prpc_ctx *ctx, const char *message);

/* Adds initial (header) or trailing metadata to the response (copied).
 * Headers must be added before the first response message. Returns 0,
 * -EINVAL (bad key or value, as prpc_metadata_add()), or -ENOMEM. */
PRPC_API int prpc_ctx_add_header(prpc_ctx *ctx, const char *key,
                                 const void *value, size_t value_len);
/* As prpc_ctx_add_header(), for trailing metadata (any time before the
 * handler returns). */
PRPC_API int prpc_ctx_add_trailer(prpc_ctx *ctx, const char *key,
                                  const void *value, size_t value_len);

/* Allocates memory that lives until the call ends (aligned for any type),
 * for reply fields. Returns NULL only when out of memory. */
PRPC_API void *prpc_ctx_alloc(prpc_ctx *ctx, size_t size);
/* Copies s into call memory (see prpc_ctx_alloc()). */
PRPC_API char *prpc_ctx_strdup(prpc_ctx *ctx, const char *s);

/* Server side of a streaming call: send one response message (borrowed) or
 * receive one request message. write returns 0 or PRPC_ECLOSED (the client
 * went away or cancelled); read returns 1 with *msg a new message the
 * handler owns (free with the codec's free), 0 when the client half-closed,
 * PRPC_ECLOSED when the call was cancelled, PRPC_EMSG when a message did not
 * decode (the call then ends with INVALID_ARGUMENT). */
PRPC_API int prpc_ctx_write(prpc_ctx *ctx, const void *msg);
/* Receives one request message of a client- or bidi-streaming call; see
 * prpc_ctx_write() for the results. */
PRPC_API int prpc_ctx_read(prpc_ctx *ctx, void **msg);
/* prpc_ctx_read() for codecs that decode into caller storage (nanopb): msg
 * is the handler's struct of the request type, set up as for
 * prpc_unary_call_into(); it is overwritten by each message. Returns as
 * prpc_ctx_read(); -EINVAL for a codec without decode_into. */
PRPC_API int prpc_ctx_read_into(prpc_ctx *ctx, void *msg);
/* prpc_ctx_write() with flags (PRPC_WRITE_NO_COMPRESS). */
PRPC_API int prpc_ctx_write_ex(prpc_ctx *ctx, const void *msg,
                               unsigned flags);

/* Compresses this call's response messages with algorithm ("gzip",
 * "deflate", "identity"), if the client accepts it. Before the first
 * response message only. Returns 0, -EINVAL for an unknown algorithm, or
 * PRPC_ESTATE after the first message. */
PRPC_API int prpc_ctx_set_compression(prpc_ctx *ctx, const char *algorithm);

/* Returns 1 if the last request message (the request of a unary or
 * server-streaming call, else the last one prpc_ctx_read() returned) came
 * compressed on the wire, 0 if not, or -ENOTSUP when the gRPC core library
 * in use does not tell (as prpc_call_read_compressed()). */
PRPC_API int prpc_ctx_request_compressed(const prpc_ctx *ctx);

/* ---------------------------------------------------------------------- */
/* 5. Anonymous pipes: a parent and the child it spawns                    */
/* ---------------------------------------------------------------------- */

/* A child process connected to its parent by a socketpair, the "anonymous
 * pipe". Opaque. Either side may be the gRPC server. */
typedef struct prpc_child prpc_child;

/* Options of prpc_spawn(); start from PRPC_SPAWN_OPTS_INIT. */
typedef struct prpc_spawn_opts {
  int child_fd;         /* the fd number the child gets; 0: 3 */
  const char *env_name; /* borrowed; the variable that tells the child its
                           target ("fd:3"); NULL: "PRPC_TARGET" */
} prpc_spawn_opts;
#define PRPC_SPAWN_OPTS_INIT {0, NULL}

/* Starts path with argv (borrowed; argv[0] first, NULL-terminated) and the
 * parent's environment plus PRPC_TARGET=fd:N, with one end of a new
 * socketpair at fd N. The parent's copy of the child's end is closed before
 * this returns, so the parent sees the child's end close when the child
 * dies; every other fd of the library is close-on-exec. Uses posix_spawn()
 * (gRPC core does not support fork() without exec).
 *   out  on success the child; free with prpc_child_destroy().
 * Returns 0, or -errno (-ENOENT: no such program, -EACCES, ...). */
PRPC_API PRPC_MUST_CHECK int prpc_spawn(const char *path, char *const argv[],
                                        const prpc_spawn_opts *opts,
                                        prpc_child **out);

/* The child's process id. */
PRPC_API int prpc_child_pid(const prpc_child *child);

/* The parent's end as a target, "fd:N": give it to prpc_channel_create()
 * when the child is the server, or to prpc_server_add_listener() when the
 * parent is. Whoever adopts it owns the fd; take it once (the second call
 * returns NULL). Borrowed from the child. When the child exits or crashes,
 * calls on it end with UNAVAILABLE. */
PRPC_API const char *prpc_child_target(prpc_child *child);

/* Waits up to timeout_ms (-1: forever) for the child to exit. Returns 0 and
 * the waitpid() status in *wstatus (may be NULL), or -ETIMEDOUT. Repeat
 * calls after the child was reaped return the same status. */
PRPC_API int prpc_child_wait(prpc_child *child, int timeout_ms, int *wstatus);

/* Sends sig to the child unless it has been reaped. Returns 0 or -errno. */
PRPC_API int prpc_child_kill(prpc_child *child, int sig);

/* Closes the parent's end if it was never taken, reaps the child if it has
 * exited (it does not kill it), and frees. NULL is ok. */
PRPC_API void prpc_child_destroy(prpc_child *child);

/* In the child: the target its parent passed (e.g. "fd:3") from env_name
 * (NULL: "PRPC_TARGET"), or NULL when it was not spawned that way.
 * Borrowed from the environment. */
PRPC_API const char *prpc_inherited_target(const char *env_name);

/* ---------------------------------------------------------------------- */
/* 6. Asynchronous calls and handlers, and event loops                     */
/* ---------------------------------------------------------------------- */

/* Every call above has an asynchronous form that holds no thread: it
 * returns at once, and what it waits for (a reply, a message, the status)
 * comes to a callback. Where callbacks run:
 *   - by default on piperpc's own threads: a server's (see
 *     prpc_server_opts.threads) and, for client calls, one thread shared by
 *     every channel without a loop;
 *   - on the application's thread, through a prpc_loop: its file
 *     descriptor becomes readable when callbacks are ready, and
 *     prpc_loop_process() runs them. Give the loop to channels
 *     (prpc_channel_opts.loop) and servers (prpc_server_opts.loop).
 * Callbacks must not block: a blocking piperpc call from a callback of a
 * loop that has no other thread to poll would wait for itself. */

/* Creates an application's loop. out: a new loop; free with
 * prpc_loop_destroy(). Returns 0, PRPC_ECORE, -EAGAIN or -errno. */
PRPC_API PRPC_MUST_CHECK int prpc_loop_create(prpc_loop **out);

/* The loop's file descriptor (an eventfd): add it to the application's
 * poll set for reading; when it is readable, call prpc_loop_process().
 * Owned by the loop. -1 for a loop not made by prpc_loop_create(). */
PRPC_API int prpc_loop_fd(const prpc_loop *loop);

/* Runs the callbacks that are ready, on the calling thread, and returns
 * how many ran (0 when none), or -EINVAL. Never blocks. Call it from one
 * thread at a time. */
PRPC_API int prpc_loop_process(prpc_loop *loop);

/* Destroys the loop once the channels and servers that use it are
 * destroyed (it lives on until then). Callbacks of calls that ended when
 * their channel or server was destroyed still run: keep processing the
 * loop until then, or let this run them. NULL is ok. Not from one of the
 * loop's callbacks. */
PRPC_API void prpc_loop_destroy(prpc_loop *loop);

/* ---- client ---- */

/* The end of an asynchronous unary call: runs once, on the channel's
 * loop. reply is the reply on GRPC_STATUS_OK (else NULL), borrowed until
 * the callback returns (for decode_into codecs: the caller's struct given
 * to prpc_unary_call_async_into()); status borrowed likewise. call is
 * valid until the callback returns. */
typedef void (*prpc_unary_done_fn)(prpc_call *call, void *reply,
                                   const prpc_status *status,
                                   void *user_data);

/* Starts a unary call and returns at once. Generated code wraps it
 * (*_async). request borrowed (encoded before return); opts borrowed.
 * out may be NULL; else the call, for prpc_call_cancel(), valid until
 * done returns. Returns 0 (done will run exactly once) or a negative code
 * (-EINVAL, PRPC_EMSG, PRPC_ECORE, -ENOMEM: done will not run).
 * Thread-safe. */
PRPC_API PRPC_MUST_CHECK int prpc_unary_call_async(
    prpc_channel *channel, const struct prpc_method_desc *method,
    const void *request, const prpc_call_opts *opts, prpc_unary_done_fn done,
    void *user_data, prpc_call **out);

/* prpc_unary_call_async() for codecs that decode into caller storage
 * (nanopb): reply is the caller's struct, set up as for
 * prpc_unary_call_into(), which must stay valid until done runs. */
PRPC_API PRPC_MUST_CHECK int prpc_unary_call_async_into(
    prpc_channel *channel, const struct prpc_method_desc *method,
    const void *request, const prpc_call_opts *opts, void *reply,
    prpc_unary_done_fn done, void *user_data, prpc_call **out);

/* Callbacks of an asynchronous streaming call; run on the channel's loop,
 * one at a time for a call. NULL members are not called, but on_done. */
typedef struct prpc_call_callbacks {
  /* The server's initial metadata (borrowed until it returns). */
  void (*on_headers)(prpc_call *call, const prpc_metadata *headers,
                     void *user_data);
  /* A message asked for with prpc_call_read_async(), borrowed until it
   * returns (freed after); NULL when the server sent its last (or the
   * call ended). */
  void (*on_read)(prpc_call *call, void *msg, void *user_data);
  /* A message given to prpc_call_send() was sent (ok 1), or the call
   * ended before it could be (ok 0). */
  void (*on_write_done)(prpc_call *call, int ok, void *user_data);
  /* Required. The call is over: status (borrowed) says how; reply is a
   * client-streaming call's reply on GRPC_STATUS_OK (borrowed), else NULL.
   * The call is freed when it returns. */
  void (*on_done)(prpc_call *call, void *reply, const prpc_status *status,
                  void *user_data);
} prpc_call_callbacks;

/* Starts a streaming (or unary) call whose results come to callbacks. For
 * unary and server-streaming methods request is the one request
 * (borrowed, sent at once; the call half-closes); else NULL. callbacks must
 * outlive the call; user_data is passed to them. out: the call, valid until
 * on_done returns. Returns 0 (on_done will run exactly once) or a negative
 * code (-EINVAL, PRPC_EMSG, PRPC_ECORE, -ENOMEM). Thread-safe. */
PRPC_API PRPC_MUST_CHECK int prpc_call_start_async(
    prpc_channel *channel, const struct prpc_method_desc *method,
    const void *request, const prpc_call_opts *opts,
    const prpc_call_callbacks *callbacks, void *user_data, prpc_call **out);

/* Asks for the next message: on_read gets it. One read at a time. Returns
 * 0, -EBUSY (a read is on its way), PRPC_ECLOSED (the stream has ended),
 * or -EINVAL (not a call started with prpc_call_start_async). Any thread,
 * until on_done. */
PRPC_API int prpc_call_read_async(prpc_call *call);

/* Queues msg (borrowed; encoded before return) to be sent after those
 * queued before; on_write_done tells when it went. flags:
 * PRPC_WRITE_NO_COMPRESS. Returns 0, PRPC_ECLOSED (half-closed or
 * ended), PRPC_EFULL (4 MiB are waiting to be sent: wait for
 * on_write_done), PRPC_EMSG, -ENOMEM or -EINVAL. Any thread, until
 * on_done. */
PRPC_API int prpc_call_send(prpc_call *call, const void *msg, unsigned flags);

/* Half-closes after the messages queued so far. Returns 0 or
 * PRPC_ECLOSED. Any thread, until on_done. */
PRPC_API int prpc_call_close_send(prpc_call *call);

/* ---- server ---- */

/* A handler's return value that keeps its call open after it returns:
 * the application finishes it later with prpc_ctx_finish(), from any
 * thread. See prpc_ctx_defer(). */
#define PRPC_DEFERRED ((grpc_status_code)-1)

/* For `return prpc_ctx_defer(ctx);` in a handler: returns PRPC_DEFERRED.
 * The context (and, for unary and client-streaming calls, the reply the
 * handler was given) stays valid until the call ends: until
 * prpc_ctx_finish() returns, or on_done (see prpc_ctx_set_callbacks) has
 * returned if callbacks are set. */
PRPC_API grpc_status_code prpc_ctx_defer(prpc_ctx *ctx);

/* Ends a deferred call with code: sends the reply (unary and
 * client-streaming, filled in by now, on GRPC_STATUS_OK) or, after every
 * message queued with prpc_ctx_send(), the status with the message and
 * trailers set. Any thread, once; it may come before the handler has
 * returned PRPC_DEFERRED. The context must not be used after it returns,
 * but in callbacks still to come. No callback runs inside it (on_done
 * comes later, on the server's loop), so it may be called under a lock
 * that on_done takes. Returns 0, PRPC_ESTATE (finished already) or
 * -EINVAL. */
PRPC_API int prpc_ctx_finish(prpc_ctx *ctx, grpc_status_code code);

/* Callbacks of a server call; run on the server's loop (on_shutdown:
 * on the thread that called prpc_server_shutdown(); a unary call of the
 * HTTP front end, with the default threads: on its connection's thread,
 * see docs/http.md). NULL members are not called. On a loop with more than one thread, two of them may run at the
 * same time (on_read and on_write_done, say): share state between them
 * under a lock. on_done comes alone, after every other has returned. */
typedef struct prpc_ctx_callbacks {
  /* A message asked for with prpc_ctx_read_async(), borrowed until it
   * returns; NULL when the client has sent its last (or the call
   * ended). */
  void (*on_read)(prpc_ctx *ctx, void *msg, void *user_data);
  /* A message queued with prpc_ctx_send() was sent (ok 1), or the call
   * ended before it could be (ok 0). */
  void (*on_write_done)(prpc_ctx *ctx, int ok, void *user_data);
  /* The client cancelled, went away, or the deadline passed: at once. */
  void (*on_cancel)(prpc_ctx *ctx, void *user_data);
  /* The server began a graceful shutdown: a long-lived stream ends now,
   * with a status of the application's choosing (prpc_ctx_finish). */
  void (*on_shutdown)(prpc_ctx *ctx, void *user_data);
  /* The call is over (cancelled: 1 if it did not end with the status that
   * was sent); the context is freed when it returns. A call with on_done
   * that is cancelled before the application finishes it ends by itself
   * (also when the cancel came before the callbacks were set): after
   * on_cancel, no prpc_ctx_finish() is needed. */
  void (*on_done)(prpc_ctx *ctx, int cancelled, void *user_data);
} prpc_ctx_callbacks;

/* Sets a call's callbacks (callbacks must outlive the call; user_data is
 * passed to them). A cancel or shutdown that came before is told at once.
 * Usually from the handler, before it returns PRPC_DEFERRED. Returns 0,
 * PRPC_ESTATE (finished already) or -EINVAL. */
PRPC_API int prpc_ctx_set_callbacks(prpc_ctx *ctx,
                                    const prpc_ctx_callbacks *callbacks,
                                    void *user_data);

/* Asks for the client's next message (client-streaming and bidi): on_read
 * gets it. One read at a time. Returns 0, -EBUSY, PRPC_ECLOSED (the client
 * sent its last, or the call ended) or -EINVAL. Any thread. */
PRPC_API int prpc_ctx_read_async(prpc_ctx *ctx);

/* Queues msg (borrowed; encoded before return) to be sent after those
 * queued before (server-streaming and bidi); on_write_done tells when it
 * went. Any thread, also while the handler runs: the way to push events
 * to a stream from where they happen. Returns 0, PRPC_ECLOSED (the call
 * has ended or was finished), PRPC_EFULL (4 MiB wait to be sent to this
 * client), PRPC_EMSG, -ENOMEM or -EINVAL. */
PRPC_API int prpc_ctx_send(prpc_ctx *ctx, const void *msg, unsigned flags);

/* 1 once the server's graceful shutdown has begun, else 0. Any thread. */
PRPC_API int prpc_ctx_server_stopping(const prpc_ctx *ctx);

#ifdef __cplusplus
}
#endif

#include <piperpc/method.h>

#endif /* PRPC_PIPERPC_H */
