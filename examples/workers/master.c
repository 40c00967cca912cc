/* workers_master [--workers N] [--tasks K] [--crash-one] [--worker PATH]
 *
 * A master process, as a web server's: it spawns N workers, each over an
 * anonymous pipe (a socketpair; the worker is the gRPC server on its end),
 * loads their configuration, hands out K tasks round-robin and prints each
 * result, then stops them all. A worker that dies (--crash-one makes worker
 * 1 crash once) is logged with its exit status, restarted, reloaded and
 * given its unfinished task again; the other workers keep their processes
 * and connections. Every call has a deadline, so a hung worker cannot hang
 * the master: it is killed and restarted like a crashed one. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "workers.prpc.h"

#define CALL_TIMEOUT_MS 5000 /* every call's deadline */
#define EXIT_WAIT_MS 5000    /* how long a worker may take to exit */
#define MAX_RESTARTS 5       /* beyond this something is badly wrong */
#define CONFIG "max_n=100000000"

typedef struct worker {
  int id;                /* 1..N, as the logs name it */
  int pid;               /* 0 while not running */
  prpc_child *child;     /* NULL while not running */
  prpc_channel *channel; /* our end of its socketpair */
} worker;

typedef struct master {
  const char *worker_path;
  worker *workers;
  int n_workers;
  int restarts;
} master;

static prpc_call_opts call_opts(void) {
  prpc_call_opts opts = PRPC_CALL_OPTS_INIT;
  /* No wait_for_ready: a dead worker must fail fast with UNAVAILABLE
   * (its pipe cannot reconnect) rather than wait out the deadline. */
  opts.timeout_ms = CALL_TIMEOUT_MS;
  return opts;
}

/* "exited with status 0", "killed by signal 6 (Aborted)". */
static void describe_exit(int wstatus, char *buf, size_t size) {
  if (WIFEXITED(wstatus))
    snprintf(buf, size, "exited with status %d", WEXITSTATUS(wstatus));
  else if (WIFSIGNALED(wstatus))
    snprintf(buf, size, "killed by signal %d (%s)", WTERMSIG(wstatus),
             strsignal(WTERMSIG(wstatus)));
  else
    snprintf(buf, size, "wait status 0x%x", (unsigned)wstatus);
}

/* Waits for the worker to exit; kills it if it will not. Returns 0 and its
 * status, or -1 if it could not be reaped. */
static int worker_reap(worker *w, int timeout_ms, int *wstatus) {
  int rc = prpc_child_wait(w->child, timeout_ms, wstatus);
  if (rc == -ETIMEDOUT) {
    fprintf(stderr, "master: worker %d (pid %d) did not exit: killing it\n",
            w->id, w->pid);
    rc = prpc_child_kill(w->child, SIGKILL);
    if (rc == 0)
      rc = prpc_child_wait(w->child, EXIT_WAIT_MS, wstatus);
  }
  if (rc != 0) {
    /* prpc_child_kill() returns -errno without a prpc_last_error(). */
    fprintf(stderr, "master: worker %d (pid %d): %s\n", w->id, w->pid,
            prpc_strerror(rc));
    return -1;
  }
  return 0;
}

/* Frees what the master holds of a worker that has exited (or was never
 * reaped: prpc_child_destroy() does not kill). */
static void worker_release(worker *w) {
  prpc_channel_destroy(w->channel);
  prpc_child_destroy(w->child);
  w->channel = NULL;
  w->child = NULL;
  w->pid = 0;
}

/* Sends the configuration; every worker gets it before any task. */
static int worker_reload(worker *w) {
  prpc_call_opts opts = call_opts();
  prpc_status status = PRPC_STATUS_INIT;
  Workers__ReloadRequest request = WORKERS__RELOAD_REQUEST__INIT;
  Workers__ReloadReply *reply;
  request.config = CONFIG;
  grpc_status_code code =
      workers__worker_client__reload(w->channel, &request, &opts, &reply,
                                     &status);
  if (code == GRPC_STATUS_OK) {
    printf("worker %d (pid %d): config loaded, generation %" PRId32 "\n",
           w->id, w->pid, reply->generation);
    protobuf_c_message_free_unpacked(&reply->base, NULL); /* caller owns */
  } else {
    fprintf(stderr, "master: reload of worker %d (pid %d): %s: %s\n", w->id,
            w->pid, prpc_status_name(code),
            status.message ? status.message : "");
  }
  prpc_status_clear(&status);
  return code == GRPC_STATUS_OK ? 0 : -1;
}

/* Spawns the worker and connects to it. verb: "started", "restarted". */
static int worker_start(master *m, worker *w, const char *verb) {
  char id[16];
  snprintf(id, sizeof(id), "%d", w->id);
  char *argv[] = {"workers_worker", "--id", id, NULL};
  int rc = prpc_spawn(m->worker_path, argv, NULL, &w->child);
  if (rc != 0) {
    fprintf(stderr, "master: cannot start worker %d: %s\n", w->id,
            prpc_last_error());
    return -1;
  }
  w->pid = prpc_child_pid(w->child);
  /* Our end of the socketpair, taken once: the channel owns it from now
   * on. The pipe is already connected, so nothing can race the worker's
   * start: what we send waits in the socket until its server reads. */
  rc = prpc_channel_create(prpc_child_target(w->child), NULL, &w->channel);
  if (rc != 0) {
    fprintf(stderr, "master: channel to worker %d: %s\n", w->id,
            prpc_last_error());
    /* Without a channel the worker would wait for commands forever (and
     * if the channel did not adopt our end, no hang-up would end it). */
    int wstatus;
    if (prpc_child_kill(w->child, SIGKILL) == 0)
      worker_reap(w, EXIT_WAIT_MS, &wstatus);
    worker_release(w);
    return -1;
  }
  printf("worker %d %s as pid %d\n", w->id, verb, w->pid);
  return 0;
}

/* After a call to the worker failed with UNAVAILABLE (it died) or
 * DEADLINE_EXCEEDED (it hangs): log how it ended, then start a new one in
 * its place and give it the configuration. The other workers are not
 * touched: each has its own process, socketpair and channel. */
static int worker_restart(master *m, worker *w, grpc_status_code why) {
  int wstatus;
  char how[80];
  if (why == GRPC_STATUS_DEADLINE_EXCEEDED) {
    fprintf(stderr, "master: worker %d (pid %d) does not answer: killing "
                    "it\n", w->id, w->pid);
    prpc_child_kill(w->child, SIGKILL); /* it may have died meanwhile */
  }
  /* UNAVAILABLE comes when its end of the pipe closes, which the kernel
   * does as the process exits: it is dead or about to be. */
  if (worker_reap(w, EXIT_WAIT_MS, &wstatus) != 0)
    return -1;
  describe_exit(wstatus, how, sizeof(how));
  printf("worker %d (pid %d) died: %s\n", w->id, w->pid, how);
  worker_release(w);
  if (++m->restarts > MAX_RESTARTS) {
    fprintf(stderr, "master: more than %d restarts: giving up\n",
            MAX_RESTARTS);
    return -1;
  }
  if (worker_start(m, w, "restarted") != 0)
    return -1;
  return worker_reload(w);
}

/* Runs task `index` (the sum of 1..n) on worker w and prints the result.
 * With crash, the first attempt is the "crash" task instead: the worker
 * dies with it, as a real worker dies in the middle of a task. The task is
 * then unfinished, and goes to the restarted worker once (a plain "sum":
 * the crash is injected once; a task that kills every worker it meets
 * would be given up, not retried forever). */
static int run_task(master *m, worker *w, int index, int64_t n, int crash) {
  for (int attempt = 0;; attempt++) {
    prpc_call_opts opts = call_opts();
    prpc_status status = PRPC_STATUS_INIT;
    Workers__Task task = WORKERS__TASK__INIT;
    Workers__TaskResult *result;
    task.name = crash && attempt == 0 ? "crash" : "sum";
    task.n = n;
    if (crash && attempt == 0)
      printf("task %d: sending \"crash\" to worker %d (pid %d)\n", index,
             w->id, w->pid);
    else if (attempt > 0)
      printf("task %d: resending to worker %d (pid %d)\n", index, w->id,
             w->pid);
    grpc_status_code code = workers__worker_client__run_task(
        w->channel, &task, &opts, &result, &status);
    if (code == GRPC_STATUS_OK) {
      printf("task %d: sum 1..%" PRId64 " = %" PRId64 " by %s\n", index, n,
             result->value, result->worker);
      protobuf_c_message_free_unpacked(&result->base, NULL);
      return 0;
    }
    printf("task %d: worker %d (pid %d) failed: %s: %s\n", index, w->id,
           w->pid, prpc_status_name(code),
           status.message ? status.message : "");
    prpc_status_clear(&status);
    if ((code != GRPC_STATUS_UNAVAILABLE &&
         code != GRPC_STATUS_DEADLINE_EXCEEDED) ||
        attempt > 0)
      return -1; /* the task itself is bad, or failed twice */
    if (worker_restart(m, w, code) != 0)
      return -1;
  }
}

/* Sends Stop to every running worker, then waits for each to exit. Returns
 * the number that did not stop cleanly (exit status 0). */
static int stop_all(master *m) {
  int failed = 0;
  for (int i = 0; i < m->n_workers; i++) {
    worker *w = &m->workers[i];
    prpc_call_opts opts = call_opts();
    prpc_status status = PRPC_STATUS_INIT;
    Workers__StopRequest request = WORKERS__STOP_REQUEST__INIT;
    Workers__StopReply *reply;
    if (!w->child)
      continue;
    grpc_status_code code = workers__worker_client__stop(
        w->channel, &request, &opts, &reply, &status);
    if (code == GRPC_STATUS_OK) {
      protobuf_c_message_free_unpacked(&reply->base, NULL);
    } else {
      /* It still goes away below: closing its pipe makes it exit
       * (shutdown_on_hangup), and the wait kills it otherwise. */
      fprintf(stderr, "master: stop worker %d (pid %d): %s: %s\n", w->id,
              w->pid, prpc_status_name(code),
              status.message ? status.message : "");
      failed++;
    }
    prpc_status_clear(&status);
  }
  /* All were told first, so they shut down in parallel. */
  for (int i = 0; i < m->n_workers; i++) {
    worker *w = &m->workers[i];
    int wstatus;
    char how[80];
    if (!w->child)
      continue;
    if (worker_reap(w, EXIT_WAIT_MS, &wstatus) == 0) {
      describe_exit(wstatus, how, sizeof(how));
      printf("worker %d (pid %d) stopped: %s\n", w->id, w->pid, how);
      if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0)
        failed++;
    } else {
      failed++;
    }
    worker_release(w);
  }
  return failed;
}

/* Tears down whatever is still running, after an error. */
static void discard_all(master *m) {
  for (int i = 0; i < m->n_workers; i++) {
    worker *w = &m->workers[i];
    int wstatus;
    char how[80];
    if (!w->child)
      continue;
    /* Closing our end first: the worker sees the hang-up and exits. */
    prpc_channel_destroy(w->channel);
    w->channel = NULL;
    if (worker_reap(w, EXIT_WAIT_MS, &wstatus) == 0) {
      describe_exit(wstatus, how, sizeof(how));
      printf("worker %d (pid %d) %s\n", w->id, w->pid, how);
    }
    worker_release(w);
  }
}

/* The workers_worker next to this program. Caller frees. */
static char *default_worker_path(const char *argv0) {
  char self[PATH_MAX];
  ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (len > 0) {
    self[len] = '\0';
  } else if (strchr(argv0, '/')) {
    snprintf(self, sizeof(self), "%s", argv0); /* no /proc: trust argv[0] */
  } else {
    return NULL;
  }
  char *slash = strrchr(self, '/');
  size_t dir_len = (size_t)(slash - self) + 1;
  char *path = malloc(dir_len + sizeof("workers_worker"));
  if (path) {
    memcpy(path, self, dir_len);
    strcpy(path + dir_len, "workers_worker");
  }
  return path;
}

static int parse_count(const char *s, int min, int max, int *out) {
  char *end;
  errno = 0;
  long v = s ? strtol(s, &end, 10) : 0;
  if (!s || errno || end == s || *end || v < min || v > max)
    return -1;
  *out = (int)v;
  return 0;
}

static int usage(void) {
  fprintf(stderr, "usage: workers_master [--workers N (1..64)] "
                  "[--tasks K (0..100000)] [--crash-one] [--worker PATH]\n");
  return 2;
}

int main(int argc, char **argv) {
  master m = {NULL, NULL, 3, 0};
  int n_tasks = 6, crash_one = 0, done = 0, failed = 0;
  char *own_path = NULL;

  for (int i = 1; i < argc; i++) {
    const char *next = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(argv[i], "--workers") == 0 && next) {
      if (parse_count(next, 1, 64, &m.n_workers) != 0)
        return usage();
      i++;
    } else if (strcmp(argv[i], "--tasks") == 0 && next) {
      if (parse_count(next, 0, 100000, &n_tasks) != 0)
        return usage();
      i++;
    } else if (strcmp(argv[i], "--worker") == 0 && next) {
      m.worker_path = next;
      i++;
    } else if (strcmp(argv[i], "--crash-one") == 0) {
      crash_one = 1;
    } else {
      return usage();
    }
  }
  if (!m.worker_path) {
    own_path = default_worker_path(argv[0]);
    if (!own_path) {
      fprintf(stderr, "workers_master: cannot find workers_worker: use "
                      "--worker PATH\n");
      return 2;
    }
    m.worker_path = own_path;
  }
  /* Line-buffered, so that our lines and the workers' (on stderr) come out
   * in the order they happen, even into a pipe. */
  setvbuf(stdout, NULL, _IOLBF, 0);

  m.workers = calloc((size_t)m.n_workers, sizeof(*m.workers));
  if (!m.workers) {
    fprintf(stderr, "workers_master: out of memory\n");
    free(own_path);
    return 1;
  }
  for (int i = 0; i < m.n_workers; i++) {
    m.workers[i].id = i + 1;
    if (worker_start(&m, &m.workers[i], "started") != 0)
      goto fail;
  }
  for (int i = 0; i < m.n_workers; i++)
    if (worker_reload(&m.workers[i]) != 0)
      goto fail;

  /* Worker 1 crashes on its first task from the middle of the run on, so
   * that tasks on the others come both before and after the restart. */
  int crash_task = 1 + m.n_workers * (n_tasks / 2 / m.n_workers);
  if (crash_one && crash_task > n_tasks)
    fprintf(stderr, "master: no task for worker 1: nothing to crash\n");
  for (int t = 1; t <= n_tasks; t++) {
    worker *w = &m.workers[(t - 1) % m.n_workers];
    int crash = crash_one && t == crash_task;
    if (run_task(&m, w, t, (int64_t)t * 1000, crash) != 0)
      goto fail;
    done++;
  }

  failed = stop_all(&m);
  printf("master: %d task%s done, %d restart%s, %s\n", done,
         done == 1 ? "" : "s", m.restarts, m.restarts == 1 ? "" : "s",
         failed == 0 ? "all workers stopped" : "some workers did not stop "
                                               "cleanly");
  free(m.workers);
  free(own_path);
  return failed == 0 ? 0 : 1;

fail:
  discard_all(&m);
  printf("master: failed after %d of %d tasks, %d restart%s\n", done,
         n_tasks, m.restarts, m.restarts == 1 ? "" : "s");
  free(m.workers);
  free(own_path);
  return 1;
}
