import http from 'node:http';
import https from 'node:https';
import { Command, Option } from 'commander';
import { withExamples } from './help-examples.js';
import type WebSocket from 'ws';
import { apiErrorMessage, apiPath, apiTlsOptions } from './api-client.js';
import { withTargetOptions } from './agent-commands.js';
import { resolveTarget, type EngineTarget, type TargetFlags } from './engine-target.js';
import { parseFilterFlags } from './filter-flags.js';
import { commaList, positiveInteger } from './option-parsers.js';
import { DELIVERABLE_TYPES, generateWebhookSecret, newWebhookId, webhookBody, webhookHeaders } from './webhook.js';
import { CommandError, UsageError } from '../errors.js';

interface EventsFlags extends TargetFlags {
  transport: 'websocket' | 'sse';
  events?: string[];
  clientFilter?: string;
  tunnelFilter?: string;
  forwardTo?: string;
  forwardInsecureTls: boolean;
  webhook: boolean;
  webhookSecret?: string;
  webhookId?: string;
  includeWebhookHeaders: boolean;
  output: 'json' | 'ndjson';
  retry: boolean;
  retryInterval: number;
}

const FORWARD_TIMEOUT_MS = 10_000;
const MAX_REDIRECTS = 5;
const MAX_BACKOFF_MS = 30_000;
/** The engine sends an SSE comment every 15 s and pings WebSockets: this much silence means a dead link. */
const SILENCE_LIMIT_MS = 90_000;

/** Calls `onSilence` when `touch` has not been called for SILENCE_LIMIT_MS; `stop` ends the watch. */
function watchdog(onSilence: () => void): { touch: () => void; stop: () => void } {
  let timer = setTimeout(onSilence, SILENCE_LIMIT_MS);
  return {
    touch: () => {
      clearTimeout(timer);
      timer = setTimeout(onSilence, SILENCE_LIMIT_MS);
    },
    stop: () => clearTimeout(timer),
  };
}

/** Why a stream ended: `fatal` ones (auth, bad params) are not retried. */
class StreamEnded extends Error {
  constructor(
    message: string,
    readonly fatal: boolean,
  ) {
    super(message);
  }
}

/** `rivulet events`, with webhooks (docs/cli.md#rivulet-events). */
export function addEventsCommand(program: Command): void {
  const events = withTargetOptions(program.command('events').description('watch client and tunnel events (and forward them, optionally as signed webhooks)'))
    .addOption(new Option('--transport <transport>', 'event stream').choices(['websocket', 'sse']).default('websocket'))
    .option('--events <a,b>', 'only these event types (client-side)', commaList)
    .option('--client-filter <k=v,...>', 'server-side client filter: id,status,user_id,agent,channel,version,os,arch,protocol_version,labels.<k>')
    .option('--tunnel-filter <k=v,...>', 'server-side tunnel filter: id,name,type,status,client_id,user_id,protocol,publish,hostname,http_version,labels.<k>')
    .option('--forward-to <url>', 'POST each event to this http(s) URL')
    .option('--forward-insecure-tls', 'do not verify the TLS certificate of the forward target', false)
    .option('--webhook', 'emit signed webhook payloads (deliverable event types only)', false)
    .option('--webhook-secret <secret>', 'signing secret (default: generated, printed on stderr)')
    .option('--webhook-id <id>', 'value of rstream-webhook-id (default: cli_we_<24 hex>)')
    .option('--include-webhook-headers', 'print {"headers":…,"body":…} lines', false)
    .addOption(new Option('-o, --output <format>', 'json: each event indented, for reading; ndjson: one compact object per line, for tools').choices(['json', 'ndjson']).default('json'))
    .option('--retry', 'resubscribe with backoff when the stream drops', true)
    .option('--no-retry', 'exit 1 when the stream drops')
    .option('--retry-interval <ms>', 'first wait before resubscribing (doubles up to 30 s)', positiveInteger, 1000)
    .action(async (flags: EventsFlags) => {
      const target = resolveTarget(flags);
      const watcher = new EventWatcher(target, flags);
      for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(0));
      await watcher.run();
    });
  withExamples(events, [
    'rivulet events --events tunnel.created,tunnel.deleted',
    'rivulet events -o ndjson --tunnel-filter labels.env=prod | jq .type',
    'rivulet events --webhook --forward-to https://hooks.example.com/rivulet',
  ]);
}

class EventWatcher {
  private readonly params: Record<string, unknown>;
  private readonly types: Set<string> | undefined;
  private readonly secret: string | undefined;
  private readonly webhookId: string;
  private readonly forwardTo: URL | undefined;
  /** Deliveries go out one at a time, in event order. */
  private delivery: Promise<void> = Promise.resolve();

  constructor(
    private readonly target: EngineTarget,
    private readonly flags: EventsFlags,
  ) {
    const clients = flags.clientFilter ? parseFilterFlags([flags.clientFilter], 'clients', '--client-filter') : undefined;
    const tunnels = flags.tunnelFilter ? parseFilterFlags([flags.tunnelFilter], 'tunnels', '--tunnel-filter') : undefined;
    this.params = { ...(clients ? { clients } : {}), ...(tunnels ? { tunnels } : {}) };
    this.types = flags.events ? new Set(flags.events) : undefined;
    if (flags.webhook && flags.events) {
      for (const type of flags.events) {
        if (!(DELIVERABLE_TYPES as readonly string[]).includes(type)) throw new UsageError(`"${type}" is not deliverable as a webhook event`);
      }
    }
    if (flags.forwardTo) {
      let url: URL;
      try {
        url = new URL(flags.forwardTo);
      } catch {
        throw new UsageError(`invalid --forward-to URL "${flags.forwardTo}"`);
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError('--forward-to must be an http or https URL');
      this.forwardTo = url;
      if (!flags.webhook) process.stderr.write('warning: forwarding raw watch events; use --webhook for signed webhook payloads\n');
    }
    this.secret = flags.webhook ? (flags.webhookSecret ?? generateWebhookSecret()) : undefined;
    if (flags.webhook && !flags.webhookSecret) process.stderr.write(`Webhook signing secret: ${this.secret}\n`);
    this.webhookId = flags.webhookId ?? newWebhookId();
  }

  /** Subscribes, and resubscribes with backoff unless --no-retry; exits 1 on a fatal end. */
  async run(): Promise<never> {
    let backoff = this.flags.retryInterval;
    for (;;) {
      let received = false;
      const ended = await this.subscribe(() => {
        received = true;
      }).then(
        () => new StreamEnded('the engine closed the event stream', false),
        (error: unknown) => (error instanceof StreamEnded ? error : new StreamEnded((error as Error).message, false)),
      );
      await this.delivery;
      if (ended.fatal || !this.flags.retry) throw new CommandError(`event stream ended: ${ended.message}`);
      if (received) backoff = this.flags.retryInterval;
      process.stderr.write(`event stream ended: ${ended.message}; resubscribing in ${Math.round(backoff / 100) / 10} s\n`);
      await new Promise((resolve) => setTimeout(resolve, backoff));
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  }

  private subscribe(onEvent: () => void): Promise<void> {
    const path = apiPath(this.flags.transport === 'sse' ? '/api/sse' : '/api/websocket', this.params);
    const handle = (json: string): void => {
      onEvent();
      this.handle(json);
    };
    return this.flags.transport === 'sse' ? this.subscribeSse(path, handle) : this.subscribeWebSocket(path, handle);
  }

  private async subscribeWebSocket(path: string, onEvent: (json: string) => void): Promise<void> {
    // Loaded here: the CLI's other commands have no use for ws.
    const { default: WebSocketClient } = await import('ws');
    return new Promise((resolve, reject) => {
      const options = apiTlsOptions(this.target);
      const socket = new WebSocketClient(`wss://${hostPort(this.target)}${path}`, {
        ...options,
        headers: { authorization: `Bearer ${this.target.token}` },
        perMessageDeflate: false,
      } as WebSocket.ClientOptions);
      const silence = watchdog(() => socket.terminate());
      socket.on('ping', () => silence.touch());
      socket.on('message', (data, isBinary) => {
        silence.touch();
        if (!isBinary) onEvent(data.toString());
      });
      socket.once('close', () => silence.stop());
      socket.once('unexpected-response', (_req, res) => {
        readBody(res).then((body) => reject(new StreamEnded(`${res.statusCode}: ${apiErrorMessage(body)}`, res.statusCode! >= 400 && res.statusCode! < 500)), reject);
      });
      socket.once('error', (error) => reject(new StreamEnded(error.message, false)));
      socket.once('close', (code, reason) => resolve(void (code !== 1000 && process.stderr.write(`websocket closed: ${code} ${reason.toString()}\n`))));
    });
  }

  private subscribeSse(path: string, onEvent: (json: string) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const req = https.request(
        { ...apiTlsOptions(this.target), path, headers: { authorization: `Bearer ${this.target.token}`, accept: 'text/event-stream' }, agent: false },
        (res) => {
          if (res.statusCode !== 200) {
            readBody(res).then((body) => reject(new StreamEnded(`${res.statusCode}: ${apiErrorMessage(body)}`, res.statusCode! >= 400 && res.statusCode! < 500)), reject);
            return;
          }
          let pending = '';
          const silence = watchdog(() => res.destroy(new Error(`no data for ${SILENCE_LIMIT_MS / 1000} s`)));
          res.once('close', () => silence.stop());
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            silence.touch();
            pending += chunk;
            let end: number;
            while ((end = pending.indexOf('\n\n')) >= 0) {
              const block = pending.slice(0, end);
              pending = pending.slice(end + 2);
              const data = block
                .split('\n')
                .filter((line) => line.startsWith('data:'))
                .map((line) => line.slice(5).replace(/^ /, ''))
                .join('\n');
              if (data) onEvent(data);
            }
          });
          res.on('end', () => resolve());
          res.on('error', (error) => reject(new StreamEnded(error.message, false)));
        },
      );
      req.on('error', (error) => reject(new StreamEnded(error.message, false)));
      req.end();
    });
  }

  private handle(json: string): void {
    let event: Record<string, unknown>;
    try {
      event = JSON.parse(json) as Record<string, unknown>;
    } catch {
      return;
    }
    const type = String(event.type);
    if (this.types && !this.types.has(type)) return;
    if (this.secret && !(DELIVERABLE_TYPES as readonly string[]).includes(type)) return;
    const body = this.secret ? webhookBody(event) : JSON.stringify(event);
    const headersNow = (): Record<string, string> => (this.secret ? webhookHeaders(this.secret, this.webhookId, body) : { 'content-type': 'application/json' });
    const printed = this.flags.includeWebhookHeaders ? { headers: headersNow(), body: JSON.parse(body) as unknown } : JSON.parse(body);
    process.stdout.write(`${JSON.stringify(printed, null, this.flags.output === 'json' ? 2 : undefined)}\n`);
    if (this.forwardTo) {
      const url = this.forwardTo;
      // Signed when sent, not when received: a delivery that waited behind others still has a fresh t=.
      this.delivery = this.delivery.then(() => this.forward(url, body, headersNow()));
    }
  }

  /** POST one event; redirects only to the same host; a non-2xx answer ends the command. */
  private async forward(url: URL, body: string, headers: Record<string, string>, redirects = 0): Promise<void> {
    const reply = await post(url, body, headers, this.flags.forwardInsecureTls);
    if ([301, 302, 303, 307, 308].includes(reply.status) && reply.location && redirects < MAX_REDIRECTS) {
      const next = new URL(reply.location, url);
      if (next.host === url.host) return this.forward(next, body, headers, redirects + 1);
    }
    if (reply.status < 200 || reply.status >= 300) {
      process.stderr.write(`forward failed (${reply.status}): ${reply.body.slice(0, 4096)}\n`);
      process.exit(1);
    }
  }
}

function post(url: URL, body: string, headers: Record<string, string>, insecure: boolean): Promise<{ status: number; location: string | undefined; body: string }> {
  return new Promise((resolve) => {
    const client = url.protocol === 'https:' ? https : http;
    const req = client.request(url, { method: 'POST', headers: { ...headers, 'content-length': Buffer.byteLength(body) }, rejectUnauthorized: !insecure, agent: false }, (res) => {
      readBody(res).then((text) => resolve({ status: res.statusCode!, location: res.headers.location, body: text }));
    });
    req.setTimeout(FORWARD_TIMEOUT_MS, () => req.destroy(new Error(`no answer in ${FORWARD_TIMEOUT_MS / 1000} s`)));
    req.on('error', (error) => {
      process.stderr.write(`forward failed: ${error.message}\n`);
      process.exit(1);
    });
    req.end(body);
  });
}

function readBody(res: http.IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      if (text.length < 65536) text += chunk;
    });
    res.on('end', () => resolve(text));
    res.on('error', () => resolve(text));
  });
}

function hostPort(target: EngineTarget): string {
  return `${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}`;
}
