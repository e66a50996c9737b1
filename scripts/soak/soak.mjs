#!/usr/bin/env node
// `npm run soak -- --minutes N [--seed S] [--only queue,mutex,...] [--json FILE]`
//
// Runs every structure at once across processes for N minutes while a chaos loop SIGKILLs
// random processes and SIGSTOPs others for a random while (past every stall timeout) before
// SIGCONTing them. The run is cut into epochs: during an epoch workloads run and chaos strikes;
// at its end chaos stops, every workload drains and checks its exact invariants (nothing lost
// beyond what the documented rules allow, nothing duplicated, reordered or torn, counters
// exact), and the long-lived "survivor" processes report their memory and descriptors. It prints
// a summary and exits non-zero on any violation.
//
// A workload is a module in ./workloads/ exporting { name, start(ctx), finish(ctx), roles }:
// `roles` run in child processes (./worker.mjs), `start` and `finish` in this one.
import { fork } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const WORKLOADS = ['queue', 'mutex', 'channel', 'map', 'topic'];

function parseArgs(argv) {
  const out = { minutes: 1, seed: Date.now() % 2 ** 31, only: WORKLOADS, json: undefined, epochSeconds: undefined };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i];
    const value = argv[i + 1];
    if (key === '--minutes') out.minutes = Number(value);
    else if (key === '--seed') out.seed = Number(value);
    else if (key === '--only') out.only = value.split(',');
    else if (key === '--json') out.json = value;
    else if (key === '--epoch') out.epochSeconds = Number(value);
    else throw new Error(`unknown option ${key} (use --minutes N, --seed S, --only ${WORKLOADS.join(',')}, --epoch SECONDS, --json FILE)`);
    i++;
  }
  if (!(out.minutes > 0)) throw new Error('--minutes must be a positive number');
  for (const w of out.only) if (!WORKLOADS.includes(w)) throw new Error(`unknown workload ${w}`);
  // Epochs of 20 s (shorter in short runs so that even one minute checks several times).
  out.epochSeconds ??= Math.min(20, Math.max(5, (out.minutes * 60) / 4));
  return out;
}

/** A small deterministic PRNG (mulberry32), so a failing run can be replayed with --seed. */
function rng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)), pick: (list) => list[Math.floor(next() * list.length)] };
}

function procStatus(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN) / 1024;
    const fds = fs.readdirSync(`/proc/${pid}/fd`).length;
    return { rssMiB: Math.round(rss * 10) / 10, fds };
  } catch {
    return undefined;
  }
}

class Proc {
  constructor(ctx, workload, role, args, { chaos }) {
    this.workload = workload;
    this.role = role;
    this.chaos = chaos;
    this.paused = false;
    this.killedByChaos = false;
    this.inbox = [];
    this.waiting = [];
    this.child = fork(path.join(here, 'worker.mjs'), [workload, role, JSON.stringify(args)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, INTERPROCESS_SOAK_RUN: ctx.run },
    });
    this.pid = this.child.pid;
    this.child.on('message', (msg) => {
      if (msg.state === 'violation') ctx.violation(workload, `${role} ${this.pid}: ${msg.detail}`);
      const i = this.waiting.findIndex((w) => w.state === msg.state);
      if (i >= 0) this.waiting.splice(i, 1)[0].resolve(msg);
      else this.inbox.push(msg);
    });
    this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) => resolve({ code, signal })));
    this.exited.then(({ code, signal }) => {
      this.dead = true;
      for (const w of this.waiting.splice(0)) w.reject(new Error(`${workload}/${role} ${this.pid} exited (${code ?? signal}) before '${w.state}'`));
      if (!this.killedByChaos && !this.stopping && code !== 0) ctx.violation(workload, `${role} ${this.pid} died on its own (${code ?? signal})`);
    });
  }

  next(state, ms = 60_000) {
    const i = this.inbox.findIndex((m) => m.state === state);
    if (i >= 0) return Promise.resolve(this.inbox.splice(i, 1)[0]);
    if (this.dead) return Promise.reject(new Error(`${this.workload}/${this.role} ${this.pid} is gone, no '${state}'`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`watchdog: ${this.workload}/${this.role} ${this.pid} sent no '${state}' within ${ms} ms`)), ms);
      this.waiting.push({ state, resolve: (m) => (clearTimeout(timer), resolve(m)), reject: (e) => (clearTimeout(timer), reject(e)) });
    });
  }

  send(msg) {
    if (!this.dead) this.child.send(msg);
  }

  /** Asks the process to finish its work and exit; resolves with its 'stopped' report. */
  async stop(ms) {
    this.stopping = true;
    if (this.paused) this.resume();
    this.send({ cmd: 'stop' });
    const report = await this.next('stopped', ms);
    await this.exited;
    return report;
  }

  resume() {
    if (!this.paused) return;
    this.paused = false;
    try {
      process.kill(this.pid, 'SIGCONT');
    } catch {}
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const random = rng(opts.seed);
  const startedAt = Date.now();
  const endAt = startedAt + opts.minutes * 60_000;
  const summary = {
    seed: opts.seed,
    minutes: opts.minutes,
    epochs: 0,
    kills: 0,
    pauses: 0,
    pausedMs: 0,
    workloads: {},
    violations: [],
    samples: [],
  };
  const procs = new Set();
  const ctx = {
    run: `soak-${process.pid}`,
    random,
    chaosOn: false,
    spawn(workload, role, args, options = { chaos: true }) {
      const proc = new Proc(ctx, workload, role, args, options);
      procs.add(proc);
      proc.exited.then(() => procs.delete(proc));
      return proc;
    },
    violation(workload, detail) {
      summary.violations.push(`${workload}: ${detail}`);
      console.log(`VIOLATION ${workload}: ${detail}`);
    },
    add(workload, counts) {
      const into = (summary.workloads[workload] ??= {});
      for (const [k, v] of Object.entries(counts)) into[k] = (into[k] ?? 0) + v;
    },
    /** Figures that are running totals already (a structure's own counters). */
    set(workload, values) {
      Object.assign((summary.workloads[workload] ??= {}), values);
    },
  };
  const workloads = [];
  for (const name of opts.only) workloads.push(await import(`./workloads/${name}.mjs`));
  console.log(`soak: ${opts.minutes} min, epochs of ${opts.epochSeconds} s, seed ${opts.seed}, workloads ${opts.only.join(', ')}`);

  // Chaos: every 50-400 ms, SIGKILL (then the workload respawns the role) or SIGSTOP for
  // 50 ms - 2.5 s (longer than the stall timeouts the workloads use) a random eligible process.
  const chaos = async () => {
    while (ctx.chaosOn) {
      await new Promise((r) => setTimeout(r, random.int(50, 400)));
      if (!ctx.chaosOn) break;
      const eligible = [...procs].filter((p) => !p.dead && !p.paused && !p.stopping);
      if (eligible.length === 0) continue;
      const victim = random.pick(eligible);
      if (victim.chaos === 'kill' && random.next() < 0.5) {
        victim.killedByChaos = true;
        summary.kills++;
        try {
          process.kill(victim.pid, 'SIGKILL');
        } catch {}
        const w = workloads.find((m) => m.name === victim.workload);
        victim.exited.then(() => {
          if (ctx.chaosOn) w.respawn?.(ctx, victim);
        });
      } else if (victim.chaos === 'kill' || victim.chaos === 'pause') {
        victim.paused = true;
        summary.pauses++;
        const ms = random.int(50, 2500);
        summary.pausedMs += ms;
        try {
          process.kill(victim.pid, 'SIGSTOP');
        } catch {}
        setTimeout(() => victim.resume(), ms);
      }
    }
  };

  let epoch = 0;
  while (Date.now() < endAt) {
    for (const w of workloads) await w.start(ctx, epoch);
    // Timed from when every process is up (starting them takes seconds on a busy machine), and
    // never shorter than a few seconds of chaos.
    const epochEnd = Math.max(Date.now() + 3000, Math.min(endAt, Date.now() + opts.epochSeconds * 1000));
    ctx.chaosOn = true;
    const chaosDone = chaos();
    while (Date.now() < epochEnd) await new Promise((r) => setTimeout(r, Math.min(500, epochEnd - Date.now())));
    ctx.chaosOn = false;
    await chaosDone;
    for (const p of procs) p.resume();
    for (const w of workloads) {
      try {
        await w.finish(ctx, epoch);
      } catch (err) {
        ctx.violation(w.name, `epoch ${epoch} check failed: ${err.stack ?? err}`);
      }
    }
    const survivors = {};
    for (const p of procs) if (p.chaos !== 'kill' && !p.dead) survivors[`${p.workload}/${p.role}${p.label ?? ''}`] = procStatus(p.pid);
    survivors.orchestrator = procStatus(process.pid);
    summary.samples.push({ atSeconds: Math.round((Date.now() - startedAt) / 1000), survivors });
    summary.epochs = ++epoch;
    const ops = Object.entries(summary.workloads).map(([k, v]) => `${k} ${v.operations ?? 0}`).join(', ');
    console.log(`epoch ${epoch}: ${Math.round((Date.now() - startedAt) / 1000)} s, kills ${summary.kills}, pauses ${summary.pauses}, operations: ${ops}, violations ${summary.violations.length}`);
  }
  for (const w of workloads) await w.close?.(ctx);
  for (const p of procs) {
    p.stopping = true;
    p.resume();
    p.child.kill('SIGKILL');
  }

  console.log('\n== soak summary ==');
  console.log(`duration ${((Date.now() - startedAt) / 60000).toFixed(1)} min, ${summary.epochs} epochs, seed ${summary.seed}`);
  console.log(`chaos: ${summary.kills} SIGKILLs, ${summary.pauses} SIGSTOP/SIGCONT pauses (${(summary.pausedMs / 1000).toFixed(0)} s stopped in all)`);
  for (const [name, counts] of Object.entries(summary.workloads)) {
    console.log(`${name}: ${Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  }
  console.log('survivors, memory and descriptors over time:');
  const keys = [...new Set(summary.samples.flatMap((s) => Object.keys(s.survivors)))];
  for (const key of keys) {
    const series = summary.samples.map((s) => s.survivors[key]).filter(Boolean);
    console.log(`  ${key}: RSS ${series.map((s) => s.rssMiB).join(' ')} MiB; fds ${series.map((s) => s.fds).join(' ')}`);
  }
  console.log(`violations: ${summary.violations.length}`);
  for (const v of summary.violations.slice(0, 20)) console.log(`  ${v}`);
  if (opts.json !== undefined) fs.writeFileSync(opts.json, JSON.stringify(summary, null, 2));
  process.exit(summary.violations.length === 0 ? 0 : 1);
}

main().catch((err) => {
  console.error(err);
  process.exit(2);
});
