/* The generator's embedded descriptors, driven without protoc: requests
 * protoc would never send get a clear error, and what is embedded does not
 * depend on source_code_info. */
#include "gen.h"
#include "google/protobuf/compiler/plugin.pb-c.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "test.h"

typedef Google__Protobuf__Compiler__CodeGeneratorRequest Request;
typedef Google__Protobuf__Compiler__CodeGeneratorResponse Response;
typedef Google__Protobuf__FileDescriptorProto FileProto;

/* b.proto: message B; a.proto (imports deps): message A, service S { M(A)
 * returns (B) }. */
typedef struct fixture {
  FileProto a, b;
  Google__Protobuf__DescriptorProto ma, mb;
  Google__Protobuf__DescriptorProto *ma_p[1], *mb_p[1];
  Google__Protobuf__ServiceDescriptorProto s;
  Google__Protobuf__ServiceDescriptorProto *s_p[1];
  Google__Protobuf__MethodDescriptorProto m;
  Google__Protobuf__MethodDescriptorProto *m_p[1];
  char *deps[2];
  FileProto *files[2];
  char *gen[1];
  Request req;
} fixture;

static void setup(fixture *f, const char *dep) {
  memset(f, 0, sizeof(*f));
  google__protobuf__file_descriptor_proto__init(&f->a);
  google__protobuf__file_descriptor_proto__init(&f->b);
  google__protobuf__descriptor_proto__init(&f->ma);
  google__protobuf__descriptor_proto__init(&f->mb);
  google__protobuf__service_descriptor_proto__init(&f->s);
  google__protobuf__method_descriptor_proto__init(&f->m);
  google__protobuf__compiler__code_generator_request__init(&f->req);
  f->b.name = "b.proto";
  f->b.package = "p";
  f->mb.name = "B";
  f->mb_p[0] = &f->mb;
  f->b.n_message_type = 1;
  f->b.message_type = f->mb_p;
  f->a.name = "a.proto";
  f->a.package = "p";
  f->ma.name = "A";
  f->ma_p[0] = &f->ma;
  f->a.n_message_type = 1;
  f->a.message_type = f->ma_p;
  f->m.name = "M";
  f->m.input_type = ".p.A";
  f->m.output_type = ".p.B";
  f->m_p[0] = &f->m;
  f->s.name = "S";
  f->s.n_method = 1;
  f->s.method = f->m_p;
  f->s_p[0] = &f->s;
  f->a.n_service = 1;
  f->a.service = f->s_p;
  f->deps[0] = (char *)dep;
  f->a.n_dependency = 1;
  f->a.dependency = f->deps;
  f->files[0] = &f->b;
  f->files[1] = &f->a;
  f->req.n_proto_file = 2;
  f->req.proto_file = f->files;
  f->gen[0] = "a.proto";
  f->req.n_file_to_generate = 1;
  f->req.file_to_generate = f->gen;
}

static Response *run(const fixture *f) {
  size_t len = google__protobuf__compiler__code_generator_request__get_packed_size(
      &f->req);
  uint8_t *buf = malloc(len + 1);
  uint8_t *out = NULL;
  size_t out_len = 0;
  ASSERT(buf != NULL);
  google__protobuf__compiler__code_generator_request__pack(&f->req, buf);
  ASSERT_EQ(prpc_gen_run(buf, len, &out, &out_len), 0);
  free(buf);
  Response *r = google__protobuf__compiler__code_generator_response__unpack(
      NULL, out_len, out);
  free(out);
  ASSERT(r != NULL);
  return r;
}

static const char *source_of(const Response *r) {
  for (size_t i = 0; i < r->n_file; i++)
    if (strcmp(r->file[i]->name, "a.prpc.c") == 0)
      return r->file[i]->content;
  FAIL_AT(__FILE__, __LINE__, "no a.prpc.c generated (%s)",
          r->error ? r->error : "no error");
  return NULL;
}

static void imports_embedded(void) {
  fixture f;
  setup(&f, "b.proto");
  Response *r = run(&f);
  ASSERT(r->error == NULL);
  const char *c = source_of(r);
  /* b.proto first, then a.proto pointing at it, and the service at a. */
  const char *b = strstr(c, "\"b.proto\", prpc_file__0_data");
  const char *a = strstr(c, "\"a.proto\", prpc_file__1_data");
  ASSERT(b && a && b < a);
  ASSERT_CONTAINS(c, "prpc_file__1_deps[1] = {\n  &prpc_file__0,\n};");
  ASSERT_CONTAINS(c, "\"p.S\", 1, p__s__methods, &prpc_file__1\n};");
  /* No descriptors in a file without services: b.prpc.c is not even
   * asked for here, and a.prpc.h has none. */
  google__protobuf__compiler__code_generator_response__free_unpacked(r, NULL);
}

/* Comments and positions are left out: with or without them the output is
 * the same, byte for byte. */
static void source_info_stripped(void) {
  fixture f;
  setup(&f, "b.proto");
  Response *plain = run(&f);
  Google__Protobuf__SourceCodeInfo info = GOOGLE__PROTOBUF__SOURCE_CODE_INFO__INIT;
  Google__Protobuf__SourceCodeInfo__Location loc =
      GOOGLE__PROTOBUF__SOURCE_CODE_INFO__LOCATION__INIT;
  Google__Protobuf__SourceCodeInfo__Location *locs[1] = {&loc};
  int32_t path[2] = {4, 0}, span[3] = {3, 0, 12};
  loc.n_path = 2;
  loc.path = path;
  loc.n_span = 3;
  loc.span = span;
  loc.leading_comments = " A message with a long comment.\n";
  info.n_location = 1;
  info.location = locs;
  f.a.source_code_info = &info;
  f.b.source_code_info = &info;
  Response *with = run(&f);
  ASSERT_STREQ(source_of(with), source_of(plain));
  google__protobuf__compiler__code_generator_response__free_unpacked(plain,
                                                                     NULL);
  google__protobuf__compiler__code_generator_response__free_unpacked(with,
                                                                     NULL);
}

static void missing_import(void) {
  fixture f;
  setup(&f, "nowhere.proto");
  Response *r = run(&f);
  ASSERT_CONTAINS(r->error, "a.proto: imports nowhere.proto, which is not "
                            "among the request's proto files");
  ASSERT_EQ(r->n_file, 0);
  google__protobuf__compiler__code_generator_response__free_unpacked(r, NULL);
}

/* A file importing itself (protoc refuses cycles; a hand-made request may
 * not): an error, not a loop. */
static void import_cycle(void) {
  fixture f;
  setup(&f, "a.proto");
  Response *r = run(&f);
  ASSERT_CONTAINS(r->error, "import a.proto does not come before it");
  ASSERT_EQ(r->n_file, 0);
  google__protobuf__compiler__code_generator_response__free_unpacked(r, NULL);
}

TEST_MAIN(CASE(imports_embedded), CASE(source_info_stripped),
          CASE(missing_import), CASE(import_cycle))
