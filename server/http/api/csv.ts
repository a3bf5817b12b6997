import { parse } from 'csv-parse/sync';
import type { z } from 'zod';
import { AppError, invalid, type ErrorDetail } from '../../lib/errors.js';
import { closest } from '../../lib/words.js';
import { MAX_RACK_UNIT, ROLES, type Role } from '../../inventory/model.js';
import type { ImportRow } from '../../inventory/store.js';
import { newMachineSchema } from './schemas.js';

/**
 * A rack's CSV, as techs export it from a spreadsheet:
 *   mac,hostname,role,cluster,ip,rack,unit,bmc_address,bmc_username,bmc_password[,bmc_port,bmc_cipher_suite,boot_loader,secure_boot]
 * Columns may come in any order; mac, hostname, role and cluster are required; an empty cell is
 * "not given". Every error names the data row (1 = first row after the header) and the column,
 * with the cell's value (never a password's) and, where one can be guessed, the fix. Sheets
 * saved with semicolons (a comma-decimal locale), tabs or pipes are read as such.
 */
export const CSV_COLUMNS = ['mac', 'hostname', 'role', 'cluster', 'ip', 'rack', 'unit', 'bmc_address', 'bmc_username', 'bmc_password', 'bmc_port', 'bmc_cipher_suite', 'boot_loader', 'secure_boot'] as const;
const REQUIRED = ['mac', 'hostname', 'role', 'cluster'] as const;
export const MAX_IMPORT_ROWS = 10_000;
/** Cell separators a sheet may be saved with, in the order they are preferred on a tie. */
export const DELIMITERS = [',', ';', '\t', '|'] as const;
const DELIMITER_NAMES: Record<string, string> = { ',': 'comma', ';': 'semicolon', '\t': 'tab', '|': 'pipe' };

type Column = (typeof CSV_COLUMNS)[number];

/** The body field each schema path comes from, to name the CSV column in errors. */
const COLUMN_OF_FIELD: Record<string, Column> = {
  mac: 'mac',
  hostname: 'hostname',
  role: 'role',
  cluster: 'cluster',
  ip: 'ip',
  rack: 'rack',
  unit: 'unit',
  'bmc.address': 'bmc_address',
  'bmc.username': 'bmc_username',
  'bmc.password': 'bmc_password',
  'bmc.port': 'bmc_port',
  'bmc.cipherSuite': 'bmc_cipher_suite',
  bmc: 'bmc_address',
  bootLoader: 'boot_loader',
  secureBoot: 'secure_boot',
};

/** `secure_boot` cells: yes/no words as a spreadsheet holds them; anything else goes to the schema (and its error). */
function yesNo(v: string | undefined): boolean | string | undefined {
  if (v === undefined) return undefined;
  const w = v.toLowerCase();
  if (['true', 'yes', 'on', '1'].includes(w)) return true;
  if (['false', 'no', 'off', '0'].includes(w)) return false;
  return v;
}

export interface ParsedSheet {
  readonly rows: ImportRow[];
  /** The separator the sheet was read with. */
  readonly delimiter: string;
}

/**
 * Which separator the header uses: the one that splits it into the most known column names.
 * A header none of them splits into the required columns is refused, naming what was found.
 */
export function detectDelimiter(text: string): string {
  const firstLine = text.replace(/^\uFEFF/, '').split(/\r?\n/).find((l) => l.trim() !== '') ?? '';
  let best: { d: string; known: number } = { d: ',', known: 0 };
  for (const d of DELIMITERS) {
    const known = firstLine.split(d).filter((c) => (CSV_COLUMNS as readonly string[]).includes(c.trim().replace(/^"|"$/g, '').toLowerCase())).length;
    if (known > best.known) best = { d, known };
  }
  if (best.known < 2) {
    const shown = firstLine.slice(0, 80);
    throw invalid('ERR_CSV_HEADER', `header: expected column names separated by commas (or semicolons, tabs, pipes), such as ${CSV_COLUMNS.slice(0, 4).join(',')}; the first line is "${shown}"`, 'csv');
  }
  return best.d;
}

export function parseMachinesCsv(text: string): ImportRow[] {
  return parseMachinesSheet(text).rows;
}

export function parseMachinesSheet(text: string): ParsedSheet {
  let records: string[][];
  const delimiter = detectDelimiter(text);
  try {
    records = parse(text, { bom: true, skip_empty_lines: true, relax_column_count: false, trim: true, delimiter }) as string[][];
  } catch (err) {
    throw invalid('ERR_CSV', `${csvSyntaxMessage(err)}${delimiter === ',' ? '' : ` (read as ${DELIMITER_NAMES[delimiter]}-separated)`}`, 'csv');
  }
  const [header, ...rows] = records;
  if (!header) throw invalid('ERR_CSV', 'the file is empty: expected a header row and at least one machine', 'csv');
  if (rows.length === 0) throw invalid('ERR_CSV', 'no machine rows after the header', 'csv');
  if (rows.length > MAX_IMPORT_ROWS) throw invalid('ERR_CSV', `at most ${MAX_IMPORT_ROWS} rows per import; this file has ${rows.length}`, 'csv');
  const names = header.map((h) => h.toLowerCase());
  names.forEach((n, i) => {
    if (!(CSV_COLUMNS as readonly string[]).includes(n)) {
      const near = closest(n, CSV_COLUMNS);
      throw invalid('ERR_CSV', `header, column ${i + 1}: unknown column "${n.slice(0, 40)}"${near ? ` (did you mean ${near}?)` : ''} (allowed: ${CSV_COLUMNS.join(', ')})`, n);
    }
    if (names.indexOf(n) !== i) throw invalid('ERR_CSV', `header: column "${n}" appears twice`, n);
  });
  for (const r of REQUIRED) if (!names.includes(r)) throw invalid('ERR_CSV', `header: the required column "${r}" is missing`, r);

  const bad: ErrorDetail[] = [];
  const parsed = rows.map((cells, index): ImportRow | null => {
    const row = index + 1;
    const cell = (c: Column): string | undefined => {
      const i = names.indexOf(c);
      const v = i < 0 ? undefined : cells[i];
      return v === undefined || v === '' ? undefined : v;
    };
    const hasBmc = (['bmc_address', 'bmc_username', 'bmc_password', 'bmc_port', 'bmc_cipher_suite'] as const).some((c) => cell(c) !== undefined);
    const body = {
      mac: cell('mac'),
      hostname: cell('hostname'),
      role: cell('role'),
      cluster: cell('cluster'),
      ip: cell('ip'),
      rack: cell('rack'),
      unit: integerCell(cell('unit')),
      bmc: hasBmc
        ? { driver: 'ipmi', address: cell('bmc_address'), username: cell('bmc_username'), password: cell('bmc_password'), port: integerCell(cell('bmc_port')), cipherSuite: integerCell(cell('bmc_cipher_suite')) }
        : undefined,
      bootLoader: cell('boot_loader'),
      secureBoot: yesNo(cell('secure_boot')),
    };
    const result = newMachineSchema.safeParse(body);
    if (!result.success) {
      if (bad.length < MAX_ROW_ERRORS) bad.push(rowError(row, result.error, cell));
      return null;
    }
    return { ...result.data, row };
  });
  // Every bad row at once (up to a limit), so that a spreadsheet is fixed in one pass.
  const first = bad[0];
  if (first) {
    const more = bad.length > 1 ? ` (and ${bad.length - 1} more bad row${bad.length > 2 ? 's' : ''})` : '';
    throw new AppError('invalid', 'ERR_CSV', `${first.message}${more}`, first.field, bad);
  }
  return { rows: parsed.filter((r) => r !== null), delimiter };
}

/** A number cell as a number; anything else is left for the schema to refuse, naming the column. */
function integerCell(v: string | undefined): number | string | undefined {
  return v !== undefined && /^\d{1,6}$/.test(v) ? Number(v) : v;
}

/** At most this many rows are reported; the rest are fixed after the next try. */
export const MAX_ROW_ERRORS = 100;

/**
 * csv-parse's own messages quote the offending cell ("value is ..."), and a cell may be a BMC
 * password: say what is wrong and where from the error's code and position only.
 */
const CSV_SYNTAX: Record<string, string> = {
  CSV_RECORD_INCONSISTENT_FIELDS_LENGTH: 'this row has a different number of cells than the header',
  CSV_RECORD_DONT_MATCH_COLUMNS_LENGTH: 'this row has a different number of cells than the header',
  INVALID_OPENING_QUOTE: 'a quote inside an unquoted cell (quote the whole cell and double the quotes in it)',
  CSV_INVALID_OPENING_QUOTE: 'a quote inside an unquoted cell (quote the whole cell and double the quotes in it)',
  CSV_INVALID_CLOSING_QUOTE: 'text after the closing quote of a cell',
  CSV_NON_TRIMABLE_CHAR_AFTER_CLOSING_QUOTE: 'text after the closing quote of a cell',
  CSV_QUOTE_NOT_CLOSED: 'a quoted cell is never closed',
  CSV_MAX_RECORD_SIZE: 'a row is too long',
};

function csvSyntaxMessage(err: unknown): string {
  const e = err as { code?: string; lines?: number; column?: number; message?: string };
  const where = `line ${e.lines ?? '?'}${typeof e.column === 'number' ? `, cell ${e.column + 1}` : ''}`;
  const counts = e.code === 'CSV_RECORD_INCONSISTENT_FIELDS_LENGTH' ? /expect (\d+), got (\d+)/.exec(e.message ?? '') : null;
  if (counts) return `line ${e.lines ?? '?'}: this row has ${counts[2]} cells, the header has ${counts[1]}`;
  return `${where}: ${(e.code && CSV_SYNTAX[e.code]) ?? 'not valid CSV'}`;
}

function rowError(row: number, err: z.ZodError, cell: (c: Column) => string | undefined): ErrorDetail {
  const issue = err.issues[0];
  const path = issue?.path.map(String).join('.') ?? '';
  const column = COLUMN_OF_FIELD[path] ?? (path as Column);
  // zod 4 reports no input by default: a cell is missing when the sheet's cell is empty, not when the issue lacks it.
  const missing = issue?.code === 'invalid_type' && cell(column) === undefined;
  const message = missing ? 'a value is required' : (issue?.message ?? 'invalid value');
  // A password is never echoed back: it may be a real one with a typo.
  const value = column === 'bmc_password' ? undefined : cell(column)?.slice(0, 80);
  const hint = missing ? undefined : fixFor(column, value);
  return {
    row,
    field: column,
    message: `row ${row}, column ${column}: ${message}${value !== undefined ? ` (got "${value}")` : ''}${hint ? `; ${hint}` : ''}`,
    ...(value !== undefined ? { value } : {}),
    ...(hint ? { hint } : {}),
  };
}

/** Words sheets use for our roles. */
const ROLE_ALIASES: Record<string, Role> = {
  master: 'control-plane',
  controlplane: 'control-plane',
  control_plane: 'control-plane',
  'control plane': 'control-plane',
  controller: 'control-plane',
  cp: 'control-plane',
  etcd: 'control-plane',
  lb: 'loadbalancer',
  'load-balancer': 'loadbalancer',
  load_balancer: 'loadbalancer',
  'load balancer': 'loadbalancer',
  haproxy: 'loadbalancer',
  node: 'worker',
  minion: 'worker',
  compute: 'worker',
  agent: 'worker',
  workers: 'worker',
};

/** The likely fix for a bad cell, in the words a person acts on; undefined when there is no good guess. */
export function fixFor(column: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  switch (column) {
    case 'role': {
      const v = value.trim().toLowerCase();
      const guess = ROLE_ALIASES[v] ?? (ROLES as readonly string[]).find((r) => r === v) ?? closest(v, ROLES);
      return guess ? `did you mean ${guess}?` : `use one of ${ROLES.join(', ')}`;
    }
    case 'hostname':
    case 'cluster': {
      const fixed = value.toLowerCase().split('.')[0]?.replace(/[_\s]+/g, '-').replace(/[^a-z0-9-]/g, '').replace(/^-+|-+$/g, '');
      return fixed && fixed !== value ? `did you mean ${fixed}?` : undefined;
    }
    case 'rack': {
      const fixed = value.trim().replace(/\s+/g, '-').replace(/[^A-Za-z0-9._-]/g, '');
      return fixed && fixed !== value ? `did you mean ${fixed}?` : undefined;
    }
    case 'unit': {
      const n = /^[Uu]?\s*(\d{1,2})$/.exec(value.trim());
      return n ? `did you mean ${Number(n[1])}?` : `a whole number from 1 to ${MAX_RACK_UNIT}`;
    }
    case 'mac':
      return 'write it as 52:54:00:aa:bb:cc (also 52-54-00-aa-bb-cc, 5254.00aa.bbcc or 525400aabbcc)';
    case 'ip':
    case 'bmc_address':
      return /,/.test(value) ? 'one address per cell' : undefined;
    default:
      return undefined;
  }
}
