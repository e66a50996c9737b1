// The shm:// record encoding (src/channel/shm/record.ts) on its own, without shared memory:
// frames split into records and gathered back, the limits a receiver enforces before it keeps a
// byte, and random records that may only ever give coded outcomes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { RECORD_HEADER_BYTES, RecordKind, Read, RecordReader, Packer, writeRecord } = require('../dist/cjs/channel/shm/record.js');

/** The records of one frame as separate byte arrays, `chunkBytes` of payload each. */
function encode(type, id, payload, chunkBytes) {
  const records = [];
  let offset = 0;
  do {
    const chunk = Math.min(payload.byteLength - offset, chunkBytes);
    const record = new Uint8Array(RECORD_HEADER_BYTES + chunk);
    writeRecord(record, 0, offset === 0 ? type : RecordKind.Continuation, id, payload.byteLength, payload, offset, chunk);
    records.push(record);
    offset += chunk;
  } while (offset < payload.byteLength);
  return records;
}

function record(kind, id, total, chunk) {
  const r = Buffer.alloc(RECORD_HEADER_BYTES + chunk);
  r[0] = kind;
  r.writeUInt32LE(id, 4);
  r.writeUInt32LE(total, 8);
  return r;
}

const fill = (size, seed) => Uint8Array.from({ length: size }, (_, i) => (seed + i * 7) & 0xff);

/** Each case ([what, records, reason]) read in order by a fresh reader ends in Read.Bad for `reason`, with nothing left to deliver. */
function expectBad(cases) {
  for (const [what, records, reason] of cases) {
    const reader = new RecordReader(1000);
    let read;
    for (const r of records) read = reader.read(r, 0, r.byteLength);
    assert.equal(read, Read.Bad, what);
    assert.match(reader.error, reason, what);
    assert.equal(reader.pending, false, what);
  }
}

test('record layout: kind, id and total length at their offsets, the chunk after the header', () => {
  const payload = fill(10, 1);
  const u8 = new Uint8Array(64).fill(0xee);
  writeRecord(u8, 8, 2, 0x01020304, 10, payload, 0, 10);
  const at = Buffer.from(u8.buffer, 8);
  assert.equal(RECORD_HEADER_BYTES, 16, 'the chunk starts 8-byte aligned in an aligned slot');
  assert.equal(at[0], 2);
  assert.deepEqual([at[1], at[2], at[3]], [0, 0, 0]);
  assert.equal(at.readUInt32LE(4), 0x01020304);
  assert.equal(at.readUInt32LE(8), 10);
  assert.equal(at.readUInt32LE(12), 0);
  assert.deepEqual(at.subarray(16, 26), Buffer.from(payload));
  assert.equal(u8[7], 0xee, 'nothing written before the record');
  assert.equal(at[26], 0xee, 'nothing written after the chunk');
  // A later chunk of the same frame is a continuation that still names the whole length.
  writeRecord(u8, 0, RecordKind.Continuation, 7, 100, fill(100, 2), 40, 30);
  assert.equal(u8[0], RecordKind.Continuation);
  assert.equal(Buffer.from(u8.buffer).readUInt32LE(8), 100);
  assert.deepEqual(u8.subarray(16, 46), fill(100, 2).subarray(40, 70));
});

test('frames of every size round-trip through records of every chunk size, in order', () => {
  for (const chunkBytes of [1, 7, 64, 1000]) {
    const reader = new RecordReader(5000);
    const sizes = [0, 1, chunkBytes - 1, chunkBytes, chunkBytes + 1, 3 * chunkBytes, 4999, 5000].filter((s) => s >= 0 && s <= 5000);
    for (const [n, size] of sizes.entries()) {
      const type = 1 + (n % 4);
      const payload = fill(size, n);
      const records = encode(type, n + 1, payload, chunkBytes);
      assert.equal(records.length, Math.max(1, Math.ceil(size / chunkBytes)));
      records.forEach((r, k) => {
        const read = reader.read(r, 0, r.byteLength);
        if (k < records.length - 1) {
          assert.equal(read, Read.Partial, `chunk ${chunkBytes}, size ${size}, record ${k}`);
          assert.equal(reader.inFrame, true);
        } else {
          assert.equal(read, Read.Frame, `chunk ${chunkBytes}, size ${size}: whole`);
        }
      });
      assert.equal(reader.inFrame, false);
      assert.equal(reader.type, type);
      assert.equal(reader.id, n + 1);
      const got = reader.take();
      assert.deepEqual(new Uint8Array(got), payload);
      assert.equal(reader.take().byteLength, 0, 'take hands the payload over once');
    }
  }
});

test('a record read from inside a larger buffer; the payload is a private copy', () => {
  const slot = new Uint8Array(256);
  writeRecord(slot, 100, 1, 0, 20, fill(20, 3), 0, 20);
  const reader = new RecordReader(1000);
  assert.equal(reader.read(slot, 100, RECORD_HEADER_BYTES + 20), Read.Frame);
  const payload = reader.take();
  slot.fill(0);
  assert.deepEqual(new Uint8Array(payload), fill(20, 3));
});

test('end record; progress moves only while a split frame is fed', () => {
  const reader = new RecordReader(1000);
  assert.equal(reader.read(record(RecordKind.End, 0, 0, 0), 0, RECORD_HEADER_BYTES), Read.End);
  const [first, second, third] = encode(1, 0, fill(30, 4), 10);
  assert.equal(reader.progress, 0);
  reader.read(first, 0, first.byteLength);
  reader.read(second, 0, second.byteLength);
  assert.equal(reader.progress, 2);
  // An end record in the middle of a frame leaves the frame in progress (the link reports it).
  assert.equal(reader.read(record(RecordKind.End, 0, 0, 0), 0, RECORD_HEADER_BYTES), Read.End);
  assert.equal(reader.inFrame, true);
  assert.equal(reader.read(third, 0, third.byteLength), Read.Frame);
  assert.equal(reader.progress, 3);
});

test('malformed records are Read.Bad with the reason, before anything is kept', () => {
  const cases = [
    ['shorter than its header', [Buffer.from([1, 0, 0])], /shorter than its header/],
    ['unknown kind', [record(99, 0, 0, 0)], /unknown kind 99/],
    ['kind 0', [record(0, 0, 0, 0)], /unknown kind 0/],
    ['continuation without a frame', [record(RecordKind.Continuation, 0, 10, 10)], /without a frame in progress/],
    ['new frame inside a frame', [record(1, 0, 200, 50), record(1, 0, 10, 10)], /before the previous one was complete/],
    ['over maxMessageSize', [record(1, 0, 1001, 10)], /1001-byte frame, over maxMessageSize \(1000\)/],
    ['2^32 - 1 bytes announced', [record(1, 0, 2 ** 32 - 1, 0)], /over maxMessageSize/],
    ['record longer than its frame', [record(1, 0, 5, 10)], /longer than its frame/],
    ['continuation past its frame', [record(1, 0, 60, 50), record(RecordKind.Continuation, 0, 60, 20)], /does not fit its frame/],
    ['continuation of another length', [record(1, 0, 60, 50), record(RecordKind.Continuation, 0, 61, 10)], /does not fit its frame/],
    ['empty continuation', [record(1, 0, 60, 50), record(RecordKind.Continuation, 0, 60, 0)], /does not fit its frame/],
  ];
  expectBad(cases);
  const reader = new RecordReader(1000);
  assert.equal(reader.fail('torn'), Read.Bad);
  assert.equal(reader.error, 'torn');
});

test('record fuzz: random and mutated records give only Partial, Frame, End or Bad', () => {
  let seed = 777;
  const rand = (n) => {
    seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff;
    return (seed >>> 8) % n;
  };
  const valid = [...encode(1, 0, fill(50, 1), 16), ...encode(2, 9, fill(5, 2), 16), record(RecordKind.End, 0, 0, 0)];
  const runs = process.env.INTERPROCESS_STRESS ? 100_000 : 5000;
  const outcomes = [0, 0, 0, 0];
  for (let run = 0; run < runs; run++) {
    const reader = new RecordReader(256);
    // The valid stream in order, with now and then a record replaced by noise or mutated.
    for (let k = 0; k < valid.length; k++) {
      let r = Uint8Array.from(valid[k]);
      const damage = rand(16);
      if (damage === 0) {
        r = new Uint8Array(rand(40));
        for (let i = 0; i < r.length; i++) r[i] = rand(4) === 0 ? rand(256) : rand(20);
      } else if (damage <= 2) {
        for (let f = 0, flips = 1 + rand(3); f < flips && r.length > 0; f++) r[rand(r.length)] = rand(256);
      }
      const read = reader.read(r, 0, r.length);
      assert.ok(read === Read.Partial || read === Read.Frame || read === Read.End || read === Read.Bad, `outcome ${read}`);
      outcomes[read]++;
      if (read === Read.Frame) assert.ok(reader.take().byteLength <= 256);
      if (read === Read.Bad) break; // the connection would be over
    }
  }
  console.log(`# record fuzz: ${runs} runs, partial ${outcomes[0]}, frames ${outcomes[1]}, ends ${outcomes[2]}, bad ${outcomes[3]}`);
  assert.ok(outcomes[Read.Frame] > 0 && outcomes[Read.Bad] > 0);
});

/** A pack record carrying `frames` ([type, id, payload]), as the link seals it. */
function packRecord(frames, capacity = 8192) {
  const packer = new Packer(capacity);
  for (const [type, id, p] of frames) {
    assert.equal(packer.fits(p.byteLength), true);
    packer.add(type, id, p);
  }
  const body = packer.view();
  const r = new Uint8Array(RECORD_HEADER_BYTES + body.byteLength);
  writeRecord(r, 0, RecordKind.Pack, 0, body.byteLength, body, 0, body.byteLength);
  return r;
}

test('packs: several whole frames in one record, delivered in order by read() then next(), as views of one private copy', () => {
  const frames = [[1, 0, fill(64, 1)], [2, 7, fill(0, 0)], [3, 0xfffffffe, fill(300, 2)], [4, 9, fill(1, 3)], [1, 0, fill(5, 4)]];
  const r = packRecord(frames);
  const reader = new RecordReader(1000);
  const got = [];
  let read = reader.read(r, 0, r.byteLength);
  r.fill(0); // the slot is reused at once: the frames were copied out
  while (read === Read.Frame) {
    got.push([reader.type, reader.id, new Uint8Array(reader.take())]);
    read = reader.pending ? reader.next() : Read.Partial;
  }
  assert.deepEqual(got, frames.map(([t, id, p]) => [t, id, p]));
  assert.equal(reader.pending, false);
  assert.equal(reader.inFrame, false);
  // A frame split over records may follow a pack, and a pack a split frame.
  const split = encode(1, 0, fill(50, 5), 20);
  for (const s of split.slice(0, -1)) assert.equal(reader.read(s, 0, s.byteLength), Read.Partial);
  assert.equal(reader.read(split.at(-1), 0, split.at(-1).byteLength), Read.Frame);
  assert.deepEqual(new Uint8Array(reader.take()), fill(50, 5));
  assert.equal(reader.read(r, 0, r.byteLength), Read.Bad, 'the zeroed record is no pack any more');
});

test('Packer: entries are a 16-byte header and the payload padded to 8 bytes; take() hands the body over', () => {
  const packer = new Packer(56);
  assert.equal(packer.fits(40), true);
  assert.equal(packer.fits(41), false, '16 + 48 > 56');
  packer.add(1, 0, fill(10, 1));
  assert.equal(packer.used, 32, '16 + 10, padded to 8');
  assert.equal(packer.count, 1);
  assert.equal(packer.fits(8), true);
  assert.equal(packer.fits(9), false);
  const body = packer.take();
  assert.equal(body.byteLength, 32);
  assert.deepEqual(body.subarray(16, 26), fill(10, 1));
  assert.deepEqual(body.subarray(26, 32), new Uint8Array(6), 'zero padding');
  assert.equal(packer.count, 0);
  packer.add(2, 3, fill(4, 9));
  assert.equal(body[0], 1, 'a body taken is not written again');
  // Every payload of a pack starts 8-byte aligned in the receiver's copy.
  const frames = [[1, 0, fill(3, 1)], [1, 0, fill(17, 2)], [2, 5, fill(0, 0)], [3, 6, fill(8, 3)]];
  const r = packRecord(frames);
  const reader = new RecordReader(100);
  let read = reader.read(r, 0, r.byteLength);
  for (const [, , p] of frames) {
    assert.equal(read, Read.Frame);
    const got = reader.take();
    assert.deepEqual(new Uint8Array(got), p);
    assert.equal(got.byteOffset % 8, 0, 'aligned payload');
    read = reader.pending ? reader.next() : Read.Partial;
  }
});

test('malformed packs are Read.Bad before any of their frames is delivered', () => {
  const entry = (type, id, length, bytes = (length + 7) & ~7) => {
    const e = Buffer.alloc(RECORD_HEADER_BYTES + bytes);
    e[0] = type;
    e.writeUInt32LE(id, 4);
    e.writeUInt32LE(length, 8);
    return e;
  };
  const pack = (body, total = body.byteLength) => {
    const r = Buffer.alloc(RECORD_HEADER_BYTES + body.byteLength);
    r[0] = RecordKind.Pack;
    r.writeUInt32LE(total, 8);
    r.set(body, RECORD_HEADER_BYTES);
    return r;
  };
  const good = entry(1, 0, 10);
  const cases = [
    ['empty pack', [pack(Buffer.alloc(0))], /length is not its body/],
    ['length other than its body', [pack(good, 21)], /length is not its body/],
    ['a trailing partial header', [pack(Buffer.concat([good, Buffer.alloc(5)]))], /shorter than its header/],
    ['an entry of kind End', [pack(Buffer.concat([good, entry(RecordKind.End, 0, 0)]))], /pack entry of unknown kind 16/],
    ['an entry that is a pack', [pack(entry(RecordKind.Pack, 0, 0))], /pack entry of unknown kind 18/],
    ['an entry over maxMessageSize', [pack(Buffer.concat([good, entry(1, 0, 1001, 0)]))], /1001-byte frame, over maxMessageSize/],
    ['an entry longer than the pack', [pack(Buffer.concat([good, entry(2, 1, 30, 29)]))], /longer than its pack/],
    ['padding past the pack', [pack(Buffer.concat([good, entry(2, 1, 30, 30)]))], /longer than its pack/],
    ['a length near 2^32', [pack(Buffer.concat([good, entry(2, 1, 2 ** 32 - 3, 0)]))], /over maxMessageSize|longer than its pack/],
    ['a pack inside a split frame', [record(1, 0, 200, 50), pack(good)], /before the previous one was complete/],
  ];
  expectBad(cases);
});

test('pack fuzz: random and mutated packs give whole frames within the limit, or Bad', () => {
  let seed = 4242;
  const rand = (n) => {
    seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff;
    return (seed >>> 8) % n;
  };
  const runs = process.env.INTERPROCESS_STRESS ? 100_000 : 5000;
  let frames = 0;
  let bad = 0;
  for (let run = 0; run < runs; run++) {
    const entries = Array.from({ length: 1 + rand(6) }, (_, k) => [1 + rand(4), rand(3), fill(rand(40), k)]);
    const r = packRecord(entries, 512);
    for (let f = 0, flips = rand(4); f < flips; f++) r[rand(r.length)] = rand(256);
    const reader = new RecordReader(64);
    let read = reader.read(r, 0, rand(8) === 0 ? rand(r.length + 1) : r.length);
    let n = 0;
    while (read === Read.Frame) {
      assert.ok(reader.take().byteLength <= 64);
      assert.ok(reader.type >= 1 && reader.type <= 4);
      n++;
      read = reader.pending ? reader.next() : Read.Partial;
    }
    assert.ok(read === Read.Partial || read === Read.Bad || read === Read.End, `outcome ${read}`);
    if (read === Read.Bad) bad++;
    frames += n;
  }
  console.log(`# pack fuzz: ${runs} runs, ${frames} frames, ${bad} bad`);
  assert.ok(frames > 0 && bad > 0);
});

test('pack copies share slabs without ever overwriting a frame handed out; a pack over 64 KiB is malformed', () => {
  const reader = new RecordReader(1 << 20);
  const kept = [];
  for (let n = 0; n < 40; n++) {
    // Packs of every size up to 6 KiB: many per 64 KiB slab, and slabs running out mid-way.
    const frames = Array.from({ length: 1 + (n % 6) }, (_, k) => [1, 0, fill((n * 131 + k * 17) % 1000, n + k)]);
    const r = packRecord(frames);
    let read = reader.read(r, 0, r.byteLength);
    for (const [, , p] of frames) {
      assert.equal(read, Read.Frame);
      kept.push([reader.take(), p]);
      read = reader.pending ? reader.next() : Read.Partial;
    }
  }
  // The largest pack there is, then one byte more (a peer with huge slots must not make the
  // receiver allocate more than that for a pack, whatever its maxMessageSize).
  const whole = packRecord([[2, 1, fill(65536 - 32, 1)], [3, 2, fill(0, 2)]], 1 << 20);
  let read = reader.read(whole, 0, whole.byteLength);
  assert.equal(read, Read.Frame);
  kept.push([reader.take(), fill(65536 - 32, 1)]);
  assert.equal(reader.next(), Read.Frame);
  assert.equal(reader.take().byteLength, 0);
  for (const [got, want] of kept) assert.deepEqual(new Uint8Array(got), want);
  assert.ok(kept.every(([got]) => got.byteOffset % 8 === 0), 'every payload 8-byte aligned');
  const over = packRecord([[2, 1, fill(65536 - 32 + 8, 1)], [3, 2, fill(0, 2)]], 1 << 20);
  assert.equal(reader.read(over, 0, over.byteLength), Read.Bad);
  assert.match(reader.error, /65544-byte pack, over 65536/);
});

test('split frames are gathered whole into memory of their own, exactly their length, even as pooled blocks are reused', () => {
  const chunk = 8192;
  const reader = new RecordReader(1 << 22);
  const frame = (size, seed) => {
    const records = encode(1, 0, fill(size, seed), chunk);
    let read;
    for (const r of records) read = reader.read(r, 0, r.byteLength);
    assert.equal(read, Read.Frame);
    return reader.take();
  };
  const kept = [];
  for (let round = 0; round < 3; round++) {
    for (const [size, seed] of [[20_000, 1], [60_000, 2], [100_000, 3], [300_000, 4], [1 << 20, 5]]) {
      const got = frame(size, seed + round * 8);
      assert.equal(got.byteLength, size);
      assert.deepEqual(new Uint8Array(got), fill(size, seed + round * 8));
      kept.push([got, size, seed + round * 8]);
    }
  }
  // Each frame is private: writing one changes no other.
  kept[0][0].fill(0);
  for (const [got, size, seed] of kept.slice(1)) assert.deepEqual(new Uint8Array(got), fill(size, seed));
  assert.equal(new Set(kept.map(([got]) => got.buffer)).size, kept.length, 'one buffer per frame');
});
