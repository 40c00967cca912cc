/* bench_core_server: the benchmark's Echo service (proto/bench.proto)
 * written directly on gRPC core's C API, without piperpc: the ceiling of
 * gRPC core itself, measured beside piperpc's bench_server.
 *
 *   bench_core_server --listen ADDR [--listen ADDR ...]
 *
 * ADDR: unix:/path, unix-abstract:name, HOST:PORT, or fd:N (an inherited
 * connected socket). Prints a line per listener, then "ready"; stops on
 * SIGINT or SIGTERM, and, when every listener is an fd:N, when its peer
 * closes it.
 *
 * One thread does everything: one completion queue, the four methods
 * registered, a few calls requested per method, and every completion
 * handled inline by the thread that polled. Each call is a small state
 * machine; its tags are the call's address with the kind of batch in the low
 * bits. The protobuf wire format (two messages of one or two fields) is read
 * and written by hand. */
#include <dlfcn.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>

/* OTHER: any other method, answered UNIMPLEMENTED. */
enum { UNARY, SERVER_STREAM, CLIENT_STREAM, BIDI, NMETHODS, OTHER = NMETHODS };
static const char *const method_names[NMETHODS] = {
    "/bench.Echo/Unary", "/bench.Echo/ServerStream",
    "/bench.Echo/ClientStream", "/bench.Echo/Bidi"};
enum { REQUESTED = 8 }; /* calls kept requested per method */

/* The kinds of tag: a requested call arrived; the call's one sequential
 * batch (send or receive) completed; its RECV_CLOSE_ON_SERVER completed. */
enum { T_REQUEST, T_STEP, T_CLOSE };

typedef struct call {
  int method;
  grpc_call *call;
  gpr_timespec deadline;
  grpc_metadata_array md;
  grpc_call_details details; /* OTHER */
  grpc_byte_buffer *msg; /* the request, a received or a sent message */
  int cancelled;         /* RECV_CLOSE_ON_SERVER's result */
  int pending;           /* batches started, not completed yet */
  int over;              /* no batch is to be started any more */
  int sent_md;           /* initial metadata sent */
  int receiving;         /* Bidi: the step under way is a receive */
  int64_t left;          /* ServerStream: messages still to send */
  uint64_t total;        /* ClientStream: payload bytes received */
  grpc_slice out;        /* ServerStream: the encoded Payload */
} call;

static grpc_server *server;
static grpc_completion_queue *cq;
static void *methods[NMETHODS];
static int live;     /* call structures allocated */
static int stopping; /* no more calls requested */
static volatile sig_atomic_t got_signal;
static char shutdown_tag;

#define TAG(c, kind) ((void *)((uintptr_t)(c) | (uintptr_t)(kind)))

/* ---- the protobuf wire format, read from a byte buffer's slices ---- */

typedef struct reader {
  grpc_byte_buffer_reader r;
  const uint8_t *p, *end;
} reader;

static int more(reader *rd) {
  grpc_slice *s;
  while (rd->p == rd->end) {
    if (!grpc_byte_buffer_reader_peek(&rd->r, &s))
      return 0;
    rd->p = GRPC_SLICE_START_PTR(*s);
    rd->end = rd->p + GRPC_SLICE_LENGTH(*s);
  }
  return 1;
}

static int read_varint(reader *rd, uint64_t *v) {
  *v = 0;
  for (int shift = 0; shift < 64 && more(rd); shift += 7) {
    uint8_t b = *rd->p++;
    *v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80))
      return 1;
  }
  return 0;
}

static int skip(reader *rd, uint64_t n) {
  while (n > 0 && more(rd)) {
    size_t k = (size_t)(rd->end - rd->p) < n ? (size_t)(rd->end - rd->p)
                                             : (size_t)n;
    rd->p += k;
    n -= k;
  }
  return n == 0;
}

/* The next field: 1 and its key (number << 3 | wire type) and value (a
 * varint's value, or the length of a length-delimited field, skipped), 0 at
 * the end, -1 if malformed. */
static int next_field(reader *rd, uint64_t *key, uint64_t *val) {
  if (!more(rd))
    return 0;
  if (!read_varint(rd, key))
    return -1;
  *val = 0;
  switch (*key & 7) {
  case 0: return read_varint(rd, val) ? 1 : -1;
  case 1: return skip(rd, 8) ? 1 : -1;
  case 2: return read_varint(rd, val) && skip(rd, *val) ? 1 : -1;
  case 5: return skip(rd, 4) ? 1 : -1;
  default: return -1;
  }
}

/* vals[0]: StreamRequest.count (field 1, varint) or the length of
 * Payload.data (field 1, length-delimited); vals[1]: StreamRequest.size
 * (field 2, varint). 0, or -1 if malformed. */
static int parse(grpc_byte_buffer *bb, uint64_t vals[2]) {
  reader rd = {.p = NULL, .end = NULL};
  uint64_t key, v;
  int rc;
  vals[0] = vals[1] = 0;
  if (!bb)
    return 0; /* an empty message */
  if (!grpc_byte_buffer_reader_init(&rd.r, bb))
    return -1;
  while ((rc = next_field(&rd, &key, &v)) == 1) /* proto3: the last wins */
    if (key == 0x08 || key == 0x0a)
      vals[0] = v;
    else if (key == 0x10)
      vals[1] = v;
  grpc_byte_buffer_reader_destroy(&rd.r);
  return rc;
}

/* A Payload whose data is n bytes: (fill != 0) n bytes of fill, or
 * (fill == 0) n bytes from src. */
static grpc_slice payload(const void *src, size_t n, int fill) {
  uint8_t head[11] = {0x0a}; /* field 1, length-delimited; the length */
  size_t h = 1;
  uint64_t v = n;
  grpc_slice s;
  if (n == 0)
    return grpc_empty_slice(); /* proto3: an empty field is not sent */
  for (; v >= 0x80; v >>= 7)
    head[h++] = (uint8_t)(v | 0x80);
  head[h++] = (uint8_t)v;
  s = grpc_slice_malloc(h + n);
  memcpy(GRPC_SLICE_START_PTR(s), head, h);
  if (fill)
    memset(GRPC_SLICE_START_PTR(s) + h, fill, n);
  else
    memcpy(GRPC_SLICE_START_PTR(s) + h, src, n);
  return s;
}

/* ---- calls ---- */

static grpc_op op_md(call *c) {
  c->sent_md = 1;
  return (grpc_op){.op = GRPC_OP_SEND_INITIAL_METADATA};
}

static grpc_op op_send(grpc_byte_buffer *bb) {
  return (grpc_op){.op = GRPC_OP_SEND_MESSAGE,
                   .data.send_message.send_message = bb};
}

static grpc_op op_status(call *c, grpc_status_code status) {
  c->over = 1; /* the status is the last thing sent */
  return (grpc_op){.op = GRPC_OP_SEND_STATUS_FROM_SERVER,
                   .data.send_status_from_server.status = status};
}

static grpc_op op_recv(call *c) {
  c->msg = NULL;
  return (grpc_op){.op = GRPC_OP_RECV_MESSAGE,
                   .data.recv_message.recv_message = &c->msg};
}

static grpc_op op_close(call *c) {
  return (grpc_op){.op = GRPC_OP_RECV_CLOSE_ON_SERVER,
                   .data.recv_close_on_server.cancelled = &c->cancelled};
}

static void fail(call *c) {
  c->over = 1;
  grpc_call_cancel(c->call, NULL); /* harmless once the call is over */
}

static void start(call *c, int kind, grpc_op *ops, size_t n) {
  grpc_call_error e =
      grpc_call_start_batch(c->call, ops, n, TAG(c, kind), NULL);
  if (e != GRPC_CALL_OK) {
    fprintf(stderr, "bench_core_server: grpc_call_start_batch: %d\n", (int)e);
    fail(c);
    return;
  }
  c->pending++;
}

static void request(int method) {
  call *c = calloc(1, sizeof(*c));
  grpc_call_error e;
  if (!c) {
    fprintf(stderr, "bench_core_server: out of memory\n");
    return;
  }
  c->method = method;
  grpc_metadata_array_init(&c->md);
  grpc_call_details_init(&c->details);
  if (method == OTHER)
    e = grpc_server_request_call(server, &c->call, &c->details, &c->md, cq,
                                 cq, TAG(c, T_REQUEST));
  else
    e = grpc_server_request_registered_call(
        server, methods[method], &c->call, &c->deadline, &c->md,
        method == UNARY || method == SERVER_STREAM ? &c->msg : NULL, cq, cq,
        TAG(c, T_REQUEST));
  if (e != GRPC_CALL_OK) {
    fprintf(stderr, "bench_core_server: request call: %d\n", (int)e);
    grpc_metadata_array_destroy(&c->md);
    grpc_call_details_destroy(&c->details);
    free(c);
    return;
  }
  live++;
}

static void call_free(call *c) {
  if (c->msg)
    grpc_byte_buffer_destroy(c->msg);
  grpc_slice_unref(c->out);
  grpc_metadata_array_destroy(&c->md);
  grpc_call_details_destroy(&c->details);
  if (c->call)
    grpc_call_unref(c->call);
  free(c);
  live--;
}

static void recv_next(call *c) {
  grpc_op op = op_recv(c);
  c->receiving = 1;
  start(c, T_STEP, &op, 1);
}

/* ServerStream: the next message, or the status after the last one. */
static void stream_next(call *c) {
  grpc_op ops[2];
  size_t n = 0;
  if (!c->sent_md)
    ops[n++] = op_md(c);
  if (c->left > 0) {
    c->left--;
    c->msg = grpc_raw_byte_buffer_create(&c->out, 1);
    ops[n++] = op_send(c->msg);
  } else {
    ops[n++] = op_status(c, GRPC_STATUS_OK);
  }
  start(c, T_STEP, ops, n);
}

/* A requested call has arrived. */
static void begin(call *c) {
  grpc_op ops[4];
  uint64_t v[2];
  if (c->method == OTHER) {
    ops[0] = op_md(c);
    ops[1] = op_status(c, GRPC_STATUS_UNIMPLEMENTED);
    ops[2] = op_close(c);
    start(c, T_STEP, ops, 3);
    return;
  }
  if (c->method == UNARY) { /* the reply is the request, byte for byte */
    if (!c->msg)
      c->msg = grpc_raw_byte_buffer_create(NULL, 0);
    ops[0] = op_md(c);
    ops[1] = op_send(c->msg);
    ops[2] = op_status(c, GRPC_STATUS_OK);
    ops[3] = op_close(c);
    start(c, T_STEP, ops, 4);
    return;
  }
  ops[0] = op_close(c); /* completes when the call ends, or is cancelled */
  start(c, T_CLOSE, ops, 1);
  if (c->over)
    return;
  if (c->method == SERVER_STREAM) {
    int rc = parse(c->msg, v);
    int32_t count = (int32_t)v[0], size = (int32_t)v[1];
    if (c->msg)
      grpc_byte_buffer_destroy(c->msg);
    c->msg = NULL;
    if (rc < 0 || count < 0 || size < 0) {
      ops[0] = op_md(c);
      ops[1] = op_status(c, GRPC_STATUS_INVALID_ARGUMENT);
      start(c, T_STEP, ops, 2);
      return;
    }
    c->left = count;
    c->out = payload(NULL, (size_t)size, 'x');
    stream_next(c);
  } else {
    recv_next(c);
  }
}

/* The call's sequential batch has completed. */
static void step(call *c) {
  grpc_op ops[3];
  size_t n = 0;
  uint64_t v[2];
  switch (c->method) {
  case SERVER_STREAM:
    grpc_byte_buffer_destroy(c->msg);
    c->msg = NULL;
    stream_next(c);
    return;
  case CLIENT_STREAM:
    if (c->msg) { /* one more Payload: count its data */
      if (parse(c->msg, v) < 0) {
        fail(c);
        return;
      }
      c->total += v[0];
      grpc_byte_buffer_destroy(c->msg);
      recv_next(c);
    } else { /* half-closed: the total, in decimal */
      char text[24];
      int len = snprintf(text, sizeof(text), "%llu",
                         (unsigned long long)c->total);
      grpc_slice s = payload(text, (size_t)len, 0);
      c->msg = grpc_raw_byte_buffer_create(&s, 1);
      grpc_slice_unref(s);
      ops[0] = op_md(c);
      ops[1] = op_send(c->msg);
      ops[2] = op_status(c, GRPC_STATUS_OK);
      start(c, T_STEP, ops, 3);
    }
    return;
  case BIDI:
    if (!c->receiving) { /* an echo was sent: receive the next one */
      grpc_byte_buffer_destroy(c->msg);
      recv_next(c);
      return;
    }
    c->receiving = 0;
    if (!c->sent_md)
      ops[n++] = op_md(c);
    if (c->msg) /* echo it */
      ops[n++] = op_send(c->msg);
    else /* half-closed */
      ops[n++] = op_status(c, GRPC_STATUS_OK);
    start(c, T_STEP, ops, n);
    return;
  }
}

static void on_event(void *tag, int ok) {
  call *c = (call *)((uintptr_t)tag & ~(uintptr_t)3);
  int kind = (int)((uintptr_t)tag & 3);
  if (kind == T_REQUEST) {
    if (!ok) { /* the server is shutting down */
      call_free(c);
      return;
    }
    if (!stopping)
      request(c->method); /* keep as many requested */
    begin(c);
  } else {
    c->pending--;
    if (kind == T_CLOSE ? c->cancelled : !ok)
      fail(c); /* cancelled, or the client went: stop there */
    else if (kind == T_STEP && !c->over)
      step(c);
  }
  if (c->pending == 0)
    call_free(c);
}

/* ---- the program ---- */

/* Debian's abseil builds absl::Mutex, gRPC core's lock, with its deadlock
 * detector on: a good part of the CPU of a small call. piperpc switches it
 * off (transport/core.c), so this server does the same, for a like-for-like
 * comparison; PRPC_ABSL_DEADLOCK_DETECTION=1 keeps it on. */
static void absl_fast_mutexes(void) {
  typedef void (*set_mode_fn)(int);
  const char *keep = getenv("PRPC_ABSL_DEADLOCK_DETECTION");
  set_mode_fn set_mode;
  if (keep && strcmp(keep, "1") == 0)
    return;
  set_mode = (set_mode_fn)(uintptr_t)dlsym(
      RTLD_DEFAULT,
      "_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE");
  if (!set_mode)
    set_mode = (set_mode_fn)(uintptr_t)dlsym(
        RTLD_DEFAULT,
        "_ZN4absl28SetMutexDeadlockDetectionModeENS_15OnDeadlockCycleE");
  if (set_mode)
    set_mode(0); /* absl::OnDeadlockCycle::kIgnore */
}

static void on_signal(int sig) {
  (void)sig;
  got_signal = 1;
}

/* Whether every inherited fd's peer has closed (n > 0). */
static int all_hung_up(const int *fds, int n) {
  for (int i = 0; i < n; i++) {
    struct pollfd p = {.fd = fds[i], .events = POLLRDHUP};
    if (poll(&p, 1, 0) != 1 || !(p.revents & (POLLRDHUP | POLLHUP | POLLERR)))
      return 0;
  }
  return n > 0;
}

static void usage(void) {
  fprintf(stderr, "usage: bench_core_server --listen ADDR [--listen ADDR ...]"
                  "\n  ADDR: unix:/path, unix-abstract:name, HOST:PORT, "
                  "fd:N\n");
  exit(2);
}

int main(int argc, char **argv) {
  grpc_arg arg = {.type = GRPC_ARG_INTEGER,
                  .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                  .value.integer = 64 << 20};
  grpc_channel_args args = {1, &arg};
  grpc_server_credentials *creds;
  struct sigaction sa = {.sa_handler = on_signal};
  gpr_timespec tick = gpr_time_from_millis(50, GPR_TIMESPAN);
  int fds[64], nfds = 0, nsockets = 0, rc = 0;

  if (argc < 3 || argc % 2 == 0)
    usage();
  for (int i = 1; i < argc; i += 2)
    if (strcmp(argv[i], "--listen") != 0)
      usage();
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  /* Everything here allocates on the main thread, from glibc's brk heap,
   * whose top is given back to the kernel (and faulted in again) after each
   * large message: at 1 MiB, most of the server's CPU (measured; piperpc's
   * threads allocate from per-thread arenas and do not hit it). */
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  absl_fast_mutexes();
  grpc_init();
  cq = grpc_completion_queue_create_for_next(NULL);
  server = grpc_server_create(&args, NULL);
  grpc_server_register_completion_queue(server, cq, NULL);
  for (int m = 0; m < NMETHODS; m++)
    methods[m] = grpc_server_register_method(
        server, method_names[m], NULL,
        m == UNARY || m == SERVER_STREAM
            ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER
            : GRPC_SRM_PAYLOAD_NONE,
        0);
  creds = grpc_insecure_server_credentials_create();
  for (int i = 2; i < argc && rc == 0; i += 2) { /* sockets, before start */
    const char *a = argv[i];
    int port;
    if (strncmp(a, "fd:", 3) == 0)
      continue;
    nsockets++;
    port = grpc_server_add_http2_port(server, a, creds);
    if (port == 0) {
      fprintf(stderr, "bench_core_server: could not listen on %s\n", a);
      rc = 1;
    } else if (strncmp(a, "unix:", 5) == 0 ||
               strncmp(a, "unix-abstract:", 14) == 0) {
      printf("bench_core_server: listening on %s\n", a);
    } else {
      printf("bench_core_server: listening on %s (port %d)\n", a, port);
    }
  }
  grpc_server_start(server);
  for (int i = 2; i < argc && rc == 0; i += 2) { /* inherited sockets */
    char *end;
    long fd;
    int flags;
    if (strncmp(argv[i], "fd:", 3) != 0)
      continue;
    fd = strtol(argv[i] + 3, &end, 10);
    if (end == argv[i] + 3 || *end || fd < 0 || fd > 1 << 20 ||
        nfds == (int)(sizeof(fds) / sizeof(fds[0])) ||
        (flags = fcntl((int)fd, F_GETFL)) < 0 ||
        fcntl((int)fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
        (fds[nfds] = fcntl((int)fd, F_DUPFD_CLOEXEC, 3)) < 0) {
      fprintf(stderr, "bench_core_server: bad inherited socket %s\n",
              argv[i]);
      rc = 1;
      break;
    }
    nfds++; /* the dup tells when the peer has gone */
    grpc_server_add_channel_from_fd(server, (int)fd, creds);
    printf("bench_core_server: listening on %s\n", argv[i]);
  }
  grpc_server_credentials_release(creds);
  if (rc == 0) {
    for (int m = 0; m <= OTHER; m++)
      for (int k = 0; k < (m == OTHER ? 1 : REQUESTED); k++)
        request(m);
    printf("bench_core_server: ready\n");
  }
  fflush(stdout);

  /* Serve until a signal, or until the only clients (fd:N) have gone. */
  while (rc == 0 && !got_signal) {
    grpc_event ev = grpc_completion_queue_next(cq, tick, NULL);
    if (ev.type == GRPC_OP_COMPLETE)
      on_event(ev.tag, ev.success);
    else if (nsockets == 0 && all_hung_up(fds, nfds))
      break;
  }

  /* Stop: cancel what runs, let every call finish, then tear down. */
  stopping = 1;
  grpc_server_shutdown_and_notify(server, cq, &shutdown_tag);
  grpc_server_cancel_all_calls(server);
  for (int down = 0; !down || live > 0;) {
    grpc_event ev = grpc_completion_queue_next(
        cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    if (ev.type != GRPC_OP_COMPLETE)
      break;
    if (ev.tag == &shutdown_tag)
      down = 1;
    else
      on_event(ev.tag, ev.success);
  }
  grpc_server_destroy(server);
  grpc_completion_queue_shutdown(cq);
  while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC),
                                    NULL)
             .type != GRPC_QUEUE_SHUTDOWN)
    ;
  grpc_completion_queue_destroy(cq);
  for (int i = 0; i < nfds; i++)
    close(fds[i]);
  grpc_shutdown();
  return rc;
}
