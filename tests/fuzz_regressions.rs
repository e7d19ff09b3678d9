//! Every input a fuzz target ever crashed on, replayed through the same code
//! (`gsimg::fuzzing`): `tests/fuzz_regressions/<target>/*`. None may panic any more.

fn replay(target: &str, f: fn(&[u8])) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_regressions")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut n = 0;
    for e in entries {
        let path = e.unwrap().path();
        if path.is_file() && path.extension().is_none_or(|x| x != "md") {
            f(&std::fs::read(&path).unwrap());
            n += 1;
        }
    }
    n
}

#[test]
fn fuzz_findings_no_longer_crash() {
    type Target = (&'static str, fn(&[u8]));
    let targets: [Target; 7] = [
        ("parse", gsimg::fuzzing::parse),
        ("parse_and_render", gsimg::fuzzing::parse_and_render),
        ("region", gsimg::fuzzing::region),
        ("roundtrip", gsimg::fuzzing::roundtrip),
        ("encode_pixels", gsimg::fuzzing::encode_pixels),
        ("model_metadata", gsimg::fuzzing::model_metadata),
        ("network_output", gsimg::fuzzing::network_output),
    ];
    let total: usize = targets.iter().map(|(t, f)| replay(t, *f)).sum();
    eprintln!("replayed {total} fuzz findings");
}

#[test]
fn seed_corpora_run_clean() {
    // The seeds are real encoder outputs: every target must accept them without panicking.
    let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let mut n = 0;
    for (target, f) in [
        ("parse", gsimg::fuzzing::parse as fn(&[u8])),
        ("parse_and_render", gsimg::fuzzing::parse_and_render),
        ("region", gsimg::fuzzing::region),
        ("roundtrip", gsimg::fuzzing::roundtrip),
        ("encode_pixels", gsimg::fuzzing::encode_pixels),
        ("model_metadata", gsimg::fuzzing::model_metadata),
        ("network_output", gsimg::fuzzing::network_output),
    ] {
        for e in std::fs::read_dir(seeds.join(target)).unwrap() {
            f(&std::fs::read(e.unwrap().path()).unwrap());
            n += 1;
        }
    }
    assert!(n >= 20, "only {n} seeds");
}
