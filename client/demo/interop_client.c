/* interop_client: the client test cases of gRPC's interop suite
 * (doc/interop-test-descriptions.md) against any grpc.testing.TestService.
 *   interop_client --target ADDR --test_case NAME|all
 * Prints "PASS name" or "FAIL name: reason" per case, then
 * "N passed, N failed"; exits 0 only if every case passed. Built with
 * INTEROP_ASYNC (interop_client_async), the same cases run over the
 * asynchronous client API (interop_async.h). */
#include <stdarg.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/testing/test.prpc.h"

static prpc_channel *ch;
static char why[512];

/* Records why a case failed; returns -1 for "return fail(...)". */
static int fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof(why), fmt, ap);
  va_end(ap);
  return -1;
}

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (!(cond))                                                               \
      return fail(__VA_ARGS__);                                                \
  } while (0)

#define CHECK_CODE(got, want, st)                                              \
  CHECK((got) == (want), "status %s (%s), want %s", prpc_status_name(got),     \
        (st)->message ? (st)->message : "", prpc_status_name(want))

static const prpc_method_desc *method(const prpc_service_desc *svc,
                                      const char *name) {
  size_t n = strlen(name);
  for (size_t i = 0; i < svc->n_methods; i++) {
    const char *p = strrchr(svc->methods[i].path, '/');
    if (p && strncmp(p + 1, name, n) == 0 && p[1 + n] == '\0')
      return &svc->methods[i];
  }
  return NULL;
}
#define TS(name) method(&grpc__testing__test_service__prpc_service, name)

#ifdef INTEROP_ASYNC
#include "interop_async.h"
#endif

static Grpc__Testing__Payload *zeros(int32_t size) {
  static Grpc__Testing__Payload p;
  static uint8_t buf[1 << 20];
  grpc__testing__payload__init(&p);
  p.body.data = buf;
  p.body.len = (size_t)size;
  return &p;
}

static int all_zero(const ProtobufCBinaryData *b, size_t len) {
  if (b->len != len)
    return 0;
  for (size_t i = 0; i < len; i++)
    if (b->data[i])
      return 0;
  return 1;
}

static prpc_call_opts deadline(int64_t ms) {
  prpc_call_opts o = PRPC_CALL_OPTS_INIT;
  o.timeout_ms = ms;
  return o;
}

/* Ends a call and checks its status; the status is released either way. */
static int finish_expect(prpc_call *call, grpc_status_code want) {
  prpc_status st = PRPC_STATUS_INIT;
  grpc_status_code c = prpc_call_finish(call, NULL, &st);
  if (c != want)
    fail("status %s (%s), want %s", prpc_status_name(c),
         st.message ? st.message : "", prpc_status_name(want));
  prpc_status_clear(&st);
  return c == want ? 0 : -1;
}

/* ---- the cases ---- */

static int empty_unary(void) {
  Grpc__Testing__Empty req = GRPC__TESTING__EMPTY__INIT, *rep = NULL;
  prpc_status st = PRPC_STATUS_INIT;
  prpc_call_opts o = deadline(10000);
  grpc_status_code c =
      grpc__testing__test_service_client__empty_call(ch, &req, &o, &rep, &st);
  CHECK_CODE(c, GRPC_STATUS_OK, &st);
  CHECK(protobuf_c_message_get_packed_size(&rep->base) == 0, "not empty");
  protobuf_c_message_free_unpacked(&rep->base, NULL);
  prpc_status_clear(&st);
  return 0;
}

/* Runs UnaryCall(response_size 314159, payload 271828 zeros); checks the
 * reply. With compressed >= 0 the call goes through a call object so that
 * the reply's compression can be checked. */
static int large_unary_with(const char *compression, int expect_compressed,
                            int response_compressed,
                            grpc_status_code want) {
  Grpc__Testing__SimpleRequest req = GRPC__TESTING__SIMPLE_REQUEST__INIT;
  Grpc__Testing__BoolValue ec = GRPC__TESTING__BOOL_VALUE__INIT,
                           rc = GRPC__TESTING__BOOL_VALUE__INIT;
  Grpc__Testing__SimpleResponse *rep = NULL;
  prpc_status st = PRPC_STATUS_INIT;
  prpc_call_opts o = deadline(10000);
  prpc_call *call;
  o.compression = compression;
  req.response_size = 314159;
  req.payload = zeros(271828);
  if (expect_compressed >= 0) {
    ec.value = expect_compressed;
    req.expect_compressed = &ec;
  }
  if (response_compressed >= 0) {
    rc.value = response_compressed;
    req.response_compressed = &rc;
  }
  if (prpc_call_start(ch, TS("UnaryCall"), &req, &o, &call) != 0)
    return fail("cannot start: %s", prpc_last_error());
  int got = prpc_call_read(call, (void **)&rep);
  int was_compressed = got == 1 ? prpc_call_read_compressed(call) : -1;
  grpc_status_code c = prpc_call_finish(call, NULL, &st);
  if (c != want) {
    if (rep)
      protobuf_c_message_free_unpacked(&rep->base, NULL);
    CHECK_CODE(c, want, &st);
  }
  prpc_status_clear(&st);
  if (want != GRPC_STATUS_OK)
    return 0;
  CHECK(got == 1, "no reply");
  int ok = rep->payload && all_zero(&rep->payload->body, 314159);
  protobuf_c_message_free_unpacked(&rep->base, NULL);
  CHECK(ok, "reply payload is not 314159 zero bytes");
  if (response_compressed >= 0 && was_compressed != -ENOTSUP)
    CHECK(was_compressed == response_compressed,
          "reply compressed=%d, asked %d", was_compressed,
          response_compressed);
  return 0;
}

static int large_unary(void) {
  return large_unary_with(NULL, -1, -1, GRPC_STATUS_OK);
}

static int client_compressed_unary(void) {
  /* The probe: a plain request that claims to be compressed is refused. */
  if (large_unary_with(NULL, 1, -1, GRPC_STATUS_INVALID_ARGUMENT))
    return fail("probe: %s", why);
  if (large_unary_with("gzip", 1, -1, GRPC_STATUS_OK))
    return -1;
  return large_unary_with(NULL, 0, -1, GRPC_STATUS_OK);
}

static int server_compressed_unary(void) {
  if (large_unary_with(NULL, -1, 1, GRPC_STATUS_OK))
    return -1;
  return large_unary_with(NULL, -1, 0, GRPC_STATUS_OK);
}

/* Client streaming with the given sizes; flags per message. */
static int input_stream(const int *sizes, const int *expect, const int *plain,
                        size_t n, const char *compression, int32_t want_total,
                        grpc_status_code want) {
  prpc_call *call;
  prpc_status st = PRPC_STATUS_INIT;
  prpc_call_opts o = deadline(10000);
  Grpc__Testing__StreamingInputCallResponse *rep = NULL;
  o.compression = compression;
  if (grpc__testing__test_service_client__streaming_input_call_start(
          ch, &o, &call) != 0)
    return fail("cannot start: %s", prpc_last_error());
  for (size_t i = 0; i < n; i++) {
    Grpc__Testing__StreamingInputCallRequest req =
        GRPC__TESTING__STREAMING_INPUT_CALL_REQUEST__INIT;
    Grpc__Testing__BoolValue ec = GRPC__TESTING__BOOL_VALUE__INIT;
    req.payload = zeros(sizes[i]);
    if (expect) {
      ec.value = expect[i];
      req.expect_compressed = &ec;
    }
    if (prpc_call_write_ex(call, &req,
                           plain && plain[i] ? PRPC_WRITE_NO_COMPRESS : 0))
      break; /* the server ended the call: finish says why */
  }
  grpc_status_code c =
      grpc__testing__test_service_client__streaming_input_call_finish(
          call, &rep, &st);
  if (c != want) {
    if (rep)
      protobuf_c_message_free_unpacked(&rep->base, NULL);
    CHECK_CODE(c, want, &st);
  }
  prpc_status_clear(&st);
  if (want != GRPC_STATUS_OK)
    return 0;
  int32_t total = rep->aggregated_payload_size;
  protobuf_c_message_free_unpacked(&rep->base, NULL);
  CHECK(total == want_total, "aggregated %d, want %d", total, want_total);
  return 0;
}

static int client_streaming(void) {
  static const int sizes[] = {27182, 8, 1828, 45904};
  return input_stream(sizes, NULL, NULL, 4, NULL, 74922, GRPC_STATUS_OK);
}

static int client_compressed_streaming(void) {
  static const int probe[] = {27182}, probe_expect[] = {1};
  static const int sizes[] = {27182, 45904}, expect[] = {1, 0},
                   plain[] = {0, 1};
  if (input_stream(probe, probe_expect, NULL, 1, NULL, 0,
                   GRPC_STATUS_INVALID_ARGUMENT))
    return fail("probe: %s", why);
  return input_stream(sizes, expect, plain, 2, "gzip", 73086, GRPC_STATUS_OK);
}

/* StreamingOutputCall with the given sizes; checks sizes and, where
 * compressed is not NULL, each message's compression. */
static int output_stream(const int *sizes, const int *compressed, size_t n) {
  Grpc__Testing__StreamingOutputCallRequest req =
      GRPC__TESTING__STREAMING_OUTPUT_CALL_REQUEST__INIT;
  Grpc__Testing__ResponseParameters params[8], *pp[8];
  Grpc__Testing__BoolValue bv[8];
  Grpc__Testing__StreamingOutputCallResponse *rep;
  prpc_call *call;
  prpc_call_opts o = deadline(10000);
  size_t got = 0;
  for (size_t i = 0; i < n; i++) {
    grpc__testing__response_parameters__init(&params[i]);
    params[i].size = sizes[i];
    if (compressed) {
      grpc__testing__bool_value__init(&bv[i]);
      bv[i].value = compressed[i];
      params[i].compressed = &bv[i];
    }
    pp[i] = &params[i];
  }
  req.n_response_parameters = n;
  req.response_parameters = pp;
  if (grpc__testing__test_service_client__streaming_output_call_start(
          ch, &req, &o, &call) != 0)
    return fail("cannot start: %s", prpc_last_error());
  while (grpc__testing__test_service_client__streaming_output_call_read(
             call, &rep) == 1) {
    int ok = got < n && rep->payload &&
             all_zero(&rep->payload->body, (size_t)sizes[got]);
    int comp = prpc_call_read_compressed(call);
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    if (!ok) {
      prpc_call_cancel(call);
      prpc_call_finish(call, NULL, NULL);
      return fail("response %zu has the wrong payload", got);
    }
    if (compressed && comp >= 0 && comp != compressed[got]) {
      prpc_call_cancel(call);
      prpc_call_finish(call, NULL, NULL);
      return fail("response %zu compressed=%d, asked %d", got, comp,
                  compressed[got]);
    }
    got++;
  }
  if (finish_expect(call, GRPC_STATUS_OK) != 0)
    return -1;
  CHECK(got == n, "%zu responses, want %zu", got, n);
  return 0;
}

static int server_streaming(void) {
  static const int sizes[] = {31415, 9, 2653, 58979};
  return output_stream(sizes, NULL, 4);
}

static int server_compressed_streaming(void) {
  static const int sizes[] = {31415, 92653}, comp[] = {1, 0};
  return output_stream(sizes, comp, 2);
}

/* One FullDuplexCall request: respond with resp_size, carry payload. */
static Grpc__Testing__StreamingOutputCallRequest *
duplex_req(int32_t resp_size, int32_t payload_size) {
  static Grpc__Testing__StreamingOutputCallRequest req;
  static Grpc__Testing__ResponseParameters p, *pp[1];
  grpc__testing__streaming_output_call_request__init(&req);
  grpc__testing__response_parameters__init(&p);
  p.size = resp_size;
  pp[0] = &p;
  req.n_response_parameters = 1;
  req.response_parameters = pp;
  req.payload = zeros(payload_size);
  return &req;
}

static int ping_pong(void) {
  static const int resp[] = {31415, 9, 2653, 58979};
  static const int pay[] = {27182, 8, 1828, 45904};
  prpc_call *call;
  prpc_status st = PRPC_STATUS_INIT;
  prpc_call_opts o = deadline(10000);
  Grpc__Testing__StreamingOutputCallResponse *rep;
  if (grpc__testing__test_service_client__full_duplex_call_start(ch, &o,
                                                                 &call) != 0)
    return fail("cannot start: %s", prpc_last_error());
  for (int i = 0; i < 4; i++) {
    if (grpc__testing__test_service_client__full_duplex_call_write(
            call, duplex_req(resp[i], pay[i])) != 0 ||
        grpc__testing__test_service_client__full_duplex_call_read(call,
                                                                  &rep) != 1) {
      grpc_status_code c = prpc_call_finish(call, NULL, &st);
      fail("exchange %d ended the call: %s %s", i, prpc_status_name(c),
           st.message ? st.message : "");
      prpc_status_clear(&st);
      return -1;
    }
    int ok = rep->payload && all_zero(&rep->payload->body, (size_t)resp[i]);
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    if (!ok) {
      prpc_call_cancel(call);
      prpc_call_finish(call, NULL, NULL);
      return fail("response %d has the wrong payload", i);
    }
  }
  prpc_call_writes_done(call);
  CHECK(grpc__testing__test_service_client__full_duplex_call_read(call,
                                                                  &rep) == 0,
        "a response after the last one");
  if (finish_expect(call, GRPC_STATUS_OK) != 0)
    return -1;
  return 0;
}

static int empty_stream(void) {
  prpc_call *call;
  prpc_call_opts o = deadline(10000);
  Grpc__Testing__StreamingOutputCallResponse *rep;
  if (grpc__testing__test_service_client__full_duplex_call_start(ch, &o,
                                                                 &call) != 0)
    return fail("cannot start: %s", prpc_last_error());
  prpc_call_writes_done(call);
  int got = grpc__testing__test_service_client__full_duplex_call_read(call,
                                                                      &rep);
  if (got == 1)
    protobuf_c_message_free_unpacked(&rep->base, NULL);
  if (finish_expect(call, GRPC_STATUS_OK) != 0)
    return -1;
  CHECK(got == 0, "the server sent a response");
  return 0;
}

static int cancel_after_begin(void) {
  prpc_call *call;
  prpc_call_opts o = deadline(10000);
  if (grpc__testing__test_service_client__streaming_input_call_start(
          ch, &o, &call) != 0)
    return fail("cannot start: %s", prpc_last_error());
  prpc_call_cancel(call);
  if (finish_expect(call, GRPC_STATUS_CANCELLED) != 0)
    return -1;
  return 0;
}

static int cancel_after_first_response(void) {
  prpc_call *call;
  prpc_call_opts o = deadline(10000);
  Grpc__Testing__StreamingOutputCallResponse *rep;
  if (grpc__testing__test_service_client__full_duplex_call_start(ch, &o,
                                                                 &call) != 0)
    return fail("cannot start: %s", prpc_last_error());
  if (grpc__testing__test_service_client__full_duplex_call_write(
          call, duplex_req(31415, 27182)) != 0 ||
      grpc__testing__test_service_client__full_duplex_call_read(call, &rep) !=
          1) {
    prpc_call_finish(call, NULL, NULL);
    return fail("no first response");
  }
  protobuf_c_message_free_unpacked(&rep->base, NULL);
  prpc_call_cancel(call);
  if (finish_expect(call, GRPC_STATUS_CANCELLED) != 0)
    return -1;
  return 0;
}

static int timeout_on_sleeping_server(void) {
  prpc_call *call;
  prpc_call_opts o = deadline(1);
  if (grpc__testing__test_service_client__full_duplex_call_start(ch, &o,
                                                                 &call) != 0)
    return fail("cannot start: %s", prpc_last_error());
  /* May fail: the deadline can pass before the message goes out. */
  Grpc__Testing__StreamingOutputCallRequest req =
      GRPC__TESTING__STREAMING_OUTPUT_CALL_REQUEST__INIT;
  req.payload = zeros(27182);
  grpc__testing__test_service_client__full_duplex_call_write(call, &req);
  if (finish_expect(call, GRPC_STATUS_DEADLINE_EXCEEDED) != 0)
    return -1;
  return 0;
}

static const char initial_value[] = "test_initial_metadata_value";
static const unsigned char trailing_value[] = {0xab, 0xab, 0xab};

static int check_echoed(const prpc_metadata *headers,
                        const prpc_metadata *trailers) {
  const prpc_md *h = prpc_metadata_get(headers, "x-grpc-test-echo-initial");
  const prpc_md *t =
      prpc_metadata_get(trailers, "x-grpc-test-echo-trailing-bin");
  CHECK(h && strcmp(h->value, initial_value) == 0,
        "initial metadata not echoed");
  CHECK(t && t->value_len == 3 && memcmp(t->value, trailing_value, 3) == 0,
        "trailing metadata not echoed");
  return 0;
}

static int custom_metadata(void) {
  prpc_metadata md = PRPC_METADATA_INIT;
  prpc_call_opts o = deadline(10000);
  prpc_status st = PRPC_STATUS_INIT;
  int rc = 0;
  prpc_metadata_add_str(&md, "x-grpc-test-echo-initial", initial_value);
  prpc_metadata_add(&md, "x-grpc-test-echo-trailing-bin", trailing_value, 3);
  o.metadata = &md;

  Grpc__Testing__SimpleRequest req = GRPC__TESTING__SIMPLE_REQUEST__INIT;
  Grpc__Testing__SimpleResponse *rep = NULL;
  req.response_size = 314159;
  req.payload = zeros(271828);
  grpc_status_code c =
      grpc__testing__test_service_client__unary_call(ch, &req, &o, &rep, &st);
  if (c != GRPC_STATUS_OK)
    rc = fail("unary: %s", prpc_status_name(c));
  else
    rc = check_echoed(&st.headers, &st.trailers);
  if (rep)
    protobuf_c_message_free_unpacked(&rep->base, NULL);
  prpc_status_clear(&st);

  prpc_call *call;
  if (rc == 0 && grpc__testing__test_service_client__full_duplex_call_start(
                     ch, &o, &call) == 0) {
    Grpc__Testing__StreamingOutputCallResponse *r;
    const prpc_metadata *headers;
    grpc__testing__test_service_client__full_duplex_call_write(
        call, duplex_req(314159, 271828));
    int got = grpc__testing__test_service_client__full_duplex_call_read(call,
                                                                        &r);
    if (got == 1)
      protobuf_c_message_free_unpacked(&r->base, NULL);
    int hrc = prpc_call_headers(call, &headers);
    prpc_metadata hcopy = PRPC_METADATA_INIT;
    const prpc_md *h =
        hrc == 0 ? prpc_metadata_get(headers, "x-grpc-test-echo-initial")
                 : NULL;
    if (h)
      prpc_metadata_add(&hcopy, h->key, h->value, h->value_len);
    prpc_call_writes_done(call);
    c = prpc_call_finish(call, NULL, &st);
    if (c != GRPC_STATUS_OK || got != 1)
      rc = fail("full duplex: %s, %d responses", prpc_status_name(c), got);
    else
      rc = check_echoed(&hcopy, &st.trailers);
    prpc_metadata_clear(&hcopy);
    prpc_status_clear(&st);
  }
  prpc_metadata_clear(&md);
  return rc;
}

static int status_with(int code, const char *message, int duplex) {
  Grpc__Testing__EchoStatus es = GRPC__TESTING__ECHO_STATUS__INIT;
  prpc_status st = PRPC_STATUS_INIT;
  prpc_call_opts o = deadline(10000);
  grpc_status_code c;
  es.code = code;
  es.message = (char *)message;
  if (!duplex) {
    Grpc__Testing__SimpleRequest req = GRPC__TESTING__SIMPLE_REQUEST__INIT;
    Grpc__Testing__SimpleResponse *rep = NULL;
    req.response_status = &es;
    c = grpc__testing__test_service_client__unary_call(ch, &req, &o, &rep,
                                                       &st);
    if (rep)
      protobuf_c_message_free_unpacked(&rep->base, NULL);
  } else {
    prpc_call *call;
    Grpc__Testing__StreamingOutputCallRequest req =
        GRPC__TESTING__STREAMING_OUTPUT_CALL_REQUEST__INIT;
    if (grpc__testing__test_service_client__full_duplex_call_start(
            ch, &o, &call) != 0)
      return fail("cannot start: %s", prpc_last_error());
    req.response_status = &es;
    grpc__testing__test_service_client__full_duplex_call_write(call, &req);
    prpc_call_writes_done(call);
    c = prpc_call_finish(call, NULL, &st);
  }
  int ok = c == (grpc_status_code)code && st.message &&
           strcmp(st.message, message) == 0;
  if (!ok)
    fail("%s: got %s \"%s\", want %d \"%s\"", duplex ? "duplex" : "unary",
         prpc_status_name(c), st.message ? st.message : "", code, message);
  prpc_status_clear(&st);
  return ok ? 0 : -1;
}

static int status_code_and_message(void) {
  if (status_with(2, "test status message", 0))
    return -1;
  return status_with(2, "test status message", 1);
}

static int special_status_message(void) {
  return status_with(
      2,
      "\t\ntest with whitespace\r\nand Unicode BMP \xe2\x98\xba and non-BMP "
      "\xf0\x9f\x98\x88\t\n",
      0);
}

static int unimplemented_in(const prpc_service_desc *svc) {
  Grpc__Testing__Empty req = GRPC__TESTING__EMPTY__INIT;
  prpc_status st = PRPC_STATUS_INIT;
  prpc_call_opts o = deadline(10000);
  void *rep = NULL;
  grpc_status_code c = prpc_unary_call(
      ch, method(svc, "UnimplementedCall"), &req, &o, &rep, &st);
  CHECK_CODE(c, GRPC_STATUS_UNIMPLEMENTED, &st);
  prpc_status_clear(&st);
  return 0;
}

static int unimplemented_method(void) {
  return unimplemented_in(&grpc__testing__test_service__prpc_service);
}

static int unimplemented_service(void) {
  return unimplemented_in(&grpc__testing__unimplemented_service__prpc_service);
}

static const struct {
  const char *name;
  int (*fn)(void);
} cases[] = {
    {"empty_unary", empty_unary},
    {"large_unary", large_unary},
    {"client_streaming", client_streaming},
    {"server_streaming", server_streaming},
    {"ping_pong", ping_pong},
    {"empty_stream", empty_stream},
    {"cancel_after_begin", cancel_after_begin},
    {"cancel_after_first_response", cancel_after_first_response},
    {"timeout_on_sleeping_server", timeout_on_sleeping_server},
    {"custom_metadata", custom_metadata},
    {"status_code_and_message", status_code_and_message},
    {"special_status_message", special_status_message},
    {"unimplemented_method", unimplemented_method},
    {"unimplemented_service", unimplemented_service},
    {"client_compressed_unary", client_compressed_unary},
    {"server_compressed_unary", server_compressed_unary},
    {"client_compressed_streaming", client_compressed_streaming},
    {"server_compressed_streaming", server_compressed_streaming},
};

static void usage(void) {
  fprintf(stderr, "usage: interop_client --target ADDR --test_case NAME|all\n"
                  "cases:");
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    fprintf(stderr, " %s", cases[i].name);
  fprintf(stderr, "\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *target = NULL, *test_case = NULL;
  int passed = 0, failed = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--target") == 0 && i + 1 < argc)
      target = argv[++i];
    else if (strcmp(argv[i], "--test_case") == 0 && i + 1 < argc)
      test_case = argv[++i];
    else
      usage();
  }
  if (!target || !test_case)
    usage();
  if (prpc_channel_create(target, NULL, &ch) != 0) {
    fprintf(stderr, "interop_client: %s\n", prpc_last_error());
    return 1;
  }
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    if (strcmp(test_case, "all") != 0 && strcmp(test_case, cases[i].name) != 0)
      continue;
    why[0] = '\0';
    if (cases[i].fn() == 0) {
      printf("PASS %s\n", cases[i].name);
      passed++;
    } else {
      printf("FAIL %s: %s\n", cases[i].name, why);
      failed++;
    }
    fflush(stdout);
  }
  prpc_channel_destroy(ch);
  if (passed + failed == 0)
    usage();
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
