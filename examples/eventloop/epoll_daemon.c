/* epoll_daemon: a single-threaded daemon built around its own epoll loop.
 * It serves helloworld.Greeter and answers each SayHello by calling another
 * Greeter (the backend) without blocking: the handler starts the backend
 * call and defers its own, and the backend's reply finishes it. Every
 * handler and callback runs on the main thread, inside prpc_loop_process(),
 * so the daemon needs no locks however many calls are in flight.
 *   epoll_daemon --listen TARGET --backend TARGET
 * Prints "epoll_daemon: ready" once it serves. SIGINT or SIGTERM stop it
 * gracefully: calls in flight are answered, then it exits 0. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "relay.h"

static prpc_server *server;

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void watch(int ep, int fd) {
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
  if (fd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
    die("epoll_daemon: epoll_ctl");
}

/* Runs the loop until SIGINT or SIGTERM, then stops the server. */
static void serve(prpc_loop *loop, int sfd) {
  int ep = epoll_create1(EPOLL_CLOEXEC), lfd = prpc_loop_fd(loop);
  if (ep < 0)
    die("epoll_daemon: epoll_create1");
  watch(ep, lfd);
  watch(ep, sfd);
  printf("epoll_daemon: ready\n");
  fflush(stdout);
  for (;;) {
    struct epoll_event evs[2];
    int n = epoll_wait(ep, evs, 2, -1);
    if (n < 0 && errno != EINTR)
      die("epoll_daemon: epoll_wait");
    for (int i = 0; i < n; i++) {
      struct signalfd_siginfo si;
      if (evs[i].data.fd == lfd) {
        prpc_loop_process(loop); /* handlers and callbacks run here */
      } else if (read(sfd, &si, sizeof(si)) > 0) {
        /* Stop accepting, then drain: prpc_server_wait() runs this loop
         * until the calls in flight (and their backend calls) are over,
         * for up to the grace period. */
        prpc_server_shutdown(server);
        prpc_server_wait(server);
        close(ep);
        return;
      }
    }
  }
}

int main(int argc, char **argv) {
  static const Helloworld__GreeterServer impl = {.say_hello = say_hello};
  const char *listen_at = NULL, *backend_at = NULL;
  prpc_server_opts opts = PRPC_SERVER_OPTS_INIT;
  prpc_channel_opts copts = PRPC_CHANNEL_OPTS_INIT;
  prpc_loop *loop = NULL;
  int sfd, rc = 0;
  sigset_t sigs;

  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--listen") == 0)
      listen_at = argv[i + 1];
    else if (strcmp(argv[i], "--backend") == 0)
      backend_at = argv[i + 1];
  }
  if (!listen_at || !backend_at || argc != 5) {
    fprintf(stderr, "usage: epoll_daemon --listen TARGET --backend TARGET\n");
    return 2;
  }
  /* Signals come through a signalfd: block them before any thread starts
   * (piperpc's, gRPC's), so that every thread inherits the mask. */
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigprocmask(SIG_BLOCK, &sigs, NULL);
  sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
  main_tid = gettid();
  relay_name = "epoll_daemon";

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
    fprintf(stderr, "epoll_daemon: %s\n", prpc_last_error());
    rc = 1;
  } else {
    serve(loop, sfd);
  }
  prpc_server_destroy(server);
  prpc_channel_destroy(backend);
  prpc_loop_destroy(loop);
  if (wrong_thread)
    rc = 1;
  return rc;
}
