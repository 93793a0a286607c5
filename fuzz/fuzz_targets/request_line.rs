//! The request-line rewriter: however the bytes arrive in reads, the output
//! is the same, and no request line keeps a raw byte >= 0x80.
#![no_main]

use hookrelay::http::escape::Escaper;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&[u8], Vec<u8>)| {
    let (bytes, cuts) = input;
    let mut whole = Vec::new();
    Escaper::default().feed(bytes, &mut whole);

    let mut pieces = Vec::new();
    let mut escaper = Escaper::default();
    let mut rest = bytes;
    for cut in cuts {
        if rest.is_empty() {
            break;
        }
        let (head, tail) = rest.split_at(cut as usize % (rest.len() + 1));
        escaper.feed(head, &mut pieces);
        rest = tail;
    }
    escaper.feed(rest, &mut pieces);
    assert_eq!(whole, pieces, "the output depends on how reads split the input");

    // Before any header line, everything is request line: all escaped.
    if !whole.windows(2).any(|w| w == b"\r\n") && !whole.contains(&b'\n') {
        assert!(whole.is_ascii(), "{whole:?}");
    }
});
