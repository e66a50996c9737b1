// Lifelines: how a lock tells a dead owner from a live one, from something the kernel releases
// when the owner dies (never a bare PID, never a timeout).
//
// One registry file, /dev/shm/interprocess._lifelines (the name comes from src/naming.ts),
// is shared by every process of the machine. Each thread that takes a robust lock (a JS
// environment: the main thread or a worker) opens its own description of that file and holds an
// open-file-description lock (fcntl F_OFD_SETLK, F_WRLCK) on the single byte at offset `token`.
// The token (1 .. 2^28-2) is what the lock word stores as its owner. The kernel releases the byte
// lock when the last descriptor of that description closes: when the process dies (SIGKILL
// included), or when the worker's environment is torn down (the cleanup hook closes it).
//
// A checker asks F_OFD_GETLK whether a write lock on that byte would conflict: if it would,
// some live description holds the token (alive); if not, its owner is gone (dead). The checker's
// own token never conflicts with itself, so the JS side answers "alive" for its own token
// without asking. Tokens are drawn at random and taken with F_OFD_SETLK, which fails when a
// live thread already holds that byte, so no two live threads ever share a token.
//
// The file stays empty (byte-range locks need no data) and is never unlinked: it is one object
// for the whole machine, not one per process, so a killed process leaves nothing behind.
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "common.h"

namespace ipc {

using v8::Context;
using v8::FunctionCallbackInfo;
using v8::Isolate;
using v8::Local;
using v8::Object;
using v8::Value;

static constexpr uint32_t kTokenLimit = (1u << 28) - 1;  // tokens are 1 .. kTokenLimit - 1

struct Lifeline {
  int fd = -1;
  uint32_t token = 0;
  std::string name;
};

// True when some description holds a write-conflicting lock on byte `token` of `fd`.
static int Held(int fd, uint32_t token) {
  struct flock probe = {};
  probe.l_type = F_WRLCK;
  probe.l_whence = SEEK_SET;
  probe.l_start = static_cast<off_t>(token);
  probe.l_len = 1;
  if (fcntl(fd, F_OFD_GETLK, &probe) != 0) return -errno;
  return probe.l_type != F_UNLCK ? 1 : 0;
}

static void CloseLifeline(void* arg) {
  Lifeline* self = static_cast<Lifeline*>(arg);
  if (self->fd >= 0) close(self->fd);  // releases the byte lock: this thread is now "dead"
  delete self;
}

static int OpenRegistry(const char* name) {
  for (int attempt = 0;; attempt++) {
    // Mode 0666: every user's processes must find each other's tokens. What a stranger can do
    // with the file is hold bytes (making a dead owner look alive, i.e. delay a recovery, which
    // write access to a shared lock allows anyway); no one can release another's byte lock, so a
    // live owner can never be declared dead. The creator fixes the mode against its umask.
    int fd = shm_open(name, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd >= 0) {
      struct stat st;
      if (fstat(fd, &st) == 0 && st.st_uid == geteuid() && (st.st_mode & 0777) != 0666) fchmod(fd, 0666);
      return fd;
    }
    // Another user's creator may not have widened the mode yet.
    if (errno != EACCES || attempt >= 50) return -errno;
    usleep(1000);
  }
}

// lifelineInit(registryName) -> { token, alive(token) -> boolean } for this environment (thread).
static void LifelineAlive(const FunctionCallbackInfo<Value>& args) {
  Lifeline* self = UnwrapExternal<Lifeline>(args.Data(), ExternalTag::kLifeline);
  double token = args[0].As<v8::Number>()->Value();
  if (!(token >= 1 && token < kTokenLimit)) return args.GetReturnValue().Set(false);
  if (static_cast<uint32_t>(token) == self->token) return args.GetReturnValue().Set(true);
  int held = Held(self->fd, static_cast<uint32_t>(token));
  if (held < 0) return ThrowErrno(args.GetIsolate(), "fcntl(F_OFD_GETLK)", held);
  if (held == 0) {
    // Before calling an owner dead, make sure nobody replaced the registry under its name (an
    // `rm /dev/shm/interprocess.*`): an owner that registered in the new file must be found
    // there, never declared dead because our descriptor points at the old one.
    struct stat ours, named;
    int fd = shm_open(self->name.c_str(), O_RDONLY | O_CLOEXEC, 0);
    if (fd >= 0) {
      if (fstat(self->fd, &ours) == 0 && fstat(fd, &named) == 0 &&
          (ours.st_ino != named.st_ino || ours.st_dev != named.st_dev)) {
        held = Held(fd, static_cast<uint32_t>(token));
      }
      close(fd);
      if (held < 0) return ThrowErrno(args.GetIsolate(), "fcntl(F_OFD_GETLK)", held);
    }
  }
  args.GetReturnValue().Set(held == 1);
}

static void LifelineInit(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  Local<Context> context = isolate->GetCurrentContext();
  v8::String::Utf8Value name(isolate, args[0]);
  int fd = OpenRegistry(*name);
  if (fd < 0) return ThrowErrno(isolate, "shm_open", fd);
  uint32_t token = 0;
  for (int attempt = 0; attempt < 1000 && token == 0; attempt++) {
    uint32_t candidate = 0;
    if (getrandom(&candidate, sizeof candidate, 0) != sizeof candidate) continue;
    candidate %= kTokenLimit;
    if (candidate == 0) continue;
    struct flock hold = {};
    hold.l_type = F_WRLCK;
    hold.l_whence = SEEK_SET;
    hold.l_start = static_cast<off_t>(candidate);
    hold.l_len = 1;
    if (fcntl(fd, F_OFD_SETLK, &hold) == 0) {
      token = candidate;
    } else if (errno != EAGAIN && errno != EACCES) {
      int err = errno;
      close(fd);
      return ThrowErrno(isolate, "fcntl(F_OFD_SETLK)", -err);
    }
  }
  if (token == 0) {
    close(fd);
    return ThrowErrno(isolate, "fcntl(F_OFD_SETLK)", -EAGAIN);
  }
  Lifeline* self = new Lifeline{fd, token, *name};
  node::AddEnvironmentCleanupHook(isolate, CloseLifeline, self);
  Local<v8::External> data = WrapExternal(isolate, self, ExternalTag::kLifeline);
  Local<Object> api = Object::New(isolate);
  api->Set(context, v8::String::NewFromUtf8Literal(isolate, "token"), v8::Number::New(isolate, token)).Check();
  SetMethod(context, api, "alive", LifelineAlive, data);
  args.GetReturnValue().Set(api);
}

void InitLifeline(Local<Object> exports, Local<Context> context) {
  SetMethod(context, exports, "lifelineInit", LifelineInit);
}

}  // namespace ipc
