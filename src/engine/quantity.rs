//! Validation of Kubernetes resource quantities (`500m`, `2Gi`, `1e3`).
//!
//! The engine refuses a value the apiserver would refuse, so that the user
//! gets our error (naming the config field or annotation) instead of a pod
//! rejection that names a field they never wrote. The only arithmetic is a
//! comparison (a request above its limit is such a value).

/// Whether `s` is a valid, non-negative Kubernetes quantity.
///
/// Grammar (k8s.io/apimachinery `resource.Quantity`, sign excluded):
/// `number [suffix]` with number `digits [. digits] | . digits` and suffix a
/// binary SI (`Ki`…`Ei`), a decimal SI (`n u m k M G T P E`) or an exponent
/// (`e`/`E` followed by an optionally signed integer).
pub fn is_valid(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut i = 0;
    let int_digits = count_digits(&bytes[i..]);
    i += int_digits;
    let mut frac_digits = 0;
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = count_digits(&bytes[i..]);
        i += frac_digits;
    }
    if int_digits + frac_digits == 0 {
        return false;
    }
    let suffix = &s[i..];
    match suffix {
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "n" | "u" | "m" | "k" | "M" | "G" | "T"
        | "P" | "E" => true,
        _ => is_exponent(suffix),
    }
}

/// The value of a valid quantity, close enough to compare two of them
/// (a request and its limit); `None` when `s` is not valid.
pub fn value(s: &str) -> Option<f64> {
    if !is_valid(s) {
        return None;
    }
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(end);
    let number: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        exponent => 10f64.powi(exponent[1..].parse::<i32>().ok()?),
    };
    Some(number * scale)
}

fn count_digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

fn is_exponent(suffix: &str) -> bool {
    let Some(rest) = suffix.strip_prefix(['e', 'E']) else {
        return false;
    };
    let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::{is_valid, value};

    #[test]
    fn values_compare_across_suffixes() {
        for (a, b) in [
            ("500m", "1"),
            ("1Gi", "1025Mi"),
            ("1G", "1Gi"),
            ("1e3", "2k"),
            ("0.5", "501m"),
        ] {
            assert!(value(a).unwrap() < value(b).unwrap(), "{a} < {b}");
        }
        assert_eq!(value("1Gi"), value("1073741824"));
        assert_eq!(value("2e-3"), value("2m"));
        assert_eq!(value("1GB"), None);
    }

    #[test]
    fn accepts_what_the_apiserver_accepts() {
        for ok in [
            "1", "0", "100m", "2Gi", "1.5", ".5", "5.", "1e3", "1E-2", "20Ki", "3k", "10G", "1Ei",
        ] {
            assert!(is_valid(ok), "{ok} should be valid");
        }
    }

    #[test]
    fn refuses_what_the_apiserver_refuses() {
        for bad in [
            "", "Gi", "-1", "+1", "1 Gi", "1gi", "1GB", "1.2.3", "e3", "1e", "1e+", "ten", "1Ki5",
            ".",
        ] {
            assert!(!is_valid(bad), "{bad:?} should be invalid");
        }
    }
}
