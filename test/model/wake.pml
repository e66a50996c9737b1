/*
 * The wake-up hand-off of a topic's exclusive publisher (src/topic/layout.ts, "An exclusive
 * publisher"; src/os/fence.ts), on a CPU with store buffers (x86-TSO): the publisher commits
 * with a PLAIN store and then loads dataSleepers with a plain load, so its commit may still sit
 * in its store buffer while the load is answered (the one reordering x86 makes). A subscriber
 * about to sleep increments dataSleepers (a locked RMW, visible at once), runs the heavy fence
 * (membarrier: the publisher's CPU executes a full barrier, so every store it has issued
 * reaches memory before the call returns), reads the futex word, re-checks the commit, and
 * sleeps on the futex word unless it changed (the kernel compares atomically).
 *
 * Checked: the subscriber receives all MSGS messages and nobody sleeps forever (a lost wake-up
 * is an invalid end state: the subscriber blocked on an unchanged word, the publisher done).
 * Variants: -DNOFENCE (no heavy fence) must fail; -DNOFENCE -DSEQCST (the commit a seq-cst
 * store, which drains the store buffer: the protocol of shared topics) must pass.
 *
 *   spin -a wake.pml && cc -O2 -DSAFETY -o pan pan.c && ./pan -m100000
 */
#ifndef MSGS
#define MSGS 3
#endif

#define SEQ 0
#define SLEEPERS 1
#define EVENTS 2

byte mem[3];
/* The publisher's store buffer: (address, value), drained in order by the CPU at any time. */
chan buffer = [MSGS] of { byte, byte };
bool published = false;

inline drainOne() {
  atomic { buffer?addr, value -> mem[addr] = value }
}

/* A locked instruction or a full barrier: every buffered store reaches memory first. */
inline drainAll() {
  atomic {
    do
    :: buffer?addr, value -> mem[addr] = value
    :: empty(buffer) -> break
    od
  }
}

proctype Publisher() {
  byte k = 1, addr, value;
  do
  :: k <= MSGS ->
#ifdef SEQCST
     buffer!SEQ, k; drainAll();
#else
     buffer!SEQ, k;            /* the plain commit: buffered */
#endif
     if                          /* plain load of dataSleepers: from memory (not buffered) */
     :: mem[SLEEPERS] != 0 ->
        drainAll();              /* Atomics.add(dataEvents): locked, drains first */
        mem[EVENTS] = mem[EVENTS] + 1  /* then futex wake: sleepers see the word change */
     :: else -> skip
     fi;
     k++
  :: k > MSGS -> break
  od;
  published = true
}

/* The CPU drains the publisher's buffer whenever it likes, and at the latest when it is done. */
proctype Drain() {
  byte addr, value;
  do
  :: drainOne()
  :: published && empty(buffer) -> break
  od
}

proctype Subscriber() {
  byte want = 1, seen, addr, value;
  do
  :: want > MSGS -> break
  :: want <= MSGS ->
     if
     :: mem[SEQ] >= want -> want++           /* a message: take it */
     :: else ->
        mem[SLEEPERS] = mem[SLEEPERS] + 1;   /* Atomics.add: locked */
#ifndef NOFENCE
        drainAll();                          /* heavyFence(): membarrier */
#endif
        seen = mem[EVENTS];
        if
        :: mem[SEQ] >= want -> skip          /* the re-check finds it */
        :: else -> (mem[EVENTS] != seen)     /* futex wait: asleep until the word changes */
        fi;
        mem[SLEEPERS] = mem[SLEEPERS] - 1
     fi
  od;
  assert(mem[SEQ] == MSGS)
}

init {
  atomic {
    run Publisher();
    run Drain();
    run Subscriber()
  }
}
