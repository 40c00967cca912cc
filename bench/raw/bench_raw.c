/* bench_raw: the raw-transport baselines of the piperpc benchmark.
 *
 * "How fast is the pipe itself": the benchmark's four cells with no gRPC,
 * no HTTP/2 and no protobuf, just length-prefixed messages over a bare
 * transport. The client follows bench/PROTOCOL.md exactly:
 *
 *   bench_raw --target T --cell CELL --size BYTES [--inflight N]
 *             [--warmup S] [--duration S]
 *   bench_raw --listen ADDR [--listen ADDR ...] [--threads N]
 *
 * Targets: pipe, socketpair, shm (the client spawns its own server, see
 * below), unix:/path, HOST:PORT (TCP, TCP_NODELAY on both ends), fd:N (an
 * inherited connected stream socket). Listen addresses: unix:/path,
 * HOST:PORT (port 0 = any; "(port N)" is printed), fd:N (a listening
 * socket is accepted from, a connected one is served once).
 *
 * Tuning options, not part of the protocol (defaults are the system's):
 *   --bufsize BYTES   pipe: F_SETPIPE_SZ on both pipes; sockets: SO_SNDBUF
 *                     and SO_RCVBUF (client side; on --listen, accepted
 *                     sockets; socketpair: both ends)
 *   --shm-ring BYTES  shm ring capacity per direction (power of two,
 *                     default 1 MiB)
 *   --spin-us US      shm: bounded spin before sleeping (default 20; 0 when
 *                     the two processes may only share one CPU)
 *   --cpus C[,S]      pin the client to CPU C and a spawned server to CPU
 *                     S (default: the scheduler places both; see the
 *                     placement note below); --cpu N pins --listen/--serve
 *
 * ---- Wire format --------------------------------------------------------
 * Every message is a frame: a little-endian uint32 length, then that many
 * bytes. The first frame on a connection is the hello, 12 bytes: "PRW1",
 * cell (uint32 LE: 1 unary, 2 pingpong, 3 server_stream, 4 client_stream),
 * size (uint32 LE). The server does not answer the hello; then:
 *   unary, pingpong  the server echoes every frame, in order, until EOF.
 *                    unary with --inflight N > 1 pipelines: the client keeps
 *                    N requests outstanding on the one connection (its
 *                    socket is non-blocking and it polls for both
 *                    directions, so big frames cannot deadlock).
 *                    pingpong is the same as unary with inflight 1 (the
 *                    option is ignored for pingpong and the stream cells).
 *   server_stream    the server writes frames of `size` bytes as fast as
 *                    the transport takes them, until a write fails because
 *                    the client closed (EPIPE / ECONNRESET).
 *   client_stream    the client writes frames of `size` bytes; the server
 *                    reads and counts them and writes nothing until the
 *                    client half-closes, then one frame holding the total
 *                    payload bytes received in decimal ASCII (as
 *                    Echo.ClientStream does), which the client checks.
 * Writers send one frame with one system call (writev of length + payload;
 * nothing is batched or coalesced). Readers are buffered: they read up to
 * 256 KiB at a time and take as many frames from it as arrived; a frame
 * over 64 KiB is read straight into its own buffer. So each byte is copied
 * twice (into the kernel, out of it), and the shm ring copies twice too
 * (into the ring, out of it).
 *
 * ---- Measurement ---------------------------------------------------------
 * One op: unary/pingpong a round trip (latency: from the start of writing
 * the request to having the whole reply; pipelined, from when the request
 * was issued, i.e. when an earlier reply freed its slot, so the time it
 * waits behind other requests counts, as on a busy gRPC channel);
 * server_stream a message received, client_stream a message written
 * (latency: the time since the previous message). Ops completing inside
 * the window count. Latencies are integer nanoseconds (CLOCK_MONOTONIC);
 * every sample of the window is kept, in a counting array (one slot per
 * nanosecond below ~1 ms, the rest in a list that is sorted), so p50/p99
 * are exact nearest-rank percentiles over all of them -- a counting sort,
 * with memory that does not grow with the rate.
 * cpu_* is getrusage(RUSAGE_SELF) over the window. For the spawned targets
 * the JSON adds server_cpu_user_s / server_cpu_sys_s (the child's
 * /proc/PID/stat utime and stime at WINDOW_START and WINDOW_END, so 10 ms
 * ticks) and server_rss_kb (the child's VmHWM at WINDOW_END).
 *
 * ---- Placement -------------------------------------------------------------
 * Where the scheduler puts the two processes can matter more than the
 * transport. Waking a process that sleeps on another CPU is slow on a
 * virtual machine (about 20 us per wake-up on the 2-vCPU KVM guest this was
 * written on: a pipe round trip took ~43 us across CPUs, ~5 us on one CPU),
 * while streams of big messages gain from two CPUs copying at once. The
 * placement the scheduler picks tends to stick for a whole run, so unpinned
 * results are bimodal; --cpus C,S makes them repeatable (the driver's --pin
 * runs everything on CPU 0, i.e. --cpus 0,0). shm spinning only pays with
 * the two on different CPUs.
 *
 * ---- Spawned servers: pipe, socketpair, shm ------------------------------
 * These need a parent and a child: the client makes the channel, then
 * posix_spawn()s itself (/proc/self/exe) --serve KIND --fd ... --ppid PID,
 * which serves the one connection and exits; the client waits for it and
 * fails if it did not exit 0. pipe: two pipe(2)s, one each way (default
 * capacity 64 KiB each). socketpair: AF_UNIX SOCK_STREAM.
 *
 * shm (the "memory-mapped files" row): a memfd mapped MAP_SHARED by both
 * processes (the child inherits the fd and maps it too). It holds a control
 * page and two byte rings, client->server and server->client, each a
 * single-producer/single-consumer ring of a power-of-two capacity carrying
 * the same framed byte stream as the sockets do:
 *   head  bytes ever written (only the producer stores it, release);
 *   tail  bytes ever read (only the consumer stores it, release);
 * on separate cache lines, each side keeping a private copy of the other's
 * counter and reloading it (acquire) only when the ring looks empty/full.
 * Free space is cap - (head - tail); data is [tail, head) mod cap. A writer
 * copies as much as fits, a reader as much as it wants and is there (at most
 * a quarter of the ring per call); both publish their counter after every
 * 16 KiB copied and at the end, so that the two copies of a big message
 * overlap instead of taking turns. Flags prod_closed (no more data: EOF once
 * drained) and cons_closed (reader gone: writes fail with EPIPE) give
 * half-close and close.
 * Waiting: a side that cannot progress first spins (checking the ring, with
 * a pause instruction) for at most --spin-us; then it sleeps on a futex.
 * Each process has one futex word ("bell") and a "waiting" mask (WANT_READ,
 * WANT_WRITE) in the control page, so one sleep can wait for "readable or
 * writable" (the pipelined client needs that). Sleeping: read bell, store
 * waiting = mask, seq_cst fence, re-check the rings, FUTEX_WAIT(bell, old
 * value). Waking: after publishing head (or tail) the other side does a
 * seq_cst fence and loads the peer's mask; only if the peer waits for that
 * (WANT_READ after head, WANT_WRITE after tail) does it clear the mask,
 * bump the bell and FUTEX_WAKE. The two fences make this Dekker-safe:
 * either the sleeper sees the new counter, or the publisher sees the mask
 * (and then the bell moved, so FUTEX_WAIT returns at once). A side that
 * is spinning costs its peer no system call at all, and a sleeper is woken
 * once however much is published before it runs. Closing bumps the bell
 * unconditionally. Sleeps time out every 200 ms to notice a dead peer (the
 * child also has PR_SET_PDEATHSIG). Spinning only delays a peer that shares
 * our CPU, so a side skips it when the peer last began to wait on the CPU
 * it is on now (each side records sched_getcpu() there), and it is off
 * altogether when the two may only share one CPU (the driver's --pin).
 * Without that check the two often ended up on one CPU, each spinning out
 * its 20 us while the other could not run: ~50 us round trips instead of
 * ~0.5.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define PROG "bench_raw"
#define MAX_FRAME (64u << 20)        /* refuse longer frames */
#define RBUF_CAP (256u << 10)        /* buffered reader */
#define INLINE_MAX ((64u << 10) + 4) /* bigger frames bypass the buffer */
#define HELLO_MAGIC 0x31575250u      /* "PRW1" read as uint32 LE */

enum { CELL_UNARY = 1, CELL_PINGPONG, CELL_SERVER_STREAM, CELL_CLIENT_STREAM };
static const char *const cell_names[] = {NULL, "unary", "pingpong",
                                         "server_stream", "client_stream"};

/* results of the low-level I/O calls */
#define IO_AGAIN 0
#define IO_ERR (-1)
#define IO_EOF (-2)

#define WANT_READ 1u
#define WANT_WRITE 2u

static void die(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, PROG ": ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(1);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void put_le32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16);
  p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_le32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p)
    die("out of memory (%zu bytes)", n);
  return p;
}

/* ---- shared-memory rings ---- */

struct ring_ctl {
  _Alignas(64) _Atomic uint64_t head; /* producer's */
  _Alignas(64) _Atomic uint64_t tail; /* consumer's */
  _Alignas(64) _Atomic uint32_t prod_closed;
  _Atomic uint32_t cons_closed;
};

struct side_ctl {
  _Alignas(64) _Atomic uint32_t bell; /* futex word */
  _Atomic uint32_t waiting;           /* WANT_* while it may sleep */
  _Atomic int32_t cpu;                /* where it last began to wait */
};

#define SHM_MAGIC 0x6d687352u /* "Rshm" */
#define SHM_DATA_OFF 4096u
#define SHM_CHUNK ((size_t)16 << 10) /* publish head/tail this often */

struct shm_hdr {
  uint32_t magic, version;
  uint64_t cap;
  struct ring_ctl ring[2]; /* 0: client->server, 1: server->client */
  struct side_ctl side[2]; /* 0: client, 1: server */
};

_Static_assert(sizeof(struct shm_hdr) <= SHM_DATA_OFF, "control page");

/* ---- connections ---- */

enum { K_FD, K_SHM };

struct conn {
  int kind;
  int rfd, wfd; /* the same fd for sockets */
  int is_sock;
  /* shm */
  struct shm_hdr *h;
  size_t maplen;
  unsigned char *txd, *rxd;
  struct ring_ctl *tx, *rx;
  struct side_ctl *me, *peer;
  uint64_t cap, mask;
  uint64_t tx_head, tx_tail_cache, rx_tail, rx_head_cache;
  uint64_t spin_ns;
  pid_t child_pid;  /* client: the server child (liveness checks) */
  pid_t parent_pid; /* spawned server: the client */
  /* buffered frame reader */
  unsigned char *rbuf;
  size_t rpos, rend;
  unsigned char *big;
  size_t bigcap;
  int in_big;
  uint32_t need;
  size_t got;
};

static void conn_init_common(struct conn *c) {
  c->rbuf = xmalloc(RBUF_CAP);
  c->rpos = c->rend = 0;
  c->big = NULL;
  c->bigcap = 0;
  c->in_big = 0;
}

static void conn_init_fd(struct conn *c, int rfd, int wfd) {
  struct stat st;
  memset(c, 0, sizeof *c);
  c->kind = K_FD;
  c->rfd = rfd;
  c->wfd = wfd;
  c->is_sock = fstat(rfd, &st) == 0 && S_ISSOCK(st.st_mode);
  conn_init_common(c);
}

static void shm_wake(struct side_ctl *s) {
  atomic_fetch_add_explicit(&s->bell, 1, memory_order_seq_cst);
  syscall(SYS_futex, &s->bell, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* side 0 = client, 1 = server */
static void conn_init_shm(struct conn *c, struct shm_hdr *h, size_t maplen,
                          int side, uint64_t spin_ns) {
  memset(c, 0, sizeof *c);
  c->kind = K_SHM;
  c->rfd = c->wfd = -1;
  c->h = h;
  c->maplen = maplen;
  c->cap = h->cap;
  c->mask = h->cap - 1;
  unsigned char *data = (unsigned char *)h + SHM_DATA_OFF;
  c->tx = &h->ring[side];
  c->rx = &h->ring[1 - side];
  c->txd = data + (size_t)side * h->cap;
  c->rxd = data + (size_t)(1 - side) * h->cap;
  c->me = &h->side[side];
  c->peer = &h->side[1 - side];
  c->tx_head = atomic_load(&c->tx->head);
  c->tx_tail_cache = atomic_load(&c->tx->tail);
  c->rx_tail = atomic_load(&c->rx->tail);
  c->rx_head_cache = atomic_load(&c->rx->head);
  c->spin_ns = spin_ns;
  conn_init_common(c);
}

static int peer_alive(struct conn *c) {
  if (c->child_pid > 0) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)c->child_pid, &si, WEXITED | WNOHANG | WNOWAIT) ==
            0 &&
        si.si_pid == c->child_pid)
      return 0;
  }
  if (c->parent_pid > 0 && getppid() != c->parent_pid)
    return 0;
  return 1;
}

static int shm_ready(struct conn *c, unsigned want) {
  if (want & WANT_READ) {
    if (atomic_load_explicit(&c->rx->head, memory_order_acquire) !=
            c->rx_tail ||
        atomic_load_explicit(&c->rx->prod_closed, memory_order_acquire))
      return 1;
  }
  if (want & WANT_WRITE) {
    uint64_t tail = atomic_load_explicit(&c->tx->tail, memory_order_acquire);
    if (c->tx_head - tail < c->cap ||
        atomic_load_explicit(&c->tx->cons_closed, memory_order_acquire))
      return 1;
  }
  return 0;
}

static int shm_wait(struct conn *c, unsigned want) {
  int cpu = sched_getcpu();
  atomic_store_explicit(&c->me->cpu, cpu, memory_order_relaxed);
  /* spinning on the CPU the peer last waited on would only keep it off */
  if (c->spin_ns &&
      atomic_load_explicit(&c->peer->cpu, memory_order_relaxed) != cpu) {
    uint64_t t0 = now_ns();
    for (unsigned i = 1;; i++) {
      if (shm_ready(c, want))
        return 0;
      cpu_relax();
      if ((i & 31) == 0 && now_ns() - t0 >= c->spin_ns)
        break;
    }
  }
  for (;;) {
    uint32_t seq = atomic_load_explicit(&c->me->bell, memory_order_acquire);
    atomic_store_explicit(&c->me->waiting, want, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    if (shm_ready(c, want))
      break;
    struct timespec to = {0, 200 * 1000 * 1000};
    long r = syscall(SYS_futex, &c->me->bell, FUTEX_WAIT, seq, &to, NULL, 0);
    if (r == -1 && errno == ETIMEDOUT && !peer_alive(c)) {
      atomic_store_explicit(&c->me->waiting, 0, memory_order_relaxed);
      errno = EPIPE;
      return -1;
    }
  }
  atomic_store_explicit(&c->me->waiting, 0, memory_order_relaxed);
  return 0;
}

/* after publishing: wake the peer if it sleeps waiting for `what`. Taking
 * its mask to 0 means one wake-up per sleep: until it runs and waits again,
 * further publications cost no system call (when both share a CPU, the
 * sleeper may not run for a while). */
static inline void shm_notify(struct conn *c, unsigned what) {
  atomic_thread_fence(memory_order_seq_cst);
  if ((atomic_load_explicit(&c->peer->waiting, memory_order_relaxed) & what) &&
      atomic_exchange_explicit(&c->peer->waiting, 0, memory_order_seq_cst))
    shm_wake(c->peer);
}

/* >0 bytes read, IO_AGAIN, IO_EOF or IO_ERR; never blocks on shm, blocks on
 * an fd unless it is O_NONBLOCK */
static ssize_t conn_read_some(struct conn *c, void *buf, size_t n) {
  if (c->kind == K_FD) {
    for (;;) {
      ssize_t r = read(c->rfd, buf, n);
      if (r > 0)
        return r;
      if (r == 0)
        return IO_EOF;
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return IO_AGAIN;
      return IO_ERR;
    }
  }
  uint64_t avail = c->rx_head_cache - c->rx_tail;
  if (avail < n) {
    c->rx_head_cache = atomic_load_explicit(&c->rx->head, memory_order_acquire);
    avail = c->rx_head_cache - c->rx_tail;
    if (avail == 0) {
      if (!atomic_load_explicit(&c->rx->prod_closed, memory_order_acquire))
        return IO_AGAIN;
      c->rx_head_cache =
          atomic_load_explicit(&c->rx->head, memory_order_acquire);
      avail = c->rx_head_cache - c->rx_tail;
      if (avail == 0)
        return IO_EOF;
    }
  }
  if (n > avail)
    n = (size_t)avail;
  if (n > c->cap / 4) /* leave the producer room while we copy */
    n = (size_t)(c->cap / 4);
  /* copy out in pieces, handing each back to the producer at once */
  for (size_t done = 0; done < n;) {
    size_t off = (size_t)(c->rx_tail & c->mask), k = n - done;
    if (k > c->cap - off)
      k = (size_t)(c->cap - off);
    if (k > SHM_CHUNK)
      k = SHM_CHUNK;
    memcpy((unsigned char *)buf + done, c->rxd + off, k);
    done += k;
    c->rx_tail += k;
    atomic_store_explicit(&c->rx->tail, c->rx_tail, memory_order_release);
    shm_notify(c, WANT_WRITE);
  }
  return (ssize_t)n;
}

/* >0 bytes written, IO_AGAIN or IO_ERR (errno EPIPE when the peer closed) */
static ssize_t conn_writev_some(struct conn *c, struct iovec *iov, int cnt) {
  if (c->kind == K_FD) {
    for (;;) {
      ssize_t r = writev(c->wfd, iov, cnt);
      if (r >= 0)
        return r > 0 ? r : IO_AGAIN;
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return IO_AGAIN;
      return IO_ERR;
    }
  }
  if (atomic_load_explicit(&c->tx->cons_closed, memory_order_acquire)) {
    errno = EPIPE;
    return IO_ERR;
  }
  size_t want = 0;
  for (int i = 0; i < cnt; i++)
    want += iov[i].iov_len;
  uint64_t space = c->cap - (c->tx_head - c->tx_tail_cache);
  if (space < want) {
    c->tx_tail_cache = atomic_load_explicit(&c->tx->tail, memory_order_acquire);
    space = c->cap - (c->tx_head - c->tx_tail_cache);
    if (space == 0)
      return IO_AGAIN;
  }
  /* copy in pieces; publish when SHM_CHUNK bytes are pending and at the
   * end, so that the consumer can copy out while we copy in */
  size_t done = 0, pending = 0;
  for (int i = 0; i < cnt && space > 0; i++) {
    const unsigned char *src = iov[i].iov_base;
    size_t left = iov[i].iov_len < space ? iov[i].iov_len : (size_t)space;
    space -= left;
    while (left > 0) {
      size_t off = (size_t)(c->tx_head & c->mask), k = left;
      if (k > c->cap - off)
        k = (size_t)(c->cap - off);
      if (k > SHM_CHUNK - pending)
        k = SHM_CHUNK - pending;
      memcpy(c->txd + off, src, k);
      src += k;
      left -= k;
      done += k;
      c->tx_head += k;
      pending += k;
      if (pending == SHM_CHUNK) {
        atomic_store_explicit(&c->tx->head, c->tx_head, memory_order_release);
        shm_notify(c, WANT_READ);
        pending = 0;
      }
    }
  }
  if (pending) {
    atomic_store_explicit(&c->tx->head, c->tx_head, memory_order_release);
    shm_notify(c, WANT_READ);
  }
  return (ssize_t)done;
}

/* block until the connection may be readable (WANT_READ) and/or writable */
static int conn_wait(struct conn *c, unsigned want) {
  if (c->kind == K_SHM)
    return shm_wait(c, want);
  struct pollfd p[2];
  int n = 0;
  if (c->rfd == c->wfd) {
    p[0].fd = c->rfd;
    p[0].events = (short)(((want & WANT_READ) ? POLLIN : 0) |
                          ((want & WANT_WRITE) ? POLLOUT : 0));
    n = 1;
  } else {
    if (want & WANT_READ)
      p[n].fd = c->rfd, p[n++].events = POLLIN;
    if (want & WANT_WRITE)
      p[n].fd = c->wfd, p[n++].events = POLLOUT;
  }
  for (;;) {
    int r = poll(p, (nfds_t)n, -1);
    if (r >= 0)
      return 0;
    if (errno != EINTR)
      return -1;
  }
}

static void conn_set_nonblock(struct conn *c) {
  if (c->kind != K_FD)
    return;
  int fds[2] = {c->rfd, c->wfd};
  for (int i = 0; i < 2; i++) {
    int fl = fcntl(fds[i], F_GETFL);
    if (fl < 0 || fcntl(fds[i], F_SETFL, fl | O_NONBLOCK) < 0)
      die("fcntl O_NONBLOCK: %s", strerror(errno));
  }
}

/* no more data from us; we still read */
static void conn_shutdown_write(struct conn *c) {
  if (c->kind == K_SHM) {
    atomic_store_explicit(&c->tx->prod_closed, 1, memory_order_release);
    shm_wake(c->peer);
  } else if (c->is_sock) {
    shutdown(c->wfd, SHUT_WR);
  } else if (c->wfd >= 0) {
    close(c->wfd);
    c->wfd = -1;
  }
}

static void conn_close(struct conn *c) {
  if (c->kind == K_SHM) {
    atomic_store_explicit(&c->tx->prod_closed, 1, memory_order_release);
    atomic_store_explicit(&c->rx->cons_closed, 1, memory_order_release);
    shm_wake(c->peer);
    munmap(c->h, c->maplen);
  } else {
    if (c->rfd >= 0)
      close(c->rfd);
    if (c->wfd >= 0 && c->wfd != c->rfd)
      close(c->wfd);
  }
  c->rfd = c->wfd = -1;
  free(c->rbuf);
  free(c->big);
  c->rbuf = c->big = NULL;
}

/* ---- frames ---- */

/* One frame: 1 with *data and *len set (valid until the next call), 0 when it
 * would block (block == 0 only), IO_EOF at a clean end between frames,
 * IO_ERR otherwise (errno set). */
static int frame_read(struct conn *c, int block, unsigned char **data,
                      uint32_t *len) {
  ssize_t r;
  if (!c->in_big) {
    for (;;) {
      size_t have = c->rend - c->rpos, total = 4;
      if (have >= 4) {
        uint32_t n = get_le32(c->rbuf + c->rpos);
        if (n > MAX_FRAME) {
          errno = EPROTO;
          return IO_ERR;
        }
        total = (size_t)n + 4;
        if (total <= have) {
          *data = c->rbuf + c->rpos + 4;
          *len = n;
          c->rpos += total;
          return 1;
        }
        if (total > INLINE_MAX) { /* read the body straight into `big` */
          if (c->bigcap < n) {
            free(c->big);
            c->big = xmalloc(n);
            c->bigcap = n;
          }
          memcpy(c->big, c->rbuf + c->rpos + 4, have - 4);
          c->got = have - 4;
          c->need = n;
          c->rpos = c->rend = 0;
          c->in_big = 1;
          break;
        }
      }
      if (have == 0)
        c->rpos = c->rend = 0;
      else if (c->rpos + total > RBUF_CAP) {
        memmove(c->rbuf, c->rbuf + c->rpos, have);
        c->rpos = 0;
        c->rend = have;
      }
      r = conn_read_some(c, c->rbuf + c->rend, RBUF_CAP - c->rend);
      if (r > 0) {
        c->rend += (size_t)r;
        continue;
      }
      if (r == IO_AGAIN) {
        if (!block)
          return 0;
        if (conn_wait(c, WANT_READ) < 0)
          return IO_ERR;
        continue;
      }
      if (r == IO_EOF) {
        if (have == 0)
          return IO_EOF;
        errno = EPROTO; /* truncated frame */
      }
      return IO_ERR;
    }
  }
  while (c->got < c->need) {
    r = conn_read_some(c, c->big + c->got, c->need - c->got);
    if (r > 0) {
      c->got += (size_t)r;
    } else if (r == IO_AGAIN) {
      if (!block)
        return 0;
      if (conn_wait(c, WANT_READ) < 0)
        return IO_ERR;
    } else {
      if (r == IO_EOF)
        errno = EPROTO;
      return IO_ERR;
    }
  }
  c->in_big = 0;
  *data = c->big;
  *len = c->need;
  return 1;
}

struct wstate {
  unsigned char hdr[4];
  const unsigned char *p;
  uint32_t len;
  size_t off; /* of the 4 + len bytes */
  int active;
};

static void wstate_start(struct wstate *w, const void *p, uint32_t len) {
  put_le32(w->hdr, len);
  w->p = p;
  w->len = len;
  w->off = 0;
  w->active = 1;
}

/* 1 when the frame is all written, 0 when it would block, IO_ERR */
static int wstate_step(struct conn *c, struct wstate *w) {
  while (w->off < 4 + (size_t)w->len) {
    struct iovec iov[2];
    int cnt = 0;
    if (w->off < 4) {
      iov[cnt].iov_base = w->hdr + w->off;
      iov[cnt++].iov_len = 4 - w->off;
      if (w->len) {
        iov[cnt].iov_base = (void *)w->p;
        iov[cnt++].iov_len = w->len;
      }
    } else {
      iov[cnt].iov_base = (void *)(w->p + (w->off - 4));
      iov[cnt++].iov_len = w->len - (w->off - 4);
    }
    ssize_t r = conn_writev_some(c, iov, cnt);
    if (r > 0)
      w->off += (size_t)r;
    else if (r == IO_AGAIN)
      return 0;
    else
      return IO_ERR;
  }
  w->active = 0;
  return 1;
}

/* blocking; 0 or -1 (errno) */
static int frame_write(struct conn *c, const void *p, uint32_t len) {
  struct wstate w;
  wstate_start(&w, p, len);
  for (;;) {
    int r = wstate_step(c, &w);
    if (r == 1)
      return 0;
    if (r < 0)
      return -1;
    if (conn_wait(c, WANT_WRITE) < 0)
      return -1;
  }
}

static void fill_pattern(unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    p[i] = (unsigned char)(i * 131u + (i >> 8) + 7u);
}

/* ---- server ---- */

static int write_failed_normally(void) {
  return errno == EPIPE || errno == ECONNRESET;
}

/* serves one connection to its end: 0, or -1 with a message on stderr */
static int serve_conn(struct conn *c) {
  unsigned char *d;
  uint32_t len;
  int r = frame_read(c, 1, &d, &len);
  if (r == IO_EOF)
    return 0; /* a probe that connected and left */
  if (r != 1) {
    fprintf(stderr, PROG ": reading the hello: %s\n", strerror(errno));
    return -1;
  }
  if (len != 12 || get_le32(d) != HELLO_MAGIC) {
    fprintf(stderr, PROG ": bad hello\n");
    return -1;
  }
  uint32_t cell = get_le32(d + 4), size = get_le32(d + 8);
  if (size > MAX_FRAME) {
    fprintf(stderr, PROG ": size %u too big\n", size);
    return -1;
  }
  switch (cell) {
  case CELL_UNARY:
  case CELL_PINGPONG:
    for (;;) {
      r = frame_read(c, 1, &d, &len);
      if (r == IO_EOF)
        return 0;
      if (r != 1)
        break;
      if (frame_write(c, d, len) < 0)
        break;
    }
    if (write_failed_normally())
      return 0; /* the client went away without a half-close */
    fprintf(stderr, PROG ": echo: %s\n", strerror(errno));
    return -1;
  case CELL_SERVER_STREAM: {
    unsigned char *p = xmalloc(size);
    fill_pattern(p, size);
    while (frame_write(c, p, size) == 0)
      ;
    free(p);
    if (write_failed_normally())
      return 0;
    fprintf(stderr, PROG ": server_stream: %s\n", strerror(errno));
    return -1;
  }
  case CELL_CLIENT_STREAM: {
    unsigned long long total = 0;
    char text[32];
    while ((r = frame_read(c, 1, &d, &len)) == 1)
      total += len;
    if (r != IO_EOF) {
      fprintf(stderr, PROG ": client_stream: %s\n", strerror(errno));
      return -1;
    }
    int n = snprintf(text, sizeof text, "%llu", total);
    if (frame_write(c, text, (uint32_t)n) < 0 && !write_failed_normally()) {
      fprintf(stderr, PROG ": client_stream reply: %s\n", strerror(errno));
      return -1;
    }
    return 0;
  }
  default:
    fprintf(stderr, PROG ": unknown cell %u\n", cell);
    return -1;
  }
}

static int opt_bufsize = 0;
static int opt_cpu_client = -1, opt_cpu_server = -1; /* --cpus C,S */

static void pin_self(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0)
    die("cannot run on CPU %d: %s", cpu, strerror(errno));
}

static void sock_tune(int fd, int tcp) {
  int one = 1;
  if (tcp)
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (opt_bufsize > 0) {
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &opt_bufsize, sizeof opt_bufsize);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &opt_bufsize, sizeof opt_bufsize);
  }
}

static int sock_is_tcp(int fd) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
    return 0;
  return ss.ss_family == AF_INET || ss.ss_family == AF_INET6;
}

static void *conn_thread(void *arg) {
  int fd = (int)(intptr_t)arg;
  struct conn c;
  conn_init_fd(&c, fd, fd);
  serve_conn(&c);
  conn_close(&c);
  return NULL;
}

struct listener {
  int fd;
  const char *addr;
  char *unix_path;
  int tcp;
};

/* splits HOST:PORT ([v6]:PORT too); returns 0 or -1 */
static int split_hostport(const char *s, char *host, size_t hl, char *port,
                          size_t pl) {
  const char *colon = strrchr(s, ':');
  if (!colon || colon == s || !colon[1])
    return -1;
  size_t n = (size_t)(colon - s);
  if (s[0] == '[' && n >= 2 && s[n - 1] == ']')
    s++, n -= 2;
  if (n >= hl || strlen(colon + 1) >= pl)
    return -1;
  memcpy(host, s, n);
  host[n] = 0;
  strcpy(port, colon + 1);
  return 0;
}

static int tcp_socket(const char *addr, int listening, int *port_out) {
  char host[256], port[32];
  struct addrinfo hints, *res, *ai;
  if (split_hostport(addr, host, sizeof host, port, sizeof port) != 0)
    die("bad address %s (want HOST:PORT, unix:PATH or fd:N)", addr);
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = listening ? AI_PASSIVE : 0;
  int e = getaddrinfo(host, port, &hints, &res);
  if (e)
    die("%s: %s", addr, gai_strerror(e));
  int fd = -1, err = 0;
  for (ai = res; ai; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      err = errno;
      continue;
    }
    if (listening) {
      int one = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 128) == 0)
        break;
    } else if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
      break;
    }
    err = errno;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0)
    die("%s %s: %s", listening ? "listen on" : "connect to", addr,
        strerror(err));
  if (port_out) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    *port_out = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
      *port_out = ntohs(ss.ss_family == AF_INET6
                            ? ((struct sockaddr_in6 *)&ss)->sin6_port
                            : ((struct sockaddr_in *)&ss)->sin_port);
  }
  return fd;
}

static int unix_socket(const char *path, int listening) {
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof sa.sun_path)
    die("unix path too long: %s", path);
  strcpy(sa.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    die("socket: %s", strerror(errno));
  if (listening) {
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
      unlink(path); /* a stale socket from an earlier run */
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(fd, 128) != 0)
      die("listen on unix:%s: %s", path, strerror(errno));
  } else if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    die("connect to unix:%s: %s", path, strerror(errno));
  }
  return fd;
}

static int parse_fd(const char *s) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == 0 || *end || v < 0 || v > INT_MAX)
    die("bad fd: %s", s);
  return (int)v;
}

static int run_listen(const char **addrs, size_t n) {
  struct listener *ls = xmalloc(n * sizeof *ls);
  memset(ls, 0, n * sizeof *ls);
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  /* blocked in every thread; the main thread reads them from a signalfd */
  if (pthread_sigmask(SIG_BLOCK, &sigs, NULL) != 0)
    die("sigmask");
  for (size_t i = 0; i < n; i++) {
    const char *a = addrs[i];
    ls[i].addr = a;
    if (strncmp(a, "unix:", 5) == 0) {
      ls[i].fd = unix_socket(a + 5, 1);
      ls[i].unix_path = strdup(a + 5);
      printf(PROG ": listening on %s\n", a);
    } else if (strncmp(a, "fd:", 3) == 0) {
      int fd = parse_fd(a + 3), acc = 0;
      socklen_t sl = sizeof acc;
      if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &sl) != 0)
        die("%s: %s", a, strerror(errno));
      fcntl(fd, F_SETFD, FD_CLOEXEC);
      ls[i].fd = fd;
      ls[i].tcp = sock_is_tcp(fd);
      printf(PROG ": listening on %s\n", a);
      if (!acc) { /* a connected socket: serve it, then stop */
        printf(PROG ": ready\n");
        fflush(stdout);
        sock_tune(fd, ls[i].tcp);
        struct conn c;
        conn_init_fd(&c, fd, fd);
        int rc = serve_conn(&c);
        conn_close(&c);
        return rc == 0 ? 0 : 1;
      }
    } else {
      int port = 0;
      ls[i].fd = tcp_socket(a, 1, &port);
      ls[i].tcp = 1;
      printf(PROG ": listening on %s (port %d)\n", a, port);
    }
  }
  printf(PROG ": ready\n");
  fflush(stdout);

  int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
  if (sfd < 0)
    die("signalfd: %s", strerror(errno));
  struct pollfd *p = xmalloc((n + 1) * sizeof *p);
  for (size_t i = 0; i < n; i++)
    p[i].fd = ls[i].fd, p[i].events = POLLIN;
  p[n].fd = sfd;
  p[n].events = POLLIN;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  for (;;) {
    if (poll(p, (nfds_t)n + 1, -1) < 0) {
      if (errno == EINTR)
        continue;
      die("poll: %s", strerror(errno));
    }
    if (p[n].revents)
      break; /* SIGTERM / SIGINT / SIGHUP */
    for (size_t i = 0; i < n; i++) {
      if (!p[i].revents)
        continue;
      int fd = accept4(ls[i].fd, NULL, NULL, SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
          fprintf(stderr, PROG ": accept: %s\n", strerror(errno));
        continue;
      }
      sock_tune(fd, ls[i].tcp);
      pthread_t t;
      if (pthread_create(&t, &attr, conn_thread, (void *)(intptr_t)fd) != 0) {
        fprintf(stderr, PROG ": pthread_create failed\n");
        close(fd);
      }
    }
  }
  for (size_t i = 0; i < n; i++)
    if (ls[i].unix_path)
      unlink(ls[i].unix_path);
  fflush(stdout);
  _exit(0); /* connection threads end with the process */
}

static struct shm_hdr *shm_map(int fd, size_t *len_out) {
  struct stat st;
  if (fstat(fd, &st) != 0)
    die("shm fstat: %s", strerror(errno));
  void *m =
      mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED)
    die("shm mmap: %s", strerror(errno));
  *len_out = (size_t)st.st_size;
  return m;
}

/* bench_raw --serve pipe|socketpair|shm --fd A[,B] --ppid PID */
static int run_serve(const char *kind, const char *fds, pid_t ppid,
                     uint64_t spin_ns) {
  struct conn c;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (ppid > 0 && getppid() != ppid)
    return 1; /* the client is already gone */
  if (strcmp(kind, "pipe") == 0) {
    const char *comma = strchr(fds, ',');
    if (!comma)
      die("--serve pipe wants --fd R,W");
    char first[32];
    snprintf(first, sizeof first, "%.*s", (int)(comma - fds), fds);
    conn_init_fd(&c, parse_fd(first), parse_fd(comma + 1));
  } else if (strcmp(kind, "socketpair") == 0) {
    int fd = parse_fd(fds);
    conn_init_fd(&c, fd, fd);
  } else if (strcmp(kind, "shm") == 0) {
    size_t len;
    int fd = parse_fd(fds);
    struct shm_hdr *h = shm_map(fd, &len);
    close(fd);
    if (h->magic != SHM_MAGIC || h->version != 1)
      die("shm: bad region");
    conn_init_shm(&c, h, len, 1, spin_ns);
    c.parent_pid = ppid;
  } else {
    die("unknown --serve kind %s", kind);
  }
  int rc = serve_conn(&c);
  conn_close(&c);
  return rc == 0 ? 0 : 1;
}

/* ---- latency samples ---- */

#define HIST_SLOTS (1u << 20) /* ns; larger values go to the list */

struct samples {
  uint32_t *hist;
  uint64_t *big;
  size_t nbig, capbig;
  uint64_t n;
};

static void samples_init(struct samples *s) {
  /* calloc: untouched pages stay unmapped */
  s->hist = calloc(HIST_SLOTS, sizeof *s->hist);
  if (!s->hist)
    die("out of memory");
  s->big = NULL;
  s->nbig = s->capbig = 0;
  s->n = 0;
}

static inline void samples_add(struct samples *s, uint64_t ns) {
  s->n++;
  if (ns < HIST_SLOTS) {
    s->hist[ns]++;
    return;
  }
  if (s->nbig == s->capbig) {
    s->capbig = s->capbig ? s->capbig * 2 : 1024;
    s->big = realloc(s->big, s->capbig * sizeof *s->big);
    if (!s->big)
      die("out of memory");
  }
  s->big[s->nbig++] = ns;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void samples_finish(struct samples *s) {
  if (s->nbig)
    qsort(s->big, s->nbig, sizeof *s->big, cmp_u64);
}

/* nearest rank: the smallest value with at least ceil(n * num / den)
 * samples at or below it */
static double samples_pct_us(struct samples *s, uint64_t num, uint64_t den) {
  if (s->n == 0)
    return 0;
  uint64_t rank = (s->n * num + den - 1) / den, seen = 0;
  if (rank < 1)
    rank = 1;
  for (uint32_t i = 0; i < HIST_SLOTS; i++) {
    seen += s->hist[i];
    if (seen >= rank)
      return i / 1000.0;
  }
  return (double)s->big[rank - seen - 1] / 1000.0;
}

/* ---- client ---- */

struct pstat {
  double user, sys;
};

static int proc_stat(pid_t pid, struct pstat *ps) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (!p)
    return -1;
  unsigned long ut = 0, st = 0;
  /* after ")": state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt
   * majflt cmajflt utime(14) stime(15) */
  if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
             &st) != 2)
    return -1;
  double hz = (double)sysconf(_SC_CLK_TCK);
  ps->user = (double)ut / hz;
  ps->sys = (double)st / hz;
  return 0;
}

static long proc_hwm_kb(pid_t pid) {
  char path[64], line[256];
  long kb = -1;
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
      break;
  fclose(f);
  return kb;
}

struct meas {
  uint64_t ws_at, we_at; /* deadlines */
  uint64_t t_ws, t_we;
  int phase; /* 0 warm-up, 1 window, 2 after */
  uint64_t ops;
  struct samples s;
  struct rusage ru0, ru1;
  pid_t child;
  struct pstat c0, c1;
  long child_hwm;
};

static double tv_s(struct timeval tv) {
  return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* moves through the phases at time t; returns 1 if it printed a line (the
 * caller then takes a fresh time base) */
static int meas_tick(struct meas *m, uint64_t t) {
  int moved = 0;
  if (m->phase == 0 && t >= m->ws_at) {
    if (m->child)
      proc_stat(m->child, &m->c0);
    getrusage(RUSAGE_SELF, &m->ru0);
    fputs("WINDOW_START\n", stdout);
    fflush(stdout);
    m->t_ws = now_ns();
    m->we_at = m->t_ws + (m->we_at - m->ws_at);
    m->phase = 1;
    moved = 1;
  }
  if (m->phase == 1 && t >= m->we_at) {
    m->t_we = t;
    getrusage(RUSAGE_SELF, &m->ru1);
    if (m->child) {
      proc_stat(m->child, &m->c1);
      m->child_hwm = proc_hwm_kb(m->child);
    }
    fputs("WINDOW_END\n", stdout);
    fflush(stdout);
    m->phase = 2;
    moved = 1;
  }
  return moved;
}

/* an op that ended at time t, taking lat ns */
static inline void meas_op(struct meas *m, uint64_t t, uint64_t lat) {
  if (m->phase == 1 && t >= m->t_ws) {
    m->ops++;
    samples_add(&m->s, lat);
  }
}

static int cell_by_name(const char *s) {
  for (int i = 1; i <= 4; i++)
    if (strcmp(s, cell_names[i]) == 0)
      return i;
  die("unknown cell %s (unary, pingpong, server_stream, client_stream)", s);
  return 0;
}

static double parse_num(const char *opt, const char *v) {
  char *end;
  double d = strtod(v, &end);
  if (*v == 0 || *end || d < 0)
    die("bad value for %s: %s", opt, v);
  return d;
}

static pid_t spawn_server(const char *kind, const char *fdspec,
                          uint64_t spin_ns) {
  char ppid[32], spin[32];
  snprintf(ppid, sizeof ppid, "%d", (int)getpid());
  snprintf(spin, sizeof spin, "%.3f", (double)spin_ns / 1000.0);
  char cpu[32];
  char *argv[] = {PROG,           "--serve", (char *)kind, "--fd",
                  (char *)fdspec, "--ppid",  ppid,         "--spin-us",
                  spin,           NULL,      NULL,         NULL};
  if (opt_cpu_server >= 0) {
    snprintf(cpu, sizeof cpu, "%d", opt_cpu_server);
    argv[9] = "--cpu";
    argv[10] = cpu;
  }
  pid_t pid;
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0)
    snprintf(self, sizeof self, "/proc/self/exe");
  else
    self[n] = 0;
  int e = posix_spawn(&pid, self, NULL, NULL, argv, environ);
  if (e)
    die("posix_spawn: %s", strerror(e));
  return pid;
}

static void clear_cloexec(int fd) {
  if (fcntl(fd, F_SETFD, 0) < 0)
    die("fcntl: %s", strerror(errno));
}

struct copts {
  const char *target;
  int cell;
  uint32_t size;
  int inflight;
  double warmup, duration;
  size_t shm_ring;
  uint64_t spin_ns;
};

/* connects or spawns; sets *child for spawned servers */
static void client_connect(const struct copts *o, struct conn *c,
                           pid_t *child) {
  const char *t = o->target;
  *child = 0;
  if (strcmp(t, "pipe") == 0) {
    int c2s[2], s2c[2];
    char spec[64];
    if (pipe2(c2s, O_CLOEXEC) != 0 || pipe2(s2c, O_CLOEXEC) != 0)
      die("pipe: %s", strerror(errno));
    if (opt_bufsize > 0 && (fcntl(c2s[1], F_SETPIPE_SZ, opt_bufsize) < 0 ||
                            fcntl(s2c[1], F_SETPIPE_SZ, opt_bufsize) < 0))
      die("F_SETPIPE_SZ %d: %s", opt_bufsize, strerror(errno));
    clear_cloexec(c2s[0]);
    clear_cloexec(s2c[1]);
    snprintf(spec, sizeof spec, "%d,%d", c2s[0], s2c[1]);
    *child = spawn_server("pipe", spec, o->spin_ns);
    close(c2s[0]);
    close(s2c[1]);
    conn_init_fd(c, s2c[0], c2s[1]);
  } else if (strcmp(t, "socketpair") == 0) {
    int sv[2];
    char spec[32];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
      die("socketpair: %s", strerror(errno));
    sock_tune(sv[0], 0);
    sock_tune(sv[1], 0);
    clear_cloexec(sv[1]);
    snprintf(spec, sizeof spec, "%d", sv[1]);
    *child = spawn_server("socketpair", spec, o->spin_ns);
    close(sv[1]);
    conn_init_fd(c, sv[0], sv[0]);
  } else if (strcmp(t, "shm") == 0) {
    char spec[32];
    size_t len = SHM_DATA_OFF + 2 * o->shm_ring;
    int fd = memfd_create("bench_raw_shm", MFD_CLOEXEC);
    if (fd < 0)
      die("memfd_create: %s", strerror(errno));
    if (ftruncate(fd, (off_t)len) != 0)
      die("ftruncate: %s", strerror(errno));
    size_t maplen;
    struct shm_hdr *h = shm_map(fd, &maplen);
    h->magic = SHM_MAGIC;
    h->version = 1;
    h->cap = o->shm_ring;
    h->side[0].cpu = h->side[1].cpu = -1;
    /* the rest is zero (a fresh memfd): counters, flags, bells */
    clear_cloexec(fd);
    snprintf(spec, sizeof spec, "%d", fd);
    *child = spawn_server("shm", spec, o->spin_ns);
    close(fd);
    conn_init_shm(c, h, maplen, 0, o->spin_ns);
    c->child_pid = *child;
  } else if (strncmp(t, "unix:", 5) == 0) {
    int fd = unix_socket(t + 5, 0);
    sock_tune(fd, 0);
    conn_init_fd(c, fd, fd);
  } else if (strncmp(t, "fd:", 3) == 0) {
    int fd = parse_fd(t + 3);
    sock_tune(fd, sock_is_tcp(fd));
    conn_init_fd(c, fd, fd);
  } else {
    int fd = tcp_socket(t, 0, NULL);
    sock_tune(fd, 1);
    conn_init_fd(c, fd, fd);
  }
}

static void check_reply(const unsigned char *d, uint32_t len,
                        const unsigned char *want, uint32_t size, int full) {
  if (len != size)
    die("reply of %u bytes, want %u", len, size);
  if (full && memcmp(d, want, size) != 0)
    die("reply differs from the request");
}

static void fail_io(const char *what) {
  die("%s: %s", what, errno ? strerror(errno) : "connection closed");
}

static int run_client(const struct copts *o) {
  struct conn c;
  struct meas m;
  memset(&m, 0, sizeof m);
  samples_init(&m.s);
  m.child_hwm = -1;
  signal(SIGPIPE, SIG_IGN);

  unsigned char *req = xmalloc(o->size);
  fill_pattern(req, o->size);
  client_connect(o, &c, &m.child);

  unsigned char hello[12];
  put_le32(hello, HELLO_MAGIC);
  put_le32(hello + 4, (uint32_t)o->cell);
  put_le32(hello + 8, o->size);
  if (frame_write(&c, hello, sizeof hello) < 0)
    fail_io("sending the hello");

  uint64_t t0 = now_ns();
  m.ws_at = t0 + (uint64_t)(o->warmup * 1e9);
  m.we_at = m.ws_at + (uint64_t)(o->duration * 1e9);
  meas_tick(&m, now_ns()); /* --warmup 0 */

  unsigned char *d;
  uint32_t len;
  int checked = 0, r;
  int inflight = o->cell == CELL_UNARY ? o->inflight : 1;

  if ((o->cell == CELL_UNARY || o->cell == CELL_PINGPONG) && inflight == 1) {
    while (m.phase < 2) {
      uint64_t a = now_ns();
      if (frame_write(&c, req, o->size) < 0)
        fail_io("write");
      if ((r = frame_read(&c, 1, &d, &len)) != 1)
        fail_io("read");
      uint64_t b = now_ns();
      check_reply(d, len, req, o->size, !checked);
      checked = 1;
      meas_tick(&m, b);
      meas_op(&m, b, b - a);
    }
    conn_close(&c);
  } else if (o->cell == CELL_UNARY) {
    /* pipelined: `inflight` requests are always issued; one is issued again
     * as soon as a reply arrives, and its latency runs from then (so it
     * includes waiting behind earlier requests for the transport, as a
     * call on a busy channel does). Requests are written in order as the
     * transport takes them; nothing blocks in a read or a write (the peer
     * may be blocked writing us a reply), the loop polls for both ways. */
    uint64_t *ts = xmalloc((size_t)inflight * sizeof *ts);
    uint64_t issued = 0, written = 0, recvd = 0, n = (uint64_t)inflight;
    struct wstate w;
    memset(&w, 0, sizeof w);
    conn_set_nonblock(&c);
    for (uint64_t t = now_ns(); issued < n; issued++)
      ts[issued % n] = t;
    for (;;) {
      int progress = 0;
      while (written < issued) {
        if (!w.active)
          wstate_start(&w, req, o->size);
        r = wstate_step(&c, &w);
        if (r < 0)
          fail_io("write");
        if (r == 0)
          break;
        written++;
        progress = 1;
      }
      while (recvd < written) {
        r = frame_read(&c, 0, &d, &len);
        if (r == 0)
          break;
        if (r < 0)
          fail_io("read");
        uint64_t b = now_ns();
        check_reply(d, len, req, o->size, !checked);
        checked = 1;
        meas_tick(&m, b);
        meas_op(&m, b, b - ts[recvd % n]);
        recvd++;
        progress = 1;
        if (m.phase < 2)
          ts[issued++ % n] = b;
        else /* done: drop the requests not begun, finish the rest */
          issued = written + (uint64_t)w.active;
      }
      if (m.phase == 2 && recvd == issued)
        break;
      if (!progress) {
        unsigned want = 0;
        if (recvd < written)
          want |= WANT_READ;
        if (written < issued)
          want |= WANT_WRITE;
        if (conn_wait(&c, want) < 0)
          fail_io("wait");
      }
    }
    free(ts);
    conn_close(&c);
  } else if (o->cell == CELL_SERVER_STREAM) {
    uint64_t prev = now_ns();
    while (m.phase < 2) {
      if ((r = frame_read(&c, 1, &d, &len)) != 1)
        fail_io("read");
      uint64_t b = now_ns();
      if (len != o->size)
        die("message of %u bytes, want %u", len, o->size);
      if (!checked && memcmp(d, req, o->size) != 0)
        die("message differs from the pattern");
      checked = 1;
      int moved = meas_tick(&m, b);
      meas_op(&m, b, b - prev);
      prev = moved ? now_ns() : b;
    }
    conn_close(&c); /* the server's next write fails: its end */
  } else {
    /* client_stream */
    uint64_t prev = now_ns(), nsent = 0;
    while (m.phase < 2) {
      if (frame_write(&c, req, o->size) < 0)
        fail_io("write");
      nsent++;
      uint64_t b = now_ns();
      int moved = meas_tick(&m, b);
      meas_op(&m, b, b - prev);
      prev = moved ? now_ns() : b;
    }
    conn_shutdown_write(&c);
    if ((r = frame_read(&c, 1, &d, &len)) != 1)
      fail_io("reading the client_stream reply");
    char want[32];
    int n = snprintf(want, sizeof want, "%llu",
                     (unsigned long long)(nsent * o->size));
    if (len != (uint32_t)n || memcmp(d, want, (size_t)n) != 0)
      die("server counted %.*s bytes, sent %s", (int)(len < 32 ? len : 32),
          (const char *)d, want);
    conn_close(&c);
  }

  if (m.child) {
    int st;
    while (waitpid(m.child, &st, 0) < 0)
      if (errno != EINTR)
        die("waitpid: %s", strerror(errno));
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
      die("the server child failed (status 0x%x)", st);
  }
  if (m.ops == 0)
    die("no operation completed inside the window");
  samples_finish(&m.s);

  printf("{\"ops\": %llu, \"seconds\": %.6f, \"p50_us\": %.3f, "
         "\"p99_us\": %.3f, \"cpu_user_s\": %.6f, \"cpu_sys_s\": %.6f",
         (unsigned long long)m.ops, (double)(m.t_we - m.t_ws) / 1e9,
         samples_pct_us(&m.s, 50, 100), samples_pct_us(&m.s, 99, 100),
         tv_s(m.ru1.ru_utime) - tv_s(m.ru0.ru_utime),
         tv_s(m.ru1.ru_stime) - tv_s(m.ru0.ru_stime));
  if (m.child)
    printf(", \"server_cpu_user_s\": %.2f, \"server_cpu_sys_s\": %.2f, "
           "\"server_rss_kb\": %ld",
           m.c1.user - m.c0.user, m.c1.sys - m.c0.sys, m.child_hwm);
  printf("}\n");
  fflush(stdout);
  free(req);
  return 0;
}

/* ---- main ---- */

static void usage(void) {
  fprintf(stderr,
          "usage: " PROG " --target T --cell CELL --size BYTES [--inflight N]\n"
          "                 [--warmup S] [--duration S]\n"
          "       " PROG " --listen ADDR [--listen ADDR ...] [--threads N]\n"
          "  T: pipe | socketpair | shm | unix:PATH | HOST:PORT | fd:N\n"
          "  CELL: unary | pingpong | server_stream | client_stream\n"
          "  tuning: --bufsize BYTES, --shm-ring BYTES, --spin-us US\n");
  exit(2);
}

static int cpus_allowed(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0)
    return 2;
  return CPU_COUNT(&set);
}

int main(int argc, char **argv) {
  struct copts o;
  const char **listens = calloc((size_t)argc, sizeof *listens);
  int nlisten = 0;
  const char *serve = NULL, *fds = NULL;
  pid_t ppid = 0;
  double spin_us = -1;
  int cpu = -1;
  int have_size = 0;
  memset(&o, 0, sizeof o);
  o.inflight = 1;
  o.warmup = 1;
  o.duration = 3;
  o.shm_ring = 1u << 20;

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v;
    char name[64];
    const char *eq = strchr(a, '=');
    if (strncmp(a, "--", 2) != 0)
      usage();
    if (eq) {
      snprintf(name, sizeof name, "%.*s", (int)(eq - a), a);
      v = eq + 1;
    } else {
      snprintf(name, sizeof name, "%s", a);
      if (i + 1 >= argc)
        usage();
      v = argv[++i];
    }
    if (!strcmp(name, "--target"))
      o.target = v;
    else if (!strcmp(name, "--cell"))
      o.cell = cell_by_name(v);
    else if (!strcmp(name, "--size")) {
      double s = parse_num(name, v);
      if (s > MAX_FRAME || s != (double)(uint32_t)s)
        die("bad --size %s (at most %u)", v, MAX_FRAME);
      o.size = (uint32_t)s;
      have_size = 1;
    } else if (!strcmp(name, "--inflight")) {
      double n = parse_num(name, v);
      if (n < 1 || n > 1 << 20 || n != (int)n)
        die("bad --inflight %s", v);
      o.inflight = (int)n;
    } else if (!strcmp(name, "--warmup"))
      o.warmup = parse_num(name, v);
    else if (!strcmp(name, "--duration"))
      o.duration = parse_num(name, v);
    else if (!strcmp(name, "--listen"))
      listens[nlisten++] = v;
    else if (!strcmp(name, "--threads"))
      (void)parse_num(name, v); /* one thread per connection anyway */
    else if (!strcmp(name, "--serve"))
      serve = v;
    else if (!strcmp(name, "--fd"))
      fds = v;
    else if (!strcmp(name, "--ppid"))
      ppid = (pid_t)parse_num(name, v);
    else if (!strcmp(name, "--bufsize"))
      opt_bufsize = (int)parse_num(name, v);
    else if (!strcmp(name, "--shm-ring")) {
      double s = parse_num(name, v);
      o.shm_ring = (size_t)s;
      if (o.shm_ring < 4096 || (o.shm_ring & (o.shm_ring - 1)) ||
          o.shm_ring > (size_t)1 << 30)
        die("--shm-ring must be a power of two, 4 KiB to 1 GiB");
    } else if (!strcmp(name, "--spin-us"))
      spin_us = parse_num(name, v);
    else if (!strcmp(name, "--cpu"))
      cpu = (int)parse_num(name, v);
    else if (!strcmp(name, "--cpus")) {
      char *end;
      opt_cpu_client = (int)strtol(v, &end, 10);
      if (*end == ',')
        opt_cpu_server = (int)strtol(end + 1, &end, 10);
      if (*end || opt_cpu_client < 0)
        die("bad --cpus %s (want CLIENT[,SERVER])", v);
    } else
      usage();
  }
  if (cpu >= 0)
    pin_self(cpu); /* --serve / --listen */
  if (opt_cpu_client >= 0 && !serve && !nlisten)
    pin_self(opt_cpu_client);
  if (spin_us < 0) /* spinning needs the peer on another CPU */
    spin_us = (opt_cpu_server >= 0 ? opt_cpu_server != opt_cpu_client
                                   : cpus_allowed() >= 2)
                  ? 20
                  : 0;
  o.spin_ns = (uint64_t)(spin_us * 1000.0);
  signal(SIGPIPE, SIG_IGN);

  if (serve) {
    if (!fds)
      usage();
    return run_serve(serve, fds, ppid, o.spin_ns);
  }
  if (nlisten) {
    if (o.target)
      usage();
    return run_listen(listens, (size_t)nlisten);
  }
  if (!o.target || !o.cell || !have_size || o.duration <= 0)
    usage();
  return run_client(&o);
}
