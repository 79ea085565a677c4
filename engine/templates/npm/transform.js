// A Postwire transform plugin: gets the event and the request the template produced, returns
// the request to send.
import { log } from '@postwire/plugin-sdk';

/**
 * Adds the order id as a header and, when configured, a tag.
 * @type {import('@postwire/plugin-sdk').Transform}
 */
export function transform(event, request, config) {
  const order = event.get('OrderId');
  if (order !== undefined) request.setHeader('X-Order-Id', order);
  const tag = config.get('tag');
  if (typeof tag === 'string') request.setHeader('X-Tag', tag);
  log.info(`transformed event ${event.id}`);
  return request;
}
