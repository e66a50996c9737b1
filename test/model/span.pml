/*
 * A model of spanning records (issue 14; src/queue/layout.ts "spans", ring.ts, queue.ts) for
 * the Spin model checker, on top of the claims-table protocol of queue.pml: a message longer
 * than one slot is one record over K = 2 consecutive positions, claimed with one CAS of tail
 * (exactly K free slots or none), its interior slot committed (length CONTINUATION) before its
 * first slot (the record's length, written last), and taken with one CAS of head over both.
 *
 * Checked, with any participant but consumer 0 dying at any step, and every interleaving a
 * pause of any length:
 *   - a live claimant still owns every slot of its claim when it commits or releases it;
 *   - whoever sees a span's first slot committed finds its interior committed (asserted where a
 *     consumer decides what to claim), so a span is claimed whole;
 *   - no message is received torn (each half of each slot, and both slots of a span, carry the
 *     same message), twice, or out of order per producer; an interior slot met at the head, or
 *     a span held without its interior, is dropped and belongs to a send that never completed;
 *   - at the end, every completed send was received unless the consumer holding it died;
 *   - nobody hangs (an invalid end state otherwise).
 *
 * Producer 1 sends MSGS messages, every other one a span (the first is); producer 2 sends MSGS1
 * one-slot messages. Consumer 0 takes one record at a time and never dies; consumer 1 takes
 * batches of up to 2 slots, never splitting a span (a span at the head is taken whole). Unlike
 * queue.pml, a skip decides in two steps (the slot looked uncommitted; later, every claimant
 * is dead), as ring.ts does, so that a producer may commit in between and then die: the
 * skipper then holds a committed first slot, and extends its claim over the interior with a
 * second CAS of head (announced first), or drops the span if another consumer took that.
 *
 * Run: see README.md in this folder. Variants that must FAIL: -DNOORDER commits the first slot
 * before the interior (a consumer sees a span whose interior is not committed); -DNORECHECK
 * skips without re-reading the slot after the coverage check (a completed span is dropped).
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
#define MSGS1 1
#endif
#ifndef DEATHS
#define DEATHS 1
#endif
#define NROWS 4
#define NMSG (MSGS + MSGS1)
#define NPROC 6

/* Slot lengths: a one-slot record, a span's first slot, an interior slot. */
#define ONE 1
#define SPAN 2
#define CONT 3

byte tail, head;
byte seq[CAP];
/* The payload: two halves written one after the other (a torn slot has da != db). */
byte da[CAP], db[CAP], ln[CAP];
byte rtok[NROWS], rsp[NROWS], rsn[NROWS], rrp[NROWS], rrn[NROWS];
bool alive[NPROC];
byte deaths;
bool completed[NMSG + 1];
byte received[NMSG + 1];
bool mayLose[NMSG + 1];
byte lastSeen[NC * NP];
byte finished;

#define MAYDIE if :: atomic { mortal && deaths < DEATHS -> deaths++ }; goto dead :: true -> skip fi

#define SCOV(i, p) (rtok[i] != 0 && alive[rtok[i]] && rsn[i] > 0 && p >= rsp[i] && p < rsp[i] + rsn[i])
#define RCOV(i, p) (rtok[i] != 0 && alive[rtok[i]] && rrn[i] > 0 && p >= rrp[i] && p < rrp[i] + rrn[i])
#define LIVE_SEND(p) (SCOV(0, p) || SCOV(1, p) || SCOV(2, p) || SCOV(3, p))
#define LIVE_RECV(p) (RCOV(0, p) || RCOV(1, p) || RCOV(2, p) || RCOV(3, p))

/* Producer 0's message k is a span when k is even. */
#define IS_SPAN(producer, k) (producer == 0 && (k) % 2 == 0)
#define PRODUCER_OF(m) ((m) <= MSGS -> 0 : 1)
#define NUMBER_OF(m) ((m) <= MSGS -> (m) - 1 : (m) - MSGS - 1)

/* Writes message m into the slot of pos with length l, half by half. */
inline put(p, m, l) {
  da[(p) % CAP] = m;
  MAYDIE;
  db[(p) % CAP] = m;
  ln[(p) % CAP] = l
}

proctype Producer(byte me; byte r; byte producer; byte first; byte count) {
  bool mortal = true;
  byte k, pos, n;
  do
  :: k == count -> break
  :: atomic { k < count && seq[tail % CAP] == tail &&
              (!IS_SPAN(producer, k) || seq[(tail + 1) % CAP] == tail + 1) ->
              pos = tail; n = (IS_SPAN(producer, k) -> 2 : 1) } ->
     /* n free slots at the tail (a span claims exactly 2, never part of them). */
     rsp[r] = pos; rsn[r] = n;            /* intent, before the claim */
     MAYDIE;
     if
     :: atomic { tail == pos -> tail = pos + n } ->
        MAYDIE;
        if
        :: n == 2 ->
#ifndef NOORDER
           put(pos + 1, first + k, CONT);
           MAYDIE;
           atomic { assert(seq[(pos + 1) % CAP] == pos + 1); seq[(pos + 1) % CAP] = pos + 2 };
           MAYDIE;
           put(pos, first + k, SPAN);
           MAYDIE;
           atomic { assert(seq[pos % CAP] == pos); seq[pos % CAP] = pos + 1 }
#else
           put(pos, first + k, SPAN);
           MAYDIE;
           atomic { assert(seq[pos % CAP] == pos); seq[pos % CAP] = pos + 1 };
           MAYDIE;
           put(pos + 1, first + k, CONT);
           MAYDIE;
           atomic { assert(seq[(pos + 1) % CAP] == pos + 1); seq[(pos + 1) % CAP] = pos + 2 }
#endif
        :: else ->
           put(pos, first + k, ONE);
           MAYDIE;
           atomic { assert(seq[pos % CAP] == pos); seq[pos % CAP] = pos + 1 }
        fi;
        completed[first + k] = true;
        k++
     :: else ->
        rsn[r] = 0;                      /* lost the race: withdraw the intent */
        if
        :: true -> skip
        :: true -> break
        fi
     fi
  :: atomic { k < count && tail >= CAP && seq[tail % CAP] == tail - CAP + 1 && head > tail - CAP && !LIVE_RECV(tail - CAP) ->
              pos = tail } ->
     /* A dead consumer's slot of the previous lap: free it (the documented loss). */
     atomic { if :: seq[pos % CAP] == pos - CAP + 1 -> seq[pos % CAP] = pos :: else -> skip fi }
  :: atomic { k < count && IS_SPAN(producer, k) && tail + 1 >= CAP && seq[tail % CAP] == tail &&
              seq[(tail + 1) % CAP] == tail + 1 - CAP + 1 && head > tail + 1 - CAP && !LIVE_RECV(tail + 1 - CAP) ->
              pos = tail + 1 } ->
     /* The span's second slot is a dead consumer's (ring.ts: the stall check of an exact
        claim looks at the slot that blocks it). */
     atomic { if :: seq[pos % CAP] == pos - CAP + 1 -> seq[pos % CAP] = pos :: else -> skip fi }
  :: atomic { k < count && tail >= CAP && seq[tail % CAP] == tail - CAP && head > tail - CAP &&
              !LIVE_SEND(tail - CAP) && !LIVE_RECV(tail - CAP) -> pos = tail } ->
     /* A consumer died half-way through skipping: finish its skip. */
     atomic { if :: seq[pos % CAP] == pos - CAP -> seq[pos % CAP] = pos :: else -> skip fi }
  :: atomic { k < count && IS_SPAN(producer, k) && tail + 1 >= CAP && seq[tail % CAP] == tail &&
              seq[(tail + 1) % CAP] == tail + 1 - CAP && head > tail + 1 - CAP &&
              !LIVE_SEND(tail + 1 - CAP) && !LIVE_RECV(tail + 1 - CAP) -> pos = tail + 1 } ->
     atomic { if :: seq[pos % CAP] == pos - CAP -> seq[pos % CAP] = pos :: else -> skip fi }
  od;
  finished++;
  goto end;
dead:
  atomic { alive[me] = false; finished++ };
end:
  skip
}

/* Delivers message a (bookkeeping of the checks). */
inline deliver(a) {
  atomic {
    assert(received[a] == 0);                          /* never twice */
    received[a]++;
    p = PRODUCER_OF(a);
    assert(lastSeen[c * NP + p] <= NUMBER_OF(a));      /* FIFO per producer */
    lastSeen[c * NP + p] = NUMBER_OF(a) + 1
  }
}

/* Reads and releases the claimed slots pos .. pos + n - 1, record by record. */
inline take() {
  do
  :: j < n ->
     t = (pos + j) % CAP;
     MAYDIE;
     a = da[t];
     b = db[t];
     l = ln[t];
     assert(a == b && a != 0);                        /* never torn */
     if
     :: l == SPAN && j + 1 < n ->
        /* The whole span is ours: its interior carries the same message. */
        assert(da[(pos + j + 1) % CAP] == a && db[(pos + j + 1) % CAP] == a && ln[(pos + j + 1) % CAP] == CONT);
        deliver(a);
        MAYDIE;
        atomic { assert(seq[t] == pos + j + 1); seq[t] = pos + j + CAP };
        MAYDIE;
        atomic { assert(seq[(pos + j + 1) % CAP] == pos + j + 2); seq[(pos + j + 1) % CAP] = pos + j + 1 + CAP };
        j = j + 2
     :: else ->
        if
        :: l == ONE -> deliver(a)
        :: else ->
           /* An interior slot at the head, or a span held without its interior: dropped, and
              only ever from a send that did not complete. */
           assert(!completed[a])
        fi;
        MAYDIE;
        atomic { assert(seq[t] == pos + j + 1); seq[t] = pos + j + CAP };
        j++
     fi
  :: else -> break
  od;
  holding = false
}

proctype Consumer(byte me; byte r; byte c; bool batch) {
  bool mortal = (c != 0);
  byte pos, n, j, t, a, b, l, p;
  bool holding;
  do
  :: atomic { finished == NP && head == tail -> break }
  :: atomic { seq[head % CAP] == head + 1 -> pos = head; j = 0;
              if
              :: ln[pos % CAP] == SPAN ->
                 /* The first slot committed: the interior is (the commit order). */
                 assert(seq[(pos + 1) % CAP] == pos + 2);
                 n = 2
              :: else ->
                 n = 1;
                 if
                 :: batch && seq[(pos + 1) % CAP] == pos + 2 && ln[(pos + 1) % CAP] != SPAN -> n = 2
                 :: true -> skip                /* (a span next would not fit the batch) */
                 fi
              fi } ->
     rrp[r] = pos; rrn[r] = n;            /* intent, before the claim */
     MAYDIE;
     if
     :: atomic { head == pos -> head = pos + n; holding = true } -> take()
     :: else -> rrn[r] = 0
     fi
  :: atomic { seq[head % CAP] == head && tail > head -> pos = head; n = 1; j = 0 } ->
     /* Uncommitted at the head. Later (a separate step, as in ring.ts): every claimant dead? */
     if
#ifndef NORECHECK
     :: atomic { !LIVE_SEND(pos) && head == pos && seq[pos % CAP] == pos } ->
        /* (Re-read after the coverage: a claimant that is not live and has not committed
           never will. Without this re-read, a producer that committed and moved on between
           the two looks dead, and a consumer that takes its interior as an orphan drops a
           completed span: -DNORECHECK, which must FAIL.) */
#else
     :: atomic { !LIVE_SEND(pos) && head == pos } ->
#endif
        rrp[r] = pos; rrn[r] = 1;
        MAYDIE;
        if
        :: atomic { head == pos -> head = pos + 1; holding = true } ->
           MAYDIE;
           if
           :: atomic { seq[pos % CAP] == pos -> seq[pos % CAP] = pos + CAP; holding = false }
           :: else ->
              /* Committed after all (its producer committed, then died). A span: extend the
                 claim over its interior, announced first; if that fails, hold it alone. */
              if
              :: ln[pos % CAP] == SPAN && seq[(pos + 1) % CAP] == pos + 2 ->
                 rrn[r] = 2;
                 MAYDIE;
                 if
                 :: atomic { head == pos + 1 -> head = pos + 2; n = 2 }
                 :: else -> rrn[r] = 1
                 fi
              :: else -> skip
              fi;
              take()
           fi
        :: else -> rrn[r] = 0
        fi
     :: else -> skip
     fi
  od;
  rrn[r] = 0;
  goto end;
dead:
  atomic {
    alive[me] = false;
    do
    :: holding && j < n ->
       t = (pos + j) % CAP;
       if
       :: seq[t] == pos + j + 1 && ln[t] != CONT && received[da[t]] == 0 -> mayLose[da[t]] = true
       :: else -> skip
       fi;
       j++
    :: else -> break
    od
  };
end:
  skip
}

init {
  byte i;
  atomic {
    for (i : 0 .. CAP - 1) { seq[i] = i };
    for (i : 1 .. NPROC - 1) { alive[i] = true };
    rtok[0] = 1;
    run Producer(1, 0, 0, 1, MSGS);
    rtok[1] = 2;
    run Producer(2, 1, 1, MSGS + 1, MSGS1);
    for (i : 0 .. NC - 1) {
      rtok[NP + i] = NP + i + 1;
      run Consumer(NP + i + 1, NP + i, i, i == 1)
    }
  };
  (_nr_pr == 1);
  for (i : 1 .. NMSG) {
    assert(!completed[i] || received[i] == 1 || mayLose[i])
  }
}
