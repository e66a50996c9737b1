/*
 * The C reference for wake-up latency: two processes bounce a word through shared memory.
 *   futex_pingpong futex N [cpuA cpuB]  the waiting side always sleeps in FUTEX_WAIT (shared)
 *   futex_pingpong spin  N [cpuA cpuB]  the waiting side spins on the word (no system call)
 * Prints one JSON line: round-trip percentiles in nanoseconds.
 */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

static int spin;

/* Waits while *word == value. */
static void wait_while(int32_t *word, int32_t value) {
  while (__atomic_load_n(word, __ATOMIC_ACQUIRE) == value) {
    if (!spin) syscall(SYS_futex, word, FUTEX_WAIT, value, NULL, NULL, 0);
  }
}

static void post(int32_t *word, int32_t value) {
  __atomic_store_n(word, value, __ATOMIC_RELEASE);
  if (!spin) syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s futex|spin N [cpuA cpuB]\n", argv[0]);
    return 2;
  }
  spin = strcmp(argv[1], "spin") == 0;
  long n = atol(argv[2]);
  int cpu_a = argc > 3 ? atoi(argv[3]) : -1, cpu_b = argc > 4 ? atoi(argv[4]) : -1;
  int32_t *word = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (word == MAP_FAILED || n <= 0) return 1;
  *word = 0;
  pid_t child = fork();
  if (child == 0) {
    pin(cpu_b);
    for (;;) {
      wait_while(word, 0);
      if (__atomic_load_n(word, __ATOMIC_ACQUIRE) == 2) _exit(0);
      post(word, 0);
    }
  }
  pin(cpu_a);
  uint64_t *lat = malloc(sizeof(uint64_t) * n);
  long warmup = n / 10;
  for (long i = -warmup; i < n; i++) {
    uint64_t t0 = now_ns();
    post(word, 1);
    wait_while(word, 1);
    if (i >= 0) lat[i] = now_ns() - t0;
  }
  __atomic_store_n(word, 2, __ATOMIC_RELEASE);
  syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0);
  waitpid(child, NULL, 0);
  qsort(lat, n, sizeof lat[0], cmp);
  printf("{\"mechanism\":\"c-%s\",\"n\":%ld,\"p50\":%llu,\"p99\":%llu,\"p999\":%llu}\n", argv[1], n,
         (unsigned long long)lat[n / 2], (unsigned long long)lat[n * 99 / 100], (unsigned long long)lat[n * 999 / 1000]);
  return 0;
}
