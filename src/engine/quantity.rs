//! Validation of Kubernetes resource quantities (`500m`, `2Gi`, `1e3`).
//!
//! The engine never does arithmetic on quantities; it only has to refuse a
//! value the apiserver would refuse, so that the user gets our error (naming
//! the config field or annotation) instead of a pod rejection that names a
//! field they never wrote.

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
    use super::is_valid;

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
