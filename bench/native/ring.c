/*
 * The hardware limit for message passing between two processes on this machine: a C
 * single-producer single-consumer ring over shared memory, both sides spinning, with exactly
 * the geometry of bench/mechanisms/js-ring.mjs (the JavaScript limit), so that the two differ
 * only in language and runtime, and the queue can be read against both.
 *   ring throughput SIZE COUNT [cpuA cpuB] [fresh|reuse] [WARMUP]  one way: WARMUP messages
 *       of SIZE bytes, then the COUNT that are timed (from the arrival of the last warm-up
 *       message to that of the last, on the receiver's clock, as bench/util.mjs SinkClock);
 *       prints {"messages","seconds","warmup","cpuUsPerMessage","ringBytes","capacity"}
 *   ring roundtrip  SIZE COUNT [cpuA cpuB] [fresh]  two rings, the peer echoes each message;
 *       prints round-trip percentiles in ns {"n","p50","p99","p999"}, like futex_pingpong.c
 * The parent (cpuA) sends, the forked child (cpuB) receives; a cpu of -1 leaves it unpinned.
 *
 * The ring (Lamport / Agrona style), as in js-ring.mjs: a head index written only by the
 * producer and a tail index written only by the consumer, each on its own 128-byte block
 * (adjacent-line prefetch pairs 64-byte lines), published with release stores and read with
 * acquire loads. Each side caches the other's index and re-reads it only when the ring looks
 * full (producer) or empty (consumer). Slots of align16(16 + SIZE) bytes, a 16-byte header
 * holding the length, capacity by the queue rows' rule (capacity_for, = capacityFor).
 *
 * Semantics as in js-ring.mjs: the producer copies each message in (memcpy); the consumer
 * copies each message out (memcpy) and checks its length and sequence number, exiting nonzero
 * on a mismatch. The copy out goes into one private buffer reused for every message, as a C
 * program would write it (it would not malloc per message); with the optional last argument
 * `fresh` it goes into a buffer malloc'd and freed per message instead, the nearest C has to
 * the fresh copy JavaScript's u8.slice returns. The spin loops have no pause instruction,
 * like the JavaScript ring's and futex_pingpong.c's, so that the comparison is like for like.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define HEADER 16
#define TAIL_OFFSET 128
#define SLOTS_OFFSET 256
/* A spinning side gives up after this long without progress, as js-ring.mjs's STALL_MS. */
#define STALL_NS 30000000000ull
/* Where the two processes meet outside the rings (start, stop, figures): its own page. */
#define CONTROL_BYTES 4096

/* Queue rows' capacity (capacityFor in bench/util.mjs): a power of two of slots within 2 MiB, 2..4096. */
static uint32_t capacity_for(size_t size) {
  uint32_t cap = 1;
  while ((uint64_t)cap * 2 * (size + 16) <= (2u << 20)) cap *= 2; /* 2 ** floor(log2(2 MiB / (size + 16))) */
  if (cap > 4096) cap = 4096;
  if (cap < 2) cap = 2;
  return cap;
}
static size_t stride_for(size_t size) { return (HEADER + size + 15) / 16 * 16; }
static size_t ring_bytes(size_t size) { return SLOTS_OFFSET + (size_t)capacity_for(size) * stride_for(size); }

/* Shared between the processes, in the control page. */
struct control {
  uint32_t ready;            /* children that have touched their pages and are spinning */
  uint32_t go;               /* the parent's start signal */
  uint64_t consumer_start_ns; /* throughput: when the last warm-up message was received */
  uint64_t consumer_end_ns;  /* throughput: when the last message was received */
  uint64_t consumer_cpu_us;  /* throughput: the consumer's CPU over the run */
};

static struct control *ctl;
static pid_t parent_pid, child_pid;
static int fresh;

static void die(const char *what) {
  fprintf(stderr, "ring: %s\n", what);
  if (child_pid > 0) kill(child_pid, SIGKILL);
  _exit(3);
}

/*
 * Called every 2^20 spins while waiting: fails when the peer is gone (an exited child, or a
 * parent that died, whose child is then reparented) or has made no progress for STALL_NS, so
 * that a broken trial ends instead of spinning for good.
 */
static void stalled(uint64_t *since, const char *what) {
  if (child_pid > 0) {
    int status;
    if (waitpid(child_pid, &status, WNOHANG) == child_pid) {
      child_pid = 0;
      die("the receiving process exited early");
    }
  } else if (getppid() != parent_pid) {
    _exit(3);
  }
  uint64_t t = now_ns();
  if (*since == 0) *since = t;
  else if (t - *since > STALL_NS) die(what);
}

/* One direction of the ring at `at`; a side uses only send or only receive. */
struct ring {
  uint32_t *head, *tail;
  uint8_t *slots;
  size_t stride;
  uint32_t capacity, mask;
  uint32_t own, seen; /* this side's index (only it writes it) and its cached copy of the other's */
};

static void ring_init(struct ring *r, uint8_t *at, size_t size, int producer) {
  r->head = (uint32_t *)at;
  r->tail = (uint32_t *)(at + TAIL_OFFSET);
  r->slots = at + SLOTS_OFFSET;
  r->stride = stride_for(size);
  r->capacity = capacity_for(size);
  r->mask = r->capacity - 1;
  uint32_t head = __atomic_load_n(r->head, __ATOMIC_ACQUIRE), tail = __atomic_load_n(r->tail, __ATOMIC_ACQUIRE);
  r->own = producer ? head : tail;
  r->seen = producer ? tail : head;
}

static void ring_send(struct ring *r, const uint8_t *payload, uint32_t length) {
  uint32_t head = r->own;
  if (head - r->seen == r->capacity) {
    uint64_t spins = 0, since = 0;
    while (head - (r->seen = __atomic_load_n(r->tail, __ATOMIC_ACQUIRE)) == r->capacity) {
      if ((++spins & 0xfffff) == 0) stalled(&since, "the peer made no progress for 30 s (ring full)");
    }
  }
  uint8_t *slot = r->slots + (size_t)(head & r->mask) * r->stride;
  *(uint32_t *)slot = length;
  memcpy(slot + HEADER, payload, length);
  r->own = head + 1;
  __atomic_store_n(r->head, r->own, __ATOMIC_RELEASE);
}

/* Copies the next message into `out` (room for `room` bytes) and returns its length. */
static uint32_t ring_receive(struct ring *r, uint8_t *out, size_t room) {
  uint32_t tail = r->own;
  if (tail == r->seen) {
    uint64_t spins = 0, since = 0;
    while ((r->seen = __atomic_load_n(r->head, __ATOMIC_ACQUIRE)) == tail) {
      if ((++spins & 0xfffff) == 0) stalled(&since, "the peer made no progress for 30 s (ring empty)");
    }
  }
  const uint8_t *slot = r->slots + (size_t)(tail & r->mask) * r->stride;
  uint32_t length = *(const uint32_t *)slot;
  if (length > room) die("a message longer than its slot");
  memcpy(out, slot + HEADER, length);
  /* The copy is the work being measured: tell the compiler `out` is read, so that it keeps all
     of it (a buffer only ever read for its first 4 bytes could be copied 4 bytes at a time). */
  __asm__ volatile("" : : "r"(out) : "memory");
  r->own = tail + 1;
  __atomic_store_n(r->tail, r->own, __ATOMIC_RELEASE);
  return length;
}

/* The sequence number in the first 4 bytes, little-endian, as bench/util.mjs stamp() writes it. */
static void stamp(uint8_t *buf, uint32_t seq) {
  buf[0] = seq & 0xff;
  buf[1] = (seq >> 8) & 0xff;
  buf[2] = (seq >> 16) & 0xff;
  buf[3] = (seq >> 24) & 0xff;
}
static uint32_t seq_of(const uint8_t *buf) {
  return (uint32_t)buf[0] | (uint32_t)buf[1] << 8 | (uint32_t)buf[2] << 16 | (uint32_t)buf[3] << 24;
}
/* As util.mjs check(): the right length and sequence number, or the run fails. */
static void check(const uint8_t *buf, uint32_t length, size_t size, uint32_t seq) {
  if (length != size || seq_of(buf) != seq) {
    fprintf(stderr, "ring: expected message %u of %zu bytes, got %u of %u\n", seq, size, seq_of(buf), length);
    die("a message out of sequence");
  }
}

/* Receives one message into `buf` (reused) or, with `fresh`, into a buffer of its own, freed after `use`. */
#define RECEIVE(ring, buf, size, use)                                                    \
  do {                                                                                   \
    uint8_t *into_ = fresh ? malloc(size) : (buf);                                       \
    if (into_ == NULL) die("out of memory");                                             \
    uint32_t length_ = ring_receive(ring, into_, size);                                  \
    use(into_, length_);                                                                 \
    if (fresh) free(into_);                                                              \
  } while (0)

static uint64_t cpu_us(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u + (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* Reads one byte per page, so that the first lap's page faults are not part of the figures. */
static void touch(const uint8_t *p, size_t bytes) {
  volatile uint8_t sink = 0;
  for (size_t i = 0; i < bytes; i += 4096) sink += p[i];
  (void)sink;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s throughput|roundtrip SIZE COUNT [cpuA cpuB] [fresh|reuse] [WARMUP]\n", argv[0]);
    return 2;
  }
  int roundtrip = strcmp(argv[1], "roundtrip") == 0;
  if (!roundtrip && strcmp(argv[1], "throughput") != 0) return 2;
  size_t size = (size_t)atol(argv[2]);
  long count = atol(argv[3]);
  int cpu_a = argc > 4 ? atoi(argv[4]) : -1, cpu_b = argc > 5 ? atoi(argv[5]) : -1;
  fresh = argc > 6 && strcmp(argv[6], "fresh") == 0;
  long warm = !roundtrip && argc > 7 ? atol(argv[7]) : 0; /* throughput's untimed first messages */
  if (size < 4 || count <= 0 || warm < 0) {
    fprintf(stderr, "ring: SIZE must be >= 4 (it carries a sequence number) and COUNT > 0\n");
    return 2;
  }
  long warmup = roundtrip ? (count < 2000 ? count : 2000) : 0; /* as js-ring.mjs warmupFor */
  size_t one = ring_bytes(size);
  size_t bytes = CONTROL_BYTES + (roundtrip ? 2 : 1) * one;
  uint8_t *map = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (map == MAP_FAILED) {
    perror("ring: mmap");
    return 1;
  }
  ctl = (struct control *)map;
  uint8_t *rings = map + CONTROL_BYTES; /* ping (or the one ring) first, then pong, as in js-ring.mjs */
  uint8_t *buf = malloc(size), *payload = malloc(size);
  if (buf == NULL || payload == NULL) return 1;
  memset(payload, 1, size);

  parent_pid = getpid();
  pid_t child = fork();
  if (child < 0) {
    perror("ring: fork");
    return 1;
  }
  if (child == 0) {
    /* The receiver (throughput) or the echo (round trip). */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent_pid) _exit(3);
    pin(cpu_b);
    touch(rings, bytes - CONTROL_BYTES);
    struct ring in, out;
    ring_init(&in, rings, size, 0);
    if (roundtrip) ring_init(&out, rings + one, size, 1);
    __atomic_store_n(&ctl->ready, 1, __ATOMIC_RELEASE);
    if (roundtrip) {
      /* Echo what arrives, unchecked, as js-ring.mjs's echo: the parent checks each reply. */
#define ECHO(data, length) ring_send(&out, data, length)
      for (long i = 0; i < count + warmup; i++) RECEIVE(&in, buf, size, ECHO);
      _exit(0);
    }
    while (!__atomic_load_n(&ctl->go, __ATOMIC_ACQUIRE)) {
    }
    uint64_t c0 = cpu_us();
    ctl->consumer_start_ns = now_ns();
    for (long i = 0; i < warm + count; i++) {
#define CHECK(data, length) check(data, length, size, (uint32_t)i)
      RECEIVE(&in, buf, size, CHECK);
      if (i == warm - 1) ctl->consumer_start_ns = now_ns();
    }
    ctl->consumer_end_ns = now_ns();
    ctl->consumer_cpu_us = cpu_us() - c0;
    _exit(0);
  }

  child_pid = child;
  pin(cpu_a);
  touch(rings, bytes - CONTROL_BYTES);
  {
    uint64_t spins = 0, since = 0;
    while (!__atomic_load_n(&ctl->ready, __ATOMIC_ACQUIRE)) {
      if ((++spins & 0xfffff) == 0) stalled(&since, "the peer did not start within 30 s");
    }
  }

  if (roundtrip) {
    struct ring ping, pong;
    ring_init(&ping, rings, size, 1);
    ring_init(&pong, rings + one, size, 0);
    uint64_t *lat = malloc(sizeof(uint64_t) * count);
    if (lat == NULL) die("out of memory");
    for (long i = -warmup; i < count; i++) {
      uint32_t seq = (uint32_t)i;
      stamp(payload, seq);
      uint64_t t0 = now_ns(), t1 = 0;
      ring_send(&ping, payload, (uint32_t)size);
      /* The clock stops once the reply is copied out, before it is checked. */
#define STOP_AND_CHECK(data, length) (t1 = now_ns(), check(data, length, size, seq))
      RECEIVE(&pong, buf, size, STOP_AND_CHECK);
      if (i >= 0) lat[i] = t1 - t0;
    }
    int status;
    waitpid(child, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return 3;
    qsort(lat, count, sizeof lat[0], cmp);
    printf("{\"mechanism\":\"c-ring\",\"n\":%ld,\"p50\":%llu,\"p99\":%llu,\"p999\":%llu}\n", count, (unsigned long long)lat[count / 2],
           (unsigned long long)lat[count * 99 / 100], (unsigned long long)lat[count * 999 / 1000]);
    return 0;
  }

  struct ring ring;
  ring_init(&ring, rings, size, 1);
  __atomic_store_n(&ctl->go, 1, __ATOMIC_RELEASE);
  uint64_t c0 = cpu_us();
  for (long i = 0; i < warm + count; i++) {
    stamp(payload, (uint32_t)i);
    ring_send(&ring, payload, (uint32_t)size);
  }
  uint64_t producer_cpu = cpu_us() - c0;
  int status;
  waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return 3;
  /* The receiver's clock: from the last warm-up message (with none, from the go) to the last. */
  double seconds = (double)(ctl->consumer_end_ns - ctl->consumer_start_ns) / 1e9;
  printf("{\"mechanism\":\"c-ring\",\"messages\":%ld,\"seconds\":%.9f,\"warmup\":%ld,\"cpuUsPerMessage\":%.6f,\"ringBytes\":%zu,\"capacity\":%u}\n", count, seconds,
         warm, (double)(producer_cpu + ctl->consumer_cpu_us) / (double)(warm + count), one, capacity_for(size));
  return 0;
}
