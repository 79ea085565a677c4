// A Postwire classify plugin: reads the receiver's answer and decides what it means.
import { Verdict, log } from '@postwire/plugin-sdk';

/**
 * Success on a 2xx whose body does not say "error"; retry otherwise.
 * @type {import('@postwire/plugin-sdk').Classify}
 */
export function classify(_request, response, _config) {
  const verdict =
    response.isSuccess() && !response.text().includes('error')
      ? Verdict.success()
      : Verdict.retry(`status ${response.status}`);
  log.info(`status ${response.status} -> ${verdict}`);
  return verdict;
}
