//! A failover to an asynchronous standby that lacked the primary's last commits: a server
//! that followed them reads the registry anew from the promoted standby rather than keep
//! them (`server/src/store/postgres/identity.rs`).

use std::time::{Duration, Instant};

use metaboot_harness::postgres::PgServer;
use metaboot_server::model::{CatchUp, ReadModel};
use metaboot_server::store;

use crate::support::{instance, network, port_on};

/// How long the standby may take to replay what the primary committed before it falls
/// behind.
const REPLAYED_WITHIN: Duration = Duration::from_secs(30);

/// A primary and its standby, the server's URL naming both (the writable one taken): the
/// standby has the registry, then falls behind; the primary commits an instance the server's
/// read model applies, and stops; the standby is promoted and written to, its change log's
/// numbers past the lost instance's. The read model reloads: the lost instance is gone.
pub fn a_standby_promoted_without_the_last_changes_is_read_anew() {
    let mut primary = PgServer::start().unwrap();
    let name = "failover";
    primary.create_database(name).unwrap();
    let standby = primary.start_standby().unwrap();
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{name}?target_session_attrs=read-write",
        primary.port(),
        standby.port()
    );
    let store = store::open(&url).unwrap();
    let net = network(&*store, "net1", "198.18.0.0/24");
    let kept = instance(&*store, "kept", &port_on(&net));
    let model = ReadModel::load(&*store).unwrap();

    // Read on the standby behind the store's back: it may not have the schema yet.
    let replayed = format!(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM changes WHERE seq >= {}) THEN \
         RAISE 'not yet'; END IF; END $$",
        store.last_change().unwrap()
    );
    let deadline = Instant::now() + REPLAYED_WITHIN;
    while standby.psql(name, &replayed).is_err() {
        assert!(Instant::now() < deadline, "the standby never caught up");
        std::thread::sleep(Duration::from_millis(50));
    }
    standby.detach_from_primary().unwrap();
    let lost = instance(&*store, "lost", &port_on(&net));
    assert!(matches!(
        model.catch_up(&*store).unwrap(),
        CatchUp::Applied(_)
    ));
    assert!(model.instance(&lost.instance_id).is_some());
    let followed = model.seq();

    primary.stop().unwrap();
    standby.promote().unwrap();
    let after = instance(&*store, "after", &port_on(&net));
    assert!(
        store.last_change().unwrap() > followed,
        "the promoted standby's change log goes on past the lost changes"
    );
    assert_eq!(model.catch_up(&*store).unwrap(), CatchUp::Reloaded);
    assert!(
        model.instance(&lost.instance_id).is_none(),
        "the lost commit is still served"
    );
    assert!(model.instance(&kept.instance_id).is_some());
    assert!(model.instance(&after.instance_id).is_some());
    assert_eq!(model.seq(), store.last_change().unwrap());
}
