/* End-to-end cases with the nanopb backend: the services of
 * tests/codegen/proto generated with --prpc_opt=backend=nanopb (sizes in the
 * .options files next to the protos; Text.blob is a pb_callback_t), client
 * and server in one process over a unix socket. The same cases as the
 * protobuf-c build (unary, all streaming kinds, deadline, cancel, errors),
 * messages that do not fit, and a count of allocations per call. */
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <pb_decode.h>
#include <pb_encode.h>
#include <stdatomic.h>
#include <unistd.h>

#include "common/types.prpc.h"
#include "multi.prpc.h"
#include "nopkg.prpc.h"
#include "test.h"
#include "testutil.h"
#include "../runtime/raw_codec.h"
#include "tree.prpc.h"

/* ---- counting allocations ----
 * malloc, calloc, realloc, strdup and strndup are interposed (a build with
 * AddressSanitizer has its own: there the counting case is skipped). While
 * 'counting' is set, every call counts in alloc_all; one made directly from
 * piperpc's or nanopb's code (the return address lies in libpiperpc.so or in
 * this executable, which links the generated code, the nanopb codec and
 * nanopb's runtime) also counts in alloc_ours; and one made, by anyone,
 * while a thread is in the message path (inside a codec function, or on the
 * server between the prepare hook and the handler: the request's decoding
 * and the reply's set-up) counts in alloc_msg. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define COUNT_ALLOCS 0
#else
#define COUNT_ALLOCS 1
#endif

static atomic_int counting;
static atomic_long alloc_all, alloc_ours, alloc_msg;
static _Thread_local int in_codec, in_decode; /* the message path */
static struct {
  uintptr_t lo, hi;
} ours[16];
static int n_ours;
static void *callers[16]; /* the first of ours, for the failure message */
static void *msg_callers[16];

#if COUNT_ALLOCS
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);

/* The build hides symbols by default; these must replace libc's for the
 * shared libraries too. */
#define EXPORT __attribute__((visibility("default")))

static void note(void *caller) {
  if (!atomic_load_explicit(&counting, memory_order_relaxed))
    return;
  atomic_fetch_add(&alloc_all, 1);
  if (in_codec || in_decode) {
    long k = atomic_fetch_add(&alloc_msg, 1);
    if (k >= 0 && k < 16)
      msg_callers[k] = caller;
  }
  for (int i = 0; i < n_ours; i++)
    if ((uintptr_t)caller >= ours[i].lo && (uintptr_t)caller < ours[i].hi) {
      long k = atomic_fetch_add(&alloc_ours, 1);
      if (k >= 0 && k < 16)
        callers[k] = caller;
      break;
    }
}

EXPORT void *malloc(size_t size) {
  note(__builtin_return_address(0));
  return __libc_malloc(size);
}
EXPORT void *calloc(size_t n, size_t size) {
  note(__builtin_return_address(0));
  return __libc_calloc(n, size);
}
EXPORT void *realloc(void *p, size_t size) {
  note(__builtin_return_address(0));
  return __libc_realloc(p, size);
}
EXPORT char *strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p;
  note(__builtin_return_address(0));
  if ((p = __libc_malloc(n)))
    memcpy(p, s, n);
  return p;
}
EXPORT char *strndup(const char *s, size_t max) {
  size_t n = strnlen(s, max);
  char *p;
  note(__builtin_return_address(0));
  if ((p = __libc_malloc(n + 1))) {
    memcpy(p, s, n);
    p[n] = '\0';
  }
  return p;
}
#endif

/* The executable segments of this program and of libpiperpc.so. */
static int find_ours(struct dl_phdr_info *info, size_t size, void *data) {
  (void)size;
  (void)data;
  if (info->dlpi_name[0] != '\0' && !strstr(info->dlpi_name, "libpiperpc"))
    return 0;
  for (int i = 0; i < info->dlpi_phnum && n_ours < 16; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
      ours[n_ours].lo = info->dlpi_addr + ph->p_vaddr;
      ours[n_ours].hi = ours[n_ours].lo + ph->p_memsz;
      n_ours++;
    }
  }
  return 0;
}

/* ---- payloads in pb_callback_t fields ---- */

/* Bytes kept by a decode callback: in call memory on the server
 * (prpc_ctx_alloc), on the heap on the client (the test frees them). */
typedef struct blob {
  prpc_ctx *ctx; /* NULL: malloc */
  uint8_t *data;
  size_t len, cap;
} blob;

static bool blob_decode(pb_istream_t *stream, const pb_field_t *field,
                        void **arg) {
  blob *b = *arg;
  size_t n = stream->bytes_left;
  (void)field;
  if (n > b->cap) {
    uint8_t *p = b->ctx ? prpc_ctx_alloc(b->ctx, n) : realloc(b->data, n);
    if (!p)
      return false;
    b->data = p;
    b->cap = n;
  }
  if (!pb_read(stream, b->data, n))
    return false;
  b->len = n;
  return true;
}

static bool blob_encode(pb_ostream_t *stream, const pb_field_t *field,
                        void *const *arg) {
  const blob *b = *arg;
  if (b->len == 0)
    return true;
  return pb_encode_tag_for_field(stream, field) &&
         pb_encode_string(stream, b->data, b->len);
}

static blob *blob_in_call(prpc_ctx *ctx) {
  blob *b = prpc_ctx_alloc(ctx, sizeof(*b));
  if (b)
    *b = (blob){ctx, NULL, 0, 0};
  return b;
}

/* The nanopb codec with the message-path flag set during each call. */
static size_t c_encoded_size(const void *t, const void *m) {
  in_codec++;
  size_t r = prpc_codec_nanopb.encoded_size(t, m);
  in_codec--;
  return r;
}
static size_t c_encode(const void *t, const void *m, uint8_t *out) {
  in_codec++;
  size_t r = prpc_codec_nanopb.encode(t, m, out);
  in_codec--;
  return r;
}
static size_t c_struct_size(const void *t) {
  return prpc_codec_nanopb.struct_size(t);
}
static void c_init(const void *t, void *m) {
  in_codec++;
  prpc_codec_nanopb.init(t, m);
  in_codec--;
}
static const char *c_decode_into(const void *t, const uint8_t *d, size_t n,
                                 void *m) {
  in_codec++;
  const char *r = prpc_codec_nanopb.decode_into(t, d, n, m);
  in_codec--;
  return r;
}
static void c_release(const void *t, void *m) {
  in_codec++;
  prpc_codec_nanopb.release(t, m);
  in_codec--;
}
static const prpc_codec counted_codec = {
    "nanopb, counted", c_encoded_size, c_encode, NULL, NULL, c_struct_size,
    c_init, c_decode_into, c_release, NULL};

/* ---- the services ---- */

static atomic_int handlers_running;
static atomic_int range_ended;
static atomic_int unary_calls;

static void s_unary_prepare(prpc_ctx *ctx, test_common_Text *req, void *ud) {
  (void)ud;
  req->blob.funcs.decode = blob_decode;
  req->blob.arg = blob_in_call(ctx);
}

static grpc_status_code s_unary(prpc_ctx *ctx, const test_common_Text *req,
                                test_common_Text *reply, void *ud) {
  (void)ud;
  in_decode = 0; /* from the prepare hook of the counted service */
  atomic_fetch_add(&unary_calls, 1);
  if (strcmp(req->text, "sleep") == 0) {
    while (!prpc_ctx_is_cancelled(ctx))
      test_sleep_ms(2);
    return GRPC_STATUS_CANCELLED;
  }
  if (strcmp(req->text, "fail") == 0) {
    prpc_ctx_set_message(ctx, "failed on purpose");
    return GRPC_STATUS_FAILED_PRECONDITION;
  }
  if (strcmp(req->text, "unterminated") == 0) {
    memset(reply->text, 'u', sizeof(reply->text)); /* no room for the NUL */
    return GRPC_STATUS_OK;
  }
  if (strcmp(req->text, "alloc") == 0) /* the counter's control case */
    free(malloc(16));
  strcpy(reply->text, req->text); /* both are char[64] */
  reply->blob.funcs.encode = blob_encode;
  reply->blob.arg = req->blob.arg; /* call memory: lives until the end */
  return GRPC_STATUS_OK;
}

static grpc_status_code s_range(prpc_ctx *ctx,
                                const test_multi_v1_RangeRequest *req,
                                void *ud) {
  grpc_status_code code = GRPC_STATUS_OK;
  (void)ud;
  atomic_fetch_add(&handlers_running, 1);
  prpc_ctx_add_header(ctx, "x-range-count", "yes", 3);
  for (int i = 0; i < req->count; i++) {
    test_common_Number n = test_common_Number_init_zero;
    n.value = i;
    if (test__multi__v1__streamer_server__range_write(ctx, &n) != 0) {
      code = GRPC_STATUS_CANCELLED;
      break;
    }
  }
  if (code == GRPC_STATUS_OK && req->has_opts && req->opts.fail_at_end) {
    prpc_ctx_set_message(ctx, "failed at the end");
    prpc_ctx_add_trailer(ctx, "x-where", "end", 3);
    code = GRPC_STATUS_FAILED_PRECONDITION;
  }
  atomic_fetch_sub(&handlers_running, 1);
  atomic_fetch_add(&range_ended, 1);
  return code;
}

static grpc_status_code s_sum(prpc_ctx *ctx, test_common_Number *reply,
                              void *ud) {
  test_common_Number n = test_common_Number_init_zero;
  int rc;
  (void)ud;
  while ((rc = test__multi__v1__streamer_server__sum_read(ctx, &n)) == 1)
    reply->value += n.value;
  return rc == 0 ? GRPC_STATUS_OK : GRPC_STATUS_CANCELLED;
}

static grpc_status_code s_echo(prpc_ctx *ctx, void *ud) {
  test_common_Text in = test_common_Text_init_zero;
  test_common_Text out = test_common_Text_init_zero;
  blob *b = blob_in_call(ctx);
  int rc;
  (void)ud;
  if (!b)
    return GRPC_STATUS_RESOURCE_EXHAUSTED;
  in.blob.funcs.decode = blob_decode; /* kept across reads */
  in.blob.arg = b;
  out.blob.funcs.encode = blob_encode;
  out.blob.arg = b;
  while ((rc = test__multi__v1__streamer_server__echo_read(ctx, &in)) == 1) {
    strcpy(out.text, in.text);
    if (strcmp(in.text, "unterminated") == 0) {
      /* A message past its static size: the write refuses it. */
      memset(out.text, 'u', sizeof(out.text));
      if (test__multi__v1__streamer_server__echo_write(ctx, &out) !=
          PRPC_EMSG)
        return GRPC_STATUS_UNKNOWN;
      prpc_ctx_set_message(ctx, "the write was refused");
      return GRPC_STATUS_INTERNAL;
    }
    if (test__multi__v1__streamer_server__echo_write(ctx, &out) != 0)
      return GRPC_STATUS_CANCELLED;
    b->len = 0;
  }
  return rc == 0 ? GRPC_STATUS_OK : GRPC_STATUS_CANCELLED;
}

static grpc_status_code s_nested(prpc_ctx *ctx,
                                 const test_multi_v1_RangeRequest_Options *r,
                                 test_multi_v1_RangeRequest_Options *reply,
                                 void *ud) {
  (void)ctx;
  (void)ud;
  reply->fail_at_end = !r->fail_at_end;
  return GRPC_STATUS_OK;
}

static grpc_status_code p_send(prpc_ctx *ctx, const Ping *req, Pong *reply,
                               void *ud) {
  (void)ctx;
  (void)ud;
  reply->seq = req->has_note ? (int32_t)strlen(req->note) : -1;
  return GRPC_STATUS_OK;
}

static const Test__Multi__V1__StreamerServer streamer = {
    .unary = s_unary,
    .range = s_range,
    .sum = s_sum,
    .echo = s_echo,
    .nested_type = s_nested,
    .unary_prepare = s_unary_prepare};
static const Test__Multi__V1__HTTPAdminServer admin = {NULL, NULL, NULL,
                                                       NULL};
static const PlainServer plain = PLAIN_SERVER__INIT(p_);

static char *dir;
static char target[300];
static prpc_server *srv;
static prpc_channel *ch;

static int register_extra; /* setup() adds the counted service */
static prpc_method_desc counted_unary;
static const prpc_service_desc counted_service;
static grpc_status_code counted_invoke(const void *impl, prpc_ctx *ctx,
                                       const void *request, void *reply,
                                       void *user_data);
static void counted_prepare(const void *impl, prpc_ctx *ctx, void *request,
                            void *user_data);

static void setup(void) {
  prpc_server_opts opts = PRPC_SERVER_OPTS_INIT;
  opts.threads = 2;
  dir = test_tmpdir();
  snprintf(target, sizeof(target), "unix:%s/s.sock", dir);
  ASSERT_EQ(prpc_server_create(&opts, &srv), 0);
  ASSERT_EQ(prpc_server_add_listener(srv, target, NULL), 0);
  ASSERT_EQ(test__multi__v1__streamer_server__register(srv, &streamer, NULL),
            0);
  ASSERT_EQ(test__multi__v1__httpadmin_server__register(srv, &admin, NULL), 0);
  ASSERT_EQ(plain_server__register(srv, &plain, NULL), 0);
  ASSERT_EQ(empty_server__register(srv, NULL, NULL), 0);
  if (register_extra) {
    static const prpc_invoke_fn inv[] = {counted_invoke};
    static const prpc_prepare_fn prep[] = {counted_prepare};
    ASSERT_EQ(prpc_server_register_ex(srv, &counted_service, inv, prep, NULL,
                                      NULL),
              0);
  }
  ASSERT_EQ(prpc_server_start(srv), 0);
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
}

static void teardown(void) {
  prpc_channel_destroy(ch);
  prpc_server_destroy(srv);
  ASSERT_EQ(atomic_load(&handlers_running), 0);
  test_rmdir(dir);
}

static grpc_status_code call_unary(const char *text, test_common_Text *reply,
                                   prpc_status *st) {
  test_common_Text req = test_common_Text_init_zero;
  ASSERT(strlen(text) < sizeof(req.text));
  strcpy(req.text, text);
  return test__multi__v1__streamer_client__unary(ch, &req, NULL, reply, st);
}

static void expect_serving(void) {
  test_common_Text rep = test_common_Text_init_zero;
  ASSERT_EQ(call_unary("still here", &rep, NULL), GRPC_STATUS_OK);
  ASSERT_STREQ(rep.text, "still here");
}

/* ---- cases ---- */

static void unary_shapes(void) {
  setup();
  static uint8_t bytes[] = {0, 1, 2, 3, 255};
  blob out = {NULL, bytes, sizeof(bytes), 0}, in = {0};
  test_common_Text req = test_common_Text_init_zero;
  test_common_Text rep = test_common_Text_init_zero;
  strcpy(req.text, "hi");
  req.blob.funcs.encode = blob_encode;
  req.blob.arg = &out;
  rep.blob.funcs.decode = blob_decode;
  rep.blob.arg = &in;
  ASSERT_EQ(test__multi__v1__streamer_client__unary(ch, &req, NULL, &rep, NULL),
            GRPC_STATUS_OK);
  ASSERT_STREQ(rep.text, "hi");
  ASSERT(in.len == 5 && memcmp(in.data, bytes, 5) == 0);
  free(in.data);

  /* A NULL reply: the call runs, the reply is dropped. */
  ASSERT_EQ(call_unary("dropped", NULL, NULL), GRPC_STATUS_OK);

  test_multi_v1_RangeRequest_Options o = test_multi_v1_RangeRequest_Options_init_zero;
  test_multi_v1_RangeRequest_Options orep =
      test_multi_v1_RangeRequest_Options_init_zero;
  ASSERT_EQ(test__multi__v1__streamer_client__nested_type(ch, &o, NULL, &orep,
                                                          NULL),
            GRPC_STATUS_OK);
  ASSERT_EQ(orep.fail_at_end, 1);

  Ping ping = Ping_init_zero;
  Pong pong = Pong_init_zero;
  ping.has_note = true;
  strcpy(ping.note, "four");
  ASSERT_EQ(plain_client__send(ch, &ping, NULL, &pong, NULL), GRPC_STATUS_OK);
  ASSERT_EQ(pong.seq, 4);
  ASSERT_STREQ(plain__prpc_service.methods[0].path, "/Plain/Send");
  ASSERT_STREQ(prpc_codec_nanopb.name, "nanopb");
  ASSERT(plain__prpc_service.methods[0].codec == &prpc_codec_nanopb);

  /* NULL handlers answer UNIMPLEMENTED. */
  prpc_status st = PRPC_STATUS_INIT;
  ASSERT_EQ(test__multi__v1__httpadmin_client__get_urlstatus(ch, &req, NULL,
                                                             &rep, &st),
            GRPC_STATUS_UNIMPLEMENTED);
  prpc_status_clear(&st);

  /* The allocating call functions refuse a nanopb method, and back. */
  void *p = NULL;
  ASSERT_EQ(prpc_unary_call(ch, &test__multi__v1__streamer__prpc_service
                                     .methods[0],
                            &req, NULL, &p, &st),
            GRPC_STATUS_INVALID_ARGUMENT);
  ASSERT_CONTAINS(st.message, "use the _into call functions");
  ASSERT(p == NULL);
  prpc_status_clear(&st);
  teardown();
}

/* Bodies far over any static size travel in pb_callback_t fields, both
 * ways: 1 MiB in a request and back in the reply. */
static void callbacks_large(void) {
  setup();
  size_t n = 1 << 20;
  blob out = {NULL, malloc(n), n, n}, in = {0};
  ASSERT(out.data);
  for (size_t i = 0; i < n; i++)
    out.data[i] = (uint8_t)(i * 7 + 3);
  test_common_Text req = test_common_Text_init_zero;
  test_common_Text rep = test_common_Text_init_zero;
  strcpy(req.text, "big");
  req.blob.funcs.encode = blob_encode;
  req.blob.arg = &out;
  rep.blob.funcs.decode = blob_decode;
  rep.blob.arg = &in;
  ASSERT_EQ(test__multi__v1__streamer_client__unary(ch, &req, NULL, &rep, NULL),
            GRPC_STATUS_OK);
  ASSERT_STREQ(rep.text, "big");
  ASSERT_EQ(in.len, n);
  ASSERT(memcmp(in.data, out.data, n) == 0);
  free(in.data);
  free(out.data);
  teardown();
}

static void server_streaming(void) {
  setup();
  test_multi_v1_RangeRequest req = test_multi_v1_RangeRequest_init_zero;
  test_common_Number n = test_common_Number_init_zero;
  prpc_call *call;
  prpc_status st = PRPC_STATUS_INIT;
  const prpc_metadata *hdr;
  req.count = 50;
  ASSERT_EQ(test__multi__v1__streamer_client__range_start(ch, &req, NULL,
                                                          &call),
            0);
  ASSERT_EQ(prpc_call_headers(call, &hdr), 0);
  ASSERT(prpc_metadata_get(hdr, "x-range-count") != NULL);
  for (int i = 0; i < 50; i++) {
    ASSERT_EQ(test__multi__v1__streamer_client__range_read(call, &n), 1);
    ASSERT_EQ(n.value, i);
  }
  ASSERT_EQ(test__multi__v1__streamer_client__range_read(call, &n), 0);
  ASSERT_EQ(prpc_call_finish(call, NULL, &st), GRPC_STATUS_OK);
  prpc_status_clear(&st);

  /* A status after the messages, with a trailer. */
  req.count = 3;
  req.has_opts = true;
  req.opts.fail_at_end = true;
  ASSERT_EQ(test__multi__v1__streamer_client__range_start(ch, &req, NULL,
                                                          &call),
            0);
  for (int i = 0; i < 3; i++)
    ASSERT_EQ(test__multi__v1__streamer_client__range_read(call, &n), 1);
  ASSERT_EQ(test__multi__v1__streamer_client__range_read(call, &n), 0);
  ASSERT_EQ(prpc_call_finish(call, NULL, &st),
            GRPC_STATUS_FAILED_PRECONDITION);
  ASSERT_STREQ(st.message, "failed at the end");
  ASSERT(prpc_metadata_get(&st.trailers, "x-where") != NULL);
  prpc_status_clear(&st);
  teardown();
}

static void client_streaming(void) {
  setup();
  prpc_call *call;
  test_common_Number n = test_common_Number_init_zero;
  test_common_Number sum = test_common_Number_init_zero;
  ASSERT_EQ(test__multi__v1__streamer_client__sum_start(ch, NULL, &call), 0);
  for (int i = 1; i <= 100; i++) {
    n.value = i;
    ASSERT_EQ(test__multi__v1__streamer_client__sum_write(call, &n), 0);
  }
  ASSERT_EQ(test__multi__v1__streamer_client__sum_finish(call, &sum, NULL),
            GRPC_STATUS_OK);
  ASSERT_EQ(sum.value, 5050);

  /* No message at all: the sum of nothing. */
  sum.value = 99;
  ASSERT_EQ(test__multi__v1__streamer_client__sum_start(ch, NULL, &call), 0);
  ASSERT_EQ(test__multi__v1__streamer_client__sum_finish(call, &sum, NULL),
            GRPC_STATUS_OK);
  ASSERT_EQ(sum.value, 0);
  teardown();
}

static void bidi_ping_pong(void) {
  setup();
  prpc_call *call;
  blob in = {0};
  ASSERT_EQ(test__multi__v1__streamer_client__echo_start(ch, NULL, &call), 0);
  for (int i = 0; i < 5; i++) {
    uint8_t bytes[100];
    blob out = {NULL, bytes, (size_t)(i * 20), 0};
    test_common_Text t = test_common_Text_init_zero;
    test_common_Text r = test_common_Text_init_zero;
    memset(bytes, 'a' + i, sizeof(bytes));
    snprintf(t.text, sizeof(t.text), "line %d", i);
    t.blob.funcs.encode = blob_encode;
    t.blob.arg = &out;
    r.blob.funcs.decode = blob_decode;
    r.blob.arg = &in;
    in.len = 0;
    ASSERT_EQ(test__multi__v1__streamer_client__echo_write(call, &t), 0);
    ASSERT_EQ(test__multi__v1__streamer_client__echo_read(call, &r), 1);
    ASSERT_STREQ(r.text, t.text);
    ASSERT_EQ(in.len, (size_t)(i * 20));
    ASSERT(in.len == 0 || memcmp(in.data, bytes, in.len) == 0);
  }
  ASSERT_EQ(prpc_call_writes_done(call), 0);
  test_common_Text r = test_common_Text_init_zero;
  ASSERT_EQ(test__multi__v1__streamer_client__echo_read(call, &r), 0);
  ASSERT_EQ(prpc_call_finish(call, NULL, NULL), GRPC_STATUS_OK);
  free(in.data);
  teardown();
}

static void cancel_mid_stream(void) {
  setup();
  test_multi_v1_RangeRequest req = test_multi_v1_RangeRequest_init_zero;
  test_common_Number n = test_common_Number_init_zero;
  prpc_call *call;
  int before = atomic_load(&range_ended);
  req.count = 100000000;
  ASSERT_EQ(test__multi__v1__streamer_client__range_start(ch, &req, NULL,
                                                          &call),
            0);
  for (int i = 0; i < 3; i++) {
    ASSERT_EQ(test__multi__v1__streamer_client__range_read(call, &n), 1);
    ASSERT_EQ(n.value, i);
  }
  prpc_call_cancel(call);
  ASSERT_EQ(prpc_call_finish(call, NULL, NULL), GRPC_STATUS_CANCELLED);
  double t0 = test_now_ms();
  while (atomic_load(&range_ended) == before && test_now_ms() - t0 < 10000)
    test_sleep_ms(5);
  ASSERT_EQ(atomic_load(&range_ended), before + 1);
  expect_serving();
  teardown();
}

static void deadline(void) {
  setup();
  prpc_call_opts opts = PRPC_CALL_OPTS_INIT;
  prpc_status st = PRPC_STATUS_INIT;
  test_common_Text req = test_common_Text_init_zero;
  test_common_Text rep = test_common_Text_init_zero;
  opts.timeout_ms = 200;
  strcpy(req.text, "sleep");
  double t0 = test_now_ms();
  ASSERT_EQ(test__multi__v1__streamer_client__unary(ch, &req, &opts, &rep, &st),
            GRPC_STATUS_DEADLINE_EXCEEDED);
  ASSERT(test_now_ms() - t0 < 5000);
  prpc_status_clear(&st);

  /* A stream past its deadline. */
  test_multi_v1_RangeRequest rr = test_multi_v1_RangeRequest_init_zero;
  test_common_Number n = test_common_Number_init_zero;
  prpc_call *call;
  rr.count = 100000000;
  ASSERT_EQ(test__multi__v1__streamer_client__range_start(ch, &rr, &opts,
                                                          &call),
            0);
  while (test__multi__v1__streamer_client__range_read(call, &n) == 1)
    ;
  ASSERT_EQ(prpc_call_finish(call, NULL, NULL), GRPC_STATUS_DEADLINE_EXCEEDED);
  expect_serving();
  teardown();
}

static void errors(void) {
  setup();
  prpc_status st = PRPC_STATUS_INIT;
  test_common_Text rep = test_common_Text_init_zero;
  ASSERT_EQ(call_unary("fail", &rep, &st), GRPC_STATUS_FAILED_PRECONDITION);
  ASSERT_STREQ(st.message, "failed on purpose");
  prpc_status_clear(&st);

  /* A reply the handler filled past its static size: refused, not cut. */
  ASSERT_EQ(call_unary("unterminated", &rep, &st), GRPC_STATUS_INTERNAL);
  ASSERT_STREQ(st.message, "the reply message does not encode");
  prpc_status_clear(&st);

  /* A request the client cannot encode never leaves. */
  test_common_Text req = test_common_Text_init_zero;
  int calls = atomic_load(&unary_calls);
  memset(req.text, 'x', sizeof(req.text)); /* no NUL within max_size */
  ASSERT_EQ(test__multi__v1__streamer_client__unary(ch, &req, NULL, &rep, &st),
            GRPC_STATUS_INTERNAL);
  ASSERT_STREQ(st.message, "failed to encode the request");
  prpc_status_clear(&st);
  ASSERT_EQ(atomic_load(&unary_calls), calls);

  /* The same on a stream: the write fails, the call goes on. */
  prpc_call *call;
  ASSERT_EQ(test__multi__v1__streamer_client__echo_start(ch, NULL, &call), 0);
  ASSERT_EQ(test__multi__v1__streamer_client__echo_write(call, &req), PRPC_EMSG);
  strcpy(req.text, "fits");
  ASSERT_EQ(test__multi__v1__streamer_client__echo_write(call, &req), 0);
  ASSERT_EQ(test__multi__v1__streamer_client__echo_read(call, &rep), 1);
  ASSERT_STREQ(rep.text, "fits");
  ASSERT_EQ(prpc_call_writes_done(call), 0);
  ASSERT_EQ(prpc_call_finish(call, NULL, NULL), GRPC_STATUS_OK);

  /* A handler's stream message past its static size is refused too. */
  ASSERT_EQ(test__multi__v1__streamer_client__echo_start(ch, NULL, &call), 0);
  strcpy(req.text, "unterminated");
  ASSERT_EQ(test__multi__v1__streamer_client__echo_write(call, &req), 0);
  ASSERT_EQ(test__multi__v1__streamer_client__echo_read(call, &rep), 0);
  ASSERT_EQ(prpc_call_finish(call, NULL, &st), GRPC_STATUS_INTERNAL);
  ASSERT_STREQ(st.message, "the write was refused");
  prpc_status_clear(&st);
  expect_serving();
  teardown();
}

/* ---- raw bytes on the wire, to send what a nanopb client cannot ---- */

static const prpc_method_desc raw_unary = {
    "/test.multi.v1.Streamer/Unary", PRPC_UNARY, &raw_codec, NULL, NULL};
static const prpc_method_desc raw_echo = {
    "/test.multi.v1.Streamer/Echo", PRPC_BIDI_STREAMING, &raw_codec, NULL,
    NULL};

/* A Text whose text field has n bytes. */
static size_t text_of(uint8_t *buf, size_t n) {
  buf[0] = 0x0a; /* field 1, length-delimited */
  buf[1] = (uint8_t)n;
  memset(buf + 2, 'y', n);
  return n + 2;
}

static void oversize_request(void) {
  setup();
  uint8_t buf[200];
  raw_msg m = {buf, text_of(buf, 100)}; /* text is char[64] */
  prpc_status st = PRPC_STATUS_INIT;
  void *reply = NULL;
  int calls = atomic_load(&unary_calls);
  ASSERT_EQ(prpc_unary_call(ch, &raw_unary, &m, NULL, &reply, &st),
            GRPC_STATUS_INVALID_ARGUMENT);
  ASSERT_STREQ(st.message, "the request message does not decode: a field is "
                           "larger than its fixed size (nanopb max_size or "
                           "max_count)");
  prpc_status_clear(&st);
  ASSERT_EQ(atomic_load(&unary_calls), calls); /* never reached a handler */

  /* 63 bytes and the NUL fit exactly. */
  m.len = text_of(buf, 63);
  ASSERT_EQ(prpc_unary_call(ch, &raw_unary, &m, NULL, &reply, &st),
            GRPC_STATUS_OK);
  ASSERT_EQ(((raw_msg *)reply)->len, 65);
  free(reply);
  prpc_status_clear(&st);

  /* Malformed bytes: nanopb's reason. */
  static const uint8_t garbage[] = {0x0a, 0x7f, 'x'};
  m.data = garbage;
  m.len = sizeof(garbage);
  ASSERT_EQ(prpc_unary_call(ch, &raw_unary, &m, NULL, &reply, &st),
            GRPC_STATUS_INVALID_ARGUMENT);
  ASSERT_CONTAINS(st.message, "the request message does not decode: ");
  prpc_status_clear(&st);

  /* On a stream the read fails and the call ends with INVALID_ARGUMENT. */
  prpc_call *call;
  m.data = buf;
  m.len = text_of(buf, 100);
  ASSERT_EQ(prpc_call_start(ch, &raw_echo, NULL, NULL, &call), 0);
  prpc_call_write(call, &m); /* may already see the end */
  ASSERT_EQ(prpc_call_finish(call, NULL, &st), GRPC_STATUS_INVALID_ARGUMENT);
  ASSERT_STREQ(st.message, "a request message does not decode: a field is "
                           "larger than its fixed size (nanopb max_size or "
                           "max_count)");
  prpc_status_clear(&st);
  expect_serving();
  teardown();
}

/* A reply too large for the client's struct: a server that answers Unary
 * with raw bytes. */
static grpc_status_code raw_invoke(const void *impl, prpc_ctx *ctx,
                                   const void *request, void *reply,
                                   void *user_data) {
  static uint8_t buf[200];
  raw_msg *r = reply;
  (void)impl;
  (void)ctx;
  (void)request;
  (void)user_data;
  r->data = buf;
  r->len = text_of(buf, 100);
  return GRPC_STATUS_OK;
}

static void oversize_reply(void) {
  static const prpc_service_desc raw_service = {"test.multi.v1.Streamer", 1,
                                                &raw_unary, NULL};
  static const prpc_invoke_fn invokers[] = {raw_invoke};
  prpc_server_opts opts = PRPC_SERVER_OPTS_INIT;
  prpc_status st = PRPC_STATUS_INIT;
  test_common_Text rep = test_common_Text_init_zero;
  opts.threads = 1;
  dir = test_tmpdir();
  snprintf(target, sizeof(target), "unix:%s/raw.sock", dir);
  ASSERT_EQ(prpc_server_create(&opts, &srv), 0);
  ASSERT_EQ(prpc_server_add_listener(srv, target, NULL), 0);
  ASSERT_EQ(prpc_server_register(srv, &raw_service, invokers, NULL, NULL), 0);
  ASSERT_EQ(prpc_server_start(srv), 0);
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  ASSERT_EQ(call_unary("hello", &rep, &st), GRPC_STATUS_INTERNAL);
  ASSERT_STREQ(st.message, "the reply message does not decode: a field is "
                           "larger than its fixed size (nanopb max_size or "
                           "max_count)");
  prpc_status_clear(&st);
  teardown();
}

/* Streamer.Unary again, with the counted codec, as "test.counted.Counted". */
static const prpc_service_desc counted_service = {"test.counted.Counted", 1,
                                                  &counted_unary, NULL};

static grpc_status_code counted_invoke(const void *impl, prpc_ctx *ctx,
                                       const void *request, void *reply,
                                       void *user_data) {
  (void)impl;
  return s_unary(ctx, request, reply, user_data);
}

static void counted_prepare(const void *impl, prpc_ctx *ctx, void *request,
                            void *user_data) {
  (void)impl;
  s_unary_prepare(ctx, request, user_data);
  in_decode = 1; /* until s_unary starts */
}

/* An encode callback that allocates: the control of alloc_msg. */
static bool alloc_encode(pb_ostream_t *stream, const pb_field_t *field,
                         void *const *arg) {
  free(malloc(8));
  return blob_encode(stream, field, arg);
}

/* 10,000 unary calls, client and server in this process, with a string and
 * a callback field. Asserted: no allocation at all in the message path
 * (codec calls on both sides; on the server, from the request's decoding to
 * the handler), and none per call in piperpc's and nanopb's code (the few
 * there are grow the server's pool of call slots when calls overlap, and
 * are printed). gRPC core's own allocations per call are counted and
 * printed. The controls: an encode callback that allocates is seen in the
 * message path, a handler that allocates in piperpc's code count. */
static void no_alloc_per_call(void) {
  enum { CALLS = 10000, CONTROL = 100 };
  if (!COUNT_ALLOCS) {
    fprintf(stderr, "skipped: a sanitizer build has its own malloc\n");
    exit(77);
  }
  static const prpc_invoke_fn invokers[] = {counted_invoke};
  static const prpc_prepare_fn preparers[] = {counted_prepare};
  dl_iterate_phdr(find_ours, NULL);
  ASSERT(n_ours >= 2); /* this program and libpiperpc.so */
  counted_unary = test__multi__v1__streamer__prpc_service.methods[0];
  counted_unary.path = "/test.counted.Counted/Unary";
  counted_unary.codec = &counted_codec;
  register_extra = 1;
  setup();
  ASSERT_EQ(prpc_server_register_ex(srv, &counted_service, invokers,
                                    preparers, NULL, NULL),
            PRPC_ESTATE); /* registered by setup(), before the start */

  test_common_Text req = test_common_Text_init_zero;
  test_common_Text rep = test_common_Text_init_zero;
  static uint8_t bytes[100];
  blob out = {NULL, bytes, sizeof(bytes), 0};
  strcpy(req.text, "count me");
  req.blob.funcs.encode = blob_encode; /* a callback field too */
  req.blob.arg = &out;
  for (int i = 0; i < 1000; i++) /* warm up: slots, queues, connection */
    ASSERT_EQ(prpc_unary_call_into(ch, &counted_unary, &req, NULL, &rep, NULL),
              GRPC_STATUS_OK);
  atomic_store(&alloc_all, 0);
  atomic_store(&alloc_ours, 0);
  atomic_store(&alloc_msg, 0);
  atomic_store(&counting, 1);
  for (int i = 0; i < CALLS; i++) {
    memset(&rep, 0, sizeof(rep));
    if (prpc_unary_call_into(ch, &counted_unary, &req, NULL, &rep, NULL) !=
        GRPC_STATUS_OK)
      FAIL_AT(__FILE__, __LINE__, "call %d failed", i);
  }
  atomic_store(&counting, 0);
  long all = atomic_load(&alloc_all), own = atomic_load(&alloc_ours);
  long msg = atomic_load(&alloc_msg);
  ASSERT_STREQ(rep.text, "count me");
  fprintf(stderr,
          "%d calls: %ld allocations in the message path, %ld by piperpc's "
          "and nanopb's code, %ld in all (%.1f per call: gRPC core's)\n",
          CALLS, msg, own, all, (double)all / CALLS);
  for (long i = 0; i < own && i < 16; i++) {
    Dl_info info;
    if (dladdr(callers[i], &info) && info.dli_fname)
      fprintf(stderr, "  piperpc allocation from %s+%#lx\n", info.dli_fname,
              (unsigned long)((uintptr_t)callers[i] -
                              (uintptr_t)info.dli_fbase));
  }
  for (long i = 0; i < msg && i < 16; i++) {
    Dl_info info;
    if (dladdr(msg_callers[i], &info) && info.dli_fname)
      fprintf(stderr, "  message-path allocation from %s+%#lx\n", info.dli_fname,
              (unsigned long)((uintptr_t)msg_callers[i] -
                              (uintptr_t)info.dli_fbase));
  }
  ASSERT_EQ(msg, 0);
  ASSERT(own < CALLS / 100); /* not one per call */
  ASSERT(all >= CALLS);      /* the counter sees gRPC core's */

  /* Controls: an allocating encode callback is in the message path (it runs
   * twice per call: to size the message, then to write it); an allocating
   * handler is ours. */
  req.blob.funcs.encode = alloc_encode;
  strcpy(req.text, "alloc");
  atomic_store(&alloc_ours, 0);
  atomic_store(&alloc_msg, 0);
  atomic_store(&counting, 1);
  for (int i = 0; i < CONTROL; i++)
    ASSERT_EQ(prpc_unary_call_into(ch, &counted_unary, &req, NULL, &rep, NULL),
              GRPC_STATUS_OK);
  atomic_store(&counting, 0);
  ASSERT_EQ(atomic_load(&alloc_msg), 2 * CONTROL);
  ASSERT(atomic_load(&alloc_ours) >= 3 * CONTROL);
  teardown();
}

/* ---- a recursive type: pointer fields, nanopb allocates ---- */

static grpc_status_code tree_depth(prpc_ctx *ctx, const test_tree_Node *req,
                                   test_tree_Node *reply, void *ud) {
  int d = 0;
  (void)ctx, (void)ud;
  for (const test_tree_Node *n = req; n->child; n = n->child)
    d++;
  snprintf(reply->name, sizeof(reply->name), "depth %d", d);
  return GRPC_STATUS_OK;
}

/* A chain of `levels` nodes below the first, through `child`. */
static grpc_status_code tree_call(int levels, test_tree_Node *reply,
                                  prpc_status *st) {
  test_tree_Node *nodes = calloc((size_t)levels + 1, sizeof(*nodes));
  ASSERT(nodes);
  for (int i = 0; i < levels; i++)
    nodes[i].child = &nodes[i + 1];
  grpc_status_code c = test__tree__tree_client__depth(ch, &nodes[0], NULL,
                                                      reply, st);
  free(nodes);
  return c;
}

/* Nested up to PRPC_MAX_DEPTH: decoded; deeper, even by a hostile client
 * sending 2 MiB nested 500,000 deep: refused before pb_decode() recurses,
 * and the server goes on. */
static void deep_messages(void) {
  static const Test__Tree__TreeServer impl = {.depth = tree_depth};
  prpc_status st = PRPC_STATUS_INIT;
  test_tree_Node rep = test_tree_Node_init_zero;
  dir = test_tmpdir();
  snprintf(target, sizeof(target), "unix:%s/tree.sock", dir);
  ASSERT_EQ(prpc_server_create(NULL, &srv), 0);
  ASSERT_EQ(prpc_server_add_listener(srv, target, NULL), 0);
  ASSERT_EQ(test__tree__tree_server__register(srv, &impl, NULL), 0);
  ASSERT_EQ(prpc_server_start(srv), 0);
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  ASSERT_EQ(tree_call(100, &rep, &st), GRPC_STATUS_OK);
  ASSERT_STREQ(rep.name, "depth 100");
  prpc_status_clear(&st);
  ASSERT_EQ(tree_call(101, &rep, &st), GRPC_STATUS_INVALID_ARGUMENT);
  ASSERT_STREQ(st.message, "the request message does not decode: it nests "
                           "more than 100 messages deep");
  prpc_status_clear(&st);
  /* 500,000 levels, written from the inside out. */
  size_t levels = 500000, size = 0, inner = 0;
  for (size_t i = 0; i < levels; i++)
    size += 2 + (size >= 0x80) + (size >= 0x4000) + (size >= 0x200000);
  uint8_t *buf = malloc(size), *p = buf + size;
  ASSERT(buf);
  for (size_t i = 0; i < levels; i++) {
    uint8_t v[4];
    size_t n = 0, x = inner;
    do {
      v[n++] = (uint8_t)((x & 0x7f) | (x >= 0x80 ? 0x80 : 0));
      x >>= 7;
    } while (x);
    p -= n;
    memcpy(p, v, n);
    *--p = 0x12;
    inner += 1 + n;
  }
  ASSERT(p == buf);
  prpc_method_desc m = {"/test.tree.Tree/Depth", PRPC_UNARY, &raw_codec, NULL,
                        NULL};
  raw_msg req = {buf, size}, *raw_rep = NULL;
  ASSERT_EQ(prpc_unary_call(ch, &m, &req, NULL, (void **)&raw_rep, &st),
            GRPC_STATUS_INVALID_ARGUMENT);
  ASSERT_CONTAINS(st.message, "it nests more than 100 messages deep");
  prpc_status_clear(&st);
  free(buf);
  memset(&rep, 0, sizeof(rep));
  ASSERT_EQ(tree_call(2, &rep, &st), GRPC_STATUS_OK);
  ASSERT_STREQ(rep.name, "depth 2");
  prpc_status_clear(&st);
  teardown();
}

/* ---- the asynchronous client over nanopb structs ---- */

typedef struct async_state {
  atomic_int done;
  grpc_status_code code;
  char text[64];
  int next, in_order; /* streams: the next value expected */
  int32_t sum;
} async_state;

static void a_unary_done(test_common_Text *reply, const prpc_status *st,
                         void *ud) {
  async_state *a = ud;
  a->code = st->code;
  snprintf(a->text, sizeof(a->text), "%s",
           st->code == GRPC_STATUS_OK && reply ? reply->text
                                               : st->message ? st->message
                                                             : "");
  atomic_store(&a->done, 1);
}

static void a_range_read(prpc_call *call, void *msg, void *ud) {
  async_state *a = ud;
  if (!msg)
    return; /* the end: on_done follows */
  if (((test_common_Number *)msg)->value != a->next++)
    a->in_order = 0;
  ASSERT_EQ(prpc_call_read_async(call), 0);
}

static void a_done(prpc_call *call, void *reply, const prpc_status *st,
                   void *ud) {
  async_state *a = ud;
  (void)call;
  a->code = st->code;
  if (reply)
    a->sum = ((test_common_Number *)reply)->value;
  atomic_store(&a->done, 1);
}

static const prpc_call_callbacks a_range_cb = {.on_read = a_range_read,
                                               .on_done = a_done};
static const prpc_call_callbacks a_sum_cb = {.on_done = a_done};

static void wait_done(async_state *a) {
  double t0 = test_now_ms();
  while (!atomic_load(&a->done) && test_now_ms() - t0 < 10000)
    test_sleep_ms(1);
  ASSERT(atomic_load(&a->done));
}

/* The typed asynchronous wrappers of the nanopb backend: a unary reply
 * decoded into the caller's struct, a server stream read message by
 * message, a client stream and its reply. */
static void async_calls(void) {
  setup();
  test_common_Text req = test_common_Text_init_zero;
  static test_common_Text reply = test_common_Text_init_zero;
  static async_state u, f, r, s;
  strcpy(req.text, "async hello");
  ASSERT_EQ(test__multi__v1__streamer_client__unary_async(
                ch, &req, NULL, &reply, a_unary_done, &u, NULL),
            0);
  wait_done(&u);
  ASSERT_EQ(u.code, GRPC_STATUS_OK);
  ASSERT_STREQ(u.text, "async hello");
  ASSERT_STREQ(reply.text, "async hello");
  strcpy(req.text, "fail");
  ASSERT_EQ(test__multi__v1__streamer_client__unary_async(
                ch, &req, NULL, &reply, a_unary_done, &f, NULL),
            0);
  wait_done(&f);
  ASSERT_EQ(f.code, GRPC_STATUS_FAILED_PRECONDITION);
  ASSERT_STREQ(f.text, "failed on purpose");
  /* No reply struct: refused before anything is sent. */
  ASSERT_EQ(test__multi__v1__streamer_client__unary_async(
                ch, &req, NULL, NULL, a_unary_done, &f, NULL),
            -EINVAL);

  test_multi_v1_RangeRequest rq = test_multi_v1_RangeRequest_init_zero;
  prpc_call *call;
  rq.count = 200;
  r.in_order = 1;
  ASSERT_EQ(test__multi__v1__streamer_client__range_start_async(
                ch, &rq, NULL, &a_range_cb, &r, &call),
            0);
  ASSERT_EQ(prpc_call_read_async(call), 0);
  wait_done(&r);
  ASSERT_EQ(r.code, GRPC_STATUS_OK);
  ASSERT_EQ(r.next, 200);
  ASSERT(r.in_order);

  ASSERT_EQ(test__multi__v1__streamer_client__sum_start_async(
                ch, NULL, &a_sum_cb, &s, &call),
            0);
  for (int i = 1; i <= 100; i++) {
    test_common_Number n = test_common_Number_init_zero;
    n.value = i;
    ASSERT_EQ(test__multi__v1__streamer_client__sum_send(call, &n), 0);
  }
  ASSERT_EQ(prpc_call_close_send(call), 0);
  wait_done(&s);
  ASSERT_EQ(s.code, GRPC_STATUS_OK);
  ASSERT_EQ(s.sum, 5050);
  teardown();
}

TEST_MAIN(CASE(unary_shapes), CASE(callbacks_large), CASE(server_streaming),
          CASE(client_streaming), CASE(bidi_ping_pong),
          CASE(cancel_mid_stream), CASE(deadline), CASE(errors),
          CASE(oversize_request), CASE(oversize_reply),
          CASE(no_alloc_per_call), CASE(deep_messages), CASE(async_calls))
