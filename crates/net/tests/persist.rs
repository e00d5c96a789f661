//! Snapshot files on a real file system: round trips, every truncation and bit flip of a small
//! file, a file of another kind, a directory in the way, and a crash before the rename.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use peerpool_net::persist::{
    load, move_aside, save, Aside, Corruption, LoadError, FORMAT_VERSION, HEADER_LEN, MAGIC,
};
use sha2::{Digest, Sha256};

const KIND: &str = "banlist";
const PAYLOAD: &[u8] = b"twenty bytes of data";

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

/// Names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Loads `path`, expecting a corrupt file, and checks it went aside with its bytes intact.
/// Returns the problem; the aside copy is removed so the directory is clean again.
fn expect_corrupt(path: &Path, bytes: &[u8]) -> Corruption {
    let err = load(path, KIND).expect_err("a damaged file must not load");
    let moved: PathBuf = err.moved_to().expect("moved aside").to_owned();
    let message = err.to_string();
    let LoadError::Corrupt { problem, .. } = err else {
        panic!("expected Corrupt, got {message}");
    };
    assert!(!path.exists(), "the damaged file is no longer in the way");
    assert_eq!(fs::read(&moved).unwrap(), bytes, "kept byte for byte");
    let name = moved.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("banlist.dat.corrupt-"), "{name}");
    assert!(message.contains("moved aside to"), "{message}");
    assert_eq!(load(path, KIND).unwrap(), None, "start-up goes on empty");
    fs::remove_file(moved).unwrap();
    problem
}

#[test]
fn round_trip_and_replace() {
    let d = dir();
    let path = d.path().join("banlist.dat");
    assert_eq!(load(&path, KIND).unwrap(), None, "no file yet");
    save(&path, KIND, PAYLOAD).unwrap();
    assert_eq!(load(&path, KIND).unwrap().as_deref(), Some(PAYLOAD));
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 256) as u8).collect();
    save(&path, KIND, &big).unwrap();
    assert_eq!(load(&path, KIND).unwrap(), Some(big));
    save(&path, KIND, b"").unwrap();
    assert_eq!(load(&path, KIND).unwrap(), Some(Vec::new()));
    assert_eq!(
        names(d.path()),
        ["banlist.dat"],
        "no temporary files left behind"
    );
}

#[test]
fn the_header_is_as_documented() {
    let d = dir();
    let path = d.path().join("banlist.dat");
    save(&path, KIND, PAYLOAD).unwrap();
    let file = fs::read(&path).unwrap();
    assert_eq!(file.len(), HEADER_LEN + PAYLOAD.len());
    assert_eq!(&file[..8], &MAGIC);
    assert_eq!(&file[8..12], &FORMAT_VERSION.to_le_bytes());
    assert_eq!(&file[12..28], b"banlist\0\0\0\0\0\0\0\0\0");
    assert_eq!(&file[28..36], &(PAYLOAD.len() as u64).to_le_bytes());
    let mut h = Sha256::new();
    h.update(&file[..36]);
    h.update(PAYLOAD);
    assert_eq!(&file[36..68], &h.finalize()[..]);
    assert_eq!(&file[68..], PAYLOAD);
}

#[test]
fn a_missing_directory_is_no_file() {
    let d = dir();
    let path = d.path().join("nowhere").join("banlist.dat");
    assert_eq!(load(&path, KIND).unwrap(), None);
    let err = save(&path, KIND, PAYLOAD).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert!(err.to_string().contains("nowhere"), "{err}");
}

#[test]
fn every_truncation_is_detected_and_set_aside() {
    let d = dir();
    let path = d.path().join("banlist.dat");
    save(&path, KIND, PAYLOAD).unwrap();
    let whole = fs::read(&path).unwrap();
    for len in 0..whole.len() {
        fs::write(&path, &whole[..len]).unwrap();
        let problem = expect_corrupt(&path, &whole[..len]);
        if len < HEADER_LEN {
            assert_eq!(problem, Corruption::TooShort { len }, "length {len}");
        } else {
            assert_eq!(
                problem,
                Corruption::Truncated {
                    expected: PAYLOAD.len() as u64,
                    actual: (len - HEADER_LEN) as u64,
                },
                "length {len}"
            );
        }
    }
    // Extra bytes are damage too.
    let mut longer = whole.clone();
    longer.push(0);
    fs::write(&path, &longer).unwrap();
    assert_eq!(
        expect_corrupt(&path, &longer),
        Corruption::TrailingBytes { extra: 1 }
    );
    assert!(names(d.path()).is_empty());
}

#[test]
fn every_flipped_bit_is_detected() {
    let d = dir();
    let path = d.path().join("banlist.dat");
    save(&path, KIND, PAYLOAD).unwrap();
    let whole = fs::read(&path).unwrap();
    for i in 0..whole.len() {
        for bit in 0..8 {
            let mut bad = whole.clone();
            bad[i] ^= 1 << bit;
            fs::write(&path, &bad).unwrap();
            let problem = expect_corrupt(&path, &bad);
            let expected_kind = match i {
                0..=7 => matches!(problem, Corruption::BadMagic),
                8..=11 => matches!(problem, Corruption::UnsupportedVersion(_)),
                28..=35 => matches!(
                    problem,
                    Corruption::Truncated { .. } | Corruption::TrailingBytes { .. }
                ),
                // The kind tag, the checksum and the payload are all under the checksum.
                _ => problem == Corruption::ChecksumMismatch,
            };
            assert!(expected_kind, "byte {i} bit {bit}: {problem}");
        }
    }
}

#[test]
fn garbage_and_foreign_files_are_set_aside() {
    let d = dir();
    let path = d.path().join("banlist.dat");
    // A Bitcoin Core banlist.dat or anything else that is not ours.
    let foreign = [0xf9, 0xbe, 0xb4, 0xd9].repeat(40);
    fs::write(&path, &foreign).unwrap();
    assert_eq!(expect_corrupt(&path, &foreign), Corruption::BadMagic);
    // A layout from the future.
    save(&path, KIND, PAYLOAD).unwrap();
    let mut future = fs::read(&path).unwrap();
    future[8..12].copy_from_slice(&2u32.to_le_bytes());
    fs::write(&path, &future).unwrap();
    assert_eq!(
        expect_corrupt(&path, &future),
        Corruption::UnsupportedVersion(2)
    );
}

#[test]
fn a_file_of_another_kind_is_refused_and_set_aside() {
    let d = dir();
    let path = d.path().join("banlist.dat");
    save(&path, "peers", PAYLOAD).unwrap();
    let bytes = fs::read(&path).unwrap();
    let err = load(&path, KIND).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("\"peers\"") && message.contains("\"banlist\""),
        "{message}"
    );
    let moved = err.moved_to().unwrap().to_owned();
    match err {
        LoadError::Corrupt { problem, .. } => assert_eq!(
            problem,
            Corruption::WrongKind {
                expected: "banlist".into(),
                found: "peers".into()
            }
        ),
        other => panic!("{other}"),
    }
    assert_eq!(fs::read(moved).unwrap(), bytes);
    assert_eq!(load(&path, KIND).unwrap(), None);
}

#[test]
fn corrupt_files_in_the_same_second_get_distinct_names() {
    let d = dir();
    let path = d.path().join("banlist.dat");
    let mut moved = Vec::new();
    for i in 0..3u8 {
        fs::write(&path, [i; 5]).unwrap();
        let err = load(&path, KIND).unwrap_err();
        moved.push(err.moved_to().unwrap().to_owned());
    }
    moved.sort();
    moved.dedup();
    assert_eq!(moved.len(), 3, "{moved:?}");
    // Unless the clock ticked between them, the later ones carry -1 and -2.
    let all = names(d.path());
    assert_eq!(all.len(), 3, "{all:?}");
    for (i, m) in moved.iter().enumerate() {
        let content = fs::read(m).unwrap();
        assert_eq!(content.len(), 5, "{i}");
    }
}

#[test]
fn move_aside_is_usable_for_payloads_the_caller_refuses() {
    let d = dir();
    let path = d.path().join("banlist.dat");
    save(&path, KIND, PAYLOAD).unwrap();
    let to = move_aside(&path).unwrap();
    assert!(!path.exists());
    assert_eq!(to.parent(), Some(d.path()));
    assert!(move_aside(&path).is_err(), "nothing left to move");
}

#[test]
fn a_directory_in_the_way_is_reported_and_left_alone() {
    let d = dir();
    let path = d.path().join("banlist.dat");
    fs::create_dir(&path).unwrap();
    fs::write(path.join("keep"), b"not ours").unwrap();

    let err = save(&path, KIND, PAYLOAD).unwrap_err();
    assert!(err.to_string().contains("banlist.dat"), "{err}");
    assert!(path.is_dir());
    assert_eq!(
        names(d.path()),
        ["banlist.dat"],
        "the temporary file was removed"
    );

    match load(&path, KIND) {
        Err(e @ LoadError::Io { .. }) => {
            assert!(e.to_string().contains("banlist.dat"), "{e}");
            assert!(e.moved_to().is_none());
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
    assert_eq!(fs::read(path.join("keep")).unwrap(), b"not ours");
}

#[test]
fn a_crash_before_the_rename_leaves_the_old_file() {
    let d = dir();
    let path = d.path().join("banlist.dat");
    save(&path, KIND, b"old state").unwrap();
    // What `save` leaves if the process dies between writing its temporary file and renaming
    // it: a complete new snapshot under a temporary name, and a half-written one from an
    // earlier crash for good measure.
    let scratch = d.path().join("scratch.dat");
    save(&scratch, KIND, b"new state, never renamed").unwrap();
    let complete = fs::read(&scratch).unwrap();
    fs::remove_file(&scratch).unwrap();
    fs::write(d.path().join(".banlist.dat.AbC123.tmp"), &complete).unwrap();
    fs::write(
        d.path().join(".banlist.dat.XyZ789.tmp"),
        &complete[..complete.len() / 2],
    )
    .unwrap();

    assert_eq!(
        load(&path, KIND).unwrap().as_deref(),
        Some(&b"old state"[..])
    );
    // The next save goes ahead regardless of the strays.
    save(&path, KIND, b"newer state").unwrap();
    assert_eq!(
        load(&path, KIND).unwrap().as_deref(),
        Some(&b"newer state"[..])
    );
    assert_eq!(names(d.path()).len(), 3, "strays are left for the operator");
}

#[test]
fn kinds_are_checked() {
    let d = dir();
    let path = d.path().join("banlist.dat");
    for bad in ["", "with space", "seventeen-chars-x", "nul\0"] {
        let err = save(&path, bad, PAYLOAD).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        assert!(matches!(load(&path, bad), Err(LoadError::InvalidKind(_))));
    }
    assert!(!path.exists());
    let err = save(Path::new("/"), KIND, PAYLOAD).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn a_failed_move_is_reported_not_hidden() {
    // The Display of the two outcomes, since making a rename fail portably (as root, with no
    // read-only file system at hand) is not something a fast test can do.
    let moved = Aside::Moved(PathBuf::from("/d/x.corrupt-1"));
    assert_eq!(moved.to_string(), "moved aside to /d/x.corrupt-1");
    let failed = Aside::NotMoved(io::Error::new(io::ErrorKind::PermissionDenied, "denied"));
    assert_eq!(failed.to_string(), "could not move it aside: denied");
}
