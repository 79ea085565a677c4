// A Postwire plugin that transforms the request and classifies the receiver's answer.
import { Verdict, log } from '@postwire/plugin-sdk';

/**
 * Adds the order id as a header.
 * @type {import('@postwire/plugin-sdk').Transform}
 */
export function transform(event, request, _config) {
  const order = event.get('OrderId');
  if (order !== undefined) request.setHeader('X-Order-Id', order);
  log.info(`transformed event ${event.id}`);
  return request;
}

/**
 * Success on a 2xx whose body does not say "error"; retry otherwise.
 * @type {import('@postwire/plugin-sdk').Classify}
 */
export function classify(_request, response, _config) {
  return response.isSuccess() && !response.text().includes('error')
    ? Verdict.success()
    : Verdict.retry(`status ${response.status}`);
}
