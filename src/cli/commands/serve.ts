
import { lazyAction } from '../lazy.js';
import { Command } from 'commander';
import { optionParser } from '../../validation/param-rules.js';
import { portParam } from '../../validation/id-params.js';
import { parseQueryPrecision } from '../../model/query-precision.js';

const portOption = optionParser(portParam, '--port');

export function serveCommand(): Command {
  return new Command('serve')
    .description('run the web UI and REST API, indexing and watching the library folders')
    .option('--port <n>', 'port (0 picks a free one; env CLIPDEX_PORT)', portOption, process.env.CLIPDEX_PORT ? portOption(process.env.CLIPDEX_PORT) : 7523)
    .option('--host <address>', 'address to bind; anything but loopback requires the access token', '127.0.0.1')
    .option('--root <dir...>', 'folders to index and watch (remembered in the library)')
    .option('--allowed-host <name...>', 'extra host names the server may be reached by')
    .option(
      '--query-precision <p>',
      'the text tower that encodes queries: fp32 (default) or int8 (quantized once into the cache dir, faster; photos stay as encoded, no re-indexing; env CLIPDEX_QUERY_PRECISION)',
      (v: string) => parseQueryPrecision(v, '--query-precision'),
    )
    .option('--no-encode', 'scan and watch the folders but leave encoding to `clipdex worker` processes (a library in Postgres)')
    .action(lazyAction(() => import('../actions/serve.js'), 'actionServe'));
}
