import { api, errorText, request, type Machine } from './api.js';
import { h, notice, replace } from './dom.js';
import { field, select, showError, values } from './forms.js';
import type { View } from './view.js';

/** Add a machine (`#/machines/new`) or edit one (`#/machines/<mac>/edit`); admins only. */

const ROLES = ['loadbalancer', 'control-plane', 'worker'];

export const machineFormView: View = async (ctx, el) => {
  const editing = ctx.params[0];
  let m: Machine | null = null;
  let clusters: string[] = [];
  try {
    clusters = (await api.clusters()).map((c) => c.name);
    if (editing) m = await api.machine(editing);
  } catch (err) {
    replace(el, h('h1', null, editing ? 'Edit machine' : 'Add a machine'), notice('error', errorText(err)));
    return;
  }
  const box = h('div', { 'aria-live': 'polite' });
  const form = h(
    'form',
    { novalidate: true },
    field('mac', 'MAC address', { required: true, value: m?.mac ?? '', readonly: m !== null, autocomplete: 'off', spellcheck: 'false' }, 'Any common form: 52:54:00:aa:bb:cc, 5254.00aa.bbcc…'),
    field('hostname', 'Host name', { required: true, value: m?.hostname ?? '', autocomplete: 'off' }),
    select('role', 'Role', ROLES, m?.role ?? 'worker'),
    clusters.length ? select('cluster', 'Cluster', clusters, m?.cluster ?? clusters[0]) : h('p', null, 'No cluster yet: ', h('a', { href: '#/clusters/new' }, 'create one first'), '.'),
    field('ip', 'IP address (optional)', { value: m?.ip ?? '', inputmode: 'decimal' }),
    field('rack', 'Rack (optional)', { value: m?.rack ?? '' }),
    h(
      'fieldset',
      null,
      h('legend', null, 'BMC (optional)'),
      select('bmc_driver', 'Protocol', ['ipmi', 'redfish'], m?.bmc?.driver ?? 'ipmi'),
      field('bmc_address', 'BMC address', { value: m?.bmc?.address ?? '' }, 'IPMI: host or IP. Redfish: host or https://host[:port]'),
      field('bmc_system_id', 'Redfish system id (optional)', { value: m?.bmc?.systemId ?? '', autocomplete: 'off' }, 'Needed only when the BMC manages several systems'),
      field('bmc_username', 'BMC user', { value: m?.bmc?.username ?? '', autocomplete: 'off' }),
      field('bmc_password', m?.bmc?.passwordSet ? 'BMC password (blank: keep)' : 'BMC password', { type: 'password', autocomplete: 'new-password' }),
    ),
    h('p', null, h('button', { type: 'submit' }, m ? 'Save' : 'Add machine'), ' ', h('a', { href: m ? `#/machines/${m.mac}` : '#/' }, 'Cancel')),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    void (async () => {
      const v = values(form);
      const given = Boolean(v['bmc_address'] || v['bmc_username'] || v['bmc_password']);
      const bmc = given
        ? {
            driver: v['bmc_driver'] ?? 'ipmi',
            address: v['bmc_address'],
            username: v['bmc_username'],
            ...(v['bmc_password'] ? { password: v['bmc_password'] } : {}),
            ...(v['bmc_driver'] === 'redfish' && v['bmc_system_id'] ? { systemId: v['bmc_system_id'] } : {}),
          }
        : undefined;
      try {
        if (m) {
          const patch: Record<string, unknown> = {
            hostname: v['hostname'] ?? null,
            role: v['role'] ?? null,
            cluster: v['cluster'] ?? null,
            ip: v['ip'] ?? null,
            rack: v['rack'] ?? null,
          };
          for (const k of Object.keys(patch)) if (patch[k] === (m as unknown as Record<string, unknown>)[k]) delete patch[k];
          // The BMC patch merges on the server: only the fields this form changed, so the port
          // and cipher suite it does not show stay as they are.
          if (!given) {
            if (m.bmc) patch['bmc'] = null;
          } else if (!m.bmc) patch['bmc'] = bmc;
          else {
            const changed = bmcChanges(m.bmc, v);
            if (Object.keys(changed).length > 0) patch['bmc'] = changed;
          }
          const saved = await request<Machine>('PATCH', `/machines/${m.mac}`, patch);
          ctx.navigate(`#/machines/${saved.mac}`);
        } else {
          const body = { mac: v['mac'], hostname: v['hostname'], role: v['role'], cluster: v['cluster'], ip: v['ip'], rack: v['rack'], bmc };
          const created = await request<Machine>('POST', '/machines', body);
          ctx.navigate(`#/machines/${created.mac}`);
        }
      } catch (err) {
        showError(form, box, err);
      }
    })();
  });
  replace(el, h('h1', { tabindex: '-1' }, m ? `Edit ${m.hostname ?? m.mac}` : 'Add a machine'), box, form);
};

/** The BMC fields the form changed, as a merge patch (a blank password keeps the stored one). */
export function bmcChanges(stored: { driver: string; address: string; username: string; systemId?: string | null }, v: Record<string, string>): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  if (v['bmc_driver'] !== undefined && v['bmc_driver'] !== stored.driver) out['driver'] = v['bmc_driver'];
  const systemId = v['bmc_driver'] === 'redfish' || (v['bmc_driver'] === undefined && stored.driver === 'redfish') ? (v['bmc_system_id'] ?? null) : undefined;
  if (systemId !== undefined && systemId !== (stored.systemId ?? null)) out['systemId'] = systemId;
  if (v['bmc_address'] !== undefined && v['bmc_address'] !== stored.address) out['address'] = v['bmc_address'];
  if (v['bmc_username'] !== undefined && v['bmc_username'] !== stored.username) out['username'] = v['bmc_username'];
  if (v['bmc_password'] !== undefined) out['password'] = v['bmc_password'];
  return out;
}
