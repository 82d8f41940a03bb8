//! The password endpoint (docs/protocol.md §1.7): GET reads (from the read model), POST stores
//! once. Unlike nova, the write-once rule is enforced by the store, so two concurrent POSTs can
//! never both succeed; a stored password is in this server's model at once and reaches the
//! others through the change log.

use bytes::Bytes;
use http::{Method, StatusCode};

use super::metadata::{Api, MetadataRequest};
use crate::http::response::TEXT_PLAIN;
use crate::http::{Answer, Rejection};
use crate::store::{MAX_PASSWORD_BYTES, PasswordSet, Store};

impl Api {
    pub(super) async fn password(&self, request: &MetadataRequest, uuid: &str) -> Answer {
        let key = uuid.to_owned();
        match request.method {
            Method::GET | Method::HEAD => match self.model.instance(uuid) {
                Some(record) => Answer::ok(
                    TEXT_PLAIN,
                    Bytes::from(record.password().unwrap_or_default().to_owned()),
                ),
                None => Answer::refused(
                    StatusCode::NOT_FOUND,
                    "Instance not found.".to_owned(),
                    Rejection::UnknownInstance,
                ),
            },
            Method::POST => {
                // nova's order (`handle_password`): a password already set is 409 whatever the
                // body, then the size. The read model may lag behind another server's write;
                // the store's conditional write below still lets only one password in.
                let set = self.model.instance(uuid).is_some_and(|record| {
                    record
                        .password()
                        .is_some_and(|password| !password.is_empty())
                });
                if set {
                    return already_set();
                }
                if request.body.len() > MAX_PASSWORD_BYTES {
                    return Answer::refused(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "Request is too large: a password is at most {MAX_PASSWORD_BYTES} bytes."
                        ),
                        Rejection::PasswordTooLarge,
                    );
                }
                let Ok(password) = std::str::from_utf8(&request.body) else {
                    return Answer::refused(
                        StatusCode::BAD_REQUEST,
                        "The password must be text (base64 of the encrypted password).".to_owned(),
                        Rejection::PasswordNotText,
                    );
                };
                // PostgreSQL's `text` cannot hold NUL: the write would fail as if the registry
                // were down. Refused here, the same on both backends.
                if password.contains('\0') {
                    return Answer::refused(
                        StatusCode::BAD_REQUEST,
                        "The password contains a NUL byte: post the base64 of the encrypted \
                         password."
                            .to_owned(),
                        Rejection::PasswordHasNul,
                    );
                }
                let password = password.to_owned();
                // Which instance this is now: one deleted and created again under the same
                // uuid while the write is on its way must not get this password in the model.
                let seen = self.model.instance(uuid).map(|record| record.ec2_id);
                // A 409 from the store means another server's write (or an earlier try of this
                // post, whose answer was lost) is not in this server's model yet: the stored
                // text is read after it and taken in, so that the guest's GET right after the
                // 409 (the agent checks whether the text is its own) sees it.
                let set = self
                    .write(move |store| {
                        let set = store.set_password(&key, seen, &password)?;
                        Ok((set, stored_now(store, &key, seen, set, password)))
                    })
                    .await;
                match set {
                    Ok((set, stored)) => {
                        if let Some((text, change)) = stored {
                            self.model.password_stored(uuid, seen, &text, change);
                        }
                        match set {
                            PasswordSet::Stored { .. } => Answer::text(Bytes::new()),
                            PasswordSet::AlreadySet => already_set(),
                            PasswordSet::NoInstance => Answer::refused(
                                StatusCode::BAD_REQUEST,
                                "The instance no longer exists.".to_owned(),
                                Rejection::UnknownInstance,
                            ),
                        }
                    }
                    Err(refusal) => refusal,
                }
            }
            _ => Answer::refused(
                StatusCode::BAD_REQUEST,
                "GET and POST only are supported.".to_owned(),
                Rejection::BadMethod,
            ),
        }
    }
}

/// What the registry holds for the instance after a post that `set` answered, for this
/// server's model, with the change number `ReadModel::password_stored` takes: the posted text
/// and the change that stored it; on a 409 the stored text, for the instance `seen` only (not
/// one created again under the same uuid since), and the change log's number read before it.
/// Best effort: a failed read gives nothing, and the answer stays what `set` says.
fn stored_now(
    store: &dyn Store,
    uuid: &str,
    seen: Option<i64>,
    set: PasswordSet,
    posted: String,
) -> Option<(String, i64)> {
    match set {
        PasswordSet::Stored { change } => Some((posted, change)),
        PasswordSet::AlreadySet => {
            // Read before the instance: the instance read reflects the log at least there.
            let read_at = store.last_change().ok()?;
            let text = store
                .instance_by_uuid(uuid)
                .ok()
                .flatten()
                .filter(|instance| Some(instance.ec2_id) == seen)
                .and_then(|instance| instance.password)
                .filter(|text| !text.is_empty())?;
            Some((text, read_at))
        }
        PasswordSet::NoInstance => None,
    }
}

fn already_set() -> Answer {
    Answer::refused(
        StatusCode::CONFLICT,
        "The password is already set; it can be set once.".to_owned(),
        Rejection::PasswordAlreadySet,
    )
}
