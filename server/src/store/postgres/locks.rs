//! The advisory locks the registry's transactions take: keys every metaboot-server sharing a
//! database must agree on.

/// Taken while creating or upgrading the schema, so concurrent openers do not race on `CREATE
/// TABLE IF NOT EXISTS` (which is not atomic in PostgreSQL). Older metaboot-servers take it
/// (alone) at every open.
pub const SCHEMA_LOCK: i64 = 0x6d62_7363_6865_6d61; // "mbschema"
/// Taken first by every write transaction: writes are rare admin actions, and serialising
/// them means change log numbers become visible in order (a reader polling `seq > last` never
/// skips a later-committed lower number) and IP allocation never races. The schema's
/// creation takes it too (after [`SCHEMA_LOCK`]), so that no write holds a table lock its DDL
/// waits for while waiting for one the DDL holds.
pub const WRITE_LOCK: i64 = 0x6d62_7772_6974_6573; // "mbwrites"
