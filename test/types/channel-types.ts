// Compile-time checks for channels: the codec decides the message type of listen, connect,
// childChannel and channelFromStreams (as for Queue), and request / handle may name which of
// the channel's types a reply or a request is. Lines after `@ts-expect-error` must not compile.
import { fork, spawn } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { listen, connect, childChannel, channelFromStreams, type Channel, type ChannelServer } from 'interprocess';

interface Job {
  id: number;
}
interface Question {
  q: string;
}
interface Answer {
  a: number;
}

export async function channels(): Promise<void> {
  // No codec: bytes in and out, requests and replies included.
  const raw = await connect('unix:///tmp/x.sock');
  await raw.send(new Uint8Array(4));
  const bytes: Uint8Array = await raw.receive();
  const reply: Uint8Array = await raw.request(Buffer.from('ping'));
  const asBuffer: Buffer = await raw.request<Buffer>(new Uint8Array(1));
  // @ts-expect-error a bytes channel does not take objects
  await raw.send({ id: 1 });
  // @ts-expect-error the codec decides: a bytes channel's reply is bytes, not a string
  await raw.request<string>(new Uint8Array(1));
  // @ts-expect-error naming a message type without a codec that can carry it does not compile
  await connect<Job>('unix:///tmp/x.sock');
  const explicitBytes: Channel<Uint8Array> = await connect('tcp://127.0.0.1:7000', { codec: 'bytes', timeout: 10 });

  // A serializing codec: the type the caller names.
  const jobs = await connect<Job>('shm://jobs', { codec: 'json' });
  await jobs.send({ id: 1 });
  const job: Job = await jobs.receive();
  // @ts-expect-error a Job channel sends Jobs
  await jobs.send('text');

  // Requests and replies of different types: the channel carries both, each call names its own.
  const rpc = await connect<Question | Answer>('unix:///tmp/rpc.sock', { codec: 'msgpack' });
  const answer: Answer = await rpc.request<Answer>({ q: 'six times seven' });
  // @ts-expect-error a reply is one of the channel's types
  await rpc.request<Job>({ q: 'x' });
  // @ts-expect-error what is sent is one of the channel's types
  await rpc.request<Answer>({ id: 1 });
  // Without a name the values are unknown: any reply type may be named.
  const loose = await connect('fifo:///tmp/f', { codec: 'structured' });
  const named: Answer = await loose.request<Answer>({ q: 'anything' });
  // @ts-expect-error unknown must be narrowed before use
  (await loose.receive()).a;

  // The server side: the codec decides the type of every accepted channel.
  const server: ChannelServer<Question | Answer> = await listen<Question | Answer>('unix:///tmp/rpc.sock', { codec: 'json', mode: 0o600 });
  for await (const ch of server) {
    ch.handle<Question>((question) => ({ a: question.q.length }));
    // @ts-expect-error a handler takes one of the channel's types
    ch.handle<Job>((j) => j.id);
  }
  const rawServer = await listen('shm://raw', { queueCapacity: 64 });
  const first: Channel<Uint8Array> = await rawServer.accept({ timeout: 1000 });
  // @ts-expect-error naming a type without a serializing codec does not compile
  await listen<Job>('unix:///tmp/y.sock', { mode: 0o600 });

  // A user codec: its type.
  const upper = await connect('unix:///tmp/u.sock', {
    codec: { name: 'upper', encode: (s: string) => new TextEncoder().encode(s), decode: (b: Uint8Array) => new TextDecoder().decode(b) },
  });
  const text: string = await upper.receive();

  // Pipes to a child.
  const child = fork('worker.js', { stdio: ['inherit', 'inherit', 'inherit', 'ipc', 'pipe'] });
  const toChild: Channel<Uint8Array> = childChannel(child);
  const jobsToChild = childChannel<Job>(spawn('node', ['w.js'], { stdio: ['inherit', 'inherit', 'inherit', 'pipe'] }), { codec: 'json', fd: 3 });
  jobsToChild.trySend({ id: 2 });
  // @ts-expect-error a Job channel sends Jobs
  jobsToChild.trySend(new Uint8Array(1));
  const streams = channelFromStreams<Answer>(new PassThrough(), new PassThrough(), { codec: 'json' });
  const streamed: Answer | undefined = streams.tryReceive();
  const batch: Promise<Answer[]> = streams.receiveMany(64, { timeout: 100 });
  // @ts-expect-error an Answer channel's batches are Answers
  const wrongBatch: Uint8Array[] = streams.tryReceiveMany(8);
  // @ts-expect-error bytes by default
  channelFromStreams(new PassThrough(), new PassThrough()).trySend('text');

  void [bytes, reply, asBuffer, explicitBytes, job, answer, named, first, text, toChild, streamed, batch, wrongBatch];
}
