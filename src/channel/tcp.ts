/**
 * tcp://host:port: a TCP connection (Nagle disabled). Port 0 asks the OS for a free port;
 * the server's `address` then carries the real one. IPv6 hosts are bracketed: tcp://[::1]:7000.
 */
import * as net from 'node:net';
import { connectSocket, NetListener, whenListening } from './socket.js';
import type { Transport } from './transport.js';

function endpoint(url: URL, address: string, forListen: boolean): { host: string; port: number } {
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  if (host === '') throw new TypeError(`'${address}': a tcp address is tcp://host:port`);
  if (url.pathname !== '' && url.pathname !== '/') throw new TypeError(`'${address}': a tcp address has no path`);
  if (url.port === '') throw new TypeError(`'${address}': a tcp address needs a port${forListen ? ' (0 picks a free one)' : ''}`);
  const port = Number(url.port);
  if (!forListen && port === 0) throw new TypeError(`'${address}': cannot connect to port 0`);
  return { host, port };
}

function format(host: string, port: number): string {
  return `tcp://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

export const tcpTransport: Transport = {
  scheme: 'tcp',
  listenKeys: [],

  async listen(url, address, { options }) {
    const { host, port } = endpoint(url, address, true);
    const server = net.createServer({ allowHalfOpen: false, noDelay: true });
    const listening = whenListening(server, `tcp ${address}`);
    server.listen({ host, port, exclusive: true });
    await listening;
    const bound = server.address() as net.AddressInfo;
    const real = format(host, bound.port);
    return new NetListener(server, real, options, (socket) => `tcp ${real} <- ${socket.remoteAddress}:${socket.remotePort}`);
  },

  connect(url, address, context) {
    const { host, port } = endpoint(url, address, false);
    return connectSocket({ host, port, noDelay: true }, `tcp ${format(host, port)}`, context);
  },
};
