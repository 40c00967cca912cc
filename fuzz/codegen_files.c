/* codegen_files REQUEST OUTDIR PROTOC_GEN_C
 *
 * For the fuzz.codegen_seeds_compile test: runs the code generator on a
 * recorded CodeGeneratorRequest (a codegen seed) in process, writes the
 * .prpc.h/.prpc.c files it answers with under OUTDIR, then runs protoc-c's
 * plugin (PROTOC_GEN_C) on the same request (without our parameter) and
 * writes its .pb-c.h/.pb-c.c there too, so that the generated C can be
 * compiled. Exits 0, 3 when the generator answered with an error (printed),
 * or 1 on any other failure. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gen.h"
#include "google/protobuf/compiler/plugin.pb-c.h"

typedef Google__Protobuf__Compiler__CodeGeneratorResponse Response;
typedef Google__Protobuf__Compiler__CodeGeneratorRequest Request;

static uint8_t *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  size_t cap = 1 << 16, n = 0, got;
  uint8_t *buf = malloc(cap);
  if (!f || !buf) {
    fprintf(stderr, "codegen_files: %s: %s\n", path, strerror(errno));
    exit(1);
  }
  while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap && !(buf = realloc(buf, cap *= 2)))
      exit(1);
  }
  fclose(f);
  *len = n;
  return buf;
}

static void mkdirs(char *path) {
  for (char *p = path + 1; *p; p++) {
    if (*p == '/') {
      *p = '\0';
      mkdir(path, 0755);
      *p = '/';
    }
  }
}

/* Writes the files of a response under dir; returns 3 if it is an error. */
static int write_files(const uint8_t *data, size_t len, const char *dir,
                       const char *who) {
  Response *r = google__protobuf__compiler__code_generator_response__unpack(
      NULL, len, data);
  if (!r) {
    fprintf(stderr, "codegen_files: %s's response does not decode\n", who);
    exit(1);
  }
  if (r->error) {
    printf("%s: error: %s\n", who, r->error);
    google__protobuf__compiler__code_generator_response__free_unpacked(r,
                                                                       NULL);
    return 3;
  }
  for (size_t i = 0; i < r->n_file; i++) {
    char path[4096];
    FILE *f;
    snprintf(path, sizeof(path), "%s/%s", dir, r->file[i]->name);
    mkdirs(path);
    if (!(f = fopen(path, "w")) || fputs(r->file[i]->content, f) < 0 ||
        fclose(f) != 0) {
      fprintf(stderr, "codegen_files: cannot write %s\n", path);
      exit(1);
    }
    printf("%s: %s\n", who, r->file[i]->name);
  }
  google__protobuf__compiler__code_generator_response__free_unpacked(r, NULL);
  return 0;
}

int main(int argc, char **argv) {
  size_t len, out_len = 0, c_len;
  uint8_t *req_bytes, *out = NULL, *c_out;
  char req_path[4096], resp_path[4096], cmd[9000];
  Request *req;
  FILE *f;
  int rc;
  if (argc != 4) {
    fprintf(stderr, "usage: codegen_files REQUEST OUTDIR PROTOC_GEN_C\n");
    return 1;
  }
  req_bytes = slurp(argv[1], &len);
  if (prpc_gen_run(req_bytes, len, &out, &out_len) != 0)
    return 1;
  mkdir(argv[2], 0755);
  if ((rc = write_files(out, out_len, argv[2], "protoc-gen-prpc")) != 0) {
    free(out);
    free(req_bytes);
    return rc;
  }
  /* protoc-c's plugin refuses options it does not know: drop ours. */
  req = google__protobuf__compiler__code_generator_request__unpack(NULL, len,
                                                                   req_bytes);
  if (!req)
    return 1;
  char *parameter = req->parameter;
  req->parameter = NULL;
  /* ... and generate the imported files too, so that everything the
   * generated headers include exists (not protobuf's own). */
  char **files = calloc(req->n_proto_file + 1, sizeof(*files));
  size_t n_files = 0;
  for (size_t i = 0; files && i < req->n_proto_file; i++) {
    const char *name = req->proto_file[i]->name;
    if (name && strncmp(name, "google/protobuf/", 16) != 0 &&
        strncmp(name, "protobuf-c/", 11) != 0)
      files[n_files++] = (char *)name;
  }
  char **asked = req->file_to_generate;
  size_t n_asked = req->n_file_to_generate;
  req->file_to_generate = files;
  req->n_file_to_generate = n_files;
  snprintf(req_path, sizeof(req_path), "%s/request.bin", argv[2]);
  snprintf(resp_path, sizeof(resp_path), "%s/response.bin", argv[2]);
  {
    size_t n = google__protobuf__compiler__code_generator_request__get_packed_size(req);
    uint8_t *b = malloc(n + 1);
    google__protobuf__compiler__code_generator_request__pack(req, b);
    req->parameter = parameter; /* back, to free what unpack made */
    req->file_to_generate = asked;
    req->n_file_to_generate = n_asked;
    google__protobuf__compiler__code_generator_request__free_unpacked(req,
                                                                      NULL);
    free(files);
    if (!(f = fopen(req_path, "wb")) || fwrite(b, 1, n, f) != n ||
        fclose(f) != 0)
      return 1;
    free(b);
  }
  snprintf(cmd, sizeof(cmd), "'%s' < '%s' > '%s'", argv[3], req_path,
           resp_path);
  if (system(cmd) != 0) {
    fprintf(stderr, "codegen_files: %s failed\n", argv[3]);
    return 1;
  }
  c_out = slurp(resp_path, &c_len);
  if (write_files(c_out, c_len, argv[2], "protoc-gen-c") != 0)
    return 1;
  free(c_out);
  free(out);
  free(req_bytes);
  return 0;
}
