import { readFileSync } from 'node:fs';
import { UsageError } from './args.js';

/**
 * Where the CLI takes a secret (the API token, a BMC password) from. A flag's value is on the
 * command line, which every user of the machine sees in `ps` and which lands in shell history,
 * so the flag keeps working but the better ways come first in the docs: a file (`--token-file`,
 * `--bmc-password-file`; its first line, mode 0600 is the owner's business), the environment
 * (`RACKSMITH_TOKEN`, `RACKSMITH_BMC_PASSWORD`), or a prompt with echo off when the CLI runs on
 * a terminal. Order: flag, file, environment, prompt.
 */
export interface SecretSpec {
  /** What it is, for the prompt and errors: "API token", "BMC password". */
  readonly what: string;
  /** `--token` / `--bmc-password`. */
  readonly flag: string;
  readonly flagValue: string | undefined;
  /** `--token-file` / `--bmc-password-file`. */
  readonly fileFlag: string;
  readonly fileValue: string | undefined;
  readonly envName: string;
}

export interface SecretIo {
  readonly env: NodeJS.ProcessEnv;
  /** Asks with echo off; null when there is no terminal to ask on. */
  readonly prompt: (question: string) => Promise<string> | null;
  readonly readFile?: (path: string) => string;
}

export async function readSecret(spec: SecretSpec, io: SecretIo): Promise<string | undefined> {
  if (spec.flagValue !== undefined && spec.fileValue !== undefined) throw new UsageError(`give --${spec.flag} or --${spec.fileFlag}, not both`);
  if (spec.flagValue !== undefined) return spec.flagValue;
  if (spec.fileValue !== undefined) return secretFromFile(spec, io.readFile ?? ((p) => readFileSync(p, 'utf8')));
  const env = io.env[spec.envName];
  if (env !== undefined && env !== '') return env;
  const asked = io.prompt(`${spec.what}: `);
  if (asked === null) return undefined;
  const value = await asked;
  return value === '' ? undefined : value;
}

/** The file's first line without its line ending: what `echo TOKEN > file` and password managers write. */
function secretFromFile(spec: SecretSpec, read: (path: string) => string): string {
  const path = spec.fileValue as string;
  let text: string;
  try {
    text = read(path);
  } catch (err) {
    throw new UsageError(`--${spec.fileFlag} ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  const line = text.split(/\r?\n/, 1)[0] ?? '';
  if (line === '') throw new UsageError(`--${spec.fileFlag} ${path}: the first line is empty; it should hold the ${spec.what}`);
  return line;
}

/**
 * A line read from the terminal with echo off (raw mode), on stderr so that stdout stays the
 * command's output. Null when stdin is not a terminal: a script gets a clear error instead of a
 * hang. Ctrl-C cancels, backspace edits.
 */
export function terminalPrompt(input: NodeJS.ReadStream = process.stdin, output: NodeJS.WriteStream = process.stderr): (question: string) => Promise<string> | null {
  return (question) => {
    if (!input.isTTY || typeof input.setRawMode !== 'function') return null;
    return new Promise((resolve, reject) => {
      let value = '';
      // Echo off before the question shows: whatever is typed once it is up is never echoed.
      input.setRawMode(true);
      output.write(question);
      input.setEncoding('utf8');
      input.resume();
      const finish = (err: Error | null): void => {
        input.off('data', onData);
        input.setRawMode(false);
        input.pause();
        output.write('\n');
        if (err) reject(err);
        else resolve(value);
      };
      const onData = (chunk: string): void => {
        for (const ch of chunk) {
          if (ch === '\r' || ch === '\n' || ch === '\u0004') return finish(null);
          if (ch === '\u0003') return finish(new UsageError('cancelled'));
          if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
          else if (ch >= ' ') value += ch;
        }
      };
      input.on('data', onData);
    });
  };
}
