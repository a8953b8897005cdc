import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { nodeForOtherUsers } from '../fixtures/daemon.ts';
import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { endianness } from 'node:os';
import { after, describe, it } from 'node:test';
import { canIdentifyPeers, peerUid, tableAddress, uidIn } from '../../src/shared/proc-net.ts';

const le = endianness() === 'LE';

describe('socket table notation', () => {
  it('writes addresses as the kernel does: host-order 32-bit words, %04X port', { skip: !le && 'big-endian host' }, () => {
    assert.equal(tableAddress('127.0.0.1', 8080, 'IPv4'), '0100007F:1F90');
    assert.equal(tableAddress('::1', 443, 'IPv6'), '00000000000000000000000001000000:01BB');
    assert.equal(tableAddress('::ffff:127.0.0.1', 1, 'IPv6'), '0000000000000000FFFF00000100007F:0001');
    // An IPv4 peer of a dual-stack listener is listed in the IPv4 table, and the reverse.
    assert.equal(tableAddress('::ffff:127.0.0.1', 1, 'IPv4'), '0100007F:0001');
    assert.equal(tableAddress('127.0.0.1', 1, 'IPv6'), '0000000000000000FFFF00000100007F:0001');
    assert.equal(tableAddress('fe80::1%lo', 1, 'IPv6'), '000080FE000000000000000001000000:0001');
    assert.equal(tableAddress('::1', 1, 'IPv4'), null);
    assert.equal(tableAddress('not an address', 1, 'IPv6'), null);
  });

  const line = (local: string, remote: string, state: string, uid: number, inode: number): string =>
    `   3: ${local} ${remote} ${state} 00000000:00000000 00:00000000 00000000 ${String(uid).padStart(5)}        0 ${inode} 1 0000000000000000 20 4 30 10 -1`;
  const header = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode';

  it('finds the uid of the client end, not of our own end', () => {
    const table = [header, line('0100007F:1F90', '0100007F:D000', '01', 0, 111), line('0100007F:D000', '0100007F:1F90', '01', 1000, 222)].join('\n');
    assert.equal(uidIn(table, '0100007F:D000', '0100007F:1F90'), 1000);
  });

  it('does not trust a socket no process holds (inode 0) or one in TIME_WAIT (listed as root)', () => {
    assert.equal(uidIn([header, line('0100007F:D000', '0100007F:1F90', '05', 0, 0)].join('\n'), '0100007F:D000', '0100007F:1F90'), null);
    assert.equal(uidIn([header, line('0100007F:D000', '0100007F:1F90', '06', 0, 0)].join('\n'), '0100007F:D000', '0100007F:1F90'), null);
    assert.equal(uidIn(header, '0100007F:D000', '0100007F:1F90'), null);
  });

  it('an unreadable table identifies no one', () => {
    const fake = { remoteAddress: '127.0.0.1', remotePort: 1, localAddress: '127.0.0.1', localPort: 2 } as Socket;
    const unreadable = (): string => {
      throw Object.assign(new Error('EMFILE'), { code: 'EMFILE' });
    };
    assert.equal(peerUid(fake, unreadable), null);
    assert.equal(canIdentifyPeers(unreadable), false);
  });
});

describe('the peer of a real loopback connection', { skip: !canIdentifyPeers() && 'no /proc/net/tcp' }, () => {
  const servers: Server[] = [];
  after(() => servers.forEach((s) => s.close()));

  /** Listens on `host`, runs a client as `uid` (or as us), resolves with what peerUid says of it. */
  async function peerOf(host: string, connectTo: string, uid?: number): Promise<number | null> {
    const server = createServer();
    servers.push(server);
    server.listen(0, host);
    await once(server, 'listening');
    const port = (server.address() as { port: number }).port;
    const client = spawn(nodeForOtherUsers(), ['-e', `const s=require('net').connect(${port},'${connectTo}');s.on('data',()=>s.destroy())`], {
      stdio: 'ignore',
      ...(uid === undefined ? {} : { uid, gid: uid }),
    });
    const [socket] = (await once(server, 'connection')) as [Socket];
    const found = peerUid(socket);
    socket.end('bye');
    await once(client, 'exit');
    return found;
  }

  const me = process.geteuid!();
  it('IPv4: our own user, and another user (uid 65534)', async () => {
    assert.equal(await peerOf('127.0.0.1', '127.0.0.1'), me);
    if (me === 0) assert.equal(await peerOf('127.0.0.1', '127.0.0.1', 65534), 65534);
  });

  it('IPv6 loopback, and an IPv4 client of a dual-stack listener (::ffff:127.0.0.1)', async () => {
    assert.equal(await peerOf('::1', '::1'), me);
    assert.equal(await peerOf('::', '127.0.0.1'), me);
    if (me === 0) assert.equal(await peerOf('::', '127.0.0.1', 65534), 65534);
  });
});
