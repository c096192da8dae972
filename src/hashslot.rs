//! Redis Cluster's hash slots: CRC16 (XMODEM) of a key, mod 16384. Cluster mode maps a
//! workspace to its partition through the slot of its decimal form (`cluster::keys`), and
//! `CLUSTER KEYSLOT` answers any key's, hash tags included.

/// Redis Cluster's number of hash slots.
pub const SLOTS: u16 = 16384;

/// CRC16 as Redis Cluster computes it (XMODEM: polynomial 0x1021, initial value 0).
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A key's Redis Cluster hash slot, with hash tags: when the key holds `{...}` with at least
/// one byte between the braces, only those bytes are hashed (`CLUSTER KEYSLOT`).
pub fn keyslot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = key.get(open + 1..)?;
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| rest.get(..close)).flatten()
    });
    crc16(tagged.unwrap_or(key)) % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        assert_eq!(crc16(b"123456789"), 12739);
        assert_eq!(keyslot(b"42"), 8000);
        assert_eq!(keyslot(b"foo"), 12182);
        assert_eq!(keyslot(b"{user1000}.following"), keyslot(b"user1000"));
        assert_eq!(
            keyslot(b"foo{}{bar}"),
            crc16(b"foo{}{bar}") % SLOTS,
            "an empty tag hashes all"
        );
        assert_eq!(keyslot(b"foo{{bar}}zap"), keyslot(b"{bar"));
    }
}
