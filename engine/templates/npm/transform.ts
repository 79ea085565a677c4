// A Postwire transform plugin: gets the event and the request the template produced, returns
// the request to send.
import { Config, Event, Request, log } from '@postwire/plugin-sdk';

/** Adds the order id as a header and, when configured, a tag. */
export function transform(event: Event, request: Request, config: Config): Request {
  const order = event.get('OrderId');
  if (order !== undefined) request.setHeader('X-Order-Id', order);
  const tag = config.get<string>('tag');
  if (typeof tag === 'string') request.setHeader('X-Tag', tag);
  log.info(`transformed event ${event.id}`);
  return request;
}
