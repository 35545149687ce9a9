//! The login challenge: the exact text a key holder signs.

use crate::time::rfc3339;

/// The message of a challenge: LF line ends, no trailing newline.
pub fn message(
    origin: &str,
    public_key_b64: &str,
    nonce_b64url: &str,
    issued_at: i64,
    expires_at: i64,
) -> String {
    format!(
        "chatsender-login-v1\norigin: {origin}\npublic-key: {public_key_b64}\nnonce: {nonce_b64url}\nissued-at: {}\nexpires-at: {}",
        rfc3339(issued_at),
        rfc3339(expires_at)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_has_the_documented_shape() {
        let m = message(
            "https://chat.example.org",
            "AAAA",
            "bm9uY2U",
            1_764_097_200,
            1_764_097_320,
        );
        assert_eq!(
            m,
            "chatsender-login-v1\norigin: https://chat.example.org\npublic-key: AAAA\nnonce: bm9uY2U\n\
             issued-at: 2025-11-25T19:00:00Z\nexpires-at: 2025-11-25T19:02:00Z"
        );
    }
}
