/* The code generator as a library, so that tests and fuzzers can drive it
 * without protoc. */
#ifndef PRPC_GEN_H
#define PRPC_GEN_H

#include <stddef.h>
#include <stdint.h>

/* Decodes a CodeGeneratorRequest and encodes the CodeGeneratorResponse
 * (generated files, or an error message for protoc to print). *resp is
 * malloc'd; the caller frees it. Returns 0, or -1 when out of memory. */
int prpc_gen_run(const uint8_t *req, size_t len, uint8_t **resp,
                 size_t *resp_len);

#endif /* PRPC_GEN_H */
