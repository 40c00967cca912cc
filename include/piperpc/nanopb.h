/* piperpc: the nanopb message codec (library piperpc_nanopb).
 *
 * Code generated with --prpc_opt=backend=nanopb uses it; applications use
 * the typed stubs. Messages are nanopb's generated structs: the runtime
 * decodes into storage the caller provides (a reply struct on the client,
 * per-call memory on the server) and encodes from the caller's struct, so no
 * message is allocated on the heap. A field that does not fit its static
 * size (.options max_size, max_count) fails to decode or encode; nothing is
 * truncated. */
#ifndef PRPC_NANOPB_H
#define PRPC_NANOPB_H

#include <pb.h>
#include <piperpc/method.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What a method table points to for a nanopb message: its field
 * descriptors and the size of its struct. Generated, one per type used. */
typedef struct prpc_nanopb_type {
  const pb_msgdesc_t *fields; /* the message's MSG_fields */
  size_t size;                /* sizeof(MSG) */
} prpc_nanopb_type;

/* The codec for nanopb messages; 'type' arguments are prpc_nanopb_type. */
extern const prpc_codec prpc_codec_nanopb;

#ifdef __cplusplus
}
#endif

#endif /* PRPC_NANOPB_H */
