//! Reads a certificate's expiry (`notAfter`) from DER.
//!
//! Only this one field is needed (for the expiry metric and the reload log),
//! so a few lines of DER walking replace a full X.509 parser dependency.

/// `notAfter` of a DER certificate, in seconds since the Unix epoch.
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (cert, _) = tlv(der, SEQUENCE)?;
    let (tbs, _) = tlv(cert, SEQUENCE)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = skip(rest)?; // [0] EXPLICIT version
    }
    rest = skip(rest)?; // serialNumber
    rest = skip(rest)?; // signature AlgorithmIdentifier
    rest = skip(rest)?; // issuer
    let (validity, _) = tlv(rest, SEQUENCE)?;
    let after = skip(validity)?; // notBefore
    let (tag, value) = (after.first().copied()?, element(after)?.0);
    parse_time(tag, value)
}

const SEQUENCE: u8 = 0x30;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The value of the first element and what follows it.
fn element(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let first_len = *input.get(1)?;
    let (len, header) = if first_len < 0x80 {
        (usize::from(first_len), 2)
    } else {
        let n = usize::from(first_len & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let len = input
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, 2 + n)
    };
    let value = input.get(header..header.checked_add(len)?)?;
    Some((value, &input[header + len..]))
}

fn tlv(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    (input.first() == Some(&tag)).then_some(())?;
    element(input)
}

fn skip(input: &[u8]) -> Option<&[u8]> {
    element(input).map(|(_, rest)| rest)
}

fn parse_time(tag: u8, value: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(value).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        UTC_TIME if text.len() == 12 => {
            let yy: i64 = text.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        GENERALIZED_TIME if text.len() == 14 => (text.get(..4)?.parse().ok()?, &text[4..]),
        _ => return None,
    };
    let field = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day, hour, min, sec) = (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec)
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2026, 11, 28), 20_785);
    }

    #[test]
    fn reads_not_after_of_generated_certificates() {
        for (year, expected) in [
            (2031, 1_952_035_200),
            (2049, 2_520_115_200),
            (2051, 2_583_187_200),
        ] {
            let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
            params.not_after = rcgen::date_time_ymd(year, 11, 10);
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            assert_eq!(not_after(cert.der()), Some(expected), "{year}");
        }
    }

    #[test]
    fn garbage_is_none_not_a_panic() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x30, 0x02, 0x30, 0x00],
            b"not der",
        ] {
            assert_eq!(not_after(bad), None);
        }
    }
}
