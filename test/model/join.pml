/*
 * A subscriber joining a topic whose exclusive publisher moves the tail with PLAIN stores
 * (src/topic/layout.ts, "An exclusive publisher"), on a CPU with store buffers (x86-TSO). The
 * joiner stores its state (seq-cst: a locked instruction, visible at once) and then loads the
 * tail: where it starts reading. A publisher that runs out of gate scans: it reads the tail (its
 * own latest store, forwarded from its buffer) and then the subscriber table; a joiner it does
 * not see yet must not start before the tail it read (else the publisher, gating on that tail,
 * could overwrite the joiner's first slots before it reads them). The scan therefore moves the
 * tail with a seq-cst RMW (tail + 0), which drains the buffer before the table is read.
 *
 * Checked: whenever the scan missed the joiner, the joiner's start is at least the scan's tail.
 * Variant -DNOSCANFENCE (the scan's tail a plain, forwarded load) must fail.
 *
 *   spin -a join.pml && cc -O2 -DSAFETY -o pan pan.c && ./pan -m100000
 */
#ifndef MSGS
#define MSGS 3
#endif

#define TAIL 0
#define STATE 1

byte mem[2];
chan buffer = [MSGS] of { byte, byte };
bool done = false;
byte gate = 0;          /* the scan's tail, when the scan missed the joiner */
bool missed = false;
byte start = 255;       /* the joiner's first position */

inline drainAll() {
  atomic {
    do
    :: buffer?addr, value -> mem[addr] = value
    :: empty(buffer) -> break
    od
  }
}

proctype Publisher() {
  byte tail = 0, addr, value, seen;
  do
  :: tail < MSGS -> tail++; buffer!TAIL, tail     /* a claim: the plain tail store */
  :: tail < MSGS ->                                 /* a scan */
#ifdef NOSCANFENCE
     seen = tail;                                   /* its own store, forwarded */
#else
     drainAll(); seen = mem[TAIL];                  /* Atomics.add(tail, 0): locked */
#endif
     if
     :: mem[STATE] == 0 -> atomic { missed = true; gate = seen }
     :: else -> skip
     fi
  :: tail == MSGS -> break
  od;
  done = true
}

proctype Drain() {
  byte addr, value;
  do
  :: atomic { buffer?addr, value -> mem[addr] = value }
  :: done && empty(buffer) -> break
  od
}

proctype Joiner() {
  mem[STATE] = 1;          /* Atomics.store(state): locked */
  start = mem[TAIL]        /* joinTail */
}

init {
  atomic {
    run Publisher();
    run Drain();
    run Joiner()
  }
  (_nr_pr == 1);
  assert(!missed || start >= gate)
}
