//! The units operators type — seconds and byte counts — parsed and checked
//! against their bounds in one place.
//!
//! Both command lines (`echoloop`, `echoloop-stress`) parse every duration
//! and size flag with these functions, and [`Config::validate`] checks a
//! configuration built in code against the same [`Bounds`], so a value the
//! flag would refuse cannot reach the loop another way. Out-of-range values
//! are refused, never clamped: an operator who typed `1e19` meant something
//! we cannot do, and should hear so.
//!
//! [`Config::validate`]: crate::Config::validate

use std::fmt;
use std::time::Duration;

/// The inclusive range a setting may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds<T> {
    /// The smallest value allowed.
    pub min: T,
    /// The largest value allowed.
    pub max: T,
}

impl Bounds<Duration> {
    /// Parses `text` as seconds ([`parse_secs`]) and checks it is in bounds.
    /// The error says what is wrong, not which flag: the caller (clap) names
    /// the flag and the value.
    pub fn parse(&self, text: &str) -> Result<Duration, String> {
        self.check(parse_secs(text)?)
    }

    /// `Ok` if `value` is in bounds; otherwise what the bounds are.
    pub fn check(&self, value: Duration) -> Result<Duration, String> {
        if value < self.min {
            Err(format!("must be at least {}", Secs(self.min)))
        } else if value > self.max {
            Err(format!("must be at most {}", Secs(self.max)))
        } else {
            Ok(value)
        }
    }
}

impl Bounds<u64> {
    /// Parses `text` as a whole number and checks it is in bounds.
    pub fn parse(&self, text: &str) -> Result<u64, String> {
        let value: u64 = text
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not a whole number"))?;
        self.check(value)
    }

    /// `Ok` if `value` is in bounds; otherwise what the bounds are.
    pub fn check(&self, value: u64) -> Result<u64, String> {
        if value < self.min {
            Err(format!("must be at least {}", self.min))
        } else if value > self.max {
            Err(format!("must be at most {}", self.max))
        } else {
            Ok(value)
        }
    }

    /// Like [`Bounds::parse`], as a `usize` (the bounds must fit one).
    pub fn parse_usize(&self, text: &str) -> Result<usize, String> {
        self.parse(text)
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
    }
}

/// Parses seconds: `10`, `0.5`, `250ms`, `2s`. Not negative, not NaN; the
/// range is the caller's [`Bounds`].
pub fn parse_secs(text: &str) -> Result<Duration, String> {
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(value * scale)
        .map_err(|_| format!("`{text}` is not a number of seconds from 0 up"))
}

/// One year: the longest duration any flag takes. Longer means "never",
/// which every such flag spells by being left out; and deadlines computed
/// from it stay far from where `Instant` arithmetic overflows.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A duration in seconds for messages: `0.01 s`, `31536000 s`.
#[derive(Debug, Clone, Copy)]
struct Secs(Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} s", self.0.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one grammar both command lines accept.
    #[test]
    fn seconds_grammar() {
        assert_eq!(parse_secs("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_secs("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_secs("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_secs("2s"), Ok(Duration::from_secs(2)));
        for bad in ["-1", "soon", "NaN", "inf", "", "1e400"] {
            assert!(parse_secs(bad).is_err(), "{bad} parsed");
        }
    }

    /// Bounds refuse both ends with a message that names the bound.
    #[test]
    fn bounds_refuse_out_of_range() {
        let b = Bounds {
            min: Duration::from_millis(10),
            max: MAX_DURATION,
        };
        assert_eq!(b.parse("1"), Ok(Duration::from_secs(1)));
        assert_eq!(b.parse("0").unwrap_err(), "must be at least 0.01 s");
        assert!(b.parse("1e19").unwrap_err().contains("at most 31536000 s"));
        let n = Bounds { min: 1, max: 100 };
        assert_eq!(n.parse("100"), Ok(100));
        assert!(n.parse("0").is_err());
        assert!(n.parse("18446744073709551616").is_err());
    }
}
