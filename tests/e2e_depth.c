/* How deep a message piperpc decodes may nest: up to PRPC_MAX_DEPTH (100)
 * sub-messages, on every path. Before the limit a request of a recursive
 * type, 2 MiB nested a few hundred thousand levels deep, overflowed the
 * stack of the worker that decoded it and killed the server. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "../runtime/raw_codec.h"
#include "test.h"
#include "testutil.h"
#include "tree.prpc.h"

#define TOO_DEEP "it nests more than 100 messages deep"

static prpc_server *srv;
static prpc_channel *ch;
static char target[PATH_MAX + 8];
static char *dir;

static size_t depth_of(const Test__Tree__Node *n) {
  size_t d = 0;
  while (n->child) {
    n = n->child;
    d++;
  }
  return d;
}

static grpc_status_code t_depth(prpc_ctx *ctx, const Test__Tree__Node *req,
                                Test__Tree__Node *reply, void *ud) {
  char buf[32];
  (void)ud;
  snprintf(buf, sizeof(buf), "depth %zu", depth_of(req));
  reply->name = prpc_ctx_strdup(ctx, buf);
  return GRPC_STATUS_OK;
}

static grpc_status_code t_collect(prpc_ctx *ctx, Test__Tree__Node *reply,
                                  void *ud) {
  Test__Tree__Node *in;
  int n = 0, rc;
  (void)ud;
  while ((rc = test__tree__tree_server__collect_read(ctx, &in)) == 1) {
    protobuf_c_message_free_unpacked(&in->base, NULL);
    n++;
  }
  if (rc < 0)
    return GRPC_STATUS_INVALID_ARGUMENT; /* the message is set */
  reply->name = prpc_ctx_alloc(ctx, 32);
  snprintf(reply->name, 32, "%d nodes", n);
  return GRPC_STATUS_OK;
}

/* ---- raw bytes: messages too deep for protobuf-c to build or pack ---- */

/* A Node whose field `tag` (0x12: child; 0x1a: children) nests `levels`
 * deep, built from the inside out (packing one with protobuf-c would
 * recurse as deep). */
static uint8_t *deep_tagged(size_t levels, uint8_t tag, size_t *len) {
  size_t size = 0;
  for (size_t i = 0; i < levels; i++) {
    size_t v = size, n = 1;
    while (v >= 0x80) {
      v >>= 7;
      n++;
    }
    size += 1 + n;
  }
  uint8_t *buf = malloc(size ? size : 1), *p = buf + size;
  size_t inner = 0;
  ASSERT(buf);
  for (size_t i = 0; i < levels; i++) {
    uint8_t v[10];
    size_t n = 0, x = inner;
    do {
      v[n++] = (uint8_t)((x & 0x7f) | (x >= 0x80 ? 0x80 : 0));
      x >>= 7;
    } while (x);
    p -= n;
    memcpy(p, v, n);
    *--p = tag;
    inner += 1 + n;
  }
  ASSERT(p == buf);
  *len = size;
  return buf;
}

static uint8_t *deep_bytes(size_t levels, size_t *len) {
  return deep_tagged(levels, 0x12, len);
}

static _Atomic size_t raw_levels; /* what the raw server's handlers send */

static grpc_status_code raw_grow(const void *impl, prpc_ctx *ctx,
                                 const void *request, void *reply, void *ud) {
  raw_msg *r = reply;
  uint8_t *b, *copy;
  (void)impl, (void)request, (void)ud;
  b = deep_bytes(raw_levels, &r->len);
  copy = prpc_ctx_alloc(ctx, r->len); /* the reply lives in the call */
  memcpy(copy, b, r->len);
  r->data = copy;
  free(b);
  return GRPC_STATUS_OK;
}

static grpc_status_code raw_stream(const void *impl, prpc_ctx *ctx,
                                   const void *request, void *reply,
                                   void *ud) {
  raw_msg m;
  uint8_t *b;
  (void)impl, (void)request, (void)reply, (void)ud;
  m.data = b = deep_bytes(raw_levels, &m.len);
  prpc_ctx_write(ctx, &m);
  free(b);
  return GRPC_STATUS_OK;
}

static const prpc_method_desc raw_methods[] = {
    {"/test.tree.Raw/Grow", PRPC_UNARY, &raw_codec, NULL, NULL},
    {"/test.tree.Raw/Stream", PRPC_SERVER_STREAMING, &raw_codec, NULL, NULL},
};
static const prpc_service_desc raw_service = {"test.tree.Raw", 2, raw_methods,
                                              NULL};

static void setup(void) {
  static const Test__Tree__TreeServer impl = {t_depth, t_collect};
  static const prpc_invoke_fn raw_invokers[] = {raw_grow, raw_stream};
  dir = test_tmpdir();
  snprintf(target, sizeof(target), "unix:%s/tree.sock", dir);
  ASSERT_EQ(prpc_server_create(NULL, &srv), 0);
  ASSERT_EQ(prpc_server_add_listener(srv, target, NULL), 0);
  ASSERT_EQ(test__tree__tree_server__register(srv, &impl, NULL), 0);
  ASSERT_EQ(prpc_server_register(srv, &raw_service, raw_invokers, NULL, NULL),
            0);
  ASSERT_EQ(prpc_server_start(srv), 0);
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
}

static void teardown(void) {
  prpc_channel_destroy(ch);
  prpc_server_destroy(srv);
  test_rmdir(dir);
}

/* Sends raw bytes to Tree/Depth; returns the status, its message in st. */
static grpc_status_code send_raw(const uint8_t *data, size_t len,
                                 prpc_status *st) {
  prpc_method_desc m = {"/test.tree.Tree/Depth", PRPC_UNARY, &raw_codec, NULL,
                        NULL};
  raw_msg req = {(uint8_t *)data, len}, *rep = NULL;
  prpc_call_opts o = PRPC_CALL_OPTS_INIT;
  o.timeout_ms = 20000;
  grpc_status_code c = prpc_unary_call(ch, &m, &req, &o, (void **)&rep, st);
  raw_codec.free(NULL, rep, NULL);
  return c;
}

static grpc_status_code call_depth(size_t levels, prpc_status *st,
                                   char *name, size_t size) {
  Test__Tree__Node *nodes = calloc(levels + 1, sizeof(*nodes)), *rep = NULL;
  ASSERT(nodes);
  for (size_t i = 0; i <= levels; i++) {
    test__tree__node__init(&nodes[i]);
    if (i < levels)
      nodes[i].child = &nodes[i + 1];
  }
  grpc_status_code c =
      test__tree__tree_client__depth(ch, &nodes[0], NULL, &rep, st);
  if (rep)
    snprintf(name, size, "%s", rep->name);
  if (rep)
    protobuf_c_message_free_unpacked(&rep->base, NULL);
  free(nodes);
  return c;
}

/* A request nested exactly 100 deep is served; 101 is refused. */
static void limit_is_100(void) {
  prpc_status st = PRPC_STATUS_INIT;
  char name[32] = "";
  setup();
  ASSERT_EQ(call_depth(100, &st, name, sizeof(name)), GRPC_STATUS_OK);
  ASSERT_STREQ(name, "depth 100");
  prpc_status_clear(&st);
  ASSERT_EQ(call_depth(101, &st, name, sizeof(name)),
            GRPC_STATUS_INVALID_ARGUMENT);
  ASSERT_STREQ(st.message, "the request message does not decode: " TOO_DEEP);
  prpc_status_clear(&st);
  /* The same as raw bytes, through `child` and through `children`. */
  size_t len;
  uint8_t *b = deep_tagged(101, 0x1a, &len);
  ASSERT_EQ(send_raw(b, len, &st), GRPC_STATUS_INVALID_ARGUMENT);
  ASSERT_STREQ(st.message, "the request message does not decode: " TOO_DEEP);
  prpc_status_clear(&st);
  free(b);
  b = deep_bytes(101, &len);
  ASSERT_EQ(send_raw(b, len, &st), GRPC_STATUS_INVALID_ARGUMENT);
  ASSERT_STREQ(st.message, "the request message does not decode: " TOO_DEEP);
  prpc_status_clear(&st);
  free(b);
  b = deep_bytes(100, &len);
  ASSERT_EQ(send_raw(b, len, &st), GRPC_STATUS_OK);
  prpc_status_clear(&st);
  free(b);
  teardown();
}

/* 2 MiB nested 500,000 deep: refused, and the server goes on serving. */
static void deep_request_refused(void) {
  prpc_status st = PRPC_STATUS_INIT;
  char name[32] = "";
  size_t len;
  uint8_t *b = deep_bytes(500000, &len);
  fprintf(stderr, "a request of %zu bytes nested 500000 deep\n", len);
  ASSERT(len > 1500000 && len < 4000000);
  setup();
  ASSERT_EQ(send_raw(b, len, &st), GRPC_STATUS_INVALID_ARGUMENT);
  ASSERT_STREQ(st.message, "the request message does not decode: " TOO_DEEP);
  prpc_status_clear(&st);
  ASSERT_EQ(call_depth(3, &st, name, sizeof(name)), GRPC_STATUS_OK);
  ASSERT_STREQ(name, "depth 3");
  prpc_status_clear(&st);
  /* In a client stream as well. */
  prpc_call *call;
  prpc_method_desc collect = test__tree__tree__prpc_service.methods[1];
  collect.codec = &raw_codec;
  raw_msg one = {b, len}, *rep = NULL;
  ASSERT_EQ(prpc_call_start(ch, &collect, NULL, NULL, &call), 0);
  prpc_call_write(call, &one);
  ASSERT_EQ(prpc_call_finish(call, (void **)&rep, &st),
            GRPC_STATUS_INVALID_ARGUMENT);
  ASSERT_STREQ(st.message, "a request message does not decode: " TOO_DEEP);
  raw_codec.free(NULL, rep, NULL);
  prpc_status_clear(&st);
  free(b);
  teardown();
}

/* A server that answers too deep: the client refuses the reply, unary and
 * streaming, with the reason. */
static void deep_reply_refused(void) {
  prpc_status st = PRPC_STATUS_INIT;
  Test__Tree__Node req = TEST__TREE__NODE__INIT;
  void *rep = NULL;
  prpc_method_desc grow = {"/test.tree.Raw/Grow", PRPC_UNARY,
                           &prpc_codec_protobuf_c,
                           &test__tree__node__descriptor,
                           &test__tree__node__descriptor};
  prpc_method_desc stream = grow;
  stream.path = "/test.tree.Raw/Stream";
  stream.kind = PRPC_SERVER_STREAMING;
  setup();
  raw_levels = 300000;
  ASSERT_EQ(prpc_unary_call(ch, &grow, &req, NULL, &rep, &st),
            GRPC_STATUS_INTERNAL);
  ASSERT(rep == NULL);
  ASSERT_STREQ(st.message, "the reply message does not decode: " TOO_DEEP);
  prpc_status_clear(&st);
  prpc_call *call;
  ASSERT_EQ(prpc_call_start(ch, &stream, &req, NULL, &call), 0);
  ASSERT_EQ(prpc_call_read(call, &rep), PRPC_EMSG);
  ASSERT_CONTAINS(prpc_last_error(), TOO_DEEP);
  prpc_call_finish(call, NULL, NULL);
  raw_levels = 100;
  ASSERT_EQ(prpc_unary_call(ch, &grow, &req, NULL, &rep, &st),
            GRPC_STATUS_OK);
  protobuf_c_message_free_unpacked(rep, NULL);
  prpc_status_clear(&st);
  teardown();
}

TEST_MAIN(CASE(limit_is_100), CASE(deep_request_refused),
          CASE(deep_reply_refused))
