/* This file is private to piperpc: the nesting-depth check that every
 * decode path runs before a message is decoded (runtime/wire_depth.c). */
#ifndef PRPC_WIRE_DEPTH_H
#define PRPC_WIRE_DEPTH_H

#include <piperpc/method.h>
#include <stddef.h>
#include <stdint.h>

enum {
  PRPC__WIRE_OK = 0,
  PRPC__WIRE_TOO_DEEP = -1, /* sub-messages nest deeper than the limit */
  PRPC__WIRE_MALFORMED = -2 /* not a message: the decoder refuses it */
};

/* The type of the sub-message that field `number` of a message of `type`
 * holds, or NULL when that field is not a message (or is unknown). */
typedef const void *(*prpc__wire_sub_fn)(const void *type, uint32_t number);

/* Walks data (a message of `type`) and returns PRPC__WIRE_OK, or
 * PRPC__WIRE_TOO_DEEP when its sub-messages nest more than PRPC_MAX_DEPTH
 * deep, or PRPC__WIRE_MALFORMED. Uses a fixed amount of stack. */
int prpc__wire_depth_check(const void *type, prpc__wire_sub_fn sub,
                           const uint8_t *data, size_t len);

/* The sub-message types of protobuf-c messages (the protobuf-c codec's
 * submessage member), for checks outside the runtime (prpc's descriptor
 * pool). */
const void *prpc__pbc_submessage(const void *type, uint32_t number);

#endif /* PRPC_WIRE_DEPTH_H */
