/* Unix domain sockets: the local "named pipe". The server binds and accepts
 * them itself, so it controls the socket file and sees who connects. */
#include "../runtime/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static socklen_t make_addr(const prpc__target *t, struct sockaddr_un *sa) {
  memset(sa, 0, sizeof(*sa));
  sa->sun_family = AF_UNIX;
  if (t->kind == PRPC__TARGET_ABSTRACT) {
    /* Leading NUL, then the name; the length counts exactly the name. */
    memcpy(sa->sun_path + 1, t->path, t->path_len);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
                       t->path_len);
  }
  memcpy(sa->sun_path, t->path, t->path_len + 1);
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + t->path_len +
                     1);
}

/* Is something accepting on the socket file at sa? 1 yes, 0 no (stale),
 * negative errno when we cannot tell. */
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

int prpc__unix_listen(const prpc__target *t, unsigned mode, gid_t group,
                      int *fd_out) {
  struct sockaddr_un sa;
  socklen_t len = make_addr(t, &sa);
  struct stat st;
  int fd = -1;
  int err;

  if (t->kind == PRPC__TARGET_UNIX) {
    if (lstat(t->path, &st) == 0) {
      if (!S_ISSOCK(st.st_mode))
        return prpc__fail(-ENOTSOCK,
                          "cannot listen on %s: the file exists and is not "
                          "a socket",
                          t->path);
      err = socket_is_live(&sa, len);
      if (err == 1)
        return prpc__fail(PRPC_EINUSE,
                          "cannot listen on %s: another server is accepting "
                          "connections on it",
                          t->path);
      if (err < 0)
        return prpc__fail(err, "cannot listen on %s: cannot probe the "
                               "existing socket: %s",
                          t->path, strerror(-err));
      /* Stale: left by a server that died. Replace it. */
      if (unlink(t->path) != 0 && errno != ENOENT)
        return prpc__fail(-errno, "cannot remove stale socket %s: %s",
                          t->path, strerror(errno));
      prpc__log(PRPC__LOG_INFO, "replaced stale socket file %s", t->path);
    } else if (errno != ENOENT) {
      return prpc__fail(-errno, "cannot listen on %s: %s", t->path,
                        strerror(errno));
    }
  }

  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return prpc__fail(-errno, "socket(AF_UNIX): %s", strerror(errno));

  if (t->kind == PRPC__TARGET_UNIX) {
    /* Linux creates the socket file with the socket inode's mode, less the
     * umask. Start owner-only so that the file is never more open than
     * asked, then widen it with chmod() once it exists. */
    if (fchmod(fd, (mode_t)(mode & 0700)) != 0) {
      err = -errno;
      goto fail_errno;
    }
  }
  if (bind(fd, (const struct sockaddr *)&sa, len) != 0) {
    err = -errno;
    if (err == -EADDRINUSE) {
      close(fd);
      return prpc__fail(PRPC_EINUSE,
                        "cannot listen on %s%s: address already in use",
                        t->kind == PRPC__TARGET_ABSTRACT ? "unix-abstract:"
                                                         : "",
                        t->path);
    }
    if (err == -ENOENT) {
      close(fd);
      return prpc__fail(err,
                        "cannot listen on %s: the parent directory does not "
                        "exist",
                        t->path);
    }
    goto fail_errno;
  }
  /* Still owner-only here: hand it to its group, then open it up. */
  if (t->kind == PRPC__TARGET_UNIX && group != (gid_t)-1 &&
      chown(t->path, (uid_t)-1, group) != 0) {
    err = -errno;
    unlink(t->path);
    goto fail_errno;
  }
  if (t->kind == PRPC__TARGET_UNIX && chmod(t->path, (mode_t)mode) != 0) {
    err = -errno;
    unlink(t->path);
    goto fail_errno;
  }
  if (listen(fd, SOMAXCONN) != 0) {
    err = -errno;
    if (t->kind == PRPC__TARGET_UNIX)
      unlink(t->path);
    goto fail_errno;
  }
  *fd_out = fd;
  return 0;

fail_errno:
  close(fd);
  return prpc__fail(err, "cannot listen on %s: %s", t->path, strerror(-err));
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
