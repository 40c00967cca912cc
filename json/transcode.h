/* Protobuf wire format <-> JSON (proto3 JSON mapping), driven by the
 * message descriptors of a pool at run time: the one transcoder of the
 * code base, used by the server's HTTP front end (server/http.c) and by
 * prpc. */
#ifndef PRPC_JSON_TRANSCODE_H
#define PRPC_JSON_TRANSCODE_H

#include <jansson.h>
#include <stdio.h>

#include <piperpc/piperpc.h>

#include "pool.h"
#include "wire.h"

/* Encodes a JSON object as message msg (a SYM_MESSAGE symbol) into out.
 * The pool may grow: a google.protobuf.Any's type is looked up with
 * prpc__pool_resolve(). Returns 0, or -1 with a sentence in err naming the field, e.g.
 * 'field "name": expected a string, got a number'. */
int prpc__tc_encode(pool *p, const pool_sym *msg, json_t *in, wbuf *out,
              char *err, size_t errlen);

/* The next of a stream of JSON values (newline-delimited or not) in
 * text[*off, len), encoded as message msg into out (empty). Returns 1 with
 * *off past it; 0 when no complete value is there (more may come, unless
 * eof); or -1 with err: "bad JSON: ..." or the encoder's sentence. */
int prpc__tc_encode_next(pool *p, const pool_sym *msg, const char *text,
                         size_t len, size_t *off, int eof, wbuf *out,
                         char *err, size_t errlen);

/* Decodes len bytes of message msg into a new JSON object (lowerCamelCase
 * names, default values left out, 64-bit integers as strings, bytes as
 * base64, enums by name). Returns NULL with err set when the bytes are not
 * a valid message of that type. */
json_t *prpc__tc_decode(pool *p, const pool_sym *msg, const uint8_t *data,
                  size_t len, char *err, size_t errlen);

/* Writes a JSON value: compact on one line, or indented by 2 when pretty.
 * Strings are escaped as jansson escapes them; numbers are printed with the fewest
 * digits that read back to the same double. Returns 0 or -1. */
int prpc__tc_print(FILE *out, const json_t *v, int pretty);

/* Base64 (RFC 4648). prpc__tc_b64_decode accepts the standard and the URL-safe
 * alphabet, with or without padding; returns 0 or -1. */
char *prpc__tc_b64_encode(const uint8_t *data, size_t len);
int prpc__tc_b64_decode(const char *s, size_t slen, wbuf *out);

/* Metadata as text (HTTP headers, prpc's -H and -v): the values of keys
 * ending in "-bin" are bytes, written in base64, as gRPC writes them.
 * prpc__tc_md_text: the value of e as text, malloc'd (NULL: no memory).
 * prpc__tc_md_add_text: adds key with the value text stands for; 0,
 * -EILSEQ (a -bin value that is not base64), or prpc_metadata_add()'s
 * error. */
int prpc__tc_md_is_bin(const char *key);
char *prpc__tc_md_text(const prpc_md *e);
int prpc__tc_md_add_text(prpc_metadata *md, const char *key,
                         const char *text);

#endif /* PRPC_JSON_TRANSCODE_H */
