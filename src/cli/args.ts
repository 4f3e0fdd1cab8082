// Flag parsing: `--kebab-case value` -> { kebabCase: value }, typed by a schema; unknown flags are errors.
import { closest } from '../train/config.js';

export type FlagType = 'string' | 'number' | 'boolean';

export function camel(flag: string): string {
  return flag.replace(/^--/, '').replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}
export function kebab(key: string): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

export function parseFlags(args: string[], schema: Record<string, FlagType>, command: string): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (!arg.startsWith('--')) throw new Error(`${command}: unexpected argument '${arg}'`);
    const [flagPart, inline] = arg.split(/=(.*)/s, 2);
    const key = camel(flagPart);
    const type = schema[key];
    if (!type) {
      const near = closest(key, Object.keys(schema));
      throw new Error(`${command}: unknown option ${flagPart} (options: ${Object.keys(schema).map(kebab).join(' ')})${near ? `; did you mean ${kebab(near)}?` : ''}`);
    }
    if (type === 'boolean') {
      out[key] = inline === undefined ? true : inline !== 'false' && inline !== '0';
      continue;
    }
    const value = inline ?? args[++i];
    if (value === undefined) throw new Error(`${command}: ${flagPart} needs a value`);
    if (type === 'number') {
      const n = Number(value);
      if (!Number.isFinite(n)) throw new Error(`${command}: ${flagPart} expects a number, got '${value}'`);
      out[key] = n;
    } else out[key] = value;
  }
  return out;
}

/** The schema of an object of defaults (its value types). */
export function schemaOf(defaults: Record<string, unknown>, extra: Record<string, FlagType> = {}): Record<string, FlagType> {
  const schema: Record<string, FlagType> = {};
  for (const [k, v] of Object.entries(defaults)) schema[k] = typeof v === 'number' ? 'number' : typeof v === 'boolean' ? 'boolean' : 'string';
  return { ...schema, ...extra };
}

/** An enumerated option: undefined (not given) or one of `allowed`, else an error listing them. */
export function checkChoice<T extends string>(command: string, flag: string, value: unknown, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    const near = typeof value === 'string' ? closest(value, allowed) : null;
    throw new Error(`${command}: ${flag} ${JSON.stringify(value)} is not one of ${allowed.join(', ')}${near ? ` (did you mean ${near}?)` : ''}`);
  }
  return value as T;
}
