/**
 * The listener of bench/soak.ts's first phase, run with `--expose-gc`: a
 * Link listener on 127.0.0.1 (port 0) under a Packeter and a Messaging
 * (identity `listener`, the library's defaults; `maxConnections: 20000`
 * when the Link has that option), through the public API only. It answers
 * a message whose data starts with `echo:` with the same data (TTL 0: only
 * while the sender is connected), so a legitimate peer can check the
 * listener still exchanges; everything else is only counted.
 *
 * Reports `listening {url}`. Commands: `sample` → `sample {mem, counters}`
 * (after a full collection), `exit`.
 * @module
 */
import { Message, Messaging, Packeter } from '../../lib/index.js';
import { linkWithMaxConnections } from './link-options.js';
import { gcMemory, onCommand, report, type Msg } from './proc.js';

gcMemory(); // refuses to run without --expose-gc
const ECHO = Buffer.from('echo:');
const { link, maxConnections } = linkWithMaxConnections(20_000);
const messaging = new Messaging('listener', new Packeter(link));
const counters = {
  link_connects: 0,
  link_disconnects: 0,
  accept_failed: 0,
  identified: 0,
  disconnects: 0,
  messages: 0,
  echoes: 0,
  protocol_errors: 0,
  drops: 0,
};
const errorCodes: Record<string, number> = {};
link.on('connect', () => counters.link_connects++);
link.on('disconnect', () => counters.link_disconnects++);
link.on('acceptFailed', () => counters.accept_failed++);
messaging.on('connect', () => counters.identified++);
messaging.on('disconnect', () => counters.disconnects++);
messaging.on('drop', () => counters.drops++);
messaging.on('protocolError', (_connId, error) => {
  counters.protocol_errors++;
  errorCodes[error.code] = (errorCodes[error.code] ?? 0) + 1;
});
messaging.on('message', (_connId, from, message) => {
  counters.messages++;
  if (message.data.length >= ECHO.length && message.data.subarray(0, ECHO.length).equals(ECHO)) {
    counters.echoes++;
    messaging.send(from, new Message(Buffer.from(message.data), { ttl: 0 }));
  }
});
const url = await link.addListener('tcp://127.0.0.1:0');

onCommand(async (m: Msg) => {
  if (m.t === 'sample') {
    report({ t: 'sample', mem: gcMemory(), counters: { ...counters }, error_codes: { ...errorCodes } });
  } else if (m.t === 'exit') {
    await Promise.race([messaging.close(), new Promise((r) => setTimeout(r, 3000))]);
    process.exit(0);
  }
});
report({ t: 'listening', url, max_connections_option: maxConnections });
