/*
 * A model of the Queue's claim protocol (src/queue/layout.ts, ring.ts) for the Spin model
 * checker: Vyukov's bounded MPMC ring where every claimant records its intent in its own row
 * of the claims table BEFORE its claim CAS, and a stalled slot is reclaimed only when no live
 * row's intent covers it.
 *
 * Checked, with any participant dying at any step and a newcomer taking over dead rows:
 *   - a claimant that is merely slow (paused: Spin explores every interleaving, so every
 *     length of pause) still owns its slot when it commits or releases (asserted there);
 *   - no message is received torn, twice, or out of order per producer (asserted there);
 *   - at the end, every completed send was received, unless the consumer holding it died (the
 *     documented at-most-once loss);
 *   - nobody hangs: a process blocks only where the real one waits (a full or empty queue),
 *     so a state where everyone left waits is an invalid end state, which Spin reports.
 *
 * Run: see README.md in this folder. Variants that must FAIL (they prove the checks bite):
 *   -DBUGGY    records the claimant after its claim CAS (the protocol before issue 11): Spin
 *              finds a paused producer writing into a later lap's record.
 *   -DNOCLEAR  keeps a stale intent when a claim CAS is lost: Spin finds the hang.
 * -DNONEWCOMER leaves the newcomer out (a smaller run).
 *
 * Modelling choices: CAP slots, NP producers (the last sends MSGS1 messages, the others MSGS),
 * NC consumers (consumer 1 takes batches of up to 2; consumer 0 never dies, so that someone is
 * left to receive). Positions do not wrap. Each shared access of the claim/commit/release path
 * is its own step (sequential consistency: the JS protocol uses seq-cst atomics, and its plain
 * stores are published by the seq-cst CAS that follows them). What to do next is decided on a
 * snapshot of the shared words (one step); every action after it is a separate step that
 * re-checks with a CAS, exactly as the real code acts on values that may be stale by then.
 * Stall reclaiming has no timeout here: a reclaimer may act at any moment once the kernel says
 * every claimant is dead, which is stronger than any stallTimeout.
 */

#ifndef CAP
#define CAP 2
#endif
#define NP 2
#define NC 2
#ifndef MSGS
#define MSGS 2
#endif
#ifndef MSGS1
#define MSGS1 MSGS
#endif
#ifndef DEATHS
#define DEATHS 2
#endif
#define NROWS 4
#define NMSG (NP * MSGS)
#define NPROC 7

byte tail, head;
byte seq[CAP];
/* The payload in two halves written one after the other: a torn record has da != db. */
byte da[CAP], db[CAP];
/* The claims table: owner token, send intent (pos, count), receive intent (pos, count). */
byte rtok[NROWS], rsp[NROWS], rsn[NROWS], rrp[NROWS], rrn[NROWS];
/* The kernel's lifelines: alive[token]. Tokens are process ids. */
bool alive[NPROC];
byte deaths;
/* Bookkeeping of the checks (not part of the protocol). */
bool completed[NMSG + 1];   /* the producer's send returned */
byte received[NMSG + 1];
bool mayLose[NMSG + 1];     /* its consumer died holding it: the documented at-most-once loss */
byte lastSeen[NC * NP];     /* per consumer and producer: last message number + 1 */
byte finished;              /* producers that returned or died */

/* Any step may be the last: death takes the process's lifeline with it. */
#define MAYDIE if :: atomic { mortal && deaths < DEATHS -> deaths++ }; goto dead :: true -> skip fi

/* Row i is alive and its send (S) / receive (R) intent covers position p. */
#define SCOV(i, p) (rtok[i] != 0 && alive[rtok[i]] && rsn[i] > 0 && p >= rsp[i] && p < rsp[i] + rsn[i])
#define RCOV(i, p) (rtok[i] != 0 && alive[rtok[i]] && rrn[i] > 0 && p >= rrp[i] && p < rrp[i] + rrn[i])
#define LIVE_SEND(p) (SCOV(0, p) || SCOV(1, p) || SCOV(2, p) || SCOV(3, p))
#define LIVE_RECV(p) (RCOV(0, p) || RCOV(1, p) || RCOV(2, p) || RCOV(3, p))

proctype Producer(byte me; byte r; byte first; byte count) {
  bool mortal = true;
  byte k, pos, s;
  do
  :: k == count -> break
  :: atomic { k < count && seq[tail % CAP] == tail -> pos = tail; s = pos % CAP } ->
     /* A free slot at the tail. */
#ifndef BUGGY
     rsp[r] = pos; rsn[r] = 1;           /* intent, before the claim */
     MAYDIE;
#endif
     if
     :: atomic { tail == pos -> tail = pos + 1 } ->
#ifdef BUGGY
        MAYDIE;
        rsp[r] = pos; rsn[r] = 1;        /* the old order: owner recorded after the claim */
#endif
        MAYDIE;
        da[s] = first + k;
        db[s] = first + k;
        MAYDIE;
        /* The commit: a live claimant must still own its slot. */
        atomic { assert(seq[s] == pos); seq[s] = pos + 1 };
        completed[first + k] = true;
        k++
     :: else ->
        /* Lost the race. The real handle retries, or gives up (trySend returns false) and may
           then stay idle for ever: either way it must not leave a stale intent behind. */
#ifndef NOCLEAR
        rsn[r] = 0;
#endif
        if
        :: true -> skip
        :: true -> break                 /* gave up: alive, idle, sends nothing more */
        fi
     fi
  :: atomic { k < count && tail >= CAP && seq[tail % CAP] == tail - CAP + 1 && head > tail - CAP && !LIVE_RECV(tail - CAP) ->
              pos = tail; s = pos % CAP } ->
     /* Full because a consumer claimed the previous lap and every claimant is dead: free the
        slot for this lap (that message is the documented loss). */
     atomic { if :: seq[s] == pos - CAP + 1 -> seq[s] = pos :: else -> skip fi }
  :: atomic { k < count && tail >= CAP && seq[tail % CAP] == tail - CAP && head > tail - CAP &&
              !LIVE_SEND(tail - CAP) && !LIVE_RECV(tail - CAP) -> pos = tail; s = pos % CAP } ->
     /* A consumer died half-way through skipping a dead producer's record (it took the head,
        not yet the slot): with both claimants dead, finish the skip. */
     atomic { if :: seq[s] == pos - CAP -> seq[s] = pos :: else -> skip fi }
  od;
  finished++;                            /* its last intent stays, as in the real code */
  goto end;
dead:
  atomic { alive[me] = false; finished++ };
end:
  skip
}

/* Reads and releases the claimed records pos .. pos + n - 1 (a Consumer's locals). */
inline take() {
  do
  :: j < n ->
     t = (pos + j) % CAP;
     MAYDIE;
     a = da[t];
     b = db[t];
     assert(a == b && a != 0);         /* never torn */
     atomic {
       assert(received[a] == 0);       /* never twice */
       received[a]++;
       p = (a - 1) / MSGS;             /* producer of a, and its message number */
       assert(lastSeen[c * NP + p] <= (a - 1) % MSGS);   /* FIFO per producer */
       lastSeen[c * NP + p] = (a - 1) % MSGS + 1
     };
     MAYDIE;
     /* The release: a live claimant must still own its slot. */
     atomic { assert(seq[t] == pos + j + 1); seq[t] = pos + j + CAP };
     j++
  :: else -> break
  od;
  holding = false
}

proctype Consumer(byte me; byte r; byte c; bool batch) {
  bool mortal = (c != 0);
  byte pos, s, n, j, t, a, b, p;
  bool holding;
  do
  :: atomic { finished == NP && head == tail -> break }
  :: atomic { seq[head % CAP] == head + 1 -> pos = head; s = pos % CAP; n = 1; j = 0 } ->
     /* A committed record at the head (a batch consumer may see two). */
     if
     :: batch && seq[(pos + 1) % CAP] == pos + 2 -> n = 2
     :: true -> skip
     fi;
     rrp[r] = pos; rrn[r] = n;           /* intent, before the claim */
     MAYDIE;
     if
     :: atomic { head == pos -> head = pos + n; holding = true } -> take()
     :: else -> rrn[r] = 0               /* lost the race */
     fi
  :: atomic { seq[head % CAP] == head && tail > head && !LIVE_SEND(head) -> pos = head; s = pos % CAP; n = 1; j = 0 } ->
     /* Claimed by a producer that never committed, and every claimant is dead: skip it. The
        skip takes the head like a receive, so it records its intent first. */
     rrp[r] = pos; rrn[r] = 1;
     MAYDIE;
     if
     :: atomic { head == pos -> head = pos + 1; holding = true } ->
        MAYDIE;
        if
        :: atomic { seq[s] == pos -> seq[s] = pos + CAP; holding = false }
        :: else -> take()                /* it was committed after all: deliver it */
        fi
     :: else -> rrn[r] = 0
     fi
  od;
  rrn[r] = 0;
  goto end;
dead:
  atomic {
    alive[me] = false;
    /* What this consumer held and had not received is the documented at-most-once loss. */
    do
    :: holding && j < n ->
       t = (pos + j) % CAP;
       if
       :: seq[t] == pos + j + 1 && received[da[t]] == 0 -> mayLose[da[t]] = true
       :: else -> skip
       fi;
       j++
    :: else -> break
    od
  };
end:
  skip
}

/* A process that opens the queue later and takes over a dead participant's row. */
proctype Newcomer(byte me) {
  byte i, tok;
  do
  :: i < NROWS ->
     tok = rtok[i];
     if
     :: tok != 0 && !alive[tok] ->
        if
        :: atomic { rtok[i] == tok -> rtok[i] = me } ->
           rsn[i] = 0; rrn[i] = 0;       /* a fresh handle: no intents */
           break
        :: else -> skip
        fi
     :: else -> skip
     fi;
     i++
  :: else -> break
  od
}

init {
  byte i;
  atomic {
    for (i : 0 .. CAP - 1) { seq[i] = i };
    for (i : 1 .. NPROC - 1) { alive[i] = true };
    for (i : 0 .. NP - 1) {
      rtok[i] = i + 1;
      run Producer(i + 1, i, i * MSGS + 1, (i == NP - 1 -> MSGS1 : MSGS))
    };
    for (i : 0 .. NC - 1) {
      rtok[NP + i] = NP + i + 1;
      run Consumer(NP + i + 1, NP + i, i, i == 1)
    };
#ifndef NONEWCOMER
    run Newcomer(NP + NC + 1)
#endif
  };
  (_nr_pr == 1);
  /* Everyone returned or died: every completed send was received exactly once, unless the
     consumer holding it died (at most once). */
  for (i : 1 .. NMSG) {
    assert(!completed[i] || received[i] == 1 || mayLose[i])
  }
}
