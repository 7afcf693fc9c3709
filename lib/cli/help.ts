const COMMON = `Peer options (listen, send, call, serve, publish, subscribe):
  --ident NAME         this peer's identity (required, at most 50 characters)
  --listen URL         accept connections on URL (repeatable); the bound URL is
                       printed on stderr as 'listening on URL' (port 0 = any free port)
  --connect URL        connect to URL, reconnecting with backoff (repeatable)
                       URLs: tcp://HOST:PORT  tls://HOST:PORT  unix:///PATH
                             unix+tls:///PATH  (IPv6: tcp://[::1]:PORT)
  --tls-cert FILE      certificate (PEM) for tls:// and unix+tls:// endpoints;
                       required for TLS listeners, sent by TLS connectors
  --tls-key FILE       private key (PEM) of --tls-cert
  --tls-ca FILE        CA certificate(s) (PEM) peers must chain to; with it,
                       TLS listeners also require client certificates (mutual TLS)
  --storage FILE       SQLite file for persistent messages (kept across runs)
  --timeout SECONDS    time limit of the command (see each command)
  -h, --help           show this help`;

const EXIT = `Exit status: 0 success, 1 runtime failure (timeout, connection or TLS
failure, remote error), 2 bad arguments; 130/143 when interrupted.`;

export const HELP: Record<string, string> = {
  main: `Usage: smq <command> [options]

Command-line peer of snakemq-ts: brokerless, symmetric peer-to-peer messaging,
wire-compatible with Python snakeMQ 1.6. Any peer can listen and connect.

Commands:
  listen    print the messages peers send to this identity
  send      send messages to a peer and wait until they are delivered
  call      call a method of an object served by a peer's RpcServer
  serve     serve an example RPC object (calc) to call with 'smq call'
  publish   publish messages on a subject to this peer's subscribers
  subscribe subscribe at publishers and print what they publish
  certs     create a CA and certificates for mutual TLS

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
                [--interval SECONDS] [--wait-subscribers K] [options]

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

Messages dropped for a subscriber (it left, or was too slow) end the command
with exit 1, saying how many for whom. When stderr is a terminal, subscribers joining and leaving are shown
there too.

${COMMON}

${EXIT}
`,

  subscribe: `Usage: smq subscribe --ident NAME (--listen URL | --connect URL)... --publisher IDENT...
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
connecting and being lost, and confirmed subscriptions, are shown there.

Options:
  --publisher IDENT    a publisher's identity (required, repeatable)
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
