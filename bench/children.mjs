// The bench scripts' child processes: every one started is tracked, so it can be stopped
// on its own and all are killed on the way out, whatever happened.
import { spawn } from 'node:child_process';

/** The set of children of one script, and how it starts, stops and kills them. */
export function childProcesses(cwd) {
  const children = new Set();

  /** Registers a child; `child.exited` resolves to its exit code or signal. */
  function track(child) {
    children.add(child);
    child.exited = new Promise((resolve) =>
      child.on('exit', (code, signal) => {
        children.delete(child);
        resolve(code ?? signal);
      }),
    );
    return child;
  }

  /** `node args…` under bash with a raised descriptor limit (`wrap`: a command before node); `exec` keeps the pid. */
  function spawnNode(args, { stdio = ['ignore', 'pipe', 'pipe'], nodeFlags = [], env = {}, wrap = [] } = {}) {
    const script = 'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"';
    const child = spawn('bash', ['-c', script, ...wrap, process.execPath, ...nodeFlags, ...args], {
      cwd,
      stdio,
      env: { ...process.env, PROXYCTL_TOKEN: undefined, ...env },
    });
    return track(child);
  }

  /** `signal`, then SIGKILL if the child is still there after `timeoutMs`. */
  async function stopChild(child, signal = 'SIGTERM', timeoutMs = 15_000) {
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    await child.exited;
    clearTimeout(timer);
  }

  function killAll(signal = 'SIGKILL') {
    for (const c of children) {
      if (c.exitCode !== null || c.signalCode !== null) continue;
      try {
        // An nginx master killed outright leaves its workers listening: it gets SIGTERM, and stops them.
        c.kill(c.nginx ? 'SIGTERM' : signal);
      } catch {
        // already gone
      }
    }
  }

  return { track, spawnNode, stopChild, killAll };
}
