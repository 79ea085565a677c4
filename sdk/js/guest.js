// Inside the component: the contract's raw values in and out of the SDK's classes.

import { Config, Event, Request, Response, Verdict, setLogSink } from './index.js';

const LEVELS = new Set(['debug', 'info', 'warn', 'error']);

/** Sends the SDK's log lines, and `console`'s, to the host's `log`. */
export function install(hostLog) {
  setLogSink((level, message) => hostLog(LEVELS.has(level) ? level : 'info', message));
  const to = (level) => (...parts) => hostLog(level, parts.map(String).join(' '));
  globalThis.console = { log: to('info'), info: to('info'), debug: to('debug'), warn: to('warn'), error: to('error') };
}

const message = (error) => (error instanceof Error ? error.message : String(error));

/** Makes `name` of `object` a value fetched by `fetch` when first read, then kept (or set). */
function lazy(object, name, fetch) {
  const settle = (value) =>
    Object.defineProperty(object, name, { value, writable: true, enumerable: true, configurable: true });
  Object.defineProperty(object, name, {
    enumerable: true,
    configurable: true,
    get() {
      const value = fetch();
      settle(value);
      return value;
    },
    set: settle,
  });
}

/**
 * The call's event over the host's handle: a value is fetched when the plugin first reads it
 * and kept, so a plugin pays for the fields it reads, not for all the event carries. The handle
 * is lent for the call only.
 */
function toEvent(raw) {
  const event = Object.create(Event.prototype);
  lazy(event, 'id', () => raw.id());
  lazy(event, 'type', () => raw.eventType());
  lazy(event, 'partnerId', () => raw.partnerId());
  lazy(event, 'occurredAt', () => raw.occurredAt());
  lazy(event, 'fields', () => {
    const data = raw.fields();
    const fields = new Array(data.length);
    for (let i = 0; i < data.length; i++) fields[i] = [data[i].name, data[i].value];
    return fields;
  });
  const read = new Map();
  event.get = function get(name) {
    if (name === 'EventId') return this.id;
    if (name === 'EventType') return this.type;
    if (name === 'EventDate') return this.occurredAt;
    // Once every field was fetched (or one was set), they answer; until then, one at a time.
    if (Object.getOwnPropertyDescriptor(this, 'fields').get === undefined) return Event.prototype.get.call(this, name);
    if (!read.has(name)) read.set(name, raw.get(name));
    return read.get(name);
  };
  return event;
}

const toRequest = (raw) => new Request(raw.method, raw.url, { headers: raw.headers, body: raw.body });

function fromRequest(request) {
  if (!(request instanceof Request)) {
    throw new Error('transform must return a Request (the one it was given, changed, or a new Request(...))');
  }
  return {
    method: String(request.method),
    url: String(request.url),
    headers: request.headers.map(([n, v]) => [String(n), String(v)]),
    body: String(request.body),
  };
}

/** Runs the plugin's transform; what it throws becomes the error that fails the delivery. */
export function transform(run, rawEvent, rawRequest, config) {
  let out;
  try {
    out = fromRequest(run(toEvent(rawEvent), toRequest(rawRequest), new Config(config)));
  } catch (error) {
    // componentize-js returns a thrown value as the `err` of a `result`.
    throw message(error);
  }
  return out;
}

/** Runs the plugin's classify. A throw is a retry with its message, as the host treats a failed classifier. */
export function classify(run, rawRequest, rawResponse, config) {
  let verdict;
  try {
    verdict = run(
      toRequest(rawRequest),
      new Response(rawResponse.status, {
        headers: rawResponse.headers,
        body: rawResponse.body,
        durationMs: rawResponse.durationMs,
      }),
      new Config(config),
    );
  } catch (error) {
    verdict = Verdict.retry(`classify threw: ${message(error)}`);
  }
  if (!(verdict instanceof Verdict)) verdict = Verdict.retry('classify returned something that is not a Verdict');
  if (verdict.tag === 'success') return { tag: 'success' };
  if (verdict.tag === 'fail') return { tag: 'fail', val: verdict.reason };
  const after = verdict.afterSecs;
  return {
    tag: 'retry',
    val: { afterSecs: after === undefined ? undefined : Math.max(0, Math.min(4294967295, Math.floor(after))), reason: verdict.reason },
  };
}

