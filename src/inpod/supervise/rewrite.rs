//! The signal rewrite table: which signal the runner gets when the
//! supervisor receives one. Default `TERM:INT`, because the actions runner's
//! listener shuts down cleanly on SIGINT and ignores nothing else usefully.

use crate::inpod::signals;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewrite {
    pub from: i32,
    pub to: i32,
}

/// Parses `FROM:TO` (`TERM:INT`, `SIGTERM:SIGINT`, `15:2`).
pub fn parse(s: &str) -> Result<Rewrite, String> {
    let (from, to) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not FROM:TO (e.g. TERM:INT)"))?;
    let sig = |n: &str| signals::parse(n).ok_or_else(|| format!("{n:?} is not a signal name"));
    let rewrite = Rewrite {
        from: sig(from)?,
        to: sig(to)?,
    };
    if [libc::SIGKILL, libc::SIGSTOP, libc::SIGCHLD].contains(&rewrite.from) {
        return Err(format!(
            "{from} cannot be caught, so it cannot be rewritten"
        ));
    }
    Ok(rewrite)
}

/// What the runner gets for `sig`: the last matching rule, else `sig` itself.
pub fn apply(table: &[Rewrite], sig: i32) -> i32 {
    table
        .iter()
        .rev()
        .find(|r| r.from == sig)
        .map_or(sig, |r| r.to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_applies() {
        let t = vec![parse("TERM:INT").unwrap(), parse("SIGHUP:15").unwrap()];
        assert_eq!(apply(&t, libc::SIGTERM), libc::SIGINT);
        assert_eq!(apply(&t, libc::SIGHUP), libc::SIGTERM);
        assert_eq!(apply(&t, libc::SIGUSR1), libc::SIGUSR1);
        assert!(parse("TERM").is_err());
        assert!(parse("KILL:INT").is_err());
        assert!(parse("TERM:BOGUS").is_err());
    }
}
