// Shared helpers for the addon. The C++ side only wraps OS calls: on failure it throws an Error
// carrying `errno` (the name, e.g. "ENOENT") and `syscall`; TypeScript decides what it means.
#pragma once

#include <sys/types.h>

#include <memory>
#include <node.h>
#include <v8.h>

namespace ipc {

// Throws an Error with .errno = the errno name ("ENOENT") and .syscall = syscall. `err` may be
// errno (positive) or its negation.
void ThrowErrno(v8::Isolate* isolate, const char* syscall, int err);
void ThrowTypeError(v8::Isolate* isolate, const char* message);
void ThrowRangeError(v8::Isolate* isolate, const char* message);

// Resolves args[sab_index] (a SharedArrayBuffer) and args[offset_index] (a byte offset) to a
// 4-byte-aligned int32 inside it. Throws and returns nullptr when they do not fit. When `keep`
// is given it receives the backing store, so the caller can keep the memory mapped.
int32_t* WordAt(const v8::FunctionCallbackInfo<v8::Value>& args, int sab_index, int offset_index,
                std::shared_ptr<v8::BackingStore>* keep = nullptr);

// The per-environment state behind a function's `data`, as a v8::External. From V8 14 (Node 26)
// an External carries a type tag (the untagged calls are deprecated); each C++ type gets its own
// tag so that one kind of state can never be read as another. Older V8 has no tags.
enum class ExternalTag : uint16_t { kAsyncWaits = 1, kMqEnv = 3 };

template <typename T>
v8::Local<v8::External> WrapExternal(v8::Isolate* isolate, T* state, ExternalTag tag) {
#if V8_MAJOR_VERSION >= 14
  return v8::External::New(isolate, state, static_cast<v8::ExternalPointerTypeTag>(tag));
#else
  (void)tag;
  return v8::External::New(isolate, state);
#endif
}

template <typename T>
T* UnwrapExternal(v8::Local<v8::Value> data, ExternalTag tag) {
#if V8_MAJOR_VERSION >= 14
  return static_cast<T*>(data.As<v8::External>()->Value(static_cast<v8::ExternalPointerTypeTag>(tag)));
#else
  (void)tag;
  return static_cast<T*>(data.As<v8::External>()->Value());
#endif
}

void SetMethod(v8::Local<v8::Context> context, v8::Local<v8::Object> target, const char* name,
               v8::FunctionCallback callback, v8::Local<v8::Value> data = v8::Local<v8::Value>());

// A named object mapped by shmOpen (shm.cc): the descriptor the mapping keeps open (-1 once
// the handle that mapped it was closed: shmRelease), and the file's identity. FindMapping looks
// up the mapping that starts at `data` (any thread). ReopenMapping opens a new description of
// its file through /proc/self/fd while holding the table's lock, so that a concurrent
// shmRelease can never make it open whatever file reused the descriptor number: the new
// descriptor, or -errno (-EBADF once released).
struct MappedObject {
  int fd;
  dev_t dev;
  ino_t ino;
};
bool FindMapping(const void* data, MappedObject* out);
int ReopenMapping(const void* data, int flags);
// After a failed open with `err`: when the process is out of descriptors (EMFILE, ENFILE), runs
// a full garbage collection, whose deleters close the descriptors of mappings that JavaScript
// can no longer reach, and returns true (try once more). False for any other error.
bool ReclaimDescriptors(v8::Isolate* isolate, int err);

void InitShm(v8::Local<v8::Object> exports, v8::Local<v8::Context> context);
void InitFutex(v8::Local<v8::Object> exports, v8::Local<v8::Context> context);
void InitLifeline(v8::Local<v8::Object> exports, v8::Local<v8::Context> context);
void InitFifo(v8::Local<v8::Object> exports, v8::Local<v8::Context> context);
void InitMq(v8::Local<v8::Object> exports, v8::Local<v8::Context> context);
void InitCopyOut(v8::Local<v8::Object> exports, v8::Local<v8::Context> context);

}  // namespace ipc
