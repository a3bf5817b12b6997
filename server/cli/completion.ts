import { SETTINGS, kebab, type SettingName } from '../config/settings.js';
import { UsageError } from './args.js';

/**
 * `racksmith completion bash|zsh`: shell completion for commands, subcommands, flags and the
 * values of flags that take a fixed set (roles, actions, releases). The tree below is the CLI's
 * surface; the CLI test checks each flag against the command's --help.
 * Install: `racksmith completion bash > /etc/bash_completion.d/racksmith`, or
 * `source <(racksmith completion zsh)` in ~/.zshrc.
 */

const CLIENT = ['--url', '--token', '--token-file', '--json', '--help'];
const STORE = ['--data-dir', '--config', '--secret-key', '--help'];
const SETTINGS_FLAGS = ['--config', ...(Object.keys(SETTINGS) as SettingName[]).map((n) => `--${kebab(n)}`), '--help'];
const BMC = ['--bmc-address', '--bmc-username', '--bmc-port', '--bmc-cipher-suite', '--bmc-password-file', '--bmc-password'];

/** command → subcommand → flags; a command without subcommands maps to its flags directly. */
export const COMMAND_TREE: Readonly<Record<string, Readonly<Record<string, readonly string[]>> | readonly string[]>> = {
  serve: SETTINGS_FLAGS,
  token: {
    create: ['--role', '--name', ...STORE],
    list: ['--json', ...STORE],
    revoke: ['--json', ...STORE],
  },
  machines: {
    list: ['--cluster', '--role', '--state', '--rack', ...CLIENT],
    add: ['--mac', '--hostname', '--role', '--cluster', '--ip', '--rack', '--unit', '--install-disk', ...BMC, '--sol-capture', '--bmc-driver', '--bmc-system-id', '--bmc-tls-fingerprint', '--bmc-no-verify-tls', '--boot-loader', '--secure-boot', ...CLIENT],
    set: ['--hostname', '--role', '--cluster', '--ip', '--rack', '--unit', '--install-disk', ...BMC, '--sol-capture', '--bmc-driver', '--bmc-system-id', '--bmc-tls-fingerprint', '--bmc-verify-tls', '--boot-loader', '--secure-boot', ...CLIENT],
    rm: ['--force', ...CLIENT],
    import: ['--update', ...CLIENT],
    events: ['--type', '--limit', ...CLIENT],
    power: ['--action', ...CLIENT],
    reimage: ['--force', '--no-wait', '--timeout', ...CLIENT],
    identify: ['--off', '--seconds', ...CLIENT],
    console: ['--follow', '--detach', '--attach', ...CLIENT],
  },
  clusters: {
    list: CLIENT,
    create: ['--name', '--ubuntu-release', '--kubernetes-version', '--container-runtime', '--cni', '--pod-subnet', '--service-subnet', '--control-plane-endpoint', '--vip', ...CLIENT],
    show: CLIENT,
    preflight: CLIENT,
    delete: CLIENT,
    retry: CLIENT,
    kubeconfig: CLIENT,
    upgrade: ['--kubernetes-version', '--max-unavailable', '--pause', '--resume', '--abort', '--wait', '--timeout', ...CLIENT],
  },
  artifacts: { prefetch: CLIENT },
  rack: { power: ['--action', '--concurrency', '--delay', '--force', '--no-wait', ...CLIENT] },
  watch: ['--cluster', '--rack', ...CLIENT],
  completion: ['bash', 'zsh'],
  settings: ['--markdown'],
  version: [],
  help: [],
};

/** Values of flags that take a fixed set; `--role` depends on the command. */
const FLAG_VALUES: Readonly<Record<string, string>> = {
  '--action': 'on off cycle reset status',
  '--ubuntu-release': '18.04 20.04 22.04 24.04',
  '--container-runtime': 'containerd docker',
  '--cni': 'flannel calico weave',
  '--state': 'discovered assigned provisioning installed ready joining joined failed reimaging',
  '--role@token': 'viewer operator admin',
  '--role': 'loadbalancer control-plane worker',
  '--bmc-driver': 'ipmi redfish',
  '--boot-loader': 'ipxe shim-grub auto default',
  '--secure-boot': 'on off unknown',
  '--bmc-verify-tls': 'on off',
};

/** Flags that take a value in one subcommand and none elsewhere (`add --sol-capture` is a switch). */
const SUBCOMMAND_FLAG_VALUES: Readonly<Record<string, string>> = {
  'machines set --sol-capture': 'on off default',
};

/** The flags that take no value (everything else consumes the next word). */
const SWITCHES = new Set(['--json', '--help', '--force', '--no-wait', '--markdown', '--update', '--sol-capture', '--bmc-no-verify-tls', '--off', '--follow', '--detach', '--attach', '--pause', '--resume', '--abort', '--wait']);

function bashScript(): string {
  const commands = Object.keys(COMMAND_TREE).join(' ');
  const cases: string[] = [];
  for (const [cmd, v] of Object.entries(COMMAND_TREE)) {
    if (Array.isArray(v)) {
      cases.push(`    "${cmd} "*) words="${v.join(' ')}" ;;`);
    } else {
      for (const [sub, flags] of Object.entries(v as Record<string, readonly string[]>)) cases.push(`    "${cmd} ${sub}") words="${flags.join(' ')}" ;;`);
      cases.push(`    "${cmd} "*) words="${Object.keys(v).join(' ')}" ;;`);
    }
  }
  const values = Object.entries(FLAG_VALUES)
    .map(([flag, vals]) => (flag === '--role@token' ? `    token\\ *--role) COMPREPLY=($(compgen -W "${vals}" -- "$cur")); return ;;` : `    *${flag}) COMPREPLY=($(compgen -W "${vals}" -- "$cur")); return ;;`))
    .join('\n');
  const subValues = Object.entries(SUBCOMMAND_FLAG_VALUES)
    .map(([at, vals]) => `    "${at}") COMPREPLY=($(compgen -W "${vals}" -- "$cur")); return ;;`)
    .join('\n');
  return `# racksmith shell completion (bash): racksmith completion bash > /etc/bash_completion.d/racksmith
_racksmith() {
  local cur prev cmd sub words
  cur="\${COMP_WORDS[COMP_CWORD]}"
  prev="\${COMP_WORDS[COMP_CWORD-1]}"
  cmd="\${COMP_WORDS[1]}"
  sub="\${COMP_WORDS[2]}"
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "${commands}" -- "$cur"))
    return
  fi
  case "$cmd $sub $prev" in
${subValues}
  esac
  case "$cmd $prev" in
${values}
  esac
  case "$prev" in
    --*) case " ${[...SWITCHES].join(' ')} " in *" $prev "*) ;; *) COMPREPLY=(); return ;; esac ;;
  esac
  if [ "$COMP_CWORD" -eq 2 ]; then sub=""; fi
  case "$cmd $sub" in
${cases.join('\n')}
    *) words="" ;;
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -F _racksmith racksmith
`;
}

function zshScript(): string {
  // zsh runs the bash function through bashcompinit: one completion table for both shells.
  return `#compdef racksmith
# racksmith shell completion (zsh): source <(racksmith completion zsh) in ~/.zshrc
autoload -U +X compinit && compinit -u
autoload -U +X bashcompinit && bashcompinit
${bashScript().split('\n').slice(1).join('\n')}`;
}

export async function completionCommand(args: readonly string[], out: (text: string) => void): Promise<number> {
  const [shell, ...rest] = args;
  if (shell === '--help' || shell === '-h') {
    out(COMPLETION_HELP);
    return 0;
  }
  if (rest.length > 0) throw new UsageError(`completion: unexpected argument "${rest[0] ?? ''}"`);
  if (shell === 'bash') out(bashScript());
  else if (shell === 'zsh') out(zshScript());
  else throw new UsageError(`completion: give the shell, bash or zsh${shell ? ` (not "${shell}")` : ''}`);
  return 0;
}

export const COMPLETION_HELP = `Usage: racksmith completion bash|zsh

Prints a shell completion script for commands, subcommands, flags and flag values.
  bash:  racksmith completion bash > /etc/bash_completion.d/racksmith   (or ~/.local/share/bash-completion/completions/racksmith)
  zsh:   echo 'source <(racksmith completion zsh)' >> ~/.zshrc
`;
