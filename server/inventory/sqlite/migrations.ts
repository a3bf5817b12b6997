/**
 * Versioned schema migrations, applied in order inside one transaction each; the applied version
 * is SQLite's `user_version`. Never edit a released migration: add the next one.
 */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'inventory',
    sql: `
      CREATE TABLE clusters (
        name TEXT PRIMARY KEY,
        ubuntu_release TEXT NOT NULL,
        kubernetes_version TEXT NOT NULL,
        container_runtime TEXT NOT NULL,
        cni TEXT NOT NULL,
        pod_subnet TEXT,
        service_subnet TEXT,
        control_plane_endpoint TEXT,
        state TEXT NOT NULL DEFAULT 'pending',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      ) STRICT;

      CREATE TABLE machines (
        mac TEXT PRIMARY KEY,
        hostname TEXT UNIQUE,
        role TEXT,
        cluster TEXT REFERENCES clusters(name) ON UPDATE CASCADE,
        ip TEXT UNIQUE,
        rack TEXT,
        bmc_driver TEXT,
        bmc_address TEXT,
        bmc_port INTEGER,
        bmc_username TEXT,
        bmc_password_sealed TEXT,
        bmc_cipher_suite INTEGER,
        state TEXT NOT NULL,
        failed_from TEXT,
        failed_step TEXT,
        failed_reason TEXT,
        arch TEXT,
        firmware TEXT,
        vendor_class TEXT,
        uuid TEXT,
        last_step TEXT,
        seed_token_hash TEXT UNIQUE,
        seed_token_sealed TEXT,
        instance_id TEXT,
        host_keys TEXT NOT NULL DEFAULT '[]',
        first_seen TEXT,
        last_seen TEXT,
        state_changed_at TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      ) STRICT;
      CREATE INDEX machines_cluster ON machines(cluster);
      CREATE INDEX machines_rack ON machines(rack);
      CREATE INDEX machines_state ON machines(state);

      CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        mac TEXT,
        cluster TEXT,
        type TEXT NOT NULL,
        source TEXT,
        message TEXT NOT NULL,
        data TEXT
      ) STRICT;
      CREATE INDEX events_mac ON events(mac, id);
      CREATE INDEX events_cluster ON events(cluster, id);

      CREATE TABLE api_tokens (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        revoked_at TEXT
      ) STRICT;

      CREATE TABLE secrets (
        scope TEXT NOT NULL,
        name TEXT NOT NULL,
        sealed TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (scope, name)
      ) STRICT;
    `,
  },
  {
    version: 2,
    name: 'dhcp leases',
    // One row per address (PRIMARY KEY ip): an address can never be held by two MACs. A MAC holds
    // at most one row (UNIQUE mac; NULL for quarantined addresses). Times are ISO-8601 UTC.
    sql: `
      CREATE TABLE leases (
        ip TEXT PRIMARY KEY,
        mac TEXT UNIQUE,
        state TEXT NOT NULL CHECK (state IN ('bound', 'released', 'declined')),
        client_id TEXT,
        hostname TEXT,
        starts_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        CHECK ((state = 'declined') = (mac IS NULL))
      ) STRICT;
    `,
  },
  {
    // Version 2 belongs to DHCP (leases); the numbers were handed out per service.
    version: 3,
    name: 'orchestration',
    sql: `
      CREATE TABLE orchestration_steps (
        cluster TEXT NOT NULL REFERENCES clusters(name) ON UPDATE CASCADE ON DELETE CASCADE,
        id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        mac TEXT,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        started_at TEXT,
        ended_at TEXT,
        output TEXT NOT NULL DEFAULT '[]',
        error TEXT,
        data TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (cluster, id)
      ) STRICT;
      CREATE INDEX orchestration_steps_seq ON orchestration_steps(cluster, seq);

      CREATE TABLE orchestration_locks (
        cluster TEXT PRIMARY KEY REFERENCES clusters(name) ON UPDATE CASCADE ON DELETE CASCADE,
        owner TEXT NOT NULL,
        holder TEXT NOT NULL,
        expires_at_ms INTEGER NOT NULL
      ) STRICT;
    `,
  },
  {
    version: 4,
    name: 'machine list order index',
    // The list order of MachineCursor, so that a page of GET /machines?limit= walks the index
    // instead of sorting every machine (5,000 machines: 0.5 ms → 0.04 ms per page query).
    sql: `CREATE INDEX machines_list_order ON machines(COALESCE(rack, ''), COALESCE(hostname, ''), mac);`,
  },
  {
    version: 5,
    name: 'leases without a MAC index',
    // Migration 2's UNIQUE mac kept an on-disk index keyed by MAC. MACs arrive in random order,
    // so every lease committed dirtied its own page of that index: 6.5 of the 12 µs a lease cost
    // (docs/decisions/0306). "One row per MAC" is now kept by the lease repository, which holds
    // the MAC → address map in memory (the DHCP service is the table's only writer, and one
    // racksmith serves a data directory). The address stays the primary key: an address can never
    // be held by two MACs. WITHOUT ROWID: the row lives in the address's b-tree, so a renewal
    // rewrites one page instead of deleting a row, appending it and moving its index entry
    // (18 → 12 µs per lease when most bindings renew).
    sql: `
      CREATE TABLE leases_v5 (
        ip TEXT PRIMARY KEY,
        mac TEXT,
        state TEXT NOT NULL CHECK (state IN ('bound', 'released', 'declined')),
        client_id TEXT,
        hostname TEXT,
        starts_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        CHECK ((state = 'declined') = (mac IS NULL))
      ) STRICT, WITHOUT ROWID;
      INSERT INTO leases_v5 (ip, mac, state, client_id, hostname, starts_at, expires_at, updated_at)
        SELECT ip, mac, state, client_id, hostname, starts_at, expires_at, updated_at FROM leases;
      DROP TABLE leases;
      ALTER TABLE leases_v5 RENAME TO leases;
    `,
  },
  {
    version: 6,
    name: 'seed token address',
    // The address that fetched the boot script carrying the machine's seed token: the token works
    // only from there (and from the machine's `ip`). NULL until a boot script carried it.
    sql: `ALTER TABLE machines ADD COLUMN seed_token_address TEXT;`,
  },
  {
    version: 7,
    name: 'boot loader and Secure Boot per machine',
    // boot_loader: null is the site default. secure_boot: the operator's mark (1/0/null).
    // secure_boot_seen: what racksmith last saw ('enforced' from signed GRUB's lockdown, 'off'
    // from iPXE running on EFI). bootfile/bootfile_at/loader_at: the last boot binary served and
    // when a loader last asked for its script — a bootfile with no loader after it is a machine
    // stuck after its bootfile (docs/boot-chain.md).
    sql: `
      ALTER TABLE machines ADD COLUMN boot_loader TEXT;
      ALTER TABLE machines ADD COLUMN secure_boot INTEGER;
      ALTER TABLE machines ADD COLUMN secure_boot_seen TEXT;
      ALTER TABLE machines ADD COLUMN bootfile TEXT;
      ALTER TABLE machines ADD COLUMN bootfile_at TEXT;
      ALTER TABLE machines ADD COLUMN loader_at TEXT;
    `,
  },
  {
    version: 8,
    name: 'redfish BMC options and BMC facts',
    // bmc_options: the driver-specific settings as JSON ({systemId, verifyTls, tlsFingerprint,
    // solCapture}), so the next driver needs no migration. bmc_facts: what the BMC reported at
    // the last status call (JSON), kept apart from the machine's own fields.
    sql: `
      ALTER TABLE machines ADD COLUMN bmc_options TEXT;
      ALTER TABLE machines ADD COLUMN bmc_facts TEXT;
    `,
  },
  {
    version: 9,
    name: 'cluster VIP and rolling upgrade',
    // A pair of load balancers shares the API's virtual IP (keepalived); the upgrade under way is
    // one JSON document (its progress is in the orchestration's step records).
    sql: `
      ALTER TABLE clusters ADD COLUMN vip TEXT;
      ALTER TABLE clusters ADD COLUMN upgrade TEXT;
    `,
  },
  {
    version: 10,
    name: 'operating systems, install methods, install disks',
    // A cluster's OS is `os` (ubuntu-18.04 … debian-12), filled from ubuntu_release for existing
    // clusters. ubuntu_release stays NOT NULL — SQLite cannot relax that without rebuilding a table
    // other tables reference — and holds '' for a Debian cluster. A machine's install_disk is the
    // admin's choice, installed_disk (JSON) what its installer reported using, and
    // install_started_at when its current install began (the install deadline counts from it).
    sql: `
      ALTER TABLE clusters ADD COLUMN os TEXT NOT NULL DEFAULT '';
      UPDATE clusters SET os = 'ubuntu-' || ubuntu_release;
      ALTER TABLE clusters ADD COLUMN install_method TEXT NOT NULL DEFAULT '';
      UPDATE clusters SET install_method = CASE WHEN ubuntu_release = '18.04' THEN 'preseed' ELSE 'autoinstall' END;
      ALTER TABLE clusters ADD COLUMN install_disk_rule TEXT NOT NULL DEFAULT 'smallest';
      ALTER TABLE clusters ADD COLUMN image_url TEXT;
      ALTER TABLE clusters ADD COLUMN image_sha256 TEXT;
      ALTER TABLE machines ADD COLUMN install_disk TEXT;
      ALTER TABLE machines ADD COLUMN installed_disk TEXT;
      ALTER TABLE machines ADD COLUMN install_started_at TEXT;
      UPDATE machines SET install_started_at = state_changed_at WHERE state IN ('provisioning', 'installed');
    `,
  },
  {
    version: 11,
    name: 'rack unit and cached power state',
    // unit: the machine's rack unit from the sheet (1 = bottom), for a rack view in rack order.
    // power_state/_at: what the BMC last said (a status call) or what a power action just did,
    // so viewers see it without a BMC call of their own.
    sql: `
      ALTER TABLE machines ADD COLUMN unit INTEGER;
      ALTER TABLE machines ADD COLUMN power_state TEXT CHECK (power_state IN ('on', 'off'));
      ALTER TABLE machines ADD COLUMN power_state_at TEXT;
    `,
  },
];
