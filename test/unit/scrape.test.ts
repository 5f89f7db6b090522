// A /metrics scrape reads each kernel thing once: the maps are counted once
// (entries and capacity come from one walk) and the cgroup tree is walked only
// when the attach cgroup is not where it was last time.
import test from 'ava';
import { mkdtempSync, rmSync, statSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentMetrics } from '../../src/agent/metrics.js';
import type { Agent } from '../../src/agent/agent.js';
import { cachedCgroupPathById } from '../../src/loader/preflight.js';

test('one scrape counts the maps once and reports both entries and capacity', async (t) => {
  let walks = 0;
  const agent = {
    stats: () => undefined,
    occupancy: () => {
      walks++;
      return { mb_sockets: { entries: 3, capacity: 1024 }, mb_endpoints: { entries: 7, capacity: 2048 } };
    },
    inspect: () => ({ sockops: { attached: true }, skMsg: { attached: true } }),
  } as unknown as Agent;
  const m = new AgentMetrics(agent);
  const text = await m.registry.metrics();
  t.is(walks, 1);
  t.regex(text, /meshbpf_map_entries\{map="mb_endpoints"\} 7/);
  t.regex(text, /meshbpf_map_capacity\{map="mb_endpoints"\} 2048/);
  t.regex(text, /meshbpf_programs_attached 1/);
  await m.registry.metrics();
  t.is(walks, 2, 'one walk per scrape, not cached across scrapes');
});

test('the cgroup path for an id is walked for once, then confirmed with a stat; a moved cgroup is walked for again', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mbt-cg-'));
  try {
    const a = join(dir, 'a');
    mkdirSync(a);
    const id = BigInt(statSync(a).ino);
    let walks = 0;
    let where = a;
    const walk = (want: bigint) => {
      walks++;
      return want === id ? where : undefined;
    };
    t.is(cachedCgroupPathById(id, walk), a);
    t.is(cachedCgroupPathById(id, walk), a);
    t.is(walks, 1);
    rmSync(a, { recursive: true });
    where = join(dir, 'gone');
    t.is(cachedCgroupPathById(id, walk), where, 'a path that no longer has that inode is walked for again');
    t.is(walks, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
