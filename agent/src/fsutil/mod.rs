//! File-system access under the root: paths resolved from held directory descriptors without
//! following a symlink out of the root ([`resolve`]), directory handles whose operations never
//! follow a final symlink ([`Dir`]), atomic writes ([`atomic`]), a run's writes staged and
//! committed together at a constant number of syncs ([`staging`]), users' directories in
//! `/tmp` refused ([`sticky`]), and the one error every
//! failed operation on a path becomes ([`PathError`]).

pub mod atomic;
pub mod dir;
pub mod error;
pub mod owner;
pub mod resolve;
pub mod staging;
pub mod sticky;

pub use atomic::WriteOptions;
pub use dir::Dir;
pub use error::{PathError, Refused};
pub use owner::{FIRST_USER_UID, Owner, can_chown, check_owner, kind, only_root_adds};
pub use resolve::MAX_SYMLINKS;
