import { suite as uvuSuite, test as uvuTest, type Callback, type Test } from 'uvu';

/**
 * uvu's `suite` and `test`, whose before hooks say why they threw. uvu swallows a before hook's
 * error (its runner returns from a `finally`): the suite's tests never run and nothing says why.
 * The runner counts such tests as failed (test/run.ts); this prints the cause beside them.
 */
export function suite<T = Record<string, any>>(title?: string, context?: T): Test<T> {
  return withLoudBefore(uvuSuite(title, context), title);
}

export const test: Test<Record<string, any>> = withLoudBefore(uvuTest, undefined);

function withLoudBefore<T>(t: Test<T>, title: string | undefined): Test<T> {
  const before = t.before;
  const loud = ((hook: Callback<T>) =>
    before(async (context) => {
      try {
        await hook(context);
      } catch (err) {
        const why = err instanceof Error ? (err.stack ?? err.message) : String(err);
        process.stderr.write(`\n  ✘ before hook${title ? ` of '${title}'` : ''} threw: ${why}\n`);
        throw err;
      }
    })) as Test<T>['before'];
  // A before.each hook runs inside each test's own try: uvu reports its error as that test's.
  loud.each = before.each;
  t.before = loud;
  return t;
}
