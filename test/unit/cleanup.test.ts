// The cleanup stack shared by load's rollback, the demo and the benchmarks.
import test from 'ava';
import { CleanupStack } from '../../src/cleanup.js';

test('steps run last-added first, all of them even when one throws, and only once', (t) => {
  const ran: string[] = [];
  const errors: string[] = [];
  const s = new CleanupStack((e) => errors.push((e as Error).message));
  s.add(() => ran.push('topology'));
  s.add(() => {
    throw new Error('unload failed');
  });
  s.add(() => ran.push('maps'));
  s.run();
  t.deepEqual(ran, ['maps', 'topology']);
  t.deepEqual(errors, ['unload failed']);
  s.run();
  t.deepEqual(ran, ['maps', 'topology'], 'a stack that ran is empty');
});

test('forget keeps what was done', (t) => {
  let ran = false;
  const s = new CleanupStack();
  s.add(() => (ran = true));
  s.forget();
  s.run();
  t.false(ran);
});
