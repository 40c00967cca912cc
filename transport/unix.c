/* Unix domain sockets: the local "named pipe". The server binds and accepts
 * them itself, so it controls the socket file and sees who connects.
 *
 * The socket file is made where no other user can touch it: in a private
 * directory (mode 0700, created with a random name next to the final path,
 * so on the same file system), where its mode and group are set; it is then
 * renamed into place, which also replaces a stale socket atomically. Every
 * step after the parent directory is opened works on that directory's
 * descriptor (the *at() calls), so a path swapped for a symlink meanwhile is
 * never followed; the bind itself goes through /proc/self/fd/N when /proc is
 * there. At shutdown the file is removed only if it is still the socket this
 * server created (same device and inode). */
#include "../runtime/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static socklen_t abstract_addr(const prpc__target *t, struct sockaddr_un *sa) {
  memset(sa, 0, sizeof(*sa));
  sa->sun_family = AF_UNIX;
  /* Leading NUL, then the name; the length counts exactly the name. */
  memcpy(sa->sun_path + 1, t->path, t->path_len);
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
                     t->path_len);
}

/* A path for name inside the directory dirfd: through /proc/self/fd, which
 * resolves to that very directory, or (no /proc) dir + "/" + name. Returns
 * the sockaddr length, or 0 when it does not fit. */
static socklen_t at_addr(int dirfd, const char *dir, const char *name,
                         struct sockaddr_un *sa) {
  int n;
  memset(sa, 0, sizeof(*sa));
  sa->sun_family = AF_UNIX;
  if (access("/proc/self/fd", X_OK) == 0)
    n = snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/%s",
                 dirfd, name);
  else
    n = snprintf(sa->sun_path, sizeof(sa->sun_path), "%s/%s", dir, name);
  if (n < 0 || (size_t)n >= sizeof(sa->sun_path))
    return 0;
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)n + 1);
}

/* Is something accepting on the socket at sa? 1 yes, 0 no (stale), negative
 * errno when we cannot tell. */
static int socket_is_live(const struct sockaddr_un *sa, socklen_t len) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int rc;
  if (fd < 0)
    return -errno;
  rc = connect(fd, (const struct sockaddr *)sa, len);
  if (rc == 0 || errno == EAGAIN || errno == EINPROGRESS) {
    /* Accepted, or the backlog is full: either way a server is there. */
    close(fd);
    return 1;
  }
  rc = errno;
  close(fd);
  if (rc == ECONNREFUSED)
    return 0;
  return -rc;
}

/* Splits path into its directory ("." when none) and last component. */
static int split_path(const char *path, char *dir, size_t dir_size,
                      const char **base) {
  const char *slash = strrchr(path, '/');
  if (!slash) {
    snprintf(dir, dir_size, ".");
    *base = path;
  } else {
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    if (n >= dir_size)
      return -1;
    memcpy(dir, path, n);
    dir[n] = '\0';
    *base = slash + 1;
  }
  return **base && strcmp(*base, ".") != 0 && strcmp(*base, "..") != 0 ? 0
                                                                        : -1;
}

/* Who may replace files in the directory: refuse one that every user may
 * write without the sticky bit (anyone could swap the socket for their own
 * and answer the server's clients); warn when a group or another user may. */
static int check_dir(const char *dir, const struct stat *st) {
  if (!(st->st_mode & S_ISVTX)) {
    if (st->st_mode & S_IWOTH)
      return prpc__fail(-EPERM,
                        "cannot listen in %s: every user may write that "
                        "directory and it has no sticky bit, so any of them "
                        "could replace the socket; use a directory only the "
                        "server's user (or group) can write",
                        dir);
    if (st->st_mode & S_IWGRP)
      prpc__log(PRPC__LOG_WARN,
                "socket directory %s can be written by group %u (no sticky "
                "bit): its members can replace the socket",
                dir, (unsigned)st->st_gid);
  }
  if (st->st_uid != geteuid() && st->st_uid != 0)
    prpc__log(PRPC__LOG_WARN,
              "socket directory %s belongs to uid %u, who can replace the "
              "socket",
              dir, (unsigned)st->st_uid);
  return 0;
}

/* Makes a private directory next to the socket: ".prpc-" and 16 random hex
 * digits, mode 0700. Returns its descriptor (O_PATH) and name, or -errno. */
static int private_dir(int dirfd, char name[32]) {
  for (int attempt = 0; attempt < 16; attempt++) {
    uint64_t r;
    struct stat st;
    int fd;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
      struct timespec ts;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      r = ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_nsec ^
          ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)attempt;
    }
    snprintf(name, 32, ".prpc-%016llx", (unsigned long long)r);
    if (mkdirat(dirfd, name, 0700) != 0) {
      if (errno == EEXIST)
        continue;
      return -errno;
    }
    /* Another user may have removed the empty directory and put their own
     * (or a symlink) in its place: open it without following links and
     * check that it is still ours. */
    fd = openat(dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
      continue;
    if (fstat(fd, &st) == 0 && st.st_uid == geteuid() &&
        (st.st_mode & 0777) == 0700)
      return fd;
    close(fd);
  }
  return -EEXIST;
}

static int listen_abstract(const prpc__target *t, int *fd_out) {
  struct sockaddr_un sa;
  socklen_t len = abstract_addr(t, &sa);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int err;
  if (fd < 0)
    return prpc__fail(-errno, "socket(AF_UNIX): %s", strerror(errno));
  if (bind(fd, (const struct sockaddr *)&sa, len) != 0) {
    err = -errno;
    close(fd);
    if (err == -EADDRINUSE)
      return prpc__fail(PRPC_EINUSE, "cannot listen on unix-abstract:%s: "
                                     "address already in use",
                        t->path);
    return prpc__fail(err, "cannot listen on unix-abstract:%s: %s", t->path,
                      strerror(-err));
  }
  if (listen(fd, SOMAXCONN) != 0) {
    err = -errno;
    close(fd);
    return prpc__fail(err, "cannot listen on unix-abstract:%s: %s", t->path,
                      strerror(-err));
  }
  *fd_out = fd;
  return 0;
}

int prpc__unix_listen(const prpc__target *t, unsigned mode, gid_t group,
                      prpc__sockfile *file, int *fd_out) {
  char dir[PRPC__UNIX_PATH_MAX + 1], tmp[32];
  const char *base;
  struct sockaddr_un sa;
  socklen_t len;
  struct stat st;
  int dirfd, tmpfd = -1, fd = -1, err, stale = 0;

  file->dirfd = -1;
  if (t->kind == PRPC__TARGET_ABSTRACT)
    return listen_abstract(t, fd_out);
  if (split_path(t->path, dir, sizeof(dir), &base) != 0)
    return prpc__fail(-EINVAL, "cannot listen on %s: not a file name",
                      t->path);
  dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0) {
    err = -errno;
    if (err == -ENOENT)
      return prpc__fail(err, "cannot listen on %s: the parent directory "
                             "does not exist",
                        t->path);
    return prpc__fail(err, "cannot listen on %s: %s: %s", t->path, dir,
                      strerror(-err));
  }
  if (fstat(dirfd, &st) != 0) {
    err = prpc__fail(-errno, "cannot listen on %s: %s", t->path,
                     strerror(errno));
    goto fail;
  }
  if ((err = check_dir(dir, &st)) != 0)
    goto fail;

  /* What is at the path now: nothing, a stale socket (replaced below), a
   * live one (left alone), or something else (refused). */
  if (fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      err = prpc__fail(-ENOTSOCK, "cannot listen on %s: the file exists and "
                                  "is not a socket",
                       t->path);
      goto fail;
    }
    if (!(len = at_addr(dirfd, dir, base, &sa))) {
      err = prpc__fail(-ENAMETOOLONG, "cannot listen on %s: path too long",
                       t->path);
      goto fail;
    }
    err = socket_is_live(&sa, len);
    if (err == 1) {
      err = prpc__fail(PRPC_EINUSE, "cannot listen on %s: another server is "
                                    "accepting connections on it",
                       t->path);
      goto fail;
    }
    if (err < 0) {
      err = prpc__fail(err, "cannot listen on %s: cannot probe the existing "
                            "socket: %s",
                       t->path, strerror(-err));
      goto fail;
    }
    stale = 1;
  } else if (errno != ENOENT) {
    err = prpc__fail(-errno, "cannot listen on %s: %s", t->path,
                     strerror(errno));
    goto fail;
  }

  if ((tmpfd = private_dir(dirfd, tmp)) < 0) {
    err = prpc__fail(tmpfd, "cannot listen on %s: %s (making a private "
                            "directory in %s to bind in)",
                     t->path, strerror(-tmpfd), dir);
    tmpfd = -1;
    goto fail;
  }
  {
    /* Through /proc/self/fd/<the private directory> when there is /proc
     * (the very directory opened above, even if its name was swapped);
     * else by the path, and the *at() calls below then fail if the name
     * led elsewhere. */
    char tmp_path[sizeof(dir) + sizeof(tmp) + 1];
    snprintf(tmp_path, sizeof(tmp_path), "%s/%s", dir, tmp);
    if (!(len = at_addr(tmpfd, tmp_path, "s", &sa))) {
      err = prpc__fail(-ENAMETOOLONG, "cannot listen on %s: the directory "
                                      "path is too long",
                       t->path);
      goto fail_tmp;
    }
  }
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    err = prpc__fail(-errno, "socket(AF_UNIX): %s", strerror(errno));
    goto fail_tmp;
  }
  if (bind(fd, (const struct sockaddr *)&sa, len) != 0) {
    err = -errno;
    err = prpc__fail(err, "cannot listen on %s: %s", t->path, strerror(-err));
    goto fail_tmp;
  }
  /* Inside the private directory nobody else can put a link or a file, so
   * these reach the socket just bound. */
  if ((group != (gid_t)-1 &&
       fchownat(tmpfd, "s", (uid_t)-1, group, AT_SYMLINK_NOFOLLOW) != 0) ||
      fchmodat(tmpfd, "s", (mode_t)mode, 0) != 0 ||
      fstatat(tmpfd, "s", &st, AT_SYMLINK_NOFOLLOW) != 0) {
    err = -errno;
    err = prpc__fail(err, "cannot listen on %s: %s", t->path, strerror(-err));
    goto fail_sock;
  }
  file->dev = st.st_dev;
  file->ino = st.st_ino;
  if (listen(fd, SOMAXCONN) != 0) {
    err = prpc__fail(-errno, "cannot listen on %s: %s", t->path,
                     strerror(errno));
    goto fail_sock;
  }
  /* Into place, with its final mode and group: atomically over a stale
   * socket, and never through a link. */
  if (renameat(tmpfd, "s", dirfd, base) != 0) {
    err = -errno;
    err = prpc__fail(err, "cannot listen on %s: %s", t->path, strerror(-err));
    goto fail_sock;
  }
  unlinkat(dirfd, tmp, AT_REMOVEDIR);
  close(tmpfd);
  if (stale)
    prpc__log(PRPC__LOG_INFO, "replaced stale socket file %s", t->path);
  file->dirfd = dirfd;
  snprintf(file->name, sizeof(file->name), "%s", base);
  *fd_out = fd;
  return 0;

fail_sock:
  unlinkat(tmpfd, "s", 0);
fail_tmp:
  if (fd >= 0)
    close(fd);
  unlinkat(dirfd, tmp, AT_REMOVEDIR);
  close(tmpfd);
fail:
  close(dirfd);
  return err;
}

int prpc__sockfile_is_ours(const prpc__sockfile *file) {
  struct stat st;
  return file->dirfd >= 0 &&
         fstatat(file->dirfd, file->name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
         S_ISSOCK(st.st_mode) && st.st_dev == file->dev &&
         st.st_ino == file->ino;
}

void prpc__sockfile_remove(prpc__sockfile *file) {
  if (file->dirfd < 0)
    return;
  /* Only the socket this server made: a file someone put in its place
   * (another server's, after a restart) stays. */
  if (prpc__sockfile_is_ours(file))
    unlinkat(file->dirfd, file->name, 0);
  close(file->dirfd);
  file->dirfd = -1;
}

int prpc__fd_hung_up(int fd) {
  /* POLLHUP: closed both ways. A peer that has only shut down its side
   * (POLLRDHUP) may still read the answer. */
  struct pollfd p = {fd, 0, 0};
  return fd >= 0 && poll(&p, 1, 0) == 1 &&
         (p.revents & (POLLHUP | POLLERR | POLLNVAL));
}

int prpc__unix_peer_cred(int fd, pid_t *pid, uid_t *uid, gid_t *gid) {
  struct ucred cred;
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    return -errno;
  *pid = cred.pid;
  *uid = cred.uid;
  *gid = cred.gid;
  return 0;
}
