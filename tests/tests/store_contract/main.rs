//! The store contract: one suite of checks, run against a SQLite file and a real PostgreSQL.
//!
//! A plain `main` (harness = false) runs every case on a fresh SQLite file, then starts one
//! PostgreSQL server, runs every case on a fresh database, opens one beside a write, makes a
//! database again under a live read model (and leaves one empty), fails a second server over
//! to its standby under one, opens registries as roles that may not create tables, restarts
//! the server under a live store, and stops it. Without
//! PostgreSQL the PostgreSQL half fails when `CI=true` and is skipped with a reason otherwise.
//! `cargo test … -- WORD` runs only cases whose name has WORD.

mod addresses;
mod changes;
mod dual_stack;
mod failover;
mod feed;
mod host;
mod isolation;
mod limits;
mod pool;
mod records;
mod roles;
mod servers;
mod support;
mod upgrades;

use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::time::Instant;

use metaboot_harness::postgres::PgServer;
use metaboot_server::store::{self, Store};

type Case = fn(&dyn Store);

/// Every case, by name.
const CASES: &[(&str, Case)] = &[
    (
        "network_create_list_show_delete",
        records::network_create_list_show_delete,
    ),
    (
        "network_bad_input_is_refused",
        records::network_bad_input_is_refused,
    ),
    ("network_without_dhcp", records::network_without_dhcp),
    (
        "names_resolve_by_id_or_unique_name",
        records::names_resolve_by_id_or_unique_name,
    ),
    (
        "router_create_attach_delete",
        records::router_create_attach_delete,
    ),
    (
        "router_remove_network_detaches_one",
        records::router_remove_network_detaches_one,
    ),
    (
        "instance_create_show_delete",
        records::instance_create_show_delete,
    ),
    (
        "overlapping_ips_on_two_networks",
        addresses::overlapping_ips_on_two_networks,
    ),
    ("ports_behind_a_router", addresses::ports_behind_a_router),
    (
        "ip_rules_within_a_network",
        addresses::ip_rules_within_a_network,
    ),
    (
        "mac_is_unique_and_normalised",
        addresses::mac_is_unique_and_normalised,
    ),
    ("user_data_limit", limits::user_data_limit),
    (
        "password_limit_and_write_once",
        limits::password_limit_and_write_once,
    ),
    (
        "password_clear_lets_the_guest_post_again",
        limits::password_clear_lets_the_guest_post_again,
    ),
    (
        "password_race_has_one_winner",
        limits::password_race_has_one_winner,
    ),
    (
        "password_reaches_only_the_instance_it_was_posted_for",
        limits::password_reaches_only_the_instance_it_was_posted_for,
    ),
    (
        "allocation_fills_lowest_free",
        addresses::allocation_fills_lowest_free,
    ),
    (
        "allocation_under_concurrency",
        addresses::allocation_under_concurrency,
    ),
    (
        "full_network_refuses_cleanly",
        addresses::full_network_refuses_cleanly,
    ),
    (
        "bulk_allocation_fills_lowest_free_in_order",
        addresses::bulk_allocation_fills_lowest_free_in_order,
    ),
    (
        "network_with_ports_cannot_be_deleted",
        records::network_with_ports_cannot_be_deleted,
    ),
    (
        "ports_create_list_delete",
        records::ports_create_list_delete,
    ),
    (
        "change_log_follows_every_write",
        changes::change_log_follows_every_write,
    ),
    (
        "refused_writes_leave_nothing",
        changes::refused_writes_leave_nothing,
    ),
    (
        "snapshot_holds_every_record_and_its_change",
        feed::snapshot_holds_every_record_and_its_change,
    ),
    (
        "changes_after_hand_over_the_records_as_they_are",
        feed::changes_after_hand_over_the_records_as_they_are,
    ),
    (
        "a_reset_store_or_a_flood_is_not_a_batch",
        feed::a_reset_store_or_a_flood_is_not_a_batch,
    ),
    (
        "bulk_registration_is_all_or_nothing",
        feed::bulk_registration_is_all_or_nothing,
    ),
    (
        "listeners_hear_every_commit",
        feed::listeners_hear_every_commit,
    ),
    (
        "ipv6_and_dual_stack_networks",
        dual_stack::ipv6_and_dual_stack_networks,
    ),
    (
        "dual_stack_bad_input_is_refused",
        dual_stack::dual_stack_bad_input_is_refused,
    ),
    (
        "slaac_ports_take_the_address_their_guest_makes",
        dual_stack::slaac_ports_take_the_address_their_guest_makes,
    ),
    (
        "host_networks_and_their_instances",
        host::host_networks_and_their_instances,
    ),
    (
        "host_network_bad_input_is_refused",
        host::host_network_bad_input_is_refused,
    ),
];

/// A PostgreSQL-only case on a new database of the server, named by the second field.
type DatabaseCase = fn(&PgServer, &str);

/// The PostgreSQL-only cases that need the server itself, each on a database of its own.
const DATABASE_CASES: &[(&str, &str, DatabaseCase)] = &[
    (
        "an_open_beside_a_write_waits_for_it_in_nothing",
        "open_beside_a_write",
        servers::an_open_beside_a_write_waits_for_it_in_nothing,
    ),
    (
        "a_write_queued_behind_a_long_write_waits_for_it",
        "write_queued",
        servers::a_write_queued_behind_a_long_write_waits_for_it,
    ),
    (
        "an_empty_database_made_again_is_given_the_schema",
        "made_again_empty",
        servers::an_empty_database_made_again_is_given_the_schema,
    ),
    (
        "a_caller_that_panics_holding_a_connection_frees_it",
        "pool_panics",
        pool::a_caller_that_panics_holding_a_connection_frees_it,
    ),
    (
        "writes_queued_behind_the_write_lock_leave_the_reads_a_connection",
        "pool_queued_writes",
        pool::writes_queued_behind_the_write_lock_leave_the_reads_a_connection,
    ),
    (
        "a_role_that_may_only_read_and_write_uses_the_registry",
        "roles_read_write",
        roles::a_role_that_may_only_read_and_write_uses_the_registry,
    ),
    (
        "a_role_that_may_only_read_is_refused_a_write_with_the_grants_to_run",
        "roles_read_only",
        roles::a_role_that_may_only_read_is_refused_a_write_with_the_grants_to_run,
    ),
    (
        "a_role_that_may_not_create_the_schema_is_told_what_to_do",
        "roles_no_schema",
        roles::a_role_that_may_not_create_the_schema_is_told_what_to_do,
    ),
    (
        "a_role_that_may_not_read_the_schema_version_is_told_which_grants_to_run",
        "roles_no_version",
        roles::a_role_that_may_not_read_the_schema_version_is_told_which_grants_to_run,
    ),
    (
        "racing_writes_under_a_repeatable_read_default_allocate_densely",
        "writes_repeatable_read",
        isolation::racing_writes_under_a_repeatable_read_default_allocate_densely,
    ),
    (
        "an_upgrade_beside_a_snapshot_read_aborts_neither",
        "upgrade_beside_a_read",
        upgrades::an_upgrade_beside_a_snapshot_read_aborts_neither,
    ),
    (
        "an_upgrade_a_read_left_open_holds_up_gives_up_and_says_to_retry",
        "upgrade_held_up",
        upgrades::an_upgrade_a_read_left_open_holds_up_gives_up_and_says_to_retry,
    ),
    (
        "concurrent_opens_of_an_old_registry_upgrade_it_once",
        "upgrade_concurrently",
        upgrades::concurrent_opens_of_an_old_registry_upgrade_it_once,
    ),
];

/// Runs one case, catching its panic; true when it passed.
fn run_case(backend: &str, name: &str, body: impl FnOnce()) -> bool {
    let started = Instant::now();
    let passed = panic::catch_unwind(AssertUnwindSafe(body)).is_ok();
    let verdict = if passed { "ok" } else { "FAILED" };
    println!(
        "test {backend}::{name} ... {verdict} ({} ms)",
        started.elapsed().as_millis()
    );
    passed
}

fn main() -> ExitCode {
    let filter: Option<String> = std::env::args().skip(1).find(|arg| !arg.starts_with('-'));
    let selected: Vec<(usize, &str, Case)> = CASES
        .iter()
        .enumerate()
        .filter(|(_, (name, _))| filter.as_ref().is_none_or(|f| name.contains(f.as_str())))
        .map(|(i, (name, case))| (i, *name, *case))
        .collect();
    let mut failed: Vec<String> = Vec::new();

    for (_, name, case) in &selected {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("registry.sqlite");
        let passed = run_case("sqlite", name, || {
            let store = store::open(path.to_str().expect("temp paths are UTF-8")).unwrap();
            case(&*store);
        });
        if !passed {
            failed.push(format!("sqlite::{name}"));
        }
    }
    let want_open = filter
        .as_ref()
        .is_none_or(|f| "concurrent_open".contains(f.as_str()));
    if want_open {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("registry.sqlite");
        let url = format!("sqlite:{}", path.display());
        if !run_case("sqlite", "concurrent_open", || {
            servers::concurrent_open(&url)
        }) {
            failed.push("sqlite::concurrent_open".to_owned());
        }
    }

    let want_pruning = filter
        .as_ref()
        .is_none_or(|f| "change_log_keeps_the_newest".contains(f.as_str()));
    if want_pruning {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}", dir.path().join("registry.sqlite").display());
        if !run_case("sqlite", "change_log_keeps_the_newest", || {
            changes::change_log_keeps_the_newest(&url)
        }) {
            failed.push("sqlite::change_log_keeps_the_newest".to_owned());
        }
    }

    let want_upgrade = filter
        .as_ref()
        .is_none_or(|f| "schema_1_is_brought_up_to_date".contains(f.as_str()));
    if want_upgrade {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("registry.sqlite");
        let make_v1 = || {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(dual_stack::SQLITE_SCHEMA_1).unwrap();
            conn.execute_batch(dual_stack::ROWS_1).unwrap();
        };
        let url = format!("sqlite:{}", path.display());
        if !run_case("sqlite", "schema_1_is_brought_up_to_date", || {
            dual_stack::schema_1_is_brought_up_to_date(&url, &make_v1)
        }) {
            failed.push("sqlite::schema_1_is_brought_up_to_date".to_owned());
        }
    }

    let want_upgrade_2 = filter
        .as_ref()
        .is_none_or(|f| "schema_2_is_brought_up_to_date".contains(f.as_str()));
    if want_upgrade_2 {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("registry.sqlite");
        let make_v2 = || {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(dual_stack::SQLITE_SCHEMA_1).unwrap();
            conn.execute_batch(dual_stack::ROWS_1).unwrap();
            conn.execute_batch(host::TO_SCHEMA_2).unwrap();
        };
        let url = format!("sqlite:{}", path.display());
        if !run_case("sqlite", "schema_2_is_brought_up_to_date", || {
            host::schema_2_is_brought_up_to_date(&url, &make_v2)
        }) {
            failed.push("sqlite::schema_2_is_brought_up_to_date".to_owned());
        }
    }

    let want_restart = filter
        .as_ref()
        .is_none_or(|f| "postgres_restart".contains(f.as_str()));
    let want_made_again = filter
        .as_ref()
        .is_none_or(|f| "a_database_made_again_under_the_server_is_followed".contains(f.as_str()));
    let want_failover = filter.as_ref().is_none_or(|f| {
        "a_standby_promoted_without_the_last_changes_is_read_anew".contains(f.as_str())
    });
    let want_databases: Vec<(&str, &str, DatabaseCase)> = DATABASE_CASES
        .iter()
        .filter(|(name, _, _)| filter.as_ref().is_none_or(|f| name.contains(f.as_str())))
        .copied()
        .collect();
    if !selected.is_empty()
        || want_restart
        || want_made_again
        || want_failover
        || !want_databases.is_empty()
        || want_open
        || want_pruning
        || want_upgrade
        || want_upgrade_2
    {
        match PgServer::start() {
            Ok(mut server) => {
                for (index, name, case) in &selected {
                    let passed = run_case("postgres", name, || {
                        let url = server.create_database(&format!("case_{index}")).unwrap();
                        let store = store::open(&url).unwrap();
                        case(&*store);
                    });
                    if !passed {
                        failed.push(format!("postgres::{name}"));
                    }
                }
                if want_open {
                    let url = server.create_database("concurrent_open").unwrap();
                    if !run_case("postgres", "concurrent_open", || {
                        servers::concurrent_open(&url)
                    }) {
                        failed.push("postgres::concurrent_open".to_owned());
                    }
                }
                if want_pruning {
                    let url = server.create_database("pruning").unwrap();
                    if !run_case("postgres", "change_log_keeps_the_newest", || {
                        changes::change_log_keeps_the_newest(&url)
                    }) {
                        failed.push("postgres::change_log_keeps_the_newest".to_owned());
                    }
                }
                if want_upgrade {
                    let url = server.create_database("schema_1").unwrap();
                    let make_v1 = || {
                        server
                            .psql("schema_1", dual_stack::POSTGRES_SCHEMA_1)
                            .unwrap();
                        server.psql("schema_1", dual_stack::ROWS_1).unwrap();
                    };
                    if !run_case("postgres", "schema_1_is_brought_up_to_date", || {
                        dual_stack::schema_1_is_brought_up_to_date(&url, &make_v1)
                    }) {
                        failed.push("postgres::schema_1_is_brought_up_to_date".to_owned());
                    }
                }
                if want_upgrade_2 {
                    let url = server.create_database("schema_2").unwrap();
                    let make_v2 = || {
                        for sql in [
                            dual_stack::POSTGRES_SCHEMA_1,
                            dual_stack::ROWS_1,
                            host::TO_SCHEMA_2,
                        ] {
                            server.psql("schema_2", sql).unwrap();
                        }
                    };
                    if !run_case("postgres", "schema_2_is_brought_up_to_date", || {
                        host::schema_2_is_brought_up_to_date(&url, &make_v2)
                    }) {
                        failed.push("postgres::schema_2_is_brought_up_to_date".to_owned());
                    }
                }
                if want_made_again {
                    let name = "made_again";
                    server.create_database(name).unwrap();
                    if !run_case(
                        "postgres",
                        "a_database_made_again_under_the_server_is_followed",
                        || {
                            servers::a_database_made_again_under_the_server_is_followed(
                                &server, name,
                            )
                        },
                    ) {
                        failed.push(
                            "postgres::a_database_made_again_under_the_server_is_followed"
                                .to_owned(),
                        );
                    }
                }
                for (name, database, case) in &want_databases {
                    server.create_database(database).unwrap();
                    if !run_case("postgres", name, || case(&server, database)) {
                        failed.push(format!("postgres::{name}"));
                    }
                }
                // A primary and a standby of its own: the suite's server stays up.
                if want_failover
                    && !run_case(
                        "postgres",
                        "a_standby_promoted_without_the_last_changes_is_read_anew",
                        failover::a_standby_promoted_without_the_last_changes_is_read_anew,
                    )
                {
                    failed.push(
                        "postgres::a_standby_promoted_without_the_last_changes_is_read_anew"
                            .to_owned(),
                    );
                }
                if want_restart {
                    let url = server.create_database("restart").unwrap();
                    if !run_case("postgres", "postgres_restart", || {
                        servers::postgres_restart(&mut server, &url);
                    }) {
                        failed.push("postgres::postgres_restart".to_owned());
                        println!("server log: {}", server.log_path().display());
                    }
                }
            }
            Err(err) if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
                println!("PostgreSQL is required in CI: {err:#}");
                failed.push("postgres (server did not start)".to_owned());
            }
            Err(err) => {
                println!("skipping the PostgreSQL half of the store contract: {err:#}");
            }
        }
    }

    if failed.is_empty() {
        println!("\nstore contract: ok");
        ExitCode::SUCCESS
    } else {
        println!("\nstore contract failed: {}", failed.join(", "));
        ExitCode::FAILURE
    }
}
