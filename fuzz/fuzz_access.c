/* Fuzzes the access-rule parser (transport/access.c): arbitrary rule text,
 * then the parsed rule checked against a peer whose uid and gid come from
 * the input too. A parse either succeeds with a known kind and its text
 * kept for the logs, or fails with -EINVAL or -ENOENT and a reason. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/internal.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  prpc__rule rules[2];
  uint32_t uid = 0, gid = 0;
  size_t matched;
  char *s;
  int rc;
  if (size < 9)
    return 0;
  memcpy(&uid, data + 1, 4);
  memcpy(&gid, data + 5, 4);
  s = malloc(size - 9 + 1);
  if (!s)
    return 0;
  memcpy(s, data + 9, size - 9);
  s[size - 9] = '\0';
  rc = prpc__rule_parse(data[0] & 1, s, &rules[0]);
  if (rc != 0) {
    FUZZ_ASSERT(rc == -EINVAL || rc == -ENOENT);
    FUZZ_ASSERT(prpc_last_error()[0] != '\0');
  } else {
    FUZZ_ASSERT(rules[0].kind == PRPC__RULE_UID ||
                rules[0].kind == PRPC__RULE_GID ||
                rules[0].kind == PRPC__RULE_ANY);
    FUZZ_ASSERT(rules[0].allow == (data[0] & 1));
    FUZZ_ASSERT(memchr(rules[0].text, '\0', sizeof(rules[0].text)) != NULL);
    /* The first matching rule decides; a peer matching none is denied. */
    FUZZ_ASSERT(prpc__rule_parse(!(data[0] & 1), "any", &rules[1]) == 0);
    int allow = prpc__rules_check(rules, 2, (uid_t)uid, (gid_t)gid, &matched);
    FUZZ_ASSERT(matched < 2);
    FUZZ_ASSERT(allow == rules[matched].allow);
    if (rules[0].kind == PRPC__RULE_ANY ||
        (rules[0].kind == PRPC__RULE_UID && rules[0].id == uid))
      FUZZ_ASSERT(matched == 0);
    allow = prpc__rules_check(rules, 1, (uid_t)uid, (gid_t)gid, &matched);
    FUZZ_ASSERT(matched <= 1);
    FUZZ_ASSERT(matched == 1 ? allow == 0 : allow == rules[0].allow);
  }
  gid_t g;
  rc = prpc__group_parse(s, &g);
  FUZZ_ASSERT(rc == 0 || rc == -EINVAL || rc == -ENOENT);
  free(s);
  return 0;
}
