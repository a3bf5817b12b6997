#!/usr/bin/env node
/**
 * The `racksmith` command. `serve` runs the server; `token create` writes to the data directory's
 * store directly (it is how the first token is made); the rest are thin clients of the REST API.
 * Exit codes: 0 done, 1 failed, 2 usage error.
 */
import { TOKEN_ROLES, type TokenRole } from './inventory/model.js';
import { parse, UsageError } from './cli/args.js';
import { ApiError, createApiClient } from './cli/client.js';
import { readSecret, terminalPrompt } from './cli/secrets.js';
import { AGENT_HELP, MAIN_HELP, TOKEN_HELP, WATCH_HELP } from './cli/help.js';
import { checkScope } from './cli/scope.js';
import { table } from './cli/table.js';
import { clustersCommand, machinesCommand, type ClientFactory } from './cli/inventory-commands.js';
import { watch } from './cli/watch.js';
import { rackCommand } from './cli/power-commands.js';
import { artifactsCommand, preflightCommand } from './cli/checks-commands.js';
import { VERSION } from './lib/version.js';
import type { Runtime } from './main.js';
import type { Config } from './config/settings.js';

/*
 * The client commands (machines, clusters, rack, watch…) load only what they use: the settings
 * table (zod), the config file reader (yaml), the logger (pino) and the store are imported by the
 * commands that need them, which keeps a client command's start near Node's own.
 */

const out = (text: string): void => void process.stdout.write(text);

// `racksmith machines list | head`: a reader that goes away early is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

const prompt = terminalPrompt();
const str = (v: string | boolean | undefined): string | undefined => (typeof v === 'string' ? v : undefined);

function serverUrl(values: Record<string, string | boolean | undefined>): string {
  return str(values['url']) ?? process.env['RACKSMITH_URL'] ?? 'http://127.0.0.1:8080';
}

/** The API token: --token, --token-file, RACKSMITH_TOKEN, or asked for on a terminal. */
async function apiToken(values: Record<string, string | boolean | undefined>): Promise<string> {
  const token = await readSecret(
    { what: `API token for ${serverUrl(values)}`, flag: 'token', flagValue: str(values['token']), fileFlag: 'token-file', fileValue: str(values['token-file']), envName: 'RACKSMITH_TOKEN' },
    { env: process.env, prompt },
  );
  if (!token) throw new UsageError('an API token is needed: --token-file FILE or RACKSMITH_TOKEN (or --token TOKEN, visible in ps); make one with "racksmith token create"');
  return token;
}

const client: ClientFactory = (values) => createApiClient(serverUrl(values), () => apiToken(values));
const endpoint = async (values: Record<string, string | boolean | undefined>): Promise<{ url: string; token: string }> => ({ url: serverUrl(values), token: await apiToken(values) });

async function watchCommand(args: readonly string[]): Promise<number> {
  const { values } = parse(args, { url: { type: 'string' }, token: { type: 'string' }, 'token-file': { type: 'string' }, cluster: { type: 'string' }, rack: { type: 'string' }, json: { type: 'boolean' } });
  if (values['help']) {
    out(WATCH_HELP);
    return 0;
  }
  const url = serverUrl(values);
  const token = await apiToken(values);
  const abort = new AbortController();
  const stop = (): void => abort.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const json = values['json'] === true;
  const tty = process.stdout.isTTY === true && !json;
  const client = createApiClient(url, token);
  // A mistyped rack or cluster is an error, not an empty table that waits forever.
  await checkScope(client, { cluster: typeof values['cluster'] === 'string' ? values['cluster'] : undefined, rack: typeof values['rack'] === 'string' ? values['rack'] : undefined });
  if (tty) out('\x1b[?25l');
  try {
    await watch({
      baseUrl: url,
      token,
      client,
      json,
      cluster: typeof values['cluster'] === 'string' ? values['cluster'] : undefined,
      rack: typeof values['rack'] === 'string' ? values['rack'] : undefined,
      tty,
      out,
      signal: abort.signal,
    });
  } finally {
    if (tty) out('\x1b[?25h\n');
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
  return 0;
}

/** A server-side command's flags: its own and every setting; the config they make, when asked. */
async function settingsCommand(args: readonly string[], own: Parameters<typeof parse>[1], positionals = 0): Promise<{ values: Record<string, string | boolean | undefined>; positionals: string[]; config: () => Promise<Config> }> {
  const { SETTING_FLAGS, settingFlags } = await import('./cli/setting-flags.js');
  const parsed = parse(args, { ...SETTING_FLAGS, ...own }, positionals);
  const config = async (): Promise<Config> => {
    const { loadConfig } = await import('./config/load.js');
    return loadConfig({ file: typeof parsed.values['config'] === 'string' ? parsed.values['config'] : undefined, env: process.env, flags: settingFlags(parsed.values) });
  };
  return { ...parsed, config };
}

async function serve(args: readonly string[]): Promise<number> {
  const { values, config: readConfig } = await settingsCommand(args, {});
  if (values['help']) {
    const { SERVE_HELP } = await import('./cli/setting-flags.js');
    out(SERVE_HELP());
    return 0;
  }
  const config = await readConfig();
  const { createLogger } = await import('./lib/log.js');
  const log = createLogger(config.logLevel);
  // Taken before anything starts: a SIGTERM while the services start (systemd stopping a unit
  // that is still coming up, a health check that just turned 200) stops them cleanly once they
  // have, instead of killing the process half-way.
  let runtime: Runtime | null = null;
  let signalled: NodeJS.Signals | null = null;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (runtime) void runtime.stop(signal);
    else signalled ??= signal;
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  try {
    // Loaded here, not at the top: the client commands then start without the server's modules.
    const { startRacksmith } = await import('./main.js');
    runtime = await startRacksmith(config, log);
  } catch (err) {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    throw err;
  }
  if (signalled) void runtime.stop(signalled);
  return runtime.done;
}

async function token(args: readonly string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (!sub || sub === '--help' || sub === '-h') {
    out(TOKEN_HELP);
    return sub ? 0 : 2;
  }
  if (sub === 'list' || sub === 'revoke') return tokenAdmin(sub, rest);
  if (sub !== 'create') throw new UsageError(`token: unknown subcommand "${sub}" (create, list, revoke)`);
  const { values, config: readConfig } = await settingsCommand(rest, { role: { type: 'string' }, name: { type: 'string' } });
  if (values['help']) {
    out(TOKEN_HELP);
    return 0;
  }
  const role = values['role'];
  if (typeof role !== 'string' || !(TOKEN_ROLES as readonly string[]).includes(role)) {
    throw new UsageError(`token create: --role must be one of ${TOKEN_ROLES.join(', ')}`);
  }
  const config = await readConfig();
  const { openInventory } = await import('./main.js');
  const inventory = await openInventory(config);
  try {
    const name = typeof values['name'] === 'string' ? values['name'] : `${role} token`;
    const { token } = await inventory.tokens.create(role as TokenRole, name);
    out(token + '\n');
  } finally {
    await inventory.close();
  }
  return 0;
}

async function agent(args: readonly string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (!sub || sub === '--help' || sub === '-h') {
    out(AGENT_HELP);
    return sub ? 0 : 2;
  }
  if (sub !== 'build') throw new UsageError(`agent: unknown subcommand "${sub}" (build)`);
  const { values, config: readConfig } = await settingsCommand(rest, { json: { type: 'boolean' } });
  if (values['help']) {
    out(AGENT_HELP);
    return 0;
  }
  const config = await readConfig();
  const { ensureAgent } = await import('./agent/build.js');
  const { join } = await import('node:path');
  const b = await ensureAgent({ dir: join(config.dataDir, 'agent'), kernelPackage: config.agentKernelPackage, log: (line) => void process.stderr.write(`racksmith: ${line}\n`) });
  if (values['json']) out(JSON.stringify(b, null, 2) + '\n');
  else out(`deploy agent ${b.key} ${b.built ? `built in ${b.seconds.toFixed(0)} s` : 'already built'}: kernel ${b.kernelVersion} (${b.kernelPackage})\n  ${b.kernel}\n  ${b.initrd}\n`);
  return 0;
}

/** `token list` and `token revoke ID|NAME`: the data directory's store, like `token create`. */
async function tokenAdmin(sub: 'list' | 'revoke', rest: readonly string[]): Promise<number> {
  const { values, positionals, config: readConfig } = await settingsCommand(rest, { json: { type: 'boolean' } }, sub === 'revoke' ? 1 : 0);
  if (values['help']) {
    out(TOKEN_HELP);
    return 0;
  }
  const which = positionals[0];
  if (sub === 'revoke' && !which) throw new UsageError('token revoke: give the token\'s id or name (see "racksmith token list")');
  const config = await readConfig();
  const { openInventory } = await import('./main.js');
  const inventory = await openInventory(config);
  try {
    const tokens = await inventory.tokens.list();
    if (sub === 'list') {
      out(values['json'] ? JSON.stringify(tokens, null, 2) + '\n' : table(['id', 'name', 'role', 'created'], tokens.map((t) => [t.id, t.name, t.role, t.createdAt.replace(/\.\d+Z$/, 'Z')])));
      return 0;
    }
    const matches = tokens.filter((t) => t.id === which || t.name === which || (which !== undefined && which.length >= 8 && t.id.startsWith(which)));
    if (matches.length === 0) throw new ApiError(404, 'ERR_UNKNOWN_TOKEN', `no token with id or name "${which ?? ''}" (see "racksmith token list")`);
    if (matches.length > 1) throw new UsageError(`token revoke: ${matches.length} tokens match "${which ?? ''}": give the id (${matches.map((t) => t.id).join(', ')})`);
    const [t] = matches as [(typeof matches)[number]];
    await inventory.tokens.revoke(t.id);
    out(values['json'] ? JSON.stringify({ revoked: t }, null, 2) + '\n' : `revoked ${t.name} (${t.role}, ${t.id}); requests with it are refused from now on\n`);
  } finally {
    await inventory.close();
  }
  return 0;
}

async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      out(MAIN_HELP);
      return command === undefined ? 2 : 0;
    case '--version':
    case 'version':
      out(VERSION + '\n');
      return 0;
    case 'serve':
      return serve(rest);
    case 'settings': {
      const { values } = parse(rest, { markdown: { type: 'boolean' } });
      out(values['markdown'] ? (await import('./config/table.js')).settingsMarkdown() : (await import('./cli/setting-flags.js')).settingsHelp());
      return 0;
    }
    case 'token':
      return token(rest);
    case 'machines':
      await machinesCommand(rest, client, out);
      return 0;
    case 'rack':
      return rackCommand(rest, client, out, Boolean(process.stdout.isTTY));
    case 'clusters':
      if (rest[0] === 'preflight') return preflightCommand(rest.slice(1), endpoint, out);
      await clustersCommand(rest, client, out);
      return 0;
    case 'artifacts':
      return artifactsCommand(rest, endpoint, out);
    case 'watch':
      return watchCommand(rest);
    case 'agent':
      return agent(rest);
    case 'completion':
      return (await import('./cli/completion.js')).completionCommand(rest, out);
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

/** Which errors are told in one line (the others are unexpected: their stack with RACKSMITH_DEBUG). */
const ONE_LINE_ERRORS = new Set(['ConfigError', 'ServiceStartError', 'InstanceLockedError']);

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    // Told apart by name: their classes live in modules a client command never loads.
    const name = err instanceof Error ? err.name : '';
    // Scripts asked for JSON: the error is JSON too, on stderr, with the same exit codes.
    if (process.argv.includes('--json')) {
      const status = err instanceof ApiError ? err.status : undefined;
      const code = err instanceof UsageError ? 'ERR_USAGE' : err instanceof ApiError ? err.code : name === 'ConfigError' ? 'ERR_CONFIG' : 'ERR_CLI';
      const body = err instanceof ApiError ? err.body : { code, message: err instanceof Error ? err.message : String(err) };
      process.stderr.write(JSON.stringify({ error: { ...body, ...(status !== undefined ? { status } : {}) } }) + '\n');
      process.exitCode = err instanceof UsageError ? 2 : 1;
      return;
    }
    if (err instanceof UsageError) {
      process.stderr.write(`racksmith: ${err.message}\nRun "racksmith --help" for usage.\n`);
      process.exitCode = 2;
    } else if (ONE_LINE_ERRORS.has(name) || err instanceof ApiError) {
      process.stderr.write(`racksmith: ${(err as Error).message}\n`);
      process.exitCode = 1;
    } else {
      process.stderr.write(`racksmith: ${err instanceof Error ? err.message : String(err)}\n`);
      if (process.env['RACKSMITH_DEBUG']) process.stderr.write(`${(err as Error).stack ?? ''}\n`);
      process.exitCode = 1;
    }
  },
);
