/**
 * An incremental parser of `text/event-stream` (WHATWG HTML, "server-sent events"): feed it byte chunks as they
 * arrive, take the complete events out. Comments (`: keep-alive`) are skipped; `data:` lines of one event are joined
 * with `\n`. A line longer than `maxLineBytes` is an error rather than unbounded memory.
 */
import { HubError } from '@fieldhub/protocol';

/** One dispatched event. */
export interface SseEvent {
  /** `event:`; `message` when absent. */
  readonly event: string;
  /** The `data:` lines joined with `\n`. */
  readonly data: string;
  /** `id:`, when the event carried one. */
  readonly id: string | undefined;
}

/** Options of {@link SseParser}. */
export interface SseParserOptions {
  /** The longest line (one event's JSON, in practice) accepted. Default 8 MiB. */
  readonly maxLineBytes?: number;
}

/** Parses a server-sent event stream incrementally. */
export class SseParser {
  private readonly decoder = new TextDecoder('utf-8');
  private readonly maxLine: number;
  private buffer = '';
  private data: string[] = [];
  private event = '';
  private id: string | undefined;
  private skipLeadingNewline = false;
  private first = true;

  constructor(options: SseParserOptions = {}) {
    this.maxLine = options.maxLineBytes ?? 8 * 1024 * 1024;
  }

  /**
   * Feeds a chunk; returns the events it completed, in order.
   * @throws HubError ServerError when a line exceeds `maxLineBytes`.
   */
  push(chunk: Uint8Array | string): SseEvent[] {
    let text = typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true });
    if (this.first && text.length > 0) {
      // A leading byte-order mark is ignored (spec).
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      this.first = false;
    }
    if (this.skipLeadingNewline && text.startsWith('\n')) text = text.slice(1);
    this.skipLeadingNewline = false;
    this.buffer += text;
    const events: SseEvent[] = [];
    let start = 0;
    for (;;) {
      const cr = this.buffer.indexOf('\r', start);
      const lf = this.buffer.indexOf('\n', start);
      let end: number;
      if (cr === -1 && lf === -1) break;
      if (cr === -1 || (lf !== -1 && lf < cr)) end = lf;
      else end = cr;
      const line = this.buffer.slice(start, end);
      let next = end + 1;
      if (end === cr) {
        if (next < this.buffer.length) {
          if (this.buffer[next] === '\n') next++;
        } else {
          // `\r` at the chunk's end: a `\n` opening the next chunk belongs to this line break.
          this.skipLeadingNewline = true;
        }
      }
      start = next;
      const event = this.line(line);
      if (event) events.push(event);
    }
    this.buffer = this.buffer.slice(start);
    if (this.buffer.length > this.maxLine) {
      throw new HubError('ServerError', `An event-stream line is longer than ${this.maxLine} bytes`);
    }
    return events;
  }

  private line(line: string): SseEvent | undefined {
    if (line === '') return this.dispatch();
    if (line.startsWith(':')) return undefined;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.event = value;
    else if (field === 'id' && !value.includes('\0')) this.id = value;
    // `retry` and unknown fields are ignored: reconnection is the reader's policy.
    return undefined;
  }

  private dispatch(): SseEvent | undefined {
    if (this.data.length === 0) {
      this.event = '';
      return undefined;
    }
    const event: SseEvent = { event: this.event || 'message', data: this.data.join('\n'), id: this.id };
    this.data = [];
    this.event = '';
    return event;
  }
}
