/* The connection table (transport/accept.c), from the inside: a call is
 * bound to its connection's record when it is matched; the record holds
 * the identity the kernel gave when the connection was accepted, and keeps
 * it for as long as the call holds its reference, whatever happens to the
 * descriptor; and a descriptor number that no longer names the accepted
 * socket (gRPC core closed it and the number was reused) binds to nothing,
 * so that no handler can be given another connection's identity. */
#include <errno.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../runtime/internal.h"
#include "test.h"
#include "testutil.h"

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
static atomic_int handed, denied;

static void on_grpc(void *data, prpc__conn *c) {
  (void)data, (void)c;
  atomic_fetch_add(&handed, 1); /* the test keeps the descriptor */
}
static void on_deny(void *data, prpc__conn *c) {
  (void)data, (void)c;
  atomic_fetch_add(&denied, 1);
}
static void on_hangup(void *data) { (void)data; }

static void wait_for(atomic_int *v, int want) {
  double t0 = test_now_ms();
  while (atomic_load(v) < want && test_now_ms() - t0 < 5000)
    test_sleep_ms(1);
  ASSERT_EQ(atomic_load(v), want);
}

static void bound_identity(void) {
  prpc__accept_opts o;
  prpc__acceptor *a;
  int sv[2], other[2];
  memset(&o, 0, sizeof(o));
  o.grpc = on_grpc;
  o.deny = on_deny;
  o.hangup = on_hangup;
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  ASSERT_EQ(prpc__acceptor_create(&o, &a), 0);
  ASSERT_EQ(prpc__acceptor_adopt(a, sv[0], 0), 0);
  ASSERT_EQ(prpc__acceptor_start(a), 0);
  /* Before its preface it is not gRPC core's: nothing to bind to. */
  ASSERT(prpc__acceptor_bind(a, sv[0]) == NULL);
  ASSERT_EQ(write(sv[1], preface, sizeof(preface) - 1),
            (ssize_t)sizeof(preface) - 1);
  wait_for(&handed, 1);
  prpc__conn *c = prpc__acceptor_bind(a, sv[0]);
  ASSERT(c != NULL);
  ASSERT_EQ(c->state, PRPC__CONN_GRPC);
  ASSERT(c->have_cred);
  ASSERT_EQ(c->uid, geteuid());
  ASSERT_EQ(c->pid, getpid());
  /* gRPC core closes the descriptor and the number is taken by another
   * socket: the number binds to nothing now (fail closed)... */
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, other), 0);
  ASSERT_EQ(dup2(other[0], sv[0]), sv[0]);
  ASSERT(prpc__acceptor_bind(a, sv[0]) == NULL);
  /* ...while the call bound before keeps the identity it was given. */
  ASSERT_EQ(c->uid, geteuid());
  ASSERT_EQ(c->pid, getpid());
  ASSERT_EQ(c->state, PRPC__CONN_CLOSED); /* the table let it go */
  prpc__conn_unref(c);
  /* A number the acceptor never handed over binds to nothing either. */
  ASSERT(prpc__acceptor_bind(a, other[1]) == NULL);
  ASSERT(prpc__acceptor_bind(a, -1) == NULL);
  prpc__acceptor_destroy(a);
  close(sv[0]);
  close(sv[1]);
  close(other[0]);
  close(other[1]);
}

/* The access rules decide at accept: a denied peer goes to the deny
 * server, and its record says so. */
static void denied_record(void) {
  prpc__accept_opts o;
  prpc__acceptor *a;
  prpc__rule rule;
  int sv[2];
  memset(&o, 0, sizeof(o));
  ASSERT_EQ(prpc__rule_parse(0, "any", &rule), 0);
  o.rules = &rule;
  o.n_rules = 1;
  o.grpc = on_grpc;
  o.deny = on_deny;
  o.hangup = on_hangup;
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  ASSERT_EQ(prpc__acceptor_create(&o, &a), 0);
  ASSERT_EQ(prpc__acceptor_adopt(a, sv[0], 0), 0);
  ASSERT_EQ(prpc__acceptor_start(a), 0);
  ASSERT_EQ(write(sv[1], preface, sizeof(preface) - 1),
            (ssize_t)sizeof(preface) - 1);
  wait_for(&denied, 1);
  ASSERT_EQ(atomic_load(&handed), 0);
  prpc__conn *c = prpc__acceptor_bind(a, sv[0]);
  ASSERT(c != NULL);
  ASSERT_EQ(c->state, PRPC__CONN_DENIED);
  ASSERT(c->denied);
  prpc__conn_unref(c);
  prpc__acceptor_destroy(a);
  close(sv[0]);
  close(sv[1]);
}

TEST_MAIN(CASE(bound_identity), CASE(denied_record))
