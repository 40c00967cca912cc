/* The one place that calls the parts of the gRPC core API that change
 * between releases: initialisation, channel and server construction,
 * credentials and listeners. Written against gRPC core 1.51 (Debian 12);
 * the build refuses other versions unless PRPC_ALLOW_UNTESTED_GRPC is set.
 * Call and completion-queue functions, stable since 1.0, are used directly
 * by the client and server runtimes. */
#include "../runtime/internal.h"

#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

void prpc__core_ref(void) { grpc_init(); }

void prpc__core_unref(void) { grpc_shutdown(); }

size_t prpc__core_size_args(grpc_arg *args, int max_send, int max_recv,
                            const char *authority, int compression) {
  size_t n = 0;
  if (compression >= 0) {
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)GRPC_COMPRESSION_CHANNEL_DEFAULT_ALGORITHM;
    args[n].value.integer = compression;
    n++;
  }
  if (max_send > 0) {
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[n].value.integer = max_send;
    n++;
  }
  if (max_recv > 0) {
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[n].value.integer = max_recv;
    n++;
  }
  if (authority) {
    args[n].type = GRPC_ARG_STRING;
    args[n].key = (char *)GRPC_ARG_DEFAULT_AUTHORITY;
    args[n].value.string = (char *)authority;
    n++;
  }
  return n;
}

int prpc__core_compression(const char *name, grpc_compression_algorithm *out) {
  if (!name || !grpc_compression_algorithm_parse(
                   grpc_slice_from_static_string(name), out))
    return -EINVAL;
  return 0;
}

/* gRPC core records the flags of the last received message, where
 * GRPC_WRITE_INTERNAL_COMPRESS (0x80000000) or, once the decompression
 * filter has inflated it, GRPC_WRITE_INTERNAL_TEST_ONLY_WAS_COMPRESSED
 * (0x40000000) says it came compressed. The accessor is exported by
 * libgrpc 1.51 but declared only in an internal C++ header, so it is bound
 * here by its C++ symbol name. gRPC C++ reads it the same way for its
 * interop server's expect_compressed checks. */
extern uint32_t prpc__grpc_message_flags(grpc_call *call) __asm__(
    "_Z37grpc_call_test_only_get_message_flagsP9grpc_call");

int prpc__core_last_message_compressed(grpc_call *call) {
  return (prpc__grpc_message_flags(call) & 0xc0000000u) != 0;
}

grpc_channel *prpc__core_channel_create(const prpc__target *t,
                                        const grpc_channel_args *args) {
  grpc_channel_credentials *creds = grpc_insecure_credentials_create();
  grpc_channel *ch;
  if (t->kind == PRPC__TARGET_FD)
    ch = grpc_channel_create_from_fd(t->core, t->fd, creds, args);
  else
    ch = grpc_channel_create(t->core, creds, args);
  grpc_channel_credentials_release(creds);
  return ch;
}

grpc_server *prpc__core_server_create(const grpc_channel_args *args) {
  return grpc_server_create(args, NULL);
}

int prpc__core_server_add_tcp(grpc_server *srv, const char *addr) {
  grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
  int port = grpc_server_add_http2_port(srv, addr, creds);
  grpc_server_credentials_release(creds);
  return port;
}

void prpc__core_server_add_fd(grpc_server *srv, int fd) {
  grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
  grpc_server_add_channel_from_fd(srv, fd, creds);
  grpc_server_credentials_release(creds);
}

gpr_timespec prpc__deadline_from_ms(int64_t timeout_ms) {
  if (timeout_ms <= 0)
    return gpr_inf_future(GPR_CLOCK_MONOTONIC);
  return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                      gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
}

int64_t prpc__ms_until(gpr_timespec deadline) {
  if (gpr_time_cmp(deadline, gpr_inf_future(deadline.clock_type)) == 0)
    return -1;
  gpr_timespec now = gpr_now(deadline.clock_type);
  if (gpr_time_cmp(deadline, now) <= 0)
    return 0;
  gpr_timespec left = gpr_time_sub(deadline, now);
  return (int64_t)left.tv_sec * 1000 + left.tv_nsec / 1000000;
}
