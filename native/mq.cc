// POSIX message queues (mq_open and friends), with an async path driven by the event loop.
//
// On Linux an mqd_t is a file descriptor that supports poll(2): readable while the queue holds a
// message, writable while it has room. Every queue this addon opens is opened O_NONBLOCK, so a
// send or receive is first simply *tried*; only when the kernel says EAGAIN does JavaScript ask
// for a wake-up, and that wake-up is a uv_poll_t on the descriptor itself: no polling loop, no
// thread per queue, no thread pool. A poll handle is active only while some operation waits (an
// idle one is unref'd, then stopped, so it keeps no loop alive) and closed with the queue or at
// environment teardown.
//
// Blocking (xSync) calls on the same descriptor clear O_NONBLOCK with mq_setattr around one
// mq_timedsend/mq_timedreceive and set it again afterwards. That is safe because a descriptor
// belongs to one MessageQueue object of one thread: while the thread blocks, none of its async
// operations can run, and other threads and processes have their own descriptors.
//
// Handles live in a per-environment table (main thread and each worker have their own) and are
// named by integer ids, so JavaScript never holds a native pointer.
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <cmath>
#include <unordered_map>

#include <node_buffer.h>

#include "common.h"

namespace ipc {

using v8::Context;
using v8::FunctionCallbackInfo;
using v8::Isolate;
using v8::Local;
using v8::Object;
using v8::Value;

enum OpenHow { kCreate = 0, kOpen = 1, kOpenOrCreate = 2 };
enum Events { kReadable = 1, kWritable = 2 };

struct MqEnv;

struct MqHandle {
  double id;
  mqd_t fd;
  long msgsize;
  uv_poll_t poll;
  int events = 0;     // what the poll handle currently watches (kReadable | kWritable), 0 = stopped
  bool idle = false;  // started but nobody waits: unref'd, and stopped by its next callback
  MqEnv* env;
};

struct MqEnv {
  Isolate* isolate;
  v8::Global<Context> context;
  v8::Global<v8::Function> callback;        // callback(id, events, status)
  v8::Global<v8::Uint32Array> out;          // out[0] = priority of the last received message
  std::unordered_map<double, MqHandle*> handles;
  double next_id = 1;
};

static Local<v8::String> Key(Isolate* isolate, const char* s) {
  return v8::String::NewFromUtf8(isolate, s, v8::NewStringType::kInternalized).ToLocalChecked();
}

static MqEnv* EnvOf(const FunctionCallbackInfo<Value>& args) {
  return UnwrapExternal<MqEnv>(args.Data(), ExternalTag::kMqEnv);
}

static MqHandle* HandleOf(const FunctionCallbackInfo<Value>& args) {
  MqEnv* env = EnvOf(args);
  auto found = env->handles.find(args[0].As<v8::Number>()->Value());
  if (found == env->handles.end()) {
    ThrowErrno(args.GetIsolate(), "mq (closed descriptor)", -EBADF);
    return nullptr;
  }
  return found->second;
}

static void CloseHandle(MqHandle* h) {
  // uv_close removes the descriptor from epoll synchronously, so closing it right after cannot
  // race with the loop; the handle memory goes when libuv is done with it.
  uv_close(reinterpret_cast<uv_handle_t*>(&h->poll), [](uv_handle_t* p) { delete static_cast<MqHandle*>(p->data); });
  mq_close(h->fd);
}

static bool CheckBytes(Isolate* isolate, Local<Value> v) {
  if (!v->IsArrayBufferView()) {
    ThrowTypeError(isolate, "expected a Uint8Array");
    return false;
  }
  return true;
}

// Timeouts beyond this (about 31 years) are waits without a deadline.
static constexpr double kForeverMs = 1e12;

static void AbsoluteDeadline(double timeout_ms, struct timespec* ts) {
  // mq_timed* take an absolute CLOCK_REALTIME deadline (POSIX); EINTR then retries with the
  // same deadline, so the total wait never grows.
  clock_gettime(CLOCK_REALTIME, ts);
  double ns = std::floor(timeout_ms * 1e6);
  ts->tv_sec += static_cast<time_t>(ns / 1e9);
  ts->tv_nsec += static_cast<long>(std::fmod(ns, 1e9));
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

static int SetNonBlocking(mqd_t fd, bool nonblocking) {
  struct mq_attr attr = {};
  attr.mq_flags = nonblocking ? O_NONBLOCK : 0;
  return mq_setattr(fd, &attr, nullptr);
}

// open(osName, how, mode, maxMessages, maxMessageSize) -> { id, created, maxMessages, maxMessageSize }
// maxMessages / maxMessageSize are used only when creating.
static void Open(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  Local<Context> context = isolate->GetCurrentContext();
  MqEnv* env = EnvOf(args);
  v8::String::Utf8Value name(isolate, args[0]);
  int how = args[1]->Int32Value(context).FromJust();
  mode_t mode = static_cast<mode_t>(args[2]->Uint32Value(context).FromJust());
  struct mq_attr want = {};
  want.mq_maxmsg = static_cast<long>(args[3]->NumberValue(context).FromJust());
  want.mq_msgsize = static_cast<long>(args[4]->NumberValue(context).FromJust());

  const int flags = O_RDWR | O_NONBLOCK | O_CLOEXEC;
  mqd_t fd = -1;
  bool created = false;
  for (int attempt = 0; fd < 0; attempt++) {
    if (how != kOpen) {
      fd = mq_open(*name, flags | O_CREAT | O_EXCL, mode, &want);
      if (fd >= 0) {
        created = true;
        break;
      }
      if (errno != EEXIST || how == kCreate) return ThrowErrno(isolate, "mq_open", -errno);
    }
    fd = mq_open(*name, flags);
    if (fd >= 0) break;
    // openOrCreate raced with a remove between our two calls: try again, a bounded number of times.
    if (errno != ENOENT || how == kOpen || attempt >= 100) return ThrowErrno(isolate, "mq_open", -errno);
  }
  // The mode must not depend on the caller's umask (mq_open applies it).
  if (created && fchmod(fd, mode) != 0) {
    int err = errno;
    mq_close(fd);
    mq_unlink(*name);
    return ThrowErrno(isolate, "fchmod", -err);
  }
  struct mq_attr attr;
  if (mq_getattr(fd, &attr) != 0) {
    int err = errno;
    mq_close(fd);
    if (created) mq_unlink(*name);
    return ThrowErrno(isolate, "mq_getattr", -err);
  }

  MqHandle* h = new MqHandle();
  h->id = env->next_id++;
  h->fd = fd;
  h->msgsize = attr.mq_msgsize;
  h->env = env;
  int err = uv_poll_init(node::GetCurrentEventLoop(isolate), &h->poll, fd);
  if (err != 0) {
    mq_close(fd);
    if (created) mq_unlink(*name);
    delete h;
    return ThrowErrno(isolate, "uv_poll_init", err);
  }
  h->poll.data = h;
  env->handles[h->id] = h;

  Local<Object> result = Object::New(isolate);
  result->Set(context, Key(isolate, "id"), v8::Number::New(isolate, h->id)).Check();
  result->Set(context, Key(isolate, "created"), v8::Boolean::New(isolate, created)).Check();
  result->Set(context, Key(isolate, "maxMessages"), v8::Number::New(isolate, static_cast<double>(attr.mq_maxmsg))).Check();
  result->Set(context, Key(isolate, "maxMessageSize"), v8::Number::New(isolate, static_cast<double>(attr.mq_msgsize))).Check();
  args.GetReturnValue().Set(result);
}

// close(id) -> true if it was open.
static void Close(const FunctionCallbackInfo<Value>& args) {
  MqEnv* env = EnvOf(args);
  auto found = env->handles.find(args[0].As<v8::Number>()->Value());
  if (found == env->handles.end()) return args.GetReturnValue().Set(false);
  MqHandle* h = found->second;
  env->handles.erase(found);
  CloseHandle(h);
  args.GetReturnValue().Set(true);
}

// trySend(id, bytes, priority) -> true sent, false full. Never blocks.
static void TrySend(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  MqHandle* h = HandleOf(args);
  if (h == nullptr || !CheckBytes(isolate, args[1])) return;
  unsigned priority = args[2].As<v8::Uint32>()->Value();
  if (mq_send(h->fd, node::Buffer::Data(args[1]), node::Buffer::Length(args[1]), priority) == 0) {
    return args.GetReturnValue().Set(true);
  }
  if (errno == EAGAIN) return args.GetReturnValue().Set(false);
  ThrowErrno(isolate, "mq_send", -errno);
}

// tryReceive(id, scratch) -> message length, or -1 when empty; out[0] = its priority.
// scratch must hold maxMessageSize bytes (the kernel refuses smaller buffers with EMSGSIZE).
static void TryReceive(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  MqHandle* h = HandleOf(args);
  if (h == nullptr || !CheckBytes(isolate, args[1])) return;
  unsigned priority = 0;
  ssize_t n = mq_receive(h->fd, node::Buffer::Data(args[1]), node::Buffer::Length(args[1]), &priority);
  if (n >= 0) {
    h->env->out.Get(isolate)->Set(isolate->GetCurrentContext(), 0, v8::Integer::NewFromUnsigned(isolate, priority)).Check();
    return args.GetReturnValue().Set(static_cast<double>(n));
  }
  if (errno == EAGAIN) return args.GetReturnValue().Set(-1);
  ThrowErrno(isolate, "mq_receive", -errno);
}

// sendSync(id, bytes, priority, timeoutMs) -> true sent, false timed out. Blocks the thread.
static void SendSync(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  MqHandle* h = HandleOf(args);
  if (h == nullptr || !CheckBytes(isolate, args[1])) return;
  const char* data = node::Buffer::Data(args[1]);
  size_t length = node::Buffer::Length(args[1]);
  unsigned priority = args[2].As<v8::Uint32>()->Value();
  double timeout_ms = args[3].As<v8::Number>()->Value();
  if (mq_send(h->fd, data, length, priority) == 0) return args.GetReturnValue().Set(true);
  if (errno != EAGAIN) return ThrowErrno(isolate, "mq_send", -errno);
  if (timeout_ms <= 0) return args.GetReturnValue().Set(false);

  struct timespec deadline;
  bool finite = timeout_ms < kForeverMs;  // also keeps the deadline within time_t
  if (finite) AbsoluteDeadline(timeout_ms, &deadline);
  if (SetNonBlocking(h->fd, false) != 0) return ThrowErrno(isolate, "mq_setattr", -errno);
  int r, err;
  do {
    r = finite ? mq_timedsend(h->fd, data, length, priority, &deadline) : mq_send(h->fd, data, length, priority);
    err = r == 0 ? 0 : errno;
  } while (err == EINTR);
  SetNonBlocking(h->fd, true);
  if (err == 0) return args.GetReturnValue().Set(true);
  if (err == ETIMEDOUT) return args.GetReturnValue().Set(false);
  ThrowErrno(isolate, "mq_timedsend", -err);
}

// receiveSync(id, scratch, timeoutMs) -> message length, or -1 timed out; out[0] = priority.
static void ReceiveSync(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  MqHandle* h = HandleOf(args);
  if (h == nullptr || !CheckBytes(isolate, args[1])) return;
  char* data = node::Buffer::Data(args[1]);
  size_t length = node::Buffer::Length(args[1]);
  double timeout_ms = args[2].As<v8::Number>()->Value();
  unsigned priority = 0;
  ssize_t n = mq_receive(h->fd, data, length, &priority);
  int err = n >= 0 ? 0 : errno;
  if (err == EAGAIN && timeout_ms > 0) {
    struct timespec deadline;
    bool finite = timeout_ms < kForeverMs;  // also keeps the deadline within time_t
    if (finite) AbsoluteDeadline(timeout_ms, &deadline);
    if (SetNonBlocking(h->fd, false) != 0) return ThrowErrno(isolate, "mq_setattr", -errno);
    do {
      n = finite ? mq_timedreceive(h->fd, data, length, &priority, &deadline) : mq_receive(h->fd, data, length, &priority);
      err = n >= 0 ? 0 : errno;
    } while (err == EINTR);
    SetNonBlocking(h->fd, true);
    if (err == ETIMEDOUT) err = EAGAIN;
  }
  if (err == 0) {
    h->env->out.Get(isolate)->Set(isolate->GetCurrentContext(), 0, v8::Integer::NewFromUnsigned(isolate, priority)).Check();
    return args.GetReturnValue().Set(static_cast<double>(n));
  }
  if (err == EAGAIN) return args.GetReturnValue().Set(-1);
  ThrowErrno(isolate, "mq_timedreceive", -err);
}

static void OnPoll(uv_poll_t* poll, int status, int events) {
  MqHandle* h = static_cast<MqHandle*>(poll->data);
  if (h->idle) {
    // Nobody waits any more: this is the moment to stop watching (see Watch).
    uv_poll_stop(poll);
    uv_ref(reinterpret_cast<uv_handle_t*>(poll));
    h->idle = false;
    h->events = 0;
    return;
  }
  MqEnv* env = h->env;
  Isolate* isolate = env->isolate;
  v8::HandleScope scope(isolate);
  Local<Context> context = env->context.Get(isolate);
  v8::Context::Scope context_scope(context);
  // On an error libuv has already stopped the handle; JavaScript rejects the waiters.
  if (status < 0) h->events = 0;
  int ready = (events & UV_READABLE ? kReadable : 0) | (events & UV_WRITABLE ? kWritable : 0);
  Local<Value> argv[] = {v8::Number::New(isolate, h->id), v8::Integer::New(isolate, ready),
                         v8::Integer::New(isolate, status)};
  node::MakeCallback(isolate, context->Global(), env->callback.Get(isolate), 3, argv, {0, 0});
}

// watch(id, events): the poll handle watches kReadable | kWritable exactly; 0 = nobody waits.
// Going idle does not stop the handle at once: it is unref'd (so it keeps no loop alive) and
// stopped by its next callback, if no one has asked for it again by then. In a request/reply
// pattern the next receive usually comes first, which saves an epoll_ctl DEL + ADD per message.
// A non-zero set must be exact, or a level-triggered event nobody waits for would spin the loop.
static void Watch(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  MqHandle* h = HandleOf(args);
  if (h == nullptr) return;
  uv_handle_t* handle = reinterpret_cast<uv_handle_t*>(&h->poll);
  int events = args[1]->Int32Value(isolate->GetCurrentContext()).FromJust() & (kReadable | kWritable);
  if (events == 0) {
    if (h->events != 0 && !h->idle) {
      h->idle = true;
      uv_unref(handle);
    }
    return;
  }
  if (h->idle) {
    h->idle = false;
    uv_ref(handle);
  }
  if (events == h->events) return;
  int uv_events = (events & kReadable ? UV_READABLE : 0) | (events & kWritable ? UV_WRITABLE : 0);
  int err = uv_poll_start(&h->poll, uv_events, OnPoll);
  if (err != 0) {
    h->events = 0;
    return ThrowErrno(isolate, "uv_poll_start", err);
  }
  h->events = events;
}

// attributes(id) -> { maxMessages, maxMessageSize, messageCount, mode, uid }
static void Attributes(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  Local<Context> context = isolate->GetCurrentContext();
  MqHandle* h = HandleOf(args);
  if (h == nullptr) return;
  struct mq_attr attr;
  if (mq_getattr(h->fd, &attr) != 0) return ThrowErrno(isolate, "mq_getattr", -errno);
  struct stat st;
  if (fstat(h->fd, &st) != 0) return ThrowErrno(isolate, "fstat", -errno);
  Local<Object> result = Object::New(isolate);
  result->Set(context, Key(isolate, "maxMessages"), v8::Number::New(isolate, static_cast<double>(attr.mq_maxmsg))).Check();
  result->Set(context, Key(isolate, "maxMessageSize"), v8::Number::New(isolate, static_cast<double>(attr.mq_msgsize))).Check();
  result->Set(context, Key(isolate, "messageCount"), v8::Number::New(isolate, static_cast<double>(attr.mq_curmsgs))).Check();
  result->Set(context, Key(isolate, "mode"), v8::Number::New(isolate, st.st_mode & 07777)).Check();
  result->Set(context, Key(isolate, "uid"), v8::Number::New(isolate, st.st_uid)).Check();
  args.GetReturnValue().Set(result);
}

static void Cleanup(void* arg) {
  MqEnv* env = static_cast<MqEnv*>(arg);
  for (auto& entry : env->handles) CloseHandle(entry.second);
  env->handles.clear();
  env->callback.Reset();
  env->context.Reset();
  env->out.Reset();
  delete env;
}

// mqInit(callback, out) -> { open, close, trySend, tryReceive, sendSync, receiveSync, watch,
// attributes } bound to this environment. callback(id, events, status) runs on the JS thread
// when a watched descriptor is ready; out is a Uint32Array(1) that receives priorities.
static void MqInit(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  if (!args[0]->IsFunction()) return ThrowTypeError(isolate, "callback must be a function");
  if (!args[1]->IsUint32Array() || args[1].As<v8::Uint32Array>()->Length() < 1) {
    return ThrowTypeError(isolate, "out must be a Uint32Array");
  }
  Local<Context> context = isolate->GetCurrentContext();
  MqEnv* env = new MqEnv();
  env->isolate = isolate;
  env->context.Reset(isolate, context);
  env->callback.Reset(isolate, args[0].As<v8::Function>());
  env->out.Reset(isolate, args[1].As<v8::Uint32Array>());
  node::AddEnvironmentCleanupHook(isolate, Cleanup, env);
  Local<v8::External> data = WrapExternal(isolate, env, ExternalTag::kMqEnv);
  Local<Object> api = Object::New(isolate);
  SetMethod(context, api, "open", Open, data);
  SetMethod(context, api, "close", Close, data);
  SetMethod(context, api, "trySend", TrySend, data);
  SetMethod(context, api, "tryReceive", TryReceive, data);
  SetMethod(context, api, "sendSync", SendSync, data);
  SetMethod(context, api, "receiveSync", ReceiveSync, data);
  SetMethod(context, api, "watch", Watch, data);
  SetMethod(context, api, "attributes", Attributes, data);
  args.GetReturnValue().Set(api);
}

// mqUnlink(osName) -> true if removed, false if it did not exist.
static void MqUnlink(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  v8::String::Utf8Value name(isolate, args[0]);
  if (mq_unlink(*name) == 0) return args.GetReturnValue().Set(true);
  if (errno == ENOENT) return args.GetReturnValue().Set(false);
  ThrowErrno(isolate, "mq_unlink", -errno);
}

// mqExists(osName) -> whether the name exists (also when this process may not open it).
static void MqExists(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  v8::String::Utf8Value name(isolate, args[0]);
  mqd_t fd = mq_open(*name, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd >= 0) {
    mq_close(fd);
    return args.GetReturnValue().Set(true);
  }
  if (errno == ENOENT) return args.GetReturnValue().Set(false);
  if (errno == EACCES) return args.GetReturnValue().Set(true);
  ThrowErrno(isolate, "mq_open", -errno);
}

static double Limit(rlim_t value) {
  return value == RLIM_INFINITY ? INFINITY : static_cast<double>(value);
}

// mqLimits() -> { openFiles, msgqueueBytes, descriptorAvailable }: the soft limits that an EMFILE
// from mq_open can come from, and whether this process can still open a descriptor (it cannot
// even read /proc when the descriptors are what ran out).
static void MqLimits(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  Local<Context> context = isolate->GetCurrentContext();
  struct rlimit files, queues;
  getrlimit(RLIMIT_NOFILE, &files);
  getrlimit(RLIMIT_MSGQUEUE, &queues);
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  bool available = fd >= 0 || errno != EMFILE;
  if (fd >= 0) close(fd);
  Local<Object> result = Object::New(isolate);
  result->Set(context, Key(isolate, "openFiles"), v8::Number::New(isolate, Limit(files.rlim_cur))).Check();
  result->Set(context, Key(isolate, "msgqueueBytes"), v8::Number::New(isolate, Limit(queues.rlim_cur))).Check();
  result->Set(context, Key(isolate, "descriptorAvailable"), v8::Boolean::New(isolate, available)).Check();
  args.GetReturnValue().Set(result);
}

void InitMq(Local<Object> exports, Local<Context> context) {
  Isolate* isolate = Isolate::GetCurrent();
  SetMethod(context, exports, "mqInit", MqInit);
  SetMethod(context, exports, "mqUnlink", MqUnlink);
  SetMethod(context, exports, "mqExists", MqExists);
  SetMethod(context, exports, "mqLimits", MqLimits);
  long prio_max = sysconf(_SC_MQ_PRIO_MAX);
  exports->Set(context, Key(isolate, "mqPrioMax"), v8::Number::New(isolate, prio_max > 0 ? static_cast<double>(prio_max) : 32768))
      .Check();
}

}  // namespace ipc
