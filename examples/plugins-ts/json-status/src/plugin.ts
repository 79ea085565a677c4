// The TypeScript twin of examples/plugins/json-status: a receiver's JSON acknowledgement
// (`{"status":"ok"}`, `{"status":"error","retryable":...}`) read into a verdict, the same verdict
// for the same answer.
import { Config, Request, Response, Verdict, log } from '@postwire/plugin-sdk';

interface Ack {
  status?: string | null;
  retryable?: boolean | null;
  retry_after?: unknown;
  message?: string | null;
}

export function classify(_request: Request, response: Response, _config: Config): Verdict {
  const verdict = decide(response);
  log.info(`HTTP ${response.status}: ${verdict}`);
  return verdict;
}

const U32_MAX = 4294967295;

function decide(response: Response): Verdict {
  const status = response.status;
  if (!response.isSuccess()) {
    const reason = `receiver answered HTTP ${status}`;
    const secs = wholeNumber(response.header('Retry-After'), U32_MAX);
    return secs === undefined ? Verdict.retry(reason) : Verdict.retryAfter(secs, reason);
  }
  const ack = readAck(response);
  if (ack === undefined) {
    const start = Array.from(response.text()).slice(0, 80).join('');
    return Verdict.retry(`HTTP ${status} without a JSON acknowledgement: ${quoted(start)}`);
  }
  const message = typeof ack.message === 'string' && ack.message.trim() !== '' ? ack.message : undefined;
  const said = typeof ack.status === 'string' ? ack.status.replace(/[A-Z]/g, (c) => c.toLowerCase()) : undefined;
  if (said === 'ok' || said === 'success') return Verdict.success();
  if (said === 'error' && ack.retryable === false) return Verdict.fail(message ?? 'receiver refused the postback');
  if (said === 'error') {
    const reason = message ?? 'receiver asked to retry';
    const secs = seconds(ack.retry_after);
    return secs === undefined ? Verdict.retry(reason) : Verdict.retryAfter(secs, reason);
  }
  if (said !== undefined) return Verdict.retry(`unknown acknowledgement status ${quoted(said)}`);
  return Verdict.retry('acknowledgement without a status');
}

/** The body as an acknowledgement: a JSON object whose keys have the types expected, else nothing. */
function readAck(response: Response): Ack | undefined {
  let value: unknown;
  try {
    value = response.json();
  } catch {
    return undefined;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const ack = value as Record<string, unknown>;
  const fits = (key: string, type: string) => ack[key] === undefined || ack[key] === null || typeof ack[key] === type;
  if (!fits('status', 'string') || !fits('retryable', 'boolean') || !fits('message', 'string')) return undefined;
  return ack as Ack;
}

/** Whole seconds from a number or a string of digits, capped at the largest u32. */
function seconds(value: unknown): number | undefined {
  if (typeof value === 'number') {
    return Number.isInteger(value) && value >= 0 ? Math.min(value, U32_MAX) : undefined;
  }
  if (typeof value === 'string') return wholeNumber(value, Number.MAX_SAFE_INTEGER, U32_MAX);
  return undefined;
}

/** Digits (an optional `+`) as a number no larger than `limit`, then capped at `cap`. */
function wholeNumber(text: string | undefined, limit: number, cap = limit): number | undefined {
  const digits = text?.trim();
  if (digits === undefined || !/^\+?\d+$/.test(digits)) return undefined;
  const big = BigInt(digits);
  if (big > BigInt(limit === U32_MAX ? U32_MAX : '18446744073709551615')) return undefined;
  return Number(big > BigInt(cap) ? BigInt(cap) : big);
}

/** A string as Rust's `{:?}` writes it, so that reasons read the same as the Rust plugin's. */
function quoted(text: string): string {
  let out = '"';
  for (const c of text) {
    const code = c.codePointAt(0)!;
    if (c === '"' || c === '\\') out += `\\${c}`;
    else if (c === '\n') out += '\\n';
    else if (c === '\r') out += '\\r';
    else if (c === '\t') out += '\\t';
    else if (c === '\0') out += '\\0';
    else if (code < 0x20 || code === 0x7f) out += `\\u{${code.toString(16)}}`;
    else out += c;
  }
  return out + '"';
}
