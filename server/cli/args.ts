import { parseArgs, type ParseArgsConfig } from 'node:util';

/** A command-line mistake: printed with the command's usage, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export type Options = NonNullable<ParseArgsConfig['options']>;

export function parse(args: readonly string[], options: Options, positionals = 0): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  try {
    const out = parseArgs({ args: [...args], options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: positionals > 0, strict: true });
    if (out.positionals.length > positionals) throw new UsageError(`unexpected argument "${out.positionals[positionals]}"`);
    return { values: out.values as Record<string, string | boolean | undefined>, positionals: out.positionals };
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError((err as Error).message.replace(/\. To specify a positional.*$/, ''));
  }
}
