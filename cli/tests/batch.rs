//! `gsimg encode IN... --out-dir DIR`: many pictures in one process, each written as a single
//! encode would write it; a bad picture or a refused output does not stop the others.

use std::path::Path;

use crate::cli::{TempDir, gsimg, stderr, write_png};
use crate::cli_edges::{fails_with, gsimg_env};
use gsimg::ChannelLayout;

/// Three pictures of different sizes and layouts in `t`'s folder `in/`.
fn pictures(t: &TempDir) -> Vec<String> {
    std::fs::create_dir_all(t.0.join("in")).unwrap();
    std::fs::create_dir_all(t.0.join("out")).unwrap();
    let shapes = [
        ("in/rgb.png", 96, 64, ChannelLayout::Rgb),
        ("in/gray.png", 40, 56, ChannelLayout::Gray),
        ("in/alpha.png", 64, 48, ChannelLayout::Rgba),
    ];
    shapes
        .iter()
        .map(|&(name, w, h, layout)| {
            let p = t.path(name);
            write_png(&p, w, h, layout);
            p
        })
        .collect()
}

/// The output name of a picture in `out/`.
fn out_name(t: &TempDir, input: &str) -> String {
    let stem = Path::new(input).file_stem().unwrap().to_string_lossy();
    t.path(&format!("out/{stem}.gsi"))
}

/// Encodes `inputs` one process each and all in one process with `options`, and checks that
/// the files are the same bytes.
fn batch_equals_single(t: &TempDir, inputs: &[String], options: &[&str]) {
    let mut singles = Vec::new();
    for (k, input) in inputs.iter().enumerate() {
        let single = t.path(&format!("single{k}.gsi"));
        let mut args = vec!["encode", input.as_str(), single.as_str()];
        args.extend_from_slice(options);
        let o = gsimg(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        singles.push(std::fs::read(&single).unwrap());
    }
    let out = t.path("out");
    let mut args = vec!["encode"];
    args.extend(inputs.iter().map(String::as_str));
    args.extend_from_slice(&["--out-dir", &out]);
    args.extend_from_slice(options);
    let o = gsimg(&args);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    for (input, single) in inputs.iter().zip(&singles) {
        let batch = std::fs::read(out_name(t, input)).unwrap();
        assert!(
            batch == *single,
            "{input}: the batch's file differs ({options:?})"
        );
        // One line per picture, naming it and its output.
        assert!(
            err.lines()
                .any(|l| l.contains(input.as_str()) && l.contains(&out_name(t, input))),
            "{err}"
        );
    }
    let summary = format!(
        "{} pictures into {out}: {0} encoded, 0 failed",
        inputs.len()
    );
    assert!(err.contains(&summary), "{err}");
    assert!(
        err.contains("median") && err.contains("ms per picture"),
        "{err}"
    );
    // Nothing else in the folder (no temporary files left).
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), inputs.len());
    for f in std::fs::read_dir(&out).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
}

#[test]
fn several_pictures_into_a_folder_are_the_single_encodes() {
    let t = TempDir::new("batch-same");
    let inputs = pictures(&t);
    // The analytic encoder with its refinement (40 steps on the CPU), and at a target rate.
    batch_equals_single(&t, &inputs, &["--method", "analytic", "--device", "cpu"]);
    batch_equals_single(
        &t,
        &inputs,
        &[
            "--method",
            "analytic",
            "--device",
            "cpu",
            "--target-bpp",
            "2",
            "--refine",
            "5",
        ],
    );
    // -v: each picture's stages, named.
    let out = t.path("out");
    let o = gsimg(&[
        "encode", &inputs[0], &inputs[1], "-o", &out, "--method", "analytic", "--device", "cpu",
        "--refine", "0", "-v",
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    for input in &inputs[..2] {
        assert!(
            err.lines().any(|l| l.contains(input.as_str())
                && ["read in", "decoded in", "encoded in", "written in"]
                    .iter()
                    .all(|s| l.contains(s))),
            "{err}"
        );
    }
}

#[test]
fn several_pictures_through_one_network_encoder_are_the_single_encodes() {
    let model = crate::repo_root().join("tests/fixtures/onnx/dummy_compact.onnx");
    let Some(lib) = crate::common::ort_library(&model) else {
        return;
    };
    let t = TempDir::new("batch-network");
    let inputs = pictures(&t);
    let (model, lib) = (model.to_string_lossy(), lib.to_string_lossy());
    let base = ["--model", &model, "--ort-lib", &lib, "--device", "cpu"];
    batch_equals_single(&t, &inputs, &base);
    // With the refinement and the colour fits (the encoder's state carried from one picture to
    // the next must not change a file).
    let mut refined = base.to_vec();
    refined.extend_from_slice(&["--refine", "6", "--quality", "70"]);
    batch_equals_single(&t, &inputs, &refined);
    // The network's stages, per picture, with -v.
    let out = t.path("out");
    let mut args = vec!["encode", &inputs[0], &inputs[2], "-o", &out, "-v"];
    args.extend_from_slice(&base);
    let o = gsimg_env(&args, &[]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    for input in [&inputs[0], &inputs[2]] {
        assert!(
            err.lines()
                .any(|l| l.contains(input.as_str()) && l.contains("stages: network")),
            "{err}"
        );
    }
}

#[test]
fn a_bad_picture_is_reported_and_the_others_are_written() {
    let t = TempDir::new("batch-bad");
    let inputs = pictures(&t);
    let bad = t.path("in/bad.png");
    std::fs::write(&bad, b"not a picture at all").unwrap();
    let missing = t.path("in/missing.png");
    let out = t.path("out");
    let o = gsimg(&[
        "encode",
        &inputs[0],
        &bad,
        &inputs[1],
        &missing,
        &inputs[2],
        "--out-dir",
        &out,
        "--method",
        "analytic",
        "--refine",
        "0",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for input in &inputs {
        assert!(Path::new(&out_name(&t, input)).is_file(), "{input}: {err}");
    }
    // One error line for each failure, naming the picture; then the summary and the status.
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("error:")).collect();
    assert_eq!(errors.len(), 3, "{err}");
    assert!(
        errors[0].contains(&bad) && errors[0].contains("image format"),
        "{err}"
    );
    assert!(errors[1].contains(&missing), "{err}");
    assert!(
        errors[2].contains("2 of 5 pictures could not be encoded"),
        "{err}"
    );
    assert!(
        err.contains(&format!("5 pictures into {out}: 3 encoded, 2 failed")),
        "{err}"
    );
    // Only the three files: no output for the bad ones, no temporary files.
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 3);
}

#[test]
fn outputs_of_the_same_name_are_refused_before_any_work() {
    let t = TempDir::new("batch-dup");
    let inputs = pictures(&t);
    std::fs::create_dir_all(t.0.join("other")).unwrap();
    let twin = t.path("other/rgb.jpg");
    std::fs::copy(&inputs[0], &twin).unwrap();
    let out = t.path("out");
    let o = gsimg(&["encode", &inputs[0], &inputs[1], &twin, "-o", &out]);
    fails_with(&o, 2, "would both be written to");
    assert!(stderr(&o).contains(&inputs[0]) && stderr(&o).contains(&twin));
    fails_with(
        &gsimg(&["encode", &inputs[1], &inputs[1], "-o", &out]),
        2,
        "is given twice",
    );
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
}

#[test]
fn the_output_folder_and_the_command_line_are_checked() {
    let t = TempDir::new("batch-args");
    let inputs = pictures(&t);
    let (a, b) = (inputs[0].as_str(), inputs[1].as_str());
    let nowhere = t.path("nowhere");
    fails_with(
        &gsimg(&["encode", a, b, "-o", &nowhere]),
        1,
        "no such folder",
    );
    assert!(!Path::new(&nowhere).exists());
    // A file given as the folder.
    fails_with(&gsimg(&["encode", a, b, "--out-dir", b]), 1, "not a folder");
    // Standard input has no name for its output.
    fails_with(
        &gsimg(&["encode", a, "-", "-o", &t.path("out")]),
        2,
        "standard input",
    );
    // Without --out-dir: one picture and its output, as always.
    fails_with(&gsimg(&["encode", a]), 2, "needs an output");
    fails_with(&gsimg(&["encode", a, b, &inputs[2]]), 2, "--out-dir");
    fails_with(
        &gsimg(&["encode", a, &t.path("out")]),
        1,
        "it is a folder (to encode into a folder, name it with --out-dir)",
    );
    // One picture into a folder.
    let o = gsimg(&[
        "encode",
        a,
        "-o",
        &t.path("out"),
        "--method",
        "analytic",
        "--refine",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(Path::new(&out_name(&t, a)).is_file());
    assert!(stderr(&o).contains("1 picture into"), "{}", stderr(&o));
}

#[test]
fn existing_outputs_follow_force() {
    let t = TempDir::new("batch-force");
    let inputs = pictures(&t);
    let out = t.path("out");
    let encode = |force: bool| {
        let mut args = vec!["encode"];
        args.extend(inputs.iter().map(String::as_str));
        args.extend_from_slice(&["-o", &out, "--method", "analytic", "--refine", "0"]);
        if force {
            args.push("--force");
        }
        gsimg(&args)
    };
    // A picture where an output goes is not replaced without --force; the others are written.
    let held = out_name(&t, &inputs[1]);
    std::fs::copy(&inputs[0], &held).unwrap();
    let picture = std::fs::read(&held).unwrap();
    let o = encode(false);
    fails_with(&o, 1, "holds a PNG picture");
    assert!(stderr(&o).contains(&held), "{}", stderr(&o));
    assert_eq!(std::fs::read(&held).unwrap(), picture);
    let (first, last) = (out_name(&t, &inputs[0]), out_name(&t, &inputs[2]));
    let written = std::fs::read(&first).unwrap();
    assert!(written.starts_with(&gsimg::info::SIGNATURE));
    // An earlier .gsi file is replaced without --force, as a single encode replaces it.
    std::fs::copy(&last, &first).unwrap();
    fails_with(&encode(false), 1, "holds a PNG picture");
    assert_eq!(std::fs::read(&first).unwrap(), written);
    assert_eq!(std::fs::read(&held).unwrap(), picture);
    // With --force, the picture too.
    let o = encode(true);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::read(&held)
            .unwrap()
            .starts_with(&gsimg::info::SIGNATURE)
    );
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 3);
}
