import { parse } from 'csv-parse/sync';
import type { z } from 'zod';
import { AppError, invalid, type ErrorDetail } from '../../lib/errors.js';
import type { ImportRow } from '../../inventory/store.js';
import { newMachineSchema } from './schemas.js';

/**
 * A rack's CSV, as techs export it from a spreadsheet:
 *   mac,hostname,role,cluster,ip,rack,bmc_address,bmc_username,bmc_password[,bmc_port,bmc_cipher_suite,boot_loader,secure_boot]
 * Columns may come in any order; mac, hostname, role and cluster are required; an empty cell is
 * "not given". Every error names the data row (1 = first row after the header) and the column.
 */
export const CSV_COLUMNS = ['mac', 'hostname', 'role', 'cluster', 'ip', 'rack', 'bmc_address', 'bmc_username', 'bmc_password', 'bmc_port', 'bmc_cipher_suite', 'boot_loader', 'secure_boot'] as const;
const REQUIRED = ['mac', 'hostname', 'role', 'cluster'] as const;
export const MAX_IMPORT_ROWS = 10_000;

type Column = (typeof CSV_COLUMNS)[number];

/** The body field each schema path comes from, to name the CSV column in errors. */
const COLUMN_OF_FIELD: Record<string, Column> = {
  mac: 'mac',
  hostname: 'hostname',
  role: 'role',
  cluster: 'cluster',
  ip: 'ip',
  rack: 'rack',
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

export function parseMachinesCsv(text: string): ImportRow[] {
  let records: string[][];
  try {
    records = parse(text, { bom: true, skip_empty_lines: true, relax_column_count: false, trim: true }) as string[][];
  } catch (err) {
    throw invalid('ERR_CSV', csvSyntaxMessage(err), 'csv');
  }
  const [header, ...rows] = records;
  if (!header) throw invalid('ERR_CSV', 'the file is empty: expected a header row and at least one machine', 'csv');
  if (rows.length === 0) throw invalid('ERR_CSV', 'no machine rows after the header', 'csv');
  if (rows.length > MAX_IMPORT_ROWS) throw invalid('ERR_CSV', `at most ${MAX_IMPORT_ROWS} rows per import; this file has ${rows.length}`, 'csv');
  const names = header.map((h) => h.toLowerCase());
  names.forEach((n, i) => {
    if (!(CSV_COLUMNS as readonly string[]).includes(n)) {
      throw invalid('ERR_CSV', `header, column ${i + 1}: unknown column "${n.slice(0, 40)}" (allowed: ${CSV_COLUMNS.join(', ')})`, n);
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
      bmc: hasBmc
        ? { driver: 'ipmi', address: cell('bmc_address'), username: cell('bmc_username'), password: cell('bmc_password'), port: integerCell(cell('bmc_port')), cipherSuite: integerCell(cell('bmc_cipher_suite')) }
        : undefined,
      bootLoader: cell('boot_loader'),
      secureBoot: yesNo(cell('secure_boot')),
    };
    const result = newMachineSchema.safeParse(body);
    if (!result.success) {
      if (bad.length < MAX_ROW_ERRORS) bad.push(rowError(row, result.error));
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
  return parsed.filter((r) => r !== null);
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

function rowError(row: number, err: z.ZodError): ErrorDetail {
  const issue = err.issues[0];
  const path = issue?.path.map(String).join('.') ?? '';
  const column = COLUMN_OF_FIELD[path] ?? path;
  const missing = issue?.code === 'invalid_type' && issue.input === undefined;
  const message = missing ? 'a value is required' : (issue?.message ?? 'invalid value');
  return { row, field: column, message: `row ${row}, column ${column}: ${message}` };
}
