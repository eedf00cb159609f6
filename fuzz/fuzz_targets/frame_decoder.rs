//! The host<->guest frame decoder: no input panics, and feeding a byte stream in any chunking
//! yields the same frames (and errors) as decoding it as one buffer.
//!
//! Input layout: byte 0 picks how many of the following bytes are chunk sizes (1..=8); the
//! sizes are used in turn; the rest is the stream.
#![no_main]

use ktstr_guest::frame::{Decoder, decode_all};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = (n as usize % 8 + 1).min(rest.len());
    let (sizes, stream) = rest.split_at(n);
    let (msgs, errs) = decode_all(stream);

    let mut whole = Decoder::new();
    let whole_items = whole.push(stream);
    let mut chunked = Decoder::new();
    let mut chunked_items = Vec::new();
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at >= stream.len() {
            break;
        }
        let end = (at + *size as usize + 1).min(stream.len());
        chunked_items.extend(chunked.push(&stream[at..end]));
        at = end;
    }
    assert_eq!(
        whole_items, chunked_items,
        "chunking changed the decoded frames"
    );
    assert_eq!(whole.garbage_bytes, chunked.garbage_bytes);
    assert_eq!(msgs.len() + errs.len(), whole_items.len());
});
