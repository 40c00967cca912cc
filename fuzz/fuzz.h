/* Shared by the fuzzers: an assertion that stays on in every build type and
 * makes libFuzzer keep the input (it aborts, which libFuzzer reports as a
 * crash with the input saved). */
#ifndef PRPC_FUZZ_H
#define PRPC_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_ASSERT(cond)                                                      \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: FUZZ_ASSERT(%s) failed\n", __FILE__, __LINE__,   \
              #cond);                                                          \
      abort();                                                                 \
    }                                                                          \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#endif /* PRPC_FUZZ_H */
