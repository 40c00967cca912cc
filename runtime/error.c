/* API results, status names, the version string. */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[512];
static _Thread_local int frozen;

int prpc__fail(int err, const char *fmt, ...) {
  va_list ap;
  if (frozen)
    return err;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof(last_error), fmt, ap);
  va_end(ap);
  return err;
}

void prpc__clear_error(void) {
  if (!frozen)
    last_error[0] = '\0';
}

void prpc__error_freeze(void) { frozen++; }

void prpc__error_thaw(void) { frozen--; }

const char *prpc_last_error(void) { return last_error; }

const char *prpc_strerror(int err) {
  switch (err) {
  case 0:
    return "success";
  case PRPC_ETARGET:
    return "malformed target";
  case PRPC_ESTATE:
    return "operation not valid in this state";
  case PRPC_ECORE:
    return "gRPC core refused the request";
  case PRPC_EEXIST:
    return "method already registered";
  case PRPC_ECLOSED:
    return "call or server has ended";
  case PRPC_EMSG:
    return "message could not be encoded or decoded";
  case PRPC_EINUSE:
    return "a live server owns the socket path";
  default:
    break;
  }
  if (err < 0 && err > -4096)
    return strerror(-err); /* glibc: static strings for known errnos */
  return "unknown error";
}

static const char *const status_names[] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

const char *prpc_status_name(grpc_status_code code) {
  if ((int)code < 0 ||
      (size_t)code >= sizeof(status_names) / sizeof(status_names[0]))
    return "UNKNOWN_CODE";
  return status_names[code];
}

static char version_buf[64];

static void make_version(void) {
  snprintf(version_buf, sizeof(version_buf), "%s (gRPC core library %s)",
           PRPC_VERSION_STRING, grpc_version_string());
}

const char *prpc_version(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, make_version);
  return version_buf;
}
