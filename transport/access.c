/* Access rules for unix-socket peers: the access control list of a named
 * pipe, checked against the kernel's word for who connected. */
#include "../runtime/internal.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int parse_id(const char *s, unsigned long *out) {
  char *end;
  if (!isdigit((unsigned char)*s))
    return -1;
  errno = 0;
  *out = strtoul(s, &end, 10);
  if (errno || *end || *out > UINT_MAX - 1) /* (uid_t)-1 is "no one" */
    return -1;
  return 0;
}

static int lookup_user(const char *name, uid_t *uid) {
  struct passwd pw, *res = NULL;
  char buf[4096];
  if (getpwnam_r(name, &pw, buf, sizeof(buf), &res) != 0 || !res)
    return -1;
  *uid = res->pw_uid;
  return 0;
}

static int lookup_group(const char *name, gid_t *gid) {
  struct group gr, *res = NULL;
  char buf[16384];
  if (getgrnam_r(name, &gr, buf, sizeof(buf), &res) != 0 || !res)
    return -1;
  *gid = res->gr_gid;
  return 0;
}

int prpc__group_parse(const char *s, gid_t *gid) {
  unsigned long id;
  if (!s || !*s)
    return prpc__fail(-EINVAL, "empty group");
  if (parse_id(s, &id) == 0) {
    *gid = (gid_t)id;
    return 0;
  }
  if (lookup_group(s, gid) != 0)
    return prpc__fail(-ENOENT, "no group named '%s'", s);
  return 0;
}

int prpc__rule_parse(int allow, const char *who, prpc__rule *r) {
  unsigned long id;
  const char *arg;
  memset(r, 0, sizeof(*r));
  r->allow = allow != 0;
  if (!who || !*who)
    return prpc__fail(-EINVAL, "empty access rule");
  snprintf(r->text, sizeof(r->text), "%s %s", allow ? "allow" : "deny", who);
  if (strcmp(who, "any") == 0) {
    r->kind = PRPC__RULE_ANY;
    return 0;
  }
  if (strcmp(who, "root") == 0) {
    r->kind = PRPC__RULE_UID;
    r->id = 0;
    return 0;
  }
  if (strcmp(who, "same-user") == 0) {
    r->kind = PRPC__RULE_UID;
    r->id = geteuid();
    return 0;
  }
  if (strncmp(who, "uid:", 4) == 0 || strncmp(who, "gid:", 4) == 0) {
    arg = who + 4;
    if (parse_id(arg, &id) != 0)
      return prpc__fail(-EINVAL, "access rule '%s': '%s' is not a number",
                        who, arg);
    r->kind = who[0] == 'u' ? PRPC__RULE_UID : PRPC__RULE_GID;
    r->id = (uint32_t)id;
    return 0;
  }
  if (strncmp(who, "user:", 5) == 0) {
    uid_t uid;
    arg = who + 5;
    r->kind = PRPC__RULE_UID;
    if (parse_id(arg, &id) == 0) {
      r->id = (uint32_t)id;
      return 0;
    }
    if (!*arg)
      return prpc__fail(-EINVAL, "access rule '%s': empty user", who);
    if (lookup_user(arg, &uid) != 0)
      return prpc__fail(-ENOENT, "access rule '%s': no user named '%s'", who,
                        arg);
    r->id = uid;
    return 0;
  }
  if (strncmp(who, "group:", 6) == 0) {
    gid_t gid;
    int rc;
    arg = who + 6;
    r->kind = PRPC__RULE_GID;
    if ((rc = prpc__group_parse(arg, &gid)) != 0)
      return prpc__fail(rc, "access rule '%s': %s", who,
                        rc == -ENOENT ? "no such group" : "empty group");
    r->id = gid;
    return 0;
  }
  return prpc__fail(-EINVAL,
                    "access rule '%s': use user:, uid:, group:, gid:, "
                    "same-user, root or any",
                    who);
}

/* Is gid the primary or a supplementary group of the peer? */
static int in_group(uid_t uid, gid_t peer_gid, gid_t gid) {
  struct passwd pw, *res = NULL;
  char buf[4096];
  gid_t groups[256];
  int n = 256;
  if (peer_gid == gid)
    return 1;
  if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) != 0 || !res)
    return 0; /* a uid with no user has no supplementary groups */
  if (res->pw_gid == gid)
    return 1;
  if (getgrouplist(res->pw_name, res->pw_gid, groups, &n) < 0)
    n = 256; /* truncated: check what fits */
  for (int i = 0; i < n; i++)
    if (groups[i] == gid)
      return 1;
  return 0;
}

int prpc__rules_check(const prpc__rule *rules, size_t n, uid_t uid,
                      gid_t gid, size_t *matched) {
  for (size_t i = 0; i < n; i++) {
    const prpc__rule *r = &rules[i];
    int hit = r->kind == PRPC__RULE_ANY ||
              (r->kind == PRPC__RULE_UID && r->id == uid) ||
              (r->kind == PRPC__RULE_GID && in_group(uid, gid, r->id));
    if (hit) {
      *matched = i;
      return r->allow;
    }
  }
  *matched = n; /* no rule matched: denied by default */
  return n == 0;
}
