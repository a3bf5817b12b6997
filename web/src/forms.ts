import { ApiError, errorText } from './api.js';
import { h, notice, replace, type Attrs } from './dom.js';

/**
 * Form helpers: every input has a label; the API's error names a field, and that field is marked
 * (aria-invalid, aria-describedby) and focused, with the API's message beside it.
 */

export function field(name: string, text: string, attrs: Attrs = {}, hint?: string): HTMLElement {
  const id = `f-${name}`;
  return h(
    'p',
    { class: 'field' },
    h('label', { for: id }, text),
    h('input', { id, name, ...attrs, 'aria-describedby': hint ? `${id}-hint` : undefined }),
    hint ? h('small', { id: `${id}-hint` }, hint) : null,
  );
}

export function select(name: string, text: string, options: readonly string[], value?: string | null, blank?: string): HTMLElement {
  const id = `f-${name}`;
  return h(
    'p',
    { class: 'field' },
    h('label', { for: id }, text),
    h(
      'select',
      { id, name },
      blank !== undefined ? h('option', { value: '' }, blank) : null,
      options.map((o) => h('option', { value: o, selected: o === value }, o)),
    ),
  );
}

/** The form's values by name; empty strings are left out. */
export function values(form: HTMLFormElement): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of new FormData(form)) if (typeof v === 'string' && v.trim() !== '') out[k] = v.trim();
  return out;
}

/** Shows an API error in `box` and marks the field it names (`bmc.address` → input `bmc_address`). */
export function showError(form: HTMLFormElement, box: HTMLElement, err: unknown): void {
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  for (const el of form.querySelectorAll('.field-error')) el.remove();
  replace(box, notice('error', errorText(err)));
  if (!(err instanceof ApiError) || !err.field) return;
  const input = form.querySelector<HTMLElement>(`[name="${CSS.escape(err.field.replace('.', '_'))}"]`);
  if (!input) return;
  const id = `${input.id}-error`;
  input.setAttribute('aria-invalid', 'true');
  input.setAttribute('aria-describedby', id);
  input.after(h('span', { class: 'field-error', id }, err.message));
  input.focus();
}
