/**
 * Server-Sent Events (WHATWG HTML, "Server-sent events", §9.2): the wire format written by the
 * event stream and read by `racksmith watch` and the tests. Pure: strings in, strings or events
 * out.
 *
 *   id: 42              ← the client sends it back as Last-Event-ID when it reconnects
 *   event: hello        ← absent means "message"
 *   data: {"…": …}      ← one data line per line of payload, joined with "\n" by the reader
 *   <empty line>        ← dispatches the event
 *   : keep-alive        ← a comment, ignored by readers, keeps proxies from timing out
 */

export interface SseMessage {
  readonly id?: string | number | undefined;
  readonly event?: string | undefined;
  readonly data: string;
  /** Reconnection delay the client should use, in milliseconds. */
  readonly retry?: number | undefined;
}

export class SseError extends Error {
  readonly code: 'ERR_SSE_FIELD' | 'ERR_SSE_LINE_TOO_LONG';
  constructor(code: SseError['code'], message: string) {
    super(message);
    this.name = 'SseError';
    this.code = code;
  }
}

const NO_BREAKS = /^[^\r\n]*$/;

export function formatSse(m: SseMessage): string {
  let out = '';
  if (m.retry !== undefined) out += `retry: ${Math.max(0, Math.floor(m.retry))}\n`;
  if (m.id !== undefined) {
    const id = String(m.id);
    // §9.2.6: an id containing NUL is ignored by readers; a line break would end the field early.
    if (!NO_BREAKS.test(id) || id.includes('\0')) throw new SseError('ERR_SSE_FIELD', `event id ${JSON.stringify(id)} contains a line break or NUL`);
    out += `id: ${id}\n`;
  }
  if (m.event !== undefined) {
    if (!NO_BREAKS.test(m.event)) throw new SseError('ERR_SSE_FIELD', `event name ${JSON.stringify(m.event)} contains a line break`);
    out += `event: ${m.event}\n`;
  }
  for (const line of m.data.split(/\r\n|\r|\n/)) out += `data: ${line}\n`;
  return out + '\n';
}

export function formatSseComment(text: string): string {
  return text
    .split(/\r\n|\r|\n/)
    .map((l) => `: ${l}\n`)
    .join('') + '\n';
}

export interface SseEvent {
  /** The last event id seen on this stream so far (it persists across events, §9.2.6). */
  readonly id: string;
  readonly event: string;
  readonly data: string;
}

export interface SseParser {
  /** Feeds decoded text; calls `onEvent` for each complete event. */
  push(chunk: string): void;
  /** The last `retry:` value seen, if any. */
  retry(): number | undefined;
}

/** Reads an event stream incrementally. A line longer than `maxLine` characters throws ERR_SSE_LINE_TOO_LONG. */
export function createSseParser(onEvent: (e: SseEvent) => void, maxLine = 1 << 20): SseParser {
  let buffer = '';
  let lastId = '';
  let eventName = '';
  let data: string[] = [];
  let retry: number | undefined;
  let first = true;

  function line(l: string): void {
    if (l === '') {
      if (data.length > 0) onEvent({ id: lastId, event: eventName || 'message', data: data.join('\n') });
      data = [];
      eventName = '';
      return;
    }
    if (l.startsWith(':')) return;
    const colon = l.indexOf(':');
    const field = colon < 0 ? l : l.slice(0, colon);
    let value = colon < 0 ? '' : l.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'event':
        eventName = value;
        break;
      case 'data':
        data.push(value);
        break;
      case 'id':
        if (!value.includes('\0')) lastId = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) retry = Number(value);
        break;
      default:
      // §9.2.6: unknown fields are ignored.
    }
  }

  return {
    push(chunk) {
      buffer += chunk;
      if (first && buffer.length > 0) {
        // §9.2.5: one leading U+FEFF is skipped.
        if (buffer.charCodeAt(0) === 0xfeff) buffer = buffer.slice(1);
        first = false;
      }
      let start = 0;
      for (let i = 0; i < buffer.length; i++) {
        const c = buffer.charCodeAt(i);
        if (c !== 10 && c !== 13) continue;
        // A CR at the very end may be the first half of CRLF: wait for the next chunk.
        if (c === 13 && i === buffer.length - 1) break;
        line(buffer.slice(start, i));
        if (c === 13 && buffer.charCodeAt(i + 1) === 10) i++;
        start = i + 1;
      }
      buffer = buffer.slice(start);
      if (buffer.length > maxLine) throw new SseError('ERR_SSE_LINE_TOO_LONG', `an event stream line is longer than ${maxLine} characters`);
    },
    retry: () => retry,
  };
}
