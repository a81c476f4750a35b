import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { CreateUserRequest, ResetPasswordRequest, UpdateUserRequest, Username } from '../../shared/auth.ts';
import { DomainError, fieldIssues } from '../../shared/errors.ts';
import { roles } from '../../shared/roles.ts';
import { createUserService, type UserService } from '../domain/user-service.ts';
import { revocationPublisher } from '../storage/revocations.channel.ts';
import { createUserRepository } from '../storage/users.repository.ts';
import { openToolRuntime, runTool, type ToolRuntime, UsageError } from './tool-runtime.ts';

const USAGE = `Usage: npm run users -- <command> [options]

Commands:
  add <username> --role <role> --unit <unitId> [--name "Display Name"] [--password <pw> | --password -]
  list
  disable <username>
  enable <username>
  reset-password <username> [--password <pw> | --password -]

Without --password, a strong random password is generated and printed once. With --password -, the first
line of standard input is the password: unlike a command-line argument, no other user sees it in ps.
Roles: ${roles.join(', ')}. Units: the ids in the topology file (TOPOLOGY_FILE).
The store is found as the server finds it: REDIS_URL, or the embedded Redis under DATA_DIR.`;

const optionSpec = {
  role: { type: 'string' },
  unit: { type: 'string' },
  name: { type: 'string' },
  password: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

type OptionName = Exclude<keyof typeof optionSpec, 'help'>;
type Options = Partial<Record<OptionName, string>>;

interface Command {
  takesUsername: boolean;
  options: OptionName[];
  /** Validates the arguments without touching the store; returns the work to do on it. */
  prepare(username: string, options: Options): (users: UserService) => Promise<string>;
}

// Field names in the shared schemas, as the person typed them on the command line.
const flagFor: Record<string, string> = {
  username: '<username>',
  displayName: '--name',
  password: '--password',
  role: '--role',
  unitId: '--unit',
};

function parse<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const given = (value ?? {}) as Record<string, unknown>;
  const issues = fieldIssues(result.error).map((i) =>
    // zod's wording for an absent field ("expected string, received undefined") reads badly for a flag.
    typeof value === 'object' && given[i.path] === undefined ? { ...i, message: 'required' } : i,
  );
  throw new DomainError('validation_failed', `Invalid ${what}`, { issues });
}

const LookedUp = z.object({ username: Username });

function parseUsername(raw: string): string {
  return parse(LookedUp, { username: raw }, 'username').username;
}

function generatePassword(): string {
  // 144 random bits, well past the shared NewPassword minimum.
  return randomBytes(18).toString('base64url');
}

const commands: Record<string, Command> = {
  add: {
    takesUsername: true,
    options: ['role', 'unit', 'name', 'password'],
    prepare(username, options) {
      const request = parse(
        CreateUserRequest,
        {
          username,
          displayName: options.name ?? username,
          password: options.password ?? generatePassword(),
          role: options.role,
          unitId: options.unit,
        },
        'user',
      );
      return async (users) => {
        const user = await users.create(request);
        const lines = [`Created user "${user.username}" (${user.role} at ${user.unitId}).`];
        if (options.password === undefined) lines.push(`Password, shown only this once: ${request.password}`);
        return lines.join('\n');
      };
    },
  },

  list: {
    takesUsername: false,
    options: [],
    prepare: () => async (users) => {
      const rows = (await users.list()).map((u) => [u.username, u.role, u.unitId, u.disabled ? 'yes' : 'no']);
      if (rows.length === 0) return 'No users yet.';
      return table(['USERNAME', 'ROLE', 'UNIT', 'DISABLED'], rows);
    },
  },

  disable: {
    takesUsername: true,
    options: [],
    prepare(raw) {
      const username = parseUsername(raw);
      const change = parse(UpdateUserRequest, { disabled: true }, 'change');
      return async (users) => {
        await users.update(await users.findIdByUsername(username), change);
        return `Disabled "${username}", ended their sessions and disconnected their open consoles.`;
      };
    },
  },

  enable: {
    takesUsername: true,
    options: [],
    prepare(raw) {
      const username = parseUsername(raw);
      const change = parse(UpdateUserRequest, { disabled: false }, 'change');
      return async (users) => {
        await users.update(await users.findIdByUsername(username), change);
        return `Enabled "${username}".`;
      };
    },
  },

  'reset-password': {
    takesUsername: true,
    options: ['password'],
    prepare(raw, options) {
      const username = parseUsername(raw);
      const { password } = parse(
        ResetPasswordRequest,
        { password: options.password ?? generatePassword() },
        'password',
      );
      return async (users) => {
        await users.resetPassword(await users.findIdByUsername(username), password);
        const lines = [
          `Reset the password of "${username}", ended their sessions and disconnected their open consoles.`,
        ];
        if (options.password === undefined) lines.push(`New password, shown only this once: ${password}`);
        return lines.join('\n');
      };
    },
  },
};

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]?.length ?? 0)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

function parseFlags(argv: string[]) {
  try {
    return parseArgs({ args: argv, options: optionSpec, allowPositionals: true, strict: true });
  } catch (error) {
    // node:util reports unknown or malformed options with a readable message.
    throw new UsageError(`${(error as Error).message}\n\n${USAGE}`);
  }
}

/** `--password -`: the first line of standard input. */
async function passwordFromStdin(): Promise<string> {
  let text = '';
  for await (const chunk of process.stdin) text += String(chunk);
  return text.split(/\r?\n/)[0] ?? '';
}

/** Checks the command line before the store is opened, so a typo never touches it. */
async function readCommandLine(argv: string[]) {
  const { values, positionals } = parseFlags(argv);
  const [name, ...rest] = positionals;
  if (values.help || name === undefined || name === 'help') return undefined;
  const command = commands[name];
  if (!command) throw new UsageError(`unknown command "${name}"\n\n${USAGE}`);

  const expected = command.takesUsername ? 1 : 0;
  if (rest.length !== expected) {
    throw new UsageError(
      `${name} ${expected ? 'takes one <username>' : 'takes no arguments'}, got ${rest.length}\n\n${USAGE}`,
    );
  }
  const options: Options = {};
  for (const key of Object.keys(optionSpec) as (keyof typeof optionSpec)[]) {
    const value = values[key];
    if (key === 'help' || value === undefined) continue;
    if (!command.options.includes(key)) throw new UsageError(`${name} does not take --${key}\n\n${USAGE}`);
    if (typeof value === 'string') options[key] = value;
  }
  if (options.password === '-') options.password = await passwordFromStdin();
  return command.prepare(rest[0] ?? '', options);
}

/** Names each problem after the flag or argument that caused it. */
function inCommandLineTerms(error: unknown): unknown {
  if (!(error instanceof DomainError) || !error.details.issues) return error;
  return new DomainError(error.code, error.message, {
    ...error.details,
    issues: error.details.issues.map((i) => ({
      path: flagFor[i.path] ?? i.path,
      message: i.message,
    })),
  });
}

async function main(argv: string[]) {
  const work = await readCommandLine(argv);
  if (!work) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const runtime: ToolRuntime = await openToolRuntime();
  try {
    const users = createUserService({
      users: createUserRepository(runtime.redis, runtime.keys),
      topology: runtime.topology,
      revocations: revocationPublisher(runtime.redis, runtime.keys),
    });
    process.stdout.write(`${await work(users)}\n`);
  } finally {
    await runtime.close();
  }
}

await runTool('users', async () => {
  try {
    await main(process.argv.slice(2));
  } catch (error) {
    throw inCommandLineTerms(error);
  }
});
