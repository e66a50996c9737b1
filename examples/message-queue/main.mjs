// A POSIX message queue between two processes: the child sends alerts with priorities, the
// parent receives them most urgent first (FIFO within a priority).
import { fork } from 'node:child_process';
import { MessageQueue } from 'interprocess';

const name = process.argv[2] ?? `example-mq-${process.pid}`;

if (process.argv[3] === 'child') {
  const mq = MessageQueue.open(name, { codec: 'json' });
  await mq.send({ text: 'disk 80% full' }, { priority: 1 });
  await mq.send({ text: 'backup finished' }, { priority: 0 });
  await mq.send({ text: 'disk 99% full' }, { priority: 5 });
  mq.close();
} else {
  const mq = MessageQueue.create(name, { maxMessages: 10, maxMessageSize: 1024, codec: 'json' });
  try {
    await new Promise((resolve) => fork(new URL(import.meta.url).pathname, [name, 'child']).on('exit', resolve));
    for (let i = 0; i < 3; i++) {
      const { message, priority } = await mq.receiveWithPriority({ timeout: 5000 });
      console.log(`priority ${priority}: ${message.text}`);
    }
  } finally {
    mq.close();
    MessageQueue.remove(name);
  }
}
