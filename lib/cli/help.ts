const COMMON = `Peer options (listen, send, call, serve, publish, subscribe, status):
  --ident NAME         this peer's identity (required, at most 50 characters)
  --listen URL         accept connections on URL (repeatable); the bound URL is
                       printed on stderr as 'listening on URL' (port 0 = any free port)
  --connect URL        connect to URL, reconnecting with backoff (repeatable)
                       URLs: tcp://HOST:PORT  tls://HOST:PORT  unix:///PATH
                             unix+tls:///PATH  (IPv6: tcp://[::1]:PORT)
                             udp://HOST:PORT: datagrams, unacknowledged (listen
                             receives; send --connect udp://… --to NAME sends to NAME)
  --tls-cert FILE      certificate (PEM) for tls:// and unix+tls:// endpoints;
                       required for TLS listeners, sent by TLS connectors
  --tls-key FILE       private key (PEM) of --tls-cert
  --tls-ca FILE        CA certificate(s) (PEM) peers must chain to; with it,
                       TLS listeners also require client certificates (mutual TLS)
  --storage FILE       SQLite file for persistent messages (kept across runs)
  --timeout SECONDS    time limit of the command (see each command)
  --management-allow NAME
                       serve this peer's management status to peer NAME
                       (repeatable; read it with 'smq status')
  --management-actions NAME
                       let peer NAME also disconnect peers and drop queues
                       here (repeatable; 'smq status --disconnect/--drop-queue')
  -h, --help           show this help`;

const EXIT = `Exit status: 0 success, 1 runtime failure (timeout, connection or TLS
failure, remote error), 2 bad arguments; 130/143 when interrupted.`;

export const HELP: Record<string, string> = {
  status: `Usage: smq status --ident NAME (--listen URL | --connect URL)... --to IDENT
                [--json] [--disconnect PEER | --drop-queue PEER] [options]

Asks peer IDENT for its management status (docs/management.md) and prints it:
listeners, connectors (state, attempts, last error), connections (identity,
address, TLS peer, bytes and messages), queues (length, bytes, in flight, age
of the oldest message), storage size and relay routes. IDENT must serve it to
NAME ('--management-allow NAME' there). The output is the same readable text
on a terminal or not (each table cut at 50 rows); --json prints the whole
status as one JSON object on one line (every list bounded by the peer, 1,000
entries by default, with a '...Truncated' flag).

Options:
  --to IDENT           the peer to ask (required)
  --json               one JSON object instead of the tables
  --disconnect PEER    instead: close IDENT's connection to PEER (it may
                       reconnect); needs '--management-actions NAME' there
  --drop-queue PEER    instead: drop the messages waiting in IDENT's queue
                       for PEER (their senders see them dropped); likewise
  --timeout SECONDS    time limit of the call, connecting included (default 30)

A refusal (NAME not allowed) exits 1 with IDENT's message.

${COMMON}

${EXIT}
`,

  main: `Usage: smq <command> [options]

Command-line peer of snakemq-ts: brokerless, symmetric peer-to-peer messaging,
wire-compatible with Python snakeMQ 1.6. Any peer can listen and connect.

Commands:
  listen      print the messages peers send to this identity
  send        send messages to a peer and wait until they are delivered
  call        call a method of an object served by a peer's RpcServer
  serve       serve an example RPC object (calc) to call with 'smq call'
  publish     publish messages on a subject to this peer's subscribers
  subscribe   subscribe at publishers and print what they publish
  nameserver  run a nameserver: publishers register, subscribers find them
  lookup      ask nameservers which publishers offer a service
  status      show a peer's management status (connections, queues, storage)
  certs       create a CA and certificates for mutual TLS

Run 'smq <command> --help' for a command's options.

Examples:
  smq listen --ident bob --listen tcp://127.0.0.1:4000
  smq send --ident alice --connect tcp://127.0.0.1:4000 --to bob 'hi bob'
  smq serve --ident bob --listen tcp://127.0.0.1:4000 --example calc
  smq call --ident alice --connect tcp://127.0.0.1:4000 --to bob \\
      --object calc --method add --args '[1, 2]'
  smq send --ident alice --connect tcp://127.0.0.1:4000 --to bob \\
      --storage alice.sqlite --count 0       # deliver what alice.sqlite holds for bob
  smq subscribe --ident alice --listen tcp://127.0.0.1:4000 --publisher bob --topic /counter
  smq publish --ident bob --connect tcp://127.0.0.1:4000 --subject /counter \\
      --wait-subscribers 1 one two three
  smq nameserver --listen tcp://127.0.0.1:5557 --no-multicast
  smq subscribe --ident alice --service radar --nameserver tcp://127.0.0.1:5557
  smq publish --ident bob --listen tcp://127.0.0.1:0 --service radar \\
      --nameserver tcp://127.0.0.1:5557 --subject /radar --wait-subscribers 1 one
  smq lookup --nameserver tcp://127.0.0.1:5557 radar
  smq listen --ident bob --listen tcp://127.0.0.1:4000 --management-allow ops
  smq status --ident ops --connect tcp://127.0.0.1:4000 --to bob
  smq certs --out certs bob alice
  smq listen --ident bob --listen tls://127.0.0.1:4443 \\
      --tls-cert certs/bob.pem --tls-key certs/bob-key.pem --tls-ca certs/ca.pem

${EXIT}
`,

  listen: `Usage: smq listen --ident NAME (--listen URL | --connect URL)... [options]

Prints each message received, one line each, on stdout:
  <from>: <data>       data as text when it is valid UTF-8 on one line, else base64
With --json, one JSON object per line:
  {"from", "uuid" (32 hex), "ttl" (seconds or null), "flags", "size" (bytes),
   "data", "encoding" ("utf8" when the bytes are valid UTF-8, else "base64")}
Connections and disconnections of peers are reported on stderr.

Options:
  --count N            exit (0) after N messages; with --timeout, exit 1 if
                       fewer than N arrived in time. A sender sending more than
                       N may see a few extra ones acknowledged but not printed.
  --json               JSON lines output
  Without --count, --timeout is how long to listen (then exit 0); otherwise
  listen until interrupted.

${COMMON}

${EXIT}
`,

  send: `Usage: smq send --ident NAME (--listen URL | --connect URL)... --to IDENT
                [[--base64] MESSAGE... | --count N [--size BYTES]] [options]

Sends each MESSAGE argument (UTF-8 text; use -- before one starting with '-'),
or N generated messages 'msg 0', 'msg 1', ... padded with dots to BYTES, to
the peer IDENT, then waits until every message has left its queue: acknowledged
by peers that support acknowledgements (snakemq-ts), written to the socket for
plain snakeMQ peers.

With --storage FILE, whatever FILE still holds for IDENT from earlier runs
(persistent messages not delivered then) is delivered first.

Deliver what is stored, and nothing new:
  smq send --ident NAME --connect URL --to IDENT --storage FILE --count 0

Re-running a timed-out persistent send with its MESSAGEs or --count sends
them again, beside the stored ones (which are delivered first): use --count 0
to deliver only those. The file does not shrink after delivery (SQLite keeps
the free pages for later messages); delete FILE (and FILE-wal) when it holds
nothing you need.

Options:
  --to IDENT           the receiving peer's identity (required)
  --base64             MESSAGE arguments are base64 (to send any bytes)
  --count N            send N generated messages; --count 0: send nothing new,
                       only deliver what --storage holds for IDENT
  --size BYTES         size of each generated message (at least the text 'msg <i>')
  --ttl SECONDS        how long a message may wait for IDENT to be connected
                       (default: no limit). 0 = only if connected now: the
                       command waits up to 5 s (within --timeout) for IDENT to
                       connect, and fails without sending if it does not
  --persistent         mark messages persistent: with --storage they are stored
                       durably until delivered, and survive this command
  --timeout SECONDS    exit 1 if not everything is delivered by then (persistent
                       messages stay in --storage for the next run)

${COMMON}

Progress is shown on stderr when it is a terminal and many messages are sent
(with --persistent and --storage: how many are stored so far). When the
command ends with messages undelivered (--timeout, Ctrl-C), it says how many
are stored in --storage and how many are not. A first Ctrl-C stores what is
queued, then exits; a second one exits at once.

${EXIT}
`,

  call: `Usage: smq call --ident NAME (--listen URL | --connect URL)... --to IDENT
                --object NAME --method NAME [--args JSON-ARRAY] [options]

Calls NAME.METHOD(...ARGS) on the RpcServer of peer IDENT and prints the
result as JSON on stdout (bytes as base64 strings). A remote exception is
printed on stderr and the exit status is 1.

Options:
  --to IDENT           the serving peer's identity (required)
  --object NAME        the registered object (required)
  --method NAME        the method (required)
  --args JSON          the arguments as a JSON array (default: [])
  --timeout SECONDS    time for the whole call, waiting for the peer included
                       (default: 30)

${COMMON}

${EXIT}
`,

  serve: `Usage: smq serve --ident NAME (--listen URL | --connect URL)... --example NAME [options]

Serves an example object over RPC, to try 'smq call' (or an RpcClient)
against, until interrupted or --timeout (then exit 0). Calls that raise are
reported on stderr.

Examples:
  calc                 add(a, b), subtract(a, b), multiply(a, b), divide(a, b)
                       (divide by 0 raises RangeError), echo(value)

  smq serve --ident bob --listen tcp://127.0.0.1:4000 --example calc
  smq call --ident alice --connect tcp://127.0.0.1:4000 --to bob \\
      --object calc --method add --args '[1, 2]'        # prints 3

Options:
  --example NAME       the object to serve, under that name (repeatable)
  --timeout SECONDS    how long to serve (default: until interrupted)

${COMMON}

${EXIT}
`,

  publish: `Usage: smq publish --ident NAME (--listen URL | --connect URL)... --subject SUBJECT
                [--type TYPE] [[--json] DATA... | --count N [--size BYTES]]
                [--interval SECONDS] [--wait-subscribers K]
                [--service NAME [--alias NAME]...
                 [--nameserver URL... | --announce-to HOST:PORT...]]
                [options]

Publishes each DATA argument (text; use -- before one starting with '-'), or
N generated messages 'msg 0', 'msg 1', ... padded with dots to BYTES, on
SUBJECT to the peers subscribed here (with 'smq subscribe' or a Subscriber)
whose filters match it, then exits (0) once every message was written to
every subscriber connected at that time. Peers that are not subscribed yet
miss what is published before they are: use --wait-subscribers.

Messages have PostTroll's model: subject, type, sender (user@host), time,
version, data.

Options:
  --subject SUBJECT    the subject, e.g. /counter (required; no whitespace)
  --type TYPE          the message type (default: info)
  --json               each DATA argument is a JSON value, published as such
                       (e.g. '{"n": 1}'; a JSON string is published as text)
  --count N            publish N generated messages
  --size BYTES         size of each generated message (at least the text 'msg <i>')
  --interval SECONDS   wait that long between messages
  --wait-subscribers K before publishing, wait until K subscribers are
                       subscribed (with --timeout: exit 1 if they are not in time)
  --timeout SECONDS    time limit of the whole command (exit 1 when reached)

Discovery (subscribers find the publisher by name: 'smq subscribe --service'):
  --service NAME       announce this publisher as NAME: its identity, its bound
                       --listen URLs (needed) and NAME with the aliases
  --alias NAME         another name to be found by (repeatable)
  --nameserver URL     register by RPC at this nameserver's listener (repeatable;
                       renewed every minute and on reconnection; unregistered
                       at exit); no multicast then. Default: SNAKEMQ_NAMESERVERS
  --announce-to HOST:PORT  send the announcements by UDP to a nameserver's UDP
                       port (repeatable; every SNAKEMQ_ANNOUNCE_INTERVAL, 2 s)
  Without --nameserver, --announce-to or SNAKEMQ_NAMESERVERS: UDP multicast
  (SNAKEMQ_MC_GROUP:SNAKEMQ_MC_PORT, 225.0.0.212:21200). --wait-subscribers K
  then waits for K subscribers that found it.

Messages dropped for a subscriber (it left, or was too slow) end the command
with exit 1, saying how many for whom. When stderr is a terminal, subscribers joining and leaving are shown
there too.

${COMMON}

${EXIT}
`,

  subscribe: `Usage: smq subscribe --ident NAME (--listen URL | --connect URL)... --publisher IDENT...
                [--topic FILTER]... [--durable] [--count N] [--json] [options]
       smq subscribe --ident NAME --service NAME... [--nameserver URL]...
                [--topic FILTER]... [--durable] [--count N] [--json] [options]

Subscribes at each publisher IDENT (a peer running 'smq publish' or a
Publisher) and prints each message published on a matching subject, one line
each, on stdout: its PostTroll string form
  pytroll://SUBJECT TYPE SENDER TIME VERSION [MIME DATA]
where text data holding line breaks or control characters is written as a
JSON string (application/json "a\\nb"), and binary data holding control
bytes as 'binary/base64 BASE64' (not a PostTroll mime type: use --json).
With --json, one JSON object per line:
  {"subject", "type", "sender" (user@host), "time" (ISO 8601 with microseconds
   when not 0, UTC: +00:00), "version" (e.g. "v1.01"), "data", "from" (the
   publisher's identity)}
  "data": text as a string, JSON data as the JSON value, binary data as a
  base64 string; "" when the message has no data.

Subscriptions are sent when a publisher connects, and again after each
reconnect. Refused subscriptions (the publisher's limits, a filter it does not
accept) end the command with exit 1. When stderr is a terminal, publishers
connecting and being lost (with --service: found and expired), and confirmed
subscriptions, are shown there.

Options:
  --publisher IDENT    a publisher's identity (repeatable; required without --service)
  --service NAME       instead of --publisher: subscribe at every publisher of
                       service (or alias) NAME that the nameservers know, now
                       or later (repeatable; '' = every service); publishers
                       that expire or unregister are dropped. --listen and
                       --connect are then optional
  --nameserver URL     a nameserver's listener (repeatable; with --service;
                       default: SNAKEMQ_NAMESERVERS; one is needed)
  --topic FILTER       a subject filter (repeatable; default: every subject):
                       a plain prefix of the subject, as in PostTroll
                       ('/counter' matches '/counter', '/counter/x' and
                       '/counterfeit'), or '/'-separated tokens where '*' is
                       one component and a last '>' the rest ('/counter/*')
  --durable            ask the publishers to keep what matches while this
                       peer (--ident) is away, and deliver it when it is back
  --count N            exit (0) after N messages; with --timeout, exit 1 if
                       fewer than N arrived in time
  --json               JSON lines output
  Without --count, subscribe until interrupted (SIGINT, SIGTERM: exit 0) or
  for --timeout (then exit 0).

${COMMON}

${EXIT}
`,

  nameserver: `Usage: smq nameserver [--ident NAME] [--listen URL]... [--no-multicast] [--local-only]
                [--max-age SECONDS] [--udp-port PORT] [--udp-host HOST] [options]

Runs a nameserver (PostTroll's model) until interrupted (SIGINT, SIGTERM:
exit 0) or --timeout. Publishers announce themselves to it by UDP datagram
('smq publish --service NAME', multicast or --announce-to) or register by RPC
('--nameserver URL'); it answers lookups ('smq lookup', 'smq subscribe
--service') and publishes every change on /address/<service>.

On stderr: 'listening on URL' for each listener, 'udp on HOST:PORT' for the
UDP socket (the bound port), then its log, one line each (terminal or not):
  registered IDENT (SERVICES) at ENDPOINTS from SOURCE   (also 'changed')
  expired IDENT (SERVICES)     unregistered IDENT (SERVICES)
  refused SOURCE: WHY          (once a minute per source at most)

Options:
  --ident NAME         its identity (default: nameserver)
  --listen URL         where lookups and registrations come (repeatable;
                       default: tcp://0.0.0.0:5557, PostTroll's nameserver port)
  --no-multicast       do not join the multicast group: only unicast datagrams
                       (--announce-to) and RPC registrations
  --local-only         accept UDP announcements only from this machine
  --max-age SECONDS    drop an entry not announced again within that time
                       (default: 600)
  --udp-port PORT      UDP port of announcements (default: SNAKEMQ_MC_PORT,
                       21200; 0 = any free port, printed)
  --udp-host HOST      IPv4 address the UDP socket binds (default: 0.0.0.0)
  --timeout SECONDS    run that long, then exit 0 (default: until interrupted)
  --tls-cert FILE, --tls-key FILE, --tls-ca FILE   for tls:// listeners
  -h, --help           show this help
  The multicast group is SNAKEMQ_MC_GROUP (225.0.0.212), joined on
  SNAKEMQ_MC_INTERFACE.

${EXIT}
`,

  lookup: `Usage: smq lookup --nameserver URL... [--ident NAME] [--timeout SECONDS] [SERVICE]

Asks the nameservers for the publishers of SERVICE (a name or an alias; none
or '' = every service) and prints each entry as one JSON line on stdout:
  {"identity", "services" (the name, then the aliases), "endpoints" (listener
   URLs), "version", "receivedAt" (ms since the epoch, the nameserver's
   clock), "source" ("udp:ADDR:PORT" or "rpc:IDENT")}
The answers of several nameservers are merged by identity (the newest wins).
Exit 0 once they answered, also with no entry; 1 if none answered in time.

Options:
  --nameserver URL     a nameserver's listener (required, repeatable)
  --ident NAME         this peer's identity (default: smq-lookup-<pid>)
  --timeout SECONDS    how long to wait for an answer (default: 10)
  --tls-cert FILE, --tls-key FILE, --tls-ca FILE   for tls:// nameservers
  -h, --help           show this help

${EXIT}
`,

  certs: `Usage: smq certs --out DIR [--days N] [--force] NAME...

Creates, with the system's openssl, a CA and for each NAME a certificate and
key (CN=NAME, subjectAltName DNS:localhost, IP:127.0.0.1, IP:::1; usable for
both serverAuth and clientAuth), ready for --tls-cert/--tls-key/--tls-ca and
for the Link's TLS options:
  DIR/ca.pem  DIR/ca-key.pem  DIR/NAME.pem  DIR/NAME-key.pem
When DIR already holds ca.pem and ca-key.pem, that CA signs the new
certificates (so peers can be added later). Keys are written with mode 0600.
Meant for development and private deployments: guard ca-key.pem.

Options:
  --out DIR            output directory (created if needed; required)
  --days N             validity in days (default 825)
  --force              overwrite existing NAME.pem / NAME-key.pem
  -h, --help           show this help

${EXIT}
`,
};
