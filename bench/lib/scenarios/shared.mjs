// The broker and bare oidc-provider shared by the token scenarios of one run (started once, on
// first use, with the same client id and secret at both), and small helpers.
import { log, rand, step } from '../common.mjs';
import { BENCH_CLIENT_ID, checkedToken, registerBenchClient, startBare, startBroker } from '../broker.mjs';

let stack;
export async function sharedStack() {
  if (stack) return stack;
  const client = { clientId: BENCH_CLIENT_ID, clientSecret: rand(32) };
  const bare = await step('token stack: start bare oidc-provider', () => startBare('tok', client));
  const broker = await step('token stack: start broker', () => startBroker('tok'));
  await step('token stack: register the bench client through the admin API', () =>
    registerBenchClient(broker, { secret: client.clientSecret }),
  );
  broker.verification = await checkedToken(broker, client);
  bare.verification = await checkedToken(bare, client);
  if (!broker.verification.residency)
    log('WARNING: broker token has no residency claim (CONTRACT.md: always present)');
  stack = { client, bare, broker };
  return stack;
}

export const hasSharedStack = () => Boolean(stack);

export async function stopSharedStack() {
  if (!stack) return;
  const s = stack;
  stack = undefined;
  await Promise.allSettled([s.broker.proc.stop(), s.bare.proc.stop()]);
}

/** Ratio of the medians, with the worst/best case from the rounds' extremes. */
export function ratio(a, b) {
  if (!a?.median || !b?.median) return null;
  return { median: a.median / b.median, min: a.min / b.max, max: a.max / b.min };
}
