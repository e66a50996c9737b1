// Named shared memory: shm_open + posix_fallocate + mmap, handed to JavaScript as a real
// SharedArrayBuffer whose deleter unmaps. V8 runs the deleter only when no JavaScript object
// (in any thread) can reach the memory any more, so JavaScript can never touch an unmapped page.
//
// A mapping keeps its object's descriptor open until the handle that mapped it is closed
// (shmRelease) or, failing that, until the deleter runs; a process-wide table maps the memory's
// address to that descriptor: the lifelines of an object (lifeline.cc) are descriptions of the
// object's own file, and they find it from the buffer alone, also in a worker thread the buffer
// was posted to. The name is never opened again for that: it may have been removed or replaced
// meanwhile. Releasing at close() matters: the memory itself lives until the garbage collector
// drops the last buffer, which may be long after, and a server that accepts connections would
// otherwise hold three descriptors per closed connection until then.
//
// An existing object is opened only if it is a regular file owned by this process's effective
// uid, unless the caller passes allowOtherOwner: a name that another user created first is not
// silently used (the caller would share memory, locks and queues with a stranger).
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mutex>
#if defined(__x86_64__)
#include <emmintrin.h>
#endif
#include <unordered_map>

#include "common.h"

namespace ipc {

using v8::Context;
using v8::FunctionCallbackInfo;
using v8::Isolate;
using v8::Local;
using v8::Object;
using v8::Value;

enum OpenHow { kCreate = 0, kOpen = 1, kOpenOrCreate = 2 };

// Every live mapping made by shmOpen, by address. Allocated once and never destroyed: deleters
// may run on any thread, as late as process teardown.
static std::mutex* const mappings_mutex = new std::mutex;
static std::unordered_map<const void*, MappedObject>* const mappings = new std::unordered_map<const void*, MappedObject>;

bool FindMapping(const void* data, MappedObject* out) {
  std::lock_guard<std::mutex> hold(*mappings_mutex);
  auto found = mappings->find(data);
  if (found == mappings->end()) return false;
  *out = found->second;
  return true;
}

int ReopenMapping(const void* data, int flags) {
  std::lock_guard<std::mutex> hold(*mappings_mutex);
  auto found = mappings->find(data);
  if (found == mappings->end() || found->second.fd < 0) return -EBADF;
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", found->second.fd);
  int fd = open(path, flags);
  return fd >= 0 ? fd : -errno;
}

bool ReclaimDescriptors(Isolate* isolate, int err) {
  if (err != EMFILE && err != ENFILE) return false;
  isolate->LowMemoryNotification();
  return true;
}

static void Unmap(void* data, size_t length, void* /*deleter_data*/) {
  int fd = -1;
  {
    // Out of the table before munmap: a new mapping may get this address as soon as it is free.
    // The descriptor comes from the table, where shmRelease may already have closed it.
    std::lock_guard<std::mutex> hold(*mappings_mutex);
    auto found = mappings->find(data);
    if (found != mappings->end()) {
      fd = found->second.fd;
      mappings->erase(found);
    }
  }
  if (fd >= 0) close(fd);
  munmap(data, length);
}

static void SleepMs(int ms) {
  struct timespec ts = {0, ms * 1000000L};
  nanosleep(&ts, nullptr);
}

// shmOpen(osName, how, mode, byteLength, sizeWaitMs, allowOtherOwner)
//   -> { created, byteLength, uid, mode, buffer?: SharedArrayBuffer, refused?: 'owner' | 'type' }
// `byteLength` is used only when creating. An opener that finds a size of 0 (a creator between
// shm_open and posix_fallocate) polls for up to sizeWaitMs, then reports byteLength 0. An
// existing object that is not a regular file, or (without allowOtherOwner) is owned by another
// uid, is not mapped: `refused` says why and `uid` whose it is. (shm_open itself refuses a
// symbolic link: glibc and musl open with O_NOFOLLOW.)
static void ShmOpen(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  Local<Context> context = isolate->GetCurrentContext();
  v8::String::Utf8Value name(isolate, args[0]);
  int how = args[1]->Int32Value(context).FromJust();
  mode_t mode = static_cast<mode_t>(args[2]->Uint32Value(context).FromJust());
  double requested = args[3]->NumberValue(context).FromJust();
  int size_wait_ms = args[4]->Int32Value(context).FromJust();
  bool allow_other_owner = args[5]->BooleanValue(isolate);

  int fd = -1;
  bool created = false;
  bool reclaimed = false;
  for (int attempt = 0; fd < 0; attempt++) {
    if (how != kOpen) {
      fd = shm_open(*name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
      if (fd < 0 && !reclaimed && (reclaimed = ReclaimDescriptors(isolate, errno))) continue;
      if (fd >= 0) {
        created = true;
        break;
      }
      if (errno != EEXIST || how == kCreate) return ThrowErrno(isolate, "shm_open", -errno);
    }
    fd = shm_open(*name, O_RDWR | O_CLOEXEC, 0);
    if (fd >= 0) break;
    if (!reclaimed && (reclaimed = ReclaimDescriptors(isolate, errno))) continue;
    // openOrCreate raced with a remove between our two calls: try again, a bounded number of times.
    if (errno != ENOENT || how == kOpen || attempt >= 100) return ThrowErrno(isolate, "shm_open", -errno);
  }

  size_t length = 0;
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
  }

  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    if (created) shm_unlink(*name);
    return ThrowErrno(isolate, "fstat", -err);
  }
  Local<Object> result = Object::New(isolate);
  auto set = [&](const char* key, Local<Value> value) {
    result->Set(context, v8::String::NewFromUtf8(isolate, key).ToLocalChecked(), value).Check();
  };
  set("created", v8::Boolean::New(isolate, created));
  set("uid", v8::Number::New(isolate, st.st_uid));
  set("mode", v8::Number::New(isolate, st.st_mode & 07777));
  if (!created) {
    // Checked on the descriptor we will map, so the answer is about exactly that object.
    const char* refused = !S_ISREG(st.st_mode) ? "type" : (st.st_uid != geteuid() && !allow_other_owner) ? "owner" : nullptr;
    if (refused != nullptr) {
      close(fd);
      set("refused", v8::String::NewFromUtf8(isolate, refused).ToLocalChecked());
      set("byteLength", v8::Number::New(isolate, 0));
      return args.GetReturnValue().Set(result);
    }
    for (int waited = 0; st.st_size == 0 && waited < size_wait_ms; waited++) {
      SleepMs(1);
      if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return ThrowErrno(isolate, "fstat", -err);
      }
    }
    length = static_cast<size_t>(st.st_size);
  }

  if (length == 0) {
    close(fd);
    set("byteLength", v8::Number::New(isolate, 0));
    return args.GetReturnValue().Set(result);
  }

  void* data = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (data == MAP_FAILED) {
    int err = errno;
    close(fd);
    if (created) shm_unlink(*name);
    return ThrowErrno(isolate, "mmap", -err);
  }
  {
    // The descriptor now lives as long as the mapping (see the top of this file).
    std::lock_guard<std::mutex> hold(*mappings_mutex);
    (*mappings)[data] = MappedObject{fd, st.st_dev, st.st_ino};
  }
  std::unique_ptr<v8::BackingStore> store =
      v8::SharedArrayBuffer::NewBackingStore(data, length, Unmap, nullptr);
  Local<v8::SharedArrayBuffer> buffer = v8::SharedArrayBuffer::New(isolate, std::move(store));
  set("buffer", buffer);
  set("byteLength", v8::Number::New(isolate, static_cast<double>(length)));
  args.GetReturnValue().Set(result);
}

#if defined(__x86_64__)
// From this size on, a copy into shared memory may bypass the cache (non-temporal stores),
// when that is the faster way on this machine at this moment; which one is depends on where
// the consumer runs, and that changes under us.
//
// The lines of a queue's slot were last read by the consumer. When the two processes run on
// cores that share no cache (this project's 2-vCPU VM most of the time: a C spin ping-pong of
// 460-480 ns), an ordinary store first takes each line from the consumer's cache (a read for
// ownership, a cross-core trip per 64 bytes); a streaming store does not. Measured with 1 MiB
// messages there (alternated, 3 rounds, bench/results/2026-12-02-stop25-adaptive-stream.md): a
// plain copy costs the producer 170-180 ns per KiB, a streaming one 21-40; a loan receive runs
// at 17.4 GiB/s with streaming stores and 6.0 without, a plain receive 11.1 against 7.1.
// But when the host places the two vCPUs on cores that share a cache (a C ping-pong of 160-180
// ns, which the same VM shows for minutes to hours at a time) the ordinary store hits that
// cache, costs about as much as a streaming one (26-41 ns per KiB), and leaves the bytes where
// the consumer reads them, while a streaming store sends them to memory: there a loan receive
// ran at 20.0-27.5 GiB/s with ordinary stores against 16.4-16.7 with streaming ones.
//
// So each thread times its large copies (two clock reads, nothing next to a 256 KiB copy) and
// streams only while that costs it less than half of an ordinary copy: a running average per
// way, the way in use measured on every copy, the other tried again every 16th copy, backing off
// to every 256th while the tries confirm a clear choice (a plain copy in the far placement costs
// 6x, so frequent tries would cost more than they could find; one message in 256 pays it). A
// move of the vCPUs shows at once in the way in use and flips the choice within a few copies.
// Below 256 KiB streaming gained nothing in the far placement (the shm:// channel's 8 KiB
// records lost), so smaller copies are plain. x86 only (SSE2, which every x86-64 has);
// elsewhere memmove.
static constexpr size_t kStreamBytes = 256 * 1024;

// Copies with streaming stores into `to` (from its first 64-byte boundary on); the fence
// makes them visible before any later store, such as the commit that publishes the message.
static void CopyStreaming(char* to, const char* from, size_t length) {
  size_t head = (64 - (reinterpret_cast<uintptr_t>(to) & 63)) & 63;
  memcpy(to, from, head);
  to += head;
  from += head;
  length -= head;
  size_t lines = length & ~size_t{63};
  for (size_t k = 0; k < lines; k += 64) {
    __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(from + k));
    __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(from + k + 16));
    __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(from + k + 32));
    __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(from + k + 48));
    _mm_stream_si128(reinterpret_cast<__m128i*>(to + k), a);
    _mm_stream_si128(reinterpret_cast<__m128i*>(to + k + 16), b);
    _mm_stream_si128(reinterpret_cast<__m128i*>(to + k + 32), c);
    _mm_stream_si128(reinterpret_cast<__m128i*>(to + k + 48), d);
  }
  _mm_sfence();
  memcpy(to + lines, from + lines, length - lines);
}

static uint64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

// This thread's view of its large copies into shared memory: ns per KiB of each way (0 plain,
// 1 streaming; 0 = not measured yet), copies since the other way was last tried and how many
// copies apart its tries are, and how many copies went each way (for the tests).
struct CopyWays {
  double cost[2] = {0, 0};
  uint32_t since_trial = 0;
  uint32_t interval = 16;
  double used[2] = {0, 0};
};
static thread_local CopyWays copy_ways;

// Streaming only when clearly cheaper: an ordinary copy that costs about the same leaves the
// bytes in a cache the consumer may share, where a streaming one sends them to memory.
static int BestWay(const CopyWays& w) {
  return 2 * w.cost[1] < w.cost[0] ? 1 : 0;
}

static void CopyLargeIntoShared(char* to, const char* from, size_t length) {
  CopyWays& w = copy_ways;
  int way;
  int best = 0;
  bool trial = false;
  if (w.cost[0] == 0) {
    way = 0;  // each way is measured once first
  } else if (w.cost[1] == 0) {
    way = 1;
  } else {
    best = BestWay(w);
    trial = ++w.since_trial >= w.interval;
    way = trial ? 1 - best : best;
  }
  uint64_t t0 = NowNs();
  if (way == 1) CopyStreaming(to, from, length);
  else memcpy(to, from, length);
  double sample = static_cast<double>(NowNs() - t0) * 1024.0 / static_cast<double>(length);
  if (sample <= 0) sample = 0.001;  // 0 means "not measured"
  double& cost = w.cost[way];
  // A trial's figure replaces the old one (which may be from before a move, or from a first
  // copy that took page faults); the way in use keeps a running average, which one slow sample
  // (a preemption mid-copy) moves at most 4x.
  if (cost == 0 || trial) cost = sample;
  else cost = 0.75 * cost + 0.25 * (sample < 4 * cost ? sample : 4 * cost);
  w.used[way]++;
  if (trial) {
    // Tries back off (16, 32 .. 256 copies apart) while they confirm a choice that is clearly
    // right, and come every 16th copy again when the choice flips or the two ways are close.
    w.since_trial = 0;
    int now_best = BestWay(w);
    bool close = w.cost[1 - now_best] < 2 * w.cost[now_best];
    w.interval = now_best != best || close ? 16 : (w.interval < 256 ? 2 * w.interval : 256);
  }
}

// copyWays() -> [plain copies, streaming copies, plain ns/KiB, streaming ns/KiB] of this thread's
// copies into shared memory of kStreamBytes or more.
static void CopyWaysInfo(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  Local<v8::Context> context = isolate->GetCurrentContext();
  Local<v8::Array> out = v8::Array::New(isolate, 4);
  const CopyWays& w = copy_ways;
  double values[4] = {w.used[0], w.used[1], w.cost[0], w.cost[1]};
  for (uint32_t i = 0; i < 4; i++) out->Set(context, i, v8::Number::New(isolate, values[i])).Check();
  args.GetReturnValue().Set(out);
}
#endif

// Copies `source` into `target` (two Uint8Arrays of the same length) with memmove. V8 copies
// to or from a SharedArrayBuffer with word-by-word relaxed atomics (relaxed_memmove), about
// half the speed of memcpy; for a queue's large messages the protocol (seq words, read with
// Atomics) orders every access to the bytes, so a plain copy is what C would do.
static void CopyBytes(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  if (!args[0]->IsUint8Array() || !args[1]->IsUint8Array()) {
    ThrowTypeError(isolate, "copyBytes: expected two Uint8Arrays");
    return;
  }
  v8::Local<v8::Uint8Array> target = args[0].As<v8::Uint8Array>();
  v8::Local<v8::Uint8Array> source = args[1].As<v8::Uint8Array>();
  size_t length = source->ByteLength();
  if (target->ByteLength() != length) {
    ThrowRangeError(isolate, "copyBytes: the arrays differ in length");
    return;
  }
  if (length == 0) return;
  Local<v8::ArrayBuffer> into = target->Buffer();
  char* to = static_cast<char*>(into->Data()) + target->ByteOffset();
  const char* from = static_cast<const char*>(source->Buffer()->Data()) + source->ByteOffset();
#if defined(__x86_64__)
  // Into shared memory, large, not overlapping: streaming stores or not, whichever is faster now
  // (see kStreamBytes).
  if (length >= kStreamBytes && into->IsSharedArrayBuffer() && (to + length <= from || from + length <= to)) {
    CopyLargeIntoShared(to, from, length);
    return;
  }
#endif
  memmove(to, from, length);
}

// shmUnlink(osName) -> true if removed, false if it did not exist.
static void ShmUnlink(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  v8::String::Utf8Value name(isolate, args[0]);
  if (shm_unlink(*name) == 0) return args.GetReturnValue().Set(true);
  if (errno == ENOENT) return args.GetReturnValue().Set(false);
  ThrowErrno(isolate, "shm_unlink", -errno);
}

// shmRelease(sab) -> true if it closed the descriptor of the mapping behind sab (the handle that
// mapped it is closed; the memory stays until the buffer is garbage), false if there was none.
static void ShmRelease(const FunctionCallbackInfo<Value>& args) {
  if (!args[0]->IsSharedArrayBuffer()) return ThrowTypeError(args.GetIsolate(), "expected a SharedArrayBuffer");
  const void* data = args[0].As<v8::SharedArrayBuffer>()->GetBackingStore()->Data();
  int fd = -1;
  {
    std::lock_guard<std::mutex> hold(*mappings_mutex);
    auto found = mappings->find(data);
    if (found != mappings->end()) {
      fd = found->second.fd;
      found->second.fd = -1;
    }
  }
  if (fd >= 0) close(fd);
  args.GetReturnValue().Set(fd >= 0);
}

void InitShm(Local<Object> exports, Local<Context> context) {
  SetMethod(context, exports, "copyBytes", CopyBytes);
#if defined(__x86_64__)
  SetMethod(context, exports, "copyWays", CopyWaysInfo);
#endif
  SetMethod(context, exports, "shmOpen", ShmOpen);
  SetMethod(context, exports, "shmRelease", ShmRelease);
  SetMethod(context, exports, "shmUnlink", ShmUnlink);
}

}  // namespace ipc
