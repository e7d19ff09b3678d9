//! The CUDA renderer: the committed PTX matches the kernel sources (CPU only, always run), the
//! kernels' constants match the CPU renderer's, and — where a CUDA device is present — GPU
//! renders match `render_cpu` (format-spec.md §3.6). Without a device the GPU tests print a
//! note and pass; `scripts/gpu-check.sh` runs the full comparison on the GPU machine, and
//! `scripts/cuda-emu/` runs these tests against a CPU emulation of the kernels.

use std::path::{Path, PathBuf};

use crate::common::{Rng, max_abs_diff, random_image};
use gsimg::core::geometry::{CUTOFF_Q, MIN_WEIGHT_SUM, PREFILTER_VARIANCE};
use gsimg::render::render_cpu;
use gsimg::{ChannelLayout, Error, Frame, Limits, Region, SplatImage, Viewport};

fn kernels_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels")
}

/// SHA-256 (FIPS 180-4), enough for a manifest check without a dependency.
fn sha256(data: &[u8]) -> String {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for i in 0..16 {
            w[i] = u32::from_be_bytes(block[4 * i..4 * i + 4].try_into().unwrap());
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}

#[test]
fn sha256_known_answers() {
    assert_eq!(
        sha256(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        sha256(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

/// The committed PTX was built from the current sources: every `.cu`/`.cuh` and `.ptx` file is
/// listed in kernels/ptx/MANIFEST with its sha256 (scripts/build-ptx.sh writes it).
#[test]
fn committed_ptx_matches_the_kernel_sources() {
    let dir = kernels_dir();
    let manifest = std::fs::read_to_string(dir.join("ptx/MANIFEST")).unwrap();
    let entries: Vec<(&str, &str)> = manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (hash, name) = l.split_once("  ").expect("sha256sum format");
            (name, hash)
        })
        .collect();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".cu") || n.ends_with(".cuh"))
        .collect();
    files.extend(
        std::fs::read_dir(dir.join("ptx"))
            .unwrap()
            .map(|e| format!("ptx/{}", e.unwrap().file_name().into_string().unwrap()))
            .filter(|n| n.ends_with(".ptx")),
    );
    files.sort();
    let mut listed: Vec<String> = entries.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(
        files, listed,
        "kernel files and MANIFEST differ: run scripts/build-ptx.sh"
    );
    for (name, hash) in entries {
        let got = sha256(&std::fs::read(dir.join(name)).unwrap());
        assert_eq!(
            got, hash,
            "kernels/{name} changed since the PTX was built: run scripts/build-ptx.sh"
        );
    }
    #[cfg(feature = "cuda")]
    for (file, ptx) in gsimg::cuda::PTX_FILES {
        assert_eq!(
            std::fs::read_to_string(dir.join("ptx").join(file)).unwrap(),
            ptx,
            "embedded {file}"
        );
    }
}

/// kernels/common.cuh states the rendering constants of src/render/project.rs.
#[test]
fn kernel_constants_match_the_cpu_renderer() {
    let header = std::fs::read_to_string(kernels_dir().join("common.cuh")).unwrap();
    let define = |name: &str| -> String {
        header
            .lines()
            .find_map(|l| l.strip_prefix(&format!("#define {name} ")))
            .unwrap_or_else(|| panic!("{name} not defined"))
            .trim()
            .to_string()
    };
    assert_eq!(define("PREFILTER_VARIANCE"), "(1.0 / 12.0)");
    assert_eq!(PREFILTER_VARIANCE, 1.0 / 12.0);
    assert_eq!(define("CUTOFF_Q"), "9.0f");
    assert_eq!(CUTOFF_Q, 9.0);
    assert_eq!(define("MIN_WEIGHT_SUM"), "0x1p-40f");
    assert_eq!(MIN_WEIGHT_SUM, 2f32.powi(-40));
    assert_eq!(define("COORD_LIMIT"), "1099511627776.0");
}

#[cfg(not(feature = "cuda"))]
#[test]
fn without_the_feature_the_renderer_says_so() {
    match gsimg::cuda::CudaRenderer::new() {
        Err(Error::NoGpu(m)) => assert!(m.contains("built without CUDA support")),
        other => panic!("{other:?}"),
    }
    assert_eq!(gsimg::cuda::device_count(), 0);
}

// ---- GPU against CPU (skipped without a device) -----------------------------------------------

/// The device, or `None` (with a note) when there is none.
fn gpu() -> Option<gsimg::cuda::CudaRenderer> {
    match gsimg::cuda::CudaRenderer::new() {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("note: no CUDA device, GPU comparison skipped ({e})");
            None
        }
    }
}

/// §3.6: 8-bit samples within 1 level on ≥ 99.9% and within 2 everywhere; returns the worst
/// difference and the count over 1.
fn check_u8(what: &str, gpu: &Frame<u8>, cpu: &Frame<u8>) {
    assert_eq!(
        (gpu.width, gpu.height, gpu.layout, gpu.data.len()),
        (cpu.width, cpu.height, cpu.layout, cpu.data.len()),
        "{what}"
    );
    let mut over1 = 0usize;
    let mut worst = 0u8;
    for (a, b) in gpu.data.iter().zip(&cpu.data) {
        let d = a.abs_diff(*b);
        worst = worst.max(d);
        over1 += (d > 1) as usize;
    }
    assert!(worst <= 2, "{what}: a sample differs by {worst}");
    assert!(
        over1 * 1000 <= cpu.data.len(),
        "{what}: {over1} of {} samples differ by 2",
        cpu.data.len()
    );
}

fn check_f32(what: &str, gpu: &Frame<f32>, cpu: &Frame<f32>) {
    assert_eq!(gpu.data.len(), cpu.data.len(), "{what}");
    let worst = max_abs_diff(&gpu.data, &cpu.data);
    assert!(worst <= 1e-4, "{what}: max difference {worst}");
}

fn views(img: &SplatImage) -> Vec<(String, Viewport)> {
    let (w, h) = (img.width(), img.height());
    let mut v = vec![
        ("x1".to_string(), Viewport::full(w, h)),
        ("x2.5".to_string(), Viewport::scaled(w, h, 2.5).unwrap()),
        ("x0.37".to_string(), Viewport::scaled(w, h, 0.37).unwrap()),
        (
            "non-square".to_string(),
            Viewport::full(w * 3 + 1, h * 2 - 3),
        ),
    ];
    let big = Viewport::scaled(w, h, 4.0).unwrap();
    v.push((
        "x4 region".to_string(),
        big.with_region(Region {
            x: 37,
            y: 21,
            width: big.width - 60,
            height: 45,
        }),
    ));
    v
}

#[test]
fn gpu_matches_cpu_on_random_images() {
    let Some(gpu) = gpu() else { return };
    let limits = Limits::default();
    let mut rng = Rng::new(7);
    for (layout, w, h, n, smax) in [
        (ChannelLayout::Rgb, 48, 40, 300, 6.0),
        (ChannelLayout::Rgba, 33, 27, 150, 3.0),
        (ChannelLayout::Gray, 40, 21, 200, 12.0),
        (ChannelLayout::GrayAlpha, 25, 30, 2600, 2.0),
    ] {
        let img = random_image(&mut rng, w, h, layout, n, 0.2, smax);
        let mut dev = gpu.upload(&img).unwrap();
        for (name, view) in views(&img) {
            let what = format!("{layout:?} {w}x{h} n={n} {name}");
            let cpu8: Frame<u8> = render_cpu(&img, &view, &limits).unwrap();
            let gpu8: Frame<u8> = dev.render(&view, &limits).unwrap();
            check_u8(&what, &gpu8, &cpu8);
            let cpuf: Frame<f32> = render_cpu(&img, &view, &limits).unwrap();
            let gpuf: Frame<f32> = dev.render(&view, &limits).unwrap();
            check_f32(&what, &gpuf, &cpuf);
        }
    }
}

#[test]
fn gpu_regions_rgba_device_frames_and_edge_cases() {
    let Some(gpu) = gpu() else { return };
    let limits = Limits::default();
    let mut rng = Rng::new(11);
    let img = random_image(&mut rng, 30, 20, ChannelLayout::Gray, 120, 0.3, 5.0);
    let mut dev = gpu.upload(&img).unwrap();
    let view = Viewport::scaled(30, 20, 3.0).unwrap();
    // RGBA expansion: gray repeated, alpha 255.
    let rgba: Frame<u8> = dev.render_rgba(&view, &limits).unwrap();
    let gray: Frame<u8> = dev.render(&view, &limits).unwrap();
    assert_eq!(rgba.channels(), 4);
    for (p, g) in rgba.data.chunks_exact(4).zip(&gray.data) {
        assert_eq!(p, &[*g, *g, *g, 255]);
    }
    // A device frame gives the same bytes as a host render.
    let mut frame = gpu.alloc_frame::<u8>(view.width, view.height, 1).unwrap();
    let info = dev.render_into(&view, &limits, &mut frame).unwrap();
    assert!(info.work > 0 && info.tile_entries > 0);
    assert_eq!(frame.download().unwrap(), gray);
    let mut wrong = gpu
        .alloc_frame::<u8>(view.width + 1, view.height, 1)
        .unwrap();
    assert!(matches!(
        dev.render_into(&view, &limits, &mut wrong),
        Err(Error::InvalidParameter { .. })
    ));
    // Limits are enforced: the render work of a big zoom.
    let tight = Limits {
        max_render_work: 1000,
        max_render_work_per_pixel: 0,
        ..Limits::default()
    };
    assert!(matches!(
        dev.render::<u8>(&view, &tight),
        Err(Error::LimitsExceeded { .. })
    ));
    // No Gaussians: zeros, as the CPU.
    let empty = SplatImage::new(9, 7, ChannelLayout::Rgb, vec![]).unwrap();
    let mut dev_empty = gpu.upload(&empty).unwrap();
    let f: Frame<u8> = dev_empty.render(&Viewport::full(9, 7), &limits).unwrap();
    assert!(f.data.iter().all(|v| *v == 0));
}

#[test]
fn gpu_tile_lists_grow_past_their_first_capacity() {
    let Some(gpu) = gpu() else { return };
    let limits = Limits::default();
    let mut rng = Rng::new(3);
    // Few, large Gaussians: many tiles each, far more entries than the first guess.
    let img = random_image(&mut rng, 20, 20, ChannelLayout::Rgb, 30, 5.0, 9.0);
    let mut dev = gpu.upload(&img).unwrap();
    let view = Viewport::scaled(20, 20, 20.0).unwrap();
    let (f, info) = dev.render_with_info::<u8>(&view, &limits, false).unwrap();
    assert_eq!(info.attempts, 2, "{info:?}");
    check_u8(
        "grown lists",
        &f,
        &render_cpu(&img, &view, &limits).unwrap(),
    );
    // The next render reuses the grown lists.
    let (_, info) = dev.render_with_info::<u8>(&view, &limits, false).unwrap();
    assert_eq!(info.attempts, 1);
}

/// A render given a cancel flag rasterizes in batches of tiles. Not cancelled, it equals the
/// render in one launch byte for byte; cancelled from another thread mid-render, it returns
/// `Error::Cancelled` well before the whole render would end (when the whole render takes long
/// enough to tell); the next render is whole again. A 832² render in batches of 256 tiles (11
/// batches), small enough for `scripts/cuda-emu/`; `gpu_check cancel` in
/// `scripts/gpu-check.sh` times a 16384² render in the default batches on a GPU.
#[test]
fn gpu_render_is_cancellable_between_batches_of_tiles() {
    use std::sync::atomic::AtomicBool;
    use std::time::Instant;
    let Some(gpu) = gpu() else { return };
    let limits = Limits::default();
    let mut rng = Rng::new(5);
    // Few, large Gaussians: every pixel does real work, within the render-work limit.
    let img = random_image(&mut rng, 64, 64, ChannelLayout::Rgb, 24, 3.0, 12.0);
    let mut dev = gpu.upload(&img).unwrap();
    dev.set_cancel_batch_tiles(256);
    let view = Viewport::scaled(64, 64, 13.0).unwrap();
    let flag = AtomicBool::new(false);
    let t = Instant::now();
    let whole: Frame<u8> = dev.render(&view, &limits).unwrap();
    let t_whole = t.elapsed();
    let batched: Frame<u8> = dev.render_cancellable(&view, &limits, &flag).unwrap();
    assert!(whole.data == batched.data, "batched render differs");
    let label = format!("{}x{} render", view.region.width, view.region.height);
    check_cancel(&mut dev, &view, &limits, &flag, &whole, t_whole, &label);
}

/// The stages before rasterization (projection, prefix sum, pairs, radix sort) are cancellable
/// too: many small Gaussians on a picture of one rasterization batch, so that nearly all the
/// render's time is in those stages (before, a cancel there was not seen: the render ran to its
/// end). Not cancelled, the render equals the one without a flag byte for byte.
#[test]
fn gpu_render_is_cancellable_during_projection_and_sort() {
    use std::sync::atomic::AtomicBool;
    use std::time::Instant;
    let Some(gpu) = gpu() else { return };
    let limits = Limits::default();
    let mut rng = Rng::new(9);
    let img = random_image(&mut rng, 256, 256, ChannelLayout::Rgb, 60_000, 0.3, 0.8);
    let mut dev = gpu.upload(&img).unwrap();
    let view = Viewport::full(256, 256);
    let flag = AtomicBool::new(false);
    let t = Instant::now();
    let whole: Frame<u8> = dev.render(&view, &limits).unwrap();
    let t_whole = t.elapsed();
    let flagged: Frame<u8> = dev.render_cancellable(&view, &limits, &flag).unwrap();
    assert!(whole.data == flagged.data, "render with a flag differs");
    let label = format!("{} Gaussians on 256x256 (one batch)", img.gaussian_count());
    check_cancel(&mut dev, &view, &limits, &flag, &whole, t_whole, &label);
}

/// Renders `view` cancellably with `flag` set from another thread after a fifth of `t_whole`
/// (the time of the whole render `whole`): when the whole render takes long enough to tell, it
/// must return `Error::Cancelled` within three quarters of `t_whole`. Then, not cancelled, the
/// render must equal `whole` again.
#[allow(clippy::too_many_arguments)]
fn check_cancel(
    dev: &mut gsimg::gpu::GpuImage,
    view: &Viewport,
    limits: &Limits,
    flag: &std::sync::atomic::AtomicBool,
    whole: &Frame<u8>,
    t_whole: std::time::Duration,
    label: &str,
) {
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};
    let (result, took) = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(t_whole / 5);
            flag.store(true, Ordering::Relaxed);
        });
        let t = Instant::now();
        let r = dev.render_cancellable::<u8>(view, limits, flag);
        (r, t.elapsed())
    });
    eprintln!(
        "{label}: whole {:.1} ms, cancelled after {:.1} ms: {:.1} ms",
        t_whole.as_secs_f64() * 1e3,
        t_whole.as_secs_f64() * 1e3 / 5.0,
        took.as_secs_f64() * 1e3
    );
    if t_whole >= Duration::from_millis(50) {
        assert!(
            matches!(result, Err(Error::Cancelled)),
            "not cancelled: {:?}",
            result.map(|_| ())
        );
        assert!(
            took < t_whole * 3 / 4,
            "cancel took {took:?} of {t_whole:?}"
        );
    } else {
        eprintln!("note: the whole render is too fast to time a cancel");
        assert!(matches!(result, Ok(_) | Err(Error::Cancelled)));
    }
    flag.store(false, Ordering::Relaxed);
    let again: Frame<u8> = dev.render_cancellable(view, limits, flag).unwrap();
    assert!(
        again.data == whole.data,
        "the render after a cancel differs"
    );
}

#[test]
fn gpu_decoder_renders_gsi_bytes() {
    let Some(gpu) = gpu() else { return };
    let limits = Limits::default();
    let mut rng = Rng::new(5);
    let img = random_image(&mut rng, 40, 30, ChannelLayout::Rgb, 200, 0.5, 4.0);
    let bytes = gsimg::format::write(&img, &Default::default())
        .unwrap()
        .bytes;
    let decoded = gsimg::format::read(&bytes, &limits).unwrap().image;
    let cpu: Frame<u8> = render_cpu(&decoded, &Viewport::full(40, 30), &limits).unwrap();
    let mut dec = gpu.decoder(limits).unwrap();
    for _ in 0..2 {
        let f = dec.decode_rgba8(&bytes, None).unwrap();
        assert_eq!((f.width, f.height, f.channels), (40, 30, 4));
        let rgb: Vec<u8> = f
            .data
            .chunks_exact(4)
            .flat_map(|p| {
                assert_eq!(p[3], 255);
                [p[0], p[1], p[2]]
            })
            .collect();
        check_u8(
            "decoder",
            &Frame {
                width: 40,
                height: 30,
                layout: ChannelLayout::Rgb,
                data: rgb,
            },
            &cpu,
        );
    }
}

#[test]
fn gpu_three_radix_passes_and_three_scan_levels() {
    let Some(gpu) = gpu() else { return };
    let limits = Limits::default();
    let mut rng = Rng::new(13);
    // Over 65,536 tiles (17-bit tile keys: three radix passes), few Gaussians.
    let img = random_image(&mut rng, 40, 40, ChannelLayout::Rgb, 60, 0.5, 3.0);
    let mut dev = gpu.upload(&img).unwrap();
    let view = Viewport::full(4112, 4112);
    check_u8(
        "257 x 257 tiles",
        &dev.render(&view, &limits).unwrap(),
        &render_cpu(&img, &view, &limits).unwrap(),
    );
    // Over 2048² Gaussians (three prefix-sum levels), nearly all outside a small region.
    let n = 2048 * 2048 + 1000;
    let gs: Vec<gsimg::Gaussian> = (0..n)
        .map(|i| gsimg::Gaussian {
            x: (i % 2048) as f32 + 0.5,
            y: (i / 2048 % 2048) as f32 + 0.5,
            scale: [0.6, 0.9],
            rotation: i as f32 * 0.1,
            color: [(i % 7) as f32 / 7.0, (i % 11) as f32 / 11.0, 0.5, 0.0],
        })
        .collect();
    let img = SplatImage::new(2048, 2048, ChannelLayout::Rgb, gs).unwrap();
    let mut dev = gpu.upload(&img).unwrap();
    let view = Viewport::full(2048, 2048).with_region(Region {
        x: 1000,
        y: 5,
        width: 40,
        height: 20,
    });
    check_u8(
        "three scan levels",
        &dev.render(&view, &limits).unwrap(),
        &render_cpu(&img, &view, &limits).unwrap(),
    );
}

/// A picture to refine against: another random scene rendered, plus a little noise.
fn refine_target(rng: &mut Rng, w: u32, h: u32, layout: ChannelLayout) -> gsimg::Frame<f32> {
    let scene = random_image(rng, w, h, layout, 60, 1.0, 8.0);
    let frame: Frame<f32> = render_cpu(&scene, &Viewport::full(w, h), &Limits::default()).unwrap();
    let data = frame
        .data
        .iter()
        .map(|v| v + rng.range(-0.02, 0.02) as f32)
        .collect();
    gsimg::Frame {
        width: w,
        height: h,
        layout,
        data,
    }
}

#[test]
fn gpu_refinement_gradients_match_cpu() {
    // The GPU's exact gradient of format-spec §3 (normalization included) against the CPU
    // refinement's, on random scenes of every layout: within 1e-4 of the largest gradient of
    // each parameter (float sums on the device, double on the CPU).
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(11);
    for (layout, w, h, n, smax) in [
        (ChannelLayout::Rgb, 45, 38, 120, 5.0),
        (ChannelLayout::Rgba, 33, 20, 60, 3.0),
        (ChannelLayout::Gray, 40, 21, 90, 9.0),
        (ChannelLayout::GrayAlpha, 19, 35, 300, 2.0),
    ] {
        let target = refine_target(&mut rng, w, h, layout);
        let gs = random_image(&mut rng, w, h, layout, n, 0.3, smax).into_gaussians();
        let (cpu_loss, cpu) = gsimg::encode::optim::refine::gradients(&target, &gs);
        let mut refiner = gpu.refiner(w, h, layout.channels(), &target.data).unwrap();
        let (gpu_loss, dev) = refiner.gradients(&gs).unwrap();
        assert!(
            (gpu_loss - cpu_loss).abs() <= 1e-5 * cpu_loss,
            "{layout:?}: loss {gpu_loss} on the GPU, {cpu_loss} on the CPU"
        );
        for p in 0..5 + layout.channels() {
            let scale = cpu.iter().map(|g| g[p].abs()).fold(0.0, f64::max);
            assert!(scale > 0.0, "{layout:?}: parameter {p} has no gradient");
            for (k, (c, d)) in cpu.iter().zip(&dev).enumerate() {
                assert!(
                    (c[p] - d[p]).abs() <= 1e-4 * scale,
                    "{layout:?}: Gaussian {k} parameter {p}: GPU {} CPU {} (largest {scale})",
                    d[p],
                    c[p]
                );
            }
        }
    }
}

#[test]
fn gpu_refinement_descends_as_the_cpu_does() {
    // The same Adam descent on both: the GPU ends within 2 % of the CPU's error, both well
    // below the start, and each returns the best parameters it saw.
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(5);
    let (w, h, layout) = (48u32, 40u32, ChannelLayout::Rgb);
    let target = refine_target(&mut rng, w, h, layout);
    let start = random_image(&mut rng, w, h, layout, 80, 1.0, 4.0).into_gaussians();
    let opts = gsimg::encode::optim::refine::RefineOptions {
        iterations: 30,
        ..Default::default()
    };
    let mut cpu = start.clone();
    let c = gsimg::encode::optim::refine::refine(&target, &mut cpu, &opts).unwrap();
    let mut dev = start.clone();
    let mut refiner = gpu.refiner(w, h, 3, &target.data).unwrap();
    let adam = opts.adam();
    let (first, last) = refiner.descend(&mut dev, &adam, 30, None).unwrap();
    assert!(
        (first - c.first).abs() <= 1e-5 * c.first,
        "{first} vs {}",
        c.first
    );
    assert!(c.last < 0.7 * c.first, "CPU {} -> {}", c.first, c.last);
    assert!(
        (last - c.last).abs() <= 0.02 * c.last,
        "GPU ends at {last}, CPU at {}",
        c.last
    );
    // What the GPU returns renders to the error it reports.
    let (again, _) = gsimg::encode::optim::refine::gradients(&target, &dev);
    assert!((again - last).abs() <= 1e-4 * last, "{again} vs {last}");
}

#[test]
fn gpu_refiner_serves_pictures_of_other_sizes() {
    // An encoder of many pictures keeps one refiner and points it at each picture in turn
    // (`set_target`): larger, smaller, other channel counts. Its descents and colour fits
    // equal those of a refiner made for each picture.
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(31);
    let opts = gsimg::encode::optim::refine::RefineOptions {
        iterations: 12,
        ..Default::default()
    };
    let (adam, fit) = (
        opts.adam(),
        gsimg::encode::optim::fit::FitOptions::default(),
    );
    let mut kept: Option<gsimg::cuda::GpuRefiner> = None;
    for (layout, w, h, n) in [
        (ChannelLayout::Rgb, 48u32, 40u32, 80usize),
        (ChannelLayout::Gray, 20, 17, 30),
        (ChannelLayout::Rgba, 70, 52, 150),
        (ChannelLayout::GrayAlpha, 33, 90, 70),
        (ChannelLayout::Rgb, 48, 40, 60),
    ] {
        let nc = layout.channels();
        let target = refine_target(&mut rng, w, h, layout);
        let start = random_image(&mut rng, w, h, layout, n, 1.0, 4.0).into_gaussians();
        let mut fresh = gpu.refiner(w, h, nc, &target.data).unwrap();
        let refiner = match kept.as_mut() {
            Some(r) => {
                r.set_target(w, h, nc, &target.data).unwrap();
                r
            }
            None => kept.insert(gpu.refiner(w, h, nc, &target.data).unwrap()),
        };
        let same = |what: &str, a: &[gsimg::Gaussian], b: &[gsimg::Gaussian]| {
            for (k, (a, b)) in a.iter().zip(b).enumerate() {
                let d = [
                    a.x - b.x,
                    a.y - b.y,
                    a.scale[0] - b.scale[0],
                    a.scale[1] - b.scale[1],
                ]
                .into_iter()
                .chain((0..nc).map(|c| a.color[c] - b.color[c]))
                .fold(0f32, |m, v| m.max(v.abs()));
                assert!(
                    d <= 1e-5,
                    "{layout:?} {w}x{h}, {what}: Gaussian {k} differs by {d}"
                );
            }
        };
        let (mut a, mut b) = (start.clone(), start.clone());
        let ra = fresh.descend(&mut a, &adam, opts.iterations, None).unwrap();
        let rb = refiner
            .descend(&mut b, &adam, opts.iterations, None)
            .unwrap();
        for (x, y) in [(ra.0, rb.0), (ra.1, rb.1)] {
            assert!(
                (x - y).abs() <= 1e-6 * x,
                "{layout:?} {w}x{h}: error {x} vs {y}"
            );
        }
        assert!(rb.1 < rb.0, "{layout:?} {w}x{h}: no descent ({rb:?})");
        same("descent", &a, &b);
        fresh.fit_colors(&mut a, fit.iterations, fit.clamp).unwrap();
        refiner
            .fit_colors(&mut b, fit.iterations, fit.clamp)
            .unwrap();
        same("colour fit", &a, &b);
    }
}

#[test]
fn gpu_colour_fit_matches_cpu() {
    // The least-squares colour fit: on a picture that is one of the CPU's chunks both run the
    // same conjugate gradients on the same normal equations (the GPU's products in float, the
    // CPU's in double), from grey, for the encoders' 40 iterations: the same error to 1e-5,
    // below the start's, and the same colours to 1e-4 of the largest. (After fewer iterations
    // than unknowns the two can differ by more: the directions the error barely sees are not
    // settled yet, and float products steer them differently.)
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(23);
    for (layout, w, h, n) in [
        (ChannelLayout::Rgb, 30u32, 22u32, 14usize),
        (ChannelLayout::GrayAlpha, 17, 19, 9),
    ] {
        let nc = layout.channels();
        let target = refine_target(&mut rng, w, h, layout);
        let mut start = random_image(&mut rng, w, h, layout, n, 2.0, 7.0).into_gaussians();
        for g in start.iter_mut() {
            g.color[..nc].fill(0.5);
        }
        let opts = gsimg::encode::optim::fit::FitOptions::default();
        let mut cpu = start.clone();
        gsimg::encode::optim::fit::fit_colors(&target, &mut cpu, &opts);
        let mut dev = start.clone();
        let mut refiner = gpu.refiner(w, h, nc, &target.data).unwrap();
        refiner
            .fit_colors(&mut dev, opts.iterations, opts.clamp)
            .unwrap();
        let loss = |gs: &[gsimg::Gaussian]| gsimg::encode::optim::refine::gradients(&target, gs).0;
        let (l0, lc, lg) = (loss(&start), loss(&cpu), loss(&dev));
        assert!(lc < 0.8 * l0, "{layout:?}: the CPU fit {l0} -> {lc}");
        assert!(
            (lg - lc).abs() <= 1e-4 * lc,
            "{layout:?}: GPU {lg}, CPU {lc}"
        );
        let scale = cpu
            .iter()
            .flat_map(|g| g.color[..nc].iter())
            .fold(0f32, |m, v| m.max(v.abs()));
        let mut worst = 0f32;
        for (c, d) in cpu.iter().zip(&dev) {
            assert_eq!(
                (c.x, c.scale),
                (d.x, d.scale),
                "the geometry is left as it is"
            );
            for ch in 0..nc {
                worst = worst.max((c.color[ch] - d.color[ch]).abs() / scale);
            }
        }
        eprintln!(
            "{layout:?}: error {l0:.3e} -> CPU {lc:.3e}, GPU {lg:.3e}; colours within {worst:.1e}"
        );
        assert!(
            worst <= 1e-4,
            "{layout:?}: colours differ by {worst} of the largest"
        );
    }
}

#[test]
fn gpu_removal_costs_match_cpu() {
    // The moves' removal costs (realloc.rs: ΔE_k over each Gaussian's footprint) on random
    // scenes of every layout: the GPU's within 1e-4 of the CPU's (relative, or of the largest
    // for costs near 0), and the same ten cheapest in the same order.
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(41);
    for (layout, w, h, n) in [
        (ChannelLayout::Gray, 37u32, 29u32, 60usize),
        (ChannelLayout::GrayAlpha, 30, 34, 50),
        (ChannelLayout::Rgb, 48, 40, 90),
        (ChannelLayout::Rgba, 35, 21, 70),
    ] {
        let nc = layout.channels();
        let target = refine_target(&mut rng, w, h, layout);
        let gs = random_image(&mut rng, w, h, layout, n, 0.6, 6.0).into_gaussians();
        let cpu = gsimg::encode::optim::realloc::removal_costs(&target, &gs);
        let mut refiner = gpu.refiner(w, h, nc, &target.data).unwrap();
        let dev = refiner.removal_costs(&gs).unwrap();
        assert_eq!(dev.len(), cpu.len());
        let largest = cpu.iter().fold(0f64, |m, c| m.max(c.abs()));
        let mut worst = 0f64;
        for (k, (c, d)) in cpu.iter().zip(&dev).enumerate() {
            let rel = (c - d).abs() / c.abs().max(1e-3 * largest);
            worst = worst.max(rel);
            assert!(
                rel <= 1e-4,
                "{layout:?}: Gaussian {k} costs {d} on the GPU, {c} on the CPU"
            );
        }
        let cheapest = |v: &[f64]| {
            let mut o: Vec<usize> = (0..v.len()).collect();
            o.sort_by(|&a, &b| v[a].total_cmp(&v[b]).then(a.cmp(&b)));
            o.truncate(10);
            o
        };
        assert_eq!(
            cheapest(&dev),
            cheapest(&cpu),
            "{layout:?}: the cheapest differ"
        );
        eprintln!("{layout:?} {w}x{h} n={n}: costs within {worst:.1e} (largest {largest:.3e})");
        // Again on the same refiner: the same costs.
        assert_eq!(
            refiner.removal_costs(&gs).unwrap(),
            dev,
            "{layout:?}: not repeatable"
        );
    }
}

#[test]
fn gpu_error_map_matches_cpu() {
    // The moves' error map (the squared error per pixel of the render of what is kept): the
    // GPU's within 1e-5 of the CPU's (of the pixel's value or, near 0, of the largest), for
    // every Gaussian kept, every third removed, and none kept.
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng::new(43);
    for (layout, w, h, n) in [
        (ChannelLayout::Gray, 37u32, 29u32, 60usize),
        (ChannelLayout::GrayAlpha, 30, 34, 50),
        (ChannelLayout::Rgb, 48, 40, 90),
        (ChannelLayout::Rgba, 35, 21, 70),
    ] {
        let nc = layout.channels();
        let target = refine_target(&mut rng, w, h, layout);
        let gs = random_image(&mut rng, w, h, layout, n, 0.6, 6.0).into_gaussians();
        let mut refiner = gpu.refiner(w, h, nc, &target.data).unwrap();
        let thirds: Vec<bool> = (0..n).map(|k| k % 3 != 0).collect();
        let none = vec![false; n];
        for (what, keep) in [
            ("all kept", None),
            ("a third removed", Some(&thirds[..])),
            ("none kept", Some(&none[..])),
        ] {
            let cpu = gsimg::encode::optim::realloc::error_map(&target, &gs, keep);
            let dev = refiner.error_map(&gs, keep).unwrap();
            assert_eq!(dev.len(), (w * h) as usize);
            let largest = cpu.iter().fold(0f32, |m, c| m.max(c.abs()));
            assert!(largest > 0.0, "{layout:?} {what}: a zero error map");
            for (i, (c, d)) in cpu.iter().zip(&dev).enumerate() {
                let rel = (c - d).abs() / c.abs().max(1e-3 * largest);
                assert!(
                    rel <= 1e-5,
                    "{layout:?} {what}: pixel {i} has error {d} on the GPU, {c} on the CPU"
                );
            }
        }
        assert!(
            refiner.error_map(&gs, Some(&none[1..])).is_err(),
            "{layout:?}: keep flags of the wrong length are refused"
        );
    }
}

#[test]
fn gpu_moves_refine_as_the_cpu_does() {
    // A refinement in rounds with moves between them (growing to a budget, moving 10 % each
    // round; no colour refits, to keep it short in the emulator), all on the GPU (descents,
    // the moves' costs and error maps) and all on the CPU: the GPU's ends within 0.15 dB of
    // the CPU's.
    let Some(_gpu) = gpu() else { return };
    use gsimg::encode::optim::refine::{RefineDevice, RefineOptions, refine_to};
    let mut rng = Rng::new(47);
    let (w, h, layout) = (32u32, 24u32, ChannelLayout::Rgb);
    let target = refine_target(&mut rng, w, h, layout);
    let start = random_image(&mut rng, w, h, layout, 30, 1.0, 4.0).into_gaussians();
    let opts = RefineOptions {
        iterations: 12,
        rounds: 3,
        reallocate: 0.1,
        refit_colors: false,
        device: RefineDevice::Cuda,
        ..Default::default()
    };
    let mut dev = start.clone();
    let g = refine_to(&target, &mut dev, &opts, 45).unwrap();
    assert!(g.gpu.is_some() && g.fallback.is_none(), "{g:?}");
    let mut cpu = start.clone();
    let on_cpu = RefineOptions {
        device: RefineDevice::Cpu,
        ..opts
    };
    let c = refine_to(&target, &mut cpu, &on_cpu, 45).unwrap();
    assert!(c.gpu.is_none());
    assert_eq!((dev.len(), cpu.len()), (45, 45));
    let psnr = |gs: &[gsimg::Gaussian]| {
        let mse = gsimg::encode::optim::refine::gradients(&target, gs).0;
        -10.0 * mse.log10()
    };
    let (pg, pc) = (psnr(&dev), psnr(&cpu));
    eprintln!(
        "GPU moves {pg:.3} dB, CPU moves {pc:.3} dB ({:?} / {:?})",
        g.last, c.last
    );
    assert!(pg > psnr(&start) + 3.0, "no refinement: {pg:.3} dB");
    assert!(
        (pg - pc).abs() <= 0.15,
        "GPU moves {pg:.3} dB, CPU moves {pc:.3} dB"
    );
}
