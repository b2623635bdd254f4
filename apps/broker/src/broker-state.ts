import type { BrokerRuntime } from './broker-runtime';

export const BROKER_RUNTIME = Symbol('BROKER_RUNTIME');

/** The runtime plus the process's lifecycle state, shared with controllers. */
export interface BrokerState {
  runtime: BrokerRuntime;
  shuttingDown: boolean;
  /** This process's own listener (`http://127.0.0.1:<port>`), once it listens: the console's API base. */
  localUrl?: string;
}
