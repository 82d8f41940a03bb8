//! What a role that does not own the registry needs to use it, and which statements grant it:
//! the hint of an open refused for want of a privilege.

use ::postgres::Client;

/// The grants a role needs to use a registry another role made, and no more (no `CREATE`, no
/// ownership): `{schema}` and `{role}` are replaced, each quoted as an identifier.
pub const READ_WRITE_GRANTS: &str = "GRANT USAGE ON SCHEMA {schema} TO {role}; \
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}; \
    GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role};";

/// This session's role and the schema of the registry's `schema_version` table (as the other
/// statements find it, by the search path), each quoted as SQL wants an identifier. Reads
/// only the catalog, which every role may read.
const ROLE_AND_SCHEMA: &str = "SELECT pg_catalog.quote_ident(current_user::text), \
    pg_catalog.quote_ident(COALESCE((SELECT n.nspname FROM pg_catalog.pg_class c \
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
    WHERE c.oid = pg_catalog.to_regclass('schema_version')), 'public'))";

/// [`READ_WRITE_GRANTS`] with the placeholders the user fills: for a statement refused inside
/// a transaction, which can run no other (the catalog cannot be read to name them).
pub fn read_write_grants_to_fill() -> String {
    READ_WRITE_GRANTS
        .replace("{schema}", "public")
        .replace("{role}", "ROLE")
}

/// [`READ_WRITE_GRANTS`] for this session's role on the registry's schema; with placeholders
/// left for the user to fill when the catalog cannot be read either.
pub fn read_write_grants(client: &mut Client) -> String {
    let (role, schema) = client
        .query_one(ROLE_AND_SCHEMA, &[])
        .and_then(|row| Ok((row.try_get::<_, String>(0)?, row.try_get::<_, String>(1)?)))
        .unwrap_or_else(|_| ("ROLE".to_owned(), "public".to_owned()));
    READ_WRITE_GRANTS
        .replace("{schema}", &schema)
        .replace("{role}", &role)
}
