/* Metadata lists, status helpers and error strings. */
#include "../runtime/internal.h"
#include "test.h"

#include <errno.h>

static void add_get_clear(void) {
  prpc_metadata md = PRPC_METADATA_INIT;
  static const unsigned char bin[] = {0, 1, 2, 0xff};
  ASSERT_EQ(prpc_metadata_add_str(&md, "x-user", "alice"), 0);
  ASSERT_EQ(prpc_metadata_add(&md, "blob-bin", bin, sizeof(bin)), 0);
  for (int i = 0; i < 20; i++) /* grows past the first capacity */
    ASSERT_EQ(prpc_metadata_add_str(&md, "n", "v"), 0);
  ASSERT_EQ(md.count, 22);
  const prpc_md *e = prpc_metadata_get(&md, "x-user");
  ASSERT(e != NULL);
  ASSERT_STREQ(e->value, "alice");
  ASSERT_EQ(e->value_len, 5);
  e = prpc_metadata_get(&md, "blob-bin");
  ASSERT(e && e->value_len == 4 && memcmp(e->value, bin, 4) == 0);
  ASSERT(prpc_metadata_get(&md, "missing") == NULL);
  prpc_metadata_clear(&md);
  ASSERT(md.items == NULL && md.count == 0 && md.capacity == 0);
  prpc_metadata_clear(&md); /* twice is fine */
  prpc_metadata_clear(NULL);
}

static void rejects_bad_keys_and_values(void) {
  prpc_metadata md = PRPC_METADATA_INIT;
  ASSERT_EQ(prpc_metadata_add_str(&md, "", "v"), -EINVAL);
  ASSERT_EQ(prpc_metadata_add_str(&md, "Upper", "v"), -EINVAL);
  ASSERT_EQ(prpc_metadata_add_str(&md, ":path", "v"), -EINVAL);
  ASSERT_EQ(prpc_metadata_add_str(&md, "sp ace", "v"), -EINVAL);
  ASSERT_EQ(prpc_metadata_add_str(&md, "ascii", "new\nline"), -EINVAL);
  ASSERT_EQ(prpc_metadata_add(&md, "ascii", "\x01", 1), -EINVAL);
  ASSERT_EQ(prpc_metadata_add(&md, "ok-bin", "\x01", 1), 0);
  ASSERT_EQ(md.count, 1);
  prpc_metadata_clear(&md);
}

static void status_names(void) {
  ASSERT_STREQ(prpc_status_name(GRPC_STATUS_OK), "OK");
  ASSERT_STREQ(prpc_status_name(GRPC_STATUS_UNAVAILABLE), "UNAVAILABLE");
  ASSERT_STREQ(prpc_status_name(GRPC_STATUS_UNAUTHENTICATED),
               "UNAUTHENTICATED");
  ASSERT_STREQ(prpc_status_name((grpc_status_code)17), "UNKNOWN_CODE");
  ASSERT_STREQ(prpc_status_name((grpc_status_code)-1), "UNKNOWN_CODE");
  prpc_status st = PRPC_STATUS_INIT;
  st.code = GRPC_STATUS_INTERNAL;
  st.message = strdup("boom");
  prpc_metadata_add_str(&st.trailers, "k", "v");
  prpc_status_clear(&st);
  ASSERT_EQ(st.code, GRPC_STATUS_OK);
  ASSERT(st.message == NULL && st.trailers.count == 0);
  prpc_status_clear(NULL);
}

static void error_strings(void) {
  ASSERT_STREQ(prpc_strerror(0), "success");
  ASSERT_STREQ(prpc_strerror(PRPC_ETARGET), "malformed target");
  ASSERT_STREQ(prpc_strerror(PRPC_EINUSE),
               "a live server owns the socket path");
  ASSERT_STREQ(prpc_strerror(-ENOENT), "No such file or directory");
  ASSERT_STREQ(prpc_strerror(-99999), "unknown error");
  ASSERT_STREQ(prpc_strerror(12345), "unknown error");
  ASSERT_CONTAINS(prpc_version(), PRPC_VERSION_STRING " (gRPC core library 29.");
}

TEST_MAIN(CASE(add_get_clear), CASE(rejects_bad_keys_and_values),
          CASE(status_names), CASE(error_strings))
