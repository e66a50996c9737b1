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
//
// Without futex_waitv (Linux before 5.16, or a seccomp profile that denies it; probed once per
// process): each group gets a thread of a bounded pool (INTERPROCESS_FUTEX_THREADS, default
// 1024) that sleeps in FUTEX_WAIT_BITSET on the group's word, which works on every kernel this
// supports (4.18+). A thread per distinct waited word is what the fallback costs; when the pool
// is exhausted a new wait fails at once (IPC_ERR_LIMIT in JavaScript) instead of queueing
// behind waits that may never end. A group whose waiters all left is cancelled with a signal
// to its thread (EINTR), never with a wake on the shared word: a wake there would reach other
// processes' waiters, and could not be told apart from a real one, which must be passed on.
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
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

// Building on a system whose kernel headers predate Linux 5.16 (RHEL 8, Debian 11): the call
// and its argument exist in every kernel this may run on, or fail with ENOSYS there.
#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif
#ifndef FUTEX_WAITV_MAX
#define FUTEX_WAITV_MAX 128
#define FUTEX_32 2
struct futex_waitv {
  uint64_t val;
  uint64_t uaddr;
  uint32_t flags;
  uint32_t __reserved;
};
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

// How this process turns kernel waits into events, decided once at load (see ProbeMechanism).
enum class Mechanism { kWaitv, kThreads };

static const char* MechanismName(Mechanism m) { return m == Mechanism::kWaitv ? "futex_waitv" : "threads"; }

// futex_waitv(2) came with Linux 5.16. Asking for zero futexes is invalid, so a kernel that has
// the call answers EINVAL without touching anything; ENOSYS means an older kernel or a seccomp
// filter, EPERM a container profile that denies calls it does not know. Anything but EINVAL
// selects the fallback, as does INTERPROCESS_FUTEX_WAITV=0 (to measure or test the fallback).
static Mechanism ProbeMechanism() {
  static const Mechanism probed = [] {
    const char* force = getenv("INTERPROCESS_FUTEX_WAITV");
    if (force != nullptr && strcmp(force, "0") == 0) return Mechanism::kThreads;
    long r = syscall(SYS_futex_waitv, nullptr, 0, 0, nullptr, CLOCK_MONOTONIC);
    return r < 0 && errno == EINVAL ? Mechanism::kWaitv : Mechanism::kThreads;
  }();
  return probed;
}

static constexpr size_t kDefaultMaxSleepers = 1024;
static constexpr size_t kSleeperStackBytes = 256 * 1024;

struct Group {
  double id;
  int32_t* word;
  int32_t expected;
  std::shared_ptr<v8::BackingStore> keep;  // the memory stays mapped while it is watched
  struct Watcher* watcher;                 // futex_waitv: the thread whose list holds it
  struct Sleeper* sleeper;                 // fallback: the thread that sleeps on it
};

// futex_waitv: one thread watches up to 127 groups plus its control word.
struct Watcher {
  std::thread thread;
  std::vector<Group*> groups;
  alignas(4) std::atomic<int32_t> control{0};
};

// Fallback: one pooled thread per watched group, sleeping in FUTEX_WAIT_BITSET on the word.
struct Sleeper {
  pthread_t thread;
  Group* group = nullptr;         // assigned under mu_; nullptr when idle
  int32_t* in_kernel = nullptr;   // the word it sleeps on (set under mu_ before the call)
  alignas(4) std::atomic<int32_t> control{0};  // an idle sleeper waits here for work
  std::atomic<bool> exited{false};
  class AsyncWaits* owner;
};

// The signal that interrupts a fallback thread's kernel wait: the highest real-time signal
// nobody in the process handles yet, with a handler that does nothing (and no SA_RESTART, so
// the wait returns EINTR). Sleeper threads block every other signal, so process-directed
// signals never land on them. 0 when no real-time signal is free.
static int CancelSignal() {
  static const int chosen = [] {
    for (int sig = SIGRTMAX; sig >= SIGRTMIN; sig--) {
      struct sigaction current;
      if (sigaction(sig, nullptr, &current) != 0 || current.sa_handler != SIG_DFL) continue;
      struct sigaction ours = {};
      ours.sa_handler = [](int) {};
      sigemptyset(&ours.sa_mask);
      if (sigaction(sig, &ours, nullptr) == 0) return sig;
    }
    return 0;
  }();
  return chosen;
}

class AsyncWaits {
 public:
  AsyncWaits(Isolate* isolate, Local<v8::Function> callback)
      : isolate_(isolate), callback_(isolate, callback), mechanism_(ProbeMechanism()) {
    const char* max = getenv("INTERPROCESS_FUTEX_THREADS");
    if (max != nullptr && atol(max) > 0) max_sleepers_ = static_cast<size_t>(atol(max));
    uv_async_init(node::GetCurrentEventLoop(isolate), &async_, OnAsync);
    async_.data = this;
    uv_unref(reinterpret_cast<uv_handle_t*>(&async_));
    node::AddEnvironmentCleanupHook(isolate, Cleanup, this);
  }

  // Returns the group id, or -errno: -EAGAIN when the fallback's thread pool is exhausted.
  double Watch(int32_t* word, int32_t expected, std::shared_ptr<v8::BackingStore> keep) {
    std::lock_guard<std::mutex> lock(mu_);
    auto key = std::make_pair(word, expected);
    auto found = by_key_.find(key);
    if (found != by_key_.end()) {
      refs_[found->second->id]++;
      return found->second->id;
    }
    Group* group = new Group{next_id_++, word, expected, std::move(keep), nullptr, nullptr};
    if (mechanism_ == Mechanism::kWaitv) {
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
      group->watcher = watcher;
      watcher->groups.push_back(group);
      Poke(&watcher->control);
    } else {
      Sleeper* sleeper = IdleSleeper();
      if (sleeper == nullptr) {
        delete group;
        return -EAGAIN;
      }
      group->sleeper = sleeper;
      sleeper->group = group;
      Poke(&sleeper->control);
    }
    by_key_[key] = group;
    by_id_[group->id] = group;
    refs_[group->id] = 1;
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

  size_t ThreadCount() {
    std::lock_guard<std::mutex> lock(mu_);
    return watchers_.size() + sleepers_.size();
  }

  Mechanism mechanism() {
    std::lock_guard<std::mutex> lock(mu_);
    return mechanism_;
  }

  size_t max_sleepers() const { return max_sleepers_; }

 private:
  static void Poke(std::atomic<int32_t>* control) {
    control->fetch_add(1, std::memory_order_release);
    syscall(SYS_futex, control, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
  }

  // Called with mu_ held: a sleeper that is neither assigned nor still in the kernel on a
  // cancelled word, else a new one while the pool is below its bound, else one still on its way
  // back from a cancelled word (woken again; it takes the new group when it is back), else nullptr.
  Sleeper* IdleSleeper() {
    for (Sleeper* s : sleepers_) {
      if (s->group == nullptr && s->in_kernel == nullptr) return s;
    }
    if (sleepers_.size() >= max_sleepers_) {
      for (Sleeper* s : sleepers_) {
        if (s->group != nullptr) continue;
        Interrupt(s);
        return s;
      }
      return nullptr;
    }
    Sleeper* s = new Sleeper();
    s->owner = this;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, kSleeperStackBytes);
    // The thread starts with every signal blocked and unblocks only the cancel signal.
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    int err = pthread_create(&s->thread, &attr, SleeperMain, s);
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    pthread_attr_destroy(&attr);
    if (err != 0) {
      delete s;
      return nullptr;
    }
    sleepers_.push_back(s);
    return s;
  }

  // Called with mu_ held.
  void Remove(Group* group) {
    if (group->watcher != nullptr) {
      auto& groups = group->watcher->groups;
      for (size_t i = 0; i < groups.size(); i++) {
        if (groups[i] == group) {
          groups[i] = groups.back();
          groups.pop_back();
          break;
        }
      }
      Poke(&group->watcher->control);
    }
    if (Sleeper* s = group->sleeper) {
      s->group = nullptr;
      Interrupt(s);
    }
    by_key_.erase(std::make_pair(group->word, group->expected));
    by_id_.erase(group->id);
    refs_.erase(group->id);
    delete group;
  }

  // Called with mu_ held: ends the sleeper's kernel wait now rather than when its word next
  // changes. A signal that lands before the thread enters the kernel is missed; the wait is
  // bounded (Sleep) for that case.
  static void Interrupt(Sleeper* s) {
    if (s->in_kernel != nullptr && CancelSignal() != 0) pthread_kill(s->thread, CancelSignal());
  }

  // Called with mu_ held: the group's word was woken or has changed.
  void Fire(double id) {
    auto found = by_id_.find(id);
    if (found == by_id_.end()) return;
    fired_.push_back(id);
    Remove(found->second);
  }

  // futex_waitv failed in a way the probe did not predict (a filter installed after load):
  // every group fires, so its waiters re-check and wait again, now through sleeper threads.
  // Called with mu_ held.
  void AbandonWaitv() {
    mechanism_ = Mechanism::kThreads;
    std::vector<double> ids;
    for (Watcher* w : watchers_) {
      for (Group* g : w->groups) ids.push_back(g->id);
    }
    for (double id : ids) Fire(id);
  }

  void Run(Watcher* self) {
    struct futex_waitv entries[FUTEX_WAITV_MAX];
    std::vector<std::pair<double, std::shared_ptr<v8::BackingStore>>> snapshot;
    for (;;) {
      size_t n = 0;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_ || mechanism_ != Mechanism::kWaitv) return;
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
        if (err != 0 && err != EAGAIN && err != EINTR && err != ETIMEDOUT) {
          AbandonWaitv();
          notify = !fired_.empty();
        } else {
          if (r >= 1) {
            // A wake meant for a group whose waiters all left (timeout, abort) before we rebuilt
            // our list would be lost for a wake-one user (a lock, a semaphore): pass it on.
            if (by_id_.count(snapshot[r - 1].first) == 0) {
              syscall(SYS_futex, reinterpret_cast<int32_t*>(entries[r].uaddr), FUTEX_WAKE, 1, nullptr, nullptr, 0);
            }
            Fire(snapshot[r - 1].first);
          }
          // futex_waitv reports only one woken index; a word that changed is treated as woken
          // too, which also covers a wake that raced with our building of the list (EAGAIN).
          for (size_t i = 1; i < n; i++) {
            int32_t now = __atomic_load_n(reinterpret_cast<int32_t*>(entries[i].uaddr), __ATOMIC_ACQUIRE);
            if (now != static_cast<int32_t>(entries[i].val)) Fire(snapshot[i - 1].first);
          }
          notify = !fired_.empty();
        }
      }
      snapshot.clear();
      if (notify) uv_async_send(&async_);
    }
  }

  static void* SleeperMain(void* arg) {
    Sleeper* self = static_cast<Sleeper*>(arg);
    if (CancelSignal() != 0) {
      sigset_t cancel;
      sigemptyset(&cancel);
      sigaddset(&cancel, CancelSignal());
      pthread_sigmask(SIG_UNBLOCK, &cancel, nullptr);
    }
    self->owner->Sleep(self);
    self->exited.store(true, std::memory_order_release);
    return nullptr;
  }

  // The fallback's thread body: sleep on the assigned group's word until it is woken or differs
  // from the expected value, then fire the group. The wait is bounded (kBackstopSeconds) only so
  // that a cancel signal that came before the thread entered the kernel cannot keep the thread
  // (and the pages it pins) for ever; running out of that bound just waits again.
  void Sleep(Sleeper* self) {
    static constexpr time_t kBackstopSeconds = 1;
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      Group* group = self->group;
      if (group == nullptr) {
        int32_t seen = self->control.load(std::memory_order_acquire);
        lock.unlock();
        syscall(SYS_futex, &self->control, FUTEX_WAIT_PRIVATE, seen, nullptr, nullptr, 0);
        lock.lock();
        continue;
      }
      double id = group->id;
      int32_t* word = group->word;
      int32_t expected = group->expected;
      std::shared_ptr<v8::BackingStore> keep = group->keep;  // mapped while we sleep on it
      self->in_kernel = word;
      lock.unlock();
      struct timespec deadline;
      clock_gettime(CLOCK_MONOTONIC, &deadline);
      deadline.tv_sec += kBackstopSeconds;
      long r = syscall(SYS_futex, word, FUTEX_WAIT_BITSET, expected, &deadline, nullptr, FUTEX_BITSET_MATCH_ANY);
      int err = r < 0 ? errno : 0;
      lock.lock();
      self->in_kernel = nullptr;
      if (self->group == nullptr || self->group->id != id) {
        // Cancelled. A cancel is a signal (EINTR), so a wake (0) was a real one, meant for a
        // wake-one user (a lock, a semaphore) whose waiters here have left: pass it on.
        if (r == 0) syscall(SYS_futex, word, FUTEX_WAKE, 1, nullptr, nullptr, 0);
        continue;
      }
      if (err == ETIMEDOUT || err == EINTR) continue;  // still wanted: the kernel re-checks the value
      // Woken (0), the value differs (EAGAIN), or an error nothing can retry (EFAULT): fire, so
      // the waiters re-check rather than hang.
      Fire(id);
      lock.unlock();
      keep.reset();
      uv_async_send(&async_);
      lock.lock();
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
      for (Watcher* w : self->watchers_) Poke(&w->control);
    }
    for (Watcher* w : self->watchers_) {
      w->thread.join();
      delete w;
    }
    // A sleeper may be on its way into the kernel when the wake comes: wake until it is out.
    for (Sleeper* s : self->sleepers_) {
      while (!s->exited.load(std::memory_order_acquire)) {
        {
          std::lock_guard<std::mutex> lock(self->mu_);
          Poke(&s->control);
          Interrupt(s);
        }
        if (!s->exited.load(std::memory_order_acquire)) usleep(1000);
      }
      pthread_join(s->thread, nullptr);
      delete s;
    }
    for (auto& entry : self->by_id_) delete entry.second;
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
  Mechanism mechanism_;
  size_t max_sleepers_ = kDefaultMaxSleepers;
  double next_id_ = 1;
  std::vector<Watcher*> watchers_;
  std::vector<Sleeper*> sleepers_;
  std::map<std::pair<int32_t*, int32_t>, Group*> by_key_;
  std::unordered_map<double, Group*> by_id_;
  std::unordered_map<double, uint32_t> refs_;
  std::vector<double> fired_;
};

static AsyncWaits* WaitsOf(const FunctionCallbackInfo<Value>& args) {
  return UnwrapExternal<AsyncWaits>(args.Data(), ExternalTag::kAsyncWaits);
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
  if (id < 0) return ThrowErrno(isolate, "futex (async wait threads)", static_cast<int>(id));
  args.GetReturnValue().Set(id);
}

static void AsyncUnwatch(const FunctionCallbackInfo<Value>& args) {
  args.GetReturnValue().Set(WaitsOf(args)->Unwatch(args[0].As<v8::Number>()->Value()));
}

static void AsyncWatcherCount(const FunctionCallbackInfo<Value>& args) {
  args.GetReturnValue().Set(static_cast<double>(WaitsOf(args)->ThreadCount()));
}

// asyncMechanism() -> { name: 'futex_waitv' | 'threads', maxThreads }: how this environment
// waits asynchronously (after any runtime fallback), and the fallback's thread bound.
static void AsyncMechanism(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  Local<Context> context = isolate->GetCurrentContext();
  AsyncWaits* waits = WaitsOf(args);
  Local<Object> out = Object::New(isolate);
  out->Set(context, v8::String::NewFromUtf8Literal(isolate, "name"),
           v8::String::NewFromUtf8(isolate, MechanismName(waits->mechanism())).ToLocalChecked())
      .Check();
  out->Set(context, v8::String::NewFromUtf8Literal(isolate, "maxThreads"),
           v8::Number::New(isolate, static_cast<double>(waits->max_sleepers())))
      .Check();
  args.GetReturnValue().Set(out);
}

// asyncInit(callback) -> { watch, unwatch, watcherCount } bound to this environment's state.
static void AsyncInit(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  if (!args[0]->IsFunction()) return ThrowTypeError(isolate, "callback must be a function");
  Local<Context> context = isolate->GetCurrentContext();
  AsyncWaits* waits = new AsyncWaits(isolate, args[0].As<v8::Function>());
  Local<v8::External> data = WrapExternal(isolate, waits, ExternalTag::kAsyncWaits);
  Local<Object> api = Object::New(isolate);
  SetMethod(context, api, "watch", AsyncWatch, data);
  SetMethod(context, api, "unwatch", AsyncUnwatch, data);
  SetMethod(context, api, "watcherCount", AsyncWatcherCount, data);
  SetMethod(context, api, "mechanism", AsyncMechanism, data);
  args.GetReturnValue().Set(api);
}

// ---------------------------------------------------------------------------------------------
// Asymmetric fences: membarrier(2)
//
// A Dekker-style hand-off (a publisher stores a commit then loads a sleeper count; a sleeper
// increments the count then loads the commit) needs a full fence on both sides. Where one side
// runs millions of times a second and the other only before it sleeps, membarrier lets the fast
// side drop its fence: the slow side's MEMBARRIER_CMD_GLOBAL_EXPEDITED makes every running
// thread of every process registered with MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED execute a
// full barrier before the call returns (a thread that is not running passed one when it was
// switched out). The pattern of liburcu and Folly's asymmetricHeavyBarrier; Linux 4.16+.

static long Membarrier(int cmd) { return syscall(__NR_membarrier, cmd, 0, 0); }

// Numbers from linux/membarrier.h, spelled out for older headers.
static constexpr int kMembarrierQuery = 0;
static constexpr int kMembarrierGlobalExpedited = 1 << 1;
static constexpr int kMembarrierRegisterGlobalExpedited = 1 << 2;

// membarrierRegister() -> true once this process takes part in global expedited barriers (the
// fast side may then drop its fence); false where the kernel or a seccomp profile refuses, or
// INTERPROCESS_MEMBARRIER=0 (to test the fallback). Idempotent.
static void MembarrierRegister(const FunctionCallbackInfo<Value>& args) {
  const char* env = getenv("INTERPROCESS_MEMBARRIER");
  if (env != nullptr && strcmp(env, "0") == 0) return args.GetReturnValue().Set(false);
  long supported = Membarrier(kMembarrierQuery);
  bool ok = supported > 0 && (supported & kMembarrierGlobalExpedited) != 0 &&
            Membarrier(kMembarrierRegisterGlobalExpedited) == 0;
  args.GetReturnValue().Set(ok);
}

// membarrierGlobal() -> true when every registered process's running threads have executed a
// full barrier; false if the call is refused (the caller must then not rely on it), or
// INTERPROCESS_MEMBARRIER=0.
static void MembarrierGlobal(const FunctionCallbackInfo<Value>& args) {
  const char* env = getenv("INTERPROCESS_MEMBARRIER");
  if (env != nullptr && strcmp(env, "0") == 0) return args.GetReturnValue().Set(false);
  args.GetReturnValue().Set(Membarrier(kMembarrierGlobalExpedited) == 0);
}

void InitFutex(Local<Object> exports, Local<Context> context) {
  SetMethod(context, exports, "futexWait", FutexWait);
  SetMethod(context, exports, "futexWake", FutexWake);
  SetMethod(context, exports, "membarrierRegister", MembarrierRegister);
  SetMethod(context, exports, "membarrierGlobal", MembarrierGlobal);
  SetMethod(context, exports, "asyncInit", AsyncInit);
}

}  // namespace ipc
