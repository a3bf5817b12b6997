/**
 * A serial console as lines: bytes from an IPMI SOL session in, the last N complete lines out,
 * each with a sequence number so a reader can ask for what is new. Terminal control sequences
 * (colours, cursor moves — firmware setup screens are full of them) and other control characters
 * are dropped; an endless line is cut at MAX_LINE. Pure: no I/O, no clock.
 */
export const KEEP_LINES = 200;
const MAX_LINE = 512;

export interface ConsoleLine {
  readonly seq: number;
  readonly text: string;
}

// CSI (ESC [ … final), OSC (ESC ] … BEL/ST), two-byte escapes, then lone control characters.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const ESCAPES = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/g;

export class ConsoleLines {
  private lines: ConsoleLine[] = [];
  private partial = '';
  private seq = 0;

  constructor(private readonly keep = KEEP_LINES) {}

  /** Adds output; returns the lines it completed. */
  feed(chunk: string): ConsoleLine[] {
    const text = (this.partial + chunk).replace(ESCAPES, '');
    const parts = text.split(/\r?\n|\r(?!$)/);
    this.partial = parts.pop() ?? '';
    const added: ConsoleLine[] = [];
    for (const p of parts) this.push(p, added);
    while (this.partial.length > MAX_LINE) {
      this.push(this.partial.slice(0, MAX_LINE), added);
      this.partial = this.partial.slice(MAX_LINE);
    }
    return added;
  }

  private push(raw: string, added: ConsoleLine[]): void {
    const text = raw.replace(/\r/g, '').trimEnd();
    if (text === '') return;
    const line = { seq: ++this.seq, text };
    this.lines.push(line);
    added.push(line);
    if (this.lines.length > this.keep) this.lines.splice(0, this.lines.length - this.keep);
  }

  /** Lines after `seq` (all kept lines for 0), oldest first. */
  after(seq = 0): ConsoleLine[] {
    return this.lines.filter((l) => l.seq > seq);
  }

  /** The kept lines as text, plus the line being written. */
  tail(): string[] {
    const out = this.lines.map((l) => l.text);
    const p = this.partial.replace(/\r/g, '').trimEnd();
    return p ? [...out, p].slice(-this.keep) : out;
  }
}
