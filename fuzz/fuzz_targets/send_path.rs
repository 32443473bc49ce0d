//! The `/send/{path}` sanitiser on any raw (still percent-encoded) path. Whatever it lets
//! through is forwarded unchanged, and once the upstream decodes it, it names no `.` or `..`
//! segment, no `/` that was `%2F` (a segment boundary the hub did not see), and no `?`, `#`
//! or `\`.
#![no_main]

use herald::fuzzing::send_path;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(raw) = std::str::from_utf8(input) else { return };
    let Ok(path) = send_path(raw) else { return };
    assert_eq!(path, raw, "a safe path is forwarded unchanged");
    for segment in path.split('/') {
        let decoded = percent_decode(segment.as_bytes());
        assert!(decoded != b"." && decoded != b"..", "dot-segment {segment:?} in {raw:?}");
        for forbidden in [b'/', b'?', b'#', b'\\'] {
            assert!(!decoded.contains(&forbidden), "{:?} from {segment:?} in {raw:?}", forbidden as char);
        }
    }
});

/// Percent-decoding as an upstream server does it: `%XX` with two hex digits becomes that
/// byte, anything else stays as it is.
fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                out.push(high << 4 | low);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}
