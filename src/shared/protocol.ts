/**
 * Comlink, in one place: the owner exposes `OwnerApi` on a dedicated
 * MessageChannel port (never `parentPort`, whose 'message' channel piscina
 * uses), and the main thread wraps the other end.
 */
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import type { MessagePort } from 'node:worker_threads';
import type { OwnerApi } from './contract.js';

export type OwnerRemote = Comlink.Remote<OwnerApi>;

export function exposeOwner(api: OwnerApi, port: MessagePort): void {
  Comlink.expose(api, nodeEndpoint(port));
}

export function wrapOwner(port: MessagePort): OwnerRemote {
  return Comlink.wrap<OwnerApi>(nodeEndpoint(port));
}

export function releaseOwner(remote: OwnerRemote): void {
  remote[Comlink.releaseProxy]();
}
