// A Postwire plugin that transforms the request and classifies the receiver's answer.
import { Config, Event, Request, Response, Verdict, log } from '@postwire/plugin-sdk';

/** Adds the order id as a header. */
export function transform(event: Event, request: Request, _config: Config): Request {
  const order = event.get('OrderId');
  if (order !== undefined) request.setHeader('X-Order-Id', order);
  log.info(`transformed event ${event.id}`);
  return request;
}

/** Success on a 2xx whose body does not say "error"; retry otherwise. */
export function classify(_request: Request, response: Response, _config: Config): Verdict {
  return response.isSuccess() && !response.text().includes('error')
    ? Verdict.success()
    : Verdict.retry(`status ${response.status}`);
}
