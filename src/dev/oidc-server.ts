/**
 * A local OpenID Connect provider (oidc-provider) on loopback, for
 * `tokend dev` and for tests: one confidential demo client, short-lived access
 * tokens, refresh tokens that rotate on every use.
 *
 * oidc-provider 9 is used although it warns "Unsupported runtime" on Node 20:
 * 8.x requires PKCE for every client and is itself unsupported, and 9 runs
 * here (measured). Refresh tokens are issued only for `offline_access` with
 * `prompt=consent`, so tokend asks for both.
 *
 * With `autoApprove`, interactions (login and consent) complete at once for
 * the demo account, so a login needs no person. Without it, oidc-provider's
 * own development login and consent pages are served (what a browser test
 * drives). With `storeFile`, grants and tokens survive a restart.
 *
 * The device authorization grant (RFC 8628) is enabled: discovery names
 * `device_authorization_endpoint` (`/device/auth`), the user enters the code
 * at `/device`. oidc-provider sends no `interval` (clients use 5 s) and never
 * answers `slow_down`.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Socket } from 'node:net';
import Provider, { type Adapter, type AdapterPayload } from 'oidc-provider';
import { writePrivateFileSync } from '../shared/fs-safety.js';

/** RFC 8628's grant type: the demo client may log in from a device without a browser (`tokend login --device`). */
const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

export interface DevClient {
  readonly clientId: string;
  readonly clientSecret: string;
  readonly redirectUris: readonly string[];
}

export interface DevProviderOptions {
  readonly host?: string;
  readonly port?: number;
  readonly client: DevClient;
  readonly accessTokenTtlSec: number;
  readonly autoApprove: boolean;
  /** JSON file keeping grants, tokens and keys across restarts. */
  readonly storeFile?: string;
}

export interface DevProvider {
  readonly issuer: string;
  readonly provider: Provider;
  close(): Promise<void>;
}

interface Stored {
  payload: AdapterPayload;
  expiresAt: number | null;
}

/** A Map of every model, optionally mirrored to a JSON file (atomically and privately, on each change). */
class Store {
  readonly data = new Map<string, Stored>();
  keys: { jwk: object; cookie: string } | null = null;
  constructor(readonly file: string | null) {
    if (file && existsSync(file)) {
      const raw = JSON.parse(readFileSync(file, 'utf8')) as { entries: Array<[string, Stored]>; keys: Store['keys'] };
      for (const [k, v] of raw.entries) this.data.set(k, v);
      this.keys = raw.keys;
    }
  }
  save(): void {
    if (!this.file) return;
    const now = Date.now();
    const entries = [...this.data].filter(([, v]) => v.expiresAt === null || v.expiresAt > now);
    writePrivateFileSync(this.file, JSON.stringify({ entries, keys: this.keys }));
  }
}

function adapterFor(store: Store): new (name: string) => Adapter {
  return class implements Adapter {
    constructor(readonly name: string) {}
    #key(id: string): string {
      return `${this.name}:${id}`;
    }
    #get(key: string): AdapterPayload | undefined {
      const v = store.data.get(key);
      if (!v) return undefined;
      if (v.expiresAt !== null && v.expiresAt <= Date.now()) {
        store.data.delete(key);
        return undefined;
      }
      return v.payload;
    }
    async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
      store.data.set(this.#key(id), { payload, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : null });
      if (payload.grantId) {
        const gk = `grant:${payload.grantId}`;
        const list = (store.data.get(gk)?.payload['keys'] as string[] | undefined) ?? [];
        store.data.set(gk, { payload: { keys: [...list, this.#key(id)] }, expiresAt: null });
      }
      if (payload.uid) store.data.set(`${this.name}:uid:${payload.uid}`, { payload: { id }, expiresAt: null });
      if (payload.userCode) store.data.set(`${this.name}:userCode:${payload.userCode}`, { payload: { id }, expiresAt: null });
      store.save();
    }
    async find(id: string): Promise<AdapterPayload | undefined> {
      return this.#get(this.#key(id));
    }
    async findByUid(uid: string): Promise<AdapterPayload | undefined> {
      const ref = store.data.get(`${this.name}:uid:${uid}`)?.payload['id'] as string | undefined;
      return ref ? this.find(ref) : undefined;
    }
    async findByUserCode(code: string): Promise<AdapterPayload | undefined> {
      const ref = store.data.get(`${this.name}:userCode:${code}`)?.payload['id'] as string | undefined;
      return ref ? this.find(ref) : undefined;
    }
    async consume(id: string): Promise<void> {
      const v = store.data.get(this.#key(id));
      if (v) v.payload = { ...v.payload, consumed: Math.floor(Date.now() / 1000) };
      store.save();
    }
    async destroy(id: string): Promise<void> {
      store.data.delete(this.#key(id));
      store.save();
    }
    async revokeByGrantId(grantId: string): Promise<void> {
      const gk = `grant:${grantId}`;
      for (const key of (store.data.get(gk)?.payload['keys'] as string[] | undefined) ?? []) store.data.delete(key);
      store.data.delete(gk);
      store.save();
    }
  };
}

export async function startDevProvider(opts: DevProviderOptions): Promise<DevProvider> {
  const host = opts.host ?? '127.0.0.1';
  const sockets = new Set<Socket>();
  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => {
    res.statusCode = 503;
    res.end();
  };
  const server: Server = createServer((req, res) => handler(req, res));
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => resolve());
  });
  const issuer = `http://${host}:${(server.address() as AddressInfo).port}`;

  const store = new Store(opts.storeFile ?? null);
  if (!store.keys) {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    store.keys = {
      jwk: { ...privateKey.export({ format: 'jwk' }), kid: randomBytes(6).toString('hex'), alg: 'ES256', use: 'sig' },
      cookie: randomBytes(32).toString('hex'),
    };
    store.save();
  }

  const provider = new Provider(issuer, {
    adapter: adapterFor(store),
    clients: [
      {
        client_id: opts.client.clientId,
        client_secret: opts.client.clientSecret,
        redirect_uris: [...opts.client.redirectUris],
        grant_types: ['authorization_code', 'refresh_token', DEVICE_CODE_GRANT],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
        id_token_signed_response_alg: 'ES256',
      },
    ],
    jwks: { keys: [store.keys.jwk] },
    cookies: { keys: [store.keys.cookie] },
    findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
    features: { devInteractions: { enabled: !opts.autoApprove }, introspection: { enabled: true }, deviceFlow: { enabled: true } },
    ttl: {
      AccessToken: opts.accessTokenTtlSec,
      RefreshToken: 30 * 24 * 3600,
      Grant: 30 * 24 * 3600,
      Session: 24 * 3600,
      Interaction: 600,
      AuthorizationCode: 60,
      DeviceCode: 600,
      IdToken: 3600,
    },
    // Every use of a refresh token rotates it: what Monzo does, and what makes a lost rotation visible.
    rotateRefreshToken: true,
    clockTolerance: 0,
    pkce: { required: () => false },
  });
  provider.on('server_error', () => undefined);

  const callback = provider.callback();
  handler = (req, res) => {
    if (opts.autoApprove && req.url?.startsWith('/interaction/')) {
      void approve(provider, req, res).catch((err: Error) => {
        res.statusCode = 500;
        res.end(err.message);
      });
      return;
    }
    void callback(req, res);
  };

  return {
    issuer,
    provider,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Log the demo account in and grant every scope asked for, with no page shown. */
async function approve(provider: Provider, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const details = await provider.interactionDetails(req, res);
  const clientId = String(details.params['client_id']);
  const grant = details.grantId ? await provider.Grant.find(details.grantId) : new provider.Grant({ accountId: 'demo', clientId });
  if (!grant) throw new Error('grant not found');
  const scope = details.params['scope'];
  grant.addOIDCScope(typeof scope === 'string' ? scope : 'openid');
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { login: { accountId: 'demo' }, consent: { grantId } }, { mergeWithLastSubmission: false });
}
