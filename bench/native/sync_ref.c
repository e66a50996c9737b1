/*
 * C references for the sync primitives, measured in the same run as the JS ones:
 *   sync_ref uncontended N            pthread robust, process-shared mutex: N lock+unlock pairs
 *   sync_ref handoff N [cpuA cpuB]    that mutex handed between two processes, the waiter asleep:
 *                                     unlock-to-acquire time, N samples
 *   sync_ref sempingpong N [cpuA cpuB] two process-shared POSIX semaphores bounced N times
 * Prints one JSON line (nanoseconds).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

struct shared {
  pthread_mutex_t mutex;
  sem_t ping, pong;
  long counter;
  uint64_t stamp;
  int intent, taken, started;
};

static void lock(pthread_mutex_t *m) {
  if (pthread_mutex_lock(m) == EOWNERDEAD) pthread_mutex_consistent(m);
}

static void busy_ns(uint64_t ns) {
  uint64_t until = now_ns() + ns;
  while (now_ns() < until) {
  }
}

/*
 * One side of the hand-off: the holder waits for the other side's intent, lets it fall asleep
 * in the lock (HOLD_NS), stamps the time and unlocks; the waiter records unlock-to-acquire and
 * says it has the lock (`taken`), which the old holder waits for before it queues up in turn,
 * so that it can never barge back in ahead of the woken waiter.
 */
#define HOLD_NS 50000
static void handoff(struct shared *s, long rounds, int holding, uint64_t *samples) {
  for (long i = 0; i < rounds; i++) {
    if (holding) {
      while (__atomic_load_n(&s->intent, __ATOMIC_ACQUIRE) != 1) {
      }
      busy_ns(HOLD_NS);
      __atomic_store_n(&s->intent, 0, __ATOMIC_RELAXED);
      __atomic_store_n(&s->taken, 0, __ATOMIC_RELAXED);
      __atomic_store_n(&s->stamp, now_ns(), __ATOMIC_RELEASE);
      pthread_mutex_unlock(&s->mutex);
      while (__atomic_load_n(&s->taken, __ATOMIC_ACQUIRE) != 1) {
      }
    } else {
      __atomic_store_n(&s->intent, 1, __ATOMIC_RELEASE);
      lock(&s->mutex);
      uint64_t got = now_ns();
      if (samples) samples[i / 2] = got - __atomic_load_n(&s->stamp, __ATOMIC_ACQUIRE);
      __atomic_store_n(&s->taken, 1, __ATOMIC_RELEASE);
    }
    holding = !holding;
  }
  if (holding) pthread_mutex_unlock(&s->mutex);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s uncontended|handoff|sempingpong N [cpuA cpuB]\n", argv[0]);
    return 2;
  }
  long n = atol(argv[2]);
  int cpu_a = argc > 3 ? atoi(argv[3]) : -1, cpu_b = argc > 4 ? atoi(argv[4]) : -1;
  struct shared *s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (s == MAP_FAILED || n <= 0) return 1;
  memset(s, 0, sizeof *s);
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(&s->mutex, &attr);
  sem_init(&s->ping, 1, 0);
  sem_init(&s->pong, 1, 0);
  pin(cpu_a);

  if (strcmp(argv[1], "uncontended") == 0) {
    for (long i = 0; i < n / 10; i++) lock(&s->mutex), pthread_mutex_unlock(&s->mutex);
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++) lock(&s->mutex), pthread_mutex_unlock(&s->mutex);
    double seconds = (now_ns() - t0) / 1e9;
    printf("{\"mechanism\":\"c-pthread-robust-uncontended\",\"n\":%ld,\"seconds\":%.9f,\"nsPerLockUnlock\":%.2f}\n", n, seconds,
           seconds * 1e9 / n);
    return 0;
  }
  if (strcmp(argv[1], "handoff") == 0) {
    /* 2n hand-offs; this process measures the n where it is the waiter. */
    pid_t child = fork();
    if (child == 0) {
      pin(cpu_b);
      while (!__atomic_load_n(&s->started, __ATOMIC_ACQUIRE)) {
      }
      handoff(s, 2 * n, 0, NULL);
      _exit(0);
    }
    lock(&s->mutex); /* the parent starts as the holder */
    __atomic_store_n(&s->started, 1, __ATOMIC_RELEASE);
    uint64_t *lat = malloc(sizeof(uint64_t) * n);
    handoff(s, 2 * n, 1, lat);
    waitpid(child, NULL, 0);
    qsort(lat, n, sizeof lat[0], cmp);
    printf("{\"mechanism\":\"c-pthread-robust-handoff\",\"n\":%ld,\"p50\":%llu,\"p99\":%llu,\"p999\":%llu}\n", n,
           (unsigned long long)lat[n / 2], (unsigned long long)lat[n * 99 / 100], (unsigned long long)lat[n * 999 / 1000]);
    return 0;
  }
  if (strcmp(argv[1], "sempingpong") == 0) {
    pid_t child = fork();
    if (child == 0) {
      pin(cpu_b);
      for (;;) {
        sem_wait(&s->ping);
        if (s->counter < 0) _exit(0);
        sem_post(&s->pong);
      }
    }
    uint64_t *lat = malloc(sizeof(uint64_t) * n);
    long warmup = n / 10;
    for (long i = -warmup; i < n; i++) {
      uint64_t t0 = now_ns();
      sem_post(&s->ping);
      sem_wait(&s->pong);
      if (i >= 0) lat[i] = now_ns() - t0;
    }
    s->counter = -1;
    sem_post(&s->ping);
    waitpid(child, NULL, 0);
    qsort(lat, n, sizeof lat[0], cmp);
    printf("{\"mechanism\":\"c-sem-pingpong\",\"n\":%ld,\"p50\":%llu,\"p99\":%llu,\"p999\":%llu}\n", n, (unsigned long long)lat[n / 2],
           (unsigned long long)lat[n * 99 / 100], (unsigned long long)lat[n * 999 / 1000]);
    return 0;
  }
  return 2;
}
