/* Well-known types: tests/proto/wkt.proto imports Empty, Timestamp,
 * Duration, Struct and Any, and prpc_generate() is given that .proto alone
 * (no IMPORT_DIRS for protobuf's, no google/protobuf files in PROTOS): it
 * generates the imports' messages into the target by itself. Client and
 * server exchange all five in one process over a unix socket.
 *
 * Built twice: e2e_wkt (protobuf-c) and e2e_wkt_nanopb (WKT_NANOPB, sizes
 * for Any from tests/proto/nanopb_wkt/google/protobuf/any.options). With
 * nanopb, Struct has no static form (Struct -> Value -> Struct is
 * recursive, and its map and strings are unbounded), so it stays a
 * pb_callback_t: the nanopb client writes its one entry with an encode
 * callback and the server reads it back with a decode callback set in the
 * prepare hook.
 *
 * empty_reply_null: a unary call whose reply is a google.protobuf.Empty
 * takes NULL for the reply (the reply is dropped), both backends. */
#include <stdatomic.h>

#include "test.h"
#include "testutil.h"
#include "wkt.prpc.h"

#ifdef WKT_NANOPB
#include <pb_decode.h>
#include <pb_encode.h>
#endif

static char *dir;
static char target[300];
static prpc_server *srv;
static prpc_channel *ch;
static atomic_int clears;

#define DURATION_URL "type.googleapis.com/google.protobuf.Duration"
#define TIMESTAMP_URL "type.googleapis.com/google.protobuf.Timestamp"

/* One map entry of a Struct, as on the wire: "name": "kv". */
static const uint8_t name_kv[] = {0x0a, 4,    'n', 'a', 'm', 'e',
                                  0x12, 4,    0x1a, 2,  'k', 'v'};

static void add_time(int64_t *s, int32_t *ns, int64_t ds, int32_t dns) {
  *s += ds;
  *ns += dns;
  if (*ns >= 1000000000) {
    *ns -= 1000000000;
    (*s)++;
  }
}

#ifndef WKT_NANOPB
/* ---- protobuf-c ---- */

typedef Test__Wkt__Event Event;

static grpc_status_code shift(prpc_ctx *ctx, const Event *req, Event *reply,
                              void *ud) {
  (void)ud;
  if (!req->at || !req->took || !req->labels || !req->detail)
    return GRPC_STATUS_INVALID_ARGUMENT;
  /* Struct: {"name": "kv"} in, {"name": "kv", "seen": true} out. */
  if (req->labels->n_fields != 1 ||
      strcmp(req->labels->fields[0]->key, "name") != 0 ||
      req->labels->fields[0]->value->kind_case !=
          GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE ||
      strcmp(req->labels->fields[0]->value->string_value, "kv") != 0)
    return GRPC_STATUS_FAILED_PRECONDITION;
  /* Any: a Duration in, unpacked. */
  if (strcmp(req->detail->type_url, DURATION_URL) != 0)
    return GRPC_STATUS_FAILED_PRECONDITION;
  Google__Protobuf__Duration *d = google__protobuf__duration__unpack(
      NULL, req->detail->value.len, req->detail->value.data);
  if (!d)
    return GRPC_STATUS_FAILED_PRECONDITION;
  int64_t extra = d->seconds;
  google__protobuf__duration__free_unpacked(d, NULL);

  Google__Protobuf__Timestamp *at = prpc_ctx_alloc(ctx, sizeof(*at));
  google__protobuf__timestamp__init(at);
  at->seconds = req->at->seconds;
  at->nanos = req->at->nanos;
  add_time(&at->seconds, &at->nanos, req->took->seconds + extra,
           req->took->nanos);
  reply->at = at;

  Google__Protobuf__Struct *labels = prpc_ctx_alloc(ctx, sizeof(*labels));
  Google__Protobuf__Struct__FieldsEntry *e = prpc_ctx_alloc(ctx, 2 * sizeof(*e));
  Google__Protobuf__Value *v = prpc_ctx_alloc(ctx, 2 * sizeof(*v));
  google__protobuf__struct__init(labels);
  for (int i = 0; i < 2; i++) {
    google__protobuf__struct__fields_entry__init(&e[i]);
    google__protobuf__value__init(&v[i]);
    e[i].value = &v[i];
  }
  e[0].key = "name";
  v[0].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
  v[0].string_value = "kv";
  e[1].key = "seen";
  v[1].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
  v[1].bool_value = 1;
  labels->n_fields = 2;
  labels->fields = prpc_ctx_alloc(ctx, 2 * sizeof(*labels->fields));
  labels->fields[0] = &e[0];
  labels->fields[1] = &e[1];
  reply->labels = labels;

  /* Any: the new Timestamp, packed. */
  Google__Protobuf__Any *any = prpc_ctx_alloc(ctx, sizeof(*any));
  google__protobuf__any__init(any);
  any->type_url = TIMESTAMP_URL;
  any->value.len = google__protobuf__timestamp__get_packed_size(at);
  any->value.data = prpc_ctx_alloc(ctx, any->value.len + 1);
  google__protobuf__timestamp__pack(at, any->value.data);
  reply->detail = any;
  return GRPC_STATUS_OK;
}

static void check_shift(void) {
  Google__Protobuf__Timestamp at = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
  Google__Protobuf__Duration took = GOOGLE__PROTOBUF__DURATION__INIT;
  Google__Protobuf__Duration extra = GOOGLE__PROTOBUF__DURATION__INIT;
  Google__Protobuf__Struct labels = GOOGLE__PROTOBUF__STRUCT__INIT;
  Google__Protobuf__Struct__FieldsEntry entry =
      GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
  Google__Protobuf__Struct__FieldsEntry *entries[1] = {&entry};
  Google__Protobuf__Value value = GOOGLE__PROTOBUF__VALUE__INIT;
  Google__Protobuf__Any detail = GOOGLE__PROTOBUF__ANY__INIT;
  Event req = TEST__WKT__EVENT__INIT, *reply;
  uint8_t packed[32];
  prpc_status st = PRPC_STATUS_INIT;

  at.seconds = 1700000000;
  at.nanos = 900000000;
  took.seconds = 5;
  took.nanos = 200000000;
  extra.seconds = 10;
  value.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
  value.string_value = "kv";
  entry.key = "name";
  entry.value = &value;
  labels.n_fields = 1;
  labels.fields = entries;
  /* The entry is the one the nanopb build writes raw. */
  ASSERT_EQ(protobuf_c_message_get_packed_size(&entry.base), sizeof(name_kv));
  ASSERT_EQ(protobuf_c_message_pack(&entry.base, packed), sizeof(name_kv));
  ASSERT(memcmp(packed, name_kv, sizeof(name_kv)) == 0);
  detail.type_url = DURATION_URL;
  detail.value.len = google__protobuf__duration__pack(&extra, packed);
  detail.value.data = packed;
  req.at = &at;
  req.took = &took;
  req.labels = &labels;
  req.detail = &detail;

  ASSERT_EQ(test__wkt__events_client__shift(ch, &req, NULL, &reply, &st),
            GRPC_STATUS_OK);
  ASSERT(reply->at);
  ASSERT_EQ(reply->at->seconds, 1700000016);
  ASSERT_EQ(reply->at->nanos, 100000000);
  ASSERT(reply->labels);
  ASSERT_EQ(reply->labels->n_fields, 2);
  ASSERT_STREQ(reply->labels->fields[1]->key, "seen");
  ASSERT_EQ(reply->labels->fields[1]->value->kind_case,
            GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE);
  ASSERT(reply->labels->fields[1]->value->bool_value);
  ASSERT(reply->detail);
  ASSERT_STREQ(reply->detail->type_url, TIMESTAMP_URL);
  Google__Protobuf__Timestamp *t = google__protobuf__timestamp__unpack(
      NULL, reply->detail->value.len, reply->detail->value.data);
  ASSERT(t);
  ASSERT_EQ(t->seconds, 1700000016);
  ASSERT_EQ(t->nanos, 100000000);
  google__protobuf__timestamp__free_unpacked(t, NULL);
  test__wkt__event__free_unpacked(reply, NULL);
  prpc_status_clear(&st);
}

static void check_clear_null(void) {
  Google__Protobuf__Empty e = GOOGLE__PROTOBUF__EMPTY__INIT, *reply;
  prpc_status st = PRPC_STATUS_INIT;
  int before = atomic_load(&clears);
  /* NULL: the Empty reply is dropped. */
  ASSERT_EQ(test__wkt__events_client__clear(ch, &e, NULL, NULL, &st),
            GRPC_STATUS_OK);
  ASSERT_EQ(atomic_load(&clears), before + 1);
  ASSERT_EQ(test__wkt__events_client__clear(ch, &e, NULL, NULL, NULL),
            GRPC_STATUS_OK);
  /* And with a reply, which is the caller's. */
  ASSERT_EQ(test__wkt__events_client__clear(ch, &e, NULL, &reply, &st),
            GRPC_STATUS_OK);
  ASSERT(reply);
  google__protobuf__empty__free_unpacked(reply, NULL);
  ASSERT_EQ(atomic_load(&clears), before + 3);
  /* A failed call with NULL still gives its status. */
  prpc_server_shutdown(srv);
  prpc_server_wait(srv);
  ASSERT(test__wkt__events_client__clear(ch, &e, NULL, NULL, &st) !=
         GRPC_STATUS_OK);
  prpc_status_clear(&st);
}

static grpc_status_code clear(prpc_ctx *ctx, const Google__Protobuf__Empty *req,
                              Google__Protobuf__Empty *reply, void *ud) {
  (void)ctx, (void)req, (void)reply, (void)ud;
  atomic_fetch_add(&clears, 1);
  return GRPC_STATUS_OK;
}

static const Test__Wkt__EventsServer impl = {shift, clear};

#else
/* ---- nanopb ---- */

typedef test_wkt_Event Event;

/* Struct.fields, one entry written raw: Struct has no static form. */
static bool labels_encode(pb_ostream_t *s, const pb_field_iter_t *f,
                          void *const *arg) {
  (void)arg;
  return pb_encode_tag_for_field(s, f) &&
         pb_encode_string(s, name_kv, sizeof(name_kv));
}

/* Struct.fields on the server: counts the entries equal to name_kv. */
static bool labels_decode(pb_istream_t *s, const pb_field_iter_t *f,
                          void **arg) {
  uint8_t buf[sizeof(name_kv)];
  int *matched = *arg;
  (void)f;
  if (s->bytes_left != sizeof(buf) || !pb_read(s, buf, sizeof(buf)))
    return false;
  if (memcmp(buf, name_kv, sizeof(buf)) == 0)
    (*matched)++;
  return true;
}

static void shift_prepare(prpc_ctx *ctx, Event *req, void *ud) {
  int *matched = prpc_ctx_alloc(ctx, sizeof(int));
  (void)ud;
  *matched = 0;
  req->labels.fields.funcs.decode = labels_decode;
  req->labels.fields.arg = matched;
}

static grpc_status_code shift(prpc_ctx *ctx, const Event *req, Event *reply,
                              void *ud) {
  google_protobuf_Duration d = google_protobuf_Duration_init_zero;
  (void)ud;
  if (!req->has_at || !req->has_took || !req->has_labels || !req->has_detail)
    return GRPC_STATUS_INVALID_ARGUMENT;
  if (*(int *)req->labels.fields.arg != 1)
    return GRPC_STATUS_FAILED_PRECONDITION;
  if (strcmp(req->detail.type_url, DURATION_URL) != 0)
    return GRPC_STATUS_FAILED_PRECONDITION;
  pb_istream_t is =
      pb_istream_from_buffer(req->detail.value.bytes, req->detail.value.size);
  if (!pb_decode(&is, google_protobuf_Duration_fields, &d))
    return GRPC_STATUS_FAILED_PRECONDITION;
  (void)ctx;
  reply->has_at = true;
  reply->at = req->at;
  add_time(&reply->at.seconds, &reply->at.nanos, req->took.seconds + d.seconds,
           req->took.nanos);
  reply->has_labels = true; /* empty: its callback is not set */
  reply->has_detail = true;
  strcpy(reply->detail.type_url, TIMESTAMP_URL);
  pb_ostream_t os = pb_ostream_from_buffer(reply->detail.value.bytes,
                                           sizeof(reply->detail.value.bytes));
  if (!pb_encode(&os, google_protobuf_Timestamp_fields, &reply->at))
    return GRPC_STATUS_INTERNAL;
  reply->detail.value.size = (pb_size_t)os.bytes_written;
  return GRPC_STATUS_OK;
}

static void check_shift(void) {
  Event req = test_wkt_Event_init_zero, reply = test_wkt_Event_init_zero;
  google_protobuf_Duration extra = google_protobuf_Duration_init_zero;
  prpc_status st = PRPC_STATUS_INIT;
  req.has_at = true;
  req.at.seconds = 1700000000;
  req.at.nanos = 900000000;
  req.has_took = true;
  req.took.seconds = 5;
  req.took.nanos = 200000000;
  req.has_labels = true;
  req.labels.fields.funcs.encode = labels_encode;
  req.has_detail = true;
  strcpy(req.detail.type_url, DURATION_URL);
  extra.seconds = 10;
  pb_ostream_t os = pb_ostream_from_buffer(req.detail.value.bytes,
                                           sizeof(req.detail.value.bytes));
  ASSERT(pb_encode(&os, google_protobuf_Duration_fields, &extra));
  req.detail.value.size = (pb_size_t)os.bytes_written;

  ASSERT_EQ(test__wkt__events_client__shift(ch, &req, NULL, &reply, &st),
            GRPC_STATUS_OK);
  ASSERT(reply.has_at);
  ASSERT_EQ(reply.at.seconds, 1700000016);
  ASSERT_EQ(reply.at.nanos, 100000000);
  ASSERT(reply.has_labels);
  ASSERT(reply.has_detail);
  ASSERT_STREQ(reply.detail.type_url, TIMESTAMP_URL);
  google_protobuf_Timestamp t = google_protobuf_Timestamp_init_zero;
  pb_istream_t is =
      pb_istream_from_buffer(reply.detail.value.bytes, reply.detail.value.size);
  ASSERT(pb_decode(&is, google_protobuf_Timestamp_fields, &t));
  ASSERT_EQ(t.seconds, 1700000016);
  ASSERT_EQ(t.nanos, 100000000);
  prpc_status_clear(&st);
}

static void check_clear_null(void) {
  google_protobuf_Empty e = google_protobuf_Empty_init_zero, reply;
  prpc_status st = PRPC_STATUS_INIT;
  int before = atomic_load(&clears);
  /* NULL: the Empty reply is dropped. */
  ASSERT_EQ(test__wkt__events_client__clear(ch, &e, NULL, NULL, &st),
            GRPC_STATUS_OK);
  ASSERT_EQ(atomic_load(&clears), before + 1);
  ASSERT_EQ(test__wkt__events_client__clear(ch, &e, NULL, NULL, NULL),
            GRPC_STATUS_OK);
  ASSERT_EQ(test__wkt__events_client__clear(ch, &e, NULL, &reply, &st),
            GRPC_STATUS_OK);
  ASSERT_EQ(atomic_load(&clears), before + 3);
  prpc_server_shutdown(srv);
  prpc_server_wait(srv);
  ASSERT(test__wkt__events_client__clear(ch, &e, NULL, NULL, &st) !=
         GRPC_STATUS_OK);
  prpc_status_clear(&st);
}

static grpc_status_code clear(prpc_ctx *ctx, const google_protobuf_Empty *req,
                              google_protobuf_Empty *reply, void *ud) {
  (void)ctx, (void)req, (void)reply, (void)ud;
  atomic_fetch_add(&clears, 1);
  return GRPC_STATUS_OK;
}

static const Test__Wkt__EventsServer impl = {
    .shift = shift, .clear = clear, .shift_prepare = shift_prepare};
#endif

static void start(void) {
  dir = test_tmpdir();
  snprintf(target, sizeof(target), "unix:%s/wkt.sock", dir);
  ASSERT_EQ(prpc_server_create(NULL, &srv), 0);
  ASSERT_EQ(prpc_server_add_listener(srv, target, NULL), 0);
  ASSERT_EQ(test__wkt__events_server__register(srv, &impl, NULL), 0);
  ASSERT_EQ(prpc_server_start(srv), 0);
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
}

static void stop(void) {
  prpc_channel_destroy(ch);
  prpc_server_destroy(srv);
  test_rmdir(dir);
}

/* Empty, Timestamp, Duration, Struct and Any, there and back. */
static void all_five(void) {
  start();
  check_shift();
  stop();
}

/* An Empty reply: NULL for the reply pointer. */
static void empty_reply_null(void) {
  start();
  check_clear_null();
  stop();
}

TEST_MAIN(CASE(all_five), CASE(empty_reply_null))
