/* kvctl: the client of kvd.
 *   kvctl TARGET get KEY           prints the value (exit 1: NOT_FOUND)
 *   kvctl TARGET put KEY VALUE
 *   kvctl TARGET watch KEY         a line per event, until the daemon ends
 *                                  the stream; its status goes to stderr
 *   kvctl TARGET load N [SIZE [KEY]]
 *                                  streams N entries (key-000001... or all
 *                                  to KEY, values of SIZE bytes) in one Load
 *                                  call; prints the count and the time */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv.prpc.h"

static int usage(void) {
  fprintf(stderr, "usage: kvctl TARGET get KEY | put KEY VALUE | watch KEY |"
                  " load N [SIZE [KEY]]\n");
  return 2;
}

/* Prints how a call failed; returns 1. */
static int failed(const char *what, grpc_status_code code,
                  const prpc_status *st) {
  fprintf(stderr, "kvctl: %s: %s: %s\n", what, prpc_status_name(code),
          st->message ? st->message : "");
  return 1;
}

static int get(prpc_channel *ch, const char *key) {
  prpc_call_opts opts = PRPC_CALL_OPTS_INIT;
  prpc_status st = PRPC_STATUS_INIT;
  Kv__Key req = KV__KEY__INIT;
  Kv__Entry *entry;
  opts.timeout_ms = 5000;
  req.key = (char *)key;
  grpc_status_code code = kv__store_client__get(ch, &req, &opts, &entry, &st);
  int rc = 0;
  if (code == GRPC_STATUS_OK) {
    printf("%s\n", entry->value);
    kv__entry__free_unpacked(entry, NULL);
  } else {
    rc = failed(key, code, &st);
  }
  prpc_status_clear(&st);
  return rc;
}

static int put(prpc_channel *ch, const char *key, const char *value) {
  prpc_call_opts opts = PRPC_CALL_OPTS_INIT;
  prpc_status st = PRPC_STATUS_INIT;
  Kv__Entry req = KV__ENTRY__INIT;
  opts.timeout_ms = 5000;
  req.key = (char *)key;
  req.value = (char *)value;
  /* The reply is a google.protobuf.Empty: NULL drops it. */
  grpc_status_code code = kv__store_client__put(ch, &req, &opts, NULL, &st);
  int rc = code == GRPC_STATUS_OK ? 0 : failed(key, code, &st);
  prpc_status_clear(&st);
  return rc;
}

/* Exit status 0 once the daemon answered (the current entry came first),
 * whatever status it ended the stream with; 1 if it never answered. */
static int watch(prpc_channel *ch, const char *key) {
  prpc_status st = PRPC_STATUS_INIT;
  Kv__Key req = KV__KEY__INIT;
  Kv__Entry *entry;
  prpc_call *call;
  int events = 0;
  req.key = (char *)key;
  if (kv__store_client__watch_start(ch, &req, NULL, &call) != 0) {
    fprintf(stderr, "kvctl: %s\n", prpc_last_error());
    return 1;
  }
  while (kv__store_client__watch_read(call, &entry) == 1) {
    if (entry->version == 0)
      printf("%s: (none)\n", entry->key);
    else
      printf("%s = %s (version %llu)\n", entry->key, entry->value,
             (unsigned long long)entry->version);
    fflush(stdout); /* a line as it happens, also into a pipe */
    kv__entry__free_unpacked(entry, NULL);
    events++;
  }
  grpc_status_code code = prpc_call_finish(call, NULL, &st);
  fprintf(stderr, "kvctl: watch %s ended: %s: %s\n", key,
          prpc_status_name(code), st.message ? st.message : "");
  prpc_status_clear(&st);
  return events > 0 ? 0 : 1;
}

static int load(prpc_channel *ch, long n, long size, const char *key) {
  prpc_status st = PRPC_STATUS_INIT;
  Kv__LoadReply *reply;
  prpc_call *call;
  struct timespec t0, t1;
  char name[32];
  char *value;
  if (size < 0)
    size = 0;
  if (!(value = malloc((size_t)size + 1)))
    return 1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  if (kv__store_client__load_start(ch, NULL, &call) != 0) {
    fprintf(stderr, "kvctl: %s\n", prpc_last_error());
    free(value);
    return 1;
  }
  for (long i = 1; i <= n; i++) {
    Kv__Entry entry = KV__ENTRY__INIT;
    snprintf(name, sizeof(name), "key-%06ld", i);
    /* The value says which entry it is, padded to size with '.'. */
    int len = snprintf(value, (size_t)size + 1, "value-%ld", i);
    if (len < size)
      memset(value + len, '.', (size_t)(size - len));
    value[size] = '\0';
    entry.key = key ? (char *)key : name;
    entry.value = value;
    /* Blocks while flow control holds the stream back. */
    if (kv__store_client__load_write(call, &entry) != 0)
      break; /* the call ended: finish tells why */
  }
  free(value);
  grpc_status_code code = kv__store_client__load_finish(call, &reply, &st);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  int rc = 0;
  if (code == GRPC_STATUS_OK) {
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
                (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    printf("loaded %llu entries in %.0f ms\n",
           (unsigned long long)reply->count, ms);
    kv__load_reply__free_unpacked(reply, NULL);
  } else {
    rc = failed("load", code, &st);
  }
  prpc_status_clear(&st);
  return rc;
}

int main(int argc, char **argv) {
  prpc_channel *ch;
  int rc;
  if (argc < 4)
    return usage();
  const char *cmd = argv[2];
  if (prpc_channel_create(argv[1], NULL, &ch) != 0) {
    fprintf(stderr, "kvctl: %s\n", prpc_last_error());
    return 1;
  }
  if (strcmp(cmd, "get") == 0 && argc == 4)
    rc = get(ch, argv[3]);
  else if (strcmp(cmd, "put") == 0 && argc == 5)
    rc = put(ch, argv[3], argv[4]);
  else if (strcmp(cmd, "watch") == 0 && argc == 4)
    rc = watch(ch, argv[3]);
  else if (strcmp(cmd, "load") == 0 && argc >= 4 && argc <= 6)
    rc = load(ch, atol(argv[3]), argc > 4 ? atol(argv[4]) : 16,
              argc > 5 ? argv[5] : NULL);
  else
    rc = usage();
  prpc_channel_destroy(ch);
  return rc;
}
