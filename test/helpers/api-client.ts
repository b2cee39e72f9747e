import https from 'node:https';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

export interface ApiReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: () => unknown;
  /** The request went out on a kept-alive connection. */
  reused: boolean;
}

/** One Engine API request over TLS to the engine's public port (SNI localhost, Host as given). */
export function apiRequest(
  port: number,
  ca: Buffer,
  path: string,
  options: { token?: string; method?: string; headers?: Record<string, string>; agent?: https.Agent } = {},
): Promise<ApiReply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { host: `localhost:${port}`, ...options.headers };
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    const req = https.request({ host: '127.0.0.1', port, servername: 'localhost', ca, path, method: options.method ?? 'GET', headers, agent: options.agent ?? false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text, json: () => JSON.parse(text), reused: req.reusedSocket }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Validates API objects against the components.schemas of the engine's own OpenAPI document. */
export function schemaValidator(document: { components: { schemas: Record<string, unknown> } }): (schema: string, value: unknown) => void {
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  (addFormats as unknown as (ajv: Ajv2020) => void)(ajv);
  ajv.addSchema({ $id: 'engine-api', components: document.components });
  return (schema, value) => {
    const validate = ajv.getSchema(`engine-api#/components/schemas/${schema}`)!;
    if (!validate(value)) throw new Error(`${schema} invalid: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(value)}`);
  };
}
