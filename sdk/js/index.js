// The Postwire plugin SDK for JavaScript and TypeScript: the contract's values as classes with
// the helpers of the Rust SDK (`sdk/`), so that a plugin reads the same in either language.

/** @type {(level: 'debug' | 'info' | 'warn' | 'error', message: string) => void} */
let sink = (level, message) => console[level === 'debug' ? 'log' : level](`[${level}] ${message}`);

/** Where log lines go: the host's `log` inside a component, the console elsewhere. */
export function setLogSink(next) {
  sink = next;
}

const line = (level) => (...parts) => sink(level, parts.map(String).join(' '));

/** Lines kept with the attempt, seen in `postwire plugin run` and in the attempt log. */
export const log = { debug: line('debug'), info: line('info'), warn: line('warn'), error: line('error') };

const lower = (text) => text.replace(/[A-Z]/g, (c) => c.toLowerCase());
const sameName = (a, b) => a.length === b.length && lower(a) === lower(b);
const find = (headers, name) => headers.find(([n]) => sameName(n, name))?.[1];

/** Exact parsing of amounts and timestamps, as the Rust SDK's `parse` module. */
export const parse = {
  /**
   * A plain decimal (`149.90`, `-3.5`, `7`) in hundredths, rounded half away from zero, from its
   * text rather than through a float; `undefined` for anything else (`1e3`, `1,50`, `.5`).
   */
  cents(text) {
    const m = /^([+-]?)(\d+)(?:\.(\d+))?$/.exec(String(text).trim());
    if (!m) return undefined;
    const fraction = m[3] ?? '';
    let magnitude = BigInt(m[2]) * 100n + BigInt((fraction + '00').slice(0, 2));
    if (fraction.length > 2 && fraction[2] >= '5') magnitude += 1n;
    if (magnitude > 9223372036854775807n) return undefined;
    return Number(m[1] === '-' ? -magnitude : magnitude);
  },

  /** RFC 3339 (`2026-11-20T14:03:00Z`, `...+01:00`, fractions ignored) in Unix seconds. */
  unixSeconds(text) {
    const m = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/.exec(
      String(text).trim(),
    );
    if (!m) return undefined;
    const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number);
    const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
    const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1];
    if (!days || day < 1 || day > days || hour > 23 || minute > 59 || second > 60) return undefined;
    let offset = 0;
    if (!m[7]) {
      const [hours, minutes] = [Number(m[9]), Number(m[10])];
      if (hours > 23 || minutes > 59) return undefined;
      offset = (hours * 3600 + minutes * 60) * (m[8] === '-' ? -1 : 1);
    }
    const y = month <= 2 ? year - 1 : year;
    const era = Math.floor(y / 400);
    const yearOfEra = y - era * 400;
    const dayOfYear = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
    const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear;
    const epochDays = era * 146097 + dayOfEra - 719468;
    return epochDays * 86400 + hour * 3600 + minute * 60 + Math.min(second, 59) - offset;
  },
};

/** The event a postback is about; its fields by their placeholder names. */
export class Event {
  constructor(id, type, { partnerId = '', occurredAt = '', fields = [] } = {}) {
    this.id = id;
    this.type = type;
    this.partnerId = partnerId;
    this.occurredAt = occurredAt;
    /** @type {[string, string][]} */
    this.fields = [];
    for (const [name, value] of fields) this.withField(name, value);
  }

  /** Sets a field (for tests), replacing one of the same name. */
  withField(name, value) {
    const field = this.fields.find(([n]) => n === name);
    if (field) field[1] = String(value);
    else this.fields.push([name, String(value)]);
    return this;
  }

  /** A field by placeholder name (`OrderId`; also `EventId`, `EventType`, `EventDate`). */
  get(name) {
    if (name === 'EventId') return this.id;
    if (name === 'EventType') return this.type;
    if (name === 'EventDate') return this.occurredAt;
    return this.fields.find(([n]) => n === name)?.[1];
  }

  /** A field as exact cents. */
  cents(name) {
    const value = this.get(name);
    return value === undefined ? undefined : parse.cents(value);
  }

  /** A field holding an RFC 3339 timestamp, in Unix seconds. */
  timestampUnix(name) {
    const value = this.get(name);
    return value === undefined ? undefined : parse.unixSeconds(value);
  }

  /** When the event happened, in Unix seconds. */
  occurredAtUnix() {
    return parse.unixSeconds(this.occurredAt);
  }
}

/** A postback request. */
export class Request {
  constructor(method, url, { headers = [], body = '' } = {}) {
    this.method = method;
    this.url = url;
    /** @type {[string, string][]} */
    this.headers = headers.map(([n, v]) => [n, v]);
    this.body = body;
  }

  /** The body as text. */
  text() {
    return this.body;
  }

  /** The body parsed as JSON; throws naming the problem. */
  json() {
    try {
      return JSON.parse(this.body);
    } catch (e) {
      throw new Error(`the request body is not the JSON expected: ${e.message}`);
    }
  }

  /** Writes `value` as the body, compact JSON. */
  setJson(value) {
    this.body = JSON.stringify(value);
  }

  /** Replaces the body. */
  setText(body) {
    this.body = String(body);
  }

  /** The first header of this name, any case. */
  header(name) {
    return find(this.headers, name);
  }

  /** Sets a header: replaces the first of this name (any case) and drops the others, or appends. */
  setHeader(name, value) {
    const first = this.headers.findIndex(([n]) => sameName(n, name));
    if (first < 0) {
      this.headers.push([name, String(value)]);
      return;
    }
    this.headers = this.headers.filter(([n], i) => i <= first || !sameName(n, name));
    this.headers[first] = [name, String(value)];
  }

  /** Appends a header, keeping others of the same name. */
  addHeader(name, value) {
    this.headers.push([name, String(value)]);
  }

  /** Removes every header of this name; returns the first one's value. */
  removeHeader(name) {
    const removed = this.header(name);
    this.headers = this.headers.filter(([n]) => !sameName(n, name));
    return removed;
  }
}

/** The receiver's answer, for classifiers. */
export class Response {
  constructor(status, { headers = [], body = new Uint8Array(), durationMs = 0 } = {}) {
    this.status = status;
    /** @type {[string, string][]} */
    this.headers = headers.map(([n, v]) => [n, v]);
    this.body = typeof body === 'string' ? new TextEncoder().encode(body) : body;
    this.durationMs = durationMs;
  }

  /** 2xx. */
  isSuccess() {
    return this.status >= 200 && this.status < 300;
  }

  /** The first header of this name, any case. */
  header(name) {
    return find(this.headers, name);
  }

  /** The body's bytes, cut at the capture limit. */
  bytes() {
    return this.body;
  }

  /** The body as text, invalid UTF-8 replaced. */
  text() {
    return new TextDecoder().decode(this.body);
  }

  /** The body parsed as JSON; throws naming the problem. */
  json() {
    try {
      return JSON.parse(this.text());
    } catch (e) {
      throw new Error(`the response body is not the JSON expected: ${e.message}`);
    }
  }
}

/** What a classifier decides. */
export class Verdict {
  constructor(tag, reason = '', afterSecs = undefined) {
    this.tag = tag;
    this.reason = reason;
    this.afterSecs = afterSecs;
  }

  /** Delivered. */
  static success() {
    return new Verdict('success');
  }

  /** Failed this time; retried on the schedule. */
  static retry(reason) {
    return new Verdict('retry', String(reason));
  }

  /** Failed this time; retried after at least `secs` seconds. */
  static retryAfter(secs, reason) {
    return new Verdict('retry', String(reason), secs);
  }

  /** Failed for good. */
  static fail(reason) {
    return new Verdict('fail', String(reason));
  }

  toString() {
    if (this.tag === 'success') return 'success';
    if (this.tag === 'fail') return `fail: ${this.reason}`;
    return this.afterSecs === undefined ? `retry: ${this.reason}` : `retry after ${this.afterSecs} s: ${this.reason}`;
  }
}

/** The partner's `plugin_config` (JSON text; empty text reads as `{}`). */
export class Config {
  constructor(raw = '{}') {
    this.raw = raw;
  }

  /** The parsed value; `undefined` if the text is not JSON. */
  value() {
    if (this.raw.trim() === '') return {};
    try {
      return JSON.parse(this.raw);
    } catch {
      return undefined;
    }
  }

  /** The top-level `key`; `undefined` when absent or `null`. */
  get(key) {
    const value = this.value();
    const found = value !== null && typeof value === 'object' && !Array.isArray(value) ? value[key] : undefined;
    return found === null ? undefined : found;
  }

  /** The top-level `key`, or an error for the partner to read: `plugin_config has no "hmac_key"`. */
  require(key) {
    const value = this.value();
    if (value === undefined) throw new Error('plugin_config is not JSON');
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new Error(`plugin_config is not a JSON object, so it has no ${JSON.stringify(key)}`);
    }
    const found = value[key];
    if (found === undefined || found === null) throw new Error(`plugin_config has no ${JSON.stringify(key)}`);
    return found;
  }
}
