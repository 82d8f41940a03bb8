//! The PostgreSQL schema, created when an open finds none (`upgrade.rs`).

/// Same tables as SQLite; named UNIQUE constraints so a violation maps to a clear message.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS networks (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    project TEXT NOT NULL,
    cidr TEXT NOT NULL,
    gateway TEXT,
    dhcp_ip TEXT,
    isolated BOOLEAN NOT NULL,
    mtu BIGINT,
    created TEXT NOT NULL,
    second_cidr TEXT,
    second_gateway TEXT,
    second_dhcp_ip TEXT,
    ipv6_address_mode TEXT,
    libvirt_network TEXT,
    bridge TEXT
);
CREATE INDEX IF NOT EXISTS networks_name ON networks (name);
CREATE TABLE IF NOT EXISTS routers (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    project TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS routers_name ON routers (name);
CREATE TABLE IF NOT EXISTS router_networks (
    router_id TEXT NOT NULL REFERENCES routers (id) ON DELETE CASCADE,
    network_id TEXT NOT NULL REFERENCES networks (id) ON DELETE CASCADE,
    PRIMARY KEY (router_id, network_id)
);
CREATE INDEX IF NOT EXISTS router_networks_network ON router_networks (network_id);
CREATE TABLE IF NOT EXISTS instances (
    ec2_id BIGSERIAL PRIMARY KEY,
    uuid TEXT NOT NULL CONSTRAINT instances_uuid UNIQUE,
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    hostname TEXT NOT NULL,
    availability_zone TEXT,
    launch_index BIGINT NOT NULL,
    key_pairs TEXT NOT NULL,
    user_data BYTEA,
    meta TEXT NOT NULL,
    admin_pass TEXT,
    password TEXT,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_name ON instances (name);
CREATE TABLE IF NOT EXISTS ports (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    network_id TEXT NOT NULL REFERENCES networks (id),
    mac TEXT NOT NULL CONSTRAINT ports_mac UNIQUE,
    ip TEXT NOT NULL,
    instance_id TEXT NOT NULL REFERENCES instances (uuid),
    project TEXT NOT NULL,
    created TEXT NOT NULL,
    second_ip TEXT,
    CONSTRAINT ports_network_ip UNIQUE (network_id, ip)
);
CREATE INDEX IF NOT EXISTS ports_ip ON ports (ip);
CREATE INDEX IF NOT EXISTS ports_instance ON ports (instance_id);
CREATE TABLE IF NOT EXISTS changes (
    seq BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    id TEXT NOT NULL
);
";

/// What schema version 1 lacks (dual-stack networks, a port's second address), added to a
/// registry made by an older metaboot-server, in the transaction that records version 2.
pub const MIGRATE_FROM_1: &str = "
ALTER TABLE networks ADD COLUMN IF NOT EXISTS second_cidr TEXT;
ALTER TABLE networks ADD COLUMN IF NOT EXISTS second_gateway TEXT;
ALTER TABLE networks ADD COLUMN IF NOT EXISTS second_dhcp_ip TEXT;
ALTER TABLE networks ADD COLUMN IF NOT EXISTS ipv6_address_mode TEXT;
ALTER TABLE ports ADD COLUMN IF NOT EXISTS second_ip TEXT;
";

/// Indexes on the columns of version 2, made once those columns exist.
pub const INDEXES_2: &str = "
CREATE UNIQUE INDEX IF NOT EXISTS ports_network_second_ip ON ports (network_id, second_ip);
CREATE INDEX IF NOT EXISTS ports_second_ip ON ports (second_ip);
";

/// What schema version 2 lacks (networks served on a bridge of the host: a libvirt network or
/// a bridge by name), added in the transaction that records version 3.
pub const MIGRATE_FROM_2: &str = "
ALTER TABLE networks ADD COLUMN IF NOT EXISTS libvirt_network TEXT;
ALTER TABLE networks ADD COLUMN IF NOT EXISTS bridge TEXT;
";
