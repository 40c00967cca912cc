/* protoc-gen-prpc: the protoc plugin that writes piperpc stubs.
 *
 * protoc runs it with a CodeGeneratorRequest on stdin and reads a
 * CodeGeneratorResponse from stdout. For every file to generate it writes
 * <name>.prpc.h and <name>.prpc.c beside protobuf-c's <name>.pb-c.{h,c}:
 * a method table and thin typed wrappers over the runtime. Names follow
 * protobuf-c's rules (c_helpers.cc) so that they match its types.
 *
 * Options (--prpc_opt=...): backend=protobuf-c (the default). */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"

int main(void) {
  size_t cap = 1 << 16, len = 0;
  unsigned char *in = malloc(cap);
  unsigned char *out = NULL;
  size_t out_len = 0;
  size_t n;
  if (!in) {
    fprintf(stderr, "protoc-gen-prpc: out of memory\n");
    return 1;
  }
  while ((n = fread(in + len, 1, cap - len, stdin)) > 0) {
    len += n;
    if (len == cap) {
      unsigned char *bigger = realloc(in, cap * 2);
      if (!bigger) {
        free(in);
        fprintf(stderr, "protoc-gen-prpc: out of memory\n");
        return 1;
      }
      in = bigger;
      cap *= 2;
    }
  }
  if (ferror(stdin)) {
    free(in);
    fprintf(stderr, "protoc-gen-prpc: cannot read the request from stdin\n");
    return 1;
  }
  if (prpc_gen_run(in, len, &out, &out_len) != 0) {
    free(in);
    fprintf(stderr, "protoc-gen-prpc: out of memory\n");
    return 1;
  }
  free(in);
  if (fwrite(out, 1, out_len, stdout) != out_len || fflush(stdout) != 0) {
    free(out);
    fprintf(stderr, "protoc-gen-prpc: cannot write the response\n");
    return 1;
  }
  free(out);
  return 0;
}
