//! The registry's SQL, written once for both backends: PostgreSQL's `$N` placeholders, turned
//! into SQLite's `?N` at compile time (the same parameter numbers, one byte each). Only what the
//! dialects really disagree on stays in a backend: a list parameter (`= ANY($2)` against an
//! `IN (…)` of placeholders) and the schema's column types.
//!
//! A `$` may appear in these texts only as a placeholder.

/// One statement in both dialects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statement {
    /// With `$1`, `$2`, … (PostgreSQL).
    pub postgres: &'static str,
    /// With `?1`, `?2`, … (SQLite).
    pub sqlite: &'static str,
}

/// `text` with every `$` turned into `?`; `N` is its length in bytes.
pub const fn question_marks<const N: usize>(text: &str) -> [u8; N] {
    let bytes = text.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = if bytes[i] == b'$' { b'?' } else { bytes[i] };
        i += 1;
    }
    out
}

/// A [`Statement`] from its PostgreSQL text, evaluated at compile time.
macro_rules! statement {
    ($text:expr) => {{
        const TEXT: &str = $text;
        const SQLITE: [u8; TEXT.len()] = question_marks(TEXT);
        Statement {
            postgres: TEXT,
            sqlite: match std::str::from_utf8(&SQLITE) {
                Ok(text) => text,
                Err(_) => panic!("a statement is not UTF-8"),
            },
        }
    }};
}

/// Columns of a network row, in the order `rows::network` reads them.
macro_rules! network_select {
    () => {
        "SELECT id, name, project, cidr, gateway, dhcp_ip, isolated, mtu, created, second_cidr, \
         second_gateway, second_dhcp_ip, ipv6_address_mode, libvirt_network, bridge FROM networks"
    };
}
/// Columns of a router row (its networks come from `router_networks`).
macro_rules! router_select {
    () => {
        "SELECT id, name, project, created FROM routers"
    };
}
/// Columns of an instance row, in the order `rows::instance` reads them.
macro_rules! instance_select {
    () => {
        "SELECT ec2_id, uuid, project, name, hostname, availability_zone, launch_index, \
         key_pairs, user_data, meta, admin_pass, password, created FROM instances"
    };
}
/// Columns of a port row, in the order `rows::port` reads them.
macro_rules! port_select {
    () => {
        "SELECT id, network_id, mac, ip, instance_id, project, created, second_ip FROM ports"
    };
}
pub(crate) use port_select;

/// A [`Statement`] whose texts differ beyond their placeholders: PostgreSQL's and SQLite's,
/// both written with `$N` (SQLite's turned into `?N` at compile time).
macro_rules! dialects {
    ($postgres:expr, $sqlite:expr) => {{
        const SQLITE_TEXT: &str = $sqlite;
        const SQLITE: [u8; SQLITE_TEXT.len()] = question_marks(SQLITE_TEXT);
        Statement {
            postgres: $postgres,
            sqlite: match std::str::from_utf8(&SQLITE) {
                Ok(text) => text,
                Err(_) => panic!("a statement is not UTF-8"),
            },
        }
    }};
}

/// An instance row followed by one of its port rows (NULLs when it has none), in the order
/// `rows::InstanceWithPort` reads them.
macro_rules! instance_with_port_columns {
    () => {
        "SELECT i.ec2_id, i.uuid, i.project, i.name, i.hostname, i.availability_zone, \
         i.launch_index, i.key_pairs, i.user_data, i.meta, i.admin_pass, i.password, i.created, \
         p.id, p.network_id, p.mac, p.ip, p.instance_id, p.project, p.created, p.second_ip"
    };
}
/// Instances whose change is after `$1`, and owners of ports whose change is after `$1`.
macro_rules! changed_instances {
    () => {
        " WHERE i.uuid IN (SELECT id FROM changes WHERE seq > $1 AND kind = 'instance' \
         UNION SELECT q.instance_id FROM ports q JOIN changes c ON c.id = q.id \
         WHERE c.seq > $1 AND c.kind = 'port')"
    };
}
/// PostgreSQL: a lateral join walks the instances in key order and each one's ports by index,
/// so a million instances stream without a sort.
macro_rules! postgres_instances_with_ports {
    ($filter:expr) => {
        concat!(
            instance_with_port_columns!(),
            " FROM instances i LEFT JOIN LATERAL (SELECT * FROM ports q WHERE q.instance_id = \
             i.uuid ORDER BY q.seq) p ON true",
            $filter,
            " ORDER BY i.ec2_id, p.seq"
        )
    };
}
/// SQLite: the same as a plain join (its plan is already a loop over the instances' rowids
/// with an index lookup of their ports).
macro_rules! sqlite_instances_with_ports {
    ($filter:expr) => {
        concat!(
            instance_with_port_columns!(),
            " FROM instances i LEFT JOIN ports p ON p.instance_id = i.uuid",
            $filter,
            " ORDER BY i.ec2_id, p.seq"
        )
    };
}

// --- schema version
pub const SCHEMA_VERSION_READ: Statement = statement!("SELECT MAX(version) FROM schema_version");
pub const SCHEMA_VERSION_INSERT: Statement =
    statement!("INSERT INTO schema_version (version) VALUES ($1)");

// --- networks
pub const NETWORK: Statement = statement!(concat!(network_select!(), " WHERE id = $1"));
pub const NETWORKS_NAMED: Statement =
    statement!(concat!(network_select!(), " WHERE name = $1 ORDER BY seq"));
pub const NETWORKS: Statement = statement!(concat!(network_select!(), " ORDER BY seq"));
pub const INSERT_NETWORK: Statement = statement!(
    "INSERT INTO networks (id, name, project, cidr, gateway, dhcp_ip, isolated, mtu, created, \
     second_cidr, second_gateway, second_dhcp_ip, ipv6_address_mode, libvirt_network, bridge) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
);
pub const DELETE_NETWORK: Statement = statement!("DELETE FROM networks WHERE id = $1");

// --- routers
pub const ROUTER: Statement = statement!(concat!(router_select!(), " WHERE id = $1"));
pub const ROUTERS_NAMED: Statement =
    statement!(concat!(router_select!(), " WHERE name = $1 ORDER BY seq"));
pub const ROUTERS: Statement = statement!(concat!(router_select!(), " ORDER BY seq"));
/// One router's networks, sorted.
pub const ROUTER_NETWORKS: Statement =
    statement!("SELECT network_id FROM router_networks WHERE router_id = $1 ORDER BY network_id");
/// Every attachment, for listing all routers in two statements.
pub const ALL_ROUTER_NETWORKS: Statement =
    statement!("SELECT router_id, network_id FROM router_networks ORDER BY router_id, network_id");
pub const ROUTERS_OF_NETWORK: Statement =
    statement!("SELECT router_id FROM router_networks WHERE network_id = $1 ORDER BY router_id");
pub const INSERT_ROUTER: Statement =
    statement!("INSERT INTO routers (id, name, project, created) VALUES ($1, $2, $3, $4)");
pub const ATTACH_NETWORK: Statement =
    statement!("INSERT INTO router_networks (router_id, network_id) VALUES ($1, $2)");
pub const DETACH_ROUTER: Statement = statement!("DELETE FROM router_networks WHERE router_id = $1");
pub const DETACH_ROUTER_NETWORK: Statement =
    statement!("DELETE FROM router_networks WHERE router_id = $1 AND network_id = $2");
pub const DELETE_ROUTER: Statement = statement!("DELETE FROM routers WHERE id = $1");

// --- instances
/// The API's hot path: one instance by uuid (unique index).
pub const INSTANCE_BY_UUID: Statement = statement!(concat!(instance_select!(), " WHERE uuid = $1"));
pub const INSTANCES_NAMED: Statement = statement!(concat!(
    instance_select!(),
    " WHERE name = $1 ORDER BY ec2_id"
));
pub const INSTANCES: Statement = statement!(concat!(instance_select!(), " ORDER BY ec2_id"));
pub const INSERT_INSTANCE: Statement = statement!(
    "INSERT INTO instances (uuid, project, name, hostname, availability_zone, launch_index, \
     key_pairs, user_data, meta, admin_pass, password, created) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11) RETURNING ec2_id"
);
pub const DELETE_INSTANCE: Statement = statement!("DELETE FROM instances WHERE uuid = $1");
/// Write-once in one statement: NULL or empty counts as unset.
pub const SET_PASSWORD_IF_UNSET: Statement = statement!(
    "UPDATE instances SET password = $1 WHERE uuid = $2 AND (password IS NULL OR password = '')"
);
/// The same, for the instance a request was identified as: one deleted and created again under
/// the same uuid is another instance (a new `ec2_id`, never reused).
pub const SET_PASSWORD_OF_IF_UNSET: Statement = statement!(
    "UPDATE instances SET password = $1 WHERE uuid = $2 AND ec2_id = $3 \
     AND (password IS NULL OR password = '')"
);

/// Clears a stored password (nova's `clear-password`): the guest may post again.
pub const CLEAR_PASSWORD: Statement = statement!(
    "UPDATE instances SET password = NULL WHERE uuid = $1 AND password IS NOT NULL \
     AND password <> ''"
);

// --- ports
pub const PORT: Statement = statement!(concat!(port_select!(), " WHERE id = $1"));
pub const PORTS: Statement = statement!(concat!(port_select!(), " ORDER BY seq"));
/// The oldest `$2` ports on a network (those a refusal names).
pub const NETWORK_PORTS_OLDEST: Statement = statement!(concat!(
    port_select!(),
    " WHERE network_id = $1 ORDER BY seq LIMIT $2"
));
/// How many ports a network has (index `ports_network_ip`, no rows read).
pub const NETWORK_PORT_COUNT: Statement =
    statement!("SELECT COUNT(*) FROM ports WHERE network_id = $1");
/// The addresses a network's ports hold, on either subnet, without their rows: two index-only
/// scans (`ports_network_ip`, `ports_network_second_ip`), for allocating a free one.
pub const NETWORK_IPS: Statement = statement!(
    "SELECT ip FROM ports WHERE network_id = $1 \
     UNION ALL SELECT second_ip FROM ports WHERE network_id = $1 AND second_ip IS NOT NULL"
);
pub const INSTANCE_PORTS: Statement = statement!(concat!(
    port_select!(),
    " WHERE instance_id = $1 ORDER BY seq"
));
pub const PORT_WITH_MAC: Statement = statement!(concat!(port_select!(), " WHERE mac = $1"));
/// Ports by IP on either subnet, without networks (indexes `ports_ip` and
/// `ports_second_ip`).
pub const PORTS_BY_IP: Statement = statement!(concat!(
    port_select!(),
    " WHERE ip = $1 OR second_ip = $1 ORDER BY seq"
));
/// Ports by IP on a router's networks (indexes `ports_ip`, `ports_second_ip` and the
/// `router_networks` key).
pub const PORTS_BEHIND_ROUTER: Statement = statement!(
    "SELECT p.id, p.network_id, p.mac, p.ip, p.instance_id, p.project, p.created, p.second_ip \
     FROM ports p JOIN router_networks r ON r.network_id = p.network_id \
     WHERE (p.ip = $1 OR p.second_ip = $1) AND r.router_id = $2 ORDER BY p.seq"
);
pub const INSERT_PORT: Statement = statement!(
    "INSERT INTO ports (id, network_id, mac, ip, instance_id, project, created, second_ip) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
);
pub const DELETE_PORT: Statement = statement!("DELETE FROM ports WHERE id = $1");

// --- change log
pub const LOG_CHANGE: Statement = statement!("INSERT INTO changes (kind, id) VALUES ($1, $2)");
pub const LAST_CHANGE: Statement = statement!("SELECT COALESCE(MAX(seq), 0) FROM changes");
pub const CHANGES_SINCE: Statement =
    statement!("SELECT seq, kind, id FROM changes WHERE seq > $1 ORDER BY seq");
pub const PRUNE_CHANGES_THROUGH: Statement = statement!("DELETE FROM changes WHERE seq <= $1");

// --- what a read model is built from: a snapshot, then batches of changes
/// Every instance with its ports, oldest instance first, each one's ports oldest first.
pub const INSTANCES_WITH_PORTS: Statement = dialects!(
    postgres_instances_with_ports!(""),
    sqlite_instances_with_ports!("")
);
/// The instances changed after `$1` (and the owners of ports changed after it), as
/// [`INSTANCES_WITH_PORTS`].
pub const CHANGED_INSTANCES_WITH_PORTS: Statement = dialects!(
    postgres_instances_with_ports!(changed_instances!()),
    sqlite_instances_with_ports!(changed_instances!())
);
/// Networks changed after `$1` that exist.
pub const CHANGED_NETWORKS: Statement = statement!(concat!(
    network_select!(),
    " WHERE id IN (SELECT id FROM changes WHERE seq > $1 AND kind = 'network') ORDER BY seq"
));
/// Routers changed after `$1` that exist (their networks from
/// [`CHANGED_ROUTER_NETWORKS`]).
pub const CHANGED_ROUTERS: Statement = statement!(concat!(
    router_select!(),
    " WHERE id IN (SELECT id FROM changes WHERE seq > $1 AND kind = 'router') ORDER BY seq"
));
/// The attachments of routers changed after `$1`.
pub const CHANGED_ROUTER_NETWORKS: Statement = statement!(
    "SELECT router_id, network_id FROM router_networks WHERE router_id IN \
     (SELECT id FROM changes WHERE seq > $1 AND kind = 'router') ORDER BY router_id, network_id"
);
/// The oldest change the log still holds (0 when empty).
pub const OLDEST_CHANGE: Statement = statement!("SELECT COALESCE(MIN(seq), 0) FROM changes");
/// At most `$2` changes after `$1`, oldest first.
pub const CHANGES_AFTER_LIMITED: Statement =
    statement!("SELECT seq, kind, id FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_texts_differ_only_in_their_placeholders() {
        for statement in [
            INSTANCE_BY_UUID,
            PORTS_BEHIND_ROUTER,
            INSERT_INSTANCE,
            LAST_CHANGE,
        ] {
            assert!(!statement.sqlite.contains('$'), "{}", statement.sqlite);
            assert_eq!(
                statement.postgres.replace('$', "?"),
                statement.sqlite,
                "{}",
                statement.postgres
            );
        }
        assert_eq!(
            PORTS_BEHIND_ROUTER.sqlite.matches("?").count(),
            PORTS_BEHIND_ROUTER.postgres.matches("$").count()
        );
        assert!(
            INSERT_NETWORK
                .sqlite
                .ends_with("?10, ?11, ?12, ?13, ?14, ?15)")
        );
    }
}
