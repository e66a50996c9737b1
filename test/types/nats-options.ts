// Compile-time checks of the nats:// options of listen and connect (see codec-types.ts).
import { connect, listen, type NatsTlsOptions } from 'interprocess';

export async function natsOptions(): Promise<void> {
  await connect('nats://127.0.0.1:4222/orders', { token: 's3cret', tls: { caFile: '/etc/ssl/ca.pem' }, heartbeatInterval: 500, timeout: 1000 });
  await listen('nats://127.0.0.1:4222/orders', { user: 'svc', pass: 'pw', tls: true });
  const files: NatsTlsOptions = { caFile: 'ca.pem', certFile: 'client.pem', keyFile: 'client.key' };
  await connect('nats://127.0.0.1:4222/orders', { tls: files });
  // @ts-expect-error tls is true or the PEM files
  await connect('nats://127.0.0.1:4222/orders', { tls: 'yes' });
  // @ts-expect-error the files are caFile, certFile and keyFile
  await connect('nats://127.0.0.1:4222/orders', { tls: { ca: '/x' } });
  // @ts-expect-error heartbeatInterval is a number of ms
  await listen('nats://127.0.0.1:4222/orders', { heartbeatInterval: '1s' });
}
