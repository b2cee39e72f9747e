import type http from 'node:http';
import type { TestEngine } from './engine.js';
import { waitFor } from './engine.js';
import { spawnCli, type RunningCli } from './process.js';

/**
 * `rivulet forward <target> -o json <flags>` as a child process against `t`, resolved once its tunnel is
 * live in the engine's registry; its tunnel id is in the `online` log line.
 */
export async function startForward(t: TestEngine, token: string, target: number, flags: string[] = []): Promise<RunningCli & { tunnelId: string }> {
  const env = {
    RSTREAM_ENGINE: `127.0.0.1:${t.engine.publicPort}`,
    RSTREAM_AUTHENTICATION_TOKEN: token,
    NODE_EXTRA_CA_CERTS: t.certs.caCert,
    RSTREAM_CONFIG: '/nonexistent/rstream.yaml',
  };
  const agent = spawnCli(['forward', String(target), '-o', 'json', ...flags], { env });
  const online = await waitForOnline(agent);
  const tunnelId = String(online.tunnel_id);
  await waitFor(() => t.engine.control.registry.tunnels.has(tunnelId));
  return Object.assign(agent, { tunnelId });
}

async function waitForOnline(agent: RunningCli): Promise<Record<string, unknown>> {
  await waitFor(() => agent.logs.some((line) => line.status === 'online'), 15_000).catch(() => {
    throw new Error(`forward did not come online: ${JSON.stringify(agent.logs)} ${agent.stderr()}`);
  });
  return agent.logs.find((line) => line.status === 'online')!;
}

/** The end of a file's tests: its agents stopped (SIGTERM, as an operator would), its upstream closed, its engine stopped. */
export async function stopForwardsAndEngine(t: TestEngine, upstream: http.Server, agents: RunningCli[]): Promise<void> {
  for (const agent of agents) {
    agent.child.kill('SIGTERM');
    await agent.exited;
  }
  upstream.closeAllConnections();
  upstream.close();
  await t.stop();
}
