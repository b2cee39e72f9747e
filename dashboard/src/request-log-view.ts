import { fetchRequestLog, type LoggedRequest, type RequestLogReply } from './api.js';
import type { TunnelRow } from './model.js';
import { el, formatRate, tunnelName } from './views.js';

/** How often the open log is asked again. */
const POLL_INTERVAL_MS = 2000;
const PROMPT = 'Select a tunnel (click its row, or use the arrow keys in the table) to see its recent requests.';
const OFF =
  'The request log is off on this engine. Set dashboard.request_log: on in its config to keep the last 200 requests of each tunnel (paths without query strings).';

/**
 * The selected tunnel's recent requests (`GET /rivulet/v1/tunnels/<id>/requests`), asked again every
 * two seconds while it is shown; nothing is asked while no tunnel is selected or the log is off.
 */
export class RequestLogPanel {
  readonly element: HTMLElement;
  private readonly heading: HTMLElement;
  private readonly status: HTMLElement;
  private readonly table: HTMLElement;
  private timer: number | undefined;
  /** Bumped on every change of tunnel: an answer for an older one is dropped. */
  private generation = 0;

  constructor(private readonly token: string) {
    this.heading = el('h2', { id: 'request-log-title' }, 'Requests');
    this.status = el('p', { class: 'request-log-status', 'aria-live': 'polite' }, PROMPT);
    this.table = el('div', { class: 'table request-log-table' });
    this.element = el('section', { class: 'request-log', 'aria-labelledby': 'request-log-title' }, this.heading, this.status, this.table);
  }

  show(row: TunnelRow | undefined): void {
    this.stop();
    const generation = this.generation;
    this.table.replaceChildren();
    this.element.dataset.tunnel = row?.tunnel.id ?? '';
    if (!row) {
      this.heading.textContent = 'Requests';
      this.status.textContent = PROMPT;
      return;
    }
    this.heading.textContent = `Requests — ${tunnelName(row)}`;
    this.status.textContent = 'Loading…';
    void this.poll(row.tunnel.id, generation);
  }

  stop(): void {
    this.generation++;
    window.clearTimeout(this.timer);
  }

  private async poll(tunnelId: string, generation: number): Promise<void> {
    const reply = await fetchRequestLog(this.token, tunnelId);
    if (generation !== this.generation) return;
    this.render(reply);
    // Off stays off until a restart, and a deleted tunnel's log is gone with it: no point asking again.
    if ((reply.ok && !reply.enabled) || (!reply.ok && reply.status === 404)) return;
    this.timer = window.setTimeout(() => void this.poll(tunnelId, generation), POLL_INTERVAL_MS);
  }

  private render(reply: RequestLogReply): void {
    this.element.dataset.state = !reply.ok ? 'error' : reply.enabled ? 'on' : 'off';
    if (!reply.ok) {
      // A gone tunnel keeps the requests last shown.
      this.status.textContent = reply.status === 404 ? 'This tunnel is gone; its log went with it.' : `The log cannot be read: ${reply.message}`;
      return;
    }
    if (!reply.enabled) {
      this.status.textContent = OFF;
      return;
    }
    const { requests } = reply;
    this.status.textContent = requests.length === 0 ? 'No requests yet.' : `The last ${requests.length} requests, newest first.`;
    this.table.replaceChildren(
      el('table', {},
        el('thead', {}, el('tr', {}, ...['Time', 'Method', 'Path', 'Status', 'Duration', 'Bytes', 'Client', 'Worker'].map((title) => el('th', { scope: 'col' }, title)))),
        el('tbody', {}, ...requests.map(requestRow)),
      ),
    );
  }
}

function requestRow(request: LoggedRequest): HTMLElement {
  const status = request.status === null ? '—' : String(request.status);
  const notes = [request.origin === 'edge' ? 'edge' : '', request.aborted ? 'cut' : ''].filter(Boolean).join(', ');
  return el('tr', { 'data-status': status },
    el('td', {}, el('time', { datetime: request.time }, new Date(request.time).toLocaleTimeString())),
    el('td', {}, request.method),
    el('td', { class: 'path' }, request.path),
    el('td', { class: request.status !== null && request.status >= 400 ? 'bad' : '' }, notes ? `${status} (${notes})` : status),
    el('td', {}, `${request.duration_ms < 10 ? request.duration_ms.toFixed(1) : Math.round(request.duration_ms)} ms`),
    el('td', {}, formatRate(request.bytes, 'B')),
    el('td', {}, request.client_ip ?? '—'),
    el('td', {}, String(request.worker)),
  );
}
