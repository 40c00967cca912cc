/* Fuzzes the target-string parser (transport/target.c) with arbitrary
 * strings, as a client and as a server would parse them, and checks what a
 * successful parse promises: a known kind, a path within sun_path, a port
 * in range (0 only for a server), NUL-terminated fields; and that a failure
 * says why. */
#include <stdlib.h>
#include <string.h>

#include "../runtime/internal.h"
#include "fuzz.h"

static void check(const char *s, int for_server) {
  prpc__target t;
  int rc = prpc__target_parse(s, for_server, &t);
  if (rc != 0) {
    FUZZ_ASSERT(rc == PRPC_ETARGET);
    FUZZ_ASSERT(strstr(prpc_last_error(), "bad target") != NULL);
    return;
  }
  FUZZ_ASSERT(memchr(t.core, '\0', sizeof(t.core)) != NULL);
  FUZZ_ASSERT(t.core[0] != '\0');
  switch (t.kind) {
  case PRPC__TARGET_UNIX:
  case PRPC__TARGET_ABSTRACT:
    FUZZ_ASSERT(t.path_len > 0 && t.path_len <= PRPC__UNIX_PATH_MAX);
    FUZZ_ASSERT(strlen(t.path) == t.path_len);
    break;
  case PRPC__TARGET_TCP:
    FUZZ_ASSERT(memchr(t.host, '\0', sizeof(t.host)) != NULL);
    FUZZ_ASSERT(t.host[0] != '\0');
    FUZZ_ASSERT(t.port >= (for_server ? 0 : 1) && t.port <= 65535);
    break;
  case PRPC__TARGET_FD:
    FUZZ_ASSERT(t.fd >= 0);
    break;
  default:
    FUZZ_ASSERT(!"unknown target kind");
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  if (!s)
    return 0;
  memcpy(s, data, size);
  s[size] = '\0';
  check(s, 0);
  check(s, 1);
  free(s);
  return 0;
}
