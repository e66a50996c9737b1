// A parent and the child it forks talk over a channel on an extra pipe: no address, no file,
// nothing to clean up. fork() takes fd 3 for Node's own IPC channel, so the pipe is the next
// stdio entry, fd 4: childChannel(child) picks the child's first 'pipe' after stdio, and the
// child connects to pipe://fd/4 (the entry's index in the stdio array).
import { fork } from 'node:child_process';
import { childChannel, connect } from 'interprocess';

if (process.argv[3] === 'child') {
  const ch = await connect('pipe://fd/4', { codec: 'json' });
  ch.handle(({ word }) => ({ word, letters: word.length }));   // answers the parent's requests
  await ch.send({ text: `child ${process.pid} ready` });
  for await (const msg of ch) console.log(`child got: ${msg.text}`); // ends when the parent closes
  await ch.close();
} else {
  const child = fork(new URL(import.meta.url).pathname, [process.argv[2] ?? 'child-channel', 'child'], {
    stdio: ['inherit', 'inherit', 'inherit', 'ipc', 'pipe'], // fd 3: Node's IPC channel; fd 4: ours
  });
  const ch = childChannel(child, { codec: 'json' });              // the first 'pipe' after stdio: fd 4
  const hello = await ch.receive({ timeout: 10_000 });
  console.log(`parent got: ${hello.text.replace(/\d+/, 'N')}`);
  const answers = await Promise.all(['pipe', 'channel'].map((word) => ch.request({ word }, { timeout: 10_000 })));
  console.log(answers.map((a) => `${a.word}: ${a.letters} letters`).join(', '));
  await ch.send({ text: 'bye' });
  await ch.close();                                                 // the child's loop ends
  const code = await new Promise((resolve) => child.once('exit', resolve));
  console.log(`child exited with code ${code}`);
}
