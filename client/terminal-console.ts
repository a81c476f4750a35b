import { clearLine, createInterface, cursorTo } from 'node:readline';
import { createInterface as createPromptInterface } from 'node:readline/promises';
import { Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { ApiError, failureText, login } from './terminal/auth-api.ts';
import { createCommands } from './terminal/commands.ts';
import { errorLines } from './terminal/format.ts';
import { ConsoleSession } from './terminal/session.ts';

const USAGE = `Sinergi terminal console: raise, receive, acknowledge and work incidents by hand.

usage: npm run console -- --user <username> [--url <server>] [--password <password>]

  --url       the Sinergi server (default http://localhost:8080)
  --user      your username, e.g. operator.permisan or dispatch.nusakambangan
  --password  your password; otherwise SINERGI_PASSWORD, otherwise asked for on the terminal
  --help      this text

Type "help" at the prompt for the commands.`;

function readOptions() {
  try {
    const { values } = parseArgs({
      options: {
        url: { type: 'string', default: 'http://localhost:8080' },
        user: { type: 'string' },
        password: { type: 'string' },
        help: { type: 'boolean', default: false },
      },
    });
    if (values.help) {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    }
    if (!values.user) throw new Error('--user is required');
    return { ...values, user: values.user };
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}\n`);
    process.exit(2);
  }
}

/** Reads a password on the terminal without echoing it. */
async function askPassword(username: string): Promise<string> {
  if (!process.stdin.isTTY) {
    process.stderr.write('No password: pass --password, set SINERGI_PASSWORD, or run in a terminal.\n');
    process.exit(2);
  }
  process.stdout.write(`Password for ${username}: `);
  const muted = new Writable({ write: (_chunk, _encoding, done) => done() });
  const prompt = createPromptInterface({ input: process.stdin, output: muted, terminal: true });
  prompt.on('SIGINT', () => process.exit(130));
  try {
    return await prompt.question('');
  } finally {
    prompt.close();
    process.stdout.write('\n');
  }
}

const options = readOptions();
const password = options.password ?? process.env.SINERGI_PASSWORD ?? (await askPassword(options.user));
const account = await login(options.url, options.user, password).catch((error: unknown) => {
  const lines = error instanceof ApiError ? errorLines(error.body) : [`cannot log in: ${failureText(error)}`];
  process.stderr.write(`${lines.join('\n')}\n`);
  process.exit(1);
});

const interactive = process.stdin.isTTY === true;
const prompt = createInterface({ input: process.stdin, output: process.stdout, terminal: interactive });
prompt.setPrompt(`${account.user.username}> `);
let promptOpen = true;
let stopping: 'quit' | 'fatal' | undefined;

const showPrompt = () => {
  if (interactive && promptOpen) prompt.prompt(true);
};

/** Prints above the prompt line, so news arriving while someone types does not garble it. */
function print(text: string) {
  if (interactive && promptOpen) {
    clearLine(process.stdout, 0);
    cursorTo(process.stdout, 0);
  }
  process.stdout.write(`${text}\n`);
  showPrompt();
}

const session = new ConsoleSession({
  url: options.url,
  login: account,
  print,
  onFatal(error) {
    for (const text of errorLines(error)) print(text);
    stopping = 'fatal';
    process.exitCode = 1;
    prompt.close();
  },
});

const run = createCommands(session, print, () => {
  stopping = 'quit';
  prompt.close();
});

// One command at a time, in the order typed, and none before the first sync: piped scripts stay predictable.
let queue = session.ready.then(showPrompt);
prompt.on('line', (line) => {
  queue = queue
    .then(() => (stopping ? undefined : run(line)))
    .catch((error: unknown) => print(`error: ${(error as Error).message}`))
    .finally(showPrompt);
});
prompt.on('SIGINT', () => prompt.close());
prompt.on('close', () => {
  promptOpen = false;
  // At the end of input the commands already typed still get their answers; a dead session has none to give.
  void (stopping === 'fatal' ? Promise.resolve() : queue).then(() => session.close());
});
