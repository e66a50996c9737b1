// Module init and the helpers every part of the addon shares. Context-aware, so that worker
// threads can load it too (each environment gets its own async-wait state, see futex.cc).
#include <uv.h>

#include "common.h"

namespace ipc {

using v8::Context;
using v8::Exception;
using v8::FunctionCallbackInfo;
using v8::Isolate;
using v8::Local;
using v8::Object;
using v8::String;
using v8::Value;

static Local<String> Str(Isolate* isolate, const char* s) {
  return String::NewFromUtf8(isolate, s).ToLocalChecked();
}

void ThrowErrno(Isolate* isolate, const char* syscall, int err) {
  Local<Context> context = isolate->GetCurrentContext();
  int uv_code = err > 0 ? -err : err;  // accept errno (positive) or a negated errno / uv code
  char message[256];
  snprintf(message, sizeof message, "%s failed: %s", syscall, uv_strerror(uv_code));
  Local<Object> error = Exception::Error(Str(isolate, message)).As<Object>();
  error->Set(context, Str(isolate, "errno"), Str(isolate, uv_err_name(uv_code))).Check();
  error->Set(context, Str(isolate, "syscall"), Str(isolate, syscall)).Check();
  isolate->ThrowException(error);
}

void ThrowTypeError(Isolate* isolate, const char* message) {
  isolate->ThrowException(Exception::TypeError(Str(isolate, message)));
}

void ThrowRangeError(Isolate* isolate, const char* message) {
  isolate->ThrowException(Exception::RangeError(Str(isolate, message)));
}

int32_t* WordAt(const FunctionCallbackInfo<Value>& args, int sab_index, int offset_index,
                std::shared_ptr<v8::BackingStore>* keep) {
  Isolate* isolate = args.GetIsolate();
  if (!args[sab_index]->IsSharedArrayBuffer()) {
    ThrowTypeError(isolate, "expected a SharedArrayBuffer");
    return nullptr;
  }
  if (!args[offset_index]->IsNumber()) {
    ThrowTypeError(isolate, "expected a byte offset");
    return nullptr;
  }
  std::shared_ptr<v8::BackingStore> store = args[sab_index].As<v8::SharedArrayBuffer>()->GetBackingStore();
  double offset = args[offset_index].As<v8::Number>()->Value();
  if (!(offset >= 0) || offset + 4 > static_cast<double>(store->ByteLength()) ||
      static_cast<double>(static_cast<size_t>(offset)) != offset || static_cast<size_t>(offset) % 4 != 0) {
    ThrowRangeError(isolate, "word offset out of range or not 4-byte aligned");
    return nullptr;
  }
  int32_t* word = reinterpret_cast<int32_t*>(static_cast<char*>(store->Data()) + static_cast<size_t>(offset));
  if (keep != nullptr) *keep = std::move(store);
  return word;
}

void SetMethod(Local<Context> context, Local<Object> target, const char* name, v8::FunctionCallback callback,
               Local<Value> data) {
  // Module init and every call run on the isolate's own thread (v8::Context lost GetIsolate in
  // V8 14, Node 26).
  Isolate* isolate = Isolate::GetCurrent();
  Local<v8::Function> fn = v8::FunctionTemplate::New(isolate, callback, data)->GetFunction(context).ToLocalChecked();
  fn->SetName(Str(isolate, name));
  target->Set(context, Str(isolate, name), fn).Check();
}

}  // namespace ipc

NODE_MODULE_INIT(/* exports, module, context */) {
  ipc::InitShm(exports, context);
  ipc::InitFutex(exports, context);
  ipc::InitLifeline(exports, context);
  ipc::InitFifo(exports, context);
  ipc::InitMq(exports, context);
  ipc::InitCopyOut(exports, context);
}
