/* Fuzzes the JSON transcoder (json/transcode.c: the server's HTTP front
 * end and prpc) over the descriptors of tests/cli/types.proto and
 * wkt.proto (a FileDescriptorSet protoc writes at build time,
 * FUZZ_JSON_PB): clitest.AllTypes (every scalar, repeated, maps, oneof,
 * nested and recursive messages) and clitest.Wkt (the well-known types
 * with their own JSON forms, Any among them).
 *
 * Input: byte 0 picks the message (bit 0); bytes 1-2 (little endian) are
 * the length of the wire part that follows; the rest is JSON text.
 * - The wire part is decoded to JSON. A failure must say why. Success
 *   promises a round trip: the printed JSON parses, encodes, and the
 *   encoding decodes to the same JSON text.
 * - The JSON text, when jansson parses it (as prpc reads requests), is
 *   encoded. A failure must say why. An encoding must decode, and the JSON
 *   that gives must round-trip as above. */
#include <string.h>

#include "fuzz.h"
#include "pool.h"
#include "transcode.h"

/* As prpc reads requests (cli/prpc.c). */
#define LOAD_FLAGS (JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES)

static pool P = POOL_INIT;
static const pool_sym *MSGS[2];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  FILE *f = fopen(FUZZ_JSON_PB, "rb");
  wbuf b = {0};
  char buf[4096];
  size_t n;
  (void)argc;
  (void)argv;
  FUZZ_ASSERT(f != NULL);
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
    wbuf_put(&b, buf, n);
  fclose(f);
  FUZZ_ASSERT(prpc__pool_add_set(&P, b.data, b.len) == 0);
  wbuf_free(&b);
  MSGS[0] = prpc__pool_find(&P, "clitest.AllTypes");
  MSGS[1] = prpc__pool_find(&P, "clitest.Wkt");
  FUZZ_ASSERT(MSGS[0] && MSGS[0]->kind == SYM_MESSAGE);
  FUZZ_ASSERT(MSGS[1] && MSGS[1]->kind == SYM_MESSAGE);
  return 0;
}

/* The compact JSON text of j, as prpc prints it, without the newline. */
static char *to_text(const json_t *j) {
  char *text = NULL;
  size_t size = 0;
  FILE *m = open_memstream(&text, &size);
  FUZZ_ASSERT(m != NULL);
  FUZZ_ASSERT(prpc__tc_print(m, j, 0) == 0);
  fclose(m);
  if (size && text[size - 1] == '\n')
    text[size - 1] = '\0';
  return text;
}

/* Decodes data; returns its JSON text, or NULL after checking the error. */
static char *decode_text(const pool_sym *ms, const uint8_t *data, size_t len) {
  char err[600] = "";
  json_t *j = prpc__tc_decode(&P, ms, data, len, err, sizeof(err));
  char *text;
  if (!j) {
    FUZZ_ASSERT(err[0] != '\0');
    return NULL;
  }
  text = to_text(j);
  json_decref(j);
  return text;
}

/* JSON text the transcoder printed must encode and decode to itself. */
static void round_trip(const pool_sym *ms, const char *text) {
  char err[600] = "";
  json_error_t je;
  wbuf w = {0};
  char *again;
  int rc;
  json_t *j = json_loads(text, LOAD_FLAGS, &je);
  if (!j)
    fprintf(stderr, "printed JSON does not parse: %s\n%s\n", je.text, text);
  FUZZ_ASSERT(j != NULL);
  rc = prpc__tc_encode(&P, ms, j, &w, err, sizeof(err));
  if (rc != 0)
    fprintf(stderr, "printed JSON does not encode: %s\n%s\n", err, text);
  FUZZ_ASSERT(rc == 0);
  json_decref(j);
  again = decode_text(ms, w.data, w.len);
  FUZZ_ASSERT(again != NULL);
  if (strcmp(again, text) != 0)
    fprintf(stderr, "round trip differs:\n%s\n%s\n", text, again);
  FUZZ_ASSERT(strcmp(again, text) == 0);
  free(again);
  wbuf_free(&w);
}

static void from_json(const pool_sym *ms, const char *in, size_t len) {
  char err[600] = "";
  json_error_t je;
  wbuf w = {0};
  char *text;
  json_t *j = json_loadb(in, len, LOAD_FLAGS, &je);
  if (!j)
    return;
  if (prpc__tc_encode(&P, ms, j, &w, err, sizeof(err)) != 0) {
    FUZZ_ASSERT(err[0] != '\0');
  } else {
    text = decode_text(ms, w.data, w.len);
    FUZZ_ASSERT(text != NULL);
    round_trip(ms, text);
    free(text);
  }
  json_decref(j);
  wbuf_free(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const pool_sym *ms;
  size_t wire_len;
  char *text;
  if (size < 3)
    return 0;
  ms = MSGS[data[0] & 1];
  wire_len = (size_t)data[1] | (size_t)data[2] << 8;
  data += 3;
  size -= 3;
  if (wire_len > size)
    wire_len = size;
  text = decode_text(ms, data, wire_len);
  if (text) {
    round_trip(ms, text);
    free(text);
  }
  from_json(ms, (const char *)data + wire_len, size - wire_len);
  return 0;
}
