// Named shared memory: shm_open + posix_fallocate + mmap, handed to JavaScript as a real
// SharedArrayBuffer whose deleter unmaps. V8 runs the deleter only when no JavaScript object
// (in any thread) can reach the memory any more, so JavaScript can never touch an unmapped page.
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

namespace ipc {

using v8::Context;
using v8::FunctionCallbackInfo;
using v8::Isolate;
using v8::Local;
using v8::Object;
using v8::Value;

enum OpenHow { kCreate = 0, kOpen = 1, kOpenOrCreate = 2 };

static void Unmap(void* data, size_t length, void* /*deleter_data*/) { munmap(data, length); }

static void SleepMs(int ms) {
  struct timespec ts = {0, ms * 1000000L};
  nanosleep(&ts, nullptr);
}

// shmOpen(osName, how, mode, byteLength, sizeWaitMs) -> { buffer: SharedArrayBuffer, created }
// `byteLength` is used only when creating. An opener that finds a size of 0 (a creator between
// shm_open and posix_fallocate) polls for up to sizeWaitMs, then reports byteLength 0.
static void ShmOpen(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  Local<Context> context = isolate->GetCurrentContext();
  v8::String::Utf8Value name(isolate, args[0]);
  int how = args[1]->Int32Value(context).FromJust();
  mode_t mode = static_cast<mode_t>(args[2]->Uint32Value(context).FromJust());
  double requested = args[3]->NumberValue(context).FromJust();
  int size_wait_ms = args[4]->Int32Value(context).FromJust();

  int fd = -1;
  bool created = false;
  for (int attempt = 0; fd < 0; attempt++) {
    if (how != kOpen) {
      fd = shm_open(*name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
      if (fd >= 0) {
        created = true;
        break;
      }
      if (errno != EEXIST || how == kCreate) return ThrowErrno(isolate, "shm_open", -errno);
    }
    fd = shm_open(*name, O_RDWR | O_CLOEXEC, 0);
    if (fd >= 0) break;
    // openOrCreate raced with a remove between our two calls: try again, a bounded number of times.
    if (errno != ENOENT || how == kOpen || attempt >= 100) return ThrowErrno(isolate, "shm_open", -errno);
  }

  size_t length;
  if (created) {
    length = static_cast<size_t>(requested);
    // The mode must not depend on the caller's umask.
    int err = fchmod(fd, mode) == 0 ? 0 : errno;
    // Reserve every page now: on a full /dev/shm this fails cleanly with ENOSPC, instead of the
    // first write to an unbacked page killing the process with SIGBUS.
    const char* failed = err ? "fchmod" : nullptr;
    if (!err) {
      err = posix_fallocate(fd, 0, static_cast<off_t>(length));
      if (err) failed = "posix_fallocate";
    }
    if (err) {
      close(fd);
      shm_unlink(*name);
      return ThrowErrno(isolate, failed, -err);
    }
  } else {
    struct stat st;
    for (int waited = 0;; waited++) {
      if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return ThrowErrno(isolate, "fstat", -err);
      }
      if (st.st_size > 0 || waited >= size_wait_ms) break;
      SleepMs(1);
    }
    length = static_cast<size_t>(st.st_size);
  }

  Local<Object> result = Object::New(isolate);
  result->Set(context, v8::String::NewFromUtf8Literal(isolate, "created"), v8::Boolean::New(isolate, created)).Check();
  if (length == 0) {
    close(fd);
    result->Set(context, v8::String::NewFromUtf8Literal(isolate, "byteLength"), v8::Number::New(isolate, 0)).Check();
    args.GetReturnValue().Set(result);
    return;
  }

  void* data = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int map_err = errno;
  close(fd);  // the mapping keeps the object alive; the descriptor is not needed any more
  if (data == MAP_FAILED) {
    if (created) shm_unlink(*name);
    return ThrowErrno(isolate, "mmap", -map_err);
  }
  std::unique_ptr<v8::BackingStore> store = v8::SharedArrayBuffer::NewBackingStore(data, length, Unmap, nullptr);
  Local<v8::SharedArrayBuffer> buffer = v8::SharedArrayBuffer::New(isolate, std::move(store));
  result->Set(context, v8::String::NewFromUtf8Literal(isolate, "buffer"), buffer).Check();
  result->Set(context, v8::String::NewFromUtf8Literal(isolate, "byteLength"),
              v8::Number::New(isolate, static_cast<double>(length))).Check();
  args.GetReturnValue().Set(result);
}

// shmUnlink(osName) -> true if removed, false if it did not exist.
static void ShmUnlink(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  v8::String::Utf8Value name(isolate, args[0]);
  if (shm_unlink(*name) == 0) return args.GetReturnValue().Set(true);
  if (errno == ENOENT) return args.GetReturnValue().Set(false);
  ThrowErrno(isolate, "shm_unlink", -errno);
}

void InitShm(Local<Object> exports, Local<Context> context) {
  SetMethod(context, exports, "shmOpen", ShmOpen);
  SetMethod(context, exports, "shmUnlink", ShmUnlink);
}

}  // namespace ipc
