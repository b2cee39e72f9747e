import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface LogLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

export interface RunningCli {
  child: ChildProcess;
  logs: LogLine[];
  stderr(): string;
  /** Resolves with the first log line whose msg matches, or rejects on exit/timeout. */
  waitForLog(msg: string | RegExp, timeoutMs?: number): Promise<LogLine>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `rivulet <args>` as a real child process and parses its JSON log lines. */
export function spawnCli(args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): RunningCli {
  const env = { ...withoutEngineEnv(process.env), ...options.env };
  const child = spawn(process.execPath, [CLI, ...args], { env, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: LogLine[] = [];
  const waiters: Array<() => void> = [];
  let stderr = '';
  let pending = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const line of lines) {
      try {
        logs.push(JSON.parse(line) as LogLine);
      } catch {
        logs.push({ level: 'stdout', msg: line });
      }
    }
    waiters.forEach((wake) => wake());
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      resolve({ code, signal });
      waiters.forEach((wake) => wake());
    }),
  );
  let done = false;
  void exited.then(() => (done = true));
  return {
    child,
    logs,
    stderr: () => stderr,
    exited,
    waitForLog(msg, timeoutMs = 15_000) {
      const matches = (line: LogLine): boolean => (typeof msg === 'string' ? line.msg === msg : msg.test(line.msg));
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no log "${msg}" within ${timeoutMs} ms; stderr: ${stderr}`)), timeoutMs);
        const check = (): void => {
          const found = logs.find(matches);
          if (found) {
            clearTimeout(timer);
            resolve(found);
          } else if (done) {
            clearTimeout(timer);
            reject(new Error(`exited before log "${msg}"; stderr: ${stderr}`));
          }
        };
        waiters.push(check);
        check();
      });
    },
  };
}

/** Runs `rivulet <args>` to completion. */
export async function runCli(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env = { ...withoutEngineEnv(process.env), ...options.env };
  const child = spawn(process.execPath, [CLI, ...args], { env, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  return { code, stdout, stderr };
}

/** The developer's own RSTREAM_ENGINE_* variables must not leak into the engines the tests start. */
function withoutEngineEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([name]) => !name.startsWith('RSTREAM_ENGINE')));
}
