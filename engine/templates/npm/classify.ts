// A Postwire classify plugin: reads the receiver's answer and decides what it means.
import { Config, Request, Response, Verdict, log } from '@postwire/plugin-sdk';

/** Success on a 2xx whose body does not say "error"; retry otherwise. */
export function classify(_request: Request, response: Response, _config: Config): Verdict {
  const verdict =
    response.isSuccess() && !response.text().includes('error')
      ? Verdict.success()
      : Verdict.retry(`status ${response.status}`);
  log.info(`status ${response.status} -> ${verdict}`);
  return verdict;
}
