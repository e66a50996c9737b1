// Portable prebuilds: the prebuilt addons are compiled on a current glibc but must load wherever
// the official Node binaries do (glibc 2.28: RHEL 8, Debian 10+, Ubuntu 20.04+). A current glibc
// gives shm_open, shm_unlink and the mq_* calls new symbol versions (GLIBC_2.34, when librt moved
// into libc), fstat64 one of its own (GLIBC_2.33), libstdc++'s headers read
// __libc_single_threaded (GLIBC_2.32) and call std::__throw_bad_array_new_length (GLIBCXX_3.4.29,
// newer than RHEL 8's libstdc++). This file, compiled only into prebuilds (binding.gyp,
// portable=1), defines those few names inside the addon with hidden visibility, so that the
// addon's references bind here and need no new glibc or libstdc++; native/portable.h pins the
// pthread calls to their old versions. Each definition is what glibc does on Linux: a thin
// wrapper over the system call.
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <mqueue.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>

#define IPC_HIDDEN __attribute__((visibility("hidden")))

extern "C" {

// 0: "more than one thread may exist", so libstdc++ always uses atomic reference counts.
IPC_HIDDEN char __libc_single_threaded = 0;

IPC_HIDDEN int fstat64(int fd, struct stat64* st) noexcept { return static_cast<int>(syscall(SYS_fstat, fd, st)); }

// POSIX shared memory objects are files in /dev/shm (glibc's shm_open does exactly this).
static int ShmPath(const char* name, char* out, size_t size) {
  while (*name == '/') name++;
  size_t length = strlen(name);
  if (length == 0 || length > NAME_MAX || strchr(name, '/') != nullptr) {
    errno = length > NAME_MAX ? ENAMETOOLONG : EINVAL;
    return -1;
  }
  if (snprintf(out, size, "/dev/shm/%s", name) >= static_cast<int>(size)) {
    errno = ENAMETOOLONG;
    return -1;
  }
  return 0;
}

IPC_HIDDEN int shm_open(const char* name, int oflag, mode_t mode) {
  char path[PATH_MAX];
  if (ShmPath(name, path, sizeof path) != 0) return -1;
  return open(path, oflag | O_NOFOLLOW | O_CLOEXEC, mode);
}

IPC_HIDDEN int shm_unlink(const char* name) {
  char path[PATH_MAX];
  if (ShmPath(name, path, sizeof path) != 0) return -1;
  int r = unlink(path);
  if (r < 0 && errno == EPERM) errno = EACCES;  // as glibc reports it (a sticky /dev/shm)
  return r;
}

// POSIX message queues: the kernel takes the name without its leading slash.
IPC_HIDDEN mqd_t mq_open(const char* name, int oflag, ...) noexcept {
  if (name[0] != '/') {
    errno = EINVAL;
    return -1;
  }
  mode_t mode = 0;
  struct mq_attr* attr = nullptr;
  if (oflag & O_CREAT) {
    va_list ap;
    va_start(ap, oflag);
    mode = va_arg(ap, mode_t);
    attr = va_arg(ap, struct mq_attr*);
    va_end(ap);
  }
  return static_cast<mqd_t>(syscall(SYS_mq_open, name + 1, oflag, mode, attr));
}

IPC_HIDDEN int mq_close(mqd_t mqdes) noexcept { return close(mqdes); }

IPC_HIDDEN int mq_unlink(const char* name) noexcept {
  if (name[0] != '/') {
    errno = ENOENT;
    return -1;
  }
  long r = syscall(SYS_mq_unlink, name + 1);
  if (r < 0 && errno == EPERM) errno = EACCES;  // as glibc reports it
  return static_cast<int>(r);
}

IPC_HIDDEN int mq_getattr(mqd_t mqdes, struct mq_attr* attr) noexcept {
  return static_cast<int>(syscall(SYS_mq_getsetattr, mqdes, nullptr, attr));
}

IPC_HIDDEN int mq_setattr(mqd_t mqdes, const struct mq_attr* attr, struct mq_attr* old) noexcept {
  return static_cast<int>(syscall(SYS_mq_getsetattr, mqdes, attr, old));
}

IPC_HIDDEN int mq_timedsend(mqd_t mqdes, const char* msg, size_t len, unsigned prio, const struct timespec* abs) {
  return static_cast<int>(syscall(SYS_mq_timedsend, mqdes, msg, len, prio, abs));
}

IPC_HIDDEN ssize_t mq_timedreceive(mqd_t mqdes, char* msg, size_t len, unsigned* prio, const struct timespec* abs) {
  return syscall(SYS_mq_timedreceive, mqdes, msg, len, prio, abs);
}

IPC_HIDDEN int mq_send(mqd_t mqdes, const char* msg, size_t len, unsigned prio) {
  return static_cast<int>(syscall(SYS_mq_timedsend, mqdes, msg, len, prio, nullptr));
}

IPC_HIDDEN ssize_t mq_receive(mqd_t mqdes, char* msg, size_t len, unsigned* prio) {
  return syscall(SYS_mq_timedreceive, mqdes, msg, len, prio, nullptr);
}

}  // extern "C"

namespace std {
// What libstdc++ throws when `new T[n]` is asked for too many elements; the addon is built
// without exceptions, so it ends the process like any other failed allocation would.
[[noreturn]] IPC_HIDDEN void __throw_bad_array_new_length() { abort(); }
}  // namespace std
