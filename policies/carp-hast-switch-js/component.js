// The component's entry: the core port bound to the host that asks havend.
import { exportPolicy } from './haven_policy.js';
import { WasmHost } from './wasm_host.js';
import { CarpHastSwitch } from './app.js';

export const handler = exportPolicy(CarpHastSwitch, new WasmHost());
