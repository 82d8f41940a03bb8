//! Size limits (user data, passwords) and the write-once password.

use metaboot_server::store::{
    MAX_PASSWORD_BYTES, MAX_USER_DATA_BYTES, NewInstance, PasswordSet, Store,
};

use crate::support::{invalid, network, new_instance, not_found, port_on, snapshot, uuid};

/// Threads racing to set one password.
const PASSWORD_RACERS: usize = 50;

pub fn user_data_limit(store: &dyn Store) {
    let net = network(store, "net1", "198.18.0.0/24");
    let largest = NewInstance {
        user_data: Some(vec![b'x'; MAX_USER_DATA_BYTES]),
        ..new_instance("big")
    };
    let (created, _) = store.create_instance(&largest, &port_on(&net)).unwrap();
    assert_eq!(
        store
            .instance(&created.uuid)
            .unwrap()
            .user_data
            .map(|d| d.len()),
        Some(MAX_USER_DATA_BYTES)
    );
    let before = snapshot(store);
    let too_large = NewInstance {
        user_data: Some(vec![b'x'; MAX_USER_DATA_BYTES + 1]),
        ..new_instance("too-big")
    };
    let msg = invalid(store.create_instance(&too_large, &port_on(&net)));
    assert!(
        msg.contains("49150") && msg.contains("49149") && msg.contains("65535"),
        "{msg}"
    );
    assert_eq!(snapshot(store), before);
}

pub fn password_limit_and_write_once(store: &dyn Store) {
    let net = network(store, "net1", "198.18.0.0/24");
    let a = store
        .create_instance(&new_instance("a"), &port_on(&net))
        .unwrap()
        .0;
    let b = store
        .create_instance(&new_instance("b"), &port_on(&net))
        .unwrap()
        .0;

    invalid(store.set_password(&a.uuid, None, &"p".repeat(MAX_PASSWORD_BYTES + 1)));
    assert_eq!(store.instance(&a.uuid).unwrap().password, None);
    let largest = "p".repeat(MAX_PASSWORD_BYTES);
    assert!(matches!(
        store.set_password(&a.uuid, None, &largest).unwrap(),
        PasswordSet::Stored { .. }
    ));
    assert_eq!(
        store.instance(&a.uuid).unwrap().password,
        Some(largest.clone())
    );
    assert_eq!(
        store.set_password(&a.uuid, None, "other").unwrap(),
        PasswordSet::AlreadySet
    );
    assert_eq!(store.instance(&a.uuid).unwrap().password, Some(largest));
    assert_eq!(
        store.set_password(&uuid(), None, "x").unwrap(),
        PasswordSet::NoInstance
    );
    // An empty password does not count as set (nova's reset blanks it).
    assert!(matches!(
        store.set_password(&b.uuid, None, "").unwrap(),
        PasswordSet::Stored { .. }
    ));
    assert!(matches!(
        store.set_password(&b.uuid, None, "real").unwrap(),
        PasswordSet::Stored { .. }
    ));
    assert_eq!(
        store.set_password(&b.uuid, None, "again").unwrap(),
        PasswordSet::AlreadySet
    );

    let admin = NewInstance {
        admin_pass: Some("a".repeat(MAX_PASSWORD_BYTES + 1)),
        ..new_instance("admin")
    };
    invalid(store.create_instance(&admin, &port_on(&net)));
}

/// A guest's password POST names the instance it was identified as (its `ec2_id`): if that
/// instance was deleted and another created under the same uuid meanwhile, the new one gets
/// nothing and the API answers as for a deleted instance.
pub fn password_reaches_only_the_instance_it_was_posted_for(store: &dyn Store) {
    let net = network(store, "net1", "198.18.0.0/24");
    let old = store
        .create_instance(&new_instance("old"), &port_on(&net))
        .unwrap()
        .0;
    store.delete_instance(&old.uuid).unwrap();
    let again = NewInstance {
        uuid: old.uuid.clone(),
        ..new_instance("again")
    };
    let new = store.create_instance(&again, &port_on(&net)).unwrap().0;
    assert_ne!(new.ec2_id, old.ec2_id);
    assert_eq!(
        store
            .set_password(&old.uuid, Some(old.ec2_id), "old guest's")
            .unwrap(),
        PasswordSet::NoInstance
    );
    assert_eq!(store.instance(&new.uuid).unwrap().password, None);
    assert!(matches!(
        store
            .set_password(&new.uuid, Some(new.ec2_id), "new guest's")
            .unwrap(),
        PasswordSet::Stored { .. }
    ));
    assert_eq!(
        store
            .set_password(&new.uuid, Some(new.ec2_id), "again")
            .unwrap(),
        PasswordSet::AlreadySet
    );
    assert_eq!(
        store.instance(&new.uuid).unwrap().password.as_deref(),
        Some("new guest's")
    );
}

/// `instance clear-password` (nova's clear-password): the stored password is gone, the change
/// is logged for every server's read model, and the guest may post again; clearing nothing
/// logs nothing.
pub fn password_clear_lets_the_guest_post_again(store: &dyn Store) {
    let net = network(store, "net1", "198.18.0.0/24");
    let vm = store
        .create_instance(&new_instance("vm"), &port_on(&net))
        .unwrap()
        .0;
    assert!(!store.clear_password(&vm.uuid).unwrap());
    // A stored password names the change that logged it: the newest one.
    let PasswordSet::Stored { change } = store.set_password(&vm.uuid, None, "first").unwrap()
    else {
        panic!("the first password is stored");
    };
    let before = store.last_change().unwrap();
    assert_eq!(change, before);
    assert_eq!(store.changes_since(change - 1).unwrap()[0].id, vm.uuid);
    assert!(store.clear_password(&vm.uuid).unwrap());
    assert_eq!(store.instance(&vm.uuid).unwrap().password, None);
    let changes = store.changes_since(before).unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].id, vm.uuid);
    assert!(matches!(
        store.set_password(&vm.uuid, None, "second").unwrap(),
        PasswordSet::Stored { .. }
    ));
    assert_eq!(
        store.instance(&vm.uuid).unwrap().password.as_deref(),
        Some("second")
    );
    let before = store.last_change().unwrap();
    assert!(store.clear_password(&vm.uuid).unwrap());
    assert!(!store.clear_password(&vm.uuid).unwrap());
    assert_eq!(store.changes_since(before).unwrap().len(), 1);
    not_found(store.clear_password(&uuid()));
}

pub fn password_race_has_one_winner(store: &dyn Store) {
    let net = network(store, "net1", "198.18.0.0/24");
    let target = store
        .create_instance(&new_instance("race"), &port_on(&net))
        .unwrap()
        .0;
    let outcomes: Vec<(usize, PasswordSet)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..PASSWORD_RACERS)
            .map(|i| {
                let uuid = target.uuid.clone();
                scope.spawn(move || {
                    (
                        i,
                        store.set_password(&uuid, None, &format!("pw-{i}")).unwrap(),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<usize> = outcomes
        .iter()
        .filter(|(_, outcome)| matches!(outcome, PasswordSet::Stored { .. }))
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|(_, o)| matches!(o, PasswordSet::Stored { .. } | PasswordSet::AlreadySet))
    );
    assert_eq!(
        store.instance(&target.uuid).unwrap().password,
        Some(format!("pw-{}", winners[0]))
    );
}
