//! Node ids: which API family a target belongs to.

use super::FleetError;

/// The two kinds of node Session Manager reaches; they are tagged through different APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// An EC2 instance (`i-` followed by hex).
    Instance,
    /// A hybrid managed node (`mi-` followed by hex), including the lab's nodes.
    Managed,
}

impl TargetKind {
    /// Classifies a node id; anything else is refused, so no call is made with a bad id.
    pub fn of(target: &str) -> Result<Self, FleetError> {
        let hex = |s: &str| {
            (8..=32).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if let Some(rest) = target.strip_prefix("mi-")
            && hex(rest)
        {
            return Ok(TargetKind::Managed);
        }
        if let Some(rest) = target.strip_prefix("i-")
            && hex(rest)
        {
            return Ok(TargetKind::Instance);
        }
        Err(FleetError::InvalidTarget {
            target: target.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_ids() {
        assert_eq!(
            TargetKind::of("i-0123456789abcdef0").unwrap(),
            TargetKind::Instance
        );
        assert_eq!(TargetKind::of("i-12345678").unwrap(), TargetKind::Instance);
        assert_eq!(
            TargetKind::of("mi-0123456789abcdef0").unwrap(),
            TargetKind::Managed
        );
        for bad in [
            "",
            "i-",
            "i-123",
            "I-0123456789abcdef0",
            "i-0123456789ABCDEF0",
            "mi-xyz45678",
            "i-01234567/../x",
            "arn:aws:ec2:us-east-1:1:instance/i-0123456789abcdef0",
        ] {
            assert!(
                matches!(TargetKind::of(bad), Err(FleetError::InvalidTarget { .. })),
                "{bad:?} accepted"
            );
        }
    }
}
