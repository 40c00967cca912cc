/* prpc: calls with raw message bytes (a pass-through codec), and the
 * reflection client that fills a descriptor pool from a server. */
#ifndef PRPC_CLI_RPC_H
#define PRPC_CLI_RPC_H

#include <piperpc/piperpc.h>

#include "pool.h"

/* Messages as their encoded bytes (raw_msg); decoded ones are one
 * malloc() block each: free with free(). */
#include "../runtime/raw_codec.h"

/* A method called with raw bytes: path "/pkg.Service/Method". */
prpc_method_desc *raw_method(const char *path, prpc_method_kind kind);

/* The outcome of a reflection request that failed: a gRPC status code and
 * a message (static or owned by the caller: free it). */
typedef struct rpc_error {
  grpc_status_code code;
  char message[512];
} rpc_error;

/* What a reflection server may make prpc do, at most: requests sent, files
 * loaded and their bytes (a hostile server can answer every file with one
 * that imports another), and how long each request may take when the user
 * gave no deadline. */
#define REFL_MAX_REQUESTS 1000
#define REFL_MAX_FILES 1000
#define REFL_MAX_BYTES (32u << 20)
#define REFL_TIMEOUT_MS 5000
#define PRPC_CLI_STR2(x) #x
#define PRPC_CLI_STR(x) PRPC_CLI_STR2(x)

/* A reflection client over a channel. Tries grpc.reflection.v1 first and
 * falls back to v1alpha when the server answers UNIMPLEMENTED. */
typedef struct refl {
  prpc_channel *ch;
  prpc_call_opts opts; /* the caller's, with a deadline always */
  int version;         /* -1: not yet known; 1: v1; 0: v1alpha */
  prpc_method_desc *v1, *v1alpha;
  size_t requests, files, bytes; /* so far, against the limits above */
} refl;

void refl_init(refl *r, prpc_channel *ch, const prpc_call_opts *opts);
void refl_destroy(refl *r);
/* The server's services (sorted; caller frees each and the array). Returns
 * 0 or -1 with err. */
int refl_list(refl *r, char ***names, size_t *n, rpc_error *err);
/* Adds to p the file that defines symbol, and the files it imports. */
int refl_load_symbol(refl *r, pool *p, const char *symbol, rpc_error *err);

#endif /* PRPC_CLI_RPC_H */
