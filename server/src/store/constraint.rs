//! A schema constraint a write hit, in the same words on both backends. The registry's rules
//! refuse such a write first, so a hit means another process changed the registry in between:
//! still the caller's refusal (`StoreError::Conflict`, exit code 2), never a backend failure.

use super::error::StoreError;

/// Which constraint a write hit, as each backend recognises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Constraint {
    /// An address already used on that network (`ports_network_ip`, `ports_network_second_ip`).
    PortIp,
    /// A MAC already used by another port (`ports_mac`).
    PortMac,
    /// An instance uuid already used (`instances_uuid`).
    InstanceUuid,
    /// A reference to a record that is gone, or a delete of one still referred to.
    ForeignKey,
    /// Any other integrity constraint (unique, not null, check).
    Other,
}

impl Constraint {
    /// The refusal, with the backend's own `detail` in parentheses.
    pub fn refusal(self, detail: &str) -> StoreError {
        let what = match self {
            Self::PortIp => {
                "that IP is already used on that network: pick another address or omit the IP"
            }
            Self::PortMac => {
                "that MAC is already used by another port: pick another MAC or omit it"
            }
            Self::InstanceUuid => {
                "an instance with that uuid already exists: omit --uuid to get a new one"
            }
            Self::ForeignKey => {
                "the change refers to a record that is gone, or removes one still in use \
                 (another command changed the registry meanwhile): list the records again and \
                 retry"
            }
            Self::Other => "the change conflicts with an existing record",
        };
        StoreError::Conflict(format!("{what} ({detail})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_constraint_is_the_callers_refusal_saying_what_to_do() {
        for constraint in [
            Constraint::PortIp,
            Constraint::PortMac,
            Constraint::InstanceUuid,
            Constraint::ForeignKey,
            Constraint::Other,
        ] {
            let err = constraint.refusal("detail");
            assert!(err.is_user_error(), "{constraint:?}");
            assert!(matches!(err, StoreError::Conflict(_)), "{constraint:?}");
            assert!(err.to_string().ends_with(" (detail)"), "{err}");
        }
        let err = Constraint::ForeignKey.refusal("d").to_string();
        assert!(err.contains("retry"), "{err}");
    }
}
