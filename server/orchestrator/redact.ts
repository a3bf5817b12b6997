/**
 * Output from nodes goes into machine events and logs only through a redactor. The exact
 * secrets racksmith knows (bootstrap token, certificate key, CA key) are replaced wherever they
 * appear; patterns catch the same kinds of secret it did not make (a token `kubeadm token
 * create` printed, a key in a kubeconfig, a PEM private key).
 */
export type Redactor = (text: string) => string;

export const REDACTED = '[redacted]';

const PATTERNS: readonly RegExp[] = [
  // Bootstrap tokens: kubeadm's format, [a-z0-9]{6}.[a-z0-9]{16}.
  /\b[a-z0-9]{6}\.[a-z0-9]{16}\b/g,
  // "--certificate-key <hex>" and the line after "[upload-certs] Using certificate key:".
  /(--certificate-key[ =])[0-9a-f]{64}/g,
  /(Using certificate key:\s*\n?\s*)[0-9a-f]{64}/g,
  /(certificateKey:\s*"?)[0-9a-f]{64}/g,
  // kubeconfig credentials.
  /((?:client-key-data|token|password):\s*)\S+/g,
  /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)/g,
];

export function createRedactor(secrets: readonly (string | null | undefined)[]): Redactor {
  const exact = new Set<string>();
  for (const s of secrets) {
    if (!s) continue;
    exact.add(s);
    // A PEM key can surface a line at a time (a partial read, a `cat` of one line).
    for (const line of s.split('\n')) if (line.length >= 16 && !line.startsWith('-----')) exact.add(line.trim());
    // The secret half of a bootstrap token is the secret; its id is public.
    const token = /^[a-z0-9]{6}\.([a-z0-9]{16})$/.exec(s);
    if (token?.[1]) exact.add(token[1]);
  }
  const longestFirst = [...exact].sort((a, b) => b.length - a.length);
  return (text) => {
    let out = text;
    for (const s of longestFirst) if (out.includes(s)) out = out.split(s).join(REDACTED);
    for (const re of PATTERNS) {
      out = out.replace(re, (_m, keep?: string) => (typeof keep === 'string' && !keep.startsWith('-----') ? keep + REDACTED : REDACTED));
    }
    return out;
  };
}
