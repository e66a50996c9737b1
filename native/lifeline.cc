// Lifelines: how a structure in shared memory tells a dead owner from a live one, from something
// the kernel releases when the owner dies (never a bare PID, never a timeout).
//
// Scoped to the object. A thread's lifeline for object X is an open file description of X's own
// file (a new description, opened through /proc/self/fd from the descriptor X's mapping keeps,
// see shm.cc; never by name, which may be gone or replaced) holding an open-file-description
// write lock (fcntl F_OFD_SETLK, F_WRLCK) on the single byte kBase + token. The token
// (1 .. 2^28-2) is what X's owner words record. The kernel releases the byte lock when the
// description closes: when the process dies (SIGKILL included), when the worker's environment
// is torn down (a cleanup hook closes it), or when the last handle of the thread on X lets go.
//
// A checker asks F_OFD_GETLK, on its own description of X, whether a READ lock on the owner's
// byte would conflict: only a write lock conflicts, so the owner is alive exactly while some
// description of X holds the byte for writing. Tokens are drawn at random and taken with
// F_OFD_SETLK, which fails while another description holds (or reads) that byte, so no two live
// threads share a token on one object.
//
// Who can interfere: only whoever can open X's file. A write lock needs a description opened
// for writing, i.e. write access to X, which already allows anything on its memory. A user
// with read access only can hold read locks: those never make a dead owner look alive (the
// probe ignores them), but they can keep new owners from taking a token (a clear error). A user
// who cannot open X cannot reach its locks at all: there is no machine-wide file any more.
//
// The bytes are far beyond any data (objects are at most 2^46 bytes) and advisory: they never
// touch the memory. A SharedArrayBuffer that no shmOpen mapped (new SharedArrayBuffer, shared
// only among the threads of this process) uses one process-private memfd instead; shared
// memory that someone else mapped is refused, since its other users cannot be seen from here.
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mutex>
#include <string>
#include <unordered_map>

#include "common.h"

namespace ipc {

using v8::Context;
using v8::FunctionCallbackInfo;
using v8::Isolate;
using v8::Local;
using v8::Object;
using v8::Value;

static constexpr uint32_t kTokenLimit = (1u << 28) - 1;  // tokens are 1 .. kTokenLimit - 1
static constexpr off_t kBase = off_t(1) << 62;

// One open lifeline: this thread's description of one object, holding byte kBase + token.
struct Line {
  int fd;
  uint32_t token;
  Isolate* isolate;  // the thread (environment) that owns it; no other may use or close it
};

// Every open lifeline of the process, by descriptor (the id JavaScript holds). Never destroyed.
static std::mutex* const lines_mutex = new std::mutex;
static std::unordered_map<int, Line*>* const lines = new std::unordered_map<int, Line*>;
static int private_fd = -1;  // the memfd behind plain SharedArrayBuffers (under lines_mutex)

static struct flock ByteLock(short type, uint32_t token) {
  struct flock lock = {};
  lock.l_type = type;
  lock.l_whence = SEEK_SET;
  lock.l_start = kBase + static_cast<off_t>(token);
  lock.l_len = 1;
  return lock;  // l_pid stays 0, as OFD locks require
}

// 1 when some other description write-locks byte `token` of fd's file, 0 when none, -errno.
static int Held(int fd, uint32_t token) {
  struct flock probe = ByteLock(F_RDLCK, token);
  if (fcntl(fd, F_OFD_GETLK, &probe) != 0) return -errno;
  return probe.l_type != F_UNLCK ? 1 : 0;
}

// True when `data` lies in a private mapping of this process (where V8 puts the memory of
// `new SharedArrayBuffer`): then only threads of this process can share it.
static bool PrivateMemory(const void* data) {
  FILE* maps = fopen("/proc/self/maps", "re");
  if (maps == nullptr) return false;
  uintptr_t at = reinterpret_cast<uintptr_t>(data);
  bool found = false, is_private = false;
  char line[512];
  while (!found && fgets(line, sizeof line, maps) != nullptr) {
    unsigned long start, end;
    char perms[5];
    if (sscanf(line, "%lx-%lx %4s", &start, &end, perms) == 3 && at >= start && at < end) {
      found = true;
      is_private = perms[3] == 'p';
    }
    // A line longer than the buffer continues in the next read: skip the rest of it.
    while (strchr(line, '\n') == nullptr && fgets(line, sizeof line, maps) != nullptr) {
    }
  }
  fclose(maps);
  return is_private;
}

// A mapping made by shmOpen: its file is reopened through ReopenMapping (under the table's
// lock), never through a descriptor number borrowed here.
static constexpr int kMapped = -2;

// The object behind `store` and a key naming it: *fd is kMapped for a mapping of shmOpen, the
// process-private memfd (borrowed, never closed) for a plain SharedArrayBuffer, or -1 for shared
// memory that this addon did not map; -errno when the memfd could not be made.
static int Resolve(const std::shared_ptr<v8::BackingStore>& store, int* fd, std::string* key) {
  MappedObject mapped;
  if (FindMapping(store->Data(), &mapped)) {
    *fd = kMapped;
    *key = "o" + std::to_string(static_cast<unsigned long long>(mapped.dev)) + ":" +
           std::to_string(static_cast<unsigned long long>(mapped.ino));
    return 0;
  }
  *fd = -1;
  if (store->Data() == nullptr || !PrivateMemory(store->Data())) return 0;
  std::lock_guard<std::mutex> hold(*lines_mutex);
  if (private_fd < 0) {
    private_fd = memfd_create("interprocess-lifelines", MFD_CLOEXEC);
    if (private_fd < 0) return -errno;
  }
  *fd = private_fd;
  *key = "p";
  return 0;
}

static std::shared_ptr<v8::BackingStore> StoreOf(const FunctionCallbackInfo<Value>& args) {
  if (!args[0]->IsSharedArrayBuffer()) {
    ThrowTypeError(args.GetIsolate(), "expected a SharedArrayBuffer");
    return nullptr;
  }
  return args[0].As<v8::SharedArrayBuffer>()->GetBackingStore();
}

// The line with descriptor `id` if this thread owns it, else nullptr.
static Line* LineOf(const FunctionCallbackInfo<Value>& args) {
  double id = args[0]->IsNumber() ? args[0].As<v8::Number>()->Value() : -1;
  std::lock_guard<std::mutex> hold(*lines_mutex);
  auto found = lines->find(static_cast<int>(id));
  if (found == lines->end() || found->second->isolate != args.GetIsolate()) return nullptr;
  return found->second;
}

static void CloseLine(void* arg) {
  Line* line = static_cast<Line*>(arg);
  {
    std::lock_guard<std::mutex> hold(*lines_mutex);
    lines->erase(line->fd);
  }
  close(line->fd);  // releases the byte lock: for this object, this thread is now "dead"
  delete line;
}

// lifelineKey(sab) -> string naming the object behind sab (the same in every handle and thread
// of this process), or undefined for shared memory that this addon did not map.
static void LifelineKey(const FunctionCallbackInfo<Value>& args) {
  std::shared_ptr<v8::BackingStore> store = StoreOf(args);
  if (store == nullptr) return;
  int fd;
  std::string key;
  int err = Resolve(store, &fd, &key);
  if (err < 0) return ThrowErrno(args.GetIsolate(), "memfd_create", err);
  if (fd == -1) return;
  args.GetReturnValue().Set(v8::String::NewFromUtf8(args.GetIsolate(), key.c_str()).ToLocalChecked());
}

// lifelineOpen(sab) -> { id, token }: a new lifeline of this thread on the object behind sab.
static void LifelineOpen(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  Local<Context> context = isolate->GetCurrentContext();
  // Holding the store keeps the mapping, and so its descriptor, alive while we reopen it.
  std::shared_ptr<v8::BackingStore> store = StoreOf(args);
  if (store == nullptr) return;
  int object_fd;
  std::string key;
  int err = Resolve(store, &object_fd, &key);
  if (err < 0) return ThrowErrno(isolate, "memfd_create", err);
  if (object_fd == -1) return ThrowTypeError(isolate, "not memory that interprocess mapped, nor a plain SharedArrayBuffer");
  // A description of its own: locks of one description never conflict with each other, so two
  // threads (or a checker and an owner) must not share one.
  auto reopen = [&]() -> int {
    if (object_fd == kMapped) return ReopenMapping(store->Data(), O_RDWR | O_CLOEXEC);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", object_fd);
    int opened = open(path, O_RDWR | O_CLOEXEC);
    return opened >= 0 ? opened : -errno;
  };
  int fd = reopen();
  if (fd < 0 && ReclaimDescriptors(isolate, -fd)) fd = reopen();
  // EBADF: the SharedMemory handle that mapped this memory was closed (shmRelease).
  if (fd < 0) return ThrowErrno(isolate, "open(/proc/self/fd)", fd);
  uint32_t token = 0;
  for (int attempt = 0; attempt < 1000 && token == 0; attempt++) {
    uint32_t candidate = 0;
    if (getrandom(&candidate, sizeof candidate, 0) != sizeof candidate) continue;
    candidate %= kTokenLimit;
    if (candidate == 0) continue;
    struct flock hold = ByteLock(F_WRLCK, candidate);
    if (fcntl(fd, F_OFD_SETLK, &hold) == 0) {
      token = candidate;
    } else if (errno != EAGAIN && errno != EACCES) {
      int failed = errno;
      close(fd);
      return ThrowErrno(isolate, "fcntl(F_OFD_SETLK)", -failed);
    }
  }
  if (token == 0) {
    close(fd);
    return ThrowErrno(isolate, "fcntl(F_OFD_SETLK)", -EAGAIN);
  }
  Line* line = new Line{fd, token, isolate};
  {
    std::lock_guard<std::mutex> hold(*lines_mutex);
    (*lines)[fd] = line;
  }
  node::AddEnvironmentCleanupHook(isolate, CloseLine, line);
  Local<Object> result = Object::New(isolate);
  result->Set(context, v8::String::NewFromUtf8Literal(isolate, "id"), v8::Number::New(isolate, fd)).Check();
  result->Set(context, v8::String::NewFromUtf8Literal(isolate, "token"), v8::Number::New(isolate, token)).Check();
  args.GetReturnValue().Set(result);
}

// lifelineAlive(id, token) -> true while some live description holds `token` on the object.
static void LifelineAlive(const FunctionCallbackInfo<Value>& args) {
  Line* line = LineOf(args);
  if (line == nullptr) return ThrowErrno(args.GetIsolate(), "lifeline (closed)", -EBADF);
  double token = args[1]->IsNumber() ? args[1].As<v8::Number>()->Value() : 0;
  if (!(token >= 1 && token < kTokenLimit)) return args.GetReturnValue().Set(false);
  if (static_cast<uint32_t>(token) == line->token) return args.GetReturnValue().Set(true);
  int held = Held(line->fd, static_cast<uint32_t>(token));
  if (held < 0) return ThrowErrno(args.GetIsolate(), "fcntl(F_OFD_GETLK)", held);
  args.GetReturnValue().Set(held == 1);
}

// lifelineClose(id) -> false if it was not open (in this thread).
static void LifelineClose(const FunctionCallbackInfo<Value>& args) {
  Line* line = LineOf(args);
  if (line == nullptr) return args.GetReturnValue().Set(false);
  node::RemoveEnvironmentCleanupHook(args.GetIsolate(), CloseLine, line);
  CloseLine(line);
  args.GetReturnValue().Set(true);
}

void InitLifeline(Local<Object> exports, Local<Context> context) {
  SetMethod(context, exports, "lifelineKey", LifelineKey);
  SetMethod(context, exports, "lifelineOpen", LifelineOpen);
  SetMethod(context, exports, "lifelineAlive", LifelineAlive);
  SetMethod(context, exports, "lifelineClose", LifelineClose);
}

}  // namespace ipc
