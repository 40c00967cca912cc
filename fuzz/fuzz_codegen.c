/* Fuzzes the code generator (codegen/gen.c) with arbitrary
 * CodeGeneratorRequest bytes, in process, as protoc-gen-prpc runs it. It
 * must always answer with a CodeGeneratorResponse that decodes: either an
 * error for protoc to print, or two files (.prpc.h, .prpc.c) per file to
 * generate, each with a name and content. That the content compiles for
 * valid requests is checked by the fuzz.codegen_seeds_compile test. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "gen.h"
#include "google/protobuf/compiler/plugin.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *out = NULL;
  size_t out_len = 0;
  Google__Protobuf__Compiler__CodeGeneratorResponse *resp;
  Google__Protobuf__Compiler__CodeGeneratorRequest *req;
  FUZZ_ASSERT(prpc_gen_run(data, size, &out, &out_len) == 0);
  resp = google__protobuf__compiler__code_generator_response__unpack(
      NULL, out_len, out);
  FUZZ_ASSERT(resp != NULL);
  req = google__protobuf__compiler__code_generator_request__unpack(NULL, size,
                                                                   data);
  if (!req) {
    FUZZ_ASSERT(resp->error != NULL && resp->n_file == 0);
  } else if (!resp->error) {
    FUZZ_ASSERT(resp->n_file == 2 * req->n_file_to_generate);
    for (size_t i = 0; i < resp->n_file; i++) {
      const char *name = resp->file[i]->name;
      FUZZ_ASSERT(name && resp->file[i]->content);
      size_t n = strlen(name);
      FUZZ_ASSERT(n > 7 && strcmp(name + n - 7, i % 2 ? ".prpc.c" : ".prpc.h") == 0);
    }
  } else {
    FUZZ_ASSERT(resp->error[0] != '\0' && resp->n_file == 0);
  }
  google__protobuf__compiler__code_generator_request__free_unpacked(req, NULL);
  google__protobuf__compiler__code_generator_response__free_unpacked(resp,
                                                                     NULL);
  free(out);
  return 0;
}
