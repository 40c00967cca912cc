/* A tiny test harness: each test program holds a table of cases and runs
 * the one named on its command line (ctest runs each case as its own test),
 * or all of them with no argument. */
#ifndef PRPC_TEST_H
#define PRPC_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAIL_AT(file, line, ...)                                               \
  do {                                                                         \
    fprintf(stderr, "%s:%d: ", file, line);                                    \
    fprintf(stderr, __VA_ARGS__);                                              \
    fprintf(stderr, "\n");                                                     \
    exit(1);                                                                   \
  } while (0)

#define ASSERT(cond)                                                           \
  do {                                                                         \
    if (!(cond))                                                               \
      FAIL_AT(__FILE__, __LINE__, "ASSERT(%s) failed", #cond);                 \
  } while (0)

#define ASSERT_EQ(a, b)                                                        \
  do {                                                                         \
    long long a_ = (long long)(a), b_ = (long long)(b);                        \
    if (a_ != b_)                                                              \
      FAIL_AT(__FILE__, __LINE__, "%s == %s failed: %lld != %lld", #a, #b, a_, \
              b_);                                                             \
  } while (0)

#define ASSERT_STREQ(a, b)                                                     \
  do {                                                                         \
    const char *a_ = (a), *b_ = (b);                                           \
    if (!a_ || !b_ || strcmp(a_, b_) != 0)                                     \
      FAIL_AT(__FILE__, __LINE__, "%s == %s failed: \"%s\" != \"%s\"", #a, #b, \
              a_ ? a_ : "(null)", b_ ? b_ : "(null)");                         \
  } while (0)

#define ASSERT_CONTAINS(hay, needle)                                           \
  do {                                                                         \
    const char *h_ = (hay), *n_ = (needle);                                    \
    if (!h_ || !strstr(h_, n_))                                                \
      FAIL_AT(__FILE__, __LINE__, "\"%s\" does not contain \"%s\"",            \
              h_ ? h_ : "(null)", n_);                                         \
  } while (0)

typedef struct test_case {
  const char *name;
  void (*fn)(void);
} test_case;

#define TEST_MAIN(...)                                                         \
  int main(int argc, char **argv) {                                            \
    static const test_case cases[] = {__VA_ARGS__};                            \
    size_t n = sizeof(cases) / sizeof(cases[0]);                               \
    int ran = 0;                                                               \
    for (size_t i = 0; i < n; i++) {                                           \
      if (argc > 1 && strcmp(argv[1], cases[i].name) != 0)                     \
        continue;                                                              \
      fprintf(stderr, "-- %s\n", cases[i].name);                               \
      cases[i].fn();                                                           \
      ran++;                                                                   \
    }                                                                          \
    if (ran == 0) {                                                            \
      fprintf(stderr, "no case named %s\n", argc > 1 ? argv[1] : "");          \
      return 2;                                                                \
    }                                                                          \
    return 0;                                                                  \
  }

#define CASE(fn) {#fn, fn}

#endif /* PRPC_TEST_H */
