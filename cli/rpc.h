/* prpc: calls with raw message bytes (a pass-through codec), and the
 * reflection client that fills a descriptor pool from a server. */
#ifndef PRPC_CLI_RPC_H
#define PRPC_CLI_RPC_H

#include <piperpc/piperpc.h>

#include "pool.h"

/* A message as its encoded bytes. The raw codec sends and receives these
 * unchanged; decoded ones own their bytes (free with raw_free()). */
typedef struct raw_msg {
  const uint8_t *data;
  size_t len;
} raw_msg;

extern const prpc_codec raw_codec;
void raw_free(raw_msg *m);

/* A method called with raw bytes: path "/pkg.Service/Method". */
prpc_method_desc *raw_method(const char *path, prpc_method_kind kind);

/* The outcome of a reflection request that failed: a gRPC status code and
 * a message (static or owned by the caller: free it). */
typedef struct rpc_error {
  grpc_status_code code;
  char message[512];
} rpc_error;

/* A reflection client over a channel. Tries grpc.reflection.v1 first and
 * falls back to v1alpha when the server answers UNIMPLEMENTED. */
typedef struct refl {
  prpc_channel *ch;
  const prpc_call_opts *opts;
  int version; /* -1: not yet known; 1: v1; 0: v1alpha */
  prpc_method_desc *v1, *v1alpha;
} refl;

void refl_init(refl *r, prpc_channel *ch, const prpc_call_opts *opts);
void refl_destroy(refl *r);
/* The server's services (sorted; caller frees each and the array). Returns
 * 0 or -1 with err. */
int refl_list(refl *r, char ***names, size_t *n, rpc_error *err);
/* Adds to p the file that defines symbol, and the files it imports. */
int refl_load_symbol(refl *r, pool *p, const char *symbol, rpc_error *err);

#endif /* PRPC_CLI_RPC_H */
