// copyOut(source: Uint8Array, byteLength = source.length) -> ArrayBuffer of byteLength bytes
// that starts with a copy of source: a private copy of a large received message (or the first
// part of one, the rest to be copied in by the caller) in memory that is already faulted in.
//
// Why: a plain `receive()` must hand back memory the caller owns, so every large message needs
// a new buffer. A fresh buffer is fresh pages: Node's allocator gets them from mmap (or from a
// heap it trims back to the kernel), and the first write to each 4 KiB page takes a page fault
// that zeroes it. For a 1 MiB message that is 256 faults, which cost several times the copy
// itself (measured: 1.4-1.9 GiB/s for a plain receive against 4.5-5.7 GiB/s for a loan into a
// reused buffer, on the same run). Here the buffer's memory comes from a small process-wide pool
// of blocks that earlier messages used: when the garbage collector drops such an ArrayBuffer,
// V8 calls our deleter, which puts the block back instead of freeing it, so the next message
// is copied into pages that are already there. A miss takes a new block from malloc.
//
// Nothing leaks between messages: the ArrayBuffer is exactly `byteLength` bytes long, and the
// copy (or, for the bytes past the source, the caller: the queue's span and the shm:// channel's
// frame gathering) overwrites all of them before the buffer is handed out; what lies beyond it
// in the block is unreachable.
//
// The deleter may run on any thread (V8 frees array buffers on a background sweeper), and
// worker threads share the pool: it is guarded by a mutex. Blocks come back only when V8
// collects their buffers, so how often it does sets how much the pool must hold. V8 runs a young
// collection once the young generation's buffers hold twice the semi-space (32 MiB on Node 20
// and 22), but it looks only when a buffer is allocated through its own allocator, which ours
// are not: left alone, it collected them every 64-100 MiB, the pool ran dry between
// collections, and on the project VM each miss cost ~3 ms for a MiB of fresh pages (a fault per
// 4 KiB page, ~11 µs each). So copyOut also has V8 allocate a one-byte ArrayBuffer
// (NudgeCollector), which makes V8 do that check on our buffers too (a bare one-byte
// NewBackingStore did not): with 1 MiB messages one way, 35 misses in 1,000 instead of 105-149,
// and 1.7-1.8 GiB/s instead of 0.9-1.1 through a shm:// channel. It does so once per
// kNudgeBytes copied, not per call: the nudge costs about a microsecond, most of what a copy
// of 8-16 KiB costs here, while a check per 64 KiB of buffers keeps the collections' pace
// (without any, 64 KiB copies ran 4x slower as the pool ran dry). Node 24's V8 sizes the check
// by its young generation's limit (--scavenger-max-new-space-capacity-mb), larger by default:
// there the nudge changes nothing unless that flag is lowered (8: ~37 MiB of growth for 400
// messages of 1 MiB, against ~82); Node 26's has no such flag and keeps its own pace (~78).
// The pool holds at most 128 MiB (INTERPROCESS_RECEIVE_POOL_MB changes that; 0 turns the pool
// off) and frees blocks returned beyond that. Marking pooled blocks MADV_FREE instead, so that
// the kernel could take them back, made reuse ten times slower than a fresh block: the pages
// are simply kept. Blocks are rounded up to a power of two (from 8 KiB) so that messages of
// similar sizes share them; buffers above 64 MiB are not pooled.
#include <stdlib.h>
#include <string.h>

#include <mutex>
#include <vector>

#include "common.h"

namespace ipc {

using v8::FunctionCallbackInfo;
using v8::Isolate;
using v8::Local;
using v8::Value;

namespace {

constexpr size_t kMinShift = 13;  // 8 KiB: the smallest copy src/os/copy.ts sends here (LARGE_RECEIVE)
// copyOut nudges the collector once this many bytes were copied since the last nudge (see the top).
constexpr size_t kNudgeBytes = 64 * 1024;
constexpr size_t kMaxShift = 26;  // 64 MiB: larger blocks are allocated and freed each time
// The most the pool holds, unless INTERPROCESS_RECEIVE_POOL_MB says otherwise (0: no pool).
constexpr size_t kDefaultPoolMiB = 128;

size_t PoolLimit() {
  const char* mib = getenv("INTERPROCESS_RECEIVE_POOL_MB");
  if (mib == nullptr || *mib == '\0') return kDefaultPoolMiB << 20;
  char* end = nullptr;
  unsigned long long value = strtoull(mib, &end, 10);
  return *end == '\0' && value < (size_t{1} << 24) ? static_cast<size_t>(value) << 20 : kDefaultPoolMiB << 20;
}

struct Pool {
  std::mutex mutex;
  std::vector<void*> lists[kMaxShift + 1];  // free blocks, by size (shift)
  size_t bytes = 0;  // held in the free lists
  size_t limit = PoolLimit();
};

// Never destroyed: deleters may run during process exit, after static destructors.
Pool* pool = new Pool();

size_t ShiftFor(size_t length) {
  size_t shift = kMinShift;
  while ((size_t{1} << shift) < length) shift++;
  return shift;
}

// malloc, not mmap: glibc reuses what was freed (a block the pool had no room for) without a
// system call. Measured per 1 MiB miss: malloc 53 µs, mmap + munmap 123 µs, and mmap with
// MAP_POPULATE 400 µs, which made a shm:// channel's 1 MiB round trip 5x slower (a round trip
// runs few enough messages between collections that most of them miss). Later the same day the
// VM's fresh pages cost far more (~11 µs per 4 KiB page, ~3 ms per MiB, however faulted in:
// bench/results/2026-12-01-stop20-large-messages.md), which is why misses must stay rare.
void* NewBlock(size_t bytes) { return aligned_alloc(64, (bytes + 63) & ~size_t{63}); }

// A one-byte ArrayBuffer, garbage at once: allocating it, V8 looks whether its young generation
// holds enough buffers for a collection, ours included (see the top). Called before any raw
// pointer into a JavaScript buffer is taken: the collection may run right here.
void NudgeCollector(Isolate* isolate) { v8::ArrayBuffer::New(isolate, 1); }

// deleter_data carries the block's shift (0: not pooled, freed at once).
void GiveBack(void* data, size_t length, void* deleter_data) {
  size_t shift = reinterpret_cast<size_t>(deleter_data);
  if (shift == 0) {
    free(data);
    return;
  }
  size_t bytes = size_t{1} << shift;
  {
    std::lock_guard<std::mutex> hold(pool->mutex);
    if (pool->bytes + bytes <= pool->limit) {
      pool->lists[shift].push_back(data);
      pool->bytes += bytes;
      return;
    }
  }
  free(data);
}

}  // namespace

static void CopyOut(const FunctionCallbackInfo<Value>& args) {
  Isolate* isolate = args.GetIsolate();
  if (!args[0]->IsUint8Array()) return ThrowTypeError(isolate, "copyOut: expected a Uint8Array");
  Local<v8::Uint8Array> source = args[0].As<v8::Uint8Array>();
  size_t copied = source->ByteLength();
  size_t length = copied;
  if (!args[1]->IsUndefined()) {
    double wanted = args[1]->IsNumber() ? args[1].As<v8::Number>()->Value() : -1;
    // Up to 2^53: an ArrayBuffer's own limit is lower, and malloc refuses what cannot be had.
    if (!(wanted >= static_cast<double>(copied) && wanted <= 9007199254740991.0) || wanted != static_cast<double>(static_cast<size_t>(wanted)))
      return ThrowRangeError(isolate, "copyOut: byteLength must be an integer no smaller than the source");
    length = static_cast<size_t>(wanted);
  }
  if (length == 0) return args.GetReturnValue().Set(v8::ArrayBuffer::New(isolate, 0));
  // Per thread: each thread has its own isolate, and copies of its own to pace.
  thread_local size_t unnudged = 0;
  unnudged += length;
  if (unnudged >= kNudgeBytes) {
    unnudged = 0;
    NudgeCollector(isolate);
  }
  size_t shift = length <= (size_t{1} << kMaxShift) ? ShiftFor(length) : 0;
  void* block = nullptr;
  if (shift != 0) {
    std::lock_guard<std::mutex> hold(pool->mutex);
    std::vector<void*>& list = pool->lists[shift];
    if (!list.empty()) {
      block = list.back();
      list.pop_back();
      pool->bytes -= size_t{1} << shift;
    }
  }
  if (block == nullptr) block = NewBlock(shift != 0 ? size_t{1} << shift : length);
  if (block == nullptr) return ThrowRangeError(isolate, "copyOut: out of memory for a received message");
  const char* from = static_cast<const char*>(source->Buffer()->Data()) + source->ByteOffset();
  memcpy(block, from, copied);
  std::unique_ptr<v8::BackingStore> store =
      v8::ArrayBuffer::NewBackingStore(block, length, GiveBack, reinterpret_cast<void*>(shift));
  args.GetReturnValue().Set(v8::ArrayBuffer::New(isolate, std::move(store)));
}

// copyOutPoolBytes() -> bytes held ready in the pool (for tests and `inspect`).
static void CopyOutPoolBytes(const FunctionCallbackInfo<Value>& args) {
  std::lock_guard<std::mutex> hold(pool->mutex);
  args.GetReturnValue().Set(static_cast<double>(pool->bytes));
}

void InitCopyOut(Local<v8::Object> exports, Local<v8::Context> context) {
  SetMethod(context, exports, "copyOut", CopyOut);
  SetMethod(context, exports, "copyOutPoolBytes", CopyOutPoolBytes);
}

}  // namespace ipc
