import type { ApiClient, EngineInfo } from './api.js';
import { requestTotal, type FeedEntry, type Model, type TunnelRow } from './model.js';

/** Every text goes in as textContent: nothing from the engine is parsed as HTML. */
export function el<K extends keyof HTMLElementTagNameMap>(tag: K, attributes: Record<string, string> = {}, ...children: Array<Node | string>): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  element.append(...children);
  return element;
}

export function formatRate(value: number, unit: string): string {
  if (value >= 1e9) return `${(value / 1e9).toFixed(1)} G${unit}`;
  if (value >= 1e6) return `${(value / 1e6).toFixed(1)} M${unit}`;
  if (value >= 1e3) return `${(value / 1e3).toFixed(1)} k${unit}`;
  return `${value < 10 && value > 0 ? value.toFixed(1) : Math.round(value)} ${unit}`;
}

export function age(since: string): string {
  const seconds = Math.max(0, (Date.now() - Date.parse(since)) / 1000);
  if (seconds < 60) return `${Math.floor(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h`;
  return `${Math.floor(seconds / 86400)} d`;
}

/** An SVG polyline of the samples, scaled to its own maximum. */
function sparkline(samples: number[], label: string): SVGSVGElement {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 300 40');
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('class', 'sparkline');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  const max = Math.max(1, ...samples);
  const offset = 300 - samples.length;
  const points = samples.map((value, index) => `${offset + index},${(40 - (value / max) * 38 - 1).toFixed(1)}`).join(' ');
  const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
  line.setAttribute('points', points);
  svg.append(line);
  return svg;
}

export function renderTotals(container: HTMLElement, model: Model): void {
  const totals = model.totals();
  const tile = (name: string, value: string, key: string, extra?: Node): HTMLElement =>
    el('div', { class: 'tile', 'data-total': key }, el('span', { class: 'tile-name' }, name), el('span', { class: 'tile-value' }, value), ...(extra ? [extra] : []));
  container.replaceChildren(
    tile('Clients', String(totals.clients), 'clients'),
    tile('Tunnels', String(totals.tunnels), 'tunnels'),
    tile('Open streams', String(totals.streams), 'streams'),
    tile('Requests', formatRate(totals.requestsPerSecond, 'req/s'), 'requests', sparkline(model.requestsHistory, 'requests per second, last 5 minutes')),
    tile('Traffic', formatRate(totals.bytesPerSecond, 'B/s'), 'bytes', sparkline(model.bytesHistory, 'bytes per second, last 5 minutes')),
  );
}

type SortKey = 'name' | 'protocol' | 'client' | 'age' | 'rps' | 'in' | 'out' | 'streams' | 'errors4' | 'errors5';

const COLUMNS: Array<{ key: SortKey; title: string }> = [
  { key: 'name', title: 'Tunnel' },
  { key: 'protocol', title: 'Protocol' },
  { key: 'client', title: 'Client' },
  { key: 'age', title: 'Age' },
  { key: 'rps', title: 'Req/s' },
  { key: 'in', title: 'In/s' },
  { key: 'out', title: 'Out/s' },
  { key: 'streams', title: 'Streams' },
  { key: 'errors4', title: '4xx' },
  { key: 'errors5', title: '5xx' },
];

const ROW_HEIGHT = 32;
/** Rows drawn beyond the visible ones, so a fast scroll does not show gaps. */
const OVERSCAN = 10;

export function tunnelName(row: TunnelRow): string {
  return row.tunnel.hostname ?? row.tunnel.name ?? row.tunnel.id;
}

function sortValue(row: TunnelRow, key: SortKey): string | number {
  switch (key) {
    case 'name':
      return tunnelName(row);
    case 'protocol':
      return row.tunnel.protocol ?? row.tunnel.type;
    case 'client':
      return row.tunnel.client_id;
    case 'age':
      return -Date.parse(row.tunnel.creation_date);
    case 'rps':
      return row.requestsPerSecond;
    case 'in':
      return row.bytesInPerSecond;
    case 'out':
      return row.bytesOutPerSecond;
    case 'streams':
      return row.figures?.streams ?? 0;
    case 'errors4':
      return row.figures?.requests['4xx'] ?? 0;
    case 'errors5':
      return row.figures?.requests['5xx'] ?? 0;
  }
}

/**
 * The tunnels table: sortable by any column, filtered by text (name, id, client, `key=value` labels),
 * virtualised (only the rows in view exist in the DOM), so 10,000 tunnels cost what 40 do. One row can
 * be selected, by a click or with the arrow keys while the table has focus; rows are redrawn all the
 * time, so the selection is the table's (aria-activedescendant), not a focused row.
 */
export class TunnelTable {
  readonly element: HTMLElement;
  private readonly viewport: HTMLElement;
  private readonly spacer: HTMLElement;
  private readonly body: HTMLElement;
  private readonly count: HTMLElement;
  private sortKey: SortKey = 'name';
  private descending = false;
  private filter = '';
  private visible: TunnelRow[] = [];
  private selectedId: string | undefined;

  constructor(
    private readonly model: Model,
    private readonly onSelect: (row: TunnelRow | undefined) => void,
  ) {
    const search = el('input', { type: 'search', placeholder: 'Filter: name, id, client, label=value', 'aria-label': 'Filter tunnels', id: 'tunnel-filter' });
    search.addEventListener('input', () => {
      this.filter = search.value.trim().toLowerCase();
      this.render();
    });
    const header = el('div', { class: 'row header', role: 'row' });
    for (const column of COLUMNS) {
      const button = el('button', { type: 'button', 'data-sort': column.key }, column.title);
      button.addEventListener('click', () => {
        this.descending = this.sortKey === column.key ? !this.descending : column.key !== 'name' && column.key !== 'protocol' && column.key !== 'client';
        this.sortKey = column.key;
        this.render();
      });
      header.append(el('div', { role: 'columnheader', class: `cell ${column.key}` }, button));
    }
    this.count = el('span', { class: 'count', 'aria-live': 'polite' });
    this.body = el('div', { class: 'rows', role: 'rowgroup' });
    this.spacer = el('div', { class: 'spacer' }, this.body);
    this.viewport = el('div', { class: 'viewport', tabindex: '0', 'aria-label': 'Tunnels' }, this.spacer);
    this.viewport.addEventListener('scroll', () => requestAnimationFrame(() => this.drawRows()));
    this.viewport.addEventListener('keydown', (event) => this.onKey(event));
    this.body.addEventListener('click', (event) => {
      const target = event.target as HTMLElement;
      const row = target.closest<HTMLElement>('.row[data-tunnel]');
      if (row && !target.closest('a')) this.select(row.dataset.tunnel);
    });
    this.element = el('section', { class: 'tunnels', 'aria-labelledby': 'tunnels-title' },
      el('div', { class: 'section-head' }, el('h2', { id: 'tunnels-title' }, 'Tunnels'), this.count, search),
      el('div', { class: 'table', role: 'table', 'aria-label': 'Tunnels' }, el('div', { role: 'rowgroup' }, header), this.viewport),
    );
  }

  render(): void {
    const rows = [...this.model.rows.values()].filter((row) => this.matches(row));
    const direction = this.descending ? -1 : 1;
    rows.sort((a, b) => {
      const left = sortValue(a, this.sortKey);
      const right = sortValue(b, this.sortKey);
      return (left < right ? -1 : left > right ? 1 : 0) * direction || tunnelName(a).localeCompare(tunnelName(b));
    });
    this.visible = rows;
    this.count.textContent = `${rows.length} of ${this.model.rows.size}`;
    this.spacer.style.height = `${rows.length * ROW_HEIGHT}px`;
    for (const button of this.element.querySelectorAll<HTMLButtonElement>('button[data-sort]')) {
      const sorted = button.dataset.sort === this.sortKey;
      button.parentElement!.setAttribute('aria-sort', sorted ? (this.descending ? 'descending' : 'ascending') : 'none');
    }
    this.drawRows();
  }

  private select(tunnelId: string | undefined): void {
    if (tunnelId === this.selectedId) return;
    this.selectedId = tunnelId;
    if (tunnelId) this.viewport.setAttribute('aria-activedescendant', `row-${tunnelId}`);
    else this.viewport.removeAttribute('aria-activedescendant');
    this.drawRows();
    this.onSelect(tunnelId === undefined ? undefined : this.model.rows.get(tunnelId));
  }

  /** Up and down move the selection (from the first row when none is selected), Escape clears it. */
  private onKey(event: KeyboardEvent): void {
    if (event.key === 'Escape') {
      this.select(undefined);
      return;
    }
    if (event.key !== 'ArrowDown' && event.key !== 'ArrowUp') return;
    event.preventDefault();
    if (this.visible.length === 0) return;
    const at = this.visible.findIndex((row) => row.tunnel.id === this.selectedId);
    const next = at < 0 ? 0 : Math.min(this.visible.length - 1, Math.max(0, at + (event.key === 'ArrowDown' ? 1 : -1)));
    const top = next * ROW_HEIGHT;
    if (top < this.viewport.scrollTop) this.viewport.scrollTop = top;
    else if (top + ROW_HEIGHT > this.viewport.scrollTop + this.viewport.clientHeight) this.viewport.scrollTop = top + ROW_HEIGHT - this.viewport.clientHeight;
    this.select(this.visible[next]!.tunnel.id);
  }

  private matches(row: TunnelRow): boolean {
    if (!this.filter) return true;
    const labels = Object.entries(row.tunnel.labels ?? {}).map(([key, value]) => `${key}=${value}`.toLowerCase());
    return [tunnelName(row), row.tunnel.id, row.tunnel.client_id].some((text) => text.toLowerCase().includes(this.filter)) || labels.some((label) => label.includes(this.filter));
  }

  private drawRows(): void {
    const first = Math.max(0, Math.floor(this.viewport.scrollTop / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(this.visible.length, Math.ceil((this.viewport.scrollTop + this.viewport.clientHeight) / ROW_HEIGHT) + OVERSCAN);
    this.body.style.transform = `translateY(${first * ROW_HEIGHT}px)`;
    this.body.replaceChildren(...this.visible.slice(first, last).map((row) => this.rowElement(row)));
  }

  private rowElement(row: TunnelRow): HTMLElement {
    const { tunnel, figures } = row;
    const name = tunnel.hostname && tunnel.publish ? el('a', { href: `https://${tunnel.hostname}${location.port ? `:${location.port}` : ''}/`, target: '_blank', rel: 'noopener noreferrer' }, tunnel.hostname) : tunnelName(row);
    const labels = Object.entries(tunnel.labels ?? {}).map(([key, value]) => el('span', { class: 'label' }, `${key}=${value}`));
    const cells: Array<[SortKey, Array<Node | string>]> = [
      ['name', [name, ...labels]],
      ['protocol', [`${tunnel.protocol ?? tunnel.type}${tunnel.publish ? '' : ' · private'}`]],
      ['client', [tunnel.client_id.slice(0, 12)]],
      ['age', [age(tunnel.creation_date)]],
      ['rps', [formatRate(row.requestsPerSecond, '')]],
      ['in', [formatRate(row.bytesInPerSecond, 'B')]],
      ['out', [formatRate(row.bytesOutPerSecond, 'B')]],
      ['streams', [String(figures?.streams ?? 0)]],
      ['errors4', [String(figures?.requests['4xx'] ?? 0)]],
      ['errors5', [String(figures?.requests['5xx'] ?? 0)]],
    ];
    const selected = tunnel.id === this.selectedId;
    const element = el('div', {
      class: selected ? 'row selected' : 'row',
      role: 'row',
      id: `row-${tunnel.id}`,
      'aria-selected': String(selected),
      'data-tunnel': tunnel.id,
      'data-requests': String(figures ? requestTotal(figures) : 0),
    });
    for (const [key, content] of cells) element.append(el('div', { role: 'cell', class: `cell ${key}` }, ...content));
    return element;
  }
}

export function renderClients(container: HTMLElement, clients: Iterable<ApiClient>, tunnelsOf: (clientId: string) => number): void {
  const rows = [...clients].map((client) =>
    el('tr', { 'data-client': client.id },
      el('td', {}, client.id.slice(0, 12)),
      el('td', {}, client.user_id),
      el('td', {}, [client.agent, client.version].filter(Boolean).join(' ') || '—'),
      el('td', {}, [client.os, client.arch].filter(Boolean).join('/') || '—'),
      el('td', {}, String(tunnelsOf(client.id))),
    ),
  );
  container.replaceChildren(el('table', {}, el('thead', {}, el('tr', {}, ...['Client', 'User', 'Agent', 'Platform', 'Tunnels'].map((title) => el('th', { scope: 'col' }, title)))), el('tbody', {}, ...rows)));
}

/** A certificate this close to expiry is flagged on the engine panel. */
const EXPIRY_WARNING_DAYS = 14;

export function renderEngine(container: HTMLElement, info: EngineInfo | undefined): void {
  if (!info) {
    container.replaceChildren(el('p', {}, 'Engine details are unavailable.'));
    return;
  }
  const daysLeft = Math.floor((Date.parse(info.certificate.not_after) - Date.now()) / 86_400_000);
  const expiry = el('dd', { 'data-expiry-days': String(daysLeft) }, `${new Date(info.certificate.not_after).toLocaleDateString()} (${daysLeft} days)`);
  if (daysLeft < EXPIRY_WARNING_DAYS) expiry.append(el('strong', { class: 'warning', role: 'alert' }, daysLeft < 0 ? ' expired' : ' renew soon'));
  const fact = (name: string, value: HTMLElement | string): HTMLElement[] => [el('dt', {}, name), typeof value === 'string' ? el('dd', {}, value) : value];
  container.replaceChildren(
    el('dl', { class: 'engine-facts' },
      ...fact('Version', `${info.version} (Node ${info.node})`),
      ...fact('Up', age(info.started_at)),
      ...fact('Workers', `${info.workers}, ${info.listener_strategy}`),
      ...fact('Certificate', `${info.certificate.subject}; ${info.certificate.subject_alt_name}`),
      ...fact('Expires', expiry),
    ),
  );
}

export function renderFeed(container: HTMLElement, feed: FeedEntry[]): void {
  container.replaceChildren(
    ...feed.map((entry) =>
      el('li', { 'data-event': entry.type }, el('time', { datetime: entry.time }, new Date(entry.time).toLocaleTimeString()), ' ', el('span', { class: 'event-type' }, entry.type), ' ', entry.subject),
    ),
  );
}
