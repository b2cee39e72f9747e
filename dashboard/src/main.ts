import { checkToken, fetchEngineInfo, subscribe, type EngineEvent, type EngineInfo, type StatsEvent } from './api.js';
import { Model } from './model.js';
import { RequestLogPanel } from './request-log-view.js';
import { TunnelTable, el, renderClients, renderEngine, renderFeed, renderTotals } from './views.js';

/** The token lives in this tab's sessionStorage only: gone when the tab closes, never sent anywhere but here. */
/**
 * Engine events and stats redraw the page at most this often: with 10,000 tunnels a redraw sorts them
 * all, and a burst of events (agents reconnecting) would otherwise redraw once per event. Sorting,
 * filtering and scrolling redraw the table at once.
 */
const REDRAW_INTERVAL_MS = 250;
const TOKEN_KEY = 'rivulet.dashboard.token';

const root = document.getElementById('app')!;

function showLogin(message?: string): void {
  sessionStorage.removeItem(TOKEN_KEY);
  const input = el('input', { type: 'password', id: 'token', autocomplete: 'off', required: '', 'aria-describedby': 'login-help' });
  const error = el('p', { id: 'login-error', role: 'alert' }, message ?? '');
  const form = el('form', { class: 'login', 'aria-labelledby': 'login-title' },
    el('h1', { id: 'login-title' }, 'Rivulet'),
    el('label', { for: 'token' }, 'Engine token'),
    input,
    el('p', { id: 'login-help', class: 'help' }, 'Any token the Engine API accepts with tunnels.resources.read-only or more. Kept in this tab only.'),
    el('button', { type: 'submit' }, 'Open the dashboard'),
    error,
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    void logIn(input.value.trim());
  });
  root.replaceChildren(form);
  input.focus();
}

async function logIn(token: string): Promise<void> {
  const check = await checkToken(token);
  if (!check.ok) {
    showLogin(check.message);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  showDashboard(token);
}

function showDashboard(token: string): void {
  const model = new Model();
  const totals = el('section', { class: 'totals', 'aria-label': 'Totals' });
  const requestLog = new RequestLogPanel(token);
  const table = new TunnelTable(model, (row) => requestLog.show(row));
  const clients = el('div', { class: 'clients-table' });
  const feed = el('ol', { class: 'feed', 'aria-live': 'polite' });
  const engine = el('div', { class: 'engine' });
  let engineInfo: EngineInfo | undefined;
  void fetchEngineInfo(token).then((info) => {
    engineInfo = info;
    renderEngine(engine, engineInfo);
  });
  const logout = el('button', { type: 'button', class: 'logout' }, 'Log out');
  root.replaceChildren(
    el('header', {}, el('h1', {}, 'Rivulet'), logout),
    totals,
    table.element,
    requestLog.element,
    el('div', { class: 'columns' },
      el('section', { 'aria-labelledby': 'clients-title' }, el('h2', { id: 'clients-title' }, 'Clients'), clients),
      el('section', { 'aria-labelledby': 'feed-title' }, el('h2', { id: 'feed-title' }, 'Events'), feed),
    ),
    el('section', { 'aria-labelledby': 'engine-title' }, el('h2', { id: 'engine-title' }, 'Engine'), engine),
  );
  const render = (): void => {
    renderTotals(totals, model);
    table.render();
    const tunnelsPerClient = new Map<string, number>();
    for (const row of model.rows.values()) tunnelsPerClient.set(row.tunnel.client_id, (tunnelsPerClient.get(row.tunnel.client_id) ?? 0) + 1);
    renderClients(clients, model.clients.values(), (id) => tunnelsPerClient.get(id) ?? 0);
    renderFeed(feed, model.feed);
    if (engineInfo) renderEngine(engine, engineInfo); // its uptime moves
  };
  // A stream the engine refuses (the token expired) sends the operator back to the prompt with its reason.
  const lost = (): void => {
    void checkToken(token).then((check) => {
      if (!check.ok) {
        stop();
        showLogin(check.message);
      }
    });
  };
  let lastRender = 0;
  let pending: number | undefined;
  const redraw = (): void => {
    if (pending !== undefined) return;
    pending = window.setTimeout(() => {
      pending = undefined;
      lastRender = performance.now();
      render();
    }, Math.max(0, lastRender + REDRAW_INTERVAL_MS - performance.now()));
  };
  const onEvent = (data: unknown): void => {
    model.applyEvent(data as EngineEvent);
    redraw();
  };
  const closers = [
    subscribe('/api/sse', token, { message: onEvent }, lost),
    subscribe('/rivulet/v1/stats/stream', token, {
      snapshot: (data) => {
        model.applyStats(data as StatsEvent, true);
        redraw();
      },
      stats: (data) => {
        model.applyStats(data as StatsEvent, false);
        redraw();
      },
    }, lost),
  ];
  const stop = (): void => {
    closers.forEach((close) => close());
    requestLog.stop();
    window.clearTimeout(pending);
  };
  logout.addEventListener('click', () => {
    stop();
    showLogin();
  });
  render();
}

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) void logIn(saved);
else showLogin();
