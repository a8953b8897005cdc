/** Where tokend may send secrets: shared by the configuration check (exit 2 at start) and the owner's every request. */

const isLoopbackHost = (host: string): boolean => host === 'localhost' || host === '[::1]' || /^127(?:\.\d{1,3}){3}$/.test(host);

/**
 * Why tokend will not send secrets to `url`, or null when it may: https, or
 * plain http to this machine only (a client secret in clear on a network is
 * a client secret given away, and a discovery document read in clear can
 * point the token request anywhere).
 */
export function insecureEndpoint(url: string): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'is not a URL';
  }
  if (u.protocol === 'https:') return null;
  if (u.protocol === 'http:')
    return isLoopbackHost(u.hostname) ? null : 'is plain http to a host that is not this machine (secrets would cross the network in clear; use https)';
  return 'is not an http(s) URL';
}
