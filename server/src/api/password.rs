//! The password endpoint (docs/protocol.md §1.7): GET reads (from the read model), POST stores
//! once. Unlike nova, the write-once rule is enforced by the store, so two concurrent POSTs can
//! never both succeed; a stored password is in this server's model at once and reaches the
//! others through the change log.

use bytes::Bytes;
use http::{Method, StatusCode};

use super::metadata::{Api, MetadataRequest};
use crate::http::response::TEXT_PLAIN;
use crate::http::{Answer, Rejection};
use crate::store::{MAX_PASSWORD_BYTES, PasswordSet};

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
                let stored = password.clone();
                // Which instance this is now: one deleted and created again under the same
                // uuid while the write is on its way must not get this password in the model.
                let seen = self.model.instance(uuid).map(|record| record.ec2_id);
                // A 409 from the store means another server's write (or an earlier try of this
                // post, whose answer was lost) is not in this server's model yet: the stored
                // text is read in the same call and taken in, so that the guest's GET right
                // after the 409 (the agent checks whether the text is its own) sees it.
                let set = self
                    .write(move |store| {
                        let set = store.set_password(&key, seen, &password)?;
                        // Best effort: a failed read leaves the 409 as it is.
                        let stored = match set {
                            PasswordSet::AlreadySet => store
                                .instance_by_uuid(&key)
                                .ok()
                                .flatten()
                                .and_then(|instance| instance.password),
                            _ => None,
                        };
                        Ok((set, stored))
                    })
                    .await;
                match set {
                    Ok((PasswordSet::Stored, _)) => {
                        self.model.password_stored(uuid, seen, &stored);
                        Answer::text(Bytes::new())
                    }
                    Ok((PasswordSet::AlreadySet, in_store)) => {
                        if let Some(in_store) = in_store.filter(|text| !text.is_empty()) {
                            self.model.password_stored(uuid, seen, &in_store);
                        }
                        already_set()
                    }
                    Ok((PasswordSet::NoInstance, _)) => Answer::refused(
                        StatusCode::BAD_REQUEST,
                        "The instance no longer exists.".to_owned(),
                        Rejection::UnknownInstance,
                    ),
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

fn already_set() -> Answer {
    Answer::refused(
        StatusCode::CONFLICT,
        "The password is already set; it can be set once.".to_owned(),
        Rejection::PasswordAlreadySet,
    )
}
