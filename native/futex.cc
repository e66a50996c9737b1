// Cross-process futex wait/wake on words of a SharedArrayBuffer, and the machinery that turns a
// kernel wait into a Promise without a thread per waiter.
//
// Synchronous: futexWait/futexWake are FUTEX_WAIT_BITSET (absolute CLOCK_MONOTONIC deadline, so
// EINTR simply retries) and FUTEX_WAKE, both *shared* (no _PRIVATE flag): the kernel keys a
// shared futex by the page's inode and offset, so waiters in other processes are found.
//
// Asynchronous: every environment (main thread or worker) owns a few watcher threads. Each
// watcher sleeps in futex_waitv(2) on up to 127 watched words plus its own control word, which
// the JS thread bumps to make it rebuild its list. Async waiters on the same (word, expected)
// share one watched entry (a "group"); when the word is woken or found changed, the whole group
// fires and the JS side resolves every waiter in it with 'ok'. Over-waking is the safe
// direction: futex users re-check their condition after every wake. Fired group ids are handed
// to the JS thread through one uv_async_t, so 1000 waiters cost at most 8 threads and one
// async handle.
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <cmath>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common.h"

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif

namespace ipc {

using v8::Context;
using v8::FunctionCallbackInfo;
using v8::Isolate;
using v8::Local;
using v8::Object;
using v8::Value;

static long Futex(int32_t* word, int op, int32_t val, const struct timespec* ts, uint32_t bitset) {
  return syscall(SYS_futex, word, op, val, ts, nullptr, bitset);
}

// futexWait(sab, byteOffset, expected, timeoutMs) -> 0 woken, 1 not-equal, 2 timed out.
// timeoutMs: a finite number >= 0, or Infinity.
static void FutexWait(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  int32_t* word = WordAt(args, 0, 1);
  if (word == nullptr) return;
  int32_t expected = args[2]->Int32Value(isolate->GetCurrentContext()).FromJust();
  double timeout_ms = args[3].As<v8::Number>()->Value();

  struct timespec deadline;
  const struct timespec* deadline_ptr = nullptr;
  // Beyond ~31 years a deadline would overflow time_t arithmetic: that is "forever" anyway.
  if (std::isfinite(timeout_ms) && timeout_ms < 1e12) {
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    double ns = std::floor(timeout_ms * 1e6);
    deadline.tv_sec += static_cast<time_t>(ns / 1e9);
    deadline.tv_nsec += static_cast<long>(std::fmod(ns, 1e9));
    if (deadline.tv_nsec >= 1000000000L) {
      deadline.tv_sec++;
      deadline.tv_nsec -= 1000000000L;
    }
    deadline_ptr = &deadline;
  }
  for (;;) {
    long r = Futex(word, FUTEX_WAIT_BITSET, expected, deadline_ptr, FUTEX_BITSET_MATCH_ANY);
    if (r == 0) return args.GetReturnValue().Set(0);
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return args.GetReturnValue().Set(1);
    if (errno == ETIMEDOUT) return args.GetReturnValue().Set(2);
    return ThrowErrno(isolate, "futex", -errno);
  }
}

// futexWake(sab, byteOffset, count) -> number of kernel-level waiters woken.
static void FutexWake(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  int32_t* word = WordAt(args, 0, 1);
  if (word == nullptr) return;
  double count = args[2].As<v8::Number>()->Value();
  int n = count >= INT_MAX ? INT_MAX : static_cast<int>(count);
  long r = Futex(word, FUTEX_WAKE, n, nullptr, 0);
  if (r < 0) return ThrowErrno(isolate, "futex", -errno);
  args.GetReturnValue().Set(static_cast<double>(r));
}

// ---------------------------------------------------------------------------------------------
// Async waits

static constexpr size_t kEntriesPerWatcher = FUTEX_WAITV_MAX - 1;  // slot 0 is the control word

struct Group {
  double id;
  int32_t* word;
  int32_t expected;
  std::shared_ptr<v8::BackingStore> keep;  // the memory stays mapped while it is watched
  struct Watcher* watcher;
};

struct Watcher {
  std::thread thread;
  std::vector<Group*> groups;
  alignas(4) std::atomic<int32_t> control{0};
};

class AsyncWaits {
 public:
  AsyncWaits(Isolate* isolate, Local<v8::Function> callback) : isolate_(isolate), callback_(isolate, callback) {
    uv_async_init(node::GetCurrentEventLoop(isolate), &async_, OnAsync);
    async_.data = this;
    uv_unref(reinterpret_cast<uv_handle_t*>(&async_));
    node::AddEnvironmentCleanupHook(isolate, Cleanup, this);
  }

  // Returns the group id, or -errno when futex_waitv is not available.
  double Watch(int32_t* word, int32_t expected, std::shared_ptr<v8::BackingStore> keep) {
    std::lock_guard<std::mutex> lock(mu_);
    if (unsupported_) return -ENOSYS;
    auto key = std::make_pair(word, expected);
    auto found = by_key_.find(key);
    if (found != by_key_.end()) {
      refs_[found->second->id]++;
      return found->second->id;
    }
    Watcher* watcher = nullptr;
    for (Watcher* w : watchers_) {
      if (w->groups.size() < kEntriesPerWatcher) {
        watcher = w;
        break;
      }
    }
    if (watcher == nullptr) {
      watcher = new Watcher();
      watchers_.push_back(watcher);
      watcher->thread = std::thread(&AsyncWaits::Run, this, watcher);
    }
    Group* group = new Group{next_id_++, word, expected, std::move(keep), watcher};
    watcher->groups.push_back(group);
    by_key_[key] = group;
    by_id_[group->id] = group;
    refs_[group->id] = 1;
    Poke(watcher);
    if (by_id_.size() == 1) uv_ref(reinterpret_cast<uv_handle_t*>(&async_));
    return group->id;
  }

  // One waiter of the group gave up (timeout, abort). Returns false if the group already fired.
  bool Unwatch(double id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto found = by_id_.find(id);
    if (found == by_id_.end()) return false;
    if (--refs_[id] > 0) return true;
    Remove(found->second);
    if (by_id_.empty() && fired_.empty()) uv_unref(reinterpret_cast<uv_handle_t*>(&async_));
    return true;
  }

  size_t WatcherCount() {
    std::lock_guard<std::mutex> lock(mu_);
    return watchers_.size();
  }

 private:
  static void Poke(Watcher* watcher) {
    watcher->control.fetch_add(1, std::memory_order_release);
    syscall(SYS_futex, &watcher->control, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
  }

  // Called with mu_ held.
  void Remove(Group* group) {
    auto& groups = group->watcher->groups;
    for (size_t i = 0; i < groups.size(); i++) {
      if (groups[i] == group) {
        groups[i] = groups.back();
        groups.pop_back();
        break;
      }
    }
    Poke(group->watcher);
    by_key_.erase(std::make_pair(group->word, group->expected));
    by_id_.erase(group->id);
    refs_.erase(group->id);
    delete group;
  }

  // Called with mu_ held: the group's word was woken or has changed.
  void Fire(double id) {
    auto found = by_id_.find(id);
    if (found == by_id_.end()) return;
    fired_.push_back(id);
    Remove(found->second);
  }

  void Run(Watcher* self) {
    struct futex_waitv entries[FUTEX_WAITV_MAX];
    std::vector<std::pair<double, std::shared_ptr<v8::BackingStore>>> snapshot;
    for (;;) {
      size_t n = 0;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_) return;
        entries[0] = {static_cast<uint64_t>(static_cast<uint32_t>(self->control.load(std::memory_order_acquire))),
                      reinterpret_cast<uintptr_t>(&self->control), FUTEX_32 | FUTEX_PRIVATE_FLAG, 0};
        n = 1;
        snapshot.clear();
        for (Group* g : self->groups) {
          entries[n++] = {static_cast<uint64_t>(static_cast<uint32_t>(g->expected)), reinterpret_cast<uintptr_t>(g->word),
                          FUTEX_32, 0};
          snapshot.emplace_back(g->id, g->keep);  // keeps the pages mapped during the wait
        }
      }
      long r = syscall(SYS_futex_waitv, entries, n, 0, nullptr, CLOCK_MONOTONIC);
      int err = r < 0 ? errno : 0;
      bool notify = false;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (err == ENOSYS) {
          unsupported_ = true;
          return;
        }
        if (r >= 1) {
          // A wake meant for a group whose waiters all left (timeout, abort) before we rebuilt our
          // list would be lost for a wake-one user (a lock, a semaphore): pass it on.
          if (by_id_.count(snapshot[r - 1].first) == 0) {
            syscall(SYS_futex, reinterpret_cast<int32_t*>(entries[r].uaddr), FUTEX_WAKE, 1, nullptr, nullptr, 0);
          }
          Fire(snapshot[r - 1].first);
        }
        // futex_waitv reports only one woken index; a word that changed is treated as woken too,
        // which also covers a wake that raced with our building of the list (EAGAIN).
        for (size_t i = 1; i < n; i++) {
          int32_t now = __atomic_load_n(reinterpret_cast<int32_t*>(entries[i].uaddr), __ATOMIC_ACQUIRE);
          if (now != static_cast<int32_t>(entries[i].val)) Fire(snapshot[i - 1].first);
        }
        notify = !fired_.empty();
      }
      snapshot.clear();
      if (notify) uv_async_send(&async_);
    }
  }

  static void OnAsync(uv_async_t* handle) {
    AsyncWaits* self = static_cast<AsyncWaits*>(handle->data);
    std::vector<double> fired;
    {
      std::lock_guard<std::mutex> lock(self->mu_);
      fired.swap(self->fired_);
      if (self->by_id_.empty()) uv_unref(reinterpret_cast<uv_handle_t*>(&self->async_));
    }
    if (fired.empty()) return;
    Isolate* isolate = self->isolate_;
    v8::HandleScope scope(isolate);
    Local<Context> context = isolate->GetCurrentContext();
    Local<v8::Array> ids = v8::Array::New(isolate, static_cast<int>(fired.size()));
    for (size_t i = 0; i < fired.size(); i++) ids->Set(context, i, v8::Number::New(isolate, fired[i])).Check();
    Local<Value> argv[] = {ids};
    Local<v8::Function> callback = self->callback_.Get(isolate);
    node::MakeCallback(isolate, context->Global(), callback, 1, argv, {0, 0});
  }

  static void Cleanup(void* arg) {
    AsyncWaits* self = static_cast<AsyncWaits*>(arg);
    {
      std::lock_guard<std::mutex> lock(self->mu_);
      self->stopping_ = true;
      for (Watcher* w : self->watchers_) Poke(w);
    }
    for (Watcher* w : self->watchers_) {
      w->thread.join();
      for (Group* g : w->groups) delete g;
      delete w;
    }
    self->callback_.Reset();
    uv_close(reinterpret_cast<uv_handle_t*>(&self->async_), [](uv_handle_t* h) {
      delete static_cast<AsyncWaits*>(h->data);
    });
  }

  Isolate* isolate_;
  v8::Global<v8::Function> callback_;
  uv_async_t async_;
  std::mutex mu_;
  bool stopping_ = false;
  bool unsupported_ = false;
  double next_id_ = 1;
  std::vector<Watcher*> watchers_;
  std::map<std::pair<int32_t*, int32_t>, Group*> by_key_;
  std::unordered_map<double, Group*> by_id_;
  std::unordered_map<double, uint32_t> refs_;
  std::vector<double> fired_;
};

static AsyncWaits* WaitsOf(const FunctionCallbackInfo<Value>& args) {
  return static_cast<AsyncWaits*>(args.Data().As<v8::External>()->Value());
}

// asyncInit(callback): callback(ids: number[]) is called on the JS thread for fired groups.
// Returns an External used as the data of asyncWatch/asyncUnwatch (set up by InitFutex).
static void AsyncWatch(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  AsyncWaits* waits = WaitsOf(args);
  if (waits == nullptr) return ThrowTypeError(isolate, "asyncSetCallback must be called first");
  std::shared_ptr<v8::BackingStore> keep;
  int32_t* word = WordAt(args, 0, 1, &keep);
  if (word == nullptr) return;
  int32_t expected = args[2]->Int32Value(isolate->GetCurrentContext()).FromJust();
  double id = waits->Watch(word, expected, std::move(keep));
  if (id < 0) return ThrowErrno(isolate, "futex_waitv", static_cast<int>(id));
  args.GetReturnValue().Set(id);
}

static void AsyncUnwatch(const FunctionCallbackInfo<Value>& args) {
  args.GetReturnValue().Set(WaitsOf(args)->Unwatch(args[0].As<v8::Number>()->Value()));
}

static void AsyncWatcherCount(const FunctionCallbackInfo<Value>& args) {
  args.GetReturnValue().Set(static_cast<double>(WaitsOf(args)->WatcherCount()));
}

// asyncInit(callback) -> { watch, unwatch, watcherCount } bound to this environment's state.
static void AsyncInit(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  if (!args[0]->IsFunction()) return ThrowTypeError(isolate, "callback must be a function");
  Local<Context> context = isolate->GetCurrentContext();
  AsyncWaits* waits = new AsyncWaits(isolate, args[0].As<v8::Function>());
  Local<v8::External> data = v8::External::New(isolate, waits);
  Local<Object> api = Object::New(isolate);
  SetMethod(context, api, "watch", AsyncWatch, data);
  SetMethod(context, api, "unwatch", AsyncUnwatch, data);
  SetMethod(context, api, "watcherCount", AsyncWatcherCount, data);
  args.GetReturnValue().Set(api);
}

void InitFutex(Local<Object> exports, Local<Context> context) {
  SetMethod(context, exports, "futexWait", FutexWait);
  SetMethod(context, exports, "futexWake", FutexWake);
  SetMethod(context, exports, "asyncInit", AsyncInit);
}

}  // namespace ipc
