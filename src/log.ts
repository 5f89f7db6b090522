// One root pino logger; every module takes a child: log.child({ mod: 'loader' }).
// JSON to stderr by default (stdout stays clean for command output such as
// `maps dump -o json`); pretty when stderr is a TTY.
import { pino, type Logger } from 'pino';

function make(): Logger {
  const level = process.env.MESHBPF_LOG_LEVEL ?? 'info';
  if (process.stderr.isTTY && process.env.MESHBPF_LOG_JSON !== '1') {
    return pino({ level, transport: { target: 'pino-pretty', options: { destination: 2, colorize: true } } });
  }
  return pino({ level }, pino.destination(2));
}

export let log: Logger = make();

export function setLogLevel(level: string): void {
  log.level = level;
}

export function child(mod: string): Logger {
  return log.child({ mod });
}
