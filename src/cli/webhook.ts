import crypto from 'node:crypto';

/**
 * Webhook payloads and signatures as rstream's SDK verifiers expect them (docs/cli.md#rivulet-events): the body's keys
 * in a fixed order, `rstream-signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>." + body>` keyed by the UTF-8
 * bytes of the whole secret string.
 */

export const DELIVERABLE_TYPES = ['client.created', 'client.deleted', 'tunnel.created', 'tunnel.deleted'] as const;

const BODY_KEYS = ['id', 'type', 'created_at', 'user_id', 'workspace_id', 'project_id', 'cluster_id', 'object'] as const;

export function generateWebhookSecret(): string {
  return `whsec_${crypto.randomBytes(32).toString('base64url')}`;
}

export function newWebhookId(): string {
  return `cli_we_${crypto.randomBytes(12).toString('hex')}`;
}

/** The webhook body of a watch event: fixed key order, empty optional keys omitted, id and created_at filled in. */
export function webhookBody(event: Record<string, unknown>): string {
  const filled: Record<string, unknown> = {
    ...event,
    id: event.id || `evt_cli_${crypto.randomBytes(12).toString('hex')}`,
    created_at: event.created_at || new Date().toISOString(),
  };
  const body: Record<string, unknown> = {};
  for (const key of BODY_KEYS) {
    const value = filled[key];
    if (value !== undefined && value !== null && value !== '') body[key] = value;
  }
  return JSON.stringify(body);
}

export function webhookSignature(secret: string, body: string, unixSeconds = Math.floor(Date.now() / 1000)): string {
  const mac = crypto.createHmac('sha256', Buffer.from(secret, 'utf8')).update(`${unixSeconds}.`).update(body).digest('hex');
  return `t=${unixSeconds},v1=${mac}`;
}

/** The five `rstream-*` headers and the content type of one delivery. */
export function webhookHeaders(secret: string, webhookId: string, body: string): Record<string, string> {
  const parsed = JSON.parse(body) as { id: string; type: string };
  return {
    'content-type': 'application/json',
    'rstream-signature': webhookSignature(secret, body),
    'rstream-event-id': parsed.id,
    'rstream-event-type': parsed.type,
    'rstream-webhook-id': webhookId,
    'rstream-delivery-id': `cli_del_${crypto.randomBytes(12).toString('hex')}`,
  };
}
