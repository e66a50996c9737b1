// Named FIFOs for the fifo:// channel transport: Node has no mkfifo. The mode is applied with
// chmod after creation so that the umask can neither widen nor narrow it; the FIFO is created
// by mkfifo(3), which fails with EEXIST instead of following or replacing an existing name.
#include <errno.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "common.h"

namespace ipc {

using v8::Context;
using v8::FunctionCallbackInfo;
using v8::Isolate;
using v8::Local;
using v8::Value;

// mkfifo(path, mode): creates a FIFO with exactly `mode`; throws { errno, syscall } on failure.
static void MakeFifo(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  Local<Context> context = isolate->GetCurrentContext();
  if (!args[0]->IsString()) return ThrowTypeError(isolate, "path must be a string");
  if (!args[1]->IsUint32()) return ThrowTypeError(isolate, "mode must be a non-negative integer");
  v8::String::Utf8Value path(isolate, args[0]);
  mode_t mode = static_cast<mode_t>(args[1]->Uint32Value(context).FromJust()) & 07777;
  // Created owner-only first, so that no one else can open it before the final mode is set.
  if (mkfifo(*path, 0600) != 0) return ThrowErrno(isolate, "mkfifo", -errno);
  if (chmod(*path, mode) != 0) {
    int err = errno;
    unlink(*path);
    return ThrowErrno(isolate, "chmod", -err);
  }
}

void InitFifo(Local<v8::Object> exports, Local<Context> context) {
  SetMethod(context, exports, "mkfifo", MakeFifo);
}

}  // namespace ipc
