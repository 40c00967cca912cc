/* uv_daemon: epoll_daemon.c with libuv: a single-threaded daemon whose
 * libuv loop serves helloworld.Greeter and answers each SayHello by calling
 * another Greeter (the backend) without blocking. The handler starts the
 * backend call and defers its own; the backend's reply finishes it. Every
 * handler and callback runs on the main thread, inside prpc_loop_process(),
 * called when libuv sees prpc_loop_fd() readable.
 *   uv_daemon --listen TARGET --backend TARGET
 * Prints "uv_daemon: ready" once it serves. SIGINT or SIGTERM stop it
 * gracefully: calls in flight are answered, then it exits 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "relay.h"

static prpc_server *server;
static uv_poll_t loop_watch;
static uv_signal_t sigint_watch, sigterm_watch;

static void on_loop_fd(uv_poll_t *w, int status, int events) {
  (void)status;
  (void)events;
  prpc_loop_process(w->data); /* handlers and callbacks run here */
}

static void on_signal(uv_signal_t *w, int signum) {
  (void)w;
  (void)signum;
  /* Stop accepting, then drain: prpc_server_wait() runs piperpc's loop
   * until the calls in flight (and their backend calls) are over, for up
   * to the grace period. Then nothing is left to watch: uv_run() returns. */
  prpc_server_shutdown(server);
  prpc_server_wait(server);
  uv_close((uv_handle_t *)&loop_watch, NULL);
  uv_close((uv_handle_t *)&sigint_watch, NULL);
  uv_close((uv_handle_t *)&sigterm_watch, NULL);
}

int main(int argc, char **argv) {
  static const Helloworld__GreeterServer impl = {.say_hello = say_hello};
  const char *listen_at = NULL, *backend_at = NULL;
  prpc_server_opts opts = PRPC_SERVER_OPTS_INIT;
  prpc_channel_opts copts = PRPC_CHANNEL_OPTS_INIT;
  prpc_loop *loop = NULL;
  uv_loop_t *uv = uv_default_loop();
  int rc = 0;

  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--listen") == 0)
      listen_at = argv[i + 1];
    else if (strcmp(argv[i], "--backend") == 0)
      backend_at = argv[i + 1];
  }
  if (!listen_at || !backend_at || argc != 5) {
    fprintf(stderr, "usage: uv_daemon --listen TARGET --backend TARGET\n");
    return 2;
  }
  main_tid = gettid();
  relay_name = "uv_daemon";

  /* One loop for the server and the channel: their handlers and callbacks
   * all run in prpc_loop_process(), on this thread. */
  if (prpc_loop_create(&loop) == 0) {
    copts.loop = loop;
    opts.loop = loop;
  }
  if (!loop || prpc_channel_create(backend_at, &copts, &backend) != 0 ||
      prpc_server_create(&opts, &server) != 0 ||
      prpc_server_add_listener(server, listen_at, NULL) != 0 ||
      helloworld__greeter_server__register_async(server, &impl, NULL) != 0 ||
      prpc_server_start(server) != 0) {
    fprintf(stderr, "uv_daemon: %s\n", prpc_last_error());
    rc = 1;
  } else {
    uv_poll_init(uv, &loop_watch, prpc_loop_fd(loop));
    loop_watch.data = loop;
    uv_poll_start(&loop_watch, UV_READABLE, on_loop_fd);
    uv_signal_init(uv, &sigint_watch);
    uv_signal_start(&sigint_watch, on_signal, SIGINT);
    uv_signal_init(uv, &sigterm_watch);
    uv_signal_start(&sigterm_watch, on_signal, SIGTERM);
    printf("uv_daemon: ready\n");
    fflush(stdout);
    uv_run(uv, UV_RUN_DEFAULT);
  }
  prpc_server_destroy(server);
  prpc_channel_destroy(backend);
  prpc_loop_destroy(loop);
  uv_loop_close(uv);
  if (wrong_thread)
    rc = 1;
  return rc;
}
