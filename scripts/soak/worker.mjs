// A soak child: runs one role of one workload (`node worker.mjs <workload> <role> <json args>`).
// The role talks to the orchestrator over Node's fork channel: `control.report(state, data)`
// sends, `control.stopping` turns true when asked to stop; the role then finishes cleanly,
// reports 'stopped' with its counts and returns.
const [workload, role, json] = process.argv.slice(2);
const { roles } = await import(`./workloads/${workload}.mjs`);

const control = {
  stopping: false,
  commands: [],
  report(state, data = {}) {
    process.send?.({ state, ...data });
  },
  violation(detail) {
    process.send?.({ state: 'violation', detail });
  },
};
process.on('message', (msg) => {
  if (msg.cmd === 'stop') control.stopping = true;
  else control.commands.push(msg);
});

const result = await roles[role](JSON.parse(json), control);
control.report('stopped', result ?? {});
process.disconnect?.();
