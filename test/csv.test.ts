import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { parseMachinesSheet } from '../server/http/api/csv.js';
import { AppError } from '../server/lib/errors.js';

/** The rack sheet's reader: each bad cell with its value and fix, and separators other than commas. */
const test = suite('csv: bad cells with their value and fix; semicolon, tab and pipe sheets');

function refusal(text: string): AppError {
  try {
    parseMachinesSheet(text);
  } catch (err) {
    if (err instanceof AppError) return err;
    throw err;
  }
  throw new Error('the sheet was accepted');
}

test('every bad cell: its row, column, value and the fix; a cell of the wrong kind is not "missing"', () => {
  const err = refusal(
    [
      'mac,hostname,role,cluster,rack,unit,bmc_address,bmc_username,bmc_password',
      '52:54:00:e1:00:01,edge1,master,dc,edge,1,,,',
      '52:54:00:e1:00:02,Edge_2,worker,dc,edge,2,,,',
      '52:54:00:e1:00:03,edge3,worker,dc,edge,U3,,,',
      '52:54:00:e1:00:04,edge4,worker,,edge,4,,,',
      '52:54:00:e1:00:05,edge5,worker,dc,edge,5,10.0.0.5,admin,Not-Shown-1',
    ].join('\n'),
  );
  assert.is(err.code, 'ERR_CSV');
  const d = (err.details ?? []).map((x) => ({ row: x.row, field: x.field, value: x.value, hint: x.hint }));
  assert.equal(d[0], { row: 1, field: 'role', value: 'master', hint: 'did you mean control-plane?' });
  assert.equal(d[1], { row: 2, field: 'hostname', value: 'Edge_2', hint: 'did you mean edge-2?' });
  assert.equal(d[2], { row: 3, field: 'unit', value: 'U3', hint: 'did you mean 3?' });
  assert.equal(d[3], { row: 4, field: 'cluster', value: undefined, hint: undefined });
  assert.match(err.details?.[3]?.message ?? '', /row 4, column cluster: a value is required/);
  assert.match(err.details?.[2]?.message ?? '', /row 3, column unit: .*\(got "U3"\); did you mean 3\?/);
  assert.not.match(JSON.stringify(err.details), /Not-Shown-1/, 'a BMC password never comes back');
});

test('semicolons, tabs and pipes are read as such and named; a header no separator splits is refused', () => {
  for (const [d, name] of [[';', 'semicolon'], ['\t', 'tab'], ['|', 'pipe']] as const) {
    const sheet = parseMachinesSheet(['mac,hostname,role,cluster,rack,unit'.replaceAll(',', d), ['52:54:00:e1:00:01', 'e1', 'worker', 'dc', 'edge', '7'].join(d)].join('\n'));
    assert.is(sheet.delimiter, d, name);
    assert.is(sheet.rows[0]?.unit, 7, name);
    assert.is(sheet.rows[0]?.rack, 'edge', name);
  }
  const err = refusal('mac hostname role cluster\n52:54:00:e1:00:01 e1 worker dc\n');
  assert.is(err.code, 'ERR_CSV_HEADER');
  assert.match(err.message, /separated by commas \(or semicolons, tabs, pipes\).*the first line is "mac hostname role cluster"/);
});

test.run();
