// The TypeScript twin of examples/plugins/nested-json: the flat JSON of the default template
// reshaped into a partner's nested schema, the same output for the same input.
import { Config, Event, Request, log, parse } from '@postwire/plugin-sdk';

type Value = unknown;

interface Flat {
  event?: string | null;
  inquiry_id?: string | null;
  order_id?: string | null;
  amount?: Value;
  currency?: string | null;
  status?: string | null;
  payout?: Value;
  notes?: string | null;
  happened_at?: Value;
  sub_id?: string | null;
}

const TEXT_KEYS = ['event', 'inquiry_id', 'order_id', 'currency', 'status', 'notes', 'sub_id'] as const;

function readFlat(request: Request): Flat {
  let flat: unknown;
  try {
    flat = request.json();
  } catch (e) {
    throw new Error(`${(e as Error).message} (nested-json expects the flat JSON of examples/settings/json.json)`);
  }
  if (flat === null || typeof flat !== 'object' || Array.isArray(flat)) {
    throw new Error(
      'the request body is not the JSON expected: not an object (nested-json expects the flat JSON of examples/settings/json.json)',
    );
  }
  for (const key of TEXT_KEYS) {
    const value = (flat as Record<string, unknown>)[key];
    if (value !== undefined && value !== null && typeof value !== 'string') {
      throw new Error(
        `the request body is not the JSON expected: ${key} is not a string (nested-json expects the flat JSON of examples/settings/json.json)`,
      );
    }
  }
  return flat as Flat;
}

export function transform(event: Event, request: Request, _config: Config): Request {
  const nested = reshape(event, readFlat(request));
  request.setJson(nested);
  request.setHeader('Content-Type', 'application/json');
  log.info(`reshaped event ${event.id} into the nested schema (${utf8Length(request.body)} bytes)`);
  return request;
}

function reshape(event: Event, flat: Flat) {
  const text = (fromBody: string | null | undefined, field: string): string | null => {
    const value = fromBody ?? event.get(field);
    return value === undefined || value === '' ? null : value;
  };
  const eventType = text(flat.event, 'EventType') ?? '';
  const or = (...values: (number | undefined)[]): number | null => values.find((v) => v !== undefined) ?? null;
  return {
    type: eventType.startsWith('action_') ? eventType.slice('action_'.length) : eventType,
    inquiry: {
      id: text(flat.inquiry_id, 'ActionInquiryId'),
      order_ref: text(flat.order_id, 'OrderId'),
      status: text(flat.status, 'ResolutionStatus'),
      notes: text(flat.notes, 'InquiryNotes'),
    },
    money: {
      currency: text(flat.currency, 'Currency'),
      amount_cents: or(cents(flat.amount), event.cents('TransactionAmount')),
      payout_cents: or(cents(flat.payout), event.cents('FinalPayout'), event.cents('ExpectedPayout')),
    },
    dates: {
      occurred_unix: or(unix(flat.happened_at), event.occurredAtUnix()),
      transaction_unix: event.timestampUnix('TransactionDate') ?? null,
    },
    tracking: {
      event_id: event.id,
      sub_id: text(flat.sub_id, 'SubId1'),
    },
  };
}

function cents(amount: Value): number | undefined {
  if (typeof amount === 'number') return parse.cents(String(amount));
  if (typeof amount === 'string') return parse.cents(amount);
  return undefined;
}

function unix(at: Value): number | undefined {
  if (typeof at === 'number') return Number.isSafeInteger(at) ? at : undefined;
  if (typeof at === 'string') return parse.unixSeconds(at);
  return undefined;
}

function utf8Length(text: string): number {
  let bytes = 0;
  for (const c of text) {
    const code = c.codePointAt(0)!;
    bytes += code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
  }
  return bytes;
}
