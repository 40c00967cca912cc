/* piperpc: method tables and the message codec interface.
 *
 * Generated code (*.prpc.c) fills these tables; applications rarely use them
 * directly. The runtime never knows which protobuf library a message comes
 * from: it encodes and decodes through a prpc_codec. */
#ifndef PRPC_METHOD_H
#define PRPC_METHOD_H

#include <piperpc/piperpc.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI generated code is written against. Bumped when a table changes. */
#define PRPC_GEN_ABI 2

typedef enum prpc_method_kind {
  PRPC_UNARY = 0,
  PRPC_CLIENT_STREAMING = 1,
  PRPC_SERVER_STREAMING = 2,
  PRPC_BIDI_STREAMING = 3
} prpc_method_kind;

/* How deep sub-messages may nest in a message piperpc decodes (requests,
 * replies, streamed messages), as in protobuf's own parsers: a deeper one is
 * refused before it is decoded (INVALID_ARGUMENT on a server, INTERNAL on a
 * client), so that no message can exhaust a thread's stack. */
#define PRPC_MAX_DEPTH 100

/* Where a codec gets memory for decoded messages. Same layout as
 * ProtobufCAllocator. */
typedef struct prpc_allocator {
  void *(*alloc)(void *data, size_t size);
  void (*free)(void *data, void *ptr);
  void *data;
} prpc_allocator;

/* A message codec. 'type' is the library's message descriptor (for
 * protobuf-c a ProtobufCMessageDescriptor). All functions are thread-safe. */
typedef struct prpc_codec {
  const char *name;
  /* Encoded size of msg, or (size_t)-1 if msg cannot be encoded (nanopb: a
   * string not terminated within its max_size, a count over max_count). */
  size_t (*encoded_size)(const void *type, const void *msg);
  /* Encodes msg into out, which has encoded_size() bytes. Returns the number
   * of bytes written, or (size_t)-1 on failure. */
  size_t (*encode)(const void *type, const void *msg, uint8_t *out);
  /* Decodes len bytes into a new message allocated from alloc (NULL: the
   * library's default). Returns NULL if the bytes are not a valid message.
   * NULL for codecs that only decode into caller storage (decode_into). */
  void *(*decode)(const void *type, const uint8_t *data, size_t len,
                  const prpc_allocator *alloc);
  /* Frees a message from decode() with the same allocator. NULL is ok. */
  void (*free)(const void *type, void *msg, const prpc_allocator *alloc);
  /* Size of the message's C struct, and a function that sets a struct of
   * that size to the message's default (INIT) value. */
  size_t (*struct_size)(const void *type);
  void (*init)(const void *type, void *msg);
  /* Optional (NULL for protobuf-c). Codecs with these decode into storage
   * the caller provides and allocate nothing for the message itself; the
   * runtime then uses them instead of decode() and free().
   * decode_into: decodes len bytes into msg, struct_size() bytes that the
   * caller set up (init(), then any decode callbacks it wants called).
   * Returns NULL on success, else a static sentence saying why it failed
   * (msg is then released). */
  const char *(*decode_into)(const void *type, const uint8_t *data,
                             size_t len, void *msg);
  /* Frees what decode_into() allocated inside msg (never msg itself).
   * NULL if nothing ever is. */
  void (*release)(const void *type, void *msg);
  /* The type (as in 'type' above) of the message that field `number` of a
   * message of `type` holds, or NULL when that field is not a message. The
   * runtime walks a received message with it and refuses one that nests
   * deeper than PRPC_MAX_DEPTH before decoding it (decoders recurse). NULL:
   * no such check (only for codecs that bound their own recursion). */
  const void *(*submessage)(const void *type, uint32_t number);
} prpc_codec;

/* The codec for protobuf-c messages. */
PRPC_API extern const prpc_codec prpc_codec_protobuf_c;

/* One rpc of a service. */
typedef struct prpc_method_desc {
  const char *path; /* "/package.Service/Method" */
  prpc_method_kind kind;
  const prpc_codec *codec;
  const void *input;  /* the codec's descriptor of the request message */
  const void *output; /* ... and of the response message */
} prpc_method_desc;

/* One .proto file as protoc saw it, for server reflection: its serialized
 * google.protobuf.FileDescriptorProto (without source_code_info) and the
 * files it imports. Generated code embeds one for each file with services
 * and for everything such a file imports, directly or not. */
typedef struct prpc_file_desc {
  const char *name;    /* "helloworld.proto", as protoc named it */
  const uint8_t *data; /* the serialized FileDescriptorProto */
  size_t len;
  size_t n_deps;
  const struct prpc_file_desc *const *deps; /* its imports, in order */
} prpc_file_desc;

/* One service: its full name and its methods in .proto order. */
typedef struct prpc_service_desc {
  const char *name; /* "package.Service" */
  size_t n_methods;
  const prpc_method_desc *methods;
  /* The file that defines the service (ABI 2); NULL in hand-written tables:
   * reflection then lists the service but has no descriptor for it. */
  const prpc_file_desc *file;
} prpc_service_desc;

/* Calls the application's handler for one method. Generated code writes one
 * per method; it casts impl to the typed handler table. Arguments by kind:
 *   unary             request, reply (reply starts at the message's INIT)
 *   server-streaming  request, reply NULL (send with prpc_ctx_write())
 *   client-streaming  request NULL (read with prpc_ctx_read()), reply
 *   bidi-streaming    request NULL, reply NULL
 * request and reply are borrowed for the duration of the call. Returns the
 * status to send; GRPC_STATUS_OK sends reply (for unary and client-streaming
 * methods). */
typedef grpc_status_code (*prpc_invoke_fn)(const void *impl, prpc_ctx *ctx,
                                           const void *request, void *reply,
                                           void *user_data);

/* Registers a service's handlers. invokers has service->n_methods entries;
 * a NULL entry answers UNIMPLEMENTED.
 *   service            borrowed; must outlive the server (generated tables
 *                      are static).
 *   invokers           copied.
 *   impl, user_data    borrowed; must outlive the server.
 * Before prpc_server_start() only. Returns 0, PRPC_ESTATE (already
 * started), PRPC_EEXIST (a path is already registered), -EINVAL or
 * -ENOMEM. */
PRPC_API PRPC_MUST_CHECK int prpc_server_register(
    prpc_server *server, const prpc_service_desc *service,
    const prpc_invoke_fn *invokers, const void *impl, void *user_data);

/* For codecs with decode_into (nanopb): called with a request the server is
 * about to decode into its own per-call storage (unary and server-streaming
 * methods), after init(), so the application can set decode callbacks
 * (nanopb pb_callback_t fields) that keep data in prpc_ctx_alloc() memory.
 * Generated code writes one per method; it casts impl to the typed table. */
typedef void (*prpc_prepare_fn)(const void *impl, prpc_ctx *ctx,
                                void *request, void *user_data);

/* Flags of prpc_server_register_flags(). */
#define PRPC_ASYNC_HANDLERS 0x1u /* the service's handlers never block: run
                                    its streaming handlers inline, on the
                                    thread that polled the call, as unary
                                    ones are (they use prpc_ctx_send() and
                                    prpc_ctx_read_async(), and return
                                    PRPC_DEFERRED or a status at once);
                                    without it a streaming handler runs on
                                    a pool thread and may block in
                                    prpc_ctx_read()/prpc_ctx_write() */

/* prpc_server_register() with prepare hooks: preparers is NULL or has
 * service->n_methods entries (copied; NULL entries do nothing). */
PRPC_API PRPC_MUST_CHECK int prpc_server_register_ex(
    prpc_server *server, const prpc_service_desc *service,
    const prpc_invoke_fn *invokers, const prpc_prepare_fn *preparers,
    const void *impl, void *user_data);

/* prpc_server_register_ex() with flags (PRPC_ASYNC_HANDLERS). Returns as
 * prpc_server_register(), or -EINVAL for an unknown flag. A service is
 * registered whole or not at all. */
PRPC_API PRPC_MUST_CHECK int prpc_server_register_flags(
    prpc_server *server, const prpc_service_desc *service,
    const prpc_invoke_fn *invokers, const prpc_prepare_fn *preparers,
    const void *impl, void *user_data, unsigned flags);

/* For generated typed wrappers of asynchronous calls: any function
 * pointer, cast back to its own type before it is called. */
typedef void (*prpc_fn)(void);

/* prpc_unary_call_async() (and _into, with reply not NULL) that keeps fn
 * with the call; prpc_call_fn() gives it back in the callback. */
PRPC_API PRPC_MUST_CHECK int prpc_unary_call_async_fn(
    prpc_channel *channel, const prpc_method_desc *method,
    const void *request, const prpc_call_opts *opts, void *reply,
    prpc_unary_done_fn done, prpc_fn fn, void *user_data, prpc_call **out);

/* The fn given to prpc_unary_call_async_fn(), or NULL. */
PRPC_API prpc_fn prpc_call_fn(const prpc_call *call);

#ifdef __cplusplus
}
#endif

#endif /* PRPC_METHOD_H */
