//! The OpenStack and EC2 metadata version lists (docs/protocol.md §1.2) and the per-version gates.

/// A dated OpenStack metadata version (`/openstack/<date>`), oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpenStackVersion {
    Folsom,
    Grizzly,
    Havana,
    Liberty,
    NewtonOne,
    NewtonTwo,
    Ocata,
    Rocky,
    Victoria,
    Epoxy,
}

impl OpenStackVersion {
    /// Every version, oldest first.
    pub const ALL: [OpenStackVersion; 10] = [
        Self::Folsom,
        Self::Grizzly,
        Self::Havana,
        Self::Liberty,
        Self::NewtonOne,
        Self::NewtonTwo,
        Self::Ocata,
        Self::Rocky,
        Self::Victoria,
        Self::Epoxy,
    ];

    /// The version `latest` stands for.
    pub const LATEST: OpenStackVersion = Self::Epoxy;

    /// The date string used in paths.
    pub fn date(self) -> &'static str {
        match self {
            Self::Folsom => "2012-08-10",
            Self::Grizzly => "2013-04-04",
            Self::Havana => "2013-10-17",
            Self::Liberty => "2015-10-15",
            Self::NewtonOne => "2016-06-30",
            Self::NewtonTwo => "2016-10-06",
            Self::Ocata => "2017-02-22",
            Self::Rocky => "2018-08-27",
            Self::Victoria => "2020-10-14",
            Self::Epoxy => "2025-04-04",
        }
    }

    /// Parses a path segment: a known date or `latest`. Anything else is `None` (404).
    pub fn parse(segment: &str) -> Option<Self> {
        if segment == "latest" {
            return Some(Self::LATEST);
        }
        Self::ALL.into_iter().find(|v| v.date() == segment)
    }

    /// The body of `GET /openstack`: versions dated on or before `today` (`YYYY-MM-DD`,
    /// UTC), then `latest`, newline separated, no trailing newline. Future versions are
    /// hidden from the list but still served when asked for by name.
    pub fn listing(today: &str) -> String {
        let mut lines: Vec<&str> = Self::ALL
            .into_iter()
            .map(Self::date)
            .filter(|date| *date <= today)
            .collect();
        lines.push("latest");
        lines.join("\n")
    }
}

/// An EC2-compatible metadata version (`/<date>` or `/ec2/<date>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ec2Version {
    V1_0,
    V2007_01_19,
    V2007_03_01,
    V2007_08_29,
    V2007_10_10,
    V2007_12_15,
    V2008_02_01,
    V2008_09_01,
    V2009_04_04,
}

impl Ec2Version {
    /// Every version, oldest first.
    pub const ALL: [Ec2Version; 9] = [
        Self::V1_0,
        Self::V2007_01_19,
        Self::V2007_03_01,
        Self::V2007_08_29,
        Self::V2007_10_10,
        Self::V2007_12_15,
        Self::V2008_02_01,
        Self::V2008_09_01,
        Self::V2009_04_04,
    ];

    /// The version `latest` stands for.
    pub const LATEST: Ec2Version = Self::V2009_04_04;

    /// The name used in paths.
    pub fn name(self) -> &'static str {
        match self {
            Self::V1_0 => "1.0",
            Self::V2007_01_19 => "2007-01-19",
            Self::V2007_03_01 => "2007-03-01",
            Self::V2007_08_29 => "2007-08-29",
            Self::V2007_10_10 => "2007-10-10",
            Self::V2007_12_15 => "2007-12-15",
            Self::V2008_02_01 => "2008-02-01",
            Self::V2008_09_01 => "2008-09-01",
            Self::V2009_04_04 => "2009-04-04",
        }
    }

    /// Parses a path segment: a known version or `latest`.
    pub fn parse(segment: &str) -> Option<Self> {
        if segment == "latest" {
            return Some(Self::LATEST);
        }
        Self::ALL.into_iter().find(|v| v.name() == segment)
    }

    /// The body of `GET /` and `GET /ec2`: every version, then `latest`.
    pub fn listing() -> String {
        let mut lines: Vec<&str> = Self::ALL.into_iter().map(Self::name).collect();
        lines.push("latest");
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openstack_listing_hides_future_versions() {
        assert_eq!(
            OpenStackVersion::listing("2019-01-01"),
            "2012-08-10\n2013-04-04\n2013-10-17\n2015-10-15\n2016-06-30\n2016-10-06\n\
             2017-02-22\n2018-08-27\nlatest"
        );
        assert!(OpenStackVersion::listing("2026-11-23").ends_with("2025-04-04\nlatest"));
        assert_eq!(
            OpenStackVersion::parse("2025-04-04"),
            Some(OpenStackVersion::Epoxy)
        );
    }

    #[test]
    fn parse_accepts_known_dates_and_latest_only() {
        assert_eq!(
            OpenStackVersion::parse("latest"),
            Some(OpenStackVersion::LATEST)
        );
        assert_eq!(
            OpenStackVersion::parse("2013-04-04"),
            Some(OpenStackVersion::Grizzly)
        );
        assert_eq!(OpenStackVersion::parse("2013-04-05"), None);
        assert_eq!(OpenStackVersion::parse(""), None);
        assert_eq!(Ec2Version::parse("latest"), Some(Ec2Version::V2009_04_04));
        assert_eq!(Ec2Version::parse("1.0"), Some(Ec2Version::V1_0));
        assert_eq!(Ec2Version::parse("2009-04-05"), None);
    }

    #[test]
    fn ec2_listing_is_exact() {
        assert_eq!(
            Ec2Version::listing(),
            "1.0\n2007-01-19\n2007-03-01\n2007-08-29\n2007-10-10\n2007-12-15\n\
             2008-02-01\n2008-09-01\n2009-04-04\nlatest"
        );
    }

    #[test]
    fn versions_are_ordered_by_date() {
        for pair in OpenStackVersion::ALL.windows(2) {
            assert!(pair[0] < pair[1] && pair[0].date() < pair[1].date());
        }
        for pair in Ec2Version::ALL.windows(2) {
            assert!(pair[0] < pair[1]);
        }
    }
}
