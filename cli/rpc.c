/* prpc: calls with the raw codec, and the reflection client. */
#include "rpc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

prpc_method_desc *raw_method(const char *path, prpc_method_kind kind) {
  prpc_method_desc *m = calloc(1, sizeof(*m) + strlen(path) + 1);
  if (!m) abort();
  char *p = (char *)(m + 1);
  strcpy(p, path);
  m->path = p;
  m->kind = kind;
  m->codec = &raw_codec;
  return m;
}

/* ---- reflection ---- */

/* ServerReflectionRequest / ServerReflectionResponse field numbers; the
 * same in grpc.reflection.v1 and v1alpha. */
enum {
  REQ_FILE_BY_FILENAME = 3,
  REQ_FILE_CONTAINING_SYMBOL = 4,
  REQ_LIST_SERVICES = 7,
  RESP_FILE_DESCRIPTOR = 4,
  RESP_LIST_SERVICES = 6,
  RESP_ERROR = 7
};

void refl_init(refl *r, prpc_channel *ch, const prpc_call_opts *opts) {
  memset(r, 0, sizeof(*r));
  r->ch = ch;
  r->opts = *opts;
  if (r->opts.timeout_ms <= 0)
    r->opts.timeout_ms = REFL_TIMEOUT_MS;
  r->version = -1;
  r->v1 = raw_method("/grpc.reflection.v1.ServerReflection/"
                     "ServerReflectionInfo", PRPC_BIDI_STREAMING);
  r->v1alpha = raw_method("/grpc.reflection.v1alpha.ServerReflection/"
                          "ServerReflectionInfo", PRPC_BIDI_STREAMING);
}

void refl_destroy(refl *r) {
  free(r->v1);
  free(r->v1alpha);
}

static void set_err(rpc_error *e, grpc_status_code code, const char *msg) {
  e->code = code;
  snprintf(e->message, sizeof(e->message), "%s", msg ? msg : "");
}

/* One request, one response, over a stream of its own. */
static int exchange_on(refl *r, prpc_method_desc *m, const wbuf *req,
                       raw_msg **resp, rpc_error *err) {
  prpc_call *call;
  prpc_status st = PRPC_STATUS_INIT;
  raw_msg in = {req->data, req->len};
  *resp = NULL;
  if (++r->requests > REFL_MAX_REQUESTS) {
    set_err(err, GRPC_STATUS_RESOURCE_EXHAUSTED,
            "the server's reflection took more than " PRPC_CLI_STR(
                REFL_MAX_REQUESTS) " requests; giving up");
    return -1;
  }
  if (prpc_call_start(r->ch, m, NULL, &r->opts, &call) != 0) {
    set_err(err, GRPC_STATUS_INTERNAL, prpc_last_error());
    return -1;
  }
  void *got = NULL;
  if (prpc_call_write(call, &in) == 0 && prpc_call_writes_done(call) == 0 &&
      prpc_call_read(call, &got) == 1)
    *resp = got;
  grpc_status_code code = prpc_call_finish(call, NULL, &st);
  if (code != GRPC_STATUS_OK || !*resp) {
    free(*resp);
    *resp = NULL;
    if (code == GRPC_STATUS_OK) {
      code = GRPC_STATUS_INTERNAL;
      set_err(err, code, "the reflection service sent no response");
    } else {
      set_err(err, code, st.message);
    }
    prpc_status_clear(&st);
    return -1;
  }
  prpc_status_clear(&st);
  return 0;
}

static int exchange(refl *r, const wbuf *req, raw_msg **resp,
                    rpc_error *err) {
  if (r->version == 1) return exchange_on(r, r->v1, req, resp, err);
  if (r->version == 0) return exchange_on(r, r->v1alpha, req, resp, err);
  if (exchange_on(r, r->v1, req, resp, err) == 0) {
    r->version = 1;
    return 0;
  }
  if (err->code != GRPC_STATUS_UNIMPLEMENTED) return -1;
  if (exchange_on(r, r->v1alpha, req, resp, err) == 0) {
    r->version = 0;
    return 0;
  }
  if (err->code == GRPC_STATUS_UNIMPLEMENTED)
    set_err(err, err->code,
            "the server has no reflection service (grpc.reflection.v1 or "
            "v1alpha); give the descriptors with --proto-set");
  return -1;
}

/* The response's error_response, if any, into err. Returns 1 if there was
 * one. */
static int response_error(const wfield *f, rpc_error *err) {
  wreader r = {f->data, f->data + f->len};
  wfield g;
  grpc_status_code code = GRPC_STATUS_UNKNOWN;
  char msg[400] = "";
  while (wr_field(&r, &g) == 1) {
    if (g.number == 1 && g.wt == WT_VARINT)
      code = (grpc_status_code)(int32_t)g.v;
    else if (g.number == 2 && g.wt == WT_LEN)
      snprintf(msg, sizeof(msg), "%.*s", (int)g.len, (const char *)g.data);
  }
  set_err(err, code, msg);
  return 1;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int refl_list(refl *r, char ***names, size_t *n, rpc_error *err) {
  wbuf req = {0};
  raw_msg *resp;
  wbuf_bytes(&req, REQ_LIST_SERVICES, "*", 1);
  int rc = exchange(r, &req, &resp, err);
  wbuf_free(&req);
  if (rc) return -1;
  *names = NULL;
  *n = 0;
  wreader rd = {resp->data, resp->data + resp->len};
  wfield f;
  int found = 0;
  rc = 0;
  while (rc == 0 && wr_field(&rd, &f) == 1) {
    if (f.wt != WT_LEN) continue;
    if (f.number == RESP_ERROR) {
      response_error(&f, err);
      rc = -1;
    } else if (f.number == RESP_LIST_SERVICES) {
      found = 1;
      wreader sr = {f.data, f.data + f.len};
      wfield s;
      while (wr_field(&sr, &s) == 1) {
        if (s.number != 1 || s.wt != WT_LEN) continue;
        wreader nr = {s.data, s.data + s.len};
        wfield nm;
        while (wr_field(&nr, &nm) == 1) {
          if (nm.number != 1 || nm.wt != WT_LEN) continue;
          char **a = realloc(*names, (*n + 1) * sizeof(*a));
          if (!a) abort();
          *names = a;
          a[*n] = strndup((const char *)nm.data, nm.len);
          if (!a[(*n)++]) abort();
        }
      }
    }
  }
  free(resp);
  if (rc == 0 && !found) {
    set_err(err, GRPC_STATUS_INTERNAL,
            "the reflection response has no service list");
    rc = -1;
  }
  if (rc == 0 && *n) qsort(*names, *n, sizeof(**names), cmp_str);
  return rc;
}

/* Sends one file request; adds the files of the answer to p. */
static int load_files(refl *r, pool *p, int what, const char *name,
                      rpc_error *err) {
  wbuf req = {0};
  raw_msg *resp;
  wbuf_bytes(&req, (uint32_t)what, name, strlen(name));
  int rc = exchange(r, &req, &resp, err);
  wbuf_free(&req);
  if (rc) return -1;
  wreader rd = {resp->data, resp->data + resp->len};
  wfield f;
  int found = 0;
  while (rc == 0 && wr_field(&rd, &f) == 1) {
    if (f.wt != WT_LEN) continue;
    if (f.number == RESP_ERROR) {
      response_error(&f, err);
      rc = -1;
    } else if (f.number == RESP_FILE_DESCRIPTOR) {
      found = 1;
      wreader fr = {f.data, f.data + f.len};
      wfield fd;
      while (rc == 0 && wr_field(&fr, &fd) == 1) {
        if (fd.number != 1 || fd.wt != WT_LEN)
          continue;
        if (++r->files > REFL_MAX_FILES ||
            (r->bytes += fd.len) > REFL_MAX_BYTES) {
          set_err(err, GRPC_STATUS_RESOURCE_EXHAUSTED,
                  "the server's reflection sent more than "
                  PRPC_CLI_STR(REFL_MAX_FILES) " files or 32 MiB of "
                  "descriptors; giving up");
          rc = -1;
          break;
        }
        int added = prpc__pool_add_file(p, fd.data, fd.len);
        if (added != 0) {
          set_err(err, GRPC_STATUS_INTERNAL,
                  added == POOL_TOO_DEEP
                      ? "the server sent a FileDescriptorProto that nests "
                        "more than 100 messages deep"
                      : "the server sent a FileDescriptorProto that does not "
                        "decode");
          rc = -1;
        }
      }
    }
  }
  free(resp);
  if (rc == 0 && !found) {
    set_err(err, GRPC_STATUS_INTERNAL,
            "the reflection response has no file descriptors");
    rc = -1;
  }
  return rc;
}

/* Fetches, by name, the imports of the pool's files that are missing. */
static int load_imports(refl *r, pool *p, rpc_error *err) {
  for (size_t i = 0; i < p->n_files; i++) { /* n_files grows as we go */
    const pb_file *f = p->files[i];
    for (size_t j = 0; j < f->n_dependency; j++) {
      if (prpc__pool_has_file(p, f->dependency[j])) continue;
      /* A file the server does not have is only a problem if a type
       * from it is used; the transcoder names that type then. */
      if (load_files(r, p, REQ_FILE_BY_FILENAME, f->dependency[j], err) &&
          err->code != GRPC_STATUS_NOT_FOUND)
        return -1;
      f = p->files[i]; /* the array may have moved */
    }
  }
  return 0;
}

int refl_load_symbol(refl *r, pool *p, const char *symbol, rpc_error *err) {
  if (load_files(r, p, REQ_FILE_CONTAINING_SYMBOL, symbol, err)) return -1;
  return load_imports(r, p, err);
}
