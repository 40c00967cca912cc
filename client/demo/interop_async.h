/* interop_client_async: the interop client's cases over piperpc's
 * asynchronous client API. Included by interop_client.c when built with
 * INTEROP_ASYNC: the blocking calls the cases make are redirected here,
 * where each one starts the asynchronous call (prpc_unary_call_async,
 * prpc_call_start_async, prpc_call_read_async, prpc_call_send,
 * prpc_call_close_send) and waits for its callback. The callbacks run on
 * piperpc's client thread; every message and status crosses to the case's
 * thread as a copy, as an application would take it. */
#ifndef INTEROP_ASYNC_H
#define INTEROP_ASYNC_H

#include <pthread.h>

#include "grpc/testing/test.prpc.h"

typedef struct ia_msg {
  struct ia_msg *next;
  uint8_t *bytes; /* the message, encoded again: the callback's is borrowed */
  size_t len;
  int compressed;
} ia_msg;

typedef struct ia_call {
  prpc_call *call;
  const prpc_method_desc *m;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  ia_msg *head, *tail; /* messages read, not yet taken */
  int reading, ended;  /* a read is on its way; the stream has ended */
  int sent, written, write_failed;
  int have_headers;
  prpc_metadata headers;
  int done;
  prpc_status st;
  uint8_t *reply; /* a unary or client-streaming reply, encoded */
  size_t reply_len;
  int last_compressed;
} ia_call;

static ia_msg *ia_copy(const prpc_method_desc *m, const void *msg) {
  ia_msg *c = calloc(1, sizeof(*c));
  size_t n = m->codec->encoded_size(m->output, msg);
  if (!c || !(c->bytes = malloc(n + 1))) {
    free(c);
    return NULL;
  }
  c->len = m->codec->encode(m->output, msg, c->bytes);
  return c;
}

static void ia_headers(prpc_call *call, const prpc_metadata *h, void *ud) {
  ia_call *a = ud;
  (void)call;
  pthread_mutex_lock(&a->mu);
  for (size_t i = 0; i < h->count; i++)
    prpc_metadata_add(&a->headers, h->items[i].key, h->items[i].value,
                      h->items[i].value_len);
  a->have_headers = 1;
  pthread_cond_broadcast(&a->cv);
  pthread_mutex_unlock(&a->mu);
}

static void ia_read_cb(prpc_call *call, void *msg, void *ud) {
  ia_call *a = ud;
  ia_msg *c = msg ? ia_copy(a->m, msg) : NULL;
  if (c)
    c->compressed = prpc_call_read_compressed(call);
  pthread_mutex_lock(&a->mu);
  a->reading = 0;
  if (c) {
    if (a->tail)
      a->tail->next = c;
    else
      a->head = c;
    a->tail = c;
  } else {
    a->ended = 1;
  }
  pthread_cond_broadcast(&a->cv);
  pthread_mutex_unlock(&a->mu);
}

static void ia_write_cb(prpc_call *call, int ok, void *ud) {
  ia_call *a = ud;
  (void)call;
  pthread_mutex_lock(&a->mu);
  a->written++;
  if (!ok)
    a->write_failed = 1;
  pthread_cond_broadcast(&a->cv);
  pthread_mutex_unlock(&a->mu);
}

/* The end: status and reply copied for the case's thread. */
static void ia_done_cb(prpc_call *call, void *reply, const prpc_status *st,
                       void *ud) {
  ia_call *a = ud;
  (void)call;
  pthread_mutex_lock(&a->mu);
  a->st.code = st->code;
  a->st.message = st->message ? strdup(st->message) : NULL;
  for (size_t i = 0; i < st->headers.count; i++)
    prpc_metadata_add(&a->st.headers, st->headers.items[i].key,
                      st->headers.items[i].value,
                      st->headers.items[i].value_len);
  for (size_t i = 0; i < st->trailers.count; i++)
    prpc_metadata_add(&a->st.trailers, st->trailers.items[i].key,
                      st->trailers.items[i].value,
                      st->trailers.items[i].value_len);
  if (reply) {
    ia_msg *c = ia_copy(a->m, reply);
    if (c) {
      a->reply = c->bytes;
      a->reply_len = c->len;
      free(c);
    }
  }
  a->done = 1;
  a->ended = 1;
  pthread_cond_broadcast(&a->cv);
  pthread_mutex_unlock(&a->mu);
}

static const prpc_call_callbacks ia_callbacks = {
    ia_headers, ia_read_cb, ia_write_cb, ia_done_cb};

static void ia_unary_cb(prpc_call *call, void *reply, const prpc_status *st,
                        void *ud) {
  ia_done_cb(call, reply, st, ud);
}

static ia_call *ia_new(const prpc_method_desc *m) {
  ia_call *a = calloc(1, sizeof(*a));
  if (!a)
    abort();
  a->m = m;
  pthread_mutex_init(&a->mu, NULL);
  pthread_cond_init(&a->cv, NULL);
  return a;
}

/* Hands the end to the caller and frees the adapter. */
static grpc_status_code ia_end(ia_call *a, void **reply, prpc_status *st) {
  grpc_status_code code;
  pthread_mutex_lock(&a->mu);
  while (!a->done)
    pthread_cond_wait(&a->cv, &a->mu);
  pthread_mutex_unlock(&a->mu);
  code = a->st.code;
  if (reply)
    *reply = code == GRPC_STATUS_OK && a->reply
                 ? a->m->codec->decode(a->m->output, a->reply, a->reply_len,
                                       NULL)
                 : NULL;
  if (st) {
    prpc_status_clear(st);
    *st = a->st;
  } else {
    prpc_status_clear(&a->st);
  }
  while (a->head) {
    ia_msg *c = a->head;
    a->head = c->next;
    free(c->bytes);
    free(c);
  }
  prpc_metadata_clear(&a->headers);
  free(a->reply);
  pthread_mutex_destroy(&a->mu);
  pthread_cond_destroy(&a->cv);
  free(a);
  return code;
}

static grpc_status_code ia_unary(prpc_channel *chan,
                                 const prpc_method_desc *m, const void *req,
                                 const prpc_call_opts *o, void **reply,
                                 prpc_status *st) {
  ia_call *a = ia_new(m);
  if (reply)
    *reply = NULL;
  if (prpc_unary_call_async(chan, m, req, o, ia_unary_cb, a, NULL) != 0) {
    free(a);
    if (st) {
      prpc_status_clear(st);
      st->code = GRPC_STATUS_INTERNAL;
      st->message = strdup(prpc_last_error());
    }
    return GRPC_STATUS_INTERNAL;
  }
  return ia_end(a, reply, st);
}

static int ia_start(prpc_channel *chan, const prpc_method_desc *m,
                    const void *req, const prpc_call_opts *o,
                    prpc_call **out) {
  ia_call *a = ia_new(m);
  int rc = prpc_call_start_async(chan, m, req, o, &ia_callbacks, a, &a->call);
  if (rc != 0) {
    free(a);
    return rc;
  }
  *out = (prpc_call *)a; /* the case sees only an opaque handle */
  return 0;
}

static int ia_write_ex(prpc_call *call, const void *msg, unsigned flags) {
  ia_call *a = (ia_call *)call;
  pthread_mutex_lock(&a->mu);
  /* The call is valid until on_done: after it, the stream has ended. */
  int rc = a->done ? PRPC_ECLOSED : prpc_call_send(a->call, msg, flags);
  if (rc != 0) {
    pthread_mutex_unlock(&a->mu);
    return rc;
  }
  int want = ++a->sent;
  while (a->written < want && !a->done)
    pthread_cond_wait(&a->cv, &a->mu);
  rc = a->written >= want && !a->write_failed ? 0 : PRPC_ECLOSED;
  pthread_mutex_unlock(&a->mu);
  return rc;
}

static int ia_write(prpc_call *call, const void *msg) {
  return ia_write_ex(call, msg, 0);
}

static int ia_writes_done(prpc_call *call) {
  ia_call *a = (ia_call *)call;
  pthread_mutex_lock(&a->mu);
  int rc = a->done ? 0 : prpc_call_close_send(a->call);
  pthread_mutex_unlock(&a->mu);
  return rc == PRPC_ECLOSED ? 0 : rc;
}

static int ia_read(prpc_call *call, void **msg) {
  ia_call *a = (ia_call *)call;
  ia_msg *c;
  *msg = NULL;
  pthread_mutex_lock(&a->mu);
  while (!a->head && !a->ended) {
    if (!a->reading && !a->done) {
      a->reading = 1;
      if (prpc_call_read_async(a->call) != 0) {
        a->reading = 0;
        a->ended = 1;
        break;
      }
    }
    pthread_cond_wait(&a->cv, &a->mu);
  }
  c = a->head;
  if (c && !(a->head = c->next))
    a->tail = NULL;
  pthread_mutex_unlock(&a->mu);
  if (!c)
    return 0;
  *msg = a->m->codec->decode(a->m->output, c->bytes, c->len, NULL);
  a->last_compressed = c->compressed;
  free(c->bytes);
  free(c);
  return *msg ? 1 : PRPC_EMSG;
}

static int ia_read_compressed(const prpc_call *call) {
  return ((const ia_call *)call)->last_compressed;
}

static int ia_headers_wait(prpc_call *call, const prpc_metadata **headers) {
  ia_call *a = (ia_call *)call;
  pthread_mutex_lock(&a->mu);
  while (!a->have_headers && !a->done)
    pthread_cond_wait(&a->cv, &a->mu);
  pthread_mutex_unlock(&a->mu);
  *headers = &a->headers;
  return 0;
}

static void ia_cancel(prpc_call *call) {
  ia_call *a = (ia_call *)call;
  pthread_mutex_lock(&a->mu);
  if (!a->done)
    prpc_call_cancel(a->call); /* valid until on_done */
  pthread_mutex_unlock(&a->mu);
}

static grpc_status_code ia_finish(prpc_call *call, void **reply,
                                  prpc_status *st) {
  ia_call *a = (ia_call *)call;
  pthread_mutex_lock(&a->mu);
  if (a->m->kind == PRPC_CLIENT_STREAMING && !a->done)
    prpc_call_close_send(a->call); /* as prpc_call_finish() does; the call
                                    * is valid until on_done */
  pthread_mutex_unlock(&a->mu);
  return ia_end(a, reply, st);
}

/* The typed wrappers the cases call, on top of these. */
#define TSA(name)                                                              \
  method(&grpc__testing__test_service__prpc_service, name)
#define grpc__testing__test_service_client__empty_call(ch, req, o, rep, st)    \
  ia_unary(ch, TSA("EmptyCall"), req, o, (void **)(rep), st)
#define grpc__testing__test_service_client__unary_call(ch, req, o, rep, st)    \
  ia_unary(ch, TSA("UnaryCall"), req, o, (void **)(rep), st)
#define grpc__testing__test_service_client__streaming_input_call_start(ch, o,  \
                                                                       call)   \
  ia_start(ch, TSA("StreamingInputCall"), NULL, o, call)
#define grpc__testing__test_service_client__streaming_input_call_finish(       \
    call, rep, st)                                                             \
  ia_finish(call, (void **)(rep), st)
#define grpc__testing__test_service_client__streaming_output_call_start(       \
    ch, req, o, call)                                                          \
  ia_start(ch, TSA("StreamingOutputCall"), req, o, call)
#define grpc__testing__test_service_client__streaming_output_call_read(call,   \
                                                                       msg)    \
  ia_read(call, (void **)(msg))
#define grpc__testing__test_service_client__full_duplex_call_start(ch, o,      \
                                                                   call)       \
  ia_start(ch, TSA("FullDuplexCall"), NULL, o, call)
#define grpc__testing__test_service_client__full_duplex_call_write(call, msg)  \
  ia_write(call, msg)
#define grpc__testing__test_service_client__full_duplex_call_read(call, msg)   \
  ia_read(call, (void **)(msg))
#define prpc_call_start ia_start
#define prpc_call_read ia_read
#define prpc_call_write_ex ia_write_ex
#define prpc_call_writes_done ia_writes_done
#define prpc_call_finish ia_finish
#define prpc_call_cancel ia_cancel
#define prpc_call_headers ia_headers_wait
#define prpc_call_read_compressed ia_read_compressed
#define prpc_unary_call ia_unary

#endif /* INTEROP_ASYNC_H */
