// Compile-time checks for SharedMap: the codec option decides the value type, as for Queue.
import { SharedMap } from 'interprocess';

interface Session {
  user: string;
}

// No codec: bytes in and out.
const raw = SharedMap.create('t-types-map-raw', { capacity: 8 });
raw.set('k', new Uint8Array(4));
const got: Uint8Array | undefined = raw.get('k');
// @ts-expect-error a bytes map does not take objects
raw.set('k', { user: 'a' });
// @ts-expect-error naming a value type without a codec that can carry it does not compile
SharedMap.create<Session>('t-types-map-s', { capacity: 8 });

// A serializing codec: the type the caller names.
const sessions = SharedMap.create<Session>('t-types-map-json', { capacity: 8, codec: 'json', eviction: 'lru', ttl: 1000 });
sessions.set('sid', { user: 'alice' }, { ttl: 50 });
const session: Session | undefined = sessions.get('sid');
// @ts-expect-error a Session map takes Sessions
sessions.set('sid', 'text');
const updated: Session | undefined = sessions.update('sid', (old) => (old === undefined ? undefined : { user: old.user.toUpperCase() }));
for (const [key, value] of sessions) void [key.length, value.user];
const keys: string[] = [...sessions.keys()];
const counted: number = sessions.increment('hits', 2);
// @ts-expect-error eviction is 'lru' or 'none'
SharedMap.create('t-types-map-e', { capacity: 8, eviction: 'fifo' });
// @ts-expect-error capacity is required to create
SharedMap.create('t-types-map-c', { codec: 'json' });

// Without a name the values are unknown.
const loose = SharedMap.openOrCreate('t-types-map-any', { capacity: 8, codec: 'msgpack' });
loose.set('k', { anything: true });
// @ts-expect-error unknown must be narrowed before use
loose.get('k').anything;

// A user codec: its type.
const text = SharedMap.open('t-types-map-codec', {
  codec: { name: 'text', encode: (s: string) => new TextEncoder().encode(s), decode: (b: Uint8Array) => new TextDecoder().decode(b) },
});
const value: string | undefined = text.get('k');

void [got, session, updated, keys, counted, value];
