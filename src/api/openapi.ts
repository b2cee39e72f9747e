/**
 * The OpenAPI 3.1 document of the Engine API (docs/engine-api.md), built once at startup. The schemas
 * encode the rules the official clients check: required fields, no nulls, the tunnel properties' enums, Z timestamps.
 */

const READ_ONLY = ['tunnels.resources.read-only'];
const TIMESTAMP = { type: 'string', format: 'date-time', pattern: 'Z$', description: 'ISO-8601 UTC, ending in Z' };
const ID = { type: 'string', pattern: '^[0-9a-f]{24}$' };
const STATUS = { type: 'string', enum: ['online', 'offline'] };
const ref = (name: string): { $ref: string } => ({ $ref: `#/components/schemas/${name}` });

/** A filter value: the value itself, `{"exact": v}` or `{"oneof": [v, …]}`. */
function condition(type: 'string' | 'boolean'): Record<string, unknown> {
  return {
    oneOf: [
      { type },
      { type: 'object', properties: { exact: { type } }, required: ['exact'], additionalProperties: false },
      { type: 'object', properties: { oneof: { type: 'array', items: { type }, minItems: 1 } }, required: ['oneof'], additionalProperties: false },
    ],
  };
}

const LABEL_FILTER = {
  type: 'object',
  description: 'Each key must be present; a string must be equal, null matches any value.',
  additionalProperties: { type: ['string', 'null'] },
};

const SCHEMAS = {
  Client: {
    type: 'object',
    required: ['id', 'status', 'user_id', 'workspace_id', 'project_id'],
    additionalProperties: false,
    properties: {
      id: ID,
      status: STATUS,
      user_id: { type: 'string' },
      workspace_id: { type: 'string', const: 'default' },
      project_id: { type: 'string', const: 'default' },
      agent: { type: 'string' },
      channel: { type: 'string' },
      version: { type: 'string' },
      os: { type: 'string' },
      arch: { type: 'string' },
      protocol_version: { type: 'string' },
    },
  },
  Tunnel: {
    type: 'object',
    required: ['id', 'client_id', 'status', 'user_id', 'workspace_id', 'project_id', 'creation_date', 'type', 'publish'],
    additionalProperties: false,
    properties: {
      id: ID,
      client_id: ID,
      status: STATUS,
      user_id: { type: 'string' },
      workspace_id: { type: 'string', const: 'default' },
      project_id: { type: 'string', const: 'default' },
      creation_date: TIMESTAMP,
      name: { type: 'string' },
      type: { type: 'string', enum: ['bytestream'] },
      publish: { type: 'boolean' },
      protocol: { type: 'string', enum: ['http', 'tls'] },
      labels: { type: 'object', additionalProperties: { type: 'string' } },
      geo_ip: { type: 'array', items: { type: 'string' } },
      trusted_ips: { type: 'array', items: { type: 'string' } },
      host: { type: 'string' },
      hostname: { type: 'string' },
      port: { type: 'integer', minimum: 1, maximum: 65535 },
      tls_mode: { type: 'string', enum: ['terminated', 'passthrough'] },
      tls_alpns: { type: 'array', items: { type: 'string' } },
      tls_min_version: { type: 'string', enum: ['tls1.2', 'tls1.3'] },
      tls_ciphers: { type: 'array', items: { type: 'string' } },
      mtls_auth: { type: 'boolean' },
      http_version: { type: 'string', enum: ['http/1.1', 'h2c'] },
      http_use_tls: { type: 'boolean' },
      upstream_tls: { type: 'boolean' },
      token_auth: { type: 'boolean' },
      rstream_auth: { type: 'boolean' },
      challenge_mode: { type: 'boolean' },
    },
  },
  Event: {
    type: 'object',
    required: ['id', 'type', 'created_at', 'object'],
    additionalProperties: false,
    properties: {
      id: { type: 'string', pattern: '^evt_[0-9a-f]{24}$' },
      type: { type: 'string', enum: ['state.initial', 'client.created', 'client.deleted', 'tunnel.created', 'tunnel.deleted'] },
      created_at: TIMESTAMP,
      object: {
        oneOf: [
          ref('Client'),
          ref('Tunnel'),
          {
            type: 'object',
            required: ['snapshot_at', 'clients', 'tunnels'],
            additionalProperties: false,
            properties: { snapshot_at: TIMESTAMP, clients: { type: 'array', items: ref('Client') }, tunnels: { type: 'array', items: ref('Tunnel') } },
          },
        ],
      },
    },
  },
  ClientFilter: {
    type: 'object',
    additionalProperties: false,
    properties: {
      ...Object.fromEntries(['id', 'status', 'user_id', 'agent', 'channel', 'version', 'os', 'arch', 'protocol_version'].map((key) => [key, condition('string')])),
      labels: LABEL_FILTER,
    },
  },
  TunnelFilter: {
    type: 'object',
    additionalProperties: false,
    properties: {
      ...Object.fromEntries(['id', 'name', 'type', 'status', 'client_id', 'user_id', 'protocol', 'hostname', 'http_version'].map((key) => [key, condition('string')])),
      publish: condition('boolean'),
      labels: LABEL_FILTER,
    },
  },
  ListClientsParams: {
    type: 'object',
    additionalProperties: false,
    properties: { limit: { type: 'integer', minimum: 1 }, filters: ref('ClientFilter') },
  },
  ListTunnelsParams: {
    type: 'object',
    additionalProperties: false,
    properties: { limit: { type: 'integer', minimum: 1 }, filters: ref('TunnelFilter') },
  },
  WatchParams: {
    type: 'object',
    additionalProperties: false,
    properties: { clients: ref('ClientFilter'), tunnels: ref('TunnelFilter') },
  },
  Error: {
    type: 'object',
    required: ['error', 'message'],
    additionalProperties: false,
    properties: {
      error: { type: 'string', enum: ['bad_request', 'unauthorized', 'forbidden', 'not_found', 'method_not_allowed', 'misdirected'] },
      message: { type: 'string' },
    },
  },
  Auth: {
    type: 'object',
    required: ['user_id', 'permissions'],
    additionalProperties: false,
    properties: { user_id: { type: 'string' }, permissions: { type: ['array', 'null'], items: { type: 'string' } } },
  },
};

const errorResponse = (description: string): Record<string, unknown> => ({
  description,
  content: { 'application/json': { schema: ref('Error') } },
});

const RESPONSES = {
  BadRequest: errorResponse('The params query is not valid: the message names the problem.'),
  Unauthorized: errorResponse('No Bearer token, or the token is not valid. Carries WWW-Authenticate: Bearer.'),
  Forbidden: errorResponse('The token is valid but lacks the permission the operation needs.'),
  NotFound: errorResponse('No such object or endpoint.'),
};

const paramsParameter = (schema: string): Record<string, unknown> => ({
  in: 'query',
  name: 'params',
  required: false,
  description: 'URL-encoded JSON.',
  content: { 'application/json': { schema: ref(schema) } },
});

const idParameter = { in: 'path', name: 'id', required: true, schema: { type: 'string' } };
const queryTokenParameter = {
  in: 'query',
  name: 'rstream.token',
  required: false,
  description: 'The token, for clients that cannot send an Authorization header (browsers). Accepted on the event streams only.',
  schema: { type: 'string' },
};

const json = (schema: Record<string, unknown>): Record<string, unknown> => ({ content: { 'application/json': { schema } } });

function protectedGet(operationId: string, summary: string, ok: Record<string, unknown>, parameters: unknown[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    get: {
      operationId,
      summary,
      parameters,
      'x-rstream-permissions': READ_ONLY,
      responses: {
        '200': ok,
        '400': { $ref: '#/components/responses/BadRequest' },
        '401': { $ref: '#/components/responses/Unauthorized' },
        '403': { $ref: '#/components/responses/Forbidden' },
        '404': { $ref: '#/components/responses/NotFound' },
      },
      ...extra,
    },
  };
}

export function buildOpenApiDocument(engineAddress: string): Record<string, unknown> {
  return {
    openapi: '3.1.0',
    info: {
      title: 'rstream Engine API',
      version: '1.0.0',
      description:
        'Read-only view of a Rivulet engine (rstream Community Edition API): the agents connected to it (clients), ' +
        'the tunnels they opened, and live change events over Server-Sent Events or WebSocket.',
    },
    servers: [{ url: 'https://{engine}', variables: { engine: { default: engineAddress } } }],
    security: [{ bearerAuth: [] }],
    paths: {
      '/api/openapi.json': {
        get: {
          operationId: 'getOpenApiDocument',
          summary: 'This document',
          security: [],
          responses: { '200': { description: 'The OpenAPI document', content: { 'application/vnd.oai.openapi+json;version=3.1': { schema: { type: 'object' } } } } },
        },
      },
      '/api/auth': {
        get: {
          operationId: 'getAuth',
          summary: 'The identity of the token',
          responses: { '200': { description: 'The token is valid', ...json(ref('Auth')) }, '401': { $ref: '#/components/responses/Unauthorized' } },
        },
      },
      '/api/clients': protectedGet('listClients', 'Connected clients, oldest first', { description: 'Clients', ...json({ type: 'array', items: ref('Client') }) }, [paramsParameter('ListClientsParams')]),
      '/api/clients/{id}': protectedGet('getClient', 'One client', { description: 'The client', ...json(ref('Client')) }, [idParameter]),
      '/api/tunnels': protectedGet('listTunnels', 'Live tunnels, oldest first', { description: 'Tunnels', ...json({ type: 'array', items: ref('Tunnel') }) }, [paramsParameter('ListTunnelsParams')]),
      '/api/tunnels/{id}': protectedGet('getTunnel', 'One tunnel', { description: 'The tunnel', ...json(ref('Tunnel')) }, [idParameter]),
      '/api/sse': protectedGet(
        'watchSse',
        'Events as Server-Sent Events: state.initial first, then client.* and tunnel.* changes',
        { description: 'One `data: <Event JSON>` line per event; comment lines are keep-alives', content: { 'text/event-stream': { schema: ref('Event') } } },
        [paramsParameter('WatchParams'), queryTokenParameter],
      ),
      '/api/websocket': protectedGet(
        'watchWebSocket',
        'Events over WebSocket: one JSON text frame per event',
        { description: 'Not used: the response is a 101 upgrade' },
        [paramsParameter('WatchParams'), queryTokenParameter],
        { responses: { '101': { description: 'Switching to WebSocket; each text frame is one Event' }, '400': { $ref: '#/components/responses/BadRequest' }, '401': { $ref: '#/components/responses/Unauthorized' }, '403': { $ref: '#/components/responses/Forbidden' } } },
      ),
    },
    components: {
      securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'rstream token' } },
      schemas: SCHEMAS,
      responses: RESPONSES,
    },
  };
}
