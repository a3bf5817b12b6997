import { ApiError, errorText, request, type Machine } from './api.js';
import { h, notice, replace } from './dom.js';
import type { View } from './view.js';

/**
 * Import a rack's CSV (admins): a file or pasted text, all rows or none. When rows are wrong,
 * each is listed with its row number, column and problem, and the text stays in the box to fix.
 */

const HEADER = 'mac,hostname,role,cluster,ip,rack,unit,bmc_address,bmc_username,bmc_password';
const SEPARATORS: Record<string, string> = { ';': 'semicolons', '\t': 'tabs', '|': 'pipes' };

export const importView: View = async (ctx, el) => {
  const box = h('div', { id: 'import-result', 'aria-live': 'polite' });
  const text = h('textarea', { id: 'csv', name: 'csv', rows: 12, spellcheck: 'false', placeholder: `${HEADER}\n52:54:00:aa:bb:01,node1,control-plane,lab,10.0.0.11,r1,12,,,` });
  const update = h('input', { id: 'csv-update', type: 'checkbox', name: 'update' });
  const file = h('input', { id: 'csv-file', type: 'file', accept: '.csv,text/csv' });
  file.addEventListener('change', () => {
    const f = file.files?.[0];
    if (f) void f.text().then((t) => (text.value = t));
  });
  const form = h(
    'form',
    null,
    h('p', { class: 'field' }, h('label', { for: 'csv-file' }, 'CSV file'), file),
    h(
      'p',
      { class: 'field' },
      h('label', { for: 'csv' }, 'or paste the CSV'),
      text,
      h('small', null, 'Header row: ', h('code', null, HEADER), ' (optionally ', h('code', null, 'bmc_port,bmc_cipher_suite'), '). Columns in any order, separated by commas, semicolons or tabs; mac, hostname, role and cluster are required; unit is the rack unit, 1 at the bottom.'),
    ),
    h('p', { class: 'check' }, update, ' ', h('label', { for: 'csv-update' }, 'Update machines already in the inventory (matched by MAC); empty cells keep their values')),
    h('p', null, h('button', { type: 'submit' }, 'Import')),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    replace(box, notice('info', 'Importing…'));
    request<{ imported: number; created: number; updated: number; unchanged: number; delimiter: string; machines: Machine[] }>('POST', `/machines/import${update.checked ? '?mode=upsert' : ''}`, text.value, 'text/csv').then(
      (r) => {
        const how = update.checked ? ` (${r.created} new, ${r.updated} updated, ${r.unchanged} unchanged)` : '';
        const sep = SEPARATORS[r.delimiter] ? ` The sheet was read as separated by ${SEPARATORS[r.delimiter] ?? ''}.` : '';
        replace(
          box,
          notice('ok', `Imported ${r.imported} machine${r.imported === 1 ? '' : 's'}${how}.${sep}`),
          h('ul', null, r.machines.map((m) => h('li', null, h('a', { href: `#/machines/${m.mac}` }, m.hostname ?? m.mac), ` — ${m.role ?? ''}${m.rack ? `, rack ${m.rack}` : ''}`))),
          h('p', null, h('a', { href: '#/' }, 'See them in the rack view')),
        );
        text.value = '';
      },
      (err: unknown) => {
        const details = err instanceof ApiError ? err.details : [];
        replace(
          box,
          notice('error', `Nothing was imported: ${errorText(err)}`),
          details.length
            ? h(
                'table',
                { class: 'row-errors' },
                h('caption', null, `${details.length} row${details.length === 1 ? '' : 's'} to fix`),
                h('thead', null, h('tr', null, ['Row', 'Column', 'Value', 'Problem', 'Fix'].map((t) => h('th', { scope: 'col' }, t)))),
                h(
                  'tbody',
                  null,
                  details.map((d) =>
                    h(
                      'tr',
                      { 'data-row': d.row ?? '' },
                      h('td', { class: 'num' }, String(d.row ?? '')),
                      h('td', null, h('code', null, d.field ?? '')),
                      h('td', { class: 'value' }, d.value !== undefined ? h('code', null, d.value) : '—'),
                      h('td', null, problemOf(d.message)),
                      h('td', { class: 'fix' }, d.hint ?? ''),
                    ),
                  ),
                ),
              )
            : null,
        );
        text.focus();
      },
    );
  });
  replace(el, h('h1', { tabindex: '-1' }, 'Import machines from CSV'), box, form);
  ctx.onLeave(() => undefined);
};

/** The problem alone: the table already says where, what the cell held and the fix. */
function problemOf(message: string): string {
  return message
    .replace(/^row \d+, column [^:]+: /, '')
    .replace(/ \(got "[^"]*"\)/, '')
    .replace(/; (did you mean [^?]+\?|use one of .*|a whole number .*|write it as .*|one address per cell)$/, '');
}
