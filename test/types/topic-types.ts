// Compile-time checks for Topic (see codec-types.ts): the codec option decides the message type
// of the topic and of its subscribers.
import { Topic, Subscriber } from 'interprocess';

interface Price {
  symbol: string;
  bid: number;
}

// No codec: bytes in and out.
const raw = Topic.create('t-types-topic-raw', { capacity: 8 });
raw.tryPublish(new Uint8Array(4));
const rawSub: Subscriber<Uint8Array> = raw.subscribe();
const bytes: Uint8Array | undefined = rawSub.tryReceive();
// @ts-expect-error a bytes topic does not take objects
raw.tryPublish({ symbol: 'X', bid: 1 });
// @ts-expect-error naming a message type without a codec that can carry it does not compile
Topic.create<Price>('t-types-topic-price', { capacity: 8 });

// A serializing codec: the type the caller names, for publishers and subscribers alike.
const prices = Topic.openOrCreate<Price>('t-types-topic-json', { codec: 'json', overflow: 'overwrite' });
void prices.publish({ symbol: 'X', bid: 1 });
const priceSub = prices.subscribe({ from: 'oldest' });
const price: Price = priceSub.receiveSync();
const priceBatch: Price[] = priceSub.receiveManySync(16);
const rawBatch: Promise<Uint8Array[]> = rawSub.receiveMany(16, { timeout: 10 });
// @ts-expect-error a Price subscriber's batches are Prices
const wrongBatch: Uint8Array[] = priceSub.tryReceiveMany(4);
// @ts-expect-error a Price topic takes Prices
prices.publishSync('text');
// @ts-expect-error from is 'next' or 'oldest'
prices.subscribe({ from: 'start' });
const feed: boolean = Topic.create('t-types-topic-feed', { exclusivePublisher: true }).exclusivePublisher;
// @ts-expect-error exclusivePublisher is a boolean
Topic.create('t-types-topic-bad', { exclusivePublisher: 'yes' });
// @ts-expect-error overflow is 'block' or 'overwrite'
Topic.create('t-types-topic-bad', { overflow: 'drop' });

// A user codec: its type.
const words = Topic.open('t-types-topic-codec', {
  codec: { name: 'text', encode: (s: string) => new TextEncoder().encode(s), decode: (b: Uint8Array) => new TextDecoder().decode(b) },
});
const word: Promise<string> = words.subscribe().receive();
async function iterate(): Promise<void> {
  for await (const p of priceSub) void p.bid;
}

void [bytes, price, word, iterate, priceBatch, rawBatch, wrongBatch];
