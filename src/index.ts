// gatehouse as a library: start a gateway from a config in your own process.
//
//   import { loadConfigFile, startGateway } from 'gatehouse';
//   const gateway = await startGateway({ config: loadConfigFile('gatehouse.yaml') });
//   // … later
//   await gateway.close();
//
// The CLI (`gatehouse start`) does the same, plus signals, the config file watcher and --workers.
import './boot/tick-shape.js';

export { startGateway, type Gateway, type GatewayOptions } from './gateway.js';
export { loadConfigFile, loadConfigText } from './config/load.js';
export type { GatehouseConfig } from './config/types.js';
export { ConfigError, GatehouseError, formatConfigIssue, type ConfigIssue, type GatehouseErrorCode } from './errors.js';
