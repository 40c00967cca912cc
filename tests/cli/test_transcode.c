/* prpc's JSON <-> protobuf transcoder against protobuf-c's own generated
 * code for the same .proto (tests/cli/types.proto): JSON is encoded by the
 * transcoder, decoded by protobuf-c and checked field by field, then
 * packed by protobuf-c and turned back into JSON by the transcoder, which
 * must give the exact text expected. The descriptors come from a
 * FileDescriptorSet that protoc writes at build time (PRPC_CLITEST_PB). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "pool.h"
#include "transcode.h"
#include "types.pb-c.h"

static pool P = POOL_INIT;
static const pool_sym *ALL;

static void load(void) {
  FILE *f = fopen(PRPC_CLITEST_PB, "rb");
  ASSERT(f);
  wbuf b = {0};
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) wbuf_put(&b, buf, n);
  fclose(f);
  ASSERT_EQ(prpc__pool_add_set(&P, b.data, b.len), 0);
  wbuf_free(&b);
  ALL = prpc__pool_find(&P, "clitest.AllTypes");
  ASSERT(ALL && ALL->kind == SYM_MESSAGE);
}

/* The transcoder's JSON for encoded bytes, without the newline. */
static char *to_json(const uint8_t *data, size_t len, char *err,
                     size_t errlen) {
  json_t *j = prpc__tc_decode(&P, ALL, data, len, err, errlen);
  if (!j) return NULL;
  char *text = NULL;
  size_t size = 0;
  FILE *m = open_memstream(&text, &size);
  ASSERT(m);
  ASSERT_EQ(prpc__tc_print(m, j, 0), 0);
  fclose(m);
  json_decref(j);
  if (size && text[size - 1] == '\n') text[size - 1] = '\0';
  return text;
}

/* JSON -> transcoder -> protobuf-c message (returned, caller frees), and
 * that message -> protobuf-c pack -> transcoder -> JSON == want. */
static Clitest__AllTypes *roundtrip(const char *in, const char *want) {
  char err[600] = "";
  json_error_t je;
  json_t *j = json_loads(in, 0, &je);
  ASSERT(j);
  wbuf w = {0};
  if (prpc__tc_encode(&P, ALL, j, &w, err, sizeof(err)) != 0)
    FAIL_AT(__FILE__, __LINE__, "encode failed: %s", err);
  json_decref(j);
  Clitest__AllTypes *m = clitest__all_types__unpack(
      NULL, w.len, w.data ? w.data : (const uint8_t *)"");
  ASSERT(m);
  wbuf_free(&w);
  size_t size = clitest__all_types__get_packed_size(m);
  uint8_t *packed = malloc(size + 1);
  ASSERT_EQ(clitest__all_types__pack(m, packed), size);
  char *got = to_json(packed, size, err, sizeof(err));
  if (!got) FAIL_AT(__FILE__, __LINE__, "decode failed: %s", err);
  ASSERT_STREQ(got, want);
  free(got);
  free(packed);
  return m;
}

static void scalars(void) {
  load();
  Clitest__AllTypes *m = roundtrip(
      "{\"f_double\":1.5,\"fFloat\":0.1,"
      "\"f_int64\":\"-9223372036854775808\","
      "\"fUint64\":\"18446744073709551615\",\"f_int32\":-7,"
      "\"fFixed64\":\"123\",\"f_fixed32\":4294967295,\"fBool\":true,"
      "\"f_string\":\"h\\u00e9llo \\\"q\\\"\",\"fBytes\":\"AAEC_w\","
      "\"f_uint32\":\"42\",\"fColor\":\"GREEN\",\"f_sfixed32\":-3,"
      "\"fSfixed64\":\"-4\",\"f_sint32\":-5,\"fSint64\":-6}",
      "{\"fDouble\":1.5,\"fFloat\":0.1,\"fInt64\":\"-9223372036854775808\","
      "\"fUint64\":\"18446744073709551615\",\"fInt32\":-7,"
      "\"fFixed64\":\"123\",\"fFixed32\":4294967295,\"fBool\":true,"
      "\"fString\":\"h\xc3\xa9llo \\\"q\\\"\",\"fBytes\":\"AAEC/w==\","
      "\"fUint32\":42,\"fColor\":\"GREEN\",\"fSfixed32\":-3,"
      "\"fSfixed64\":\"-4\",\"fSint32\":-5,\"fSint64\":\"-6\"}");
  ASSERT(m->f_double == 1.5);
  ASSERT(m->f_float == 0.1f);
  ASSERT(m->f_int64 == INT64_MIN);
  ASSERT(m->f_uint64 == UINT64_MAX);
  ASSERT_EQ(m->f_int32, -7);
  ASSERT_EQ(m->f_fixed64, 123);
  ASSERT(m->f_fixed32 == UINT32_MAX);
  ASSERT_EQ(m->f_bool, 1);
  ASSERT_STREQ(m->f_string, "h\xc3\xa9llo \"q\"");
  ASSERT_EQ(m->f_bytes.len, 4);
  ASSERT(memcmp(m->f_bytes.data, "\x00\x01\x02\xff", 4) == 0);
  ASSERT_EQ(m->f_uint32, 42);
  ASSERT_EQ(m->f_color, CLITEST__COLOR__GREEN);
  ASSERT_EQ(m->f_sfixed32, -3);
  ASSERT_EQ(m->f_sfixed64, -4);
  ASSERT_EQ(m->f_sint32, -5);
  ASSERT_EQ(m->f_sint64, -6);
  clitest__all_types__free_unpacked(m, NULL);

  /* Floats: the fewest digits that read back; exponents; NaN, infinities. */
  m = roundtrip("{\"fDouble\":1e300,\"fFloat\":\"-Infinity\"}",
                "{\"fDouble\":1e+300,\"fFloat\":\"-Infinity\"}");
  clitest__all_types__free_unpacked(m, NULL);
  m = roundtrip("{\"fDouble\":\"NaN\",\"fFloat\":3}",
                "{\"fDouble\":\"NaN\",\"fFloat\":3}");
  clitest__all_types__free_unpacked(m, NULL);
}

static void repeated_maps_nested(void) {
  load();
  Clitest__AllTypes *m = roundtrip(
      "{\"rInt32\":[1,-2,3],\"r_string\":[\"a\",\"\"],"
      "\"rInner\":[{\"text\":\"x\"},{\"n\":2}],\"rColor\":[\"RED\",2,7],"
      "\"rDouble\":[\"NaN\",\"Infinity\",-0.25],\"rSint64\":[\"-1\",2],"
      "\"mStrInt\":{\"a\":\"5\",\"b\":-6},"
      "\"m_int_inner\":{\"-1\":{\"text\":\"neg\"},\"7\":{}},"
      "\"mBoolStr\":{\"true\":\"yes\"},\"cInner\":{\"n\":3},"
      "\"nested\":{\"level\":\"HIGH\",\"children\":"
      "[{\"children\":[{\"level\":1}]}]}}",
      "{\"rInt32\":[1,-2,3],\"rString\":[\"a\",\"\"],"
      "\"rInner\":[{\"text\":\"x\"},{\"n\":2}],"
      "\"rColor\":[\"RED\",\"GREEN\",7],"
      "\"rDouble\":[\"NaN\",\"Infinity\",-0.25],\"rSint64\":[\"-1\",\"2\"],"
      "\"mStrInt\":{\"a\":\"5\",\"b\":\"-6\"},"
      "\"mIntInner\":{\"-1\":{\"text\":\"neg\"},\"7\":{}},"
      "\"mBoolStr\":{\"true\":\"yes\"},\"cInner\":{\"n\":3},"
      "\"nested\":{\"level\":\"HIGH\",\"children\":"
      "[{\"children\":[{\"level\":\"HIGH\"}]}]}}");
  ASSERT_EQ(m->n_r_int32, 3);
  ASSERT_EQ(m->r_int32[1], -2);
  ASSERT_EQ(m->n_r_string, 2);
  ASSERT_STREQ(m->r_string[1], "");
  ASSERT_EQ(m->n_r_inner, 2);
  ASSERT_STREQ(m->r_inner[0]->text, "x");
  ASSERT_EQ(m->r_inner[1]->n, 2);
  ASSERT_EQ(m->n_r_color, 3);
  ASSERT_EQ(m->r_color[2], 7);
  ASSERT_EQ(m->n_r_sint64, 2);
  ASSERT_EQ(m->r_sint64[0], -1);
  ASSERT_EQ(m->n_m_str_int, 2);
  ASSERT_STREQ(m->m_str_int[1]->key, "b");
  ASSERT_EQ(m->m_str_int[1]->value, -6);
  ASSERT_EQ(m->n_m_int_inner, 2);
  ASSERT_EQ(m->m_int_inner[0]->key, -1);
  ASSERT_STREQ(m->m_int_inner[0]->value->text, "neg");
  ASSERT_EQ(m->n_m_bool_str, 1);
  ASSERT_EQ(m->m_bool_str[0]->key, 1);
  ASSERT_EQ(m->choice_case, CLITEST__ALL_TYPES__CHOICE_C_INNER);
  ASSERT_EQ(m->c_inner->n, 3);
  ASSERT(m->nested && m->nested->n_children == 1);
  ASSERT_EQ(m->nested->children[0]->children[0]->level,
            CLITEST__ALL_TYPES__NESTED__LEVEL__HIGH);
  clitest__all_types__free_unpacked(m, NULL);

  /* A oneof member at its default value is still set. */
  m = roundtrip("{\"cText\":\"\"}", "{\"cText\":\"\"}");
  ASSERT_EQ(m->choice_case, CLITEST__ALL_TYPES__CHOICE_C_TEXT);
  clitest__all_types__free_unpacked(m, NULL);
}

static void defaults_omitted(void) {
  load();
  Clitest__AllTypes *m = roundtrip(
      "{\"fInt32\":0,\"fString\":\"\",\"fColor\":\"COLOR_UNSET\","
      "\"fInner\":{},\"rInt32\":[],\"fBool\":false,\"fDouble\":null,"
      "\"mStrInt\":{}}",
      "{\"fInner\":{}}");
  ASSERT(m->f_inner != NULL);
  clitest__all_types__free_unpacked(m, NULL);
  m = roundtrip("{}", "{}");
  clitest__all_types__free_unpacked(m, NULL);
}

static void errors(void) {
  static const char *const cases[][2] = {
      {"{\"nope\":1}", "field \"nope\": no such field in clitest.AllTypes"},
      {"{\"fString\":5}",
       "field \"f_string\": expected a string, got a number"},
      {"{\"fInt32\":2147483648}",
       "field \"f_int32\": 2147483648 is out of range for int32"},
      {"{\"fInt32\":1.5}",
       "field \"f_int32\": 1.5 is not an integer of type int32"},
      {"{\"fUint64\":\"-1\"}",
       "field \"f_uint64\": \"-1\" is not an integer of type uint64"},
      {"{\"fBytes\":\"a*b\"}", "field \"f_bytes\": not valid base64"},
      {"{\"fColor\":\"BLUE\"}",
       "field \"f_color\": \"BLUE\" is not a value of enum clitest.Color"},
      {"{\"rInner\":[{},{\"n\":\"x\"}]}",
       "field \"r_inner[1].n\": \"x\" is not an integer of type int32"},
      {"{\"cText\":\"a\",\"cInner\":{}}",
       "field \"c_inner\": only one of \"c_text\" and \"c_inner\" may be set "
       "(a oneof)"},
      {"{\"mIntInner\":{\"x\":{}}}",
       "field \"m_int_inner[\"x\"]\": \"x\" is not an integer of type int32"},
      {"{\"fBool\":\"true\"}",
       "field \"f_bool\": expected true or false, got a string"},
      {"{\"fInner\":[]}",
       "field \"f_inner\": expected an object (clitest.Inner), got an array"},
      {"[1]", "expected an object (clitest.AllTypes), got an array"},
      {"{\"f_int32\":1,\"fInt32\":2}",
       "field \"f_int32\": set twice (as \"f_int32\" and \"fInt32\")"},
      {"{\"fFloat\":1e40}", "field \"f_float\": 1e+40 is out of range for float"},
      {"{\"rInt32\":[1,null]}",
       "field \"r_int32[1]\": null is not an element of a repeated field"},
      {"{\"nested\":{\"children\":[{\"level\":\"MID\"}]}}",
       "field \"nested.children[0].level\": \"MID\" is not a value of enum "
       "clitest.AllTypes.Nested.Level"},
  };
  load();
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char err[600] = "";
    json_error_t je;
    json_t *j = json_loads(cases[i][0], JSON_DECODE_ANY, &je);
    ASSERT(j);
    wbuf w = {0};
    if (prpc__tc_encode(&P, ALL, j, &w, err, sizeof(err)) == 0)
      FAIL_AT(__FILE__, __LINE__, "%s: encoded", cases[i][0]);
    ASSERT_STREQ(err, cases[i][1]);
    wbuf_free(&w);
    json_decref(j);
  }
}

static void malformed_wire(void) {
  static const struct {
    const char *bytes;
    size_t len;
    const char *err;
  } cases[] = {
      {"\x4a\x05" "a", 3, "malformed clitest.AllTypes message"},
      {"\x48\x01", 2, "field \"f_string\": wire type 0 does not fit type "
                      "string"},
      {"\x4a\x01\xff", 3, "field \"f_string\": the string is not valid UTF-8"},
      {"\x52\x01\x10", 3, "field \"f_inner\": malformed clitest.Inner message"},
  };
  load();
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char err[600] = "";
    char *got = to_json((const uint8_t *)cases[i].bytes, cases[i].len, err,
                        sizeof(err));
    if (got) FAIL_AT(__FILE__, __LINE__, "case %zu decoded: %s", i, got);
    ASSERT_STREQ(err, cases[i].err);
  }
  /* A message nested deeper than 100 levels is refused, not a crash:
   * AllTypes.nested (43) { children (2) { children { ... } } }. */
  for (int levels = 99; levels <= 10000; levels = levels * 10 + 1) {
    wbuf w = {0};
    for (int i = 0; i < levels; i++) { /* innermost first */
      wbuf outer = {0};
      wbuf_bytes(&outer, i == levels - 1 ? 43 : 2, w.data, w.len);
      wbuf_free(&w);
      w = outer;
    }
    char err[600] = "";
    char *got = to_json(w.data, w.len, err, sizeof(err));
    if (levels < 100) {
      if (!got) FAIL_AT(__FILE__, __LINE__, "%d levels: %s", levels, err);
      free(got);
    } else {
      if (got) FAIL_AT(__FILE__, __LINE__, "%d levels decoded", levels);
      ASSERT_CONTAINS(err, "nested more than 100 messages deep");
    }
    wbuf_free(&w);
  }

  /* Unknown fields are skipped; packed and unpacked repeated both read. */
  char err[600] = "";
  char *got = to_json((const uint8_t *)"\xf8\x07\x01\xa0\x01\x05\xa2\x01\x02\x06\x07",
                      11, err, sizeof(err));
  if (!got) FAIL_AT(__FILE__, __LINE__, "%s", err);
  ASSERT_STREQ(got, "{\"rInt32\":[5,6,7]}");
  free(got);
}

static void base64(void) {
  static const char *const in[] = {"", "Zg", "Zm8=", "Zm9v", "_-8", "/+8="};
  static const char *const out[] = {"", "f", "fo", "foo", "\xff\xef",
                                    "\xff\xef"};
  for (size_t i = 0; i < 6; i++) {
    wbuf b = {0};
    ASSERT_EQ(prpc__tc_b64_decode(in[i], strlen(in[i]), &b), 0);
    ASSERT_EQ(b.len, strlen(out[i]));
    ASSERT(b.len == 0 || memcmp(b.data, out[i], b.len) == 0);
    wbuf_free(&b);
  }
  char *s = prpc__tc_b64_encode((const uint8_t *)"\xff\xef", 2);
  ASSERT_STREQ(s, "/+8=");
  free(s);
  wbuf b = {0};
  ASSERT_EQ(prpc__tc_b64_decode("Z", 1, &b), -1);
  ASSERT_EQ(prpc__tc_b64_decode("Zm9v!", 5, &b), -1);
  wbuf_free(&b);
}

/* Strings printed with the escapes jansson's printer uses: the mandatory
 * ones and control characters; '/', DEL and UTF-8 as they are. */
static void string_escapes(void) {
  load();
  Clitest__AllTypes *m = roundtrip(
      "{\"f_string\":\"q\\\"b\\\\s\\/\\b\\f\\n\\r\\t\\u0001\\u001f"
      "\\u007f\\u00e9\\u2028\"}",
      "{\"fString\":\"q\\\"b\\\\s/\\b\\f\\n\\r\\t\\u0001\\u001F"
      "\x7f\xc3\xa9\xe2\x80\xa8\"}");
  ASSERT_STREQ(m->f_string, "q\"b\\s/\b\f\n\r\t\x01\x1f\x7f\xc3\xa9\xe2\x80\xa8");
  clitest__all_types__free_unpacked(m, NULL);
}

TEST_MAIN(CASE(scalars), CASE(repeated_maps_nested), CASE(defaults_omitted),
          CASE(errors), CASE(malformed_wire), CASE(base64),
          CASE(string_escapes))
