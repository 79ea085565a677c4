// Types of the Postwire plugin SDK. The contract is sdk/wit/postwire.wit (package
// postwire:plugin@0.2.0); these classes are its values with the helpers of the Rust SDK.

/** An HTTP header: name, value. */
export type Header = [name: string, value: string];

/** Lines kept with the attempt (at most 100 lines and 4 KiB a call), seen in `postwire plugin run`. */
export declare const log: {
  debug(...parts: unknown[]): void;
  info(...parts: unknown[]): void;
  warn(...parts: unknown[]): void;
  error(...parts: unknown[]): void;
};

/** Where log lines go: the host's `log` inside a component, the console elsewhere (tests). */
export declare function setLogSink(sink: (level: 'debug' | 'info' | 'warn' | 'error', message: string) => void): void;

/** Exact parsing of amounts and timestamps, as the Rust SDK's `parse` module. */
export declare const parse: {
  /** A plain decimal (`149.90`, `-3.5`, `7`) in hundredths, rounded half away from zero, from its text. */
  cents(text: string): number | undefined;
  /** RFC 3339 (`2026-11-20T14:03:00Z`, `...+01:00`, fractions ignored) in Unix seconds. */
  unixSeconds(text: string): number | undefined;
};

/** The event a postback is about. */
export declare class Event {
  constructor(
    id: string,
    type: string,
    options?: { partnerId?: string; occurredAt?: string; fields?: Iterable<[string, string]> },
  );
  /** The platform's event id (`EventId`). */
  id: string;
  /** `action_inquiry.created` or `action_inquiry.resolved`. */
  type: string;
  /** The partner. */
  partnerId: string;
  /** When it happened, RFC 3339. */
  occurredAt: string;
  /** The data fields, in text form, by placeholder name. */
  fields: [string, string][];
  /** Sets a field (for tests), replacing one of the same name. */
  withField(name: string, value: string | number): this;
  /** A field by placeholder name (`OrderId`; also `EventId`, `EventType`, `EventDate`). */
  get(name: string): string | undefined;
  /** A field as exact cents (`TransactionAmount` `149.90` is `14990`). */
  cents(name: string): number | undefined;
  /** A field holding an RFC 3339 timestamp, in Unix seconds. */
  timestampUnix(name: string): number | undefined;
  /** When the event happened, in Unix seconds. */
  occurredAtUnix(): number | undefined;
}

/** A postback request. */
export declare class Request {
  constructor(method: string, url: string, options?: { headers?: Header[]; body?: string });
  /** `GET`, `POST` or `PUT`. */
  method: string;
  url: string;
  headers: Header[];
  body: string;
  /** The body as text. */
  text(): string;
  /** The body parsed as JSON; throws naming the problem. */
  json<T = unknown>(): T;
  /** Writes `value` as the body, compact JSON. */
  setJson(value: unknown): void;
  /** Replaces the body. */
  setText(body: string): void;
  /** The first header of this name, any case. */
  header(name: string): string | undefined;
  /** Replaces the first header of this name (any case) and drops the others, or appends. */
  setHeader(name: string, value: string): void;
  /** Appends a header, keeping others of the same name. */
  addHeader(name: string, value: string): void;
  /** Removes every header of this name; returns the first one's value. */
  removeHeader(name: string): string | undefined;
}

/** The receiver's answer. */
export declare class Response {
  constructor(status: number, options?: { headers?: Header[]; body?: Uint8Array | string; durationMs?: number });
  status: number;
  headers: Header[];
  /** The body, cut at the capture limit. */
  body: Uint8Array;
  durationMs: number;
  /** 2xx. */
  isSuccess(): boolean;
  /** The first header of this name, any case. */
  header(name: string): string | undefined;
  bytes(): Uint8Array;
  /** The body as text, invalid UTF-8 replaced. */
  text(): string;
  /** The body parsed as JSON; throws naming the problem. */
  json<T = unknown>(): T;
}

/** What a classifier decides. */
export declare class Verdict {
  readonly tag: 'success' | 'retry' | 'fail';
  readonly reason: string;
  /** For a retry: wait at least this long; the retry schedule decides when absent. */
  readonly afterSecs: number | undefined;
  /** Delivered. */
  static success(): Verdict;
  /** Failed this time; retried on the schedule. */
  static retry(reason: string): Verdict;
  /** Failed this time; retried after at least `secs` seconds. */
  static retryAfter(secs: number, reason: string): Verdict;
  /** Failed for good. */
  static fail(reason: string): Verdict;
  toString(): string;
}

/** The partner's `plugin_config` (JSON text; empty text reads as `{}`). */
export declare class Config {
  constructor(raw?: string);
  /** The text, as received. */
  readonly raw: string;
  /** The parsed value; `undefined` if the text is not JSON. */
  value(): unknown;
  /** The top-level `key`; `undefined` when absent or `null`. */
  get<T = unknown>(key: string): T | undefined;
  /** The top-level `key`, or throws: `plugin_config has no "hmac_key"`. */
  require<T = unknown>(key: string): T;
}

/** A transform plugin: `export function transform(event, request, config) { ... }`. Throw to fail the delivery. */
export type Transform = (event: Event, request: Request, config: Config) => Request;
/** A classify plugin: `export function classify(request, response, config) { ... }`. */
export type Classify = (request: Request, response: Response, config: Config) => Verdict;
