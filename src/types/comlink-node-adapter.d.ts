// comlink ships this adapter without a .d.mts; type only what tokend uses.
declare module 'comlink/dist/esm/node-adapter.mjs' {
  import type { Endpoint } from 'comlink';
  import type { MessagePort } from 'node:worker_threads';
  export default function nodeEndpoint(nep: MessagePort): Endpoint;
}
