/* The built-in reflection service, called through stubs generated from the
 * standard grpc.reflection.v1 and v1alpha protos (the test's own copy of the
 * client), over a unix socket. The descriptors that come back are decoded
 * with protobuf-c's descriptor.proto, as any reflection client would. */
#include <errno.h>
#include <pthread.h>

#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/reflection/v1/reflection.prpc.h"
#include "grpc/reflection/v1alpha/reflection.prpc.h"
#include "helloworld.prpc.h"
#include "multi.prpc.h"
#include "nopkg.prpc.h"
#include "test.h"
#include "testutil.h"

typedef Grpc__Reflection__V1__ServerReflectionRequest Req;
typedef Grpc__Reflection__V1__ServerReflectionResponse Resp;
typedef Google__Protobuf__FileDescriptorProto FileProto;

enum {
  R_FILES =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE,
  R_NUMBERS =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE,
  R_LIST =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE,
  R_ERROR =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE,
};

/* No handler is called: reflection only reads the tables. */
static const Helloworld__GreeterServer greeter = {NULL};
static const Test__Multi__V1__StreamerServer streamer = {NULL, NULL, NULL,
                                                         NULL, NULL};
static const Test__Multi__V1__HTTPAdminServer admin = {NULL, NULL};
static const PlainServer plain = {NULL};
static const EmptyServer empty = {0};

static char *dir;
static char target[300];

static const char *const all_services[] = {
    "helloworld.Greeter",
    "test.multi.v1.Streamer",
    "test.multi.v1.HTTPAdmin",
    "Plain",
    "Empty",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
};

static prpc_server *start(void) {
  prpc_server *srv;
  dir = test_tmpdir();
  snprintf(target, sizeof(target), "unix:%s/r.sock", dir);
  ASSERT_EQ(prpc_server_create(NULL, &srv), 0);
  ASSERT_EQ(prpc_server_add_listener(srv, target, NULL), 0);
  ASSERT_EQ(helloworld__greeter_server__register(srv, &greeter, NULL), 0);
  ASSERT_EQ(test__multi__v1__streamer_server__register(srv, &streamer, NULL),
            0);
  ASSERT_EQ(test__multi__v1__httpadmin_server__register(srv, &admin, NULL),
            0);
  ASSERT_EQ(plain_server__register(srv, &plain, NULL), 0);
  ASSERT_EQ(empty_server__register(srv, &empty, NULL), 0);
  ASSERT_EQ(prpc_server_enable_health(srv), 0);
  ASSERT_EQ(prpc_server_enable_reflection(srv), 0);
  ASSERT_EQ(prpc_server_enable_reflection(srv), PRPC_EEXIST);
  ASSERT_EQ(prpc_server_start(srv), 0);
  ASSERT_EQ(prpc_server_enable_reflection(srv), PRPC_ESTATE);
  return srv;
}

static void stop(prpc_server *srv) {
  prpc_server_shutdown(srv);
  ASSERT_EQ(prpc_server_wait(srv), 0);
  prpc_server_destroy(srv);
  test_rmdir(dir);
}

static prpc_call *open_v1(prpc_channel *ch) {
  prpc_call *call;
  prpc_call_opts opts = PRPC_CALL_OPTS_INIT;
  opts.timeout_ms = 20000;
  ASSERT_EQ(grpc__reflection__v1__server_reflection_client__server_reflection_info_start(
                ch, &opts, &call),
            0);
  return call;
}

static void close_call(prpc_call *call) {
  Resp *extra = NULL;
  prpc_status st = PRPC_STATUS_INIT;
  ASSERT_EQ(prpc_call_writes_done(call), 0);
  ASSERT_EQ(grpc__reflection__v1__server_reflection_client__server_reflection_info_read(
                call, &extra),
            0); /* nothing more */
  ASSERT_EQ(prpc_call_finish(call, NULL, &st), GRPC_STATUS_OK);
  prpc_status_clear(&st);
}

/* Sends one request on a v1 stream and reads its answer (caller frees). */
static Resp *ask(prpc_call *call, const Req *req) {
  Resp *resp = NULL;
  ASSERT_EQ(grpc__reflection__v1__server_reflection_client__server_reflection_info_write(
                call, req),
            0);
  ASSERT_EQ(grpc__reflection__v1__server_reflection_client__server_reflection_info_read(
                call, &resp),
            1);
  ASSERT(resp != NULL);
  /* The request comes back in original_request. */
  ASSERT(resp->original_request != NULL);
  ASSERT_EQ(resp->original_request->message_request_case,
            req->message_request_case);
  return resp;
}

static Resp *ask_symbol(prpc_call *call, const char *symbol) {
  Req req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
  req.message_request_case =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
  req.file_containing_symbol = (char *)symbol;
  return ask(call, &req);
}

static Resp *ask_file(prpc_call *call, const char *name) {
  Req req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
  req.message_request_case =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME;
  req.file_by_filename = (char *)name;
  return ask(call, &req);
}

static FileProto *decode(const ProtobufCBinaryData *b) {
  FileProto *f =
      google__protobuf__file_descriptor_proto__unpack(NULL, b->len, b->data);
  ASSERT(f != NULL);
  return f;
}

/* The names of the files in a file_descriptor_response, comma-separated. */
static void file_names(const Resp *r, char *out, size_t cap) {
  ASSERT_EQ(r->message_response_case, R_FILES);
  out[0] = '\0';
  for (size_t i = 0; i < r->file_descriptor_response->n_file_descriptor_proto;
       i++) {
    FileProto *f = decode(&r->file_descriptor_response->file_descriptor_proto[i]);
    snprintf(out + strlen(out), cap - strlen(out), "%s%s", i ? "," : "",
             f->name);
    google__protobuf__file_descriptor_proto__free_unpacked(f, NULL);
  }
}

/* The file a symbol lives in, on a fresh stream (so no file is left out). */
static void expect_symbol(prpc_channel *ch, const char *symbol,
                          const char *files) {
  char got[300];
  prpc_call *call = open_v1(ch);
  Resp *r = ask_symbol(call, symbol);
  if ((int)r->message_response_case != R_FILES)
    FAIL_AT(__FILE__, __LINE__, "%s: no file (%s)", symbol,
            (int)r->message_response_case == R_ERROR
                ? r->error_response->error_message
                : "?");
  file_names(r, got, sizeof(got));
  if (strcmp(got, files) != 0)
    FAIL_AT(__FILE__, __LINE__, "%s: files %s, want %s", symbol, got, files);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  close_call(call);
}

static void expect_not_found(const Resp *r, const char *name) {
  ASSERT_EQ(r->message_response_case, R_ERROR);
  ASSERT_EQ(r->error_response->error_code, GRPC_STATUS_NOT_FOUND);
  ASSERT_CONTAINS(r->error_response->error_message, name);
}

static void list_services(void) {
  prpc_server *srv = start();
  prpc_channel *ch;
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  prpc_call *call = open_v1(ch);
  Req req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
  req.message_request_case =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
  req.list_services = "*";
  req.host = "localhost";
  Resp *r = ask(call, &req);
  ASSERT_EQ(r->message_response_case, R_LIST);
  ASSERT_STREQ(r->valid_host, "localhost");
  ASSERT_STREQ(r->original_request->list_services, "*");
  size_t n = sizeof(all_services) / sizeof(all_services[0]);
  ASSERT_EQ(r->list_services_response->n_service, n);
  for (size_t i = 0; i < n; i++)
    ASSERT_STREQ(r->list_services_response->service[i]->name,
                 all_services[i]);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  /* The same stream answers again. */
  r = ask(call, &req);
  ASSERT_EQ(r->list_services_response->n_service, n);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  close_call(call);
  prpc_channel_destroy(ch);
  stop(srv);
}

static void file_by_filename(void) {
  prpc_server *srv = start();
  prpc_channel *ch;
  char names[300];
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  prpc_call *call = open_v1(ch);

  /* The file and, after it, its import (not yet sent on this stream). */
  Resp *r = ask_file(call, "multi.proto");
  file_names(r, names, sizeof(names));
  ASSERT_STREQ(names, "multi.proto,common/types.proto");
  const ProtobufCBinaryData *b =
      &r->file_descriptor_response->file_descriptor_proto[0];
  /* Exactly the bytes the generator embedded. */
  const prpc_file_desc *fd = test__multi__v1__streamer__prpc_service.file;
  ASSERT(fd != NULL);
  ASSERT_STREQ(fd->name, "multi.proto");
  ASSERT_EQ(b->len, fd->len);
  ASSERT(memcmp(b->data, fd->data, fd->len) == 0);
  ASSERT_EQ(fd->n_deps, 1);
  ASSERT_STREQ(fd->deps[0]->name, "common/types.proto");

  FileProto *f = decode(b);
  ASSERT_STREQ(f->package, "test.multi.v1");
  ASSERT(f->source_code_info == NULL); /* stripped by the generator */
  ASSERT_EQ(f->n_dependency, 1);
  ASSERT_STREQ(f->dependency[0], "common/types.proto");
  ASSERT_EQ(f->n_service, 2);
  const Google__Protobuf__ServiceDescriptorProto *s = f->service[0];
  ASSERT_STREQ(s->name, "Streamer");
  ASSERT_EQ(s->n_method, 5);
  static const struct {
    const char *name, *in, *out;
    int cs, ss;
  } want[5] = {
      {"Unary", ".test.common.Text", ".test.common.Text", 0, 0},
      {"Range", ".test.multi.v1.RangeRequest", ".test.common.Number", 0, 1},
      {"Sum", ".test.common.Number", ".test.common.Number", 1, 0},
      {"Echo", ".test.common.Text", ".test.common.Text", 1, 1},
      {"NestedType", ".test.multi.v1.RangeRequest.Options",
       ".test.multi.v1.RangeRequest.Options", 0, 0},
  };
  for (size_t i = 0; i < 5; i++) {
    const Google__Protobuf__MethodDescriptorProto *m = s->method[i];
    ASSERT_STREQ(m->name, want[i].name);
    ASSERT_STREQ(m->input_type, want[i].in);
    ASSERT_STREQ(m->output_type, want[i].out);
    ASSERT_EQ(m->has_client_streaming && m->client_streaming, want[i].cs);
    ASSERT_EQ(m->has_server_streaming && m->server_streaming, want[i].ss);
  }
  ASSERT_STREQ(f->service[1]->name, "HTTPAdmin");
  ASSERT_STREQ(f->service[1]->method[1]->name, "get_raw_value");
  ASSERT_EQ(f->n_message_type, 1);
  ASSERT_STREQ(f->message_type[0]->name, "RangeRequest");
  ASSERT_STREQ(f->message_type[0]->nested_type[0]->name, "Options");
  google__protobuf__file_descriptor_proto__free_unpacked(f, NULL);

  f = decode(&r->file_descriptor_response->file_descriptor_proto[1]);
  ASSERT_STREQ(f->package, "test.common");
  ASSERT_EQ(f->n_message_type, 2);
  ASSERT_STREQ(f->message_type[0]->name, "Number");
  ASSERT_STREQ(f->message_type[1]->name, "Text");
  google__protobuf__file_descriptor_proto__free_unpacked(f, NULL);
  protobuf_c_message_free_unpacked(&r->base, NULL);

  /* Again on the same stream: the import was sent already. */
  r = ask_file(call, "multi.proto");
  file_names(r, names, sizeof(names));
  ASSERT_STREQ(names, "multi.proto");
  protobuf_c_message_free_unpacked(&r->base, NULL);
  /* A message-only file, reachable because a service's file imports it;
   * asked for by name it comes back even though it was sent. */
  r = ask_file(call, "common/types.proto");
  file_names(r, names, sizeof(names));
  ASSERT_STREQ(names, "common/types.proto");
  protobuf_c_message_free_unpacked(&r->base, NULL);
  r = ask_file(call, "helloworld.proto");
  file_names(r, names, sizeof(names));
  ASSERT_STREQ(names, "helloworld.proto");
  f = decode(&r->file_descriptor_response->file_descriptor_proto[0]);
  ASSERT_STREQ(f->service[0]->name, "Greeter");
  ASSERT_STREQ(f->service[0]->method[0]->name, "SayHello");
  ASSERT_STREQ(f->service[0]->method[0]->input_type,
               ".helloworld.HelloRequest");
  ASSERT_STREQ(f->service[0]->method[0]->output_type,
               ".helloworld.HelloReply");
  google__protobuf__file_descriptor_proto__free_unpacked(f, NULL);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  /* The built-in services describe themselves. */
  r = ask_file(call, "grpc/reflection/v1alpha/reflection.proto");
  file_names(r, names, sizeof(names));
  ASSERT_STREQ(names, "grpc/reflection/v1alpha/reflection.proto");
  protobuf_c_message_free_unpacked(&r->base, NULL);
  r = ask_file(call, "grpc/health/v1/health.proto");
  file_names(r, names, sizeof(names));
  ASSERT_STREQ(names, "grpc/health/v1/health.proto");
  protobuf_c_message_free_unpacked(&r->base, NULL);

  /* Unknown: an error response, and the stream goes on. */
  r = ask_file(call, "no/such.proto");
  expect_not_found(r, "no/such.proto");
  protobuf_c_message_free_unpacked(&r->base, NULL);
  r = ask_file(call, "");
  expect_not_found(r, "file not found");
  protobuf_c_message_free_unpacked(&r->base, NULL);
  r = ask_file(call, "helloworld.proto");
  file_names(r, names, sizeof(names));
  ASSERT_STREQ(names, "helloworld.proto");
  protobuf_c_message_free_unpacked(&r->base, NULL);
  close_call(call);
  prpc_channel_destroy(ch);
  stop(srv);
}

static void symbols(void) {
  prpc_server *srv = start();
  prpc_channel *ch;
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  const char *both = "multi.proto,common/types.proto";
  expect_symbol(ch, "test.multi.v1.Streamer", both);            /* service */
  expect_symbol(ch, "test.multi.v1.Streamer.Range", both);      /* method */
  expect_symbol(ch, "test.multi.v1.HTTPAdmin.get_raw_value", both);
  expect_symbol(ch, "test.multi.v1.RangeRequest", both);        /* message */
  expect_symbol(ch, "test.multi.v1.RangeRequest.Options", both); /* nested */
  expect_symbol(ch, "test.multi.v1.RangeRequest.Mode", both);   /* enum */
  expect_symbol(ch, "test.multi.v1.RangeRequest.MODE_FAST", both); /* value */
  expect_symbol(ch, "test.multi.v1.RangeRequest.count", both);  /* field */
  expect_symbol(ch, ".test.multi.v1.RangeRequest", both); /* leading dot */
  expect_symbol(ch, "test.common.Number", "common/types.proto");
  expect_symbol(ch, "test.common.Color", "common/types.proto");
  expect_symbol(ch, "test.common.COLOR_RED", "common/types.proto");
  expect_symbol(ch, "helloworld.Greeter", "helloworld.proto");
  expect_symbol(ch, "helloworld.Greeter.SayHello", "helloworld.proto");
  expect_symbol(ch, "helloworld.HelloReply", "helloworld.proto");
  expect_symbol(ch, "Plain", "nopkg.proto"); /* no package */
  expect_symbol(ch, "Empty", "nopkg.proto");
  expect_symbol(ch, "Ping", "nopkg.proto");
  expect_symbol(ch, "grpc.health.v1.Health.Watch",
                "grpc/health/v1/health.proto");
  expect_symbol(ch, "grpc.health.v1.HealthCheckResponse.ServingStatus",
                "grpc/health/v1/health.proto");
  expect_symbol(ch, "grpc.reflection.v1.ServerReflection",
                "grpc/reflection/v1/reflection.proto");
  expect_symbol(ch, "grpc.reflection.v1alpha.ServerReflection",
                "grpc/reflection/v1alpha/reflection.proto");

  prpc_call *call = open_v1(ch);
  static const char *const unknown[] = {
      "no.Such", "test.multi.v1", "test.multi.v1.Streamer.Nope",
      "test.multi.v1.RangeRequest.Options.Deeper", "test", "", "."};
  for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
    Resp *r = ask_symbol(call, unknown[i]);
    expect_not_found(r, "symbol not found");
    ASSERT_CONTAINS(r->error_response->error_message, unknown[i]);
    protobuf_c_message_free_unpacked(&r->base, NULL);
  }
  close_call(call);
  prpc_channel_destroy(ch);
  stop(srv);
}

static Resp *ask_extension(prpc_call *call, const char *type, int number) {
  Req req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
  Grpc__Reflection__V1__ExtensionRequest e =
      GRPC__REFLECTION__V1__EXTENSION_REQUEST__INIT;
  e.containing_type = (char *)type;
  e.extension_number = number;
  req.message_request_case =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION;
  req.file_containing_extension = &e;
  return ask(call, &req);
}

static Resp *ask_numbers(prpc_call *call, const char *type) {
  Req req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
  req.message_request_case =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE;
  req.all_extension_numbers_of_type = (char *)type;
  return ask(call, &req);
}

static void extensions(void) {
  prpc_server *srv = start();
  prpc_channel *ch;
  char names[300];
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  prpc_call *call = open_v1(ch);
  /* extend Ping at file level (100) and inside Pong (101). */
  Resp *r = ask_extension(call, "Ping", 100);
  file_names(r, names, sizeof(names));
  ASSERT_STREQ(names, "nopkg.proto");
  protobuf_c_message_free_unpacked(&r->base, NULL);
  r = ask_extension(call, ".Ping", 101);
  file_names(r, names, sizeof(names));
  ASSERT_STREQ(names, "nopkg.proto");
  protobuf_c_message_free_unpacked(&r->base, NULL);
  r = ask_extension(call, "Ping", 150);
  expect_not_found(r, "extension not found: Ping(150)");
  protobuf_c_message_free_unpacked(&r->base, NULL);
  r = ask_extension(call, "Pong", 100);
  expect_not_found(r, "extension not found: Pong(100)");
  protobuf_c_message_free_unpacked(&r->base, NULL);
  r = ask_extension(call, "no.Such", 1);
  expect_not_found(r, "no.Such");
  protobuf_c_message_free_unpacked(&r->base, NULL);
  /* The extension's own name is a symbol too. */
  r = ask_symbol(call, "Pong.tag");
  file_names(r, names, sizeof(names));
  ASSERT_STREQ(names, "nopkg.proto");
  protobuf_c_message_free_unpacked(&r->base, NULL);
  r = ask_symbol(call, "priority");
  file_names(r, names, sizeof(names));
  ASSERT_STREQ(names, "nopkg.proto");
  protobuf_c_message_free_unpacked(&r->base, NULL);

  r = ask_numbers(call, "Ping");
  ASSERT_EQ(r->message_response_case, R_NUMBERS);
  ASSERT_STREQ(r->all_extension_numbers_response->base_type_name, "Ping");
  ASSERT_EQ(r->all_extension_numbers_response->n_extension_number, 2);
  int32_t a = r->all_extension_numbers_response->extension_number[0];
  int32_t b = r->all_extension_numbers_response->extension_number[1];
  ASSERT((a == 100 && b == 101) || (a == 101 && b == 100));
  protobuf_c_message_free_unpacked(&r->base, NULL);
  r = ask_numbers(call, "test.multi.v1.RangeRequest"); /* none */
  ASSERT_EQ(r->message_response_case, R_NUMBERS);
  ASSERT_STREQ(r->all_extension_numbers_response->base_type_name,
               "test.multi.v1.RangeRequest");
  ASSERT_EQ(r->all_extension_numbers_response->n_extension_number, 0);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  r = ask_numbers(call, "no.Such");
  expect_not_found(r, "type not found: no.Such");
  protobuf_c_message_free_unpacked(&r->base, NULL);
  r = ask_numbers(call, "test.multi.v1.Streamer"); /* not a message */
  expect_not_found(r, "test.multi.v1.Streamer");
  protobuf_c_message_free_unpacked(&r->base, NULL);
  close_call(call);
  prpc_channel_destroy(ch);
  stop(srv);
}

/* The same service under grpc.reflection.v1alpha. */
static void v1alpha(void) {
  typedef Grpc__Reflection__V1alpha__ServerReflectionRequest AReq;
  typedef Grpc__Reflection__V1alpha__ServerReflectionResponse AResp;
  prpc_server *srv = start();
  prpc_channel *ch;
  prpc_call *call;
  AResp *r = NULL;
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  ASSERT_EQ(grpc__reflection__v1alpha__server_reflection_client__server_reflection_info_start(
                ch, NULL, &call),
            0);
  AReq req = GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__INIT;
  req.message_request_case =
      GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
  req.list_services = "";
  ASSERT_EQ(grpc__reflection__v1alpha__server_reflection_client__server_reflection_info_write(
                call, &req),
            0);
  ASSERT_EQ(grpc__reflection__v1alpha__server_reflection_client__server_reflection_info_read(
                call, &r),
            1);
  ASSERT_EQ(r->message_response_case,
            GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE);
  ASSERT_EQ(r->list_services_response->n_service,
            sizeof(all_services) / sizeof(all_services[0]));
  ASSERT_STREQ(r->list_services_response->service[0]->name,
               "helloworld.Greeter");
  protobuf_c_message_free_unpacked(&r->base, NULL);

  req.message_request_case =
      GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
  req.file_containing_symbol = "helloworld.HelloRequest";
  ASSERT_EQ(grpc__reflection__v1alpha__server_reflection_client__server_reflection_info_write(
                call, &req),
            0);
  ASSERT_EQ(grpc__reflection__v1alpha__server_reflection_client__server_reflection_info_read(
                call, &r),
            1);
  ASSERT_EQ(r->message_response_case,
            GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE);
  ASSERT_EQ(r->file_descriptor_response->n_file_descriptor_proto, 1);
  FileProto *f = decode(&r->file_descriptor_response->file_descriptor_proto[0]);
  ASSERT_STREQ(f->name, "helloworld.proto");
  ASSERT_STREQ(f->message_type[0]->name, "HelloRequest");
  google__protobuf__file_descriptor_proto__free_unpacked(f, NULL);
  protobuf_c_message_free_unpacked(&r->base, NULL);

  req.file_containing_symbol = "helloworld.Nope";
  ASSERT_EQ(grpc__reflection__v1alpha__server_reflection_client__server_reflection_info_write(
                call, &req),
            0);
  ASSERT_EQ(grpc__reflection__v1alpha__server_reflection_client__server_reflection_info_read(
                call, &r),
            1);
  ASSERT_EQ(r->message_response_case,
            GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE);
  ASSERT_EQ(r->error_response->error_code, GRPC_STATUS_NOT_FOUND);
  ASSERT_STREQ(r->error_response->error_message,
               "symbol not found: helloworld.Nope");
  protobuf_c_message_free_unpacked(&r->base, NULL);
  ASSERT_EQ(prpc_call_writes_done(call), 0);
  ASSERT_EQ(prpc_call_finish(call, NULL, NULL), GRPC_STATUS_OK);
  prpc_channel_destroy(ch);
  stop(srv);
}

/* A request with nothing set gets an error response, a request that does
 * not decode ends the call with INVALID_ARGUMENT, and the server goes on. */
static void bad_requests(void) {
  prpc_server *srv = start();
  prpc_channel *ch;
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  prpc_call *call = open_v1(ch);
  Req empty_req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
  Resp *r = ask(call, &empty_req);
  ASSERT_EQ(r->message_response_case, R_ERROR);
  ASSERT_EQ(r->error_response->error_code, GRPC_STATUS_INVALID_ARGUMENT);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  r = ask_symbol(call, "helloworld.Greeter");
  ASSERT_EQ(r->message_response_case, R_FILES);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  /* A long name of two-byte characters: quoted in part, still UTF-8. */
  char long_name[601];
  for (int i = 0; i < 300; i++)
    memcpy(long_name + 2 * i, "\xc3\xa9", 2); /* U+00E9 */
  long_name[600] = '\0';
  r = ask_symbol(call, long_name);
  expect_not_found(r, "symbol not found: \xc3\xa9");
  const char *msg = r->error_response->error_message;
  size_t quoted = strlen(msg) - strlen("symbol not found: ");
  ASSERT(quoted <= 200 && quoted >= 198 && quoted % 2 == 0);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  close_call(call);

  /* Garbage bytes on the wire: field 3 (a string) with a length past the
   * end. Sent through a method table whose request is raw bytes. */
  static const prpc_method_desc raw = {
      "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
      PRPC_BIDI_STREAMING, &prpc_codec_protobuf_c,
      &google__protobuf__field_descriptor_proto__descriptor,
      &google__protobuf__field_descriptor_proto__descriptor};
  Google__Protobuf__FieldDescriptorProto bad =
      GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__INIT;
  /* FieldDescriptorProto.number (3) as a varint: in a reflection request
   * field 3 is a string, so the wire type does not fit. */
  bad.has_number = 1;
  bad.number = 7;
  prpc_status st = PRPC_STATUS_INIT;
  ASSERT_EQ(prpc_call_start(ch, &raw, NULL, NULL, &call), 0);
  ASSERT_EQ(prpc_call_write(call, &bad), 0);
  prpc_call_writes_done(call);
  void *m = NULL;
  ASSERT(prpc_call_read(call, &m) != 1);
  ASSERT_EQ(prpc_call_finish(call, NULL, &st), GRPC_STATUS_INVALID_ARGUMENT);
  prpc_status_clear(&st);
  expect_symbol(ch, "helloworld.Greeter", "helloworld.proto");
  prpc_channel_destroy(ch);
  stop(srv);
}

/* A hand-written table (no descriptor): listed, but no file for it. And a
 * server without reflection answers UNIMPLEMENTED. */
static void without_descriptors(void) {
  static const prpc_method_desc methods[1] = {
      {"/hand.Made/Do", PRPC_UNARY, &prpc_codec_protobuf_c,
       &helloworld__hello_request__descriptor,
       &helloworld__hello_reply__descriptor}};
  static const prpc_service_desc hand = {"hand.Made", 1, methods, NULL};
  /* A hand-made file whose bytes are not a FileDescriptorProto (field 1
   * claims 100 bytes): served by name as it is, but no symbol from it. */
  static const uint8_t junk[] = {0x0a, 0x64, 'x'};
  static const prpc_file_desc junk_file = {"junk.proto", junk, sizeof(junk),
                                           0, NULL};
  static const prpc_method_desc junk_methods[1] = {
      {"/junk.Svc/Do", PRPC_UNARY, &prpc_codec_protobuf_c,
       &helloworld__hello_request__descriptor,
       &helloworld__hello_reply__descriptor}};
  static const prpc_service_desc junk_svc = {"junk.Svc", 1, junk_methods,
                                             &junk_file};
  static const prpc_invoke_fn none[1] = {NULL};
  prpc_server *srv;
  prpc_channel *ch;
  dir = test_tmpdir();
  snprintf(target, sizeof(target), "unix:%s/r.sock", dir);
  ASSERT_EQ(prpc_server_enable_reflection(NULL), -EINVAL);
  ASSERT_EQ(prpc_server_create(NULL, &srv), 0);
  ASSERT_EQ(prpc_server_add_listener(srv, target, NULL), 0);
  ASSERT_EQ(prpc_server_register(srv, &hand, none, NULL, NULL), 0);
  ASSERT_EQ(prpc_server_register(srv, &junk_svc, none, NULL, NULL), 0);
  ASSERT_EQ(prpc_server_enable_reflection(srv), 0);
  ASSERT_EQ(prpc_server_start(srv), 0);
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  prpc_call *call = open_v1(ch);
  Req req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
  req.message_request_case =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
  req.list_services = "";
  Resp *r = ask(call, &req);
  ASSERT_EQ(r->list_services_response->n_service, 4);
  ASSERT_STREQ(r->list_services_response->service[0]->name, "hand.Made");
  ASSERT_STREQ(r->list_services_response->service[1]->name, "junk.Svc");
  protobuf_c_message_free_unpacked(&r->base, NULL);
  r = ask_symbol(call, "hand.Made");
  expect_not_found(r, "hand.Made");
  protobuf_c_message_free_unpacked(&r->base, NULL);
  r = ask_symbol(call, "junk.Svc");
  expect_not_found(r, "junk.Svc");
  protobuf_c_message_free_unpacked(&r->base, NULL);
  r = ask_file(call, "junk.proto");
  ASSERT_EQ(r->message_response_case, R_FILES);
  ASSERT_EQ(r->file_descriptor_response->n_file_descriptor_proto, 1);
  ASSERT_EQ(r->file_descriptor_response->file_descriptor_proto[0].len,
            sizeof(junk));
  protobuf_c_message_free_unpacked(&r->base, NULL);
  /* The reflection service's own file is fine. */
  r = ask_symbol(call, "grpc.reflection.v1.ServerReflection");
  ASSERT_EQ(r->message_response_case, R_FILES);
  protobuf_c_message_free_unpacked(&r->base, NULL);
  close_call(call);
  prpc_channel_destroy(ch);
  stop(srv);

  /* No reflection on this one. */
  dir = test_tmpdir();
  snprintf(target, sizeof(target), "unix:%s/r.sock", dir);
  ASSERT_EQ(prpc_server_create(NULL, &srv), 0);
  ASSERT_EQ(prpc_server_add_listener(srv, target, NULL), 0);
  ASSERT_EQ(helloworld__greeter_server__register(srv, &greeter, NULL), 0);
  ASSERT_EQ(prpc_server_start(srv), 0);
  ASSERT_EQ(prpc_channel_create(target, NULL, &ch), 0);
  call = open_v1(ch);
  Resp *none_resp = NULL;
  prpc_call_write(call, &req); /* may fail once the status is in */
  ASSERT(grpc__reflection__v1__server_reflection_client__server_reflection_info_read(
             call, &none_resp) != 1);
  ASSERT_EQ(prpc_call_finish(call, NULL, NULL), GRPC_STATUS_UNIMPLEMENTED);
  prpc_channel_destroy(ch);
  stop(srv);
}

/* Many streams at once, each with its own record of files sent. */
static prpc_channel *shared_ch;

static void *lookups(void *arg) {
  (void)arg;
  prpc_call *call = open_v1(shared_ch);
  char names[300];
  for (int i = 0; i < 20; i++) {
    Resp *r = ask_symbol(call, i % 2 ? "test.multi.v1.RangeRequest.Options"
                                     : "helloworld.Greeter.SayHello");
    file_names(r, names, sizeof(names));
    /* types.proto goes out with multi.proto the first time only. */
    ASSERT_STREQ(names, i == 1 ? "multi.proto,common/types.proto"
                        : i % 2 ? "multi.proto"
                                : "helloworld.proto");
    protobuf_c_message_free_unpacked(&r->base, NULL);
  }
  close_call(call);
  return NULL;
}

static void concurrent_streams(void) {
  prpc_server *srv = start();
  pthread_t t[8];
  ASSERT_EQ(prpc_channel_create(target, NULL, &shared_ch), 0);
  for (int i = 0; i < 8; i++)
    ASSERT_EQ(pthread_create(&t[i], NULL, lookups, NULL), 0);
  for (int i = 0; i < 8; i++)
    pthread_join(t[i], NULL);
  prpc_channel_destroy(shared_ch);
  stop(srv);
}

TEST_MAIN(CASE(list_services), CASE(file_by_filename), CASE(symbols),
          CASE(extensions), CASE(v1alpha), CASE(bad_requests),
          CASE(without_descriptors), CASE(concurrent_streams))
