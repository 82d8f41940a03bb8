//! Roles that may not create the registry's tables: one granted only reads and writes of the
//! rows of a registry another role made, one granted reads only, one facing a database with no
//! registry yet.

use metaboot_harness::postgres::PgServer;
use metaboot_server::store::{self, NewNetwork, StoreError};

use crate::support::{instance, network, port_on};

/// What a role needs to use a registry made by another role, and no more: no `CREATE` on the
/// schema, owns no table. `{role}` is replaced by the role's name.
pub const READ_WRITE_GRANTS: &str = "
GRANT USAGE ON SCHEMA public TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role};
";

/// A role that may only read and write the rows of a registry its owner made opens it (an
/// open of a current schema runs no DDL, which would need ownership), lists it, and writes
/// and deletes records.
pub fn a_role_that_may_only_read_and_write_uses_the_registry(server: &PgServer, name: &str) {
    let role = format!("{name}_rw");
    let owner = store::open(&server.url(name)).unwrap();
    let net = network(&*owner, "net1", "198.18.0.0/24");
    let grants = READ_WRITE_GRANTS.replace("{role}", &role);
    server
        .psql(name, &format!("CREATE ROLE {role} LOGIN; {grants}"))
        .unwrap();

    let store = match store::open(&server.url_as(&role, name)) {
        Ok(store) => store,
        Err(err) => panic!("a role with read and write grants could not open: {err}"),
    };
    assert_eq!(store.networks().unwrap(), vec![net.clone()]);
    let port = instance(&*store, "vm", &port_on(&net));
    assert_eq!(owner.instances().unwrap().len(), 1);
    store.delete_instance(&port.instance_id).unwrap();
    store.delete_network(&net.id).unwrap();
    assert!(owner.networks().unwrap().is_empty());
}

/// A role granted SELECT only reads the registry, and a write of it is refused as a matter of
/// configuration (exit 2, as the same refusal at open), with the grants to run; nothing is
/// written.
pub fn a_role_that_may_only_read_is_refused_a_write_with_the_grants_to_run(
    server: &PgServer,
    name: &str,
) {
    let role = format!("{name}_ro");
    let owner = store::open(&server.url(name)).unwrap();
    let net = network(&*owner, "net1", "198.18.0.0/24");
    server
        .psql(
            name,
            &format!(
                "CREATE ROLE {role} LOGIN; GRANT USAGE ON SCHEMA public TO {role}; \
                 GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};"
            ),
        )
        .unwrap();
    let store = store::open(&server.url_as(&role, name)).unwrap();
    assert_eq!(store.networks().unwrap(), vec![net.clone()]);
    let refused = store.create_network(&NewNetwork {
        name: "net2".to_owned(),
        project: "p1".to_owned(),
        cidr: "198.18.1.0/24".parse().unwrap(),
        ..NewNetwork::default()
    });
    match refused {
        Err(err @ StoreError::NotPermitted(_)) => {
            assert!(err.is_user_error());
            let msg = err.to_string();
            assert!(
                msg.contains("permission denied")
                    && msg.contains("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES"),
                "{msg}"
            );
        }
        other => panic!("expected a refused privilege, got {other:?}"),
    }
    assert!(matches!(
        store.delete_network(&net.id),
        Err(StoreError::NotPermitted(_))
    ));
    assert_eq!(owner.networks().unwrap(), vec![net]);
}

/// A role that may not create tables, opening a database with no registry, is told what to
/// do, and the database is left as it was.
pub fn a_role_that_may_not_create_the_schema_is_told_what_to_do(server: &PgServer, name: &str) {
    let role = format!("{name}_rw");
    server
        .psql(name, &format!("CREATE ROLE {role} LOGIN"))
        .unwrap();
    match store::open(&server.url_as(&role, name)) {
        // A configuration problem, exit code 2: its unit does not restart it every 2 s.
        Err(err @ StoreError::NotPermitted(_)) => {
            assert!(err.is_user_error());
            let msg = err.to_string();
            assert!(msg.contains("has no registry yet"), "{msg}");
            assert!(msg.contains("the database's owner"), "{msg}");
        }
        Err(other) => panic!("expected a refused privilege, got {other:?}"),
        Ok(_) => panic!("a role without CREATE made the schema"),
    }
    // Its owner makes it, then the role may use it.
    drop(store::open(&server.url(name)).unwrap());
    let grants = READ_WRITE_GRANTS.replace("{role}", &role);
    server.psql(name, &grants).unwrap();
    assert!(
        store::open(&server.url_as(&role, name))
            .unwrap()
            .networks()
            .unwrap()
            .is_empty()
    );
}

/// A role granted the registry's tables but `schema_version` (granted table by table, one
/// left out) is told which grants to run; run as given, they let it in.
pub fn a_role_that_may_not_read_the_schema_version_is_told_which_grants_to_run(
    server: &PgServer,
    name: &str,
) {
    let role = format!("{name}_rw");
    drop(store::open(&server.url(name)).unwrap());
    let grants = READ_WRITE_GRANTS.replace("{role}", &role);
    server
        .psql(
            name,
            &format!(
                "CREATE ROLE {role} LOGIN; {grants} REVOKE SELECT ON schema_version FROM {role};"
            ),
        )
        .unwrap();
    let msg = match store::open(&server.url_as(&role, name)) {
        Err(StoreError::NotPermitted(msg)) => msg,
        Err(other) => panic!("expected a refused privilege, got {other:?}"),
        Ok(_) => panic!("a role that may not read schema_version opened the registry"),
    };
    assert!(
        msg.contains("permission denied") && msg.contains("the database's owner run `"),
        "{msg}"
    );
    let given = msg
        .split('`')
        .nth(1)
        .unwrap_or_else(|| panic!("no statements in {msg}"));
    assert!(
        given.contains(&format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};"
        )),
        "{msg}"
    );
    server.psql(name, given).unwrap();
    assert!(
        store::open(&server.url_as(&role, name))
            .unwrap()
            .networks()
            .unwrap()
            .is_empty()
    );
}
