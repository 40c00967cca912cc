/* Accepting connections: the accept loop and the connection table.
 *
 * piperpc accepts its unix and plain TCP connections itself, rather than
 * letting gRPC core listen, so that it knows who is on each one and can
 * defend the process against peers that connect and then stall, flood or
 * hold descriptors (gRPC core 1.51's own accept loop stops for good after a
 * single EMFILE: CVE-2023-4785).
 *
 * A new connection goes through these steps, all on the accept thread:
 *   1. accept4(); on EMFILE the connection waiting in the backlog is taken
 *      with a descriptor kept in reserve and closed at once (the client sees
 *      the refusal rather than waiting), and the loop goes on.
 *   2. Who it is: SO_PEERCRED on unix sockets, the address on TCP. The
 *      access rules decide allowed or denied. An abstract socket has no
 *      file permissions, so with no rules it admits the server's own user
 *      and root only.
 *   3. Budgets: max_connections counts allowed connections only (a denied
 *      peer cannot lock out an allowed one); one uid (or TCP address) may
 *      hold at most max_connections_per_uid of them, and a few denied ones;
 *      root and the server's own user are exempt from the per-uid budgets.
 *      Beyond a budget the connection is closed at once.
 *   4. The preface: the connection is held here until its first 24 bytes
 *      are the HTTP/2 client preface (read with MSG_PEEK, so gRPC reads them
 *      again), for at most handshake_timeout_ms; a peer that stalls is
 *      closed. Then it is handed to gRPC core: to the server, or, if denied,
 *      to the deny server that answers every call with PERMISSION_DENIED and
 *      closes the connection soon after. With prpc_server_opts.http_json
 *      a unix connection whose first bytes are not the preface goes to
 *      the HTTP/1.1 front end instead (server/http.c), allowed or denied;
 *      its record stays here, counted, until the front end closes it.
 *
 * gRPC core names such a connection "fd:N" (its descriptor number) and
 * closes the descriptor when the connection ends. The table keeps a record
 * per descriptor number; a call is bound to its record when it is matched
 * (prpc__acceptor_bind), which checks that the descriptor is still the
 * socket accepted here (device and inode) and takes a reference, so the
 * identity a handler sees was fixed while the connection was known to be
 * open and stays the same until the call ends. A record whose descriptor
 * has been closed (or now names another file) is over; the table notices
 * it lazily, when the descriptor number is accepted again, when a budget is
 * reached, and when statistics are read. */
#include "../runtime/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define PREFACE_LEN 24
/* Connections waiting for their preface: in all, and per uid or address
 * (root and the server's own user exempt). */
#define PENDING_MAX 1024
#define PENDING_PER_PEER 32
/* Denied connections open at once per uid (they are closed by the deny
 * server about a second after they connect). */
#define DENIED_PER_PEER 4
/* A preface that came in part is looked at again after this long (the
 * socket stays readable, so polling it would spin). */
#define PARTIAL_RECHECK_MS 10
/* The table is swept (closed connections found) at most this often when a
 * budget is reached, so that a peer that keeps connecting at its limit
 * cannot make every accept scan the whole table. */
#define SWEEP_INTERVAL_MS 20
#define LOG_INTERVAL_S PRPC__RATE_INTERVAL_S

typedef struct listener {
  int fd;
  int kind; /* prpc__target_kind */
  char name[PRPC__NAME_MAX]; /* "unix:/p", "127.0.0.1:5000" */
} listener;

/* Connections held open, per uid (unix) or address (TCP). */
typedef struct budget {
  uint64_t key;
  int open;    /* allowed: waiting for the preface or handed to gRPC */
  int pending; /* allowed or denied, waiting for the preface */
  int denied;  /* denied: waiting or handed to the deny server */
} budget;

enum { RL_MAX, RL_PEER, RL_PENDING, RL_DENIED, RL_DENY_CAP, RL_STALL, RL_N };

struct prpc__acceptor {
  prpc__accept_opts o;
  uid_t self_uid;
  int per_peer;   /* resolved max_connections_per_uid */
  int preface_ms; /* how long a new connection may take to send its
                     preface: the handshake timeout, or the idle timeout
                     if shorter (0: no limit) */
  listener *listeners;
  size_t n_listeners;
  int *adopted;
  size_t n_adopted;
  int *hangup; /* our dups of adopted sockets, for shutdown_on_hangup */
  size_t n_hangup;
  int wake[2];
  pthread_t thread;
  /* Atomic: a handler that calls prpc_server_shutdown() reads them on
   * another thread. joining: one stop joins the thread. */
  atomic_int running, joining;

  pthread_mutex_t mu; /* the table, budgets and counters */
  prpc__conn **table; /* by descriptor number */
  size_t n_table;
  budget *budgets;
  size_t n_budgets, cap_budgets;
  int n_open;    /* allowed connections, all peers */
  int n_pending; /* connections waiting for their preface */
  struct timespec last_sweep;
  atomic_ullong refused;
  uint64_t next_id;

  /* The accept thread's own state. */
  prpc__conn **pending; /* waiting for the preface, in accept order */
  size_t n_pend, cap_pend;
  int spare;   /* a descriptor kept in reserve for EMFILE, or -1 */
  int backoff; /* out of descriptors with none in reserve: sleep 100 ms */
  int failing; /* in a run of accept failures */
  struct timespec fail_log;
  unsigned long long fail_refused;
  prpc__rate logs[RL_N];
};

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double since(const struct timespec *t) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)(now.tv_sec - t->tv_sec) +
         (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

static int rate_ok(prpc__acceptor *a, int which) {
  return prpc__rate_ok(&a->logs[which]);
}

/* ---- records ---- */

void prpc__conn_ref(prpc__conn *c) { atomic_fetch_add(&c->refs, 1); }

void prpc__conn_unref(prpc__conn *c) {
  if (c && atomic_fetch_sub(&c->refs, 1) == 1)
    free(c);
}

static budget *budget_of(prpc__acceptor *a, uint64_t key) {
  for (size_t i = 0; i < a->n_budgets; i++)
    if (a->budgets[i].key == key)
      return &a->budgets[i];
  if (a->n_budgets == a->cap_budgets) {
    size_t cap = a->cap_budgets ? 2 * a->cap_budgets : 16;
    budget *b = realloc(a->budgets, cap * sizeof(*b));
    if (!b)
      return NULL;
    a->budgets = b;
    a->cap_budgets = cap;
  }
  a->budgets[a->n_budgets] = (budget){key, 0, 0, 0};
  return &a->budgets[a->n_budgets++];
}

/* Takes c off the counters of its state; mu held. */
static void count_out(prpc__acceptor *a, prpc__conn *c) {
  budget *b = budget_of(a, c->key);
  int pending = c->state == PRPC__CONN_PENDING;
  if (c->adopted)
    return;
  if (pending)
    a->n_pending--;
  if (c->denied) {
    if (b)
      b->denied--;
  } else {
    a->n_open--;
    if (b)
      b->open--;
  }
  if (pending && b)
    b->pending--;
}

/* Removes the record at table slot fd (its connection is over); mu held. */
static void table_drop(prpc__acceptor *a, int fd) {
  prpc__conn *c = a->table[fd];
  a->table[fd] = NULL;
  count_out(a, c);
  c->state = PRPC__CONN_CLOSED;
  prpc__conn_unref(c);
}

/* Is the descriptor still the socket of the record? */
static int still_open(const prpc__conn *c) {
  struct stat st;
  return fstat(c->fd, &st) == 0 && st.st_ino == c->ino && st.st_dev == c->dev;
}

/* Finds the connections gRPC core has closed; mu held. */
static void sweep(prpc__acceptor *a) {
  for (size_t fd = 0; fd < a->n_table; fd++) {
    prpc__conn *c = a->table[fd];
    if (c && c->state != PRPC__CONN_PENDING && !still_open(c))
      table_drop(a, (int)fd);
  }
  clock_gettime(CLOCK_MONOTONIC, &a->last_sweep);
}

static void sweep_limited(prpc__acceptor *a) {
  if (since(&a->last_sweep) * 1000 >= SWEEP_INTERVAL_MS)
    sweep(a);
}

static int table_put(prpc__acceptor *a, prpc__conn *c) {
  if ((size_t)c->fd >= a->n_table) {
    size_t n = a->n_table ? a->n_table : 64;
    while (n <= (size_t)c->fd)
      n *= 2;
    prpc__conn **t = realloc(a->table, n * sizeof(*t));
    if (!t)
      return -1;
    memset(t + a->n_table, 0, (n - a->n_table) * sizeof(*t));
    a->table = t;
    a->n_table = n;
  }
  /* The descriptor number was free again: its old connection is over. */
  if (a->table[c->fd])
    table_drop(a, c->fd);
  a->table[c->fd] = c;
  return 0;
}

prpc__conn *prpc__acceptor_bind(prpc__acceptor *a, int fd) {
  prpc__conn *c = NULL;
  if (!a || fd < 0)
    return NULL;
  pthread_mutex_lock(&a->mu);
  if ((size_t)fd < a->n_table && (c = a->table[fd]) != NULL) {
    if (c->state == PRPC__CONN_PENDING) {
      c = NULL; /* gRPC core does not know this one yet */
    } else if (!still_open(c)) {
      table_drop(a, fd);
      c = NULL;
    } else {
      prpc__conn_ref(c);
    }
  }
  pthread_mutex_unlock(&a->mu);
  return c;
}

/* ---- admission ---- */

static uint64_t addr_key(const struct sockaddr_storage *ss) {
  /* FNV-1a over the address bytes (not the port); the top bit set keeps it
   * apart from uids. */
  const unsigned char *p;
  size_t n;
  uint64_t h = 1469598103934665603ull;
  if (ss->ss_family == AF_INET) {
    p = (const unsigned char *)&((const struct sockaddr_in *)ss)->sin_addr;
    n = 4;
  } else if (ss->ss_family == AF_INET6) {
    p = (const unsigned char *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
    n = 16;
  } else {
    return 1ull << 63;
  }
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 1099511628211ull;
  return h | (1ull << 63);
}

static void addr_name(const struct sockaddr_storage *ss, char *out,
                      size_t size) {
  char ip[INET6_ADDRSTRLEN];
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
    inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
    snprintf(out, size, "ipv4:%s:%u", ip, (unsigned)ntohs(in->sin_port));
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *in = (const struct sockaddr_in6 *)ss;
    inet_ntop(AF_INET6, &in->sin6_addr, ip, sizeof(ip));
    snprintf(out, size, "ipv6:[%s]:%u", ip, (unsigned)ntohs(in->sin6_port));
  } else {
    snprintf(out, size, "tcp");
  }
}

static const char *listener_name(const prpc__acceptor *a, size_t li) {
  return li < a->n_listeners ? a->listeners[li].name : "an inherited socket";
}

/* Does the access policy let this unix peer in? Sets *why for a denial. */
static int allowed(prpc__acceptor *a, const prpc__conn *c, const char **why,
                   char *buf, size_t size) {
  size_t m;
  int kind = c->listener < a->n_listeners ? a->listeners[c->listener].kind
                                          : PRPC__TARGET_FD;
  if (!c->have_cred)
    return 1; /* TCP: not subject to the rules */
  if (a->o.n_rules > 0) {
    if (prpc__rules_check(a->o.rules, a->o.n_rules, c->uid, c->gid, &m))
      return 1;
    if (m < a->o.n_rules) {
      snprintf(buf, size, "rule %s", a->o.rules[m].text);
      *why = buf;
    } else {
      *why = "no rule allows it";
    }
    return 0;
  }
  /* No rules: the socket file's mode decides for a path; an abstract
   * socket has none, so it fails closed. */
  if (kind == PRPC__TARGET_ABSTRACT && c->uid != 0 && c->uid != a->self_uid) {
    *why = "an abstract socket with no access rules admits only the "
           "server's own user and root (add the rule 'allow any' to serve "
           "everyone)";
    return 0;
  }
  return 1;
}

static void refuse(prpc__acceptor *a, prpc__conn *c, int which,
                   const char *why) {
  atomic_fetch_add(&a->refused, 1);
  if (rate_ok(a, which)) {
    if (c->have_cred)
      prpc__log(PRPC__LOG_WARN, "refused a connection on %s from pid %d uid "
                                "%u: %s",
                listener_name(a, c->listener), (int)c->pid, (unsigned)c->uid,
                why);
    else
      prpc__log(PRPC__LOG_WARN, "refused a connection on %s from %s: %s",
                listener_name(a, c->listener), c->peer, why);
  }
  close(c->fd);
  free(c);
}

/* Builds the record of a new connection (takes fd); NULL when out of
 * memory (fd closed). */
static prpc__conn *conn_new(prpc__acceptor *a, int fd, size_t li,
                            int adopted) {
  prpc__conn *c = calloc(1, sizeof(*c));
  struct stat st;
  if (!c) {
    close(fd);
    return NULL;
  }
  c->fd = fd;
  c->listener = li;
  c->adopted = adopted;
  atomic_init(&c->refs, 1); /* the table's */
  c->kind = li < a->n_listeners ? a->listeners[li].kind : PRPC__TARGET_FD;
  if (fstat(fd, &st) == 0) {
    c->dev = st.st_dev;
    c->ino = st.st_ino;
  }
  if (c->kind == PRPC__TARGET_TCP) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int one = 1;
    memset(&ss, 0, sizeof(ss));
    getpeername(fd, (struct sockaddr *)&ss, &len);
    addr_name(&ss, c->peer, sizeof(c->peer));
    c->key = addr_key(&ss);
    /* gRPC core sets this on the sockets it accepts, not on ours. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  } else {
    c->have_cred = prpc__unix_peer_cred(fd, &c->pid, &c->uid, &c->gid) == 0;
    c->key = c->have_cred ? (uint64_t)c->uid : UINT64_MAX - 1;
    c->exempt = c->have_cred && (c->uid == 0 || c->uid == a->self_uid);
    if (li < a->n_listeners)
      snprintf(c->peer, sizeof(c->peer), "%s", a->listeners[li].name);
    else
      snprintf(c->peer, sizeof(c->peer), "fd:%d", fd);
  }
  return c;
}

static int pending_push(prpc__acceptor *a, prpc__conn *c) {
  if (a->n_pend == a->cap_pend) {
    size_t cap = a->cap_pend ? 2 * a->cap_pend : 16;
    prpc__conn **p = realloc(a->pending, cap * sizeof(*p));
    if (!p)
      return -1;
    a->pending = p;
    a->cap_pend = cap;
  }
  a->pending[a->n_pend++] = c;
  return 0;
}

/* Admits a new connection (takes fd): checks the budgets and puts it in
 * the table to wait for its preface. */
static void admit(prpc__acceptor *a, int fd, size_t li, int adopted) {
  prpc__conn *c = conn_new(a, fd, li, adopted);
  const char *why = NULL;
  char text[160], rule[128];
  budget *b;
  if (!c)
    return;
  c->denied = !allowed(a, c, &why, rule, sizeof(rule));
  pthread_mutex_lock(&a->mu);
  c->id = ++a->next_id;
  b = budget_of(a, c->key);
  if (!adopted) {
    int reason = -1;
    if (!b) {
      snprintf(text, sizeof(text), "out of memory");
      reason = RL_MAX;
    } else if (c->denied) {
      if (b->denied >= DENIED_PER_PEER) {
        sweep_limited(a);
        if (b->denied >= DENIED_PER_PEER) {
          snprintf(text, sizeof(text), "it is denied, and %d of its "
                                       "connections are being answered",
                   b->denied);
          reason = RL_DENY_CAP;
        }
      }
    } else {
      if (a->o.max_connections > 0 && a->n_open >= a->o.max_connections)
        sweep_limited(a);
      if (!c->exempt && a->per_peer > 0 && b->open >= a->per_peer)
        sweep_limited(a);
      if (a->o.max_connections > 0 && a->n_open >= a->o.max_connections) {
        snprintf(text, sizeof(text), "%d connections are open "
                                     "(max_connections)",
                 a->n_open);
        reason = RL_MAX;
      } else if (!c->exempt && a->per_peer > 0 && b->open >= a->per_peer) {
        snprintf(text, sizeof(text), "this %s holds %d connections "
                                     "(max_connections_per_uid)",
                 c->have_cred ? "uid" : "address", b->open);
        reason = RL_PEER;
      }
    }
    if (reason < 0 && (a->n_pending >= PENDING_MAX ||
                       (!c->exempt && b->pending >= PENDING_PER_PEER))) {
      snprintf(text, sizeof(text), "%d connections of %s have not sent "
                                   "their first bytes yet",
               a->n_pending >= PENDING_MAX ? a->n_pending : b->pending,
               a->n_pending >= PENDING_MAX ? "all peers" : "this peer");
      reason = RL_PENDING;
    }
    if (reason >= 0) {
      pthread_mutex_unlock(&a->mu);
      refuse(a, c, reason, text);
      return;
    }
  }
  if (table_put(a, c) != 0 || pending_push(a, c) != 0) {
    if ((size_t)c->fd < a->n_table && a->table[c->fd] == c)
      a->table[c->fd] = NULL;
    pthread_mutex_unlock(&a->mu);
    refuse(a, c, RL_MAX, "out of memory");
    return;
  }
  c->state = PRPC__CONN_PENDING;
  if (!adopted) {
    a->n_pending++;
    b->pending++;
    if (c->denied) {
      b->denied++;
    } else {
      a->n_open++;
      b->open++;
    }
  }
  pthread_mutex_unlock(&a->mu);
  c->deadline_ms = adopted || a->preface_ms <= 0 ? INT64_MAX
                                                 : now_ms() + a->preface_ms;
  if (c->denied && rate_ok(a, RL_DENIED))
    prpc__log(PRPC__LOG_WARN, "denied pid %d uid %u gid %u on %s: %s",
              (int)c->pid, (unsigned)c->uid, (unsigned)c->gid,
              listener_name(a, li), why);
}

/* ---- the preface ---- */

/* Closes a pending connection that will not be served; mu not held. */
static void pending_close(prpc__acceptor *a, prpc__conn *c) {
  pthread_mutex_lock(&a->mu);
  if ((size_t)c->fd < a->n_table && a->table[c->fd] == c) {
    count_out(a, c);
    a->table[c->fd] = NULL;
  }
  c->state = PRPC__CONN_CLOSED;
  pthread_mutex_unlock(&a->mu);
  close(c->fd);
  prpc__conn_unref(c);
}

/* A pending connection is no longer waiting for its first bytes: off the
 * pending counts, into state. */
static void pending_done(prpc__acceptor *a, prpc__conn *c, int state) {
  pthread_mutex_lock(&a->mu);
  if (!c->adopted) {
    budget *b = budget_of(a, c->key);
    a->n_pending--;
    if (b)
      b->pending--;
  }
  c->state = state;
  pthread_mutex_unlock(&a->mu);
}

/* Hands a connection whose preface has come to gRPC core. */
static void hand_over(prpc__acceptor *a, prpc__conn *c) {
  pending_done(a, c, c->denied ? PRPC__CONN_DENIED : PRPC__CONN_GRPC);
  /* From here gRPC core owns the descriptor; the table keeps the record. */
  if (c->denied)
    a->o.deny(a->o.data, c);
  else
    a->o.grpc(a->o.data, c);
}

/* Hands a connection that opened with something else than the HTTP/2
 * preface to the HTTP/1.1 front end (prpc_server_opts.http_json). */
static void hand_to_http(prpc__acceptor *a, prpc__conn *c) {
  pending_done(a, c, PRPC__CONN_HTTP);
  a->o.http(a->o.data, c); /* the front end owns the descriptor now */
}

int prpc__acceptor_inner(prpc__acceptor *a, const prpc__conn *parent,
                         int fd) {
  prpc__conn *c = calloc(1, sizeof(*c));
  struct stat st;
  if (!c) {
    close(fd);
    return -ENOMEM;
  }
  /* The parent's identity, fixed when it was accepted; adopted, so that
   * the budgets count the parent only. */
  c->fd = fd;
  c->kind = parent->kind;
  c->listener = parent->listener;
  c->adopted = 1;
  c->inner = 1;
  c->have_cred = parent->have_cred;
  c->pid = parent->pid;
  c->uid = parent->uid;
  c->gid = parent->gid;
  c->exempt = parent->exempt;
  c->key = parent->key;
  memcpy(c->peer, parent->peer, sizeof(c->peer));
  atomic_init(&c->refs, 1); /* the table's */
  if (fstat(fd, &st) == 0) {
    c->dev = st.st_dev;
    c->ino = st.st_ino;
  }
  pthread_mutex_lock(&a->mu);
  c->id = ++a->next_id;
  if (table_put(a, c) != 0) {
    pthread_mutex_unlock(&a->mu);
    close(fd);
    free(c);
    return -ENOMEM;
  }
  c->state = PRPC__CONN_GRPC;
  pthread_mutex_unlock(&a->mu);
  a->o.grpc(a->o.data, c);
  return 0;
}

/* Looks at what a pending connection has sent. Returns 1 when it is done
 * with (handed over or closed), 0 to keep waiting. */
static int pending_check(prpc__acceptor *a, prpc__conn *c, int64_t now) {
  char buf[PREFACE_LEN];
  ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
    pending_close(a, c); /* gone before it said anything */
    return 1;
  }
  if (n > 0 && memcmp(buf, PREFACE, (size_t)n) != 0) {
    /* Not HTTP/2: HTTP/1.1 when the server answers it (a unix or fd:N
     * connection; TCP stays gRPC only). */
    if (a->o.http && c->have_cred) {
      hand_to_http(a, c);
      return 1;
    }
    if (rate_ok(a, RL_STALL))
      prpc__log(PRPC__LOG_WARN, "closed a connection on %s from %s: it "
                                "does not speak HTTP/2",
                listener_name(a, c->listener), c->peer);
    pending_close(a, c);
    return 1;
  }
  if (n == PREFACE_LEN) {
    hand_over(a, c);
    return 1;
  }
  if (now >= c->deadline_ms) {
    if (rate_ok(a, RL_STALL))
      prpc__log(PRPC__LOG_WARN, "closed a connection on %s from %s: no "
                                "HTTP/2 preface within %d ms",
                listener_name(a, c->listener), c->peer, a->preface_ms);
    pending_close(a, c);
    return 1;
  }
  /* Part of it (or nothing yet): a part keeps the socket readable, so
   * look again a little later instead of polling it. */
  c->recheck_ms = n > 0 ? now + PARTIAL_RECHECK_MS : 0;
  return 0;
}

/* ---- accepting ---- */

static void accept_failed(prpc__acceptor *a, size_t li, int err) {
  int refused = 0;
  if (a->spare >= 0) {
    close(a->spare);
    a->spare = -1;
    int fd = accept4(a->listeners[li].fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0) {
      close(fd);
      refused = 1;
      atomic_fetch_add(&a->refused, 1);
      a->fail_refused++;
    }
    a->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
  }
  if (!refused || a->spare < 0)
    a->backoff = 1; /* nothing to refuse with: sleep rather than spin */
  if (!a->failing) {
    struct rlimit rl;
    char limit[64] = "";
    if (err == EMFILE && getrlimit(RLIMIT_NOFILE, &rl) == 0)
      snprintf(limit, sizeof(limit), " (RLIMIT_NOFILE %llu)",
               (unsigned long long)rl.rlim_cur);
    prpc__log(PRPC__LOG_WARN,
              "cannot accept on %s: %s%s: refusing new connections until "
              "resources are free",
              listener_name(a, li), strerror(err), limit);
    a->failing = 1;
    a->fail_refused = 0;
    clock_gettime(CLOCK_MONOTONIC, &a->fail_log);
  } else if (since(&a->fail_log) >= LOG_INTERVAL_S) {
    prpc__log(PRPC__LOG_WARN,
              "still cannot accept on %s: %s: %llu connections refused in "
              "the last %d s",
              listener_name(a, li), strerror(err), a->fail_refused,
              LOG_INTERVAL_S);
    a->fail_refused = 0;
    clock_gettime(CLOCK_MONOTONIC, &a->fail_log);
  }
}

/* Accepts what is waiting on listener li, a few at a time so that one
 * busy listener does not starve the others. */
static void accept_some(prpc__acceptor *a, size_t li) {
  for (int i = 0; i < 16; i++) {
    int fd = accept4(a->listeners[li].fd, NULL, NULL,
                     SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
          errno == ENOMEM)
        accept_failed(a, li, errno);
      return; /* EAGAIN, ECONNABORTED, EINTR: on the next poll */
    }
    if (a->failing) {
      prpc__log(PRPC__LOG_WARN,
                "accepting connections on %s again (%llu refused meanwhile)",
                listener_name(a, li), a->fail_refused);
      a->failing = 0;
    }
    if (a->spare < 0)
      a->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    admit(a, fd, li, 0);
  }
}

/* The acceptor whose thread this is (a->thread may not be set yet when
 * that thread starts running). */
static _Thread_local const prpc__acceptor *accept_thread_of;

static void *accept_main(void *arg) {
  prpc__acceptor *a = arg;
  accept_thread_of = a;
  struct pollfd *pfds = NULL;
  size_t cap = 0, hung = 0;
  int *hang_open = calloc(a->n_hangup ? a->n_hangup : 1, sizeof(int));
  if (!hang_open) {
    prpc__log(PRPC__LOG_ERROR, "out of memory in the accept thread");
    return NULL;
  }
  for (size_t i = 0; i < a->n_hangup; i++)
    hang_open[i] = 1;
  for (;;) {
    int64_t now = now_ms(), wake_at = INT64_MAX;
    size_t need = 1 + a->n_listeners + a->n_hangup + a->n_pend, n = 0;
    size_t first_hang, first_pend;
    if (need > cap) {
      struct pollfd *p = realloc(pfds, need * sizeof(*p));
      if (!p) {
        prpc__log(PRPC__LOG_ERROR, "out of memory in the accept thread");
        break;
      }
      pfds = p;
      cap = need;
    }
    pfds[n++] = (struct pollfd){a->wake[0], POLLIN, 0};
    for (size_t i = 0; i < a->n_listeners; i++)
      pfds[n++] = (struct pollfd){a->backoff ? -1 : a->listeners[i].fd,
                                  POLLIN, 0};
    first_hang = n;
    for (size_t i = 0; i < a->n_hangup; i++)
      /* Only the hang-up: gRPC core reads the data through its own fd. */
      pfds[n++] = (struct pollfd){hang_open[i] ? a->hangup[i] : -1,
                                  POLLRDHUP, 0};
    first_pend = n;
    for (size_t i = 0; i < a->n_pend; i++) {
      prpc__conn *c = a->pending[i];
      int waiting = c->recheck_ms > now;
      pfds[n++] = (struct pollfd){waiting ? -1 : c->fd, POLLIN, 0};
      if (waiting && c->recheck_ms < wake_at)
        wake_at = c->recheck_ms;
      if (c->deadline_ms < wake_at)
        wake_at = c->deadline_ms;
    }
    int timeout = a->backoff ? 100
                  : wake_at == INT64_MAX
                      ? -1
                      : (int)(wake_at - now > 0 ? wake_at - now : 0);
    int rc = poll(pfds, n, timeout);
    if (rc < 0 && errno != EINTR)
      break;
    if (a->backoff && a->spare < 0)
      a->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    a->backoff = 0;
    if (pfds[0].revents)
      break; /* stopping */
    now = now_ms();
    /* Pending connections first: what accept_some() adds is looked at on
     * the next round. */
    size_t keep = 0, n_pend = a->n_pend;
    for (size_t i = 0; i < n_pend; i++) {
      prpc__conn *c = a->pending[i];
      int look = pfds[first_pend + i].revents || now >= c->deadline_ms ||
                 (c->recheck_ms && now >= c->recheck_ms);
      if (!look || !pending_check(a, c, now))
        a->pending[keep++] = c;
    }
    a->n_pend = keep;
    for (size_t i = 0; i < a->n_listeners; i++)
      if (pfds[1 + i].revents & POLLIN)
        accept_some(a, i);
    for (size_t i = 0; i < a->n_hangup; i++)
      if (hang_open[i] && pfds[first_hang + i].revents) {
        hang_open[i] = 0;
        hung++;
      }
    if (a->n_hangup > 0 && hung == a->n_hangup) {
      prpc__log(PRPC__LOG_INFO, "the peer of every inherited socket has "
                                "gone: shutting down");
      a->o.hangup(a->o.data);
      break;
    }
  }
  free(pfds);
  free(hang_open);
  return NULL;
}

/* ---- life cycle ---- */

int prpc__acceptor_create(const prpc__accept_opts *o, prpc__acceptor **out) {
  prpc__acceptor *a = calloc(1, sizeof(*a));
  if (!a)
    return prpc__fail(-ENOMEM, "out of memory");
  a->o = *o;
  a->self_uid = geteuid();
  a->spare = -1;
  if (pipe2(a->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    int err = -errno;
    free(a);
    return prpc__fail(err, "pipe2: %s", strerror(-err));
  }
  pthread_mutex_init(&a->mu, NULL);
  *out = a;
  return 0;
}

int prpc__acceptor_add_listener(prpc__acceptor *a, int fd, int kind,
                                const char *name) {
  listener *l = realloc(a->listeners, (a->n_listeners + 1) * sizeof(*l));
  if (!l)
    return prpc__fail(-ENOMEM, "out of memory");
  a->listeners = l;
  l = &a->listeners[a->n_listeners++];
  l->fd = fd;
  l->kind = kind;
  snprintf(l->name, sizeof(l->name), "%s", name);
  return 0;
}

int prpc__acceptor_adopt(prpc__acceptor *a, int fd, int watch_hangup) {
  int *p = realloc(a->adopted, (a->n_adopted + 1) * sizeof(*p));
  if (!p)
    return prpc__fail(-ENOMEM, "out of memory");
  a->adopted = p;
  if (watch_hangup) {
    int *h = realloc(a->hangup, (a->n_hangup + 1) * sizeof(*h));
    int d;
    if (!h)
      return prpc__fail(-ENOMEM, "out of memory");
    a->hangup = h;
    if ((d = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0)
      return prpc__fail(-errno, "dup: %s", strerror(errno));
    a->hangup[a->n_hangup++] = d;
  }
  a->adopted[a->n_adopted++] = fd;
  return 0;
}

int prpc__acceptor_start(prpc__acceptor *a) {
  a->per_peer = a->o.max_connections_per_uid;
  if (a->per_peer == 0) {
    /* Half of what may be open: with max_connections, half of it; else
     * half of the descriptors this process may still open. */
    struct rlimit rl;
    if (a->o.max_connections > 0)
      a->per_peer = a->o.max_connections > 1 ? a->o.max_connections / 2 : 1;
    else if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
             rl.rlim_cur != RLIM_INFINITY)
      a->per_peer = rl.rlim_cur > 96 ? (int)((rl.rlim_cur - 64) / 2) : 16;
    else
      a->per_peer = 0; /* no limit known */
  } else if (a->per_peer < 0) {
    a->per_peer = 0; /* explicitly none */
  }
  a->preface_ms = a->o.handshake_timeout_ms > 0 ? a->o.handshake_timeout_ms
                                                : 0;
  if (a->o.idle_timeout_ms > 0 &&
      (a->preface_ms == 0 || a->o.idle_timeout_ms < a->preface_ms))
    a->preface_ms = a->o.idle_timeout_ms;
  a->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
  for (size_t i = 0; i < a->n_adopted; i++)
    admit(a, a->adopted[i], SIZE_MAX, 1);
  a->n_adopted = 0;
  if (a->n_listeners == 0 && a->n_pend == 0 && a->n_hangup == 0)
    return 0; /* nothing to watch */
  /* Running before it runs: a call it lets in may stop the server. */
  atomic_store(&a->running, 1);
  if (pthread_create(&a->thread, NULL, accept_main, a) != 0) {
    atomic_store(&a->running, 0);
    return prpc__fail(-EAGAIN, "cannot start the accept thread");
  }
  return 0;
}

int prpc__acceptor_is_thread(const prpc__acceptor *a) {
  return a && accept_thread_of == a;
}

void prpc__acceptor_stop(prpc__acceptor *a) {
  if (!a)
    return;
  if (atomic_load(&a->running)) {
    if (write(a->wake[1], "x", 1) < 0 && errno != EAGAIN)
      prpc__log(PRPC__LOG_ERROR, "cannot wake the accept thread");
    if (accept_thread_of != a && !atomic_exchange(&a->joining, 1)) {
      pthread_join(a->thread, NULL);
      atomic_store(&a->running, 0);
    }
  }
  /* From the accept thread (joined by the next stop), or while another
   * stop joins it (that one closes what is below). */
  if (atomic_load(&a->running))
    return;
  /* No new connections: close the listening sockets, so that a client is
   * refused at once instead of waiting in the backlog, and what never sent
   * its preface. */
  for (size_t i = 0; i < a->n_listeners; i++) {
    if (a->listeners[i].fd >= 0)
      close(a->listeners[i].fd);
    a->listeners[i].fd = -1;
  }
  for (size_t i = 0; i < a->n_pend; i++)
    pending_close(a, a->pending[i]);
  a->n_pend = 0;
}

void prpc__acceptor_stats(prpc__acceptor *a, int *open,
                          uint64_t *refused) {
  int n = 0;
  pthread_mutex_lock(&a->mu);
  sweep(a);
  for (size_t fd = 0; fd < a->n_table; fd++)
    if (a->table[fd] && !a->table[fd]->inner)
      n++;
  pthread_mutex_unlock(&a->mu);
  *open = n;
  *refused = atomic_load(&a->refused);
}

void prpc__acceptor_destroy(prpc__acceptor *a) {
  if (!a)
    return;
  prpc__acceptor_stop(a);
  if (atomic_load(&a->running)) {
    pthread_join(a->thread, NULL);
    atomic_store(&a->running, 0);
    prpc__acceptor_stop(a);
  }
  for (size_t i = 0; i < a->n_adopted; i++)
    close(a->adopted[i]); /* never started */
  for (size_t i = 0; i < a->n_hangup; i++)
    close(a->hangup[i]);
  for (size_t fd = 0; fd < a->n_table; fd++)
    if (a->table[fd]) {
      a->table[fd]->state = PRPC__CONN_CLOSED;
      prpc__conn_unref(a->table[fd]);
    }
  if (a->spare >= 0)
    close(a->spare);
  close(a->wake[0]);
  close(a->wake[1]);
  pthread_mutex_destroy(&a->mu);
  free(a->table);
  free(a->budgets);
  free(a->pending);
  free(a->listeners);
  free(a->adopted);
  free(a->hangup);
  free(a);
}
