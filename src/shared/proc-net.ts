/**
 * The user at the other end of a loopback TCP connection, from the kernel's
 * socket tables (`/proc/net/tcp`, `/proc/net/tcp6`).
 *
 * Both ends of a loopback connection are sockets of this host, so the
 * client's own socket is listed too: its local address is our remote one and
 * its remote address our local one, and the table names the user who
 * created it. A client socket no process holds any more (inode 0, as after
 * a connect, send and close) or one in TIME_WAIT (listed as root's) proves
 * nothing: it identifies no one.
 */
import { readFileSync } from 'node:fs';
import { endianness } from 'node:os';
import type { Socket } from 'node:net';

export const TCP_TABLES = { IPv4: '/proc/net/tcp', IPv6: '/proc/net/tcp6' } as const;

/** Reads a socket table; throws when it cannot. */
export type ReadTable = (path: string) => string;

const readTable: ReadTable = (path) => readFileSync(path, 'latin1');

/** Whether this system lists its sockets where `peerUid` looks (Linux does). */
export function canIdentifyPeers(read: ReadTable = readTable): boolean {
  try {
    read(TCP_TABLES.IPv4);
    return true;
  } catch {
    return false;
  }
}

/**
 * The uid owning the client end of `socket`, or null when it cannot be told
 * (unknown address, no such line, an orphaned or closing socket, an unreadable table).
 */
export function peerUid(socket: Socket, read: ReadTable = readTable): number | null {
  const { remoteAddress, remotePort, localAddress, localPort } = socket;
  if (remoteAddress === undefined || remotePort === undefined || localAddress === undefined || localPort === undefined) return null;
  // An IPv4 client may reach an IPv6 (dual-stack) listener and an IPv6 socket may use a
  // mapped IPv4 address: the client's line is in whichever table its own socket's family picks.
  for (const family of ['IPv4', 'IPv6'] as const) {
    const client = tableAddress(remoteAddress, remotePort, family);
    const server = tableAddress(localAddress, localPort, family);
    if (client === null || server === null) continue;
    let table: string;
    try {
      table = read(TCP_TABLES[family]);
    } catch {
      continue;
    }
    const uid = uidIn(table, client, server);
    if (uid !== null) return uid;
  }
  return null;
}

/** ESTABLISHED and the states a client reaches by closing its side first. */
const LIVE_STATES = new Set(['01', '04', '05', '08', '09', '0B']);

/** The uid on the line for the socket at `local` talking to `remote`, both in the table's notation. */
export function uidIn(table: string, local: string, remote: string): number | null {
  const needle = ` ${local} ${remote} `;
  for (let at = table.indexOf(needle); at !== -1; at = table.indexOf(needle, at + 1)) {
    const end = table.indexOf('\n', at);
    // sl local remote st tx:rx tr:when retrnsmt uid timeout inode
    const fields = table
      .slice(table.lastIndexOf('\n', at) + 1, end === -1 ? undefined : end)
      .trim()
      .split(/\s+/);
    const [state, uid, inode] = [fields[3], fields[7], fields[9]];
    if (state === undefined || !LIVE_STATES.has(state) || inode === undefined || inode === '0' || !/^\d+$/.test(uid ?? '')) continue;
    return Number(uid);
  }
  return null;
}

/**
 * ADDRESS:PORT as the kernel prints them: the address as 32-bit words in the
 * host's byte order, each `%08X`; the port `%04X`.
 */
export function tableAddress(address: string, port: number, family: 'IPv4' | 'IPv6'): string | null {
  const bytes = family === 'IPv4' ? ipv4Bytes(unmapped(address)) : ipv6Bytes(address.includes(':') ? address : `::ffff:${address}`);
  if (bytes === null) return null;
  const words: string[] = [];
  for (let i = 0; i < bytes.length; i += 4) {
    const word = endianness() === 'LE' ? bytes.readUInt32LE(i) : bytes.readUInt32BE(i);
    words.push(word.toString(16).toUpperCase().padStart(8, '0'));
  }
  return `${words.join('')}:${port.toString(16).toUpperCase().padStart(4, '0')}`;
}

/** `::ffff:127.0.0.1` → `127.0.0.1`; anything else as it is. */
const unmapped = (address: string): string => (/^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(address) ? address.slice(7) : address);

function ipv4Bytes(address: string): Buffer | null {
  const parts = address.split('.');
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) return null;
  return Buffer.from(parts.map(Number));
}

/** 16 bytes of an IPv6 address, `::` and a dotted IPv4 tail (`::ffff:127.0.0.1`) included. */
function ipv6Bytes(address: string): Buffer | null {
  let text = address.split('%')[0] ?? '';
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.', lastColon)) {
    const v4 = ipv4Bytes(text.slice(lastColon + 1));
    if (v4 === null) return null;
    text = `${text.slice(0, lastColon + 1)}${v4.readUInt16BE(0).toString(16)}:${v4.readUInt16BE(2).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const groups = (s: string): string[] => (s === '' ? [] : s.split(':'));
  const head = groups(halves[0] ?? '');
  const tail = halves.length === 2 ? groups(halves[1] ?? '') : [];
  const missing = 8 - head.length - tail.length;
  if (missing < 0 || (halves.length === 1 && missing !== 0)) return null;
  const all = [...head, ...Array<string>(missing).fill('0'), ...tail];
  if (!all.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return null;
  const bytes = Buffer.alloc(16);
  all.forEach((g, i) => bytes.writeUInt16BE(parseInt(g, 16), i * 2));
  return bytes;
}
