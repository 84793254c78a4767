//! Replays the fuzz corpus and every crash the fuzzer found (`make fuzz`,
//! `fuzz/corpus/TARGET`, `fuzz/crashes/TARGET`) through the same targets,
//! uninstrumented: what was found once stays fixed, in `make test`.

#[path = "../fuzz/targets.rs"]
mod targets;

use std::path::PathBuf;

#[test]
fn every_corpus_input_and_every_crash_found_is_handled() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, target) in targets::TARGETS {
        let mut replayed = 0;
        for kind in ["corpus", "crashes"] {
            let dir = root.join(kind).join(name);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("directory entry").path();
                let data =
                    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                // A panic here names the input through the test's output.
                eprintln!("{}", path.display());
                target(&data);
                replayed += 1;
            }
        }
        assert!(replayed > 0, "no corpus for fuzz target {name}");
    }
}
