/*
 * A model of the Queue's leases (at-least-once delivery; src/queue/layout.ts "Leases",
 * ring.ts) for the Spin model checker. A leased record stays in its slot, owned through the
 * 64-bit word (seq, holder); a lease taker announces a lease intent in its row before it claims
 * the head; the holder acknowledges (frees the slot) or gives the lease back; a lease consumer
 * takes over, with one CAS of (seq, holder), a lease whose holder is dead or gave it back, or
 * a record whose claimants are all dead and one took a lease; a
 * producer that wraps around to such a record gives it back instead of freeing it; a newcomer
 * that reuses a dead row first gives back the lease it was taking.
 *
 * Checked, with lease consumers dying at any step, and (-DEXPIRY) live holders losing their
 * lease to a rescuer at any moment (their leaseTime ran out):
 *   - a lease taker's CAS that records the lease always succeeds (nobody takes a live claim);
 *   - a copy that the holder validated (still holds the lease after reading) is the job that
 *     was sent at that position, never a torn or later record;
 *   - every job is done at least once (nothing lost), and done twice only for a cause: its
 *     holder died after doing it and before acknowledging, or (EXPIRY) its lease was taken
 *     from a live holder;
 *   - nobody hangs (a state where everyone left waits is an invalid end state).
 * -DNONEWCOMER leaves the newcomer out (a smaller run).
 * -DPLAIN adds a plain (at-most-once) consumer: a job it held when it died may be lost, never
 * one a lease consumer held. -DNOGIVEBACK makes the wrapping producer free a dead lease
 * taker's record instead of giving it back; Spin then finds the lost job.
 *
 * Run: see README.md in this folder. Model: CAP slots, one producer (never dies; its own stall
 * rules are queue.pml's) sending JOBS jobs (job id = position + 1), two lease consumers (L0 may
 * die, L1 is the survivor), a newcomer that reuses a dead row. Positions do not wrap.
 */

#ifndef CAP
#define CAP 2
#endif
#ifndef JOBS
#define JOBS 3
#endif
#define NROWS 4
#define NPROC 6
#define DEAD 255                 /* DEAD_TOKEN: a lease given back */

byte tail, head;
byte seq[CAP], holder[CAP];
byte da[CAP], db[CAP];           /* payload halves: a torn record has da != db */
byte leases;                     /* leased slots plus lease takes in progress (upper bound) */
byte rtok[NROWS], rrp[NROWS], rrn[NROWS];
bool rlease[NROWS];
bool alive[NPROC];
byte deaths;
/* Bookkeeping of the checks. */
byte done[JOBS + 1];
byte excuses;                    /* causes for a second completion */
byte steals;                     /* leases taken from live holders (EXPIRY) */
bool mayLose[JOBS + 1];
bool sent;                       /* the producer sent every job */

#define MAYDIE if :: atomic { mortal && deaths < 1 -> deaths++ }; goto dead :: true -> skip fi

/* Row i is alive and its receive intent covers position p (except row x). */
#define LCOV(i, p, x) (i != x && rtok[i] != 0 && alive[rtok[i]] && rrn[i] > 0 && p >= rrp[i] && p < rrp[i] + rrn[i])
#define LIVE_RECV(p, x) (LCOV(0, p, x) || LCOV(1, p, x) || LCOV(2, p, x) || LCOV(3, p, x))
/* Row i is dead, was taking a lease, and covers p. */
#define DLCOV(i, p) (rtok[i] != 0 && !alive[rtok[i]] && rlease[i] && rrn[i] > 0 && p >= rrp[i] && p < rrp[i] + rrn[i])
#define DEAD_LEASE(p) (DLCOV(0, p) || DLCOV(1, p) || DLCOV(2, p) || DLCOV(3, p))
/* Position p behind the head holds a record that a lease consumer may take over. */
#define RESCUABLE(p) ((p) >= 0 && (p) < head && p + CAP >= tail && seq[(p) % CAP] == p + 1 && \
  ((holder[(p) % CAP] == 0 && !LIVE_RECV(p, 9) && DEAD_LEASE(p)) || \
   (holder[(p) % CAP] != 0 && holder[(p) % CAP] != me && (holder[(p) % CAP] == DEAD || !alive[holder[(p) % CAP]] || EXPIRED))))
/* Every job done, or lost the documented way (a plain consumer died holding it). */
#define SETTLED(i) (done[i] > 0 || mayLose[i])
#define ALL_SETTLED (SETTLED(1) && SETTLED(2) && SETTLED(JOBS))
#ifdef EXPIRY
#define EXPIRED (steals < 2)             /* two expiries per run: enough to interleave them */
#else
#define EXPIRED false
#endif

proctype Producer() {
  byte pos, s, prev;
  do
  :: pos == JOBS -> break
  :: atomic { pos < JOBS && seq[pos % CAP] == pos -> s = pos % CAP } ->
     tail = pos + 1;                     /* the only producer: its claim cannot fail */
     da[s] = pos + 1;
     db[s] = pos + 1;
     seq[s] = pos + 1;                   /* commit */
     pos++
  :: atomic { pos < JOBS && pos >= CAP && seq[pos % CAP] == pos - CAP + 1 && holder[pos % CAP] == 0 &&
              head > pos - CAP && !LIVE_RECV(pos - CAP, 9) -> s = pos % CAP; prev = pos - CAP } ->
     /* A consumer claimed the previous lap and every claimant is dead. */
#ifndef NOGIVEBACK
     if
     :: atomic { DEAD_LEASE(prev) && seq[s] == prev + 1 && holder[s] == 0 -> holder[s] = DEAD }
     :: atomic { !DEAD_LEASE(prev) && seq[s] == prev + 1 && holder[s] == 0 -> seq[s] = pos; mayLose[da[s]] = true }
     :: else -> skip
     fi
#else
     atomic { if :: seq[s] == prev + 1 && holder[s] == 0 -> seq[s] = pos; mayLose[da[s]] = !DEAD_LEASE(prev) :: else -> skip fi }
#endif
  od;
  sent = true
}

/* After a successful take or rescue of position pos (slot s): copy, validate, do, settle. */
inline work() {
  MAYDIE;
  a = da[s];
  b = db[s];
  if
  :: atomic { seq[s] == pos + 1 && holder[s] == me } ->
     assert(a == b && a == pos + 1);     /* a validated copy is the job of that position */
     if
     :: true ->
        done[a]++;
        doneIt = true;
        MAYDIE;
        /* ack */
        if
        :: atomic { seq[s] == pos + 1 && holder[s] == me -> seq[s] = pos + CAP; holder[s] = 0; leases-- }
        :: else -> skip                  /* taken over after its lease time: IPC_ERR_NOT_OWNER */
        fi
     :: true ->
        /* release: give it back for another delivery */
        atomic { if :: seq[s] == pos + 1 && holder[s] == me -> holder[s] = DEAD :: else -> skip fi }
     fi
  :: else -> skip                        /* lost while copying: the copy is discarded */
  fi;
  doneIt = false
}

proctype LeaseConsumer(byte me; byte r; bool mortal) {
  byte pos, s, a, b, h;
  bool doneIt;
  do
  :: atomic { sent && ALL_SETTLED -> break }
  :: atomic { seq[head % CAP] == head + 1 -> pos = head; s = pos % CAP } ->
     /* A committed record at the head: take it as a lease. */
     leases++;
     rrp[r] = pos; rrn[r] = 1; rlease[r] = true;   /* intent, before the claim */
     MAYDIE;
     if
     :: atomic { head == pos -> head = pos + 1 } ->
        MAYDIE;
        /* Record the lease: the claim is ours, so this CAS cannot fail. */
        atomic { assert(seq[s] == pos + 1 && holder[s] == 0); holder[s] = me };
        work()
     :: else -> rrn[r] = 0; leases--
     fi
  :: atomic { leases > 0 && (RESCUABLE(tail - 2) || RESCUABLE(tail - 1)) ->
              if :: RESCUABLE(tail - 2) -> pos = tail - 2 :: else -> pos = tail - 1 fi;
              s = pos % CAP; h = holder[s] } ->
     /* A lease to take over (the scan, decided on what it read; before or instead of the head). */
     if
     :: atomic { seq[s] == pos + 1 && holder[s] == h ->
                 if :: h != 0 && h != DEAD && alive[h] -> excuses++; steals++ :: else -> skip fi;
                 holder[s] = me } ->
        work()
     :: else -> skip
     fi
  od;
  goto end;
dead:
  atomic {
    alive[me] = false;
    if :: doneIt -> excuses++ :: else -> skip fi
  };
end:
  skip
}

#ifdef PLAIN
proctype PlainConsumer(byte me; byte r) {
  bool mortal = true;
  byte pos, s, a, b;
  bool holding;
  do
  :: atomic { sent && head == tail -> break }
  :: atomic { seq[head % CAP] == head + 1 -> pos = head; s = pos % CAP } ->
     rrp[r] = pos; rrn[r] = 1; rlease[r] = false;
     MAYDIE;
     if
     :: atomic { head == pos -> head = pos + 1; holding = true } ->
        MAYDIE;
        a = da[s];
        b = db[s];
        assert(a == b && a == pos + 1);
        done[a]++;
        holding = false;
        atomic { assert(seq[s] == pos + 1 && holder[s] == 0); seq[s] = pos + CAP }
     :: else -> rrn[r] = 0
     fi
  od;
  goto end;
dead:
  atomic { alive[me] = false; if :: holding && done[da[s]] == 0 -> mayLose[da[s]] = true :: else -> skip fi };
end:
  skip
}
#endif

/* Opens the queue later: reuses a dead row, after giving back the lease it was taking. */
proctype Newcomer(byte me) {
  byte i, tok, p;
  do
  :: i < NROWS ->
     tok = rtok[i];
     if
     :: tok != 0 && !alive[tok] ->
        p = rrp[i];
        if
        :: rlease[i] && rrn[i] > 0 && p < head ->
           if
           :: atomic { !LIVE_RECV(p, i) && seq[p % CAP] == p + 1 && holder[p % CAP] == 0 -> holder[p % CAP] = DEAD }
           :: atomic { LIVE_RECV(p, i) -> tok = 0 }              /* someone alive may hold it: not now */
           :: atomic { seq[p % CAP] != p + 1 || holder[p % CAP] != 0 -> skip }
           fi
        :: else -> skip
        fi;
        if
        :: atomic { tok != 0 && rtok[i] == tok -> rtok[i] = me } ->
           rrn[i] = 0; rlease[i] = false;
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
    run Producer();                      /* pid 1 */
    rtok[0] = 2; run LeaseConsumer(2, 0, true);
    rtok[1] = 3; run LeaseConsumer(3, 1, false);
#ifdef PLAIN
    rtok[2] = 4; run PlainConsumer(4, 2);
#endif
#ifndef NONEWCOMER
    run Newcomer(5)
#endif
  };
  (_nr_pr == 1);
  for (i : 1 .. JOBS) {
    assert(done[i] > 0 || mayLose[i])    /* nothing a lease consumer held is lost */
  };
  byte extra = 0;
  for (i : 1 .. JOBS) {
    if :: done[i] > 1 -> extra = extra + done[i] - 1 :: else -> skip fi
  };
  assert(extra <= excuses)               /* done twice only for a cause */
}
