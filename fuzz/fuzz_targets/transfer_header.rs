//! Arbitrary bytes as a QUIC transfer header: decode must refuse or return a short
//! first line and the bytes after it, and a decoded header must round-trip.
#![no_main]

use edgewise_core::transfer::{
    MAX_HEADER_BYTES, TransferRequest, TransferResponse, decode_line, encode_line,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let newline = data.iter().position(|&b| b == b'\n');
    if let Ok((request, rest)) = decode_line::<TransferRequest>(data) {
        let end = newline.expect("a header ends in a newline");
        assert!(end <= MAX_HEADER_BYTES);
        assert_eq!(rest, &data[end + 1..]);
        let line = encode_line(&request);
        let (again, tail) = decode_line::<TransferRequest>(&line).expect("re-decodes");
        assert_eq!(again, request);
        assert!(tail.is_empty());
    }
    if let Ok((response, rest)) = decode_line::<TransferResponse>(data) {
        let end = newline.expect("a header ends in a newline");
        assert!(end <= MAX_HEADER_BYTES);
        assert_eq!(rest, &data[end + 1..]);
        let line = encode_line(&response);
        // Re-encoding may lengthen the line (escapes), past the limit.
        if line.len() - 1 <= MAX_HEADER_BYTES {
            let (again, _) = decode_line::<TransferResponse>(&line).expect("re-decodes");
            assert_eq!(again, response);
        }
    }
});
