import nunjucks from 'nunjucks';
import { stringify } from 'yaml';

/**
 * Templates are data (boot-templates/, autoinstall/), rendered strictly: a missing variable is an
 * error, never an empty string; nothing is HTML-escaped; values inserted into YAML, shell or a
 * kernel command line go through the filter made for that context. A failed render is an error
 * for the caller to answer (HTTP 500 and a log line) — never half a file.
 */
export class RenderError extends Error {
  readonly code = 'ERR_RENDER';
  readonly template: string;
  constructor(template: string, cause: unknown) {
    super(`cannot render ${template}: ${cause instanceof Error ? cause.message.replace(/\s+/g, ' ') : String(cause)}`);
    this.name = 'RenderError';
    this.template = template;
  }
}

/** A YAML scalar that parses back to exactly this value (quoted when needed, never multi-line). */
export function yamlScalar(value: unknown): string {
  if (value === null || value === undefined) throw new Error('yaml filter: no value');
  const text = stringify(value, { lineWidth: 0, defaultStringType: 'QUOTE_DOUBLE', defaultKeyType: 'PLAIN' }).trimEnd();
  if (typeof value !== 'object' && text.includes('\n')) throw new Error('yaml filter: value does not fit on one line');
  return text;
}

/** A single-quoted POSIX shell word. */
export function shellQuote(value: unknown): string {
  const s = String(value);
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The value as one line: a line break or NUL would end the line it is put on and start another. */
function oneLine(value: unknown, refusal: string): string {
  const s = String(value);
  if (/[\r\n\0]/.test(s)) throw new Error(refusal);
  return s;
}

/** A kernel command line / iPXE argument: refused if it could break the line or inject a command. */
export function cmdlineSafe(value: unknown): string {
  return oneLine(value, 'cmdline filter: a newline or NUL cannot go on a command line');
}

/**
 * A word safe inside an iPXE script: iPXE expands `${…}` and splits on spaces, and a newline would
 * start a new command, so only a conservative character set passes.
 */
export function ipxeSafe(value: unknown): string {
  const s = String(value);
  if (!/^[A-Za-z0-9._:/?&=%+,@~_-]*$/.test(s)) throw new Error(`ipxe filter: "${s.slice(0, 40)}" has characters that are unsafe in an iPXE script`);
  return s;
}

/**
 * One argument of an iPXE command (a kernel command-line word). iPXE splits a line on white space
 * only, with no quoting; a word that is exactly `||`, `&&` or `;` ends the command, a word that
 * starts with `#` starts a comment and `${…}` expands a setting (src/core/exec.c) — so a word may
 * contain `;` (as in `ds=nocloud-net;s=…`) but none of those forms.
 */
export function ipxeArg(value: unknown): string {
  const s = String(value);
  if (!/^[A-Za-z0-9._:/?&=%+,@~;_-]+$/.test(s) || s.startsWith('#') || ['||', '&&', ';'].includes(s)) {
    throw new Error(`ipxearg filter: "${s.slice(0, 40)}" is not a safe iPXE command word`);
  }
  return s;
}

/** Words for `echo`: spaces allowed, but nothing iPXE would expand, split into commands, or end. */
export function ipxeText(value: unknown): string {
  const s = String(value);
  if (!/^[A-Za-z0-9 ._:/?=%+,@~()_-]*$/.test(s)) throw new Error(`ipxetext filter: "${s.slice(0, 40)}" has characters that are unsafe in an iPXE script`);
  return s;
}

/**
 * One word of a GRUB script, single-quoted: inside single quotes GRUB expands nothing and `;`,
 * `|`, `&` and spaces are plain text (GRUB manual, "Quoting"); a single quote cannot be escaped
 * there, and a line break would end the command, so both are refused (as is anything outside a
 * conservative set).
 */
export function grubArg(value: unknown): string {
  const s = String(value);
  if (!/^[A-Za-z0-9 ._:/?&=%+,@~;()_-]*$/.test(s)) throw new Error(`grubarg filter: "${s.slice(0, 40)}" is not a safe GRUB word`);
  return `'${s}'`;
}

/** A debconf preseed value: the rest of one line, so no line break may reach it. */
export function preseedValue(value: unknown): string {
  return oneLine(value, 'preseed filter: a preseed value is one line');
}

/** A word in an haproxy configuration line (server name, address). */
export function haproxyWord(value: unknown): string {
  const s = String(value);
  if (!/^[A-Za-z0-9._:-]+$/.test(s)) throw new Error(`haproxyword filter: "${s.slice(0, 40)}" is not a plain name or address`);
  return s;
}

export interface Renderer {
  render(template: string, context: Record<string, unknown>): string;
}

/** One strict environment per template folder; templates come from the repository only. */
export function createRenderer(dir: string, opts: { cache?: boolean } = {}): Renderer {
  const env = new nunjucks.Environment(new nunjucks.FileSystemLoader(dir, { noCache: opts.cache === false }), {
    autoescape: false,
    throwOnUndefined: true,
    trimBlocks: true,
    lstripBlocks: true,
  });
  env.addFilter('yaml', yamlScalar);
  env.addFilter('shellquote', shellQuote);
  env.addFilter('cmdline', cmdlineSafe);
  env.addFilter('ipxe', ipxeSafe);
  env.addFilter('ipxearg', ipxeArg);
  env.addFilter('preseed', preseedValue);
  env.addFilter('haproxyword', haproxyWord);
  env.addFilter('ipxetext', ipxeText);
  env.addFilter('grubarg', grubArg);
  env.addFilter('json', (v: unknown) => JSON.stringify(v));
  env.addFilter('indent_block', (v: unknown, n: number) =>
    String(v)
      .split('\n')
      .map((line, i) => (i === 0 || line === '' ? line : ' '.repeat(n) + line))
      .join('\n'),
  );
  return {
    render(template, context) {
      try {
        return env.render(template, context);
      } catch (err) {
        throw new RenderError(template, err);
      }
    },
  };
}
