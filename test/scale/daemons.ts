/**
 * Throwaway daemons for the scale tests: a one-node Slurm cluster (munged + slurmctld + slurmd)
 * and a redis-server, each in its own temp dir on loopback ports. Every start returns either a
 * handle whose stop() ends every process it started, or the reason it could not start (with the
 * tail of the logs), so a test can skip visibly.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';

export function which(bin: string): string | undefined {
  const r = spawnSync('bash', ['-c', `command -v ${bin}`], { encoding: 'utf8' });
  if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  for (const d of ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin', '/sbin']) if (fs.existsSync(path.join(d, bin))) return path.join(d, bin);
  return undefined;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function tail(file: string, lines = 15): string {
  try {
    return fs.readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

async function until(cond: () => boolean | Promise<boolean>, ms: number, step = 200): Promise<boolean> {
  const t0 = Date.now();
  while (Date.now() - t0 < ms) {
    if (await cond()) return true;
    await sleep(step);
  }
  return false;
}

async function stopChild(child: ChildProcess | undefined, ms = 5000): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), ms);
  await gone;
  clearTimeout(t);
}

export interface SlurmCluster {
  env: NodeJS.ProcessEnv;
  dir: string;
  partition: string;
  cpus: number;
  stop(): Promise<void>;
}

/** A one-node Slurm cluster on localhost, or the reason it cannot start here. */
export async function startSlurm(dir: string): Promise<{ cluster?: SlurmCluster; reason?: string }> {
  const bins = ['munged', 'slurmctld', 'slurmd', 'sbatch', 'squeue', 'scontrol', 'scancel'];
  const paths: Record<string, string> = {};
  for (const b of bins) {
    const p = which(b);
    if (!p) return { reason: `${b} is not installed (apt-get install -y slurm-wlm munge)` };
    paths[b] = p;
  }
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return { reason: 'the test cluster runs its daemons as root (SlurmUser=root); this process is not root' };
  for (const d of ['munge', 'state', 'spool', 'log']) fs.mkdirSync(path.join(dir, d), { recursive: true, mode: 0o700 });
  fs.chmodSync(path.join(dir, 'munge'), 0o755);
  const key = path.join(dir, 'munge', 'munge.key');
  fs.writeFileSync(key, require('crypto').randomBytes(1024), { mode: 0o400 });
  const sock = path.join(dir, 'munge', 'munge.sock');
  const children: ChildProcess[] = [];
  const logs = path.join(dir, 'log');
  const conf = path.join(dir, 'slurm.conf');
  const env = { ...process.env, SLURM_CONF: conf };
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    spawnSync(paths.scancel, ['--full', '--quiet', '-u', 'root'], { env, timeout: 10_000 });
    spawnSync(paths.scontrol, ['shutdown'], { env, timeout: 10_000 });
    for (const c of children.reverse()) await stopChild(c);
  };
  const fail = async (what: string, log: string) => {
    const reason = `${what}\n--- ${path.basename(log)} (last lines) ---\n${tail(log)}`;
    await stop();
    return { reason };
  };
  const spawnLogged = (bin: string, args: string[], name: string) => {
    const out = fs.openSync(path.join(logs, `${name}.out`), 'a');
    const c = spawn(bin, args, { env, stdio: ['ignore', out, out] });
    fs.closeSync(out);
    children.push(c);
    return c;
  };

  spawnLogged(paths.munged, ['-F', '-f', `--socket=${sock}`, `--key-file=${key}`, `--log-file=${path.join(logs, 'munged.log')}`, `--pid-file=${path.join(dir, 'munge', 'munged.pid')}`, `--seed-file=${path.join(dir, 'munge', 'seed')}`], 'munged');
  if (!(await until(() => fs.existsSync(sock), 10_000))) return fail('munged did not create its socket', path.join(logs, 'munged.out'));

  // The node as slurmd sees it (CPUs, memory), declared with a little memory to spare.
  let cpus = 1;
  let mem = 1024;
  try {
    const c = execFileSync(paths.slurmd, ['-C'], { env, encoding: 'utf8', timeout: 10_000 });
    cpus = Number(/CPUs=(\d+)/.exec(c)?.[1] ?? 1);
    mem = Math.max(256, Math.floor(Number(/RealMemory=(\d+)/.exec(c)?.[1] ?? 1024) * 0.9));
  } catch (e) {
    return fail(`slurmd -C failed: ${(e as Error).message}`, path.join(logs, 'munged.log'));
  }
  const [ctldPort, dPort] = [await freePort(), await freePort()];
  const partition = 'memqtest';
  fs.writeFileSync(
    conf,
    [
      'ClusterName=memqtest',
      'SlurmctldHost=localhost(127.0.0.1)',
      `SlurmctldPort=${ctldPort}`,
      `SlurmdPort=${dPort}`,
      'SlurmUser=root',
      'SlurmdUser=root',
      'AuthType=auth/munge',
      'CredType=cred/munge',
      `AuthInfo=socket=${sock}`,
      `StateSaveLocation=${path.join(dir, 'state')}`,
      `SlurmdSpoolDir=${path.join(dir, 'spool')}`,
      `SlurmctldPidFile=${path.join(dir, 'slurmctld.pid')}`,
      `SlurmdPidFile=${path.join(dir, 'slurmd.pid')}`,
      `SlurmctldLogFile=${path.join(logs, 'slurmctld.log')}`,
      `SlurmdLogFile=${path.join(logs, 'slurmd.log')}`,
      'ProctrackType=proctrack/linuxproc',
      'TaskPlugin=task/none',
      'JobAcctGatherType=jobacct_gather/none',
      'AccountingStorageType=accounting_storage/none',
      'JobCompType=jobcomp/none',
      'SelectType=select/cons_tres',
      'SelectTypeParameters=CR_Core',
      'SchedulerType=sched/backfill',
      'SchedulerParameters=sched_interval=2',
      'MpiDefault=none',
      'ReturnToService=2',
      'MinJobAge=300',
      'KillWait=5',
      `NodeName=localhost NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} State=UNKNOWN`,
      `PartitionName=${partition} Nodes=localhost Default=YES MaxTime=INFINITE State=UP`,
      '',
    ].join('\n'),
  );
  const ctld = spawnLogged(paths.slurmctld, ['-D', '-i', '-f', conf], 'slurmctld');
  await sleep(1000);
  if (ctld.exitCode !== null) return fail(`slurmctld exited with code ${ctld.exitCode}`, path.join(logs, 'slurmctld.log'));
  const d = spawnLogged(paths.slurmd, ['-D', '-N', 'localhost', '-f', conf], 'slurmd');
  const idle = await until(() => {
    if (d.exitCode !== null) return true;
    const r = spawnSync(which('sinfo') ?? 'sinfo', ['-h', '-N', '-o', '%T'], { env, encoding: 'utf8', timeout: 5000 });
    return r.status === 0 && /idle|mixed/.test(r.stdout);
  }, 30_000, 500);
  if (d.exitCode !== null) return fail(`slurmd exited with code ${d.exitCode}`, path.join(logs, 'slurmd.log'));
  if (!idle) return fail('the node did not become idle within 30 s', path.join(logs, 'slurmctld.log'));
  return { cluster: { env, dir, partition, cpus, stop } };
}

export interface RedisServer {
  port: number;
  url: string;
  dir: string;
  restart(): Promise<void>;
  kill(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** A redis-server on a free loopback port with its data in dir (appendonly, fsync always), or the reason it cannot start. */
export async function startRedis(dir: string): Promise<{ server?: RedisServer; reason?: string }> {
  const bin = which('redis-server');
  if (!bin) return { reason: 'redis-server is not installed (apt-get install -y redis-server)' };
  fs.mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const log = path.join(dir, 'redis.log');
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawn(
      bin,
      ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', '', '--logfile', log, '--daemonize', 'no'],
      { stdio: 'ignore' },
    );
    const ok = await until(async () => {
      if (child!.exitCode !== null) return true;
      return new Promise<boolean>((resolve) => {
        const s = net.connect(port, '127.0.0.1');
        s.once('connect', () => {
          s.write('PING\r\n');
          s.once('data', (d) => {
            s.destroy();
            resolve(String(d).startsWith('+PONG'));
          });
        });
        s.once('error', () => resolve(false));
      });
    }, 10_000, 100);
    if (!ok || child.exitCode !== null) throw new Error(`redis-server did not start on port ${port}\n--- redis.log ---\n${tail(log)}`);
  };
  const stop = async () => stopChild(child);
  const kill = async () => {
    if (!child || child.exitCode !== null) return;
    const gone = new Promise<void>((r) => child!.once('exit', () => r()));
    child.kill('SIGKILL');
    await gone;
  };
  try {
    await start();
  } catch (e) {
    await stop();
    return { reason: (e as Error).message };
  }
  return {
    server: {
      port,
      url: `redis://127.0.0.1:${port}`,
      dir,
      start,
      stop,
      kill,
      async restart() {
        await kill();
        await start();
      },
    },
  };
}
