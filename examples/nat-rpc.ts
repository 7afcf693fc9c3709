/**
 * Calling a peer behind NAT — the public peer calls RPC methods on a peer
 * that it cannot reach, over the connection that peer opened.
 *
 * "agent" has no listener at all (think: a machine behind NAT or a firewall);
 * it connects out to "hub" and serves an object. "hub" only listens, and
 * calls the agent's methods like any other peer's: once a connection exists,
 * it does not matter which side dialled. A call made before the agent has
 * connected simply waits for it (within the call's timeout).
 *
 *   npx tsx examples/nat-rpc.ts
 *
 * In an application, import from 'snakemq-ts' instead of '../lib/index.js'.
 */
import { hostname } from 'node:os';
import { Link, Packeter, Messaging, RpcClient, RpcServer } from '../lib/index.js';
import { deadline } from './support/processes.js';

deadline(40_000);
const log = (who: string, text: string) => console.log(`[${who}] ${text}`);

/** What the agent serves. */
class AgentApi {
  describe(): { host: string; pid: number; node: string } {
    return { host: hostname(), pid: process.pid, node: process.version };
  }

  async run(job: string, times: number): Promise<string[]> {
    log('agent', `running ${job} x${times} for the hub`);
    return Array.from({ length: times }, (_, i) => `${job} #${i + 1} done`);
  }
}

// --- hub: public, listens only -------------------------------------------------
const hubLink = new Link();
const hub = new Messaging('hub', new Packeter(hubLink));
const client = new RpcClient(hub, { timeout: 10_000 });
hub.on('connect', (connId, ident) => {
  const info = hubLink.connection(connId)!;
  log('hub', `${ident} connected from ${info.remoteAddress}:${info.remotePort} (it dialled us: side "${info.side}")`);
});
const url = await hubLink.addListener('tcp://127.0.0.1:0');
log('hub', `listening on ${url}`);

const agentApi = client.proxy<AgentApi>('agent', 'agent');
// The agent is not connected yet: the call waits for it.
const described = agentApi.describe();
log('hub', 'called agent.describe(); the agent has not connected yet, so the call waits');

// --- agent: behind NAT, connects out only ----------------------------------------
const agentLink = new Link();
const agent = new Messaging('agent', new Packeter(agentLink));
const server = new RpcServer(agent);
server.register('agent', new AgentApi());
agentLink.addConnector(url);
log('agent', `no listener; connecting out to ${url}`);

// --- the hub calls into the agent over the agent's connection -----------------------
log('hub', `agent.describe() = ${JSON.stringify(await described)}`);
log('hub', `agent.run("backup", 2) = ${JSON.stringify(await agentApi.run('backup', 2))}`);

await client.close();
await server.close();
await Promise.all([agent.close(), hub.close()]);
log('hub', 'closed');
