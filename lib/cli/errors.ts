/** A failure of the `smq` command: what to print on stderr and the exit code. */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number) {
    super(message);
    this.name = new.target.name;
    this.exitCode = exitCode;
  }
}

/** Bad command line (unknown option, missing or invalid value): exit code 2. */
export class UsageError extends CliError {
  /** The command whose help to point at (`smq <command> --help`), if any. */
  readonly command: string | undefined;
  constructor(message: string, command?: string) {
    super(message, 2);
    this.command = command;
  }
}

/** A runtime failure (timeout, refused connection or TLS, remote error…): exit code 1. */
export class Failure extends CliError {
  constructor(message: string) {
    super(message, 1);
  }
}

/** Stopped by a signal (exit 128 + signal number) or a closed stdout (exit 0); nothing more to print. */
export class Stopped extends CliError {
  constructor(exitCode: number) {
    super('', exitCode);
  }
}
