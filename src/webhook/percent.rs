//! Percent-encoding of URL query values (registry token scopes, label
//! selectors, continue tokens): everything but RFC 3986's unreserved
//! characters.

pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn reserved_characters_are_encoded() {
        assert_eq!(
            super::encode("app.kubernetes.io/part-of=x y+z~"),
            "app.kubernetes.io%2Fpart-of%3Dx%20y%2Bz~"
        );
    }
}
