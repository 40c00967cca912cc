/* The C snippets of docs/guide.md that are not whole programs, in
 * programs: the docs pages show them as <!-- excerpt: tests/docs_snippets.c -->
 * (tests/readme_check.py checks that they are verbatim pieces of this
 * file), the build compiles them and the ctest docs.snippets runs them:
 *   docs_snippets BIN_DIR DIR
 * BIN_DIR holds greeter_server; DIR is a fresh directory for sockets. */
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helloworld.prpc.h"

static grpc_status_code say_hello(prpc_ctx *ctx,
                                  const Helloworld__HelloRequest *request,
                                  Helloworld__HelloReply *reply,
                                  void *user_data) {
  (void)user_data;
  reply->message = prpc_ctx_strdup(ctx, request->name);
  return GRPC_STATUS_OK;
}

static int fail(const char *what) {
  fprintf(stderr, "docs_snippets: %s: %s\n", what, prpc_last_error());
  return 1;
}

/* docs/guide.md, "Named pipes": socket mode, group, limit and rules. */
static int access_rules(const char *target) {
  prpc_server *server;
  struct stat st;
  int rc = 0;
  /* snippet: access rules */
  prpc_server_opts opts = PRPC_SERVER_OPTS_INIT;
  opts.socket_mode = 0660;          /* default 0600 */
  opts.socket_group = "adm";        /* group of the socket file */
  opts.max_connections = 64;        /* like maxNumberOfServerInstances */
  if (prpc_server_create(&opts, &server) != 0 ||
      prpc_server_add_rule(server, 0, "uid:65534") != 0 || /* deny nobody */
      prpc_server_add_rule(server, 1, "same-user") != 0 || /* allow our user */
      prpc_server_add_rule(server, 1, "group:adm") != 0)   /* and adm */
    return fail("server");
  /* end of snippet */
  if (prpc_server_add_listener(server, target, NULL) != 0)
    rc = fail("add_listener");
  else if (stat(target + strlen("unix:"), &st) != 0 ||
           (st.st_mode & 0777) != 0660)
    rc = fail("socket mode");
  prpc_server_destroy(server);
  return rc;
}

/* docs/guide.md, "Reflection": health and reflection next to a service. */
static int reflection(const char *target) {
  static const Helloworld__GreeterServer impl = {say_hello};
  prpc_server *server;
  int rc = 0;
  if (prpc_server_create(NULL, &server) != 0 ||
      prpc_server_add_listener(server, target, NULL) != 0)
    return fail("server");
  /* snippet: reflection */
  if (helloworld__greeter_server__register(server, &impl, NULL) != 0 ||
      prpc_server_enable_health(server) != 0 ||
      prpc_server_enable_reflection(server) != 0)   /* before start */
    fprintf(stderr, "%s\n", prpc_last_error());
  /* end of snippet */
  else if (prpc_server_start(server) != 0)
    rc = fail("start");
  prpc_server_destroy(server);
  return rc;
}

/* docs/guide.md, "Anonymous pipes": a child server on fd 3. */
static int spawn_child(const char *greeter_server) {
  prpc_channel *channel;
  int wstatus = -1;
  Helloworld__HelloRequest req = HELLOWORLD__HELLO_REQUEST__INIT;
  Helloworld__HelloReply *reply = NULL;
  grpc_status_code code;
  /* snippet: spawn */
  char *argv[] = {"greeter_server", "--listen", "fd:3", NULL};
  prpc_child *child;
  if (prpc_spawn(greeter_server, argv, NULL, &child) != 0 ||
      prpc_channel_create(prpc_child_target(child), NULL, &channel) != 0)
    return fail("spawn"); /* the channel's target: "fd:N" */
  /* ... calls; if the child crashes they end with UNAVAILABLE at once ... */
  /* end of snippet */
  req.name = "child";
  code = helloworld__greeter_client__say_hello(channel, &req, NULL, &reply,
                                               NULL);
  if (code == GRPC_STATUS_OK)
    protobuf_c_message_free_unpacked(&reply->base, NULL);
  prpc_channel_destroy(channel); /* the child's server sees the hang-up */
  prpc_child_kill(child, SIGTERM);
  /* snippet: spawn end */
  prpc_child_wait(child, 5000, &wstatus);   /* its exit status */
  prpc_child_destroy(child);
  /* end of snippet */
  if (code != GRPC_STATUS_OK)
    return fail("call to the child");
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    fprintf(stderr, "docs_snippets: child status %d\n", wstatus);
    return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  char target[512], path[512];
  if (argc != 3) {
    fprintf(stderr, "usage: docs_snippets BIN_DIR DIR\n");
    return 2;
  }
  snprintf(path, sizeof(path), "%s/greeter_server", argv[1]);
  snprintf(target, sizeof(target), "unix:%s/rules.sock", argv[2]);
  if (access_rules(target) != 0)
    return 1;
  snprintf(target, sizeof(target), "unix:%s/reflection.sock", argv[2]);
  if (reflection(target) != 0 || spawn_child(path) != 0)
    return 1;
  printf("docs_snippets: ok\n");
  return 0;
}
