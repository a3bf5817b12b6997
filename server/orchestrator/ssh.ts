import { StringDecoder } from 'node:string_decoder';
import ssh2 from 'ssh2';
import type { SshHostKey } from '../inventory/model.js';

/**
 * The narrow interface the orchestrator runs commands through, and its ssh2 implementation.
 * racksmith never trusts a host key on first use: the only keys it accepts are the ones the
 * machine phoned home after its first boot. A node that presents any other key is refused
 * during the key exchange, before authentication, so nothing is ever sent to it.
 */
export interface SshTarget {
  readonly host: string;
  readonly port: number;
  readonly username: string;
  readonly privateKey: string;
  /** The machine's phoned-home host keys (OpenSSH public key lines, or type + base64 blob). */
  readonly hostKeys: readonly SshHostKey[];
  readonly connectTimeoutMs: number;
}

export interface ExecOptions {
  readonly stdin?: string | undefined;
  readonly timeoutMs: number;
  /** Output as it arrives (already decoded as UTF-8). */
  readonly onData?: ((text: string, stream: 'stdout' | 'stderr') => void) | undefined;
  readonly signal?: AbortSignal | undefined;
}

export interface ExecResult {
  readonly code: number | null;
  readonly signal: string | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
}

export interface RemoteSession {
  exec(command: string, opts: ExecOptions): Promise<ExecResult>;
  close(): void;
}

export interface RemoteShell {
  connect(target: SshTarget, signal?: AbortSignal): Promise<RemoteSession>;
}

export type SshErrorKind = 'no-host-key' | 'host-key' | 'auth' | 'transport' | 'timeout' | 'aborted';

/** `transient` faults (refused, reset, timed out) are worth another try; the others are not. */
export class SshError extends Error {
  readonly code: string;
  readonly kind: SshErrorKind;
  readonly transient: boolean;
  constructor(kind: SshErrorKind, message: string) {
    super(message);
    this.name = 'SshError';
    this.kind = kind;
    this.code = `ERR_SSH_${kind.toUpperCase().replace(/-/g, '_')}`;
    this.transient = kind === 'transport' || kind === 'timeout';
  }
}

/** Output kept per command; kubeadm prints a few KiB, admin.conf is ~6 KiB. */
const MAX_CAPTURE = 1024 * 1024;

export interface PinnedKey {
  readonly type: string;
  readonly blob: Buffer;
}

/** The key type written inside an SSH public key blob (RFC 4253 §6.6: string "type", then data). */
export function blobType(blob: Buffer): string | null {
  if (blob.length < 4) return null;
  const n = blob.readUInt32BE(0);
  if (n < 1 || n > 64 || 4 + n > blob.length) return null;
  const t = blob.subarray(4, 4 + n).toString('latin1');
  return /^[a-z0-9@.-]+$/.test(t) ? t : null;
}

/**
 * Phoned-home keys arrive as OpenSSH lines (`ssh-ed25519 AAAA… root@host`) or as a type and a
 * bare base64 blob; whichever word decodes to a blob naming a key type is the key.
 */
export function pinnedKeys(keys: readonly SshHostKey[]): PinnedKey[] {
  const out: PinnedKey[] = [];
  for (const k of keys) {
    for (const word of `${k.key}`.trim().split(/\s+/)) {
      if (!/^[A-Za-z0-9+/]{20,}={0,2}$/.test(word)) continue;
      const blob = Buffer.from(word, 'base64');
      const type = blobType(blob);
      if (type && /^(ssh-|ecdsa-sha2-)/.test(type)) {
        out.push({ type, blob });
        break;
      }
    }
  }
  return out;
}

/** Host key algorithms to offer so the server shows a key we have pinned (ed25519 first). */
export function hostKeyAlgorithms(pinned: readonly PinnedKey[]): string[] {
  const types = new Set(pinned.map((p) => p.type));
  const out: string[] = [];
  if (types.has('ssh-ed25519')) out.push('ssh-ed25519');
  for (const t of ['ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521']) if (types.has(t)) out.push(t);
  if (types.has('ssh-rsa')) out.push('rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa');
  return out;
}

const TRANSIENT_ERRNO = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'ECONNABORTED', 'EAI_AGAIN']);

function classify(err: Error & { code?: string; level?: string }, hostKeyRefused: boolean, host: string): SshError {
  if (hostKeyRefused) return new SshError('host-key', `${host} presented an SSH host key that differs from its phone-home; refused before logging in`);
  if (err.level === 'client-timeout') return new SshError('timeout', `${host}: SSH handshake timed out`);
  if (err.level === 'client-authentication') return new SshError('auth', `${host}: SSH login refused (is racksmith's public key installed for this user?)`);
  if (err.code && TRANSIENT_ERRNO.has(err.code)) return new SshError('transport', `${host}: ${err.code} (${err.message})`);
  if (/no matching host key format/i.test(err.message)) return new SshError('host-key', `${host} offers no host key of the phoned-home types; refused`);
  if (err.level === 'client-socket' || /connection lost|socket|closed/i.test(err.message)) return new SshError('transport', `${host}: ${err.message}`);
  return new SshError('transport', `${host}: ${err.message}`);
}

export function createSshShell(): RemoteShell {
  return {
    connect(target, signal) {
      const pinned = pinnedKeys(target.hostKeys);
      if (pinned.length === 0) {
        return Promise.reject(new SshError('no-host-key', `${target.host} has no phoned-home SSH host key; racksmith never trusts an unknown key`));
      }
      if (signal?.aborted) return Promise.reject(new SshError('aborted', 'aborted'));
      const client = new ssh2.Client();
      let hostKeyRefused = false;
      return new Promise<RemoteSession>((resolve, reject) => {
        let settled = false;
        const onAbort = (): void => {
          client.end();
          if (!settled) {
            settled = true;
            reject(new SshError('aborted', 'aborted'));
          }
        };
        signal?.addEventListener('abort', onAbort, { once: true });
        client.once('ready', () => {
          settled = true;
          signal?.removeEventListener('abort', onAbort);
          resolve(session(client));
        });
        client.on('error', (err: Error & { level?: string }) => {
          if (settled) return;
          settled = true;
          signal?.removeEventListener('abort', onAbort);
          client.end();
          reject(classify(err, hostKeyRefused, target.host));
        });
        client.once('close', () => {
          if (settled) return;
          settled = true;
          signal?.removeEventListener('abort', onAbort);
          reject(hostKeyRefused ? classify(new Error('closed'), true, target.host) : new SshError('transport', `${target.host}: connection closed during the handshake`));
        });
        client.connect({
          host: target.host,
          port: target.port,
          username: target.username,
          privateKey: target.privateKey,
          readyTimeout: target.connectTimeoutMs,
          keepaliveInterval: 15_000,
          keepaliveCountMax: 4,
          algorithms: { serverHostKey: hostKeyAlgorithms(pinned) as never },
          hostVerifier: (key: Buffer) => {
            const ok = pinned.some((p) => p.blob.equals(key));
            if (!ok) hostKeyRefused = true;
            return ok;
          },
        });
      });
    },
  };
}

function session(client: ssh2.Client): RemoteSession {
  let closed = false;
  client.on('close', () => (closed = true));
  return {
    exec(command, opts) {
      return new Promise<ExecResult>((resolve, reject) => {
        if (closed) {
          reject(new SshError('transport', 'the SSH connection is closed'));
          return;
        }
        // The channel may never open (a node that stopped answering): that too is bounded.
        let opened = false;
        const openTimer = setTimeout(() => {
          if (opened) return;
          opened = true;
          client.end();
          reject(new SshError('timeout', `no exec channel after ${opts.timeoutMs} ms`));
        }, opts.timeoutMs);
        client.exec(command, (err, stream) => {
          if (opened) {
            stream?.close();
            return;
          }
          opened = true;
          clearTimeout(openTimer);
          if (err) {
            reject(new SshError('transport', `cannot open an exec channel: ${err.message}`));
            return;
          }
          let stdout = '';
          let stderr = '';
          let code: number | null = null;
          let sig: string | null = null;
          let done = false;
          const decoders = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };
          const take = (which: 'stdout' | 'stderr', buf: Buffer): void => {
            if (done) return;
            const text = decoders[which].write(buf);
            if (which === 'stdout' && stdout.length < MAX_CAPTURE) stdout += text;
            if (which === 'stderr' && stderr.length < MAX_CAPTURE) stderr += text;
            if (text) opts.onData?.(text, which);
          };
          const finish = (outcome: { timedOut: boolean } | SshError): void => {
            if (done) return;
            done = true;
            clearTimeout(timer);
            opts.signal?.removeEventListener('abort', onAbort);
            if (outcome instanceof SshError) reject(outcome);
            else resolve({ code, signal: sig, stdout, stderr, timedOut: outcome.timedOut });
          };
          // sshd keeps a channel open until its command exits, so a timeout does not wait for the
          // close: it answers at once and asks the command to die (the remote side also runs it
          // under coreutils timeout, which kills it for sure).
          const stopRemote = (): void => {
            try {
              stream.signal('KILL');
              stream.close();
            } catch {
              /* the channel is already gone */
            }
          };
          const timer = setTimeout(() => {
            stopRemote();
            finish({ timedOut: true });
          }, opts.timeoutMs);
          const onAbort = (): void => {
            stopRemote();
            finish(new SshError('aborted', 'aborted'));
          };
          opts.signal?.addEventListener('abort', onAbort, { once: true });
          stream.on('data', (d: Buffer) => take('stdout', d));
          stream.stderr.on('data', (d: Buffer) => take('stderr', d));
          stream.on('exit', (c: number | null, s?: string) => {
            code = typeof c === 'number' ? c : null;
            sig = s ?? null;
          });
          stream.on('close', () => {
            if (code === null && sig === null) finish(new SshError('transport', 'the SSH connection dropped while the command ran'));
            else finish({ timedOut: false });
          });
          stream.end(opts.stdin ?? '');
        });
      });
    },
    close() {
      client.end();
    },
  };
}
