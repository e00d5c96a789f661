//! Writes a seed corpus for the `frame_decoder` fuzz target (see `fuzz/README.md`): one framed
//! stream and one bare payload per message kind, in the input layout the target expects.
//!
//! Ignored by default so a normal `cargo test` never writes files. Run it with
//! `PEERPOOL_FUZZ_SEEDS=fuzz/corpus/frame_decoder cargo test -p peerpool-wire --test fuzz_seeds -- --ignored`
//! (the path is relative to `crates/wire`, where cargo runs tests, unless absolute).

mod common;

use common::{all_samples, magic};
use peerpool_wire::message::{encode_message, encode_payload};
use peerpool_wire::MessageKind;

/// Mode bytes of the fuzz target's input: see `fuzz/fuzz_targets/frame_decoder.rs`.
const MODE_REPAIRED_STREAM: u8 = 1;
const MODE_PAYLOAD: u8 = 2;

#[test]
#[ignore = "writes files; run on demand to seed the fuzzer"]
fn write_fuzz_seeds() {
    let dir =
        std::env::var_os("PEERPOOL_FUZZ_SEEDS").expect("set PEERPOOL_FUZZ_SEEDS to a directory");
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("create seed directory");

    // Repaired stream of every kind at once, read in a few odd sizes:
    // [mode, number of read sizes - 1, sizes..., stream].
    let mut everything = vec![MODE_REPAIRED_STREAM, 3, 0, 6, 29, 199];
    for (index, (kind, msg)) in all_samples().into_iter().enumerate() {
        let mut frame = Vec::new();
        encode_message(magic(), &msg, &mut frame);
        everything.extend_from_slice(&frame);

        // One frame, read 256 bytes at a time.
        let mut seed = vec![MODE_REPAIRED_STREAM, 0, 255];
        seed.extend_from_slice(&frame);
        std::fs::write(
            dir.join(format!("frame-{}", kind.as_str().trim_matches('*'))),
            seed,
        )
        .expect("write seed");

        // The bare payload under its own command: [mode, kind index, payload].
        assert_eq!(MessageKind::ALL[index], kind);
        let mut seed = vec![MODE_PAYLOAD, index as u8];
        seed.extend_from_slice(&encode_payload(&msg));
        std::fs::write(
            dir.join(format!("payload-{}", kind.as_str().trim_matches('*'))),
            seed,
        )
        .expect("write seed");
    }
    std::fs::write(dir.join("stream-all-kinds"), everything).expect("write seed");
}
